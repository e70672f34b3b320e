//! Runtime edits of a live host stage-2 (donation and reclaim).

use super::*;
use aarch64_paging::MapError;
use aarch64_paging::descriptor::{PhysicalAddress, Stage2Attributes};
use aarch64_paging::paging::{Constraints, MemoryRegion, PageTable};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::ptr::NonNull;
use proptest::prelude::*;
use warden_abi::{PAGE_SIZE, granule};

const MIB2: u64 = 2 << 20;
const GIB: u64 = 1 << 30;
const CARVEOUT: PhysRange = PhysRange::from_bounds(0x4000_0000, 0x41e0_0000);
const SMMU: PhysRange = PhysRange::from_bounds(0x0905_0000, 0x0907_0000);

/// Records every TLB maintenance request, in order.
#[derive(Default)]
struct Tlb(Vec<PhysRange>);

impl HostS2Tlb for Tlb {
    fn invalidate(&mut self, region: PhysRange) {
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
    let ram = [PhysRange::from_bounds(0x4000_0000, ram_end)];
    let mmio = [PhysRange::from_bounds(0, 0x4000_0000)];
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
    let r = PhysRange::from_bounds(0x8123_4000, 0xc123_4000);
    s2.unmap_range(r.base, r.size, &mut tlb).unwrap();
    assert_eq!(allocated(&s2) - before, MAX_TABLES_PER_EDIT);
    assert_eq!(s2.translate(r.base), None);
    assert!(identity_ram(&s2, r.base - PAGE_SIZE));
    assert!(identity_ram(&s2, r.end()));
    // Back to one mapping: allocates nothing (the tables stay).
    let before = allocated(&s2);
    s2.map_range(r.base, r.size, &mut tlb).unwrap();
    assert_eq!(allocated(&s2), before);
    // Two whole 1 GiB blocks away (no split), then their middle back: a table of 2 MiB entries and one of
    // pages at each end.
    let gibs = PhysRange::from_bounds(0x1_0000_0000, 0x1_4000_0000);
    let mut s2 = live(0x1_8000_0000);
    s2.unmap_range(gibs.base - GIB, 2 * GIB, &mut tlb).unwrap();
    let before = allocated(&s2);
    let r = PhysRange::from_bounds(gibs.base - GIB + PAGE_SIZE, gibs.end() - PAGE_SIZE);
    s2.map_range(r.base, r.size, &mut tlb).unwrap();
    assert_eq!(allocated(&s2) - before, MAX_TABLES_PER_EDIT);
    assert!(identity_ram(&s2, r.base));
    assert!(identity_ram(&s2, r.end() - PAGE_SIZE));
    assert_eq!(s2.translate(r.base - PAGE_SIZE), None);
    assert_eq!(s2.translate(r.end()), None);
}

#[test]
fn edit_without_heap_fails_and_changes_nothing() {
    let budget = Budget::unlimited();
    let mut s2 = live_with(0x1_4000_0000, budget.clone());
    let mut tlb = Tlb::default();
    let r = PhysRange::from_bounds(0x8123_4000, 0xc123_4000);
    for n in 0..MAX_TABLES_PER_EDIT {
        // The reserve holds the `n - 1` tables of the earlier rounds; one more is still short of the bound.
        let before = s2.leaves();
        budget.set(usize::from(n > 0));
        for unmap in [true, false] {
            let result = if unmap {
                s2.unmap_range(r.base, r.size, &mut tlb)
            } else {
                s2.map_range(r.base, PAGE_SIZE, &mut tlb)
            };
            assert_eq!(result, Err(HostS2Error::NoTables(r.base)));
            budget.set(0);
        }
        assert_eq!(s2.leaves(), before);
        assert!(tlb.0.is_empty());
    }
    budget.set(1);
    s2.unmap_range(r.base, r.size, &mut tlb).unwrap();
    assert_eq!(s2.translate(r.base), None);
}

/// The rollback of a failed `DONATE` (mapping back what was just unmapped) needs no table, so it
/// succeeds with the heap dry; an edit that would split still fails.
#[test]
fn undoing_an_edit_needs_no_heap() {
    let budget = Budget::unlimited();
    let mut s2 = live_with(0x1_8000_0000, budget.clone());
    let mut tlb = Tlb::default();
    for r in [
        PhysRange::from_bounds(0x8123_4000, 0xc123_4000),
        PhysRange::from_bounds(0x4220_0000, 0x4260_0000),
        PhysRange::from_bounds(0x4330_1000, 0x4330_2000),
    ] {
        budget.set(usize::MAX);
        s2.unmap_range(r.base, r.size, &mut tlb).unwrap();
        budget.set(0);
        s2.map_range(r.base, r.size, &mut tlb).unwrap();
        assert!(s2.is_mapped(r.base, r.size));
        // Unmapping again splits nothing either.
        s2.unmap_range(r.base, r.size, &mut tlb).unwrap();
        s2.map_range(r.base, r.size, &mut tlb).unwrap();
    }
    let before = s2.leaves();
    let r = PhysRange::from_bounds(0x1_4000_1000, 0x1_4000_2000);
    assert_eq!(s2.translate(r.base).unwrap().level, 1);
    assert_eq!(
        s2.unmap_range(r.base, PAGE_SIZE, &mut tlb),
        Err(HostS2Error::NoTables(r.base))
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
fn leaves_at(s2: &HostStage2, level: usize, r: PhysRange) -> usize {
    s2.leaves()
        .iter()
        .filter(|l| l.level == level && r.overlaps(&l.ipa))
        .count()
}

#[test]
fn unmap_one_page_splits_only_its_block() {
    let mut s2 = live(0x8000_0000);
    let before = s2.leaves();
    let block = PhysRange::from_bounds(0x4220_0000, 0x4240_0000);
    let pa = 0x4220_3000;
    let mut tlb = Tlb::default();
    s2.unmap_range(pa, PAGE_SIZE, &mut tlb).unwrap();
    assert_eq!(s2.translate(pa), None);
    assert_eq!(s2.translate(pa + 0xfff), None);
    assert!(identity_ram(&s2, pa - 1));
    assert!(identity_ram(&s2, pa + PAGE_SIZE));
    assert!(identity_ram(&s2, block.base));
    assert!(identity_ram(&s2, block.end() - 1));
    // The block became 511 pages; every other leaf is untouched.
    assert_eq!(leaves_at(&s2, 3, block), 511);
    assert_eq!(
        leaves_at(&s2, 3, PhysRange::from_bounds(0x4000_0000, 0x8000_0000)),
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
        assert_eq!(l.pa, l.ipa.base);
    }
    // Break (the whole block) is invalidated before the make, then the range.
    assert_eq!(tlb.0, [block, PhysRange::from_bounds(pa, pa + PAGE_SIZE)]);
    assert!(!s2.is_mapped(pa, PAGE_SIZE));
    assert!(s2.is_mapped(block.base, pa - block.base));
}

#[test]
fn unmap_aligned_blocks_splits_nothing() {
    let mut s2 = live(0x8000_0000);
    let mut tlb = Tlb::default();
    let r = PhysRange::from_bounds(0x4400_0000, 0x4400_0000 + 3 * MIB2);
    s2.unmap_range(r.base, r.size, &mut tlb).unwrap();
    assert!(
        s2.leaves()
            .iter()
            .all(|l| l.level != 3 || l.kind == MemKind::Mmio)
    );
    assert_eq!(tlb.0, [r]);
    assert_eq!(s2.translate(r.base), None);
    assert_eq!(s2.translate(r.end() - 1), None);
    assert!(identity_ram(&s2, r.base - 1));
    assert!(identity_ram(&s2, r.end()));
}

#[test]
fn unmap_across_blocks_splits_both_ends_only() {
    let mut s2 = live(0x8000_0000);
    let mut tlb = Tlb::default();
    // From 1 MiB into one block to 1 MiB into the block three further on.
    let r = PhysRange::from_bounds(0x4210_0000, 0x4210_0000 + 3 * MIB2);
    s2.unmap_range(r.base, r.size, &mut tlb).unwrap();
    let first = PhysRange::from_bounds(0x4200_0000, 0x4220_0000);
    let last = PhysRange::from_bounds(0x4260_0000, 0x4280_0000);
    assert_eq!(leaves_at(&s2, 3, first), 256);
    assert_eq!(leaves_at(&s2, 3, last), 256);
    assert_eq!(
        leaves_at(&s2, 3, PhysRange::from_bounds(0x4000_0000, 0x8000_0000)),
        512
    );
    assert_eq!(tlb.0, [first, last, r]);
    let mut a = first.base;
    while a < last.end() {
        assert_eq!(s2.translate(a).is_none(), r.contains(a), "{a:#x}");
        a += PAGE_SIZE;
    }
}

#[test]
fn gib_block_is_split_into_blocks_and_one_table_of_pages() {
    let mut s2 = live(0x1_0000_0000);
    let gib = PhysRange::from_bounds(0x8000_0000, 0xc000_0000);
    assert_eq!(s2.translate(gib.base).unwrap().level, 1);
    let pa = 0x8123_4000;
    let mut tlb = Tlb::default();
    s2.unmap_range(pa, PAGE_SIZE, &mut tlb).unwrap();
    assert_eq!(s2.translate(pa), None);
    assert_eq!(leaves_at(&s2, 1, gib), 0);
    assert_eq!(leaves_at(&s2, 2, gib), 511);
    assert_eq!(leaves_at(&s2, 3, gib), 511);
    assert_eq!(tlb.0, [gib, PhysRange::from_bounds(pa, pa + PAGE_SIZE)]);
    assert!(identity_ram(&s2, gib.base));
    assert!(identity_ram(&s2, gib.end() - 1));
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
    let r = PhysRange::from_bounds(0x4330_1000, 0x4350_5000);
    s2.unmap_range(r.base, r.size, &mut tlb).unwrap();
    assert_eq!(ram_bytes(&s2), before - r.size);
    tlb.0.clear();
    s2.map_range(r.base, r.size, &mut tlb).unwrap();
    assert_eq!(tlb.0, [r]);
    assert_eq!(ram_bytes(&s2), before);
    for l in s2.leaves().iter().filter(|l| l.kind == MemKind::Ram) {
        assert_eq!(l.pa, l.ipa.base);
        assert_eq!(
            l.attributes & !Stage2Attributes::TABLE_OR_PAGE,
            RAM_ATTRIBUTES
        );
    }
    let mut a = r.base - MIB2;
    while a < r.end() + MIB2 {
        assert!(identity_ram(&s2, a), "{a:#x}");
        a += PAGE_SIZE;
    }
    // Mapping what is mapped changes nothing; unmapping twice is harmless.
    s2.map_range(r.base, PAGE_SIZE, &mut tlb).unwrap();
    assert_eq!(ram_bytes(&s2), before);
    s2.unmap_range(r.base, PAGE_SIZE, &mut tlb).unwrap();
    s2.unmap_range(r.base, PAGE_SIZE, &mut tlb).unwrap();
    assert_eq!(ram_bytes(&s2), before - PAGE_SIZE);
}

fn ram_bytes(s2: &HostStage2) -> u64 {
    s2.leaves()
        .iter()
        .filter(|l| l.kind == MemKind::Ram)
        .map(|l| l.ipa.size)
        .sum()
}

#[test]
fn carveout_smmu_mmio_and_beyond_ram_can_never_be_mapped() {
    let mut s2 = live(0x8000_0000);
    let before = s2.leaves();
    let mut tlb = Tlb::default();
    let cases = [
        (
            CARVEOUT.base,
            PAGE_SIZE,
            HostS2Error::NotHostRam(CARVEOUT.base),
        ),
        (
            CARVEOUT.end() - PAGE_SIZE,
            2 * PAGE_SIZE,
            HostS2Error::NotHostRam(CARVEOUT.end() - PAGE_SIZE),
        ),
        (0x4080_0000, MIB2, HostS2Error::NotHostRam(0x4080_0000)),
        (SMMU.base, PAGE_SIZE, HostS2Error::NotHostRam(SMMU.base)),
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
        assert_eq!(s2.translate(r.base), None);
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
            .filter(|l| !PhysRange::from_bounds(BASE, BASE + PAGES * PAGE_SIZE).overlaps(&l.ipa))
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
            prop_assert_eq!(tlb.0.last().copied(), Some(PhysRange::from_bounds(pa, pa + len)));
        }
        for (i, m) in mapped.iter().enumerate() {
            let a = BASE + i as u64 * PAGE_SIZE;
            prop_assert_eq!(identity_ram(&s2, a), *m, "{:#x}", a);
        }
        let outside: Vec<Leaf> = s2
            .leaves()
            .into_iter()
            .filter(|l| !PhysRange::from_bounds(BASE, BASE + PAGES * PAGE_SIZE).overlaps(&l.ipa))
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
