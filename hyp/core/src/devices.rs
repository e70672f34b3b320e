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
//! ([`ClassifiedDevice`]'s `Display`). Their regions outside RAM also join [`Classification::excluded`], so a
//! page another (allowed) node shares with a withheld one stays unmapped.

use alloc::vec::Vec;
use core::fmt;

use warden_dt::{DeviceNode, PciHost, PciSpace, PhysRange, Platform};

use crate::host_s2::{IPA_LIMIT, Region};

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
    pub host_regions: Vec<Region>,
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
    ram: Vec<Region>,
    carveout: Region,
    smmu_frames: Vec<Region>,
}

impl<'p> Classification<'p> {
    /// The RAM banks of the platform.
    pub fn ram(&self) -> &[Region] {
        &self.ram
    }

    /// Every region the host stage-2 maps as MMIO: the host regions of every classified node.
    pub fn host_mmio(&self) -> Vec<Region> {
        self.devices
            .iter()
            .flat_map(|d| d.host_regions.iter().copied())
            .collect()
    }

    /// What the host stage-2 never maps: the carve-out, every SMMU frame, and every region of a withheld
    /// node that lies outside RAM.
    pub fn excluded(&self) -> Vec<Region> {
        let mut out = alloc::vec![self.carveout];
        out.extend(self.smmu_frames.iter().copied());
        for d in self.withheld() {
            out.extend(
                d.node
                    .regs
                    .iter()
                    .chain(d.node.windows.iter())
                    .map(region)
                    .filter(|r| !r.is_empty() && !self.ram.iter().any(|m| m.overlaps(r))),
            );
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

/// A DT range as a [`Region`].
fn region(r: &PhysRange) -> Region {
    Region::with_size(r.base, r.size)
}

/// The GIC frames the host stage-2 maps for a GICv3 or ITS node: today every `reg` of the node (GICD, GICR
/// regions, ITS control and translation frames). The one place to change when the hyp starts trapping
/// frames (the ITS control frame, the redistributors' `RD_base` frames).
pub fn gic_host_regions(node: &DeviceNode) -> Vec<Region> {
    node.regs.iter().map(region).collect()
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

/// The classification of every device node of `platform`, for a hyp whose carve-out is `carveout`.
pub fn classify(platform: &Platform, carveout: Region) -> Classification<'_> {
    let ram: Vec<Region> = platform.memory.iter().map(region).collect();
    let smmu_frames: Vec<Region> = platform.smmus.iter().map(|s| region(&s.reg)).collect();
    let mut devices: Vec<ClassifiedDevice<'_>> = Vec::with_capacity(platform.devices.len());
    for node in &platform.devices {
        let parent_class = node
            .parent
            .and_then(|p| devices.get(p))
            .map(|d: &ClassifiedDevice<'_>| d.class);
        let (class, host_regions) = decide(platform, node, parent_class);
        let (class, host_regions) = match check_regions(&host_regions, &ram, carveout, &smmu_frames)
        {
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
        carveout,
        smmu_frames,
    }
}

/// The class of one node (rules 1 to 7 of the module docs) and the regions it would have mapped.
fn decide(
    platform: &Platform,
    node: &DeviceNode,
    parent: Option<DeviceClass>,
) -> (DeviceClass, Vec<Region>) {
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
        let mut regions = alloc::vec![region(&host.ecam)];
        regions.extend(
            host.windows
                .iter()
                .filter(|w| w.space != PciSpace::Config)
                .map(|w| region(&w.cpu)),
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
        return (
            DeviceClass::BehindSmmu,
            node.regs.iter().map(region).collect(),
        );
    }
    if NO_DMA.contains(&compatible) {
        return (DeviceClass::NoDma, node.regs.iter().map(region).collect());
    }
    match DMA_MASTERS.iter().find(|(c, _)| *c == compatible) {
        Some(&(_, why)) => withheld(WithholdReason::DmaMaster(why)),
        None => withheld(WithholdReason::Unknown),
    }
}

/// Checks the regions a node would have mapped: each non-empty, inside the IPA space, clear of RAM, the
/// carve-out and the SMMU frames.
fn check_regions(
    regions: &[Region],
    ram: &[Region],
    carveout: Region,
    smmu_frames: &[Region],
) -> Result<(), WithholdReason> {
    for r in regions {
        if r.is_empty() {
            return Err(WithholdReason::EmptyRegion(r.start));
        }
        if r.end > IPA_LIMIT {
            return Err(WithholdReason::BeyondIpaSpace(r.end));
        }
        if r.overlaps(&carveout) || smmu_frames.iter().any(|s| s.overlaps(r)) {
            return Err(WithholdReason::OverlapsHyp(r.start));
        }
        if ram.iter().any(|m| m.overlaps(r)) {
            return Err(WithholdReason::OverlapsRam(r.start));
        }
    }
    Ok(())
}
