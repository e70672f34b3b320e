//! UNMAP_BATCH (lazy domains): every range cleared with one invalidation, counts dropped only after it completed
//! (a page still queued for unmap cannot be donated), every argument and descriptor check (each failing call
//! changes nothing, x2 names the descriptor), descriptors read exactly once, more PA runs than one
//! invalidation's record take several invalidations, block ends split.

use super::*;
use crate::dispatch::unmap::BATCH_UNMAP_RUNS;

const NO: u64 = abi::MAP_BATCH_NO_ENTRY;
/// Descriptor page (host RAM, away from the PAs the tests map).
const DESC: u64 = RAM + 8 * (1 << 20);
const ENTRY: u64 = abi::UNMAP_BATCH_ENTRY_SIZE;

/// Writes descriptors `(iova, len)` at host PA `pa` of the harness's memory.
fn put(h: &Harness, pa: u64, entries: &[(u64, u64)]) {
    for (i, &(iova, len)) in entries.iter().enumerate() {
        for (j, v) in [iova, len].into_iter().enumerate() {
            let at = pa + (i * ENTRY as usize + j * 8) as u64;
            assert!(h.mem.try_write64(at, v), "{at:#x} outside the fake memory");
        }
    }
}

/// `[x0, x1, x2, x3]` of UNMAP_BATCH.
fn batch(w: &W, dom: u64, desc: u64, count: u64) -> [u64; 4] {
    call(w, Function::UnmapBatch, &[dom, desc, count])
}

fn err(e: Error, index: u64) -> [u64; 4] {
    [e.to_reg(), 0, index, 0]
}

fn map(w: &W, d: u64, iova: u64, pa: u64, len: u64) {
    assert_eq!(
        res(w, Function::MapPages, &[d, iova, pa, K4, len / K4, RW]),
        Ok(len)
    );
}

fn ranges(w: &W) -> Vec<(u64, u64, S2Invalidation)> {
    invals(w)
        .into_iter()
        .map(|i| match i {
            Inval::Range(r) => (r.iova, r.size, r),
            Inval::Vmid(_) => panic!("unexpected VMID invalidation"),
        })
        .collect()
}

/// Maps 20 scattered 4 KiB pages in `d` (every third IOVA page, PAs far apart), as a flush queue collects
/// them; returns them (IOVA, PA, length).
fn map_scattered(w: &W, d: u64) -> Vec<(u64, u64, u64)> {
    let e: Vec<_> = (0..20)
        .map(|i| (0x10_0000 + i * 3 * K4, host(0x10_0000 + i * 0x5000), K4))
        .collect();
    for &(iova, pa, len) in &e {
        map(w, d, iova, pa, len);
    }
    e
}

#[test]
fn unmaps_every_descriptor_with_one_invalidation_then_drops_counts() {
    let (h, d) = paging_harness();
    let w = &h.w;
    let e = map_scattered(w, d);
    // Still mapped (queued for a lazy unmap in the shim): its pages cannot be donated.
    assert_eq!(res(w, Function::Donate, &[e[3].1, 1]), Err(Error::Busy));
    clear_commands(w);
    let cmds = invals(w).len();
    assert_eq!(cmds, 0);
    let desc: Vec<(u64, u64)> = e.iter().map(|&(i, _, l)| (i, l)).rev().collect();
    put(&h, DESC, &desc);
    assert_eq!(batch(w, d, DESC, 20), [0, 20, 20 * K4, 0]);
    let first = e[0].0;
    let end = e[19].0 + K4;
    assert_eq!(
        ranges(w),
        [(
            first,
            end - first,
            S2Invalidation {
                vmid: Vmid((d & 0xffff) as u16 + 1),
                iova: first,
                size: end - first,
                leaf_size: LeafSize::Page4K,
                leaf_only: true,
            }
        )],
        "one leaf-only range invalidation over the span of the batch"
    );
    assert_eq!(stat(w, Stat::MappedPages), 0);
    assert_eq!(stat(w, Stat::Invalidations), 1);
    for &(iova, _, _) in &e {
        assert_eq!(
            res(w, Function::IovaToPhys, &[d, iova]),
            Err(Error::NotMapped)
        );
    }
    // Counted per function; the descriptor page's pin was only for the call; the pages are the host's again.
    assert_eq!(
        res(w, Function::Stat, &[abi::STAT_CALLS_BASE + 0x0d]),
        Ok(1)
    );
    assert_eq!(res(w, Function::Donate, &[e[3].1, 1]), Ok(0));
    assert_eq!(res(w, Function::Donate, &[DESC, 1]), Ok(0));
    // The feature bit says the call exists.
    let v = call(w, Function::Version, &[]);
    assert_ne!(
        v[1] >> abi::VERSION_FEATURES_SHIFT & abi::FEAT_UNMAP_BATCH,
        0
    );
}

