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
//! 3. one domain slot (`slots[i]`) — a domain's tables; map/unmap/iova_to_phys take only their own domain's
//!    lock, so CPUs working in different domains do not serialise; donate/reclaim take slot 0 (host-identity);
//! 4. the page-table pool lock (inside [`PagePool`], O(1) critical sections; the host-identity domain's own
//!    pool is a second [`PagePool`] at the same place in the order, never taken together with the first);
//! 5. `events` — the fault ring.
//!
//! Page ownership ([`Ownership`]) is lock-free (one atomic per page). [`Backend`] methods are called with
//! locks held and must not call back into [`Warden`]; the SMMU driver's own command-queue lock is innermost.
//!
//! # Two page-table pools
//!
//! The host's domains take tables from one pool: carve-out pages (`Config::pool` after the identity reserve),
//! then pages the host DONATEs. The host-identity domain (slot 0) takes tables only from its own pool, the
//! first [`identity_reserve_pages`] pages of `Config::pool`: the most its tables can ever take (every 2 MiB and
//! 1 GiB block of host RAM and doorbells split). So a donation or reclaim never runs short because of
//! host-identity, and host-identity, which never gives its tables back, never holds a donated page: after all
//! domains are freed, every donated page is reclaimable. The `STAT` pool values describe the host's pool only.
//!
//! # Unmap ordering
//!
//! Clear PTEs → one range invalidation with its CMD_SYNC ([`Backend::invalidate_range`]) → only then drop the
//! pages' DMA counts and release freed table pages from quarantine. A failed invalidation keeps both pinned.
//! An unmap of 4 KiB pages in level-3 tables it keeps ([`PagingDomain::page_runs`]) frees no table and drops
//! the counts after releasing the domain's lock, still after the invalidation completed: a count that stays
//! up a little longer only makes a racing donation fail with `BUSY`, and the domain's lock is held for less.

mod batch;
#[cfg(test)]
mod tests;

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use spin::Mutex;
use warden_abi::{self as abi, DomainKind, Error, Function, Stat};
use warden_dt::PhysRange;

use crate::domain::{
    self, DomainError, IOVA_BITS, PAGE_SIZE, POOL_RESERVE, PagePool, PagingDomain, PoolStats,
    S2Config,
};
use crate::ownership::{MemKind, Ownership, OwnershipError, OwnershipInitError};
use crate::trap::TrapLog;

/// What an STE should do with a StreamID's transactions.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum SteConfig {
    /// Abort every transaction (blocked domains), recording a fault.
    Abort,
    /// Stage-2 translation through a domain.
    Translate(S2Config),
}

/// Hints for a range invalidation.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct InvalidateHint {
    /// Only leaf entries were removed: walk caches need no invalidation.
    pub leaf_only: bool,
    /// Size of every removed leaf if they were all the same (4 KiB, 2 MiB or 1 GiB); `None` if mixed.
    pub leaf_size: Option<u64>,
}

/// A failure reported by the [`Backend`].
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
pub enum HwError {
    /// The SMMU did not complete in time.
    #[error("SMMU timeout")]
    Timeout,
    /// The backend ran out of memory (e.g. host stage-2 tables).
    #[error("backend out of memory")]
    NoMem,
    /// Any other failure.
    #[error("SMMU or stage-2 failure")]
    Failed,
}

/// One fault record, as the SMMU driver decoded it.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct FaultRecord {
    /// StreamID.
    pub sid: u32,
    /// Input address (IOVA), if `flags` has [`abi::EVENT_FLAG_IOVA_VALID`].
    pub iova: u64,
    /// Reason: the SMMUv3 event type (`abi::EVENT_REASON_*`).
    pub reason: u8,
    /// `abi::EVENT_FLAG_*`.
    pub flags: u16,
}

/// Counters the SMMU driver keeps.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct SmmuCounters {
    /// Commands issued.
    pub commands: u64,
    /// CMD_SYNCs issued.
    pub syncs: u64,
    /// Event-queue overflows the SMMU signalled (each lost at least one fault record; the SMMU does not say
    /// how many).
    pub event_overflows: u64,
}

/// What [`Warden`] needs from the hardware. Implemented by EL2 over warden-smmu's driver and the host
/// stage-2, and by mocks in tests. Every method must return (timeouts become [`HwError::Timeout`]).
/// `Warden<B>` is `Sync` (shareable by all CPUs) exactly when `B` is.
pub trait Backend {
    /// Writes the STE of `sid` so that the device never sees a half-written entry, and waits for the SMMU to
    /// observe it (CFGI_STE + CMD_SYNC). While the SMMU is still disabled (boot), the backend may skip commands.
    ///
    /// # Errors
    ///
    /// A timeout or another SMMU failure.
    fn install_ste(&self, sid: u32, config: SteConfig) -> Result<(), HwError>;

    /// Points `count` StreamIDs from `first` at the same configuration (boot: every StreamID of an `iommu-map`
    /// goes to host-identity). The default writes them one by one with [`Backend::install_ste`].
    ///
    /// # Errors
    ///
    /// As [`Backend::install_ste`].
    fn install_ste_range(&self, first: u32, count: u32, config: SteConfig) -> Result<(), HwError> {
        for i in 0..count {
            self.install_ste(first.wrapping_add(i), config)?;
        }
        Ok(())
    }

    /// Invalidates every cached translation of `[iova, iova + len)` in `vmid` (walk caches too unless
    /// `hint.leaf_only`) and waits for completion (one CMD_SYNC).
    ///
    /// # Errors
    ///
    /// A timeout or another SMMU failure.
    fn invalidate_range(
        &self,
        vmid: u16,
        iova: u64,
        len: u64,
        hint: InvalidateHint,
    ) -> Result<(), HwError>;

    /// Invalidates everything cached for `vmid` and waits for completion.
    ///
    /// # Errors
    ///
    /// A timeout or another SMMU failure.
    fn invalidate_vmid(&self, vmid: u16) -> Result<(), HwError>;

    /// The next fault record from the SMMU's event queue, if any.
    fn next_event(&self) -> Option<FaultRecord>;

    /// Removes `[pa, pa + len)` from the host's stage-2 (donation), with the CPU TLB maintenance that needs.
    ///
    /// # Errors
    ///
    /// The host stage-2 could not be changed (nothing changed).
    fn host_unmap(&self, pa: u64, len: u64) -> Result<(), HwError>;

