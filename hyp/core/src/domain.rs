//! DMA domains: stage-2 translations for devices, and the page-table pool they allocate from.
//!
//! A [`PagingDomain`] is an aarch64-paging [`Mapping`] in the [`Stage2`] regime whose tables come from the
//! [`PagePool`] (hyp carve-out pages plus pages the host donated; the host-identity domain has a pool of
//! carve-out pages only: its boot tables, [`identity_boot_tables`], and a small spare). It is never marked active, so aarch64-paging
//! issues no CPU TLB maintenance: the SMMU's TLBs are invalidated by the caller ([`crate::dispatch`]) through the
//! SMMU driver, and table pages freed by an update are **quarantined** until that invalidation completed
//! (an SMMU walk could still be reading them).
//!
//! # Geometry (what the STE needs)
//!
//! 4 KiB granule, input size [`IOVA_BITS`] = 39 bits, walk starting at level 1 ([`ROOT_LEVEL`]): one 4 KiB root
//! table, three levels, 1 GiB / 2 MiB / 4 KiB leaves. STE fields: `S2T0SZ` = [`S2_T0SZ`] (25), `S2SL0` =
//! [`S2_SL0`] (1 = start at level 1 for 4 KiB), `S2TG` = 0 (4 KiB), `S2PS` from the SMMU's OAS
//! ([`pa_size_encoding`]). 39 bits fits any SMMUv3 (IAS ≥ 40 whenever stage 2 is implemented, and QEMU's OAS is
//! 44), needs no concatenated root tables (which aarch64-paging does not build) and keeps walks at three levels.
//! The host-identity domain uses the same geometry, so RAM must lie below 512 GiB.
//!
//! # Live updates
//!
//! Maps only fill invalid entries, so the SMMU needs no invalidation for them. Unmap clears entries; a block
//! that an unmap cuts is replaced by a table holding the rest of the block. Unless the SMMU reports
//! `IDR3.BBML` = 2 (QEMU's does), that is break-before-make ([`PagingDomain::break_cut_blocks`]): invalid entry,
//! TLB invalidation of the whole block with its sync, then the table; DMA to the rest of the block faults in
//! that window (documented in docs/design.md). With BBML2 the block is replaced in place (as Linux's
//! io-pgtable did before it dropped splitting), and the following range invalidation uses the old block's size
//! as its TTL hint, so the stale block leaves the TLB.
//!
//! # In-place paths
//!
//! Most DMA maps and unmaps touch 4 KiB pages of level-3 tables the domain already has. For those,
//! [`PagingDomain::can_map_in_place`] + [`PagingDomain::map_pages_in_place`] and [`PagingDomain::page_runs`] +
//! [`PagingDomain::clear_pages_in_place`] read and write the level-3 descriptors directly, one pass each, instead of
//! aarch64-paging's generic walk plus the `map_need`/`unmap_need`/`leaves` walks. They apply only where the
//! generic path would allocate, split and free nothing (a 2 MiB piece cleared whole frees its table, so it takes
//! the generic path), write exactly what it would write, and report the same first mapped/unmapped IOVA; a
//! differential property test checks this against a twin domain updated generically. No cache maintenance: the
//! SMMU driver requires coherent table walks (`IDR0.COHACC`).
//!
//! # Locking
//!
//! A domain has no lock of its own here: [`crate::dispatch`] keeps each in a `spin::Mutex` slot. The pool has one
//! `spin::Mutex`, always taken last (inside a domain lock, never the other way round), held only for O(1) list
//! operations (plus O(n) for reclaim).

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering, fence};

use aarch64_paging::Mapping;
use aarch64_paging::descriptor::{PhysicalAddress, Stage2Attributes};
use aarch64_paging::paging::{Constraints, MemoryRegion, PageTable, Stage2, Translation};
use spin::Mutex;
use warden_abi as abi;
use warden_abi::{BITS_PER_LEVEL, LEAF_LEVEL, PAGE_SHIFT, PAGE_SIZE, TABLE_ENTRIES, granule};
use warden_dt::PhysRange;

static_assertions::const_assert_eq!(core::mem::size_of::<usize>(), 8);

/// Input address bits of every domain (IOVAs are below 2^39).
pub const IOVA_BITS: u32 = 39;
/// The level of the root table.
pub const ROOT_LEVEL: usize = 1;
/// `S2T0SZ` for the STE (64 - [`IOVA_BITS`]).
pub const S2_T0SZ: u8 = 64 - IOVA_BITS as u8;
/// `S2SL0` for the STE: 1 = the walk starts at level 1 (4 KiB granule).
pub const S2_SL0: u8 = 1;
/// Pages a map must leave free in the pool, for unmap splits (each end of an unmap needs at most 2). The
/// host-identity domain has a pool of its own ([`identity_boot_tables`] plus a spare).
pub const POOL_RESERVE: usize = 16;

/// The `S2PS`/`OAS` encoding of a PA width (32, 36, 40, 42, 44, 48, 52 bits); `None` for other widths.
#[must_use]
pub const fn pa_size_encoding(pa_bits: u8) -> Option<u8> {
    match pa_bits {
        32 => Some(0),
        36 => Some(1),
        40 => Some(2),
        42 => Some(3),
        44 => Some(4),
        48 => Some(5),
        52 => Some(6),
        _ => None,
    }
}

/// Everything an SMMU stage-2 STE needs for a domain.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct S2Config {
    /// The domain's VMID.
    pub vmid: u16,
    /// Physical address of the root table (`S2TTB`), 4 KiB aligned.
    pub root_pa: u64,
    /// `S2T0SZ`.
    pub t0sz: u8,
    /// `S2SL0`.
    pub sl0: u8,
    /// `S2PS` (the SMMU's OAS encoding, see [`pa_size_encoding`]).
    pub ps: u8,
}

/// Errors of domain and pool operations.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
pub enum DomainError {
    /// The pool lacks this many pages.
    #[error("page-table pool short by {0} pages")]
    NoMem(usize),
    /// Part of the range is mapped.
    #[error("IOVA {0:#x} already mapped")]
    AlreadyMapped(u64),
    /// Part of the range is not mapped.
    #[error("IOVA {0:#x} not mapped")]
    NotMapped(u64),
    /// A donated page is in use as a page table, or needed to keep reservations.
    #[error("page {0:#x} in use")]
    Busy(u64),
    /// The donation capacity would be exceeded.
    #[error("donation limit")]
    Limit,
    /// aarch64-paging refused an update (broken invariant: arguments were validated before).
    #[error("page-table update failed")]
    Internal,
}

/// The page-table pool: hyp carve-out pages plus donated pages.
///
/// Pages are identified by PA; the hyp accesses them at `PA + phys_offset` (EL2 maps all RAM at a fixed
/// offset, 0 for an identity map).
pub struct PagePool {
    inner: Mutex<PoolInner>,
    phys_offset: u64,
}

struct PoolInner {
    hyp_ranges: Vec<PhysRange>,
    free_hyp: Vec<u64>,
    free_donated: Vec<u64>,
    /// Pages freed by a domain update, waiting for the SMMU invalidation of their domain (tag = domain slot).
    quarantine: Vec<(u64, u16)>,
    reserved: usize,
    hyp_total: usize,
    donated_total: usize,
    /// Donated pages held outside the pool (host-identity level-3 tables): they count against
    /// `max_donated`, not in `donated_total`.
    held: usize,
    max_donated: usize,
}

impl PoolInner {
    fn free(&self) -> usize {
        self.free_hyp.len() + self.free_donated.len()
    }

    fn put(&mut self, pa: u64) {
        if self.hyp_ranges.iter().any(|r| r.contains(pa)) {
            self.free_hyp.push(pa);
        } else {
            self.free_donated.push(pa);
        }
    }
}

/// Pool counters.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct PoolStats {
    /// All pages (carve-out part + donated).
    pub total: usize,
    /// Free pages (reserved ones included).
    pub free: usize,
    /// Donated pages.
    pub donated: usize,
    /// Donated pages that are free.
    pub donated_free: usize,
    /// Pages waiting in quarantine.
    pub quarantined: usize,
}

impl PagePool {
    /// A pool of the pages of `ranges` (hyp memory, page aligned), able to take up to `max_donated` donated
    /// pages. Its bookkeeping is allocated here, once.
    #[must_use]
    pub fn new(ranges: &[PhysRange], max_donated: usize, phys_offset: u64) -> Self {
        let mut free_hyp = Vec::new();
        for r in ranges {
            let first = r.base.next_multiple_of(PAGE_SIZE);
            let mut pa = first;
            while pa.checked_add(PAGE_SIZE).is_some_and(|e| e <= r.end()) {
                free_hyp.push(pa);
                pa += PAGE_SIZE;
            }
        }
        // Hand out low addresses first.
        free_hyp.reverse();
        let hyp_total = free_hyp.len();
        let inner = PoolInner {
            hyp_ranges: ranges.to_vec(),
            free_hyp,
            free_donated: Vec::with_capacity(max_donated),
            quarantine: Vec::with_capacity(hyp_total + max_donated),
            reserved: 0,
            hyp_total,
            donated_total: 0,
            held: 0,
            max_donated,
        };
        Self {
            inner: Mutex::new(inner),
            phys_offset,
        }
    }

    /// Counters.
    #[must_use]
    pub fn stats(&self) -> PoolStats {
        let p = self.inner.lock();
        PoolStats {
            total: p.hyp_total + p.donated_total,
            free: p.free(),
            donated: p.donated_total,
            donated_free: p.free_donated.len(),
            quarantined: p.quarantine.len(),
        }
    }

