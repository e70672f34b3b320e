//! Dispatcher tests: every error path, a no-panic property over random arguments, and random operation
//! sequences checked against a reference model.

use super::unmap::UNMAP_RUNS;
use super::*;
use alloc::alloc::{Layout, alloc_zeroed, dealloc};
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use proptest::prelude::*;
use std::sync::Mutex as StdMutex;
use std::sync::atomic::AtomicBool;

pub(super) const RAM: u64 = 0x4000_0000;
pub(super) const RAM_SIZE: u64 = 16 << 20;
pub(super) const HYP_SIZE: u64 = 2 << 20;
pub(super) const DOORBELL: u64 = 0x0809_0000;
/// Host-identity's table bound for this RAM layout: root, two L2 tables (GiB 0 for the doorbell, GiB 1 for RAM),
/// one L3 table per 2 MiB block of host RAM (7) and one for the doorbell.
pub(super) const IDENTITY_RESERVE: u64 = 1 + 2 + 7 + 1;
const RW: u64 = abi::PROT_READ | abi::PROT_WRITE;
const K4: u64 = abi::PGSIZE_4K;
const M2: u64 = abi::PGSIZE_2M;

/// A recorded invalidation.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(super) enum Inval {
    Range {
        vmid: u16,
        iova: u64,
        len: u64,
        hint: InvalidateHint,
    },
    Vmid(u16),
}

/// A mock SMMU + host stage-2.
#[derive(Default)]
pub(super) struct Mock {
    pub stes: StdMutex<BTreeMap<u32, SteConfig>>,
    pub ste_writes: AtomicU64,
    pub invals: StdMutex<Vec<Inval>>,
    pub fail_invalidate: AtomicBool,
    pub fail_host: AtomicBool,
    pub events: StdMutex<VecDeque<FaultRecord>>,
    pub host_unmapped: StdMutex<BTreeSet<u64>>,
    /// Asks for break-before-make on block splits (an SMMU without BBML2); off by default, like QEMU's.
    pub bbm: AtomicBool,
}

impl Backend for Mock {
    fn install_ste(&self, sid: u32, config: SteConfig) -> Result<(), HwError> {
        self.ste_writes.fetch_add(1, Ordering::Relaxed);
        self.stes.lock().unwrap().insert(sid, config);
        Ok(())
    }

    fn invalidate_range(
        &self,
        vmid: u16,
        iova: u64,
        len: u64,
        hint: InvalidateHint,
    ) -> Result<(), HwError> {
        if self.fail_invalidate.load(Ordering::Relaxed) {
            return Err(HwError::Timeout);
        }
        self.invals.lock().unwrap().push(Inval::Range {
            vmid,
            iova,
            len,
            hint,
        });
        Ok(())
    }

    fn invalidate_vmid(&self, vmid: u16) -> Result<(), HwError> {
        if self.fail_invalidate.load(Ordering::Relaxed) {
            return Err(HwError::Timeout);
        }
        self.invals.lock().unwrap().push(Inval::Vmid(vmid));
        Ok(())
    }

    fn next_event(&self) -> Option<FaultRecord> {
        self.events.lock().unwrap().pop_front()
    }

    fn break_before_make(&self) -> bool {
        self.bbm.load(Ordering::Relaxed)
    }

    fn host_unmap(&self, pa: u64, len: u64) -> Result<(), HwError> {
        if self.fail_host.load(Ordering::Relaxed) {
            return Err(HwError::Failed);
        }
        let mut s = self.host_unmapped.lock().unwrap();
        for p in (pa..pa + len).step_by(PAGE_SIZE as usize) {
            assert!(s.insert(p), "page {p:#x} unmapped from the host twice");
        }
        Ok(())
    }

    fn host_map(&self, pa: u64, len: u64) -> Result<(), HwError> {
        if self.fail_host.load(Ordering::Relaxed) {
            return Err(HwError::Failed);
        }
        let mut s = self.host_unmapped.lock().unwrap();
        for p in (pa..pa + len).step_by(PAGE_SIZE as usize) {
            assert!(
                s.remove(&p),
                "page {p:#x} mapped back without being unmapped"
            );
        }
        Ok(())
    }

    fn counters(&self) -> SmmuCounters {
        SmmuCounters {
            commands: 7,
            syncs: 3,
            event_overflows: 0,
        }
    }
}

/// Real memory standing in for RAM at fake PA [`RAM`] (the pool writes page tables into it).
pub(super) struct Backing {
    ptr: *mut u8,
    layout: Layout,
}

impl Backing {
    fn new() -> Self {
        let layout = Layout::from_size_align(RAM_SIZE as usize, 4096).unwrap();
        // SAFETY: non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        assert!(!ptr.is_null());
        Self { ptr, layout }
    }
}

impl Drop for Backing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; the Warden using it was dropped first (field order).
        unsafe { dealloc(self.ptr, self.layout) }
    }
}

/// A Warden over the mock, with its backing memory.
pub(super) struct Harness {
    pub w: Warden<Mock>,
    _mem: Backing,
}

pub(super) fn sids() -> [SidRange; 2] {
    [
        SidRange { base: 0, count: 16 },
        SidRange {
            base: 0x100,
            count: 8,
        },
    ]
}

/// `pool_pages` pages of the carve-out (from its start) form the pool.
pub(super) fn harness_with(pool_pages: u64, max_domains: u16, max_donated: usize) -> Harness {
    let mem = Backing::new();
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
        size: pool_pages * PAGE_SIZE,
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
        max_domains,
        vmid_bits: 16,
        pa_bits: 44,
        max_donated_pages: max_donated,
        phys_offset: (mem.ptr as u64).wrapping_sub(RAM),
        event_ring: 4,
    };
    let w = Warden::new(&config, Mock::default()).unwrap();
    Harness { w, _mem: mem }
}

pub(super) fn harness() -> Harness {
    harness_with(256, 8, 1024)
}

fn call(w: &Warden<Mock>, f: Function, args: &[u64]) -> [u64; 4] {
    let mut a = [0u64; 6];
    a[..args.len()].copy_from_slice(args);
    w.handle(f.fid(), a)
}

/// `Ok(x1)` or `Err(error)`.
fn res(w: &Warden<Mock>, f: Function, args: &[u64]) -> Result<u64, Error> {
    let r = call(w, f, args);
    if r[0] as i64 >= 0 {
        Ok(r[1])
    } else {
        Err(Error::from_code(r[0] as i64).expect("undocumented error code"))
    }
}

fn alloc_paging(w: &Warden<Mock>) -> u64 {
    res(w, Function::DomainAlloc, &[0]).unwrap()
}

fn stat(w: &Warden<Mock>, s: Stat) -> u64 {
    res(w, Function::Stat, &[s.value()]).unwrap()
}

/// A host RAM address (above the carve-out).
fn host(off: u64) -> u64 {
    RAM + HYP_SIZE + off
}

