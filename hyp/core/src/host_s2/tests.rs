use super::*;
use crate::trap::esr::{EC_DABT_LOW, EC_IABT_LOW, ESR_EC_SHIFT, ESR_IL, ESR_S1PTW, ESR_WNR};
use warden_abi::{PAGE_SIZE, granule};

const GIB: u64 = 1 << 30;
const CARVEOUT: PhysRange = PhysRange::from_bounds(0x4000_0000, 0x41e0_0000);
const SMMU: PhysRange = PhysRange::from_bounds(0x0905_0000, 0x0907_0000);

/// QEMU virt with 1 GiB: RAM at 1 GiB, devices below it, high ECAM and the 512 GiB high PCI window.
fn virt() -> HostStage2 {
    let ram = [PhysRange::from_bounds(0x4000_0000, 0x8000_0000)];
    let mmio = [
        PhysRange::from_bounds(0, 0x4000_0000),
        PhysRange {
            base: 0x40_1000_0000,
            size: 0x1000_0000,
        },
        PhysRange {
            base: 0x80_0000_0000,
            size: 0x80_0000_0000,
        },
    ];
    let excluded = [CARVEOUT, SMMU];
    HostStage2::build(&HostS2Spec {
        ram: &ram,
        mmio: &mmio,
        excluded: &excluded,
        ram_leaves: RamLeaves::Blocks,
    })
    .unwrap()
}

#[test]
fn carveout_and_smmu_never_mapped_full_walk() {
    let s2 = virt();
    let leaves = s2.leaves();
    assert!(!leaves.is_empty());
    for leaf in &leaves {
        assert!(!leaf.ipa.overlaps(&CARVEOUT), "{leaf:?} maps hyp memory");
        assert!(!leaf.ipa.overlaps(&SMMU), "{leaf:?} maps SMMU frames");
    }
}

#[test]
fn carveout_and_smmu_translate_to_nothing_page_by_page() {
    let s2 = virt();
    for r in [CARVEOUT, SMMU] {
        let mut a = r.base;
        while a < r.end() {
            assert_eq!(s2.translate(a), None, "{a:#x}");
            a += PAGE_SIZE;
        }
    }
    assert_eq!(s2.translate(CARVEOUT.end() - 1), None);
    assert_eq!(s2.translate(SMMU.end() - 1), None);
}

#[test]
fn identity_is_exact_and_typed() {
    let s2 = virt();
    for leaf in s2.leaves() {
        assert_eq!(leaf.pa, leaf.ipa.base, "{leaf:?} is not identity");
        assert_eq!(leaf.ipa.size, granule(leaf.level));
    }
    let t = s2.translate(0x41e0_0123).unwrap();
    assert_eq!((t.pa, t.kind), (0x41e0_0123, MemKind::Ram));
    let t = s2.translate(0x7fff_ffff).unwrap();
    assert_eq!((t.pa, t.kind), (0x7fff_ffff, MemKind::Ram));
    // PL011, just below and just above the SMMU frames.
    assert_eq!(s2.translate(0x0900_0018).unwrap().kind, MemKind::Mmio);
    assert_eq!(s2.translate(SMMU.base - 1).unwrap().pa, SMMU.base - 1);
    assert_eq!(s2.translate(SMMU.end()).unwrap().pa, SMMU.end());
    assert_eq!(s2.translate(0x80_0000_1000).unwrap().kind, MemKind::Mmio);
    assert_eq!(s2.translate(0x40_1000_0000).unwrap().kind, MemKind::Mmio);
    // Past RAM and between windows: nothing.
    assert_eq!(s2.translate(0x8000_0000), None);
    assert_eq!(s2.translate(0x40_0000_0000), None);
    assert_eq!(s2.translate(0x100_0000_0000), None);
    assert_eq!(s2.translate(u64::MAX), None);
}

