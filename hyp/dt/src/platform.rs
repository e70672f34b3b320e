//! What [`crate::parse`] finds in a DTB: the [`Platform`] and its parts.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// A physical address range `[base, base + size)` in the CPU's physical address space.
///
/// Every range [`crate::parse`] returns has been checked not to wrap past 2^64 (build your own with
/// [`PhysRange::new`] to get the same check); [`PhysRange::end`] saturates rather than wrap for a
/// hand-built one.
#[derive(Clone, Copy, Eq, PartialEq, Ord, PartialOrd, Hash)]
pub struct PhysRange {
    /// First byte of the range.
    pub base: u64,
    /// Length in bytes.
    pub size: u64,
}

impl PhysRange {
    /// A range from `base` of `size` bytes, or `None` if it would wrap past 2^64.
    #[must_use]
    pub const fn new(base: u64, size: u64) -> Option<Self> {
        match base.checked_add(size) {
            Some(_) => Some(Self { base, size }),
            None => None,
        }
    }

    /// The range `[start, end)`; empty (size 0 at `start`) when `end <= start`.
    #[must_use]
    pub const fn from_bounds(start: u64, end: u64) -> Self {
        Self {
            base: start,
            size: end.saturating_sub(start),
        }
    }

    /// Whether the range holds no byte.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// One past the last byte (saturating, so a hand-built wrapping range cannot panic).
    #[must_use]
    pub const fn end(&self) -> u64 {
        self.base.saturating_add(self.size)
    }

    /// Whether `addr` lies inside the range.
    #[must_use]
    pub const fn contains(&self, addr: u64) -> bool {
        addr >= self.base && addr < self.end()
    }

    /// Whether the two ranges share at least one byte.
    #[must_use]
    pub const fn overlaps(&self, other: &PhysRange) -> bool {
        self.base < other.end() && other.base < self.end()
    }
}

impl fmt::Debug for PhysRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#x}, {:#x})", self.base, self.end())
    }
}

/// A phandle: the 32-bit handle by which one DT node refers to another.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Ord, PartialOrd, Hash)]
#[repr(transparent)]
pub struct Phandle(pub u32);

/// A CPU's affinity as written in its `reg`: the MPIDR_EL1 affinity fields (Aff3 in bits 39:32,
/// Aff2..Aff0 in bits 23:0), which PSCI `CPU_ON` takes as its target.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Ord, PartialOrd, Hash)]
#[repr(transparent)]
pub struct Mpidr(pub u64);

/// Everything the hypervisor needs from the boot DTB.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Platform {
    /// The root node's `compatible` strings, most specific first (empty if it has none): the machine, e.g.
    /// `linux,dummy-virt` for QEMU's virt board.
    pub compatible: Vec<String>,
    /// RAM: the `reg` ranges of every root-level node with `device_type = "memory"` (status okay),
    /// sorted by base, empty ranges dropped. Never empty (parse fails otherwise).
    pub memory: Vec<PhysRange>,
    /// Memory already reserved by the DTB: the `/memreserve/` block and the static (`reg`) children of
    /// `/reserved-memory`.
    pub reserved: Vec<ReservedRegion>,
    /// The CPUs under `/cpus`, in DT order. Never empty (parse fails otherwise).
    pub cpus: Vec<Cpu>,
    /// The console UART: the `arm,pl011` node `/chosen/stdout-path` names, else the first enabled one.
    pub uart: Option<Pl011>,
    /// The GICv3 (`arm,gic-v3`), if any.
    pub gic: Option<GicV3>,
    /// Every enabled `pci-host-ecam-generic` host bridge.
    pub pci_hosts: Vec<PciHost>,
    /// Every enabled `arm,smmu-v3` node.
    pub smmus: Vec<SmmuV3>,
    /// Every node with an `iommus` property (platform devices behind an IOMMU).
    pub iommu_clients: Vec<IommuClient>,
    /// `/chosen` (all fields empty if the node is absent).
    pub chosen: Chosen,
    /// `/psci`, if present.
    pub psci: Option<Psci>,
    /// Every `reg` range of every device node that has a CPU physical address, in DT order (memory
    /// nodes, `/reserved-memory` children, CPUs and PCI child nodes excluded). PCI windows are not
    /// here (they are no `reg`): see [`PciHost::windows`] and [`Platform::device_ranges`].
    pub mmio: Vec<MmioRegion>,
    /// Every node that occupies CPU physical address space, in DT order: each node with a `reg` that
    /// translates to CPU addresses, and each bus node whose non-empty `ranges` opens a window into
    /// it (memory nodes, `/reserved-memory` and its children, CPUs and nodes on non-memory-mapped
    /// buses such as PCI children excluded). What the hypervisor classifies before it maps any
    /// device for the host.
    pub devices: Vec<DeviceNode>,
}

