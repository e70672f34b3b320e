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
/// Host-identity's spare level-3 tables in these tests (small, so that donations run it dry).
pub(super) const SPARE: usize = 2;
/// Host-identity's pool for this RAM layout: its boot tables (root, two L2 tables: GiB 0 for the doorbell,
/// GiB 1 for RAM; one L3 table for the doorbell; host RAM is 2 MiB blocks) and the spare.
pub(super) const IDENTITY_RESERVE: u64 = 1 + 2 + 1 + SPARE as u64;
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
            ..SmmuCounters::default()
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
        identity_spare_tables: SPARE,
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
mod concurrency;
mod domains;
mod donate;
mod e2e;
mod events;
mod init;
mod map;
mod model;
mod stat;
mod unmap;
mod unmap_batch;
