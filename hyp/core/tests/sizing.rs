//! The hyp's memory sized and placed on QEMU's real device trees (1, 2, 4 and 16 GiB, two NUMA nodes) and on
//! hostile ones: the plan the EL2 image uses (`sizing::plan`) is checked against the structures that then live
//! in it (ownership map, host-identity pool, host stage-2), and bad memory descriptions are errors.

use dtoolkit::fdt::Fdt;
use dtoolkit::model::{DeviceTree, DeviceTreeProperty};
use warden_core::dispatch;
use warden_core::host_s2::{HostS2Layout, HostStage2, RamLeaves};
use warden_core::layout::{HOST_DTB_MAX_SIZE, HOST_DTB_PA, HYP_CARVEOUT_PA};
use warden_core::ownership::MemKind;
use warden_core::ownership::{Ownership, PageState};
use warden_core::sizing::{self, Plan, SizingError};
use warden_core::smmu_backend;
use warden_core::test_support::QEMU_LOADED as LOADED;
use warden_dt::{PhysRange, Platform};

const GIB: u64 = 1 << 30;

/// (file, RAM bytes, RAM ranges)
const DTBS: [(&str, &[u8], u64, usize); 5] = [
    (
        "1g",
        include_bytes!("../../dt/tests/data/virt-smp2-1g.dtb"),
        GIB,
        1,
    ),
    (
        "2g",
        include_bytes!("../../dt/tests/data/virt-smp4-2g.dtb"),
        2 * GIB,
        1,
    ),
    (
        "4g",
        include_bytes!("../../dt/tests/data/virt-smp2-4g.dtb"),
        4 * GIB,
        1,
    ),
    (
        "16g",
        include_bytes!("../../dt/tests/data/virt-smp2-16g.dtb"),
        16 * GIB,
        1,
    ),
    (
        "numa 2x2g",
        include_bytes!("../../dt/tests/data/virt-smp2-numa2x2g.dtb"),
        4 * GIB,
        2,
    ),
];

/// The plan the EL2 image makes for `platform` with no `warden.host_s2` argument (QEMU virt: pages).
fn qemu_plan(platform: &Platform) -> Result<Plan, SizingError> {
    let leaves = RamLeaves::choose(&platform.compatible, None).leaves;
    assert_eq!(leaves, RamLeaves::Pages);
    sizing::plan(platform, leaves, 0, &LOADED)
}

fn overlaps(a: &PhysRange, b: &PhysRange) -> bool {
    a.base < b.end() && b.base < a.end()
}

fn check_plan(name: &str, platform: &Platform, plan: &Plan) {
    let m = plan.memory;
    let region = plan.region;
    assert_eq!(region.size, m.sized(), "{name}");
    assert_eq!(region.base % (2 << 20), 0, "{name}");
    assert!(
        platform
            .memory
            .iter()
            .any(|r| r.base <= region.base && region.end() <= r.end()),
        "{name}: {region:?} not inside one RAM range"
    );
    let fixed_and_dtb = PhysRange {
        base: HYP_CARVEOUT_PA,
        size: HOST_DTB_PA + HOST_DTB_MAX_SIZE - HYP_CARVEOUT_PA,
    };
    for avoid in LOADED
        .iter()
        .chain([&fixed_and_dtb])
        .chain(platform.chosen.initrd.as_ref())
    {
        assert!(
            !overlaps(&region, avoid),
            "{name}: {region:?} overlaps {avoid:?}"
        );
    }
    // The parts tile the region, heap first.
    let parts = [
        plan.heap(),
        plan.smmu(),
        plan.identity_tables(),
        plan.domain_pool(),
    ];
    assert_eq!(parts[0].base, region.base);
    for w in parts.windows(2) {
        assert_eq!(w[0].end(), w[1].base, "{name}");
    }
    assert_eq!(parts[3].end(), region.end(), "{name}");
    assert!(m.heap() >= m.ownership + m.slack + m.its, "{name}");
    let reserved = plan.reserved();
    assert_eq!(reserved[0].base, HYP_CARVEOUT_PA);
    assert_eq!(reserved[1], plan.heap());
    assert_eq!(reserved[2].base, plan.smmu().base);
    assert_eq!(reserved[2].end(), region.end());

    // What lives in it fits: the ownership map (heap), host-identity's reserve, the stream table.
    let doorbells = smmu_backend::msi_doorbells(platform);
    let hyp = plan.hyp_ranges();
    let own = Ownership::new(&platform.memory, &doorbells, &hyp).unwrap();
    for h in &hyp {
        assert_eq!(own.state(h.base), PageState::Hyp, "{name}");
        assert_eq!(own.state(h.end() - 4096), PageState::Hyp, "{name}");
    }
    let reserve = dispatch::identity_reserve_pages(
        &platform.memory,
        &doorbells,
        &hyp,
        dispatch::IDENTITY_SPARE_TABLES,
        plan.identity_iova_bits,
    )
    .unwrap() as u64;
    assert!(
        reserve * 4096 <= m.identity_tables,
        "{name}: {reserve} pages"
    );
    let sids = smmu_backend::stream_ids(platform, &platform.smmus[0], 16);
    assert!(
        smmu_backend::stream_table_bytes(&sids, Some(8)) <= m.smmu - sizing::SMMU_FIXED_BYTES,
        "{name}"
    );

    // The host stage-2 built from it maps every RAM byte but the hyp's, and none of the hyp's.
    let devices = warden_core::devices::classify(platform, &hyp);
    let s2 =
        HostStage2::build(&HostS2Layout::from_devices(&devices, plan.ram_leaves).spec()).unwrap();
    let mut mapped = 0;
    for leaf in s2.leaves() {
        for h in &hyp {
            assert!(!leaf.ipa.overlaps(h), "{name}: {leaf:?}");
        }
        if leaf.kind == MemKind::Ram {
            mapped += leaf.ipa.size;
        }
    }
    assert_eq!(mapped, platform.memory_size() - m.total(), "{name}");
}

