//! End to end on the host: [`Warden`] over the shipped adapter ([`crate::smmu_backend::SmmuBackend`]) and
//! warden-smmu's real driver, driving its behavioural fake SMMU (QEMU 10's ID registers, command queue, STE and
//! TLB caches, stage-2 walks), as [`crate::test_support`] boots it. Device accesses go through the fake's
//! `translate`, so these tests see what a DMA would see, including stale TLB entries if an invalidation were
//! missing.

use super::*;
use crate::test_support::{CARVEOUT_SIZE, Harness, ITS_FRAME, Options};
use warden_smmu::event::event_id::F_TRANSLATION;
use warden_smmu::fake::Translation;

/// The pool: the first 256 KiB of the carve-out (small, so that donated pages soon hold live tables).
const POOL: u64 = 64 * PAGE_SIZE;

fn boot() -> Harness {
    Harness::boot(&Options {
        pool_size: POOL,
        max_donated_pages: 256,
        ..Options::default()
    })
    .unwrap()
}

#[test]
fn host_identity_dma_reaches_host_ram_only() {
    let e = boot();
    let (ram, end) = (e.ram, e.ram + e.ram_size);
    assert_eq!(
        e.translate(0x101, e.host_ram(0x1230), true),
        Translation::Ok(e.host_ram(0x1230))
    );
    assert_eq!(e.translate(0x101, end - 4, false), Translation::Ok(end - 4));
    assert_eq!(
        e.translate(0x101, ITS_FRAME + 0x40, true),
        Translation::Ok(ITS_FRAME + 0x40)
    );
    // The carve-out (pool, stream table, queues) is out of reach.
    for pa in [ram, ram + POOL, ram + CARVEOUT_SIZE - 8] {
        assert!(
            matches!(e.translate(0x101, pa, true), Translation::Fault(0x10)),
            "{pa:#x}"
        );
    }
    // A StreamID no iommu-map names aborts (the driver's default STE).
    assert!(!matches!(
        e.translate(0x2ff, e.host_ram(0), true),
        Translation::Ok(_)
    ));
}

