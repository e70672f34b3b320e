//! Adversarial-host fuzzing of the hypercall dispatcher, end to end on the host.
//!
//! `Warden::handle` runs over the shipped SMMU adapter, warden-smmu's real driver and its behavioural fake SMMU
//! (`warden_core::test_support`, booted with `bring_up` from QEMU virt's DTB). A seeded generator
//! issues random sequences of *any* call (including unknown function numbers) with biased-random arguments:
//! live, stale and forged domain IDs; valid and invalid StreamIDs (also with high bits set); IOVAs at and past
//! the 39-bit input size and near 2^64; PAs in the hyp carve-out, in donated pages, past RAM, at the MSI
//! doorbell, misaligned or wrapping; odd page sizes, zero and huge counts, every prot bit; MAP_BATCH descriptor
//! arrays written into host RAM (overlapping, misaligned, hostile descriptors; arrays in hyp, donated or random
//! memory), whose success the model predicts exactly (a legal batch may only fail with NOMEM); UNMAP_BATCH
//! arrays likewise (mostly ranges the model has mapped, some hostile, overlapping or unmapped).
//!
//! A reference model records what every *successful* call did. After each call:
//! - the call did not panic, and its answer has the shape the ABI promises;
//! - a successful call was legal: no mapping of hyp, donated or non-host memory, nothing past 2^39, no
//!   double mapping, no donation of a mapped page, and so on;
//! - a failing call changed nothing (domain, donation, mapping and attachment counts are unchanged).
//!
//! Every few calls (and at the end) the whole state is compared with the model: `IOVA_TO_PHYS` for every
//! mapped page and random probes, ownership counts of every mapped and donated page, the STAT counters, and
//! what a device would see: each StreamID's DMA through the fake SMMU (`translate`) lands where the model says,
//! reaches nothing when blocked, and never reaches the carve-out or a donated page. Finally everything is torn
//! down and the pool, donation and mapping counts must be back at their start values.
//!
//! `WARDEN_FUZZ_ITERS` (calls per run, default 2500) and `WARDEN_FUZZ_RUNS` (runs with different seeds, default
//! 4, seeds from `WARDEN_FUZZ_BASE` on) make it longer; `WARDEN_FUZZ_SEED` replays one run (each run prints its
//! seed; odd seeds run over a fake SMMU without BBML2, so block splits are break-before-make). E.g.
//! `WARDEN_FUZZ_RUNS=400 cargo test -p warden-core --test fuzz_dispatch -- --nocapture`.

use std::collections::{BTreeMap, BTreeSet};

use warden_abi::{self as abi, Error, Function, Stat};
use warden_core::dispatch::Warden;
use warden_core::ownership::{MemKind, PageState};
use warden_core::test_support::{FakeBackend, Harness, ITS_FRAME, Options};
use warden_smmu::StreamId;
use warden_smmu::fake::{FAKE_RAM_BASE, FakeMemory, Translation};

/// Host RAM: the harness's one allocation, the first of its fake memory.
const RAM: u64 = FAKE_RAM_BASE;
const RAM_SIZE: u64 = 16 << 20;
const HYP_SIZE: u64 = warden_core::test_support::CARVEOUT_SIZE;
const DOORBELL: u64 = ITS_FRAME;
const K4: u64 = abi::PGSIZE_4K;
const M2: u64 = abi::PGSIZE_2M;
/// Carve-out pages given to the pool.
const POOL: u64 = 64 * K4;
/// Host-identity's spare level-3 tables: fewer than the 2 MiB blocks of host RAM, so that donations run it
/// dry and donated pages become host-identity tables (RECLAIM of them is BUSY until their block is back).
const SPARE: usize = 2;
const IOVA_BITS: u32 = 39;
const MAX_DOMAINS: u16 = 4;
const MAX_DONATED: usize = 512;
/// IOVAs used by the "plausible" generator: the first 8 MiB of the input space.
const WINDOW: u64 = 8 << 20;

// ---------------------------------------------------------------------------------------------------------
// The shipped hypervisor over the fake SMMU.

struct Rig {
    // Field order: the Warden goes before the memory its pool points into.
    w: Warden<FakeBackend>,
    /// Host RAM as the fake SMMU and the hyp (through its linear map) see it.
    mem: FakeMemory,
}

fn valid_sids() -> Vec<u32> {
    (0..16).chain(0x100..0x108).collect()
}

impl Rig {
    /// A booted hyp over a fake SMMU reporting (and modelling) break-before-make level `bbml`.
    fn new(bbml: u32) -> Self {
        let h = Harness::boot(&Options {
            bbml,
            sids: 16,
            extra_sids: Some((0x100, 8)),
            ram_size: RAM_SIZE,
            pool_size: POOL,
            max_domains: MAX_DOMAINS,
            max_donated_pages: MAX_DONATED,
            event_ring: 16,
            identity_spare_tables: SPARE,
            ..Options::default()
        })
        .expect("boot");
        assert_eq!(h.ram, RAM);
        Self { w: h.w, mem: h.mem }
    }

    fn translate(&self, sid: u32, iova: u64, write: bool) -> Translation {
        self.w
            .backend()
            .with_smmu(|s| s.regs_mut().translate(StreamId(sid), iova, write))
    }

    fn raw(&self, fid: u32, args: [u64; 6]) -> [u64; 4] {
        self.w.handle(fid, args)
    }

    fn call(&self, f: Function, args: &[u64]) -> Result<u64, Error> {
        let mut a = [0u64; 6];
        a[..args.len()].copy_from_slice(args);
        decode(self.raw(f.fid(), a))
    }

    fn stat(&self, s: Stat) -> u64 {
        self.call(Function::Stat, &[s.value()]).expect("STAT")
    }
}

fn decode(r: [u64; 4]) -> Result<u64, Error> {
    if r[0] as i64 >= 0 {
        Ok(r[1])
    } else {
        Err(Error::from_code(r[0] as i64)
            .unwrap_or_else(|| panic!("undocumented error code {:#x}", r[0])))
    }
}

