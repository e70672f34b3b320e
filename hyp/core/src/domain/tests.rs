use super::*;
use alloc::alloc::{Layout, alloc_zeroed};
use warden_abi::LEAF_LEVEL;
use warden_dt::PhysRange;

/// A pool backed by real host memory: `pages` pages at fake PA `pa_base`.
pub(crate) fn backed_pool(
    pa_base: u64,
    pages: usize,
    max_donated: usize,
    backing_pages: usize,
) -> Arc<PagePool> {
    let layout =
        Layout::from_size_align(backing_pages * PAGE_SIZE as usize, PAGE_SIZE as usize).unwrap();
    // SAFETY: the layout has a non-zero size. The memory is leaked on purpose (tests only).
    let va = unsafe { alloc_zeroed(layout) } as u64;
    assert_ne!(va, 0);
    let offset = va.wrapping_sub(pa_base);
    Arc::new(PagePool::new(
        &[PhysRange {
            base: pa_base,
            size: pages as u64 * PAGE_SIZE,
        }],
        max_donated,
        offset,
    ))
}

const RW: u64 = abi::PROT_READ | abi::PROT_WRITE | abi::PROT_CACHE;

fn domain(pool_pages: usize) -> (Arc<PagePool>, PagingDomain) {
    let pool = backed_pool(0x4000_0000, pool_pages, 0, pool_pages);
    let d = PagingDomain::new(pool.clone(), 1, warden_smmu::Vmid(2), 0).unwrap();
    (pool, d)
}

fn map(d: &mut PagingDomain, pool: &PagePool, iova: u64, pa: u64, len: u64) -> usize {
    let need = d.map_need(iova, pa, len).unwrap();
    pool.reserve(need, 0).unwrap();
    let before = d.table_pages();
    d.map(iova, pa, len, attributes(RW)).unwrap();
    let used = d.table_pages() - before;
    assert_eq!(used, need, "need computation must be exact for fresh maps");
    need
}

/// The `_each` variants (one level-3 lookup per 2 MiB piece shared by consecutive ranges) answer and write
/// exactly as the single-range calls.
#[test]
fn in_place_each_matches_single_calls() {
    let (pool, mut d) = domain(64);
    let (twin_pool, mut twin) = domain(64);
    // Level-3 tables for 2 MiB pieces 0 and 1 (page 0x1000 mapped in each), none for piece 2.
    for (p, dom) in [(&pool, &mut d), (&twin_pool, &mut twin)] {
        map(dom, p, 0x1000, 1 << 32, 0x1000);
        map(dom, p, 0x20_1000, 1 << 32, 0x1000);
    }
    let ranges = [
        (0x3000, 0x2000),
        (0x8000, 0x1000),
        (0x1000, 0x1000),    // mapped
        (0x1f_f000, 0x2000), // pieces 0 and 1
        (0x20_0000, 0x2000), // mapped at 0x20_1000
        (0x3f_f000, 0x2000), // piece 2 has no table
        (0x40_0000, 0x1000), // no table
        (0x20_5000, 0x3000),
    ];
    let mut got = Vec::new();
    let _ = d.can_map_in_place_each(ranges, |i, r| {
        got.push((i, r));
        Ok::<(), ()>(())
    });
    let want: Vec<_> = ranges
        .iter()
        .enumerate()
        .map(|(i, &(iova, len))| (i, d.can_map_in_place(iova, len)))
        .collect();
    assert_eq!(got, want);
    assert_eq!(
        got.iter().filter(|(_, r)| *r == Ok(true)).count(),
        4,
        "{got:x?}"
    );
    // `f`'s error stops the walk.
    let mut seen = 0;
    assert_eq!(
        d.can_map_in_place_each(ranges, |i, _| {
            seen += 1;
            if i == 2 { Err(i) } else { Ok(()) }
        }),
        Err(2)
    );
    assert_eq!(seen, 3);
    let fast: Vec<_> = got
        .iter()
        .filter(|(_, r)| *r == Ok(true))
        .map(|&(i, _)| (ranges[i].0, (2 << 32) + ranges[i].0 * 3, ranges[i].1))
        .collect();
    d.map_pages_in_place_each(fast.iter().copied(), attributes(RW));
    for &(iova, pa, len) in &fast {
        twin.map_pages_in_place(iova, pa, len, attributes(RW));
    }
    for page in (0..8u64 << 20).step_by(4096) {
        assert_eq!(d.translate(page), twin.translate(page), "{page:#x}");
    }
    assert_eq!(
        d.translate(0x20_6000),
        Some((2 << 32) + 0x20_5000 * 3 + 0x1000)
    );
    assert_eq!(d.table_pages(), twin.table_pages());
}

