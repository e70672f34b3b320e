//! The ECAM PCI host bridges, their windows and their `iommu-map`/`msi-map`:
//! [`Platform::pci_hosts`](crate::Platform::pci_hosts).

use alloc::vec::Vec;

use dtoolkit::{Property, ToCellInt};

use super::compatible_nodes;
use crate::error::{DtError, DtPath};
use crate::platform::{IommuMapEntry, MsiMapEntry, PciHost, PciSpace, PciWindow, Phandle};
use crate::walk::Tree;

/// `compatible` of a generic ECAM PCI host bridge.
const PCI_ECAM_COMPATIBLE: &str = "pci-host-ecam-generic";
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

/// Every enabled ECAM host bridge.
pub(super) fn pci_hosts(tree: &Tree<'_>) -> Result<Vec<PciHost>, DtError> {
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
