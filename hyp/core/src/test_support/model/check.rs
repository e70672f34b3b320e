//! [`Model::check`]: everything observable agrees with the model; [`Model::teardown`]: back to the start.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use warden_abi::{self as abi, Error, Function, Stat};
use warden_smmu::fake::Translation;

use super::{Call, Check, Domain, K4, M2, Model};
use crate::dispatch::SteConfig;
use crate::ownership::{MemKind, PageState};
use crate::test_support::Harness;

/// IOVAs the probes of [`Model::check`] land in: the first 8 MiB, where the tests map most.
const PROBE_WINDOW: u64 = 8 << 20;
/// Offset of the byte probed inside a mapped page.
const PROBE_OFFSET: u64 = 0x18;
/// Offset of a device's DMA inside a page.
const DMA_OFFSET: u64 = 0x40;
/// Most fault records drained after the DMA probes (more than the event ring holds).
const DRAIN_MAX: usize = 1024;

/// How [`Model::teardown`] takes the domains' mappings down.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Teardown {
    /// `UNMAP_PAGES` of every page, one by one (as the shim does), then `DOMAIN_FREE`.
    UnmapEach,
    /// `DOMAIN_FREE` of every domain with its mappings.
    FreeMapped,
}

/// What a [`Model::check`] looked at.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct Checked {
    /// StreamIDs whose STE and DMA were checked.
    pub streams: u64,
    /// Donated pages serving as host-identity tables.
    pub identity_tables: usize,
}

/// Did a device's access reach memory?
fn reached(t: Translation) -> bool {
    matches!(t, Translation::Ok(_))
}

impl Model {
    /// The host RAM page probe `p` picks.
    fn host_page(&self, p: u64) -> u64 {
        let host = self.carveout.end..self.ram.end;
        host.start + (p % ((host.end - host.start) / K4)) * K4
    }

    /// Everything observable agrees with the model: `IOVA_TO_PHYS` of every mapped page, of the `probes` (random
    /// numbers: IOVAs in the first 8 MiB of each domain, host RAM pages of host-identity), ownership states,
    /// the STAT counters, the pools (host-identity's spare; donated pages that are host-identity tables stay
    /// out of the page-table pool), the host stage-2, and per valid StreamID its domain, its STE and what its
    /// DMA reaches through the fake SMMU (the model's PA with the mapping's permissions, nothing when blocked,
    /// never the carve-out or a donated page). Then drains the fault records the DMA produced.
    ///
    /// # Panics
    ///
    /// If something disagrees, or `probes` is empty.
    pub fn check(&self, h: &Harness, probes: &[u64]) -> Checked {
        assert!(!probes.is_empty(), "probes");
        let iova_to_phys = |id, iova| h.res(Function::IovaToPhys, &[id, iova]);
        for (&id, d) in &self.live {
            if d.blocked {
                assert_eq!(iova_to_phys(id, 0), Err(Error::WrongDomainKind));
                continue;
            }
            for (&iova, &(pa, _)) in &d.map {
                let got = iova_to_phys(id, iova + PROBE_OFFSET);
                assert_eq!(got, Ok(pa + PROBE_OFFSET), "dom {id:#x} iova {iova:#x}");
            }
            for &p in probes {
                let iova = (p % (PROBE_WINDOW / K4)) * K4;
                let want = self.expect_iova_to_phys(id, iova);
                assert_eq!(iova_to_phys(id, iova), want, "dom {id:#x} probe {iova:#x}");
            }
        }
        let counts = self.counts();
        for (&pa, &count) in &counts {
            let kind = if self.is_host_ram(pa) {
                MemKind::Ram
            } else {
                MemKind::Mmio
            };
            let state = h.w.ownership().state(pa);
            assert_eq!(state, PageState::Host { kind, count }, "{pa:#x}");
        }
        let mapped: u64 = counts.values().map(|&c| u64::from(c)).sum();
        assert_eq!(h.stat(Stat::MappedPages), mapped);
        for &p in &self.donated {
            assert_eq!(h.w.ownership().state(p), PageState::Donated, "{p:#x}");
            assert_eq!(iova_to_phys(0, p), Err(Error::NotMapped), "donated {p:#x}");
        }
        for &p in probes {
            let pa = self.host_page(p);
            if !self.donated.contains(&pa) {
                assert_eq!(iova_to_phys(0, pa), Ok(pa), "identity keeps host RAM");
                let count = counts.get(&pa).copied().unwrap_or(0);
                let state = h.w.ownership().state(pa);
                let kind = MemKind::Ram;
                assert_eq!(state, PageState::Host { kind, count }, "{pa:#x}");
            }
        }
        assert_eq!(h.w.backend().host().unmapped_pages(), self.donated);
        let donated = self.donated.len() as u64;
        assert_eq!(h.stat(Stat::DonatedPages), donated);
        assert_eq!(h.stat(Stat::DomainsInUse), self.live.len() as u64);
        assert_eq!(h.stat(Stat::AttachedSids), self.attached.len() as u64);
        self.check_pools(h);
        let streams = self.check_streams(h, probes);
        // Drain the fault records the DMA produced: each is one record (x0 = 1) or none left (0).
        for _ in 0..DRAIN_MAX {
            match h.call(Function::ReadEvent, &[])[0] {
                1 => {}
                0 => break,
                x0 => panic!("READ_EVENT x0 = {x0:#x}"),
            }
        }
        Checked {
            streams,
            identity_tables: self.identity_tables(),
        }
    }

