//! Decoded ID registers (IHI 0070 §6.3.1–§6.3.6).

use super::field32;

/// `SMMU_IDR0` (IHI 0070 §6.3.1).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[repr(transparent)]
pub struct Idr0(pub u32);

/// `SMMU_IDR0.STALL_MODEL` (bits \[25:24\]).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum StallModel {
    /// 0b00: stall and terminate models supported.
    StallAndTerminate,
    /// 0b01: only the terminate model (no stalls).
    TerminateOnly,
    /// 0b10: stall forced for stall-capable masters.
    StallForced,
    /// 0b11: reserved encoding.
    Reserved,
}

/// `SMMU_IDR0.TTENDIAN` (bits \[22:21\]): endianness of translation table walks.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum TtEndian {
    /// 0b00: both endiannesses (per STE/CD).
    Mixed,
    /// 0b01: reserved encoding.
    Reserved,
    /// 0b10: little-endian only.
    Little,
    /// 0b11: big-endian only.
    Big,
}

impl Idr0 {
    /// Bit 0 `S2P`: stage-2 translation supported.
    pub const fn s2p(self) -> bool {
        self.0 & 1 != 0
    }
    /// Bit 1 `S1P`: stage-1 translation supported.
    pub const fn s1p(self) -> bool {
        self.0 & (1 << 1) != 0
    }
    /// Bits \[3:2\] `TTF`: bit 1 of the field set means AArch64 tables are supported (0b10, 0b11).
    pub const fn ttf_aarch64(self) -> bool {
        field32(self.0, 2, 2) & 0b10 != 0
    }
    /// Bits \[3:2\] `TTF`: bit 0 of the field set means AArch32 (LPAE) tables are supported.
    pub const fn ttf_aarch32(self) -> bool {
        field32(self.0, 2, 2) & 0b01 != 0
    }
    /// Bit 4 `COHACC`: coherent access to tables, queues and MSIs.
    pub const fn cohacc(self) -> bool {
        self.0 & (1 << 4) != 0
    }
    /// Bits \[7:6\] `HTTU`: hardware access/dirty flag update (0 none, 1 access, 2 access and dirty).
    pub const fn httu(self) -> u32 {
        field32(self.0, 6, 2)
    }
    /// Bit 9 `HYP`: EL2 stage-1 translation (and `TLBI_EL2_*` commands) supported.
    pub const fn hyp(self) -> bool {
        self.0 & (1 << 9) != 0
    }
    /// Bit 10 `ATS`: PCIe ATS supported.
    pub const fn ats(self) -> bool {
        self.0 & (1 << 10) != 0
    }
    /// Bit 12 `ASID16`: 16-bit ASIDs.
    pub const fn asid16(self) -> bool {
        self.0 & (1 << 12) != 0
    }
    /// Bit 13 `MSI`: message-signalled interrupts.
    pub const fn msi(self) -> bool {
        self.0 & (1 << 13) != 0
    }
    /// Bit 14 `SEV`: the SMMU can send events (WFE wake-up), e.g. for `CMD_SYNC` with `CS = SIG_SEV`.
    pub const fn sev(self) -> bool {
        self.0 & (1 << 14) != 0
    }
    /// Bit 16 `PRI`: page request interface.
    pub const fn pri(self) -> bool {
        self.0 & (1 << 16) != 0
    }
    /// Bit 18 `VMID16`: 16-bit VMIDs (otherwise 8-bit).
    pub const fn vmid16(self) -> bool {
        self.0 & (1 << 18) != 0
    }
    /// Bit 19 `CD2L`: 2-level context descriptor tables.
    pub const fn cd2l(self) -> bool {
        self.0 & (1 << 19) != 0
    }
    /// Bits \[22:21\] `TTENDIAN`.
    pub const fn ttendian(self) -> TtEndian {
        match field32(self.0, 21, 2) {
            0 => TtEndian::Mixed,
            1 => TtEndian::Reserved,
            2 => TtEndian::Little,
            _ => TtEndian::Big,
        }
    }
    /// Bits \[25:24\] `STALL_MODEL`.
    pub const fn stall_model(self) -> StallModel {
        match field32(self.0, 24, 2) {
            0 => StallModel::StallAndTerminate,
            1 => StallModel::TerminateOnly,
            2 => StallModel::StallForced,
            _ => StallModel::Reserved,
        }
    }
    /// Bit 26 `TERM_MODEL`: 1 = a terminated transaction always aborts (never RAZ/WI).
    pub const fn term_model(self) -> bool {
        self.0 & (1 << 26) != 0
    }
    /// Bits \[28:27\] `ST_LEVEL`: 0b01 = 2-level stream tables supported.
    pub const fn two_level_strtab(self) -> bool {
        field32(self.0, 27, 2) == 1
    }
}