    /// Gives `[pa, pa + len)` back to the host's stage-2 (reclaim).
    ///
    /// # Errors
    ///
    /// The host stage-2 could not be changed (nothing changed).
    fn host_map(&self, pa: u64, len: u64) -> Result<(), HwError>;

    /// The driver's command counters.
    fn counters(&self) -> SmmuCounters {
        SmmuCounters::default()
    }

    /// Whether the SMMU has range invalidation (IDR3.RIL), reported as a feature bit.
    fn range_invalidation(&self) -> bool {
        false
    }

    /// Whether replacing a live block by a table needs break-before-make (the SMMU does not report
    /// `IDR3.BBML` = 2). The default, `true`, is the safe answer for any SMMU.
    fn break_before_make(&self) -> bool {
        true
    }
}

/// A range of StreamIDs from an `iommu-map` (`base .. base + count`).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct SidRange {
    /// First StreamID.
    pub base: u32,
    /// Number of StreamIDs.
    pub count: u32,
}

/// How EL2 configures [`Warden::new`].
#[derive(Clone, Copy, Debug)]
pub struct Config<'a> {
    /// All RAM (DT `memory` nodes), page aligned.
    pub ram: &'a [PhysRange],
    /// Hypervisor memory inside RAM (the carve-out): never mapped for any device.
    pub hyp: &'a [PhysRange],
    /// Part of `hyp` given to page tables. Its first [`identity_reserve_pages`] pages (in the order of
    /// the ranges) are the host-identity domain's own pool; the rest, with donated pages, is the pool of the
    /// host's domains (at least [`MIN_DOMAIN_POOL_PAGES`]).
    pub pool: &'a [PhysRange],
    /// MMIO frames devices may write (MSI doorbells such as the GIC ITS `GITS_TRANSLATER` frame): mapped in the
    /// host-identity domain and mappable with `PROT_MMIO`.
    pub msi_doorbells: &'a [PhysRange],
    /// Valid StreamIDs (from the DT's `iommu-map`s of this SMMU). Non-overlapping.
    pub sids: &'a [SidRange],
    /// Maximum number of allocatable domains (≤ 2^vmid_bits - 2, ≤ 65534).
    pub max_domains: u16,
    /// VMID bits of the SMMU (8 or 16).
    pub vmid_bits: u8,
    /// PA bits the SMMU outputs (its OAS: 32, 36, 40, 42, 44, 48).
    pub pa_bits: u8,
    /// Maximum number of pages the host may have donated at once.
    pub max_donated_pages: usize,
    /// EL2 accesses RAM page `pa` at `pa + phys_offset` (0 for an identity map).
    pub phys_offset: u64,
    /// Capacity of the fault ring.
    pub event_ring: usize,
}

/// Why [`Warden::new`] failed.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
pub enum InitError {
    /// The memory description is inconsistent.
    #[error("memory map: {0}")]
    Ownership(#[from] OwnershipInitError),
    /// Building the host-identity domain failed (a broken invariant: its pool is sized for the worst case).
    #[error("page-table pool: {0}")]
    Domain(#[from] DomainError),
    /// `Config::pool` cannot hold the host-identity reserve plus [`MIN_DOMAIN_POOL_PAGES`].
    #[error("page-table pool of {have} pages, {need} needed")]
    PoolTooSmall {
        /// Pages needed: the host-identity reserve plus [`MIN_DOMAIN_POOL_PAGES`].
        need: usize,
        /// Pages `Config::pool` holds.
        have: usize,
    },
    /// Host RAM or a doorbell lies beyond the IOVA size (2^39), so identity cannot map it.
    #[error("memory at {0:#x} beyond the IOVA size")]
    BeyondIova(u64),
    /// A config value is out of range (`max_domains`, `vmid_bits`, `pa_bits`, SID ranges).
    #[error("bad configuration")]
    BadConfig,
    /// Installing the host-identity STEs failed.
    #[error("STE install: {0}")]
    Hw(#[from] HwError),
}

/// A call's failure: an ABI error, or NOMEM with the number of pages the host should donate.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum CallError {
    /// `x0` = the error.
    Abi(Error),
    /// `x0` = [`Error::NoMem`], `x1` = pages needed.
    NoMem(u64),
    /// A `MAP_BATCH` failure: `x0` = `error`, `x1` = `pages` (pages needed for [`Error::NoMem`], else 0),
    /// `x2` = `index` (the failing descriptor, or [`abi::MAP_BATCH_NO_ENTRY`]).
    Batch {
        /// The error.
        error: Error,
        /// Pages to donate (NOMEM only).
        pages: u64,
        /// Index of the failing descriptor, or [`abi::MAP_BATCH_NO_ENTRY`].
        index: u64,
    },
}

impl From<Error> for CallError {
    fn from(e: Error) -> Self {
        CallError::Abi(e)
    }
}

impl From<HwError> for CallError {
    fn from(e: HwError) -> Self {
        match e {
            HwError::Timeout => Error::Timeout.into(),
            HwError::NoMem => CallError::NoMem(1),
            HwError::Failed => Error::HwError.into(),
        }
    }
}

impl From<DomainError> for CallError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::NoMem(n) => CallError::NoMem(n as u64),
            DomainError::AlreadyMapped(_) => Error::AlreadyMapped.into(),
            DomainError::NotMapped(_) => Error::NotMapped.into(),
            DomainError::Busy(_) => Error::Busy.into(),
            DomainError::Limit => Error::Limit.into(),
            DomainError::Internal => Error::Internal.into(),
        }
    }
}

impl From<OwnershipError> for CallError {
    fn from(e: OwnershipError) -> Self {
        Error::from(e).into()
    }
}

impl From<OwnershipError> for Error {
    fn from(e: OwnershipError) -> Self {
        match e {
            OwnershipError::NotHostMemory(_) => Error::NotHostMemory,
            OwnershipError::HypMemory(_) => Error::HypMemory,
            OwnershipError::DonatedMemory(_) => Error::DonatedMemory,
            OwnershipError::WrongKind(_) => Error::BadProt,
            OwnershipError::Busy(_) => Error::Busy,
            OwnershipError::NotDonated(_) => Error::NotDonated,
            OwnershipError::CountOverflow(_) => Error::CountOverflow,
            OwnershipError::CountUnderflow(_) | OwnershipError::BadRange(_) => Error::Internal,
        }
    }
}

