//! Warden hypercall ABI: function IDs, error codes, prot bits, limits (single source of truth).

#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
