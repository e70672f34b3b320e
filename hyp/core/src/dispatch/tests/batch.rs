//! MAP_BATCH: every argument and descriptor check (each failing call changes nothing, x2 names the descriptor),
//! all or nothing under memory pressure, descriptors read exactly once (a host rewriting them mid-call cannot
//! matter), descriptors in hyp, donated or MMIO memory refused.

use super::*;
use crate::ownership::PageState;
use std::sync::atomic::AtomicBool;

const NO: u64 = abi::MAP_BATCH_NO_ENTRY;
/// Descriptor page used by most tests (host RAM, well away from the PAs the tests map).
const DESC: u64 = RAM + 8 * (1 << 20);

/// Writes descriptors `(iova, pa, len)` at host PA `pa` of the harness's memory.
fn put(h: &Harness, pa: u64, entries: &[(u64, u64, u64)]) {
    for (i, &(iova, p, len)) in entries.iter().enumerate() {
        for (j, v) in [iova, p, len].into_iter().enumerate() {
            let at = pa + (i * 24 + j * 8) as u64;
            assert!(h.mem.try_write64(at, v), "{at:#x} outside the fake memory");
        }
    }
}

/// `[x0, x1, x2, x3]` of MAP_BATCH.
fn batch(w: &W, dom: u64, desc: u64, count: u64, prot: u64) -> [u64; 4] {
    call(w, Function::MapBatch, &[dom, desc, count, prot])
}

fn err(e: Error, index: u64) -> [u64; 4] {
    [e.to_reg(), 0, index, 0]
}

/// Nothing is mapped in `d` at any of `iovas`, no DMA counts are held, the pool is as it was.
fn unchanged(w: &W, d: u64, iovas: &[u64], free: u64) {
    assert_eq!(stat(w, Stat::MappedPages), 0);
    assert_eq!(stat(w, Stat::PoolFreePages), free);
    for &i in iovas {
        assert_eq!(res(w, Function::IovaToPhys, &[d, i]), Err(Error::NotMapped));
    }
}

#[test]
fn maps_every_descriptor_in_one_call() {
    let (h, d) = paging_harness();
    let w = &h.w;
    // 16 scattered 4 KiB segments at consecutive IOVAs (dma_map_sg's shape), plus a 2 MiB block-aligned one.
    let mut e: Vec<(u64, u64, u64)> = (0..16)
        .map(|i| (0x10_0000 + i * K4, host(0x3_0000 + i * 0x5000), K4))
        .collect();
    e.push((0x40_0000, host(0x20_0000), M2));
    put(&h, DESC, &e);
    let before = stat(w, Stat::CallsTotal);
    let r = batch(w, d, DESC, e.len() as u64, RW);
    assert_eq!(r, [0, 17, 16 * K4 + M2, 0]);
    assert_eq!(
        stat(w, Stat::CallsTotal),
        before + 2,
        "this call and the STAT"
    );
    assert_eq!(stat(w, Stat::MappedPages), 16 + 512);
    for &(iova, pa, len) in &e {
        assert_eq!(
            res(w, Function::IovaToPhys, &[d, iova + 0x18]),
            Ok(pa + 0x18)
        );
        assert_eq!(
            res(w, Function::IovaToPhys, &[d, iova + len - 8]),
            Ok(pa + len - 8)
        );
    }
    // Counted per function; the descriptor page's pin was only for the call.
    assert_eq!(
        res(w, Function::Stat, &[abi::STAT_CALLS_BASE + 0x0c]),
        Ok(1)
    );
    assert_eq!(
        w.ownership().state(DESC),
        PageState::Host {
            kind: MemKind::Ram,
            count: 0
        }
    );
    // The mappings are ordinary ones: UNMAP_PAGES takes them away one by one.
    for &(iova, _, len) in &e {
        assert_eq!(
            res(w, Function::UnmapPages, &[d, iova, K4, len / K4]),
            Ok(len)
        );
    }
    assert_eq!(stat(w, Stat::MappedPages), 0);
    // Entries need not be sorted nor adjacent; a count of MAP_BATCH_MAX_ENTRIES in one page works.
    let max = abi::MAP_BATCH_MAX_ENTRIES;
    let e: Vec<_> = (0..max)
        .rev()
        .map(|i| (0x1000_0000 + i * 0x3000, host(i * K4), K4))
        .collect();
    put(&h, DESC + 0x100, &e);
    assert_eq!(batch(w, d, DESC + 0x100, max, RW), [0, max, max * K4, 0]);
    assert_eq!(stat(w, Stat::MappedPages), max);
    // The doorbell maps with PROT_MMIO, like MAP_PAGES.
    put(&h, DESC, &[(0x2000_0000, DOORBELL, K4)]);
    assert_eq!(batch(w, d, DESC, 1, abi::PROT_WRITE | abi::PROT_MMIO)[0], 0);
}