#[test]
fn discovery_calls() {
    let h = harness();
    let r = h.w.handle(abi::VENDOR_HYP_CALL_UID, [0; 6]);
    assert_eq!(r, abi::UUID_WORDS.map(u64::from));
    assert_eq!(
        h.w.handle(abi::VENDOR_HYP_REVISION, [0; 6]),
        [1, abi::ABI_VERSION_MINOR.into(), 0, 0]
    );
    let [x0, x1, x2, x3] = call(&h.w, Function::Version, &[]);
    assert_eq!(x0, 0);
    assert_eq!(x1 >> abi::VERSION_MAJOR_SHIFT & 0xffff, 1);
    assert_ne!(x1 >> abi::VERSION_FEATURES_SHIFT & abi::FEAT_EVENTS, 0);
    assert_eq!(x2, abi::PGSIZE_BITMAP);
    let l = abi::Limits::unpack(x3);
    assert_eq!(
        (
            l.max_domains,
            l.iova_bits,
            l.pa_bits,
            l.vmid_bits,
            l.max_donated_pages
        ),
        (8, 39, 44, 16, 1024)
    );
}

#[test]
fn unknown_functions_are_not_supported() {
    let h = harness();
    for fid in [
        0,
        0xC600_00FF,
        0x8600_0005,
        0xC500_0005,
        0x8400_0000,
        u32::MAX,
    ] {
        assert_eq!(
            h.w.handle(fid, [1; 6])[0],
            Error::NotSupported.to_reg(),
            "fid {fid:#x}"
        );
    }
    assert_eq!(stat(&h.w, Stat::ErrorsTotal), 6);
}

#[test]
fn initial_state_is_host_identity() {
    let h = harness();
    let stes = h.w.backend().stes.lock().unwrap().clone();
    assert_eq!(stes.len(), 24);
    let id = h.w.identity_ste();
    assert!(stes.values().all(|s| *s == id));
    let SteConfig::Translate(c) = id else {
        panic!()
    };
    assert_eq!((c.vmid, c.t0sz, c.sl0, c.ps), (1, 25, 1, 4));
    // Host RAM 1:1, hyp memory absent, doorbell mapped.
    assert_eq!(
        res(&h.w, Function::IovaToPhys, &[0, host(0x1234)]),
        Ok(host(0x1234))
    );
    assert_eq!(
        res(&h.w, Function::IovaToPhys, &[0, RAM + RAM_SIZE - 8]),
        Ok(RAM + RAM_SIZE - 8)
    );
    assert_eq!(
        res(&h.w, Function::IovaToPhys, &[0, RAM]),
        Err(Error::NotMapped)
    );
    assert_eq!(
        res(&h.w, Function::IovaToPhys, &[0, RAM + HYP_SIZE - 1]),
        Err(Error::NotMapped)
    );
    assert_eq!(
        res(&h.w, Function::IovaToPhys, &[0, DOORBELL + 0x40]),
        Ok(DOORBELL + 0x40)
    );
    assert_eq!(
        res(&h.w, Function::IovaToPhys, &[0, RAM + RAM_SIZE]),
        Err(Error::NotMapped)
    );
    assert_eq!(
        res(&h.w, Function::IovaToPhys, &[0, 1 << 39]),
        Err(Error::OutOfRangeIova)
    );
    assert_eq!(stat(&h.w, Stat::DomainsInUse), 0);
    assert_eq!(stat(&h.w, Stat::AttachedSids), 0);
}

#[test]
fn domain_alloc_free_errors() {
    let h = harness_with(256, 3, 16);
    let w = &h.w;
    assert_eq!(res(w, Function::DomainAlloc, &[2]), Err(Error::BadKind));
    assert_eq!(
        res(w, Function::DomainAlloc, &[u64::MAX]),
        Err(Error::BadKind)
    );
    let a = alloc_paging(w);
    let b = res(w, Function::DomainAlloc, &[1]).unwrap();
    let c = alloc_paging(w);
    assert_ne!(a, 0);
    assert_eq!(BTreeSet::from([a, b, c]).len(), 3);
    assert_eq!(res(w, Function::DomainAlloc, &[0]), Err(Error::Limit));
    assert_eq!(stat(w, Stat::DomainsInUse), 3);
    assert_eq!(
        res(w, Function::DomainFree, &[0]),
        Err(Error::ImmutableDomain)
    );
    for bad in [1 << 16, 4, 0xffff, 1 << 32, u64::MAX, a ^ (1 << 16)] {
        assert_eq!(
            res(w, Function::DomainFree, &[bad]),
            Err(Error::BadDomain),
            "id {bad:#x}"
        );
    }
    assert_eq!(res(w, Function::DomainFree, &[a]), Ok(0));
    assert_eq!(
        res(w, Function::DomainFree, &[a]),
        Err(Error::BadDomain),
        "double free"
    );
    let a2 = alloc_paging(w);
    assert_ne!(a2, a, "a reused slot gets a new generation");
    assert_eq!(
        res(w, Function::DomainFree, &[a]),
        Err(Error::BadDomain),
        "stale id"
    );
    assert_eq!(
        res(w, Function::Attach, &[1, a]),
        Err(Error::BadDomain),
        "attach to a freed domain"
    );
    // Freeing a paging domain invalidates its VMID.
    let vmid = (a2 & 0xffff) as u16 + 1;
    assert_eq!(res(w, Function::DomainFree, &[a2]), Ok(0));
    assert_eq!(
        w.backend().invals.lock().unwrap().last(),
        Some(&Inval::Vmid(vmid))
    );
    assert_eq!(stat(w, Stat::DomainsInUse), 2);
}

#[test]
fn attach_detach_rules() {
    let h = harness();
    let w = &h.w;
    let d = alloc_paging(w);
    let b = res(w, Function::DomainAlloc, &[1]).unwrap();
    for bad in [16, 0xff, 0x108, 1 << 32, u64::MAX] {
        assert_eq!(
            res(w, Function::Attach, &[bad, d]),
            Err(Error::BadSid),
            "sid {bad:#x}"
        );
        assert_eq!(res(w, Function::Detach, &[bad]), Err(Error::BadSid));
    }
    assert_eq!(
        res(w, Function::Attach, &[3, 1 << 40]),
        Err(Error::BadDomain)
    );
    assert_eq!(
        res(w, Function::Attach, &[3, 7]),
        Err(Error::BadDomain),
        "never allocated"
    );
    let writes = w.backend().ste_writes.load(Ordering::Relaxed);
    assert_eq!(res(w, Function::Attach, &[3, d]), Ok(0));
    assert_eq!(res(w, Function::Attach, &[3, d]), Ok(0), "idempotent");
    assert_eq!(w.backend().ste_writes.load(Ordering::Relaxed), writes + 1);
    assert_eq!(res(w, Function::Attach, &[0x107, b]), Ok(0));
    assert_eq!(w.backend().stes.lock().unwrap()[&0x107], SteConfig::Abort);
    let SteConfig::Translate(c) = w.backend().stes.lock().unwrap()[&3] else {
        panic!()
    };
    assert_eq!(c.vmid, (d & 0xffff) as u16 + 1);
    assert_eq!(stat(w, Stat::AttachedSids), 2);
    assert_eq!(w.sid_domain(3), Some(d));
    assert_eq!(res(w, Function::DomainFree, &[d]), Err(Error::Busy));
    assert_eq!(res(w, Function::DomainFree, &[b]), Err(Error::Busy));
    // Move SID 3 straight to the blocked domain, then back to identity.
    assert_eq!(res(w, Function::Attach, &[3, b]), Ok(0));
    assert_eq!(res(w, Function::DomainFree, &[d]), Ok(0));
    assert_eq!(res(w, Function::Detach, &[3]), Ok(0));
    assert_eq!(res(w, Function::Detach, &[3]), Ok(0));
    assert_eq!(
        res(w, Function::Attach, &[0x107, 0]),
        Ok(0),
        "attach to host-identity = detach"
    );
    assert_eq!(w.backend().stes.lock().unwrap()[&3], w.identity_ste());
    assert_eq!(res(w, Function::DomainFree, &[b]), Ok(0));
    assert_eq!(stat(w, Stat::AttachedSids), 0);
}