    /// Reserves `n` pages, leaving at least `keep` unreserved free pages (nothing to check when `n` is 0);
    /// `Err(short)` says how many pages the pool lacks.
    ///
    /// # Errors
    ///
    /// [`DomainError::NoMem`] with the shortfall.
    pub fn reserve(&self, n: usize, keep: usize) -> Result<(), DomainError> {
        if n == 0 {
            // Nothing will be allocated: no need to keep anything free (and no lock on the fast path).
            return Ok(());
        }
        let mut p = self.inner.lock();
        let available = p.free().saturating_sub(p.reserved);
        let want = n.saturating_add(keep);
        if available < want {
            return Err(DomainError::NoMem(want - available));
        }
        p.reserved += n;
        Ok(())
    }

    /// Gives back `n` reserved pages that were not used.
    pub fn unreserve(&self, n: usize) {
        if n == 0 {
            return;
        }
        let mut p = self.inner.lock();
        p.reserved = p.reserved.saturating_sub(n);
    }

    /// Takes one reserved page, zeroed. Panics if nothing was reserved (a broken invariant: callers reserve
    /// the exact or a larger number of pages an update needs).
    fn take_reserved(&self) -> u64 {
        let pa = {
            let mut p = self.inner.lock();
            assert!(p.reserved > 0, "page-table allocation without reservation");
            p.reserved -= 1;
            let pa = p.free_hyp.pop().or_else(|| p.free_donated.pop());
            pa.expect("reserved page missing from pool")
        };
        // SAFETY: `pa` was a free pool page: hyp-owned (carve-out or donated, unmapped from the host and from
        // every device), and referenced by nothing else until we return it.
        unsafe { self.zero(pa) };
        pa
    }

    /// Zeroes page `pa` through the hyp's mapping.
    ///
    /// # Safety
    ///
    /// `pa` is a hyp-owned RAM page (mapped for the hyp at `pa + phys_offset`) that nothing else accesses.
    unsafe fn zero(&self, pa: u64) {
        let va = self.virt(pa);
        // SAFETY: as promised by our caller, the page is mapped at `va` and nothing else accesses it.
        unsafe { core::ptr::write_bytes(va.as_ptr(), 0, PAGE_SIZE as usize) };
    }

    fn virt(&self, pa: u64) -> NonNull<u8> {
        NonNull::new(pa.wrapping_add(self.phys_offset) as *mut u8).expect("pool page at VA 0")
    }

    fn quarantine(&self, pa: u64, tag: u16) {
        self.inner.lock().quarantine.push((pa, tag));
    }

    /// Whether pages of domain slot `tag` wait in quarantine (an earlier invalidation of its VMID failed).
    #[must_use]
    pub fn has_quarantine(&self, tag: u16) -> bool {
        self.inner.lock().quarantine.iter().any(|&(_, t)| t == tag)
    }

    /// Returns the pages quarantined for domain slot `tag` to the free lists (after its invalidation completed).
    pub fn release_quarantine(&self, tag: u16) {
        let mut p = self.inner.lock();
        let mut i = 0;
        while i < p.quarantine.len() {
            if p.quarantine[i].1 == tag {
                let (pa, _) = p.quarantine.swap_remove(i);
                p.put(pa);
            } else {
                i += 1;
            }
        }
    }

    /// Claims donation capacity for `pages` pages (counted as donated from now on), before the pages are made
    /// safe; [`Self::finish_donation`] or [`Self::release_donation`] follows.
    ///
    /// # Errors
    ///
    /// [`DomainError::Limit`] if the pool would hold more than its donation capacity.
    pub fn begin_donation(&self, pages: usize) -> Result<(), DomainError> {
        let mut p = self.inner.lock();
        if p.donated_total.saturating_add(p.held).saturating_add(pages) > p.max_donated {
            return Err(DomainError::Limit);
        }
        p.donated_total += pages;
        Ok(())
    }

    /// Releases donation capacity: pages that did not come after [`Self::begin_donation`], or pages that left
    /// for good after [`Self::remove_donated`].
    pub fn release_donation(&self, pages: usize) {
        let mut p = self.inner.lock();
        p.donated_total = p.donated_total.saturating_sub(pages);
    }

    /// Moves `pages` donated pages whose capacity is claimed out of the pool for good (they became host-identity
    /// tables): they keep their share of the donation capacity but no longer count in [`PoolStats::total`].
    pub fn hold_donated(&self, pages: usize) {
        let mut p = self.inner.lock();
        let n = pages.min(p.donated_total);
        p.donated_total -= n;
        p.held += n;
    }

    /// Releases the donation capacity of `pages` held pages ([`Self::hold_donated`]) that left for good.
    pub fn release_held(&self, pages: usize) {
        let mut p = self.inner.lock();
        p.held = p.held.saturating_sub(pages);
    }

    /// Takes one free donated page in `[lo, hi)` outside `[skip_lo, skip_hi)` off the free list, zeroed, if
    /// one is there and reservations stay covered. It still counts as donated (see [`Self::hold_donated`]).
    pub fn take_donated_in(&self, lo: u64, hi: u64, skip_lo: u64, skip_hi: u64) -> Option<u64> {
        let mut p = self.inner.lock();
        if p.free() <= p.reserved {
            return None;
        }
        let i = p
            .free_donated
            .iter()
            .position(|&x| (lo..hi).contains(&x) && !(skip_lo..skip_hi).contains(&x))?;
        let pa = p.free_donated.swap_remove(i);
        drop(p);
        // SAFETY: the page was a free pool page (hyp-owned, mapped for the hyp, referenced by nothing); it was
        // just removed from the free list under the lock, so nothing else can take it.
        unsafe { self.zero(pa) };
        Some(pa)
    }

    /// Puts donated pages whose capacity is claimed (already checked, unmapped from the host and from every
    /// device) on the free list.
    pub fn finish_donation(&self, pa: u64, pages: usize) {
        let mut p = self.inner.lock();
        for i in 0..pages as u64 {
            p.free_donated.push(pa + i * PAGE_SIZE);
        }
    }

    /// [`Self::begin_donation`] and [`Self::finish_donation`] in one step.
    ///
    /// # Errors
    ///
    /// [`DomainError::Limit`] if the pool would hold more than its donation capacity.
    pub fn add_donated(&self, pa: u64, pages: usize) -> Result<(), DomainError> {
        self.begin_donation(pages)?;
        self.finish_donation(pa, pages);
        Ok(())
    }

    /// Removes donated pages from the free list (all or nothing) and zeroes them: each must be free, and
    /// reservations must stay covered. They still count as donated until [`Self::release_donation`]; a caller
    /// that fails later puts them back with [`Self::finish_donation`].
    ///
    /// # Errors
    ///
    /// [`DomainError::Busy`] naming the first page that is in use (or needed for a reservation).
    pub fn remove_donated(&self, pa: u64, pages: usize) -> Result<(), DomainError> {
        let mut p = self.inner.lock();
        p.free_donated.sort_unstable();
        for i in 0..pages as u64 {
            let page = pa + i * PAGE_SIZE;
            if p.free_donated.binary_search(&page).is_err() {
                return Err(DomainError::Busy(page));
            }
        }
        if p.free() - pages < p.reserved {
            return Err(DomainError::Busy(pa));
        }
        let end = pa + pages as u64 * PAGE_SIZE;
        p.free_donated.retain(|&x| x < pa || x >= end);
        drop(p);
        for i in 0..pages as u64 {
            // SAFETY: the page was a free pool page (hyp-owned, mapped for the hyp, referenced by nothing); it
            // was just removed from the free list under the lock, so nothing else can take it. Zeroing it keeps
            // old page-table contents from reaching the host.
            unsafe { self.zero(pa + i * PAGE_SIZE) };
        }
        Ok(())
    }
}

/// aarch64-paging [`Translation`] over the pool: allocation takes reserved pages, deallocation quarantines.
pub struct PoolTranslation {
    pool: Arc<PagePool>,
    tag: u16,
    freed: core::cell::Cell<usize>,
    allocated: usize,
    in_use: core::cell::Cell<usize>,
    /// The page the next allocation takes instead of a reserved pool page ([`PagingDomain::set_next_table`]).
    next_table: core::cell::Cell<Option<u64>>,
}

impl Translation<Stage2Attributes> for PoolTranslation {
    fn allocate_table(&mut self) -> (NonNull<PageTable<Stage2Attributes>>, PhysicalAddress) {
        let pa = match self.next_table.take() {
            Some(pa) => {
                // SAFETY: `set_next_table`'s caller promised a hyp-owned page nothing else accesses.
                unsafe { self.pool.zero(pa) };
                pa
            }
            None => self.pool.take_reserved(),
        };
        self.allocated += 1;
        self.in_use.set(self.in_use.get() + 1);
        (self.pool.virt(pa).cast(), PhysicalAddress(pa as usize))
    }

    unsafe fn deallocate_table(&mut self, page_table: NonNull<PageTable<Stage2Attributes>>) {
        let pa = (page_table.as_ptr() as u64).wrapping_sub(self.pool.phys_offset);
        self.freed.set(self.freed.get() + 1);
        self.in_use.set(self.in_use.get() - 1);
        self.pool.quarantine(pa, self.tag);
    }

    fn physical_to_virtual(&self, pa: PhysicalAddress) -> NonNull<PageTable<Stage2Attributes>> {
        self.pool.virt(pa.0 as u64).cast()
    }
}

/// Stage-2 attributes for a validated prot.
#[must_use]
pub fn attributes(prot: u64) -> Stage2Attributes {
    let mut a = Stage2Attributes::VALID | Stage2Attributes::ACCESS_FLAG;
    a |= match (prot & abi::PROT_READ != 0, prot & abi::PROT_WRITE != 0) {
        (true, true) => Stage2Attributes::S2AP_ACCESS_RW,
        (true, false) => Stage2Attributes::S2AP_ACCESS_RO,
        (false, true) => Stage2Attributes::S2AP_ACCESS_WO,
        (false, false) => Stage2Attributes::S2AP_ACCESS_NONE,
    };
    if prot & abi::PROT_MMIO != 0 {
        a |= Stage2Attributes::MEMATTR_DEVICE_nGnRE;
    } else if prot & abi::PROT_CACHE != 0 {
        a |= Stage2Attributes::MEMATTR_NORMAL_OUTER_WB
            | Stage2Attributes::MEMATTR_NORMAL_INNER_WB
            | Stage2Attributes::SH_INNER;
    } else {
        a |= Stage2Attributes::MEMATTR_NORMAL_OUTER_NC | Stage2Attributes::MEMATTR_NORMAL_INNER_NC;
    }
    if prot & abi::PROT_NOEXEC != 0 {
        a |= Stage2Attributes::XN;
    }
    a
}

