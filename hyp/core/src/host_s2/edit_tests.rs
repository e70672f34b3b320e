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
pub(super) struct Tlb(pub(super) Vec<PhysRange>);

impl HostS2Tlb for Tlb {
    fn invalidate(&mut self, region: PhysRange) {
        self.0.push(region);
    }
}

/// A host stage-2 marked live (no CPU uses it: marked inactive again before the library's drop check).
pub(super) struct Live<S: TableSource = HeapTables>(pub(super) HostStage2<S>);

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
            ram_leaves: RamLeaves::Blocks,
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
/// succeeds with the heap dry, merging the split blocks back (the freed tables refill the reserve); an edit
/// that would split beyond the reserve still fails.
#[test]
fn undoing_an_edit_needs_no_heap() {
    let budget = Budget::unlimited();
    let mut s2 = live_with(0x1_8000_0000, budget.clone());
    let boot = s2.leaves();
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
        assert_eq!(s2.leaves(), boot);
        // Unmapping again splits again, from the tables the merge gave back to the reserve.
        s2.unmap_range(r.base, r.size, &mut tlb).unwrap();
        s2.map_range(r.base, r.size, &mut tlb).unwrap();
        assert_eq!(s2.leaves(), boot);
    }
    // The reserve is full: one split of a 1 GiB block (two tables) comes from it, the next cannot refill it.
    let r = PhysRange::from_bounds(0x1_4000_1000, 0x1_4000_2000);
    assert_eq!(s2.translate(r.base).unwrap().level, 1);
    s2.unmap_range(r.base, PAGE_SIZE, &mut tlb).unwrap();
    let before = s2.leaves();
    let r = PhysRange::from_bounds(0xc000_1000, 0xc000_2000);
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
    // The range, then the break of each 2 MiB block it made whole again (merged back).
    let blocks = [
        PhysRange::from_bounds(0x4320_0000, 0x4340_0000),
        PhysRange::from_bounds(0x4340_0000, 0x4360_0000),
    ];
    assert_eq!(tlb.0, [r, blocks[0], blocks[1]]);
    for b in blocks {
        assert_eq!(s2.translate(b.base).unwrap().level, 2);
    }
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
            let seen = tlb.0.len();
            if unmap {
                s2.unmap_range(pa, len, &mut tlb).unwrap();
                // Splits first, the range last.
                prop_assert_eq!(tlb.0.last().copied(), Some(PhysRange::from_bounds(pa, pa + len)));
            } else {
                s2.map_range(pa, len, &mut tlb).unwrap();
                // The range first, then one break per merged block.
                prop_assert_eq!(tlb.0.get(seen).copied(), Some(PhysRange::from_bounds(pa, pa + len)));
            }
            for m in &mut mapped[first as usize..(first + count) as usize] {
                *m = !unmap;
            }
            // No table of pages is left that maps its whole 2 MiB block.
            for block in (BASE..BASE + PAGES * PAGE_SIZE).step_by(MIB2 as usize) {
                let pages = &mapped[((block - BASE) / PAGE_SIZE) as usize..][..(MIB2 / PAGE_SIZE) as usize];
                let expected = if pages.iter().all(|m| *m) {
                    Some(2)
                } else {
                    pages[0].then_some(3)
                };
                prop_assert_eq!(s2.translate(block).map(|t| t.level), expected, "{:#x}", block);
            }
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
        // Everything back: the boot layout, block for block.
        s2.map_range(BASE, PAGES * PAGE_SIZE, &mut tlb).unwrap();
        prop_assert_eq!(s2.leaves(), live(0x8000_0000).leaves());
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

/// Tables from the heap, at most `cap` outstanding at once (what the hyp heap's slack allows): frees make
/// room again.
#[derive(Clone)]
pub(super) struct Capped {
    outstanding: Arc<core::sync::atomic::AtomicUsize>,
    cap: Arc<core::sync::atomic::AtomicUsize>,
}

impl Capped {
    pub(super) fn new() -> Self {
        Self {
            outstanding: Arc::default(),
            cap: Arc::new(usize::MAX.into()),
        }
    }

    pub(super) fn outstanding(&self) -> usize {
        self.outstanding.load(core::sync::atomic::Ordering::Relaxed)
    }

    fn set_cap(&self, cap: usize) {
        self.cap.store(cap, core::sync::atomic::Ordering::Relaxed);
    }
}

