//! UNMAP_PAGES: errors, partial blocks (with and without break-before-make), fragmented ranges, timeouts.

use super::*;

#[test]
fn unmap_errors_and_partial_block() {
    unmap_errors_and_partial_block_with(false);
    unmap_errors_and_partial_block_with(true);
}

/// With `bbm`, the backend asks for break-before-make on block splits.
fn unmap_errors_and_partial_block_with(bbm: bool) {
    let h = harness_bbm(bbm);
    let w = &h.w;
    let d = alloc_paging(w);
    let b = res(w, Function::DomainAlloc, &[1]).unwrap();
    res(
        w,
        Function::MapPages,
        &[d, 0x20_0000, host(0x20_0000), M2, 1, RW],
    )
    .unwrap();
    let cases: &[(&[u64], Error)] = &[
        (&[d, 0x20_0000, 0x1000 * 3, 1], Error::BadPgsize),
        (&[d, 0x20_0000, K4, 0], Error::BadCount),
        (&[d, 0x20_0800, K4, 1], Error::Misaligned),
        (&[d, 0x20_1000, M2, 1], Error::Misaligned),
        (&[d, 0x20_0000, M2, u64::MAX], Error::Overflow),
        (&[d, (1 << 39) - M2, M2, 2], Error::OutOfRangeIova),
        (&[d, 0, K4, 1], Error::NotMapped),
        (&[d, 0x1f_f000, K4, 2], Error::NotMapped),
        (&[d, 0x20_0000, K4, 513], Error::NotMapped),
        (&[0, 0x20_0000, K4, 1], Error::ImmutableDomain),
        (&[b, 0x20_0000, K4, 1], Error::WrongDomainKind),
        (&[d + (1 << 16), 0x20_0000, K4, 1], Error::BadDomain),
    ];
    for (args, err) in cases {
        assert_eq!(
            res(w, Function::UnmapPages, args),
            Err(*err),
            "unmap {args:x?}"
        );
    }
    assert_eq!(stat(w, Stat::MappedPages), 512);
    // Half a block: the block is split, exactly the asked half goes.
    assert_eq!(
        res(w, Function::UnmapPages, &[d, 0x30_0000, K4, 256]),
        Ok(1 << 20)
    );
    assert_eq!(
        res(w, Function::IovaToPhys, &[d, 0x2f_f000]),
        Ok(host(0x2f_f000))
    );
    assert_eq!(
        res(w, Function::IovaToPhys, &[d, 0x30_0000]),
        Err(Error::NotMapped)
    );
    assert_eq!(stat(w, Stat::MappedPages), 256);
    let invals = invals(w);
    let ranges: Vec<_> = invals
        .iter()
        .map(|i| match *i {
            Inval::Range(r) => (r.iova, r.size, r.leaf_size, r.leaf_only),
            Inval::Vmid(_) => panic!("{i:?}"),
        })
        .collect();
    // What the SMMU sees for a request (the driver widens a range to the leaf size it names); the split's
    // invalidations are leaf-only: the removed entries are leaves (the old block, then pages).
    let vmid = Vmid((d & 0xffff) as u16 + 1);
    let seen = |iova, size, leaf_size, leaf_only| {
        let req = S2Invalidation {
            vmid,
            iova,
            size,
            leaf_size,
            leaf_only,
        };
        let Inval::Range(r) = planned(w, req) else {
            panic!()
        };
        (r.iova, r.size, leaf_size, leaf_only)
    };
    if bbm {
        // Break-before-make: the whole old 2 MiB entry is invalidated before its table is written, then the
        // unmapped half as the 4 KiB pages it is now.
        assert_eq!(
            ranges[ranges.len() - 2..],
            [
                seen(0x20_0000, M2, LeafSize::Block2M, true),
                seen(0x30_0000, 1 << 20, LeafSize::Page4K, true)
            ],
            "the old 2 MiB entry leaves the TLB first"
        );
    } else {
        assert_eq!(
            ranges.last(),
            Some(&seen(0x30_0000, 1 << 20, LeafSize::Block2M, true)),
            "split in place: the old 2 MiB entry is what is cached"
        );
    }
    assert_eq!(
        res(w, Function::UnmapPages, &[d, 0x20_0000, K4, 256]),
        Ok(1 << 20)
    );
    assert_eq!(stat(w, Stat::MappedPages), 0);
}

