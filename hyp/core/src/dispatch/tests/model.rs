//! Random operation sequences against a reference model: a `BTreeMap` of IOVA page → PA page per domain, the
//! StreamID → domain table, the set of donated pages and host-identity's cut 2 MiB blocks (each with its
//! level-3 table: from the spare, or a donated page of the block once the spare is empty). After every call the
//! hypervisor's answer must be the one the model predicts, and iova_to_phys, ownership counts, STEs, host-identity's
//! spare and stats must agree with the model.

use super::*;
use crate::ownership::PageState;

const WINDOW_PAGES: u64 = 2048;
const MAX_DOMAINS: u16 = 4;
const MAX_DONATED: usize = 256;

#[derive(Clone, Debug)]
enum Op {
    Alloc(bool),
    Free(usize),
    Attach(usize, usize),
    Detach(usize),
    Map {
        dom: usize,
        iova: u64,
        pa: u64,
        big: bool,
        count: u64,
    },
    Unmap {
        dom: usize,
        iova: u64,
        big: bool,
        count: u64,
    },
    Donate(u64, u64),
    Reclaim(u64, u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => any::<bool>().prop_map(Op::Alloc),
        1 => (0usize..8).prop_map(Op::Free),
        2 => (0usize..26, 0usize..8).prop_map(|(s, d)| Op::Attach(s, d)),
        1 => (0usize..26).prop_map(Op::Detach),
        6 => (0usize..8, 0..WINDOW_PAGES, 0u64..4200, prop::bool::weighted(0.2), 1u64..40)
            .prop_map(|(dom, iova, pa, big, count)| Op::Map { dom, iova, pa, big, count }),
        4 => (0usize..8, 0..WINDOW_PAGES, prop::bool::weighted(0.2), 1u64..40)
            .prop_map(|(dom, iova, big, count)| Op::Unmap { dom, iova, big, count }),
        2 => (0u64..4200, 1u64..8).prop_map(|(p, c)| Op::Donate(p, c)),
        2 => (0u64..4200, 1u64..8).prop_map(|(p, c)| Op::Reclaim(p, c)),
    ]
}

#[derive(Default)]
struct MDom {
    blocked: bool,
    map: BTreeMap<u64, u64>,
}

#[derive(Default)]
struct Model {
    /// Every ID ever allocated (freed ones stay, as stale IDs to try).
    ids: Vec<u64>,
    live: BTreeMap<u64, MDom>,
    sid: BTreeMap<u32, u64>,
    donated: BTreeSet<u64>,
    /// Host-identity's cut 2 MiB blocks → their table: `None` from the spare, `Some(page)` a donated page.
    cut: BTreeMap<u64, Option<u64>>,
    /// Free spare tables of host-identity.
    spare: usize,
    /// `STAT POOL_TOTAL_PAGES` with nothing donated.
    pool_base: u64,
}

const BLOCK: u64 = 2 << 20;

impl Model {
    fn new(pool_base: u64) -> Self {
        Self {
            spare: SPARE,
            pool_base,
            ..Self::default()
        }
    }

    fn block_has_donated(&self, b: u64) -> bool {
        self.donated.range(b..b + BLOCK).next().is_some()
    }

    /// Donated pages serving as host-identity tables.
    fn table_pages(&self) -> usize {
        self.cut.values().flatten().count()
    }
}

fn valid_sids() -> Vec<u32> {
    (0..16).chain(0x100..0x108).collect()
}

/// SID choice: 24 valid ones, then two invalid.
fn sid_of(i: usize) -> u64 {
    let v = valid_sids();
    match v.get(i) {
        Some(&s) => u64::from(s),
        None if i == 24 => 16,
        None => 0x200,
    }
}

fn page_error(m: &Model, p: u64) -> Option<Error> {
    if p < RAM + HYP_SIZE {
        Some(Error::HypMemory)
    } else if p >= RAM + RAM_SIZE {
        Some(Error::NotHostMemory)
    } else if m.donated.contains(&p) {
        Some(Error::DonatedMemory)
    } else {
        None
    }
}

fn mapped_count(m: &Model, p: u64) -> u32 {
    m.live
        .values()
        .map(|d| d.map.values().filter(|&&x| x == p).count() as u32)
        .sum()
}

impl Model {
    fn dom(&self, i: usize) -> u64 {
        if self.ids.is_empty() {
            0x5
        } else {
            self.ids[i % self.ids.len()]
        }
    }

    fn paging(&self, id: u64) -> Result<&MDom, Error> {
        match self.live.get(&id) {
            None => Err(Error::BadDomain),
            Some(d) if d.blocked => Err(Error::WrongDomainKind),
            Some(d) => Ok(d),
        }
    }