/// One leaf of a walk: `len` bytes at `iova` translate to `pa` through an entry at `level`.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Leaf {
    /// First IOVA (inside the walked range).
    pub iova: u64,
    /// Its PA.
    pub pa: u64,
    /// Bytes (inside the walked range).
    pub len: u64,
    /// Level of the entry (1 = 1 GiB block, 2 = 2 MiB block, 3 = page).
    pub level: usize,
}

/// What an unmap did to the tables.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct ClearOutcome {
    /// Whether table pages were detached (a walk-cache invalidation is needed, not just leaves).
    pub tables_freed: bool,
}

/// Calls `f` for each chunk of `[start, end)` cut at multiples of `gran`.
fn chunks(start: u64, end: u64, gran: u64, mut f: impl FnMut(u64, u64)) {
    let mut s = start;
    while s < end {
        let e = end.min((s & !(gran - 1)) + gran);
        f(s, e);
        s = e;
    }
}

fn is_block(start: u64, end: u64, level: usize) -> bool {
    (start | end) & (granule(level) - 1) == 0
}

/// Pages a map of the invalid entry at `level` covering `[start, end)` to `pa` allocates (aarch64-paging's
/// `map_range` decisions: a block where range and PA are aligned, else a new subtable).
fn map_need_entry(level: usize, start: u64, end: u64, pa: u64) -> usize {
    if level == LEAF_LEVEL || (is_block(start, end, level) && pa.is_multiple_of(granule(level))) {
        return 0;
    }
    let mut n = 1;
    chunks(start, end, granule(level + 1), |s, e| {
        n += map_need_entry(level + 1, s, e, pa + (s - start))
    });
    n
}

/// Pages an unmap of `[start, end)` inside the valid block at `level` allocates (splits).
fn split_need(level: usize, start: u64, end: u64) -> usize {
    if level == LEAF_LEVEL || is_block(start, end, level) {
        return 0;
    }
    let mut n = 1;
    chunks(start, end, granule(level + 1), |s, e| {
        n += split_need(level + 1, s, e)
    });
    n
}

/// Number of distinct `granule(level)`-sized entries that the ranges `(base, size)` touch (ranges may come in
/// any order and share entries).
fn entries_touched(runs: &[(u64, u64)], level: usize) -> usize {
    let shift = granule(level).trailing_zeros();
    let mut spans: Vec<(u64, u64)> = runs
        .iter()
        .filter(|&&(_, size)| size != 0)
        .map(|&(base, size)| (base >> shift, (base + (size - 1)) >> shift))
        .collect();
    spans.sort_unstable();
    let mut n = 0u64;
    let mut next = 0u64; // first index not counted yet
    for (first, last) in spans {
        let first = first.max(next);
        if first <= last {
            n += last - first + 1;
            next = last + 1;
        }
    }
    n as usize
}

/// Number of distinct 2 MiB pieces that a run `(base, size)` covers only in part (its first and last piece
/// when its ends are not 2 MiB aligned; runs may share pieces and come in any order).
fn pieces_cut(runs: &[(u64, u64)]) -> usize {
    let g = granule(ROOT_LEVEL + 1);
    let mut pieces: Vec<u64> = Vec::new();
    for &(base, size) in runs.iter().filter(|&&(_, size)| size != 0) {
        let end = base + size;
        if !base.is_multiple_of(g) {
            pieces.push(base & !(g - 1));
        }
        if !end.is_multiple_of(g) {
            pieces.push((end - 1) & !(g - 1));
        }
    }
    pieces.sort_unstable();
    pieces.dedup();
    pieces.len()
}

/// The table pages of the host-identity domain after boot, exactly: the root, one level-2 table per 1 GiB a
/// run touches (host-identity has no 1 GiB blocks: [`pieces_below_1g`]), and one level-3 table per 2 MiB
/// piece a run covers only in part (the others are 2 MiB blocks). `runs` are `(base, size)`, page aligned,
/// non-overlapping, below 2^[`IOVA_BITS`], each mapped 1:1.
#[must_use]
pub fn identity_boot_tables(runs: &[(u64, u64)]) -> usize {
    1 + entries_touched(runs, ROOT_LEVEL) + pieces_cut(runs)
}

/// `[iova, iova + len)` cut into pieces that cover no whole 1 GiB entry (a whole aligned GiB goes in two
/// pieces, split at its last 2 MiB), so that a map through them writes no 1 GiB block and a clear through
/// them frees no level-2 table: the host-identity domain's level-2 tables stay from boot on.
pub fn pieces_below_1g(iova: u64, len: u64) -> impl Iterator<Item = (u64, u64)> {
    let g1 = granule(ROOT_LEVEL);
    let g2 = granule(ROOT_LEVEL + 1);
    let end = iova + len;
    let mut s = iova;
    let mut split_at = None;
    core::iter::from_fn(move || {
        if let Some(at) = split_at.take() {
            let piece_end = (at & !(g1 - 1)) + g1;
            s = piece_end;
            return Some((at, piece_end - at));
        }
        if s >= end {
            return None;
        }
        let e = end.min((s & !(g1 - 1)) + g1);
        let start = s;
        if e - start == g1 {
            split_at = Some(e - g2);
            return Some((start, g1 - g2));
        }
        s = e;
        Some((start, e - start))
    })
}

/// Descriptor bits: valid, and (with valid) table or page rather than block.
const DESC_VALID: u64 = 1 << 0;
const DESC_TYPE_MASK: u64 = 0b11;
/// A valid table descriptor (levels 1 and 2).
const DESC_TABLE: u64 = 0b11;
/// The output-address bits of a descriptor (as aarch64-paging keeps them: bits 12..=47).
const DESC_ADDR_MASK: u64 = 0x0000_ffff_ffff_f000;
const L2_GRANULE: u64 = granule(ROOT_LEVEL + 1);

/// Index of the entry translating `iova` in a table at `level`.
const fn index_at(iova: u64, level: usize) -> usize {
    (iova >> (PAGE_SHIFT + (LEAF_LEVEL - level) as u32 * BITS_PER_LEVEL)) as usize
        & (TABLE_ENTRIES - 1)
}

fn region(iova: u64, len: u64) -> MemoryRegion {
    MemoryRegion::new(iova as usize, (iova + len) as usize)
}

/// A stage-2 translation for devices.
pub struct PagingDomain {
    map: Mapping<PoolTranslation, Stage2>,
    vmid: u16,
}

impl core::fmt::Debug for PagingDomain {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PagingDomain")
            .field("vmid", &self.vmid)
            .field("root", &self.root_pa())
            .finish()
    }
}

impl PagingDomain {
    /// A new, empty domain with VMID `vmid` whose tables come from `pool` (quarantine tag `tag`).
    ///
    /// # Errors
    ///
    /// [`DomainError::NoMem`] if the pool cannot give the root table (keeping `keep` pages free).
    pub fn new(pool: Arc<PagePool>, tag: u16, vmid: u16, keep: usize) -> Result<Self, DomainError> {
        pool.reserve(1, keep)?;
        let t = PoolTranslation {
            pool,
            tag,
            freed: core::cell::Cell::new(0),
            allocated: 0,
            in_use: core::cell::Cell::new(0),
            next_table: core::cell::Cell::new(None),
        };
        Ok(Self {
            map: Mapping::new(t, ROOT_LEVEL, Stage2),
            vmid,
        })
    }

    /// The VMID.
    #[must_use]
    pub fn vmid(&self) -> u16 {
        self.vmid
    }

    /// Physical address of the root table.
    #[must_use]
    pub fn root_pa(&self) -> u64 {
        self.map.root_address().0 as u64
    }

    /// The STE parameters, for an SMMU that outputs `pa_bits` (must have an encoding, see
    /// [`pa_size_encoding`]; else 48 bits is used).
    #[must_use]
    pub fn s2_config(&self, pa_bits: u8) -> S2Config {
        S2Config {
            vmid: self.vmid,
            root_pa: self.root_pa(),
            t0sz: S2_T0SZ,
            sl0: S2_SL0,
            ps: pa_size_encoding(pa_bits).unwrap_or(5),
        }
    }

    /// Table pages this domain holds.
    #[must_use]
    pub fn table_pages(&self) -> usize {
        self.map.translation().in_use.get()
    }

    /// Calls `f` for every leaf (valid or not) covering `[iova, iova + len)`; the range must be page aligned and
    /// inside [`IOVA_BITS`].
    fn walk(
        &self,
        iova: u64,
        len: u64,
        mut f: impl FnMut(u64, u64, Option<u64>, usize) -> Result<(), ()>,
    ) -> bool {
        self.map
            .walk_range(&region(iova, len), &mut |mr, d, level| {
                let s = mr.start().0 as u64;
                let e = mr.end().0 as u64;
                let pa = d
                    .is_valid()
                    .then(|| d.output_address().0 as u64 + (s & (granule(level) - 1)));
                f(s, e, pa, level)
            })
            .is_ok()
    }

    /// Pages a map of `[iova, iova + len)` to `pa` needs.
    ///
    /// # Errors
    ///
    /// [`DomainError::AlreadyMapped`] for the first mapped IOVA in the range.
    pub fn map_need(&self, iova: u64, pa: u64, len: u64) -> Result<usize, DomainError> {
        let mut need = 0;
        let mut mapped = None;
        self.walk(iova, len, |s, e, leaf_pa, level| {
            if leaf_pa.is_some() {
                mapped = Some(s);
                return Err(());
            }
            need += map_need_entry(level, s, e, pa + (s - iova));
            Ok(())
        });
        match mapped {
            Some(at) => Err(DomainError::AlreadyMapped(at)),
            None => Ok(need),
        }
    }

