//! [`rewrite_for_host`]: the DTB handed to the host kernel.

use alloc::format;
use alloc::vec;
use alloc::vec::Vec;

use dtoolkit::Node;
use dtoolkit::fdt::Fdt;
use dtoolkit::model::{DeviceTree, DeviceTreeNode, DeviceTreeProperty};

use crate::PhysRange;
use crate::error::{DtError, DtPath};
use crate::parse::SMMUV3_COMPATIBLE;
use crate::walk::{Tree, Xlate, open};

/// Name of the node holding reserved regions (Devicetree specification 3.5).
const RESERVED_MEMORY: &str = "reserved-memory";
/// Node-name prefix of the regions this crate reserves (`warden@<base>`).
const RESERVED_NODE_PREFIX: &str = "warden";
/// Offset of `boot_cpuid_phys` in the FDT header (dtoolkit's writer always writes 0 there).
const HEADER_BOOT_CPUID_OFFSET: usize = 28;

/// What the hypervisor changes in the DTB it hands to the host.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct HostDtEdits<'a> {
    /// Regions the host must never map or touch, as `(base, size)`: each becomes a `no-map` child
    /// `warden@<base in hex>` of `/reserved-memory`.
    pub reserved_no_map: Vec<(u64, u64)>,
    /// The `compatible` every `arm,smmu-v3` node gets instead (Warden's paravirtual string, from
    /// `warden-abi`), so the host's own SMMUv3 driver never binds.
    pub smmu_compatible: &'a str,
    /// Full paths of the nodes the host must not use (devices the hypervisor withholds): each gets
    /// `status = "disabled"`, so Linux never probes them.
    pub disable: Vec<&'a str>,
}

/// Rewrites `dtb` (the boot DTB; the slice may be longer than its `totalsize`) for the host kernel
/// and returns the new, packed blob.
///
/// - Adds a `no-map` child `warden@<base>` of `/reserved-memory` for every region of
///   [`HostDtEdits::reserved_no_map`], creating `/reserved-memory` (with the root's
///   `#address-cells`/`#size-cells`, 2 and 2 on QEMU virt, and an empty `ranges`) if the DTB has
///   none. Linux ignores a `/reserved-memory` whose cells differ from the root's, so an existing
///   one must match them (else [`DtError::BadCells`]); it gets an empty `ranges` if it had none.
/// - Replaces the `compatible` of every `arm,smmu-v3` node with [`HostDtEdits::smmu_compatible`],
///   keeping every other property (phandle, reg, interrupts, ...) so that PCI `iommu-map` and
///   `iommus` references still resolve to it.
/// - Sets `status = "disabled"` on every node of [`HostDtEdits::disable`] (its other properties
///   kept).
/// - Leaves everything else as it was, `/chosen` included (bootargs, initrd), as well as the
///   `/memreserve/` block and the header's `boot_cpuid_phys`.
///
/// The result is checked with dtoolkit's validating reader before it is returned. Use
/// [`check_fits`] to check it against the host DTB slot.
///
/// # Errors
///
/// [`DtError::BadRegion`] for an empty, wrapping or overlapping region, [`DtError::BadCompatible`]
/// for an empty string or one with a NUL, [`DtError::BadCells`] if a
/// region does not fit an existing `/reserved-memory`'s cells, [`DtError::DuplicateNode`] if two
/// sibling nodes share a name (the model could not keep both), [`DtError::NoSuchNode`] if a path of
/// [`HostDtEdits::disable`] names no node, and any error of reading the input.
pub fn rewrite_for_host(dtb: &[u8], edits: &HostDtEdits<'_>) -> Result<Vec<u8>, DtError> {
    let compatible = edits.smmu_compatible;
    if compatible.is_empty() || compatible.contains('\0') {
        return Err(DtError::BadCompatible);
    }
    for (i, &(base, size)) in edits.reserved_no_map.iter().enumerate() {
        let Some(range) = PhysRange::new(base, size).filter(|r| r.size != 0) else {
            return Err(DtError::BadRegion { base, size });
        };
        // Overlapping regions would be ambiguous (and equal bases would collide on the node name).
        let overlaps = edits.reserved_no_map[..i]
            .iter()
            .any(|&(b, s)| PhysRange::new(b, s).is_some_and(|other| other.overlaps(&range)));
        if overlaps {
            return Err(DtError::BadRegion { base, size });
        }
    }

    let fdt = open(dtb)?;
    // The walk bounds the depth (the model's conversion and writer recurse) and gives paths.
    let tree = Tree::new(fdt)?;
    let mut model = DeviceTree::from_fdt(&fdt);
    check_no_duplicates(&tree, &model)?;

    for node in tree
        .nodes
        .iter()
        .filter(|n| n.is_compatible(SMMUV3_COMPATIBLE))
    {
        let target = model
            .find_node_mut(&node.path)
            .ok_or(DtError::DuplicateNode {
                path: DtPath::new(&node.path),
            })?;
        target.add_property(DeviceTreeProperty::new_unchecked("compatible", compatible));
    }

    for &path in &edits.disable {
        // Exact paths only: the model's lookup would also accept a path without unit addresses.
        if !tree.nodes.iter().any(|n| n.path == path) {
            return Err(DtError::NoSuchNode {
                path: DtPath::new(path),
            });
        }
        let target = model.find_node_mut(path).ok_or(DtError::NoSuchNode {
            path: DtPath::new(path),
        })?;
        target.add_property(DeviceTreeProperty::new_unchecked("status", "disabled"));
    }

    add_reserved(&tree, &mut model, &edits.reserved_no_map)?;

    let mut out = model.to_dtb();
    // Keep the boot CPU the firmware named.
    let cpuid = HEADER_BOOT_CPUID_OFFSET..HEADER_BOOT_CPUID_OFFSET + 4;
    if let (Some(src), Some(dst)) = (dtb.get(cpuid.clone()), out.get_mut(cpuid)) {
        dst.copy_from_slice(src);
    }
    Fdt::new(&out)?;
    Ok(out)
}

