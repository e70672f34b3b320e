//! The SMMUv3s and the nodes that name them in `iommus`: [`Platform::smmus`](crate::Platform::smmus)
//! and [`Platform::iommu_clients`](crate::Platform::iommu_clients).

use alloc::string::String;
use alloc::vec::Vec;

use super::{compatible_nodes, interrupts, phandle};
use crate::error::DtError;
use crate::platform::{IommuClient, IommuSpecifier, Phandle, SmmuV3};
use crate::walk::Tree;

/// `compatible` of an SMMUv3.
pub(crate) const SMMUV3_COMPATIBLE: &str = "arm,smmu-v3";

/// Every enabled SMMUv3.
pub(super) fn smmus(tree: &Tree<'_>) -> Result<Vec<SmmuV3>, DtError> {
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
pub(super) fn iommu_clients(tree: &Tree<'_>) -> Result<Vec<IommuClient>, DtError> {
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
