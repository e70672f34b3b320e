//! Device classification: which device nodes of the boot DT the host may reach, decided once at boot.
//!
//! Deny by default. Every node that occupies CPU physical address space ([`warden_dt::Platform::devices`])
//! gets exactly one [`DeviceClass`], and only the classified regions ([`ClassifiedDevice::host_regions`]) are
//! mapped in the host stage-2 ([`crate::host_s2::HostS2Layout::from_devices`]); nothing below RAM is mapped
//! wholesale. The rule, in order:
//!
//! 1. `status` not okay in the boot DT: [`DeviceClass::Disabled`] (not mapped, left as it is).
//! 2. Below a withheld or disabled node: withheld ([`WithholdReason::ParentWithheld`]).
//! 3. The SMMU (`arm,smmu-v3`): [`DeviceClass::HypOwned`], never mapped.
//! 4. The GICv3 and its ITS (`arm,gic-v3`, `arm,gic-v3-its`): [`DeviceClass::Emulated`], the frames of
//!    [`gic_host_regions`] mapped (the one place that decides which GIC frames the host reaches).
//! 5. A PCI host whose `iommu-map` sends every requester ID of its bus range to an SMMU the hyp owns, or a
//!    node whose `iommus` names only such SMMUs: [`DeviceClass::BehindSmmu`] (PCI: ECAM and the memory and
//!    I/O windows of `ranges`; otherwise its `reg`). Naming anything else: withheld.
//! 6. Most specific `compatible` on the [`NO_DMA`] allow-list (devices that cannot master DMA):
//!    [`DeviceClass::NoDma`], its `reg` mapped.
//! 7. Everything else is [`DeviceClass::Withheld`]: the known DMA masters of [`DMA_MASTERS`] (fw_cfg,
//!    virtio-mmio, QEMU's platform bus) with their reason, any other compatible as unknown.
//!
//! A region of a node that would be mapped is checked first: empty, beyond the IPA space, overlapping RAM, the
//! carve-out or an SMMU frame makes the whole node withheld instead. Withheld nodes are unmapped, get
//! `status = "disabled"` in the DT handed to Linux, and are logged one line each at boot
//! ([`ClassifiedDevice`]'s `Display`). Their regions (less any RAM) also join [`Classification::excluded`], so
//! a page another (allowed) node shares with a withheld one stays unmapped.

use alloc::vec::Vec;
use core::fmt;

use warden_dt::{DeviceNode, PciHost, PciSpace, PhysRange, Platform};

use crate::host_s2::{IPA_LIMIT, subtract};

/// `compatible` strings of devices that cannot master DMA (matched against a node's most specific one):
/// their registers may be mapped for the host as they are.
pub const NO_DMA: &[&str] = &[
    // PL011 UART.
    "arm,pl011",
    // PL031 real-time clock.
    "arm,pl031",
    // PL061 GPIO controller.
    "arm,pl061",
    // CFI NOR flash (QEMU's pflash): memory-mapped storage, no DMA engine.
    "cfi-flash",
    // A plain memory-mapped bus: no registers of its own; each child is classified by itself.
    "simple-bus",
];

/// `compatible` strings of devices known to master DMA without an SMMU the hyp owns, with the reason logged.
pub const DMA_MASTERS: &[(&str, &str)] = &[
    (
        "qemu,fw-cfg-mmio",
        "its DMA interface writes any physical address",
    ),
    ("virtio,mmio", "its device masters DMA outside any SMMU"),
    (
        "qemu,platform",
        "bus for dynamically added devices, outside any SMMU",
    ),
];

/// `compatible` of the SMMUv3.
const SMMUV3_COMPATIBLE: &str = "arm,smmu-v3";
/// `compatible` of the GICv3.
const GICV3_COMPATIBLE: &str = "arm,gic-v3";
/// `compatible` of a GICv3 ITS.
const GICV3_ITS_COMPATIBLE: &str = "arm,gic-v3-its";

