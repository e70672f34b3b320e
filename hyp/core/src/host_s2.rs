//! Host stage-2 construction: identity for host RAM and MMIO, never the hyp carve-out nor SMMU frames.
//!
//! The host kernel runs at EL1 behind one stage-2 translation (VMID 0) shared by every CPU. It is an identity
//! map built from the platform description: all RAM as normal write-back memory and the MMIO windows (the
//! regions of the device nodes [`crate::devices`] classified for the host) as device memory, minus the
//! excluded regions — the hypervisor carve-out, the SMMU register frames, withheld devices. An access to an unmapped IPA faults to EL2, which
//! injects an external abort into the host. Block mappings (1 GiB, 2 MiB) are used wherever alignment allows.
//!
//! ```
//! use warden_core::host_s2::{HostStage2, HostS2Spec, Region};
//!
//! let ram = [Region::new(0x4000_0000, 0x8000_0000)];
//! let mmio = [Region::new(0, 0x4000_0000)];
//! let excluded = [Region::new(0x4000_0000, 0x41e0_0000), Region::new(0x0905_0000, 0x0907_0000)];
//! let s2 = HostStage2::build(&HostS2Spec { ram: &ram, mmio: &mmio, excluded: &excluded }).unwrap();
//! assert_eq!(s2.translate(0x4000_1000), None);
//! assert_eq!(s2.translate(0x4200_0000).unwrap().pa, 0x4200_0000);
//! ```

use aarch64_paging::descriptor::{PhysicalAddress, Stage2Attributes};
use aarch64_paging::paging::{Constraints, MemoryRegion, PageTable, Stage2};
use aarch64_paging::{MapError, Mapping};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::alloc::Layout;
use core::ptr::NonNull;
use spin::Mutex;

use crate::trap::esr::{EC_DABT_LOW, EC_IABT_LOW, ESR_S1PTW, ESR_WNR, exception_class};

/// Translation granule: 4 KiB.
pub const PAGE_SIZE: u64 = 4096;
/// Size of the intermediate physical address space the host stage-2 covers: 48 bits (root table at level 0).
pub const IPA_BITS: u32 = 48;
/// The first IPA the host stage-2 cannot map.
pub const IPA_LIMIT: u64 = 1 << IPA_BITS;
/// The level of the root table for [`IPA_BITS`] with a 4 KiB granule.
pub const ROOT_LEVEL: usize = 0;

/// Stage-2 attributes of host RAM: normal inner/outer write-back, inner shareable, read/write, executable.
pub const RAM_ATTRIBUTES: Stage2Attributes = Stage2Attributes::VALID
    .union(Stage2Attributes::MEMATTR_NORMAL_INNER_WB)
    .union(Stage2Attributes::MEMATTR_NORMAL_OUTER_WB)
    .union(Stage2Attributes::S2AP_ACCESS_RW)
    .union(Stage2Attributes::SH_INNER)
    .union(Stage2Attributes::ACCESS_FLAG);

/// Stage-2 attributes of host MMIO: Device-nGnRE, read/write, execute-never.
pub const MMIO_ATTRIBUTES: Stage2Attributes = Stage2Attributes::VALID
    .union(Stage2Attributes::MEMATTR_DEVICE_nGnRE)
    .union(Stage2Attributes::S2AP_ACCESS_RW)
    .union(Stage2Attributes::ACCESS_FLAG)
    .union(Stage2Attributes::XN);

/// A half-open physical address range `[start, end)`.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Region {
    /// First address in the range.
    pub start: u64,
    /// First address after the range.
    pub end: u64,
}

impl Region {
    /// The range `[start, end)`.
    pub const fn new(start: u64, end: u64) -> Self {
        Self { start, end }
    }

    /// The range of `size` bytes at `start` (saturating at the top of the address space).
    pub const fn with_size(start: u64, size: u64) -> Self {
        Self {
            start,
            end: start.saturating_add(size),
        }
    }

    /// Whether the range holds no address.
    pub const fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// Whether `addr` lies in the range.
    pub const fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }

    /// Whether the two ranges share at least one address.
    pub const fn overlaps(&self, other: &Region) -> bool {
        self.start < other.end && other.start < self.end
    }

    /// The largest page-aligned range inside this one.
    const fn shrink_to_pages(self) -> Self {
        Self {
            start: self.start.saturating_add(PAGE_SIZE - 1) & !(PAGE_SIZE - 1),
            end: self.end & !(PAGE_SIZE - 1),
        }
    }

    /// The smallest page-aligned range holding this one.
    const fn grow_to_pages(self) -> Self {
        Self {
            start: self.start & !(PAGE_SIZE - 1),
            end: self.end.saturating_add(PAGE_SIZE - 1) & !(PAGE_SIZE - 1),
        }
    }
}

/// The platform description the host stage-2 is built from.
#[derive(Clone, Copy, Debug)]
pub struct HostS2Spec<'a> {
    /// Every RAM bank (from the device tree's `/memory` nodes). Shrunk to page boundaries.
    pub ram: &'a [Region],
    /// Every MMIO window the host may use (from the boot-time classification, [`crate::devices`]).
    /// Grown to page boundaries.
    pub mmio: &'a [Region],
    /// Ranges never mapped for the host, whatever `ram` and `mmio` say: the hypervisor carve-out, the SMMU
    /// register frames. Grown to page boundaries.
    pub excluded: &'a [Region],
}

/// Errors building the host stage-2.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum HostS2Error {
    /// A region reaches past [`IPA_LIMIT`]; carries the region's end.
    OutOfRange(u64),
    /// A RAM region overlaps an MMIO region; carries the start of the RAM region.
    RamOverlapsMmio(u64),
    /// The page-table library refused a mapping (e.g. out of memory); carries the start of the region.
    Map(u64),
    /// A runtime edit's start or length is not page aligned, or its length is zero or overflows; carries
    /// the start.
    Misaligned(u64),
    /// A runtime edit reaches outside the host RAM this stage-2 was built with (the carve-out, an SMMU
    /// frame, MMIO, beyond RAM); carries the start.
    NotHostRam(u64),
    /// The table reserve could not be refilled to [`MAX_TABLES_PER_EDIT`] pages before a runtime edit (the
    /// hyp heap is exhausted); nothing changed. Carries the start of the edit.
    NoTables(u64),
}

impl core::fmt::Display for HostS2Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::OutOfRange(end) => write!(
                f,
                "region ending at {end:#x} is beyond the {IPA_BITS}-bit IPA space"
            ),
            Self::RamOverlapsMmio(start) => write!(f, "RAM at {start:#x} overlaps an MMIO window"),
            Self::Map(start) => write!(f, "mapping the region at {start:#x} failed"),
            Self::Misaligned(start) => write!(f, "range at {start:#x} is not a page-aligned range"),
            Self::NotHostRam(start) => write!(f, "range at {start:#x} is not host RAM"),
            Self::NoTables(start) => write!(
                f,
                "no hyp heap for the page tables of the edit at {start:#x}"
            ),
        }
    }
}

/// Kind of memory behind a host IPA.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum MemKind {
    /// Normal write-back memory (host RAM).
    Ram,
    /// Device memory (MMIO).
    Device,
}

/// One valid leaf descriptor of the host stage-2, as found by a table walk.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Leaf {
    /// The IPA range the descriptor covers.
    pub ipa: Region,
    /// The output address of the descriptor (equal to `ipa.start` in an identity map).
    pub pa: u64,
    /// Translation level of the descriptor: 1 (1 GiB block), 2 (2 MiB block) or 3 (4 KiB page).
    pub level: usize,
    /// Memory type of the mapping.
    pub kind: MemKind,
    /// The raw stage-2 attributes.
    pub attributes: Stage2Attributes,
}

/// A host IPA translated through the stage-2 tables.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Translation {
    /// The output physical address.
    pub pa: u64,
    /// Memory type.
    pub kind: MemKind,
    /// Level of the leaf descriptor.
    pub level: usize,
}

