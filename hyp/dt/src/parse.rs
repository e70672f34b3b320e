//! [`parse`]: from a DTB to a [`Platform`]. Each part of the [`Platform`] has its own module below;
//! this one holds the entry point and the helpers they share.

mod address_map;
mod chosen;
mod cpus;
mod gic;
mod iommu;
mod memory;
mod pci;

use alloc::string::String;
use alloc::vec::Vec;

use crate::error::DtError;
use crate::platform::{IrqSpec, Phandle, Platform};
use crate::walk::{NodeInfo, Tree, open};

pub(crate) use iommu::SMMUV3_COMPATIBLE;

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
    let chosen = chosen::chosen(&tree)?;
    let uart = chosen::uart(&tree, chosen.stdout_path.as_deref())?;
    Ok(Platform {
        compatible: tree.nodes[0]
            .prop_strings("compatible")?
            .unwrap_or_default()
            .into_iter()
            .map(String::from)
            .collect(),
        memory: memory::memory(&tree)?,
        reserved: memory::reserved(&tree)?,
        cpus: cpus::cpus(&tree)?,
        uart,
        gic: gic::gic(&tree)?,
        pci_hosts: pci::pci_hosts(&tree)?,
        smmus: iommu::smmus(&tree)?,
        iommu_clients: iommu::iommu_clients(&tree)?,
        chosen,
        psci: cpus::psci(&tree)?,
        mmio: address_map::mmio(&tree)?,
        devices: address_map::devices(&tree)?,
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