#[test]
fn blocks_and_mixed_leaves() {
    let (h, d) = paging_harness();
    let w = &h.w;
    // A 2 MiB block, a 4 KiB page, and a 2 MiB block of which the batch unmaps one page in the middle.
    map(w, d, 0x40_0000, host(0x20_0000), M2);
    map(w, d, 0x80_0000, host(0x1000), K4);
    map(w, d, 0xa0_0000, host(0x40_0000), M2);
    assert_eq!(stat(w, Stat::MappedPages), 1025);
    clear_commands(w);
    put(
        &h,
        DESC,
        &[(0x80_0000, K4), (0x40_0000, M2), (0xa0_0000 + 5 * K4, K4)],
    );
    assert_eq!(batch(w, d, DESC, 3), [0, 3, M2 + 2 * K4, 0]);
    let r = ranges(w);
    assert_eq!(r.len(), 1, "{r:x?}");
    let vmid = Vmid((d & 0xffff) as u16 + 1);
    let req = S2Invalidation {
        vmid,
        iova: 0x40_0000,
        size: 0xa0_6000 - 0x40_0000,
        ..r[0].2
    };
    let Inval::Range(S2Invalidation {
        iova, size: len, ..
    }) = planned(w, req)
    else {
        panic!()
    };
    assert_eq!(
        (r[0].0, r[0].1),
        (iova, len),
        "0x40_0000..0xa0_6000 as the driver encodes it"
    );
    assert_eq!(r[0].2.leaf_size, LeafSize::Mixed, "leaves of two sizes");
    assert_eq!(stat(w, Stat::MappedPages), 511);
    assert_eq!(
        res(w, Function::IovaToPhys, &[d, 0xa0_0000 + 4 * K4]),
        Ok(host(0x40_0000) + 4 * K4),
        "the rest of the cut block stays"
    );
    assert_eq!(
        res(w, Function::IovaToPhys, &[d, 0xa0_0000 + 5 * K4]),
        Err(Error::NotMapped)
    );
}

/// Maps 64 descriptors of `pages` pages each from `iova` (one every 8 pages), every page a PA run of its own
/// (every other host page); returns the descriptors (IOVA, length).
fn map_page_runs(w: &W, d: u64, iova: u64, pages: u64) -> Vec<(u64, u64)> {
    let mut desc = Vec::new();
    for i in 0..64u64 {
        let iova = iova + i * 8 * K4;
        for k in 0..pages {
            map(w, d, iova + k * K4, host((2 * pages * i + 2 * k) * K4), K4);
        }
        desc.push((iova, pages * K4));
    }
    desc
}

#[test]
fn more_runs_than_one_record_take_one_invalidation_per_record() {
    let (h, d) = paging_harness();
    let w = &h.w;
    // 64 descriptors of 6 pages each, every page a PA run of its own (every other PA page): 384 runs.
    let desc = map_page_runs(w, d, 0x100_0000, 6);
    clear_commands(w);
    put(&h, DESC, &desc);
    assert_eq!(batch(w, d, DESC, 64), [0, 64, 384 * K4, 0]);
    let n = ranges(w).len();
    assert_eq!(n, 384usize.div_ceil(BATCH_UNMAP_RUNS), "{:x?}", ranges(w));
    assert_eq!(n, 2);
    assert_eq!(stat(w, Stat::MappedPages), 0);
    // Up to BATCH_UNMAP_RUNS runs: one invalidation.
    let desc = map_page_runs(w, d, 0x200_0000, 4);
    clear_commands(w);
    put(&h, DESC, &desc);
    assert_eq!(batch(w, d, DESC, 64), [0, 64, 256 * K4, 0]);
    assert_eq!(ranges(w).len(), 1, "256 runs: one invalidation");
    assert_eq!(stat(w, Stat::MappedPages), 0);
}

