//! End to end on the host: [`Warden`] over warden-smmu's real driver, driving its behavioural fake SMMU (QEMU
//! 10's ID registers, command queue, STE and TLB caches, stage-2 walks). Device accesses go through the fake's
//! `translate`, so these tests see what a DMA would see, including stale TLB entries if an invalidation were
//! missing.

use super::*;
use core::cell::RefCell;
use warden_smmu::fake::{FakeMemory, FakeSmmu, Translation};
use warden_smmu::{LeafSize, S2Invalidation, Smmu, Ste, StreamId, Vmid};

/// The pool is the first 256 KiB of the carve-out; the driver's own tables and queues follow it in fake memory.
const POOL: u64 = 64 * PAGE_SIZE;
const EVENT_FLAG_WRITE: u16 = abi::EVENT_FLAG_WRITE as u16;

/// `Backend` over the driver. Page tables live in host memory at synthetic PAs (`Backing`); the fake SMMU
/// reads its own `FakeMemory`, so [`FakeBackend::sync`] copies the pool and donated pages into it before a
/// device access (a coherent SMMU sees memory as it is).
struct FakeBackend {
    smmu: RefCell<Smmu<FakeSmmu, FakeMemory>>,
    mem: FakeMemory,
    host_unmapped: RefCell<BTreeSet<u64>>,
}

fn hw(e: warden_smmu::Error) -> HwError {
    match e {
        warden_smmu::Error::Timeout(_) => HwError::Timeout,
        _ => HwError::Failed,
    }
}

fn ste(config: SteConfig) -> Ste {
    match config {
        SteConfig::Abort => Ste::abort(),
        SteConfig::Translate(c) => Ste::stage2(&warden_smmu::S2Config::new_4k(
            Vmid(c.vmid),
            c.root_pa,
            64 - c.t0sz,
            2 - c.sl0,
            c.ps,
        )),
    }
}

impl Backend for FakeBackend {
    fn install_ste(&self, sid: u32, config: SteConfig) -> Result<(), HwError> {
        self.smmu
            .borrow_mut()
            .write_ste(StreamId(sid), &ste(config))
            .map_err(hw)
    }

    fn install_ste_range(&self, first: u32, count: u32, config: SteConfig) -> Result<(), HwError> {
        self.smmu
            .borrow_mut()
            .write_ste_range(StreamId(first), count, &ste(config))
            .map_err(hw)
    }

    fn invalidate_range(
        &self,
        vmid: u16,
        iova: u64,
        len: u64,
        hint: InvalidateHint,
    ) -> Result<(), HwError> {
        let leaf_size = match hint.leaf_size {
            Some(abi::PGSIZE_4K) => LeafSize::Page4K,
            Some(abi::PGSIZE_2M) => LeafSize::Block2M,
            Some(abi::PGSIZE_1G) => LeafSize::Block1G,
            _ => LeafSize::Mixed,
        };
        let req = S2Invalidation {
            vmid: Vmid(vmid),
            iova,
            size: len,
            leaf_size,
            leaf_only: hint.leaf_only,
        };
        self.smmu.borrow_mut().invalidate_s2(&req).map_err(hw)
    }

    fn invalidate_vmid(&self, vmid: u16) -> Result<(), HwError> {
        self.smmu
            .borrow_mut()
            .invalidate_vmid(Vmid(vmid))
            .map_err(hw)
    }

    fn next_event(&self) -> Option<FaultRecord> {
        let mut smmu = self.smmu.borrow_mut();
        smmu.drain_events();
        smmu.pop_event().map(|e| FaultRecord {
            sid: e.sid.0,
            iova: e.input_addr,
            reason: e.id,
            flags: if e.read { 0 } else { EVENT_FLAG_WRITE }
                | if e.stage2 {
                    abi::EVENT_FLAG_STAGE2 as u16
                } else {
                    0
                }
                | abi::EVENT_FLAG_IOVA_VALID as u16,
        })
    }

    fn host_unmap(&self, pa: u64, len: u64) -> Result<(), HwError> {
        self.host_unmapped
            .borrow_mut()
            .extend((pa..pa + len).step_by(PAGE_SIZE as usize));
        Ok(())
    }

    fn host_map(&self, pa: u64, len: u64) -> Result<(), HwError> {
        let mut s = self.host_unmapped.borrow_mut();
        for p in (pa..pa + len).step_by(PAGE_SIZE as usize) {
            s.remove(&p);
        }
        Ok(())
    }

    fn counters(&self) -> SmmuCounters {
        let c = self.smmu.borrow().counters();
        SmmuCounters {
            commands: c.commands,
            syncs: c.syncs,
            event_overflows: c.evtq_overflows,
        }
    }

    fn range_invalidation(&self) -> bool {
        self.smmu.borrow().features().range_invalidation
    }
}

