//! A checked, non-recursive walk over a validated [`Fdt`]: every node with its path, the address
//! cells and address translation its children see, its effective interrupt parent, and a phandle
//! table. [`crate::parse`] and [`crate::rewrite_for_host`] work on this flat list.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use dtoolkit::fdt::{Fdt, FdtNode, FdtProperty};
use dtoolkit::{Node, Property, ToCellInt};

use crate::error::{DtError, DtPath};
use crate::{MAX_DEPTH, MIN_HEADER_SIZE};

/// Offset of `magic` in the FDT header.
const HEADER_MAGIC_OFFSET: usize = 0;
/// Offset of `totalsize` in the FDT header.
const HEADER_TOTALSIZE_OFFSET: usize = 4;
/// The FDT magic number.
const FDT_MAGIC: u32 = 0xd00d_feed;

/// `#address-cells` of the root when it has none (Devicetree specification 2.3.5).
const ROOT_ADDRESS_CELLS: u32 = 2;
/// `#size-cells` of the root when it has none.
const ROOT_SIZE_CELLS: u32 = 1;
/// Widest address or size this crate decodes, in cells (64 bits).
const MAX_CELLS: u32 = 2;

/// Reads a big-endian `u32` at `offset` of `bytes`, if it is there.
fn be32(bytes: &[u8], offset: usize) -> Option<u32> {
    let chunk = bytes.get(offset..offset.checked_add(4)?)?;
    Some(u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]))
}

/// See [`crate::dtb_total_size`].
pub(crate) fn total_size(header: &[u8]) -> Result<usize, DtError> {
    if header.len() < MIN_HEADER_SIZE {
        return Err(DtError::Truncated {
            len: header.len(),
            needed: MIN_HEADER_SIZE,
        });
    }
    if be32(header, HEADER_MAGIC_OFFSET) != Some(FDT_MAGIC) {
        return Err(DtError::Malformed("bad magic"));
    }
    let size = be32(header, HEADER_TOTALSIZE_OFFSET).ok_or(DtError::Malformed("bad length"))?;
    usize::try_from(size).map_err(|_| DtError::Malformed("bad length"))
}

/// Validates the blob at the start of `dtb` (which may be longer than the blob's `totalsize`).
pub(crate) fn open(dtb: &[u8]) -> Result<Fdt<'_>, DtError> {
    let size = total_size(dtb)?;
    let blob = dtb.get(..size).ok_or(DtError::Truncated {
        len: dtb.len(),
        needed: size,
    })?;
    Ok(Fdt::new(blob)?)
}

/// A window of a `ranges` property: child-bus `[child, child + size)` is CPU `[cpu, cpu + size)`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    pub(crate) child: u64,
    pub(crate) cpu: u64,
    pub(crate) size: u64,
}

/// How addresses on a bus map to CPU physical addresses.
#[derive(Clone, Debug)]
pub(crate) enum Xlate {
    /// The root bus: bus address = CPU address.
    Identity,
    /// Through these windows (composed all the way up to the root).
    Windows(Vec<Window>),
    /// Not memory-mapped: an ancestor lacks `ranges` (e.g. `/cpus`), or a PCI bus (config-space
    /// addresses).
    Opaque,
}

/// The bus a node's children sit on: the cells of their `reg` and how to translate it.
#[derive(Clone, Debug)]
pub(crate) struct Bus {
    pub(crate) address_cells: u32,
    pub(crate) size_cells: u32,
    pub(crate) xlate: Xlate,
}

impl Bus {
    /// The CPU address of `[addr, addr + size)` on this bus: `Ok(None)` if the bus is not
    /// memory-mapped, `Err` if no window covers the range.
    fn translate(&self, path: &str, addr: u64, size: u64) -> Result<Option<u64>, DtError> {
        let end = addr.checked_add(size).ok_or(DtError::AddressOverflow {
            path: DtPath::new(path),
            base: addr,
            size,
        })?;
        match &self.xlate {
            Xlate::Identity => Ok(Some(addr)),
            Xlate::Opaque => Ok(None),
            Xlate::Windows(windows) => windows
                .iter()
                .find(|w| addr >= w.child && end <= w.child.saturating_add(w.size))
                .map(|w| Some(w.cpu + (addr - w.child)))
                .ok_or(DtError::Untranslatable {
                    path: DtPath::new(path),
                    address: addr,
                    size,
                }),
        }
    }
}