/// Why a device node is withheld from the host.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum WithholdReason {
    /// A known DMA master (see [`DMA_MASTERS`]); carries the reason.
    DmaMaster(&'static str),
    /// Its compatible is on no list: an unknown device is never passed through.
    Unknown,
    /// An ancestor node is withheld or disabled.
    ParentWithheld,
    /// Its `iommus`/`iommu-map` names an IOMMU the hyp does not own, or leaves requester IDs untranslated.
    NotBehindOwnedSmmu,
    /// A region is empty; carries its base.
    EmptyRegion(u64),
    /// A region reaches beyond the host's IPA space; carries its end.
    BeyondIpaSpace(u64),
    /// A region overlaps RAM; carries its base.
    OverlapsRam(u64),
    /// A region overlaps the hyp carve-out or an SMMU frame; carries its base.
    OverlapsHyp(u64),
}

impl fmt::Display for WithholdReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DmaMaster(why) => f.write_str(why),
            Self::Unknown => f.write_str("unknown device, not passed through"),
            Self::ParentWithheld => f.write_str("below a withheld or disabled node"),
            Self::NotBehindOwnedSmmu => {
                f.write_str("its DMA does not go through an SMMU the hyp owns")
            }
            Self::EmptyRegion(base) => write!(f, "empty region at {base:#x}"),
            Self::BeyondIpaSpace(end) => {
                write!(f, "region ending at {end:#x} is beyond the IPA space")
            }
            Self::OverlapsRam(base) => write!(f, "region at {base:#x} overlaps RAM"),
            Self::OverlapsHyp(base) => {
                write!(f, "region at {base:#x} overlaps hyp memory or the SMMU")
            }
        }
    }
}

/// The class of one device node: what the host stage-2 maps of it.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum DeviceClass {
    /// Its DMA goes through an SMMU the hyp owns: mapped.
    BehindSmmu,
    /// Cannot master DMA ([`NO_DMA`]): mapped.
    NoDma,
    /// Managed by the hyp (the GICv3 and its ITS): the frames of [`gic_host_regions`] mapped.
    Emulated,
    /// Owned by the hyp (the SMMU): never mapped.
    HypOwned,
    /// Disabled in the boot DT: not mapped, left as it is.
    Disabled,
    /// Withheld: unmapped, disabled in the host's DT, logged.
    Withheld(WithholdReason),
}

impl DeviceClass {
    /// The class's name in the boot log and docs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::BehindSmmu => "behind the SMMU",
            Self::NoDma => "no DMA",
            Self::Emulated => "emulated",
            Self::HypOwned => "hyp-owned",
            Self::Disabled => "disabled",
            Self::Withheld(_) => "withheld",
        }
    }
}

/// One device node with its class.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ClassifiedDevice<'p> {
    /// The node, as the DT parser found it.
    pub node: &'p DeviceNode,
    /// Its class.
    pub class: DeviceClass,
    /// What the host stage-2 maps for it (empty unless `BehindSmmu`, `NoDma` or `Emulated`).
    pub host_regions: Vec<PhysRange>,
}

impl ClassifiedDevice<'_> {
    /// Whether the node is withheld.
    pub fn is_withheld(&self) -> bool {
        matches!(self.class, DeviceClass::Withheld(_))
    }
}

/// The boot-log line of a withheld node: `withheld <path> (<compatible>): <reason>`; other nodes print
/// `<path> (<compatible>): <class>`.
impl fmt::Display for ClassifiedDevice<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let compatible = self.node.primary_compatible().unwrap_or("no compatible");
        match self.class {
            DeviceClass::Withheld(reason) => {
                write!(f, "withheld {} ({compatible}): {reason}", self.node.path)
            }
            class => write!(f, "{} ({compatible}): {}", self.node.path, class.name()),
        }
    }
}

/// Every device node of a platform with its class, and the regions the host stage-2 is built from.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Classification<'p> {
    /// The device nodes in DT order, one entry per [`Platform::devices`] entry.
    pub devices: Vec<ClassifiedDevice<'p>>,
    ram: Vec<PhysRange>,
    hyp: Vec<PhysRange>,
    smmu_frames: Vec<PhysRange>,
}

impl<'p> Classification<'p> {
    /// The RAM banks of the platform.
    pub fn ram(&self) -> &[PhysRange] {
        &self.ram
    }

    /// Every region the host stage-2 maps as MMIO: the host regions of every classified node.
    pub fn host_mmio(&self) -> Vec<PhysRange> {
        self.devices
            .iter()
            .flat_map(|d| d.host_regions.iter().copied())
            .collect()
    }