/// `SMMU_IDR1` (IHI 0070 §6.3.2).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[repr(transparent)]
pub struct Idr1(pub u32);

impl Idr1 {
    /// Bits \[5:0\] `SIDSIZE`: number of StreamID bits.
    pub const fn sidsize(self) -> u32 {
        field32(self.0, 0, 6)
    }
    /// Bits \[10:6\] `SSIDSIZE`: number of SubstreamID bits.
    pub const fn ssidsize(self) -> u32 {
        field32(self.0, 6, 5)
    }
    /// Bits \[15:11\] `PRIQS`: log2 of the maximum PRI queue entries.
    pub const fn priqs(self) -> u32 {
        field32(self.0, 11, 5)
    }
    /// Bits \[20:16\] `EVENTQS`: log2 of the maximum event queue entries.
    pub const fn evtqs(self) -> u32 {
        field32(self.0, 16, 5)
    }
    /// Bits \[25:21\] `CMDQS`: log2 of the maximum command queue entries.
    pub const fn cmdqs(self) -> u32 {
        field32(self.0, 21, 5)
    }
    /// Bit 28 `REL`: base addresses in the preset tables/queues are relative.
    pub const fn rel(self) -> bool {
        self.0 & (1 << 28) != 0
    }
    /// Bit 29 `QUEUES_PRESET`: queue bases are fixed by the implementation (unsupported by this driver).
    pub const fn queues_preset(self) -> bool {
        self.0 & (1 << 29) != 0
    }
    /// Bit 30 `TABLES_PRESET`: stream table base is fixed by the implementation (unsupported by this driver).
    pub const fn tables_preset(self) -> bool {
        self.0 & (1 << 30) != 0
    }
}

/// `SMMU_IDR3` (IHI 0070 §6.3.4).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[repr(transparent)]
pub struct Idr3(pub u32);

impl Idr3 {
    /// Bit 2 `HAD`: hierarchical attribute disables.
    pub const fn had(self) -> bool {
        self.0 & (1 << 2) != 0
    }
    /// Bit 4 `XNX`: EL0/EL1 execute-never distinction at stage 2.
    pub const fn xnx(self) -> bool {
        self.0 & (1 << 4) != 0
    }
    /// Bit 8 `FWB`: stage-2 forced write-back (`STE.S2FWB`).
    pub const fn fwb(self) -> bool {
        self.0 & (1 << 8) != 0
    }
    /// Bit 10 `RIL`: range invalidation (`TLBI_* ` `NUM`/`SCALE`/`TG`/`TTL` fields) supported.
    pub const fn ril(self) -> bool {
        self.0 & (1 << 10) != 0
    }
    /// Bits \[12:11\] `BBML`: break-before-make level (0, 1 or 2).
    pub const fn bbml(self) -> u32 {
        field32(self.0, 11, 2)
    }
}

/// `SMMU_IDR5` (IHI 0070 §6.3.6).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[repr(transparent)]
pub struct Idr5(pub u32);

