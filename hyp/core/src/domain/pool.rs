//! The page-table pool (carve-out and donated pages, reservations, quarantine) and the aarch64-paging
//! [`Translation`] that domains allocate their tables through.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ptr::NonNull;

use aarch64_paging::descriptor::{PhysicalAddress, Stage2Attributes};
use aarch64_paging::paging::{PageTable, Translation};
use spin::Mutex;
use warden_abi::PAGE_SIZE;
use warden_dt::PhysRange;

use super::{DomainError, PagingDomain};

/// Pages a map must leave free in the pool, for unmap splits (each end of an unmap needs at most 2). The
/// host-identity domain has a pool of its own ([`identity_boot_tables`](super::identity_boot_tables) plus a spare).
pub const POOL_RESERVE: usize = 16;

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

    /// Reserves `n` pages for `d`'s tables (as [`PagePool::reserve`]) and returns the reservation, through which
    /// `d` is used: when it drops, the pages `d` did not take (`n` less the tables it gained) go back.
    ///
    /// # Errors
    ///
    /// [`DomainError::NoMem`] with the shortfall (nothing reserved).
    pub fn reserve_for<'a>(
        &'a self,
        d: &'a mut PagingDomain,
        n: usize,
        keep: usize,
    ) -> Result<Reservation<'a>, DomainError> {
        self.reserve(n, keep)?;
        let before = d.table_pages();
        Ok(Reservation {
            pool: self,
            d,
            n,
            before,
        })
    }

    /// Takes one free page, zeroed, for a table outside the host's domains (the host stage-2's splits with
    /// blocks, `host_s2::PoolTables`): carve-out pages first, then donated ones. Unlike a domain's map it may
    /// take the last free pages ([`POOL_RESERVE`] does not apply: the host stage-2 edits are donations and
    /// reclaims, which bring pages rather than take them), but never a page reserved by a call in progress.
    /// `None` if there is none: the host must donate.
    pub fn take_page(&self) -> Option<u64> {
        self.reserve(1, 0).ok()?;
        Some(self.take_reserved())
    }

    /// Gives back a page from [`Self::take_page`] that no table references any more (it is zeroed when taken
    /// again).
    pub fn put_page(&self, pa: u64) {
        self.inner.lock().put(pa);
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

    pub(super) fn virt(&self, pa: u64) -> NonNull<u8> {
        NonNull::new(pa.wrapping_add(self.phys_offset) as *mut u8).expect("pool page at VA 0")
    }

    pub(super) fn quarantine(&self, pa: u64, tag: u16) {
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
    pub(super) pool: Arc<PagePool>,
    pub(super) tag: u16,
    pub(super) freed: core::cell::Cell<usize>,
    pub(super) allocated: usize,
    pub(super) in_use: core::cell::Cell<usize>,
    /// The page the next allocation takes instead of a reserved pool page
    /// ([`PagingDomain::set_next_table`](super::PagingDomain::set_next_table)).
    pub(super) next_table: core::cell::Cell<Option<u64>>,
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

/// Pages reserved in a [`PagePool`] for one domain's tables ([`PagePool::reserve_for`]): derefs to the domain;
/// on drop, gives back what the domain did not take (every reserve → update → unreserve of the dispatcher).
pub struct Reservation<'a> {
    pool: &'a PagePool,
    d: &'a mut PagingDomain,
    n: usize,
    /// The domain's table pages when the pages were reserved.
    before: usize,
}

impl core::ops::Deref for Reservation<'_> {
    type Target = PagingDomain;

    fn deref(&self) -> &PagingDomain {
        self.d
    }
}

impl core::ops::DerefMut for Reservation<'_> {
    fn deref_mut(&mut self) -> &mut PagingDomain {
        self.d
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let used = self.d.table_pages().saturating_sub(self.before);
        self.pool.unreserve(self.n.saturating_sub(used));
    }
}