#[test]
fn geometry() {
    let c = Geometry::DOMAIN.s2_config(warden_smmu::Vmid(3), 0x4000_0000, 4);
    assert_eq!(
        (c.t0sz, c.sl0, c.ias_bits(), c.start_level()),
        (25, 1, 39, 1)
    );
    assert_eq!(granule(1), 1 << 30);
    assert_eq!(granule(2), 1 << 21);
    assert_eq!(granule(3), 1 << 12);
    assert_eq!(pa_size_encoding(44), Some(4));
    assert_eq!(pa_size_encoding(45), None);
    // Wider inputs start at level 0 (S2SL0 2) and are valid STE fields on an SMMU with that IAS, not below.
    for bits in 40..=MAX_IOVA_BITS {
        let g = Geometry::with_bits(bits).unwrap();
        assert_eq!(
            (g.iova_bits(), g.root_level(), g.end()),
            (bits, 0, 1 << bits)
        );
        let c = g.s2_config(warden_smmu::Vmid(3), 0x4000_0000, 4);
        assert_eq!((c.t0sz, c.sl0), (64 - bits as u8, 2));
        assert_eq!(c.validate(5, bits), Ok(()), "{bits}");
        assert!(c.validate(5, bits - 1).is_err(), "{bits}");
    }
    assert_eq!(Geometry::with_bits(20), Some(Geometry::DOMAIN));
    assert_eq!(Geometry::with_bits(49), None);
}

/// The host-identity geometry: 39 bits / level 1 while everything lies below 512 GiB, else the narrowest
/// width covering the top (level 0), widened on request up to the IAS, refused beyond the IAS or 48 bits.
#[test]
fn host_identity_geometry() {
    const G: u64 = 1 << 30;
    let bits = |g: Result<Geometry, u32>| g.map(|g| (g.iova_bits(), g.root_level()));
    assert_eq!(bits(Geometry::host_identity(0, 0, 44)), Ok((39, 1)));
    assert_eq!(bits(Geometry::host_identity(512 * G, 0, 44)), Ok((39, 1)));
    assert_eq!(
        bits(Geometry::host_identity(512 * G + 1, 0, 44)),
        Ok((40, 0))
    );
    assert_eq!(bits(Geometry::host_identity(2560 * G, 0, 44)), Ok((42, 0)));
    assert_eq!(bits(Geometry::host_identity(G, 44, 44)), Ok((44, 0)));
    assert_eq!(bits(Geometry::host_identity(G, 48, 44)), Ok((44, 0)));
    assert_eq!(bits(Geometry::host_identity(G, 39, 44)), Ok((39, 1)));
    assert_eq!(bits(Geometry::host_identity(1 << 44, 0, 44)), Ok((44, 0)));
    assert_eq!(bits(Geometry::host_identity((1 << 44) + 1, 0, 44)), Err(45));
    assert_eq!(bits(Geometry::host_identity((1 << 48) + 1, 0, 52)), Err(49));
    assert_eq!(bits(Geometry::host_identity(G, 0, 36)), Err(39));
}

