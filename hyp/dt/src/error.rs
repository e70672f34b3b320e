//! The crate's one error type and the fixed-size node path it carries.

use core::fmt;

use thiserror::Error;

/// Longest node path kept in an error, in bytes. Longer paths keep their tail, prefixed with `...`.
pub const DT_PATH_CAPACITY: usize = 64;

/// A device-tree node path held inline (no allocation), so that [`DtError`] stays `Copy`.
///
/// Paths longer than [`DT_PATH_CAPACITY`] keep their last bytes (the most specific part) after a `...`.
#[derive(Clone, Copy, Eq, PartialEq)]
pub struct DtPath {
    buf: [u8; DT_PATH_CAPACITY],
    len: u8,
}

impl DtPath {
    /// Marker written in front of a truncated path.
    const ELLIPSIS: &'static [u8] = b"...";

    /// Copies `path`, truncating it at the front if it is longer than [`DT_PATH_CAPACITY`].
    #[must_use]
    pub fn new(path: &str) -> Self {
        let bytes = path.as_bytes();
        let mut buf = [0u8; DT_PATH_CAPACITY];
        let len = if bytes.len() <= DT_PATH_CAPACITY {
            buf[..bytes.len()].copy_from_slice(bytes);
            bytes.len()
        } else {
            let keep = DT_PATH_CAPACITY - Self::ELLIPSIS.len();
            // Start on a character boundary so the stored bytes stay valid UTF-8.
            let mut start = bytes.len() - keep;
            while !path.is_char_boundary(start) {
                start += 1;
            }
            let tail = &bytes[start..];
            buf[..Self::ELLIPSIS.len()].copy_from_slice(Self::ELLIPSIS);
            buf[Self::ELLIPSIS.len()..Self::ELLIPSIS.len() + tail.len()].copy_from_slice(tail);
            Self::ELLIPSIS.len() + tail.len()
        };
        Self {
            buf,
            // `len` <= DT_PATH_CAPACITY = 64 by construction.
            len: len as u8,
        }
    }

    /// The path as text (possibly truncated, see [`DtPath::new`]).
    #[must_use]
    pub fn as_str(&self) -> &str {
        // Built from a `&str` cut on a character boundary, so always UTF-8; fall back to "?" anyway.
        core::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or("?")
    }
}

impl fmt::Display for DtPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for DtPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl From<&str> for DtPath {
    fn from(path: &str) -> Self {
        Self::new(path)
    }
}