#[test]
fn argument_errors_change_nothing() {
    let (h, d) = paging_harness();
    let w = &h.w;
    let b = res(w, Function::DomainAlloc, &[1]).unwrap();
    put(&h, DESC, &[(0, host(0), K4), (K4, host(K4), K4)]);
    // A donated page.
    let don = host(0x90_0000);
    assert_eq!(res(w, Function::Donate, &[don, 1]), Ok(0));
    let free = stat(w, Stat::PoolFreePages);
    let max = abi::MAP_BATCH_MAX_ENTRIES;
    let page_end = DESC + PAGE_SIZE;
    let cases: &[([u64; 4], Error)] = &[
        ([d, DESC, 0, RW], Error::BadCount),
        ([d, DESC, max + 1, RW], Error::BadCount),
        ([d, DESC, u64::MAX, RW], Error::BadCount),
        ([d, DESC + 4, 1, RW], Error::Misaligned),
        ([d, DESC + 1, 1, RW], Error::Misaligned),
        // The array must lie in one 4 KiB page.
        ([d, page_end - 16, 1, RW], Error::Misaligned),
        ([d, page_end - 24 * 2 + 8, 2, RW], Error::Misaligned),
        ([d, DESC + 0xa08, max, RW], Error::Misaligned),
        ([d, DESC, 1, 0], Error::BadProt),
        ([d, DESC, 1, RW | 1 << 6], Error::BadProt),
        (
            [d, DESC, 1, RW | abi::PROT_MMIO | abi::PROT_CACHE],
            Error::BadProt,
        ),
        ([0, DESC, 1, RW], Error::ImmutableDomain),
        ([d + 5, DESC, 1, RW], Error::BadDomain),
        ([1 << 32, DESC, 1, RW], Error::BadDomain),
        ([b, DESC, 1, RW], Error::WrongDomainKind),
        // The descriptor array must be host RAM: not the hyp's, not donated, not MMIO, not a hole.
        ([d, RAM, 1, RW], Error::HypMemory),
        ([d, RAM + HYP_SIZE - PAGE_SIZE, 1, RW], Error::HypMemory),
        ([d, don, 1, RW], Error::DonatedMemory),
        ([d, DOORBELL, 1, RW], Error::NotHostMemory),
        ([d, RAM + RAM_SIZE, 1, RW], Error::NotHostMemory),
        ([d, 0x0900_0000, 1, RW], Error::NotHostMemory),
        ([d, !0xfff, 1, RW], Error::Overflow),
        ([d, 1 << 44, 1, RW], Error::OutOfRangePa),
    ];
    for (args, e) in cases {
        assert_eq!(
            call(w, Function::MapBatch, args),
            err(*e, NO),
            "map_batch {args:x?}"
        );
    }
    assert_eq!(stat(w, Stat::ErrorsTotal), cases.len() as u64);
    unchanged(w, d, &[0, K4], free);
}

