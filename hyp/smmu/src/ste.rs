//! Stream table entries (IHI 0070 §5.2 "Stream Table Entry").
//!
//! An STE is 64 bytes (eight dwords). This driver writes three kinds: abort (`V` = 1, `Config` = 0b000: every
//! transaction is terminated without recording an event), bypass (`Config` = 0b100) and stage-2 translate
//! (`Config` = 0b110, AArch64 tables, 4 KiB granule, faults recorded). How the driver changes a live STE is
//! described in [`crate::driver`] (`Smmu::write_ste`).

use crate::regs::{field64, mask64, prep64};
use crate::types::Vmid;
use warden_abi::{BITS_PER_LEVEL, PAGE_SHIFT, PAGE_SIZE};

/// Size of one STE in bytes.
pub const STE_SIZE: usize = 64;
/// Size of one STE in 64-bit words.
pub const STE_DWORDS: usize = STE_SIZE / 8;

// Dword 0 (§5.2): V [0], Config [3:1].
const V: u64 = 1 << 0;
const CONFIG_SHIFT: u32 = 1;
const CONFIG_WIDTH: u32 = 3;
const CONFIG_ABORT: u64 = 0b000;
const CONFIG_BYPASS: u64 = 0b100;
const CONFIG_S1: u64 = 0b101;
const CONFIG_S2: u64 = 0b110;
// Dword 1: SHCFG [45:44] (0b01 = use the incoming shareability).
const SHCFG_SHIFT: u32 = 44;
const SHCFG_INCOMING: u64 = 0b01;
// Dword 2: S2VMID [15:0], S2T0SZ [37:32], S2SL0 [39:38], S2IR0 [41:40], S2OR0 [43:42], S2SH0 [45:44],
// S2TG [47:46], S2PS [50:48], S2AA64 [51], S2ENDI [52], S2AFFD [53], S2PTW [54], S2S [57], S2R [58].
const S2VMID_SHIFT: u32 = 0;
const S2T0SZ_SHIFT: u32 = 32;
const S2SL0_SHIFT: u32 = 38;
const S2IR0_SHIFT: u32 = 40;
const S2OR0_SHIFT: u32 = 42;
const S2SH0_SHIFT: u32 = 44;
const S2TG_SHIFT: u32 = 46;
const S2PS_SHIFT: u32 = 48;
const S2AA64: u64 = 1 << 51;
const S2ENDI: u64 = 1 << 52;
const S2PTW: u64 = 1 << 54;
const S2S: u64 = 1 << 57;
const S2R: u64 = 1 << 58;
// Dword 3: S2TTB [51:4].
const S2TTB_HI: u32 = 51;
const S2TTB_LO: u32 = 4;

/// `S2TG` encoding of the 4 KiB granule (as `VTCR_EL2.TG0`).
pub const S2TG_4K: u8 = 0b00;
/// `S2IR0`/`S2OR0` encoding: write-back, read/write allocate.
pub const CACHE_WBWA: u8 = 0b01;
/// `S2SH0` encoding: inner shareable.
pub const SH_INNER: u8 = 0b11;

/// What an STE does with a transaction, decoded from dword 0.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum SteKind {
    /// `V` = 0: transactions are terminated and `C_BAD_STE` is recorded.
    Invalid,
    /// `Config` = 0b000: terminated silently.
    Abort,
    /// `Config` = 0b100: passed through untranslated.
    Bypass,
    /// `Config` = 0b110: stage-2 translation.
    Stage2,
    /// Any other configuration (stage 1, nested, reserved): never written by this driver.
    Other,
}

/// Stage-2 translation parameters of an STE: the SMMU's copy of the domain's `VTCR_EL2`/`VTTBR_EL2`.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct S2Config {
    /// VMID tagging the domain's TLB entries.
    pub vmid: Vmid,
    /// Physical address of the root table (`S2TTB`, aligned to the root table size, at least 4 KiB).
    pub ttb: u64,
    /// `S2T0SZ`: the input range is `2^(64 - t0sz)` bytes.
    pub t0sz: u8,
    /// `S2SL0`: start level for the 4 KiB granule (0b00 = level 2, 0b01 = level 1, 0b10 = level 0).
    pub sl0: u8,
    /// `S2PS`: output size, `PARange`-style encoding (0 = 32 bits … 6 = 52 bits).
    pub ps: u8,
    /// `S2IR0`: inner cacheability of table walks.
    pub ir0: u8,
    /// `S2OR0`: outer cacheability of table walks.
    pub or0: u8,
    /// `S2SH0`: shareability of table walks.
    pub sh0: u8,
}