impl TableSource for Capped {
    fn alloc_table(&mut self) -> Option<NonNull<PageTable<Stage2Attributes>>> {
        use core::sync::atomic::Ordering::Relaxed;
        let cap = self.cap.load(Relaxed);
        self.outstanding
            .fetch_update(Relaxed, Relaxed, |n| (n < cap).then_some(n + 1))
            .ok()?;
        HeapTables.alloc_table()
    }

    unsafe fn free_table(&mut self, table: NonNull<PageTable<Stage2Attributes>>) {
        self.outstanding
            .fetch_sub(1, core::sync::atomic::Ordering::Relaxed);
        // SAFETY: Forwarded: our caller's promise, and `table` came from `HeapTables`.
        unsafe { HeapTables.free_table(table) };
    }
}

/// The tables linked into the stage-2 (the root and every table below it; not the reserve), by a walk of
/// the whole IPA space: a walk reports each entry of each table once, at that table's level.
fn tables_linked<S: TableSource>(s2: &HostStage2<S>) -> usize {
    let mut tables: Vec<(usize, u64)> = Vec::new();
    let whole = MemoryRegion::new(0, IPA_LIMIT as usize);
    s2.map
        .walk_range(&whole, &mut |mr, _, level| {
            if level > ROOT_LEVEL {
                let parent = granule(level - 1);
                tables.push((level, mr.start().0 as u64 & !(parent - 1)));
            }
            Ok(())
        })
        .unwrap();
    tables.sort_unstable();
    tables.dedup();
    1 + tables.len()
}

/// Reserved tables (held for the next edit, not linked).
fn reserved<S: TableSource>(s2: &HostStage2<S>) -> usize {
    s2.tables.lock().reserve.len()
}

/// A live stage-2 with RAM `ram`, the carve-out, the SMMU frames and `excluded` left out.
fn live_ram<S: TableSource>(ram: &[PhysRange], excluded: &[PhysRange], source: S) -> Live<S> {
    let mmio = [PhysRange::from_bounds(0, 0x4000_0000)];
    let excluded: Vec<PhysRange> = [CARVEOUT, SMMU].iter().chain(excluded).copied().collect();
    let mut s2 = HostStage2::build_with(
        &HostS2Spec {
            ram,
            mmio: &mmio,
            excluded: &excluded,
            ram_leaves: RamLeaves::Blocks,
        },
        source,
    )
    .unwrap();
    s2.mark_live();
    Live(s2)
}

/// A page donated out of a 1 GiB block splits it into a table of 2 MiB blocks and a table of pages;
/// reclaiming it merges both back: the leaves and the table count are those of a fresh build.
#[test]
fn split_then_merge_restores_the_boot_layout() {
    let source = Capped::new();
    let mut s2 = live_with(0x1_4000_0000, source.clone());
    let fresh = live(0x1_4000_0000);
    let boot_tables = tables_linked(&s2);
    assert_eq!(boot_tables, tables_linked(&fresh));
    assert_eq!(source.outstanding(), boot_tables);
    let mut tlb = Tlb::default();
    for pa in [
        0x8123_4000,
        0x4220_3000,
        0xffff_f000,
        0x41e0_0000,
        0x1_3fe0_0000,
    ] {
        let level = s2.translate(pa).unwrap().level;
        s2.unmap_range(pa, PAGE_SIZE, &mut tlb).unwrap();
        assert!(tables_linked(&s2) > boot_tables);
        tlb.0.clear();
        s2.map_range(pa, PAGE_SIZE, &mut tlb).unwrap();
        assert_eq!(s2.leaves(), fresh.leaves(), "{pa:#x}");
        assert_eq!(tables_linked(&s2), boot_tables, "{pa:#x}");
        // The range, then the 2 MiB block, then (from a 1 GiB block) the 1 GiB block.
        let page = PhysRange::from_bounds(pa, pa + PAGE_SIZE);
        let mib2 = PhysRange::from_bounds(pa & !(MIB2 - 1), (pa & !(MIB2 - 1)) + MIB2);
        let gib = PhysRange::from_bounds(pa & !(GIB - 1), (pa & !(GIB - 1)) + GIB);
        if level == 1 {
            assert_eq!(tlb.0, [page, mib2, gib]);
        } else {
            assert_eq!(tlb.0, [page, mib2]);
        }
        // Every table the split took is back in the reserve or the source.
        assert_eq!(source.outstanding(), boot_tables + reserved(&s2));
    }
    // A range across two 1 GiB blocks, cut at both ends: four tables, all merged back.
    let r = PhysRange::from_bounds(0x8123_4000, 0xc123_4000);
    s2.unmap_range(r.base, r.size, &mut tlb).unwrap();
    assert_eq!(tables_linked(&s2), boot_tables + MAX_TABLES_PER_EDIT);
    s2.map_range(r.base, r.size, &mut tlb).unwrap();
    assert_eq!(s2.leaves(), fresh.leaves());
    assert_eq!(tables_linked(&s2), boot_tables);
}

