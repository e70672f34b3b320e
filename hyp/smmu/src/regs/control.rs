//! Control registers: CR0/CR0ACK, CR1, CR2, GBPA, IRQ_CTRL, GERROR/GERRORN, STRTAB_BASE/_CFG.

use super::{mask64, prep64};

/// `SMMU_CR0` / `SMMU_CR0ACK` value (IHI 0070 §6.3.9, §6.3.10).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
#[repr(transparent)]
pub struct Cr0(pub u32);

impl Cr0 {
    /// Bit 0 `SMMUEN`: translation enabled (otherwise `GBPA` applies to all incoming transactions).
    pub const SMMUEN: Self = Self(1 << 0);
    /// Bit 1 `PRIQEN`: PRI queue enabled.
    pub const PRIQEN: Self = Self(1 << 1);
    /// Bit 2 `EVENTQEN`: event queue enabled.
    pub const EVTQEN: Self = Self(1 << 2);
    /// Bit 3 `CMDQEN`: command queue processing enabled.
    pub const CMDQEN: Self = Self(1 << 3);
    /// Bit 4 `ATSCHK`: ATS translated transactions checked against the STE.
    pub const ATSCHK: Self = Self(1 << 4);
    /// No enables.
    pub const NONE: Self = Self(0);

    /// The union of two sets of enables.
    #[must_use]
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

/// `SMMU_CR1` (IHI 0070 §6.3.11): memory attributes of the SMMU's own table and queue accesses.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[repr(transparent)]
pub struct Cr1(pub u32);

impl Cr1 {
    /// Cacheability encoding: non-cacheable.
    pub const CACHE_NC: u32 = 0;
    /// Cacheability encoding: write-back cacheable (read/write allocate).
    pub const CACHE_WB: u32 = 1;
    /// Cacheability encoding: write-through cacheable.
    pub const CACHE_WT: u32 = 2;
    /// Shareability encoding: inner shareable.
    pub const SH_ISH: u32 = 3;
    /// Shareability encoding: outer shareable.
    pub const SH_OSH: u32 = 2;
    /// Shareability encoding: non-shareable.
    pub const SH_NSH: u32 = 0;

    const QUEUE_IC_SHIFT: u32 = 0;
    const QUEUE_OC_SHIFT: u32 = 2;
    const QUEUE_SH_SHIFT: u32 = 4;
    const TABLE_IC_SHIFT: u32 = 6;
    const TABLE_OC_SHIFT: u32 = 8;
    const TABLE_SH_SHIFT: u32 = 10;

    /// Builds CR1 from the queue (`QUEUE_IC/OC/SH`, bits \[5:0\]) and table (`TABLE_IC/OC/SH`, bits \[11:6\])
    /// attributes: (inner cacheability, outer cacheability, shareability).
    pub const fn new(queue: (u32, u32, u32), table: (u32, u32, u32)) -> Self {
        Self(
            (queue.0 & 3) << Self::QUEUE_IC_SHIFT
                | (queue.1 & 3) << Self::QUEUE_OC_SHIFT
                | (queue.2 & 3) << Self::QUEUE_SH_SHIFT
                | (table.0 & 3) << Self::TABLE_IC_SHIFT
                | (table.1 & 3) << Self::TABLE_OC_SHIFT
                | (table.2 & 3) << Self::TABLE_SH_SHIFT,
        )
    }

