//! SMMUv3 register map: offsets, field layouts and decoded register values.
//!
//! Offsets are relative to the start of the SMMU's register frame (page 0). Page 1 registers (the event and PRI
//! queue indexes) sit [`PAGE1`] bytes further on (IHI 0070, §6.1 "Memory map": `SMMU_EVENTQ_PROD` is at
//! `0x100A8`). Field positions cite the register descriptions in IHI 0070 chapter 6.

mod control;
mod idr;
mod queue_regs;

pub(crate) use control::l1_descriptor;
pub use control::{
    Cr0, Cr1, Cr2, GBPA_ABORT, GBPA_UPDATE, Gbpa, Gerror, IrqCtrl, StrtabBase, StrtabBaseCfg,
};
pub use idr::{Idr0, Idr1, Idr3, Idr5, StallModel, TtEndian, pa_range_bits};
pub use queue_regs::{
    CMDQ_CONS_ERR_MASK, CMDQ_CONS_ERR_SHIFT, CmdqError, Q_OVERFLOW_FLAG, QueueBase,
};

/// Register access for the SMMU's MMIO frame.
///
/// `warden-el2` implements it with inline-asm loads and stores; the fake SMMU (feature `fake`) implements it
/// with behaviour. Offsets are byte offsets from the frame base ([`IDR0`] = 0); page 1 registers are at
/// [`PAGE1`]` + x`.
///
/// Ordering contract (as Linux's `readl`/`writel`): every write is ordered after all earlier normal-memory
/// writes by this CPU (e.g. `dsb st` before the store), so that commands and STEs written to memory are visible to
/// the SMMU before a `CMDQ_PROD` write publishes them; every read is ordered before later normal-memory reads
/// (e.g. `dsb ld` after the load), so that event records are read only after `EVTQ_PROD` said they exist.
pub trait RegisterAccess {
    /// The [`CmdqConsReader`] of this frame (see [`RegisterAccess::cmdq_cons_reader`]).
    type Cons: CmdqConsReader;

    /// A reader of `SMMU_CMDQ_CONS` that any CPU may use at any time, concurrently with this value's owner: a
    /// CPU waits for its `CMD_SYNC` with it, without the driver's lock.
    fn cmdq_cons_reader(&self) -> Self::Cons;
    /// Reads the 32-bit register at `offset`.
    fn read32(&mut self, offset: usize) -> u32;
    /// Writes the 32-bit register at `offset`.
    fn write32(&mut self, offset: usize, value: u32);
    /// Reads the 64-bit register at `offset` (8-byte aligned).
    fn read64(&mut self, offset: usize) -> u64;
    /// Writes the 64-bit register at `offset` (8-byte aligned).
    fn write64(&mut self, offset: usize, value: u64);
}

/// Reads `SMMU_CMDQ_CONS` through a shared reference, from any CPU (IHI 0070 §6.3.27: reading it has no side
/// effects). Same ordering contract as [`RegisterAccess`] reads: the load is ordered before later memory reads.
pub trait CmdqConsReader: Send + Sync {
    /// The current `SMMU_CMDQ_CONS` value (position, wrap and `ERR` bits).
    fn read_cmdq_cons(&self) -> u32;
}

/// Size of one register page; page 1 starts here (IHI 0070 §6.1).
pub const PAGE1: usize = 0x1_0000;
/// Size of the whole register frame the SMMU needs mapped (pages 0 and 1).
pub const FRAME_SIZE: usize = 2 * PAGE1;

