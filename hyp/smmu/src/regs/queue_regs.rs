//! Queue base and index registers (IHI 0070 §6.3.25–§6.3.30).

use super::mask64;

/// `SMMU_CMDQ_BASE` / `SMMU_EVENTQ_BASE` value (IHI 0070 §6.3.25, §6.3.28).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[repr(transparent)]
pub struct QueueBase(pub u64);

impl QueueBase {
    /// Bit 62 `RA`/`WA`: read- (command queue) or write- (event queue) allocate hint.
    pub const ALLOC_HINT: u64 = 1 << 62;
    /// Bits \[51:5\] `ADDR`.
    pub const ADDR_MASK: u64 = mask64(51, 5);
    /// Bits \[4:0\] `LOG2SIZE`: log2 of the number of entries.
    pub const LOG2SIZE_MASK: u64 = 0x1F;

    /// A queue of `2^log2size` entries at `pa` (aligned to the queue's size, at least 32 bytes).
    pub const fn new(pa: u64, log2size: u32) -> Self {
        Self(Self::ALLOC_HINT | (pa & Self::ADDR_MASK) | (log2size as u64 & Self::LOG2SIZE_MASK))
    }
    /// The queue's physical address.
    pub const fn addr(self) -> u64 {
        self.0 & Self::ADDR_MASK
    }
    /// log2 of the number of entries.
    pub const fn log2size(self) -> u32 {
        (self.0 & Self::LOG2SIZE_MASK) as u32
    }
}

/// Bit 31 of `EVENTQ_PROD` (`OVFLG`, toggled by the SMMU on overflow) and `EVENTQ_CONS` (`OVACKFLG`, written
/// by software to match) (IHI 0070 §6.3.29, §6.3.30).
pub const Q_OVERFLOW_FLAG: u32 = 1 << 31;

/// Shift of `SMMU_CMDQ_CONS.ERR`, bits \[30:24\] (IHI 0070 §6.3.27).
pub const CMDQ_CONS_ERR_SHIFT: u32 = 24;
/// Mask (after shifting) of `SMMU_CMDQ_CONS.ERR`.
pub const CMDQ_CONS_ERR_MASK: u32 = 0x7F;

/// Command queue error cause, `SMMU_CMDQ_CONS.ERR` (IHI 0070 §4.7.3 "Command errors").
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum CmdqError {
    /// 0x00 `CERROR_NONE`.
    None,
    /// 0x01 `CERROR_ILL`: illegal command (unknown opcode or bad field).
    Illegal,
    /// 0x02 `CERROR_ABT`: abort fetching the command.
    Abort,
    /// 0x03 `CERROR_ATC_INV_SYNC`: an ATC invalidation timed out.
    AtcInvSync,
    /// Any other value.
    Other(u8),
}

impl CmdqError {
    /// Decodes the `ERR` field of a `CMDQ_CONS` value.
    pub const fn from_cons(cons: u32) -> Self {
        match (cons >> CMDQ_CONS_ERR_SHIFT) & CMDQ_CONS_ERR_MASK {
            0 => Self::None,
            1 => Self::Illegal,
            2 => Self::Abort,
            3 => Self::AtcInvSync,
            other => Self::Other(other as u8),
        }
    }

    /// The `ERR` field encoding of this cause.
    pub const fn code(self) -> u32 {
        match self {
            Self::None => 0,
            Self::Illegal => 1,
            Self::Abort => 2,
            Self::AtcInvSync => 3,
            Self::Other(code) => code as u32 & CMDQ_CONS_ERR_MASK,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_base_layout() {
        let base = QueueBase::new(0x4123_4000, 10);
        assert_eq!(base.0, 1 << 62 | 0x4123_4000 | 10);
        assert_eq!(base.addr(), 0x4123_4000);
        assert_eq!(base.log2size(), 10);
    }

    #[test]
    fn cons_error() {
        assert_eq!(CmdqError::from_cons(1 << 24 | 5), CmdqError::Illegal);
        assert_eq!(CmdqError::from_cons(5), CmdqError::None);
        assert_eq!(CmdqError::from_cons(0x7F << 24), CmdqError::Other(0x7F));
        assert_eq!(CmdqError::Abort.code(), 2);
    }
}
