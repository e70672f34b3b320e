//! Semantically bad DTBs: each ends in the precise `DtError`, never a panic. And the unusual but
//! legal encodings (32-bit initrd cells, aliases, nested buses) decode right.

mod common;

use common::{RawFdt, edited, minimal};
use dtoolkit::model::{DeviceTree, DeviceTreeNode, DeviceTreeProperty};
use warden_dt::{DtError, MAX_DEPTH, Phandle, PhysRange, parse, rewrite_for_host};

fn prop<T: dtoolkit::ToPropertyValue>(name: &str, value: T) -> DeviceTreeProperty {
    DeviceTreeProperty::new(name, value).unwrap()
}

fn node<'a>(m: &'a mut DeviceTree, path: &str) -> &'a mut DeviceTreeNode {
    m.find_node_mut(path).unwrap()
}

/// The property and value length of a [`DtError::BadProperty`], `None` for any other result.
fn bad_property<T>(r: Result<T, DtError>) -> Option<(&'static str, usize)> {
    match r {
        Err(DtError::BadProperty { property, len, .. }) => Some((property, len)),
        _ => None,
    }
}

fn err_path(e: DtError) -> String {
    match e {
        DtError::BadProperty { path, .. }
        | DtError::MissingProperty { path, .. }
        | DtError::BadValue { path, .. }
        | DtError::BadCells { path, .. }
        | DtError::UnknownPhandle { path, .. }
        | DtError::DuplicatePhandle { path, .. }
        | DtError::AddressOverflow { path, .. }
        | DtError::Untranslatable { path, .. }
        | DtError::TooDeep { path, .. }
        | DtError::DuplicateNode { path } => path.as_str().to_string(),
        other => panic!("no path in {other:?}"),
    }
}

fn edits() -> warden_dt::HostDtEdits<'static> {
    warden_dt::HostDtEdits {
        reserved_no_map: vec![(0x4000_0000, 0x1e0_0000)],
        smmu_compatible: "warden,test",
        disable: Vec::new(),
    }
}

#[test]
fn minimal_machine_parses() {
    let p = parse(&minimal(|_| {})).unwrap();
    assert_eq!(
        p.memory,
        [PhysRange::new(0x4000_0000, 0x1000_0000).unwrap()]
    );
    assert_eq!(p.cpus.len(), 1);
    assert!(p.uart.is_none() && p.gic.is_none() && p.psci.is_none());
    assert!(p.smmus.is_empty() && p.pci_hosts.is_empty() && p.mmio.is_empty());
}

#[test]
fn nesting_limit() {
    let nested = |depth: usize| {
        minimal(|f| {
            for _ in 0..depth {
                f.begin("n");
            }
            for _ in 0..depth {
                f.end();
            }
        })
    };
    // Root children are depth 1.
    assert!(parse(&nested(MAX_DEPTH)).is_ok());
    assert!(rewrite_for_host(&nested(MAX_DEPTH), &edits()).is_ok());
    let too_deep = nested(MAX_DEPTH + 1);
    assert!(matches!(
        parse(&too_deep),
        Err(DtError::TooDeep {
            limit: MAX_DEPTH,
            ..
        })
    ));
    assert!(matches!(
        rewrite_for_host(&too_deep, &edits()),
        Err(DtError::TooDeep { .. })
    ));
    // Far deeper than any stack would survive if anything recursed on it.
    let hostile = nested(200_000);
    assert!(matches!(parse(&hostile), Err(DtError::TooDeep { .. })));
    assert!(matches!(
        rewrite_for_host(&hostile, &edits()),
        Err(DtError::TooDeep { .. })
    ));
}

#[test]
fn duplicate_sibling_names() {
    let dtb = minimal(|f| {
        f.begin("dev@1000")
            .cells("reg", &[0, 0x1000, 0, 0x10])
            .end();
        f.begin("dev@1000")
            .cells("reg", &[0, 0x2000, 0, 0x10])
            .end();
    });
    // Reading keeps both (the MMIO list is what the blob says)...
    assert_eq!(parse(&dtb).unwrap().mmio.len(), 2);
    // ...but the rewrite cannot keep both, so it refuses.
    assert_eq!(
        rewrite_for_host(&dtb, &edits())
            .map(|_| ())
            .map_err(err_path),
        Err("/dev@1000".to_string())
    );
}