/// One node of the walk.
#[derive(Debug)]
pub(crate) struct NodeInfo<'a> {
    pub(crate) node: FdtNode<'a>,
    /// The node's properties, read once (lookups scan this instead of re-walking the blob).
    props: Vec<FdtProperty<'a>>,
    /// Full path (`/` for the root).
    pub(crate) path: String,
    /// Index of the parent in [`Tree::nodes`] (`None` for the root).
    pub(crate) parent: Option<usize>,
    /// The bus this node's children sit on.
    pub(crate) child_bus: Bus,
    /// Effective `interrupt-parent` (own or inherited).
    pub(crate) irq_parent: Option<u32>,
}

impl<'a> NodeInfo<'a> {
    /// The node's name with unit address.
    pub(crate) fn name(&self) -> &'a str {
        self.node.name()
    }

    /// The node's name without unit address.
    pub(crate) fn base_name(&self) -> &'a str {
        self.node.name_without_address()
    }

    /// Property `name`.
    pub(crate) fn property(&self, name: &str) -> Option<FdtProperty<'a>> {
        self.props.iter().find(|p| p.name() == name).copied()
    }

    /// The raw value of property `name`.
    pub(crate) fn prop(&self, name: &str) -> Option<&'a [u8]> {
        self.property(name)
            .map(|p| p.value_as::<&'a [u8]>().unwrap_or_default())
    }

    /// Property `name` as one `u32` cell; `Ok(None)` if absent.
    pub(crate) fn prop_u32(&self, name: &'static str) -> Result<Option<u32>, DtError> {
        match self.property(name) {
            None => Ok(None),
            Some(p) => p
                .value_as::<u32>()
                .map(Some)
                .map_err(|_| self.bad(name, p.value())),
        }
    }

    /// Property `name` as a string (up to the first NUL); `Ok(None)` if absent.
    pub(crate) fn prop_str(&self, name: &'static str) -> Result<Option<&'a str>, DtError> {
        match self.prop(name) {
            None => Ok(None),
            Some(v) => {
                let text = v.split(|&b| b == 0).next().unwrap_or(&[]);
                if v.last() != Some(&0) {
                    return Err(self.bad(name, v));
                }
                core::str::from_utf8(text)
                    .map(Some)
                    .map_err(|_| self.bad(name, v))
            }
        }
    }

    /// Property `name` as a string list; `Ok(None)` if absent.
    pub(crate) fn prop_strings(&self, name: &'static str) -> Result<Option<Vec<&'a str>>, DtError> {
        match self.prop(name) {
            None => Ok(None),
            Some(v) => {
                let body = v.strip_suffix(&[0]).ok_or_else(|| self.bad(name, v))?;
                body.split(|&b| b == 0)
                    .map(|s| core::str::from_utf8(s).map_err(|_| self.bad(name, v)))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Some)
            }
        }
    }

    /// Property `name` as a list of `u32` cells; `Ok(None)` if absent.
    pub(crate) fn prop_cells(&self, name: &'static str) -> Result<Option<Vec<u32>>, DtError> {
        match self.prop(name) {
            None => Ok(None),
            Some(v) if v.len() % 4 != 0 => Err(self.bad(name, v)),
            Some(v) => Ok(Some(
                v.chunks_exact(4)
                    .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            )),
        }
    }

    /// Whether the node's `compatible` list contains `compat`.
    pub(crate) fn is_compatible(&self, compat: &str) -> bool {
        self.prop("compatible")
            .is_some_and(|v| v.split(|&b| b == 0).any(|s| s == compat.as_bytes()))
    }

    /// Whether `status` is absent, `"okay"` or `"ok"`.
    pub(crate) fn enabled(&self) -> bool {
        match self.prop("status") {
            None => true,
            Some(v) => matches!(v, b"okay\0" | b"ok\0" | b"okay" | b"ok"),
        }
    }

    /// `device_type` equals `ty`.
    pub(crate) fn device_type_is(&self, ty: &str) -> bool {
        self.prop("device_type")
            .is_some_and(|v| v.strip_suffix(&[0]).unwrap_or(v) == ty.as_bytes())
    }

    /// The node's phandle (`phandle`, or the legacy `linux,phandle`).
    pub(crate) fn phandle(&self) -> Result<Option<u32>, DtError> {
        match self.prop_u32("phandle")? {
            Some(p) => Ok(Some(p)),
            None => self.prop_u32("linux,phandle"),
        }
    }

    /// A [`DtError::BadProperty`] for property `name` of this node.
    pub(crate) fn bad(&self, name: &'static str, value: &[u8]) -> DtError {
        DtError::BadProperty {
            path: DtPath::new(&self.path),
            property: name,
            len: value.len(),
        }
    }

    /// A [`DtError::MissingProperty`] for property `name` of this node.
    pub(crate) fn missing(&self, name: &'static str) -> DtError {
        DtError::MissingProperty {
            path: DtPath::new(&self.path),
            property: name,
        }
    }
}

