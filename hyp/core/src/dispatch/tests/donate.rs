//! DONATE and RECLAIM: NOMEM top-up, reclaim, and host-identity splits that never pin donated pages.

use super::*;

#[test]
fn nomem_topup_and_reclaim() {
    // A 28-page carve-out pool: host-identity keeps IDENTITY_RESERVE (its worst case) for itself, the host's
    // domains get 17: a domain root, and allocations must leave POOL_RESERVE (16) free.
    let h = harness_with(IDENTITY_RESERVE + 17, 4, 64);
    let w = &h.w;
    let total = stat(w, Stat::PoolTotalPages);
    let free0 = stat(w, Stat::PoolFreePages);
    assert_eq!((total, free0), (17, 17));
    let identity0 = w.identity_pool_stats();
    assert_eq!(
        (identity0.total, identity0.free),
        (IDENTITY_RESERVE as usize, IDENTITY_RESERVE as usize - 4),
        "root, two L2 tables, one L3 table for the doorbell"
    );
    let d = alloc_paging(w);
    assert_eq!(stat(w, Stat::PoolFreePages), 16);
    // A 4 MiB map with the PA 4 KiB off block alignment needs an L2 and two L3 tables: 3 + 16 - 16 short.
    let r = call(
        w,
        Function::MapPages,
        &[d, 0x20_0000, host(0x1000), K4, 1024, RW],
    );
    assert_eq!(r[0], Error::NoMem.to_reg());
    let need = r[1];
    assert_eq!(need, 3);
    assert_eq!(stat(w, Stat::MappedPages), 0, "NOMEM changes nothing");
    // Donation errors.
    let don = host(0x80_0000);
    assert_eq!(res(w, Function::Donate, &[don, 0]), Err(Error::BadCount));
    assert_eq!(res(w, Function::Donate, &[don, 65]), Err(Error::BadCount));
    assert_eq!(
        res(w, Function::Donate, &[don + 8, 1]),
        Err(Error::Misaligned)
    );
    assert_eq!(res(w, Function::Donate, &[RAM, 1]), Err(Error::HypMemory));
    assert_eq!(
        res(w, Function::Donate, &[RAM + RAM_SIZE, 1]),
        Err(Error::NotHostMemory)
    );
    assert_eq!(
        res(w, Function::Donate, &[DOORBELL, 1]),
        Err(Error::NotHostMemory)
    );
    assert_eq!(
        res(w, Function::Donate, &[(1 << 44) - 0x1000, 2]),
        Err(Error::OutOfRangePa)
    );
    assert_eq!(res(w, Function::Donate, &[!0xfff, 2]), Err(Error::Overflow));
    set_fail_host(w, true);
    assert_eq!(res(w, Function::Donate, &[don, 4]), Err(Error::HwError));
    set_fail_host(w, false);
    assert_eq!(stat(w, Stat::DonatedPages), 0);
    // Top up with `need` pages and a few more (the identity split comes out of identity's own pool).
    assert_eq!(res(w, Function::Donate, &[don, need + 4]), Ok(0));
    assert_eq!(stat(w, Stat::PoolFreePages), 16 + need + 4);
    assert_eq!(w.identity_pool_stats().free, identity0.free - 1);
    assert_eq!(
        res(w, Function::Donate, &[don, 1]),
        Err(Error::DonatedMemory)
    );
    assert_eq!(stat(w, Stat::DonatedPages), need + 4);
    assert_eq!(
        res(w, Function::IovaToPhys, &[0, don]),
        Err(Error::NotMapped),
        "donated pages leave identity"
    );
    assert_eq!(
        res(w, Function::IovaToPhys, &[0, don + (need + 4) * K4]),
        Ok(don + (need + 4) * K4)
    );
    assert!(host_unmapped(w).contains(&don));
    assert_eq!(
        res(w, Function::MapPages, &[d, 0, don, K4, 1, RW]),
        Err(Error::DonatedMemory)
    );
    assert_eq!(
        res(
            w,
            Function::MapPages,
            &[d, 0x20_0000, host(0x1000), K4, 1024, RW]
        ),
        Ok(4 << 20)
    );
    // Tables come from carve-out pages first. Donate more, then use up the carve-out part: eight single pages in
    // eight different GiBs need an L2 and an L3 table each.
    let don2 = host(0xa0_0000);
    assert_eq!(res(w, Function::Donate, &[don2, 40]), Ok(0));
    for k in 1..9u64 {
        assert_eq!(
            res(
                w,
                Function::MapPages,
                &[d, k << 30, host(0x40_0000 + k * K4), K4, 1, RW]
            ),
            Ok(K4)
        );
    }
    // The most recently donated pages now hold page tables: reclaiming them is BUSY and changes nothing.
    assert_eq!(res(w, Function::Reclaim, &[don2, 40]), Err(Error::Busy));
    assert_eq!(stat(w, Stat::DonatedPages), need + 4 + 40);
    assert!(stat(w, Stat::DonatedFreePages) < need + 4 + 40);
    assert_eq!(
        res(w, Function::Reclaim, &[host(0), 1]),
        Err(Error::NotDonated)
    );
    assert_eq!(res(w, Function::Reclaim, &[don, 0]), Err(Error::BadCount));
    assert_eq!(
        res(w, Function::Reclaim, &[don + 1, 1]),
        Err(Error::Misaligned)
    );
    // A mapped page cannot be donated.
    assert_eq!(
        res(w, Function::Donate, &[host(0x1000), 1]),
        Err(Error::Busy)
    );
    // Unmap everything and free the domain: every donated page comes back.
    res(w, Function::UnmapPages, &[d, 0x20_0000, K4, 1024]).unwrap();
    for k in 1..9u64 {
        res(w, Function::UnmapPages, &[d, k << 30, K4, 1]).unwrap();
    }
    res(w, Function::DomainFree, &[d]).unwrap();
    assert_eq!(stat(w, Stat::DonatedFreePages), need + 4 + 40);
    assert_eq!(res(w, Function::Reclaim, &[don, need + 4]), Ok(0));
    assert_eq!(res(w, Function::Reclaim, &[don2, 40]), Ok(0));
    assert_eq!(stat(w, Stat::DonatedPages), 0);
    assert_eq!(res(w, Function::IovaToPhys, &[0, don]), Ok(don));
    assert_eq!(
        res(w, Function::IovaToPhys, &[0, don2 + 39 * K4]),
        Ok(don2 + 39 * K4)
    );
    assert!(host_unmapped(w).is_empty());
    assert_eq!(stat(w, Stat::PoolTotalPages), total);
    assert_eq!(stat(w, Stat::PoolFreePages), free0);
    assert_eq!(stat(w, Stat::TablePagesInUse), 0);
    // Host-identity merged the blocks it split back: its spare is whole again.
    assert_eq!(w.identity_pool_stats().free, identity0.free);
}

