//! `rewrite_for_host` on QEMU virt DTBs: the output re-parses, carries exactly the requested edits,
//! and nothing else changed.

use std::process::{Command, Stdio};

use dtoolkit::fdt::Fdt;
use dtoolkit::model::{DeviceTree, DeviceTreeNode, DeviceTreeProperty};
use dtoolkit::{Node, Property};
use warden_dt::{DtError, HostDtEdits, Phandle, PhysRange, check_fits, parse, rewrite_for_host};

const SMP2_1G: &[u8] = include_bytes!("data/virt-smp2-1g.dtb");
const INITRD_APPEND: &[u8] = include_bytes!("data/virt-initrd-append.dtb");
/// Stand-in for `warden_abi`'s compatible string (this crate takes it as a parameter).
const PV_SMMU: &str = "warden,test-pv-smmu";
/// The host DTB slot (`warden_core::layout::HOST_DTB_MAX_SIZE`).
const HOST_DTB_MAX_SIZE: usize = 2 << 20;
/// The hyp carve-out of the boot protocol.
const CARVE_OUT: (u64, u64) = (0x4000_0000, 0x1e0_0000);

fn edits() -> HostDtEdits<'static> {
    HostDtEdits {
        reserved_no_map: vec![CARVE_OUT],
        smmu_compatible: PV_SMMU,
        disable: Vec::new(),
    }
}

fn model(dtb: &[u8]) -> DeviceTree {
    DeviceTree::from_fdt(&Fdt::new(dtb).unwrap())
}

/// Applies by hand what the rewrite should do, on the model of the input.
fn expected(input: &[u8], regions: &[(u64, u64)]) -> DeviceTree {
    let mut m = model(input);
    let smmu = m.find_node_mut("/smmuv3@9050000").unwrap();
    smmu.add_property(DeviceTreeProperty::new("compatible", PV_SMMU).unwrap());
    let mut rm = DeviceTreeNode::new("reserved-memory").unwrap();
    rm.add_property(DeviceTreeProperty::new("#address-cells", 2u32).unwrap());
    rm.add_property(DeviceTreeProperty::new("#size-cells", 2u32).unwrap());
    rm.add_property(DeviceTreeProperty::new("ranges", &[] as &[u8]).unwrap());
    for &(base, size) in regions {
        let mut c = DeviceTreeNode::new(format!("warden@{base:x}")).unwrap();
        c.add_property(
            DeviceTreeProperty::new(
                "reg",
                vec![
                    (base >> 32) as u32,
                    base as u32,
                    (size >> 32) as u32,
                    size as u32,
                ],
            )
            .unwrap(),
        );
        c.add_property(DeviceTreeProperty::new("no-map", &[] as &[u8]).unwrap());
        rm.add_child(c);
    }
    m.root.add_child(rm);
    m
}

#[test]
fn whole_tree_is_input_plus_edits() {
    for input in [SMP2_1G, INITRD_APPEND] {
        let out = rewrite_for_host(input, &edits()).unwrap();
        assert_eq!(model(&out), expected(input, &[CARVE_OUT]));
    }
}

#[test]
fn reserved_region_and_smmu_relabel() {
    let out = rewrite_for_host(SMP2_1G, &edits()).unwrap();
    let p = parse(&out).unwrap();
    let carve = PhysRange::new(CARVE_OUT.0, CARVE_OUT.1).unwrap();
    assert_eq!(p.reserved.len(), 1);
    assert_eq!(p.reserved[0].range, carve);
    assert!(p.reserved[0].no_map);
    assert_eq!(
        p.reserved[0].path.as_deref(),
        Some("/reserved-memory/warden@40000000")
    );
    // RAM itself is still described whole: Linux carves the no-map region out.
    assert_eq!(p.memory, parse(SMP2_1G).unwrap().memory);

    // No node claims arm,smmu-v3 any more...
    assert!(p.smmus.is_empty());
    // ...but the node is there with its phandle, reg and interrupts, and iommu-map still targets it.
    let fdt = Fdt::new(&out).unwrap();
    let smmu = fdt.find_node("/smmuv3@9050000").unwrap();
    let compat: Vec<&str> = smmu.compatible().unwrap().collect();
    assert_eq!(compat, [PV_SMMU]);
    assert_eq!(
        smmu.property("phandle").unwrap().value_as::<u32>().unwrap(),
        0x8005
    );
    let before = Fdt::new(SMP2_1G)
        .unwrap()
        .find_node("/smmuv3@9050000")
        .unwrap();
    for name in [
        "reg",
        "interrupts",
        "interrupt-names",
        "#iommu-cells",
        "dma-coherent",
    ] {
        assert_eq!(
            smmu.property(name).unwrap().value(),
            before.property(name).unwrap().value(),
            "{name}"
        );
    }
    let pci = &p.pci_hosts[0];
    assert_eq!(pci.iommu_map[0].iommu, Phandle(0x8005));
    assert_eq!(pci.stream_id(0x10), Some((Phandle(0x8005), 0x10)));
    // The phandle still resolves (parse would fail with UnknownPhandle otherwise), to the SMMU's MMIO.
    assert!(p.mmio.iter().any(|m| m.path == "/smmuv3@9050000"
        && m.range == PhysRange::new(0x0905_0000, 0x2_0000).unwrap()));
}

