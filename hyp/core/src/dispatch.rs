//! Hypercall dispatch: validated request, operation, result registers.
//!
//! [`Warden`] is the hypervisor's DMA state, shared by all CPUs (`Sync`). The EL2 trap handler passes every
//! owner-6 SMCCC call to [`Warden::handle`], which validates every argument, performs the operation and
//! returns `x0..x3`. Nothing in here panics on any argument value (property-tested).
//!
//! [`Warden`] is generic over a [`Backend`]: what it needs from the SMMU driver (STEs, invalidation, events)
//! and from the host stage-2 (donated pages leave it, reclaimed pages return).
//!
//! # Locks and their order
//!
//! Always taken in this order (a path may skip any of them, never go back up):
//! 1. `streams` — StreamID → domain table and per-domain attach counts (attach, detach, free);
//! 2. `alloc` — the free list of domain slots (alloc, free);
//! 3. one domain slot (`slots[i]`, locked through `lock_slot`, which counts contention for `STAT
//!    DOMAIN_LOCK_*`) — a domain's tables; map/unmap/iova_to_phys take only their own domain's lock, so CPUs
//!    working in different domains do not serialise; donate/reclaim take slot 0 (host-identity);
//! 4. the page-table pool lock (inside [`PagePool`], O(1) critical sections; the host-identity domain's own
//!    pool is a second [`PagePool`] at the same place in the order, never taken together with the first);
//! 5. `events` — the fault ring.
//!
//! Page ownership ([`Ownership`]) is lock-free (one atomic per page). [`Backend`] methods are called with
//! locks held and must not call back into [`Warden`]; the host stage-2's lock (EL2, taken by
//! [`Backend::host_unmap`]/[`Backend::host_map`]) sits between the domain slot and the pool: with blocks its
//! edits take and give back pool pages ([`crate::host_s2::PoolTables`]) under it; the SMMU driver's lock
//! (taken by invalidations only to publish `CMDQ_PROD` with a `try_lock`, or on a stalled queue) is innermost.
//!
//! # Two page-table pools
//!
//! The host's domains take tables from one pool: carve-out pages (`Config::pool` after host-identity's pool),
//! then pages the host DONATEs. The host-identity domain (slot 0) takes tables from its own pool, the first
//! [`identity_reserve_pages`] pages of `Config::pool`: its boot tables (host RAM in 2 MiB blocks, never 1 GiB
//! ones, see [`domain::identity_boot_tables`]) and a small spare (`Config::identity_spare_tables`). A donation
//! that cuts a 2 MiB block takes its level-3 table from the spare, else the block's first donated page, which
//! stays out of the host's pool ([`PagePool::hold_donated`]); the reclaim that makes the block whole merges it
//! back and frees the table, and until then RECLAIM of that page is `BUSY`. A donated page is only ever the
//! table of its own block, so after all domains are freed every donated page is reclaimable (the `BUSY` ones
//! after the others). The `STAT` pool values describe the host's pool only.
//!
//! # Unmap ordering
//!
//! Clear PTEs → one range invalidation with its CMD_SYNC ([`Backend::invalidate_range`]) → only then drop the
//! pages' DMA counts and release freed table pages from quarantine. A failed invalidation keeps both pinned.
//! An unmap of 4 KiB pages in level-3 tables it keeps ([`PagingDomain::page_runs`]) frees no table and drops
//! the counts after releasing the domain's lock, still after the invalidation completed: a count that stays
//! up a little longer only makes a racing donation fail with `BUSY`, and the domain's lock is held for less.

mod args;
mod backend;
mod batch;
mod domains;
mod donate;
mod error;
mod events;
mod init;
mod map;
mod stat;
#[cfg(test)]
mod tests;
mod unmap;

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use spin::Mutex;
use warden_abi::{self as abi, DomainKind, Error, Function, PAGE_SIZE, Stat};
use warden_dt::PhysRange;
use warden_smmu::{LeafSize, S2Invalidation, StreamId, Vmid};

use crate::domain::{
    self, DomainError, Geometry, IOVA_BITS, POOL_RESERVE, PagePool, PagingDomain, PoolStats,
};
use crate::lock_stats::LockStats;
use crate::ownership::{MemKind, Ownership, OwnershipError};
use crate::trap::TrapLog;

pub use args::{Descriptors, DomainId, Iova, PageSize, PhysAddr, Prot, StatId};
pub use backend::{Backend, FaultRecord, HwError, SmmuCounters, SteConfig};
pub use error::{CallError, InitError};
pub use init::{
    Config, Hardware, IDENTITY_SPARE_TABLES, MIN_DOMAIN_POOL_PAGES, SidRange,
    identity_reserve_pages,
};

use domains::{AllocState, Slot, SlotKind, Streams};
use error::CallResult;
use events::EventRing;

const FUNCTION_SLOTS: usize = 16;

