//! The boot build's direct fill of host RAM mapped with 4 KiB pages ([`RamLeaves::Pages`]).
//!
//! Mapping RAM one page at a time through aarch64-paging costs ~39 instructions per page at EL2 (170 M at
//! 16 GiB, most of the hyp's boot). Here each aligned block of a RAM piece that one descriptor above level 3
//! covers whole (2 MiB, 1 GiB, 512 GiB) gets its subtree filled directly: a level-3 table is 512 page
//! descriptors written in a loop (the first `base | attributes`, each next one [`PAGE_SIZE`] further), a
//! table above is 512 table descriptors of such subtrees; the subtree is then linked with one table
//! descriptor. The library still owns everything: it walks down to each block (creating the tables above on
//! the way), links the subtree through its own descriptor update, and later walks, edits and frees the whole
//! tree as its own (the tables come from the same [`Tables`]). The RAM at the ends of a piece that fills no
//! whole 2 MiB block is mapped by the library, page by page, as before. The tables are the library's
//! per-page result descriptor for descriptor (a test compares both builds on QEMU's device trees).
//!
//! [`RamLeaves::Pages`]: super::RamLeaves::Pages

use core::mem::size_of;

use aarch64_paging::descriptor::{PhysicalAddress, Stage2Attributes, UpdatableDescriptor};
use aarch64_paging::paging::{Constraints, MemoryRegion, PageTable};
use warden_abi::{LEAF_LEVEL, PAGE_SIZE, TABLE_ENTRIES, granule};
use warden_dt::PhysRange;

use super::reserve::{TableSource, Tables};
use super::tables::HostStage2;
use super::{HostS2Error, RAM_ATTRIBUTES};

/// The bits of a table descriptor (levels 0–2) besides the next table's address, as aarch64-paging writes
/// them when it creates a table.
const TABLE_DESCRIPTOR: Stage2Attributes =
    Stage2Attributes::VALID.union(Stage2Attributes::TABLE_OR_PAGE);

/// The bits of a host RAM page descriptor besides its address: [`RAM_ATTRIBUTES`] marked as a page, as
/// aarch64-paging writes a level-3 entry.
const RAM_PAGE_DESCRIPTOR: Stage2Attributes = RAM_ATTRIBUTES.union(Stage2Attributes::TABLE_OR_PAGE);

/// The smallest block a table above level 3 maps whole: 2 MiB.
const LEVEL2_BLOCK: u64 = granule(LEAF_LEVEL - 1);

// A page table is exactly [`TABLE_ENTRIES`] descriptors of one `usize` each (aarch64-paging: `repr(C)`
// `PageTable` of `repr(C)` `Descriptor(AtomicUsize)`), which is how [`identity_subtree`] writes it.
static_assertions::const_assert_eq!(
    size_of::<PageTable<Stage2Attributes>>(),
    TABLE_ENTRIES * size_of::<usize>()
);

impl<S: TableSource> HostStage2<S> {
    /// Maps the host RAM piece `r` (page aligned, during the build) 1:1 with 4 KiB pages and
    /// [`RAM_ATTRIBUTES`]: each whole aligned 2 MiB (or larger) block of it as a directly filled subtree,
    /// the rest (at most one partial 2 MiB block at each end) through the library.
    ///
    /// # Errors
    ///
    /// [`HostS2Error::OutOfRange`] or [`HostS2Error::Map`] as the library's path; [`HostS2Error::Map`] if a
    /// block to fill is already mapped by a block descriptor (never in a build with pages: RAM comes first).
    pub(super) fn fill_ram_pages(&mut self, r: PhysRange) -> Result<(), HostS2Error> {
        let first = r.base.next_multiple_of(LEVEL2_BLOCK);
        let last = r.end() & !(LEVEL2_BLOCK - 1);
        if first >= last {
            return self.map_identity(r, RAM_ATTRIBUTES, Constraints::NO_BLOCK_MAPPINGS);
        }
        let head = PhysRange::from_bounds(r.base, first);
        let tail = PhysRange::from_bounds(last, r.end());
        for part in [head, tail] {
            if !part.is_empty() {
                self.map_identity(part, RAM_ATTRIBUTES, Constraints::NO_BLOCK_MAPPINGS)?;
            }
        }
        let tables = &self.tables;
        // Called for each descriptor that covers part of `[first, last)` without a table below it: above
        // level 3, for whole aligned blocks only (the range is 2 MiB aligned).
        let link = |mr: &MemoryRegion, d: &mut UpdatableDescriptor<Stage2Attributes>| {
            let base = mr.start().0 as u64;
            if d.level() == LEAF_LEVEL {
                // A page under a table that exists already (RAM listed twice in the device tree): written
                // as the library writes a page.
                return d.set(PhysicalAddress(base as usize), RAM_PAGE_DESCRIPTOR);
            }
            if d.bits() != 0 {
                return Err(());
            }
            let subtree = identity_subtree(&mut tables.lock(), d.level() + 1, base);
            d.set(PhysicalAddress(subtree), TABLE_DESCRIPTOR)
        };
        self.map
            .modify_range(&MemoryRegion::new(first as usize, last as usize), &link)
            .map_err(|_| HostS2Error::Map(first))
    }
}

