//! In-place paths: level-3 descriptors read and written directly, beside aarch64-paging's generic walk (see
//! the module docs of [`crate::domain`]).

use core::sync::atomic::{AtomicUsize, Ordering, fence};

use aarch64_paging::descriptor::Stage2Attributes;
use warden_abi::{LEAF_LEVEL, PAGE_SIZE, TABLE_ENTRIES};

use super::geometry::{L2_GRANULE, LEVEL_1G, LEVEL_2M, index_at};
use super::{DomainError, PagingDomain};

/// Descriptor bits: valid, and (with valid) table or page rather than block.
const DESC_VALID: u64 = 1 << 0;
const DESC_TYPE_MASK: u64 = 0b11;
/// A valid table descriptor (levels 1 and 2).
const DESC_TABLE: u64 = 0b11;
/// The output-address bits of a descriptor (as aarch64-paging keeps them: bits 12..=47).
pub(super) const DESC_ADDR_MASK: u64 = 0x0000_ffff_ffff_f000;

impl PagingDomain {
    /// The 512 descriptors of the table at `table_pa`, as the `AtomicUsize`s aarch64-paging keeps them in.
    ///
    /// # Safety
    ///
    /// `table_pa` must be one of this domain's table pages: the root, or the output address of one of its
    /// valid table descriptors.
    pub(super) unsafe fn table(&self, table_pa: u64) -> &[AtomicUsize] {
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

    /// The PA of the table that the entry at `level` of `table_pa` for `iova` points at, if it is a table
    /// descriptor.
    ///
    /// # Safety
    ///
    /// As [`Self::table`]: `table_pa` is one of this domain's table pages.
    unsafe fn next_table(&self, table_pa: u64, iova: u64, level: usize) -> Option<u64> {
        // SAFETY: our caller promised that `table_pa` is a table page of this domain.
        let d =
            unsafe { self.table(table_pa) }[index_at(iova, level)].load(Ordering::Relaxed) as u64;
        (d & DESC_TYPE_MASK == DESC_TABLE).then_some(d & DESC_ADDR_MASK)
    }

    /// The level-2 table on the way to `iova`, if the entries above it (from the root) are table descriptors.
    pub(super) fn l2_table(&self, iova: u64) -> Option<&[AtomicUsize]> {
        let mut table = self.root_pa();
        // A host-identity with a level-0 root takes one step more than the host's domains (level-1 roots).
        if self.geometry.root_level() < LEVEL_1G {
            // SAFETY: the root is a table page of this domain.
            table = unsafe { self.next_table(table, iova, 0) }?;
        }
        // SAFETY: `table` is the root or came from a valid table descriptor of this domain: one of its table
        // pages.
        let l2 = unsafe { self.next_table(table, iova, LEVEL_1G) }?;
        // SAFETY: `l2` came from a valid table descriptor of this domain: one of its table pages.
        Some(unsafe { self.table(l2) })
    }

    /// The level-2 descriptor that translates `iova`, if the entries on the way are table descriptors.
    fn l2_entry(&self, iova: u64) -> Option<u64> {
        Some(self.l2_table(iova)?[index_at(iova, LEVEL_2M)].load(Ordering::Relaxed) as u64)
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
    pub(super) fn l3_table(&self, iova: u64) -> Option<&[AtomicUsize]> {
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

    /// Checks whether a map of `[iova, iova + len)` (page aligned, inside the domain's input range) can go entirely into
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

    /// The PA runs of `[iova, iova + len)` (page aligned, inside the domain's input range) if it is mapped by 4 KiB pages
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
}