/// The pool's pages: total, free, donated, donated free, and tables in use.
fn pool_stats(w: &W) -> [u64; 5] {
    [
        Stat::PoolTotalPages,
        Stat::PoolFreePages,
        Stat::DonatedPages,
        Stat::DonatedFreePages,
        Stat::TablePagesInUse,
    ]
    .map(|s| stat(w, s))
}

/// Top-up after the carve-out part of the pool is exhausted, then donations that split host-identity blocks:
/// host-identity must never keep a donated page as a table, so every donation is reclaimable once the domains
/// are freed, and the pool is back at its baseline.
#[test]
fn identity_splits_never_pin_donated_pages() {
    let h = harness_with(40, 48, 256);
    let w = &h.w;
    let baseline = pool_stats(w);
    // Allocate every domain slot, donating what NOMEM asks for (contiguous pages of host block 3).
    let mut next = host(6 << 20);
    let mut donations = Vec::new();
    let mut doms = Vec::new();
    loop {
        let r = call(w, Function::DomainAlloc, &[0]);
        if r[0] == Error::Limit.to_reg() {
            break;
        }
        if r[0] == Error::NoMem.to_reg() {
            assert_eq!(res(w, Function::Donate, &[next, r[1]]), Ok(0));
            donations.push((next, r[1]));
            next += r[1] * K4;
            continue;
        }
        assert_eq!(r[0], 0);
        doms.push(r[1]);
    }
    assert_eq!(doms.len(), 48);
    assert!(!donations.is_empty(), "the carve-out pool never ran short");
    assert!(
        stat(w, Stat::DonatedFreePages) < stat(w, Stat::DonatedPages),
        "domains hold donated pages: the carve-out part is exhausted"
    );
    // Donations inside distinct 2 MiB blocks each split a host-identity block.
    for b in [1u64, 2, 4, 5] {
        let pa = host((b << 21) + 0x3000);
        assert_eq!(res(w, Function::Donate, &[pa, 1]), Ok(0), "block {b}");
        assert_eq!(
            res(w, Function::IovaToPhys, &[0, pa]),
            Err(Error::NotMapped)
        );
        assert_eq!(res(w, Function::IovaToPhys, &[0, pa + K4]), Ok(pa + K4));
        donations.push((pa, 1));
    }
    for d in doms {
        assert_eq!(res(w, Function::DomainFree, &[d]), Ok(0));
    }
    for &(pa, n) in &donations {
        assert_eq!(
            res(w, Function::Reclaim, &[pa, n]),
            Ok(0),
            "reclaim {pa:#x}+{n}"
        );
        assert_eq!(res(w, Function::IovaToPhys, &[0, pa]), Ok(pa));
    }
    let after = pool_stats(w);
    assert_eq!(after, baseline, "pool stats back at baseline");
    assert!(host_unmapped(w).is_empty());
}

