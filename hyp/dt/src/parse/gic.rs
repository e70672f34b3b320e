//! The GICv3 and its ITSs: [`Platform::gic`](crate::Platform::gic).

use alloc::vec::Vec;

use super::{compatible_nodes, phandle};
use crate::error::{DtError, DtPath};
use crate::platform::{GicIts, GicV3};
use crate::walk::Tree;

/// `compatible` of the GICv3.
const GICV3_COMPATIBLE: &str = "arm,gic-v3";
/// `compatible` of a GICv3 ITS.
const GICV3_ITS_COMPATIBLE: &str = "arm,gic-v3-its";

/// The first enabled GICv3 and its ITS children.
pub(super) fn gic(tree: &Tree<'_>) -> Result<Option<GicV3>, DtError> {
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