/// CPU TLB maintenance for a live edit of the host stage-2 (see [`HostStage2::unmap_range`]).
pub trait HostS2Tlb {
    /// Called after descriptors covering `region` changed: must return only once no CPU's TLB (stage-2
    /// entries and combined stage-1+2 entries of VMID 0) can hold a translation of `region` made from the old
    /// descriptors. At EL2: `DSB ISHST`; `TLBI IPAS2E1IS` for each page of `region` (or one
    /// `TLBI VMALLS12E1IS` for large regions); `DSB ISH`; `TLBI VMALLE1IS`; `DSB ISH`; `ISB`.
    fn invalidate(&mut self, region: Region);
}

/// The most page tables one runtime edit ([`HostStage2::unmap_range`], [`HostStage2::map_range`]) can
/// allocate: the range has two ends, and at each end one 1 GiB block (or invalid 1 GiB entry) becomes a table
/// of 2 MiB entries plus one table of 4 KiB pages. Level-1 tables for host RAM all exist after the boot build
/// (every RAM range is mapped then), so nothing above level 2 is ever allocated by an edit.
pub const MAX_TABLES_PER_EDIT: usize = 4;

/// Where the host stage-2 gets its page tables from (the hyp heap at EL2; tests inject failing sources).
pub trait TableSource: Send {
    /// A zeroed, 4 KiB-aligned page table owned by the caller, or `None` if none is available.
    fn alloc_table(&mut self) -> Option<NonNull<PageTable<Stage2Attributes>>>;

    /// Gives back a table from [`Self::alloc_table`].
    ///
    /// # Safety
    ///
    /// `table` came from `alloc_table` of this source, is no longer referenced, and is freed only once.
    unsafe fn free_table(&mut self, table: NonNull<PageTable<Stage2Attributes>>);
}

/// Page tables from the global heap (the hyp heap at EL2, which maps it 1:1, so a table's address is its PA).
#[derive(Clone, Copy, Debug, Default)]
pub struct HeapTables;

/// The layout of one page table.
const TABLE_LAYOUT: Layout = Layout::new::<PageTable<Stage2Attributes>>();

impl TableSource for HeapTables {
    fn alloc_table(&mut self) -> Option<NonNull<PageTable<Stage2Attributes>>> {
        // SAFETY: `TABLE_LAYOUT` has a non-zero size; an all-zero page table is valid (every entry invalid).
        NonNull::new(unsafe { alloc::alloc::alloc_zeroed(TABLE_LAYOUT) }.cast())
    }

    unsafe fn free_table(&mut self, table: NonNull<PageTable<Stage2Attributes>>) {
        // SAFETY: Our caller promises `table` came from `alloc_table`, which used the global allocator with
        // `TABLE_LAYOUT`, and is freed once.
        unsafe { alloc::alloc::dealloc(table.as_ptr().cast(), TABLE_LAYOUT) };
    }
}

/// The host stage-2's table source and its reserve of at most [`MAX_TABLES_PER_EDIT`] zeroed tables.
struct Tables<S> {
    source: S,
    reserve: Vec<NonNull<PageTable<Stage2Attributes>>>,
    /// Set once the table is live: from then on tables come only from the reserve.
    live: bool,
    /// Tables handed out so far (tests check the per-edit bound with it).
    allocated: usize,
}

// SAFETY: The reserved tables are owned by this value alone (taken from the source, not yet handed to the
// page-table library), so moving it to another CPU moves their ownership with it.
unsafe impl<S: TableSource> Send for Tables<S> {}

/// aarch64-paging [`aarch64_paging::paging::Translation`] of the host stage-2 (identity: a table's address is
/// its PA). Allocation pops the reserve; while the table is being built, before it goes live, it may also take
/// from the source (boot, not host input). Deallocated tables go back to the reserve, or to the source when
/// the reserve is full.
struct HostS2Tables<S>(Arc<Mutex<Tables<S>>>);

impl<S: TableSource> aarch64_paging::paging::Translation<Stage2Attributes> for HostS2Tables<S> {
    fn allocate_table(&mut self) -> (NonNull<PageTable<Stage2Attributes>>, PhysicalAddress) {
        let mut t = self.0.lock();
        let table = match t.reserve.pop() {
            Some(table) => table,
            None if !t.live => t
                .source
                .alloc_table()
                .expect("hyp heap exhausted while building the host stage-2"),
            // A broken invariant: every edit refills the reserve to the bound first (see the tests).
            None => panic!("host stage-2 edit needed more than {MAX_TABLES_PER_EDIT} tables"),
        };
        t.allocated += 1;
        (table, PhysicalAddress(table.as_ptr() as usize))
    }

    unsafe fn deallocate_table(&mut self, table: NonNull<PageTable<Stage2Attributes>>) {
        let mut t = self.0.lock();
        if t.reserve.len() < MAX_TABLES_PER_EDIT {
            // SAFETY: The library no longer references `table`, a whole page table we own: zero it so that
            // the reserve only holds empty tables.
            unsafe { table.as_ptr().write_bytes(0, 1) };
            t.reserve.push(table);
        } else {
            // SAFETY: Our caller promises the library allocated `table` here and no longer uses it; every
            // table came from the source.
            unsafe { t.source.free_table(table) };
        }
    }

    fn physical_to_virtual(&self, pa: PhysicalAddress) -> NonNull<PageTable<Stage2Attributes>> {
        NonNull::new(pa.0 as *mut PageTable<Stage2Attributes>).expect("host stage-2 table at PA 0")
    }
}

/// The host's stage-2 translation (VMID 0), its tables from `S` ([`HeapTables`] at EL2).
pub struct HostStage2<S: TableSource = HeapTables> {
    map: Mapping<HostS2Tables<S>, Stage2>,
    tables: Arc<Mutex<Tables<S>>>,
    ram: Vec<Region>,
}

impl<S: TableSource> core::fmt::Debug for HostStage2<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HostStage2")
            .field("root", &self.root_pa())
            .field("ram", &self.ram)
            .finish()
    }
}

