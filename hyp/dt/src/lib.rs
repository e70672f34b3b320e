//! Device-tree handling for the Warden hypervisor: read the boot DTB QEMU hands to EL2 into a
//! [`Platform`], and rewrite it for the host kernel.
//!
//! Built on Google's [`dtoolkit`]: its validating reader ([`dtoolkit::fdt::Fdt`]) checks the blob,
//! its model ([`dtoolkit::model::DeviceTree`]) serialises the rewrite. The DTB is treated as input:
//! a bad or hostile blob yields a [`DtError`], never a panic. The walk is iterative and refuses
//! nesting deeper than [`MAX_DEPTH`] before anything that recurses (dtoolkit's model) sees the
//! tree, so stack use is bounded whatever the input.
//!
//! ```
//! # let dtb = include_bytes!("../tests/data/virt-smp2-1g.dtb");
//! let platform = warden_dt::parse(dtb)?;
//! let uart = platform.uart.as_ref().expect("QEMU virt has a PL011");
//! assert_eq!(uart.reg.base, 0x0900_0000);
//!
//! // The hyp keeps its carve-out and takes the SMMU; the compatible comes from `warden-abi`.
//! let edits = warden_dt::HostDtEdits {
//!     reserved_no_map: vec![(0x4000_0000, 0x1e0_0000)],
//!     smmu_compatible: "example,paravirt-smmu",
//!     disable: vec!["/fw-cfg@9020000"],
//! };
//! let host_dtb = warden_dt::rewrite_for_host(dtb, &edits)?;
//! warden_dt::check_fits(&host_dtb, 2 << 20)?;
//! assert!(warden_dt::parse(&host_dtb)?.smmus.is_empty());
//! # Ok::<(), warden_dt::DtError>(())
//! ```

#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

extern crate alloc;

mod error;
mod parse;
mod platform;
mod rewrite;
mod walk;

pub use error::{DT_PATH_CAPACITY, DtError, DtPath};
pub use parse::parse;
pub use platform::{
    Chosen, Cpu, DeviceNode, EnableMethod, GicIts, GicV3, IommuClient, IommuMapEntry,
    IommuSpecifier, IrqSpec, MmioRegion, Mpidr, MsiMapEntry, PciHost, PciSpace, PciWindow, Phandle,
    PhysRange, Pl011, Platform, Psci, PsciMethod, ReservedRegion, SmmuV3, merge_ranges,
};
pub use rewrite::{HostDtEdits, check_fits, rewrite_for_host};

/// Deepest node nesting accepted (the root is depth 0), as Linux's `FDT_MAX_DEPTH`.
pub const MAX_DEPTH: usize = 64;

/// Size of the FDT header (version 17), the least [`dtb_total_size`] needs.
pub const MIN_HEADER_SIZE: usize = 40;

/// The `totalsize` a DTB header announces, after checking its magic.
///
/// For the EL2 image, which gets only a pointer: map/read [`MIN_HEADER_SIZE`] bytes, ask this, then
/// build the full slice for [`parse`] (after checking the size against what it is willing to read).
///
/// # Errors
///
/// [`DtError::Truncated`] if `header` is shorter than [`MIN_HEADER_SIZE`], [`DtError::Malformed`] if
/// the magic is wrong.
pub fn dtb_total_size(header: &[u8]) -> Result<usize, DtError> {
    walk::total_size(header)
}