    /// What the host stage-2 never maps: the hyp's memory, every SMMU frame, and every region of a withheld
    /// node, less the RAM it overlaps (a hostile `reg` cannot take RAM from the host).
    pub fn excluded(&self) -> Vec<PhysRange> {
        let mut out = self.hyp.clone();
        out.extend(self.smmu_frames.iter().copied());
        for d in self.withheld() {
            for r in d.node.regs.iter().chain(d.node.windows.iter()) {
                out.extend(subtract(*r, &self.ram));
            }
        }
        out
    }

    /// The withheld nodes, in DT order.
    pub fn withheld(&self) -> impl Iterator<Item = &ClassifiedDevice<'p>> {
        self.devices.iter().filter(|d| d.is_withheld())
    }

    /// The class of the node at `path`, if it is a device node.
    pub fn class_of(&self, path: &str) -> Option<DeviceClass> {
        self.devices
            .iter()
            .find(|d| d.node.path == path)
            .map(|d| d.class)
    }
}

/// The GIC frames the host stage-2 maps for a GICv3 or ITS node: every `reg` of the node (GICD, GICR
/// regions, ITS control and translation frames), less the frames the hyp emulates, which the EL2 image probes at
/// boot and adds to the excluded list ([`crate::gic::GicLayout::trapped_frames`]: ITS control frames,
/// redistributor `RD_base` and VLPI frames).
pub fn gic_host_regions(node: &DeviceNode) -> Vec<PhysRange> {
    node.regs.clone()
}

/// Whether every requester ID of `host`'s bus range reaches, through its `iommu-map`, an SMMU of `platform`.
fn pci_behind_owned_smmu(platform: &Platform, host: &PciHost) -> bool {
    let (first, last) = host.bus_range;
    let rids = (u32::from(first) << 8)..=((u32::from(last) << 8) | 0xff);
    !host.iommu_map.is_empty()
        && rids.into_iter().all(|rid| {
            host.stream_id(rid)
                .is_some_and(|(iommu, _)| platform.smmu_by_phandle(iommu).is_some())
        })
}

/// The classification of every device node of `platform`, for a hyp whose memory is `hyp` (the fixed carve-out
/// and the part sized at boot, `crate::sizing`).
pub fn classify<'p>(platform: &'p Platform, hyp: &[PhysRange]) -> Classification<'p> {
    let ram: Vec<PhysRange> = platform.memory.clone();
    let smmu_frames: Vec<PhysRange> = platform.smmus.iter().map(|s| s.reg).collect();
    let mut devices: Vec<ClassifiedDevice<'_>> = Vec::with_capacity(platform.devices.len());
    for node in &platform.devices {
        let parent_class = node
            .parent
            .and_then(|p| devices.get(p))
            .map(|d: &ClassifiedDevice<'_>| d.class);
        let (class, host_regions) = decide(platform, node, parent_class);
        let (class, host_regions) = match check_regions(&host_regions, &ram, hyp, &smmu_frames) {
            Ok(()) => (class, host_regions),
            Err(reason) => (DeviceClass::Withheld(reason), Vec::new()),
        };
        devices.push(ClassifiedDevice {
            node,
            class,
            host_regions,
        });
    }
    Classification {
        devices,
        ram,
        hyp: hyp.to_vec(),
        smmu_frames,
    }
}

