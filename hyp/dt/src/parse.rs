//! [`parse`]: from a DTB to a [`Platform`].

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use dtoolkit::{Property, ToCellInt};

use crate::error::{DtError, DtPath};
use crate::platform::{
    Chosen, Cpu, DeviceNode, EnableMethod, GicIts, GicV3, IommuClient, IommuMapEntry,
    IommuSpecifier, IrqSpec, MmioRegion, Mpidr, MsiMapEntry, PciHost, PciSpace, PciWindow, Phandle,
    PhysRange, Pl011, Platform, Psci, PsciMethod, ReservedRegion, SmmuV3,
};
use crate::walk::{NodeInfo, Tree, Xlate, open};

/// `compatible` of the PL011 UART.
const PL011_COMPATIBLE: &str = "arm,pl011";
/// `compatible` of the GICv3.
const GICV3_COMPATIBLE: &str = "arm,gic-v3";
/// `compatible` of a GICv3 ITS.
const GICV3_ITS_COMPATIBLE: &str = "arm,gic-v3-its";
/// `compatible` of a generic ECAM PCI host bridge.
const PCI_ECAM_COMPATIBLE: &str = "pci-host-ecam-generic";
/// `compatible` of an SMMUv3.
pub(crate) const SMMUV3_COMPATIBLE: &str = "arm,smmu-v3";
/// `#address-cells` of a PCI bus (`phys.hi phys.mid phys.lo`).
const PCI_ADDRESS_CELLS: u32 = 3;
/// Position of the space code in `phys.hi`.
const PCI_SPACE_SHIFT: u32 = 24;
/// Width mask of the space code.
const PCI_SPACE_MASK: u32 = 0b11;
/// The prefetchable bit of `phys.hi`.
const PCI_PREFETCHABLE: u32 = 1 << 30;
/// Highest PCI bus number.
const PCI_MAX_BUS: u32 = 0xff;
/// Cells in one `iommu-map`/`msi-map` entry: rid-base, phandle, one specifier cell, length (as
/// Linux's `of_map_id` reads it).
const ID_MAP_ENTRY_CELLS: usize = 4;

/// Parses the boot DTB into a [`Platform`].
///
/// `dtb` must start with the blob; it may be longer than the blob's `totalsize` (the EL2 image can
/// pass a generous slice, or first ask [`crate::dtb_total_size`]). The blob is validated by
/// dtoolkit first, then walked without recursion (at most [`crate::MAX_DEPTH`] levels).
///
/// Addresses are decoded with the `#address-cells`/`#size-cells` of each node's parent (inherited
/// from the nearest ancestor that has them, as Linux reads them, root defaults 2 and 1), and
/// translated to CPU physical addresses through every ancestor's `ranges`.
///
/// # Errors
///
/// Any [`DtError`]: a malformed blob, a missing `/memory` or `/cpus`, or a malformed property on a
/// node the hypervisor relies on. Hostile input never panics.
pub fn parse(dtb: &[u8]) -> Result<Platform, DtError> {
    let tree = Tree::new(open(dtb)?)?;
    let chosen = chosen(&tree)?;
    let uart = uart(&tree, chosen.stdout_path.as_deref())?;
    Ok(Platform {
        memory: memory(&tree)?,
        reserved: reserved(&tree)?,
        cpus: cpus(&tree)?,
        uart,
        gic: gic(&tree)?,
        pci_hosts: pci_hosts(&tree)?,
        smmus: smmus(&tree)?,
        iommu_clients: iommu_clients(&tree)?,
        chosen,
        psci: psci(&tree)?,
        mmio: mmio(&tree)?,
        devices: devices(&tree)?,
    })
}

/// The indices of every node compatible with `compat`, in DT order.
fn compatible_nodes<'t>(tree: &'t Tree<'_>, compat: &'t str) -> impl Iterator<Item = usize> + 't {
    (0..tree.nodes.len()).filter(move |&i| tree.nodes[i].is_compatible(compat))
}

/// Node `idx`'s phandle as a [`Phandle`].
fn phandle(tree: &Tree<'_>, idx: usize) -> Result<Option<Phandle>, DtError> {
    Ok(tree.nodes[idx].phandle()?.map(Phandle))
}