/// Once host-identity's spare is empty, a donation that cuts a 2 MiB block makes its first donated page there
/// the block's table (break-before-make, one page less in the pool); RECLAIM of that page is BUSY, changing
/// nothing, until the rest of the block is back, or takes it with the rest; the block then merges back. A block
/// donated whole and reclaimed in part takes one of its free donated pages as its table.
#[test]
fn donated_page_is_identity_table_until_its_block_is_back() {
    donated_table_cycle(false);
}

/// The same on an SMMU without BBML2 (every split and merge break-before-make).
#[test]
fn donated_page_is_identity_table_until_its_block_is_back_bbm() {
    donated_table_cycle(true);
}

fn donated_table_cycle(bbm: bool) {
    let h = harness_bbm(bbm);
    let w = &h.w;
    let total0 = stat(w, Stat::PoolTotalPages);
    let total = || stat(w, Stat::PoolTotalPages);
    // Blocks 0 and 1 take the spare.
    for b in 0..2 {
        assert_eq!(res(w, Function::Donate, &[host(b * M2 + 0x5000), 1]), Ok(0));
    }
    assert_eq!(w.identity_pool_stats().free, 0);
    assert_eq!(total(), total0 + 2);
    // Block 2: three pages, the first becomes its table.
    let pa = host(2 * M2 + 0x1_0000);
    clear_commands(w);
    assert_eq!(res(w, Function::Donate, &[pa, 3]), Ok(0));
    assert_eq!(total(), total0 + 2 + 2, "one donated page is a table");
    assert_eq!(stat(w, Stat::DonatedPages), 5);
    assert_eq!(
        invals(w).first(),
        Some(&Inval::Range(S2Invalidation {
            vmid: Vmid(1),
            iova: host(2 * M2),
            size: M2,
            leaf_size: LeafSize::Block2M,
            leaf_only: true,
        })),
        "break-before-make before the donated page is written as a table, BBML2 or not"
    );
    assert_eq!(
        res(w, Function::IovaToPhys, &[0, pa]),
        Err(Error::NotMapped)
    );
    assert_eq!(
        res(w, Function::IovaToPhys, &[0, pa + 2 * K4]),
        Err(Error::NotMapped)
    );
    assert_eq!(
        res(w, Function::IovaToPhys, &[0, pa + 3 * K4]),
        Ok(pa + 3 * K4)
    );
    assert_eq!(
        res(w, Function::IovaToPhys, &[0, host(2 * M2)]),
        Ok(host(2 * M2))
    );
    // The table page is BUSY while the block's other pages are donated; nothing changes.
    assert_eq!(res(w, Function::Reclaim, &[pa, 1]), Err(Error::Busy));
    assert_eq!(res(w, Function::Reclaim, &[pa, 2]), Err(Error::Busy));
    assert_eq!(stat(w, Stat::DonatedPages), 5);
    assert_eq!(total(), total0 + 4);
    assert_eq!(res(w, Function::Reclaim, &[pa + K4, 1]), Ok(0));
    assert_eq!(res(w, Function::Reclaim, &[pa, 1]), Err(Error::Busy));
    assert_eq!(res(w, Function::Reclaim, &[pa + 2 * K4, 1]), Ok(0));
    assert_eq!(total(), total0 + 2);
    assert_eq!(res(w, Function::Reclaim, &[pa, 1]), Ok(0));
    assert_eq!(
        res(w, Function::IovaToPhys, &[0, pa]),
        Ok(pa),
        "merged back"
    );
    assert_eq!(total(), total0 + 2);
    assert_eq!(stat(w, Stat::DonatedPages), 2);
    // Reclaiming the whole donation at once takes the table with it.
    assert_eq!(res(w, Function::Donate, &[pa, 3]), Ok(0));
    assert_eq!(total(), total0 + 2 + 2);
    assert_eq!(res(w, Function::Reclaim, &[pa, 3]), Ok(0));
    assert_eq!(total(), total0 + 2);
    // Block 4 donated whole (no table), reclaimed in part: a free donated page of it becomes the table.
    let b4 = host(4 * M2);
    assert_eq!(res(w, Function::Donate, &[b4, 512]), Ok(0));
    assert_eq!(total(), total0 + 2 + 512);
    assert_eq!(res(w, Function::Reclaim, &[b4 + K4, 1]), Ok(0));
    assert_eq!(total(), total0 + 2 + 510, "one page back, one page a table");
    assert_eq!(res(w, Function::IovaToPhys, &[0, b4 + K4]), Ok(b4 + K4));
    assert_eq!(
        res(w, Function::IovaToPhys, &[0, b4]),
        Err(Error::NotMapped)
    );
    let mut left: Vec<u64> = (0..512).filter(|&i| i != 1).map(|i| b4 + i * K4).collect();
    let mut rounds = 0;
    while !left.is_empty() {
        rounds += 1;
        assert!(rounds <= 2, "BUSY pages come back in the second round");
        left.retain(|&p| res(w, Function::Reclaim, &[p, 1]) == Err(Error::Busy));
    }
    assert_eq!(rounds, 2, "the table page answered BUSY once");
    assert_eq!(
        res(w, Function::IovaToPhys, &[0, b4 + 0x1f_f000]),
        Ok(b4 + 0x1f_f000)
    );
    // The spare's blocks merge back too: everything at baseline.
    for b in 0..2 {
        assert_eq!(
            res(w, Function::Reclaim, &[host(b * M2 + 0x5000), 1]),
            Ok(0)
        );
    }
    assert_eq!(w.identity_pool_stats().free, SPARE);
    assert_eq!(total(), total0);
    assert_eq!(stat(w, Stat::DonatedPages), 0);
    assert!(host_unmapped(w).is_empty());
}
