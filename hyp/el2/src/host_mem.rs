//! The live host stage-2 at EL2: one table shared by every CPU, behind one lock, changed at runtime when the
//! host donates pages to the hypervisor (`WARDEN_FN_DONATE`) and reclaims them (`WARDEN_FN_RECLAIM`).
//!
//! - [`HOST_S2`] holds `warden_core::host_s2::HostStage2` in a `spin::Mutex`. Edits
//!   (`HostStage2::unmap_range`/`map_range`) run under it, each first taking the tables a split may need
//!   from the host's domain page pool (`PoolTables`; an empty pool is an error before anything changed,
//!   never a panic, and what the edit did not use goes back). The stage-2 fault handler's re-check
//!   ([`fault_is_transient`]) runs under it too, which is what makes break-before-make safe on a live table: a CPU that touches a block
//!   while another CPU has it broken (a split on donation, or `map_range` merging a table back into its block on
//!   reclaim) faults to EL2, waits for the lock, sees the address translate again and retries the access instead of
//!   getting an external abort.
//! - [`CpuTlb`] is the TLB maintenance after each change (see [`CpuTlb::invalidate`]).
//! - [`El2HostStage2`] is the dispatcher's `HostStage2Ops`. Page contents: the dispatcher's page pool zeroes
//!   a donated page before the hyp uses it (`take_reserved`) and before it is reclaimed (`remove_donated`);
//!   `map` additionally cleans the range to the point of coherency before the host sees it again, so a host
//!   mapping it non-cacheable reads the zeroes, not stale DRAM.

use alloc::sync::Arc;
use core::arch::asm;
use core::sync::atomic::{AtomicBool, Ordering};
use spin::{Mutex, Once};
use warden_abi::PAGE_SIZE;
use warden_core::dispatch::HwError;
use warden_core::domain::PagePool;
use warden_core::host_s2::{HostS2Error, HostS2Tlb, HostStage2, PoolTables};
use warden_core::smmu_backend::HostStage2Ops;
use warden_core::trap::esr::is_translation_fault;
use warden_dt::PhysRange;

use crate::{log, mmu};

/// The host stage-2, built once by the boot CPU and shared by every CPU.
static HOST_S2: Once<Mutex<HostStage2<PoolTables>>> = Once::new();
/// Its root table's address (never changes; read by secondaries without the lock).
static ROOT: Once<u64> = Once::new();

/// Above this many pages one `TLBI VMALLS12E1IS` replaces the per-page `TLBI IPAS2E1IS`.
const TLBI_PAGE_LIMIT: u64 = 512;
/// Set once the domain pool could not give the host stage-2 the tables of an edit (logged the first time only).
static NO_TABLES_LOGGED: AtomicBool = AtomicBool::new(false);

/// The dispatcher's error for a failed edit, logged: `HostS2Error::NoTables` (the domain pool had no page for
/// a split's table, nothing changed) once per boot and answered `NOMEM` (donating pages refills the pool);
/// other failures each time, answered `HW_ERROR`.
fn edit_error(what: &str, pa: u64, len: u64, e: HostS2Error) -> HwError {
    let no_tables = matches!(e, HostS2Error::NoTables(_));
    if !no_tables || !NO_TABLES_LOGGED.swap(true, Ordering::Relaxed) {
        log!("host stage-2: cannot {what} {pa:#x}+{len:#x}: {e}");
    }
    if no_tables {
        HwError::NoMem
    } else {
        HwError::Failed
    }
}

/// Installs the boot CPU's host stage-2 (already activated). Call once.
pub fn install(s2: HostStage2<PoolTables>) {
    ROOT.call_once(|| s2.root_pa());
    HOST_S2.call_once(|| Mutex::new(s2));
}

/// From now on the host stage-2 takes the tables its edits need from `pool` (the host's domain pool, which the
/// host tops up by donating), not from the heap.
pub fn use_pool(pool: Arc<PagePool>) {
    if let Some(s2) = HOST_S2.get() {
        s2.lock().with_source(|s| s.use_pool(pool));
    }
}