#[test]
fn descriptor_errors_name_the_descriptor_and_change_nothing() {
    let (h, d) = paging_harness();
    let w = &h.w;
    let don = host(0x90_0000);
    assert_eq!(res(w, Function::Donate, &[don, 1]), Ok(0));
    // Something mapped already, at IOVA 0x800_0000.
    assert_eq!(
        res(
            w,
            Function::MapPages,
            &[d, 0x800_0000, host(0x70_0000), K4, 2, RW]
        ),
        Ok(2 * K4)
    );
    let free = stat(w, Stat::PoolFreePages);
    let good = |i: u64| (0x10_0000 + i * K4, host(i * K4), K4);
    // (bad descriptor, its error, prot); it goes at index 2 of 4, the others are fine.
    let cases: &[((u64, u64, u64), Error, u64)] = &[
        ((0x20_0000, host(0), 0), Error::BadCount, RW),
        ((0x20_0800, host(0), K4), Error::Misaligned, RW),
        ((0x20_0000, host(0x800), K4), Error::Misaligned, RW),
        ((0x20_0000, host(0), 0x1800), Error::Misaligned, RW),
        ((!0xfff, host(0), K4), Error::Overflow, RW),
        ((0x20_0000, host(0), !0xfff), Error::Overflow, RW),
        ((1 << 39, host(0), K4), Error::OutOfRangeIova, RW),
        (((1 << 39) - K4, host(0), 2 * K4), Error::OutOfRangeIova, RW),
        ((0x20_0000, !0xfff, K4), Error::Overflow, RW),
        ((0x20_0000, 1 << 44, K4), Error::OutOfRangePa, RW),
        // Overlaps descriptor 0 (0x10_0000) or 1.
        ((0x10_0000, host(0x50_0000), K4), Error::AlreadyMapped, RW),
        (
            (0xf_f000, host(0x50_0000), 3 * K4),
            Error::AlreadyMapped,
            RW,
        ),
        // Overlaps what the domain has.
        ((0x800_1000, host(0x50_0000), K4), Error::AlreadyMapped, RW),
        (
            (0x7ff_f000, host(0x50_0000), 2 * K4),
            Error::AlreadyMapped,
            RW,
        ),
        // Per PA page, as MAP_PAGES.
        ((0x20_0000, RAM, K4), Error::HypMemory, RW),
        (
            (0x20_0000, RAM + HYP_SIZE - K4, 2 * K4),
            Error::HypMemory,
            RW,
        ),
        ((0x20_0000, don, K4), Error::DonatedMemory, RW),
        (
            (0x20_0000, RAM + RAM_SIZE - K4, 2 * K4),
            Error::NotHostMemory,
            RW,
        ),
        ((0x20_0000, DOORBELL, K4), Error::BadProt, RW),
        ((0x20_0000, 0x0900_0000, K4), Error::NotHostMemory, RW),
    ];
    for &(bad, e, prot) in cases {
        put(&h, DESC, &[good(0), good(1), bad, good(3)]);
        assert_eq!(batch(w, d, DESC, 4, prot), err(e, 2), "descriptor {bad:x?}");
        assert_eq!(stat(w, Stat::MappedPages), 2, "{bad:x?} changed counts");
        assert_eq!(stat(w, Stat::PoolFreePages), free);
        for i in [0, 1, 3] {
            assert_eq!(
                res(w, Function::IovaToPhys, &[d, good(i).0]),
                Err(Error::NotMapped),
                "{bad:x?} left descriptor {i} mapped"
            );
        }
    }
    // RAM descriptors with PROT_MMIO fail on their PA: BAD_PROT at the first one.
    put(&h, DESC, &[good(0), good(1)]);
    assert_eq!(
        batch(w, d, DESC, 2, abi::PROT_WRITE | abi::PROT_MMIO),
        err(Error::BadProt, 0)
    );
}