#[test]
fn missing_required_nodes() {
    let no_mem = edited(|m| {
        m.root.remove_child("memory@40000000").unwrap();
    });
    assert_eq!(parse(&no_mem), Err(DtError::MissingNode("/memory")));
    let disabled_mem =
        edited(|m| node(m, "/memory@40000000").add_property(prop("status", "disabled")));
    assert_eq!(parse(&disabled_mem), Err(DtError::MissingNode("/memory")));
    let no_cpus = edited(|m| {
        m.root.remove_child("cpus").unwrap();
    });
    assert_eq!(parse(&no_cpus), Err(DtError::MissingNode("/cpus")));
}

#[test]
fn bad_cells() {
    for cells in [3u32, 0xffff_ffff, 0] {
        let dtb = edited(|m| m.root.add_property(prop("#address-cells", cells)));
        assert!(
            matches!(
                parse(&dtb),
                Err(DtError::BadCells { .. } | DtError::BadProperty { .. })
            ),
            "{cells}"
        );
    }
    let wrong_len = edited(|m| m.root.add_property(prop("#address-cells", vec![1u8, 2])));
    assert_eq!(err_path(parse(&wrong_len).unwrap_err()), "/");
}

#[test]
fn address_overflow() {
    let dtb = edited(|m| {
        node(m, "/memory@40000000")
            .add_property(prop("reg", vec![0xffff_ffffu32, 0xffff_f000, 0, 0x2000]))
    });
    assert!(matches!(
        parse(&dtb),
        Err(DtError::AddressOverflow {
            base: 0xffff_ffff_ffff_f000,
            size: 0x2000,
            ..
        })
    ));
}

#[test]
fn iommu_map_errors() {
    let unknown = edited(|m| {
        node(m, "/pcie@10000000").add_property(prop("iommu-map", vec![0u32, 0x1234, 0, 0x100]))
    });
    assert_eq!(
        parse(&unknown),
        Err(DtError::UnknownPhandle {
            path: "/pcie@10000000".into(),
            phandle: 0x1234
        })
    );
    let short = edited(|m| {
        node(m, "/pcie@10000000").add_property(prop("iommu-map", vec![0u32, 0x8005, 0]))
    });
    assert_eq!(bad_property(parse(&short)), Some(("iommu-map", 12)));
    let masked =
        edited(|m| node(m, "/pcie@10000000").add_property(prop("iommu-map-mask", 0xff00u32)));
    let p = parse(&masked).unwrap();
    assert_eq!(p.pci_hosts[0].iommu_map_mask, Some(0xff00));
    assert_eq!(
        p.pci_hosts[0].stream_id(0x0123),
        Some((Phandle(0x8005), 0x0100))
    );
}

#[test]
fn pci_errors() {
    let bus =
        edited(|m| node(m, "/pcie@10000000").add_property(prop("bus-range", vec![0u32, 0x100])));
    assert!(matches!(
        parse(&bus),
        Err(DtError::BadValue {
            property: "bus-range",
            value: 0x100,
            ..
        })
    ));
    let ranges = edited(|m| node(m, "/pcie@10000000").add_property(prop("ranges", vec![0u32; 5])));
    assert_eq!(bad_property(parse(&ranges)).map(|(p, _)| p), Some("ranges"));
}

#[test]
fn interrupt_errors() {
    let no_parent =
        edited(|m| node(m, "/smmuv3@9050000").add_property(prop("interrupt-parent", 0x4242u32)));
    assert_eq!(
        parse(&no_parent),
        Err(DtError::UnknownPhandle {
            path: "/smmuv3@9050000".into(),
            phandle: 0x4242
        })
    );
    let no_cells = edited(|m| {
        node(m, "/intc@8000000").remove_property("#interrupt-cells");
    });
    assert_eq!(
        parse(&no_cells),
        Err(DtError::MissingProperty {
            path: "/intc@8000000".into(),
            property: "#interrupt-cells"
        })
    );
    let zero = edited(|m| node(m, "/intc@8000000").add_property(prop("#interrupt-cells", 0u32)));
    assert_eq!(
        bad_property(parse(&zero)).map(|(p, _)| p),
        Some("interrupts")
    );
    let redist =
        edited(|m| node(m, "/intc@8000000").add_property(prop("#redistributor-regions", 5u32)));
    assert!(matches!(
        parse(&redist),
        Err(DtError::BadValue {
            property: "#redistributor-regions",
            value: 5,
            ..
        })
    ));
}