/// RAM: `reg` of the enabled root-level `device_type = "memory"` nodes, sorted, empty ones dropped.
fn memory(tree: &Tree<'_>) -> Result<Vec<PhysRange>, DtError> {
    let mut ranges = Vec::new();
    for idx in 1..tree.nodes.len() {
        let n = &tree.nodes[idx];
        if n.parent != Some(0) || !n.device_type_is("memory") || !n.enabled() {
            continue;
        }
        let regs = tree.reg(idx)?.ok_or_else(|| n.missing("reg"))?;
        ranges.extend(regs.into_iter().filter(|r| r.size != 0));
    }
    if ranges.is_empty() {
        return Err(DtError::MissingNode("/memory"));
    }
    ranges.sort_unstable();
    Ok(ranges)
}

/// The `/memreserve/` block plus the static children of `/reserved-memory`.
fn reserved(tree: &Tree<'_>) -> Result<Vec<ReservedRegion>, DtError> {
    let mut out = Vec::new();
    for r in tree.fdt.memory_reservations() {
        let range = PhysRange::new(r.address(), r.size()).ok_or(DtError::AddressOverflow {
            path: DtPath::new("/memreserve/"),
            base: r.address(),
            size: r.size(),
        })?;
        out.push(ReservedRegion {
            range,
            path: None,
            no_map: false,
        });
    }
    if let Some(rm) = tree.root_child("reserved-memory") {
        for idx in (rm + 1)..tree.nodes.len() {
            if tree.nodes[idx].parent != Some(rm) {
                continue;
            }
            for range in tree.reg(idx)?.unwrap_or_default() {
                out.push(ReservedRegion {
                    range,
                    path: Some(tree.nodes[idx].path.clone()),
                    no_map: tree.nodes[idx].prop("no-map").is_some(),
                });
            }
        }
    }
    Ok(out)
}

/// The `cpu` children of `/cpus`, MPIDR from `reg` (in `/cpus`'s cells).
fn cpus(tree: &Tree<'_>) -> Result<Vec<Cpu>, DtError> {
    let cpus_idx = tree
        .root_child("cpus")
        .ok_or(DtError::MissingNode("/cpus"))?;
    let mut out = Vec::new();
    for idx in (cpus_idx + 1)..tree.nodes.len() {
        let n = &tree.nodes[idx];
        if n.parent != Some(cpus_idx) || !(n.base_name() == "cpu" || n.device_type_is("cpu")) {
            continue;
        }
        let reg = tree.raw_reg(idx)?.ok_or_else(|| n.missing("reg"))?;
        let &(mpidr, _) = reg.first().ok_or_else(|| n.missing("reg"))?;
        let enable_method = match n.prop_strings("enable-method")? {
            None => EnableMethod::None,
            Some(methods) => match methods.first().copied() {
                Some("psci") => EnableMethod::Psci,
                Some("spin-table") => EnableMethod::SpinTable(release_addr(n)?),
                Some(other) => EnableMethod::Other(other.to_string()),
                None => EnableMethod::None,
            },
        };
        out.push(Cpu {
            path: n.path.clone(),
            mpidr: Mpidr(mpidr),
            enable_method,
            enabled: n.enabled(),
        });
    }
    if out.is_empty() {
        return Err(DtError::MissingNode("/cpus/cpu"));
    }
    Ok(out)
}

/// `cpu-release-addr` (one or two cells).
fn release_addr(n: &NodeInfo<'_>) -> Result<Option<u64>, DtError> {
    n.prop("cpu-release-addr")
        .map(|v| be_int(n, "cpu-release-addr", v))
        .transpose()
}

/// A 32- or 64-bit big-endian integer property.
fn be_int(n: &NodeInfo<'_>, name: &'static str, v: &[u8]) -> Result<u64, DtError> {
    match v.len() {
        4 => Ok(u64::from(u32::from_be_bytes([v[0], v[1], v[2], v[3]]))),
        8 => Ok(u64::from_be_bytes([
            v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7],
        ])),
        _ => Err(n.bad(name, v)),
    }
}