impl Platform {
    /// Total RAM in bytes (saturating).
    #[must_use]
    pub fn memory_size(&self) -> u64 {
        self.memory
            .iter()
            .fold(0u64, |acc, r| acc.saturating_add(r.size))
    }

    /// The SMMU whose phandle is `phandle`, if any.
    #[must_use]
    pub fn smmu_by_phandle(&self, phandle: Phandle) -> Option<&SmmuV3> {
        self.smmus.iter().find(|s| s.phandle == Some(phandle))
    }

    /// All device address space the host may need, sorted and merged: the `reg` ranges of enabled
    /// device nodes ([`Platform::mmio`]) plus every PCI host's memory and I/O windows. (The
    /// hypervisor maps for the host only what it classified from [`Platform::devices`], not this.)
    #[must_use]
    pub fn device_ranges(&self) -> Vec<PhysRange> {
        let mut ranges: Vec<PhysRange> = self
            .mmio
            .iter()
            .filter(|m| m.enabled)
            .map(|m| m.range)
            .chain(
                self.pci_hosts
                    .iter()
                    .flat_map(|h| h.windows.iter())
                    .filter(|w| w.space != PciSpace::Config)
                    .map(|w| w.cpu),
            )
            .filter(|r| r.size != 0)
            .collect();
        merge_ranges(&mut ranges);
        ranges
    }
}

/// Sorts `ranges` by base and merges overlapping or touching ones, in place.
pub fn merge_ranges(ranges: &mut Vec<PhysRange>) {
    ranges.sort_unstable();
    let mut out: Vec<PhysRange> = Vec::with_capacity(ranges.len());
    for r in ranges.iter() {
        match out.last_mut() {
            Some(last) if r.base <= last.end() => {
                let end = last.end().max(r.end());
                last.size = end - last.base;
            }
            _ => out.push(*r),
        }
    }
    *ranges = out;
}

/// A region the DTB already reserves.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ReservedRegion {
    /// The range.
    pub range: PhysRange,
    /// The `/reserved-memory` child it comes from; `None` for a `/memreserve/` entry.
    pub path: Option<String>,
    /// Whether the node says `no-map` (`/memreserve/` entries: `false`).
    pub no_map: bool,
}

/// How a CPU is brought up.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum EnableMethod {
    /// `enable-method = "psci"`.
    Psci,
    /// `enable-method = "spin-table"`, with the `cpu-release-addr` if given.
    SpinTable(Option<u64>),
    /// Any other method (the string as found).
    Other(String),
    /// No `enable-method` property.
    None,
}

/// One `/cpus/cpu@N` node.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Cpu {
    /// Node path.
    pub path: String,
    /// Affinity from `reg`.
    pub mpidr: Mpidr,
    /// How to start it.
    pub enable_method: EnableMethod,
    /// Whether `status` is okay (or absent).
    pub enabled: bool,
}

/// The PL011 UART chosen as console.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Pl011 {
    /// Node path.
    pub path: String,
    /// Its register frame.
    pub reg: PhysRange,
}

/// The GICv3 interrupt controller.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct GicV3 {
    /// Node path.
    pub path: String,
    /// The node's phandle.
    pub phandle: Option<Phandle>,
    /// GICD frame (first `reg` entry).
    pub distributor: PhysRange,
    /// GICR regions (the next `#redistributor-regions` entries, default 1).
    pub redistributors: Vec<PhysRange>,
    /// Remaining `reg` entries (GICC, GICH, GICV when present).
    pub cpu_interfaces: Vec<PhysRange>,
    /// The ITS children (`arm,gic-v3-its`).
    pub its: Vec<GicIts>,
}

/// One GICv3 ITS.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct GicIts {
    /// Node path.
    pub path: String,
    /// The node's phandle (PCI `msi-map` refers to it).
    pub phandle: Option<Phandle>,
    /// Its register frame.
    pub reg: PhysRange,
}