    /// Host-identity's spare and tables, the page-table pool.
    fn check_pools(&self, h: &Harness) {
        let spare = h.w.identity_pool_stats().free;
        assert_eq!(spare, self.spare, "host-identity's spare");
        for (&b, &t) in &self.cut {
            if let Some(t) = t {
                assert!(
                    self.donated.contains(&t) && (b..b + M2).contains(&t),
                    "table {t:#x}"
                );
            }
        }
        let donated = self.donated.len() as u64;
        let (free, total) = (h.stat(Stat::PoolFreePages), h.stat(Stat::PoolTotalPages));
        assert_eq!(
            total,
            self.baseline.1 + donated - self.identity_tables() as u64,
            "donated pages that are host-identity tables stay out of the pool"
        );
        assert!(free <= total, "pool free {free} > total {total}");
        assert!(h.stat(Stat::DonatedFreePages) <= donated);
    }

    /// Each valid StreamID: its domain, its STE, and what its DMA reaches. Returns how many were checked.
    fn check_streams(&self, h: &Harness, probes: &[u64]) -> u64 {
        let probe = |i: usize| probes[i % probes.len()];
        let forbidden: Vec<u64> = [self.ram.start, self.pool.end, self.carveout.end - 8]
            .into_iter()
            .chain(self.donated.iter().take(8).copied())
            .collect();
        let blocked = h.w.backend().ste_for(SteConfig::Blocked);
        let identity = h.w.backend().ste_for(h.w.identity_ste());
        for (i, &sid) in self.sids.iter().enumerate() {
            let write = probe(i) & 1 == 1;
            let id = self.sid_domain(sid);
            assert_eq!(h.w.sid_domain(sid), Some(id), "SID {sid:#x}");
            let ste =
                h.w.backend()
                    .with_smmu(|s| s.ste(warden_smmu::StreamId(sid)))
                    .expect("StreamID in the stream table");
            let Some(d) = self.live.get(&id) else {
                assert_eq!(ste, identity, "SID {sid:#x} in host-identity");
                for &pa in &forbidden {
                    let t = h.translate(sid, pa, write);
                    assert!(!reached(t), "identity SID {sid:#x} reached {pa:#x}: {t:?}");
                }
                let pa = self.host_page(probe(i + 1)) + ((probe(i + 2) % K4) & !7);
                if !self.donated.contains(&(pa & !(K4 - 1))) {
                    let t = h.translate(sid, pa, write);
                    assert_eq!(t, Translation::Ok(pa), "identity SID {sid:#x}");
                }
                continue;
            };
            if d.blocked {
                assert_eq!(ste, blocked, "SID {sid:#x} in blocked {id:#x}");
                let t = h.translate(sid, probe(i + 1) % PROBE_WINDOW, write);
                assert!(!reached(t), "blocked SID {sid:#x}: {t:?}");
                continue;
            }
            let vmid = ste.s2_config().map(|c| u64::from(c.vmid.0));
            assert_eq!(vmid, Some((id & 0xffff) + 1), "SID {sid:#x} in {id:#x}");
            let mut iovas: Vec<u64> = d.map.keys().copied().take(4).collect();
            iovas.extend((1..5).map(|j| (probe(i + j) % PROBE_WINDOW) & !(K4 - 1)));
            iovas.extend(forbidden.iter().copied());
            for iova in iovas {
                dma_reaches_model(h, sid, d, iova, write);
            }
        }
        self.sids.len() as u64
    }