    /// Maps `[iova, iova + len)` to `pa` with the largest blocks that fit. The caller checked the range is
    /// unmapped and reserved [`Self::map_need`] pages.
    ///
    /// # Errors
    ///
    /// [`DomainError::Internal`] if aarch64-paging refuses (arguments out of its range: a broken invariant).
    pub fn map(
        &mut self,
        iova: u64,
        pa: u64,
        len: u64,
        attrs: Stage2Attributes,
    ) -> Result<(), DomainError> {
        self.map
            .map_range(
                &region(iova, len),
                PhysicalAddress(pa as usize),
                attrs,
                Constraints::empty(),
            )
            .map_err(|_| DomainError::Internal)
    }

    /// The 512 descriptors of the table at `table_pa`, as the `AtomicUsize`s aarch64-paging keeps them in.
    ///
    /// # Safety
    ///
    /// `table_pa` must be one of this domain's table pages: the root, or the output address of one of its
    /// valid table descriptors.
    unsafe fn table(&self, table_pa: u64) -> &[AtomicUsize] {
        let table = self
            .map
            .translation()
            .pool
            .virt(table_pa)
            .cast::<AtomicUsize>();
        // SAFETY: as promised by our caller, `table_pa` is a live table page of this domain: a pool page the hyp
        // maps at `virt(table_pa)`, page aligned, holding 512 8-byte descriptors, which lives as long as the
        // domain (tables are freed only through `&mut self`, so not while this borrow of `self` lasts).
        // aarch64-paging accesses them as `AtomicUsize` too, and only through this domain (the caller holds
        // the domain's lock).
        unsafe { core::slice::from_raw_parts(table.as_ptr(), TABLE_ENTRIES) }
    }

    /// The level-2 descriptor that translates `iova`, if the level-1 entry on the way is a table descriptor.
    fn l2_entry(&self, iova: u64) -> Option<u64> {
        // SAFETY: the root is a table page of this domain.
        let l1 = unsafe { self.table(self.root_pa()) }[index_at(iova, ROOT_LEVEL)]
            .load(Ordering::Relaxed) as u64;
        if l1 & DESC_TYPE_MASK != DESC_TABLE {
            return None;
        }
        // SAFETY: `l1` is a valid table descriptor of this domain: it points at one of its table pages.
        Some(
            unsafe { self.table(l1 & DESC_ADDR_MASK) }[index_at(iova, ROOT_LEVEL + 1)]
                .load(Ordering::Relaxed) as u64,
        )
    }

    /// The PA of the level-3 table that translates `iova`, if the level-1 and level-2 entries on the way are
    /// table descriptors.
    #[must_use]
    pub fn l3_table_pa(&self, iova: u64) -> Option<u64> {
        let l2 = self.l2_entry(iova)?;
        (l2 & DESC_TYPE_MASK == DESC_TABLE).then_some(l2 & DESC_ADDR_MASK)
    }

    /// Whether the level-2 entry that translates `iova` is reached through a level-1 table and is invalid.
    #[must_use]
    pub fn l2_entry_invalid(&self, iova: u64) -> bool {
        self.l2_entry(iova).is_some_and(|d| d & DESC_VALID == 0)
    }

    /// The level-3 table that translates `iova` (its descriptors), if the level-1 and level-2 entries on the
    /// way are table descriptors.
    fn l3_table(&self, iova: u64) -> Option<&[AtomicUsize]> {
        let pa = self.l3_table_pa(iova)?;
        // SAFETY: `pa` comes from a valid table descriptor of this domain: it is one of its table pages.
        Some(unsafe { self.table(pa) })
    }

    /// Calls `f(iova, entries)` for each 2 MiB piece of `[iova, iova + len)` with the level-3 descriptors that
    /// translate it (`None` if the piece has no level-3 table), until `f` returns `Err`.
    fn l3_pieces<E>(
        &self,
        iova: u64,
        len: u64,
        f: impl FnMut(u64, Option<&[AtomicUsize]>) -> Result<(), E>,
    ) -> Result<(), E> {
        self.l3_pieces_cached(&mut None, iova, len, f)
    }

    /// For [`Self::can_map_in_place`]: `Ok` if a 2 MiB piece's descriptors exist and are all invalid,
    /// `Err(None)` if it has no level-3 table, `Err(Some(iova))` at its first valid descriptor.
    fn piece_is_free(s: u64, entries: Option<&[AtomicUsize]>) -> Result<(), Option<u64>> {
        let Some(entries) = entries else {
            return Err(None);
        };
        match entries
            .iter()
            .position(|d| d.load(Ordering::Relaxed) as u64 & DESC_VALID != 0)
        {
            Some(i) => Err(Some(s + i as u64 * PAGE_SIZE)),
            None => Ok(()),
        }
    }

    /// The answer of [`Self::can_map_in_place`] from the walk's result over [`Self::piece_is_free`].
    fn in_place_answer(r: Result<(), Option<u64>>) -> Result<bool, DomainError> {
        match r {
            Ok(()) => Ok(true),
            Err(None) => Ok(false),
            Err(Some(at)) => Err(DomainError::AlreadyMapped(at)),
        }
    }

    /// Checks whether a map of `[iova, iova + len)` (page aligned, inside [`IOVA_BITS`]) can go entirely into
    /// level-3 tables the domain already has, i.e. whether [`Self::map`] would write 4 KiB pages only and
    /// allocate nothing. `Ok(true)`: yes, and nothing in the range is mapped ([`Self::map_pages_in_place`]
    /// may follow); `Ok(false)`: some 2 MiB piece has no level-3 table (use [`Self::map_need`] and
    /// [`Self::map`]).
    ///
    /// # Errors
    ///
    /// [`DomainError::AlreadyMapped`] for the first mapped IOVA, when the pieces before it have tables.
    pub fn can_map_in_place(&self, iova: u64, len: u64) -> Result<bool, DomainError> {
        Self::in_place_answer(self.l3_pieces(iova, len, Self::piece_is_free))
    }

    /// Writes 4 KiB page entries for `[iova, iova + len)` → `pa` into the existing level-3 tables: what
    /// [`Self::map`] does for such a range, without aarch64-paging's generic walk. The caller got `Ok(true)`
    /// from [`Self::can_map_in_place`] for this range and changed nothing since.
    pub fn map_pages_in_place(&mut self, iova: u64, pa: u64, len: u64, attrs: Stage2Attributes) {
        self.map_pages_in_place_each([(iova, pa, len)], attrs);
    }

    /// [`Self::l3_pieces`] with the last level-3 table looked up kept in `last` (its 2 MiB piece's first IOVA
    /// and descriptors), so that ranges in one piece walk the tables once. Tables found absent are not kept.
    fn l3_pieces_cached<'a, E>(
        &'a self,
        last: &mut Option<(u64, &'a [AtomicUsize])>,
        iova: u64,
        len: u64,
        mut f: impl FnMut(u64, Option<&[AtomicUsize]>) -> Result<(), E>,
    ) -> Result<(), E> {
        let end = iova + len;
        let mut s = iova;
        while s < end {
            let piece = s & !(L2_GRANULE - 1);
            let e = end.min(piece + L2_GRANULE);
            let table = match *last {
                Some((p, t)) if p == piece => Some(t),
                _ => {
                    let t = self.l3_table(s);
                    if let Some(t) = t {
                        *last = Some((piece, t));
                    }
                    t
                }
            };
            let first = index_at(s, LEAF_LEVEL);
            let n = ((e - s) / PAGE_SIZE) as usize;
            f(s, table.map(|t| &t[first..first + n]))?;
            s = e;
        }
        Ok(())
    }

    /// [`Self::can_map_in_place`] of each `(iova, len)` of `ranges` in turn, on the domain as it is (nothing is
    /// changed in between): `f(i, result)` for the `i`-th range, until `f` returns `Err`. Consecutive ranges in
    /// one 2 MiB piece (a scatter list's usual shape) look its level-3 table up once.
    ///
    /// # Errors
    ///
    /// The first `Err` of `f`.
    pub fn can_map_in_place_each<E>(
        &self,
        ranges: impl IntoIterator<Item = (u64, u64)>,
        mut f: impl FnMut(usize, Result<bool, DomainError>) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut last = None;
        for (i, (iova, len)) in ranges.into_iter().enumerate() {
            let r = self.l3_pieces_cached(&mut last, iova, len, Self::piece_is_free);
            f(i, Self::in_place_answer(r))?;
        }
        Ok(())
    }

    /// [`Self::map_pages_in_place`] of each `(iova, pa, len)` of `ranges`, with one release fence at the end;
    /// each range got `Ok(true)` from [`Self::can_map_in_place`] (or [`Self::can_map_in_place_each`]) and none
    /// of them overlap. Consecutive ranges in one 2 MiB piece look its level-3 table up once.
    pub fn map_pages_in_place_each(
        &mut self,
        ranges: impl IntoIterator<Item = (u64, u64, u64)>,
        attrs: Stage2Attributes,
    ) {
        let flags = (attrs | Stage2Attributes::TABLE_OR_PAGE).bits() as u64;
        // Leaf entries are written through the tables' atomics; no table is added or freed.
        let this: &Self = self;
        let mut last = None;
        for (iova, pa, len) in ranges {
            let _ = this.l3_pieces_cached(&mut last, iova, len, |s, entries| {
                let entries = entries.expect("map_pages_in_place_each without can_map_in_place");
                let mut desc = ((pa + (s - iova)) & DESC_ADDR_MASK) | flags;
                for d in entries {
                    d.store(desc as usize, Ordering::Relaxed);
                    desc += PAGE_SIZE;
                }
                Ok::<(), ()>(())
            });
        }
        // As aarch64-paging's release stores: the entries are visible before anything this CPU does next.
        fence(Ordering::Release);
    }

