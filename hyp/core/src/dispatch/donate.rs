//! `DONATE` and `RECLAIM`: host pages into the page-table pool and back, through the host-identity domain.
//!
//! Host-identity maps host RAM with 2 MiB blocks at most. A donation that cuts a block (covers part of it)
//! needs a level-3 table for the rest: from host-identity's spare (`Config::identity_spare_tables`) while it
//! lasts, else the first donated page inside that block, which stays hyp-owned as the table (outside the
//! host's pool: [`PagePool::hold_donated`]). A reclaim that makes a block whole again merges its table back
//! into a 2 MiB block and frees it (to the spare, or, for a donated page, back to the host with that reclaim):
//! so a donated table page is reclaimable exactly when the rest of its block is, or comes with it.

use super::init::{IDENTITY_PROT, IDENTITY_VMID};
use super::*;

/// 2 MiB: the blocks host-identity maps host RAM with.
const BLOCK: u64 = abi::granule(2);

/// The 2 MiB pieces `[iova, iova + len)` touches, in order.
fn blocks_of(iova: u64, len: u64) -> impl Iterator<Item = u64> {
    let first = iova & !(BLOCK - 1);
    let end = iova + len;
    (0..)
        .map(move |i| first + i * BLOCK)
        .take_while(move |&b| b < end)
}

/// Calls `f(start, pages)` for each run of `[pa, pa + pages)` not in `skip` (sorted).
fn runs_except(pa: u64, pages: u64, skip: &[u64], mut f: impl FnMut(u64, u64)) {
    let end = pa + pages * PAGE_SIZE;
    let mut s = pa;
    for &t in skip {
        if t > s {
            f(s, (t - s) / PAGE_SIZE);
        }
        s = t + PAGE_SIZE;
    }
    if s < end {
        f(s, (end - s) / PAGE_SIZE);
    }
}

impl<B: Backend> Warden<B> {
    pub(super) fn with_identity<T>(&self, f: impl FnOnce(&mut PagingDomain) -> T) -> T {
        let mut s = self.lock_slot(0);
        match &mut s.kind {
            SlotKind::Identity(d) => f(d),
            _ => unreachable!("slot 0 is always host-identity"),
        }
    }

    /// One range invalidation of host-identity with its CMD_SYNC; `leaf_only` (of 2 MiB blocks) when no table
    /// left.
    fn invalidate_identity(&self, iova: u64, len: u64, leaf_only: bool) -> Result<(), CallError> {
        self.invalidations.fetch_add(1, Ordering::Relaxed);
        self.backend
            .invalidate_range(&S2Invalidation {
                vmid: IDENTITY_VMID,
                iova,
                size: len,
                leaf_size: if leaf_only {
                    LeafSize::Block2M
                } else {
                    LeafSize::Mixed
                },
                leaf_only,
            })
            .map_err(CallError::from)
    }

    /// `DONATE` of the `len` bytes (whole pages, checked) at `pa`.
    #[inline(never)]
    pub(super) fn donate(&self, pa: PhysAddr, len: u64) -> CallResult {
        let (pa, count) = (pa.get(), pages(len));
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
        // Ok(donated pages that became tables) or Err((error, whether host-identity was already changed)).
        let r = self.with_identity(|d| -> Result<[Option<u64>; 2], (CallError, bool)> {
            self.identity_unmap(d, pa, len)
        });
        let tables = match r {
            Ok(t) => t,
            Err((e, false)) => {
                let _ = self.backend.host_map(pa, len);
                let _ = self.own.reclaim_range(pa, count);
                self.pool.release_donation(count as usize);
                return Err(e);
            }
            // An invalidation failed: the pages stay donated (and counted) but outside the pool, never used.
            Err((e, true)) => return Err(e),
        };
        let tables: Vec<u64> = tables.into_iter().flatten().collect();
        runs_except(pa, count, &tables, |s, n| {
            self.pool.finish_donation(s, n as usize)
        });
        self.pool.hold_donated(tables.len());
        Ok([0; 3])
    }