type CallResult = Result<[u64; 3], CallError>;

enum SlotKind {
    Free,
    Identity(PagingDomain),
    Paging(PagingDomain),
    Blocked,
}

struct Slot {
    generation: u16,
    kind: SlotKind,
}

struct Streams {
    /// Slot of each valid StreamID's domain (0 = host-identity), indexed like [`Warden::sid_index`].
    domain: Vec<u16>,
    /// StreamIDs attached to each slot.
    attached: Vec<u32>,
}

struct AllocState {
    free: Vec<u16>,
    in_use: usize,
}

struct EventRing {
    buf: Vec<FaultRecord>,
    head: usize,
    len: usize,
    lost: u64,
}

impl EventRing {
    fn push(&mut self, r: FaultRecord) {
        if self.len == self.buf.len() {
            self.lost += 1;
            return;
        }
        let cap = self.buf.len();
        self.buf[(self.head + self.len) % cap] = r;
        self.len += 1;
    }

    fn pop(&mut self) -> Option<FaultRecord> {
        if self.len == 0 {
            return None;
        }
        let r = self.buf[self.head];
        self.head = (self.head + 1) % self.buf.len();
        self.len -= 1;
        Some(r)
    }
}

const FUNCTION_SLOTS: usize = 16;
/// Records a dirty drain pulls from the SMMU per READ_EVENT call at most (bounded work per call).
const EVENT_DRAIN_MAX: usize = 64;
/// PA runs an unmap collects before it invalidates and drops counts (larger fragmented unmaps take several
/// invalidations).
const UNMAP_RUNS: usize = 64;
/// PA runs the 4 KiB in-place unmap path collects (more take the generic path): enough for a scatter-gather
/// list of 16 discontiguous pages; zeroing the array (a `memset` loop at EL2) costs ~110 instructions at 16 runs,
/// ~400 at [`UNMAP_RUNS`].
const FAST_UNMAP_RUNS: usize = 16;
/// PA runs an `UNMAP_BATCH` collects before it invalidates and drops counts: a flush queue's batch of ranges
/// holds up to this many discontiguous pages between them and still takes one invalidation (4 KiB of EL2 stack).
const BATCH_UNMAP_RUNS: usize = 256;

/// Carve-out pages the host's domains need at least (beyond the host-identity reserve): one domain's root and
/// the reserve allocating calls keep for unmap splits.
pub const MIN_DOMAIN_POOL_PAGES: usize = POOL_RESERVE + 1;

/// Identity domain prot: everything host RAM, coherent.
const IDENTITY_PROT: u64 = abi::PROT_READ | abi::PROT_WRITE | abi::PROT_CACHE;
const DOORBELL_PROT: u64 = abi::PROT_READ | abi::PROT_WRITE | abi::PROT_MMIO | abi::PROT_NOEXEC;

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

/// Splits a domain ID into (slot, generation).
fn split_id(id: u64) -> Option<(usize, u16)> {
    if id > u64::from(u32::MAX) {
        return None;
    }
    Some(((id & 0xffff) as usize, (id >> 16) as u16))
}

fn make_id(slot: usize, generation: u16) -> u64 {
    (u64::from(generation) << 16) | slot as u64
}

fn pages(len: u64) -> u64 {
    len / PAGE_SIZE
}

/// Splits `ranges` (page-aligned parts taken in order) into their first `n` pages and the rest.
fn split_pages(ranges: &[PhysRange], n: usize) -> (Vec<PhysRange>, Vec<PhysRange>) {
    let (mut head, mut tail) = (Vec::new(), Vec::new());
    let mut left = n as u64;
    for r in ranges {
        let base = r.base.next_multiple_of(PAGE_SIZE);
        let count = r.end().saturating_sub(base) / PAGE_SIZE;
        let take = count.min(left);
        left -= take;
        if take > 0 {
            head.push(PhysRange {
                base,
                size: take * PAGE_SIZE,
            });
        }
        if count > take {
            tail.push(PhysRange {
                base: base + take * PAGE_SIZE,
                size: (count - take) * PAGE_SIZE,
            });
        }
    }
    (head, tail)
}

/// The host-identity domain's runs: host RAM (read/write, cacheable) and the MSI doorbells.
fn identity_runs(own: &Ownership) -> Vec<(u64, u64, u64)> {
    let mut runs: Vec<(u64, u64, u64)> = Vec::new();
    own.host_runs(MemKind::Ram, |b, s| runs.push((b, s, IDENTITY_PROT)));
    own.host_runs(MemKind::Mmio, |b, s| runs.push((b, s, DOORBELL_PROT)));
    runs
}

/// Pages of `Config::pool` the host-identity domain keeps for its tables: the most it can ever need
/// ([`domain::identity_table_bound`] over host RAM and the doorbells, i.e. with every block of them split).
/// [`Warden::new`] takes them from the start of `Config::pool`.
///
/// # Errors
///
/// The memory description is inconsistent.
pub fn identity_reserve_pages(config: &Config<'_>) -> Result<usize, InitError> {
    let own = Ownership::new(config.ram, config.msi_doorbells, config.hyp)?;
    Ok(identity_bound(&own))
}

fn identity_bound(own: &Ownership) -> usize {
    let runs: Vec<(u64, u64)> = identity_runs(own).iter().map(|&(b, s, _)| (b, s)).collect();
    domain::identity_table_bound(&runs)
}

/// What one or more clears in a domain removed and an invalidation has not yet covered: the PA runs (contiguous
/// PAs merged, at most `N`), the IOVA span, the leaf levels and whether tables were detached.
/// [`Warden::unmap_segments`] (one range, [`UNMAP_RUNS`]) and `UNMAP_BATCH` (many ranges, one invalidation,
/// [`BATCH_UNMAP_RUNS`]) fill it with [`Cleared::clear`] and empty it with [`Warden::invalidate_cleared`].
struct Cleared<const N: usize> {
    runs: [(u64, u64); N],
    n: usize,
    lo: u64,
    hi: u64,
    level: Option<usize>,
    mixed: bool,
    tables_freed: bool,
}

impl<const N: usize> Cleared<N> {
    fn new() -> Self {
        Self {
            runs: [(0, 0); N],
            n: 0,
            lo: u64::MAX,
            hi: 0,
            level: None,
            mixed: false,
            tables_freed: false,
        }
    }

