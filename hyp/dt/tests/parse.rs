//! `parse` against DTBs dumped by QEMU 10.0.2's virt machine (`tests/data/`, see its README).

use warden_dt::{
    EnableMethod, IommuMapEntry, Mpidr, MsiMapEntry, PciSpace, Phandle, PhysRange, PsciMethod,
    parse,
};

const SMP2_1G: &[u8] = include_bytes!("data/virt-smp2-1g.dtb");
const SMP4_2G: &[u8] = include_bytes!("data/virt-smp4-2g.dtb");
const INITRD_APPEND: &[u8] = include_bytes!("data/virt-initrd-append.dtb");

fn r(base: u64, size: u64) -> PhysRange {
    PhysRange::new(base, size).unwrap()
}

#[test]
fn memory_and_cpus() {
    let p = parse(SMP2_1G).unwrap();
    assert_eq!(p.memory, vec![r(0x4000_0000, 0x4000_0000)]);
    assert_eq!(p.memory_size(), 1 << 30);
    assert_eq!(p.cpus.len(), 2);
    for (i, cpu) in p.cpus.iter().enumerate() {
        assert_eq!(cpu.mpidr, Mpidr(i as u64));
        assert_eq!(cpu.enable_method, EnableMethod::Psci);
        assert!(cpu.enabled);
        assert_eq!(cpu.path, format!("/cpus/cpu@{i}"));
    }
    assert!(p.reserved.is_empty());

    let p = parse(SMP4_2G).unwrap();
    assert_eq!(p.memory, vec![r(0x4000_0000, 0x8000_0000)]);
    let mpidrs: Vec<_> = p.cpus.iter().map(|c| c.mpidr.0).collect();
    assert_eq!(mpidrs, [0, 1, 2, 3]);
}

#[test]
fn uart_gic_psci() {
    let p = parse(SMP2_1G).unwrap();
    let uart = p.uart.as_ref().unwrap();
    assert_eq!(uart.path, "/pl011@9000000");
    assert_eq!(uart.reg, r(0x0900_0000, 0x1000));

    let gic = p.gic.as_ref().unwrap();
    assert_eq!(gic.path, "/intc@8000000");
    assert_eq!(gic.phandle, Some(Phandle(0x8003)));
    assert_eq!(gic.distributor, r(0x0800_0000, 0x1_0000));
    assert_eq!(gic.redistributors, vec![r(0x080a_0000, 0xf6_0000)]);
    assert!(gic.cpu_interfaces.is_empty());
    assert_eq!(gic.its.len(), 1);
    assert_eq!(gic.its[0].reg, r(0x0808_0000, 0x2_0000));
    assert_eq!(gic.its[0].phandle, Some(Phandle(0x8004)));
    // GITS_TRANSLATER lives at ITS base + 0x10040, in the second 64 KiB frame.
    assert_eq!(
        gic.its[0].translation_frame(),
        Some(r(0x0809_0000, 0x1_0000))
    );

    let psci = p.psci.as_ref().unwrap();
    assert_eq!(psci.method, PsciMethod::Smc);
    assert_eq!(
        psci.compatible,
        ["arm,psci-1.0", "arm,psci-0.2", "arm,psci"]
    );
    assert_eq!(psci.cpu_on, Some(0xc400_0003));
    assert_eq!(psci.cpu_off, Some(0x8400_0002));
    assert_eq!(psci.cpu_suspend, Some(0xc400_0001));
    assert_eq!(psci.migrate, Some(0xc400_0005));
}