/// The class of one node (rules 1 to 7 of the module docs) and the regions it would have mapped.
fn decide(
    platform: &Platform,
    node: &DeviceNode,
    parent: Option<DeviceClass>,
) -> (DeviceClass, Vec<PhysRange>) {
    let withheld = |reason| (DeviceClass::Withheld(reason), Vec::new());
    if !node.enabled {
        return (DeviceClass::Disabled, Vec::new());
    }
    if matches!(
        parent,
        Some(DeviceClass::Withheld(_) | DeviceClass::Disabled)
    ) {
        return withheld(WithholdReason::ParentWithheld);
    }
    let compatible = node.primary_compatible().unwrap_or("");
    match compatible {
        SMMUV3_COMPATIBLE if platform.smmus.iter().any(|s| s.path == node.path) => {
            return (DeviceClass::HypOwned, Vec::new());
        }
        // The GIC: the one place deciding which of its frames the host reaches.
        GICV3_COMPATIBLE | GICV3_ITS_COMPATIBLE => {
            return (DeviceClass::Emulated, gic_host_regions(node));
        }
        _ => {}
    }
    if let Some(host) = platform.pci_hosts.iter().find(|h| h.path == node.path) {
        if !pci_behind_owned_smmu(platform, host) {
            return withheld(WithholdReason::NotBehindOwnedSmmu);
        }
        let mut regions = alloc::vec![host.ecam];
        regions.extend(
            host.windows
                .iter()
                .filter(|w| w.space != PciSpace::Config)
                .map(|w| w.cpu),
        );
        return (DeviceClass::BehindSmmu, regions);
    }
    if let Some(client) = platform.iommu_clients.iter().find(|c| c.path == node.path) {
        let owned = !client.iommus.is_empty()
            && client
                .iommus
                .iter()
                .all(|s| platform.smmu_by_phandle(s.iommu).is_some());
        if !owned {
            return withheld(WithholdReason::NotBehindOwnedSmmu);
        }
        return (DeviceClass::BehindSmmu, node.regs.clone());
    }
    if NO_DMA.contains(&compatible) {
        return (DeviceClass::NoDma, node.regs.clone());
    }
    match DMA_MASTERS.iter().find(|(c, _)| *c == compatible) {
        Some(&(_, why)) => withheld(WithholdReason::DmaMaster(why)),
        None => withheld(WithholdReason::Unknown),
    }
}