/// `ranges` minus every hole in `holes` (both page aligned), as a list of non-empty ranges in order.
pub(crate) fn subtract(range: Region, holes: &[Region]) -> Vec<Region> {
    let mut pieces = alloc::vec![range];
    for hole in holes {
        let mut next = Vec::new();
        for piece in pieces {
            if !piece.overlaps(hole) {
                next.push(piece);
                continue;
            }
            let below = Region::new(piece.start, hole.start.min(piece.end));
            let above = Region::new(hole.end.max(piece.start), piece.end);
            for part in [below, above] {
                if !part.is_empty() {
                    next.push(part);
                }
            }
        }
        pieces = next;
    }
    pieces
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
        let excluded: Vec<Region> = spec.excluded.iter().map(|r| r.grow_to_pages()).collect();
        let ram: Vec<Region> = spec
            .ram
            .iter()
            .map(|r| r.shrink_to_pages())
            .filter(|r| !r.is_empty())
            .collect();
        let mmio: Vec<Region> = spec
            .mmio
            .iter()
            .map(|r| r.grow_to_pages())
            .filter(|r| !r.is_empty())
            .collect();
        for r in ram.iter().chain(mmio.iter()) {
            if r.end > IPA_LIMIT {
                return Err(HostS2Error::OutOfRange(r.end));
            }
        }
        if let Some(r) = ram.iter().find(|r| mmio.iter().any(|m| m.overlaps(r))) {
            return Err(HostS2Error::RamOverlapsMmio(r.start));
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
        };
        for r in &ram {
            for piece in subtract(*r, &excluded) {
                s2.map_identity(piece, RAM_ATTRIBUTES)?;
                s2.ram.push(piece);
            }
        }
        for r in &mmio {
            for piece in subtract(*r, &excluded) {
                s2.map_identity(piece, MMIO_ATTRIBUTES)?;
            }
        }
        Ok(s2)
    }

    fn map_identity(&mut self, r: Region, attributes: Stage2Attributes) -> Result<(), HostS2Error> {
        let range = MemoryRegion::new(r.start as usize, r.end as usize);
        self.map
            .map_range(
                &range,
                PhysicalAddress(r.start as usize),
                attributes,
                Constraints::empty(),
            )
            .map_err(|e: MapError| match e {
                MapError::AddressRange(_) => HostS2Error::OutOfRange(r.end),
                _ => HostS2Error::Map(r.start),
            })
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
    pub fn host_ram(&self) -> &[Region] {
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
                        MemKind::Device
                    };
                    leaves.push(Leaf {
                        ipa: Region::new(mr.start().0 as u64, mr.end().0 as u64),
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
        let page = ipa & !(PAGE_SIZE - 1);
        let mut found = None;
        let range = MemoryRegion::new(page as usize, (page + PAGE_SIZE) as usize);
        self.map
            .walk_range(&range, &mut |mr, desc, level| {
                if desc.is_valid() {
                    let kind = if desc
                        .flags()
                        .contains(Stage2Attributes::MEMATTR_NORMAL_INNER_WB)
                    {
                        MemKind::Ram
                    } else {
                        MemKind::Device
                    };
                    let block_start = mr.start().0 as u64 & !(granule(level) - 1);
                    let pa = desc.output_address().0 as u64 + (ipa - block_start);
                    found = Some(Translation { pa, kind, level });
                }
                Ok(())
            })
            .ok()?;
        found
    }

    /// The page-aligned host RAM range `[pa, pa + len)`, checked: non-empty, inside one RAM range this
    /// stage-2 was built with (so never the carve-out, an SMMU frame or MMIO).
    fn check_ram_range(&self, pa: u64, len: u64) -> Result<Region, HostS2Error> {
        let end = pa.checked_add(len).ok_or(HostS2Error::Misaligned(pa))?;
        if len == 0 || !pa.is_multiple_of(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) {
            return Err(HostS2Error::Misaligned(pa));
        }
        let range = Region::new(pa, end);
        if !self
            .ram
            .iter()
            .any(|r| r.start <= range.start && range.end <= r.end)
        {
            return Err(HostS2Error::NotHostRam(pa));
        }
        Ok(range)
    }

    /// The valid leaves of the table that intersect `range`, each with its whole extent (a block is
    /// reported once, not clipped to `range`).
    fn leaves_in(&self, range: Region) -> Vec<Leaf> {
        let mut leaves: Vec<Leaf> = Vec::new();
        let mr = MemoryRegion::new(range.start as usize, range.end as usize);
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
    fn next_run(&self, range: Region) -> Option<Region> {
        let mut run: Option<Region> = None;
        let mr = MemoryRegion::new(range.start as usize, range.end as usize);
        // The walk stops (callback error) at the first gap after a run: that error is the expected end.
        let _ = self.map.walk_range(&mr, &mut |mr, desc, level| {
            let ipa = whole_leaf(mr, desc, level).ipa;
            match (desc.is_valid(), run) {
                (true, None) => run = Some(ipa),
                (true, Some(r)) if r.end == ipa.start => run = Some(Region::new(r.start, ipa.end)),
                (false, None) => {}
                _ => return Err(()),
            }
            Ok(())
        });
        run
    }

    /// Writes invalid descriptors over `r`, which must be exactly covered by whole valid leaves or
    /// invalid entries (no block is split). Never allocates.
    fn clear(&mut self, r: Region) -> Result<(), HostS2Error> {
        let range = MemoryRegion::new(r.start as usize, r.end as usize);
        self.map
            .map_range(
                &range,
                PhysicalAddress(r.start as usize),
                Stage2Attributes::empty(),
                Constraints::empty(),
            )
            .map_err(|_| HostS2Error::Map(r.start))
    }

    /// Refills the table reserve to [`MAX_TABLES_PER_EDIT`] tables with fallible allocations, so that the
    /// edit of `range` that follows cannot run out (tables it frees go back to the reserve). Changes no
    /// descriptor. A short heap is an error only if the edit may allocate ([`Self::needs_tables`]): so an
    /// edit that undoes the one before (the rollback of a failed `DONATE`) never fails for want of heap.
    fn refill(&mut self, range: Region) -> Result<(), HostS2Error> {
        let needs_tables = self.needs_tables(range);
        let mut t = self.tables.lock();
        while t.reserve.len() < MAX_TABLES_PER_EDIT {
            match t.source.alloc_table() {
                // Never reallocates: the capacity is the bound, allocated at build time.
                Some(table) => t.reserve.push(table),
                None if needs_tables => return Err(HostS2Error::NoTables(range.start)),
                None => break,
            }
        }
        Ok(())
    }

    /// Whether an edit of `range` may allocate a table: a descriptor (valid or not) above level 3 covers
    /// one of its ends and reaches outside it. Otherwise every descriptor the edit writes exists already.
    fn needs_tables(&self, range: Region) -> bool {
        [range.start, range.end - PAGE_SIZE]
            .into_iter()
            .any(|addr| {
                let mut needs = true;
                let mr = MemoryRegion::new(addr as usize, (addr + PAGE_SIZE) as usize);
                let _ = self.map.walk_range(&mr, &mut |mr, desc, level| {
                    let ipa = whole_leaf(mr, desc, level).ipa;
                    needs = level < 3 && (ipa.start < range.start || ipa.end > range.end);
                    Ok(())
                });
                needs
            })
    }

    /// Removes the host RAM range `[pa, pa + len)` (page aligned) from the live stage-2, splitting the
    /// blocks that straddle its ends; every other address keeps its translation. On return every CPU's
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
        let range = self.check_ram_range(pa, len)?;
        self.refill(range)?;
        // Only the leaves holding the range's first and last pages can reach outside it (found before any
        // change; the same block if one holds both ends). No heap allocation from here on: the size of
        // the range is the host's choice.
        let first = self
            .leaf_at(range.start)
            .filter(|l| l.ipa.start < range.start || l.ipa.end > range.end);
        let last = self
            .leaf_at(range.end - PAGE_SIZE)
            .filter(|l| l.ipa.end > range.end && Some(*l) != first);
        for block in [first, last].into_iter().flatten() {
            // Break.
            self.clear(block.ipa)?;
            tlb.invalidate(block.ipa);
            // Make: the block's attributes again, outside the range.
            let attributes = block.attributes & !Stage2Attributes::TABLE_OR_PAGE;
            let below = Region::new(block.ipa.start, range.start.max(block.ipa.start));
            let above = Region::new(range.end.min(block.ipa.end), block.ipa.end);
            for part in [below, above] {
                if !part.is_empty() {
                    self.map_identity(part, attributes)?;
                }
            }
        }
        // What is left in the range are whole leaves: clear them in runs.
        let mut rest = range;
        while let Some(run) = self.next_run(rest) {
            debug_assert!(run.start >= range.start && run.end <= range.end);
            self.clear(run)?;
            rest = Region::new(run.end, range.end);
        }
        tlb.invalidate(range);
        Ok(())
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
        let range = self.check_ram_range(pa, len)?;
        self.refill(range)?;
        self.map_identity(range, RAM_ATTRIBUTES)?;
        tlb.invalidate(range);
        Ok(())
    }

    /// Whether every page of `[pa, pa + len)` translates (identity) for the host.
    pub fn is_mapped(&self, pa: u64, len: u64) -> bool {
        let Some(end) = pa.checked_add(len) else {
            return false;
        };
        let mut covered = pa & !(PAGE_SIZE - 1);
        for leaf in self.leaves_in(Region::new(covered, end.max(covered + 1))) {
            if leaf.ipa.start > covered {
                return false;
            }
            covered = covered.max(leaf.ipa.end);
        }
        covered >= end
    }

    /// Marks the table live for the page-table library's break-before-make checks (tests: as at EL2).
    #[cfg(test)]
    fn mark_live(&mut self) {
        self.tables.lock().live = true;
        self.map.mark_active();
    }

    /// Marks the table live, so that later changes are checked against break-before-make rules, and (on
    /// aarch64 outside tests) writes `VTTBR_EL2` with the root address and VMID 0.
    ///
    /// # Safety
    ///
    /// Must run at EL2 with `VTCR_EL2` programmed by [`vtcr`]; the table must stay alive while any CPU uses it,
    /// and must map everything the host is about to touch.
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
        ipa: Region::new(start, start + size),
        pa: desc.output_address().0 as u64,
        level,
        kind: if attributes.contains(Stage2Attributes::MEMATTR_NORMAL_INNER_WB) {
            MemKind::Ram
        } else {
            MemKind::Device
        },
        attributes,
    }
}

/// Size of the region one descriptor covers at `level` (4 KiB granule).
pub const fn granule(level: usize) -> u64 {
    PAGE_SIZE << (9 * (3 - level as u64))
}