#[test]
fn largest_blocks_and_exact_need() {
    let (pool, mut d) = domain(64);
    // 1 GiB aligned in IOVA and PA: one level-1 block, no table.
    assert_eq!(map(&mut d, &pool, 1 << 30, 0x80_0000_0000, 1 << 30), 0);
    let mut levels = Vec::new();
    d.leaves(1 << 30, 1 << 30, |_, _, _, l| {
        levels.push(l);
        true
    });
    assert_eq!(levels, [1]);
    // 2 MiB + 4 KiB: one L2 table (2M block) and one L3 table (the page).
    assert_eq!(
        map(&mut d, &pool, 0x4000_0000 * 3, 0x1_0000_0000, 0x20_1000),
        2
    );
    assert_eq!(d.translate(0xc000_0000 + 0x20_0123), Some(0x1_0020_0123));
    // PA misaligned for blocks: pages only.
    assert_eq!(
        map(&mut d, &pool, 0x8000_0000, 0x1_0000_1000, 0x40_0000),
        1 + 2
    );
    assert_eq!(d.translate(0x8000_0000), Some(0x1_0000_1000));
    assert_eq!(d.translate(0x8000_0000 + 0x3f_f000), Some(0x1_0040_0000));
    assert_eq!(d.translate(0x8040_0000), None);
    assert_eq!(d.translate(1 << 39), None);
    assert_eq!(
        d.map_need(0x8000_0000, 0, 0x1000),
        Err(DomainError::AlreadyMapped(0x8000_0000))
    );
}

#[test]
fn unmap_splits_blocks() {
    let (pool, mut d) = domain(64);
    map(&mut d, &pool, 1 << 30, 0x80_0000_0000, 1 << 30);
    // Unmap one page in the middle of the 1 GiB block: split into an L2 table, then an L3 table.
    let iova = (1 << 30) + 0x20_3000;
    assert_eq!(d.unmap_need(iova, 0x1000), Ok(2));
    pool.reserve(2, 0).unwrap();
    let out = d.clear(iova, 0x1000).unwrap();
    assert!(!out.tables_freed);
    assert_eq!(d.translate(iova), None);
    assert_eq!(d.translate(iova - 0x1000), Some(0x80_0020_2000));
    assert_eq!(d.translate(iova + 0x1000), Some(0x80_0020_4000));
    assert_eq!(d.translate(1 << 30), Some(0x80_0000_0000));
    assert_eq!(
        d.unmap_need(iova, 0x1000),
        Err(DomainError::NotMapped(iova))
    );
    assert_eq!(d.unmap_need(1 << 30, 0x20_3000), Ok(0));
    // Clearing part of a table keeps the table; clearing the whole entry range frees both tables.
    assert!(!d.clear(1 << 30, 0x20_3000).unwrap().tables_freed);
    assert_eq!(d.table_pages(), 3);
    let out = d.clear(1 << 30, 1 << 30).unwrap();
    assert!(out.tables_freed);
    assert_eq!(d.table_pages(), 1);
    assert_eq!(pool.stats().quarantined, 2);
    let free_before = pool.stats().free;
    pool.release_quarantine(1);
    assert_eq!(pool.stats().free, free_before + 2);
}

#[test]
fn identity_boot_tables_counts_cut_pieces() {
    const G: u64 = 1 << 30;
    const M: u64 = 1 << 21;
    assert_eq!(identity_boot_tables(&[], Geometry::DOMAIN), 1);
    // One page: an L2 and an L3 table.
    assert_eq!(
        identity_boot_tables(&[(G + 5 * M, 0x1000)], Geometry::DOMAIN),
        3
    );
    // QEMU virt, 1 GiB of RAM minus a 2 MiB-aligned 30 MiB carve-out, the ITS doorbell frame: two L2
    // tables, one L3 table (the doorbell); RAM is all 2 MiB blocks.
    let virt = [(0x4000_0000 + 15 * M, G - 15 * M), (0x0809_0000, 0x1_0000)];
    assert_eq!(identity_boot_tables(&virt, Geometry::DOMAIN), 1 + 2 + 1);
    // Runs sharing pieces count them once, in any order; a run straddling a GiB touches both.
    assert_eq!(
        identity_boot_tables(
            &[(M + 0x1000, 0x1000), (M, 0x1000), (G - M, 2 * M)],
            Geometry::DOMAIN
        ),
        1 + 2 + 1
    );
    assert_eq!(
        identity_boot_tables(&[(M + 0x1000, 4 * M)], Geometry::DOMAIN),
        1 + 1 + 2
    );
}

