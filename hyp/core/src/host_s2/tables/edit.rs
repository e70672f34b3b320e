//! The host stage-2's runtime edits: donation ([`HostStage2::unmap_range`]) and reclaim
//! ([`HostStage2::map_range`]), with the refill of their tables, the block splits and merges.

use aarch64_paging::descriptor::{PhysicalAddress, Stage2Attributes};
use aarch64_paging::paging::{Constraints, MemoryRegion};
use warden_abi::{PAGE_SIZE, granule};
use warden_dt::PhysRange;

use super::super::layout::RamLeaves;
use super::super::reserve::{MAX_TABLES_PER_EDIT, TableSource};
use super::super::{HostS2Error, HostS2Tlb, RAM_ATTRIBUTES, ROOT_LEVEL};
use super::{HostStage2, whole_leaf};

impl<S: TableSource> HostStage2<S> {
    /// The page-aligned host RAM range `[pa, pa + len)`, checked: non-empty, inside one RAM range this
    /// stage-2 was built with (so never the carve-out, an SMMU frame or MMIO).
    fn check_ram_range(&self, pa: u64, len: u64) -> Result<PhysRange, HostS2Error> {
        let end = pa.checked_add(len).ok_or(HostS2Error::Misaligned(pa))?;
        if len == 0 || !pa.is_multiple_of(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) {
            return Err(HostS2Error::Misaligned(pa));
        }
        let range = PhysRange::from_bounds(pa, end);
        if !self
            .ram
            .iter()
            .any(|r| r.base <= range.base && range.end() <= r.end())
        {
            return Err(HostS2Error::NotHostRam(pa));
        }
        Ok(range)
    }

    /// Every live edit: [`Self::check_ram_range`] and [`Self::refill`] for `[pa, pa + len)` before any
    /// descriptor changes, then `f` with the checked range, then [`Self::settle`] whatever the outcome.
    fn edit(
        &mut self,
        pa: u64,
        len: u64,
        f: impl FnOnce(&mut Self, PhysRange) -> Result<(), HostS2Error>,
    ) -> Result<(), HostS2Error> {
        let result = self
            .check_ram_range(pa, len)
            .and_then(|range| self.refill(range).map(|()| range))
            .and_then(|range| f(self, range));
        self.settle();
        result
    }

    /// The first run of contiguous valid leaves in `range` (whole extents joined), or `None` if `range`
    /// maps nothing. Never allocates.
    fn next_run(&self, range: PhysRange) -> Option<PhysRange> {
        let mut run: Option<PhysRange> = None;
        let mr = MemoryRegion::new(range.base as usize, range.end() as usize);
        // The walk stops (callback error) at the first gap after a run: that error is the expected end.
        let _ = self.map.walk_range(&mr, &mut |mr, desc, level| {
            let ipa = whole_leaf(mr, desc, level).ipa;
            match (desc.is_valid(), run) {
                (true, None) => run = Some(ipa),
                (true, Some(r)) if r.end() == ipa.base => {
                    run = Some(PhysRange::from_bounds(r.base, ipa.end()))
                }
                (false, None) => {}
                _ => return Err(()),
            }
            Ok(())
        });
        run
    }

    /// Writes invalid descriptors over `r`, which must be exactly covered by whole valid leaves or
    /// invalid entries (no block is split). Never allocates.
    ///
    /// With [`RamLeaves::Pages`] the level-3 tables stay, even under a whole 2 MiB or 1 GiB piece of `r`: the
    /// library replaces a table whose whole extent is unmapped by one invalid entry and frees it, and mapping
    /// the piece back would then need a table per 2 MiB (more than [`MAX_TABLES_PER_EDIT`] for a large
    /// range, which an edit with pages never takes). So `r` is cleared in pieces of at most half a 2 MiB
    /// block, which the library writes entry by entry at level 3.
    fn clear(&mut self, r: PhysRange) -> Result<(), HostS2Error> {
        // The end of the piece that starts at `start`.
        let piece_end = |start: u64| match self.ram_leaves {
            RamLeaves::Pages => {
                let half = granule(2) / 2;
                (start - start % half).saturating_add(half).min(r.end())
            }
            RamLeaves::Blocks => r.end(),
        };
        let mut start = r.base;
        while start < r.end() {
            let end = piece_end(start);
            let range = MemoryRegion::new(start as usize, end as usize);
            self.map
                .map_range(
                    &range,
                    PhysicalAddress(start as usize),
                    Stage2Attributes::empty(),
                    Constraints::empty(),
                )
                .map_err(|_| HostS2Error::Map(r.base))?;
            start = end;
        }
        Ok(())
    }

