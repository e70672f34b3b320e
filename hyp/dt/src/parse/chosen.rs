//! `/chosen` and the console it names: [`Platform::chosen`](crate::Platform::chosen) and
//! [`Platform::uart`](crate::Platform::uart).

use alloc::string::String;

use dtoolkit::Property;

use super::{be_int, compatible_nodes};
use crate::error::{DtError, DtPath};
use crate::platform::{Chosen, PhysRange, Pl011};
use crate::walk::Tree;

/// `compatible` of the PL011 UART.
const PL011_COMPATIBLE: &str = "arm,pl011";

/// `/chosen`: bootargs, stdout-path, initrd (32- or 64-bit cells each).
pub(super) fn chosen(tree: &Tree<'_>) -> Result<Chosen, DtError> {
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
pub(super) fn uart(tree: &Tree<'_>, stdout_path: Option<&str>) -> Result<Option<Pl011>, DtError> {
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