/// The root table address for `VTTBR_EL2`, if the host stage-2 exists.
pub fn root_pa() -> Option<u64> {
    ROOT.get().copied()
}

/// Whether `pa` is host RAM the host can reach now (built as host RAM and not donated).
pub fn is_host_ram(pa: u64) -> bool {
    HOST_S2.get().is_some_and(|s2| {
        let s2 = s2.lock();
        s2.is_host_ram(pa) && s2.translate(pa).is_some()
    })
}

/// Whether a host stage-2 abort with syndrome `esr` at `ipa` came from a break-before-make window that has
/// closed: a translation fault on an address that translates now. The caller returns to the host, which
/// retries the access. Takes the host stage-2 lock, so it waits for an edit in progress to finish.
pub fn fault_is_transient(esr: u64, ipa: u64) -> bool {
    if !is_translation_fault(esr) {
        return false;
    }
    HOST_S2
        .get()
        .is_some_and(|s2| s2.lock().translate(ipa).is_some())
}

/// CPU TLB maintenance for the host stage-2 (VMID 0, the VMID in `VTTBR_EL2` whenever the hyp runs).
pub struct CpuTlb;

impl HostS2Tlb for CpuTlb {
    /// `DSB ISHST` (descriptor writes visible to every walker); `TLBI IPAS2E1IS` for each page of `region`
    /// (stage-2 entries, any level, all CPUs of the inner-shareable domain) or one `TLBI VMALLS12E1IS` past
    /// [`TLBI_PAGE_LIMIT`] pages; `DSB ISH`; `TLBI VMALLE1IS` (combined stage-1+2 entries, which an
    /// IPA-based TLBI does not reach); `DSB ISH`; `ISB`.
    fn invalidate(&mut self, region: PhysRange) {
        let pages = region.size / PAGE_SIZE;
        // SAFETY: Barriers.
        unsafe { asm!("dsb ishst", options(nostack, preserves_flags)) };
        if pages > TLBI_PAGE_LIMIT {
            // SAFETY: TLB invalidation of the current VMID (the host's) has no other effect.
            unsafe { asm!("tlbi vmalls12e1is", options(nostack, preserves_flags)) };
        } else {
            let mut ipa = region.base;
            while ipa < region.end() {
                // SAFETY: TLB invalidation by IPA (operand: IPA[47:12]) has no other effect.
                unsafe {
                    asm!("tlbi ipas2e1is, {}", in(reg) ipa >> 12, options(nostack, preserves_flags))
                };
                ipa += PAGE_SIZE;
            }
        }
        // SAFETY: Barriers and TLB invalidation of the current VMID have no other effect.
        unsafe {
            asm!(
                "dsb ish",
                "tlbi vmalle1is",
                "dsb ish",
                "isb",
                options(nostack, preserves_flags)
            )
        };
    }
}

/// The dispatcher's view of the host stage-2: donated pages leave it, reclaimed pages come back.
pub struct El2HostStage2;

impl HostStage2Ops for El2HostStage2 {
    fn unmap(&self, pa: u64, len: u64) -> Result<(), HwError> {
        let Some(s2) = HOST_S2.get() else {
            return Err(HwError::Failed);
        };
        s2.lock()
            .unmap_range(pa, len, &mut CpuTlb)
            .map_err(|e| edit_error("unmap", pa, len, e))
    }

    fn map(&self, pa: u64, len: u64) -> Result<(), HwError> {
        let Some(s2) = HOST_S2.get() else {
            return Err(HwError::Failed);
        };
        let mut s2 = s2.lock();
        // Checked before touching the memory: only host RAM (never the carve-out) is cleaned and mapped.
        if !s2.is_host_ram(pa) || !s2.is_host_ram(pa.saturating_add(len).saturating_sub(1)) {
            return Err(HwError::Failed);
        }
        // The pool zeroed the pages through the hyp's cacheable mapping: push the zeroes to memory.
        mmu::clean_dcache_to_poc(pa, len);
        s2.map_range(pa, len, &mut CpuTlb)
            .map_err(|e| edit_error("map", pa, len, e))
    }
}