/// Everything that can go wrong reading or rewriting a DTB.
///
/// Every variant names what was wrong (node path, property, value), so a boot log line is enough to
/// find the culprit. A bad or hostile DTB always ends in one of these, never in a panic.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Error)]
pub enum DtError {
    /// The buffer is shorter than the FDT header, or than the header's `totalsize`.
    #[error("DTB truncated: {len} bytes available, {needed} needed")]
    Truncated {
        /// Bytes available.
        len: usize,
        /// Bytes the header asks for.
        needed: usize,
    },
    /// The blob failed dtoolkit's structural validation (magic, version, header offsets, tokens,
    /// names, strings).
    #[error("malformed DTB: {0}")]
    Malformed(&'static str),
    /// Nodes nest deeper than [`crate::MAX_DEPTH`].
    #[error("DT nesting deeper than {limit} at {path}")]
    TooDeep {
        /// The node that went over the limit.
        path: DtPath,
        /// The limit.
        limit: usize,
    },
    /// Two sibling nodes have the same name (the rewrite could not keep both).
    #[error("duplicate node {path}")]
    DuplicateNode {
        /// The second node with that path.
        path: DtPath,
    },
    /// A node [`crate::rewrite_for_host`] was asked to disable is not in the DTB.
    #[error("no node {path} to disable")]
    NoSuchNode {
        /// The path asked for.
        path: DtPath,
    },
    /// A node the hypervisor cannot run without is absent.
    #[error("required node {0} missing")]
    MissingNode(&'static str),
    /// A property that must be there is absent.
    #[error("{path}: property {property} missing")]
    MissingProperty {
        /// The node.
        path: DtPath,
        /// The property.
        property: &'static str,
    },
    /// A property's value has the wrong length or content for its binding.
    #[error("{path}: property {property} malformed ({len} bytes)")]
    BadProperty {
        /// The node.
        path: DtPath,
        /// The property.
        property: &'static str,
        /// Length of the value found, in bytes.
        len: usize,
    },
    /// A property holds a value outside what its binding allows.
    #[error("{path}: property {property} has unsupported value {value:#x}")]
    BadValue {
        /// The node.
        path: DtPath,
        /// The property.
        property: &'static str,
        /// The offending value.
        value: u64,
    },
    /// `#address-cells`/`#size-cells` values this crate cannot use for that node: addresses or sizes
    /// wider than 64 bits, zero address cells, a value that does not fit the cells, or a
    /// `/reserved-memory` whose cells differ from the root's (Linux would ignore it).
    #[error(
        "{path}: unsupported cell counts (#address-cells {address_cells}, #size-cells {size_cells})"
    )]
    BadCells {
        /// The node whose `reg`/`ranges` needed decoding.
        path: DtPath,
        /// The `#address-cells` in force.
        address_cells: u32,
        /// The `#size-cells` in force.
        size_cells: u32,
    },
    /// `base + size` does not fit in 64 bits.
    #[error("{path}: range {base:#x} + {size:#x} overflows")]
    AddressOverflow {
        /// The node.
        path: DtPath,
        /// Start of the range.
        base: u64,
        /// Its size.
        size: u64,
    },
    /// A bus address is not covered by the parent buses' `ranges`, so it has no CPU address.
    #[error("{path}: bus address {address:#x} (size {size:#x}) not covered by the parent's ranges")]
    Untranslatable {
        /// The node.
        path: DtPath,
        /// The child-bus address.
        address: u64,
        /// The size of the region.
        size: u64,
    },
    /// A phandle reference points at no node.
    #[error("{path}: phandle {phandle:#x} refers to no node")]
    UnknownPhandle {
        /// The node holding the reference.
        path: DtPath,
        /// The phandle.
        phandle: u32,
    },
    /// Two nodes claim the same phandle.
    #[error("{path}: phandle {phandle:#x} already used by another node")]
    DuplicatePhandle {
        /// The second node claiming it.
        path: DtPath,
        /// The phandle.
        phandle: u32,
    },
    /// A region asked of [`crate::rewrite_for_host`] is empty, wraps around, or overlaps another.
    #[error("bad reserved region {base:#x} size {size:#x}")]
    BadRegion {
        /// Start of the region.
        base: u64,
        /// Its size.
        size: u64,
    },
    /// A string asked of [`crate::rewrite_for_host`] cannot be a property value (empty or with NUL).
    #[error("bad compatible string for the SMMU node")]
    BadCompatible,
    /// The DTB is larger than the slot it must fit in.
    #[error("DTB of {size} bytes exceeds the {limit}-byte limit")]
    TooLarge {
        /// Size of the DTB.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

impl From<dtoolkit::error::FdtParseError> for DtError {
    fn from(err: dtoolkit::error::FdtParseError) -> Self {
        use dtoolkit::error::FdtErrorKind as K;
        DtError::Malformed(match err.kind {
            K::InvalidMagic => "bad magic",
            K::UnsupportedVersion(_) => "unsupported FDT version",
            K::InvalidLength => "bad length",
            K::InvalidHeader(what) => what,
            K::BadToken(_) => "bad structure token",
            K::InvalidOffset => "offset out of bounds",
            K::InvalidString => "bad string",
            K::InvalidNodeName => "bad node name",
            K::InvalidPropertyName => "bad property name",
            K::MemReserveNotTerminated => "memory reservation block not terminated",
            K::MemReserveInvalid => "bad memory reservation entry",
            _ => "structure error",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_path_kept_whole() {
        assert_eq!(DtPath::new("/pcie@10000000").as_str(), "/pcie@10000000");
        assert_eq!(DtPath::new("").as_str(), "");
    }

    #[test]
    fn long_path_keeps_tail() {
        let long = "/a".repeat(50);
        let p = DtPath::new(&long);
        assert_eq!(p.as_str().len(), DT_PATH_CAPACITY);
        assert!(p.as_str().starts_with("..."));
        assert!(long.ends_with(&p.as_str()[3..]));
    }

    #[test]
    fn long_path_cut_on_char_boundary() {
        let long = "/é".repeat(40);
        let p = DtPath::new(&long);
        assert!(p.as_str().starts_with("..."));
        assert!(long.ends_with(&p.as_str()[3..]));
    }
}