#[test]
fn paging_domain_dma_and_unmap_invalidation() {
    let e = boot();
    let host = |off| e.host_ram(off);
    let d = e.res(Function::DomainAlloc, &[0]).unwrap();
    e.res(Function::Attach, &[3, d]).unwrap();
    // Nothing mapped yet: translation fault, recorded and readable by the host.
    assert_eq!(e.translate(3, 0x10_0000, true), Translation::Fault(0x10));
    let r = e.w.handle(Function::ReadEvent.fid(), [0; 6]);
    assert_eq!(
        (r[0], r[1], r[2] & 0xffff_ffff, r[2] >> 32 & 0xff),
        (1, 0x10_0000, 3, 0x10)
    );
    assert_ne!(r[2] >> abi::EVENT_FLAGS_SHIFT & abi::EVENT_FLAG_WRITE, 0);
    assert_eq!(e.w.handle(Function::ReadEvent.fid(), [0; 6])[0], 0);

    e.res(
        Function::MapPages,
        &[d, 0x20_0000, host(0x20_0000), M2, 1, abi::PROT_READ],
    )
    .unwrap();
    e.res(Function::MapPages, &[d, 0x1000, host(0x5000), K4, 2, RW])
        .unwrap();
    assert_eq!(
        e.translate(3, 0x20_0abc, false),
        Translation::Ok(host(0x20_0abc))
    );
    assert_eq!(
        e.translate(3, 0x20_0abc, true),
        Translation::Fault(0x13),
        "read-only mapping"
    );
    assert_eq!(e.translate(3, 0x2008, true), Translation::Ok(host(0x6008)));
    // Another device still in host-identity is unaffected.
    assert_eq!(e.translate(4, 0x2008, true), Translation::Fault(0x10));

    // Unmap: the fake has the translations in its TLB now; after the call they must be gone.
    let before = e.w.backend().counters();
    e.res(Function::UnmapPages, &[d, 0x1000, K4, 2]).unwrap();
    let after = e.w.backend().counters();
    assert_eq!(after.syncs - before.syncs, 1, "one CMD_SYNC per unmap");
    assert_eq!(
        after.commands - before.commands,
        2,
        "one range TLBI + one CMD_SYNC"
    );
    assert_eq!(e.translate(3, 0x2008, true), Translation::Fault(0x10));
    // Half of the 2 MiB block: split, the other half still reachable.
    e.res(Function::UnmapPages, &[d, 0x30_0000, K4, 256])
        .unwrap();
    assert_eq!(e.translate(3, 0x30_0000, false), Translation::Fault(0x10));
    assert_eq!(
        e.translate(3, 0x2f_f000, false),
        Translation::Ok(host(0x2f_f000))
    );

    // Blocked domain: the device reaches nothing, and (the shipped adapter's stage-2 STE over an empty table)
    // its DMA is reported as a translation fault, not silently aborted.
    while e.w.handle(Function::ReadEvent.fid(), [0; 6])[0] != 0 {}
    let b = e.res(Function::DomainAlloc, &[1]).unwrap();
    e.res(Function::Attach, &[3, b]).unwrap();
    assert_eq!(
        e.translate(3, 0x2f_f000, false),
        Translation::Fault(F_TRANSLATION)
    );
    let r = e.w.handle(Function::ReadEvent.fid(), [0; 6]);
    assert_eq!(
        (r[0], r[1], r[2] & 0xffff_ffff, r[2] >> 32 & 0xff),
        (1, 0x2f_f000, 3, u64::from(F_TRANSLATION))
    );
    // Detach: host-identity again; the paging domain can be freed and its VMID is forgotten.
    e.res(Function::Detach, &[3]).unwrap();
    assert_eq!(
        e.translate(3, host(0x2f_f000), false),
        Translation::Ok(host(0x2f_f000))
    );
    e.res(Function::DomainFree, &[d]).unwrap();
    e.res(Function::DomainFree, &[b]).unwrap();
}

#[test]
fn donated_pages_leave_host_identity_and_become_tables() {
    let e = boot();
    let host = |off| e.host_ram(off);
    let don = host(0x40_0000);
    e.res(Function::Donate, &[don, 32]).unwrap();
    for p in [don, don + 31 * K4] {
        assert_eq!(e.translate(0, p, true), Translation::Fault(0x10), "{p:#x}");
    }
    assert_eq!(
        e.translate(0, don + 32 * K4, true),
        Translation::Ok(don + 32 * K4)
    );
    assert_eq!(e.translate(0, don - 8, true), Translation::Ok(don - 8));
    // Use up the carve-out part of the pool so that donated pages hold live tables, then check the walks.
    let d = e.res(Function::DomainAlloc, &[0]).unwrap();
    e.res(Function::Attach, &[5, d]).unwrap();
    let mut k = 1u64;
    while e
        .res(Function::Stat, &[Stat::DonatedFreePages.value()])
        .unwrap()
        == 32
    {
        e.res(Function::MapPages, &[d, k << 30, host(k * K4), K4, 1, RW])
            .unwrap();
        k += 1;
    }
    for i in 1..k {
        assert_eq!(
            e.translate(5, (i << 30) + 8, true),
            Translation::Ok(host(i * K4) + 8)
        );
    }
    assert_eq!(e.res(Function::Reclaim, &[don, 32]), Err(Error::Busy));
    // Tear down and reclaim: host-identity reaches the pages again.
    for i in 1..k {
        e.res(Function::UnmapPages, &[d, i << 30, K4, 1]).unwrap();
    }
    e.res(Function::Detach, &[5]).unwrap();
    e.res(Function::DomainFree, &[d]).unwrap();
    e.res(Function::Reclaim, &[don, 32]).unwrap();
    assert_eq!(e.translate(0, don, true), Translation::Ok(don));
    assert!(e.w.backend().host().unmapped_pages().is_empty());
}