#[test]
fn nomem_changes_nothing_then_donation_lets_it_through() {
    // As nomem_topup_and_reclaim: 17 pool pages for the host's domains, 16 of them kept in reserve.
    let h = harness_with(IDENTITY_RESERVE + 17, 4, 64);
    let w = &h.w;
    let d = alloc_paging(w);
    // Two descriptors in different GiBs: each needs an L2 and an L3 table.
    let e = [
        (0x10_0000, host(0x1000), K4),
        (0x4000_0000, host(0x2000), K4),
    ];
    put(&h, DESC, &e);
    let free = stat(w, Stat::PoolFreePages);
    let r = batch(w, d, DESC, 2, RW);
    assert_eq!((r[0], r[2], r[3]), (Error::NoMem.to_reg(), NO, 0));
    assert_eq!(r[1], 4, "two L2 and two L3 tables");
    unchanged(w, d, &[e[0].0, e[1].0], free);
    assert_eq!(res(w, Function::Donate, &[host(0x80_0000), r[1]]), Ok(0));
    assert_eq!(batch(w, d, DESC, 2, RW), [0, 2, 2 * K4, 0]);
    assert_eq!(res(w, Function::IovaToPhys, &[d, e[1].0]), Ok(e[1].1));
    // Descriptors sharing new tables are reserved as an upper bound, and what is not used goes back.
    let free = stat(w, Stat::PoolFreePages);
    let e: Vec<_> = (0..4)
        .map(|i| (0x8000_0000 + i * K4, host(0x10_0000 + i * K4), K4))
        .collect();
    put(&h, DESC, &e);
    let r = batch(w, d, DESC, 4, RW);
    assert_eq!(r[0], Error::NoMem.to_reg(), "4 x (L2 + L3) asked for");
    assert_eq!(res(w, Function::Donate, &[host(0x81_0000), r[1]]), Ok(0));
    assert_eq!(batch(w, d, DESC, 4, RW)[0], 0);
    assert_eq!(
        stat(w, Stat::PoolFreePages),
        free + r[1] - 2,
        "only one L2 and one L3 table used"
    );
}

#[test]
fn descriptors_are_read_exactly_once() {
    let (h, d) = paging_harness();
    let w = &h.w;
    let (slot, _) = w.slot_of(DomainId::from_reg(d).unwrap()).unwrap();
    assert!(slot > 0);
    let first: Vec<(u64, u64, u64)> = (0..8)
        .map(|i| (0x30_0000 + i * K4, host(i * 0x3000), K4))
        .collect();
    // A host that rewrites every descriptor right after the hyp read it: the second read of any word would see
    // an invalid value (hyp memory, a huge length, an IOVA overlapping descriptor 0).
    let mut reads: BTreeMap<u64, u32> = BTreeMap::new();
    let read = rewritten_after_first_read(
        &mut reads,
        DESC,
        24,
        |i, field| {
            let (iova, p, len) = first[i];
            match field {
                0 => iova,
                1 => p,
                _ => len,
            }
        },
        |field| match field {
            0 => 0x30_0000,
            1 => RAM,
            _ => 1 << 40,
        },
    );
    let r = w.map_batch_with(
        DomainId::from_reg(d).unwrap(),
        crate::dispatch::batch::map_descriptors(DESC, 8, w.pa_bits).unwrap(),
        Prot::from_reg(RW).unwrap(),
        read,
    );
    assert_eq!(r, Ok([8, 8 * K4, 0]));
    assert_eq!(reads.len(), 24);
    assert!(reads.values().all(|&n| n == 1), "{reads:?}");
    assert_eq!(reads.keys().next(), Some(&DESC));
    assert_eq!(reads.keys().last(), Some(&(DESC + 8 * 24 - 8)));
    for &(iova, pa, _) in &first {
        assert_eq!(res(w, Function::IovaToPhys, &[d, iova]), Ok(pa));
    }
    assert_eq!(stat(w, Stat::MappedPages), 8);
}