#[test]
fn real_qemu_dtbs() {
    let mut last_bp = u64::MAX;
    for (name, dtb, ram, ranges) in DTBS {
        let platform = warden_dt::parse(dtb).unwrap();
        assert_eq!(platform.memory_size(), ram, "{name}");
        assert_eq!(platform.memory.len(), ranges, "{name}");
        let plan = qemu_plan(&platform).unwrap();
        check_plan(name, &platform, &plan);
        // With blocks (`warden.host_s2=blocks`): the same plan less the level-3 tables, and its host stage-2
        // (blocks) maps the same RAM.
        let blocks = sizing::plan(&platform, RamLeaves::Blocks, 0, &LOADED).unwrap();
        check_plan(name, &platform, &blocks);
        assert_eq!(blocks.memory.host_s2_tables, 0, "{name}");
        assert!(blocks.memory.total() < plan.memory.total(), "{name}");
        println!(
            "{name}: blocks {} KiB, {}.{:02} % of RAM",
            blocks.memory.total() >> 10,
            blocks.memory.basis_points_of(ram) / 100,
            blocks.memory.basis_points_of(ram) % 100
        );
        let bp = plan.memory.basis_points_of(ram);
        println!(
            "{name}: {} KiB, {}.{:02} % of RAM, at {:#x}",
            plan.memory.total() >> 10,
            bp / 100,
            bp % 100,
            plan.region.base
        );
        if ram == 16 * GIB {
            assert!(bp <= 50, "{name}: {bp} basis points, goal ≤ 0.5 %");
        }
        if ranges == 1 {
            assert!(bp <= last_bp, "{name}: share of RAM must fall as RAM grows");
            last_bp = bp;
            // Top of RAM, the highest placement there is.
            let top = platform.memory[0].end();
            assert!(
                top - plan.region.end() < plan.region.size.next_power_of_two(),
                "{name}"
            );
        }
    }
}

#[test]
fn each_its_node_is_sized() {
    let heap = warden_core::gic::its::HEAP_BYTES;
    let platform = warden_dt::parse(DTBS[0].1).unwrap();
    let one = qemu_plan(&platform).unwrap();
    assert_eq!(platform.gic.as_ref().unwrap().its.len(), 1);
    assert_eq!(one.memory.its, heap, "QEMU virt's one ITS");
    // The same machine with four ITSes (bases 128 KiB apart, as a GIC-600 places them).
    let mut four = platform.clone();
    let gic = four.gic.as_mut().unwrap();
    let its0 = gic.its[0].clone();
    for i in 1..4u64 {
        let mut its = its0.clone();
        its.reg.base += i * 0x2_0000;
        its.path = format!("/intc@8000000/its@{:x}", its.reg.base);
        its.phandle = None;
        gic.its.push(its);
    }
    let plan = qemu_plan(&four).unwrap();
    check_plan("four ITSes", &four, &plan);
    assert_eq!(plan.memory.its, 4 * heap);
    assert!(plan.memory.total() >= one.memory.total() + 3 * heap);
    // No GIC, no ITS heap.
    let mut none = platform.clone();
    none.gic = None;
    assert_eq!(qemu_plan(&none).unwrap().memory.its, 0);
}

fn model(dtb: &[u8]) -> DeviceTree {
    DeviceTree::from_fdt(&Fdt::new(dtb).unwrap())
}