struct E2e {
    w: Warden<FakeBackend>,
    mem: Backing,
}

impl E2e {
    fn new() -> Self {
        let mem = FakeMemory::new();
        // Fake memory hands out synthetic PAs from 0x4000_0000: the pool first, then whatever the driver takes.
        assert_eq!(mem.alloc(POOL as usize, 4096), RAM);
        let smmu = Smmu::init(
            FakeSmmu::qemu(mem.clone()),
            mem.clone(),
            warden_smmu::Config::default(),
        )
        .unwrap();
        let host_ram = mem.alloc((RAM_SIZE - HYP_SIZE) as usize, 2 << 20);
        assert_eq!(
            host_ram,
            RAM + HYP_SIZE,
            "the driver's tables must fit in the carve-out"
        );
        let backing = Backing::new();
        let ram = [PhysRange {
            base: RAM,
            size: RAM_SIZE,
        }];
        let hyp = [PhysRange {
            base: RAM,
            size: HYP_SIZE,
        }];
        let pool = [PhysRange {
            base: RAM,
            size: POOL,
        }];
        let doorbells = [PhysRange {
            base: DOORBELL,
            size: 0x1_0000,
        }];
        let sids = sids();
        let config = Config {
            ram: &ram,
            hyp: &hyp,
            pool: &pool,
            msi_doorbells: &doorbells,
            sids: &sids,
            max_domains: 8,
            vmid_bits: 16,
            pa_bits: 44,
            max_donated_pages: 256,
            phys_offset: (backing.ptr as u64).wrapping_sub(RAM),
            event_ring: 16,
        };
        let backend = FakeBackend {
            smmu: RefCell::new(smmu),
            mem,
            host_unmapped: RefCell::default(),
        };
        let w = Warden::new(&config, backend).unwrap();
        Self { w, mem: backing }
    }

    /// Copies the pool and donated pages from host memory into the fake's memory.
    fn sync(&self) {
        let b = self.w.backend();
        for page in (RAM..RAM + RAM_SIZE).step_by(PAGE_SIZE as usize) {
            let pool = page < RAM + POOL;
            if !pool && self.w.ownership().state(page) != crate::ownership::PageState::Donated {
                continue;
            }
            for off in (0..PAGE_SIZE).step_by(8) {
                let pa = page + off;
                // SAFETY: `pa - RAM` is inside the 16 MiB backing allocation; nothing writes it concurrently.
                let v = unsafe { (self.mem.ptr.add((pa - RAM) as usize) as *const u64).read() };
                assert!(b.mem.try_write64(pa, v));
            }
        }
    }

    /// A device with StreamID `sid` accesses `iova`.
    fn dma(&self, sid: u32, iova: u64, write: bool) -> Translation {
        self.sync();
        self.w
            .backend()
            .smmu
            .borrow_mut()
            .regs_mut()
            .translate(StreamId(sid), iova, write)
    }

    fn call(&self, f: Function, args: &[u64]) -> Result<u64, Error> {
        let mut a = [0u64; 6];
        a[..args.len()].copy_from_slice(args);
        let r = self.w.handle(f.fid(), a);
        if r[0] as i64 >= 0 {
            Ok(r[1])
        } else {
            Err(Error::from_code(r[0] as i64).unwrap())
        }
    }
}

#[test]
fn host_identity_dma_reaches_host_ram_only() {
    let e = E2e::new();
    assert_eq!(
        e.dma(0x101, host(0x1230), true),
        Translation::Ok(host(0x1230))
    );
    assert_eq!(
        e.dma(0x101, RAM + RAM_SIZE - 4, false),
        Translation::Ok(RAM + RAM_SIZE - 4)
    );
    assert_eq!(
        e.dma(0x101, DOORBELL + 0x40, true),
        Translation::Ok(DOORBELL + 0x40)
    );
    // The carve-out (pool, stream table, queues) is out of reach.
    for pa in [RAM, RAM + POOL, RAM + HYP_SIZE - 8] {
        assert!(
            matches!(e.dma(0x101, pa, true), Translation::Fault(0x10)),
            "{pa:#x}"
        );
    }
    // A StreamID no iommu-map names aborts (the driver's default STE).
    assert!(!matches!(e.dma(0x1ff, host(0), true), Translation::Ok(_)));
}