#[test]
fn host_rewriting_descriptors_concurrently_cannot_break_invariants() {
    let (h, d) = paging_harness();
    let w = &h.w;
    // Two valid lists (A: PAs in one region, B: in another) and a hostile one (hyp memory, overlaps, huge).
    let a: Vec<_> = (0..16)
        .map(|i| (0x10_0000 + i * K4, host(i * K4), K4))
        .collect();
    let b: Vec<_> = (0..16)
        .map(|i| (0x10_0000 + i * K4, host(0x10_0000 + i * K4), K4))
        .collect();
    let bad: Vec<_> = (0..16)
        .map(|i| (0x10_0000, RAM + i * K4, 1 << 40))
        .collect();
    let stop = AtomicBool::new(false);
    let base = h.mem.host_address(DESC).expect("RAM") as usize;
    /// Stops the writer when dropped, also when an assertion below panics (else the scope would wait for the
    /// writer forever and the failure would show as a hang).
    struct Stop<'a>(&'a AtomicBool);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    std::thread::scope(|s| {
        let _stop = Stop(&stop);
        s.spawn(|| {
            let mut k = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let list = [&a, &b, &bad][k % 3];
                for (i, &(iova, pa, len)) in list.iter().enumerate() {
                    for (j, v) in [iova, pa, len].into_iter().enumerate() {
                        let p = (base + i * 24 + j * 8) as *mut u64;
                        // SAFETY: inside the backing allocation; the hyp reads these words volatile, like a
                        // host CPU writing its own RAM during the call.
                        unsafe { p.write_volatile(v) };
                    }
                }
                k += 1;
                // Leave each list in place for a moment too, so some calls read one whole list.
                for _ in 0..k % 64 {
                    std::thread::yield_now();
                }
            }
        });
        let mut ok = 0;
        for _ in 0..2000 {
            let r = batch(w, d, DESC, 16, RW);
            if r[0] != 0 {
                assert_eq!(
                    stat(w, Stat::MappedPages),
                    0,
                    "a failed call left counts: {r:x?}"
                );
                continue;
            }
            ok += 1;
            assert_eq!(r[1..], [16, 16 * K4, 0]);
            // Whatever mix of A and B was read, each IOVA maps one of the two PAs, and counts match.
            assert_eq!(stat(w, Stat::MappedPages), 16);
            for i in 0..16 {
                let pa = res(w, Function::IovaToPhys, &[d, a[i].0]).unwrap();
                assert!(
                    pa == a[i].1 || pa == b[i].1,
                    "IOVA {:#x} -> {pa:#x}",
                    a[i].0
                );
            }
            assert_eq!(
                res(w, Function::UnmapPages, &[d, 0x10_0000, K4, 16]),
                Ok(16 * K4)
            );
        }
        stop.store(true, Ordering::Relaxed);
        // How many calls read a consistent list depends on scheduling; only the invariants are asserted.
        println!("{ok} of 2000 calls mapped");
    });
    assert_eq!(stat(w, Stat::MappedPages), 0);
    // Once the host stops writing, the same array maps (nothing was left half done).
    put(&h, DESC, &a);
    assert_eq!(batch(w, d, DESC, 16, RW), [0, 16, 16 * K4, 0]);
    assert_eq!(stat(w, Stat::MappedPages), 16);
    assert_eq!(w.ownership().state(RAM), PageState::Hyp);
}

/// Every leaf of domain `id` in the first 2 GiB of IOVA: (IOVA, PA, bytes, level) of each valid one, in order.
fn leaves(w: &W, id: u64) -> Vec<(u64, u64, u64, usize)> {
    let (slot, _) = w.slot_of(DomainId::from_reg(id).unwrap()).unwrap();
    let s = w.slots[slot].lock();
    let SlotKind::Paging(d) = &s.kind else {
        panic!("not a paging domain")
    };
    let mut v = Vec::new();
    d.leaves(0, 2 << 30, |iova, pa, len, level| {
        if let Some(pa) = pa {
            v.push((iova, pa, len, level));
        }
        true
    });
    v
}

