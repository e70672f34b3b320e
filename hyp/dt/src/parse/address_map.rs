//! Who occupies CPU physical address space: [`Platform::mmio`](crate::Platform::mmio) and
//! [`Platform::devices`](crate::Platform::devices).

use alloc::string::String;
use alloc::vec::Vec;

use crate::error::{DtError, DtPath};
use crate::platform::{DeviceNode, MmioRegion, PhysRange};
use crate::walk::{Tree, Xlate};

/// Every translatable device `reg` (RAM, `/reserved-memory` and non-memory-mapped buses left out).
pub(super) fn mmio(tree: &Tree<'_>) -> Result<Vec<MmioRegion>, DtError> {
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
pub(super) fn devices(tree: &Tree<'_>) -> Result<Vec<DeviceNode>, DtError> {
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