#[test]
fn attributes() {
    let s2 = virt();
    for leaf in s2.leaves() {
        match leaf.kind {
            MemKind::Ram => assert_eq!(
                leaf.attributes & !Stage2Attributes::TABLE_OR_PAGE,
                RAM_ATTRIBUTES
            ),
            MemKind::Mmio => {
                assert_eq!(
                    leaf.attributes & !Stage2Attributes::TABLE_OR_PAGE,
                    MMIO_ATTRIBUTES
                );
                assert!(leaf.attributes.contains(Stage2Attributes::XN));
            }
        }
    }
}

#[test]
fn all_host_ram_mapped_exactly() {
    let s2 = virt();
    let ram_bytes: u64 = s2
        .leaves()
        .iter()
        .filter(|l| l.kind == MemKind::Ram)
        .map(|l| l.ipa.size)
        .sum();
    assert_eq!(ram_bytes, 0x8000_0000 - CARVEOUT.end());
    assert_eq!(
        s2.host_ram(),
        &[PhysRange::from_bounds(CARVEOUT.end(), 0x8000_0000)]
    );
    assert!(s2.is_host_ram(0x4200_0000));
    assert!(!s2.is_host_ram(0x4000_0000));
    assert!(!s2.is_host_ram(0x0900_0000));
    assert!(!s2.is_host_ram(0x8000_0000));
    let mmio_bytes: u64 = s2
        .leaves()
        .iter()
        .filter(|l| l.kind == MemKind::Mmio)
        .map(|l| l.ipa.size)
        .sum();
    assert_eq!(
        mmio_bytes,
        0x4000_0000 - SMMU.size + 0x1000_0000 + 0x80_0000_0000
    );
}

#[test]
fn blocks_used_where_aligned() {
    let s2 = virt();
    let leaves = s2.leaves();
    let count = |level| leaves.iter().filter(|l| l.level == level).count();
    // RAM above the carve-out: (1 GiB - 30 MiB) / 2 MiB blocks, no pages.
    let ram_blocks = leaves
        .iter()
        .filter(|l| l.kind == MemKind::Ram && l.level == 2)
        .count();
    assert_eq!(
        ram_blocks as u64,
        (0x8000_0000 - CARVEOUT.end()) / (2 << 20)
    );
    assert!(
        leaves
            .iter()
            .all(|l| l.kind != MemKind::Ram || l.level == 2)
    );
    // The 512 GiB PCI window is 512 1 GiB blocks.
    assert!(count(1) >= 512);
    // Pages only in the 2 MiB block around the SMMU frames.
    let pages: Vec<_> = leaves.iter().filter(|l| l.level == 3).collect();
    assert_eq!(
        pages.len() as u64,
        (2 << 20) / PAGE_SIZE - SMMU.size / PAGE_SIZE
    );
    assert!(
        pages
            .iter()
            .all(|l| PhysRange::from_bounds(0x0900_0000, 0x0920_0000).overlaps(&l.ipa))
    );
    // The first GiB holds the SMMU hole, so it is split into 2 MiB blocks; the high ECAM is 2 MiB blocks
    // (256 MiB, not 1 GiB aligned in size), the high window 1 GiB blocks.
    assert!(leaves.iter().any(|l| l.level == 2 && l.ipa.base == 0));
    assert!(leaves.iter().any(|l| l.level == 1
        && l.ipa.base == 0x80_0000_0000
        && l.ipa.end() == 0x80_0000_0000 + GIB));
}

#[test]
fn unaligned_regions_are_rounded_safely() {
    let ram = [PhysRange::from_bounds(0x4000_0800, 0x4000_5800)];
    let excluded = [PhysRange::from_bounds(0x4000_2100, 0x4000_2200)];
    let s2 = HostStage2::build(&HostS2Spec {
        ram: &ram,
        mmio: &[],
        excluded: &excluded,
        ram_leaves: RamLeaves::Blocks,
    })
    .unwrap();
    // RAM shrinks inwards, exclusions grow outwards.
    assert_eq!(s2.translate(0x4000_0000), None);
    assert!(s2.translate(0x4000_1000).is_some());
    assert_eq!(s2.translate(0x4000_2000), None);
    assert_eq!(s2.translate(0x4000_2fff), None);
    assert!(s2.translate(0x4000_3000).is_some());
    assert!(s2.translate(0x4000_4fff).is_some());
    assert_eq!(s2.translate(0x4000_5000), None);
}