/// Why an [`S2Config`] cannot be programmed.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum S2ConfigError {
    /// `t0sz` outside 16..=39 (48- to 25-bit inputs) or larger than the SMMU's input size allows.
    InputSize,
    /// `sl0` not 0, 1 or 2, or inconsistent with `t0sz` (too many concatenated root tables).
    StartLevel,
    /// `ps` is larger than the SMMU's output size or reserved.
    OutputSize,
    /// `ttb` not 4 KiB aligned or beyond the output size.
    TableAddress,
    /// A cacheability/shareability field has a value this driver does not program (ir0/or0 > 3, sh0 == 1).
    Attributes,
}

impl S2Config {
    /// The usual configuration for a 4 KiB-granule table: `ias_bits` of input, walk starting at `start_level`
    /// (0, 1 or 2), output size encoding `ps`, write-back inner-shareable walks.
    pub const fn new_4k(vmid: Vmid, ttb: u64, ias_bits: u8, start_level: u8, ps: u8) -> Self {
        Self {
            vmid,
            ttb,
            t0sz: 64u8.wrapping_sub(ias_bits),
            sl0: 2u8.wrapping_sub(start_level),
            ps,
            ir0: CACHE_WBWA,
            or0: CACHE_WBWA,
            sh0: SH_INNER,
        }
    }

    /// The translation table level the walk starts at.
    pub const fn start_level(&self) -> u8 {
        2u8.wrapping_sub(self.sl0)
    }

    /// Number of input address bits.
    pub const fn ias_bits(&self) -> u32 {
        64u32.wrapping_sub(self.t0sz as u32)
    }

    /// Checks the fields against the architecture and an SMMU with `oas_encoding` (`IDR5.OAS`) and `ias_bits`
    /// of stage-2 input.
    pub fn validate(&self, oas_encoding: u8, ias_bits: u32) -> Result<(), S2ConfigError> {
        /// Smallest T0SZ with the 4 KiB granule (48-bit input; 52-bit needs LPA2, unsupported).
        const T0SZ_MIN: u8 = 16;
        /// Largest T0SZ with the 4 KiB granule (25-bit input).
        const T0SZ_MAX: u8 = 39;
        /// At most 16 concatenated root tables (4 extra bits) at the start level (Arm ARM D8.2.6).
        const MAX_CONCAT_BITS: u32 = 4;
        if !(T0SZ_MIN..=T0SZ_MAX).contains(&self.t0sz) || self.ias_bits() > ias_bits {
            return Err(S2ConfigError::InputSize);
        }
        if self.sl0 > 2 {
            return Err(S2ConfigError::StartLevel);
        }
        // Bits translated from the start level to the page: (4 - level) * 9 + 12.
        let covered = (4 - self.start_level() as u32) * BITS_PER_LEVEL + PAGE_SHIFT;
        let ias = self.ias_bits();
        if ias > covered + MAX_CONCAT_BITS || ias + BITS_PER_LEVEL <= covered {
            return Err(S2ConfigError::StartLevel);
        }
        let Some(out_bits) = crate::regs::pa_range_bits(self.ps as u32) else {
            return Err(S2ConfigError::OutputSize);
        };
        if self.ps > oas_encoding {
            return Err(S2ConfigError::OutputSize);
        }
        if !self.ttb.is_multiple_of(PAGE_SIZE) || self.ttb >> out_bits != 0 {
            return Err(S2ConfigError::TableAddress);
        }
        if self.ir0 > 3 || self.or0 > 3 || self.sh0 == 1 || self.sh0 > 3 {
            return Err(S2ConfigError::Attributes);
        }
        Ok(())
    }
}

/// One stream table entry.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
#[repr(transparent)]
pub struct Ste(pub [u64; STE_DWORDS]);

impl Ste {
    /// An invalid STE (all zero).
    pub const INVALID: Self = Self([0; STE_DWORDS]);

    /// A valid STE that aborts every transaction without recording an event.
    pub const fn abort() -> Self {
        let mut ste = [0; STE_DWORDS];
        ste[0] = V | prep64(CONFIG_ABORT, CONFIG_SHIFT, CONFIG_WIDTH);
        Self(ste)
    }