// ---------------------------------------------------------------------------------------------------------
// Seeded generator (splitmix64): no dependency, reproducible from a printed seed.

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len() as u64) as usize]
    }
}

// ---------------------------------------------------------------------------------------------------------
// Reference model.

#[derive(Default)]
struct Dom {
    blocked: bool,
    /// IOVA page -> PA page (4 KiB granularity, whatever page size mapped it).
    map: BTreeMap<u64, u64>,
    /// IOVA page -> prot of the call that mapped it.
    prot: BTreeMap<u64, u64>,
}

#[derive(Default)]
struct Model {
    ids: Vec<u64>,
    live: BTreeMap<u64, Dom>,
    sid: BTreeMap<u32, u64>,
    donated: BTreeSet<u64>,
    /// `STAT POOL_TOTAL_PAGES` with nothing donated.
    pool_base: u64,
}

/// Counts that no failing call may change.
#[derive(Debug, Eq, PartialEq)]
struct Snapshot {
    domains: u64,
    donated: u64,
    attached: u64,
    mapped: u64,
    pool_free: u64,
    tables: u64,
}

fn snapshot(r: &Rig) -> Snapshot {
    Snapshot {
        domains: r.stat(Stat::DomainsInUse),
        donated: r.stat(Stat::DonatedPages),
        attached: r.stat(Stat::AttachedSids),
        mapped: r.stat(Stat::MappedPages),
        pool_free: r.stat(Stat::PoolFreePages),
        tables: r.stat(Stat::TablePagesInUse),
    }
}

/// May a paging domain map this PA page? Host RAM outside the carve-out, not donated, or the doorbell.
fn mappable(m: &Model, p: u64) -> bool {
    let ram = (RAM + HYP_SIZE..RAM + RAM_SIZE).contains(&p) && !m.donated.contains(&p);
    ram || (DOORBELL..DOORBELL + 0x1_0000).contains(&p)
}

fn host_ram(p: u64) -> bool {
    (RAM + HYP_SIZE..RAM + RAM_SIZE).contains(&p)
}

impl Model {
    fn mapped_count(&self, p: u64) -> u32 {
        self.live
            .values()
            .map(|d| d.map.values().filter(|&&x| x == p).count() as u32)
            .sum()
    }

    fn counts(&self) -> BTreeMap<u64, u32> {
        let mut c: BTreeMap<u64, u32> = BTreeMap::new();
        for d in self.live.values() {
            for &pa in d.map.values() {
                *c.entry(pa).or_default() += 1;
            }
        }
        c
    }
}

/// Biased argument generators.
struct Gen<'a> {
    rng: &'a mut Rng,
    m: &'a Model,
}

impl Gen<'_> {
    /// A map that is likely to succeed: a live paging domain, aligned host RAM, 4 KiB or 2 MiB pages.
    fn plausible_map(&mut self) -> (u64, u64, u64, u64, u64, u64) {
        let paging: Vec<u64> = self
            .m
            .live
            .iter()
            .filter(|(_, d)| !d.blocked)
            .map(|(&id, _)| id)
            .collect();
        let id = if paging.is_empty() {
            self.dom()
        } else {
            self.rng.pick(&paging)
        };
        let pgsize = if self.rng.chance(15) { M2 } else { K4 };
        let count = if pgsize == M2 {
            1
        } else {
            1 + self.rng.below(16)
        };
        // Now and then anywhere in the 39-bit space: every new 1 GiB / 2 MiB region costs the pool a table, so
        // the pool runs dry (NOMEM), donated pages become tables and reclaiming them is refused (BUSY).
        let span = if self.rng.chance(30) {
            1 << IOVA_BITS
        } else {
            WINDOW
        };
        let iova = self.rng.below(span) & !(pgsize - 1);
        let pa =
            RAM + HYP_SIZE + (self.rng.below(RAM_SIZE - HYP_SIZE - pgsize * count) & !(pgsize - 1));
        let prot = self.rng.pick(&[
            abi::PROT_READ | abi::PROT_WRITE,
            abi::PROT_READ,
            abi::PROT_WRITE | abi::PROT_NOEXEC | abi::PROT_CACHE,
        ]);
        (id, pgsize, count, iova, pa, prot)
    }

    fn dom(&mut self) -> u64 {
        let ids = &self.m.ids;
        match self.rng.below(20) {
            0..=11 if !ids.is_empty() => ids[self.rng.below(ids.len() as u64) as usize],
            12 => 0,
            13 if !ids.is_empty() => {
                // Same slot, forged generation.
                ids[self.rng.below(ids.len() as u64) as usize] ^ (1 << (16 + self.rng.below(16)))
            }
            14 if !ids.is_empty() => ids[self.rng.below(ids.len() as u64) as usize] | (1 << 32),
            15 => self.rng.below(8),
            16 => u64::MAX,
            17 => self.rng.next(),
            _ => self.m.live.keys().next().copied().unwrap_or(1),
        }
    }

    fn sid(&mut self) -> u64 {
        match self.rng.below(12) {
            0..=7 => u64::from(self.rng.pick(&valid_sids())),
            8 => self.rng.pick(&[16, 0xff, 0x108, 0x1ff, 0xffff_ffff]),
            9 => (1 << 32) | u64::from(self.rng.pick(&valid_sids())),
            10 => u64::MAX,
            _ => self.rng.next(),
        }
    }

    fn pgsize(&mut self) -> u64 {
        match self.rng.below(20) {
            0..=13 => K4,
            14..=16 => M2,
            17 => abi::PGSIZE_1G,
            18 => self
                .rng
                .pick(&[0, 8 << 10, 3 << 12, 1 << 13, 64 << 10, 1 << 63]),
            _ => self.rng.next(),
        }
    }

    fn count(&mut self, pgsize: u64) -> u64 {
        match self.rng.below(20) {
            0..=13 if pgsize == M2 => 1 + self.rng.below(2),
            0..=13 => 1 + self.rng.below(24),
            14 => 0,
            15 => self
                .rng
                .pick(&[1 << 20, 1 << 27, 1 << 40, u64::MAX, u64::MAX / K4]),
            16 => (1u64 << IOVA_BITS) / pgsize.max(1),
            17 => 512 + self.rng.below(4),
            _ => 1,
        }
    }

    /// An IOVA for a map or unmap of `pgsize` pages: mostly aligned inside the window, often at the edges.
    fn iova(&mut self, pgsize: u64) -> u64 {
        let align = if pgsize.is_power_of_two() && pgsize >= K4 {
            pgsize
        } else {
            K4
        };
        let top = 1u64 << IOVA_BITS;
        match self.rng.below(24) {
            0..=13 => {
                // Reuse a mapped IOVA half the time so unmaps hit.
                let mapped: Vec<u64> = self
                    .m
                    .live
                    .values()
                    .flat_map(|d| d.map.keys().copied())
                    .collect();
                if !mapped.is_empty() && self.rng.chance(50) {
                    self.rng.pick(&mapped) & !(align - 1).min(M2 - 1)
                } else {
                    (self.rng.below(WINDOW) & !(align - 1)) % WINDOW
                }
            }
            14 => top.wrapping_sub(align.wrapping_mul(1 + self.rng.below(2))),
            15 => top,
            16 => top.wrapping_add(align),
            17 => 1 << 48,
            18 => (u64::MAX - align).wrapping_add(1),
            19 => !(K4 - 1),
            20 => self.rng.below(WINDOW) | (1 + self.rng.below(K4 - 1)),
            21 => 0,
            _ => self.rng.next(),
        }
    }

    fn pa(&mut self, pgsize: u64) -> u64 {
        let align = if pgsize == M2 { M2 } else { K4 };
        let host = RAM + HYP_SIZE + (self.rng.below(RAM_SIZE - HYP_SIZE) & !(align - 1));
        match self.rng.below(30) {
            0..=15 => host,
            16 | 17 => RAM + (self.rng.below(HYP_SIZE) & !(align - 1)),
            18 | 19 if !self.m.donated.is_empty() => {
                let d: Vec<u64> = self.m.donated.iter().copied().collect();
                self.rng.pick(&d) & !(align - 1)
            }
            20 => RAM + RAM_SIZE + (self.rng.below(4) * align),
            21 => RAM + RAM_SIZE - align,
            22 => DOORBELL,
            23 => 0x0900_0000, // PL011
            24 => 0x0900_0000 - K4,
            25 => !(align - 1),
            26 => 1 << 44,
            27 => host | (1 + self.rng.below(K4 - 1)),
            28 => RAM - align,
            _ => self.rng.next(),
        }
    }

    fn prot(&mut self) -> u64 {
        const RW: u64 = abi::PROT_READ | abi::PROT_WRITE;
        match self.rng.below(12) {
            0..=5 => RW,
            6 => abi::PROT_READ,
            7 => abi::PROT_WRITE,
            8 => 0,
            9 => RW | 1 << (6 + self.rng.below(58)),
            10 => abi::PROT_ALL,
            _ => self.rng.next(),
        }
    }
}