/// The GIC emulation's counters: (refusals, pinned pages).
type GicStatFns = (fn() -> u64, fn() -> u64);

/// The hypervisor's DMA state: domains, StreamIDs, page ownership, the page-table pool, faults, counters.
pub struct Warden<B: Backend> {
    backend: B,
    own: Ownership,
    /// Tables of the host's domains: carve-out pages, then donated pages.
    pool: Arc<PagePool>,
    /// Tables of the host-identity domain only: carve-out pages, sized for its worst case at boot, so that
    /// donation and reclaim never take a donated page for it (a page it would never give back).
    identity_pool: Arc<PagePool>,
    sid_ranges: Vec<SidRange>,
    streams: Mutex<Streams>,
    alloc: Mutex<AllocState>,
    slots: Vec<Mutex<Slot>>,
    /// Contention on the slot locks, all slots together (`STAT DOMAIN_LOCK_WAITS`/`DOMAIN_LOCK_SPINS`).
    slot_locks: LockStats,
    events: Mutex<EventRing>,
    pa_bits: u8,
    vmid_bits: u8,
    max_domains: u16,
    max_donated: usize,
    calls: [AtomicU64; FUNCTION_SLOTS],
    calls_total: AtomicU64,
    errors_total: AtomicU64,
    invalidations: AtomicU64,
    /// EL2 reads host RAM page `pa` at `pa + phys_offset` (MAP_BATCH descriptors).
    phys_offset: u64,
    /// `STAT HYP_INTEGRITY`: the hash of the hyp's immutable memory (set by EL2) and its value at boot.
    integrity: spin::Once<(fn() -> u64, u64)>,
    /// `STAT HOST_TRAPS_UNHANDLED`: EL2's record of the host exceptions it did not handle.
    trap_log: spin::Once<&'static TrapLog>,
    /// The GIC emulation's counters (once installed): refusals (`STAT GIC_REFUSED`) and pinned pages (left
    /// out of `STAT MAPPED_PAGES`).
    gic_stats: spin::Once<GicStatFns>,
    /// `STAT HYP_MEMORY_BYTES` (set by EL2).
    hyp_memory: spin::Once<u64>,
}

fn pages(len: u64) -> u64 {
    len / PAGE_SIZE
}