impl GicIts {
    /// Offset of the ITS translation register frame (GITS_TRANSLATER's 64 KiB page) from the ITS base
    /// (Arm GICv3/v4 architecture specification, ITS register map).
    pub const TRANSLATION_FRAME_OFFSET: u64 = 0x1_0000;
    /// Offset of GITS_TRANSLATER, the MSI doorbell devices write, from the ITS base.
    pub const GITS_TRANSLATER_OFFSET: u64 = 0x1_0040;
    /// Size of the translation register frame.
    pub const TRANSLATION_FRAME_SIZE: u64 = 0x1_0000;

    /// The 64 KiB frame holding GITS_TRANSLATER: what a DMA domain must map for MSIs to reach this
    /// ITS. `None` if `reg` is too small to contain it.
    #[must_use]
    pub fn translation_frame(&self) -> Option<PhysRange> {
        if self.reg.size < Self::TRANSLATION_FRAME_OFFSET + Self::TRANSLATION_FRAME_SIZE {
            return None;
        }
        PhysRange::new(
            self.reg.base.checked_add(Self::TRANSLATION_FRAME_OFFSET)?,
            Self::TRANSLATION_FRAME_SIZE,
        )
    }
}

/// The address space a PCI `ranges` entry maps (bits 25:24 of its `phys.hi` cell).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum PciSpace {
    /// Configuration space (`0b00`).
    Config,
    /// I/O space (`0b01`).
    Io,
    /// 32-bit memory space (`0b10`).
    Mem32,
    /// 64-bit memory space (`0b11`).
    Mem64,
}

/// One decoded entry of a PCI host's `ranges`: a window of PCI address space at a CPU physical address.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct PciWindow {
    /// The space.
    pub space: PciSpace,
    /// The `p` (prefetchable) bit.
    pub prefetchable: bool,
    /// Start of the window on the PCI bus.
    pub pci_addr: u64,
    /// Where the window sits in the CPU physical address space, and its size.
    pub cpu: PhysRange,
}

/// One `iommu-map` entry: requester IDs `[rid_base, rid_base + length)` go to `iommu` as StreamIDs
/// `[sid_base, sid_base + length)` (after masking the RID with `iommu-map-mask`).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct IommuMapEntry {
    /// First requester ID (bus << 8 | devfn).
    pub rid_base: u32,
    /// The IOMMU the IDs go to.
    pub iommu: Phandle,
    /// StreamID of `rid_base`.
    pub sid_base: u32,
    /// How many IDs.
    pub length: u32,
}

impl IommuMapEntry {
    /// The StreamID a (masked) requester ID maps to through this entry, if it is in range.
    #[must_use]
    pub fn stream_id(&self, rid: u32) -> Option<u32> {
        let offset = rid.checked_sub(self.rid_base)?;
        if offset < self.length {
            self.sid_base.checked_add(offset)
        } else {
            None
        }
    }
}

/// One `msi-map` entry: requester IDs `[rid_base, rid_base + length)` reach `msi_controller` (an
/// ITS) as DeviceIDs `[msi_base, msi_base + length)` (after masking with `msi-map-mask`).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct MsiMapEntry {
    /// First requester ID.
    pub rid_base: u32,
    /// The MSI controller.
    pub msi_controller: Phandle,
    /// DeviceID of `rid_base`.
    pub msi_base: u32,
    /// How many IDs.
    pub length: u32,
}

/// A `pci-host-ecam-generic` host bridge.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct PciHost {
    /// Node path.
    pub path: String,
    /// ECAM configuration space (first `reg` entry).
    pub ecam: PhysRange,
    /// First and last bus number (`bus-range`, default 0..=255).
    pub bus_range: (u8, u8),
    /// The decoded `ranges`.
    pub windows: Vec<PciWindow>,
    /// The decoded `iommu-map` (empty if absent).
    pub iommu_map: Vec<IommuMapEntry>,
    /// `iommu-map-mask`, if present.
    pub iommu_map_mask: Option<u32>,
    /// The decoded `msi-map` (empty if absent).
    pub msi_map: Vec<MsiMapEntry>,
    /// `msi-map-mask`, if present.
    pub msi_map_mask: Option<u32>,
}