/// Whether `[iova, iova + len)` of domain `id` can be mapped in place (level-3 tables there, nothing mapped).
fn in_place(w: &W, id: u64, iova: u64, len: u64) -> bool {
    let (slot, _) = w.slot_of(DomainId::from_reg(id).unwrap()).unwrap();
    let s = w.slots[slot].lock();
    let SlotKind::Paging(d) = &s.kind else {
        panic!("not a paging domain")
    };
    d.can_map_in_place(iova, len).unwrap()
}

/// Pages mapped before the batches of the in-place tests: level-3 tables for 2 MiB pieces 0 and 3.
fn seed() -> [(u64, u64, u64); 2] {
    [
        (0x10_0000, host(0x10_0000), K4),
        (0x60_0000, host(0x11_0000), K4),
    ]
}

/// A batch mixing descriptors that go into existing level-3 tables (in place) and ones that need new tables or
/// a block (generic), unsorted: (descriptor, in place?).
fn mixed() -> [((u64, u64, u64), bool); 7] {
    [
        ((0x60_3000, host(0x3_0000), 3 * K4), true),
        ((0x20_0000, host(0x20_0000), M2), false),
        ((0x10_1000, host(0x1_0000), K4), true),
        ((0x40_5000, host(0x4_0000), 2 * K4), false),
        ((0x7f_f000, host(0x5_0000), 2 * K4), false),
        ((0x60_1000, host(0x7_0000), 2 * K4), true),
        ((0x4000_0000, host(0x8_0000), K4), false),
    ]
}

fn seeded(h: &Harness) -> u64 {
    let w = &h.w;
    let d = alloc_paging(w);
    for &(iova, pa, len) in &seed() {
        assert_eq!(
            res(w, Function::MapPages, &[d, iova, pa, K4, len / K4, RW]),
            Ok(len)
        );
    }
    for &((iova, _, len), fast) in &mixed() {
        assert_eq!(in_place(w, d, iova, len), fast, "{iova:#x}");
    }
    d
}

#[test]
fn mixed_in_place_and_generic_batch_maps_as_map_pages_calls() {
    let (hb, hp) = (harness(), harness());
    let (db, dp) = (seeded(&hb), seeded(&hp));
    let e: Vec<_> = mixed().iter().map(|m| m.0).collect();
    put(&hb, DESC, &e);
    let total: u64 = e.iter().map(|x| x.2).sum();
    assert_eq!(batch(&hb.w, db, DESC, 7, RW), [0, 7, total, 0]);
    for &(iova, pa, len) in &e {
        assert_eq!(
            res(&hp.w, Function::MapPages, &[dp, iova, pa, K4, len / K4, RW]),
            Ok(len)
        );
    }
    // The same leaves (a 2 MiB block for the block-aligned one, 4 KiB pages elsewhere), the same tables, the
    // same counts of every page.
    let lb = leaves(&hb.w, db);
    assert_eq!(lb, leaves(&hp.w, dp));
    assert!(lb.contains(&(0x20_0000, host(0x20_0000), M2, 2)), "{lb:x?}");
    assert_eq!(lb.len(), seed().len() + 11 + 1);
    for s in [
        Stat::MappedPages,
        Stat::PoolFreePages,
        Stat::TablePagesInUse,
    ] {
        assert_eq!(stat(&hb.w, s), stat(&hp.w, s), "{s:?}");
    }
    for &(_, pa, len) in e.iter().chain(&seed()) {
        for p in (pa..pa + len).step_by(K4 as usize) {
            assert_eq!(hb.w.ownership().state(p), hp.w.ownership().state(p));
            assert_eq!(
                hb.w.ownership().state(p),
                PageState::Host {
                    kind: MemKind::Ram,
                    count: 1
                }
            );
        }
    }
    // And they unmap like any other mapping, leaving the seeds only.
    for &(iova, _, len) in &e {
        assert_eq!(
            res(&hb.w, Function::UnmapPages, &[db, iova, K4, len / K4]),
            Ok(len)
        );
    }
    assert_eq!(stat(&hb.w, Stat::MappedPages), 2);
}