#[test]
fn pieces_below_1g_never_cover_a_whole_gib() {
    const G: u64 = 1 << 30;
    const M: u64 = 1 << 21;
    let p: Vec<_> = pieces_below_1g(G - M, 2 * G + 4 * M).collect();
    assert_eq!(
        p,
        [
            (G - M, M),
            (G, G - M),
            (2 * G - M, M),
            (2 * G, G - M),
            (3 * G - M, M),
            (3 * G, 3 * M)
        ]
    );
    assert_eq!(
        pieces_below_1g(5 * M, 0x1000).collect::<Vec<_>>(),
        [(5 * M, 0x1000)]
    );
}

/// Boot tables against aarch64-paging: mapping the runs through [`pieces_below_1g`] takes exactly
/// [`identity_boot_tables`] pages, with no 1 GiB block, and clearing and refilling a whole GiB through them
/// frees and allocates nothing; with a level-0 root (runs above 512 GiB too) as with a level-1 root.
#[test]
fn identity_boot_tables_is_exact() {
    const M: u64 = 1 << 21;
    const G: u64 = 1 << 30;
    let low = [
        (0x4000_0000 + 3 * M, 5 * M + 0x3000),
        (0x0809_0000, 0x1_0000),
        (3 * G - M, G + 2 * M),
    ];
    let high = [(600 * G + 3 * M, 4 * M + 0x1000), (1 << 43, 2 * M)];
    identity_tables_are_exact(Geometry::DOMAIN, &low);
    let wide = Geometry::with_bits(44).unwrap();
    let d = identity_tables_are_exact(wide, &[&low[..], &high[..]].concat());
    // The walks from a level-0 root: the in-place lookup finds the level-3 table of the cut piece at the high
    // run's end, the generic one translates 1:1 up there, and nothing past 2^44.
    let end = high[0].0 + high[0].1;
    assert!(d.l3_table_pa(end).is_some());
    assert!(d.l3_table_pa(high[0].0).is_none(), "a 2 MiB block");
    assert_eq!(d.translate(end - 8), Some(end - 8));
    assert_eq!(d.translate(end), None);
    assert_eq!(d.translate((1 << 43) + 0x1234), Some((1 << 43) + 0x1234));
    assert_eq!(d.translate(1 << 44), None);
}

/// [`identity_boot_tables_is_exact`] for one geometry and set of runs (which touch GiB 3); returns the domain.
fn identity_tables_are_exact(geometry: Geometry, runs: &[(u64, u64)]) -> PagingDomain {
    const G: u64 = 1 << 30;
    let bound = identity_boot_tables(runs, geometry);
    let pool = backed_pool(0x4000_0000, bound, 0, bound);
    let mut d =
        PagingDomain::with_geometry(pool.clone(), 0, warden_smmu::Vmid(1), 0, geometry).unwrap();
    for &(base, size) in runs {
        for (b, s) in pieces_below_1g(base, size) {
            map(&mut d, &pool, b, b, s);
        }
    }
    assert_eq!(d.table_pages(), bound);
    assert_eq!(pool.stats().free, 0);
    let mut levels = Vec::new();
    d.leaves(3 * G, G, |_, _, _, level| {
        levels.push(level);
        true
    });
    assert!(levels.iter().all(|&l| l == 2), "2 MiB blocks only");
    for (b, s) in pieces_below_1g(3 * G, G) {
        assert_eq!(d.unmap_need(b, s), Ok(0));
        d.clear(b, s).unwrap();
    }
    assert_eq!(d.table_pages(), bound, "the level-2 table stays");
    for (b, s) in pieces_below_1g(3 * G, G) {
        assert_eq!(map(&mut d, &pool, b, b, s), 0);
    }
    d
}