#[test]
fn map_argument_errors_change_nothing() {
    let h = harness();
    let w = &h.w;
    let d = alloc_paging(w);
    let b = res(w, Function::DomainAlloc, &[1]).unwrap();
    let pa = host(0);
    let cases: &[(&[u64], Error)] = &[
        (&[d, 0, pa, 0, 1, RW], Error::BadPgsize),
        (&[d, 0, pa, 0x2000, 1, RW], Error::BadPgsize),
        (&[d, 0, pa, 3 << 20, 1, RW], Error::BadPgsize),
        (&[d, 0, pa, u64::MAX, 1, RW], Error::BadPgsize),
        (&[d, 0, pa, K4, 0, RW], Error::BadCount),
        (&[d, 0, pa, K4, 1, 0], Error::BadProt),
        (&[d, 0, pa, K4, 1, abi::PROT_NOEXEC], Error::BadProt),
        (&[d, 0, pa, K4, 1, RW | 1 << 6], Error::BadProt),
        (&[d, 0, pa, K4, 1, RW | 1 << 63], Error::BadProt),
        (
            &[d, 0, pa, K4, 1, RW | abi::PROT_MMIO | abi::PROT_CACHE],
            Error::BadProt,
        ),
        (&[d, 0, pa, K4, 1, RW | abi::PROT_MMIO], Error::BadProt),
        (&[d, 0, DOORBELL, K4, 1, RW], Error::BadProt),
        (&[d, 0x1000, pa, M2, 1, RW], Error::Misaligned),
        (&[d, 0x800, pa, K4, 1, RW], Error::Misaligned),
        (&[d, 0, pa + 0x800, K4, 1, RW], Error::Misaligned),
        (&[d, 0, RAM + 0x1000, M2, 1, RW], Error::Misaligned),
        (&[d, 0, pa, K4, u64::MAX, RW], Error::Overflow),
        (&[d, 0, pa, M2, 1 << 44, RW], Error::Overflow),
        (&[d, !0xfff, pa, K4, 1, RW], Error::Overflow),
        (
            &[d, (1 << 39) - 0x1000, pa, K4, 2, RW],
            Error::OutOfRangeIova,
        ),
        (&[d, 1 << 39, pa, K4, 1, RW], Error::OutOfRangeIova),
        (&[d, 0, !0xfff, K4, 1, RW], Error::Overflow),
        (&[d, 0, (1 << 44) - 0x1000, K4, 2, RW], Error::OutOfRangePa),
        (&[d, 0, 1 << 44, K4, 1, RW], Error::OutOfRangePa),
        (&[d, 0, RAM, K4, 1, RW], Error::HypMemory),
        (
            &[d, 0, RAM + HYP_SIZE - 0x1000, K4, 2, RW],
            Error::HypMemory,
        ),
        (
            &[d, 0, RAM + RAM_SIZE - 0x1000, K4, 2, RW],
            Error::NotHostMemory,
        ),
        (&[d, 0, 0x0900_0000, K4, 1, RW], Error::NotHostMemory),
        (
            &[d, 0, DOORBELL + 0x1_0000, K4, 1, RW | abi::PROT_MMIO],
            Error::NotHostMemory,
        ),
        (&[0, 0, pa, K4, 1, RW], Error::ImmutableDomain),
        (&[b, 0, pa, K4, 1, RW], Error::WrongDomainKind),
        (&[d + 5, 0, pa, K4, 1, RW], Error::BadDomain),
        (&[1 << 32, 0, pa, K4, 1, RW], Error::BadDomain),
    ];
    for (args, err) in cases {
        assert_eq!(res(w, Function::MapPages, args), Err(*err), "map {args:x?}");
    }
    assert_eq!(stat(w, Stat::MappedPages), 0);
    assert_eq!(res(w, Function::IovaToPhys, &[d, 0]), Err(Error::NotMapped));
    assert_eq!(stat(w, Stat::ErrorsTotal), cases.len() as u64 + 1);
    // The doorbell maps with PROT_MMIO.
    assert_eq!(
        res(
            w,
            Function::MapPages,
            &[
                d,
                0x10_0000,
                DOORBELL,
                K4,
                1,
                abi::PROT_WRITE | abi::PROT_MMIO
            ]
        ),
        Ok(K4)
    );
    // Already mapped: nothing changes, count stays.
    assert_eq!(
        res(w, Function::MapPages, &[d, 0, pa, K4, 4, RW]),
        Ok(4 * K4)
    );
    assert_eq!(
        res(w, Function::MapPages, &[d, 0x3000, pa, K4, 2, RW]),
        Err(Error::AlreadyMapped)
    );
    assert_eq!(stat(w, Stat::MappedPages), 5);
    assert_eq!(
        res(w, Function::IovaToPhys, &[d, 0x4000]),
        Err(Error::NotMapped)
    );
}

#[test]
fn map_unmap_roundtrip_with_one_invalidation() {
    let h = harness();
    let w = &h.w;
    let d = alloc_paging(w);
    let vmid = (d & 0xffff) as u16 + 1;
    // 4 MiB at a 2 MiB-aligned IOVA/PA: two 2 MiB blocks.
    assert_eq!(
        res(
            w,
            Function::MapPages,
            &[d, 0x4000_0000, host(0), M2, 2, RW | abi::PROT_CACHE]
        ),
        Ok(4 << 20)
    );
    assert_eq!(
        res(w, Function::IovaToPhys, &[d, 0x4020_0abc]),
        Ok(host(0x20_0abc))
    );
    assert_eq!(stat(w, Stat::MappedPages), 1024);
    assert_eq!(
        w.ownership().state(host(0x1000)),
        crate::ownership::PageState::Host {
            kind: MemKind::Ram,
            count: 1
        }
    );
    w.backend().invals.lock().unwrap().clear();
    assert_eq!(
        res(w, Function::UnmapPages, &[d, 0x4000_0000, M2, 2]),
        Ok(4 << 20)
    );
    let invals = w.backend().invals.lock().unwrap().clone();
    assert_eq!(
        invals,
        [Inval::Range {
            vmid,
            iova: 0x4000_0000,
            len: 4 << 20,
            hint: InvalidateHint {
                leaf_only: true,
                leaf_size: Some(M2)
            }
        }]
    );
    assert_eq!(stat(w, Stat::MappedPages), 0);
    assert_eq!(
        res(w, Function::IovaToPhys, &[d, 0x4000_0000]),
        Err(Error::NotMapped)
    );
    assert_eq!(
        res(w, Function::UnmapPages, &[d, 0x4000_0000, K4, 1]),
        Err(Error::NotMapped)
    );
}