/// The node a `stdout-path` names (options after `:` dropped, an alias resolved through `/aliases`).
fn stdout_node(tree: &Tree<'_>, stdout_path: &str) -> Result<Option<usize>, DtError> {
    let path = stdout_path.split(':').next().unwrap_or("");
    if path.starts_with('/') {
        return Ok(tree.find(path));
    }
    let Some(aliases) = tree.root_child("aliases") else {
        return Ok(None);
    };
    let a = &tree.nodes[aliases];
    match a.property(path) {
        None => Ok(None),
        Some(p) => {
            let target = p
                .value()
                .split(|&b| b == 0)
                .next()
                .and_then(|t| core::str::from_utf8(t).ok())
                .ok_or_else(|| DtError::BadProperty {
                    path: DtPath::new(&a.path),
                    property: "alias",
                    len: p.value().len(),
                })?;
            Ok(tree.find(target))
        }
    }
}

/// The PL011 `stdout-path` names, else the first enabled one.
fn uart(tree: &Tree<'_>, stdout_path: Option<&str>) -> Result<Option<Pl011>, DtError> {
    let stdout = match stdout_path {
        Some(p) => stdout_node(tree, p)?,
        None => None,
    };
    let chosen = stdout
        .filter(|&i| tree.nodes[i].is_compatible(PL011_COMPATIBLE))
        .or_else(|| compatible_nodes(tree, PL011_COMPATIBLE).find(|&i| tree.nodes[i].enabled()));
    chosen
        .map(|idx| {
            Ok(Pl011 {
                path: tree.nodes[idx].path.clone(),
                reg: tree.first_reg(idx)?,
            })
        })
        .transpose()
}

/// The first enabled GICv3 and its ITS children.
fn gic(tree: &Tree<'_>) -> Result<Option<GicV3>, DtError> {
    let Some(idx) = compatible_nodes(tree, GICV3_COMPATIBLE).find(|&i| tree.nodes[i].enabled())
    else {
        return Ok(None);
    };
    let n = &tree.nodes[idx];
    let regs = tree.reg(idx)?.ok_or_else(|| n.missing("reg"))?;
    let redist_regions = n.prop_u32("#redistributor-regions")?.unwrap_or(1) as usize;
    if redist_regions == 0 || regs.len() < 1 + redist_regions {
        return Err(DtError::BadValue {
            path: DtPath::new(&n.path),
            property: "#redistributor-regions",
            value: redist_regions as u64,
        });
    }
    let mut its = Vec::new();
    for child in (idx + 1)..tree.nodes.len() {
        let c = &tree.nodes[child];
        if c.parent == Some(idx) && c.is_compatible(GICV3_ITS_COMPATIBLE) && c.enabled() {
            its.push(GicIts {
                path: c.path.clone(),
                phandle: phandle(tree, child)?,
                reg: tree.first_reg(child)?,
            });
        }
    }
    Ok(Some(GicV3 {
        path: n.path.clone(),
        phandle: phandle(tree, idx)?,
        distributor: regs[0],
        redistributors: regs[1..=redist_regions].to_vec(),
        cpu_interfaces: regs[1 + redist_regions..].to_vec(),
        its,
    }))
}

/// Every enabled ECAM host bridge.
fn pci_hosts(tree: &Tree<'_>) -> Result<Vec<PciHost>, DtError> {
    compatible_nodes(tree, PCI_ECAM_COMPATIBLE)
        .filter(|&i| tree.nodes[i].enabled())
        .map(|idx| pci_host(tree, idx))
        .collect()
}

/// One ECAM host bridge: ECAM, bus-range, windows, `iommu-map`.
fn pci_host(tree: &Tree<'_>, idx: usize) -> Result<PciHost, DtError> {
    let n = &tree.nodes[idx];
    let path = DtPath::new(&n.path);
    let ecam = tree.first_reg(idx)?;
    let bus_range = match n.prop_cells("bus-range")? {
        None => (0, PCI_MAX_BUS as u8),
        Some(c) => match c.as_slice() {
            [start, end] if start <= end && *end <= PCI_MAX_BUS => (*start as u8, *end as u8),
            [_, end] => {
                return Err(DtError::BadValue {
                    path,
                    property: "bus-range",
                    value: u64::from(*end),
                });
            }
            _ => return Err(n.bad("bus-range", n.prop("bus-range").unwrap_or_default())),
        },
    };
    let windows = pci_windows(tree, idx)?;
    let iommu_map = id_map(tree, idx, "iommu-map")?
        .into_iter()
        .map(|[rid_base, iommu, sid_base, length]| IommuMapEntry {
            rid_base,
            iommu: Phandle(iommu),
            sid_base,
            length,
        })
        .collect();
    let msi_map = id_map(tree, idx, "msi-map")?
        .into_iter()
        .map(|[rid_base, ctrl, msi_base, length]| MsiMapEntry {
            rid_base,
            msi_controller: Phandle(ctrl),
            msi_base,
            length,
        })
        .collect();
    Ok(PciHost {
        path: n.path.clone(),
        ecam,
        bus_range,
        windows,
        iommu_map,
        iommu_map_mask: n.prop_u32("iommu-map-mask")?,
        msi_map,
        msi_map_mask: n.prop_u32("msi-map-mask")?,
    })
}