#[test]
fn chosen_passes_through() {
    let out = rewrite_for_host(INITRD_APPEND, &edits()).unwrap();
    let props = |dtb: &[u8]| -> Vec<(String, Vec<u8>)> {
        let fdt = Fdt::new(dtb).unwrap();
        let chosen = fdt.find_node("/chosen").unwrap();
        chosen
            .properties()
            .map(|p| (p.name().to_string(), p.value().to_vec()))
            .collect()
    };
    let start = &INITRD_APPEND[..warden_dt::dtb_total_size(INITRD_APPEND).unwrap()];
    assert_eq!(props(&out), props(start));
    let (before, after) = (parse(INITRD_APPEND).unwrap(), parse(&out).unwrap());
    assert_eq!(after.chosen, before.chosen);
    assert_eq!(after.chosen.bootargs.as_deref(), Some("foo"));
    assert!(after.chosen.initrd.is_some());
    // Everything else the hyp reads is unchanged too (except the relabelled SMMU and the reservation).
    assert_eq!(after.cpus, before.cpus);
    assert_eq!(after.uart, before.uart);
    assert_eq!(after.gic, before.gic);
    assert_eq!(after.pci_hosts, before.pci_hosts);
    assert_eq!(after.psci, before.psci);
    assert_eq!(after.mmio, before.mmio);
}

#[test]
fn output_fits_and_is_packed() {
    let out = rewrite_for_host(SMP2_1G, &edits()).unwrap();
    check_fits(&out, HOST_DTB_MAX_SIZE).unwrap();
    // QEMU pads to 1 MiB; the model writes the blob packed.
    assert!(out.len() < 64 * 1024, "{}", out.len());
    assert_eq!(
        check_fits(&out, 1024),
        Err(DtError::TooLarge {
            size: out.len(),
            limit: 1024
        })
    );
    assert!(matches!(
        check_fits(&out[..out.len() - 1], HOST_DTB_MAX_SIZE),
        Err(DtError::Truncated { .. })
    ));
    assert!(matches!(
        check_fits(b"not a dtb at all, not a dtb at all, not a dtb", 1 << 20),
        Err(DtError::Malformed(_))
    ));
}

#[test]
fn several_regions_and_rewrite_again() {
    let regions = vec![(0x4000_0000, 0x1e0_0000), (0x1_2345_0000, 0x1_0000_0000)];
    let e = HostDtEdits {
        reserved_no_map: regions.clone(),
        smmu_compatible: PV_SMMU,
        disable: Vec::new(),
    };
    let out = rewrite_for_host(SMP2_1G, &e).unwrap();
    assert_eq!(model(&out), expected(SMP2_1G, &regions));
    // A second pass finds /reserved-memory present and adds to it.
    let e2 = HostDtEdits {
        reserved_no_map: vec![(0x7000_0000, 0x1000)],
        smmu_compatible: PV_SMMU,
        disable: Vec::new(),
    };
    let out2 = rewrite_for_host(&out, &e2).unwrap();
    let mut all = regions.clone();
    all.push((0x7000_0000, 0x1000));
    assert_eq!(model(&out2), expected(SMP2_1G, &all));
    let reserved: Vec<_> = parse(&out2)
        .unwrap()
        .reserved
        .iter()
        .map(|r| (r.range.base, r.range.size))
        .collect();
    assert_eq!(reserved, all);
}