#[test]
fn exclusion_covering_everything_maps_nothing() {
    let ram = [PhysRange::from_bounds(0x4000_0000, 0x4100_0000)];
    let excluded = [PhysRange::from_bounds(0, u64::MAX)];
    let s2 = HostStage2::build(&HostS2Spec {
        ram: &ram,
        mmio: &ram[..0],
        excluded: &excluded,
        ram_leaves: RamLeaves::Blocks,
    })
    .unwrap();
    assert!(s2.leaves().is_empty());
}

#[test]
fn errors() {
    let too_high = [PhysRange::from_bounds(
        IPA_LIMIT - 0x1000,
        IPA_LIMIT + 0x1000,
    )];
    assert_eq!(
        HostStage2::build(&HostS2Spec {
            ram: &too_high,
            mmio: &[],
            excluded: &[],
            ram_leaves: RamLeaves::Blocks,
        })
        .unwrap_err(),
        HostS2Error::OutOfRange(IPA_LIMIT + 0x1000)
    );
    let ram = [PhysRange::from_bounds(0x4000_0000, 0x8000_0000)];
    let mmio = [PhysRange::from_bounds(0x3000_0000, 0x5000_0000)];
    assert_eq!(
        HostStage2::build(&HostS2Spec {
            ram: &ram,
            mmio: &mmio,
            excluded: &[],
            ram_leaves: RamLeaves::Blocks,
        })
        .unwrap_err(),
        HostS2Error::RamOverlapsMmio(0x4000_0000)
    );
}

#[test]
fn subtract_cases() {
    let r = PhysRange::from_bounds(0x1000, 0x9000);
    assert_eq!(subtract(r, &[]), [r]);
    assert_eq!(
        subtract(r, &[PhysRange::from_bounds(0x3000, 0x4000)]),
        [
            PhysRange::from_bounds(0x1000, 0x3000),
            PhysRange::from_bounds(0x4000, 0x9000)
        ]
    );
    assert_eq!(
        subtract(r, &[PhysRange::from_bounds(0, 0x2000)]),
        [PhysRange::from_bounds(0x2000, 0x9000)]
    );
    assert_eq!(
        subtract(r, &[PhysRange::from_bounds(0x8000, 0xa000)]),
        [PhysRange::from_bounds(0x1000, 0x8000)]
    );
    assert!(subtract(r, &[PhysRange::from_bounds(0, 0xa000)]).is_empty());
    assert_eq!(
        subtract(
            r,
            &[
                PhysRange::from_bounds(0x2000, 0x3000),
                PhysRange::from_bounds(0x5000, 0x6000)
            ]
        ),
        [
            PhysRange::from_bounds(0x1000, 0x2000),
            PhysRange::from_bounds(0x3000, 0x5000),
            PhysRange::from_bounds(0x6000, 0x9000)
        ]
    );
}

#[test]
fn vtcr_encoding() {
    // PARange 52 bits (6) is capped to 48 bits (5).
    let v = vtcr(6).unwrap();
    assert_eq!(v & 0x3f, 16, "T0SZ");
    assert_eq!((v >> 6) & 3, 2, "SL0 = level 0");
    assert_eq!((v >> 14) & 3, 0, "TG0 = 4K");
    assert_eq!((v >> 16) & 7, 5, "PS = 48 bits");
    assert_eq!(v >> 31 & 1, 1, "RES1");
    assert_eq!(v, 0x8005_3590);
    assert_eq!(vtcr(5), Some(v));
    assert_eq!(vtcr(2), None);
}

