//! The host-identity domain's geometry on machines of real size: RAM above 512 GiB (a level-0 root), the
//! `warden.identity_iova_bits=` widening, and memory beyond the SMMU's input size refused. All through the
//! shipped adapter and the fake SMMU, which walks what the dispatcher wrote and checks the STE's input size
//! and start level against its IAS (QEMU's: 44 bits).

use super::*;
use crate::domain::Geometry;
use crate::smmu_backend::BootError;
use warden_smmu::event::event_id;

/// Host RAM of the high machine: 512 GiB, the first address a 39-bit domain cannot translate.
const HIGH_RAM: u64 = 1 << 39;

/// The test machine ([`options`]) with its RAM at `ram_base` and the host-identity domain at least
/// `identity_iova_bits` wide.
fn high_options(ram_base: u64, identity_iova_bits: u8) -> Options {
    Options {
        ram_base,
        identity_iova_bits,
        ..options(256, 8, 1024)
    }
}

/// Host-identity's stage-2 fields in the STE every StreamID has at boot: (`S2T0SZ`, `S2SL0`).
fn identity_fields(h: &Harness) -> (u8, u8) {
    let c = ste(&h.w, 0).s2_config().expect("a stage-2 STE");
    assert_eq!(
        ste(&h.w, 0x100),
        ste(&h.w, 0),
        "every StreamID in host-identity"
    );
    (c.t0sz, c.sl0)
}

/// RAM at 512 GiB: boot succeeds with a 40-bit, level-0 host-identity (`S2T0SZ` 24, `S2SL0` 2), whose boot
/// tables are exactly the formula's (root, two level-1 tables: 0–512 GiB for the doorbell and 512 GiB–1 TiB for
/// RAM, two level-2 tables, the doorbell's level-3 table), and the fake SMMU translates DMA to high RAM and to
/// the low doorbell 1:1; the carve-out faults.
#[test]
fn ram_above_512_gib_boots_with_a_level_0_root() {
    let h = Harness::boot(&high_options(HIGH_RAM, 0)).expect("boot above 512 GiB");
    assert_eq!(h.ram, HIGH_RAM);
    assert_eq!(h.w.identity_geometry(), Geometry::with_bits(40).unwrap());
    assert_eq!(
        h.w.identity_geometry().to_string(),
        "40-bit IOVA, level-0 root"
    );
    assert_eq!(identity_fields(&h), (24, 2));
    let ip = h.w.identity_pool_stats();
    assert_eq!(ip.total - ip.free, 1 + 2 + 2 + 1, "boot tables");
    for pa in [h.host_ram(0), h.host_ram(0x1234), HIGH_RAM + RAM_SIZE - 8] {
        assert_eq!(h.translate(0, pa, true), Translation::Ok(pa), "{pa:#x}");
        assert_eq!(
            h.translate(0x103, pa, false),
            Translation::Ok(pa),
            "{pa:#x}"
        );
    }
    assert_eq!(
        h.translate(0, DOORBELL + 0x40, true),
        Translation::Ok(DOORBELL + 0x40)
    );
    for pa in [HIGH_RAM, HIGH_RAM + RAM_SIZE, HIGH_RAM - 0x1000] {
        assert_eq!(
            h.translate(0, pa, false),
            Translation::Fault(event_id::F_TRANSLATION),
            "{pa:#x}"
        );
    }
    // The host's own domains keep the ABI's geometry: LIMITS says 39 bits, their STE has S2T0SZ 25.
    let l = abi::Limits::unpack(call(&h.w, Function::Version, &[])[3]);
    assert_eq!(l.iova_bits, 39);
    let d = alloc_paging(&h.w);
    assert_eq!(res(&h.w, Function::Attach, &[1, d]), Ok(0));
    let c = ste(&h.w, 1).s2_config().unwrap();
    assert_eq!((c.t0sz, c.sl0), (25, 1));
}

/// Donation of a page of high RAM cuts the identity map: DMA to it faults while donated (its 2 MiB
/// neighbours still translate), and reclaim restores it, merging the block back: in place with BBML2 (QEMU's),
/// break-before-make without (the fake flags a TLB conflict otherwise).
#[test]
fn high_donation_cuts_and_reclaim_restores_the_identity_map() {
    for bbml in [0, 2] {
        high_donation_round_trip(bbml);
    }
}