/// An `iommu-map`/`msi-map` style property: entries of `<rid-base phandle id-base length>` (one
/// specifier cell, as Linux's `of_map_id` reads them), each phandle checked to name a node.
fn id_map(tree: &Tree<'_>, idx: usize, name: &'static str) -> Result<Vec<[u32; 4]>, DtError> {
    let n = &tree.nodes[idx];
    let Some(cells) = n.prop_cells(name)? else {
        return Ok(Vec::new());
    };
    if cells.len() % ID_MAP_ENTRY_CELLS != 0 {
        return Err(n.bad(name, n.prop(name).unwrap_or_default()));
    }
    cells
        .chunks_exact(ID_MAP_ENTRY_CELLS)
        .map(|e| {
            tree.by_phandle(e[1], idx)?;
            Ok([e[0], e[1], e[2], e[3]])
        })
        .collect()
}

/// Decodes a PCI host's `ranges` (child address = 3 cells) into CPU-physical windows.
fn pci_windows(tree: &Tree<'_>, idx: usize) -> Result<Vec<PciWindow>, DtError> {
    let n = &tree.nodes[idx];
    let Some(prop) = n.property("ranges") else {
        return Ok(Vec::new());
    };
    let parent_ac = tree.own_bus(idx).map_or(0, |b| b.address_cells);
    let (child_ac, sc) = (n.child_bus.address_cells, n.child_bus.size_cells);
    if child_ac != PCI_ADDRESS_CELLS || parent_ac == 0 || parent_ac > 2 || sc == 0 || sc > 2 {
        return Err(DtError::BadCells {
            path: DtPath::new(&n.path),
            address_cells: child_ac,
            size_cells: sc,
        });
    }
    let bad = || n.bad("ranges", prop.value());
    let entries = prop
        .as_prop_encoded_array([child_ac as usize, parent_ac as usize, sc as usize])
        .map_err(|_| bad())?;
    let mut out = Vec::new();
    for [child, parent, size] in entries {
        let child: u128 = child.to_int().map_err(|_| bad())?;
        let parent: u64 = parent.to_int().map_err(|_| bad())?;
        let size: u64 = size.to_int().map_err(|_| bad())?;
        // Cells are big-endian: phys.hi is the top 32 bits of the 96-bit value.
        let hi = (child >> 64) as u32;
        let space = match (hi >> PCI_SPACE_SHIFT) & PCI_SPACE_MASK {
            0 => PciSpace::Config,
            1 => PciSpace::Io,
            2 => PciSpace::Mem32,
            _ => PciSpace::Mem64,
        };
        out.push(PciWindow {
            space,
            prefetchable: hi & PCI_PREFETCHABLE != 0,
            pci_addr: child as u64,
            cpu: tree.translate_on_own_bus(idx, parent, size)?,
        });
    }
    Ok(out)
}

/// Splits node `idx`'s `interrupts` into specifiers of its interrupt parent's `#interrupt-cells`.
fn interrupts(tree: &Tree<'_>, idx: usize) -> Result<Vec<IrqSpec>, DtError> {
    let n = &tree.nodes[idx];
    let Some(cells) = n.prop_cells("interrupts")? else {
        return Ok(Vec::new());
    };
    let parent_ph = n.irq_parent.ok_or_else(|| n.missing("interrupt-parent"))?;
    let parent = tree.by_phandle(parent_ph, idx)?;
    let width = parent
        .prop_u32("#interrupt-cells")?
        .ok_or_else(|| parent.missing("#interrupt-cells"))? as usize;
    if width == 0 || cells.len() % width != 0 {
        return Err(n.bad("interrupts", n.prop("interrupts").unwrap_or_default()));
    }
    Ok(cells
        .chunks_exact(width)
        .map(|c| IrqSpec {
            parent: Phandle(parent_ph),
            cells: c.to_vec(),
        })
        .collect())
}