    /// The PA runs of `[iova, iova + len)` (page aligned, inside [`IOVA_BITS`]) if it is mapped by 4 KiB pages
    /// in level-3 tables that an unmap keeps, i.e. [`Self::clear`] would split nothing and free no table (no
    /// 2 MiB piece is cleared whole): `Ok(Some(n))` with the runs (PA, bytes) in `runs[..n]`, in IOVA order,
    /// contiguous PAs merged. `Ok(None)`: some piece is not such a table, or there are more runs than `runs`
    /// holds (use [`Self::unmap_need`], [`Self::leaves`] and [`Self::clear`]).
    ///
    /// # Errors
    ///
    /// [`DomainError::NotMapped`] for the first unmapped IOVA, when the pieces before it qualify.
    pub fn page_runs(
        &self,
        iova: u64,
        len: u64,
        runs: &mut [(u64, u64)],
    ) -> Result<Option<usize>, DomainError> {
        // Runs found so far: `runs[..n]`, then the current one (`run_pa`, `run_len`; none while `run_len` is 0),
        // kept in registers so that a page continuing it costs a compare and an add.
        let mut n = 0usize;
        let (mut run_pa, mut run_len) = (0u64, 0u64);
        let r = self.l3_pieces(iova, len, |s, entries| {
            let entries = match entries {
                Some(e) if e.len() < TABLE_ENTRIES => e,
                _ => return Err(None),
            };
            for (i, d) in entries.iter().enumerate() {
                let d = d.load(Ordering::Relaxed) as u64;
                if d & DESC_VALID == 0 {
                    return Err(Some(s + i as u64 * PAGE_SIZE));
                }
                let pa = d & DESC_ADDR_MASK;
                if run_len != 0 && run_pa + run_len == pa {
                    run_len += PAGE_SIZE;
                    continue;
                }
                if run_len != 0 {
                    *runs.get_mut(n).ok_or(None)? = (run_pa, run_len);
                    n += 1;
                }
                (run_pa, run_len) = (pa, PAGE_SIZE);
            }
            Ok(())
        });
        match r {
            Ok(()) if run_len == 0 => Ok(Some(n)),
            Ok(()) => match runs.get_mut(n) {
                Some(slot) => {
                    *slot = (run_pa, run_len);
                    Ok(Some(n + 1))
                }
                None => Ok(None),
            },
            Err(None) => Ok(None),
            Err(Some(at)) => Err(DomainError::NotMapped(at)),
        }
    }

    /// Clears the 4 KiB entries of `[iova, iova + len)`: what [`Self::clear`] does for such a range, without
    /// the generic walk. The caller got `Ok(Some(_))` from [`Self::page_runs`] for this range and changed
    /// nothing since (so no split and no freed table: a leaf-only invalidation of 4 KiB entries follows).
    pub fn clear_pages_in_place(&mut self, iova: u64, len: u64) {
        let _ = self.l3_pieces(iova, len, |_, entries| {
            for d in entries.expect("clear_pages_in_place without page_runs") {
                d.store(0, Ordering::Relaxed);
            }
            Ok::<(), ()>(())
        });
        fence(Ordering::Release);
    }

    /// Pages an unmap of `[iova, iova + len)` needs (block splits at the ends).
    ///
    /// # Errors
    ///
    /// [`DomainError::NotMapped`] for the first unmapped IOVA in the range.
    pub fn unmap_need(&self, iova: u64, len: u64) -> Result<usize, DomainError> {
        let mut need = 0;
        let mut hole = None;
        self.walk(iova, len, |s, e, leaf_pa, level| {
            if leaf_pa.is_none() {
                hole = Some(s);
                return Err(());
            }
            need += split_need(level, s, e);
            Ok(())
        });
        match hole {
            Some(at) => Err(DomainError::NotMapped(at)),
            None => Ok(need),
        }
    }

    /// Calls `f(iova, pa, len, level)` with each leaf in `[iova, iova + len)` in order (mapped or not: `pa` is
    /// `None` for a hole) until `f` returns `false`.
    pub fn leaves(
        &self,
        iova: u64,
        len: u64,
        mut f: impl FnMut(u64, Option<u64>, u64, usize) -> bool,
    ) {
        self.walk(iova, len, |s, e, pa, level| {
            if f(s, pa, e - s, level) {
                Ok(())
            } else {
                Err(())
            }
        });
    }

    /// Clears every entry of `[iova, iova + len)` (splitting blocks at the ends; the caller reserved
    /// [`Self::unmap_need`] pages). Detached tables go to quarantine until [`PagePool::release_quarantine`].
    ///
    /// # Errors
    ///
    /// [`DomainError::Internal`] if aarch64-paging refuses (a broken invariant).
    pub fn clear(&mut self, iova: u64, len: u64) -> Result<ClearOutcome, DomainError> {
        let before = self.map.translation().freed.get();
        // Pass pa = iova so that aarch64-paging's alignment test for whole blocks follows the IOVA.
        self.map
            .map_range(
                &region(iova, len),
                PhysicalAddress(iova as usize),
                Stage2Attributes::empty(),
                Constraints::empty(),
            )
            .map_err(|_| DomainError::Internal)?;
        Ok(ClearOutcome {
            tables_freed: self.map.translation().freed.get() != before,
        })
    }

    /// Break-before-make for the blocks an unmap of `[iova, iova + len)` cuts (at most one at each end, the
    /// same one if the range lies inside a block), for an SMMU without `IDR3.BBML` = 2. Each cut block is made
    /// invalid, `invalidate(block_iova, block_len, level)` must remove it from the SMMU's TLBs and wait (a TLBI
    /// plus CMD_SYNC), then the block is mapped again with its attributes through tables from the pages the
    /// caller reserved ([`Self::unmap_need`]: the same tables a split in place takes), exactly as a split in
    /// place leaves it. A following [`Self::clear`] of the range then splits nothing.
    ///
    /// Between the invalid entry and the new table, DMA to the rest of the block faults (see the module docs).
    ///
    /// # Errors
    ///
    /// What `invalidate` returns, or [`DomainError::Internal`] if aarch64-paging refuses (a broken invariant);
    /// either way the block is written back as it was (from invalid to valid: no break-before-make needed).
    pub fn break_cut_blocks<E: From<DomainError>>(
        &mut self,
        iova: u64,
        len: u64,
        mut invalidate: impl FnMut(u64, u64, usize) -> Result<(), E>,
    ) -> Result<(), E> {
        let end = iova + len;
        // (block IOVA, block PA, level, attributes) of the blocks cut at the start and at the end.
        let mut cut: [Option<(u64, u64, usize, Stage2Attributes)>; 2] = [None, None];
        let _ = self
            .map
            .walk_range(&region(iova, len), &mut |mr, d, level| {
                let (s, e) = (mr.start().0 as u64, mr.end().0 as u64);
                let g = granule(level);
                if level < 3 && d.is_valid() && (s % g != 0 || e % g != 0) {
                    let block = (s & !(g - 1), d.output_address().0 as u64, level, d.flags());
                    if cut[0].is_none() && s == iova {
                        cut[0] = Some(block);
                    }
                    if e == end && cut[0].is_none_or(|first| first.0 != block.0) {
                        cut[1] = Some(block);
                    }
                }
                Ok::<(), ()>(())
            });
        for (block, pa, level, attrs) in cut.into_iter().flatten() {
            let g = granule(level);
            let put_back = |map: &mut Mapping<PoolTranslation, Stage2>| {
                let _ = map.map_range(
                    &region(block, g),
                    PhysicalAddress(pa as usize),
                    attrs,
                    Constraints::empty(),
                );
            };
            // Break: a whole aligned block with no attributes (and PA 0, so that nothing reads it as a
            // block) is one invalid entry.
            self.map
                .map_range(
                    &region(block, g),
                    PhysicalAddress(0),
                    Stage2Attributes::empty(),
                    Constraints::empty(),
                )
                .map_err(|_| DomainError::Internal)?;
            if let Err(e) = invalidate(block, g, level) {
                put_back(&mut self.map);
                return Err(e);
            }
            // Make: the whole block again, through new tables (mapped in pieces cut where the unmap starts and
            // ends, so that aarch64-paging writes a table): the unmapped part is cleared by `clear` next, like a
            // split in place, so the caller's walk of what it unmaps still sees the pages.
            let cuts = [
                block,
                iova.clamp(block, block + g),
                end.clamp(block, block + g),
                block + g,
            ];
            for (s, e) in cuts.windows(2).map(|w| (w[0], w[1])).filter(|(s, e)| s < e) {
                let r = self.map.map_range(
                    &region(s, e - s),
                    PhysicalAddress((pa + (s - block)) as usize),
                    attrs,
                    Constraints::empty(),
                );
                if r.is_err() {
                    put_back(&mut self.map);
                    return Err(DomainError::Internal.into());
                }
            }
        }
        Ok(())
    }

    /// Makes the next table this domain allocates page `pa` instead of a reserved pool page (the page is
    /// zeroed first). The host-identity domain uses it to make a donated page the level-3 table of the 2 MiB
    /// block it lies in ([`Self::split_block_around`]).
    ///
    /// # Safety
    ///
    /// `pa` is a hyp-owned RAM page, mapped for the hyp at its pool's offset, that no CPU but the hyp and no
    /// device can reach any more (unmapped from the host stage-2, and from every domain with its TLB entries
    /// invalidated), and nothing else uses it from now on.
    pub unsafe fn set_next_table(&mut self, pa: u64) {
        self.map.translation().next_table.set(Some(pa));
    }

    /// Tables allocated since the domain was made (a running count; [`Self::table_pages`] is what it holds).
    #[must_use]
    pub fn tables_allocated(&self) -> usize {
        self.map.translation().allocated
    }