#[test]
fn argument_errors_change_nothing() {
    let (h, d) = paging_harness();
    let w = &h.w;
    let b = res(w, Function::DomainAlloc, &[1]).unwrap();
    map(w, d, 0, host(0), 2 * K4);
    put(&h, DESC, &[(0, K4), (K4, K4)]);
    let don = host(0x90_0000);
    assert_eq!(res(w, Function::Donate, &[don, 1]), Ok(0));
    let free = stat(w, Stat::PoolFreePages);
    let errors = stat(w, Stat::ErrorsTotal);
    let max = abi::UNMAP_BATCH_MAX_ENTRIES;
    let page_end = DESC + PAGE_SIZE;
    let cases: &[([u64; 3], Error)] = &[
        ([d, DESC, 0], Error::BadCount),
        ([d, DESC, max + 1], Error::BadCount),
        ([d, DESC, u64::MAX], Error::BadCount),
        ([d, DESC + 4, 1], Error::Misaligned),
        ([d, page_end - 8, 1], Error::Misaligned),
        ([d, page_end - ENTRY * 2 + 8, 2], Error::Misaligned),
        ([d, DESC + 0xc08, max], Error::Misaligned),
        ([0, DESC, 1], Error::ImmutableDomain),
        ([d + 5, DESC, 1], Error::BadDomain),
        ([1 << 32, DESC, 1], Error::BadDomain),
        ([b, DESC, 1], Error::WrongDomainKind),
        ([d, RAM, 1], Error::HypMemory),
        ([d, don, 1], Error::DonatedMemory),
        ([d, DOORBELL, 1], Error::NotHostMemory),
        ([d, RAM + RAM_SIZE, 1], Error::NotHostMemory),
        ([d, !0xfff, 1], Error::Overflow),
        ([d, 1 << 44, 1], Error::OutOfRangePa),
    ];
    clear_commands(w);
    for (args, e) in cases {
        assert_eq!(
            call(w, Function::UnmapBatch, args),
            err(*e, NO),
            "unmap_batch {args:x?}"
        );
    }
    assert_eq!(stat(w, Stat::ErrorsTotal), errors + cases.len() as u64);
    assert_eq!(stat(w, Stat::MappedPages), 2);
    assert_eq!(stat(w, Stat::PoolFreePages), free);
    assert!(ranges(w).is_empty());
    // The largest batch fits in a page and works.
    assert_eq!(
        batch(w, d, page_end - max * ENTRY, 0)[0],
        Error::BadCount.to_reg()
    );
}

#[test]
fn descriptor_errors_name_the_descriptor_and_change_nothing() {
    let (h, d) = paging_harness();
    let w = &h.w;
    let good = |i: u64| (0x10_0000 + i * K4, K4);
    for i in 0..4 {
        map(w, d, good(i).0, host(i * 0x3000), K4);
    }
    map(w, d, 0x80_0000, host(0x70_0000), M2);
    let free = stat(w, Stat::PoolFreePages);
    let cases: &[((u64, u64), Error)] = &[
        ((0x10_2000, 0), Error::BadCount),
        ((0x10_2800, K4), Error::Misaligned),
        ((0x10_2000, 0x1800), Error::Misaligned),
        ((!0xfff, K4), Error::Overflow),
        ((0x10_2000, !0xfff), Error::Overflow),
        ((1 << 39, K4), Error::OutOfRangeIova),
        (((1 << 39) - K4, 2 * K4), Error::OutOfRangeIova),
        // Overlaps descriptor 0 or 1: a page would be unmapped twice.
        ((0x10_0000, K4), Error::NotMapped),
        ((0xf_f000, 3 * K4), Error::NotMapped),
        // Not (wholly) mapped in the domain.
        ((0x20_0000, K4), Error::NotMapped),
        ((0x9f_f000, 2 * K4), Error::NotMapped),
        ((0x7f_f000, 2 * K4), Error::NotMapped),
    ];
    clear_commands(w);
    for &(bad, e) in cases {
        // Index 2 would be good(2); replace it by the bad one (good(2) stays mapped, untouched).
        put(&h, DESC, &[good(0), good(1), bad, good(3)]);
        assert_eq!(batch(w, d, DESC, 4), err(e, 2), "descriptor {bad:x?}");
        assert_eq!(
            stat(w, Stat::MappedPages),
            4 + 512,
            "{bad:x?} changed counts"
        );
        assert_eq!(stat(w, Stat::PoolFreePages), free);
        for i in 0..4 {
            assert_eq!(
                res(w, Function::IovaToPhys, &[d, good(i).0]),
                Ok(host(i * 0x3000)),
                "{bad:x?} unmapped descriptor {i}"
            );
        }
    }
    assert!(ranges(w).is_empty(), "no invalidation for a failing call");
}