/// Per-run tallies, for the report line.
#[derive(Default)]
struct Tally {
    calls: u64,
    ok: BTreeMap<&'static str, u64>,
    err: BTreeMap<&'static str, u64>,
    /// Refusals by error, all calls.
    why: BTreeMap<String, u64>,
    dma_checks: u64,
    full_checks: u64,
    /// Full checks that found donated pages serving as host-identity tables.
    identity_tables: u64,
    /// Teardown reclaims refused with BUSY (host-identity tables) and retried.
    busy_retries: u64,
}

/// One random call. Returns after checking it against the model and updating the model.
fn step(r: &Rig, m: &mut Model, rng: &mut Rng, t: &mut Tally) {
    let before = snapshot(r);
    let kind = rng.below(100);
    let mut g = Gen { rng, m };
    let (name, result): (&'static str, Result<u64, Error>) = match kind {
        0..=5 => {
            let k = match g.rng.below(8) {
                0..=3 => 0,
                4..=5 => 1,
                6 => 2,
                _ => g.rng.next(),
            };
            let res = r.call(Function::DomainAlloc, &[k]);
            if let Ok(id) = res {
                assert!(k <= 1, "alloc of kind {k:#x} succeeded");
                assert!(!m.ids.contains(&id), "domain ID {id:#x} reused");
                assert!(
                    id < 1 << 32 && id != 0,
                    "domain ID {id:#x} out of the ABI's range"
                );
                assert!(
                    m.live.len() < usize::from(MAX_DOMAINS),
                    "more than max domains"
                );
                m.ids.push(id);
                m.live.insert(
                    id,
                    Dom {
                        blocked: k == 1,
                        ..Dom::default()
                    },
                );
            }
            ("alloc", res)
        }
        6..=9 => {
            let id = g.dom();
            let res = r.call(Function::DomainFree, &[id]);
            if res.is_ok() {
                assert!(
                    m.live.contains_key(&id),
                    "freed a domain that is not live: {id:#x}"
                );
                assert!(
                    !m.sid.values().any(|&d| d == id),
                    "freed an attached domain {id:#x}"
                );
                m.live.remove(&id);
            } else if id == 0 {
                assert_eq!(res, Err(Error::ImmutableDomain));
            }
            ("free", res)
        }
        10..=19 => {
            let (sid, id) = (g.sid(), g.dom());
            let res = r.call(Function::Attach, &[sid, id]);
            if res.is_ok() {
                let s = u32::try_from(sid).expect("attach of a >32-bit StreamID succeeded");
                assert!(valid_sids().contains(&s), "attach of invalid SID {sid:#x}");
                assert!(
                    id == 0 || m.live.contains_key(&id),
                    "attach to dead domain {id:#x}"
                );
                if id == 0 {
                    m.sid.remove(&s);
                } else {
                    m.sid.insert(s, id);
                }
            }
            ("attach", res)
        }
        20..=24 => {
            let sid = g.sid();
            let res = r.call(Function::Detach, &[sid]);
            if res.is_ok() {
                let s = u32::try_from(sid).expect("detach of a >32-bit StreamID succeeded");
                assert!(valid_sids().contains(&s), "detach of invalid SID {sid:#x}");
                m.sid.remove(&s);
            }
            ("detach", res)
        }
        47..=54 => {
            let (res, maps) = map_batch(r, &mut g);
            if let Some((id, prot, maps)) = maps {
                let d = m.live.get_mut(&id).unwrap();
                for (iova, pa) in maps {
                    d.map.insert(iova, pa);
                    d.prot.insert(iova, prot);
                }
            }
            ("map_batch", res)
        }
        25..=46 => {
            let (id, pgsize, count, iova, pa, prot) = if g.rng.chance(50) {
                g.plausible_map()
            } else {
                let id = g.dom();
                let pgsize = g.pgsize();
                let count = g.count(pgsize);
                (id, pgsize, count, g.iova(pgsize), g.pa(pgsize), g.prot())
            };
            let res = r.call(Function::MapPages, &[id, iova, pa, pgsize, count, prot]);
            if let Ok(bytes) = res {
                let ctx = format!(
                    "map dom {id:#x} iova {iova:#x} pa {pa:#x} pgsize {pgsize:#x} x {count} prot {prot:#x}"
                );
                let len = pgsize.checked_mul(count).expect(&ctx);
                assert_eq!(bytes, len, "{ctx}");
                assert!([K4, M2, abi::PGSIZE_1G].contains(&pgsize), "{ctx}");
                assert!(count > 0 && iova % pgsize == 0 && pa % pgsize == 0, "{ctx}");
                assert!(
                    iova.checked_add(len).is_some_and(|e| e <= 1 << IOVA_BITS),
                    "{ctx}"
                );
                assert!(prot & !abi::PROT_ALL == 0, "{ctx}");
                let d = m
                    .live
                    .get(&id)
                    .unwrap_or_else(|| panic!("{ctx}: dead domain"));
                assert!(!d.blocked, "{ctx}: blocked domain");
                for i in 0..len / K4 {
                    let p = pa + i * K4;
                    assert!(
                        mappable(m, p),
                        "{ctx}: page {p:#x} is not the host's to map"
                    );
                    assert!(!d.map.contains_key(&(iova + i * K4)), "{ctx}: double map");
                }
                let d = m.live.get_mut(&id).unwrap();
                for i in 0..len / K4 {
                    d.map.insert(iova + i * K4, pa + i * K4);
                    d.prot.insert(iova + i * K4, prot);
                }
            }
            ("map", res)
        }
        55..=61 => {
            let (res, unmapped) = unmap_batch(r, &mut g);
            if let Some((id, pages)) = unmapped {
                let d = m.live.get_mut(&id).unwrap();
                for iova in pages {
                    d.map.remove(&iova);
                    d.prot.remove(&iova);
                }
            }
            ("unmap_batch", res)
        }
        62..=74 => {
            let mapped: Vec<(u64, u64)> = m
                .live
                .iter()
                .flat_map(|(&id, d)| d.map.keys().map(move |&i| (id, i)))
                .collect();
            let (id, pgsize, count, iova) = if !mapped.is_empty() && g.rng.chance(40) {
                // Something mapped (maybe the middle of a 2 MiB block), sometimes running past its end.
                let (id, iova) = g.rng.pick(&mapped);
                (id, K4, 1 + g.rng.below(4), iova)
            } else {
                let id = g.dom();
                let pgsize = g.pgsize();
                let count = g.count(pgsize);
                (id, pgsize, count, g.iova(pgsize))
            };
            let res = r.call(Function::UnmapPages, &[id, iova, pgsize, count]);
            if let Ok(bytes) = res {
                let ctx = format!("unmap dom {id:#x} iova {iova:#x} pgsize {pgsize:#x} x {count}");
                let len = pgsize.checked_mul(count).expect(&ctx);
                assert_eq!(bytes, len, "{ctx}");
                let d = m
                    .live
                    .get_mut(&id)
                    .unwrap_or_else(|| panic!("{ctx}: dead domain"));
                for i in 0..len / K4 {
                    assert!(
                        d.map.remove(&(iova + i * K4)).is_some(),
                        "{ctx}: page {i} was not mapped"
                    );
                    d.prot.remove(&(iova + i * K4));
                }
            }
            ("unmap", res)
        }
        75..=81 => {
            let pa = if g.rng.chance(80) {
                RAM + HYP_SIZE + (g.rng.below(RAM_SIZE - HYP_SIZE) & !(K4 - 1))
            } else {
                g.pa(K4)
            };
            let count = match g.rng.below(10) {
                0..=7 => 1 + g.rng.below(4),
                8 => 0,
                _ => g.rng.pick(&[u64::MAX, 1 << 40, 4096]),
            };
            let res = r.call(Function::Donate, &[pa, count]);
            if res.is_ok() {
                let ctx = format!("donate {pa:#x} x {count}");
                assert!(count > 0 && pa % K4 == 0, "{ctx}");
                assert!(
                    m.donated.len() + count as usize <= MAX_DONATED,
                    "{ctx}: over the limit"
                );
                for i in 0..count {
                    let p = pa + i * K4;
                    assert!(host_ram(p) && !m.donated.contains(&p), "{ctx}: {p:#x}");
                    assert_eq!(m.mapped_count(p), 0, "{ctx}: {p:#x} is DMA-mapped");
                }
                m.donated.extend((0..count).map(|i| pa + i * K4));
            }
            ("donate", res)
        }
        82..=87 => {
            let d: Vec<u64> = m.donated.iter().copied().collect();
            let pa = if !d.is_empty() && g.rng.chance(75) {
                g.rng.pick(&d)
            } else {
                g.pa(K4)
            };
            let span = if g.rng.chance(10) { 1 << 20 } else { 8 };
            let count = 1 + g.rng.below(span);
            let res = r.call(Function::Reclaim, &[pa, count]);
            if res.is_ok() {
                for i in 0..count {
                    assert!(
                        m.donated.remove(&(pa + i * K4)),
                        "reclaim {pa:#x} x {count}: page {i} not donated"
                    );
                }
            }
            ("reclaim", res)
        }
        88..=91 => {
            let id = g.dom();
            let iova = g.iova(K4);
            let res = r.call(Function::IovaToPhys, &[id, iova]);
            if let Ok(pa) = res {
                // Host-identity or a model mapping; never hyp or donated memory.
                if id == 0 {
                    assert_eq!(pa, iova);
                    assert!(mappable(m, pa & !(K4 - 1)), "identity translates {iova:#x}");
                } else {
                    let d = &m.live[&id];
                    assert_eq!(
                        d.map
                            .get(&(iova & !(K4 - 1)))
                            .map(|p| p | (iova & (K4 - 1))),
                        Some(pa)
                    );
                }
            }
            ("iova_to_phys", res)
        }
        92..=94 => {
            let res = r.call(Function::ReadEvent, &[]);
            ("read_event", res)
        }
        95..=97 => {
            let s = if g.rng.chance(70) {
                g.rng.below(16)
            } else {
                g.rng.next()
            };
            let res = r.call(Function::Stat, &[s]);
            ("stat", res)
        }
        _ => {
            // Unknown function numbers in Warden's range, and random argument registers.
            let f = 0x0e + g.rng.below(0xfff2);
            let mut a = [0u64; 6];
            for x in &mut a {
                *x = g.rng.next();
            }
            let res = decode(r.raw(abi::FID_BASE | f as u32, a));
            assert_eq!(res, Err(Error::NotSupported), "unknown function {f:#x}");
            ("unknown", res)
        }
    };
    t.calls += 1;
    match result {
        Ok(_) => *t.ok.entry(name).or_default() += 1,
        Err(e) => {
            *t.err.entry(name).or_default() += 1;
            *t.why.entry(format!("{name}:{e:?}")).or_default() += 1;
            assert_eq!(
                snapshot(r),
                before,
                "failing {name} ({result:?}) changed state"
            );
        }
    }
}

