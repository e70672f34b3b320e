//! The distribution kernel modules the guest gets (virtio-blk and VFIO are modules in Debian's cloud kernel):
//! found in the unpacked package, dependencies read from each module's `.modinfo`, xz-decompressed, and listed in
//! a `modules.dep` that busybox's `modprobe` reads.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// Modules the guest can `modprobe` (plus what they depend on). virtio_blk is loaded by the init at boot.
pub const WANTED: &[&str] = &["virtio_blk", "vfio_pci", "vfio_iommu_type1"];

/// One module to put in the initramfs.
#[derive(Debug)]
pub struct KMod {
    /// Path under `/lib/modules/<release>/`, uncompressed (`kernel/drivers/block/virtio_blk.ko`).
    pub rel: String,
    /// The uncompressed module.
    pub data: Vec<u8>,
}

/// The module name for a file name (`vfio-pci.ko.xz` → `vfio_pci`), as the kernel spells it.
pub fn name_of(file: &str) -> Option<String> {
    let stem = file
        .strip_suffix(".ko.xz")
        .or_else(|| file.strip_suffix(".ko"))?;
    Some(stem.replace('-', "_"))
}

/// The `depends=` list of a module's `.modinfo` (NUL-separated `key=value` strings).
pub fn modinfo_depends(ko: &[u8]) -> Vec<String> {
    const KEY: &[u8] = b"\0depends=";
    let Some(pos) = ko.windows(KEY.len()).position(|w| w == KEY) else {
        return Vec::new();
    };
    let rest = &ko[pos + KEY.len()..];
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..end])
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.replace('-', "_"))
        .collect()
}

fn load(path: &Path) -> Result<Vec<u8>> {
    let raw = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "xz") {
        let mut out = Vec::new();
        lzma_rs::xz_decompress(&mut &raw[..], &mut out)
            .map_err(|e| anyhow::anyhow!("decompressing {}: {e:?}", path.display()))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// The modules in `WANTED` and their dependencies, from the module tree `modules_dir`, plus the text of a
/// `modules.dep` for them.
pub fn collect(modules_dir: &Path) -> Result<(Vec<KMod>, String)> {
    let mut index = BTreeMap::new();
    for rel in crate::util::walk(modules_dir)
        .with_context(|| format!("listing {}", modules_dir.display()))?
    {
        let file = rel
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if let Some(name) = name_of(&file) {
            index.insert(name, rel);
        }
    }
    let mut loaded: BTreeMap<String, (String, Vec<String>, Vec<u8>)> = BTreeMap::new();
    let mut todo: Vec<String> = WANTED.iter().map(|s| s.to_string()).collect();
    while let Some(name) = todo.pop() {
        if loaded.contains_key(&name) {
            continue;
        }
        let Some(rel) = index.get(&name) else {
            bail!(
                "kernel module `{name}` is not in {} (is it built in?)",
                modules_dir.display()
            )
        };
        let data = load(&modules_dir.join(rel))?;
        let deps = modinfo_depends(&data);
        todo.extend(deps.iter().cloned());
        let rel = rel.to_string_lossy().trim_end_matches(".xz").to_string();
        loaded.insert(name, (rel, deps, data));
    }
    let graph: BTreeMap<String, (String, Vec<String>)> = loaded
        .iter()
        .map(|(n, (rel, deps, _))| (n.clone(), (rel.clone(), deps.clone())))
        .collect();
    let dep = modules_dep(&graph);
    let mods = loaded
        .into_values()
        .map(|(rel, _, data)| KMod { rel, data })
        .collect();
    Ok((mods, dep))
}

/// `modules.dep` text for `graph` (name → (path, direct dependencies)): each line lists the module's whole
/// dependency closure with the deepest dependency last, which is the order depmod writes and modprobe expects.
pub fn modules_dep(graph: &BTreeMap<String, (String, Vec<String>)>) -> String {
    fn post_order(
        n: &str,
        g: &BTreeMap<String, (String, Vec<String>)>,
        seen: &mut BTreeSet<String>,
        out: &mut Vec<String>,
    ) {
        if !seen.insert(n.to_string()) {
            return;
        }
        if let Some((_, deps)) = g.get(n) {
            for d in deps {
                post_order(d, g, seen, out);
            }
        }
        out.push(n.to_string());
    }
    let mut text = String::new();
    for (name, (rel, _)) in graph {
        let mut order = Vec::new();
        post_order(name, graph, &mut BTreeSet::new(), &mut order);
        order.pop(); // the module itself comes last in post order
        let deps: Vec<&str> = order
            .iter()
            .rev()
            .filter_map(|d| graph.get(d).map(|(r, _)| r.as_str()))
            .collect();
        text.push_str(&format!("{rel}:"));
        for d in deps {
            text.push(' ');
            text.push_str(d);
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(name_of("vfio-pci.ko.xz").as_deref(), Some("vfio_pci"));
        assert_eq!(name_of("virtio_blk.ko").as_deref(), Some("virtio_blk"));
        assert_eq!(name_of("modules.order"), None);
    }

    #[test]
    fn depends_from_modinfo() {
        let ko = b"\x7fELF....\0license=GPL\0depends=vfio-pci-core,vfio\0name=vfio_pci\0";
        assert_eq!(modinfo_depends(ko), vec!["vfio_pci_core", "vfio"]);
        assert!(modinfo_depends(b"\0depends=\0name=x\0").is_empty());
        assert!(modinfo_depends(b"no modinfo").is_empty());
    }

    #[test]
    fn dep_lines_deepest_last() {
        let mut g = BTreeMap::new();
        let e = |rel: &str, deps: &[&str]| {
            (
                rel.to_string(),
                deps.iter().map(|s| s.to_string()).collect(),
            )
        };
        g.insert(
            "vfio_pci".to_string(),
            e("k/vfio-pci.ko", &["vfio_pci_core", "vfio"]),
        );
        g.insert(
            "vfio_pci_core".to_string(),
            e("k/vfio-pci-core.ko", &["vfio", "irqbypass"]),
        );
        g.insert("vfio".to_string(), e("k/vfio.ko", &["iommufd"]));
        g.insert("iommufd".to_string(), e("k/iommufd.ko", &[]));
        g.insert("irqbypass".to_string(), e("k/irqbypass.ko", &[]));
        let text = modules_dep(&g);
        let line = text
            .lines()
            .find(|l| l.starts_with("k/vfio-pci.ko:"))
            .unwrap();
        let deps: Vec<&str> = line.split_whitespace().skip(1).collect();
        assert_eq!(deps.len(), 4, "{line}");
        // Every module comes before what it depends on (modprobe loads from the end).
        let pos = |r: &str| deps.iter().position(|d| *d == r).unwrap();
        assert!(pos("k/vfio-pci-core.ko") < pos("k/vfio.ko"));
        assert!(pos("k/vfio-pci-core.ko") < pos("k/irqbypass.ko"));
        assert!(pos("k/vfio.ko") < pos("k/iommufd.ko"));
        assert!(text.contains("k/iommufd.ko:\n"));
    }
}