/// The flattened walk.
#[derive(Debug)]
pub(crate) struct Tree<'a> {
    pub(crate) fdt: Fdt<'a>,
    /// Nodes in DT (pre-)order; index 0 is the root.
    pub(crate) nodes: Vec<NodeInfo<'a>>,
    /// phandle → node index.
    pub(crate) phandles: BTreeMap<u32, usize>,
}

impl<'a> Tree<'a> {
    /// Walks the whole tree, computing buses, interrupt parents and the phandle table.
    pub(crate) fn new(fdt: Fdt<'a>) -> Result<Self, DtError> {
        let root = fdt.root();
        let mut tree = Tree {
            fdt,
            nodes: Vec::new(),
            phandles: BTreeMap::new(),
        };
        tree.add(root, String::from("/"), None)?;
        let mut stack: Vec<(<FdtNode<'a> as Node>::Children<'a>, usize)> =
            vec![(root.children(), 0)];
        loop {
            let next = match stack.last_mut() {
                None => break,
                Some((iter, parent)) => iter.next().map(|child| (child, *parent)),
            };
            let Some((child, parent)) = next else {
                stack.pop();
                continue;
            };
            let parent_path = &tree.nodes[parent].path;
            let mut path = String::with_capacity(parent_path.len() + 1 + child.name().len());
            if parent != 0 {
                path.push_str(parent_path);
            }
            path.push('/');
            path.push_str(child.name());
            if stack.len() > MAX_DEPTH {
                return Err(DtError::TooDeep {
                    path: DtPath::new(&path),
                    limit: MAX_DEPTH,
                });
            }
            let idx = tree.add(child, path, Some(parent))?;
            stack.push((child.children(), idx));
        }
        Ok(tree)
    }