#[test]
fn root_pa_is_page_aligned() {
    assert_eq!(virt().root_pa() % PAGE_SIZE, 0);
}

#[test]
fn stage2_fault_decode() {
    // Data abort from EL1, write, translation fault level 2; IPA 0x4000_0123 (HPFAR = IPA[47:12] << 4).
    let esr = (EC_DABT_LOW << ESR_EC_SHIFT) | ESR_IL | ESR_WNR | 0x06;
    let f = Stage2Fault::decode(esr, 0xffff_8000_1234_5123, (0x4000_0123 >> 12) << 4).unwrap();
    assert_eq!(
        f,
        Stage2Fault {
            ipa: 0x4000_0123,
            write: true,
            instruction: false,
            s1ptw: false
        }
    );
    let esr = (EC_IABT_LOW << ESR_EC_SHIFT) | ESR_IL | ESR_S1PTW | 0x07;
    let f = Stage2Fault::decode(esr, 0x0905_0ffc, (0x0905_0ffc >> 12) << 4).unwrap();
    assert_eq!(
        f,
        Stage2Fault {
            ipa: 0x0905_0ffc,
            write: false,
            instruction: true,
            s1ptw: true
        }
    );
    // An HVC is no abort.
    assert_eq!(Stage2Fault::decode(0x16 << ESR_EC_SHIFT, 0, 0), None);
}

/// The QEMU `virt` DTBs checked in by warden-dt (1 GiB / 2 CPUs and 2 GiB / 4 CPUs).
const VIRT_DTBS: [&[u8]; 2] = [
    include_bytes!("../../../dt/tests/data/virt-smp2-1g.dtb"),
    include_bytes!("../../../dt/tests/data/virt-smp4-2g.dtb"),
];

#[test]
fn real_qemu_dtbs() {
    let carveout = PhysRange {
        base: crate::layout::HYP_CARVEOUT_PA,
        size: crate::layout::HYP_CARVEOUT_SIZE,
    };
    for dtb in VIRT_DTBS {
        let platform = warden_dt::parse(dtb).unwrap();
        let devices = crate::devices::classify(&platform, &[carveout]);
        let layout = HostS2Layout::from_devices(&devices, RamLeaves::Pages);
        let s2 = HostStage2::build(&layout.spec()).unwrap();
        let smmu = platform.smmus[0].reg;
        assert_eq!(smmu, SMMU);
        for leaf in s2.leaves() {
            assert!(!leaf.ipa.overlaps(&carveout), "{leaf:?}");
            assert!(!leaf.ipa.overlaps(&smmu), "{leaf:?}");
        }
        // Every RAM byte outside the carve-out is host RAM, mapped as RAM.
        let ram_end = 0x4000_0000 + platform.memory_size();
        let mapped: u64 = s2
            .leaves()
            .iter()
            .filter(|l| l.kind == MemKind::Ram)
            .map(|l| l.ipa.size)
            .sum();
        assert_eq!(mapped, ram_end - carveout.end());
        assert_eq!(s2.translate(ram_end - 1).unwrap().kind, MemKind::Ram);
        // The host reaches its devices: PL011, GIC distributor, PCI ECAM and both PCI memory windows.
        let uart = platform.uart.as_ref().unwrap().reg.base;
        let gicd = platform.gic.as_ref().unwrap().distributor.base;
        assert_eq!(s2.translate(uart).unwrap().kind, MemKind::Mmio);
        assert_eq!(s2.translate(gicd).unwrap().kind, MemKind::Mmio);
        let host = &platform.pci_hosts[0];
        assert_eq!(s2.translate(host.ecam.base).unwrap().kind, MemKind::Mmio);
        for w in &host.windows {
            assert_eq!(
                s2.translate(w.cpu.base).unwrap().kind,
                MemKind::Mmio,
                "{w:?}"
            );
            assert_eq!(
                s2.translate(w.cpu.base + w.cpu.size - 1).unwrap().kind,
                MemKind::Mmio,
                "{w:?}"
            );
        }
    }
}