#[test]
fn duplicate_phandle() {
    let dtb = edited(|m| node(m, "/pl011@9000000").add_property(prop("phandle", 0x8005u32)));
    assert!(matches!(
        parse(&dtb),
        Err(DtError::DuplicatePhandle {
            phandle: 0x8005,
            ..
        })
    ));
}

#[test]
fn initrd_cells() {
    let chosen = |start: DeviceTreeProperty, end: DeviceTreeProperty| {
        edited(|m| {
            let c = node(m, "/chosen");
            c.add_property(start);
            c.add_property(end);
        })
    };
    let p = parse(&chosen(
        prop("linux,initrd-start", 0x4800_0000u32),
        prop("linux,initrd-end", 0x4810_0000u32),
    ))
    .unwrap();
    assert_eq!(p.chosen.initrd, PhysRange::new(0x4800_0000, 0x10_0000));
    let p = parse(&chosen(
        prop("linux,initrd-start", 0x1_0000_0000u64),
        prop("linux,initrd-end", 0x1_0000_1000u64),
    ))
    .unwrap();
    assert_eq!(p.chosen.initrd, PhysRange::new(0x1_0000_0000, 0x1000));
    // Mixed widths are legal too.
    let p = parse(&chosen(
        prop("linux,initrd-start", 0x4800_0000u32),
        prop("linux,initrd-end", 0x4800_1000u64),
    ))
    .unwrap();
    assert_eq!(p.chosen.initrd, PhysRange::new(0x4800_0000, 0x1000));
    let backwards = chosen(
        prop("linux,initrd-start", 0x4810_0000u32),
        prop("linux,initrd-end", 0x4800_0000u32),
    );
    assert!(matches!(
        parse(&backwards),
        Err(DtError::BadValue {
            property: "linux,initrd-end",
            ..
        })
    ));
    let odd = chosen(
        prop("linux,initrd-start", vec![1u8, 2, 3]),
        prop("linux,initrd-end", 0x4800_0000u32),
    );
    assert_eq!(bad_property(parse(&odd)), Some(("linux,initrd-start", 3)));
    let half =
        edited(|m| node(m, "/chosen").add_property(prop("linux,initrd-start", 0x4800_0000u32)));
    assert!(matches!(
        parse(&half),
        Err(DtError::MissingProperty {
            property: "linux,initrd-end",
            ..
        })
    ));
}

#[test]
fn stdout_path_alias_and_second_uart() {
    let dtb = edited(|m| {
        let mut uart2 = DeviceTreeNode::new("pl011@9040000").unwrap();
        uart2.add_property(prop("compatible", vec!["arm,pl011", "arm,primecell"]));
        uart2.add_property(prop("reg", vec![0u32, 0x0904_0000, 0, 0x1000]));
        m.root.add_child(uart2);
        node(m, "/aliases").add_property(prop("serial1", "/pl011@9040000"));
        node(m, "/chosen").add_property(prop("stdout-path", "serial1:115200n8"));
    });
    let p = parse(&dtb).unwrap();
    assert_eq!(p.chosen.stdout_path.as_deref(), Some("serial1:115200n8"));
    let uart = p.uart.unwrap();
    assert_eq!(uart.path, "/pl011@9040000");
    assert_eq!(uart.reg, PhysRange::new(0x0904_0000, 0x1000).unwrap());

    // A stdout-path naming something else falls back to the first enabled PL011.
    let other = edited(|m| node(m, "/chosen").add_property(prop("stdout-path", "/fw-cfg@9020000")));
    assert_eq!(parse(&other).unwrap().uart.unwrap().path, "/pl011@9000000");
}