impl PciHost {
    /// The IOMMU and StreamID that requester ID `rid` reaches, per `iommu-map` (and its mask);
    /// `None` if no entry covers it.
    #[must_use]
    pub fn stream_id(&self, rid: u32) -> Option<(Phandle, u32)> {
        let rid = rid & self.iommu_map_mask.unwrap_or(u32::MAX);
        self.iommu_map
            .iter()
            .find_map(|e| e.stream_id(rid).map(|sid| (e.iommu, sid)))
    }
}

/// One interrupt specifier, in the format of its interrupt parent.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct IrqSpec {
    /// The interrupt controller it belongs to.
    pub parent: Phandle,
    /// The raw cells (`#interrupt-cells` of the parent).
    pub cells: Vec<u32>,
}

impl IrqSpec {
    /// The GIC INTID, decoding the cells with the Arm GIC binding (`<type number flags>`, type 0 = SPI
    /// → 32 + number, type 1 = PPI → 16 + number). `None` for other formats.
    #[must_use]
    pub fn gic_intid(&self) -> Option<u32> {
        const SPI_BASE: u32 = 32;
        const PPI_BASE: u32 = 16;
        match self.cells.as_slice() {
            [0, n, _, ..] => n.checked_add(SPI_BASE),
            [1, n, _, ..] => n.checked_add(PPI_BASE),
            _ => None,
        }
    }
}

/// An `arm,smmu-v3` node.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct SmmuV3 {
    /// Node path.
    pub path: String,
    /// The phandle `iommu-map`/`iommus` refer to.
    pub phandle: Option<Phandle>,
    /// Register frame (first `reg` entry).
    pub reg: PhysRange,
    /// `interrupts`, decoded with the interrupt parent's `#interrupt-cells`.
    pub interrupts: Vec<IrqSpec>,
    /// `interrupt-names`, parallel to `interrupts`.
    pub interrupt_names: Vec<String>,
    /// `#iommu-cells` (1 for SMMUv3).
    pub iommu_cells: u32,
    /// `dma-coherent` present.
    pub dma_coherent: bool,
}

impl SmmuV3 {
    /// The interrupt named `name` in `interrupt-names`.
    #[must_use]
    pub fn irq(&self, name: &str) -> Option<&IrqSpec> {
        let idx = self.interrupt_names.iter().position(|n| n == name)?;
        self.interrupts.get(idx)
    }
}

/// One entry of an `iommus` property.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct IommuSpecifier {
    /// The IOMMU.
    pub iommu: Phandle,
    /// The specifier cells (`#iommu-cells` of the IOMMU); for SMMUv3, the one StreamID.
    pub ids: Vec<u32>,
}

/// A node with an `iommus` property.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct IommuClient {
    /// Node path.
    pub path: String,
    /// Its entries.
    pub iommus: Vec<IommuSpecifier>,
}

/// The `/chosen` node.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct Chosen {
    /// `bootargs`.
    pub bootargs: Option<String>,
    /// `stdout-path` as written (options after `:` included).
    pub stdout_path: Option<String>,
    /// `[linux,initrd-start, linux,initrd-end)` (each 32 or 64-bit).
    pub initrd: Option<PhysRange>,
}

/// The PSCI conduit.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum PsciMethod {
    /// `method = "smc"`.
    Smc,
    /// `method = "hvc"`.
    Hvc,
}

/// The `/psci` node.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Psci {
    /// The conduit.
    pub method: PsciMethod,
    /// The `compatible` strings (`arm,psci-1.0`, `arm,psci-0.2`, `arm,psci`).
    pub compatible: Vec<String>,
    /// `cpu_suspend` function ID (PSCI 0.1 binding), if present.
    pub cpu_suspend: Option<u32>,
    /// `cpu_off` function ID, if present.
    pub cpu_off: Option<u32>,
    /// `cpu_on` function ID, if present.
    pub cpu_on: Option<u32>,
    /// `migrate` function ID, if present.
    pub migrate: Option<u32>,
}

/// One `reg` entry of a device node, translated to a CPU physical address.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct MmioRegion {
    /// Node path.
    pub path: String,
    /// The range.
    pub range: PhysRange,
    /// Whether the node's `status` is okay (or absent).
    pub enabled: bool,
}