#[test]
fn reserve_reports_shortfall() {
    let pool = backed_pool(0x4000_0000, 4, 2, 8);
    assert_eq!(pool.reserve(3, 2), Err(DomainError::NoMem(1)));
    assert_eq!(pool.reserve(0, 100), Ok(()));
    pool.reserve(2, 2).unwrap();
    assert_eq!(pool.reserve(1, 2), Err(DomainError::NoMem(1)));
    pool.unreserve(2);
    pool.add_donated(0x4000_4000, 2).unwrap();
    assert_eq!(pool.add_donated(0x4000_6000, 1), Err(DomainError::Limit));
    assert_eq!(
        pool.stats(),
        PoolStats {
            total: 6,
            free: 6,
            donated: 2,
            donated_free: 2,
            quarantined: 0
        }
    );
    pool.remove_donated(0x4000_4000, 2).unwrap();
    assert_eq!(
        pool.remove_donated(0x4000_4000, 1),
        Err(DomainError::Busy(0x4000_4000))
    );
}

mod model {
    use super::*;
    use proptest::prelude::*;

    const UNITS: [u64; 3] = [1 << 12, 1 << 21, 1 << 30];

    #[derive(Clone, Debug)]
    enum Op {
        Map {
            iova: u64,
            pa: u64,
            len: u64,
            fast: bool,
        },
        Unmap {
            iova: u64,
            len: u64,
            fast: bool,
        },
    }