/// Writes a batch call's descriptors (`W` words each) to a page of host RAM the model has not donated (the
/// host cannot write donated pages), at an offset that leaves room for all of them, then picks what the call
/// passes: mostly that address and count, sometimes a hostile one (another page, a donated page, misaligned,
/// running past the end of its page, a count out of range). Returns `(desc, count, desc_ok)`: `desc_ok` says
/// whether the model accepts them (`count` in `1..=max`, exactly the descriptors written, 8-aligned inside one
/// page of host RAM that is not donated).
fn batch_descriptors<const W: usize>(
    r: &Rig,
    g: &mut Gen<'_>,
    e: &[[u64; W]],
    max: u64,
) -> (u64, u64, bool) {
    let m = g.m;
    let n = e.len() as u64;
    let size = 8 * W as u64;
    let page = loop {
        let p = RAM + HYP_SIZE + (g.rng.below(RAM_SIZE - HYP_SIZE) & !(K4 - 1));
        if !m.donated.contains(&p) {
            break p;
        }
    };
    let room = (K4 - n * size) / 8;
    let written = page + 8 * g.rng.below(room + 1);
    for (i, d) in e.iter().enumerate() {
        for (j, &v) in d.iter().enumerate() {
            // Host RAM, not a table page (not donated, not the carve-out); the hyp reads it through its
            // linear map like the pool writes its tables.
            assert!(r.mem.try_write64(written + 8 * (i * W + j) as u64, v));
        }
    }
    let (desc, count) = match g.rng.below(20) {
        0 => (g.pa(K4), n),
        1 if !m.donated.is_empty() => (*m.donated.iter().next().unwrap(), n),
        2 => (written + 4, n),
        // One word short of room for a descriptor at the end of the page.
        3 => (page + K4 - (size - 8), n),
        4 => (written, g.rng.pick(&[0, 65, u64::MAX])),
        _ => (written, n),
    };
    let in_page = desc % 8 == 0 && (desc % K4).saturating_add(count.saturating_mul(size)) <= K4;
    let desc_ok = (1..=max).contains(&count)
        && count == n
        && desc == written
        && in_page
        && host_ram(desc & !(K4 - 1))
        && !m.donated.contains(&(desc & !(K4 - 1)));
    (desc, count, desc_ok)
}

