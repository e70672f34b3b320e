//! The host stage-2 tables: the boot build, walks, and the runtime edits (donation and reclaim).

use aarch64_paging::descriptor::{PhysicalAddress, Stage2Attributes};
use aarch64_paging::paging::{Constraints, MemoryRegion, Stage2};
use aarch64_paging::{MapError, Mapping};
use alloc::sync::Arc;
use alloc::vec::Vec;
use spin::Mutex;

use super::layout::{HostS2Spec, RamLeaves, grow_to_pages, shrink_to_pages, subtract, to_pages};
use super::reserve::{HeapTables, HostS2Tables, MAX_TABLES_PER_EDIT, TableSource, Tables};
use super::{
    HostS2Error, HostS2Tlb, IPA_LIMIT, Leaf, MMIO_ATTRIBUTES, MemKind, RAM_ATTRIBUTES, ROOT_LEVEL,
    Translation,
};
use warden_abi::{PAGE_SIZE, granule};
use warden_dt::PhysRange;

/// The host's stage-2 translation (VMID 0), its tables from `S` ([`HeapTables`] at EL2).
pub struct HostStage2<S: TableSource = HeapTables> {
    pub(super) map: Mapping<HostS2Tables<S>, Stage2>,
    pub(super) tables: Arc<Mutex<Tables<S>>>,
    ram: Vec<PhysRange>,
    ram_leaves: RamLeaves,
}

impl<S: TableSource> core::fmt::Debug for HostStage2<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HostStage2")
            .field("root", &self.root_pa())
            .field("ram", &self.ram)
            .field("ram_leaves", &self.ram_leaves)
            .finish()
    }
}
impl HostStage2 {
    /// Builds the host stage-2 from `spec`, its tables from the heap.
    ///
    /// # Errors
    ///
    /// As [`HostStage2::build_with`].
    pub fn build(spec: &HostS2Spec<'_>) -> Result<Self, HostS2Error> {
        Self::build_with(spec, HeapTables)
    }
}

impl<S: TableSource> HostStage2<S> {
    /// Builds the host stage-2 from `spec`, its tables from `source`. The build allocates as many tables as
    /// it needs (it panics if `source` runs dry: boot, not host input); runtime edits allocate only from a
    /// reserve refilled, fallibly, before each edit.
    ///
    /// # Errors
    ///
    /// [`HostS2Error::OutOfRange`] if a region reaches beyond [`IPA_LIMIT`], [`HostS2Error::RamOverlapsMmio`]
    /// if RAM and MMIO overlap, [`HostS2Error::Map`] if the page-table library fails.
    pub fn build_with(spec: &HostS2Spec<'_>, source: S) -> Result<Self, HostS2Error> {
        Self::build_filling(spec, source, true)
    }

    /// [`Self::build_with`], host RAM with [`RamLeaves::Pages`] mapped page by page through the library
    /// rather than filled directly: the reference the direct fill is compared with.
    #[cfg(test)]
    pub(super) fn build_per_page(spec: &HostS2Spec<'_>, source: S) -> Result<Self, HostS2Error> {
        Self::build_filling(spec, source, false)
    }

    /// [`Self::build_with`]; `direct`: host RAM with [`RamLeaves::Pages`] goes through
    /// [`Self::fill_ram_pages`] (whole 2 MiB blocks filled a table at a time), else through the library.
    fn build_filling(spec: &HostS2Spec<'_>, source: S, direct: bool) -> Result<Self, HostS2Error> {
        let excluded: Vec<PhysRange> = spec.excluded.iter().map(|r| grow_to_pages(*r)).collect();
        let ram = to_pages(spec.ram, shrink_to_pages);
        let mmio = to_pages(spec.mmio, grow_to_pages);
        for r in ram.iter().chain(mmio.iter()) {
            if r.end() > IPA_LIMIT {
                return Err(HostS2Error::OutOfRange(r.end()));
            }
        }
        if let Some(r) = ram.iter().find(|r| mmio.iter().any(|m| m.overlaps(r))) {
            return Err(HostS2Error::RamOverlapsMmio(r.base));
        }

        let tables = Arc::new(Mutex::new(Tables {
            source,
            reserve: Vec::with_capacity(MAX_TABLES_PER_EDIT),
            live: false,
            allocated: 0,
        }));
        let mut s2 = Self {
            map: Mapping::new(HostS2Tables(tables.clone()), ROOT_LEVEL, Stage2),
            tables,
            ram: Vec::new(),
            ram_leaves: spec.ram_leaves,
        };
        for r in &ram {
            for piece in subtract(*r, &excluded) {
                if direct && s2.ram_leaves == RamLeaves::Pages {
                    s2.fill_ram_pages(piece)?;
                } else {
                    s2.map_identity(piece, RAM_ATTRIBUTES, s2.ram_constraints())?;
                }
                s2.ram.push(piece);
            }
        }
        for r in &mmio {
            for piece in subtract(*r, &excluded) {
                s2.map_identity(piece, MMIO_ATTRIBUTES, Constraints::empty())?;
            }
        }
        Ok(s2)
    }