/// Donate and reclaim one page from each of more than 2,000 distinct 2 MiB blocks (in 1 GiB blocks and in
/// the boot table of 2 MiB blocks beside the carve-out) with a source that never has more than a few tables
/// of headroom: every edit succeeds, and the linked tables come back to the boot count. With three
/// donations live at once the tables stay bounded by the live donations.
#[test]
fn donate_reclaim_cycles_over_many_blocks_keep_the_boot_table_count() {
    const RAM_END: u64 = 0x1_4000_0000;
    let source = Capped::new();
    let mut s2 = live_with(RAM_END, source.clone());
    let boot_tables = tables_linked(&s2);
    let boot_leaves = s2.leaves();
    // Room for the reserve and two more: one cut 1 GiB block beyond the reserve, not two.
    source.set_cap(boot_tables + MAX_TABLES_PER_EDIT + 2);
    let mut tlb = Tlb::default();
    let blocks: Vec<u64> = (CARVEOUT.end()..RAM_END).step_by(MIB2 as usize).collect();
    assert!(blocks.len() > 2000, "{}", blocks.len());
    for (i, block) in blocks.iter().enumerate() {
        let pa = block + (i as u64 % 512) * PAGE_SIZE;
        s2.unmap_range(pa, PAGE_SIZE, &mut tlb).unwrap();
        assert_eq!(s2.translate(pa), None);
        s2.map_range(pa, PAGE_SIZE, &mut tlb).unwrap();
        assert_eq!(tables_linked(&s2), boot_tables, "{pa:#x}");
    }
    assert_eq!(s2.leaves(), boot_leaves);
    // A sliding window of three live donations, each from a different 2 MiB block (some sharing a 1 GiB
    // block), with headroom for them: the linked tables never exceed the boot count plus two per live
    // donation.
    source.set_cap(boot_tables + MAX_TABLES_PER_EDIT + 2 * 3);
    let mut live_pages = alloc::collections::VecDeque::new();
    for (i, block) in blocks.iter().enumerate().step_by(171) {
        let pa = block + PAGE_SIZE * (i as u64 % 512);
        s2.unmap_range(pa, PAGE_SIZE, &mut tlb).unwrap();
        live_pages.push_back(pa);
        assert!(tables_linked(&s2) <= boot_tables + 2 * live_pages.len());
        if live_pages.len() == 3 {
            let old = live_pages.pop_front().unwrap();
            s2.map_range(old, PAGE_SIZE, &mut tlb).unwrap();
        }
    }
    for pa in live_pages {
        s2.map_range(pa, PAGE_SIZE, &mut tlb).unwrap();
    }
    assert_eq!(s2.leaves(), boot_leaves);
    assert_eq!(tables_linked(&s2), boot_tables);
    assert_eq!(source.outstanding(), boot_tables + reserved(&s2));
}