/// Checks the answer of a failed batch call (`ctx` names the call) and returns its error: a call the model
/// finds legal may only fail with NOMEM (with x1 > 0: the descriptors done); x2 is a descriptor index, or all
/// ones for the call's own arguments and NOMEM.
fn batch_failed(res: [u64; 4], count: u64, legal: bool, ctx: &str) -> Error {
    let err = decode(res).unwrap_err();
    if legal {
        assert_eq!(
            err,
            Error::NoMem,
            "{ctx}: a legal batch failed (x2 = {:#x})",
            res[2]
        );
    }
    assert!(
        res[2] < count || res[2] == abi::MAP_BATCH_NO_ENTRY,
        "{ctx}: x2 = {:#x}",
        res[2]
    );
    if err == Error::NoMem {
        assert!(res[1] > 0 && res[2] == abi::MAP_BATCH_NO_ENTRY, "{ctx}");
    }
    err
}

/// MAP_BATCH with 1..=8 descriptors (mostly plausible, some hostile) written to a page of host RAM (or a
/// hostile descriptor address). The model predicts whether the whole call is legal: a success must be legal and
/// map every descriptor; a legal call may only fail with NOMEM; a failure changes nothing (checked by `step`).
/// Returns the result and, on success, the pages to add to the model: (domain, prot, [(IOVA, PA)]).
#[allow(clippy::type_complexity)]
fn map_batch(
    r: &Rig,
    g: &mut Gen<'_>,
) -> (Result<u64, Error>, Option<(u64, u64, Vec<(u64, u64)>)>) {
    let m = g.m;
    let (id, _, _, base, _, prot) = g.plausible_map();
    let prot = if g.rng.chance(90) { prot } else { g.prot() };
    let n = 1 + g.rng.below(8);
    let mut e = Vec::new();
    let mut iova = base;
    for _ in 0..n {
        let len = K4 * (1 + g.rng.below(4));
        let pa = RAM + HYP_SIZE + (g.rng.below(RAM_SIZE - HYP_SIZE - len) & !(K4 - 1));
        let ent = match g.rng.below(40) {
            0 => (iova, g.pa(K4), len),
            1 => (g.iova(K4), pa, len),
            2 => (iova, pa, g.rng.pick(&[0, 0x800, 1 << 40, !(K4 - 1)])),
            3 => (base, pa, len), // overlaps the first descriptor
            _ => (iova, pa, len),
        };
        iova = iova.wrapping_add(len + if g.rng.chance(50) { 0 } else { K4 });
        e.push(ent);
    }
    let words: Vec<[u64; 3]> = e.iter().map(|&(a, b, c)| [a, b, c]).collect();
    let (desc, count, desc_ok) = batch_descriptors(r, g, &words, abi::MAP_BATCH_MAX_ENTRIES);
    let res = r.raw(Function::MapBatch.fid(), [id, desc, count, prot, 0, 0]);
    // Would the model accept every descriptor?
    let prot_ok = prot & !abi::PROT_ALL == 0
        && prot & (abi::PROT_READ | abi::PROT_WRITE) != 0
        && prot & abi::PROT_MMIO == 0;
    let dom_ok = m.live.get(&id).is_some_and(|d| !d.blocked);
    let mut legal = desc_ok && prot_ok && dom_ok;
    let mut pages = BTreeSet::new();
    if legal {
        let d = &m.live[&id];
        for &(a, b, c) in &e {
            let ok = c != 0
                && (a | b | c) % K4 == 0
                && a.checked_add(c).is_some_and(|end| end <= 1 << IOVA_BITS)
                && b.checked_add(c).is_some_and(|end| end <= 1 << 44)
                && (0..c / K4).all(|i| {
                    let p = b + i * K4;
                    host_ram(p) && !m.donated.contains(&p)
                })
                && (0..c / K4)
                    .all(|i| !d.map.contains_key(&(a + i * K4)) && pages.insert(a + i * K4));
            if !ok {
                legal = false;
                break;
            }
        }
    }
    let ctx = format!("map_batch dom {id:#x} desc {desc:#x} x {count} prot {prot:#x}: {e:x?}");
    if res[0] == 0 {
        assert!(legal, "{ctx}: an illegal batch succeeded");
        assert_eq!(res[1..], [n, e.iter().map(|x| x.2).sum(), 0], "{ctx}");
        let maps = e
            .iter()
            .flat_map(|&(a, b, c)| (0..c / K4).map(move |i| (a + i * K4, b + i * K4)))
            .collect();
        (Ok(n), Some((id, prot, maps)))
    } else {
        (Err(batch_failed(res, count, legal, &ctx)), None)
    }
}