#[test]
fn smmu_and_pci() {
    let p = parse(SMP2_1G).unwrap();
    assert_eq!(p.smmus.len(), 1);
    let smmu = &p.smmus[0];
    assert_eq!(smmu.path, "/smmuv3@9050000");
    assert_eq!(smmu.reg, r(0x0905_0000, 0x2_0000));
    assert_eq!(smmu.phandle, Some(Phandle(0x8005)));
    assert_eq!(smmu.iommu_cells, 1);
    assert!(smmu.dma_coherent);
    assert_eq!(
        smmu.interrupt_names,
        ["eventq", "priq", "cmdq-sync", "gerror"]
    );
    let intids: Vec<_> = smmu
        .interrupts
        .iter()
        .map(|i| i.gic_intid().unwrap())
        .collect();
    assert_eq!(intids, [32 + 0x4a, 32 + 0x4b, 32 + 0x4c, 32 + 0x4d]);
    assert_eq!(smmu.irq("gerror").unwrap().cells, [0, 0x4d, 1]);
    assert!(smmu.interrupts.iter().all(|i| i.parent == Phandle(0x8003)));

    assert_eq!(p.pci_hosts.len(), 1);
    let pci = &p.pci_hosts[0];
    assert_eq!(pci.path, "/pcie@10000000");
    // virtualization=on puts the ECAM high.
    assert_eq!(pci.ecam, r(0x40_1000_0000, 0x1000_0000));
    assert_eq!(pci.bus_range, (0, 0xff));
    assert_eq!(
        pci.iommu_map,
        [IommuMapEntry {
            rid_base: 0,
            iommu: Phandle(0x8005),
            sid_base: 0,
            length: 0x1_0000
        }]
    );
    assert_eq!(pci.iommu_map_mask, None);
    // msi-map = <0 &its 0 0x10000>: DeviceID = RID at the ITS.
    assert_eq!(
        pci.msi_map,
        [MsiMapEntry {
            rid_base: 0,
            msi_controller: Phandle(0x8004),
            msi_base: 0,
            length: 0x1_0000
        }]
    );
    assert_eq!(pci.msi_map_mask, None);
    assert_eq!(pci.stream_id(0x0108), Some((Phandle(0x8005), 0x0108)));
    assert!(p.smmu_by_phandle(pci.iommu_map[0].iommu).is_some());

    assert_eq!(pci.windows.len(), 3);
    assert_eq!(pci.windows[0].space, PciSpace::Io);
    assert_eq!(pci.windows[0].pci_addr, 0);
    assert_eq!(pci.windows[0].cpu, r(0x3eff_0000, 0x1_0000));
    assert_eq!(pci.windows[1].space, PciSpace::Mem32);
    assert_eq!(pci.windows[1].pci_addr, 0x1000_0000);
    assert_eq!(pci.windows[1].cpu, r(0x1000_0000, 0x2eff_0000));
    assert_eq!(pci.windows[2].space, PciSpace::Mem64);
    assert_eq!(pci.windows[2].pci_addr, 0x80_0000_0000);
    assert_eq!(pci.windows[2].cpu, r(0x80_0000_0000, 0x80_0000_0000));
    assert!(pci.windows.iter().all(|w| !w.prefetchable));

    // QEMU's virt has no platform device with `iommus`.
    assert!(p.iommu_clients.is_empty());
}

#[test]
fn chosen() {
    let p = parse(SMP2_1G).unwrap();
    assert_eq!(p.chosen.bootargs, None);
    assert_eq!(p.chosen.stdout_path.as_deref(), Some("/pl011@9000000"));
    assert_eq!(p.chosen.initrd, None);

    let p = parse(INITRD_APPEND).unwrap();
    assert_eq!(p.chosen.bootargs.as_deref(), Some("foo"));
    // 100000-byte initrd at 0x48000000.
    assert_eq!(p.chosen.initrd, Some(r(0x4800_0000, 100_000)));
}

#[test]
fn mmio_list() {
    let p = parse(SMP2_1G).unwrap();
    let find = |path: &str| -> Vec<PhysRange> {
        p.mmio
            .iter()
            .filter(|m| m.path == path)
            .map(|m| m.range)
            .collect()
    };
    assert_eq!(find("/pl011@9000000"), [r(0x0900_0000, 0x1000)]);
    assert_eq!(find("/smmuv3@9050000"), [r(0x0905_0000, 0x2_0000)]);
    assert_eq!(
        find("/intc@8000000"),
        [r(0x0800_0000, 0x1_0000), r(0x080a_0000, 0xf6_0000)]
    );
    assert_eq!(
        find("/intc@8000000/its@8080000"),
        [r(0x0808_0000, 0x2_0000)]
    );
    assert_eq!(
        find("/flash@0"),
        [r(0, 0x400_0000), r(0x400_0000, 0x400_0000)]
    );
    assert_eq!(find("/pcie@10000000"), [r(0x40_1000_0000, 0x1000_0000)]);
    assert_eq!(find("/virtio_mmio@a003e00"), [r(0x0a00_3e00, 0x200)]);
    // Neither RAM nor CPU ids are MMIO.
    assert!(find("/memory@40000000").is_empty());
    assert!(p.mmio.iter().all(|m| !m.path.starts_with("/cpus")));
    assert!(p.mmio.iter().all(|m| m.enabled));
    // 32 virtio-mmio + flash (2) + pl011, pl031, pl061, fw-cfg, smmu, pcie, gic (2), its.
    assert_eq!(p.mmio.len(), 32 + 2 + 9);

    let ranges = p.device_ranges();
    assert!(ranges.windows(2).all(|w| w[0].end() < w[1].base));
    assert!(ranges.iter().any(|r| r.contains(0x0905_0000)));
    assert!(ranges.iter().any(|r| r.contains(0x80_0000_0000)));
    assert!(ranges.iter().all(|r| !r.contains(0x4000_0000)));
}

#[test]
fn longer_slice_accepted() {
    let mut padded = SMP2_1G.to_vec();
    padded.extend_from_slice(&[0xff; 4096]);
    assert_eq!(parse(&padded).unwrap(), parse(SMP2_1G).unwrap());
    assert_eq!(warden_dt::dtb_total_size(SMP2_1G).unwrap(), SMP2_1G.len());
}