    /// Refills the table reserve so that the edit of `range` that follows cannot run out, with fallible
    /// allocations. Changes no descriptor. A source that keeps its reserve ([`TableSource::KEEP_RESERVE`]: the
    /// heap) is topped up to [`MAX_TABLES_PER_EDIT`] tables (tables the edit frees go back to the reserve); a
    /// short source is an error only if the edit may allocate ([`Self::tables_needed`]), so an edit that undoes
    /// the one before (the rollback of a failed `DONATE`) never fails for want of tables. A source that keeps
    /// none (the pool) gives exactly [`Self::tables_needed`] tables, or the edit fails; [`Self::settle`] gives
    /// back what the edit did not use.
    fn refill(&mut self, range: PhysRange) -> Result<(), HostS2Error> {
        let needed = self.tables_needed(range);
        let target = if S::KEEP_RESERVE {
            MAX_TABLES_PER_EDIT
        } else {
            needed
        };
        let mut t = self.tables.lock();
        while t.reserve.len() < target {
            match t.source.alloc_table() {
                // Never reallocates: the capacity is the bound, allocated at build time.
                Some(table) => t.reserve.push(table),
                None if needed > 0 => return Err(HostS2Error::NoTables(range.base)),
                None => break,
            }
        }
        Ok(())
    }

    /// An upper bound of the tables an edit of `range` allocates, at most [`MAX_TABLES_PER_EDIT`]: for each
    /// descriptor (valid or not) above level 3 that covers an end of the range and reaches outside it, the
    /// tables its split makes: one for a 2 MiB entry; for a 1 GiB entry one table of 2 MiB entries plus one
    /// table of pages per 2 MiB block holding an end of the range that is not 2 MiB aligned. 0: every
    /// descriptor the edit writes exists already.
    pub(in crate::host_s2) fn tables_needed(&self, range: PhysRange) -> usize {
        let mut needed = 0;
        let mut seen: Option<PhysRange> = None;
        for addr in [range.base, range.end() - PAGE_SIZE] {
            let mut cut: Option<(PhysRange, usize)> = None;
            let mr = MemoryRegion::new(addr as usize, (addr + PAGE_SIZE) as usize);
            let _ = self.map.walk_range(&mr, &mut |mr, desc, level| {
                let ipa = whole_leaf(mr, desc, level).ipa;
                cut = (level < 3 && (ipa.base < range.base || ipa.end() > range.end()))
                    .then_some((ipa, level));
                Ok(())
            });
            let Some((entry, level)) = cut else { continue };
            if seen == Some(entry) {
                continue;
            }
            seen = Some(entry);
            needed += match level {
                2 => 1,
                1 => {
                    // The 2 MiB blocks holding an unaligned end inside the entry (one if both share it).
                    let block = |x: u64| {
                        (entry.contains(x) && !x.is_multiple_of(granule(2)))
                            .then_some(x & !(granule(2) - 1))
                    };
                    let (first, last) = (block(range.base), block(range.end()));
                    1 + usize::from(first.is_some()) + usize::from(last.is_some() && last != first)
                }
                _ => MAX_TABLES_PER_EDIT,
            };
        }
        needed.min(MAX_TABLES_PER_EDIT)
    }

    /// The end of every live edit, whatever its outcome: with a source that keeps no reserve
    /// ([`TableSource::KEEP_RESERVE`] false), the reserve's tables (taken for the edit and not used, or freed by
    /// its merges) go back to the source.
    fn settle(&mut self) {
        if S::KEEP_RESERVE {
            return;
        }
        let mut t = self.tables.lock();
        while let Some(table) = t.reserve.pop() {
            // SAFETY: A reserved table came from the source (refilled, or freed by the library after the
            // source gave it), is referenced by no descriptor, and leaves the reserve here, once.
            unsafe { t.source.free_table(table) };
        }
    }