#[test]
fn timeout_keeps_every_page_pinned() {
    let (h, d) = paging_harness();
    let w = &h.w;
    let e = map_scattered(w, d);
    put(
        &h,
        DESC,
        &e.iter().map(|&(i, _, l)| (i, l)).collect::<Vec<_>>(),
    );
    set_sync_stall(w, true);
    assert_eq!(batch(w, d, DESC, 20)[0], Error::Timeout.to_reg());
    assert_eq!(
        stat(w, Stat::MappedPages),
        20,
        "counts drop only after a completed invalidation"
    );
    assert_eq!(res(w, Function::Donate, &[e[0].1, 1]), Err(Error::Busy));
    assert_eq!(
        res(w, Function::IovaToPhys, &[d, e[0].0]),
        Err(Error::NotMapped),
        "the entries are cleared"
    );
}

#[test]
fn descriptors_are_read_exactly_once() {
    let (h, d) = paging_harness();
    let w = &h.w;
    let first: Vec<(u64, u64)> = (0..8).map(|i| (0x30_0000 + i * 2 * K4, K4)).collect();
    for (i, &(iova, len)) in first.iter().enumerate() {
        map(w, d, iova, host(i as u64 * 0x3000), len);
    }
    // A host that rewrites every descriptor right after the hyp read it: a second read would see a range that
    // is not mapped (or a huge one).
    let mut reads: BTreeMap<u64, u32> = BTreeMap::new();
    let read = rewritten_after_first_read(
        &mut reads,
        DESC,
        ENTRY,
        |i, field| {
            let (iova, len) = first[i];
            if field == 0 { iova } else { len }
        },
        |field| if field == 0 { 0x30_1000 } else { 1 << 40 },
    );
    let r = w.unmap_batch_with(
        DomainId::from_reg(d).unwrap(),
        crate::dispatch::batch::unmap_descriptors(DESC, 8, w.pa_bits).unwrap(),
        read,
    );
    assert_eq!(r, Ok([8, 8 * K4, 0]));
    assert_eq!(reads.len(), 16);
    assert!(reads.values().all(|&n| n == 1), "{reads:?}");
    assert_eq!(stat(w, Stat::MappedPages), 0);
}

#[test]
fn nomem_for_splits_changes_nothing_then_donation_lets_it_through() {
    // As nomem_topup_and_reclaim: 17 pool pages for the host's domains; a domain root leaves 16.
    let h = harness_with(IDENTITY_RESERVE + 17, 4, 64);
    let w = &h.w;
    let d = alloc_paging(w);
    // 17 block mappings of one 2 MiB PA range (counts allow it) in one GiB: one L2 table, which the map
    // reserve makes the host donate.
    let blocks = 17u64;
    let pa = host(0x20_0000);
    let r = call(w, Function::MapPages, &[d, 0x4000_0000, pa, M2, 1, RW]);
    assert_eq!(r[0], Error::NoMem.to_reg());
    assert_eq!(res(w, Function::Donate, &[host(0x80_0000), r[1]]), Ok(0));
    for i in 0..blocks {
        assert_eq!(
            res(
                w,
                Function::MapPages,
                &[d, 0x4000_0000 + i * M2, pa, M2, 1, RW]
            ),
            Ok(M2)
        );
    }
    let free = stat(w, Stat::PoolFreePages);
    assert_eq!(free, 16);
    // One page out of each block: 17 splits, each an L3 table, more than the pool has.
    let desc: Vec<(u64, u64)> = (0..blocks)
        .map(|i| (0x4000_0000 + i * M2 + K4, K4))
        .collect();
    put(&h, DESC, &desc);
    clear_commands(w);
    let r = batch(w, d, DESC, blocks);
    assert_eq!(
        (r[0], r[1], r[2]),
        (Error::NoMem.to_reg(), blocks - free, NO)
    );
    assert_eq!(stat(w, Stat::PoolFreePages), free);
    assert_eq!(stat(w, Stat::MappedPages), blocks * 512);
    assert!(ranges(w).is_empty());
    assert_eq!(res(w, Function::Donate, &[host(0x90_0000), r[1]]), Ok(0));
    clear_commands(w);
    assert_eq!(batch(w, d, DESC, blocks), [0, blocks, blocks * K4, 0]);
    assert_eq!(stat(w, Stat::MappedPages), blocks * 511);
    assert_eq!(ranges(w).len(), 1);
}
