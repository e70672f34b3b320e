//! RAM and what the DTB already reserves: [`Platform::memory`](crate::Platform::memory) and
//! [`Platform::reserved`](crate::Platform::reserved).

use alloc::vec::Vec;

use crate::error::{DtError, DtPath};
use crate::platform::{PhysRange, ReservedRegion};
use crate::walk::Tree;

/// RAM: `reg` of the enabled root-level `device_type = "memory"` nodes, sorted, empty ones dropped.
pub(super) fn memory(tree: &Tree<'_>) -> Result<Vec<PhysRange>, DtError> {
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
pub(super) fn reserved(tree: &Tree<'_>) -> Result<Vec<ReservedRegion>, DtError> {
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