    /// Removes the host RAM range `[pa, pa + len)` (page aligned) from the live stage-2, splitting the
    /// blocks that straddle its ends (with [`RamLeaves::Blocks`]; with pages there are none); every other address keeps its translation. On return every CPU's
    /// TLBs are clean of the range (`tlb` ran for it after the last descriptor change).
    ///
    /// # Break-before-make
    ///
    /// Replacing a live block by a table of pages is a change of block size, which the architecture allows
    /// in place only with `FEAT_BBM` level 1 or 2 (and even then TLB conflict aborts are possible at level
    /// 1). This code never relies on it, so it is correct on every CPU: for each straddling block it
    /// 1. writes an invalid descriptor over the whole block (*break*),
    /// 2. calls `tlb.invalidate(block)`, which completes the TLB invalidation on every CPU
    ///    (`DSB ISHST`; `TLBI IPAS2E1IS` per page or `VMALLS12E1IS`; `DSB ISH`; `TLBI VMALLE1IS`;
    ///    `DSB ISH`; `ISB`),
    /// 3. maps the block's part outside the range again (*make*): a new table filled before it is linked
    ///    (the library links it with a release store), then pages or smaller blocks.
    ///
    /// Then the leaves wholly inside the range are invalidated (valid → invalid needs no break) and `tlb`
    /// runs for the range. Another CPU touching the rest of a block during steps 1–3 takes a stage-2
    /// translation fault: the EL2 fault handler must take the same lock as the caller of this function and
    /// check [`HostStage2::translate`] again before treating it as a host error (after the edit the address
    /// translates, and returning retries the access).
    ///
    /// At most two blocks are split per call (one at each end), each costing one or two new tables (a
    /// 1 GiB block becomes 2 MiB blocks plus one table of pages): [`MAX_TABLES_PER_EDIT`]. Those come from the
    /// reserve, refilled before anything changes.
    ///
    /// # Errors
    ///
    /// [`HostS2Error::Misaligned`], [`HostS2Error::NotHostRam`] or [`HostS2Error::NoTables`] (the reserve
    /// could not be refilled) before anything changed;
    /// [`HostS2Error::Map`] if the page-table library refuses an edit (a broken invariant: the sequence above
    /// never violates its rules).
    pub fn unmap_range(
        &mut self,
        pa: u64,
        len: u64,
        tlb: &mut impl HostS2Tlb,
    ) -> Result<(), HostS2Error> {
        self.edit(pa, len, |s2, range| {
            // Only the leaves holding the range's first and last pages can reach outside it (found before any
            // change; the same block if one holds both ends). No heap allocation from here on: the size of
            // the range is the host's choice.
            let first = s2
                .leaf_at(range.base)
                .filter(|l| l.ipa.base < range.base || l.ipa.end() > range.end());
            let last = s2
                .leaf_at(range.end() - PAGE_SIZE)
                .filter(|l| l.ipa.end() > range.end() && Some(*l) != first);
            for block in [first, last].into_iter().flatten() {
                // Break.
                s2.clear(block.ipa)?;
                tlb.invalidate(block.ipa);
                // Make: the block's attributes again, outside the range.
                let attributes = block.attributes & !Stage2Attributes::TABLE_OR_PAGE;
                let below = PhysRange::from_bounds(block.ipa.base, range.base.max(block.ipa.base));
                let above =
                    PhysRange::from_bounds(range.end().min(block.ipa.end()), block.ipa.end());
                for part in [below, above] {
                    if !part.is_empty() {
                        s2.map_identity(part, attributes, s2.ram_constraints())?;
                    }
                }
            }
            // What is left in the range are whole leaves: clear them in runs.
            let mut rest = range;
            while let Some(run) = s2.next_run(rest) {
                debug_assert!(run.base >= range.base && run.end() <= range.end());
                s2.clear(run)?;
                rest = PhysRange::from_bounds(run.end(), range.end());
            }
            tlb.invalidate(range);
            Ok(())
        })
    }

    /// Maps the host RAM range `[pa, pa + len)` (page aligned) back into the live stage-2 as identity
    /// normal memory, with the attributes the boot build gave RAM. Only invalid entries change (invalid →
    /// valid needs no break-before-make); pages already mapped stay as they are. `tlb` runs for the range
    /// afterwards (not needed for correctness, since invalid entries are never cached, but it publishes the
    /// new descriptors with a `DSB` before the host runs again).
    ///
    /// The carve-out, SMMU frames, MMIO and addresses outside RAM can never be mapped through this: the
    /// range must lie inside the host RAM the stage-2 was built with.
    ///
    /// Invalid 1 GiB or 2 MiB entries at the ends of the range become tables: at most
    /// [`MAX_TABLES_PER_EDIT`], from the reserve, refilled before anything changes.
    ///
    /// # Merge back
    ///
    /// With [`RamLeaves::Blocks`] only (with pages there is nothing to merge): then every table the range touches that maps its whole block as the boot build did is replaced by
    /// that block again and freed, break-before-make like a split: a table of pages becomes a 2 MiB block,
    /// then a table of 2 MiB blocks a 1 GiB block. So the tables the stage-2 holds are those of the blocks
    /// cut by live donations, never of every block ever donated from. Merging only frees (to the reserve,
    /// then to the source), so it never fails for want of memory, and the rollback of a failed `DONATE`
    /// still needs no table.
    ///
    /// # Errors
    ///
    /// [`HostS2Error::Misaligned`], [`HostS2Error::NotHostRam`] or [`HostS2Error::NoTables`] (the reserve
    /// could not be refilled) before anything changed; [`HostS2Error::Map`] if the page-table library refuses
    /// the edit.
    pub fn map_range(
        &mut self,
        pa: u64,
        len: u64,
        tlb: &mut impl HostS2Tlb,
    ) -> Result<(), HostS2Error> {
        self.edit(pa, len, |s2, range| {
            s2.map_identity(range, RAM_ATTRIBUTES, s2.ram_constraints())?;
            tlb.invalidate(range);
            s2.merge_blocks(range, tlb)
        })
    }