    /// Empty again (the run array is not cleared: only `runs[..n]` is ever read).
    fn reset(&mut self) {
        self.n = 0;
        self.lo = u64::MAX;
        self.hi = 0;
        self.level = None;
        self.mixed = false;
        self.tables_freed = false;
    }

    /// Records the leaves of `[start, end)` (all mapped) until the run array is full, clears what it recorded,
    /// and returns where it stopped (`end` when it took everything; `start` when the array was full already).
    fn clear(&mut self, d: &mut PagingDomain, start: u64, end: u64) -> Result<u64, CallError> {
        let mut seg_end = end;
        d.leaves(start, end - start, |leaf_iova, pa, leaf_len, leaf_level| {
            // Holes cannot occur (the caller checked the whole range is mapped); skip them anyway.
            let Some(pa) = pa else { return true };
            let n = self.n;
            if n > 0 && self.runs[n - 1].0 + self.runs[n - 1].1 == pa {
                self.runs[n - 1].1 += leaf_len;
            } else if n == N {
                seg_end = leaf_iova;
                return false;
            } else {
                self.runs[n] = (pa, leaf_len);
                self.n += 1;
            }
            match self.level {
                None => self.level = Some(leaf_level),
                Some(l) if l != leaf_level => self.mixed = true,
                Some(_) => {}
            }
            true
        });
        if seg_end > start {
            self.tables_freed |= d.clear(start, seg_end - start)?.tables_freed;
            self.lo = self.lo.min(start);
            self.hi = self.hi.max(seg_end);
        }
        Ok(seg_end)
    }

    /// The IOVA span `[lo, hi)` of everything cleared, if anything was.
    fn span(&self) -> Option<(u64, u64)> {
        (self.lo < self.hi).then_some((self.lo, self.hi))
    }

    /// The PA runs cleared.
    fn runs(&self) -> &[(u64, u64)] {
        &self.runs[..self.n]
    }

    /// The invalidation hint for the span: leaf-only unless a table was detached, the leaf size if all
    /// leaves had one level.
    fn hint(&self) -> InvalidateHint {
        InvalidateHint {
            leaf_only: !self.tables_freed,
            leaf_size: if self.mixed {
                None
            } else {
                self.level.map(domain::granule)
            },
        }
    }
}