/// Every enabled SMMUv3.
fn smmus(tree: &Tree<'_>) -> Result<Vec<SmmuV3>, DtError> {
    compatible_nodes(tree, SMMUV3_COMPATIBLE)
        .filter(|&i| tree.nodes[i].enabled())
        .map(|idx| {
            let n = &tree.nodes[idx];
            Ok(SmmuV3 {
                path: n.path.clone(),
                phandle: phandle(tree, idx)?,
                reg: tree.first_reg(idx)?,
                interrupts: interrupts(tree, idx)?,
                interrupt_names: n
                    .prop_strings("interrupt-names")?
                    .unwrap_or_default()
                    .into_iter()
                    .map(String::from)
                    .collect(),
                iommu_cells: n
                    .prop_u32("#iommu-cells")?
                    .ok_or_else(|| n.missing("#iommu-cells"))?,
                dma_coherent: n.prop("dma-coherent").is_some(),
            })
        })
        .collect()
}

/// Every node with `iommus`, split with each target's `#iommu-cells`.
fn iommu_clients(tree: &Tree<'_>) -> Result<Vec<IommuClient>, DtError> {
    let mut out = Vec::new();
    for idx in 0..tree.nodes.len() {
        let n = &tree.nodes[idx];
        let Some(cells) = n.prop_cells("iommus")? else {
            continue;
        };
        let mut iommus = Vec::new();
        let mut rest = cells.as_slice();
        while let Some((&ph, tail)) = rest.split_first() {
            let target = tree.by_phandle(ph, idx)?;
            let width = target
                .prop_u32("#iommu-cells")?
                .ok_or_else(|| target.missing("#iommu-cells"))? as usize;
            let ids = tail
                .get(..width)
                .ok_or_else(|| n.bad("iommus", n.prop("iommus").unwrap_or_default()))?;
            iommus.push(IommuSpecifier {
                iommu: Phandle(ph),
                ids: ids.to_vec(),
            });
            rest = &tail[width..];
        }
        out.push(IommuClient {
            path: n.path.clone(),
            iommus,
        });
    }
    Ok(out)
}

/// `/chosen`: bootargs, stdout-path, initrd (32- or 64-bit cells each).
fn chosen(tree: &Tree<'_>) -> Result<Chosen, DtError> {
    let Some(idx) = tree.root_child("chosen") else {
        return Ok(Chosen::default());
    };
    let n = &tree.nodes[idx];
    let start = n
        .prop("linux,initrd-start")
        .map(|v| be_int(n, "linux,initrd-start", v))
        .transpose()?;
    let end = n
        .prop("linux,initrd-end")
        .map(|v| be_int(n, "linux,initrd-end", v))
        .transpose()?;
    let initrd = match (start, end) {
        (None, None) => None,
        (Some(_), None) => return Err(n.missing("linux,initrd-end")),
        (None, Some(_)) => return Err(n.missing("linux,initrd-start")),
        (Some(s), Some(e)) => Some(
            PhysRange::new(
                s,
                e.checked_sub(s).ok_or(DtError::BadValue {
                    path: DtPath::new(&n.path),
                    property: "linux,initrd-end",
                    value: e,
                })?,
            )
            .ok_or(DtError::BadValue {
                path: DtPath::new(&n.path),
                property: "linux,initrd-end",
                value: e,
            })?,
        ),
    };
    Ok(Chosen {
        bootargs: n.prop_str("bootargs")?.map(String::from),
        stdout_path: n.prop_str("stdout-path")?.map(String::from),
        initrd,
    })
}