    /// What Linux programs for a coherent SMMU: inner/outer write-back, inner shareable, for both queues and
    /// tables.
    pub const fn coherent_wb() -> Self {
        let attrs = (Self::CACHE_WB, Self::CACHE_WB, Self::SH_ISH);
        Self::new(attrs, attrs)
    }
}

/// `SMMU_CR2` (IHI 0070 §6.3.12).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[repr(transparent)]
pub struct Cr2(pub u32);

impl Cr2 {
    /// Bit 0 `E2H`: EL2 stage-1 uses the E2H (VHE) regime.
    pub const E2H: Self = Self(1 << 0);
    /// Bit 1 `RECINVSID`: record `C_BAD_STREAMID` events for out-of-range StreamIDs.
    pub const RECINVSID: Self = Self(1 << 1);
    /// Bit 2 `PTM`: private TLB maintenance (ignore broadcast TLB invalidations from the CPUs).
    pub const PTM: Self = Self(1 << 2);
}

/// `SMMU_GBPA` bit 31 `Update`: set to request an update; the SMMU clears it when done (IHI 0070 §6.3.14).
pub const GBPA_UPDATE: u32 = 1 << 31;
/// `SMMU_GBPA` bit 20 `ABORT`: abort all incoming transactions while `SMMUEN` is 0.
pub const GBPA_ABORT: u32 = 1 << 20;

/// `SMMU_GBPA` value (IHI 0070 §6.3.14).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[repr(transparent)]
pub struct Gbpa(pub u32);

impl Gbpa {
    /// Whether an update is still in progress.
    pub const fn update_pending(self) -> bool {
        self.0 & GBPA_UPDATE != 0
    }
    /// Whether incoming transactions abort while the SMMU is disabled.
    pub const fn abort(self) -> bool {
        self.0 & GBPA_ABORT != 0
    }
}

/// `SMMU_IRQ_CTRL` / `SMMU_IRQ_CTRLACK` (IHI 0070 §6.3.16).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[repr(transparent)]
pub struct IrqCtrl(pub u32);

impl IrqCtrl {
    /// Bit 0 `GERROR_IRQEN`.
    pub const GERROR_IRQEN: Self = Self(1 << 0);
    /// Bit 1 `PRIQ_IRQEN`.
    pub const PRIQ_IRQEN: Self = Self(1 << 1);
    /// Bit 2 `EVENTQ_IRQEN`.
    pub const EVTQ_IRQEN: Self = Self(1 << 2);
}

/// `SMMU_GERROR` / `SMMU_GERRORN` value (IHI 0070 §6.3.18): an error is active while its bit differs between the
/// two registers; software acknowledges by writing GERRORN with the bit toggled to match GERROR.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[repr(transparent)]
pub struct Gerror(pub u32);

impl Gerror {
    /// Bit 0 `CMDQ_ERR`: command queue error, cause in `CMDQ_CONS.ERR`.
    pub const CMDQ_ERR: u32 = 1 << 0;
    /// Bit 2 `EVTQ_ABT_ERR`: event queue write aborted.
    pub const EVTQ_ABT_ERR: u32 = 1 << 2;
    /// Bit 3 `PRIQ_ABT_ERR`: PRI queue write aborted.
    pub const PRIQ_ABT_ERR: u32 = 1 << 3;
    /// Bit 4 `MSI_CMDQ_ABT_ERR`.
    pub const MSI_CMDQ_ABT_ERR: u32 = 1 << 4;
    /// Bit 5 `MSI_EVTQ_ABT_ERR`.
    pub const MSI_EVTQ_ABT_ERR: u32 = 1 << 5;
    /// Bit 6 `MSI_PRIQ_ABT_ERR`.
    pub const MSI_PRIQ_ABT_ERR: u32 = 1 << 6;
    /// Bit 7 `MSI_GERROR_ABT_ERR`.
    pub const MSI_GERROR_ABT_ERR: u32 = 1 << 7;
    /// Bit 8 `SFM_ERR`: the SMMU entered service failure mode.
    pub const SFM_ERR: u32 = 1 << 8;
    /// Every defined error bit.
    pub const ALL: u32 = 0x1FD;

    /// The errors active given GERROR (`self`) and GERRORN.
    pub const fn active(self, gerrorn: u32) -> u32 {
        (self.0 ^ gerrorn) & Self::ALL
    }
}

/// `SMMU_STRTAB_BASE` (IHI 0070 §6.3.23).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[repr(transparent)]
pub struct StrtabBase(pub u64);

impl StrtabBase {
    /// Bit 62 `RA`: read-allocate hint.
    pub const RA: u64 = 1 << 62;
    /// Bits \[51:6\] `ADDR`.
    pub const ADDR_MASK: u64 = mask64(51, 6);