/// 0x000: `SMMU_IDR0`, features (§6.3.1).
pub const IDR0: usize = 0x000;
/// 0x004: `SMMU_IDR1`, table/queue sizes (§6.3.2).
pub const IDR1: usize = 0x004;
/// 0x008: `SMMU_IDR2` (§6.3.3).
pub const IDR2: usize = 0x008;
/// 0x00C: `SMMU_IDR3`, RIL/BBML and other v3.1+ features (§6.3.4).
pub const IDR3: usize = 0x00C;
/// 0x010: `SMMU_IDR4`, implementation defined (§6.3.5).
pub const IDR4: usize = 0x010;
/// 0x014: `SMMU_IDR5`, OAS and granules (§6.3.6).
pub const IDR5: usize = 0x014;
/// 0x018: `SMMU_IIDR`, implementation identification (§6.3.7).
pub const IIDR: usize = 0x018;
/// 0x01C: `SMMU_AIDR`, architecture revision (§6.3.8).
pub const AIDR: usize = 0x01C;
/// 0x020: `SMMU_CR0`, enables (§6.3.9).
pub const CR0: usize = 0x020;
/// 0x024: `SMMU_CR0ACK`, enables as seen by the SMMU (§6.3.10).
pub const CR0ACK: usize = 0x024;
/// 0x028: `SMMU_CR1`, table/queue memory attributes (§6.3.11).
pub const CR1: usize = 0x028;
/// 0x02C: `SMMU_CR2` (§6.3.12).
pub const CR2: usize = 0x02C;
/// 0x044: `SMMU_GBPA`, global bypass attribute (§6.3.14).
pub const GBPA: usize = 0x044;
/// 0x050: `SMMU_IRQ_CTRL` (§6.3.16).
pub const IRQ_CTRL: usize = 0x050;
/// 0x054: `SMMU_IRQ_CTRLACK` (§6.3.17).
pub const IRQ_CTRLACK: usize = 0x054;
/// 0x060: `SMMU_GERROR`, global errors (§6.3.18).
pub const GERROR: usize = 0x060;
/// 0x064: `SMMU_GERRORN`, global error acknowledgement (§6.3.19).
pub const GERRORN: usize = 0x064;
/// 0x080: `SMMU_STRTAB_BASE` (§6.3.23).
pub const STRTAB_BASE: usize = 0x080;
/// 0x088: `SMMU_STRTAB_BASE_CFG` (§6.3.24).
pub const STRTAB_BASE_CFG: usize = 0x088;
/// 0x090: `SMMU_CMDQ_BASE` (§6.3.25).
pub const CMDQ_BASE: usize = 0x090;
/// 0x098: `SMMU_CMDQ_PROD` (§6.3.26).
pub const CMDQ_PROD: usize = 0x098;
/// 0x09C: `SMMU_CMDQ_CONS` (§6.3.27).
pub const CMDQ_CONS: usize = 0x09C;
/// 0x0A0: `SMMU_EVENTQ_BASE` (§6.3.28).
pub const EVTQ_BASE: usize = 0x0A0;
/// 0x100A8: `SMMU_EVENTQ_PROD`, in page 1 (§6.3.29).
pub const EVTQ_PROD: usize = PAGE1 + 0x0A8;
/// 0x100AC: `SMMU_EVENTQ_CONS`, in page 1 (§6.3.30).
pub const EVTQ_CONS: usize = PAGE1 + 0x0AC;
/// 0x0C0: `SMMU_PRIQ_BASE` (§6.3.34).
pub const PRIQ_BASE: usize = 0x0C0;
/// 0x100C8: `SMMU_PRIQ_PROD`, in page 1 (§6.3.35).
pub const PRIQ_PROD: usize = PAGE1 + 0x0C8;
/// 0x100CC: `SMMU_PRIQ_CONS`, in page 1 (§6.3.36).
pub const PRIQ_CONS: usize = PAGE1 + 0x0CC;

/// Extracts `width` bits of `value` starting at bit `shift`.
pub(crate) const fn field32(value: u32, shift: u32, width: u32) -> u32 {
    (value >> shift) & ((1 << width) - 1)
}

/// Extracts `width` bits of `value` starting at bit `shift`.
pub(crate) const fn field64(value: u64, shift: u32, width: u32) -> u64 {
    (value >> shift) & ((1 << width) - 1)
}

/// Places `value` (truncated to `width` bits) at bit `shift`.
pub(crate) const fn prep64(value: u64, shift: u32, width: u32) -> u64 {
    (value & ((1 << width) - 1)) << shift
}

/// Mask of bits `[hi:lo]` of a 64-bit value.
pub(crate) const fn mask64(hi: u32, lo: u32) -> u64 {
    (u64::MAX >> (63 - hi)) & (u64::MAX << lo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page1_offsets() {
        assert_eq!(EVTQ_PROD, 0x100A8);
        assert_eq!(EVTQ_CONS, 0x100AC);
        assert_eq!(PRIQ_PROD, 0x100C8);
    }

    #[test]
    fn bit_helpers() {
        assert_eq!(mask64(51, 6), 0x000F_FFFF_FFFF_FFC0);
        assert_eq!(mask64(63, 0), u64::MAX);
        assert_eq!(field64(0xABCD, 4, 8), 0xBC);
        assert_eq!(prep64(0x1FF, 0, 8), 0xFF);
        assert_eq!(field32(0x0d44_101b, 27, 2), 1);
    }
}
