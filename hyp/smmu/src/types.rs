//! Identifier newtypes shared by the encoders and the driver.

use core::fmt;

/// A StreamID: the SMMU's name for a DMA master (for PCI, the requester ID).
#[derive(Clone, Copy, Debug, Default, Eq, Hash, Ord, PartialEq, PartialOrd)]
#[repr(transparent)]
pub struct StreamId(pub u32);

/// A stage-2 VMID (16 bits when `IDR0.VMID16`, else 8).
#[derive(Clone, Copy, Debug, Default, Eq, Hash, Ord, PartialEq, PartialOrd)]
#[repr(transparent)]
pub struct Vmid(pub u16);

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sid {:#x}", self.0)
    }
}

impl fmt::Display for Vmid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vmid {}", self.0)
    }
}

/// Largest input/output address width the architecture defines (52 bits).
pub const MAX_ADDR_BITS: u32 = 52;