#[test]
fn unmap_errors_and_partial_block() {
    unmap_errors_and_partial_block_with(false);
    unmap_errors_and_partial_block_with(true);
}

/// With `bbm`, the backend asks for break-before-make on block splits.
fn unmap_errors_and_partial_block_with(bbm: bool) {
    let h = harness();
    let w = &h.w;
    w.backend().bbm.store(bbm, Ordering::Relaxed);
    let d = alloc_paging(w);
    let b = res(w, Function::DomainAlloc, &[1]).unwrap();
    res(
        w,
        Function::MapPages,
        &[d, 0x20_0000, host(0x20_0000), M2, 1, RW],
    )
    .unwrap();
    let cases: &[(&[u64], Error)] = &[
        (&[d, 0x20_0000, 0x1000 * 3, 1], Error::BadPgsize),
        (&[d, 0x20_0000, K4, 0], Error::BadCount),
        (&[d, 0x20_0800, K4, 1], Error::Misaligned),
        (&[d, 0x20_1000, M2, 1], Error::Misaligned),
        (&[d, 0x20_0000, M2, u64::MAX], Error::Overflow),
        (&[d, (1 << 39) - M2, M2, 2], Error::OutOfRangeIova),
        (&[d, 0, K4, 1], Error::NotMapped),
        (&[d, 0x1f_f000, K4, 2], Error::NotMapped),
        (&[d, 0x20_0000, K4, 513], Error::NotMapped),
        (&[0, 0x20_0000, K4, 1], Error::ImmutableDomain),
        (&[b, 0x20_0000, K4, 1], Error::WrongDomainKind),
        (&[d + (1 << 16), 0x20_0000, K4, 1], Error::BadDomain),
    ];
    for (args, err) in cases {
        assert_eq!(
            res(w, Function::UnmapPages, args),
            Err(*err),
            "unmap {args:x?}"
        );
    }
    assert_eq!(stat(w, Stat::MappedPages), 512);
    // Half a block: the block is split, exactly the asked half goes.
    assert_eq!(
        res(w, Function::UnmapPages, &[d, 0x30_0000, K4, 256]),
        Ok(1 << 20)
    );
    assert_eq!(
        res(w, Function::IovaToPhys, &[d, 0x2f_f000]),
        Ok(host(0x2f_f000))
    );
    assert_eq!(
        res(w, Function::IovaToPhys, &[d, 0x30_0000]),
        Err(Error::NotMapped)
    );
    assert_eq!(stat(w, Stat::MappedPages), 256);
    let invals = w.backend().invals.lock().unwrap().clone();
    let ranges: Vec<_> = invals
        .iter()
        .map(|i| match *i {
            Inval::Range {
                iova, len, hint, ..
            } => (iova, len, hint.leaf_size),
            Inval::Vmid(_) => panic!("{i:?}"),
        })
        .collect();
    if bbm {
        // Break-before-make: the whole old 2 MiB entry is invalidated before its table is written, then the
        // unmapped half as the 4 KiB pages it is now.
        assert_eq!(
            ranges[ranges.len() - 2..],
            [(0x20_0000, M2, Some(M2)), (0x30_0000, 1 << 20, Some(K4))],
            "the old 2 MiB entry leaves the TLB first"
        );
    } else {
        assert_eq!(
            ranges.last(),
            Some(&(0x30_0000, 1 << 20, Some(M2))),
            "split in place: the old 2 MiB entry is what is cached"
        );
    }
    assert_eq!(
        res(w, Function::UnmapPages, &[d, 0x20_0000, K4, 256]),
        Ok(1 << 20)
    );
    assert_eq!(stat(w, Stat::MappedPages), 0);
}

#[test]
fn fragmented_unmap_invalidates_before_each_batch_of_counts() {
    let h = harness();
    let w = &h.w;
    let d = alloc_paging(w);
    // 100 consecutive IOVA pages backed by every other PA page: 100 discontiguous runs.
    for i in 0..100u64 {
        res(
            w,
            Function::MapPages,
            &[d, 0x40_0000 + i * K4, host(2 * i * K4), K4, 1, RW],
        )
        .unwrap();
    }
    w.backend().invals.lock().unwrap().clear();
    assert_eq!(
        res(w, Function::UnmapPages, &[d, 0x40_0000, K4, 100]),
        Ok(100 * K4)
    );
    let invals = w.backend().invals.lock().unwrap().clone();
    let ranges: Vec<(u64, u64)> = invals
        .iter()
        .map(|i| match *i {
            Inval::Range { iova, len, .. } => (iova, len),
            Inval::Vmid(_) => panic!("unexpected VMID invalidation"),
        })
        .collect();
    assert_eq!(
        ranges,
        [
            (0x40_0000, UNMAP_RUNS as u64 * K4),
            (
                0x40_0000 + UNMAP_RUNS as u64 * K4,
                (100 - UNMAP_RUNS as u64) * K4
            )
        ]
    );
    assert_eq!(stat(w, Stat::MappedPages), 0);
    for i in 0..100u64 {
        assert_eq!(
            res(w, Function::IovaToPhys, &[d, 0x40_0000 + i * K4]),
            Err(Error::NotMapped)
        );
    }
}

#[test]
fn unmap_timeout_keeps_pages_pinned() {
    let h = harness();
    let w = &h.w;
    let d = alloc_paging(w);
    res(w, Function::MapPages, &[d, 0, host(0), K4, 2, RW]).unwrap();
    w.backend().fail_invalidate.store(true, Ordering::Relaxed);
    assert_eq!(
        res(w, Function::UnmapPages, &[d, 0, K4, 2]),
        Err(Error::Timeout)
    );
    assert_eq!(
        stat(w, Stat::MappedPages),
        2,
        "counts are dropped only after a completed invalidation"
    );
    assert_eq!(res(w, Function::Donate, &[host(0), 1]), Err(Error::Busy));
    assert_eq!(res(w, Function::DomainFree, &[d]), Err(Error::Timeout));
    assert_eq!(stat(w, Stat::DomainsInUse), 0);
    // The slot's VMID must be invalidated before it is reused; while that fails, paging allocation fails.
    assert_eq!(res(w, Function::DomainAlloc, &[0]), Err(Error::Timeout));
    w.backend().fail_invalidate.store(false, Ordering::Relaxed);
    let d2 = alloc_paging(w);
    assert_eq!(d2 & 0xffff, d & 0xffff, "same slot, same VMID");
    assert_eq!(
        w.backend().invals.lock().unwrap().last(),
        Some(&Inval::Vmid((d & 0xffff) as u16 + 1))
    );
    assert_eq!(
        stat(w, Stat::MappedPages),
        2,
        "the pages a failed invalidation pinned stay pinned"
    );
}