#[test]
fn fragmented_unmap_invalidates_before_each_batch_of_counts() {
    let (h, d) = paging_harness();
    let w = &h.w;
    // 100 consecutive IOVA pages backed by every other PA page: 100 discontiguous runs.
    for i in 0..100u64 {
        res(
            w,
            Function::MapPages,
            &[d, 0x40_0000 + i * K4, host(2 * i * K4), K4, 1, RW],
        )
        .unwrap();
    }
    clear_commands(w);
    assert_eq!(
        res(w, Function::UnmapPages, &[d, 0x40_0000, K4, 100]),
        Ok(100 * K4)
    );
    let invals = invals(w);
    let ranges: Vec<(u64, u64)> = invals
        .iter()
        .map(|i| match *i {
            Inval::Range(r) => (r.iova, r.size),
            Inval::Vmid(_) => panic!("unexpected VMID invalidation"),
        })
        .collect();
    assert_eq!(
        ranges,
        [
            (0x40_0000, UNMAP_RUNS as u64 * K4),
            (
                0x40_0000 + UNMAP_RUNS as u64 * K4,
                (100 - UNMAP_RUNS as u64) * K4
            )
        ]
    );
    assert_eq!(stat(w, Stat::MappedPages), 0);
    for i in 0..100u64 {
        assert_eq!(
            res(w, Function::IovaToPhys, &[d, 0x40_0000 + i * K4]),
            Err(Error::NotMapped)
        );
    }
}

#[test]
fn unmap_timeout_keeps_pages_pinned() {
    let (h, d) = paging_harness();
    let w = &h.w;
    res(w, Function::MapPages, &[d, 0, host(0), K4, 2, RW]).unwrap();
    set_sync_stall(w, true);
    assert_eq!(
        res(w, Function::UnmapPages, &[d, 0, K4, 2]),
        Err(Error::Timeout)
    );
    assert_eq!(
        stat(w, Stat::MappedPages),
        2,
        "counts are dropped only after a completed invalidation"
    );
    assert_eq!(res(w, Function::Donate, &[host(0), 1]), Err(Error::Busy));
    assert_eq!(res(w, Function::DomainFree, &[d]), Err(Error::Timeout));
    assert_eq!(stat(w, Stat::DomainsInUse), 0);
    // The slot's VMID must be invalidated before it is reused; while that fails, paging allocation fails.
    assert_eq!(res(w, Function::DomainAlloc, &[0]), Err(Error::Timeout));
    set_sync_stall(w, false);
    let d2 = alloc_paging(w);
    assert_eq!(d2 & 0xffff, d & 0xffff, "same slot, same VMID");
    assert_eq!(
        invals(w).last(),
        Some(&Inval::Vmid(Vmid((d & 0xffff) as u16 + 1)))
    );
    assert_eq!(
        stat(w, Stat::MappedPages),
        2,
        "the pages a failed invalidation pinned stay pinned"
    );
}

/// The in-place 4 KiB path collects its runs in a 2-run array up to 2 pages and a 16-run one above: ranges
/// of 1, 2 and 3 pages, each page its own PA run, all unmapped in place (one leaf-only invalidation, no
/// table freed) with every page's count dropped.
#[test]
fn in_place_unmap_runs_at_the_small_array_boundary() {
    let (h, d) = paging_harness();
    let w = &h.w;
    // Keep the level-3 table: one page mapped for good at the start of the 2 MiB piece.
    res(
        w,
        Function::MapPages,
        &[d, 0x40_0000, host(0x10_0000), K4, 1, RW],
    )
    .unwrap();
    for pages in 1..=3u64 {
        let iova = 0x40_1000 + pages * 0x10_000;
        for i in 0..pages {
            // Every other host page: no two PAs contiguous.
            let pa = host(0x20_0000 + (pages * 8 + 2 * i) * 0x1000);
            res(
                w,
                Function::MapPages,
                &[d, iova + i * 0x1000, pa, K4, 1, RW],
            )
            .unwrap();
        }
        assert_eq!(stat(w, Stat::MappedPages), 1 + pages);
        clear_commands(w);
        assert_eq!(
            res(w, Function::UnmapPages, &[d, iova, K4, pages]),
            Ok(pages * 0x1000),
            "{pages} pages"
        );
        assert_eq!(stat(w, Stat::MappedPages), 1, "{pages} pages");
        assert_eq!(invals(w).len(), 1, "{pages} pages");
        for i in 0..pages {
            assert_eq!(
                res(w, Function::IovaToPhys, &[d, iova + i * 0x1000]),
                Err(Error::NotMapped)
            );
        }
    }
}