impl<B: Backend> Warden<B> {
    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Locks domain slot `i`, counting contention.
    fn lock_slot(&self, i: usize) -> spin::MutexGuard<'_, Slot> {
        self.slot_locks.lock(&self.slots[i])
    }

    /// The page ownership map.
    pub fn ownership(&self) -> &Ownership {
        &self.own
    }

    /// The host's domain page pool (carve-out pages, then donated pages), which the host stage-2 also takes
    /// its split tables from with blocks ([`crate::host_s2::PoolTables`]).
    pub fn page_pool(&self) -> Arc<PagePool> {
        self.pool.clone()
    }

    /// Counters of the host-identity domain's own pool (not part of the `STAT` pool values).
    pub fn identity_pool_stats(&self) -> PoolStats {
        self.identity_pool.stats()
    }

    /// The STE configuration of the host-identity domain.
    pub fn identity_ste(&self) -> SteConfig {
        match &self.lock_slot(0).kind {
            SlotKind::Identity(d) => SteConfig::Translate(d.s2_config(self.pa_bits)),
            _ => SteConfig::Blocked,
        }
    }

    /// The host-identity domain's input size and root level (chosen at boot from the machine, see
    /// [`Geometry::host_identity`]).
    pub fn identity_geometry(&self) -> Geometry {
        match &self.lock_slot(0).kind {
            SlotKind::Identity(d) => d.geometry(),
            _ => Geometry::DOMAIN,
        }
    }

    /// Handles one Warden SMCCC call: `fid` is `w0`, `args` are `x1..x6`; returns `x0..x3`.
    ///
    /// A thin dispatcher: the handlers are `#[inline(never)]`, so that every call (the null hypercall
    /// `VERSION` included) pays for a small frame here, not for the stack and saved registers of all of them
    /// inlined together (issue 13: +24 instructions per call when they were).
    pub fn handle(&self, fid: u32, args: [u64; 6]) -> [u64; 4] {
        match fid {
            abi::VENDOR_HYP_CALL_UID => {
                let w = abi::UUID_WORDS;
                return [w[0].into(), w[1].into(), w[2].into(), w[3].into()];
            }
            abi::VENDOR_HYP_REVISION => {
                return [
                    abi::ABI_VERSION_MAJOR.into(),
                    abi::ABI_VERSION_MINOR.into(),
                    0,
                    0,
                ];
            }
            _ => {}
        }
        self.calls_total.fetch_add(1, Ordering::Relaxed);
        let Some(f) = Function::from_fid(fid) else {
            self.errors_total.fetch_add(1, Ordering::Relaxed);
            return [Error::NotSupported.to_reg(), 0, 0, 0];
        };
        if let Some(c) = self.calls.get(f.value() as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let r = match f {
            // The two calls without arguments to decode are answered here, so that the null hypercall's
            // result goes straight to the return registers (issue 13: through `call`, it took a detour by the
            // stack shared with the decoding arms and a test for READ_EVENT: +8 instructions per call).
            Function::Version => {
                let [r1, r2, r3] = self.version();
                return [abi::SUCCESS as u64, r1, r2, r3];
            }
            Function::ReadEvent => return self.read_event(),
            _ => self.call(f, args),
        };
        match r {
            Ok([r1, r2, r3]) => [abi::SUCCESS as u64, r1, r2, r3],
            Err(e) => {
                self.errors_total.fetch_add(1, Ordering::Relaxed);
                match e {
                    CallError::Abi(e) => [e.to_reg(), 0, 0, 0],
                    CallError::NoMem(n) => [Error::NoMem.to_reg(), n.max(1), 0, 0],
                    CallError::Batch {
                        error,
                        pages,
                        index,
                    } => {
                        let pages = if error == Error::NoMem {
                            pages.max(1)
                        } else {
                            0
                        };
                        [error.to_reg(), pages, index, 0]
                    }
                }
            }
        }
    }

    /// Decodes `args` for `f` into the handler's types, in the order that decides which error a call with several
    /// bad arguments gets (pinned by the tests), and runs the handler.
    fn call(&self, f: Function, args: [u64; 6]) -> CallResult {
        let [a1, a2, a3, a4, a5, a6] = args;
        match f {
            Function::DomainAlloc => {
                self.domain_alloc(DomainKind::from_value(a1).ok_or(Error::BadKind)?)
            }
            Function::DomainFree => self.domain_free(DomainId::from_reg(a1)?),
            Function::Attach | Function::Detach => {
                let (sid, idx) = self.stream(a1)?;
                let id = if f == Function::Attach {
                    DomainId::from_reg(a2)?
                } else {
                    DomainId::HostIdentity
                };
                self.attach(sid, idx, id)
            }
            Function::MapPages => {
                let size = PageSize::from_reg(a4)?;
                let (iova, len) = Iova::range(a2, size, a5)?;
                let prot = Prot::from_reg(a6)?;
                let pa = PhysAddr::range(a3, len, size.bytes(), self.pa_bits)?;
                self.map_pages(DomainId::from_reg(a1)?, iova, pa, len, prot)
            }
            Function::UnmapPages => {
                let (iova, len) = Iova::range(a2, PageSize::from_reg(a3)?, a4)?;
                self.unmap_pages(DomainId::from_reg(a1)?, iova, len)
            }
            Function::IovaToPhys => {
                let iova = Iova::from_reg(a2)?;
                self.iova_to_phys(DomainId::from_reg(a1)?, iova)
            }
            Function::Donate => {
                let (pa, len) = PhysAddr::pages(a1, a2, self.max_donated, self.pa_bits)?;
                self.donate(pa, len)
            }
            Function::Reclaim => {
                let (pa, len) = PhysAddr::pages(a1, a2, self.max_donated, self.pa_bits)?;
                self.reclaim(pa, len)
            }
            Function::Stat => self.stat(StatId::from_reg(a1)?).map(|v| [v, 0, 0]),
            Function::MapBatch => {
                let desc = batch::map_descriptors(a2, a3, self.pa_bits)?;
                let prot = Prot::from_reg(a4).map_err(batch::whole)?;
                self.map_batch(DomainId::from_reg(a1).map_err(batch::whole)?, desc, prot)
            }
            Function::UnmapBatch => {
                let desc = batch::unmap_descriptors(a2, a3, self.pa_bits)?;
                self.unmap_batch(DomainId::from_reg(a1).map_err(batch::whole)?, desc)
            }
            // Never reached: `handle` answers VERSION and READ_EVENT itself (READ_EVENT's x0 is the record
            // count, not SUCCESS).
            Function::Version | Function::ReadEvent => Err(Error::Internal.into()),
        }
    }

    fn version(&self) -> [u64; 3] {
        let mut features =
            abi::FEAT_EVENTS | abi::FEAT_SPLIT_UNMAP | abi::FEAT_MAP_BATCH | abi::FEAT_UNMAP_BATCH;
        if self.backend.range_invalidation() {
            features |= abi::FEAT_RANGE_INVALIDATION;
        }
        let limits = abi::Limits {
            max_domains: self.max_domains,
            iova_bits: IOVA_BITS as u8,
            pa_bits: self.pa_bits,
            vmid_bits: self.vmid_bits,
            max_donated_pages: u32::try_from(self.max_donated).unwrap_or(u32::MAX),
        };
        [
            abi::pack_version(
                abi::ABI_VERSION_MAJOR,
                abi::ABI_VERSION_MINOR,
                features as u32,
            ),
            abi::PGSIZE_BITMAP,
            limits.pack(),
        ]
    }
}