#[test]
fn nomem_topup_and_reclaim() {
    // A 28-page carve-out pool: host-identity keeps IDENTITY_RESERVE (its worst case) for itself, the host's
    // domains get 17: a domain root, and allocations must leave POOL_RESERVE (16) free.
    let h = harness_with(IDENTITY_RESERVE + 17, 4, 64);
    let w = &h.w;
    let total = stat(w, Stat::PoolTotalPages);
    let free0 = stat(w, Stat::PoolFreePages);
    assert_eq!((total, free0), (17, 17));
    let identity0 = w.identity_pool_stats();
    assert_eq!(
        (identity0.total, identity0.free),
        (IDENTITY_RESERVE as usize, IDENTITY_RESERVE as usize - 4),
        "root, two L2 tables, one L3 table for the doorbell"
    );
    let d = alloc_paging(w);
    assert_eq!(stat(w, Stat::PoolFreePages), 16);
    // A 4 MiB map with the PA 4 KiB off block alignment needs an L2 and two L3 tables: 3 + 16 - 16 short.
    let r = call(
        w,
        Function::MapPages,
        &[d, 0x20_0000, host(0x1000), K4, 1024, RW],
    );
    assert_eq!(r[0], Error::NoMem.to_reg());
    let need = r[1];
    assert_eq!(need, 3);
    assert_eq!(stat(w, Stat::MappedPages), 0, "NOMEM changes nothing");
    // Donation errors.
    let don = host(0x80_0000);
    assert_eq!(res(w, Function::Donate, &[don, 0]), Err(Error::BadCount));
    assert_eq!(res(w, Function::Donate, &[don, 65]), Err(Error::BadCount));
    assert_eq!(
        res(w, Function::Donate, &[don + 8, 1]),
        Err(Error::Misaligned)
    );
    assert_eq!(res(w, Function::Donate, &[RAM, 1]), Err(Error::HypMemory));
    assert_eq!(
        res(w, Function::Donate, &[RAM + RAM_SIZE, 1]),
        Err(Error::NotHostMemory)
    );
    assert_eq!(
        res(w, Function::Donate, &[DOORBELL, 1]),
        Err(Error::NotHostMemory)
    );
    assert_eq!(
        res(w, Function::Donate, &[(1 << 44) - 0x1000, 2]),
        Err(Error::OutOfRangePa)
    );
    assert_eq!(res(w, Function::Donate, &[!0xfff, 2]), Err(Error::Overflow));
    w.backend().fail_host.store(true, Ordering::Relaxed);
    assert_eq!(res(w, Function::Donate, &[don, 4]), Err(Error::HwError));
    w.backend().fail_host.store(false, Ordering::Relaxed);
    assert_eq!(stat(w, Stat::DonatedPages), 0);
    // Top up with `need` pages and a few more (the identity split comes out of identity's own pool).
    assert_eq!(res(w, Function::Donate, &[don, need + 4]), Ok(0));
    assert_eq!(stat(w, Stat::PoolFreePages), 16 + need + 4);
    assert_eq!(w.identity_pool_stats().free, identity0.free - 1);
    assert_eq!(
        res(w, Function::Donate, &[don, 1]),
        Err(Error::DonatedMemory)
    );
    assert_eq!(stat(w, Stat::DonatedPages), need + 4);
    assert_eq!(
        res(w, Function::IovaToPhys, &[0, don]),
        Err(Error::NotMapped),
        "donated pages leave identity"
    );
    assert_eq!(
        res(w, Function::IovaToPhys, &[0, don + (need + 4) * K4]),
        Ok(don + (need + 4) * K4)
    );
    assert!(w.backend().host_unmapped.lock().unwrap().contains(&don));
    assert_eq!(
        res(w, Function::MapPages, &[d, 0, don, K4, 1, RW]),
        Err(Error::DonatedMemory)
    );
    assert_eq!(
        res(
            w,
            Function::MapPages,
            &[d, 0x20_0000, host(0x1000), K4, 1024, RW]
        ),
        Ok(4 << 20)
    );
    // Tables come from carve-out pages first. Donate more, then use up the carve-out part: eight single pages in
    // eight different GiBs need an L2 and an L3 table each.
    let don2 = host(0xa0_0000);
    assert_eq!(res(w, Function::Donate, &[don2, 40]), Ok(0));
    for k in 1..9u64 {
        assert_eq!(
            res(
                w,
                Function::MapPages,
                &[d, k << 30, host(0x40_0000 + k * K4), K4, 1, RW]
            ),
            Ok(K4)
        );
    }
    // The most recently donated pages now hold page tables: reclaiming them is BUSY and changes nothing.
    assert_eq!(res(w, Function::Reclaim, &[don2, 40]), Err(Error::Busy));
    assert_eq!(stat(w, Stat::DonatedPages), need + 4 + 40);
    assert!(stat(w, Stat::DonatedFreePages) < need + 4 + 40);
    assert_eq!(
        res(w, Function::Reclaim, &[host(0), 1]),
        Err(Error::NotDonated)
    );
    assert_eq!(res(w, Function::Reclaim, &[don, 0]), Err(Error::BadCount));
    assert_eq!(
        res(w, Function::Reclaim, &[don + 1, 1]),
        Err(Error::Misaligned)
    );
    // A mapped page cannot be donated.
    assert_eq!(
        res(w, Function::Donate, &[host(0x1000), 1]),
        Err(Error::Busy)
    );
    // Unmap everything and free the domain: every donated page comes back.
    res(w, Function::UnmapPages, &[d, 0x20_0000, K4, 1024]).unwrap();
    for k in 1..9u64 {
        res(w, Function::UnmapPages, &[d, k << 30, K4, 1]).unwrap();
    }
    res(w, Function::DomainFree, &[d]).unwrap();
    assert_eq!(stat(w, Stat::DonatedFreePages), need + 4 + 40);
    assert_eq!(res(w, Function::Reclaim, &[don, need + 4]), Ok(0));
    assert_eq!(res(w, Function::Reclaim, &[don2, 40]), Ok(0));
    assert_eq!(stat(w, Stat::DonatedPages), 0);
    assert_eq!(res(w, Function::IovaToPhys, &[0, don]), Ok(don));
    assert_eq!(
        res(w, Function::IovaToPhys, &[0, don2 + 39 * K4]),
        Ok(don2 + 39 * K4)
    );
    assert!(w.backend().host_unmapped.lock().unwrap().is_empty());
    assert_eq!(stat(w, Stat::PoolTotalPages), total);
    assert_eq!(stat(w, Stat::PoolFreePages), free0);
    assert_eq!(stat(w, Stat::TablePagesInUse), 0);
    // Host-identity keeps the two L3 tables it split blocks into, in its own pool.
    assert_eq!(w.identity_pool_stats().free, identity0.free - 2);
}