    /// Merges back the tables of the blocks that `range` (host RAM just mapped) touches: first each 2 MiB
    /// block, then each 1 GiB block, whose table now maps all of it 1:1 with the boot build's RAM
    /// attributes, and which the boot build made a block ([`Self::boot_block`]: never one covering the
    /// carve-out, an excluded frame, MMIO or a hole). Each merge is break-before-make, whatever `FEAT_BBM`
    /// says (as a split in [`Self::unmap_range`]):
    /// 1. the table descriptor goes invalid (*break*); the page-table library then invalidates the
    ///    table's entries (`TLBI IPAS2E1IS` each, `DSB ISH`) and frees the table (to the reserve, or to
    ///    the source when the reserve is full);
    /// 2. `tlb.invalidate(block)` (the `CpuTlb` sequence, which also removes combined stage-1+2 entries);
    /// 3. the block descriptor is written (*make*).
    ///
    /// Another CPU touching the block between 1 and 3 takes a stage-2 translation fault that the EL2 fault
    /// handler retries once the lock is free, as for a split. Allocates nothing (no table, no list): the
    /// blocks are visited in address order, one short walk each.
    fn merge_blocks(
        &mut self,
        range: PhysRange,
        tlb: &mut impl HostS2Tlb,
    ) -> Result<(), HostS2Error> {
        for level in [ROOT_LEVEL + 2, ROOT_LEVEL + 1] {
            let g = granule(level);
            let mut block = range.base & !(g - 1);
            while block < range.end() {
                let b = PhysRange::from_bounds(block, block + g);
                if self.boot_block(b) && self.is_whole_identity_table(b, level) {
                    // Break (the library frees the table after its own TLBI), TLB maintenance, make.
                    self.clear(b)?;
                    tlb.invalidate(b);
                    self.map_identity(b, RAM_ATTRIBUTES, Constraints::empty())?;
                }
                block += g;
            }
        }
        Ok(())
    }

    /// Whether the boot build mapped the aligned block `b` as one block: RAM is mapped with
    /// [`RamLeaves::Blocks`] and `b` lies wholly inside one host RAM piece (RAM minus the excluded ranges,
    /// mapped one piece at a time, so a block never spans two). Never with [`RamLeaves::Pages`]: then
    /// nothing is merged.
    fn boot_block(&self, b: PhysRange) -> bool {
        self.ram_leaves == RamLeaves::Blocks
            && self
                .ram
                .iter()
                .any(|r| r.base <= b.base && b.end() <= r.end())
    }

    /// Whether the aligned block `b`, of `granule(level)`, is a table of `level + 1` entries that all map
    /// their own IPA as valid leaves with [`RAM_ATTRIBUTES`] (so the block with those attributes would
    /// translate every address of `b` the same way). Stops at the first entry that is not.
    fn is_whole_identity_table(&self, b: PhysRange, level: usize) -> bool {
        let mut entries = 0u64;
        let mr = MemoryRegion::new(b.base as usize, b.end() as usize);
        let walked = self.map.walk_range(&mr, &mut |mr, desc, l| {
            let start = mr.start().0 as u64;
            let whole = l == level + 1
                && desc.is_valid()
                && desc.output_address().0 as u64 == start
                && start.is_multiple_of(granule(l))
                && desc.flags() & !Stage2Attributes::TABLE_OR_PAGE == RAM_ATTRIBUTES;
            entries += 1;
            if whole { Ok(()) } else { Err(()) }
        });
        walked.is_ok() && entries == granule(level) / granule(level + 1)
    }
}