/// A node that occupies CPU physical address space (see [`Platform::devices`]).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct DeviceNode {
    /// Node path.
    pub path: String,
    /// The `compatible` strings, most specific first (empty if the node has none or it is not a
    /// string list).
    pub compatible: Vec<String>,
    /// `reg`, translated to CPU physical addresses (zero-size entries kept, empty if no `reg`).
    pub regs: Vec<PhysRange>,
    /// The CPU physical windows the node's `ranges` opens for its children (empty unless it is a
    /// memory-mapped bus with a non-empty `ranges`).
    pub windows: Vec<PhysRange>,
    /// Whether the node's `status` is okay (or absent).
    pub enabled: bool,
    /// Index in [`Platform::devices`] of the nearest ancestor that is itself a device node.
    pub parent: Option<usize>,
}

impl DeviceNode {
    /// The most specific `compatible` string, if any.
    #[must_use]
    pub fn primary_compatible(&self) -> Option<&str> {
        self.compatible.first().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn r(base: u64, size: u64) -> PhysRange {
        PhysRange::new(base, size).unwrap()
    }

    #[test]
    fn phys_range_rejects_wrap() {
        assert!(PhysRange::new(u64::MAX, 1).is_none());
        assert_eq!(r(u64::MAX - 1, 1).end(), u64::MAX);
        assert!(r(0x1000, 0x1000).contains(0x1fff));
        assert!(!r(0x1000, 0x1000).contains(0x2000));
        assert!(r(0x1000, 0x1000).overlaps(&r(0x1fff, 1)));
        assert!(!r(0x1000, 0x1000).overlaps(&r(0x2000, 1)));
    }

    #[test]
    fn phys_range_from_bounds() {
        assert_eq!(PhysRange::from_bounds(0x1000, 0x3000), r(0x1000, 0x2000));
        assert_eq!(PhysRange::from_bounds(0x1000, 0x3000).end(), 0x3000);
        assert_eq!(PhysRange::from_bounds(0, u64::MAX), r(0, u64::MAX));
        // An inverted or equal pair is the empty range at `start`.
        assert_eq!(PhysRange::from_bounds(0x3000, 0x1000), r(0x3000, 0));
        assert!(PhysRange::from_bounds(0x3000, 0x1000).is_empty());
        assert!(PhysRange::from_bounds(0x3000, 0x3000).is_empty());
        assert!(!PhysRange::from_bounds(0x3000, 0x3001).is_empty());
        assert!(!PhysRange::from_bounds(0x3000, 0x3000).contains(0x3000));
    }

    #[test]
    fn merge_sorts_and_joins() {
        let mut v = vec![
            r(0x3000, 0x1000),
            r(0x1000, 0x1000),
            r(0x2000, 0x1000),
            r(0x2800, 0x10),
            r(0x8000, 1),
        ];
        merge_ranges(&mut v);
        assert_eq!(v, vec![r(0x1000, 0x3000), r(0x8000, 1)]);
    }

    #[test]
    fn iommu_map_lookup() {
        let e = IommuMapEntry {
            rid_base: 0x100,
            iommu: Phandle(7),
            sid_base: 0x1000,
            length: 0x10,
        };
        assert_eq!(e.stream_id(0xff), None);
        assert_eq!(e.stream_id(0x100), Some(0x1000));
        assert_eq!(e.stream_id(0x10f), Some(0x100f));
        assert_eq!(e.stream_id(0x110), None);
        let host = PciHost {
            path: "/pcie".into(),
            ecam: r(0, 0x1000_0000),
            bus_range: (0, 255),
            windows: vec![],
            iommu_map: vec![e],
            iommu_map_mask: Some(0xff0f),
            msi_map: vec![],
            msi_map_mask: None,
        };
        assert_eq!(host.stream_id(0x1f5), Some((Phandle(7), 0x1005)));
    }

    #[test]
    fn gic_intid_decoding() {
        let spi = IrqSpec {
            parent: Phandle(1),
            cells: vec![0, 0x4a, 1],
        };
        assert_eq!(spi.gic_intid(), Some(32 + 0x4a));
        let ppi = IrqSpec {
            parent: Phandle(1),
            cells: vec![1, 9, 4],
        };
        assert_eq!(ppi.gic_intid(), Some(25));
        let other = IrqSpec {
            parent: Phandle(1),
            cells: vec![5],
        };
        assert_eq!(other.gic_intid(), None);
    }
}