#[test]
fn no_regions_only_relabels() {
    let e = HostDtEdits {
        reserved_no_map: vec![],
        smmu_compatible: PV_SMMU,
        disable: Vec::new(),
    };
    let out = rewrite_for_host(SMP2_1G, &e).unwrap();
    let mut exp = model(SMP2_1G);
    exp.find_node_mut("/smmuv3@9050000")
        .unwrap()
        .add_property(DeviceTreeProperty::new("compatible", PV_SMMU).unwrap());
    assert_eq!(model(&out), exp);
}

/// Builds a variant of the fixture with an existing `/reserved-memory` of the given cells.
fn with_reserved_memory(cells: u32, ranges: bool) -> Vec<u8> {
    let mut m = model(SMP2_1G);
    let mut rm = DeviceTreeNode::new("reserved-memory").unwrap();
    rm.add_property(DeviceTreeProperty::new("#address-cells", cells).unwrap());
    rm.add_property(DeviceTreeProperty::new("#size-cells", cells).unwrap());
    if ranges {
        rm.add_property(DeviceTreeProperty::new("ranges", &[] as &[u8]).unwrap());
    }
    let mut fw = DeviceTreeNode::new("firmware@50000000").unwrap();
    let reg: Vec<u32> = if cells == 2 {
        vec![0, 0x5000_0000, 0, 0x10_0000]
    } else {
        vec![0x5000_0000, 0x10_0000]
    };
    fw.add_property(DeviceTreeProperty::new("reg", reg).unwrap());
    fw.add_property(DeviceTreeProperty::new("no-map", &[] as &[u8]).unwrap());
    rm.add_child(fw);
    m.root.add_child(rm);
    m.to_dtb()
}

#[test]
fn existing_reserved_memory_is_extended() {
    let input = with_reserved_memory(2, false);
    let out = rewrite_for_host(&input, &edits()).unwrap();
    let p = parse(&out).unwrap();
    let paths: Vec<_> = p.reserved.iter().map(|r| r.path.clone().unwrap()).collect();
    assert_eq!(
        paths,
        [
            "/reserved-memory/firmware@50000000",
            "/reserved-memory/warden@40000000"
        ]
    );
    assert!(p.reserved.iter().all(|r| r.no_map));
    // `ranges` was missing (Linux would have ignored the node): now present and empty.
    let fdt = Fdt::new(&out).unwrap();
    assert_eq!(
        fdt.find_node("/reserved-memory")
            .unwrap()
            .property("ranges")
            .unwrap()
            .value(),
        b""
    );
}

#[test]
fn existing_reserved_memory_with_other_cells_is_refused() {
    // Root cells are 2/2; Linux ignores a /reserved-memory with 1/1, so our carve-out would be lost.
    let input = with_reserved_memory(1, true);
    assert!(matches!(
        rewrite_for_host(&input, &edits()),
        Err(DtError::BadCells { .. })
    ));
}

#[test]
fn bad_edits() {
    let bad = |reserved_no_map: Vec<(u64, u64)>, smmu_compatible| {
        rewrite_for_host(
            SMP2_1G,
            &HostDtEdits {
                reserved_no_map,
                smmu_compatible,
                disable: Vec::new(),
            },
        )
    };
    assert_eq!(
        bad(vec![(0x4000_0000, 0)], PV_SMMU),
        Err(DtError::BadRegion {
            base: 0x4000_0000,
            size: 0
        })
    );
    assert_eq!(
        bad(vec![(u64::MAX, 2)], PV_SMMU),
        Err(DtError::BadRegion {
            base: u64::MAX,
            size: 2
        })
    );
    assert_eq!(
        bad(vec![(0x4000_0000, 0x2000), (0x4000_1000, 0x1000)], PV_SMMU),
        Err(DtError::BadRegion {
            base: 0x4000_1000,
            size: 0x1000
        })
    );
    assert_eq!(
        bad(vec![(0x4000_0000, 0x1000), (0x4000_0000, 0x1000)], PV_SMMU),
        Err(DtError::BadRegion {
            base: 0x4000_0000,
            size: 0x1000
        })
    );
    // Touching is fine.
    assert!(bad(vec![(0x4000_0000, 0x1000), (0x4000_1000, 0x1000)], PV_SMMU).is_ok());
    assert_eq!(bad(vec![CARVE_OUT], ""), Err(DtError::BadCompatible));
    assert_eq!(bad(vec![CARVE_OUT], "a\0b"), Err(DtError::BadCompatible));
}