impl<B: Backend> Warden<B> {
    /// Builds the state: the ownership map, the two pools, the host-identity domain (all host RAM and the
    /// doorbells 1:1, largest blocks), and points every valid StreamID at host-identity through `backend`.
    ///
    /// # Errors
    ///
    /// See [`InitError`].
    pub fn new(config: &Config<'_>, backend: B) -> Result<Self, InitError> {
        let vmid_limit = 1u32 << config.vmid_bits.min(16);
        if !matches!(config.vmid_bits, 8 | 16)
            || config.max_domains == 0
            || u32::from(config.max_domains) + 2 > vmid_limit
            || config.max_domains == u16::MAX
            || domain::pa_size_encoding(config.pa_bits).is_none()
            || config.pa_bits > 48
            || config.event_ring == 0
        {
            return Err(InitError::BadConfig);
        }
        let mut sid_ranges = config.sids.to_vec();
        sid_ranges.sort_unstable_by_key(|r| r.base);
        let mut total_sids = 0usize;
        for (i, r) in sid_ranges.iter().enumerate() {
            if r.count == 0 || r.base.checked_add(r.count - 1).is_none() {
                return Err(InitError::BadConfig);
            }
            if let Some(next) = sid_ranges.get(i + 1)
                && u64::from(r.base) + u64::from(r.count) > u64::from(next.base)
            {
                return Err(InitError::BadConfig);
            }
            total_sids += r.count as usize;
        }
        for p in config.pool {
            if !config
                .hyp
                .iter()
                .any(|h| h.base <= p.base && p.end() <= h.end())
            {
                return Err(InitError::BadConfig);
            }
        }

        let own = Ownership::new(config.ram, config.msi_doorbells, config.hyp)?;
        let runs = identity_runs(&own);
        if let Some(&(base, _, _)) = runs.iter().find(|&&(b, s, _)| b + s > 1 << IOVA_BITS) {
            return Err(InitError::BeyondIova(base));
        }
        let reserve = identity_bound(&own);
        let have: usize = config
            .pool
            .iter()
            .map(|r| {
                (r.end().saturating_sub(r.base.next_multiple_of(PAGE_SIZE)) / PAGE_SIZE) as usize
            })
            .sum();
        let need = reserve + MIN_DOMAIN_POOL_PAGES;
        if have < need {
            return Err(InitError::PoolTooSmall { need, have });
        }
        let (identity_ranges, domain_ranges) = split_pages(config.pool, reserve);
        let identity_pool = Arc::new(PagePool::new(&identity_ranges, 0, config.phys_offset));
        let pool = Arc::new(PagePool::new(
            &domain_ranges,
            config.max_donated_pages,
            config.phys_offset,
        ));

        // The host-identity domain, slot 0, VMID 1, with tables from its own pool only.
        let mut identity = PagingDomain::new(identity_pool.clone(), 0, 1, 0)?;
        for (base, size, prot) in runs {
            let need = identity.map_need(base, base, size)?;
            identity_pool.reserve(need, 0)?;
            identity.map(base, base, size, domain::attributes(prot))?;
        }

        let mut slots = Vec::with_capacity(usize::from(config.max_domains) + 1);
        slots.push(Mutex::new(Slot {
            generation: 0,
            kind: SlotKind::Identity(identity),
        }));
        for _ in 0..config.max_domains {
            slots.push(Mutex::new(Slot {
                generation: 1,
                kind: SlotKind::Free,
            }));
        }
        let free = (1..=config.max_domains).rev().collect();
        let mut attached = alloc::vec![0u32; usize::from(config.max_domains) + 1];
        attached[0] = total_sids as u32;

        let w = Self {
            backend,
            own,
            pool,
            identity_pool,
            sid_ranges,
            streams: Mutex::new(Streams {
                domain: alloc::vec![0; total_sids],
                attached,
            }),
            alloc: Mutex::new(AllocState { free, in_use: 0 }),
            slots,
            events: Mutex::new(EventRing {
                buf: alloc::vec![FaultRecord::default(); config.event_ring],
                head: 0,
                len: 0,
                lost: 0,
            }),
            pa_bits: config.pa_bits,
            vmid_bits: config.vmid_bits,
            max_domains: config.max_domains,
            max_donated: config.max_donated_pages,
            calls: Default::default(),
            calls_total: AtomicU64::new(0),
            errors_total: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
            phys_offset: config.phys_offset,
            integrity: spin::Once::new(),
            trap_log: spin::Once::new(),
            gic_stats: spin::Once::new(),
            hyp_memory: spin::Once::new(),
        };
        let identity_ste = w.identity_ste();
        for r in &w.sid_ranges {
            w.backend.install_ste_range(r.base, r.count, identity_ste)?;
        }
        Ok(w)
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The page ownership map.
    pub fn ownership(&self) -> &Ownership {
        &self.own
    }

    /// Counters of the host-identity domain's own pool (not part of the `STAT` pool values).
    pub fn identity_pool_stats(&self) -> PoolStats {
        self.identity_pool.stats()
    }

    /// The STE configuration of the host-identity domain.
    pub fn identity_ste(&self) -> SteConfig {
        match &self.slots[0].lock().kind {
            SlotKind::Identity(d) => SteConfig::Translate(d.s2_config(self.pa_bits)),
            _ => SteConfig::Abort,
        }
    }

    /// Records the bytes of RAM the hypervisor keeps (`STAT HYP_MEMORY_BYTES`); only the first call counts.
    pub fn set_hyp_memory(&self, bytes: u64) {
        self.hyp_memory.call_once(|| bytes);
    }

    /// Installs the hash behind `STAT HYP_INTEGRITY` (EL2: the image's text and read-only data and the canary
    /// pages) and records its current value as `HYP_INTEGRITY_BOOT`, which it returns. Only the first call
    /// counts. Without it both stats are `BAD_STAT`.
    pub fn set_integrity_check(&self, hash: fn() -> u64) -> u64 {
        self.integrity.call_once(|| (hash, hash())).1
    }

    /// Installs EL2's record of unhandled host exceptions behind `STAT HOST_TRAPS_UNHANDLED` (without it the
    /// stat is `BAD_STAT`). Only the first call counts.
    pub fn set_trap_log(&self, log: &'static TrapLog) {
        self.trap_log.call_once(|| log);
    }

    /// Installs the GIC emulation's counters: `refused` is `STAT GIC_REFUSED`; `pinned` (pages it holds DMA
    /// counts on) is subtracted from `STAT MAPPED_PAGES`, which counts DMA mappings only. Only the first call
    /// counts. Without it `GIC_REFUSED` is `BAD_STAT`.
    pub fn set_gic_stats(&self, refused: fn() -> u64, pinned: fn() -> u64) {
        self.gic_stats.call_once(|| (refused, pinned));
    }

    /// Records a fault (for EL2's event-queue interrupt handler); counted as lost when the ring is full.
    pub fn record_event(&self, r: FaultRecord) {
        self.events.lock().push(r);
    }

    /// Handles one Warden SMCCC call: `fid` is `w0`, `args` are `x1..x6`; returns `x0..x3`.
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
        let [a1, a2, a3, a4, a5, a6] = args;
        let r = match f {
            Function::Version => Ok(self.version()),
            Function::DomainAlloc => self.domain_alloc(a1),
            Function::DomainFree => self.domain_free(a1),
            Function::Attach => self.attach(a1, a2),
            Function::Detach => self.attach(a1, abi::DOMAIN_ID_HOST_IDENTITY),
            Function::MapPages => self.map_pages(a1, a2, a3, a4, a5, a6),
            Function::UnmapPages => self.unmap_pages(a1, a2, a3, a4),
            Function::IovaToPhys => self.iova_to_phys(a1, a2),
            Function::ReadEvent => return self.read_event(),
            Function::Donate => self.donate(a1, a2),
            Function::Reclaim => self.reclaim(a1, a2),
            Function::Stat => self.stat(a1).map(|v| [v, 0, 0]),
            Function::MapBatch => self.map_batch(a1, a2, a3, a4),
            Function::UnmapBatch => self.unmap_batch(a1, a2, a3),
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

    /// Index of a valid StreamID in `Streams::domain`.
    fn sid_index(&self, sid: u64) -> Option<usize> {
        let sid = u32::try_from(sid).ok()?;
        let mut offset = 0usize;
        for r in &self.sid_ranges {
            if sid >= r.base && sid - r.base < r.count {
                return Some(offset + (sid - r.base) as usize);
            }
            offset += r.count as usize;
        }
        None
    }

    /// The slot index of a live, allocatable (non-identity) domain ID; checks happen again under the slot lock.
    fn slot_of(&self, id: u64) -> Result<(usize, u16), Error> {
        if id == abi::DOMAIN_ID_HOST_IDENTITY {
            return Err(Error::ImmutableDomain);
        }
        let (slot, generation) = split_id(id).ok_or(Error::BadDomain)?;
        if slot == 0 || slot >= self.slots.len() {
            return Err(Error::BadDomain);
        }
        Ok((slot, generation))
    }

    fn domain_alloc(&self, kind: u64) -> CallResult {
        let kind = DomainKind::from_value(kind).ok_or(Error::BadKind)?;
        let mut alloc = self.alloc.lock();
        let slot = *alloc.free.last().ok_or(Error::Limit)?;
        let mut s = self.slots[usize::from(slot)].lock();
        s.kind = match kind {
            DomainKind::Blocked => SlotKind::Blocked,
            DomainKind::Paging => {
                if self.pool.has_quarantine(slot) {
                    // The previous domain of this slot was freed without a confirmed VMID invalidation: the
                    // SMMU may still cache its translations under the VMID this domain would reuse.
                    self.invalidations.fetch_add(1, Ordering::Relaxed);
                    self.backend.invalidate_vmid(slot + 1)?;
                    self.pool.release_quarantine(slot);
                }
                // VMID = slot + 1 (slot 0, host-identity, has VMID 1).
                let d = PagingDomain::new(self.pool.clone(), slot, slot + 1, POOL_RESERVE)?;
                SlotKind::Paging(d)
            }
        };
        alloc.free.pop();
        alloc.in_use += 1;
        Ok([make_id(usize::from(slot), s.generation), 0, 0])
    }

    fn domain_free(&self, id: u64) -> CallResult {
        let (slot, generation) = self.slot_of(id)?;
        let streams = self.streams.lock();
        let mut s = self.slots[slot].lock();
        if s.generation != generation || matches!(s.kind, SlotKind::Free) {
            return Err(Error::BadDomain.into());
        }
        if streams.attached[slot] != 0 {
            return Err(Error::Busy.into());
        }
        let old = core::mem::replace(&mut s.kind, SlotKind::Free);
        s.generation = s.generation.wrapping_add(1).max(1);
        drop(s);
        drop(streams);
        let mut result = Ok([0; 3]);
        if let SlotKind::Paging(d) = old {
            // No STE points at the domain any more; once the SMMU forgot its VMID, no device can reach its
            // mappings: only then drop their DMA counts and release its tables.
            self.invalidations.fetch_add(1, Ordering::Relaxed);
            match self.backend.invalidate_vmid(d.vmid()) {
                Ok(()) => {
                    let mut bad = false;
                    d.leaves(0, 1 << IOVA_BITS, |_, pa, len, _| {
                        if let Some(pa) = pa {
                            bad |= self.own.dec_range(pa, pages(len)).is_err();
                        }
                        true
                    });
                    drop(d);
                    self.pool.release_quarantine(slot as u16);
                    if bad {
                        result = Err(Error::Internal.into());
                    }
                }
                // Counts stay pinned and the tables stay quarantined (until a later invalidation of the same
                // VMID, when the slot is reused, succeeds).
                Err(e) => {
                    drop(d);
                    result = Err(e.into());
                }
            }
        }
        let mut alloc = self.alloc.lock();
        alloc.free.push(slot as u16);
        alloc.in_use -= 1;
        result
    }

    fn attach(&self, sid: u64, id: u64) -> CallResult {
        let idx = self.sid_index(sid).ok_or(Error::BadSid)?;
        let mut streams = self.streams.lock();
        let (slot, config) = if id == abi::DOMAIN_ID_HOST_IDENTITY {
            (0usize, self.identity_ste())
        } else {
            let (slot, generation) = self.slot_of(id)?;
            let s = self.slots[slot].lock();
            if s.generation != generation {
                return Err(Error::BadDomain.into());
            }
            let config = match &s.kind {
                SlotKind::Paging(d) => SteConfig::Translate(d.s2_config(self.pa_bits)),
                SlotKind::Blocked => SteConfig::Abort,
                SlotKind::Free | SlotKind::Identity(_) => return Err(Error::BadDomain.into()),
            };
            (slot, config)
        };
        let current = usize::from(streams.domain[idx]);
        if current == slot {
            return Ok([0; 3]);
        }
        self.backend.install_ste(sid as u32, config)?;
        streams.domain[idx] = slot as u16;
        streams.attached[current] -= 1;
        streams.attached[slot] += 1;
        Ok([0; 3])
    }

    /// Checks pgsize, count, alignment, overflow and IOVA range; returns the length in bytes.
    fn check_iova_range(iova: u64, pgsize: u64, pgcount: u64) -> Result<u64, Error> {
        if !matches!(pgsize, abi::PGSIZE_4K | abi::PGSIZE_2M | abi::PGSIZE_1G) {
            return Err(Error::BadPgsize);
        }
        if pgcount == 0 {
            return Err(Error::BadCount);
        }
        if !iova.is_multiple_of(pgsize) {
            return Err(Error::Misaligned);
        }
        let len = pgsize.checked_mul(pgcount).ok_or(Error::Overflow)?;
        let end = iova.checked_add(len).ok_or(Error::Overflow)?;
        if end > 1 << IOVA_BITS {
            return Err(Error::OutOfRangeIova);
        }
        Ok(len)
    }

    fn check_prot(prot: u64) -> Result<MemKind, Error> {
        if prot & !abi::PROT_ALL != 0
            || prot & (abi::PROT_READ | abi::PROT_WRITE) == 0
            || (prot & abi::PROT_MMIO != 0 && prot & abi::PROT_CACHE != 0)
        {
            return Err(Error::BadProt);
        }
        Ok(if prot & abi::PROT_MMIO != 0 {
            MemKind::Mmio
        } else {
            MemKind::Ram
        })
    }

    fn check_pa_range(&self, pa: u64, len: u64) -> Result<(), Error> {
        let end = pa.checked_add(len).ok_or(Error::Overflow)?;
        if end > 1 << self.pa_bits {
            return Err(Error::OutOfRangePa);
        }
        Ok(())
    }

    fn map_pages(
        &self,
        id: u64,
        iova: u64,
        pa: u64,
        pgsize: u64,
        pgcount: u64,
        prot: u64,
    ) -> CallResult {
        let len = Self::check_iova_range(iova, pgsize, pgcount)?;
        let kind = Self::check_prot(prot)?;
        if !pa.is_multiple_of(pgsize) {
            return Err(Error::Misaligned.into());
        }
        self.check_pa_range(pa, len)?;
        let (slot, generation) = self.slot_of(id)?;
        let mut s = self.slots[slot].lock();
        if s.generation != generation {
            return Err(Error::BadDomain.into());
        }
        let d = match &mut s.kind {
            SlotKind::Paging(d) => d,
            SlotKind::Blocked => return Err(Error::WrongDomainKind.into()),
            SlotKind::Free | SlotKind::Identity(_) => return Err(Error::BadDomain.into()),
        };
        if d.can_map_in_place(iova, len)? {
            // Every page goes into a level-3 table the domain has: no allocation, no generic walk.
            self.own.inc_range(pa, pages(len), kind)?;
            d.map_pages_in_place(iova, pa, len, domain::attributes(prot));
            return Ok([len, 0, 0]);
        }
        let need = d.map_need(iova, pa, len)?;
        self.own.inc_range(pa, pages(len), kind)?;
        if let Err(e) = self.pool.reserve(need, POOL_RESERVE) {
            let _ = self.own.dec_range(pa, pages(len));
            return Err(e.into());
        }
        let before = d.table_pages();
        let r = d.map(iova, pa, len, domain::attributes(prot));
        let used = d.table_pages().saturating_sub(before);
        self.pool.unreserve(need.saturating_sub(used));
        if let Err(e) = r {
            let _ = self.own.dec_range(pa, pages(len));
            return Err(e.into());
        }
        Ok([len, 0, 0])
    }

    fn unmap_pages(&self, id: u64, iova: u64, pgsize: u64, pgcount: u64) -> CallResult {
        let len = Self::check_iova_range(iova, pgsize, pgcount)?;
        let (slot, generation) = self.slot_of(id)?;
        let mut s = self.slots[slot].lock();
        if s.generation != generation {
            return Err(Error::BadDomain.into());
        }
        let d = match &mut s.kind {
            SlotKind::Paging(d) => d,
            SlotKind::Blocked => return Err(Error::WrongDomainKind.into()),
            SlotKind::Free | SlotKind::Identity(_) => return Err(Error::BadDomain.into()),
        };
        let mut runs = [(0u64, 0u64); FAST_UNMAP_RUNS];
        if let Some(n) = d.page_runs(iova, len, &mut runs)? {
            // 4 KiB pages in level-3 tables that stay: clear them, one leaf-only invalidation, and (once the
            // SMMU can no longer reach the pages) drop their counts outside the domain's lock.
            d.clear_pages_in_place(iova, len);
            self.invalidations.fetch_add(1, Ordering::Relaxed);
            let hint = InvalidateHint {
                leaf_only: true,
                leaf_size: Some(PAGE_SIZE),
            };
            // On failure the counts stay (pages pinned: never donatable).
            self.backend.invalidate_range(d.vmid(), iova, len, hint)?;
            drop(s);
            for &(pa, l) in &runs[..n] {
                self.own.dec_range(pa, pages(l)).map_err(Error::from)?;
            }
            return Ok([len, 0, 0]);
        }
        let need = d.unmap_need(iova, len)?;
        self.pool.reserve(need, 0)?;
        let before = d.table_pages();
        let r = self.unmap_segments(d, &self.pool, slot as u16, iova, len, true);
        // Every split happened by now (they are at the ends), so whatever was not used goes back.
        let used = d.table_pages().saturating_sub(before);
        self.pool.unreserve(need.saturating_sub(used));
        r?;
        Ok([len, 0, 0])
    }

    /// Clears `[iova, iova + len)` (all mapped) in `d`, invalidates, then drops DMA counts (if `counted`) and
    /// releases quarantined tables (to `pool`, where `d`'s tables come from), in segments of at most
    /// [`UNMAP_RUNS`] PA runs.
    fn unmap_segments(
        &self,
        d: &mut PagingDomain,
        pool: &PagePool,
        tag: u16,
        iova: u64,
        len: u64,
        counted: bool,
    ) -> Result<(), CallError> {
        let mut acc = Cleared::<UNMAP_RUNS>::new();
        let end = iova + len;
        self.break_cut_blocks(d, iova, len)?;
        let mut start = iova;
        while start < end {
            start = acc.clear(d, start, end)?;
            self.invalidate_cleared(d, pool, tag, &mut acc, counted)?;
        }
        Ok(())
    }

    /// Before an unmap of `[iova, iova + len)` in `d` clears anything: unless the SMMU has BBML2
    /// ([`Backend::break_before_make`]), the blocks the range cuts at its ends go invalid and leave the SMMU's
    /// TLBs (one invalidation with its CMD_SYNC each) before the tables that replace them are written
    /// ([`PagingDomain::break_cut_blocks`]); the caller reserved [`PagingDomain::unmap_need`] pages.
    fn break_cut_blocks(&self, d: &mut PagingDomain, iova: u64, len: u64) -> Result<(), CallError> {
        if !self.backend.break_before_make() {
            return Ok(());
        }
        let vmid = d.vmid();
        d.break_cut_blocks(iova, len, |block, block_len, level| {
            self.invalidations.fetch_add(1, Ordering::Relaxed);
            let hint = InvalidateHint {
                leaf_only: true,
                leaf_size: Some(domain::granule(level)),
            };
            self.backend
                .invalidate_range(vmid, block, block_len, hint)
                .map_err(CallError::from)
        })
    }

    /// The second half of an unmap of what `acc` cleared: one range invalidation of its span with its
    /// CMD_SYNC, and only once that completed, the DMA counts of its PA runs drop (if `counted`) and the tables
    /// it detached leave quarantine. Empties `acc`. On failure the counts stay (pages pinned: never donatable)
    /// and the tables stay quarantined.
    fn invalidate_cleared<const N: usize>(
        &self,
        d: &PagingDomain,
        pool: &PagePool,
        tag: u16,
        acc: &mut Cleared<N>,
        counted: bool,
    ) -> Result<(), CallError> {
        let Some((start, end)) = acc.span() else {
            return Ok(());
        };
        self.invalidations.fetch_add(1, Ordering::Relaxed);
        self.backend
            .invalidate_range(d.vmid(), start, end - start, acc.hint())?;
        if counted {
            for &(pa, l) in acc.runs() {
                self.own.dec_range(pa, pages(l)).map_err(Error::from)?;
            }
        }
        pool.release_quarantine(tag);
        acc.reset();
        Ok(())
    }

    fn iova_to_phys(&self, id: u64, iova: u64) -> CallResult {
        if iova >> IOVA_BITS != 0 {
            return Err(Error::OutOfRangeIova.into());
        }
        let (slot, generation) = if id == abi::DOMAIN_ID_HOST_IDENTITY {
            (0, 0)
        } else {
            self.slot_of(id)?
        };
        let s = self.slots[slot].lock();
        if s.generation != generation {
            return Err(Error::BadDomain.into());
        }
        let pa = match &s.kind {
            SlotKind::Paging(d) | SlotKind::Identity(d) => d.translate(iova),
            SlotKind::Blocked => return Err(Error::WrongDomainKind.into()),
            SlotKind::Free => return Err(Error::BadDomain.into()),
        };
        pa.map(|pa| [pa, 0, 0]).ok_or(Error::NotMapped.into())
    }

    fn read_event(&self) -> [u64; 4] {
        let mut ring = self.events.lock();
        for _ in 0..EVENT_DRAIN_MAX {
            match self.backend.next_event() {
                Some(r) => ring.push(r),
                None => break,
            }
        }
        let lost = ring.lost + self.backend.counters().event_overflows;
        match ring.pop() {
            Some(r) => [
                1,
                r.iova,
                (u64::from(r.sid) << abi::EVENT_SID_SHIFT)
                    | (u64::from(r.reason) << abi::EVENT_REASON_SHIFT)
                    | (u64::from(r.flags) << abi::EVENT_FLAGS_SHIFT),
                lost,
            ],
            None => [0, 0, 0, lost],
        }
    }

    fn check_page_range(&self, pa: u64, count: u64) -> Result<u64, Error> {
        if count == 0 || count > self.max_donated as u64 {
            return Err(Error::BadCount);
        }
        if !pa.is_multiple_of(PAGE_SIZE) {
            return Err(Error::Misaligned);
        }
        let len = count.checked_mul(PAGE_SIZE).ok_or(Error::Overflow)?;
        self.check_pa_range(pa, len)?;
        Ok(len)
    }

    fn with_identity<T>(&self, f: impl FnOnce(&mut PagingDomain) -> T) -> T {
        let mut s = self.slots[0].lock();
        match &mut s.kind {
            SlotKind::Identity(d) => f(d),
            _ => unreachable!("slot 0 is always host-identity"),
        }
    }

    /// The host-identity pool is sized for the worst case, so it runs short only while tables wait in its
    /// quarantine after a failed SMMU invalidation: donating cannot help, so this is `HW_ERROR`, not `NOMEM`.
    fn identity_short(_: DomainError) -> CallError {
        Error::HwError.into()
    }

    fn donate(&self, pa: u64, count: u64) -> CallResult {
        let len = self.check_page_range(pa, count)?;
        self.pool.begin_donation(count as usize)?;
        if let Err(e) = self.own.donate_range(pa, count) {
            self.pool.release_donation(count as usize);
            return Err(e.into());
        }
        if let Err(e) = self.backend.host_unmap(pa, len) {
            let _ = self.own.reclaim_range(pa, count);
            self.pool.release_donation(count as usize);
            return Err(e.into());
        }
        // Err((error, whether host-identity was already changed)).
        let r = self.with_identity(|d| -> Result<(), (CallError, bool)> {
            let need = d.unmap_need(pa, len).map_err(|e| (e.into(), false))?;
            self.identity_pool
                .reserve(need, 0)
                .map_err(|e| (Self::identity_short(e), false))?;
            let before = d.table_pages();
            let r = self.unmap_segments(d, &self.identity_pool, 0, pa, len, false);
            self.identity_pool
                .unreserve(need.saturating_sub(d.table_pages().saturating_sub(before)));
            r.map_err(|e| (e, true))
        });
        match r {
            Ok(()) => {}
            Err((e, false)) => {
                let _ = self.backend.host_map(pa, len);
                let _ = self.own.reclaim_range(pa, count);
                self.pool.release_donation(count as usize);
                return Err(e);
            }
            // An invalidation failed: the pages stay donated (and counted) but outside the pool, never used.
            Err((e, true)) => return Err(e),
        }
        self.pool.finish_donation(pa, count as usize);
        Ok([0; 3])
    }

    fn reclaim(&self, pa: u64, count: u64) -> CallResult {
        let len = self.check_page_range(pa, count)?;
        self.own.check_donated(pa, count)?;
        // Takes the pages off the free list (still counted as donated until the end).
        self.pool.remove_donated(pa, count as usize)?;
        let r = self.with_identity(|d| -> Result<(), CallError> {
            let need = d.map_need(pa, pa, len)?;
            self.identity_pool
                .reserve(need, 0)
                .map_err(Self::identity_short)?;
            if let Err(e) = self.backend.host_map(pa, len) {
                self.identity_pool.unreserve(need);
                return Err(e.into());
            }
            let before = d.table_pages();
            let r = d.map(pa, pa, len, domain::attributes(IDENTITY_PROT));
            self.identity_pool
                .unreserve(need.saturating_sub(d.table_pages().saturating_sub(before)));
            r.map_err(CallError::from)
        });
        if let Err(e) = r {
            self.pool.finish_donation(pa, count as usize);
            return Err(e);
        }
        self.own.reclaim_range(pa, count)?;
        self.pool.release_donation(count as usize);
        Ok([0; 3])
    }

    fn stat(&self, id: u64) -> Result<u64, CallError> {
        if let Some(n) = id.checked_sub(abi::STAT_CALLS_BASE)
            && let Some(c) = usize::try_from(n).ok().and_then(|n| self.calls.get(n))
            && Function::from_value(n as u32).is_some()
        {
            return Ok(c.load(Ordering::Relaxed));
        }
        let stat = Stat::from_value(id).ok_or(Error::BadStat)?;
        let pool = self.pool.stats();
        Ok(match stat {
            Stat::DomainsInUse => self.alloc.lock().in_use as u64,
            Stat::DomainsMax => u64::from(self.max_domains),
            Stat::PoolTotalPages => pool.total as u64,
            Stat::PoolFreePages => pool.free as u64,
            Stat::DonatedPages => self.own.donated_pages(),
            Stat::DonatedFreePages => pool.donated_free as u64,
            Stat::AttachedSids => {
                let s = self.streams.lock();
                u64::from(s.attached.iter().skip(1).sum::<u32>())
            }
            Stat::EventsLost => self.events.lock().lost + self.backend.counters().event_overflows,
            Stat::SmmuCommands => self.backend.counters().commands,
            Stat::SmmuSyncs => self.backend.counters().syncs,
            Stat::Invalidations => self.invalidations.load(Ordering::Relaxed),
            Stat::CallsTotal => self.calls_total.load(Ordering::Relaxed),
            Stat::ErrorsTotal => self.errors_total.load(Ordering::Relaxed),
            Stat::MappedPages => self
                .own
                .mapped_pages()
                .saturating_sub(self.gic_stats.get().map_or(0, |g| (g.1)())),
            Stat::TablePagesInUse => (pool.total - pool.free - pool.quarantined) as u64,
            Stat::HypIntegrity => (self.integrity.get().ok_or(Error::BadStat)?.0)(),
            Stat::HypIntegrityBoot => self.integrity.get().ok_or(Error::BadStat)?.1,
            Stat::HostTrapsUnhandled => self.trap_log.get().ok_or(Error::BadStat)?.count(),
            Stat::GicRefused => (self.gic_stats.get().ok_or(Error::BadStat)?.0)(),
            Stat::HypMemoryBytes => *self.hyp_memory.get().ok_or(Error::BadStat)?,
        })
    }

    /// The domain ID a StreamID is attached to (host-identity = 0), for tests and diagnostics.
    pub fn sid_domain(&self, sid: u32) -> Option<u64> {
        let idx = self.sid_index(u64::from(sid))?;
        let slot = usize::from(self.streams.lock().domain[idx]);
        if slot == 0 {
            return Some(abi::DOMAIN_ID_HOST_IDENTITY);
        }
        Some(make_id(slot, self.slots[slot].lock().generation))
    }
}