    /// Appends one node, working out its children's bus from its parent's.
    fn add(
        &mut self,
        node: FdtNode<'a>,
        path: String,
        parent: Option<usize>,
    ) -> Result<usize, DtError> {
        let idx = self.nodes.len();
        let mut info = NodeInfo {
            node,
            props: node.properties().collect(),
            path,
            parent,
            child_bus: Bus {
                address_cells: ROOT_ADDRESS_CELLS,
                size_cells: ROOT_SIZE_CELLS,
                xlate: Xlate::Identity,
            },
            irq_parent: None,
        };
        let parent_info = parent.map(|p| &self.nodes[p]);
        // Cells: own properties, else inherited from the nearest ancestor (as Linux reads them).
        let (inherit_ac, inherit_sc) = parent_info
            .map_or((ROOT_ADDRESS_CELLS, ROOT_SIZE_CELLS), |p| {
                (p.child_bus.address_cells, p.child_bus.size_cells)
            });
        info.child_bus.address_cells = info.prop_u32("#address-cells")?.unwrap_or(inherit_ac);
        info.child_bus.size_cells = info.prop_u32("#size-cells")?.unwrap_or(inherit_sc);
        info.irq_parent = match info.prop_u32("interrupt-parent")? {
            Some(p) => Some(p),
            None => parent_info.and_then(|p| p.irq_parent),
        };
        if let Some(own_bus) = parent_info.map(|p| &p.child_bus) {
            info.child_bus.xlate = child_xlate(&info, own_bus)?;
        }
        if let Some(phandle) = info.phandle()?
            && self.phandles.insert(phandle, idx).is_some()
        {
            return Err(DtError::DuplicatePhandle {
                path: DtPath::new(&info.path),
                phandle,
            });
        }
        self.nodes.push(info);
        Ok(idx)
    }

    /// The bus node `idx` sits on (its parent's child bus); `None` for the root.
    pub(crate) fn own_bus(&self, idx: usize) -> Option<&Bus> {
        self.nodes[idx].parent.map(|p| &self.nodes[p].child_bus)
    }