    /// A valid STE that passes transactions through untranslated, with incoming shareability (as Linux).
    pub const fn bypass() -> Self {
        let mut ste = [0; STE_DWORDS];
        ste[0] = V | prep64(CONFIG_BYPASS, CONFIG_SHIFT, CONFIG_WIDTH);
        ste[1] = prep64(SHCFG_INCOMING, SHCFG_SHIFT, 2);
        Self(ste)
    }

    /// A valid stage-2 STE: AArch64 tables, little-endian, 4 KiB granule, protected table walks (`S2PTW`),
    /// faults recorded (`S2R`) and terminated (not stalled).
    pub const fn stage2(cfg: &S2Config) -> Self {
        let mut ste = [0; STE_DWORDS];
        ste[0] = V | prep64(CONFIG_S2, CONFIG_SHIFT, CONFIG_WIDTH);
        ste[1] = prep64(SHCFG_INCOMING, SHCFG_SHIFT, 2);
        ste[2] = prep64(cfg.vmid.0 as u64, S2VMID_SHIFT, 16)
            | prep64(cfg.t0sz as u64, S2T0SZ_SHIFT, 6)
            | prep64(cfg.sl0 as u64, S2SL0_SHIFT, 2)
            | prep64(cfg.ir0 as u64, S2IR0_SHIFT, 2)
            | prep64(cfg.or0 as u64, S2OR0_SHIFT, 2)
            | prep64(cfg.sh0 as u64, S2SH0_SHIFT, 2)
            | prep64(S2TG_4K as u64, S2TG_SHIFT, 2)
            | prep64(cfg.ps as u64, S2PS_SHIFT, 3)
            | S2AA64
            | S2PTW
            | S2R;
        ste[3] = cfg.ttb & mask64(S2TTB_HI, S2TTB_LO);
        Self(ste)
    }

    /// `V` bit.
    pub const fn valid(&self) -> bool {
        self.0[0] & V != 0
    }

    /// What the STE does.
    pub const fn kind(&self) -> SteKind {
        if !self.valid() {
            return SteKind::Invalid;
        }
        match field64(self.0[0], CONFIG_SHIFT, CONFIG_WIDTH) {
            CONFIG_ABORT => SteKind::Abort,
            CONFIG_BYPASS => SteKind::Bypass,
            CONFIG_S2 => SteKind::Stage2,
            CONFIG_S1 => SteKind::Other,
            _ => SteKind::Other,
        }
    }

    /// The stage-2 parameters of a stage-2 STE.
    pub const fn s2_config(&self) -> Option<S2Config> {
        if !matches!(self.kind(), SteKind::Stage2) {
            return None;
        }
        let d2 = self.0[2];
        Some(S2Config {
            vmid: Vmid(field64(d2, S2VMID_SHIFT, 16) as u16),
            ttb: self.0[3] & mask64(S2TTB_HI, S2TTB_LO),
            t0sz: field64(d2, S2T0SZ_SHIFT, 6) as u8,
            sl0: field64(d2, S2SL0_SHIFT, 2) as u8,
            ps: field64(d2, S2PS_SHIFT, 3) as u8,
            ir0: field64(d2, S2IR0_SHIFT, 2) as u8,
            or0: field64(d2, S2OR0_SHIFT, 2) as u8,
            sh0: field64(d2, S2SH0_SHIFT, 2) as u8,
        })
    }

    /// `S2TG` of a stage-2 STE.
    pub const fn s2_tg(&self) -> u8 {
        field64(self.0[2], S2TG_SHIFT, 2) as u8
    }

    /// Whether a stage-2 STE has AArch64 tables, little-endian walks, and no stall model.
    pub const fn s2_supported_format(&self) -> bool {
        self.0[2] & S2AA64 != 0 && self.0[2] & (S2ENDI | S2S) == 0
    }

    /// Whether stage-2 faults are recorded in the event queue (`S2R`).
    pub const fn s2_records_faults(&self) -> bool {
        self.0[2] & S2R != 0
    }