    /// Ranges made of a unit (4K, 2M, 1G) and an offset of smaller units, so blocks and splits happen.
    fn range() -> impl Strategy<Value = (u64, u64)> {
        (0usize..3, 0u64..4, 0u64..3, 1u64..3, 0u64..3).prop_map(|(u, big, small, n, tail)| {
            let unit = UNITS[u];
            let start = big * unit + small * (unit >> 9).max(1 << 12);
            let len = n * unit + tail * (1 << 12);
            (start, len)
        })
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (range(), 0u64..8, any::<bool>(), any::<bool>()).prop_map(
                |((iova, len), p, aligned, fast)| {
                    // Misaligned PAs only for short ranges: a misaligned GiB needs 513 tables.
                    let aligned = aligned || len >= 1 << 30;
                    let pa =
                        (1 << 32) + p * (1 << 30) + if aligned { iova % (1 << 30) } else { 0x5000 };
                    Op::Map {
                        iova,
                        pa,
                        len,
                        fast,
                    }
                }
            ),
            (range(), any::<bool>()).prop_map(|((iova, len), fast)| Op::Unmap { iova, len, fast }),
        ]
    }

    /// Page-granular ranges in an 8 MiB window (4 level-3 tables), PAs misaligned or block aligned.
    fn page_op() -> impl Strategy<Value = (bool, u64, u64, u64)> {
        (
            any::<bool>(),
            0u64..2048,
            prop_oneof![1u64..8, 1u64..64, 1u64..700],
            0u64..3,
        )
            .prop_map(|(map, first, n, p)| {
                let n = n.min(2048 - first);
                (
                    map,
                    first << 12,
                    n << 12,
                    (1 << 32) + p * 0x20_0000 + (first << 12) + 0x1000 * (p & 1),
                )
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// The in-place paths ([`PagingDomain::can_map_in_place`], [`PagingDomain::map_pages_in_place`],
        /// [`PagingDomain::page_runs`], [`PagingDomain::clear_pages_in_place`]) take the same decisions and
        /// leave the same translations as the generic ones, on a twin domain updated only generically.
        #[test]
        fn in_place_paths_match_generic(ops in proptest::collection::vec(page_op(), 1..60)) {
            let pool = backed_pool(0x4000_0000, 64, 0, 64);
            let mut fast = PagingDomain::new(pool.clone(), 1, warden_smmu::Vmid(2), 0).unwrap();
            let twin_pool = backed_pool(0x4000_0000, 64, 0, 64);
            let mut twin = PagingDomain::new(twin_pool.clone(), 1, warden_smmu::Vmid(2), 0).unwrap();
            for (map, iova, len, pa) in ops {
                if map {
                    let generic = twin.map_need(iova, pa, len);
                    match fast.can_map_in_place(iova, len) {
                        Ok(true) => {
                            prop_assert_eq!(generic, Ok(0));
                            fast.map_pages_in_place(iova, pa, len, attributes(RW));
                        }
                        Ok(false) => {
                            prop_assert_eq!(fast.map_need(iova, pa, len), generic);
                            if let Ok(need) = generic {
                                pool.reserve(need, 0).unwrap();
                                fast.map(iova, pa, len, attributes(RW)).unwrap();
                            }
                        }
                        Err(e) => prop_assert_eq!(Err(e), generic),
                    }
                    if let Ok(need) = generic {
                        twin_pool.reserve(need, 0).unwrap();
                        twin.map(iova, pa, len, attributes(RW)).unwrap();
                    }
                } else {
                    let generic = twin.unmap_need(iova, len);
                    let mut runs = [(0u64, 0u64); 8];
                    match fast.page_runs(iova, len, &mut runs) {
                        Ok(Some(n)) => {
                            prop_assert_eq!(generic, Ok(0));
                            let mut want: Vec<(u64, u64)> = Vec::new();
                            twin.leaves(iova, len, |_, pa, l, _| {
                                let pa = pa.unwrap();
                                match want.last_mut() {
                                    Some(r) if r.0 + r.1 == pa => r.1 += l,
                                    _ => want.push((pa, l)),
                                }
                                true
                            });
                            prop_assert_eq!(&runs[..n], &want[..]);
                            fast.clear_pages_in_place(iova, len);
                        }
                        Ok(None) => {
                            prop_assert_eq!(fast.unmap_need(iova, len), generic);
                            if let Ok(need) = generic {
                                pool.reserve(need, 0).unwrap();
                                fast.clear(iova, len).unwrap();
                                pool.release_quarantine(1);
                            }
                        }
                        Err(e) => prop_assert_eq!(Err(e), generic),
                    }
                    if let Ok(need) = generic {
                        twin_pool.reserve(need, 0).unwrap();
                        twin.clear(iova, len).unwrap();
                        twin_pool.release_quarantine(1);
                    }
                }
                for page in (0..8u64 << 20).step_by(4096) {
                    prop_assert_eq!(fast.translate(page), twin.translate(page));
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

        /// The page counts computed before an update are exact for maps and sufficient for unmaps, and
        /// translations always agree with a run-list model.
        #[test]
        fn need_is_exact_and_translations_match(
            ops in proptest::collection::vec(op(), 1..24),
            probes in proptest::collection::vec(0u64..(5 << 30), 32),
        ) {
            let pool = backed_pool(0x4000_0000, 640, 0, 640);
            let mut d = PagingDomain::new(pool.clone(), 1, warden_smmu::Vmid(2), 0).unwrap();
            let mut model: Vec<(u64, u64, u64)> = Vec::new();
            let covered = |m: &Vec<(u64, u64, u64)>, a: u64| m.iter().find(|r| r.0 <= a && a < r.1).map(|r| r.2 + (a - r.0));
            for op in ops {
                match op {
                    Op::Map { iova, pa, len, fast } => {
                        let overlap = model.iter().any(|r| r.0 < iova + len && iova < r.1);
                        let in_place = d.can_map_in_place(iova, len);
                        match (&in_place, d.map_need(iova, pa, len)) {
                            // Both report the same first mapped IOVA (the in-place check may stop earlier).
                            (Err(a), Err(b)) => prop_assert_eq!(*a, b),
                            (Ok(false), _) => {}
                            // In place means: nothing to allocate.
                            (Ok(true), Ok(need)) => prop_assert_eq!(need, 0),
                            (a, b) => prop_assert!(false, "in place {a:?}, need {b:?}"),
                        }
                        if let Ok(true) = in_place {
                            prop_assert!(!overlap);
                        }
                        if fast && in_place == Ok(true) {
                            let before = d.table_pages();
                            d.map_pages_in_place(iova, pa, len, attributes(RW));
                            prop_assert_eq!(d.table_pages(), before);
                            model.push((iova, iova + len, pa));
                        } else { match d.map_need(iova, pa, len) {
                            Err(DomainError::AlreadyMapped(_)) => prop_assert!(overlap),
                            Err(e) => prop_assert!(false, "{e:?}"),
                            Ok(need) => {
                                prop_assert!(!overlap);
                                pool.reserve(need, 0).unwrap();
                                let before = d.table_pages();
                                d.map(iova, pa, len, attributes(RW)).unwrap();
                                prop_assert_eq!(d.table_pages() - before, need);
                                model.push((iova, iova + len, pa));
                            }
                        } }
                    }
                    Op::Unmap { iova, len, fast } => {
                        let full = (iova..iova + len).step_by(4096).all(|a| covered(&model, a).is_some());
                        let mut runs = [(0u64, 0u64); 4];
                        let fast_runs = d.page_runs(iova, len, &mut runs);
                        match &fast_runs {
                            Err(DomainError::NotMapped(at)) => {
                                prop_assert!(!full);
                                prop_assert_eq!(d.unmap_need(iova, len), Err(DomainError::NotMapped(*at)));
                            }
                            Err(e) => prop_assert!(false, "{e:?}"),
                            Ok(None) => {}
                            Ok(Some(n)) => {
                                prop_assert!(full);
                                prop_assert_eq!(d.unmap_need(iova, len), Ok(0));
                                // The runs are the leaves, merged.
                                let mut want: Vec<(u64, u64)> = Vec::new();
                                d.leaves(iova, len, |_, pa, l, level| {
                                    assert_eq!(level, LEAF_LEVEL);
                                    let pa = pa.unwrap();
                                    match want.last_mut() {
                                        Some(r) if r.0 + r.1 == pa => r.1 += l,
                                        _ => want.push((pa, l)),
                                    }
                                    true
                                });
                                prop_assert_eq!(&runs[..*n], &want[..]);
                            }
                        }
                        let unmapped = if fast && matches!(fast_runs, Ok(Some(_))) {
                            let before = d.table_pages();
                            d.clear_pages_in_place(iova, len);
                            prop_assert_eq!(d.table_pages(), before);
                            true
                        } else { match d.unmap_need(iova, len) {
                            Err(DomainError::NotMapped(_)) => { prop_assert!(!full); false }
                            Err(e) => { prop_assert!(false, "{e:?}"); false }
                            Ok(need) => {
                                prop_assert!(full);
                                pool.reserve(need, 0).unwrap();
                                let allocated = d.map.translation().in_use.get() + d.map.translation().freed.get();
                                d.clear(iova, len).unwrap();
                                let used = d.map.translation().in_use.get() + d.map.translation().freed.get() - allocated;
                                prop_assert!(used <= need, "used {} > need {}", used, need);
                                pool.unreserve(need - used);
                                pool.release_quarantine(1);
                                true
                            }
                        } };
                        if unmapped {
                            let mut next = Vec::new();
                            for (s, e, p) in model {
                                if s < iova { next.push((s, e.min(iova), p)); }
                                if e > iova + len { let ns = s.max(iova + len); next.push((ns, e, p + (ns - s))); }
                            }
                            model = next;
                        }
                    }
                }
                for &a in &probes {
                    prop_assert_eq!(d.translate(a), covered(&model, a));
                }
                for r in &model {
                    prop_assert_eq!(d.translate(r.0), Some(r.2));
                    prop_assert_eq!(d.translate(r.1 - 1), Some(r.2 + (r.1 - 1 - r.0)));
                }
            }
        }
    }
}