    /// Runs `op` on `w` and checks the answer against the model, then updates the model.
    fn step(&mut self, w: &W, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            Op::Alloc(blocked) => {
                let r = res(w, Function::DomainAlloc, &[u64::from(blocked)]);
                if self.live.len() == usize::from(MAX_DOMAINS) {
                    prop_assert_eq!(r, Err(Error::Limit));
                } else {
                    let id = r.map_err(|e| TestCaseError::fail(format!("alloc: {e:?}")))?;
                    prop_assert!(!self.ids.contains(&id), "ID {id:#x} reused");
                    self.ids.push(id);
                    self.live.insert(
                        id,
                        MDom {
                            blocked,
                            map: BTreeMap::new(),
                        },
                    );
                }
            }
            Op::Free(i) => {
                let id = self.dom(i);
                let r = res(w, Function::DomainFree, &[id]);
                let expect = if !self.live.contains_key(&id) {
                    Err(Error::BadDomain)
                } else if self.sid.values().any(|&d| d == id) {
                    Err(Error::Busy)
                } else {
                    Ok(0)
                };
                prop_assert_eq!(r, expect);
                if r.is_ok() {
                    self.live.remove(&id);
                }
            }
            Op::Attach(s, _) | Op::Detach(s)
                if (16..0x100).contains(&sid_of(s)) || sid_of(s) >= 0x108 =>
            {
                let f = if matches!(op, Op::Detach(_)) {
                    Function::Detach
                } else {
                    Function::Attach
                };
                prop_assert_eq!(res(w, f, &[sid_of(s), self.dom(0)]), Err(Error::BadSid));
            }
            Op::Attach(s, i) => {
                let (sid, id) = (sid_of(s), self.dom(i));
                let r = res(w, Function::Attach, &[sid, id]);
                if self.live.contains_key(&id) {
                    prop_assert_eq!(r, Ok(0));
                    self.sid.insert(sid as u32, id);
                } else {
                    prop_assert_eq!(r, Err(Error::BadDomain));
                }
            }
            Op::Detach(s) => {
                prop_assert_eq!(res(w, Function::Detach, &[sid_of(s)]), Ok(0));
                self.sid.remove(&(sid_of(s) as u32));
            }
            Op::Map {
                dom,
                iova,
                pa,
                big,
                count,
            } => {
                let id = self.dom(dom);
                let (iova, pa, pgsize, count) = if big {
                    ((iova % 4) * M2, RAM + (pa % 9) * M2, M2, count % 3 + 1)
                } else {
                    (iova * K4, RAM + pa * K4, K4, count)
                };
                let len = pgsize * count;
                let r = res(w, Function::MapPages, &[id, iova, pa, pgsize, count, RW]);
                let expect = (|| {
                    let d = self.paging(id)?;
                    if iova + len > WINDOW_PAGES * K4 * 2 {
                        // Still inside 39 bits: no error from the range itself.
                    }
                    if (iova..iova + len)
                        .step_by(K4 as usize)
                        .any(|p| d.map.contains_key(&p))
                    {
                        return Err(Error::AlreadyMapped);
                    }
                    if let Some(e) = (pa..pa + len)
                        .step_by(K4 as usize)
                        .find_map(|p| page_error(self, p))
                    {
                        return Err(e);
                    }
                    Ok(len)
                })();
                prop_assert_eq!(r, expect, "map {:#x} -> {:#x} x {:#x}", iova, pa, len);
                if r.is_ok() {
                    let d = self.live.get_mut(&id).unwrap();
                    for i in 0..len / K4 {
                        d.map.insert(iova + i * K4, pa + i * K4);
                    }
                }
            }
            Op::Unmap {
                dom,
                iova,
                big,
                count,
            } => {
                let id = self.dom(dom);
                let (iova, pgsize, count) = if big {
                    ((iova % 4) * M2, M2, count % 3 + 1)
                } else {
                    (iova * K4, K4, count)
                };
                let len = pgsize * count;
                let r = res(w, Function::UnmapPages, &[id, iova, pgsize, count]);
                let expect = (|| {
                    let d = self.paging(id)?;
                    if (iova..iova + len)
                        .step_by(K4 as usize)
                        .any(|p| !d.map.contains_key(&p))
                    {
                        return Err(Error::NotMapped);
                    }
                    Ok(len)
                })();
                prop_assert_eq!(r, expect, "unmap {:#x} x {:#x}", iova, len);
                if r.is_ok() {
                    let d = self.live.get_mut(&id).unwrap();
                    for i in 0..len / K4 {
                        d.map.remove(&(iova + i * K4));
                    }
                }
            }
            Op::Donate(p, count) => {
                let pa = RAM + p * K4;
                let r = res(w, Function::Donate, &[pa, count]);
                let expect = if self.donated.len() + count as usize > MAX_DONATED {
                    Err(Error::Limit)
                } else {
                    (0..count)
                        .map(|i| pa + i * K4)
                        .find_map(|p| {
                            page_error(self, p)
                                .or((mapped_count(self, p) > 0).then_some(Error::Busy))
                        })
                        .map_or(Ok(0), Err)
                };
                prop_assert_eq!(r, expect, "donate {:#x} x {}", pa, count);
                if r.is_ok() {
                    // Blocks cut now (count < 512: never a whole block) take a table: spare, else first page.
                    let end = pa + count * K4;
                    let mut b = pa & !(BLOCK - 1);
                    while b < end {
                        if !self.cut.contains_key(&b) {
                            let t = if self.spare > 0 {
                                self.spare -= 1;
                                None
                            } else {
                                Some(pa.max(b))
                            };
                            self.cut.insert(b, t);
                        }
                        b += BLOCK;
                    }
                    self.donated.extend((0..count).map(|i| pa + i * K4));
                }
            }
            Op::Reclaim(p, count) => {
                let pa = RAM + p * K4;
                let r = res(w, Function::Reclaim, &[pa, count]);
                if (0..count).all(|i| self.donated.contains(&(pa + i * K4))) {
                    let end = pa + count * K4;
                    // A host-identity table in the range whose block keeps other donated pages: BUSY.
                    let table_busy = self.cut.iter().any(|(&b, &t)| {
                        t.is_some_and(|t| (pa..end).contains(&t))
                            && self
                                .donated
                                .range(b..b + BLOCK)
                                .any(|&p| !(pa..end).contains(&p))
                    });
                    if table_busy {
                        prop_assert_eq!(r, Err(Error::Busy), "reclaim {:#x}: a table", pa);
                    } else {
                        // Else BUSY only when a page holds a domain's table: the model does not track those.
                        prop_assert!(
                            r == Ok(0) || r == Err(Error::Busy),
                            "reclaim {:#x}: {:?}",
                            pa,
                            r
                        );
                    }
                    if r.is_ok() {
                        for i in 0..count {
                            self.donated.remove(&(pa + i * K4));
                        }
                        // Blocks whole again merge: their table goes back to the spare or to the host.
                        let blocks: Vec<u64> = self.cut.keys().copied().collect();
                        for b in blocks {
                            if !self.block_has_donated(b) && self.cut.remove(&b) == Some(None) {
                                self.spare += 1;
                            }
                        }
                    }
                } else {
                    prop_assert_eq!(r, Err(Error::NotDonated));
                }
            }
        }
        Ok(())
    }

    /// Everything observable agrees with the model.
    fn check(&self, w: &W, probes: &[u64]) -> Result<(), TestCaseError> {
        for (&id, d) in &self.live {
            if d.blocked {
                prop_assert_eq!(
                    res(w, Function::IovaToPhys, &[id, 0]),
                    Err(Error::WrongDomainKind)
                );
                continue;
            }
            for (&iova, &pa) in &d.map {
                prop_assert_eq!(
                    res(w, Function::IovaToPhys, &[id, iova + 0x18]),
                    Ok(pa + 0x18)
                );
            }
            for &p in probes {
                let iova = (p % WINDOW_PAGES) * K4;
                let expect = d.map.get(&iova).copied().ok_or(Error::NotMapped);
                prop_assert_eq!(res(w, Function::IovaToPhys, &[id, iova]), expect);
            }
        }
        let mut counts: BTreeMap<u64, u32> = BTreeMap::new();
        for d in self.live.values() {
            for &pa in d.map.values() {
                *counts.entry(pa).or_default() += 1;
            }
        }
        for (&pa, &c) in &counts {
            prop_assert_eq!(
                w.ownership().state(pa),
                PageState::Host {
                    kind: MemKind::Ram,
                    count: c
                }
            );
        }
        prop_assert_eq!(
            stat(w, Stat::MappedPages),
            counts.values().map(|&c| u64::from(c)).sum::<u64>()
        );
        for &p in &self.donated {
            prop_assert_eq!(w.ownership().state(p), PageState::Donated);
            prop_assert_eq!(res(w, Function::IovaToPhys, &[0, p]), Err(Error::NotMapped));
        }
        for &p in probes {
            let pa = RAM + HYP_SIZE + (p % ((RAM_SIZE - HYP_SIZE) / K4)) * K4;
            if !self.donated.contains(&pa) {
                prop_assert_eq!(
                    res(w, Function::IovaToPhys, &[0, pa]),
                    Ok(pa),
                    "identity keeps host RAM"
                );
                prop_assert_eq!(
                    w.ownership().state(pa),
                    PageState::Host {
                        kind: MemKind::Ram,
                        count: counts.get(&pa).copied().unwrap_or(0)
                    }
                );
            }
        }
        prop_assert_eq!(stat(w, Stat::DonatedPages), self.donated.len() as u64);
        prop_assert_eq!(
            w.identity_pool_stats().free,
            self.spare,
            "host-identity's spare"
        );
        prop_assert_eq!(
            stat(w, Stat::PoolTotalPages),
            self.pool_base + (self.donated.len() - self.table_pages()) as u64,
            "donated pages that are host-identity tables stay out of the pool"
        );
        for (&b, &t) in &self.cut {
            if let Some(t) = t {
                prop_assert!(self.donated.contains(&t) && (b..b + BLOCK).contains(&t));
            }
        }
        prop_assert_eq!(host_unmapped(w), self.donated.clone());
        prop_assert_eq!(stat(w, Stat::DomainsInUse), self.live.len() as u64);
        let blocked = ste_for(w, SteConfig::Abort);
        for sid in valid_sids() {
            let dom = self.sid.get(&sid).copied().unwrap_or(0);
            prop_assert_eq!(w.sid_domain(sid), Some(dom));
            let s = ste(w, sid);
            match dom {
                0 => prop_assert_eq!(s, ste_for(w, w.identity_ste())),
                id if s == blocked => prop_assert!(self.live[&id].blocked),
                id => {
                    prop_assert!(!self.live[&id].blocked);
                    let c = s.s2_config();
                    prop_assert_eq!(c.map(|c| u64::from(c.vmid.0)), Some((id & 0xffff) + 1));
                }
            }
        }
        Ok(())
    }
}