/// A block stays a table while any of its pages is donated: reclaiming part of a donation merges nothing
/// of that block; the last page back merges it.
#[test]
fn partial_reclaims_do_not_merge() {
    let mut s2 = live(0x1_0000_0000);
    let fresh = live(0x1_0000_0000);
    let mut tlb = Tlb::default();
    // Two pages of one 2 MiB block inside a 1 GiB block, and a range across two 2 MiB blocks.
    s2.unmap_range(0x8000_1000, PAGE_SIZE, &mut tlb).unwrap();
    s2.unmap_range(0x801f_f000, PAGE_SIZE, &mut tlb).unwrap();
    s2.map_range(0x8000_1000, PAGE_SIZE, &mut tlb).unwrap();
    assert_eq!(s2.translate(0x8000_1000).unwrap().level, 3);
    assert_eq!(s2.translate(0x8000_0000).unwrap().level, 3);
    assert_eq!(s2.translate(0x8020_0000).unwrap().level, 2);
    s2.map_range(0x801f_f000, PAGE_SIZE, &mut tlb).unwrap();
    assert_eq!(s2.leaves(), fresh.leaves());
    let r = PhysRange::from_bounds(0x843f_e000, 0x8440_2000);
    s2.unmap_range(r.base, r.size, &mut tlb).unwrap();
    // The lower half back: its block merges, the upper block keeps its table (and so does the 1 GiB).
    s2.map_range(r.base, r.size / 2, &mut tlb).unwrap();
    assert_eq!(s2.translate(0x8420_0000).unwrap().level, 2);
    assert_eq!(s2.translate(0x8440_2000).unwrap().level, 3);
    assert_eq!(s2.translate(0x8440_0000), None);
    assert_ne!(s2.leaves(), fresh.leaves());
    s2.map_range(0x8440_0000, 2 * PAGE_SIZE, &mut tlb).unwrap();
    assert_eq!(s2.leaves(), fresh.leaves());
    // A 1 GiB block with one of its 2 MiB blocks donated whole: the others merge nothing into 1 GiB.
    s2.unmap_range(0xc000_0000, MIB2, &mut tlb).unwrap();
    s2.unmap_range(0xc020_0000, PAGE_SIZE, &mut tlb).unwrap();
    s2.map_range(0xc020_0000, PAGE_SIZE, &mut tlb).unwrap();
    assert_eq!(s2.translate(0xc020_0000).unwrap().level, 2);
    assert_eq!(s2.translate(0xc000_0000), None);
    s2.map_range(0xc000_0000, MIB2, &mut tlb).unwrap();
    assert_eq!(s2.translate(0xc000_0000).unwrap().level, 1);
    assert_eq!(s2.leaves(), fresh.leaves());
}

/// Merging never re-covers what the boot build left out: the 2 MiB blocks beside the carve-out merge, but
/// the 1 GiB block holding the carve-out stays a table; a 2 MiB block holding an excluded frame, a RAM
/// bank's unaligned end, or a 1 GiB block spanning two banks is never made a block.
#[test]
fn merges_never_cover_the_carve_out_excluded_frames_or_holes() {
    let frame = PhysRange::from_bounds(0x4331_0000, 0x4332_0000);
    let ram = [
        PhysRange::from_bounds(0x4000_0000, 0xa000_0000),
        PhysRange::from_bounds(0xa000_0000, 0x1_0010_0000),
    ];
    let mut s2 = live_ram(&ram, &[frame], HeapTables);
    let fresh = live_ram(&ram, &[frame], HeapTables);
    let boot_tables = tables_linked(&s2);
    let mut tlb = Tlb::default();
    // Beside the carve-out, next to the frame (same 2 MiB block), in the GiB across the two banks, in the
    // last, partial 2 MiB block of RAM; the whole 2 MiB block around the frame's neighbours.
    for (pa, len) in [
        (CARVEOUT.end(), PAGE_SIZE),
        (frame.base - PAGE_SIZE, PAGE_SIZE),
        (frame.end(), PAGE_SIZE),
        (0x4320_0000, frame.base - 0x4320_0000),
        (0x9fff_f000, PAGE_SIZE),
        (0xa000_0000, PAGE_SIZE),
        (0xb000_0000, PAGE_SIZE),
        (0x1_0000_0000, PAGE_SIZE),
    ] {
        s2.unmap_range(pa, len, &mut tlb).unwrap();
        s2.map_range(pa, len, &mut tlb).unwrap();
        assert_eq!(s2.leaves(), fresh.leaves(), "{pa:#x}");
        assert_eq!(tables_linked(&s2), boot_tables, "{pa:#x}");
    }
    assert_eq!(s2.translate(CARVEOUT.end()).unwrap().level, 2);
    assert_eq!(s2.translate(frame.base - PAGE_SIZE).unwrap().level, 3);
    assert_eq!(s2.translate(0xb000_0000).unwrap().level, 2);
    assert_eq!(s2.translate(0x1_0000_0000).unwrap().level, 3);
    for a in [
        CARVEOUT.base,
        CARVEOUT.end() - PAGE_SIZE,
        frame.base,
        frame.end() - PAGE_SIZE,
        0x1_0010_0000,
    ] {
        assert_eq!(s2.translate(a), None, "{a:#x}");
    }
}