/// QEMU virt's DTB with its root `compatible` `linux,dummy-virt` replaced by a board of the same length.
fn board_dtb() -> alloc::vec::Vec<u8> {
    const BOARD: &[u8; 16] = b"acme,board-9000x";
    let mut dtb = crate::test_support::DTB.to_vec();
    let virt = QEMU_VIRT_COMPATIBLE.as_bytes();
    assert_eq!(virt.len(), BOARD.len());
    let mut replaced = 0;
    for i in 0..=dtb.len() - virt.len() {
        if &dtb[i..i + virt.len()] == virt {
            dtb[i..i + virt.len()].copy_from_slice(BOARD);
            replaced += 1;
        }
    }
    assert!(replaced > 0);
    dtb
}

/// The leaves come from the DT (QEMU virt: pages; any other board: blocks), and `warden.host_s2=` overrides
/// both ways; the boot log line says which and why.
#[test]
fn leaves_chosen_from_the_dt_and_the_command_line() {
    let virt = warden_dt::parse(crate::test_support::DTB).unwrap();
    assert_eq!(virt.compatible, [QEMU_VIRT_COMPATIBLE]);
    let board = warden_dt::parse(&board_dtb()).unwrap();
    assert_eq!(board.compatible, ["acme,board-9000x"]);

    let choose = |p: &warden_dt::Platform, args: &str| RamLeaves::choose(&p.compatible, Some(args));
    let c = RamLeaves::choose(&virt.compatible, None);
    assert_eq!(
        (c.leaves, &c.reason),
        (RamLeaves::Pages, &LeavesReason::QemuVirt)
    );
    assert!(c.to_string().contains("pages (machine is QEMU virt"), "{c}");
    let c = RamLeaves::choose(&board.compatible, None);
    assert_eq!(
        (c.leaves, &c.reason),
        (
            RamLeaves::Blocks,
            &LeavesReason::Hardware(Some("acme,board-9000x".into()))
        )
    );
    assert!(
        c.to_string().contains("blocks (machine `acme,board-9000x`"),
        "{c}"
    );
    // No root compatible at all: not QEMU virt.
    assert_eq!(RamLeaves::choose(&[], None).leaves, RamLeaves::Blocks);

    // The argument overrides both ways, among other words.
    let c = choose(&virt, "console=ttyAMA0 warden.host_s2=blocks quiet");
    assert_eq!(
        (c.leaves, &c.reason),
        (RamLeaves::Blocks, &LeavesReason::BootArg)
    );
    assert!(
        c.to_string()
            .contains("warden.host_s2=blocks on the command line"),
        "{c}"
    );
    let c = choose(&board, "warden.host_s2=pages");
    assert_eq!(
        (c.leaves, &c.reason),
        (RamLeaves::Pages, &LeavesReason::BootArg)
    );
    // The last one wins.
    let c = choose(&board, "warden.host_s2=blocks warden.host_s2=pages");
    assert_eq!(c.leaves, RamLeaves::Pages);
    // A bad value is ignored, and said so; other words that only start alike are not the argument.
    let c = choose(
        &board,
        "warden.host_s2=huge warden.host_s2x=pages warden.host_s2",
    );
    assert_eq!(
        (c.leaves, c.rejected.as_deref()),
        (RamLeaves::Blocks, Some("huge"))
    );
    assert!(
        c.to_string().contains(
            "ignored warden.host_s2=huge: expected warden.host_s2=blocks or warden.host_s2=pages"
        ),
        "{c}"
    );
    let c = choose(&virt, "warden.host_s2=");
    assert_eq!(
        (c.leaves, c.rejected.as_deref()),
        (RamLeaves::Pages, Some(""))
    );
}

