//! [`rewrite_for_host`]: the DTB handed to the host kernel.

use alloc::vec::Vec;

use crate::error::DtError;

/// What the hypervisor changes in the DTB it hands to the host.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct HostDtEdits<'a> {
    /// Regions the host must never map or touch, as `(base, size)`: each becomes a `no-map` child
    /// `warden@<base>` of `/reserved-memory`.
    pub reserved_no_map: Vec<(u64, u64)>,
    /// The `compatible` every `arm,smmu-v3` node gets instead (Warden's paravirtual string, from
    /// `warden-abi`), so the host's own SMMUv3 driver never binds.
    pub smmu_compatible: &'a str,
}

/// Rewrites `dtb` for the host kernel. Not yet implemented.
///
/// # Errors
///
/// Always, for now.
pub fn rewrite_for_host(dtb: &[u8], edits: &HostDtEdits<'_>) -> Result<Vec<u8>, DtError> {
    let _ = (dtb, edits);
    Err(DtError::Malformed("rewrite not implemented yet"))
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