fn high_donation_round_trip(bbml: u32) {
    let h = Harness::boot(&Options {
        bbml,
        ..high_options(HIGH_RAM, 0)
    })
    .expect("boot above 512 GiB");
    let w = &h.w;
    let free = w.identity_pool_stats().free;
    let pa = h.host_ram(2 << 20) + 0x5000;
    assert_eq!(h.translate(2, pa, true), Translation::Ok(pa));
    assert_eq!(res(w, Function::Donate, &[pa, 1]), Ok(0));
    assert_eq!(
        h.translate(2, pa, true),
        Translation::Fault(event_id::F_TRANSLATION)
    );
    for other in [pa - 0x1000, pa + 0x1000] {
        assert_eq!(h.translate(2, other, true), Translation::Ok(other));
    }
    assert_eq!(w.identity_pool_stats().free, free - 1, "a spare table");
    assert_eq!(res(w, Function::Reclaim, &[pa, 1]), Ok(0));
    assert_eq!(h.translate(2, pa, false), Translation::Ok(pa));
    assert_eq!(w.identity_pool_stats().free, free, "merged back");
    assert!(host_unmapped(w).is_empty());
    assert_eq!(w.backend().with_smmu(|s| s.regs_mut().tlb_conflicts()), 0);
}

/// `warden.identity_iova_bits=44` on a machine whose RAM is low: host-identity is 44 bits from level 0
/// (`S2T0SZ` 20), one level-1 table more than the 39-bit layout, and DMA still translates 1:1; 48 bits is
/// capped at QEMU's 44-bit IAS; 39 or none leave the 39-bit, level-1 layout.
#[test]
fn identity_iova_bits_widens_up_to_the_ias() {
    for (bits, fields, tables) in [
        (0, (25, 1), IDENTITY_RESERVE as usize - SPARE),
        (39, (25, 1), IDENTITY_RESERVE as usize - SPARE),
        (44, (20, 2), IDENTITY_RESERVE as usize - SPARE + 1),
        (48, (20, 2), IDENTITY_RESERVE as usize - SPARE + 1),
    ] {
        let h = boot(&high_options(RAM, bits));
        assert_eq!(identity_fields(&h), fields, "{bits}");
        let ip = h.w.identity_pool_stats();
        assert_eq!(ip.total - ip.free, tables, "{bits}");
        let pa = h.host_ram(0x3000);
        assert_eq!(h.translate(5, pa, true), Translation::Ok(pa), "{bits}");
    }
}

/// Memory that ends beyond the SMMU's input size is refused at boot with both figures; memory that fits
/// boots, with the identity domain as wide as it needs.
#[test]
fn memory_beyond_the_ias_is_refused() {
    let (backend, mem, ram) = fake_backend(&options(0, 4, 8));
    let offset = mem.host_address(ram).expect("RAM").wrapping_sub(ram);
    let far = 1 << 44;
    let ranges = [
        PhysRange {
            base: ram,
            size: RAM_SIZE,
        },
        PhysRange {
            base: far,
            size: 2 << 20,
        },
    ];
    let hyp = [PhysRange {
        base: ram,
        size: HYP_SIZE,
    }];
    let config = config(&ranges, &hyp, &hyp, offset);
    let hw = QEMU_HW;
    let err = Warden::new(&config, &hw, backend).err();
    assert_eq!(
        err,
        Some(InitError::BeyondIas {
            top: far + (2 << 20),
            need_bits: 45,
            ias_bits: 44
        })
    );
    let text = err.unwrap().to_string();
    for figure in ["0x100000200000", "45-bit", "44-bit"] {
        assert!(text.contains(figure), "{figure} in {text:?}");
    }
    // An SMMU with a 40-bit IAS and RAM at 1 TiB.
    let (backend, _mem, _) = fake_backend(&options(0, 4, 8));
    let config = Config {
        ram: &[
            ranges[0],
            PhysRange {
                base: 1 << 40,
                size: 2 << 20,
            },
        ],
        ..config
    };
    assert_eq!(
        Warden::new(&config, &Hardware { ias_bits: 40, ..hw }, backend).err(),
        Some(InitError::BeyondIas {
            top: (1 << 40) + (2 << 20),
            need_bits: 41,
            ias_bits: 40
        })
    );
    // The same machine on a 44-bit SMMU boots (nothing maps the unbacked range but host-identity's tables).
    let (backend, _mem, _) = fake_backend(&options(0, 4, 8));
    let w = Warden::new(&config, &hw, backend).expect("fits 44 bits");
    assert_eq!(w.identity_geometry(), Geometry::with_bits(41).unwrap());
    // And the boot error as EL2 reports it (bring_up over the fake): RAM at 2^44 on QEMU's 44-bit SMMU.
    assert!(matches!(
        Harness::boot(&high_options(far, 0)).err(),
        Some(BootError::Init(InitError::BeyondIas {
            need_bits: 45,
            ias_bits: 44,
            ..
        }))
    ));
}