/// UNMAP_BATCH with 1..=8 descriptors, mostly ranges the model has mapped in a live paging domain (1..=3 pages
/// from a mapped page, maybe running past its mapping), some hostile (unmapped, overlapping, misaligned, huge),
/// written to a page of host RAM (or a hostile descriptor address). The model predicts whether the call is
/// legal: a success must be legal and unmap every descriptor; a legal call may only fail with NOMEM (block
/// splits); a failure changes nothing (checked by `step`). Returns the result and, on success, the IOVA pages
/// to take out of the model: (domain, [IOVA]).
#[allow(clippy::type_complexity)]
fn unmap_batch(r: &Rig, g: &mut Gen<'_>) -> (Result<u64, Error>, Option<(u64, Vec<u64>)>) {
    let m = g.m;
    let paging: Vec<u64> = m
        .live
        .iter()
        .filter(|(_, d)| !d.blocked && !d.map.is_empty())
        .map(|(&id, _)| id)
        .collect();
    let id = if !paging.is_empty() && g.rng.chance(90) {
        g.rng.pick(&paging)
    } else {
        g.dom()
    };
    let mapped: Vec<u64> = m
        .live
        .get(&id)
        .map(|d| d.map.keys().copied().collect())
        .unwrap_or_default();
    let n = 1 + g.rng.below(8);
    let mut e: Vec<(u64, u64)> = Vec::new();
    for _ in 0..n {
        let len = K4 * (1 + g.rng.below(3));
        let ent = match g.rng.below(30) {
            0 => (g.iova(K4), len),
            1 => (
                g.rng
                    .pick(&mapped.clone().into_iter().chain([0]).collect::<Vec<_>>()),
                0,
            ),
            2 => (g.iova(K4), g.rng.pick(&[0x800, 1 << 40, !(K4 - 1)])),
            3 if !e.is_empty() => (e[0].0, K4), // overlaps the first descriptor
            _ if !mapped.is_empty() => {
                let start = g.rng.pick(&mapped);
                // Mostly exactly what is mapped from there on (as a flush queue holds it).
                let mut l = K4;
                while l < len && mapped.binary_search(&(start + l)).is_ok() {
                    l += K4;
                }
                (start, if g.rng.chance(85) { l } else { len })
            }
            _ => (g.iova(K4), len),
        };
        e.push(ent);
    }
    let words: Vec<[u64; 2]> = e.iter().map(|&(a, b)| [a, b]).collect();
    let (desc, count, desc_ok) = batch_descriptors(r, g, &words, abi::UNMAP_BATCH_MAX_ENTRIES);
    let res = r.raw(Function::UnmapBatch.fid(), [id, desc, count, 0, 0, 0]);
    let mut legal = desc_ok && m.live.get(&id).is_some_and(|d| !d.blocked);
    let mut pages = Vec::new();
    if legal {
        let d = &m.live[&id];
        let mut seen = BTreeSet::new();
        for &(a, c) in &e {
            let ok = c != 0
                && (a | c) % K4 == 0
                && a.checked_add(c).is_some_and(|end| end <= 1 << IOVA_BITS)
                && (0..c / K4)
                    .all(|i| d.map.contains_key(&(a + i * K4)) && seen.insert(a + i * K4));
            if !ok {
                legal = false;
                break;
            }
            pages.extend((0..c / K4).map(|i| a + i * K4));
        }
    }
    let ctx = format!("unmap_batch dom {id:#x} desc {desc:#x} x {count}: {e:x?}");
    if res[0] == 0 {
        assert!(legal, "{ctx}: an illegal batch succeeded");
        assert_eq!(res[1..], [n, e.iter().map(|x| x.1).sum(), 0], "{ctx}");
        (Ok(n), Some((id, pages)))
    } else {
        (Err(batch_failed(res, count, legal, &ctx)), None)
    }
}