#[test]
fn boot_cpuid_and_memreserve_kept() {
    let mut m = model(SMP2_1G);
    m.memory_reservations
        .push(dtoolkit::memreserve::MemoryReservation::new(
            0x4100_0000,
            0x1000,
        ));
    let mut input = m.to_dtb();
    input[28..32].copy_from_slice(&1u32.to_be_bytes());
    let out = rewrite_for_host(&input, &edits()).unwrap();
    assert_eq!(&out[28..32], &1u32.to_be_bytes());
    let fdt = Fdt::new(&out).unwrap();
    let rsv: Vec<_> = fdt
        .memory_reservations()
        .map(|r| (r.address(), r.size()))
        .collect();
    assert_eq!(rsv, [(0x4100_0000, 0x1000)]);
    let p = parse(&out).unwrap();
    assert_eq!(p.reserved[0].path, None);
    assert!(!p.reserved[0].no_map);
}

#[test]
fn dtc_accepts_output() {
    let Ok(status) = Command::new("dtc")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
    else {
        eprintln!("dtc not installed: skipping (Fdt validation still ran in rewrite_for_host)");
        return;
    };
    assert!(status.success());
    let out = rewrite_for_host(INITRD_APPEND, &edits()).unwrap();
    let dir = std::env::temp_dir().join(format!("warden-dt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("host.dtb");
    std::fs::write(&path, &out).unwrap();
    let result = Command::new("dtc")
        .args(["-I", "dtb", "-O", "dts"])
        .arg(&path)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let dts = String::from_utf8(result.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "{stderr}");
    assert!(dts.contains("reserved-memory {"), "{dts}");
    assert!(dts.contains("warden@40000000 {"));
    assert!(dts.contains("no-map;"));
    assert!(dts.contains("reg = <0x00 0x40000000 0x00 0x1e00000>;"));
    assert!(dts.contains(&format!("compatible = \"{PV_SMMU}\";")));
    assert!(!dts.contains("arm,smmu-v3"));
    assert!(dts.contains("iommu-map = <0x00 0x8005 0x00 0x10000>;"));
    assert!(dts.contains("bootargs = \"foo\";"));
    // dtc's own checks on reserved-memory/unit addresses: nothing about our nodes.
    assert!(!stderr.contains("reserved-memory"), "{stderr}");
    assert!(!stderr.contains("warden@"), "{stderr}");
}

#[test]
fn disable_sets_status_on_exactly_those_nodes() {
    let disable = vec![
        "/fw-cfg@9020000",
        "/virtio_mmio@a000200",
        "/platform-bus@c000000",
    ];
    let out = rewrite_for_host(
        SMP2_1G,
        &HostDtEdits {
            disable: disable.clone(),
            ..edits()
        },
    )
    .unwrap();
    // The same as setting the status by hand on the input's model (nothing else changed).
    let mut want = expected(SMP2_1G, &[CARVE_OUT]);
    for path in &disable {
        want.find_node_mut(path)
            .unwrap()
            .add_property(DeviceTreeProperty::new("status", "disabled").unwrap());
    }
    assert_eq!(model(&out), want);
    let p = parse(&out).unwrap();
    for d in &p.devices {
        assert_eq!(d.enabled, !disable.contains(&d.path.as_str()), "{}", d.path);
    }
    // A path naming no node (or naming one only without its unit address) is an error.
    for bad in ["/fw-cfg@9020001", "/fw-cfg", "fw-cfg@9020000", ""] {
        let e = rewrite_for_host(
            SMP2_1G,
            &HostDtEdits {
                disable: vec!["/pl011@9000000", bad],
                ..edits()
            },
        );
        assert_eq!(e, Err(DtError::NoSuchNode { path: bad.into() }), "{bad}");
    }
}