    /// Host-identity's part of a donation: `[pa, pa + len)` (host RAM, already out of the host stage-2)
    /// leaves host-identity. Each 2 MiB block the range cuts gets a level-3 table from the spare, else its
    /// first donated page; returns the donated pages that became tables.
    fn identity_unmap(
        &self,
        d: &mut PagingDomain,
        pa: u64,
        len: u64,
    ) -> Result<[Option<u64>; 2], (CallError, bool)> {
        let end = pa + len;
        // Blocks the range cuts: 2 MiB leaves it covers in part (at most one at each end).
        let mut cuts: [Option<u64>; 2] = [None, None];
        let mut hole = None;
        let mut level1 = false;
        d.leaves(pa, len, |s, leaf_pa, l, level| {
            if leaf_pa.is_none() {
                hole = Some(s);
                return false;
            }
            level1 |= level < 2;
            if level == 2 && l != BLOCK {
                let b = s & !(BLOCK - 1);
                if cuts[0].is_none_or(|c| c == b) {
                    cuts[0] = Some(b);
                } else {
                    cuts[1] = Some(b);
                }
            }
            true
        });
        if hole.is_some() {
            return Err((Error::NotMapped.into(), false));
        }
        if level1 {
            // Host-identity never holds 1 GiB blocks (boot and reclaim map below 1 GiB).
            return Err((Error::Internal.into(), false));
        }
        // Sources: the spare while it lasts (reserved now), else the first donated page of the block.
        let mut spare = 0;
        let mut tables: [Option<u64>; 2] = [None, None];
        for (i, b) in cuts.iter().enumerate() {
            if let Some(b) = *b {
                if self.identity_pool.reserve(1, 0).is_ok() {
                    spare += 1;
                } else {
                    tables[i] = Some(pa.max(b));
                }
            }
        }
        let allocated = d.tables_allocated();
        let mut changed = false;
        let r = (|| -> Result<(), CallError> {
            // A donated page becomes a table only once no device can reach it: always break-before-make, and
            // the new table never maps the donated range.
            for (b, t) in cuts.iter().zip(tables) {
                if let (Some(b), Some(t)) = (*b, t) {
                    // SAFETY: `t` is a donated page: hyp-owned, out of the host stage-2; host-identity maps it
                    // only through block `b`, which `split_block_around` makes invalid and invalidates before
                    // it writes the table, and the table leaves `[pa, end)` (which holds `t`) unmapped.
                    unsafe { d.set_next_table(t) };
                    d.split_block_around(b, pa, end, |blk, l, _| {
                        self.invalidate_identity(blk, l, true)
                    })?;
                    changed = true;
                }
            }
            changed = true;
            for (s, l) in domain::pieces_below_1g(pa, len) {
                self.unmap_segments(d, &self.identity_pool, 0, s, l, false)?;
            }
            Ok(())
        })();
        let from_spare =
            (d.tables_allocated() - allocated).saturating_sub(tables.iter().flatten().count());
        self.identity_pool.unreserve(spare - from_spare.min(spare));
        r.map_err(|e| (e, changed))?;
        Ok(tables)
    }

    /// `RECLAIM` of the `len` bytes (whole pages, checked) at `pa`.
    #[inline(never)]
    pub(super) fn reclaim(&self, pa: PhysAddr, len: u64) -> CallResult {
        let (pa, count) = (pa.get(), pages(len));
        self.own.check_donated(pa, count)?;
        self.with_identity(|d| self.identity_reclaim(d, pa, count, len))?;
        Ok([0; 3])
    }

