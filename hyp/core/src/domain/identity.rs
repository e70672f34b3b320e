//! The host-identity domain: its boot-table bound, the pieces it is mapped in, and the block split and
//! merge that donation and reclaim do to it.

use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use aarch64_paging::descriptor::Stage2Attributes;
use warden_abi::{PAGE_SIZE, granule};

use super::geometry::{L2_GRANULE, LEVEL_1G, LEVEL_2M, index_at};
use super::{DomainError, Geometry, PagingDomain, region};

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
    let g = L2_GRANULE;
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

/// The table pages of the host-identity domain of `geometry` after boot, exactly: the root, with a level-0
/// root one level-1 table per 512 GiB a run touches, one level-2 table per 1 GiB a run touches (host-identity
/// has no 1 GiB blocks: [`pieces_below_1g`]), and one level-3 table per 2 MiB piece a run covers only in part
/// (the others are 2 MiB blocks). `runs` are `(base, size)`, page aligned, non-overlapping, below
/// [`Geometry::end`], each mapped 1:1.
#[must_use]
pub fn identity_boot_tables(runs: &[(u64, u64)], geometry: Geometry) -> usize {
    let above_l2: usize = (geometry.root_level()..=LEVEL_1G)
        .map(|level| entries_touched(runs, level))
        .sum();
    1 + above_l2 + pieces_cut(runs)
}

/// `[iova, iova + len)` cut into pieces that cover no whole 1 GiB entry (a whole aligned GiB goes in two
/// pieces, split at its last 2 MiB), so that a map through them writes no 1 GiB block and a clear through
/// them frees no level-2 table: the host-identity domain's level-2 tables stay from boot on.
pub fn pieces_below_1g(iova: u64, len: u64) -> impl Iterator<Item = (u64, u64)> {
    let g1 = granule(LEVEL_1G);
    let g2 = L2_GRANULE;
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

impl PagingDomain {
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
            if level == LEVEL_2M && d.is_valid() && !d.is_table_or_page() {
                leaf = Some((d.output_address().0 as u64, d.flags()));
            }
            Ok::<(), ()>(())
        });
        let Some((pa, attrs)) = leaf else {
            self.map.translation().next_table.set(None);
            return Err(DomainError::Internal.into());
        };
        self.break_block(block, g)?;
        if let Err(e) = invalidate(block, g, LEVEL_2M) {
            self.map.translation().next_table.set(None);
            let _ = self.map(block, pa, g, attrs);
            return Err(e);
        }
        let (lo, hi) = (lo.clamp(block, block + g), hi.clamp(block, block + g));
        for (s, e) in [(block, lo), (hi, block + g)] {
            if s < e {
                self.map(s, pa + (s - block), e - s, attrs)?;
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
            // `l3_table_pa` found the way to the level-2 table.
            let l2 = self.l2_table(block).ok_or(DomainError::Internal)?;
            // A 2 MiB block descriptor: output address and attributes (valid, not a table).
            let desc = block | (attrs - Stage2Attributes::TABLE_OR_PAGE).bits() as u64;
            l2[index_at(block, LEVEL_2M)].store(desc as usize, Ordering::Release);
            let t = self.map.translation();
            t.freed.set(t.freed.get() + 1);
            t.in_use.set(t.in_use.get() - 1);
            t.pool.quarantine(table, t.tag);
            invalidate(block, g)?;
            return Ok(table);
        }
        self.break_block(block, g)?;
        invalidate(block, g)?;
        self.map(block, block, g, attrs)?;
        Ok(table)
    }
}
