//! The CPUs and how to start them: [`Platform::cpus`](crate::Platform::cpus) and
//! [`Platform::psci`](crate::Platform::psci).

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use super::be_int;
use crate::error::DtError;
use crate::platform::{Cpu, EnableMethod, Mpidr, Psci, PsciMethod};
use crate::walk::{NodeInfo, Tree};

/// The `cpu` children of `/cpus`, MPIDR from `reg` (in `/cpus`'s cells).
pub(super) fn cpus(tree: &Tree<'_>) -> Result<Vec<Cpu>, DtError> {
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

/// `/psci` (or a root node compatible with a PSCI binding).
pub(super) fn psci(tree: &Tree<'_>) -> Result<Option<Psci>, DtError> {
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