    /// RECLAIM under host-identity's lock.
    fn identity_reclaim(
        &self,
        d: &mut PagingDomain,
        pa: u64,
        count: u64,
        len: u64,
    ) -> Result<(), CallError> {
        let end = pa + len;
        let in_range = |x: u64| (pa..end).contains(&x);
        let attrs = domain::attributes(IDENTITY_PROT);
        // Donated pages of the range that are level-3 tables of their own block: BUSY unless the rest of the
        // block is host-identity again or comes back with this call.
        let mut tables: Vec<u64> = Vec::new();
        for b in blocks_of(pa, len) {
            if let Some(t) = d.l3_table_pa(b).filter(|&t| in_range(t)) {
                if !d.piece_is_identity_except(b, attrs, in_range) {
                    return Err(DomainError::Busy(t).into());
                }
                tables.push(t);
            }
        }
        // Takes the other pages off the free list (all or nothing; still counted as donated until the end).
        let mut removed: Vec<(u64, u64)> = Vec::new();
        let mut busy = None;
        runs_except(pa, count, &tables, |s, n| {
            if busy.is_none() {
                match self.pool.remove_donated(s, n as usize) {
                    Ok(()) => removed.push((s, n)),
                    Err(e) => busy = Some(e),
                }
            }
        });
        let put_back = |removed: &[(u64, u64)]| {
            for &(s, n) in removed {
                self.pool.finish_donation(s, n as usize);
            }
        };
        if let Some(e) = busy {
            put_back(&removed);
            return Err(e.into());
        }
        // Blocks donated whole that come back in part need a level-3 table: from the spare, else a free donated
        // page of that block that stays donated (it becomes reclaimable with the rest of its block).
        let mut spare = 0;
        let mut new_tables: [Option<(u64, Option<u64>)>; 2] = [None, None];
        for b in [pa & !(BLOCK - 1), (end - 1) & !(BLOCK - 1)] {
            let whole = pa <= b && b + BLOCK <= end;
            if whole || !d.l2_entry_invalid(b) || new_tables.iter().flatten().any(|t| t.0 == b) {
                continue;
            }
            let source = if self.identity_pool.reserve(1, 0).is_ok() {
                spare += 1;
                None
            } else if let Some(q) = self.pool.take_donated_in(b, b + BLOCK, pa, end) {
                Some(q)
            } else {
                self.identity_pool.unreserve(spare);
                for (_, q) in new_tables.iter().flatten() {
                    if let Some(q) = *q {
                        self.pool.finish_donation(q, 1);
                    }
                }
                put_back(&removed);
                return Err(DomainError::Busy(b).into());
            };
            let slot = usize::from(new_tables[0].is_some());
            new_tables[slot] = Some((b, source));
        }
        let undo = |spare: usize| {
            self.identity_pool.unreserve(spare);
            for (_, q) in new_tables.iter().flatten() {
                if let Some(q) = *q {
                    self.pool.finish_donation(q, 1);
                }
            }
            put_back(&removed);
        };
        // What the maps below allocate is exactly those tables (anything else is a broken invariant).
        let forced = new_tables
            .iter()
            .flatten()
            .filter(|t| t.1.is_some())
            .count();
        let mut need = Ok(0);
        for &(s, n) in &removed {
            for b in blocks_of(s, n * PAGE_SIZE) {
                let (ps, pe) = (s.max(b), (s + n * PAGE_SIZE).min(b + BLOCK));
                need = need.and_then(|k| Ok(k + d.map_need(ps, ps, pe - ps)?));
            }
        }
        if need != Ok(spare + forced) {
            undo(spare);
            return Err(need.err().unwrap_or(DomainError::Internal).into());
        }
        for &(s, n) in &removed {
            if let Err(e) = self.backend.host_map(s, n * PAGE_SIZE) {
                for &(s2, n2) in removed.iter().take_while(|r| r.0 != s) {
                    let _ = self.backend.host_unmap(s2, n2 * PAGE_SIZE);
                }
                undo(spare);
                return Err(e.into());
            }
        }
        // Host-identity maps the pages again (not the tables), one 2 MiB piece at a time, in 2 MiB blocks at most.
        let held = forced;
        self.pool.hold_donated(held);
        let allocated = d.tables_allocated();
        let mut r = Ok(());
        for &(s, n) in &removed {
            for b in blocks_of(s, n * PAGE_SIZE) {
                let (ps, pe) = (s.max(b), (s + n * PAGE_SIZE).min(b + BLOCK));
                if let Some((_, Some(q))) = new_tables.iter().flatten().find(|t| t.0 == b)
                    && d.l2_entry_invalid(b)
                {
                    // SAFETY: `q` is a donated page off the host's pool free list (hyp-owned, out of the host
                    // stage-2 and of every domain: its 2 MiB entry in host-identity is invalid and was
                    // invalidated when it was donated), used for nothing else.
                    unsafe { d.set_next_table(*q) };
                }
                if let Err(e) = d.map(ps, ps, pe - ps, attrs) {
                    r = Err(e);
                }
            }
        }
        let from_spare = (d.tables_allocated() - allocated).saturating_sub(held);
        self.identity_pool.unreserve(spare - from_spare.min(spare));
        r?;
        // Blocks whole again merge back into 2 MiB blocks; their tables go back to the spare or, for a donated
        // page of this range, to the host below.
        for b in blocks_of(pa, len) {
            let Some(t) = d.l3_table_pa(b) else { continue };
            let donated_table = in_range(t);
            if !d.piece_is_identity_except(b, attrs, |i| donated_table && i == t) {
                continue;
            }
            // In place with BBML2 unless the table is a donated page, which the new block maps: a device must
            // not reach it before the SMMU has dropped it as a table.
            let in_place = !self.backend.break_before_make() && !donated_table;
            d.merge_block(b, attrs, in_place, |blk, l| {
                self.invalidate_identity(blk, l, false)
            })?;
            self.identity_pool.release_quarantine(0);
            if donated_table {
                // Out of host-identity's pool (where the release put it), zeroed.
                self.identity_pool.remove_donated(t, 1)?;
                self.pool.release_held(1);
            }
        }
        for &t in &tables {
            self.backend.host_map(t, PAGE_SIZE)?;
        }
        self.own.reclaim_range(pa, count)?;
        self.pool.release_donation((count as usize) - tables.len());
        Ok(())
    }
}