    /// The node whose phandle is `phandle`, or [`DtError::UnknownPhandle`] blamed on `from`.
    pub(crate) fn by_phandle(&self, phandle: u32, from: usize) -> Result<&NodeInfo<'a>, DtError> {
        self.phandles
            .get(&phandle)
            .map(|&i| &self.nodes[i])
            .ok_or(DtError::UnknownPhandle {
                path: DtPath::new(&self.nodes[from].path),
                phandle,
            })
    }

    /// The root's child whose name (without unit address) is `name`.
    pub(crate) fn root_child(&self, name: &str) -> Option<usize> {
        (1..self.nodes.len())
            .find(|&i| self.nodes[i].parent == Some(0) && self.nodes[i].base_name() == name)
    }

    /// The node at `path` (components without a unit address match any unit address, as in
    /// [`Fdt::find_node`]).
    pub(crate) fn find(&self, path: &str) -> Option<usize> {
        if !path.starts_with('/') {
            return None;
        }
        let mut current = 0;
        for component in path.split('/').filter(|c| !c.is_empty()) {
            let with_addr = component.contains('@');
            current = (current + 1..self.nodes.len()).find(|&i| {
                let n = &self.nodes[i];
                n.parent == Some(current)
                    && if with_addr {
                        n.name() == component
                    } else {
                        n.base_name() == component
                    }
            })?;
        }
        Some(current)
    }

    /// `reg` of node `idx` as raw bus (address, size) pairs, untranslated; `Ok(None)` if absent.
    pub(crate) fn raw_reg(&self, idx: usize) -> Result<Option<Vec<(u64, u64)>>, DtError> {
        let info = &self.nodes[idx];
        let Some(prop) = info.property("reg") else {
            return Ok(None);
        };
        let Some(bus) = self.own_bus(idx) else {
            return Err(info.bad("reg", prop.value()));
        };
        let (ac, sc) = (bus.address_cells, bus.size_cells);
        if ac == 0 || ac > MAX_CELLS || sc > MAX_CELLS {
            return Err(DtError::BadCells {
                path: DtPath::new(&info.path),
                address_cells: ac,
                size_cells: sc,
            });
        }
        let entries = prop
            .as_prop_encoded_array([ac as usize, sc as usize])
            .map_err(|_| info.bad("reg", prop.value()))?;
        entries
            .map(|[a, s]| {
                let a: u64 = a.to_int().map_err(|_| info.bad("reg", prop.value()))?;
                let s: u64 = s.to_int().map_err(|_| info.bad("reg", prop.value()))?;
                Ok((a, s))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// `reg` of node `idx` translated to CPU physical ranges; `Ok(None)` if the node has no `reg` or
    /// sits on a bus that is not memory-mapped.
    pub(crate) fn reg(&self, idx: usize) -> Result<Option<Vec<crate::PhysRange>>, DtError> {
        let Some(bus) = self.own_bus(idx) else {
            return Ok(None);
        };
        if matches!(bus.xlate, Xlate::Opaque) {
            return Ok(None);
        }
        let Some(raw) = self.raw_reg(idx)? else {
            return Ok(None);
        };
        let path = &self.nodes[idx].path;
        let mut out = Vec::with_capacity(raw.len());
        for (addr, size) in raw {
            let Some(cpu) = bus.translate(path, addr, size)? else {
                return Ok(None);
            };
            out.push(
                crate::PhysRange::new(cpu, size).ok_or(DtError::AddressOverflow {
                    path: DtPath::new(path),
                    base: cpu,
                    size,
                })?,
            );
        }
        Ok(Some(out))
    }

    /// First entry of [`Tree::reg`], or [`DtError::MissingProperty`].
    pub(crate) fn first_reg(&self, idx: usize) -> Result<crate::PhysRange, DtError> {
        self.reg(idx)?
            .and_then(|r| r.first().copied())
            .ok_or_else(|| self.nodes[idx].missing("reg"))
    }

    /// Translates a `(addr, size)` on the bus node `idx` sits on; errors if that bus is not
    /// memory-mapped.
    pub(crate) fn translate_on_own_bus(
        &self,
        idx: usize,
        addr: u64,
        size: u64,
    ) -> Result<crate::PhysRange, DtError> {
        let path = &self.nodes[idx].path;
        let untranslatable = DtError::Untranslatable {
            path: DtPath::new(path),
            address: addr,
            size,
        };
        let bus = self.own_bus(idx).ok_or(untranslatable)?;
        let cpu = bus.translate(path, addr, size)?.ok_or(untranslatable)?;
        crate::PhysRange::new(cpu, size).ok_or(DtError::AddressOverflow {
            path: DtPath::new(path),
            base: cpu,
            size,
        })
    }
}

/// How addresses on `info`'s child bus reach the CPU, given the bus `info` itself sits on.
fn child_xlate(info: &NodeInfo<'_>, own_bus: &Bus) -> Result<Xlate, DtError> {
    if matches!(own_bus.xlate, Xlate::Opaque) || info.device_type_is("pci") {
        return Ok(Xlate::Opaque);
    }
    let Some(prop) = info.property("ranges") else {
        return Ok(Xlate::Opaque);
    };
    if prop.value().is_empty() {
        return Ok(own_bus.xlate.clone());
    }
    let (child_ac, parent_ac, sc) = (
        info.child_bus.address_cells,
        own_bus.address_cells,
        info.child_bus.size_cells,
    );
    if child_ac == 0
        || child_ac > MAX_CELLS
        || parent_ac == 0
        || parent_ac > MAX_CELLS
        || sc == 0
        || sc > MAX_CELLS
    {
        return Err(DtError::BadCells {
            path: DtPath::new(&info.path),
            address_cells: child_ac,
            size_cells: sc,
        });
    }
    let entries = prop
        .as_prop_encoded_array([child_ac as usize, parent_ac as usize, sc as usize])
        .map_err(|_| info.bad("ranges", prop.value()))?;
    let mut windows = Vec::new();
    for [c, p, s] in entries {
        let bad = || info.bad("ranges", prop.value());
        let child: u64 = c.to_int().map_err(|_| bad())?;
        let parent: u64 = p.to_int().map_err(|_| bad())?;
        let size: u64 = s.to_int().map_err(|_| bad())?;
        if child.checked_add(size).is_none() {
            return Err(DtError::AddressOverflow {
                path: DtPath::new(&info.path),
                base: child,
                size,
            });
        }
        match own_bus.translate(&info.path, parent, size)? {
            Some(cpu) => windows.push(Window { child, cpu, size }),
            None => return Ok(Xlate::Opaque),
        }
    }
    Ok(Xlate::Windows(windows))
}
