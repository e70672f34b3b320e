//! Boot and discovery: the initial state, the identity reserve, configurations refused, VERSION and unknown calls.

use super::*;
use warden_smmu::Vmid;

#[test]
fn discovery_calls() {
    let h = harness();
    let r = h.w.handle(abi::VENDOR_HYP_CALL_UID, [0; 6]);
    assert_eq!(r, abi::UUID_WORDS.map(u64::from));
    assert_eq!(
        h.w.handle(abi::VENDOR_HYP_REVISION, [0; 6]),
        [1, abi::ABI_VERSION_MINOR.into(), 0, 0]
    );
    let [x0, x1, x2, x3] = call(&h.w, Function::Version, &[]);
    assert_eq!(x0, 0);
    assert_eq!(x1 >> abi::VERSION_MAJOR_SHIFT & 0xffff, 1);
    assert_ne!(x1 >> abi::VERSION_FEATURES_SHIFT & abi::FEAT_EVENTS, 0);
    assert_eq!(x2, abi::PGSIZE_BITMAP);
    let l = abi::Limits::unpack(x3);
    assert_eq!(
        (
            l.max_domains,
            l.iova_bits,
            l.pa_bits,
            l.vmid_bits,
            l.max_donated_pages
        ),
        (8, 39, 44, 16, 1024)
    );
}

#[test]
fn unknown_functions_are_not_supported() {
    let h = harness();
    for fid in [
        0,
        0xC600_00FF,
        0x8600_0005,
        0xC500_0005,
        0x8400_0000,
        u32::MAX,
    ] {
        assert_eq!(
            h.w.handle(fid, [1; 6])[0],
            Error::NotSupported.to_reg(),
            "fid {fid:#x}"
        );
    }
    assert_eq!(stat(&h.w, Stat::ErrorsTotal), 6);
}

#[test]
fn initial_state_is_host_identity() {
    let h = harness();
    let id = h.w.identity_ste();
    for r in sids() {
        for sid in r.base..r.base + r.count {
            assert_eq!(ste(&h.w, sid), ste_for(&h.w, id), "sid {sid:#x}");
        }
    }
    for sid in [16, 0xff, 0x108] {
        assert_eq!(
            ste(&h.w, sid).s2_config(),
            None,
            "sid {sid:#x} is in no iommu-map"
        );
    }
    let SteConfig::Translate(c) = id else {
        panic!()
    };
    assert_eq!((c.vmid, c.t0sz, c.sl0, c.ps), (Vmid(1), 25, 1, 4));
    // Host RAM 1:1, hyp memory absent, doorbell mapped.
    assert_eq!(
        res(&h.w, Function::IovaToPhys, &[0, host(0x1234)]),
        Ok(host(0x1234))
    );
    assert_eq!(
        res(&h.w, Function::IovaToPhys, &[0, RAM + RAM_SIZE - 8]),
        Ok(RAM + RAM_SIZE - 8)
    );
    assert_eq!(
        res(&h.w, Function::IovaToPhys, &[0, RAM]),
        Err(Error::NotMapped)
    );
    assert_eq!(
        res(&h.w, Function::IovaToPhys, &[0, RAM + HYP_SIZE - 1]),
        Err(Error::NotMapped)
    );
    assert_eq!(
        res(&h.w, Function::IovaToPhys, &[0, DOORBELL + 0x40]),
        Ok(DOORBELL + 0x40)
    );
    assert_eq!(
        res(&h.w, Function::IovaToPhys, &[0, RAM + RAM_SIZE]),
        Err(Error::NotMapped)
    );
    assert_eq!(
        res(&h.w, Function::IovaToPhys, &[0, 1 << 39]),
        Err(Error::OutOfRangeIova)
    );
    assert_eq!(stat(&h.w, Stat::DomainsInUse), 0);
    assert_eq!(stat(&h.w, Stat::AttachedSids), 0);
}

#[test]
fn pool_must_hold_the_identity_reserve() {
    let ram = [PhysRange {
        base: RAM,
        size: RAM_SIZE,
    }];
    let hyp = [PhysRange {
        base: RAM,
        size: HYP_SIZE,
    }];
    let doorbells = [PhysRange {
        base: DOORBELL,
        size: 0x1_0000,
    }];
    // The shipped adapter over a fresh fake SMMU, with host RAM at RAM: one machine per Warden::new call.
    let machine = || {
        let (backend, mem, ram) = fake_backend(&options(0, 4, 8));
        assert_eq!(ram, RAM);
        let offset = mem.host_address(RAM).expect("RAM").wrapping_sub(RAM);
        (backend, mem, offset)
    };
    let need = IDENTITY_RESERVE as usize + MIN_DOMAIN_POOL_PAGES;
    // Two pool ranges: the reserve is taken from the first pages across them.
    let pool = |pages: u64| {
        [
            PhysRange {
                base: RAM,
                size: 5 * PAGE_SIZE,
            },
            PhysRange {
                base: RAM + 0x10_0000,
                size: (pages - 5) * PAGE_SIZE,
            },
        ]
    };
    let hw = Hardware {
        msi_doorbells: &doorbells,
        ..QEMU_HW
    };
    let config = |pool, phys_offset| config(&ram, &hyp, pool, phys_offset);
    let short = pool(need as u64 - 1);
    let (backend, _mem, offset) = machine();
    assert_eq!(
        identity_reserve_pages(&ram, &doorbells, &hyp, SPARE, 0),
        Ok(IDENTITY_RESERVE as usize)
    );
    assert_eq!(
        Warden::new(&config(&short, offset), &hw, backend).err(),
        Some(InitError::PoolTooSmall {
            need,
            have: need - 1
        })
    );
    let exact = pool(need as u64);
    let (backend, _mem, offset) = machine();
    let w = Warden::new(&config(&exact, offset), &hw, backend).unwrap();
    assert_eq!(stat(&w, Stat::PoolTotalPages), MIN_DOMAIN_POOL_PAGES as u64);
    // One domain fits; the next is NOMEM (the reserve for unmap splits stays free).
    let d = alloc_paging(&w);
    assert_eq!(
        call(&w, Function::DomainAlloc, &[0])[..2],
        [Error::NoMem.to_reg(), 1]
    );
    // Host-identity's root is the first pool page.
    let SteConfig::Translate(c) = w.identity_ste() else {
        panic!()
    };
    assert_eq!(c.ttb, RAM);
    assert_eq!(res(&w, Function::DomainFree, &[d]), Ok(0));
    drop(w);
}