/// Everything observable agrees with the model, including what devices see.
fn check(r: &Rig, m: &Model, rng: &mut Rng, t: &mut Tally) {
    t.full_checks += 1;
    let counts = m.counts();
    for (&id, d) in &m.live {
        if d.blocked {
            assert_eq!(
                r.call(Function::IovaToPhys, &[id, 0]),
                Err(Error::WrongDomainKind)
            );
            continue;
        }
        for (&iova, &pa) in &d.map {
            assert_eq!(
                r.call(Function::IovaToPhys, &[id, iova + 0x18]),
                Ok(pa + 0x18),
                "dom {id:#x}"
            );
        }
        for _ in 0..16 {
            let iova = rng.below(WINDOW) & !(K4 - 1);
            let expect = d.map.get(&iova).copied().ok_or(Error::NotMapped);
            assert_eq!(
                r.call(Function::IovaToPhys, &[id, iova]),
                expect,
                "dom {id:#x} probe {iova:#x}"
            );
        }
    }
    for (&pa, &c) in &counts {
        let kind = if host_ram(pa) {
            MemKind::Ram
        } else {
            MemKind::Mmio
        };
        assert_eq!(
            r.w.ownership().state(pa),
            PageState::Host { kind, count: c },
            "{pa:#x}"
        );
    }
    for &p in &m.donated {
        assert_eq!(r.w.ownership().state(p), PageState::Donated);
        assert_eq!(r.call(Function::IovaToPhys, &[0, p]), Err(Error::NotMapped));
    }
    assert_eq!(r.w.backend().host().unmapped_pages(), m.donated);
    assert_eq!(
        r.stat(Stat::MappedPages),
        counts.values().map(|&c| u64::from(c)).sum::<u64>()
    );
    assert_eq!(r.stat(Stat::DonatedPages), m.donated.len() as u64);
    assert_eq!(r.stat(Stat::DomainsInUse), m.live.len() as u64);
    assert_eq!(r.stat(Stat::AttachedSids), m.sid.len() as u64);
    let pool = (r.stat(Stat::PoolFreePages), r.stat(Stat::PoolTotalPages));
    assert!(pool.0 <= pool.1, "pool free {} > total {}", pool.0, pool.1);
    assert!(r.stat(Stat::DonatedFreePages) <= m.donated.len() as u64);
    // Donated pages outside the pool are host-identity tables: at most one per 2 MiB block with donated pages,
    // and only once the spare is used up.
    let in_pool = pool.1 - m.pool_base;
    let tables = m.donated.len() as u64 - in_pool;
    let blocks: BTreeSet<u64> = m.donated.iter().map(|p| p & !(M2 - 1)).collect();
    assert!(tables <= blocks.len() as u64, "{tables} identity tables");
    if tables > 0 {
        assert_eq!(
            r.w.identity_pool_stats().free,
            0,
            "donated tables while the spare lasts"
        );
        t.identity_tables += 1;
    }

    // Devices: what each StreamID's DMA reaches.
    let forbidden: Vec<u64> = [RAM, RAM + POOL, RAM + HYP_SIZE - 8]
        .into_iter()
        .chain(m.donated.iter().take(8).copied())
        .collect();
    for sid in valid_sids() {
        let write = rng.chance(50);
        match m.sid.get(&sid) {
            None => {
                assert_eq!(r.w.sid_domain(sid), Some(0));
                for &pa in &forbidden {
                    let tr = r.translate(sid, pa, write);
                    assert!(
                        !matches!(tr, Translation::Ok(_)),
                        "identity SID {sid:#x} reached {pa:#x}: {tr:?}"
                    );
                }
                let p = RAM + HYP_SIZE + (rng.below(RAM_SIZE - HYP_SIZE) & !7);
                if !m.donated.contains(&(p & !(K4 - 1))) {
                    assert_eq!(
                        r.translate(sid, p, write),
                        Translation::Ok(p),
                        "identity SID {sid:#x}"
                    );
                }
            }
            Some(&id) => {
                assert_eq!(r.w.sid_domain(sid), Some(id));
                let d = &m.live[&id];
                if d.blocked {
                    let tr = r.translate(sid, rng.below(WINDOW), write);
                    assert!(
                        !matches!(tr, Translation::Ok(_)),
                        "blocked SID {sid:#x}: {tr:?}"
                    );
                    continue;
                }
                let mut iovas: Vec<u64> = d.map.keys().copied().take(4).collect();
                iovas.extend((0..4).map(|_| rng.below(WINDOW) & !(K4 - 1)));
                iovas.extend(forbidden.iter().copied());
                for iova in iovas {
                    let tr = r.translate(sid, iova + 0x40, write);
                    match d.map.get(&(iova & !(K4 - 1))) {
                        Some(&pa) => {
                            let prot = d.prot[&(iova & !(K4 - 1))];
                            let need = if write {
                                abi::PROT_WRITE
                            } else {
                                abi::PROT_READ
                            };
                            if prot & need != 0 {
                                assert_eq!(
                                    tr,
                                    Translation::Ok(pa + 0x40),
                                    "SID {sid:#x} iova {iova:#x}"
                                );
                            } else {
                                assert!(
                                    !matches!(tr, Translation::Ok(_)),
                                    "SID {sid:#x} iova {iova:#x} prot {prot:#x} write {write}: {tr:?}"
                                );
                            }
                        }
                        None => assert!(
                            !matches!(tr, Translation::Ok(_)),
                            "SID {sid:#x} reached {tr:?} through unmapped iova {iova:#x}"
                        ),
                    }
                }
            }
        }
        t.dma_checks += 1;
    }
    // Drain the fault records the probes produced (they must decode).
    while let Ok(1) = r.call(Function::ReadEvent, &[]) {}
}