    /// Replaces the 2 MiB block at `block` (a valid level-2 block entry) by a level-3 table that maps all of
    /// it as before except `[lo, hi)`, break-before-make: the entry goes invalid, `invalidate(block, 2 MiB, 2)`
    /// must remove it from the SMMU's TLBs and wait, then the table is written and installed. The table is the
    /// page given to [`Self::set_next_table`], else a page the caller reserved. `[lo, hi)` is never mapped
    /// through the new table, so a page in it can be that table.
    ///
    /// # Errors
    ///
    /// What `invalidate` returns (the block is written back as it was and the next-table page is forgotten), or
    /// [`DomainError::Internal`] if the entry is not a 2 MiB block or aarch64-paging refuses (broken invariants).
    pub fn split_block_around<E: From<DomainError>>(
        &mut self,
        block: u64,
        lo: u64,
        hi: u64,
        invalidate: impl FnOnce(u64, u64, usize) -> Result<(), E>,
    ) -> Result<(), E> {
        let g = L2_GRANULE;
        let mut leaf = None;
        let _ = self.map.walk_range(&region(block, g), &mut |_, d, level| {
            if level == ROOT_LEVEL + 1 && d.is_valid() && !d.is_table_or_page() {
                leaf = Some((d.output_address().0 as u64, d.flags()));
            }
            Ok::<(), ()>(())
        });
        let Some((pa, attrs)) = leaf else {
            self.map.translation().next_table.set(None);
            return Err(DomainError::Internal.into());
        };
        self.map
            .map_range(
                &region(block, g),
                PhysicalAddress(0),
                Stage2Attributes::empty(),
                Constraints::empty(),
            )
            .map_err(|_| DomainError::Internal)?;
        if let Err(e) = invalidate(block, g, ROOT_LEVEL + 1) {
            self.map.translation().next_table.set(None);
            let _ = self.map.map_range(
                &region(block, g),
                PhysicalAddress(pa as usize),
                attrs,
                Constraints::empty(),
            );
            return Err(e);
        }
        let (lo, hi) = (lo.clamp(block, block + g), hi.clamp(block, block + g));
        for (s, e) in [(block, lo), (hi, block + g)] {
            if s < e {
                self.map
                    .map_range(
                        &region(s, e - s),
                        PhysicalAddress((pa + (s - block)) as usize),
                        attrs,
                        Constraints::empty(),
                    )
                    .map_err(|_| DomainError::Internal)?;
            }
        }
        self.map.translation().next_table.set(None);
        Ok(())
    }

    /// Whether the 2 MiB piece at `block` has a level-3 table whose every entry maps its own IOVA as a page
    /// with `attrs`, except the entries `skip` names (whatever they hold).
    #[must_use]
    pub fn piece_is_identity_except(
        &self,
        block: u64,
        attrs: Stage2Attributes,
        skip: impl Fn(u64) -> bool,
    ) -> bool {
        let Some(entries) = self.l3_table(block) else {
            return false;
        };
        let flags = (attrs | Stage2Attributes::TABLE_OR_PAGE).bits() as u64;
        entries.iter().enumerate().all(|(i, d)| {
            let iova = block + i as u64 * PAGE_SIZE;
            skip(iova) || d.load(Ordering::Relaxed) as u64 == iova | flags
        })
    }

    /// Replaces the level-3 table of the 2 MiB piece at `block` by a 2 MiB block mapping it 1:1 with `attrs`
    /// (the caller checked with [`Self::piece_is_identity_except`] that the table maps the piece so) and
    /// detaches the table to quarantine; `invalidate(block, 2 MiB)` must then remove the old entries and the
    /// table from the SMMU's TLBs and walk caches and wait. With `in_place` (an SMMU with BBML2, and a table
    /// no device can write) the block descriptor replaces the table descriptor in one store, so DMA to the
    /// piece never faults. Else break-before-make: the entry goes invalid, the invalidation, then the block
    /// (DMA to the piece faults in between). Returns the freed table's PA (in quarantine until the caller
    /// releases it).
    ///
    /// # Errors
    ///
    /// What `invalidate` returns: the table stays in quarantine (the SMMU may still hold it; nothing may
    /// reuse it) and, without `in_place`, the entry stays invalid. [`DomainError::Internal`] if the piece has
    /// no level-3 table or aarch64-paging refuses.
    pub fn merge_block<E: From<DomainError>>(
        &mut self,
        block: u64,
        attrs: Stage2Attributes,
        in_place: bool,
        invalidate: impl FnOnce(u64, u64) -> Result<(), E>,
    ) -> Result<u64, E> {
        let g = L2_GRANULE;
        let table = self.l3_table_pa(block).ok_or(DomainError::Internal)?;
        if in_place {
            // SAFETY: the root is a table page of this domain.
            let l1 = unsafe { self.table(self.root_pa()) }[index_at(block, ROOT_LEVEL)]
                .load(Ordering::Relaxed) as u64;
            // SAFETY: `l3_table_pa` found `l1` to be a valid table descriptor of this domain.
            let l2 = unsafe { self.table(l1 & DESC_ADDR_MASK) };
            // A 2 MiB block descriptor: output address and attributes (valid, not a table).
            let desc = block | (attrs - Stage2Attributes::TABLE_OR_PAGE).bits() as u64;
            l2[index_at(block, ROOT_LEVEL + 1)].store(desc as usize, Ordering::Release);
            let t = self.map.translation();
            t.freed.set(t.freed.get() + 1);
            t.in_use.set(t.in_use.get() - 1);
            t.pool.quarantine(table, t.tag);
            invalidate(block, g)?;
            return Ok(table);
        }
        self.map
            .map_range(
                &region(block, g),
                PhysicalAddress(0),
                Stage2Attributes::empty(),
                Constraints::empty(),
            )
            .map_err(|_| DomainError::Internal)?;
        invalidate(block, g)?;
        self.map
            .map_range(
                &region(block, g),
                PhysicalAddress(block as usize),
                attrs,
                Constraints::empty(),
            )
            .map_err(|_| DomainError::Internal)?;
        Ok(table)
    }