/// Fails if the model holds fewer nodes than the blob (sibling nodes with equal names collapse into
/// one in the model's maps).
fn check_no_duplicates(tree: &Tree<'_>, model: &DeviceTree) -> Result<(), DtError> {
    let mut count = 0usize;
    let mut stack = vec![&model.root];
    while let Some(node) = stack.pop() {
        count += 1;
        stack.extend(node.children());
    }
    if count == tree.nodes.len() {
        return Ok(());
    }
    // Name the first node whose path repeats.
    let dup = tree
        .nodes
        .iter()
        .enumerate()
        .find(|(i, n)| tree.nodes[..*i].iter().any(|m| m.path == n.path))
        .map_or("/", |(_, n)| n.path.as_str());
    Err(DtError::DuplicateNode {
        path: DtPath::new(dup),
    })
}

/// Whether a bus maps its addresses 1:1 to the CPU's.
fn is_identity(xlate: &Xlate) -> bool {
    match xlate {
        Xlate::Identity => true,
        Xlate::Windows(windows) => windows.iter().all(|w| w.child == w.cpu),
        Xlate::Opaque => false,
    }
}

/// Encodes `value` in `cells` big-endian cells, if it fits.
fn encode_cells(value: u64, cells: u32, out: &mut Vec<u32>) -> bool {
    match cells {
        1 => match u32::try_from(value) {
            Ok(v) => {
                out.push(v);
                true
            }
            Err(_) => false,
        },
        2 => {
            out.push((value >> 32) as u32);
            out.push(value as u32);
            true
        }
        _ => false,
    }
}

/// Adds the `warden@<base>` no-map children to `/reserved-memory`, creating it if needed.
fn add_reserved(
    tree: &Tree<'_>,
    model: &mut DeviceTree,
    regions: &[(u64, u64)],
) -> Result<(), DtError> {
    if regions.is_empty() {
        return Ok(());
    }
    // Linux ignores a `/reserved-memory` whose cells differ from the root's or that lacks `ranges`
    // (`drivers/of/of_reserved_mem.c`), so the node must use the root's cells.
    let root = &tree.nodes[0];
    let (address_cells, size_cells) = (root.child_bus.address_cells, root.child_bus.size_cells);
    let bad_cells = |path: &str| DtError::BadCells {
        path: DtPath::new(path),
        address_cells,
        size_cells,
    };
    if !(1..=2).contains(&address_cells) || !(1..=2).contains(&size_cells) {
        return Err(bad_cells("/"));
    }
    let existing = tree.root_child(RESERVED_MEMORY).map(|i| &tree.nodes[i]);
    let node_name = match existing {
        Some(rm) => {
            if rm.prop_u32("#address-cells")? != Some(address_cells)
                || rm.prop_u32("#size-cells")? != Some(size_cells)
            {
                return Err(bad_cells(&rm.path));
            }
            // Children of a `/reserved-memory` whose `ranges` is not an identity map would need the
            // inverse translation; no firmware does that, so refuse it rather than guess.
            if let Some(r) = rm.prop("ranges")
                && !is_identity(&rm.child_bus.xlate)
            {
                return Err(rm.bad("ranges", r));
            }
            rm.name()
        }
        None => RESERVED_MEMORY,
    };
    let path = format!("/{node_name}");
    if existing.is_none() {
        let node = DeviceTreeNode::builder(RESERVED_MEMORY)
            .map_err(|_| DtError::Malformed("reserved-memory node name"))?
            .property(DeviceTreeProperty::new_unchecked(
                "#address-cells",
                address_cells,
            ))
            .property(DeviceTreeProperty::new_unchecked("#size-cells", size_cells))
            .property(DeviceTreeProperty::new_unchecked("ranges", &[] as &[u8]))
            .build();
        model.root.add_child(node);
    }
    let rm = model
        .find_node_mut(&path)
        .ok_or(DtError::MissingNode("/reserved-memory"))?;
    if rm.property("ranges").is_none() {
        rm.add_property(DeviceTreeProperty::new_unchecked("ranges", &[] as &[u8]));
    }
    for &(base, size) in regions {
        let mut reg = Vec::with_capacity(4);
        if !(encode_cells(base, address_cells, &mut reg)
            && encode_cells(size, size_cells, &mut reg))
        {
            return Err(bad_cells(&path));
        }
        let child = DeviceTreeNode::builder(format!("{RESERVED_NODE_PREFIX}@{base:x}"))
            .map_err(|_| DtError::Malformed("reserved region node name"))?
            .property(DeviceTreeProperty::new_unchecked("reg", reg))
            .property(DeviceTreeProperty::new_unchecked("no-map", &[] as &[u8]))
            .build();
        rm.add_child(child);
    }
    Ok(())
}

/// Checks that `dtb` is a complete blob (its `totalsize` equals its length) no larger than `limit`
/// bytes (the host DTB slot, `warden_core::layout::HOST_DTB_MAX_SIZE`).
///
/// # Errors
///
/// [`DtError::TooLarge`] if it does not fit; the errors of [`crate::dtb_total_size`] or
/// [`DtError::Truncated`] if the header is bad or disagrees with the length.
pub fn check_fits(dtb: &[u8], limit: usize) -> Result<(), DtError> {
    let size = crate::dtb_total_size(dtb)?;
    if size != dtb.len() {
        return Err(DtError::Truncated {
            len: dtb.len(),
            needed: size,
        });
    }
    if size > limit {
        return Err(DtError::TooLarge { size, limit });
    }
    Ok(())
}