/// Detach all, free all, reclaim all: back to the start values.
fn teardown(r: &Rig, m: &mut Model, baseline: (u64, u64), t: &mut Tally) {
    for sid in valid_sids() {
        assert_eq!(r.call(Function::Detach, &[u64::from(sid)]), Ok(0));
    }
    m.sid.clear();
    for id in m.live.keys().copied().collect::<Vec<_>>() {
        assert_eq!(r.call(Function::DomainFree, &[id]), Ok(0), "free {id:#x}");
    }
    m.live.clear();
    // Page by page, the BUSY ones (host-identity tables) again after the others, like the shim's unload.
    let mut left: Vec<u64> = std::mem::take(&mut m.donated).into_iter().collect();
    while !left.is_empty() {
        let before = left.len();
        left.retain(|&p| match r.call(Function::Reclaim, &[p, 1]) {
            Ok(0) => false,
            Err(Error::Busy) => {
                t.busy_retries += 1;
                true
            }
            res => panic!("reclaim {p:#x}: {res:?}"),
        });
        assert!(left.len() < before, "reclaim makes no progress: {left:x?}");
    }
    assert_eq!(
        r.w.identity_pool_stats().free,
        SPARE,
        "every cut block merged back"
    );
    assert!(r.w.backend().host().unmapped_pages().is_empty());
    assert_eq!(r.stat(Stat::MappedPages), 0);
    assert_eq!(r.stat(Stat::DonatedPages), 0);
    assert_eq!(r.stat(Stat::DomainsInUse), 0);
    assert_eq!(r.stat(Stat::AttachedSids), 0);
    assert_eq!(
        (r.stat(Stat::PoolFreePages), r.stat(Stat::PoolTotalPages)),
        baseline,
        "pool not back to its start values"
    );
    for p in (RAM + HYP_SIZE..RAM + RAM_SIZE).step_by(K4 as usize) {
        assert_eq!(
            r.w.ownership().state(p),
            PageState::Host {
                kind: MemKind::Ram,
                count: 0
            }
        );
    }
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn run(seed: u64, iters: u64) -> Tally {
    // Odd seeds: an SMMU without BBML2, so block splits are break-before-make (the fake faults a walk that
    // meets a table under a cached block, which the model's DMA checks would catch, and counts TLB conflicts).
    let bbml = if seed % 2 == 1 { 0 } else { 2 };
    let r = Rig::new(bbml);
    let baseline = (r.stat(Stat::PoolFreePages), r.stat(Stat::PoolTotalPages));
    let mut m = Model {
        pool_base: baseline.1,
        ..Model::default()
    };
    let mut rng = Rng(seed);
    let mut t = Tally::default();
    for i in 0..iters {
        step(&r, &mut m, &mut rng, &mut t);
        if i % 64 == 63 {
            check(&r, &m, &mut rng, &mut t);
        }
    }
    check(&r, &m, &mut rng, &mut t);
    teardown(&r, &mut m, baseline, &mut t);
    let conflicts = r.w.backend().with_smmu(|s| s.regs_mut().tlb_conflicts());
    assert_eq!(conflicts, 0, "seed {seed}: TLB conflicts with BBML {bbml}");
    t
}

#[test]
fn hostile_call_sequences_match_model() {
    let iters = env("WARDEN_FUZZ_ITERS", 2500);
    let seeds: Vec<u64> = match std::env::var("WARDEN_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(s) => vec![s],
        None => {
            let base = env("WARDEN_FUZZ_BASE", 0x5741_5244_454e);
            (0..env("WARDEN_FUZZ_RUNS", 4)).map(|i| base + i).collect()
        }
    };
    let mut total = Tally::default();
    for seed in seeds {
        eprintln!("fuzz: seed {seed} ({iters} calls; replay with WARDEN_FUZZ_SEED={seed})");
        let t = run(seed, iters);
        total.calls += t.calls;
        total.dma_checks += t.dma_checks;
        total.full_checks += t.full_checks;
        total.identity_tables += t.identity_tables;
        total.busy_retries += t.busy_retries;
        for (k, v) in t.ok {
            *total.ok.entry(k).or_default() += v;
        }
        for (k, v) in t.why {
            *total.why.entry(k).or_default() += v;
        }
        for (k, v) in t.err {
            *total.err.entry(k).or_default() += v;
        }
    }
    let ok: u64 = total.ok.values().sum();
    eprintln!(
        "FUZZ: {} calls, {} succeeded, {} refused, {} full model checks, {} StreamID DMA checks",
        total.calls,
        ok,
        total.calls - ok,
        total.full_checks,
        total.dma_checks
    );
    eprintln!("FUZZ: ok {:?}", total.ok);
    eprintln!("FUZZ: refused {:?}", total.err);
    eprintln!("FUZZ: refusals by error {:?}", total.why);
    eprintln!(
        "FUZZ: {} full checks with donated host-identity tables, {} BUSY reclaims retried at teardown",
        total.identity_tables, total.busy_retries
    );
    assert!(
        total.identity_tables > 0,
        "the generator never ran host-identity's spare dry"
    );
    // The generator must exercise the successful paths too, not only refusals.
    for f in [
        "alloc",
        "free",
        "attach",
        "detach",
        "map",
        "map_batch",
        "unmap",
        "unmap_batch",
        "donate",
        "reclaim",
    ] {
        assert!(
            total.ok.get(f).copied().unwrap_or(0) > 0,
            "no successful {f}"
        );
    }
}