#[test]
fn nested_bus_translation() {
    let child = |reg: Vec<u32>| {
        edited(move |m| {
            let mut dev = DeviceTreeNode::new("dev@1000").unwrap();
            dev.add_property(prop("reg", reg));
            node(m, "/platform-bus@c000000").add_child(dev);
        })
    };
    // platform-bus: ranges = <0 0 0xc000000 0x2000000>, 1/1 cells.
    let p = parse(&child(vec![0x1000, 0x100])).unwrap();
    let dev: Vec<_> = p
        .mmio
        .iter()
        .filter(|m| m.path == "/platform-bus@c000000/dev@1000")
        .collect();
    assert_eq!(dev.len(), 1);
    assert_eq!(dev[0].range, PhysRange::new(0x0c00_1000, 0x100).unwrap());
    assert_eq!(
        parse(&child(vec![0x1ff_ff00, 0x200])),
        Err(DtError::Untranslatable {
            path: "/platform-bus@c000000/dev@1000".into(),
            address: 0x1ff_ff00,
            size: 0x200
        })
    );
    // A bus without `ranges` is not memory-mapped: its children are no MMIO.
    let opaque = edited(|m| {
        let mut bus = DeviceTreeNode::new("i2c@9060000").unwrap();
        bus.add_property(prop("reg", vec![0u32, 0x0906_0000, 0, 0x1000]));
        bus.add_property(prop("#address-cells", 1u32));
        bus.add_property(prop("#size-cells", 0u32));
        let mut dev = DeviceTreeNode::new("rtc@68").unwrap();
        dev.add_property(prop("reg", 0x68u32));
        bus.add_child(dev);
        m.root.add_child(bus);
    });
    let p = parse(&opaque).unwrap();
    assert!(p.mmio.iter().any(|m| m.path == "/i2c@9060000"));
    assert!(!p.mmio.iter().any(|m| m.path.contains("rtc")));
}

#[test]
fn iommus_clients() {
    let dtb = edited(|m| {
        node(m, "/virtio_mmio@a000000").add_property(prop("iommus", vec![0x8005u32, 0x42]));
    });
    let p = parse(&dtb).unwrap();
    assert_eq!(p.iommu_clients.len(), 1);
    assert_eq!(p.iommu_clients[0].path, "/virtio_mmio@a000000");
    assert_eq!(p.iommu_clients[0].iommus[0].iommu, Phandle(0x8005));
    assert_eq!(p.iommu_clients[0].iommus[0].ids, [0x42]);
    let short =
        edited(|m| node(m, "/virtio_mmio@a000000").add_property(prop("iommus", vec![0x8005u32])));
    assert_eq!(bad_property(parse(&short)).map(|(p, _)| p), Some("iommus"));
    let unknown = edited(|m| {
        node(m, "/virtio_mmio@a000000").add_property(prop("iommus", vec![0x9999u32, 1]))
    });
    assert!(matches!(
        parse(&unknown),
        Err(DtError::UnknownPhandle {
            phandle: 0x9999,
            ..
        })
    ));
}

#[test]
fn psci_method() {
    let hvc = edited(|m| node(m, "/psci").add_property(prop("method", "hvc")));
    assert_eq!(
        parse(&hvc).unwrap().psci.unwrap().method,
        warden_dt::PsciMethod::Hvc
    );
    let bad = edited(|m| node(m, "/psci").add_property(prop("method", "svc")));
    assert_eq!(bad_property(parse(&bad)).map(|(p, _)| p), Some("method"));
    let none = edited(|m| {
        node(m, "/psci").remove_property("method");
    });
    assert!(matches!(
        parse(&none),
        Err(DtError::MissingProperty {
            property: "method",
            ..
        })
    ));
}

#[test]
fn disabled_smmu_not_listed_but_relabelled() {
    let dtb = edited(|m| node(m, "/smmuv3@9050000").add_property(prop("status", "disabled")));
    let p = parse(&dtb).unwrap();
    assert!(p.smmus.is_empty());
    // The rewrite still hides it from the host's driver.
    let out = rewrite_for_host(&dtb, &edits()).unwrap();
    let fdt = dtoolkit::fdt::Fdt::new(&out).unwrap();
    let compat: Vec<&str> = fdt
        .find_node("/smmuv3@9050000")
        .unwrap()
        .compatible()
        .unwrap()
        .collect();
    assert_eq!(compat, ["warden,test"]);
}

#[test]
fn disabled_devices_flagged() {
    let dtb = edited(|m| node(m, "/pl031@9010000").add_property(prop("status", "disabled")));
    let p = parse(&dtb).unwrap();
    let rtc = p.mmio.iter().find(|m| m.path == "/pl031@9010000").unwrap();
    assert!(!rtc.enabled);
    assert!(p.device_ranges().iter().all(|r| !r.contains(0x0901_0000)));
}

#[test]
fn raw_builder_matches_model() {
    // The hand-written blobs above go through the same validation as QEMU's.
    let mut f = RawFdt::default();
    let blob = f.begin("").end().finish();
    assert!(dtoolkit::fdt::Fdt::new(&blob).is_ok());
}