    /// Detaches every StreamID, takes the mappings down as `how` says, frees every domain and reclaims every
    /// donated page one by one,
    /// the BUSY ones (host-identity tables) again after the others, like the shim's unload; every call as the
    /// model predicts. Then everything must be back at its start: host-identity's spare, the host stage-2,
    /// ownership, the STAT counters and the pool; and the fake SMMU saw no TLB conflict. Returns the reclaims
    /// retried.
    ///
    /// # Panics
    ///
    /// If something disagrees.
    pub fn teardown(&mut self, h: &Harness, how: Teardown) -> u64 {
        for sid in self.sids.clone() {
            let detach = Call::Detach { sid: sid.into() };
            assert_eq!(self.run(h, &detach, Check::Exact), Ok(0));
        }
        let maps: BTreeMap<u64, Vec<u64>> = self
            .live
            .iter()
            .map(|(&id, d)| (id, d.map.keys().copied().collect()))
            .collect();
        for (id, iovas) in maps {
            for iova in iovas.into_iter().filter(|_| how == Teardown::UnmapEach) {
                let (pgsize, count) = (K4, 1);
                let unmap = Call::UnmapPages {
                    id,
                    iova,
                    pgsize,
                    count,
                };
                assert_eq!(self.run(h, &unmap, Check::Exact), Ok(K4));
            }
            let free = Call::DomainFree { id };
            assert_eq!(self.run(h, &free, Check::Exact), Ok(0), "free {id:#x}");
        }
        let mut retries = 0;
        let mut left: Vec<u64> = self.donated.iter().copied().collect();
        while !left.is_empty() {
            let before = left.len();
            left.retain(|&pa| {
                let reclaim = Call::Reclaim { pa, count: 1 };
                let busy = self.run(h, &reclaim, Check::Exact) == Err(Error::Busy);
                retries += u64::from(busy);
                busy
            });
            assert!(left.len() < before, "reclaim makes no progress: {left:x?}");
        }
        let spare = h.w.identity_pool_stats().free;
        assert_eq!(spare, self.spare_tables, "every cut block merged back");
        assert!(h.w.backend().host().unmapped_pages().is_empty());
        for s in [
            Stat::MappedPages,
            Stat::DonatedPages,
            Stat::DomainsInUse,
            Stat::AttachedSids,
            Stat::TablePagesInUse,
        ] {
            assert_eq!(h.stat(s), 0, "{s:?}");
        }
        let pool = (h.stat(Stat::PoolFreePages), h.stat(Stat::PoolTotalPages));
        assert_eq!(pool, self.baseline, "pool not back to its start values");
        for p in (self.carveout.end..self.ram.end).step_by(K4 as usize) {
            let (kind, count) = (MemKind::Ram, 0);
            assert_eq!(h.w.ownership().state(p), PageState::Host { kind, count });
        }
        let conflicts = h.w.backend().with_smmu(|s| s.regs_mut().tlb_conflicts());
        assert_eq!(conflicts, 0, "TLB conflicts");
        retries
    }
}

/// What a device of `sid` in paging domain `d` reaches at `iova` (+[`DMA_OFFSET`]): the model's PA if the
/// mapping's prot allows the access, else nothing.
fn dma_reaches_model(h: &Harness, sid: u32, d: &Domain, iova: u64, write: bool) {
    let t = h.translate(sid, iova + DMA_OFFSET, write);
    let ctx = || alloc::format!("SID {sid:#x} iova {iova:#x} write {write}: {t:?}");
    match d.map.get(&(iova & !(K4 - 1))) {
        Some(&(pa, prot)) => {
            let need = if write {
                abi::PROT_WRITE
            } else {
                abi::PROT_READ
            };
            if prot & need != 0 {
                assert_eq!(t, Translation::Ok(pa + DMA_OFFSET), "{}", ctx());
            } else {
                assert!(!reached(t), "prot {prot:#x}: {}", ctx());
            }
        }
        None => assert!(!reached(t), "unmapped: {}", ctx()),
    }
}
