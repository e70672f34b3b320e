//! SMMUv3 register map, command/STE encoding, queues and driver logic, host-testable.

#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