/// A merge only frees: it succeeds with the source dry, and with a source that refuses everything the
/// freed tables go back to the reserve, then to the source.
#[test]
fn merges_succeed_with_a_failing_source() {
    let budget = Budget::unlimited();
    let mut s2 = live_with(0x1_4000_0000, budget.clone());
    let fresh = live(0x1_4000_0000);
    let boot_tables = tables_linked(&s2);
    let mut tlb = Tlb::default();
    // Two cut 1 GiB blocks (four tables) and a cut 2 MiB block beside the carve-out (one more).
    for pa in [0x8000_0000, 0xc000_0000, 0x4200_0000] {
        s2.unmap_range(pa + PAGE_SIZE, PAGE_SIZE, &mut tlb).unwrap();
    }
    assert_eq!(tables_linked(&s2), boot_tables + 5);
    budget.set(0);
    for pa in [0x8000_0000, 0xc000_0000, 0x4200_0000] {
        s2.map_range(pa + PAGE_SIZE, PAGE_SIZE, &mut tlb).unwrap();
    }
    assert_eq!(s2.leaves(), fresh.leaves());
    assert_eq!(tables_linked(&s2), boot_tables);
    assert_eq!(reserved(&s2), MAX_TABLES_PER_EDIT);
    // One cut 1 GiB block takes two reserved tables; the next cannot refill the reserve and changes
    // nothing; reclaiming the first gives its tables back, and the next goes through.
    s2.unmap_range(0x8000_1000, PAGE_SIZE, &mut tlb).unwrap();
    let before = s2.leaves();
    assert_eq!(
        s2.unmap_range(0xc000_1000, PAGE_SIZE, &mut tlb),
        Err(HostS2Error::NoTables(0xc000_1000))
    );
    assert_eq!(s2.leaves(), before);
    s2.map_range(0x8000_1000, PAGE_SIZE, &mut tlb).unwrap();
    assert_eq!(reserved(&s2), MAX_TABLES_PER_EDIT);
    s2.unmap_range(0xc000_1000, PAGE_SIZE, &mut tlb).unwrap();
    s2.map_range(0xc000_1000, PAGE_SIZE, &mut tlb).unwrap();
    assert_eq!(s2.leaves(), fresh.leaves());
}

/// A live stage-2 like [`live_ram`], host RAM mapped with 4 KiB pages ([`RamLeaves::Pages`]).
fn live_pages<S: TableSource>(ram: &[PhysRange], source: S) -> Live<S> {
    let mmio = [PhysRange::from_bounds(0, 0x4000_0000)];
    let mut s2 = HostStage2::build_with(
        &HostS2Spec {
            ram,
            mmio: &mmio,
            excluded: &[CARVEOUT, SMMU],
            ram_leaves: RamLeaves::Pages,
        },
        source,
    )
    .unwrap();
    s2.mark_live();
    Live(s2)
}

/// With pages, RAM is level-3 leaves only (MMIO keeps its blocks), and the level-3 tables stay within what
/// `sizing` counts for them.
#[test]
fn pages_build_maps_ram_with_pages_only() {
    let ram = [PhysRange::from_bounds(0x4000_0000, 0x1_4000_0000)];
    let source = Capped::new();
    let s2 = live_pages(&ram, source.clone());
    let leaves = s2.leaves();
    let ram_leaves: Vec<&Leaf> = leaves.iter().filter(|l| l.kind == MemKind::Ram).collect();
    assert_eq!(
        ram_leaves.len() as u64,
        (ram[0].size - CARVEOUT.size) / PAGE_SIZE
    );
    for l in &ram_leaves {
        assert_eq!(
            (l.level, l.pa, l.ipa.size),
            (3, l.ipa.base, PAGE_SIZE),
            "{l:?}"
        );
        assert!(!l.ipa.overlaps(&CARVEOUT));
    }
    // The MMIO window below RAM is still mapped with blocks (around the SMMU frames).
    assert!(
        leaves
            .iter()
            .any(|l| l.kind == MemKind::Mmio && l.level < 3)
    );
    assert_eq!(s2.translate(0x1_3fff_ffff).unwrap().level, 3);
    assert_eq!(s2.translate(0x4000_0000), None);
    // Level-3 tables: one per 2 MiB of RAM beyond the carve-out, within `sizing`'s count for them.
    let l3 = (ram[0].size - CARVEOUT.size) / MIB2;
    let sized = crate::sizing::host_s2_page_tables(&ram).unwrap() / PAGE_SIZE;
    assert!(l3 <= sized, "{l3} level-3 tables, {sized} sized");
    // Besides them: the root, level-1 and level-2 tables of RAM and the MMIO below it.
    assert!(
        source.outstanding() as u64 <= sized + 16,
        "{}",
        source.outstanding()
    );
}