/// The 1 GiB fixture with its memory node's `reg` replaced by `cells` (2 address + 2 size cells each).
fn with_memory(cells: &[u32], extra_node: Option<&[u32]>) -> Vec<u8> {
    let mut m = model(DTBS[0].1);
    let mem = m.find_node_mut("/memory@40000000").unwrap();
    mem.add_property(DeviceTreeProperty::new("reg", cells.to_vec()).unwrap());
    if let Some(extra) = extra_node {
        let mut node = dtoolkit::model::DeviceTreeNode::new("memory@100000000").unwrap();
        node.add_property(DeviceTreeProperty::new("device_type", "memory").unwrap());
        node.add_property(DeviceTreeProperty::new("reg", extra.to_vec()).unwrap());
        m.root.add_child(node);
    }
    m.to_dtb()
}

#[test]
fn memory_with_a_hole_above_4g() {
    // 1 GiB at 1 GiB and 2 GiB at 8 GiB: the hole between costs nothing, the region goes to the top range.
    let dtb = with_memory(
        &[0, 0x4000_0000, 0, 0x4000_0000],
        Some(&[2, 0, 0, 0x8000_0000]),
    );
    let platform = warden_dt::parse(&dtb).unwrap();
    assert_eq!(platform.memory.len(), 2);
    let plan = qemu_plan(&platform).unwrap();
    check_plan("hole", &platform, &plan);
    assert!(plan.region.base >= 8 * GIB);
}

#[test]
fn hostile_memory_nodes_are_errors() {
    let cases: [(&str, Vec<u8>); 4] = [
        ("zero size", with_memory(&[0, 0x4000_0000, 0, 0], None)),
        (
            "overlapping nodes",
            with_memory(&[0, 0x4000_0000, 1, 0], Some(&[1, 0, 0, 0x4000_0000])),
        ),
        ("huge", with_memory(&[0, 0x4000_0000, 0x7fff_ffff, 0], None)),
        (
            "unaligned",
            with_memory(&[0, 0x4000_0800, 0, 0x4000_0000], None),
        ),
    ];
    for (name, dtb) in cases {
        // The parser may refuse it already; if it accepts it, sizing must refuse it (never panic).
        let Ok(platform) = warden_dt::parse(&dtb) else {
            continue;
        };
        let r = qemu_plan(&platform);
        println!("{name}: {r:?}");
        assert!(r.is_err(), "{name}: {r:?}");
    }
    // Too small: 16 MiB of RAM cannot hold the fixed carve-out, the DTB slot and the sized part.
    let tiny = warden_dt::parse(&with_memory(&[0, 0x4000_0000, 0, 0x100_0000], None)).unwrap();
    match qemu_plan(&tiny) {
        Err(SizingError::NoRoom { need, found }) => assert!(need > found),
        other => panic!("tiny: {other:?}"),
    }
}

/// The README's table of the hyp's memory at 64–512 GiB, computed with the formula the hyp uses on QEMU virt's
/// layout (RAM from 1 GiB, the ITS doorbell frame, 65536 StreamIDs), and for 2 TiB of RAM from 512 GiB (a
/// server's layout: RAM ends at 2.5 TiB, so the host-identity domain is 42 bits wide from a level-0 root).
fn readme_rows() -> Vec<String> {
    const MIB: u64 = 1 << 20;
    let doorbells = [PhysRange {
        base: 0x0809_0000,
        size: 0x1_0000,
    }];
    let sids = [warden_core::dispatch::SidRange {
        base: 0,
        count: 0x1_0000,
    }];
    [(64, 1), (128, 1), (256, 1), (512, 1), (2048, 512)]
        .iter()
        .map(|&(gib, from)| {
            let ram = [PhysRange {
                base: from * GIB,
                size: gib * GIB,
            }];
            let label = if from == 1 {
                format!("{gib} GiB")
            } else {
                format!("{gib} GiB from {from} GiB")
            };
            let m = |ram_leaves| {
                sizing::hyp_memory(&sizing::Machine {
                    ram: &ram,
                    doorbells: &doorbells,
                    sids: &sids,
                    its: 1,
                    ram_leaves,
                    identity_iova_bits: 0,
                })
                .unwrap()
            };
            let (m, blocks) = (m(RamLeaves::Pages), m(RamLeaves::Blocks));
            let share = |m: &sizing::HypMemory| {
                let bp = m.basis_points_of(gib * GIB);
                format!("{}.{:02} %", bp / 100, bp % 100)
            };
            let mib = |b: u64| format!("{:.1}", b as f64 / MIB as f64);
            format!(
                "| {label} | computed | {} | {} | {} | {} | {} | {} MiB | {} | {} MiB | {} |",
                mib(m.fixed),
                mib(m.smmu),
                mib(m.ownership),
                mib(m.identity_tables),
                mib(m.host_s2_tables),
                m.total() / MIB,
                share(&m),
                blocks.total() / MIB,
                share(&blocks)
            )
        })
        .collect()
}

#[test]
fn readme_table_matches_the_formula() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let rows = readme_rows();
    let missing: Vec<&String> = rows
        .iter()
        .filter(|r| !readme.contains(r.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "README.md's hyp memory table is stale; the formula gives:\n{}",
        rows.join("\n")
    );
}