/// Cases of the model test: 48, or `WARDEN_MODEL_CASES` for longer runs.
fn model_cases() -> u32 {
    std::env::var("WARDEN_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: model_cases(), ..ProptestConfig::default() })]

    #[test]
    fn operations_match_reference_model(
        ops in prop::collection::vec(op(), 1..60),
        probes in prop::collection::vec(any::<u64>(), 8),
    ) {
        // Break-before-make on block splits (an SMMU without BBML2): the model's answers must not change.
        let h = boot(&Options { bbml: 0, ..options(512, MAX_DOMAINS, MAX_DONATED) });
        let w = &h.w;
        let baseline = (stat(w, Stat::PoolFreePages), stat(w, Stat::PoolTotalPages));
        let mut m = Model::new(baseline.1);
        for op in &ops {
            m.step(w, op)?;
            m.check(w, &probes)?;
        }
        // Tear down like the shim's unload: detach all, unmap all, free all, reclaim all; back to baseline.
        for sid in valid_sids() {
            prop_assert_eq!(res(w, Function::Detach, &[u64::from(sid)]), Ok(0));
        }
        for (&id, d) in &m.live {
            for &iova in d.map.keys() {
                prop_assert_eq!(res(w, Function::UnmapPages, &[id, iova, K4, 1]), Ok(K4));
            }
            prop_assert_eq!(res(w, Function::DomainFree, &[id]), Ok(0));
        }
        // Page by page, like the shim: a page that is a host-identity table is BUSY until the rest of its
        // block is back, so BUSY pages are retried after the others.
        let mut left: Vec<u64> = m.donated.iter().copied().collect();
        while !left.is_empty() {
            let before = left.len();
            left.retain(|&p| match res(w, Function::Reclaim, &[p, 1]) {
                Ok(0) => false,
                Err(Error::Busy) => true,
                r => panic!("reclaim {p:#x}: {r:?}"),
            });
            prop_assert!(left.len() < before, "no progress: {:x?}", left);
        }
        prop_assert_eq!(w.identity_pool_stats().free, SPARE, "every cut block merged back");
        prop_assert_eq!(stat(w, Stat::MappedPages), 0);
        prop_assert_eq!(stat(w, Stat::DonatedPages), 0);
        prop_assert_eq!(stat(w, Stat::DomainsInUse), 0);
        prop_assert_eq!(stat(w, Stat::PoolTotalPages), baseline.1);
        // Host-identity's split tables live in its own pool: the host's pool is exactly back at baseline.
        prop_assert_eq!(stat(w, Stat::PoolFreePages), baseline.0);
        prop_assert_eq!(stat(w, Stat::TablePagesInUse), 0);
    }
}