/// Top-up after the carve-out part of the pool is exhausted, then donations that split host-identity blocks:
/// host-identity must never keep a donated page as a table, so every donation is reclaimable once the domains
/// are freed, and the pool is back at its baseline.
#[test]
fn identity_splits_never_pin_donated_pages() {
    let h = harness_with(40, 48, 256);
    let w = &h.w;
    let baseline = [
        Stat::PoolTotalPages,
        Stat::PoolFreePages,
        Stat::DonatedPages,
        Stat::DonatedFreePages,
        Stat::TablePagesInUse,
    ]
    .map(|s| stat(w, s));
    // Allocate every domain slot, donating what NOMEM asks for (contiguous pages of host block 3).
    let mut next = host(6 << 20);
    let mut donations = Vec::new();
    let mut doms = Vec::new();
    loop {
        let r = call(w, Function::DomainAlloc, &[0]);
        if r[0] == Error::Limit.to_reg() {
            break;
        }
        if r[0] == Error::NoMem.to_reg() {
            assert_eq!(res(w, Function::Donate, &[next, r[1]]), Ok(0));
            donations.push((next, r[1]));
            next += r[1] * K4;
            continue;
        }
        assert_eq!(r[0], 0);
        doms.push(r[1]);
    }
    assert_eq!(doms.len(), 48);
    assert!(!donations.is_empty(), "the carve-out pool never ran short");
    assert!(
        stat(w, Stat::DonatedFreePages) < stat(w, Stat::DonatedPages),
        "domains hold donated pages: the carve-out part is exhausted"
    );
    // Donations inside distinct 2 MiB blocks each split a host-identity block.
    for b in [1u64, 2, 4, 5] {
        let pa = host((b << 21) + 0x3000);
        assert_eq!(res(w, Function::Donate, &[pa, 1]), Ok(0), "block {b}");
        assert_eq!(
            res(w, Function::IovaToPhys, &[0, pa]),
            Err(Error::NotMapped)
        );
        assert_eq!(res(w, Function::IovaToPhys, &[0, pa + K4]), Ok(pa + K4));
        donations.push((pa, 1));
    }
    for d in doms {
        assert_eq!(res(w, Function::DomainFree, &[d]), Ok(0));
    }
    for &(pa, n) in &donations {
        assert_eq!(
            res(w, Function::Reclaim, &[pa, n]),
            Ok(0),
            "reclaim {pa:#x}+{n}"
        );
        assert_eq!(res(w, Function::IovaToPhys, &[0, pa]), Ok(pa));
    }
    let after = [
        Stat::PoolTotalPages,
        Stat::PoolFreePages,
        Stat::DonatedPages,
        Stat::DonatedFreePages,
        Stat::TablePagesInUse,
    ]
    .map(|s| stat(w, s));
    assert_eq!(after, baseline, "pool stats back at baseline");
    assert!(w.backend().host_unmapped.lock().unwrap().is_empty());
}

#[test]
fn events_ring_and_lost_count() {
    let h = harness();
    let w = &h.w;
    assert_eq!(call(w, Function::ReadEvent, &[]), [0, 0, 0, 0]);
    let rec = |i: u32| FaultRecord {
        sid: 0x100 + i,
        iova: 0x1000 * u64::from(i),
        reason: abi::EVENT_REASON_TRANSLATION as u8,
        flags: (abi::EVENT_FLAG_WRITE | abi::EVENT_FLAG_IOVA_VALID) as u16,
    };
    for i in 0..6 {
        w.backend().events.lock().unwrap().push_back(rec(i));
    }
    // Ring capacity 4: the first call drains all six, keeps four, loses two.
    let r = call(w, Function::ReadEvent, &[]);
    assert_eq!(r[0], 1);
    assert_eq!(r[1], 0);
    assert_eq!(r[2], 0x100 | 0x10 << 32 | 0x11 << 48);
    assert_eq!(r[3], 2);
    for i in 1u32..4 {
        let r = call(w, Function::ReadEvent, &[]);
        assert_eq!(
            (r[0], r[1], r[2] & 0xffff_ffff),
            (1, 0x1000 * u64::from(i), 0x100 + u64::from(i))
        );
    }
    w.record_event(rec(9));
    assert_eq!(call(w, Function::ReadEvent, &[])[2] & 0xffff_ffff, 0x109);
    assert_eq!(call(w, Function::ReadEvent, &[]), [0, 0, 0, 2]);
    assert_eq!(stat(w, Stat::EventsLost), 2);
}

static INTEGRITY: AtomicU64 = AtomicU64::new(0x1234);

fn integrity_hash() -> u64 {
    INTEGRITY.load(Ordering::Relaxed)
}

#[test]
fn integrity_stat() {
    let h = harness();
    let w = &h.w;
    // Without EL2's check: BAD_STAT, nothing else changes.
    assert_eq!(
        res(w, Function::Stat, &[Stat::HypIntegrity.value()]),
        Err(Error::BadStat)
    );
    assert_eq!(
        res(w, Function::Stat, &[Stat::HypIntegrityBoot.value()]),
        Err(Error::BadStat)
    );
    assert_eq!(w.set_integrity_check(integrity_hash), 0x1234);
    assert_eq!(stat(w, Stat::HypIntegrity), 0x1234);
    // The current value is computed on every call; the boot value stays.
    INTEGRITY.store(0x5678, Ordering::Relaxed);
    assert_eq!(stat(w, Stat::HypIntegrity), 0x5678);
    assert_eq!(stat(w, Stat::HypIntegrityBoot), 0x1234);
    // Only the first installation counts.
    assert_eq!(w.set_integrity_check(|| 0), 0x1234);
    assert_eq!(stat(w, Stat::HypIntegrity), 0x5678);
}

#[test]
fn host_traps_unhandled_stat() {
    use crate::trap::{TrapLog, esr::TrapKind};
    static LOG: TrapLog = TrapLog::new();
    let h = harness();
    let w = &h.w;
    assert_eq!(
        res(w, Function::Stat, &[Stat::HostTrapsUnhandled.value()]),
        Err(Error::BadStat)
    );
    w.set_trap_log(&LOG);
    assert_eq!(stat(w, Stat::HostTrapsUnhandled), 0);
    LOG.record(TrapKind::Class(0x01));
    LOG.record(TrapKind::Class(0x01));
    LOG.record(TrapKind::Asynchronous { vector: 11 });
    assert_eq!(stat(w, Stat::HostTrapsUnhandled), 3);
}

