//! Warden hypervisor logic that does not need EL2: memory layout, device classification, host stage-2
//! construction, PSCI and SMCCC decoding, DMA domains, page ownership, hypercall dispatch and the GIC ITS and
//! redistributor emulation. Everything here builds and is unit-tested on the host; the EL2 image
//! (`warden-el2`) supplies the hardware.

#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

extern crate alloc;

pub mod devices;
pub mod dispatch;
pub mod domain;
pub mod gic;
pub mod host_s2;
pub mod layout;
pub mod lock_stats;
pub mod ownership;
pub mod psci;
pub mod sizing;
pub mod smccc;
pub mod smmu_backend;
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;
pub mod trap;