/// With pages, donation and reclaim only flip level-3 entries: no table is taken or freed, no block is
/// broken or merged, one TLB maintenance per edit (of the range), even with the table source dry.
#[test]
fn pages_edits_never_split_nor_merge() {
    let ram = [PhysRange::from_bounds(0x4000_0000, 0x1_4000_0000)];
    let budget = Budget::unlimited();
    let mut s2 = live_pages(&ram, budget.clone());
    let fresh = live_pages(&ram, HeapTables);
    let boot_tables = tables_linked(&s2);
    let mut tlb = Tlb::default();
    // The first edit fills the reserve; from then on the source is dry and never needed.
    s2.unmap_range(0x8000_0000, PAGE_SIZE, &mut tlb).unwrap();
    s2.map_range(0x8000_0000, PAGE_SIZE, &mut tlb).unwrap();
    budget.set(0);
    tlb.0.clear();
    let taken = allocated(&s2);
    for r in [
        PhysRange::from_bounds(0x8123_4000, 0x8123_5000),
        // Across a 2 MiB boundary, and across a 1 GiB boundary.
        PhysRange::from_bounds(0x423f_f000, 0x4240_1000),
        PhysRange::from_bounds(0xbfff_e000, 0xc000_3000),
        // Next to the carve-out and at the top of RAM.
        PhysRange::from_bounds(CARVEOUT.end(), CARVEOUT.end() + PAGE_SIZE),
        PhysRange::from_bounds(0x1_3fff_f000, 0x1_4000_0000),
    ] {
        s2.unmap_range(r.base, r.size, &mut tlb).unwrap();
        assert_eq!(tlb.0, [r], "{r:?}");
        assert_eq!(s2.translate(r.base), None);
        assert_eq!(s2.translate(r.end() - 1), None);
        for outside in [r.base - PAGE_SIZE, r.end()] {
            if s2.is_host_ram(outside) {
                let t = s2.translate(outside).unwrap();
                assert_eq!((t.pa, t.level), (outside, 3), "{outside:#x}");
            }
        }
        tlb.0.clear();
        s2.map_range(r.base, r.size, &mut tlb).unwrap();
        assert_eq!(tlb.0, [r], "{r:?}");
        tlb.0.clear();
        assert_eq!(s2.leaves(), fresh.leaves(), "{r:?}");
        assert_eq!(tables_linked(&s2), boot_tables, "{r:?}");
        assert_eq!(allocated(&s2), taken, "{r:?}");
    }
    // Still only host RAM: the carve-out and MMIO are refused as before.
    assert_eq!(
        s2.map_range(CARVEOUT.base, PAGE_SIZE, &mut tlb),
        Err(HostS2Error::NotHostRam(CARVEOUT.base))
    );
}

/// A page pool over `pages` leaked, page-aligned host pages, mapped 1:1 (`phys_offset` 0) as at EL2.
fn pool_of(pages: usize) -> Arc<crate::domain::PagePool> {
    let layout =
        core::alloc::Layout::from_size_align(pages * PAGE_SIZE as usize, PAGE_SIZE as usize)
            .unwrap();
    // SAFETY: The layout has a non-zero size. The memory is leaked: the pool's pages live for the test.
    let base = unsafe { alloc::alloc::alloc_zeroed(layout) } as u64;
    assert_ne!(base, 0);
    let range = PhysRange {
        base,
        size: pages as u64 * PAGE_SIZE,
    };
    Arc::new(crate::domain::PagePool::new(&[range], 0, 0))
}