#[test]
fn gic_stats() {
    let h = harness();
    let w = &h.w;
    assert_eq!(
        res(w, Function::Stat, &[Stat::GicRefused.value()]),
        Err(Error::BadStat)
    );
    let mapped = stat(w, Stat::MappedPages);
    w.set_gic_stats(|| 42, || 0);
    w.set_gic_stats(|| 7, || 1);
    assert_eq!(stat(w, Stat::GicRefused), 42);
    assert_eq!(stat(w, Stat::MappedPages), mapped);
}

#[test]
fn stats() {
    let h = harness();
    let w = &h.w;
    for &s in Stat::ALL {
        if matches!(
            s,
            Stat::HypIntegrity
                | Stat::HypIntegrityBoot
                | Stat::HostTrapsUnhandled
                | Stat::GicRefused
                | Stat::HypMemoryBytes
        ) {
            continue;
        }
        assert!(res(w, Function::Stat, &[s.value()]).is_ok(), "{s:?}");
    }
    // Set once by EL2, BAD_STAT before.
    assert_eq!(
        res(w, Function::Stat, &[Stat::HypMemoryBytes.value()]),
        Err(Error::BadStat)
    );
    w.set_hyp_memory(70 << 20);
    w.set_hyp_memory(1);
    assert_eq!(stat(w, Stat::HypMemoryBytes), 70 << 20);
    assert_eq!(stat(w, Stat::SmmuCommands), 7);
    assert_eq!(stat(w, Stat::SmmuSyncs), 3);
    assert_eq!(stat(w, Stat::DomainsMax), 8);
    assert_eq!(res(w, Function::Stat, &[999]), Err(Error::BadStat));
    assert_eq!(
        res(w, Function::Stat, &[abi::STAT_CALLS_BASE + 0x0f]),
        Err(Error::BadStat)
    );
    assert_eq!(res(w, Function::Stat, &[u64::MAX]), Err(Error::BadStat));
    let calls = abi::STAT_CALLS_BASE + u64::from(Function::Stat.value());
    let before = res(w, Function::Stat, &[calls]).unwrap();
    assert_eq!(res(w, Function::Stat, &[calls]).unwrap(), before + 1);
    // Host-identity's tables are in its own pool, outside the STAT pool values.
    assert_eq!(stat(w, Stat::TablePagesInUse), 0);
    assert_eq!(stat(w, Stat::PoolTotalPages), 256 - IDENTITY_RESERVE);
    let ip = w.identity_pool_stats();
    assert_eq!(
        (ip.total, ip.total - ip.free),
        (IDENTITY_RESERVE as usize, 4)
    );
    let d = alloc_paging(w);
    assert_eq!(stat(w, Stat::TablePagesInUse), 1);
    assert_eq!(res(w, Function::DomainFree, &[d]), Ok(0));
    assert_eq!(stat(w, Stat::TablePagesInUse), 0);
}

#[test]
fn pool_must_hold_the_identity_reserve() {
    let ram = [PhysRange {
        base: RAM,
        size: RAM_SIZE,
    }];
    let hyp = [PhysRange {
        base: RAM,
        size: HYP_SIZE,
    }];
    let doorbells = [PhysRange {
        base: DOORBELL,
        size: 0x1_0000,
    }];
    let mem = Backing::new();
    let need = IDENTITY_RESERVE as usize + MIN_DOMAIN_POOL_PAGES;
    // Two pool ranges: the reserve is taken from the first pages across them.
    let pool = |pages: u64| {
        [
            PhysRange {
                base: RAM,
                size: 5 * PAGE_SIZE,
            },
            PhysRange {
                base: RAM + 0x10_0000,
                size: (pages - 5) * PAGE_SIZE,
            },
        ]
    };
    let config = |pool| Config {
        ram: &ram,
        hyp: &hyp,
        pool,
        msi_doorbells: &doorbells,
        sids: &[],
        max_domains: 4,
        vmid_bits: 16,
        pa_bits: 44,
        max_donated_pages: 8,
        phys_offset: (mem.ptr as u64).wrapping_sub(RAM),
        event_ring: 1,
    };
    let short = pool(need as u64 - 1);
    assert_eq!(
        identity_reserve_pages(&config(&short)),
        Ok(IDENTITY_RESERVE as usize)
    );
    assert_eq!(
        Warden::new(&config(&short), Mock::default()).err(),
        Some(InitError::PoolTooSmall {
            need,
            have: need - 1
        })
    );
    let exact = pool(need as u64);
    let w = Warden::new(&config(&exact), Mock::default()).unwrap();
    assert_eq!(stat(&w, Stat::PoolTotalPages), MIN_DOMAIN_POOL_PAGES as u64);
    // One domain fits; the next is NOMEM (the reserve for unmap splits stays free).
    let d = alloc_paging(&w);
    assert_eq!(
        call(&w, Function::DomainAlloc, &[0])[..2],
        [Error::NoMem.to_reg(), 1]
    );
    // Host-identity's root is the first pool page.
    let SteConfig::Translate(c) = w.identity_ste() else {
        panic!()
    };
    assert_eq!(c.root_pa, RAM);
    assert_eq!(res(&w, Function::DomainFree, &[d]), Ok(0));
    drop(w);
}

/// The worst case for host-identity (one page donated out of every 2 MiB block of host RAM, then everything
/// reclaimed, twice) fits its reserve exactly; the host's domain pool is untouched.
#[test]
fn identity_reserve_covers_every_split() {
    let h = harness();
    let w = &h.w;
    let pool0 = [Stat::PoolTotalPages, Stat::PoolFreePages].map(|s| stat(w, s));
    for off in [0x1000, 0] {
        let mut blocks = Vec::new();
        let mut b = host(0);
        while b < RAM + RAM_SIZE {
            assert_eq!(res(w, Function::Donate, &[b + off, 1]), Ok(0));
            blocks.push(b + off);
            b += M2;
        }
        assert_eq!(
            w.identity_pool_stats().free,
            0,
            "every table of the bound in use"
        );
        assert_eq!(
            [Stat::PoolTotalPages, Stat::PoolFreePages].map(|s| stat(w, s)),
            [
                pool0[0] + blocks.len() as u64,
                pool0[1] + blocks.len() as u64
            ]
        );
        for pa in blocks {
            assert_eq!(res(w, Function::Reclaim, &[pa, 1]), Ok(0));
        }
    }
    assert_eq!(
        [Stat::PoolTotalPages, Stat::PoolFreePages].map(|s| stat(w, s)),
        pool0
    );
    // A whole 2 MiB block donated: its L3 table goes back to identity's pool; reclaimed, it is a block again.
    assert_eq!(res(w, Function::Donate, &[host(0), 512]), Ok(0));
    assert_eq!(w.identity_pool_stats().free, 1);
    assert_eq!(res(w, Function::Reclaim, &[host(0), 512]), Ok(0));
    assert_eq!(w.identity_pool_stats().free, 1);
    assert_eq!(
        res(w, Function::IovaToPhys, &[0, host(0x1000)]),
        Ok(host(0x1000))
    );
}

