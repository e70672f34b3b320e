//! The host stage-2 tables: the boot build and walks; the runtime edits (donation and reclaim) are in
//! `tables/edit.rs`.

use aarch64_paging::descriptor::{PhysicalAddress, Stage2Attributes};
use aarch64_paging::paging::{Constraints, MemoryRegion, Stage2};
use aarch64_paging::{MapError, Mapping};
use alloc::sync::Arc;
use alloc::vec::Vec;
use spin::Mutex;

use super::layout::{HostS2Spec, RamLeaves, grow_to_pages, shrink_to_pages, subtract, to_pages};
use super::reserve::{HeapTables, HostS2Tables, MAX_TABLES_PER_EDIT, TableSource, Tables};
use super::{
    HostS2Error, IPA_LIMIT, Leaf, MMIO_ATTRIBUTES, MemKind, RAM_ATTRIBUTES, ROOT_LEVEL, Translation,
};
use warden_abi::{PAGE_SIZE, granule};
use warden_dt::PhysRange;

mod edit;

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