/// A live stage-2 with blocks, built from the heap, then taking its tables from a pool of `pages` pages (as
/// EL2 does once the SMMU bring-up made the pool).
fn live_pool(pages: usize) -> (Live<PoolTables>, Arc<crate::domain::PagePool>) {
    let mut s2 = live_with(0x1_4000_0000, PoolTables::new(&[]));
    let pool = pool_of(pages);
    s2.with_source(|s| s.use_pool(pool.clone()));
    (s2, pool)
}

/// With blocks at EL2, a donation's splits take their tables from the host's domain pool (carve-out and
/// donated pages), exactly the tables they link, and hold nothing else; reclaims merge them back to the pool.
#[test]
fn blocks_split_tables_come_from_the_pool_and_go_back() {
    let (mut s2, pool) = live_pool(8);
    let fresh = live(0x1_4000_0000);
    let boot_tables = tables_linked(&s2);
    let free = || pool.stats().free;
    let mut tlb = Tlb::default();
    // A page inside a 1 GiB block: a table of 2 MiB entries and one of pages.
    s2.unmap_range(0x8000_1000, PAGE_SIZE, &mut tlb).unwrap();
    assert_eq!((free(), reserved(&s2)), (6, 0));
    assert_eq!(tables_linked(&s2), boot_tables + 2);
    // Another page of the same 2 MiB block: no table.
    s2.unmap_range(0x8000_3000, PAGE_SIZE, &mut tlb).unwrap();
    assert_eq!((free(), reserved(&s2)), (6, 0));
    // A page of another 2 MiB block of that GiB: one table of pages.
    s2.unmap_range(0x8040_1000, PAGE_SIZE, &mut tlb).unwrap();
    assert_eq!((free(), reserved(&s2)), (5, 0));
    // Both ends inside one 1 GiB block, neither 2 MiB aligned: three tables.
    s2.unmap_range(0xc000_1000, 0x40_0000, &mut tlb).unwrap();
    assert_eq!((free(), reserved(&s2)), (2, 0));
    assert_eq!(tables_linked(&s2), boot_tables + 6);
    // Reclaims merge every block back; its tables return to the pool, none stays in the reserve.
    for (pa, len) in [
        (0x8000_1000, PAGE_SIZE),
        (0x8000_3000, PAGE_SIZE),
        (0x8040_1000, PAGE_SIZE),
        (0xc000_1000, 0x40_0000),
    ] {
        s2.map_range(pa, len, &mut tlb).unwrap();
        assert_eq!(reserved(&s2), 0);
    }
    assert_eq!(free(), 8);
    assert_eq!(s2.leaves(), fresh.leaves());
    assert_eq!(tables_linked(&s2), boot_tables);
}

/// With the pool short of what a split needs, the edit fails with `NoTables` and changes nothing: no
/// descriptor, no TLB maintenance, no pool page; it goes through once the host has donated (pages put back).
/// Edits that need no table never touch the pool, even when it is empty.
#[test]
fn blocks_split_without_pool_pages_fails_and_changes_nothing() {
    let (mut s2, pool) = live_pool(2);
    let mut tlb = Tlb::default();
    // Hold one of the two pages (as a domain's table would): a 1 GiB split needs two.
    let held = pool.take_page().unwrap();
    let before = s2.leaves();
    for pa in [0x8000_1000, 0xc123_4000] {
        assert_eq!(
            s2.unmap_range(pa, PAGE_SIZE, &mut tlb),
            Err(HostS2Error::NoTables(pa))
        );
        assert_eq!(s2.leaves(), before);
        assert!(tlb.0.is_empty());
        assert_eq!((pool.stats().free, reserved(&s2)), (1, 0));
    }
    // A whole 1 GiB block needs no table: it goes through with the pool short, and comes back.
    s2.unmap_range(0x8000_0000, GIB, &mut tlb).unwrap();
    s2.map_range(0x8000_0000, GIB, &mut tlb).unwrap();
    assert_eq!(pool.stats().free, 1);
    // The host donates: the page is back, and the split goes through.
    pool.put_page(held);
    assert_eq!(pool.stats().free, 2, "{:?}", pool.stats());
    assert_eq!(
        s2.tables_needed(PhysRange::from_bounds(0x8000_1000, 0x8000_2000)),
        2
    );
    s2.unmap_range(0x8000_1000, PAGE_SIZE, &mut tlb).unwrap();
    assert_eq!(pool.stats().free, 0);
    // Its rollback needs no table, with the pool empty.
    s2.map_range(0x8000_1000, PAGE_SIZE, &mut tlb).unwrap();
    assert_eq!(s2.leaves(), before);
    assert_eq!(pool.stats().free, 2);
}