    /// Bit mask of the dwords the SMMU interprets for this STE's configuration (bit `i` = dword `i`).
    ///
    /// Dwords outside the mask may be rewritten while the STE is live without changing its behaviour; this is
    /// what makes hitless updates possible (the same reasoning as Linux's `arm_smmu_get_ste_used`).
    pub const fn used_dwords(&self) -> u8 {
        match self.kind() {
            SteKind::Invalid | SteKind::Abort => 0b0001,
            SteKind::Bypass => 0b0011,
            SteKind::Stage2 => 0b1111,
            SteKind::Other => 0xFF,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> S2Config {
        S2Config::new_4k(Vmid(0x1234), 0x4080_0000, 40, 1, 4)
    }

    #[test]
    fn encodings() {
        assert_eq!(Ste::abort().0, [1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(Ste::bypass().0[..2], [0b1001, 1 << 44]);
        let ste = Ste::stage2(&cfg());
        assert_eq!(ste.0[0], 0b1101);
        assert_eq!(ste.0[1], 1 << 44);
        // VMID 0x1234; T0SZ 24 at [37:32]; SL0 1 at [39:38]; IR0 1 [41:40]; OR0 1 [43:42]; SH0 3 [45:44];
        // TG 0 [47:46]; PS 4 [50:48]; S2AA64 [51]; S2PTW [54]; S2R [58].
        let expect = 0x1234
            | 24 << 32
            | 1 << 38
            | 1 << 40
            | 1 << 42
            | 3 << 44
            | 4 << 48
            | 1 << 51
            | 1 << 54
            | 1 << 58;
        assert_eq!(ste.0[2], expect);
        assert_eq!(ste.0[3], 0x4080_0000);
        assert_eq!(ste.0[4..], [0; 4]);
        assert_eq!(ste.kind(), SteKind::Stage2);
        assert_eq!(ste.s2_config(), Some(cfg()));
        assert!(ste.s2_supported_format() && ste.s2_records_faults());
        assert_eq!(Ste::INVALID.kind(), SteKind::Invalid);
        assert_eq!(Ste::abort().used_dwords(), 1);
        assert_eq!(ste.used_dwords(), 0b1111);
    }

    #[test]
    fn validation() {
        assert_eq!(cfg().validate(4, 44), Ok(()));
        assert_eq!(cfg().start_level(), 1);
        assert_eq!(
            S2Config { t0sz: 15, ..cfg() }.validate(4, 48),
            Err(S2ConfigError::InputSize)
        );
        assert_eq!(
            S2Config::new_4k(Vmid(1), 0, 48, 1, 4).validate(4, 44),
            Err(S2ConfigError::InputSize)
        );
        // 48-bit input from level 1 would need 512 concatenated tables.
        assert_eq!(
            S2Config::new_4k(Vmid(1), 0, 48, 1, 4).validate(4, 48),
            Err(S2ConfigError::StartLevel)
        );
        // 30-bit input starting at level 0 wastes a level: rejected.
        assert_eq!(
            S2Config::new_4k(Vmid(1), 0, 30, 0, 4).validate(4, 48),
            Err(S2ConfigError::StartLevel)
        );
        assert_eq!(
            S2Config::new_4k(Vmid(1), 0, 48, 0, 4).validate(4, 48),
            Ok(())
        );
        assert_eq!(
            S2Config::new_4k(Vmid(1), 0, 39, 1, 4).validate(4, 48),
            Ok(())
        );
        assert_eq!(
            S2Config::new_4k(Vmid(1), 0, 43, 1, 4).validate(4, 48),
            Ok(())
        );
        assert_eq!(
            S2Config { ps: 5, ..cfg() }.validate(4, 44),
            Err(S2ConfigError::OutputSize)
        );
        assert_eq!(
            S2Config { ps: 7, ..cfg() }.validate(7, 44),
            Err(S2ConfigError::OutputSize)
        );
        assert_eq!(
            S2Config {
                ttb: 0x4080_0800,
                ..cfg()
            }
            .validate(4, 44),
            Err(S2ConfigError::TableAddress)
        );
        assert_eq!(
            S2Config {
                ttb: 1 << 44,
                ..cfg()
            }
            .validate(4, 44),
            Err(S2ConfigError::TableAddress)
        );
        assert_eq!(
            S2Config { sh0: 1, ..cfg() }.validate(4, 44),
            Err(S2ConfigError::Attributes)
        );
        assert_eq!(
            S2Config { sl0: 3, ..cfg() }.validate(4, 44),
            Err(S2ConfigError::StartLevel)
        );
    }
}