/// One page donated out of every 2 MiB block of host RAM (twice, then everything reclaimed): the first
/// `SPARE` cut blocks take the spare, the others their donated page as the level-3 table (the host's pool grows
/// by one page less each); each reclaim merges its block back, so the spare and the pool end at baseline.
#[test]
fn identity_spare_then_donated_tables() {
    let h = harness();
    let w = &h.w;
    let pool0 = [Stat::PoolTotalPages, Stat::PoolFreePages].map(|s| stat(w, s));
    assert_eq!(w.identity_pool_stats().free, SPARE);
    for off in [0x1000, 0] {
        let mut blocks = Vec::new();
        let mut b = host(0);
        while b < RAM + RAM_SIZE {
            assert_eq!(res(w, Function::Donate, &[b + off, 1]), Ok(0));
            assert_eq!(
                res(w, Function::IovaToPhys, &[0, b + off]),
                Err(Error::NotMapped)
            );
            let other = if off == 0 { b + 0x1000 } else { b };
            assert_eq!(res(w, Function::IovaToPhys, &[0, other]), Ok(other));
            blocks.push(b + off);
            b += M2;
        }
        let tables = blocks.len() - SPARE;
        assert_eq!(w.identity_pool_stats().free, 0, "the spare is used up");
        assert_eq!(
            [Stat::PoolTotalPages, Stat::PoolFreePages].map(|s| stat(w, s)),
            [pool0[0] + SPARE as u64, pool0[1] + SPARE as u64],
            "{tables} donated pages became tables"
        );
        assert_eq!(stat(w, Stat::DonatedPages), blocks.len() as u64);
        for pa in blocks {
            assert_eq!(res(w, Function::Reclaim, &[pa, 1]), Ok(0));
            assert_eq!(res(w, Function::IovaToPhys, &[0, pa]), Ok(pa));
        }
        assert_eq!(w.identity_pool_stats().free, SPARE, "merged back");
    }
    assert_eq!(
        [Stat::PoolTotalPages, Stat::PoolFreePages].map(|s| stat(w, s)),
        pool0
    );
    assert!(host_unmapped(w).is_empty());
    // A whole 2 MiB block donated needs no table; reclaimed, it is a block again.
    assert_eq!(res(w, Function::Donate, &[host(0), 512]), Ok(0));
    assert_eq!(w.identity_pool_stats().free, SPARE);
    assert_eq!(res(w, Function::Reclaim, &[host(0), 512]), Ok(0));
    assert_eq!(w.identity_pool_stats().free, SPARE);
    assert_eq!(
        res(w, Function::IovaToPhys, &[0, host(0x1000)]),
        Ok(host(0x1000))
    );
}

#[test]
fn bad_configs_are_refused() {
    let ram = [PhysRange {
        base: RAM,
        size: RAM_SIZE,
    }];
    let base = Config {
        max_donated_pages: 0,
        ..config(&ram, &[], &[], 0)
    };
    let hw = QEMU_HW;
    let bad = [
        (
            base,
            Hardware {
                vmid_bits: 12,
                ..hw
            },
        ),
        (
            Config {
                max_domains: 0,
                ..base
            },
            hw,
        ),
        (
            Config {
                max_domains: 255,
                ..base
            },
            Hardware { vmid_bits: 8, ..hw },
        ),
        (base, Hardware { pa_bits: 45, ..hw }),
        (
            Config {
                event_ring: 0,
                ..base
            },
            hw,
        ),
        (
            base,
            Hardware {
                sids: &[
                    SidRange { base: 0, count: 4 },
                    SidRange { base: 3, count: 1 },
                ],
                ..hw
            },
        ),
        (
            base,
            Hardware {
                sids: &[SidRange {
                    base: u32::MAX,
                    count: 2,
                }],
                ..hw
            },
        ),
        (Config { pool: &ram, ..base }, hw),
    ];
    for (c, h) in bad {
        assert_eq!(
            Warden::new(&c, &h, fake_backend(&Options::default()).0).err(),
            Some(InitError::BadConfig),
            "{c:?} {h:?}"
        );
    }
    // An empty pool cannot even hold host-identity's pool (16 MiB of RAM in 2 MiB blocks: root, one L2; the
    // spare).
    assert_eq!(
        Warden::new(&base, &hw, fake_backend(&Options::default()).0).err(),
        Some(InitError::PoolTooSmall {
            need: 2 + SPARE + MIN_DOMAIN_POOL_PAGES,
            have: 0
        })
    );
}