impl Idr5 {
    /// Bits \[2:0\] `OAS`, raw encoding (0 = 32 bits … 6 = 52 bits), the same as `VTCR.PS`/`STE.S2PS`.
    pub const fn oas_encoding(self) -> u32 {
        field32(self.0, 0, 3)
    }
    /// Bits \[2:0\] `OAS` as a number of address bits (`None` for a reserved encoding).
    pub const fn oas_bits(self) -> Option<u32> {
        pa_range_bits(self.oas_encoding())
    }
    /// Bit 4 `GRAN4K`: 4 KiB translation granule supported.
    pub const fn gran4k(self) -> bool {
        self.0 & (1 << 4) != 0
    }
    /// Bit 5 `GRAN16K`: 16 KiB translation granule supported.
    pub const fn gran16k(self) -> bool {
        self.0 & (1 << 5) != 0
    }
    /// Bit 6 `GRAN64K`: 64 KiB translation granule supported.
    pub const fn gran64k(self) -> bool {
        self.0 & (1 << 6) != 0
    }
    /// Bits \[11:10\] `VAX`: 52-bit VAs for stage 1.
    pub const fn vax(self) -> u32 {
        field32(self.0, 10, 2)
    }
    /// Bits \[31:16\] `STALL_MAX`: maximum outstanding stalled transactions.
    pub const fn stall_max(self) -> u32 {
        field32(self.0, 16, 16)
    }
}

/// Number of address bits for a `PS`/`OAS`/`PARange` style encoding (IHI 0070 §6.3.6 `OAS`).
pub const fn pa_range_bits(encoding: u32) -> Option<u32> {
    match encoding {
        0 => Some(32),
        1 => Some(36),
        2 => Some(40),
        3 => Some(42),
        4 => Some(44),
        5 => Some(48),
        6 => Some(52),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values QEMU 10.0.2's virt SMMUv3 reports (platform.md).
    #[test]
    fn qemu_values_decode() {
        let idr0 = Idr0(0x0d44_101b);
        assert!(idr0.s2p() && idr0.s1p());
        assert!(idr0.ttf_aarch64() && !idr0.ttf_aarch32());
        assert!(idr0.cohacc());
        assert!(idr0.asid16() && idr0.vmid16());
        assert_eq!(idr0.ttendian(), TtEndian::Little);
        assert_eq!(idr0.stall_model(), StallModel::TerminateOnly);
        assert!(idr0.term_model());
        assert!(idr0.two_level_strtab());
        assert!(!idr0.hyp() && !idr0.msi() && !idr0.sev() && !idr0.pri() && !idr0.ats());

        let idr1 = Idr1(0x0273_0010);
        assert_eq!(idr1.sidsize(), 16);
        assert_eq!(idr1.ssidsize(), 0);
        assert_eq!(idr1.cmdqs(), 19);
        assert_eq!(idr1.evtqs(), 19);
        assert!(!idr1.queues_preset() && !idr1.tables_preset());

        let idr3 = Idr3(0x1414);
        assert!(idr3.ril() && idr3.had() && idr3.xnx() && !idr3.fwb());
        assert_eq!(idr3.bbml(), 2);

        let idr5 = Idr5(0x74);
        assert_eq!(idr5.oas_bits(), Some(44));
        assert!(idr5.gran4k() && idr5.gran16k() && idr5.gran64k());
    }

    #[test]
    fn single_bits() {
        assert!(Idr0(1 << 9).hyp());
        assert!(Idr0(1 << 14).sev());
        assert_eq!(Idr0(0b11 << 24).stall_model(), StallModel::Reserved);
        assert_eq!(Idr0(0).ttendian(), TtEndian::Mixed);
        assert!(!Idr0(0b01 << 2).ttf_aarch64());
        assert_eq!(Idr5(7).oas_bits(), None);
        assert_eq!(Idr5(6).oas_bits(), Some(52));
    }
}