    /// The library's constraints for mapping host RAM: no blocks with [`RamLeaves::Pages`].
    fn ram_constraints(&self) -> Constraints {
        match self.ram_leaves {
            RamLeaves::Pages => Constraints::NO_BLOCK_MAPPINGS,
            RamLeaves::Blocks => Constraints::empty(),
        }
    }

    /// Maps `r` 1:1 with `attributes`, blocks where alignment and `constraints` allow.
    pub(super) fn map_identity(
        &mut self,
        r: PhysRange,
        attributes: Stage2Attributes,
        constraints: Constraints,
    ) -> Result<(), HostS2Error> {
        let range = MemoryRegion::new(r.base as usize, r.end() as usize);
        self.map
            .map_range(
                &range,
                PhysicalAddress(r.base as usize),
                attributes,
                constraints,
            )
            .map_err(|e: MapError| match e {
                MapError::AddressRange(_) => HostS2Error::OutOfRange(r.end()),
                _ => HostS2Error::Map(r.base),
            })
    }

    /// Runs `f` on the table source (e.g. [`PoolTables::use_pool`](super::PoolTables::use_pool) once the pool
    /// exists).
    pub fn with_source(&mut self, f: impl FnOnce(&mut S)) {
        f(&mut self.tables.lock().source);
    }

    /// Physical address of the root table: the value for `VTTBR_EL2.BADDR` (VMID 0).
    pub fn root_pa(&self) -> u64 {
        self.map.root_address().0 as u64
    }

    /// Whether `pa` is host RAM mapped by this stage-2 (not the carve-out, not MMIO).
    pub fn is_host_ram(&self, pa: u64) -> bool {
        self.ram.iter().any(|r| r.contains(pa))
    }

    /// The host RAM ranges this stage-2 maps, in order.
    pub fn host_ram(&self) -> &[PhysRange] {
        &self.ram
    }

    /// Every valid leaf descriptor of the table, in IPA order (a full walk of the IPA space).
    pub fn leaves(&self) -> Vec<Leaf> {
        let mut leaves = Vec::new();
        let whole = MemoryRegion::new(0, IPA_LIMIT as usize);
        self.map
            .walk_range(&whole, &mut |mr, desc, level| {
                if desc.is_valid() {
                    let attributes = desc.flags();
                    let kind = if attributes.contains(Stage2Attributes::MEMATTR_NORMAL_INNER_WB) {
                        MemKind::Ram
                    } else {
                        MemKind::Mmio
                    };
                    leaves.push(Leaf {
                        ipa: PhysRange::from_bounds(mr.start().0 as u64, mr.end().0 as u64),
                        pa: desc.output_address().0 as u64,
                        level,
                        kind,
                        attributes,
                    });
                }
                Ok(())
            })
            .expect("walking the whole IPA space of a well-formed table cannot fail");
        leaves
    }

    /// Translates `ipa` by walking the table: `None` if the host has no mapping there.
    pub fn translate(&self, ipa: u64) -> Option<Translation> {
        if ipa >= IPA_LIMIT {
            return None;
        }
        let leaf = self.leaf_at(ipa)?;
        Some(Translation {
            pa: leaf.pa + (ipa - leaf.ipa.base),
            kind: leaf.kind,
            level: leaf.level,
        })
    }

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

    /// The start of every live edit: [`Self::check_ram_range`], then [`Self::refill`] for it, before any
    /// descriptor changes.
    fn refilled_for(&mut self, pa: u64, len: u64) -> Result<PhysRange, HostS2Error> {
        let range = self.check_ram_range(pa, len)?;
        self.refill(range)?;
        Ok(range)
    }

    /// The valid leaves of the table that intersect `range`, each with its whole extent (a block is
    /// reported once, not clipped to `range`).
    fn leaves_in(&self, range: PhysRange) -> Vec<Leaf> {
        let mut leaves: Vec<Leaf> = Vec::new();
        let mr = MemoryRegion::new(range.base as usize, range.end() as usize);
        self.map
            .walk_range(&mr, &mut |mr, desc, level| {
                if desc.is_valid() {
                    leaves.push(whole_leaf(mr, desc, level));
                }
                Ok(())
            })
            .expect("walking host RAM of a well-formed table cannot fail");
        leaves
    }