#[test]
fn bad_configs_are_refused() {
    let ram = [PhysRange {
        base: RAM,
        size: RAM_SIZE,
    }];
    let base = Config {
        ram: &ram,
        hyp: &[],
        pool: &[],
        msi_doorbells: &[],
        sids: &[],
        max_domains: 4,
        vmid_bits: 16,
        pa_bits: 44,
        max_donated_pages: 0,
        phys_offset: 0,
        event_ring: 1,
    };
    let bad = [
        Config {
            vmid_bits: 12,
            ..base
        },
        Config {
            max_domains: 0,
            ..base
        },
        Config {
            vmid_bits: 8,
            max_domains: 255,
            ..base
        },
        Config {
            pa_bits: 45,
            ..base
        },
        Config {
            event_ring: 0,
            ..base
        },
        Config {
            sids: &[
                SidRange { base: 0, count: 4 },
                SidRange { base: 3, count: 1 },
            ],
            ..base
        },
        Config {
            sids: &[SidRange {
                base: u32::MAX,
                count: 2,
            }],
            ..base
        },
        Config { pool: &ram, ..base },
    ];
    for c in bad {
        assert_eq!(
            Warden::new(&c, Mock::default()).err(),
            Some(InitError::BadConfig),
            "{c:?}"
        );
    }
    // An empty pool cannot even hold the identity reserve (16 MiB of RAM: root, one L2, eight L3).
    assert_eq!(
        Warden::new(&base, Mock::default()).err(),
        Some(InitError::PoolTooSmall {
            need: 10 + MIN_DOMAIN_POOL_PAGES,
            have: 0
        })
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Nothing panics on any arguments, and every x0 is success or a documented error.
    #[test]
    fn random_calls_never_panic(
        calls in prop::collection::vec(
            (0u32..14, prop::array::uniform6(prop_oneof![
                Just(0u64), Just(1), Just(K4), Just(M2), Just(abi::PGSIZE_1G), Just(u64::MAX),
                0u64..64, any::<u64>(), (0u64..4096).prop_map(|p| RAM + p * K4),
                (0u64..256).prop_map(|p| p * K4),
            ])),
            1..40,
        )
    ) {
        let h = harness_with(64, 4, 32);
        let w = &h.w;
        let mut ids = Vec::new();
        for (f, mut args) in calls {
            let fid = if f < 12 { abi::FID_BASE | f } else if f == 12 { abi::VENDOR_HYP_CALL_UID } else { args[5] as u32 };
            // Give calls that take a domain a live one now and then.
            if !ids.is_empty() && args[5] % 3 == 0 {
                args[0] = ids[(args[4] as usize) % ids.len()];
            }
            let r = w.handle(fid, args);
            let x0 = r[0] as i64;
            prop_assert!(x0 >= 0 || Error::from_code(x0).is_some(), "x0 {x0}");
            if fid == Function::DomainAlloc.fid() && x0 == 0 {
                ids.push(r[1]);
            }
        }
    }
}

mod batch;
mod e2e;
mod model;
mod unmap_batch;

static_assertions::assert_impl_all!(Warden<Mock>: Sync, Send);

/// Several CPUs at once: each thread maps and unmaps in its own domain, two threads share one domain (disjoint
/// IOVAs), one thread moves StreamIDs between domains, one donates and reclaims pages the others map. Afterwards
/// the tables, counts and stats must match what each thread knows it left behind.
#[test]
fn concurrent_calls_keep_invariants() {
    let h = harness_with(512, 8, 256);
    let w = &h.w;
    let own: Vec<u64> = (0..3).map(|_| alloc_paging(w)).collect();
    let shared = alloc_paging(w);
    let blocked = res(w, Function::DomainAlloc, &[1]).unwrap();
    let left: Vec<BTreeMap<(u64, u64), u64>> = std::thread::scope(|s| {
        let mut handles = Vec::new();
        for t in 0..5u64 {
            let dom = if t < 3 { own[t as usize] } else { shared };
            handles.push(s.spawn(move || {
                let mut mine = BTreeMap::new();
                let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ t;
                for _ in 0..400 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    // Threads 3 and 4 share a domain: disjoint IOVA halves.
                    let iova = ((t % 2) << 30) + (x % 64) * K4;
                    let pa = host((x >> 8) % 512 * K4);
                    if let std::collections::btree_map::Entry::Occupied(e) = mine.entry((dom, iova))
                    {
                        assert_eq!(res(w, Function::UnmapPages, &[dom, iova, K4, 1]), Ok(K4));
                        e.remove();
                    } else {
                        match res(w, Function::MapPages, &[dom, iova, pa, K4, 1, RW]) {
                            Ok(_) => {
                                mine.insert((dom, iova), pa);
                            }
                            // The donor thread may hold that page right now.
                            Err(Error::DonatedMemory) => {}
                            Err(e) => panic!("map: {e:?}"),
                        }
                    }
                }
                mine
            }));
        }
        s.spawn(move || {
            for i in 0..300u64 {
                let sid = i % 16;
                let target = [own[0], shared, blocked, 0][(i % 4) as usize];
                assert_eq!(res(w, Function::Attach, &[sid, target]), Ok(0));
            }
        });
        s.spawn(move || {
            for i in 0..200u64 {
                let pa = host((i * 7) % 512 * K4);
                match res(w, Function::Donate, &[pa, 1]) {
                    Ok(_) => assert_eq!(res(w, Function::Reclaim, &[pa, 1]).map(|_| ()), Ok(())),
                    Err(Error::Busy) => {}
                    Err(e) => panic!("donate: {e:?}"),
                }
            }
        });
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut counts: BTreeMap<u64, u32> = BTreeMap::new();
    for m in &left {
        for (&(dom, iova), &pa) in m {
            assert_eq!(res(w, Function::IovaToPhys, &[dom, iova]), Ok(pa));
            *counts.entry(pa).or_default() += 1;
        }
    }
    for (&pa, &c) in &counts {
        assert_eq!(
            w.ownership().state(pa),
            crate::ownership::PageState::Host {
                kind: MemKind::Ram,
                count: c
            }
        );
    }
    assert_eq!(
        stat(w, Stat::MappedPages),
        counts.values().map(|&c| u64::from(c)).sum::<u64>()
    );
    assert_eq!(stat(w, Stat::DonatedPages), 0);
    assert!(w.backend().host_unmapped.lock().unwrap().is_empty());
    // Every StreamID's STE matches the domain the table says it is in.
    let stes = w.backend().stes.lock().unwrap().clone();
    for sid in 0..16u32 {
        let dom = w.sid_domain(sid).unwrap();
        let expect = match dom {
            0 => w.identity_ste(),
            d if d == blocked => SteConfig::Abort,
            d => {
                let SteConfig::Translate(c) = stes[&sid] else {
                    panic!("sid {sid}")
                };
                assert_eq!(u64::from(c.vmid), (d & 0xffff) + 1);
                stes[&sid]
            }
        };
        assert_eq!(stes[&sid], expect);
    }
}