#[test]
fn failure_in_last_descriptor_undoes_in_place_ones_too() {
    let h = harness();
    let w = &h.w;
    let d = seeded(&h);
    let don = host(0x90_0000);
    assert_eq!(res(w, Function::Donate, &[don, 1]), Ok(0));
    let before = leaves(w, d);
    let free = stat(w, Stat::PoolFreePages);
    let tables = stat(w, Stat::TablePagesInUse);
    // The last descriptor's PA fails when its pages are counted, after every earlier one was counted: in place
    // only before it, and a mix.
    let in_place_only: Vec<_> = mixed().iter().filter(|m| m.1).map(|m| m.0).collect();
    let all: Vec<_> = mixed().iter().map(|m| m.0).collect();
    for (list, last, error) in [
        (&in_place_only, (0x60_8000, don, K4), Error::DonatedMemory),
        (&all, (0x60_8000, don, K4), Error::DonatedMemory),
        (&all, (0x10_8000, RAM, K4), Error::HypMemory),
        (&all, (0x10_8000, DOORBELL, K4), Error::BadProt),
        // Overlapping the domain's own mapping (found under the lock, before anything is counted).
        (&all, (0x10_0000, host(0x9_0000), K4), Error::AlreadyMapped),
    ] {
        if error != Error::AlreadyMapped {
            assert!(in_place(w, d, last.0, K4), "{last:x?} would go in place");
        }
        let mut e = list.to_vec();
        e.push(last);
        put(&h, DESC, &e);
        let n = e.len() as u64;
        assert_eq!(batch(w, d, DESC, n, RW), err(error, n - 1), "{last:x?}");
        assert_eq!(leaves(w, d), before, "{last:x?}");
        assert_eq!(stat(w, Stat::MappedPages), 2);
        assert_eq!(stat(w, Stat::PoolFreePages), free);
        assert_eq!(stat(w, Stat::TablePagesInUse), tables);
        for &(iova, pa, _) in &e[..e.len() - 1] {
            assert_eq!(
                res(w, Function::IovaToPhys, &[d, iova]),
                Err(Error::NotMapped)
            );
            assert_eq!(
                w.ownership().state(pa),
                PageState::Host {
                    kind: MemKind::Ram,
                    count: 0
                }
            );
        }
    }
    // NOMEM (the generic ones need tables the pool does not have) undoes the in-place ones too.
    let h = harness_with(IDENTITY_RESERVE + 17, 4, 64);
    let w = &h.w;
    // The seeds' L2 and two L3 tables.
    assert_eq!(res(w, Function::Donate, &[host(0xb0_0000), 3]), Ok(0));
    let d = seeded(&h);
    let before = leaves(w, d);
    let free = stat(w, Stat::PoolFreePages);
    let e: Vec<_> = mixed().iter().map(|m| m.0).collect();
    put(&h, DESC, &e);
    let r = batch(w, d, DESC, 7, RW);
    assert_eq!((r[0], r[2]), (Error::NoMem.to_reg(), NO), "{r:x?}");
    assert_eq!(leaves(w, d), before);
    assert_eq!(stat(w, Stat::MappedPages), 2);
    assert_eq!(stat(w, Stat::PoolFreePages), free);
    // Topped up, the same batch maps whole.
    assert_eq!(res(w, Function::Donate, &[host(0xa0_0000), r[1]]), Ok(0));
    assert_eq!(batch(w, d, DESC, 7, RW)[..2], [0, 7]);
    assert_eq!(stat(w, Stat::MappedPages), 2 + 11 + 512);
}