/// `VTCR_EL2.T0SZ`: the IPA size is `64 - T0SZ` bits.
pub const VTCR_T0SZ: u64 = 64 - IPA_BITS as u64;
/// `VTCR_EL2.SL0` (bits 7:6) for a level-0 start with a 4 KiB granule.
pub const VTCR_SL0_LEVEL0: u64 = 2 << 6;
/// `VTCR_EL2.IRGN0` (bits 9:8): inner write-back read/write-allocate table walks.
pub const VTCR_IRGN0_WBWA: u64 = 1 << 8;
/// `VTCR_EL2.ORGN0` (bits 11:10): outer write-back read/write-allocate table walks.
pub const VTCR_ORGN0_WBWA: u64 = 1 << 10;
/// `VTCR_EL2.SH0` (bits 13:12): inner shareable table walks.
pub const VTCR_SH0_INNER: u64 = 3 << 12;
/// `VTCR_EL2.TG0` (bits 15:14): 4 KiB granule (encoding 0).
pub const VTCR_TG0_4K: u64 = 0 << 14;
/// Shift of `VTCR_EL2.PS` (bits 18:16), the physical address size.
pub const VTCR_PS_SHIFT: u64 = 16;
/// `VTCR_EL2` bit 31 is RES1.
pub const VTCR_RES1: u64 = 1 << 31;
/// The `ID_AA64MMFR0_EL1.PARange` / `VTCR_EL2.PS` encoding of 48 bits.
pub const PARANGE_48: u64 = 5;

/// The `VTCR_EL2` value for the host stage-2, given `ID_AA64MMFR0_EL1.PARange` (bits 3:0 of that register).
///
/// The IPA space is [`IPA_BITS`] wide with the root at level 0; `PS` is the CPU's physical address size,
/// capped at 48 bits (no 52-bit output addresses). Returns `None` if the CPU supports fewer than 48 bits of
/// physical address, as a level-0 root then has no valid encoding.
pub const fn vtcr(parange: u64) -> Option<u64> {
    let parange = parange & 0xf;
    if parange < PARANGE_48 {
        return None;
    }
    let ps = if parange > PARANGE_48 {
        PARANGE_48
    } else {
        parange
    };
    Some(
        VTCR_RES1
            | (ps << VTCR_PS_SHIFT)
            | VTCR_TG0_4K
            | VTCR_SH0_INNER
            | VTCR_ORGN0_WBWA
            | VTCR_IRGN0_WBWA
            | VTCR_SL0_LEVEL0
            | VTCR_T0SZ,
    )
}

/// The inputs of [`HostStage2::build`] for a platform, owned.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct HostS2Layout {
    /// RAM banks.
    pub ram: Vec<Region>,
    /// MMIO the host may use.
    pub mmio: Vec<Region>,
    /// Never mapped for the host.
    pub excluded: Vec<Region>,
}

impl HostS2Layout {
    /// The host stage-2 layout of a classified platform ([`crate::devices::classify`]): all RAM; as MMIO
    /// only the host regions of the classified device nodes; excluded the hypervisor carve-out, every SMMU
    /// frame and every withheld node's regions.
    pub fn from_devices(devices: &crate::devices::Classification<'_>) -> Self {
        Self {
            ram: devices.ram().to_vec(),
            mmio: devices.host_mmio(),
            excluded: devices.excluded(),
        }
    }

    /// The borrowed form [`HostStage2::build`] takes.
    pub fn spec(&self) -> HostS2Spec<'_> {
        HostS2Spec {
            ram: &self.ram,
            mmio: &self.mmio,
            excluded: &self.excluded,
        }
    }
}

/// A host stage-2 fault, decoded from the EL2 syndrome registers.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Stage2Fault {
    /// The faulting IPA (from `HPFAR_EL2` for the page, `FAR_EL2` for the offset).
    pub ipa: u64,
    /// Whether the access was a write (data aborts only).
    pub write: bool,
    /// Whether it was an instruction fetch.
    pub instruction: bool,
    /// Whether the fault happened on the host's own stage-1 table walk.
    pub s1ptw: bool,
}