    /// The PA `iova` translates to, if mapped.
    #[must_use]
    pub fn translate(&self, iova: u64) -> Option<u64> {
        if iova >> IOVA_BITS != 0 {
            return None;
        }
        let page = iova & !(PAGE_SIZE - 1);
        let mut out = None;
        self.walk(page, PAGE_SIZE, |_, _, pa, _| {
            out = pa;
            Ok(())
        });
        out.map(|pa| pa + (iova & (PAGE_SIZE - 1)))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use alloc::alloc::{Layout, alloc_zeroed};

    /// A pool backed by real host memory: `pages` pages at fake PA `pa_base`.
    pub(crate) fn backed_pool(
        pa_base: u64,
        pages: usize,
        max_donated: usize,
        backing_pages: usize,
    ) -> Arc<PagePool> {
        let layout =
            Layout::from_size_align(backing_pages * PAGE_SIZE as usize, PAGE_SIZE as usize)
                .unwrap();
        // SAFETY: the layout has a non-zero size. The memory is leaked on purpose (tests only).
        let va = unsafe { alloc_zeroed(layout) } as u64;
        assert_ne!(va, 0);
        let offset = va.wrapping_sub(pa_base);
        Arc::new(PagePool::new(
            &[PhysRange {
                base: pa_base,
                size: pages as u64 * PAGE_SIZE,
            }],
            max_donated,
            offset,
        ))
    }

    const RW: u64 = abi::PROT_READ | abi::PROT_WRITE | abi::PROT_CACHE;

    fn domain(pool_pages: usize) -> (Arc<PagePool>, PagingDomain) {
        let pool = backed_pool(0x4000_0000, pool_pages, 0, pool_pages);
        let d = PagingDomain::new(pool.clone(), 1, 2, 0).unwrap();
        (pool, d)
    }

    fn map(d: &mut PagingDomain, pool: &PagePool, iova: u64, pa: u64, len: u64) -> usize {
        let need = d.map_need(iova, pa, len).unwrap();
        pool.reserve(need, 0).unwrap();
        let before = d.table_pages();
        d.map(iova, pa, len, attributes(RW)).unwrap();
        let used = d.table_pages() - before;
        assert_eq!(used, need, "need computation must be exact for fresh maps");
        need
    }

    /// The `_each` variants (one level-3 lookup per 2 MiB piece shared by consecutive ranges) answer and write
    /// exactly as the single-range calls.
    #[test]
    fn in_place_each_matches_single_calls() {
        let (pool, mut d) = domain(64);
        let (twin_pool, mut twin) = domain(64);
        // Level-3 tables for 2 MiB pieces 0 and 1 (page 0x1000 mapped in each), none for piece 2.
        for (p, dom) in [(&pool, &mut d), (&twin_pool, &mut twin)] {
            map(dom, p, 0x1000, 1 << 32, 0x1000);
            map(dom, p, 0x20_1000, 1 << 32, 0x1000);
        }
        let ranges = [
            (0x3000, 0x2000),
            (0x8000, 0x1000),
            (0x1000, 0x1000),    // mapped
            (0x1f_f000, 0x2000), // pieces 0 and 1
            (0x20_0000, 0x2000), // mapped at 0x20_1000
            (0x3f_f000, 0x2000), // piece 2 has no table
            (0x40_0000, 0x1000), // no table
            (0x20_5000, 0x3000),
        ];
        let mut got = Vec::new();
        let _ = d.can_map_in_place_each(ranges, |i, r| {
            got.push((i, r));
            Ok::<(), ()>(())
        });
        let want: Vec<_> = ranges
            .iter()
            .enumerate()
            .map(|(i, &(iova, len))| (i, d.can_map_in_place(iova, len)))
            .collect();
        assert_eq!(got, want);
        assert_eq!(
            got.iter().filter(|(_, r)| *r == Ok(true)).count(),
            4,
            "{got:x?}"
        );
        // `f`'s error stops the walk.
        let mut seen = 0;
        assert_eq!(
            d.can_map_in_place_each(ranges, |i, _| {
                seen += 1;
                if i == 2 { Err(i) } else { Ok(()) }
            }),
            Err(2)
        );
        assert_eq!(seen, 3);
        let fast: Vec<_> = got
            .iter()
            .filter(|(_, r)| *r == Ok(true))
            .map(|&(i, _)| (ranges[i].0, (2 << 32) + ranges[i].0 * 3, ranges[i].1))
            .collect();
        d.map_pages_in_place_each(fast.iter().copied(), attributes(RW));
        for &(iova, pa, len) in &fast {
            twin.map_pages_in_place(iova, pa, len, attributes(RW));
        }
        for page in (0..8u64 << 20).step_by(4096) {
            assert_eq!(d.translate(page), twin.translate(page), "{page:#x}");
        }
        assert_eq!(
            d.translate(0x20_6000),
            Some((2 << 32) + 0x20_5000 * 3 + 0x1000)
        );
        assert_eq!(d.table_pages(), twin.table_pages());
    }

    #[test]
    fn geometry() {
        assert_eq!(S2_T0SZ, 25);
        assert_eq!(granule(1), 1 << 30);
        assert_eq!(granule(2), 1 << 21);
        assert_eq!(granule(3), 1 << 12);
        assert_eq!(pa_size_encoding(44), Some(4));
        assert_eq!(pa_size_encoding(45), None);
    }

    #[test]
    fn largest_blocks_and_exact_need() {
        let (pool, mut d) = domain(64);
        // 1 GiB aligned in IOVA and PA: one level-1 block, no table.
        assert_eq!(map(&mut d, &pool, 1 << 30, 0x80_0000_0000, 1 << 30), 0);
        let mut levels = Vec::new();
        d.leaves(1 << 30, 1 << 30, |_, _, _, l| {
            levels.push(l);
            true
        });
        assert_eq!(levels, [1]);
        // 2 MiB + 4 KiB: one L2 table (2M block) and one L3 table (the page).
        assert_eq!(
            map(&mut d, &pool, 0x4000_0000 * 3, 0x1_0000_0000, 0x20_1000),
            2
        );
        assert_eq!(d.translate(0xc000_0000 + 0x20_0123), Some(0x1_0020_0123));
        // PA misaligned for blocks: pages only.
        assert_eq!(
            map(&mut d, &pool, 0x8000_0000, 0x1_0000_1000, 0x40_0000),
            1 + 2
        );
        assert_eq!(d.translate(0x8000_0000), Some(0x1_0000_1000));
        assert_eq!(d.translate(0x8000_0000 + 0x3f_f000), Some(0x1_0040_0000));
        assert_eq!(d.translate(0x8040_0000), None);
        assert_eq!(d.translate(1 << 39), None);
        assert_eq!(
            d.map_need(0x8000_0000, 0, 0x1000),
            Err(DomainError::AlreadyMapped(0x8000_0000))
        );
    }

    #[test]
    fn unmap_splits_blocks() {
        let (pool, mut d) = domain(64);
        map(&mut d, &pool, 1 << 30, 0x80_0000_0000, 1 << 30);
        // Unmap one page in the middle of the 1 GiB block: split into an L2 table, then an L3 table.
        let iova = (1 << 30) + 0x20_3000;
        assert_eq!(d.unmap_need(iova, 0x1000), Ok(2));
        pool.reserve(2, 0).unwrap();
        let out = d.clear(iova, 0x1000).unwrap();
        assert!(!out.tables_freed);
        assert_eq!(d.translate(iova), None);
        assert_eq!(d.translate(iova - 0x1000), Some(0x80_0020_2000));
        assert_eq!(d.translate(iova + 0x1000), Some(0x80_0020_4000));
        assert_eq!(d.translate(1 << 30), Some(0x80_0000_0000));
        assert_eq!(
            d.unmap_need(iova, 0x1000),
            Err(DomainError::NotMapped(iova))
        );
        assert_eq!(d.unmap_need(1 << 30, 0x20_3000), Ok(0));
        // Clearing part of a table keeps the table; clearing the whole entry range frees both tables.
        assert!(!d.clear(1 << 30, 0x20_3000).unwrap().tables_freed);
        assert_eq!(d.table_pages(), 3);
        let out = d.clear(1 << 30, 1 << 30).unwrap();
        assert!(out.tables_freed);
        assert_eq!(d.table_pages(), 1);
        assert_eq!(pool.stats().quarantined, 2);
        let free_before = pool.stats().free;
        pool.release_quarantine(1);
        assert_eq!(pool.stats().free, free_before + 2);
    }

    #[test]
    fn identity_boot_tables_counts_cut_pieces() {
        const G: u64 = 1 << 30;
        const M: u64 = 1 << 21;
        assert_eq!(identity_boot_tables(&[]), 1);
        // One page: an L2 and an L3 table.
        assert_eq!(identity_boot_tables(&[(G + 5 * M, 0x1000)]), 3);
        // QEMU virt, 1 GiB of RAM minus a 2 MiB-aligned 30 MiB carve-out, the ITS doorbell frame: two L2
        // tables, one L3 table (the doorbell); RAM is all 2 MiB blocks.
        let virt = [(0x4000_0000 + 15 * M, G - 15 * M), (0x0809_0000, 0x1_0000)];
        assert_eq!(identity_boot_tables(&virt), 1 + 2 + 1);
        // Runs sharing pieces count them once, in any order; a run straddling a GiB touches both.
        assert_eq!(
            identity_boot_tables(&[(M + 0x1000, 0x1000), (M, 0x1000), (G - M, 2 * M)]),
            1 + 2 + 1
        );
        assert_eq!(identity_boot_tables(&[(M + 0x1000, 4 * M)]), 1 + 1 + 2);
    }

    #[test]
    fn pieces_below_1g_never_cover_a_whole_gib() {
        const G: u64 = 1 << 30;
        const M: u64 = 1 << 21;
        let p: Vec<_> = pieces_below_1g(G - M, 2 * G + 4 * M).collect();
        assert_eq!(
            p,
            [
                (G - M, M),
                (G, G - M),
                (2 * G - M, M),
                (2 * G, G - M),
                (3 * G - M, M),
                (3 * G, 3 * M)
            ]
        );
        assert_eq!(
            pieces_below_1g(5 * M, 0x1000).collect::<Vec<_>>(),
            [(5 * M, 0x1000)]
        );
    }

    /// Boot tables against aarch64-paging: mapping the runs through [`pieces_below_1g`] takes exactly
    /// [`identity_boot_tables`] pages, with no 1 GiB block, and clearing and refilling a whole GiB through them
    /// frees and allocates nothing.
    #[test]
    fn identity_boot_tables_is_exact() {
        const M: u64 = 1 << 21;
        const G: u64 = 1 << 30;
        let runs = [
            (0x4000_0000 + 3 * M, 5 * M + 0x3000),
            (0x0809_0000, 0x1_0000),
            (3 * G - M, G + 2 * M),
        ];
        let bound = identity_boot_tables(&runs);
        let pool = backed_pool(0x4000_0000, bound, 0, bound);
        let mut d = PagingDomain::new(pool.clone(), 0, 1, 0).unwrap();
        for &(base, size) in &runs {
            for (b, s) in pieces_below_1g(base, size) {
                map(&mut d, &pool, b, b, s);
            }
        }
        assert_eq!(d.table_pages(), bound);
        assert_eq!(pool.stats().free, 0);
        let mut levels = Vec::new();
        d.leaves(3 * G, G, |_, _, _, level| {
            levels.push(level);
            true
        });
        assert!(levels.iter().all(|&l| l == 2), "2 MiB blocks only");
        for (b, s) in pieces_below_1g(3 * G, G) {
            assert_eq!(d.unmap_need(b, s), Ok(0));
            d.clear(b, s).unwrap();
        }
        assert_eq!(d.table_pages(), bound, "the level-2 table stays");
        for (b, s) in pieces_below_1g(3 * G, G) {
            assert_eq!(map(&mut d, &pool, b, b, s), 0);
        }
    }

    #[test]
    fn reserve_reports_shortfall() {
        let pool = backed_pool(0x4000_0000, 4, 2, 8);
        assert_eq!(pool.reserve(3, 2), Err(DomainError::NoMem(1)));
        assert_eq!(pool.reserve(0, 100), Ok(()));
        pool.reserve(2, 2).unwrap();
        assert_eq!(pool.reserve(1, 2), Err(DomainError::NoMem(1)));
        pool.unreserve(2);
        pool.add_donated(0x4000_4000, 2).unwrap();
        assert_eq!(pool.add_donated(0x4000_6000, 1), Err(DomainError::Limit));
        assert_eq!(
            pool.stats(),
            PoolStats {
                total: 6,
                free: 6,
                donated: 2,
                donated_free: 2,
                quarantined: 0
            }
        );
        pool.remove_donated(0x4000_4000, 2).unwrap();
        assert_eq!(
            pool.remove_donated(0x4000_4000, 1),
            Err(DomainError::Busy(0x4000_4000))
        );
    }

    mod model {
        use super::*;
        use proptest::prelude::*;

        const UNITS: [u64; 3] = [1 << 12, 1 << 21, 1 << 30];

        #[derive(Clone, Debug)]
        enum Op {
            Map {
                iova: u64,
                pa: u64,
                len: u64,
                fast: bool,
            },
            Unmap {
                iova: u64,
                len: u64,
                fast: bool,
            },
        }

        /// Ranges made of a unit (4K, 2M, 1G) and an offset of smaller units, so blocks and splits happen.
        fn range() -> impl Strategy<Value = (u64, u64)> {
            (0usize..3, 0u64..4, 0u64..3, 1u64..3, 0u64..3).prop_map(|(u, big, small, n, tail)| {
                let unit = UNITS[u];
                let start = big * unit + small * (unit >> 9).max(1 << 12);
                let len = n * unit + tail * (1 << 12);
                (start, len)
            })
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                (range(), 0u64..8, any::<bool>(), any::<bool>()).prop_map(
                    |((iova, len), p, aligned, fast)| {
                        // Misaligned PAs only for short ranges: a misaligned GiB needs 513 tables.
                        let aligned = aligned || len >= 1 << 30;
                        let pa = (1 << 32)
                            + p * (1 << 30)
                            + if aligned { iova % (1 << 30) } else { 0x5000 };
                        Op::Map {
                            iova,
                            pa,
                            len,
                            fast,
                        }
                    }
                ),
                (range(), any::<bool>()).prop_map(|((iova, len), fast)| Op::Unmap {
                    iova,
                    len,
                    fast
                }),
            ]
        }

        /// Page-granular ranges in an 8 MiB window (4 level-3 tables), PAs misaligned or block aligned.
        fn page_op() -> impl Strategy<Value = (bool, u64, u64, u64)> {
            (
                any::<bool>(),
                0u64..2048,
                prop_oneof![1u64..8, 1u64..64, 1u64..700],
                0u64..3,
            )
                .prop_map(|(map, first, n, p)| {
                    let n = n.min(2048 - first);
                    (
                        map,
                        first << 12,
                        n << 12,
                        (1 << 32) + p * 0x20_0000 + (first << 12) + 0x1000 * (p & 1),
                    )
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

            /// The in-place paths ([`PagingDomain::can_map_in_place`], [`PagingDomain::map_pages_in_place`],
            /// [`PagingDomain::page_runs`], [`PagingDomain::clear_pages_in_place`]) take the same decisions and
            /// leave the same translations as the generic ones, on a twin domain updated only generically.
            #[test]
            fn in_place_paths_match_generic(ops in proptest::collection::vec(page_op(), 1..60)) {
                let pool = backed_pool(0x4000_0000, 64, 0, 64);
                let mut fast = PagingDomain::new(pool.clone(), 1, 2, 0).unwrap();
                let twin_pool = backed_pool(0x4000_0000, 64, 0, 64);
                let mut twin = PagingDomain::new(twin_pool.clone(), 1, 2, 0).unwrap();
                for (map, iova, len, pa) in ops {
                    if map {
                        let generic = twin.map_need(iova, pa, len);
                        match fast.can_map_in_place(iova, len) {
                            Ok(true) => {
                                prop_assert_eq!(generic, Ok(0));
                                fast.map_pages_in_place(iova, pa, len, attributes(RW));
                            }
                            Ok(false) => {
                                prop_assert_eq!(fast.map_need(iova, pa, len), generic);
                                if let Ok(need) = generic {
                                    pool.reserve(need, 0).unwrap();
                                    fast.map(iova, pa, len, attributes(RW)).unwrap();
                                }
                            }
                            Err(e) => prop_assert_eq!(Err(e), generic),
                        }
                        if let Ok(need) = generic {
                            twin_pool.reserve(need, 0).unwrap();
                            twin.map(iova, pa, len, attributes(RW)).unwrap();
                        }
                    } else {
                        let generic = twin.unmap_need(iova, len);
                        let mut runs = [(0u64, 0u64); 8];
                        match fast.page_runs(iova, len, &mut runs) {
                            Ok(Some(n)) => {
                                prop_assert_eq!(generic, Ok(0));
                                let mut want: Vec<(u64, u64)> = Vec::new();
                                twin.leaves(iova, len, |_, pa, l, _| {
                                    let pa = pa.unwrap();
                                    match want.last_mut() {
                                        Some(r) if r.0 + r.1 == pa => r.1 += l,
                                        _ => want.push((pa, l)),
                                    }
                                    true
                                });
                                prop_assert_eq!(&runs[..n], &want[..]);
                                fast.clear_pages_in_place(iova, len);
                            }
                            Ok(None) => {
                                prop_assert_eq!(fast.unmap_need(iova, len), generic);
                                if let Ok(need) = generic {
                                    pool.reserve(need, 0).unwrap();
                                    fast.clear(iova, len).unwrap();
                                    pool.release_quarantine(1);
                                }
                            }
                            Err(e) => prop_assert_eq!(Err(e), generic),
                        }
                        if let Ok(need) = generic {
                            twin_pool.reserve(need, 0).unwrap();
                            twin.clear(iova, len).unwrap();
                            twin_pool.release_quarantine(1);
                        }
                    }
                    for page in (0..8u64 << 20).step_by(4096) {
                        prop_assert_eq!(fast.translate(page), twin.translate(page));
                    }
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

            /// The page counts computed before an update are exact for maps and sufficient for unmaps, and
            /// translations always agree with a run-list model.
            #[test]
            fn need_is_exact_and_translations_match(
                ops in proptest::collection::vec(op(), 1..24),
                probes in proptest::collection::vec(0u64..(5 << 30), 32),
            ) {
                let pool = backed_pool(0x4000_0000, 640, 0, 640);
                let mut d = PagingDomain::new(pool.clone(), 1, 2, 0).unwrap();
                let mut model: Vec<(u64, u64, u64)> = Vec::new();
                let covered = |m: &Vec<(u64, u64, u64)>, a: u64| m.iter().find(|r| r.0 <= a && a < r.1).map(|r| r.2 + (a - r.0));
                for op in ops {
                    match op {
                        Op::Map { iova, pa, len, fast } => {
                            let overlap = model.iter().any(|r| r.0 < iova + len && iova < r.1);
                            let in_place = d.can_map_in_place(iova, len);
                            match (&in_place, d.map_need(iova, pa, len)) {
                                // Both report the same first mapped IOVA (the in-place check may stop earlier).
                                (Err(a), Err(b)) => prop_assert_eq!(*a, b),
                                (Ok(false), _) => {}
                                // In place means: nothing to allocate.
                                (Ok(true), Ok(need)) => prop_assert_eq!(need, 0),
                                (a, b) => prop_assert!(false, "in place {a:?}, need {b:?}"),
                            }
                            if let Ok(true) = in_place {
                                prop_assert!(!overlap);
                            }
                            if fast && in_place == Ok(true) {
                                let before = d.table_pages();
                                d.map_pages_in_place(iova, pa, len, attributes(RW));
                                prop_assert_eq!(d.table_pages(), before);
                                model.push((iova, iova + len, pa));
                            } else { match d.map_need(iova, pa, len) {
                                Err(DomainError::AlreadyMapped(_)) => prop_assert!(overlap),
                                Err(e) => prop_assert!(false, "{e:?}"),
                                Ok(need) => {
                                    prop_assert!(!overlap);
                                    pool.reserve(need, 0).unwrap();
                                    let before = d.table_pages();
                                    d.map(iova, pa, len, attributes(RW)).unwrap();
                                    prop_assert_eq!(d.table_pages() - before, need);
                                    model.push((iova, iova + len, pa));
                                }
                            } }
                        }
                        Op::Unmap { iova, len, fast } => {
                            let full = (iova..iova + len).step_by(4096).all(|a| covered(&model, a).is_some());
                            let mut runs = [(0u64, 0u64); 4];
                            let fast_runs = d.page_runs(iova, len, &mut runs);
                            match &fast_runs {
                                Err(DomainError::NotMapped(at)) => {
                                    prop_assert!(!full);
                                    prop_assert_eq!(d.unmap_need(iova, len), Err(DomainError::NotMapped(*at)));
                                }
                                Err(e) => prop_assert!(false, "{e:?}"),
                                Ok(None) => {}
                                Ok(Some(n)) => {
                                    prop_assert!(full);
                                    prop_assert_eq!(d.unmap_need(iova, len), Ok(0));
                                    // The runs are the leaves, merged.
                                    let mut want: Vec<(u64, u64)> = Vec::new();
                                    d.leaves(iova, len, |_, pa, l, level| {
                                        assert_eq!(level, LEAF_LEVEL);
                                        let pa = pa.unwrap();
                                        match want.last_mut() {
                                            Some(r) if r.0 + r.1 == pa => r.1 += l,
                                            _ => want.push((pa, l)),
                                        }
                                        true
                                    });
                                    prop_assert_eq!(&runs[..*n], &want[..]);
                                }
                            }
                            let unmapped = if fast && matches!(fast_runs, Ok(Some(_))) {
                                let before = d.table_pages();
                                d.clear_pages_in_place(iova, len);
                                prop_assert_eq!(d.table_pages(), before);
                                true
                            } else { match d.unmap_need(iova, len) {
                                Err(DomainError::NotMapped(_)) => { prop_assert!(!full); false }
                                Err(e) => { prop_assert!(false, "{e:?}"); false }
                                Ok(need) => {
                                    prop_assert!(full);
                                    pool.reserve(need, 0).unwrap();
                                    let allocated = d.map.translation().in_use.get() + d.map.translation().freed.get();
                                    d.clear(iova, len).unwrap();
                                    let used = d.map.translation().in_use.get() + d.map.translation().freed.get() - allocated;
                                    prop_assert!(used <= need, "used {} > need {}", used, need);
                                    pool.unreserve(need - used);
                                    pool.release_quarantine(1);
                                    true
                                }
                            } };
                            if unmapped {
                                let mut next = Vec::new();
                                for (s, e, p) in model {
                                    if s < iova { next.push((s, e.min(iova), p)); }
                                    if e > iova + len { let ns = s.max(iova + len); next.push((ns, e, p + (ns - s))); }
                                }
                                model = next;
                            }
                        }
                    }
                    for &a in &probes {
                        prop_assert_eq!(d.translate(a), covered(&model, a));
                    }
                    for r in &model {
                        prop_assert_eq!(d.translate(r.0), Some(r.2));
                        prop_assert_eq!(d.translate(r.1 - 1), Some(r.2 + (r.1 - 1 - r.0)));
                    }
                }
            }
        }
    }
}