/// `warden.identity_iova_bits=N`: the last valid value wins (39 to 48), other values are ignored and named in
/// the log line, and `warden.host_s2=` is not mistaken for it (nor it for `warden.host_s2=`).
#[test]
fn identity_iova_bits_from_the_command_line() {
    let c = IdentityIovaBits::choose(None);
    assert_eq!((c.bits, &c.rejected), (0, &None));
    assert_eq!(c.to_string(), "sized to the machine");
    let c = IdentityIovaBits::choose(Some(
        "quiet warden.identity_iova_bits=44 warden.host_s2=blocks",
    ));
    assert_eq!((c.bits, &c.rejected), (44, &None));
    assert_eq!(
        c.to_string(),
        "at least 44 bits: warden.identity_iova_bits=44 on the command line"
    );
    assert_eq!(
        RamLeaves::choose(&[], Some("warden.identity_iova_bits=44")).rejected,
        None
    );
    for (args, bits, bad) in [
        (
            "warden.identity_iova_bits=40 warden.identity_iova_bits=48",
            48,
            None,
        ),
        (
            "warden.identity_iova_bits=44 warden.identity_iova_bits=49",
            44,
            Some("49"),
        ),
        ("warden.identity_iova_bits=38", 0, Some("38")),
        (
            "warden.identity_iova_bits=x warden.identity_iova_bits=39",
            39,
            Some("x"),
        ),
        (
            "warden.identity_iova_bits= warden.identity_iova_bits44",
            0,
            Some(""),
        ),
    ] {
        let c = IdentityIovaBits::choose(Some(args));
        assert_eq!((c.bits, c.rejected.as_deref()), (bits, bad), "{args}");
    }
    let c = IdentityIovaBits::choose(Some("warden.identity_iova_bits=64"));
    assert!(
        c.to_string().ends_with(
            "ignored warden.identity_iova_bits=64: expected a number of bits from 39 to 48"
        ),
        "{c}"
    );
}

/// What each choice costs in the sizing: pages reserve a level-3 table per 2 MiB of RAM, blocks none.
#[test]
fn sizing_follows_the_choice() {
    let virt = warden_dt::parse(crate::test_support::DTB).unwrap();
    let board = warden_dt::parse(&board_dtb()).unwrap();
    let loaded = &crate::test_support::QEMU_LOADED;
    for (p, args, leaves) in [
        (&virt, None, RamLeaves::Pages),
        (&virt, Some("warden.host_s2=blocks"), RamLeaves::Blocks),
        (&board, None, RamLeaves::Blocks),
        (&board, Some("warden.host_s2=pages"), RamLeaves::Pages),
    ] {
        let choice = RamLeaves::choose(&p.compatible, args);
        assert_eq!(choice.leaves, leaves, "{args:?}");
        let plan = crate::sizing::plan(p, choice.leaves, 0, loaded).unwrap();
        assert_eq!(plan.ram_leaves, leaves);
        let l3 = crate::sizing::host_s2_page_tables(&p.memory).unwrap();
        match leaves {
            RamLeaves::Pages => assert_eq!(plan.memory.host_s2_tables, l3),
            RamLeaves::Blocks => assert_eq!(plan.memory.host_s2_tables, 0),
        }
        // The host stage-2 built in that plan maps RAM with those leaves.
        let devices = crate::devices::classify(p, &plan.hyp_ranges());
        let s2 = HostStage2::build(&HostS2Layout::from_devices(&devices, leaves).spec()).unwrap();
        let ram_levels: alloc::collections::BTreeSet<usize> = s2
            .leaves()
            .iter()
            .filter(|l| l.kind == MemKind::Ram)
            .map(|l| l.level)
            .collect();
        match leaves {
            RamLeaves::Pages => {
                assert_eq!(ram_levels.into_iter().collect::<alloc::vec::Vec<_>>(), [3])
            }
            RamLeaves::Blocks => assert!(ram_levels.contains(&2), "{ram_levels:?}"),
        }
    }
}