/// Checks the regions a node would have mapped: each non-empty, inside the IPA space, clear of RAM, the
/// hyp's memory and the SMMU frames.
fn check_regions(
    regions: &[PhysRange],
    ram: &[PhysRange],
    hyp: &[PhysRange],
    smmu_frames: &[PhysRange],
) -> Result<(), WithholdReason> {
    for r in regions {
        if r.is_empty() {
            return Err(WithholdReason::EmptyRegion(r.base));
        }
        if r.end() > IPA_LIMIT {
            return Err(WithholdReason::BeyondIpaSpace(r.end()));
        }
        if hyp.iter().chain(smmu_frames).any(|h| h.overlaps(r)) {
            return Err(WithholdReason::OverlapsHyp(r.base));
        }
        if ram.iter().any(|m| m.overlaps(r)) {
            return Err(WithholdReason::OverlapsRam(r.base));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host_s2::{HostS2Layout, HostStage2};
    use crate::layout::{HYP_CARVEOUT_PA, HYP_CARVEOUT_SIZE, HYP_LOAD_PA};
    use crate::ownership::MemKind;
    use alloc::string::{String, ToString};
    use alloc::vec;
    use dtoolkit::Node;
    use dtoolkit::fdt::Fdt;
    use dtoolkit::model::{DeviceTree, DeviceTreeNode, DeviceTreeProperty};
    use warden_abi::PAGE_SIZE;
    use warden_dt::HostDtEdits;

    /// The QEMU `virt` DTBs checked in by warden-dt.
    const VIRT_DTBS: [&[u8]; 3] = [
        include_bytes!("../../dt/tests/data/virt-smp2-1g.dtb"),
        include_bytes!("../../dt/tests/data/virt-smp4-2g.dtb"),
        include_bytes!("../../dt/tests/data/virt-initrd-append.dtb"),
    ];
    const CARVEOUT: PhysRange =
        PhysRange::from_bounds(HYP_CARVEOUT_PA, HYP_CARVEOUT_PA + HYP_CARVEOUT_SIZE);
    const FW_CFG: &str = "/fw-cfg@9020000";

    fn dma_master(compatible: &str) -> DeviceClass {
        let why = DMA_MASTERS
            .iter()
            .find(|(c, _)| *c == compatible)
            .unwrap()
            .1;
        DeviceClass::Withheld(WithholdReason::DmaMaster(why))
    }

    /// Every device node of QEMU virt and its class (the 32 virtio-mmio transports aside).
    fn virt_expected() -> Vec<(&'static str, DeviceClass)> {
        vec![
            ("/platform-bus@c000000", dma_master("qemu,platform")),
            (FW_CFG, dma_master("qemu,fw-cfg-mmio")),
            ("/pl061@9030000", DeviceClass::NoDma),
            ("/smmuv3@9050000", DeviceClass::HypOwned),
            ("/pcie@10000000", DeviceClass::BehindSmmu),
            ("/pl031@9010000", DeviceClass::NoDma),
            ("/pl011@9000000", DeviceClass::NoDma),
            ("/intc@8000000", DeviceClass::Emulated),
            ("/intc@8000000/its@8080000", DeviceClass::Emulated),
            ("/flash@0", DeviceClass::NoDma),
        ]
    }

    /// Host stage-2 of a classification.
    fn stage2(c: &Classification<'_>) -> HostStage2 {
        HostStage2::build(&HostS2Layout::from_devices(c, crate::host_s2::RamLeaves::Pages).spec())
            .unwrap()
    }

    #[test]
    fn qemu_virt_every_node_classified() {
        for dtb in VIRT_DTBS {
            let platform = warden_dt::parse(dtb).unwrap();
            let c = classify(&platform, &[CARVEOUT]);
            let mut expected = virt_expected();
            for i in 0..32u64 {
                let path = alloc::format!("/virtio_mmio@{:x}", 0x0a00_0000 + i * 0x200);
                expected.push((String::leak(path), dma_master("virtio,mmio")));
            }
            let mut got: Vec<(&str, DeviceClass)> = c
                .devices
                .iter()
                .map(|d| (d.node.path.as_str(), d.class))
                .collect();
            got.sort_by_key(|(p, _)| *p);
            expected.sort_by_key(|(p, _)| *p);
            // Exactly these nodes: psci, timer, pmu, gpio-keys, clocks, cpus, memory, chosen have no MMIO.
            assert_eq!(got, expected);
            assert_eq!(c.withheld().count(), 34);
            assert!(c.withheld().any(|d| d.node.path == FW_CFG));
            let line = c
                .devices
                .iter()
                .find(|d| d.node.path == FW_CFG)
                .unwrap()
                .to_string();
            assert_eq!(
                line,
                "withheld /fw-cfg@9020000 (qemu,fw-cfg-mmio): its DMA interface writes any physical address"
            );
        }
    }

    /// Walks the low 1 GiB (every device of QEMU virt but the PCI ECAM and 64-bit window) page by page:
    /// a page is mapped exactly when a classified node's host region holds it and no withheld node's
    /// region or hyp-owned frame does; every withheld and hyp-owned page is unmapped.
    #[test]
    fn qemu_virt_layout_page_by_page() {
        for dtb in VIRT_DTBS {
            let platform = warden_dt::parse(dtb).unwrap();
            let c = classify(&platform, &[CARVEOUT]);
            let s2 = stage2(&c);
            let leaves = s2.leaves();
            let mapped_regions = c.host_mmio();
            let excluded = c.excluded();
            let mut leaf = 0;
            let mut mapped_pages = 0u64;
            for page in (0..0x4000_0000u64).step_by(PAGE_SIZE as usize) {
                while leaf < leaves.len() && leaves[leaf].ipa.end() <= page {
                    leaf += 1;
                }
                let mapped = leaves.get(leaf).is_some_and(|l| l.ipa.contains(page));
                let p = PhysRange::from_bounds(page, page + PAGE_SIZE);
                let wanted = mapped_regions.iter().any(|r| r.overlaps(&p))
                    && !excluded.iter().any(|r| r.overlaps(&p));
                assert_eq!(mapped, wanted, "page {page:#x}");
                if mapped {
                    assert_eq!(leaves[leaf].kind, MemKind::Mmio, "page {page:#x}");
                    mapped_pages += 1;
                }
            }
            // Flash 128 MiB, GIC 16 MiB less the gap, UART, RTC, GPIO, PCI MMIO and PIO windows.
            assert!(mapped_pages > 0x1_0000, "{mapped_pages}");
            for d in c
                .devices
                .iter()
                .filter(|d| matches!(d.class, DeviceClass::Withheld(_) | DeviceClass::HypOwned))
            {
                for r in &d.node.regs {
                    for pa in (r.base..r.end()).step_by(PAGE_SIZE as usize) {
                        assert_eq!(s2.translate(pa), None, "{} at {pa:#x}", d.node.path);
                    }
                }
            }
            for pa in [
                0x0902_0000,
                0x0902_0010,
                0x0a00_0000,
                0x0a00_3e00,
                0x0c00_0000,
            ] {
                assert_eq!(s2.translate(pa), None, "{pa:#x}");
            }
            // The classified devices stay reachable, the high ECAM and the 64-bit window included.
            for pa in [
                0x0900_0000,
                0x0901_0000,
                0x0903_0000,
                0x0800_0000,
                0x080a_0000,
                0x0808_0000,
                0x0809_0040,
                0,
                0x07ff_f000,
                0x1000_0000,
                0x3eff_0000,
                0x40_1000_0000,
                0x40_1fff_f000,
                0x80_0000_0000,
                0xff_ffff_f000,
            ] {
                assert_eq!(
                    s2.translate(pa).map(|t| t.kind),
                    Some(MemKind::Mmio),
                    "{pa:#x}"
                );
            }
        }
    }

    #[test]
    fn host_dt_disables_exactly_the_withheld_nodes() {
        for dtb in VIRT_DTBS {
            let platform = warden_dt::parse(dtb).unwrap();
            let c = classify(&platform, &[CARVEOUT]);
            let edits = HostDtEdits {
                reserved_no_map: vec![(HYP_CARVEOUT_PA, HYP_CARVEOUT_SIZE)],
                smmu_compatible: warden_abi::DT_COMPATIBLE,
                disable: c.withheld().map(|d| d.node.path.as_str()).collect(),
            };
            let host =
                warden_dt::parse(&warden_dt::rewrite_for_host(dtb, &edits).unwrap()).unwrap();
            assert_eq!(host.devices.len(), platform.devices.len());
            for (before, after) in platform.devices.iter().zip(&host.devices) {
                assert_eq!(before.path, after.path);
                let withheld = c.class_of(&before.path).unwrap() != DeviceClass::Disabled
                    && c.withheld().any(|d| d.node.path == before.path);
                assert_eq!(after.enabled, !withheld, "{}", before.path);
                assert_eq!(after.regs, before.regs);
            }
        }
    }

    fn prop<T: dtoolkit::ToPropertyValue>(name: &str, value: T) -> DeviceTreeProperty {
        DeviceTreeProperty::new(name, value).unwrap()
    }

    /// QEMU virt (2 CPUs, 1 GiB) after `f`.
    fn edited(f: impl FnOnce(&mut DeviceTree)) -> Vec<u8> {
        let mut m = DeviceTree::from_fdt(&Fdt::new(VIRT_DTBS[0]).unwrap());
        f(&mut m);
        m.to_dtb()
    }

    /// A root-level node `name` with `compatible` (if any) and a 2/2-cell `reg` of `(base, size)`.
    fn device(name: &str, compatible: Option<&str>, reg: (u64, u64)) -> DeviceTreeNode {
        let mut n = DeviceTreeNode::new(name).unwrap();
        if let Some(c) = compatible {
            n.add_property(prop("compatible", c));
        }
        let (b, s) = reg;
        n.add_property(prop(
            "reg",
            vec![(b >> 32) as u32, b as u32, (s >> 32) as u32, s as u32],
        ));
        n
    }

    /// Classifies QEMU virt plus `node` at the root; returns the class of `/<name>` and the stage-2.
    fn with_node(node: DeviceTreeNode) -> (DeviceClass, HostStage2) {
        let path = alloc::format!("/{}", node.name());
        let dtb = edited(|m| m.root.add_child(node));
        let platform = warden_dt::parse(&dtb).unwrap();
        let c = classify(&platform, &[CARVEOUT]);
        (c.class_of(&path).unwrap(), stage2(&c))
    }

    #[test]
    fn hostile_nodes_are_withheld() {
        use WithholdReason::*;
        let free = 0x0907_0000;
        let cases: Vec<(DeviceTreeNode, WithholdReason, u64)> = vec![
            (
                device("dma@9070000", Some("acme,dma-engine"), (free, 0x1000)),
                Unknown,
                free,
            ),
            (device("anon@9070000", None, (free, 0x1000)), Unknown, free),
            // An allow-listed compatible on top of RAM, the carve-out, the hyp image, the SMMU.
            (
                device("uart@48000000", Some("arm,pl011"), (0x4800_0000, 0x1000)),
                OverlapsRam(0x4800_0000),
                0x4800_0000,
            ),
            (
                device("uart@40100000", Some("arm,pl011"), (0x4010_0000, 0x1000)),
                OverlapsHyp(0x4010_0000),
                0x4010_0000,
            ),
            (
                device("uart@3ffff000", Some("arm,pl011"), (0x3fff_f000, 0x1_0000)),
                OverlapsHyp(0x3fff_f000),
                HYP_LOAD_PA,
            ),
            (
                device("rtc@9050000", Some("arm,pl031"), (0x0905_0000, 0x1000)),
                OverlapsHyp(0x0905_0000),
                0x0905_0000,
            ),
            // Huge and empty regions.
            (
                device(
                    "uart@ff",
                    Some("arm,pl011"),
                    (0xffff_ffff_0000_0000, 0x1000),
                ),
                BeyondIpaSpace(0xffff_ffff_0000_1000),
                0xffff_ffff_0000_0000,
            ),
            (
                device("uart@9070000", Some("arm,pl011"), (free, 0)),
                EmptyRegion(free),
                free,
            ),
            (
                device(
                    "flash@1000000000",
                    Some("cfi-flash"),
                    (0x10_0000_0000, u64::MAX - 0x10_0000_0000),
                ),
                BeyondIpaSpace(u64::MAX),
                0x10_0000_0000,
            ),
        ];
        for (node, reason, probe) in cases {
            let name = node.name().to_string();
            let (class, s2) = with_node(node);
            assert_eq!(class, DeviceClass::Withheld(reason), "{name}");
            assert_eq!(
                s2.translate(probe).filter(|t| t.kind == MemKind::Mmio),
                None,
                "{name}"
            );
        }
        // The control: the same node with an allow-listed compatible at a free address is mapped.
        let (class, s2) = with_node(device("uart@9070000", Some("arm,pl011"), (free, 0x1000)));
        assert_eq!(class, DeviceClass::NoDma);
        assert_eq!(s2.translate(free).unwrap().kind, MemKind::Mmio);
    }

    #[test]
    fn withheld_pages_stay_unmapped_under_an_allowed_node() {
        // A PL011 whose reg spans fw_cfg's page: fw_cfg stays withheld and its page unmapped.
        let (class, s2) = with_node(device(
            "uart@901f000",
            Some("arm,pl011"),
            (0x0901_f000, 0x3000),
        ));
        assert_eq!(class, DeviceClass::NoDma);
        assert_eq!(s2.translate(0x0901_f000).unwrap().kind, MemKind::Mmio);
        assert_eq!(s2.translate(0x0902_0000), None);
        assert_eq!(s2.translate(0x0902_1000).unwrap().kind, MemKind::Mmio);
    }

    #[test]
    fn children_iommus_and_disabled_nodes() {
        // A device on the (withheld) platform bus: withheld with it, whatever its compatible.
        let dtb = edited(|m| {
            let mut dev = DeviceTreeNode::new("uart@1000").unwrap();
            dev.add_property(prop("compatible", "arm,pl011"));
            dev.add_property(prop("reg", vec![0x1000u32, 0x1000]));
            m.find_node_mut("/platform-bus@c000000")
                .unwrap()
                .add_child(dev);
            // virtio-mmio behind the SMMU (iommus) is allowed; one naming the GPIO controller is not.
            m.find_node_mut("/virtio_mmio@a000000")
                .unwrap()
                .add_property(prop("iommus", vec![0x8005u32, 0x42]));
            m.find_node_mut("/pl061@9030000")
                .unwrap()
                .add_property(prop("#iommu-cells", 1u32));
            m.find_node_mut("/virtio_mmio@a000200")
                .unwrap()
                .add_property(prop("iommus", vec![0x8006u32, 0x43]));
            // A disabled node stays as it is.
            m.find_node_mut("/pl031@9010000")
                .unwrap()
                .add_property(prop("status", "disabled"));
        });
        let platform = warden_dt::parse(&dtb).unwrap();
        let c = classify(&platform, &[CARVEOUT]);
        assert_eq!(
            c.class_of("/platform-bus@c000000/uart@1000"),
            Some(DeviceClass::Withheld(WithholdReason::ParentWithheld))
        );
        assert_eq!(
            c.class_of("/virtio_mmio@a000000"),
            Some(DeviceClass::BehindSmmu)
        );
        assert_eq!(
            c.class_of("/virtio_mmio@a000200"),
            Some(DeviceClass::Withheld(WithholdReason::NotBehindOwnedSmmu))
        );
        assert_eq!(c.class_of("/pl031@9010000"), Some(DeviceClass::Disabled));
        assert!(!c.withheld().any(|d| d.node.path == "/pl031@9010000"));
        let s2 = stage2(&c);
        assert_eq!(s2.translate(0x0c00_1000), None);
        assert_eq!(s2.translate(0x0901_0000), None);
        // Page-granular: the allowed transport shares its page with withheld ones, so it stays unmapped.
        assert_eq!(s2.translate(0x0a00_0000), None);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// A node with any `reg` (any base, any size that does not wrap) and an allow-listed, DMA-master or
        /// unknown compatible: classification and the host stage-2 build never fail or panic; what is
        /// mapped of it is never RAM, the carve-out or the SMMU, and is mapped only if it was classified.
        #[test]
        fn any_reg_any_compatible(
            base in proptest::prop_oneof![
                proptest::prelude::any::<u64>(),
                0u64..0x1_0000_0000,
                0x0800_0000u64..0x0c00_0000,
            ],
            size in proptest::prelude::any::<u64>(),
            pick in 0usize..4,
        ) {
            let size = size.min(u64::MAX - base);
            let compatible = ["arm,pl011", "cfi-flash", "virtio,mmio", "acme,unknown"][pick];
            let dtb = edited(|m| m.root.add_child(device("fuzz@0", Some(compatible), (base, size))));
            let platform = warden_dt::parse(&dtb).unwrap();
            let c = classify(&platform, &[CARVEOUT]);
            let class = c.class_of("/fuzz@0").unwrap();
            let s2 = stage2(&c);
            let node = PhysRange { base, size };
            for probe in [base, base.saturating_add(size / 2), base.saturating_add(size).saturating_sub(1)] {
                if let Some(t) = s2.translate(probe) && node.contains(probe) && t.kind == MemKind::Mmio {
                    proptest::prop_assert_eq!(class, DeviceClass::NoDma, "{:#x}", probe);
                    proptest::prop_assert!(!CARVEOUT.contains(probe) && !c.ram().iter().any(|r| r.contains(probe)));
                    proptest::prop_assert!(!(0x0905_0000..0x0907_0000).contains(&probe));
                }
            }
            if class == DeviceClass::NoDma {
                proptest::prop_assert!(size > 0 && base + size <= crate::host_s2::IPA_LIMIT);
            }
        }
    }

    #[test]
    fn pci_host_must_send_every_rid_to_an_owned_smmu() {
        let with_map = |map: Vec<u32>| {
            let dtb = edited(|m| {
                m.find_node_mut("/pcie@10000000")
                    .unwrap()
                    .add_property(prop("iommu-map", map));
            });
            let platform = warden_dt::parse(&dtb).unwrap();
            let c = classify(&platform, &[CARVEOUT]);
            (c.class_of("/pcie@10000000").unwrap(), stage2(&c))
        };
        let not_behind = DeviceClass::Withheld(WithholdReason::NotBehindOwnedSmmu);
        // Half the requester IDs only.
        let (class, s2) = with_map(vec![0, 0x8005, 0, 0x8000]);
        assert_eq!(class, not_behind);
        assert_eq!(s2.translate(0x40_1000_0000), None);
        assert_eq!(s2.translate(0x1000_0000), None);
        // Every ID, but to the ITS (not an SMMU).
        assert_eq!(with_map(vec![0, 0x8004, 0, 0x1_0000]).0, not_behind);
        // Two entries that together cover every ID: allowed.
        assert_eq!(
            with_map(vec![0, 0x8005, 0, 0x8000, 0x8000, 0x8005, 0x8000, 0x8000]).0,
            DeviceClass::BehindSmmu
        );
    }
}