impl Stage2Fault {
    /// Decodes a lower-EL instruction or data abort taken to EL2; `None` for any other exception class.
    pub fn decode(esr_el2: u64, far_el2: u64, hpfar_el2: u64) -> Option<Self> {
        let instruction = match exception_class(esr_el2) {
            EC_IABT_LOW => true,
            EC_DABT_LOW => false,
            _ => return None,
        };
        // HPFAR_EL2.FIPA (bits 43:4 for a 52-bit IPA) holds IPA bits 51:12.
        let page = ((hpfar_el2 >> 4) & ((1 << 40) - 1)) << 12;
        Some(Self {
            ipa: page | (far_el2 & (PAGE_SIZE - 1)),
            write: !instruction && esr_el2 & ESR_WNR != 0,
            instruction,
            s1ptw: esr_el2 & ESR_S1PTW != 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trap::esr::{ESR_EC_SHIFT, ESR_IL};

    const GIB: u64 = 1 << 30;
    const CARVEOUT: Region = Region::new(0x4000_0000, 0x41e0_0000);
    const SMMU: Region = Region::new(0x0905_0000, 0x0907_0000);

    /// QEMU virt with 1 GiB: RAM at 1 GiB, devices below it, high ECAM and the 512 GiB high PCI window.
    fn virt() -> HostStage2 {
        let ram = [Region::new(0x4000_0000, 0x8000_0000)];
        let mmio = [
            Region::new(0, 0x4000_0000),
            Region::with_size(0x40_1000_0000, 0x1000_0000),
            Region::with_size(0x80_0000_0000, 0x80_0000_0000),
        ];
        let excluded = [CARVEOUT, SMMU];
        HostStage2::build(&HostS2Spec {
            ram: &ram,
            mmio: &mmio,
            excluded: &excluded,
        })
        .unwrap()
    }

    #[test]
    fn carveout_and_smmu_never_mapped_full_walk() {
        let s2 = virt();
        let leaves = s2.leaves();
        assert!(!leaves.is_empty());
        for leaf in &leaves {
            assert!(!leaf.ipa.overlaps(&CARVEOUT), "{leaf:?} maps hyp memory");
            assert!(!leaf.ipa.overlaps(&SMMU), "{leaf:?} maps SMMU frames");
        }
    }

    #[test]
    fn carveout_and_smmu_translate_to_nothing_page_by_page() {
        let s2 = virt();
        for r in [CARVEOUT, SMMU] {
            let mut a = r.start;
            while a < r.end {
                assert_eq!(s2.translate(a), None, "{a:#x}");
                a += PAGE_SIZE;
            }
        }
        assert_eq!(s2.translate(CARVEOUT.end - 1), None);
        assert_eq!(s2.translate(SMMU.end - 1), None);
    }

    #[test]
    fn identity_is_exact_and_typed() {
        let s2 = virt();
        for leaf in s2.leaves() {
            assert_eq!(leaf.pa, leaf.ipa.start, "{leaf:?} is not identity");
            assert_eq!(leaf.ipa.end - leaf.ipa.start, granule(leaf.level));
        }
        let t = s2.translate(0x41e0_0123).unwrap();
        assert_eq!((t.pa, t.kind), (0x41e0_0123, MemKind::Ram));
        let t = s2.translate(0x7fff_ffff).unwrap();
        assert_eq!((t.pa, t.kind), (0x7fff_ffff, MemKind::Ram));
        // PL011, just below and just above the SMMU frames.
        assert_eq!(s2.translate(0x0900_0018).unwrap().kind, MemKind::Device);
        assert_eq!(s2.translate(SMMU.start - 1).unwrap().pa, SMMU.start - 1);
        assert_eq!(s2.translate(SMMU.end).unwrap().pa, SMMU.end);
        assert_eq!(s2.translate(0x80_0000_1000).unwrap().kind, MemKind::Device);
        assert_eq!(s2.translate(0x40_1000_0000).unwrap().kind, MemKind::Device);
        // Past RAM and between windows: nothing.
        assert_eq!(s2.translate(0x8000_0000), None);
        assert_eq!(s2.translate(0x40_0000_0000), None);
        assert_eq!(s2.translate(0x100_0000_0000), None);
        assert_eq!(s2.translate(u64::MAX), None);
    }

    #[test]
    fn attributes() {
        let s2 = virt();
        for leaf in s2.leaves() {
            match leaf.kind {
                MemKind::Ram => assert_eq!(
                    leaf.attributes & !Stage2Attributes::TABLE_OR_PAGE,
                    RAM_ATTRIBUTES
                ),
                MemKind::Device => {
                    assert_eq!(
                        leaf.attributes & !Stage2Attributes::TABLE_OR_PAGE,
                        MMIO_ATTRIBUTES
                    );
                    assert!(leaf.attributes.contains(Stage2Attributes::XN));
                }
            }
        }
    }

    #[test]
    fn all_host_ram_mapped_exactly() {
        let s2 = virt();
        let ram_bytes: u64 = s2
            .leaves()
            .iter()
            .filter(|l| l.kind == MemKind::Ram)
            .map(|l| l.ipa.end - l.ipa.start)
            .sum();
        assert_eq!(ram_bytes, 0x8000_0000 - CARVEOUT.end);
        assert_eq!(s2.host_ram(), &[Region::new(CARVEOUT.end, 0x8000_0000)]);
        assert!(s2.is_host_ram(0x4200_0000));
        assert!(!s2.is_host_ram(0x4000_0000));
        assert!(!s2.is_host_ram(0x0900_0000));
        assert!(!s2.is_host_ram(0x8000_0000));
        let mmio_bytes: u64 = s2
            .leaves()
            .iter()
            .filter(|l| l.kind == MemKind::Device)
            .map(|l| l.ipa.end - l.ipa.start)
            .sum();
        assert_eq!(
            mmio_bytes,
            0x4000_0000 - (SMMU.end - SMMU.start) + 0x1000_0000 + 0x80_0000_0000
        );
    }

    #[test]
    fn blocks_used_where_aligned() {
        let s2 = virt();
        let leaves = s2.leaves();
        let count = |level| leaves.iter().filter(|l| l.level == level).count();
        // RAM above the carve-out: (1 GiB - 30 MiB) / 2 MiB blocks, no pages.
        let ram_blocks = leaves
            .iter()
            .filter(|l| l.kind == MemKind::Ram && l.level == 2)
            .count();
        assert_eq!(ram_blocks as u64, (0x8000_0000 - CARVEOUT.end) / (2 << 20));
        assert!(
            leaves
                .iter()
                .all(|l| l.kind != MemKind::Ram || l.level == 2)
        );
        // The 512 GiB PCI window is 512 1 GiB blocks.
        assert!(count(1) >= 512);
        // Pages only in the 2 MiB block around the SMMU frames.
        let pages: Vec<_> = leaves.iter().filter(|l| l.level == 3).collect();
        assert_eq!(
            pages.len() as u64,
            (2 << 20) / PAGE_SIZE - (SMMU.end - SMMU.start) / PAGE_SIZE
        );
        assert!(
            pages
                .iter()
                .all(|l| Region::new(0x0900_0000, 0x0920_0000).overlaps(&l.ipa))
        );
        // The first GiB holds the SMMU hole, so it is split into 2 MiB blocks; the high ECAM is 2 MiB blocks
        // (256 MiB, not 1 GiB aligned in size), the high window 1 GiB blocks.
        assert!(leaves.iter().any(|l| l.level == 2 && l.ipa.start == 0));
        assert!(leaves.iter().any(|l| l.level == 1
            && l.ipa.start == 0x80_0000_0000
            && l.ipa.end == 0x80_0000_0000 + GIB));
    }

    #[test]
    fn unaligned_regions_are_rounded_safely() {
        let ram = [Region::new(0x4000_0800, 0x4000_5800)];
        let excluded = [Region::new(0x4000_2100, 0x4000_2200)];
        let s2 = HostStage2::build(&HostS2Spec {
            ram: &ram,
            mmio: &[],
            excluded: &excluded,
        })
        .unwrap();
        // RAM shrinks inwards, exclusions grow outwards.
        assert_eq!(s2.translate(0x4000_0000), None);
        assert!(s2.translate(0x4000_1000).is_some());
        assert_eq!(s2.translate(0x4000_2000), None);
        assert_eq!(s2.translate(0x4000_2fff), None);
        assert!(s2.translate(0x4000_3000).is_some());
        assert!(s2.translate(0x4000_4fff).is_some());
        assert_eq!(s2.translate(0x4000_5000), None);
    }

    #[test]
    fn exclusion_covering_everything_maps_nothing() {
        let ram = [Region::new(0x4000_0000, 0x4100_0000)];
        let excluded = [Region::new(0, u64::MAX)];
        let s2 = HostStage2::build(&HostS2Spec {
            ram: &ram,
            mmio: &ram[..0],
            excluded: &excluded,
        })
        .unwrap();
        assert!(s2.leaves().is_empty());
    }

    #[test]
    fn errors() {
        let too_high = [Region::new(IPA_LIMIT - 0x1000, IPA_LIMIT + 0x1000)];
        assert_eq!(
            HostStage2::build(&HostS2Spec {
                ram: &too_high,
                mmio: &[],
                excluded: &[]
            })
            .unwrap_err(),
            HostS2Error::OutOfRange(IPA_LIMIT + 0x1000)
        );
        let ram = [Region::new(0x4000_0000, 0x8000_0000)];
        let mmio = [Region::new(0x3000_0000, 0x5000_0000)];
        assert_eq!(
            HostStage2::build(&HostS2Spec {
                ram: &ram,
                mmio: &mmio,
                excluded: &[]
            })
            .unwrap_err(),
            HostS2Error::RamOverlapsMmio(0x4000_0000)
        );
    }

    #[test]
    fn subtract_cases() {
        let r = Region::new(0x1000, 0x9000);
        assert_eq!(subtract(r, &[]), [r]);
        assert_eq!(
            subtract(r, &[Region::new(0x3000, 0x4000)]),
            [Region::new(0x1000, 0x3000), Region::new(0x4000, 0x9000)]
        );
        assert_eq!(
            subtract(r, &[Region::new(0, 0x2000)]),
            [Region::new(0x2000, 0x9000)]
        );
        assert_eq!(
            subtract(r, &[Region::new(0x8000, 0xa000)]),
            [Region::new(0x1000, 0x8000)]
        );
        assert!(subtract(r, &[Region::new(0, 0xa000)]).is_empty());
        assert_eq!(
            subtract(
                r,
                &[Region::new(0x2000, 0x3000), Region::new(0x5000, 0x6000)]
            ),
            [
                Region::new(0x1000, 0x2000),
                Region::new(0x3000, 0x5000),
                Region::new(0x6000, 0x9000)
            ]
        );
    }

    #[test]
    fn vtcr_encoding() {
        // PARange 52 bits (6) is capped to 48 bits (5).
        let v = vtcr(6).unwrap();
        assert_eq!(v & 0x3f, 16, "T0SZ");
        assert_eq!((v >> 6) & 3, 2, "SL0 = level 0");
        assert_eq!((v >> 14) & 3, 0, "TG0 = 4K");
        assert_eq!((v >> 16) & 7, 5, "PS = 48 bits");
        assert_eq!(v >> 31 & 1, 1, "RES1");
        assert_eq!(v, 0x8005_3590);
        assert_eq!(vtcr(5), Some(v));
        assert_eq!(vtcr(2), None);
    }

    #[test]
    fn root_pa_is_page_aligned() {
        assert_eq!(virt().root_pa() % PAGE_SIZE, 0);
    }

    #[test]
    fn stage2_fault_decode() {
        // Data abort from EL1, write, translation fault level 2; IPA 0x4000_0123 (HPFAR = IPA[47:12] << 4).
        let esr = (EC_DABT_LOW << ESR_EC_SHIFT) | ESR_IL | ESR_WNR | 0x06;
        let f = Stage2Fault::decode(esr, 0xffff_8000_1234_5123, (0x4000_0123 >> 12) << 4).unwrap();
        assert_eq!(
            f,
            Stage2Fault {
                ipa: 0x4000_0123,
                write: true,
                instruction: false,
                s1ptw: false
            }
        );
        let esr = (EC_IABT_LOW << ESR_EC_SHIFT) | ESR_IL | ESR_S1PTW | 0x07;
        let f = Stage2Fault::decode(esr, 0x0905_0ffc, (0x0905_0ffc >> 12) << 4).unwrap();
        assert_eq!(
            f,
            Stage2Fault {
                ipa: 0x0905_0ffc,
                write: false,
                instruction: true,
                s1ptw: true
            }
        );
        // An HVC is no abort.
        assert_eq!(Stage2Fault::decode(0x16 << ESR_EC_SHIFT, 0, 0), None);
    }

    /// The QEMU `virt` DTBs checked in by warden-dt (1 GiB / 2 CPUs and 2 GiB / 4 CPUs).
    const VIRT_DTBS: [&[u8]; 2] = [
        include_bytes!("../../dt/tests/data/virt-smp2-1g.dtb"),
        include_bytes!("../../dt/tests/data/virt-smp4-2g.dtb"),
    ];

    #[test]
    fn real_qemu_dtbs() {
        let carveout = Region::with_size(
            crate::layout::HYP_CARVEOUT_PA,
            crate::layout::HYP_CARVEOUT_SIZE,
        );
        for dtb in VIRT_DTBS {
            let platform = warden_dt::parse(dtb).unwrap();
            let devices = crate::devices::classify(&platform, &[carveout]);
            let layout = HostS2Layout::from_devices(&devices);
            let s2 = HostStage2::build(&layout.spec()).unwrap();
            let smmu = platform.smmus[0].reg;
            let smmu = Region::with_size(smmu.base, smmu.size);
            assert_eq!(smmu, SMMU);
            for leaf in s2.leaves() {
                assert!(!leaf.ipa.overlaps(&carveout), "{leaf:?}");
                assert!(!leaf.ipa.overlaps(&smmu), "{leaf:?}");
            }
            // Every RAM byte outside the carve-out is host RAM, mapped as RAM.
            let ram_end = 0x4000_0000 + platform.memory_size();
            let mapped: u64 = s2
                .leaves()
                .iter()
                .filter(|l| l.kind == MemKind::Ram)
                .map(|l| l.ipa.end - l.ipa.start)
                .sum();
            assert_eq!(mapped, ram_end - carveout.end);
            assert_eq!(s2.translate(ram_end - 1).unwrap().kind, MemKind::Ram);
            // The host reaches its devices: PL011, GIC distributor, PCI ECAM and both PCI memory windows.
            let uart = platform.uart.as_ref().unwrap().reg.base;
            let gicd = platform.gic.as_ref().unwrap().distributor.base;
            assert_eq!(s2.translate(uart).unwrap().kind, MemKind::Device);
            assert_eq!(s2.translate(gicd).unwrap().kind, MemKind::Device);
            let host = &platform.pci_hosts[0];
            assert_eq!(s2.translate(host.ecam.base).unwrap().kind, MemKind::Device);
            for w in &host.windows {
                assert_eq!(
                    s2.translate(w.cpu.base).unwrap().kind,
                    MemKind::Device,
                    "{w:?}"
                );
                assert_eq!(
                    s2.translate(w.cpu.base + w.cpu.size - 1).unwrap().kind,
                    MemKind::Device,
                    "{w:?}"
                );
            }
        }
    }
}

/// Runtime edits of a live host stage-2 (donation and reclaim).
#[cfg(test)]
mod edit_tests {
    use super::*;
    use proptest::prelude::*;

    const MIB2: u64 = 2 << 20;
    const GIB: u64 = 1 << 30;
    const CARVEOUT: Region = Region::new(0x4000_0000, 0x41e0_0000);
    const SMMU: Region = Region::new(0x0905_0000, 0x0907_0000);

    /// Records every TLB maintenance request, in order.
    #[derive(Default)]
    struct Tlb(Vec<Region>);

    impl HostS2Tlb for Tlb {
        fn invalidate(&mut self, region: Region) {
            self.0.push(region);
        }
    }

    /// A host stage-2 marked live (no CPU uses it: marked inactive again before the library's drop check).
    struct Live<S: TableSource = HeapTables>(HostStage2<S>);

    impl<S: TableSource> core::ops::Deref for Live<S> {
        type Target = HostStage2<S>;
        fn deref(&self) -> &HostStage2<S> {
            &self.0
        }
    }

    impl<S: TableSource> core::ops::DerefMut for Live<S> {
        fn deref_mut(&mut self) -> &mut HostStage2<S> {
            &mut self.0
        }
    }

    impl<S: TableSource> Drop for Live<S> {
        fn drop(&mut self) {
            self.0.map.mark_inactive();
        }
    }

    /// A live host stage-2 with RAM `[1 GiB, ram_end)`, the carve-out and the SMMU frames excluded.
    fn live(ram_end: u64) -> Live {
        live_with(ram_end, HeapTables)
    }

    /// [`live`] with its tables from `source`.
    fn live_with<S: TableSource>(ram_end: u64, source: S) -> Live<S> {
        let ram = [Region::new(0x4000_0000, ram_end)];
        let mmio = [Region::new(0, 0x4000_0000)];
        let mut s2 = HostStage2::build_with(
            &HostS2Spec {
                ram: &ram,
                mmio: &mmio,
                excluded: &[CARVEOUT, SMMU],
            },
            source,
        )
        .unwrap();
        s2.mark_live();
        Live(s2)
    }

    /// Heap tables that run out after a budget the test sets at any time (an allocator failing after N
    /// allocations).
    #[derive(Clone, Default)]
    struct Budget(Arc<core::sync::atomic::AtomicUsize>);

    impl Budget {
        fn unlimited() -> Self {
            let b = Self::default();
            b.set(usize::MAX);
            b
        }

        fn set(&self, n: usize) {
            self.0.store(n, core::sync::atomic::Ordering::Relaxed);
        }
    }

    impl TableSource for Budget {
        fn alloc_table(&mut self) -> Option<NonNull<PageTable<Stage2Attributes>>> {
            use core::sync::atomic::Ordering::Relaxed;
            self.0
                .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
                .ok()?;
            HeapTables.alloc_table()
        }

        unsafe fn free_table(&mut self, table: NonNull<PageTable<Stage2Attributes>>) {
            // SAFETY: Forwarded: our caller's promise, and `table` came from `HeapTables`.
            unsafe { HeapTables.free_table(table) };
        }
    }

    /// Tables the page-table library took so far.
    fn allocated<S: TableSource>(s2: &HostStage2<S>) -> usize {
        s2.tables.lock().allocated
    }

    /// Unmap from inside one 1 GiB block to inside the next and map the middle of two unmapped 1 GiB blocks:
    /// the worst cases, each needing exactly the bound.
    #[test]
    fn worst_case_edits_need_exactly_the_bound() {
        let mut s2 = live(0x1_4000_0000);
        let mut tlb = Tlb::default();
        assert_eq!(s2.translate(0x8000_0000).unwrap().level, 1);
        assert_eq!(s2.translate(0xc000_0000).unwrap().level, 1);
        let before = allocated(&s2);
        let r = Region::new(0x8123_4000, 0xc123_4000);
        s2.unmap_range(r.start, r.end - r.start, &mut tlb).unwrap();
        assert_eq!(allocated(&s2) - before, MAX_TABLES_PER_EDIT);
        assert_eq!(s2.translate(r.start), None);
        assert!(identity_ram(&s2, r.start - PAGE_SIZE));
        assert!(identity_ram(&s2, r.end));
        // Back to one mapping: allocates nothing (the tables stay).
        let before = allocated(&s2);
        s2.map_range(r.start, r.end - r.start, &mut tlb).unwrap();
        assert_eq!(allocated(&s2), before);
        // Two whole 1 GiB blocks away (no split), then their middle back: a table of 2 MiB entries and one of
        // pages at each end.
        let gibs = Region::new(0x1_0000_0000, 0x1_4000_0000);
        let mut s2 = live(0x1_8000_0000);
        s2.unmap_range(gibs.start - GIB, 2 * GIB, &mut tlb).unwrap();
        let before = allocated(&s2);
        let r = Region::new(gibs.start - GIB + PAGE_SIZE, gibs.end - PAGE_SIZE);
        s2.map_range(r.start, r.end - r.start, &mut tlb).unwrap();
        assert_eq!(allocated(&s2) - before, MAX_TABLES_PER_EDIT);
        assert!(identity_ram(&s2, r.start));
        assert!(identity_ram(&s2, r.end - PAGE_SIZE));
        assert_eq!(s2.translate(r.start - PAGE_SIZE), None);
        assert_eq!(s2.translate(r.end), None);
    }

    #[test]
    fn edit_without_heap_fails_and_changes_nothing() {
        let budget = Budget::unlimited();
        let mut s2 = live_with(0x1_4000_0000, budget.clone());
        let mut tlb = Tlb::default();
        let r = Region::new(0x8123_4000, 0xc123_4000);
        for n in 0..MAX_TABLES_PER_EDIT {
            // The reserve holds the `n - 1` tables of the earlier rounds; one more is still short of the bound.
            let before = s2.leaves();
            budget.set(usize::from(n > 0));
            for unmap in [true, false] {
                let result = if unmap {
                    s2.unmap_range(r.start, r.end - r.start, &mut tlb)
                } else {
                    s2.map_range(r.start, PAGE_SIZE, &mut tlb)
                };
                assert_eq!(result, Err(HostS2Error::NoTables(r.start)));
                budget.set(0);
            }
            assert_eq!(s2.leaves(), before);
            assert!(tlb.0.is_empty());
        }
        budget.set(1);
        s2.unmap_range(r.start, r.end - r.start, &mut tlb).unwrap();
        assert_eq!(s2.translate(r.start), None);
    }

    /// The rollback of a failed `DONATE` (mapping back what was just unmapped) needs no table, so it
    /// succeeds with the heap dry; an edit that would split still fails.
    #[test]
    fn undoing_an_edit_needs_no_heap() {
        let budget = Budget::unlimited();
        let mut s2 = live_with(0x1_8000_0000, budget.clone());
        let mut tlb = Tlb::default();
        for r in [
            Region::new(0x8123_4000, 0xc123_4000),
            Region::new(0x4220_0000, 0x4260_0000),
            Region::new(0x4330_1000, 0x4330_2000),
        ] {
            budget.set(usize::MAX);
            s2.unmap_range(r.start, r.end - r.start, &mut tlb).unwrap();
            budget.set(0);
            s2.map_range(r.start, r.end - r.start, &mut tlb).unwrap();
            assert!(s2.is_mapped(r.start, r.end - r.start));
            // Unmapping again splits nothing either.
            s2.unmap_range(r.start, r.end - r.start, &mut tlb).unwrap();
            s2.map_range(r.start, r.end - r.start, &mut tlb).unwrap();
        }
        let before = s2.leaves();
        let r = Region::new(0x1_4000_1000, 0x1_4000_2000);
        assert_eq!(s2.translate(r.start).unwrap().level, 1);
        assert_eq!(
            s2.unmap_range(r.start, PAGE_SIZE, &mut tlb),
            Err(HostS2Error::NoTables(r.start))
        );
        assert_eq!(s2.leaves(), before);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Random edits over 2 GiB of 1 GiB blocks, with an allocator that fails after `budget` tables: each
        /// edit allocates at most the bound, and a refused one changes no leaf.
        #[test]
        fn edits_stay_within_the_bound(
            ops in proptest::collection::vec((any::<bool>(), 0u64..(2 * GIB / PAGE_SIZE), 1u64..(1 << 19), 0usize..6), 1..8)
        ) {
            const BASE: u64 = 0x8000_0000;
            let budget = Budget::unlimited();
            let mut s2 = live_with(0x1_0000_0000, budget.clone());
            let mut tlb = Tlb::default();
            for (unmap, first, count, n) in ops {
                let count = count.min(2 * GIB / PAGE_SIZE - first);
                let (pa, len) = (BASE + first * PAGE_SIZE, count * PAGE_SIZE);
                budget.set(n);
                let before = (s2.leaves(), allocated(&s2));
                let result = if unmap {
                    s2.unmap_range(pa, len, &mut tlb)
                } else {
                    s2.map_range(pa, len, &mut tlb)
                };
                prop_assert!(allocated(&s2) - before.1 <= MAX_TABLES_PER_EDIT);
                match result {
                    Ok(()) => prop_assert_eq!(s2.is_mapped(pa, len), !unmap),
                    Err(e) => {
                        prop_assert_eq!(e, HostS2Error::NoTables(pa));
                        prop_assert_eq!(s2.leaves(), before.0);
                    }
                }
            }
        }
    }

    fn identity_ram(s2: &HostStage2, pa: u64) -> bool {
        s2.translate(pa)
            .is_some_and(|t| t.pa == pa && t.kind == MemKind::Ram)
    }

    /// Leaves of `level` inside `r`.
    fn leaves_at(s2: &HostStage2, level: usize, r: Region) -> usize {
        s2.leaves()
            .iter()
            .filter(|l| l.level == level && r.overlaps(&l.ipa))
            .count()
    }

    #[test]
    fn unmap_one_page_splits_only_its_block() {
        let mut s2 = live(0x8000_0000);
        let before = s2.leaves();
        let block = Region::new(0x4220_0000, 0x4240_0000);
        let pa = 0x4220_3000;
        let mut tlb = Tlb::default();
        s2.unmap_range(pa, PAGE_SIZE, &mut tlb).unwrap();
        assert_eq!(s2.translate(pa), None);
        assert_eq!(s2.translate(pa + 0xfff), None);
        assert!(identity_ram(&s2, pa - 1));
        assert!(identity_ram(&s2, pa + PAGE_SIZE));
        assert!(identity_ram(&s2, block.start));
        assert!(identity_ram(&s2, block.end - 1));
        // The block became 511 pages; every other leaf is untouched.
        assert_eq!(leaves_at(&s2, 3, block), 511);
        assert_eq!(
            leaves_at(&s2, 3, Region::new(0x4000_0000, 0x8000_0000)),
            511
        );
        let others = |l: &Vec<Leaf>| -> Vec<Leaf> {
            l.iter()
                .filter(|l| !block.overlaps(&l.ipa))
                .copied()
                .collect()
        };
        assert_eq!(others(&s2.leaves()), others(&before));
        for l in s2.leaves().iter().filter(|l| block.overlaps(&l.ipa)) {
            assert_eq!(
                l.attributes & !Stage2Attributes::TABLE_OR_PAGE,
                RAM_ATTRIBUTES
            );
            assert_eq!(l.pa, l.ipa.start);
        }
        // Break (the whole block) is invalidated before the make, then the range.
        assert_eq!(tlb.0, [block, Region::new(pa, pa + PAGE_SIZE)]);
        assert!(!s2.is_mapped(pa, PAGE_SIZE));
        assert!(s2.is_mapped(block.start, pa - block.start));
    }

    #[test]
    fn unmap_aligned_blocks_splits_nothing() {
        let mut s2 = live(0x8000_0000);
        let mut tlb = Tlb::default();
        let r = Region::new(0x4400_0000, 0x4400_0000 + 3 * MIB2);
        s2.unmap_range(r.start, r.end - r.start, &mut tlb).unwrap();
        assert!(
            s2.leaves()
                .iter()
                .all(|l| l.level != 3 || l.kind == MemKind::Device)
        );
        assert_eq!(tlb.0, [r]);
        assert_eq!(s2.translate(r.start), None);
        assert_eq!(s2.translate(r.end - 1), None);
        assert!(identity_ram(&s2, r.start - 1));
        assert!(identity_ram(&s2, r.end));
    }

    #[test]
    fn unmap_across_blocks_splits_both_ends_only() {
        let mut s2 = live(0x8000_0000);
        let mut tlb = Tlb::default();
        // From 1 MiB into one block to 1 MiB into the block three further on.
        let r = Region::new(0x4210_0000, 0x4210_0000 + 3 * MIB2);
        s2.unmap_range(r.start, r.end - r.start, &mut tlb).unwrap();
        let first = Region::new(0x4200_0000, 0x4220_0000);
        let last = Region::new(0x4260_0000, 0x4280_0000);
        assert_eq!(leaves_at(&s2, 3, first), 256);
        assert_eq!(leaves_at(&s2, 3, last), 256);
        assert_eq!(
            leaves_at(&s2, 3, Region::new(0x4000_0000, 0x8000_0000)),
            512
        );
        assert_eq!(tlb.0, [first, last, r]);
        let mut a = first.start;
        while a < last.end {
            assert_eq!(s2.translate(a).is_none(), r.contains(a), "{a:#x}");
            a += PAGE_SIZE;
        }
    }

    #[test]
    fn gib_block_is_split_into_blocks_and_one_table_of_pages() {
        let mut s2 = live(0x1_0000_0000);
        let gib = Region::new(0x8000_0000, 0xc000_0000);
        assert_eq!(s2.translate(gib.start).unwrap().level, 1);
        let pa = 0x8123_4000;
        let mut tlb = Tlb::default();
        s2.unmap_range(pa, PAGE_SIZE, &mut tlb).unwrap();
        assert_eq!(s2.translate(pa), None);
        assert_eq!(leaves_at(&s2, 1, gib), 0);
        assert_eq!(leaves_at(&s2, 2, gib), 511);
        assert_eq!(leaves_at(&s2, 3, gib), 511);
        assert_eq!(tlb.0, [gib, Region::new(pa, pa + PAGE_SIZE)]);
        assert!(identity_ram(&s2, gib.start));
        assert!(identity_ram(&s2, gib.end - 1));
        assert!(identity_ram(&s2, pa - 1));
        assert!(identity_ram(&s2, pa + PAGE_SIZE));
        // The neighbouring 1 GiB block is untouched.
        assert_eq!(s2.translate(0xc000_0000).unwrap().level, 1);
        s2.map_range(pa, PAGE_SIZE, &mut tlb).unwrap();
        assert!(identity_ram(&s2, pa));
    }

    #[test]
    fn map_restores_identity() {
        let mut s2 = live(0x8000_0000);
        let before: u64 = ram_bytes(&s2);
        let mut tlb = Tlb::default();
        let r = Region::new(0x4330_1000, 0x4350_5000);
        s2.unmap_range(r.start, r.end - r.start, &mut tlb).unwrap();
        assert_eq!(ram_bytes(&s2), before - (r.end - r.start));
        tlb.0.clear();
        s2.map_range(r.start, r.end - r.start, &mut tlb).unwrap();
        assert_eq!(tlb.0, [r]);
        assert_eq!(ram_bytes(&s2), before);
        for l in s2.leaves().iter().filter(|l| l.kind == MemKind::Ram) {
            assert_eq!(l.pa, l.ipa.start);
            assert_eq!(
                l.attributes & !Stage2Attributes::TABLE_OR_PAGE,
                RAM_ATTRIBUTES
            );
        }
        let mut a = r.start - MIB2;
        while a < r.end + MIB2 {
            assert!(identity_ram(&s2, a), "{a:#x}");
            a += PAGE_SIZE;
        }
        // Mapping what is mapped changes nothing; unmapping twice is harmless.
        s2.map_range(r.start, PAGE_SIZE, &mut tlb).unwrap();
        assert_eq!(ram_bytes(&s2), before);
        s2.unmap_range(r.start, PAGE_SIZE, &mut tlb).unwrap();
        s2.unmap_range(r.start, PAGE_SIZE, &mut tlb).unwrap();
        assert_eq!(ram_bytes(&s2), before - PAGE_SIZE);
    }

    fn ram_bytes(s2: &HostStage2) -> u64 {
        s2.leaves()
            .iter()
            .filter(|l| l.kind == MemKind::Ram)
            .map(|l| l.ipa.end - l.ipa.start)
            .sum()
    }

    #[test]
    fn carveout_smmu_mmio_and_beyond_ram_can_never_be_mapped() {
        let mut s2 = live(0x8000_0000);
        let before = s2.leaves();
        let mut tlb = Tlb::default();
        let cases = [
            (
                CARVEOUT.start,
                PAGE_SIZE,
                HostS2Error::NotHostRam(CARVEOUT.start),
            ),
            (
                CARVEOUT.end - PAGE_SIZE,
                2 * PAGE_SIZE,
                HostS2Error::NotHostRam(CARVEOUT.end - PAGE_SIZE),
            ),
            (0x4080_0000, MIB2, HostS2Error::NotHostRam(0x4080_0000)),
            (SMMU.start, PAGE_SIZE, HostS2Error::NotHostRam(SMMU.start)),
            (0x0900_0000, PAGE_SIZE, HostS2Error::NotHostRam(0x0900_0000)),
            (0x8000_0000, PAGE_SIZE, HostS2Error::NotHostRam(0x8000_0000)),
            (
                0x7fff_f000,
                2 * PAGE_SIZE,
                HostS2Error::NotHostRam(0x7fff_f000),
            ),
            (
                0x4_0000_0000,
                PAGE_SIZE,
                HostS2Error::NotHostRam(0x4_0000_0000),
            ),
            (0x4200_0800, PAGE_SIZE, HostS2Error::Misaligned(0x4200_0800)),
            (0x4200_0000, 0x800, HostS2Error::Misaligned(0x4200_0000)),
            (0x4200_0000, 0, HostS2Error::Misaligned(0x4200_0000)),
            (
                0x4200_0000,
                u64::MAX - 0xfff,
                HostS2Error::Misaligned(0x4200_0000),
            ),
            (!0xfff_u64, PAGE_SIZE, HostS2Error::Misaligned(!0xfff_u64)),
        ];
        for (pa, len, err) in cases {
            assert_eq!(
                s2.map_range(pa, len, &mut tlb),
                Err(err),
                "map {pa:#x}+{len:#x}"
            );
            assert_eq!(
                s2.unmap_range(pa, len, &mut tlb),
                Err(err),
                "unmap {pa:#x}+{len:#x}"
            );
        }
        assert!(tlb.0.is_empty());
        assert_eq!(s2.leaves(), before);
        for r in [CARVEOUT, SMMU] {
            assert_eq!(s2.translate(r.start), None);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Random donations and reclaims inside 8 MiB of RAM (blocks, pages, ranges across blocks) agree
        /// with a page-set model; everything outside the window keeps its boot translation.
        #[test]
        fn random_edits_match_a_page_model(
            ops in proptest::collection::vec((any::<bool>(), 0u64..2048, 1u64..1100), 1..12)
        ) {
            const BASE: u64 = 0x4400_0000;
            const PAGES: u64 = 2048;
            let mut s2 = live(0x8000_0000);
            let outside_before: Vec<Leaf> = s2
                .leaves()
                .into_iter()
                .filter(|l| !Region::new(BASE, BASE + PAGES * PAGE_SIZE).overlaps(&l.ipa))
                .collect();
            let mut mapped = alloc::vec![true; PAGES as usize];
            let mut tlb = Tlb::default();
            for (unmap, first, count) in ops {
                let count = count.min(PAGES - first);
                let (pa, len) = (BASE + first * PAGE_SIZE, count * PAGE_SIZE);
                if unmap {
                    s2.unmap_range(pa, len, &mut tlb).unwrap();
                } else {
                    s2.map_range(pa, len, &mut tlb).unwrap();
                }
                for m in &mut mapped[first as usize..(first + count) as usize] {
                    *m = !unmap;
                }
                prop_assert_eq!(tlb.0.last().copied(), Some(Region::new(pa, pa + len)));
            }
            for (i, m) in mapped.iter().enumerate() {
                let a = BASE + i as u64 * PAGE_SIZE;
                prop_assert_eq!(identity_ram(&s2, a), *m, "{:#x}", a);
            }
            let outside: Vec<Leaf> = s2
                .leaves()
                .into_iter()
                .filter(|l| !Region::new(BASE, BASE + PAGES * PAGE_SIZE).overlaps(&l.ipa))
                .collect();
            prop_assert_eq!(outside, outside_before);
            prop_assert!(!s2.leaves().iter().any(|l| l.ipa.overlaps(&CARVEOUT) || l.ipa.overlaps(&SMMU)));
        }
    }

    #[test]
    fn live_table_refuses_an_in_place_split() {
        // What `unmap_range` avoids: the library rejects splitting a live block without a break.
        let mut s2 = live(0x8000_0000);
        let page = MemoryRegion::new(0x4220_3000, 0x4220_4000);
        assert!(matches!(
            s2.map.map_range(
                &page,
                PhysicalAddress(0x4220_3000),
                Stage2Attributes::empty(),
                Constraints::empty()
            ),
            Err(MapError::BreakBeforeMakeViolation(_))
        ));
        assert!(identity_ram(&s2, 0x4220_3000));
    }

    #[test]
    fn gib_constant_is_a_level_1_block() {
        assert_eq!(granule(1), GIB);
        assert_eq!(granule(2), MIB2);
    }
}