/// A table at `level` from `tables`, filled to map the aligned block of `granule(level - 1)` bytes at `base`
/// 1:1 as host RAM with 4 KiB pages (with the tables below it, for a level above 3); returns its address.
/// The table is not linked anywhere yet: the caller links it.
fn identity_subtree<S: TableSource>(tables: &mut Tables<S>, level: usize, base: u64) -> usize {
    let table = tables.take();
    // SAFETY: `take` hands out a zeroed, 4 KiB-aligned page table that only this function holds: no
    // descriptor links it yet, so no CPU, table walker or library code can reach it while `entries` lives.
    // A `PageTable` is `TABLE_ENTRIES` descriptors laid out as `usize`s (asserted above).
    let entries = unsafe { &mut *table.as_ptr().cast::<[usize; TABLE_ENTRIES]>() };
    let base = base as usize;
    if level == LEAF_LEVEL {
        let first = base | RAM_PAGE_DESCRIPTOR.bits();
        for (i, entry) in entries.iter_mut().enumerate() {
            *entry = first + i * PAGE_SIZE as usize;
        }
    } else {
        let step = granule(level) as usize;
        for (i, entry) in entries.iter_mut().enumerate() {
            *entry = identity_subtree(tables, level + 1, (base + i * step) as u64)
                | TABLE_DESCRIPTOR.bits();
        }
    }
    table.as_ptr() as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host_s2::edit_tests::{Capped, Live, Tlb};
    use crate::host_s2::{HostS2Layout, HostS2Spec, MAX_TABLES_PER_EDIT, ROOT_LEVEL, RamLeaves};
    use crate::test_support::QEMU_LOADED as LOADED;

    /// Bits 47:12 of a table descriptor: the next table's address.
    const TABLE_ADDRESS: usize = 0x0000_ffff_ffff_f000;
    const MIB2: u64 = 2 << 20;
    const GIB: u64 = 1 << 30;

    /// QEMU `virt` DTBs: 1 GiB, 16 GiB (one range), 2 × 2 GiB (two NUMA nodes, two ranges).
    const DTBS: [(&str, &[u8]); 3] = [
        (
            "1g",
            include_bytes!("../../../dt/tests/data/virt-smp2-1g.dtb"),
        ),
        (
            "16g",
            include_bytes!("../../../dt/tests/data/virt-smp2-16g.dtb"),
        ),
        (
            "numa 2x2g",
            include_bytes!("../../../dt/tests/data/virt-smp2-numa2x2g.dtb"),
        ),
    ];

    /// Holes in RAM at 1 GiB and above that cut 2 MiB and 1 GiB blocks every way: one page inside a block,
    /// across a 2 MiB boundary, one whole 2 MiB block, across a 1 GiB boundary.
    const HOLES: [PhysRange; 4] = [
        PhysRange::from_bounds(0x8123_4000, 0x8123_5000),
        PhysRange::from_bounds(0x423f_f000, 0x4240_1000),
        PhysRange::from_bounds(0x6000_0000, 0x6020_0000),
        PhysRange::from_bounds(0xbfff_e000, 0xc000_3000),
    ];

    /// The host stage-2 layout the EL2 image builds on the QEMU device tree `dtb`: RAM less the hyp's
    /// memory placed by `sizing::plan`, the classified devices' MMIO, the SMMU frames, withheld devices and
    /// the GIC frames the hyp traps (the ITS control frame, one RD_base frame per CPU).
    fn boot_layout(dtb: &[u8]) -> HostS2Layout {
        let platform = warden_dt::parse(dtb).unwrap();
        let plan = crate::sizing::plan(&platform, RamLeaves::Pages, 0, &LOADED).unwrap();
        let devices = crate::devices::classify(&platform, &plan.hyp_ranges());
        let mut layout = HostS2Layout::from_devices(&devices, RamLeaves::Pages);
        let gic = platform.gic.as_ref().unwrap();
        let rd = gic.redistributors[0].base;
        let trapped = crate::gic::GicLayout {
            its: gic.its.iter().map(|i| i.reg.base).collect(),
            redistributors: (0..platform.cpus.len() as u64)
                .map(|i| rd + i * 0x2_0000)
                .collect(),
            vlpis: false,
        };
        layout.excluded.extend(trapped.trapped_frames());
        layout
    }

    /// Compares the tables at `level` under `a` and `b`, which map IPAs from `base`, descriptor for
    /// descriptor: pages, blocks and invalid entries equal, table descriptors equal but for the next table's
    /// address (then compared below). Returns how many RAM pages `a` maps.
    fn assert_same_tables(a: usize, b: usize, level: usize, base: u64) -> u64 {
        // SAFETY: Both are tables of live `HostStage2`s from the heap (a table's address is its pointer),
        // 512 descriptors as `usize`s (asserted in the module), not changed while the test reads them.
        let (ta, tb) = unsafe {
            (
                &*(a as *const [usize; TABLE_ENTRIES]),
                &*(b as *const [usize; TABLE_ENTRIES]),
            )
        };
        let mut pages = 0;
        for (i, (&da, &db)) in ta.iter().zip(tb).enumerate() {
            let ipa = base + i as u64 * granule(level);
            let table = TABLE_DESCRIPTOR.bits();
            if level < LEAF_LEVEL && da & table == table {
                assert_eq!(
                    da & !TABLE_ADDRESS,
                    db & !TABLE_ADDRESS,
                    "table descriptor at level {level}, IPA {ipa:#x}"
                );
                pages += assert_same_tables(da & TABLE_ADDRESS, db & TABLE_ADDRESS, level + 1, ipa);
            } else {
                assert_eq!(da, db, "descriptor at level {level}, IPA {ipa:#x}");
                if level == LEAF_LEVEL && da == ipa as usize | RAM_PAGE_DESCRIPTOR.bits() {
                    pages += 1;
                }
            }
        }
        pages
    }

    /// Builds `spec` directly filled and page by page through the library, and checks that both are the
    /// same tables descriptor for descriptor, from as many tables; that both stay the same under the same
    /// runtime edits (the library edits the directly filled tables as its own), and that every table goes
    /// back to the source when the stage-2 is dropped (as many as from the library's build). Returns how many RAM pages are mapped.
    fn assert_direct_fill_is_per_page(
        name: &str,
        spec: &HostS2Spec<'_>,
        edits: &[PhysRange],
    ) -> u64 {
        let (direct_tables, per_page_tables) = (Capped::new(), Capped::new());
        let mut direct = Live(HostStage2::build_with(spec, direct_tables.clone()).unwrap());
        let mut per_page = Live(HostStage2::build_per_page(spec, per_page_tables.clone()).unwrap());
        direct.mark_live();
        per_page.mark_live();
        let pages = assert_same_tables(
            direct.root_pa() as usize,
            per_page.root_pa() as usize,
            ROOT_LEVEL,
            0,
        );
        assert_eq!(
            direct_tables.outstanding(),
            per_page_tables.outstanding(),
            "{name}: tables"
        );
        assert_eq!(direct.host_ram(), per_page.host_ram(), "{name}");
        for r in edits {
            for s2 in [&mut *direct, &mut *per_page] {
                s2.unmap_range(r.base, r.size, &mut Tlb::default()).unwrap();
            }
            assert_same_tables(
                direct.root_pa() as usize,
                per_page.root_pa() as usize,
                ROOT_LEVEL,
                0,
            );
            assert_eq!(direct.translate(r.base), None, "{name}: {r:?}");
            for s2 in [&mut *direct, &mut *per_page] {
                s2.map_range(r.base, r.size, &mut Tlb::default()).unwrap();
            }
            assert_same_tables(
                direct.root_pa() as usize,
                per_page.root_pa() as usize,
                ROOT_LEVEL,
                0,
            );
        }
        drop((direct, per_page));
        // Every table goes back but those the last free left in the reserve (which is not emptied on drop).
        assert_eq!(
            direct_tables.outstanding(),
            per_page_tables.outstanding(),
            "{name}: tables leaked"
        );
        assert!(
            direct_tables.outstanding() <= MAX_TABLES_PER_EDIT,
            "{name}: tables leaked"
        );
        pages
    }

    /// Bytes of RAM outside every excluded range.
    fn host_ram_bytes(l: &HostS2Layout) -> u64 {
        l.ram
            .iter()
            .flat_map(|r| crate::host_s2::subtract(*r, &l.excluded))
            .map(|r| r.size)
            .sum()
    }

    #[test]
    fn direct_fill_is_the_per_page_build_on_qemu_layouts() {
        for (name, dtb) in DTBS {
            let layout = boot_layout(dtb);
            assert_eq!(
                layout.ram_leaves,
                RamLeaves::Pages,
                "the hyp boots with pages"
            );
            // A page at each end of host RAM, and a range across 2 MiB blocks that were filled whole.
            let host_ram = crate::host_s2::subtract(*layout.ram.last().unwrap(), &layout.excluded);
            let last = host_ram.last().unwrap().end();
            let edits = [
                PhysRange::from_bounds(0x4200_0000, 0x4200_1000),
                PhysRange::from_bounds(last - 0x1000, last),
                PhysRange::from_bounds(0x4c1f_f000, 0x4c60_1000),
            ];
            let mut holed = layout.clone();
            holed.excluded.extend(HOLES);
            for l in [layout, holed] {
                let pages = assert_direct_fill_is_per_page(name, &l.spec(), &edits);
                assert_eq!(
                    pages * PAGE_SIZE,
                    host_ram_bytes(&l),
                    "{name}: every host RAM page"
                );
            }
        }
    }

    #[test]
    fn direct_fill_is_the_per_page_build_on_odd_ram() {
        let mmio = [PhysRange::from_bounds(0, 0x4000_0000)];
        for ram in [
            // Less than 2 MiB, inside one block and across two.
            &[PhysRange::from_bounds(0x4010_0000, 0x4018_0000)][..],
            &[PhysRange::from_bounds(0x401f_f000, 0x4020_1000)],
            // Unaligned ends around whole blocks; a whole 1 GiB block (a level-2 table of filled tables).
            &[PhysRange::from_bounds(0x4000_3000, 0x1_8012_3000)],
            // Two banks meeting inside a 2 MiB block; RAM listed twice (overlapping banks).
            &[
                PhysRange::from_bounds(0x4000_0000, 0x8010_0000),
                PhysRange::from_bounds(0x8010_0000, 0xc000_0000),
            ],
            &[
                PhysRange::from_bounds(0x4000_0000, 0x9000_0000),
                PhysRange::from_bounds(0x8000_0000, 0xc000_0000),
            ],
        ] {
            let spec = HostS2Spec {
                ram,
                mmio: &mmio,
                excluded: &HOLES,
                ram_leaves: RamLeaves::Pages,
            };
            assert_direct_fill_is_per_page(&alloc::format!("{ram:x?}"), &spec, &[]);
        }
    }

    /// A block already mapped where a subtree would go is refused, not overwritten: RAM is mapped before
    /// anything else, so this never happens in a build, and the fill says so.
    #[test]
    fn direct_fill_refuses_a_mapped_block() {
        let mut s2 = HostStage2::build(&HostS2Spec {
            ram: &[],
            mmio: &[PhysRange::from_bounds(0x4000_0000, 0x4040_0000)],
            excluded: &[],
            ram_leaves: RamLeaves::Pages,
        })
        .unwrap();
        assert_eq!(
            s2.fill_ram_pages(PhysRange::from_bounds(0x4000_0000, 0x4040_0000)),
            Err(HostS2Error::Map(0x4000_0000))
        );
        let t = s2.translate(0x4000_0000).unwrap();
        assert_eq!((t.level, t.kind), (2, crate::ownership::MemKind::Mmio));
        assert_eq!(GIB % MIB2, 0);
    }
}