/// `/psci` (or a root node compatible with a PSCI binding).
fn psci(tree: &Tree<'_>) -> Result<Option<Psci>, DtError> {
    let found = tree.root_child("psci").or_else(|| {
        (1..tree.nodes.len()).find(|&i| {
            tree.nodes[i].parent == Some(0)
                && (tree.nodes[i].is_compatible("arm,psci")
                    || tree.nodes[i].is_compatible("arm,psci-0.2")
                    || tree.nodes[i].is_compatible("arm,psci-1.0"))
        })
    });
    let Some(idx) = found else {
        return Ok(None);
    };
    let n = &tree.nodes[idx];
    let method = match n.prop_str("method")? {
        Some("smc") => PsciMethod::Smc,
        Some("hvc") => PsciMethod::Hvc,
        Some(_) => return Err(n.bad("method", n.prop("method").unwrap_or_default())),
        None => return Err(n.missing("method")),
    };
    Ok(Some(Psci {
        method,
        compatible: n
            .prop_strings("compatible")?
            .unwrap_or_default()
            .into_iter()
            .map(String::from)
            .collect(),
        cpu_suspend: n.prop_u32("cpu_suspend")?,
        cpu_off: n.prop_u32("cpu_off")?,
        cpu_on: n.prop_u32("cpu_on")?,
        migrate: n.prop_u32("migrate")?,
    }))
}

/// Every translatable device `reg` (RAM, `/reserved-memory` and non-memory-mapped buses left out).
fn mmio(tree: &Tree<'_>) -> Result<Vec<MmioRegion>, DtError> {
    let reserved_memory = tree.root_child("reserved-memory");
    let mut out = Vec::new();
    for idx in 1..tree.nodes.len() {
        let n = &tree.nodes[idx];
        if n.device_type_is("memory") || n.prop("reg").is_none() {
            continue;
        }
        if reserved_memory.is_some_and(|rm| is_descendant(tree, idx, rm)) {
            continue;
        }
        let Some(regs) = tree.reg(idx)? else {
            continue;
        };
        out.extend(
            regs.into_iter()
                .filter(|r| r.size != 0)
                .map(|range| MmioRegion {
                    path: n.path.clone(),
                    range,
                    enabled: n.enabled(),
                }),
        );
    }
    Ok(out)
}

/// Every node occupying CPU address space: a translatable `reg`, or a bus window (non-empty
/// `ranges` on a memory-mapped bus). Memory, `/reserved-memory` and nodes on opaque buses are
/// left out (see [`Platform::devices`]).
fn devices(tree: &Tree<'_>) -> Result<Vec<DeviceNode>, DtError> {
    let reserved_memory = tree.root_child("reserved-memory");
    let mut out: Vec<DeviceNode> = Vec::new();
    // Node index -> index in `out`, for the parent links.
    let mut device_of: Vec<Option<usize>> = alloc::vec![None; tree.nodes.len()];
    for idx in 1..tree.nodes.len() {
        let n = &tree.nodes[idx];
        if n.device_type_is("memory")
            || reserved_memory.is_some_and(|rm| idx == rm || is_descendant(tree, idx, rm))
        {
            continue;
        }
        let regs = tree.reg(idx)?.unwrap_or_default();
        let windows = match &n.child_bus.xlate {
            Xlate::Windows(w) if n.prop("ranges").is_some_and(|r| !r.is_empty()) => w
                .iter()
                .map(|w| {
                    PhysRange::new(w.cpu, w.size).ok_or(DtError::AddressOverflow {
                        path: DtPath::new(&n.path),
                        base: w.cpu,
                        size: w.size,
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => Vec::new(),
        };
        if regs.is_empty() && windows.is_empty() {
            continue;
        }
        let compatible = n
            .prop_strings("compatible")
            .ok()
            .flatten()
            .unwrap_or_default()
            .into_iter()
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect();
        let mut parent = n.parent;
        while let Some(p) = parent {
            if device_of[p].is_some() {
                break;
            }
            parent = tree.nodes[p].parent;
        }
        device_of[idx] = Some(out.len());
        out.push(DeviceNode {
            path: n.path.clone(),
            compatible,
            regs,
            windows,
            enabled: n.enabled(),
            parent: parent.and_then(|p| device_of[p]),
        });
    }
    Ok(out)
}

/// Whether node `idx` is below node `ancestor`.
fn is_descendant(tree: &Tree<'_>, idx: usize, ancestor: usize) -> bool {
    let mut cur = tree.nodes[idx].parent;
    while let Some(p) = cur {
        if p == ancestor {
            return true;
        }
        cur = tree.nodes[p].parent;
    }
    false
}