#[test]
fn paging_domain_dma_and_unmap_invalidation() {
    let e = E2e::new();
    let d = e.call(Function::DomainAlloc, &[0]).unwrap();
    e.call(Function::Attach, &[3, d]).unwrap();
    // Nothing mapped yet: translation fault, recorded and readable by the host.
    assert_eq!(e.dma(3, 0x10_0000, true), Translation::Fault(0x10));
    let r = e.w.handle(Function::ReadEvent.fid(), [0; 6]);
    assert_eq!(
        (r[0], r[1], r[2] & 0xffff_ffff, r[2] >> 32 & 0xff),
        (1, 0x10_0000, 3, 0x10)
    );
    assert_ne!(r[2] >> abi::EVENT_FLAGS_SHIFT & abi::EVENT_FLAG_WRITE, 0);
    assert_eq!(e.w.handle(Function::ReadEvent.fid(), [0; 6])[0], 0);

    e.call(
        Function::MapPages,
        &[d, 0x20_0000, host(0x20_0000), M2, 1, abi::PROT_READ],
    )
    .unwrap();
    e.call(Function::MapPages, &[d, 0x1000, host(0x5000), K4, 2, RW])
        .unwrap();
    assert_eq!(e.dma(3, 0x20_0abc, false), Translation::Ok(host(0x20_0abc)));
    assert_eq!(
        e.dma(3, 0x20_0abc, true),
        Translation::Fault(0x13),
        "read-only mapping"
    );
    assert_eq!(e.dma(3, 0x2008, true), Translation::Ok(host(0x6008)));
    // Another device still in host-identity is unaffected.
    assert_eq!(e.dma(4, 0x2008, true), Translation::Fault(0x10));

    // Unmap: the fake has the translations in its TLB now; after the call they must be gone.
    let before = e.w.backend().counters();
    e.call(Function::UnmapPages, &[d, 0x1000, K4, 2]).unwrap();
    let after = e.w.backend().counters();
    assert_eq!(after.syncs - before.syncs, 1, "one CMD_SYNC per unmap");
    assert_eq!(
        after.commands - before.commands,
        2,
        "one range TLBI + one CMD_SYNC"
    );
    assert_eq!(e.dma(3, 0x2008, true), Translation::Fault(0x10));
    // Half of the 2 MiB block: split, the other half still reachable.
    e.call(Function::UnmapPages, &[d, 0x30_0000, K4, 256])
        .unwrap();
    assert_eq!(e.dma(3, 0x30_0000, false), Translation::Fault(0x10));
    assert_eq!(e.dma(3, 0x2f_f000, false), Translation::Ok(host(0x2f_f000)));

    // Blocked domain: aborts.
    let b = e.call(Function::DomainAlloc, &[1]).unwrap();
    e.call(Function::Attach, &[3, b]).unwrap();
    assert_eq!(e.dma(3, 0x2f_f000, false), Translation::Aborted);
    // Detach: host-identity again; the paging domain can be freed and its VMID is forgotten.
    e.call(Function::Detach, &[3]).unwrap();
    assert_eq!(
        e.dma(3, host(0x2f_f000), false),
        Translation::Ok(host(0x2f_f000))
    );
    e.call(Function::DomainFree, &[d]).unwrap();
    e.call(Function::DomainFree, &[b]).unwrap();
}

#[test]
fn donated_pages_leave_host_identity_and_become_tables() {
    let e = E2e::new();
    let don = host(0x40_0000);
    e.call(Function::Donate, &[don, 32]).unwrap();
    for p in [don, don + 31 * K4] {
        assert_eq!(e.dma(0, p, true), Translation::Fault(0x10), "{p:#x}");
    }
    assert_eq!(
        e.dma(0, don + 32 * K4, true),
        Translation::Ok(don + 32 * K4)
    );
    assert_eq!(e.dma(0, don - 8, true), Translation::Ok(don - 8));
    // Use up the carve-out part of the pool so that donated pages hold live tables, then check the walks.
    let d = e.call(Function::DomainAlloc, &[0]).unwrap();
    e.call(Function::Attach, &[5, d]).unwrap();
    let mut k = 1u64;
    while e
        .call(Function::Stat, &[Stat::DonatedFreePages.value()])
        .unwrap()
        == 32
    {
        e.call(Function::MapPages, &[d, k << 30, host(k * K4), K4, 1, RW])
            .unwrap();
        k += 1;
    }
    for i in 1..k {
        assert_eq!(
            e.dma(5, (i << 30) + 8, true),
            Translation::Ok(host(i * K4) + 8)
        );
    }
    assert_eq!(e.call(Function::Reclaim, &[don, 32]), Err(Error::Busy));
    // Tear down and reclaim: host-identity reaches the pages again.
    for i in 1..k {
        e.call(Function::UnmapPages, &[d, i << 30, K4, 1]).unwrap();
    }
    e.call(Function::Detach, &[5]).unwrap();
    e.call(Function::DomainFree, &[d]).unwrap();
    e.call(Function::Reclaim, &[don, 32]).unwrap();
    assert_eq!(e.dma(0, don, true), Translation::Ok(don));
    assert!(e.w.backend().host_unmapped.borrow().is_empty());
}