    /// The valid leaf holding the page at `addr`, with its whole extent. Never allocates.
    fn leaf_at(&self, addr: u64) -> Option<Leaf> {
        let page = addr & !(PAGE_SIZE - 1);
        let mut found = None;
        let mr = MemoryRegion::new(page as usize, (page + PAGE_SIZE) as usize);
        self.map
            .walk_range(&mr, &mut |mr, desc, level| {
                if desc.is_valid() {
                    found = Some(whole_leaf(mr, desc, level));
                }
                Ok(())
            })
            .ok()?;
        found
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
    pub(super) fn tables_needed(&self, range: PhysRange) -> usize {
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
        let result = (|| -> Result<(), HostS2Error> {
            let range = self.refilled_for(pa, len)?;
            // Only the leaves holding the range's first and last pages can reach outside it (found before any
            // change; the same block if one holds both ends). No heap allocation from here on: the size of
            // the range is the host's choice.
            let first = self
                .leaf_at(range.base)
                .filter(|l| l.ipa.base < range.base || l.ipa.end() > range.end());
            let last = self
                .leaf_at(range.end() - PAGE_SIZE)
                .filter(|l| l.ipa.end() > range.end() && Some(*l) != first);
            for block in [first, last].into_iter().flatten() {
                // Break.
                self.clear(block.ipa)?;
                tlb.invalidate(block.ipa);
                // Make: the block's attributes again, outside the range.
                let attributes = block.attributes & !Stage2Attributes::TABLE_OR_PAGE;
                let below = PhysRange::from_bounds(block.ipa.base, range.base.max(block.ipa.base));
                let above =
                    PhysRange::from_bounds(range.end().min(block.ipa.end()), block.ipa.end());
                for part in [below, above] {
                    if !part.is_empty() {
                        self.map_identity(part, attributes, self.ram_constraints())?;
                    }
                }
            }
            // What is left in the range are whole leaves: clear them in runs.
            let mut rest = range;
            while let Some(run) = self.next_run(rest) {
                debug_assert!(run.base >= range.base && run.end() <= range.end());
                self.clear(run)?;
                rest = PhysRange::from_bounds(run.end(), range.end());
            }
            tlb.invalidate(range);
            Ok(())
        })();
        self.settle();
        result
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
        let result = (|| -> Result<(), HostS2Error> {
            let range = self.refilled_for(pa, len)?;
            self.map_identity(range, RAM_ATTRIBUTES, self.ram_constraints())?;
            tlb.invalidate(range);
            self.merge_blocks(range, tlb)
        })();
        self.settle();
        result
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

    /// Whether every page of `[pa, pa + len)` translates (identity) for the host.
    pub fn is_mapped(&self, pa: u64, len: u64) -> bool {
        let Some(end) = pa.checked_add(len) else {
            return false;
        };
        let mut covered = pa & !(PAGE_SIZE - 1);
        for leaf in self.leaves_in(PhysRange::from_bounds(covered, end.max(covered + 1))) {
            if leaf.ipa.base > covered {
                return false;
            }
            covered = covered.max(leaf.ipa.end());
        }
        covered >= end
    }

    /// Marks the table live for the page-table library's break-before-make checks (tests: as at EL2).
    #[cfg(test)]
    pub(super) fn mark_live(&mut self) {
        self.tables.lock().live = true;
        self.map.mark_active();
    }

    /// Marks the table live, so that later changes are checked against break-before-make rules, and (on
    /// aarch64 outside tests) writes `VTTBR_EL2` with the root address and VMID 0.
    ///
    /// # Safety
    ///
    /// Must run at EL2 with `VTCR_EL2` programmed by [`vtcr`](super::vtcr); the table must stay alive while any
    /// CPU uses it, and must map everything the host is about to touch.
    pub unsafe fn activate(&mut self) {
        self.tables.lock().live = true;
        // SAFETY: Our caller promised the above.
        unsafe {
            self.map.activate();
        }
    }
}

/// The leaf a table walk reports as `(mr, desc, level)`, with the whole extent of its descriptor.
fn whole_leaf(
    mr: &MemoryRegion,
    desc: &aarch64_paging::descriptor::Descriptor<Stage2Attributes>,
    level: usize,
) -> Leaf {
    let size = granule(level);
    let start = mr.start().0 as u64 & !(size - 1);
    let attributes = desc.flags();
    Leaf {
        ipa: PhysRange::from_bounds(start, start + size),
        pa: desc.output_address().0 as u64,
        level,
        kind: if attributes.contains(Stage2Attributes::MEMATTR_NORMAL_INNER_WB) {
            MemKind::Ram
        } else {
            MemKind::Mmio
        },
        attributes,
    }
}
