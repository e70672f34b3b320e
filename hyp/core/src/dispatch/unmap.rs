//! `UNMAP_PAGES`: clear, invalidate, and only then drop DMA counts and release tables.

use super::*;

/// PA runs an unmap collects before it invalidates and drops counts (larger fragmented unmaps take several
/// invalidations).
pub(super) const UNMAP_RUNS: usize = 64;
/// PA runs the 4 KiB in-place unmap path collects (more take the generic path): enough for a scatter-gather
/// list of 16 discontiguous pages; zeroing the array (a `memset` loop at EL2) costs ~110 instructions at 16 runs,
/// ~400 at [`UNMAP_RUNS`].
pub(super) const FAST_UNMAP_RUNS: usize = 16;
/// Pages up to which the in-place unmap path collects its runs in a [`FEW_UNMAP_RUNS`]-run array instead (a
/// range of that many pages has at most that many runs): zeroing it is two stores, not the 16-run `memset`.
pub(super) const FEW_UNMAP_RUNS: usize = 2;
/// PA runs an `UNMAP_BATCH` collects before it invalidates and drops counts: a flush queue's batch of ranges
/// holds up to this many discontiguous pages between them and still takes one invalidation (4 KiB of EL2 stack).
pub(super) const BATCH_UNMAP_RUNS: usize = 256;

/// What one or more clears in a domain removed and an invalidation has not yet covered: the PA runs (contiguous
/// PAs merged, at most `N`), the IOVA span, the leaf levels and whether tables were detached.
/// [`Warden::unmap_segments`] (one range, [`UNMAP_RUNS`]) and `UNMAP_BATCH` (many ranges, one invalidation,
/// [`BATCH_UNMAP_RUNS`]) fill it with [`Cleared::clear`] and empty it with [`Warden::invalidate_cleared`].
pub(super) struct Cleared<const N: usize> {
    pub(super) runs: [(u64, u64); N],
    pub(super) n: usize,
    pub(super) lo: u64,
    pub(super) hi: u64,
    pub(super) level: Option<usize>,
    pub(super) mixed: bool,
    pub(super) tables_freed: bool,
}

impl<const N: usize> Cleared<N> {
    pub(super) fn new() -> Self {
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
    pub(super) fn reset(&mut self) {
        self.n = 0;
        self.lo = u64::MAX;
        self.hi = 0;
        self.level = None;
        self.mixed = false;
        self.tables_freed = false;
    }

    /// Records the leaves of `[start, end)` (all mapped) until the run array is full, clears what it recorded,
    /// and returns where it stopped (`end` when it took everything; `start` when the array was full already).
    pub(super) fn clear(
        &mut self,
        d: &mut PagingDomain,
        start: u64,
        end: u64,
    ) -> Result<u64, CallError> {
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
    pub(super) fn span(&self) -> Option<(u64, u64)> {
        (self.lo < self.hi).then_some((self.lo, self.hi))
    }

    /// The PA runs cleared.
    pub(super) fn runs(&self) -> &[(u64, u64)] {
        &self.runs[..self.n]
    }

    /// The invalidation of `[start, end)` in `vmid` (the span): leaf-only unless a table was detached, the
    /// leaf size if all leaves had one level.
    pub(super) fn invalidation(&self, vmid: Vmid, start: u64, end: u64) -> S2Invalidation {
        S2Invalidation {
            vmid,
            iova: start,
            size: end - start,
            leaf_size: match self.level {
                Some(l) if !self.mixed => LeafSize::at_level(l),
                _ => LeafSize::Mixed,
            },
            leaf_only: !self.tables_freed,
        }
    }
}

impl<B: Backend> Warden<B> {
    /// `UNMAP_PAGES` of `[iova, iova + len)` (checked: aligned to the page size, in range).
    #[inline(never)]
    pub(super) fn unmap_pages(&self, id: DomainId, iova: Iova, len: u64) -> CallResult {
        let iova = iova.get();
        let mut s = self.paging_slot(id)?;
        let slot = s.index;
        let d = s.domain();
        let mut few = [(0u64, 0u64); FEW_UNMAP_RUNS];
        let mut many;
        let runs: &mut [(u64, u64)] = if pages(len) <= FEW_UNMAP_RUNS as u64 {
            &mut few
        } else {
            many = [(0u64, 0u64); FAST_UNMAP_RUNS];
            &mut many
        };
        if let Some(n) = d.page_runs(iova, len, runs)? {
            // 4 KiB pages in level-3 tables that stay: clear them, one leaf-only invalidation, and (once the
            // SMMU can no longer reach the pages) drop their counts outside the domain's lock.
            d.clear_pages_in_place(iova, len);
            self.invalidations.fetch_add(1, Ordering::Relaxed);
            // On failure the counts stay (pages pinned: never donatable).
            self.backend.invalidate_range(&S2Invalidation {
                vmid: d.vmid(),
                iova,
                size: len,
                leaf_size: LeafSize::Page4K,
                leaf_only: true,
            })?;
            drop(s);
            for &(pa, l) in &runs[..n] {
                self.own.dec_range(pa, pages(l)).map_err(Error::from)?;
            }
            return Ok([len, 0, 0]);
        }
        let need = d.unmap_need(iova, len)?;
        // Every split happens at the ends, so whatever was not used goes back when `d` drops.
        let mut d = self.pool.reserve_for(d, need, 0)?;
        self.unmap_segments(&mut d, &self.pool, slot as u16, iova, len, true)?;
        Ok([len, 0, 0])
    }

    /// Clears `[iova, iova + len)` (all mapped) in `d`, invalidates, then drops DMA counts (if `counted`) and
    /// releases quarantined tables (to `pool`, where `d`'s tables come from), in segments of at most
    /// [`UNMAP_RUNS`] PA runs.
    pub(super) fn unmap_segments(
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
    pub(super) fn break_cut_blocks(
        &self,
        d: &mut PagingDomain,
        iova: u64,
        len: u64,
    ) -> Result<(), CallError> {
        if !self.backend.break_before_make() {
            return Ok(());
        }
        let vmid = d.vmid();
        d.break_cut_blocks(iova, len, |block, block_len, level| {
            self.invalidations.fetch_add(1, Ordering::Relaxed);
            self.backend
                .invalidate_range(&S2Invalidation {
                    vmid,
                    iova: block,
                    size: block_len,
                    leaf_size: LeafSize::at_level(level),
                    leaf_only: true,
                })
                .map_err(CallError::from)
        })
    }

    /// The second half of an unmap of what `acc` cleared: one range invalidation of its span with its
    /// CMD_SYNC, and only once that completed, the DMA counts of its PA runs drop (if `counted`) and the tables
    /// it detached leave quarantine. Empties `acc`. On failure the counts stay (pages pinned: never donatable)
    /// and the tables stay quarantined.
    pub(super) fn invalidate_cleared<const N: usize>(
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
            .invalidate_range(&acc.invalidation(d.vmid(), start, end))?;
        if counted {
            for &(pa, l) in acc.runs() {
                self.own.dec_range(pa, pages(l)).map_err(Error::from)?;
            }
        }
        pool.release_quarantine(tag);
        acc.reset();
        Ok(())
    }
}