/// The bound each edit takes from a pool matches what its splits link, over random edits (the pool never
/// loses a page: after mapping everything back it is whole again).
#[test]
fn pool_tables_taken_match_tables_linked() {
    let (mut s2, pool) = live_pool(64);
    let boot_tables = tables_linked(&s2);
    let mut tlb = Tlb::default();
    let ranges = [
        (0x8123_4000, 0x4000_0000),
        (0x4220_0000, 0x40_0000),
        (0x4330_1000, PAGE_SIZE),
        (0x1_0000_0000 - PAGE_SIZE, 2 * PAGE_SIZE),
        (0x1_2000_0000, 0x20_0000),
    ];
    for &(pa, len) in &ranges {
        s2.unmap_range(pa, len, &mut tlb).unwrap();
        assert_eq!(
            64 - pool.stats().free,
            tables_linked(&s2) - boot_tables,
            "{pa:#x}"
        );
        assert_eq!(reserved(&s2), 0);
    }
    for &(pa, len) in ranges.iter().rev() {
        s2.map_range(pa, len, &mut tlb).unwrap();
        assert_eq!(
            64 - pool.stats().free,
            tables_linked(&s2) - boot_tables,
            "{pa:#x}"
        );
    }
    assert_eq!(pool.stats().free, 64);
}

/// With pages the edits never take from the pool, even an empty one, and never free a table (whole blocks
/// included: their level-3 entries go invalid, the tables stay).
#[test]
fn pages_edits_never_touch_the_pool() {
    let ram = [PhysRange::from_bounds(0x4000_0000, 0x1_4000_0000)];
    let mut s2 = live_pages(&ram, PoolTables::new(&[]));
    let pool = pool_of(1);
    let held = pool.take_page().unwrap();
    s2.with_source(|s| s.use_pool(pool.clone()));
    let mut tlb = Tlb::default();
    let boot = s2.leaves();
    let boot_tables = tables_linked(&s2);
    // Pages, across blocks, whole 2 MiB blocks and a whole 1 GiB block: unmapped and mapped back with the
    // level-3 tables the boot build made, none freed, none taken.
    for (pa, len) in [
        (0x8123_4000, PAGE_SIZE),
        (0xbfff_e000, 0x5000),
        (0x8020_0000, 0x40_0000),
        (0xc000_0000, GIB),
    ] {
        s2.unmap_range(pa, len, &mut tlb).unwrap();
        assert_eq!(tables_linked(&s2), boot_tables, "{pa:#x}");
        assert_eq!(s2.translate(pa), None);
        s2.map_range(pa, len, &mut tlb).unwrap();
        assert_eq!(tables_linked(&s2), boot_tables);
    }
    assert_eq!(s2.leaves(), boot);
    assert_eq!((pool.stats().free, reserved(&s2)), (0, 0));
    pool.put_page(held);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Random edits over 2 GiB of 1 GiB blocks with tables from a pool: [`HostStage2::tables_needed`] is never
    /// short (a short reserve would panic in the library's allocation), the pool holds exactly the tables
    /// linked beyond the boot build, and nothing stays in the reserve.
    #[test]
    fn pool_edits_take_exactly_what_they_link(
        ops in proptest::collection::vec((any::<bool>(), 0u64..(2 * GIB / PAGE_SIZE), 1u64..(1 << 19)), 1..8)
    ) {
        const BASE: u64 = 0x8000_0000;
        let (mut s2, pool) = live_pool(256);
        let boot_tables = tables_linked(&s2);
        let mut tlb = Tlb::default();
        for (unmap, first, count) in ops {
            let count = count.min(2 * GIB / PAGE_SIZE - first);
            let (pa, len) = (BASE + first * PAGE_SIZE, count * PAGE_SIZE);
            if unmap {
                s2.unmap_range(pa, len, &mut tlb).unwrap();
            } else {
                s2.map_range(pa, len, &mut tlb).unwrap();
            }
            prop_assert_eq!(s2.is_mapped(pa, len), !unmap);
            prop_assert_eq!(256 - pool.stats().free, tables_linked(&s2) - boot_tables);
            prop_assert_eq!(reserved(&s2), 0);
        }
    }
}