    /// A base value for a table at `pa` (64-byte aligned at least), with read-allocate.
    pub const fn new(pa: u64) -> Self {
        Self(Self::RA | (pa & Self::ADDR_MASK))
    }
    /// The table's physical address.
    pub const fn addr(self) -> u64 {
        self.0 & Self::ADDR_MASK
    }
}

/// `SMMU_STRTAB_BASE_CFG` (IHI 0070 §6.3.24).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[repr(transparent)]
pub struct StrtabBaseCfg(pub u32);

impl StrtabBaseCfg {
    const LOG2SIZE_SHIFT: u32 = 0;
    const SPLIT_SHIFT: u32 = 6;
    const FMT_SHIFT: u32 = 16;
    /// `FMT` encoding: linear table.
    pub const FMT_LINEAR: u32 = 0;
    /// `FMT` encoding: 2-level table.
    pub const FMT_2LVL: u32 = 1;

    /// A linear table of `2^log2size` STEs.
    pub const fn linear(log2size: u32) -> Self {
        Self((log2size & 0x3F) << Self::LOG2SIZE_SHIFT | Self::FMT_LINEAR << Self::FMT_SHIFT)
    }
    /// A 2-level table covering `2^log2size` StreamIDs, each level-2 table holding `2^split` STEs.
    pub const fn two_level(log2size: u32, split: u32) -> Self {
        Self(
            (log2size & 0x3F) << Self::LOG2SIZE_SHIFT
                | (split & 0x1F) << Self::SPLIT_SHIFT
                | Self::FMT_2LVL << Self::FMT_SHIFT,
        )
    }
    /// Bits \[5:0\] `LOG2SIZE`.
    pub const fn log2size(self) -> u32 {
        self.0 & 0x3F
    }
    /// Bits \[10:6\] `SPLIT`.
    pub const fn split(self) -> u32 {
        (self.0 >> Self::SPLIT_SHIFT) & 0x1F
    }
    /// Bits \[17:16\] `FMT`.
    pub const fn fmt(self) -> u32 {
        (self.0 >> Self::FMT_SHIFT) & 3
    }
}

/// Level-1 stream table descriptor (IHI 0070 §5.1 "Level 1 Stream Table Descriptor"): `SPAN` bits \[4:0\]
/// (`2^(SPAN-1)` STEs in the level-2 table; 0 = invalid) and `L2Ptr` bits \[51:6\].
pub(crate) const fn l1_descriptor(l2_pa: u64, split: u32) -> u64 {
    prep64(split as u64 + 1, 0, 5) | (l2_pa & mask64(51, 6))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cr1_linux_coherent() {
        // Linux: TABLE_SH=ISH, TABLE_OC=WB, TABLE_IC=WB, QUEUE_* likewise.
        assert_eq!(Cr1::coherent_wb().0, 0b11_01_01_11_01_01);
    }

    #[test]
    fn strtab_cfg_fields() {
        let cfg = StrtabBaseCfg::two_level(16, 8);
        assert_eq!(cfg.0, 16 | 8 << 6 | 1 << 16);
        assert_eq!((cfg.log2size(), cfg.split(), cfg.fmt()), (16, 8, 1));
        assert_eq!(StrtabBaseCfg::linear(8).0, 8);
        assert_eq!(StrtabBase::new(0x4010_0040).0, 1 << 62 | 0x4010_0040);
        assert_eq!(l1_descriptor(0x4000_4000, 8), 0x4000_4000 | 9);
    }

    #[test]
    fn gerror_active() {
        assert_eq!(Gerror(Gerror::CMDQ_ERR).active(0), Gerror::CMDQ_ERR);
        assert_eq!(Gerror(Gerror::CMDQ_ERR).active(Gerror::CMDQ_ERR), 0);
        assert_eq!(Gerror(0).active(Gerror::SFM_ERR), Gerror::SFM_ERR);
    }
}
