//! The trap configuration the hypervisor programs for the host, computed from the CPU's ID registers: what
//! the host may use without a trip to EL2 (every feature the CPU has, as Linux's `el2_setup.h` leaves an EL1
//! kernel), and the little it traps on purpose (SMC, implementation-defined system registers).
//!
//! Fine-grained traps (`FEAT_FGT`, `FEAT_FGT2`) mostly trap when a bit is set; the "n" bits (named `n…`)
//! trap when clear. Each "n" bit is set only when the CPU has the feature whose register it guards: for a
//! feature the CPU lacks the register is UNDEFINED at EL1 anyway, and for one this table does not know yet the
//! access traps to EL2, which answers it with an undefined-instruction exception ([`super::inject`]), exactly
//! what the host would see on a CPU without the feature. Nothing the host executes stops the hypervisor.

/// The ID register values [`HostTraps::for_cpu`] reads features from (`ID_AA64*_EL1`).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct CpuIds {
    /// `ID_AA64PFR0_EL1`.
    pub pfr0: u64,
    /// `ID_AA64PFR1_EL1`.
    pub pfr1: u64,
    /// `ID_AA64PFR2_EL1`.
    pub pfr2: u64,
    /// `ID_AA64MMFR0_EL1`.
    pub mmfr0: u64,
    /// `ID_AA64MMFR1_EL1`.
    pub mmfr1: u64,
    /// `ID_AA64MMFR3_EL1`.
    pub mmfr3: u64,
    /// `ID_AA64DFR0_EL1`.
    pub dfr0: u64,
    /// `ID_AA64ISAR1_EL1`.
    pub isar1: u64,
    /// `ID_AA64ISAR2_EL1`.
    pub isar2: u64,
}

/// The 4-bit ID field at `shift`.
const fn field(value: u64, shift: u32) -> u64 {
    (value >> shift) & 0xf
}

/// ID field positions used below (Arm ARM, `ID_AA64*_EL1`).
mod id {
    pub const PFR0_CSV2: u32 = 56;
    pub const PFR0_AMU: u32 = 44;
    pub const PFR0_RAS: u32 = 28;
    pub const PFR1_PFAR: u32 = 60;
    pub const PFR1_THE: u32 = 48;
    pub const PFR1_GCS: u32 = 44;
    pub const PFR1_SME: u32 = 24;
    pub const PFR1_MTE: u32 = 8;
    pub const PFR2_FPMR: u32 = 32;
    pub const MMFR0_FGT: u32 = 56;
    pub const MMFR1_HCX: u32 = 40;
    pub const MMFR3_D128: u32 = 32;
    pub const MMFR3_AIE: u32 = 24;
    pub const MMFR3_S2POE: u32 = 20;
    pub const MMFR3_S1POE: u32 = 16;
    pub const MMFR3_S1PIE: u32 = 8;
    pub const MMFR3_SCTLRX: u32 = 4;
    pub const MMFR3_TCRX: u32 = 0;
    pub const DFR0_BRBE: u32 = 52;
    pub const DFR0_TRACEBUFFER: u32 = 44;
    pub const DFR0_PMSVER: u32 = 32;
    pub const DFR0_PMUVER: u32 = 8;
    pub const DFR0_DEBUGVER: u32 = 0;
    pub const ISAR1_LS64: u32 = 60;
    pub const ISAR2_MOPS: u32 = 16;
}

/// `HCR_EL2` bits.
pub mod hcr {
    /// `VM`: stage-2 translation for EL1&0.
    pub const VM: u64 = 1 << 0;
    /// `SWIO`: set/way invalidation override (data cache invalidate by set/way becomes clean+invalidate).
    pub const SWIO: u64 = 1 << 1;
    /// `TSC`: trap EL1 SMC to EL2.
    pub const TSC: u64 = 1 << 19;
    /// `RW`: EL1 is AArch64.
    pub const RW: u64 = 1 << 31;
    /// `APK`: do not trap pointer-authentication key registers.
    pub const APK: u64 = 1 << 40;
    /// `API`: do not trap pointer-authentication instructions.
    pub const API: u64 = 1 << 41;
    /// `TIDCP`: trap EL1 accesses to the implementation-defined system-register space (`op0` 3, `CRn` 11 or 15).
    pub const TIDCP: u64 = 1 << 20;
    /// `EnSCXT`: do not trap `SCXTNUM_EL0`/`SCXTNUM_EL1` (FEAT_CSV2_2).
    pub const ENSCXT: u64 = 1 << 53;
    /// `ATA`: allow EL1 allocation-tag access (only with MTE2).
    pub const ATA: u64 = 1 << 56;
}

/// `HCRX_EL2` enable bits (each 0 = the EL1 feature disabled or trapped).
pub mod hcrx {
    /// `EnAS0`: ST64BV0 at EL1/EL0 (FEAT_LS64_ACCDATA).
    pub const EN_AS0: u64 = 1 << 0;
    /// `EnALS`: LD64B/ST64B (FEAT_LS64).
    pub const EN_ALS: u64 = 1 << 1;
    /// `EnASR`: ST64BV (FEAT_LS64_V).
    pub const EN_ASR: u64 = 1 << 2;
    /// `MSCEn`: memory copy and set instructions (FEAT_MOPS).
    pub const MSCEN: u64 = 1 << 11;
    /// `TCR2En`: `TCR2_EL1` (FEAT_TCR2).
    pub const TCR2EN: u64 = 1 << 14;
    /// `SCTLR2En`: `SCTLR2_EL1` (FEAT_SCTLR2).
    pub const SCTLR2EN: u64 = 1 << 15;
    /// `D128En`: 128-bit page-table descriptors and `SYSP`/`MRRS`/`MSRR` (FEAT_D128).
    pub const D128EN: u64 = 1 << 17;
    /// `GCSEn`: guarded control stacks (FEAT_GCS).
    pub const GCSEN: u64 = 1 << 22;
    /// `EnFPM`: `FPMR` (FEAT_FPMR).
    pub const ENFPM: u64 = 1 << 23;
}

/// Fine-grained trap "n" bits of `HFGRTR_EL2`/`HFGWTR_EL2` (set = not trapped).
pub mod hfgxtr {
    /// `nAMAIR2_EL1` (FEAT_AIE).
    pub const N_AMAIR2_EL1: u64 = 1 << 63;
    /// `nMAIR2_EL1` (FEAT_AIE).
    pub const N_MAIR2_EL1: u64 = 1 << 62;
    /// `nS2POR_EL1` (FEAT_S2POE).
    pub const N_S2POR_EL1: u64 = 1 << 61;
    /// `nPOR_EL1` (FEAT_S1POE).
    pub const N_POR_EL1: u64 = 1 << 60;
    /// `nPOR_EL0` (FEAT_S1POE).
    pub const N_POR_EL0: u64 = 1 << 59;
    /// `nPIR_EL1` (FEAT_S1PIE).
    pub const N_PIR_EL1: u64 = 1 << 58;
    /// `nPIRE0_EL1` (FEAT_S1PIE).
    pub const N_PIRE0_EL1: u64 = 1 << 57;
    /// `nRCWMASK_EL1` (FEAT_THE).
    pub const N_RCWMASK_EL1: u64 = 1 << 56;
    /// `nTPIDR2_EL0` (FEAT_SME).
    pub const N_TPIDR2_EL0: u64 = 1 << 55;
    /// `nSMPRI_EL1` (FEAT_SME).
    pub const N_SMPRI_EL1: u64 = 1 << 54;
    /// `nGCS_EL1` (FEAT_GCS).
    pub const N_GCS_EL1: u64 = 1 << 53;
    /// `nGCS_EL0` (FEAT_GCS).
    pub const N_GCS_EL0: u64 = 1 << 52;
    /// `nACCDATA_EL1` (FEAT_LS64_ACCDATA).
    pub const N_ACCDATA_EL1: u64 = 1 << 50;
}

/// Fine-grained trap "n" bits of `HFGITR_EL2`.
pub mod hfgitr {
    /// `nGCSEPP` (FEAT_GCS).
    pub const N_GCSEPP: u64 = 1 << 59;
    /// `nGCSSTR_EL1` (FEAT_GCS).
    pub const N_GCSSTR_EL1: u64 = 1 << 58;
    /// `nGCSPUSHM_EL1` (FEAT_GCS).
    pub const N_GCSPUSHM_EL1: u64 = 1 << 57;
    /// `nBRBIALL` (FEAT_BRBE).
    pub const N_BRBIALL: u64 = 1 << 56;
    /// `nBRBINJ` (FEAT_BRBE).
    pub const N_BRBINJ: u64 = 1 << 55;
}

/// Fine-grained trap "n" bits of `HDFGRTR_EL2`/`HDFGWTR_EL2`.
pub mod hdfgxtr {
    /// `nPMSNEVFR_EL1` (FEAT_SPEv1p2).
    pub const N_PMSNEVFR_EL1: u64 = 1 << 62;
    /// `nBRBDATA` (FEAT_BRBE).
    pub const N_BRBDATA: u64 = 1 << 61;
    /// `nBRBCTL` (FEAT_BRBE).
    pub const N_BRBCTL: u64 = 1 << 60;
    /// `nBRBIDR` (FEAT_BRBE; read only, `HDFGRTR_EL2` alone).
    pub const N_BRBIDR: u64 = 1 << 59;
}

/// Fine-grained trap "n" bits of the `FEAT_FGT2` registers.
pub mod fgt2 {
    /// `HFGxTR2_EL2.nPFAR_EL1` (FEAT_PFAR).
    pub const N_PFAR_EL1: u64 = 1 << 0;
    /// `HFGRTR2_EL2.nERXGSR_EL1` (FEAT_RASv2).
    pub const N_ERXGSR_EL1: u64 = 1 << 1;
    /// `HFGxTR2_EL2.nRCWSMASK_EL1` (FEAT_THE).
    pub const N_RCWSMASK_EL1: u64 = 1 << 2;
    /// `HDFGxTR2_EL2.nPMICNTR_EL0` (FEAT_PMUv3p9).
    pub const N_PMICNTR_EL0: u64 = 1 << 2;
    /// `HDFGxTR2_EL2.nPMICFILTR_EL0` (FEAT_PMUv3p9).
    pub const N_PMICFILTR_EL0: u64 = 1 << 3;
    /// `HDFGxTR2_EL2.nPMUACR_EL1` (FEAT_PMUv3p9).
    pub const N_PMUACR_EL1: u64 = 1 << 4;
    /// `HDFGxTR2_EL2.nMDSELR_EL1` (FEAT_Debugv8p9).
    pub const N_MDSELR_EL1: u64 = 1 << 5;
    /// `HDFGWTR2_EL2.nPMZR_EL0` (FEAT_PMUv3p9).
    pub const N_PMZR_EL0: u64 = 1 << 21;
}

/// `MDCR_EL2` fields.
pub mod mdcr {
    /// `HPMN` mask: event counters EL1 may use.
    pub const HPMN_MASK: u64 = 0x1f;
    /// `E2PB` = 0b11: the statistical profiling buffer is EL1's, its registers untrapped (FEAT_SPE).
    pub const E2PB_EL1: u64 = 0b11 << 12;
    /// `E2TB` = 0b11: the trace buffer is EL1's, its registers untrapped (FEAT_TRBE).
    pub const E2TB_EL1: u64 = 0b11 << 24;
}

/// The fine-grained trap registers of `FEAT_FGT` (and `HAFGRTR_EL2` with the activity monitors).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct FineGrainedTraps {
    /// `HFGRTR_EL2`.
    pub hfgrtr: u64,
    /// `HFGWTR_EL2`.
    pub hfgwtr: u64,
    /// `HFGITR_EL2`.
    pub hfgitr: u64,
    /// `HDFGRTR_EL2`.
    pub hdfgrtr: u64,
    /// `HDFGWTR_EL2`.
    pub hdfgwtr: u64,
    /// `HAFGRTR_EL2`, which exists only with FEAT_AMUv1 (its reset value is UNKNOWN: it must be written).
    pub hafgrtr: Option<u64>,
}

/// The fine-grained trap registers of `FEAT_FGT2` (reset values UNKNOWN: all written when present).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct FineGrainedTraps2 {
    /// `HFGRTR2_EL2`.
    pub hfgrtr2: u64,
    /// `HFGWTR2_EL2`.
    pub hfgwtr2: u64,
    /// `HFGITR2_EL2`.
    pub hfgitr2: u64,
    /// `HDFGRTR2_EL2`.
    pub hdfgrtr2: u64,
    /// `HDFGWTR2_EL2`.
    pub hdfgwtr2: u64,
}

/// The host's trap configuration on one CPU.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct HostTraps {
    /// `HCR_EL2` once the host stage-2 is on.
    pub hcr: u64,
    /// `HCRX_EL2`, when the CPU has it (FEAT_HCX).
    pub hcrx: Option<u64>,
    /// `MDCR_EL2` without `HPMN` (the caller adds `PMCR_EL0.N`).
    pub mdcr: u64,
    /// The FEAT_FGT registers, when the CPU has them.
    pub fgt: Option<FineGrainedTraps>,
    /// The FEAT_FGT2 registers, when the CPU has them.
    pub fgt2: Option<FineGrainedTraps2>,
}

impl HostTraps {
    /// The configuration for a CPU with ID registers `ids`: AArch64 EL1 behind stage-2, SMC and the
    /// implementation-defined registers trapped, pointer authentication, MTE tags and every feature below
    /// untrapped. IRQ, FIQ and SError stay routed to EL1 (`IMO`/`FMO`/`AMO` clear): the host owns the GIC.
    pub fn for_cpu(ids: &CpuIds) -> Self {
        let has = |reg: u64, shift: u32| field(reg, shift) != 0;
        let sme = has(ids.pfr1, id::PFR1_SME);
        let gcs = has(ids.pfr1, id::PFR1_GCS);
        let the = has(ids.pfr1, id::PFR1_THE);
        let ls64 = field(ids.isar1, id::ISAR1_LS64);
        let brbe = has(ids.dfr0, id::DFR0_BRBE);

        let mut hcr = hcr::VM | hcr::SWIO | hcr::TSC | hcr::RW | hcr::APK | hcr::API | hcr::TIDCP;
        if field(ids.pfr1, id::PFR1_MTE) >= 2 {
            hcr |= hcr::ATA;
        }
        if field(ids.pfr0, id::PFR0_CSV2) >= 2 {
            hcr |= hcr::ENSCXT;
        }

        let hcrx = has(ids.mmfr1, id::MMFR1_HCX).then(|| {
            let features = [
                (ls64 >= 1, hcrx::EN_ALS),
                (ls64 >= 2, hcrx::EN_ASR),
                (ls64 >= 3, hcrx::EN_AS0),
                (has(ids.isar2, id::ISAR2_MOPS), hcrx::MSCEN),
                (has(ids.mmfr3, id::MMFR3_TCRX), hcrx::TCR2EN),
                (has(ids.mmfr3, id::MMFR3_SCTLRX), hcrx::SCTLR2EN),
                (has(ids.mmfr3, id::MMFR3_D128), hcrx::D128EN),
                (gcs, hcrx::GCSEN),
                (has(ids.pfr2, id::PFR2_FPMR), hcrx::ENFPM),
            ];
            bits(&features)
        });

        let mut mdcr = 0;
        if has(ids.dfr0, id::DFR0_PMSVER) {
            mdcr |= mdcr::E2PB_EL1;
        }
        if has(ids.dfr0, id::DFR0_TRACEBUFFER) {
            mdcr |= mdcr::E2TB_EL1;
        }

        let fgt_level = field(ids.mmfr0, id::MMFR0_FGT);
        let fgt = (fgt_level >= 1).then(|| {
            let hfgxtr = bits(&[
                (
                    has(ids.mmfr3, id::MMFR3_AIE),
                    hfgxtr::N_AMAIR2_EL1 | hfgxtr::N_MAIR2_EL1,
                ),
                (has(ids.mmfr3, id::MMFR3_S2POE), hfgxtr::N_S2POR_EL1),
                (
                    has(ids.mmfr3, id::MMFR3_S1POE),
                    hfgxtr::N_POR_EL1 | hfgxtr::N_POR_EL0,
                ),
                (
                    has(ids.mmfr3, id::MMFR3_S1PIE),
                    hfgxtr::N_PIR_EL1 | hfgxtr::N_PIRE0_EL1,
                ),
                (the, hfgxtr::N_RCWMASK_EL1),
                (sme, hfgxtr::N_TPIDR2_EL0 | hfgxtr::N_SMPRI_EL1),
                (gcs, hfgxtr::N_GCS_EL1 | hfgxtr::N_GCS_EL0),
                (ls64 >= 3, hfgxtr::N_ACCDATA_EL1),
            ]);
            let hfgitr = bits(&[
                (
                    gcs,
                    hfgitr::N_GCSEPP | hfgitr::N_GCSSTR_EL1 | hfgitr::N_GCSPUSHM_EL1,
                ),
                (brbe, hfgitr::N_BRBIALL | hfgitr::N_BRBINJ),
            ]);
            let spe_v1p2 = field(ids.dfr0, id::DFR0_PMSVER) >= 3;
            let hdfgwtr = bits(&[
                (spe_v1p2, hdfgxtr::N_PMSNEVFR_EL1),
                (brbe, hdfgxtr::N_BRBDATA | hdfgxtr::N_BRBCTL),
            ]);
            FineGrainedTraps {
                hfgrtr: hfgxtr,
                hfgwtr: hfgxtr,
                hfgitr,
                hdfgrtr: hdfgwtr | bits(&[(brbe, hdfgxtr::N_BRBIDR)]),
                hdfgwtr,
                hafgrtr: has(ids.pfr0, id::PFR0_AMU).then_some(0),
            }
        });

        let fgt2 = (fgt_level >= 2).then(|| {
            let hfgxtr2 = bits(&[
                (has(ids.pfr1, id::PFR1_PFAR), fgt2::N_PFAR_EL1),
                (the, fgt2::N_RCWSMASK_EL1),
            ]);
            let pmu_v3p9 = field(ids.dfr0, id::DFR0_PMUVER);
            let pmu_v3p9 = pmu_v3p9 >= 9 && pmu_v3p9 != 0xf;
            let hdfgrtr2 = bits(&[
                (
                    pmu_v3p9,
                    fgt2::N_PMICNTR_EL0 | fgt2::N_PMICFILTR_EL0 | fgt2::N_PMUACR_EL1,
                ),
                (
                    field(ids.dfr0, id::DFR0_DEBUGVER) >= 0xb,
                    fgt2::N_MDSELR_EL1,
                ),
            ]);
            FineGrainedTraps2 {
                hfgrtr2: hfgxtr2
                    | bits(&[(field(ids.pfr0, id::PFR0_RAS) >= 3, fgt2::N_ERXGSR_EL1)]),
                hfgwtr2: hfgxtr2,
                hfgitr2: 0,
                hdfgrtr2,
                hdfgwtr2: hdfgrtr2 | bits(&[(pmu_v3p9, fgt2::N_PMZR_EL0)]),
            }
        });

        Self {
            hcr,
            hcrx,
            mdcr,
            fgt,
            fgt2,
        }
    }
}

/// The union of the bits whose condition holds.
fn bits(features: &[(bool, u64)]) -> u64 {
    features
        .iter()
        .filter(|(on, _)| *on)
        .fold(0, |acc, (_, b)| acc | b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v8.0 CPU: no HCX, no FGT.
    #[test]
    fn old_cpu_has_no_extension_registers() {
        let t = HostTraps::for_cpu(&CpuIds::default());
        assert_eq!(t.hcrx, None);
        assert_eq!(t.fgt, None);
        assert_eq!(t.fgt2, None);
        assert_eq!(t.mdcr, 0);
        assert_eq!(
            t.hcr,
            hcr::VM | hcr::SWIO | hcr::TSC | hcr::RW | hcr::APK | hcr::API | hcr::TIDCP
        );
    }

    /// QEMU 10.0 `-cpu max` as Linux reports it: FGT, HCX, MOPS, SME (and SVE), MTE3, no PIE/POE/GCS/THE.
    #[test]
    fn qemu_max_like_cpu() {
        let ids = CpuIds {
            pfr1: (1 << id::PFR1_SME) | (3 << id::PFR1_MTE),
            mmfr0: 1 << id::MMFR0_FGT,
            mmfr1: 1 << id::MMFR1_HCX,
            isar2: 1 << id::ISAR2_MOPS,
            ..CpuIds::default()
        };
        let t = HostTraps::for_cpu(&ids);
        assert_eq!(t.hcrx, Some(hcrx::MSCEN));
        assert_ne!(t.hcr & hcr::ATA, 0);
        let fgt = t.fgt.unwrap();
        assert_eq!(fgt.hfgrtr, hfgxtr::N_TPIDR2_EL0 | hfgxtr::N_SMPRI_EL1);
        assert_eq!(fgt.hfgwtr, fgt.hfgrtr);
        assert_eq!((fgt.hfgitr, fgt.hdfgrtr, fgt.hdfgwtr), (0, 0, 0));
        assert_eq!(fgt.hafgrtr, None);
        assert_eq!(t.fgt2, None);
    }

    /// Every feature the table knows: every "n" bit it knows is set, so the host traps on none of them.
    #[test]
    fn every_known_feature_untrapped() {
        let all = 0x1111_1111_1111_1111;
        let ids = CpuIds {
            pfr0: all | (3 << id::PFR0_RAS) | (2 << id::PFR0_CSV2),
            pfr1: all | (2 << id::PFR1_MTE),
            pfr2: all,
            mmfr0: 2 << id::MMFR0_FGT,
            mmfr1: all,
            mmfr3: all,
            dfr0: (1 << id::DFR0_BRBE)
                | (1 << id::DFR0_TRACEBUFFER)
                | (3 << id::DFR0_PMSVER)
                | (9 << id::DFR0_PMUVER)
                | (0xb << id::DFR0_DEBUGVER),
            isar1: 3 << id::ISAR1_LS64,
            isar2: all,
        };
        let t = HostTraps::for_cpu(&ids);
        assert_eq!(
            t.hcr,
            hcr::VM
                | hcr::SWIO
                | hcr::TSC
                | hcr::RW
                | hcr::APK
                | hcr::API
                | hcr::TIDCP
                | hcr::ATA
                | hcr::ENSCXT
        );
        assert_eq!(
            t.hcrx,
            Some(
                hcrx::EN_AS0
                    | hcrx::EN_ALS
                    | hcrx::EN_ASR
                    | hcrx::MSCEN
                    | hcrx::TCR2EN
                    | hcrx::SCTLR2EN
                    | hcrx::D128EN
                    | hcrx::GCSEN
                    | hcrx::ENFPM
            )
        );
        assert_eq!(t.mdcr, mdcr::E2PB_EL1 | mdcr::E2TB_EL1);
        let fgt = t.fgt.unwrap();
        // Bits 63..52 and 50: every "n" bit of HFGRTR_EL2.
        let n_bits = (0xfff << 52) | (1 << 50);
        assert_eq!(fgt.hfgrtr, n_bits);
        assert_eq!(fgt.hfgwtr, n_bits);
        assert_eq!(fgt.hfgitr, 0b1_1111 << 55);
        assert_eq!(fgt.hdfgrtr, 0b1111 << 59);
        assert_eq!(fgt.hdfgwtr, 0b111 << 60);
        assert_eq!(fgt.hafgrtr, Some(0));
        let fgt2 = t.fgt2.unwrap();
        assert_eq!(fgt2.hfgrtr2, 0b111);
        assert_eq!(fgt2.hfgwtr2, 0b101);
        assert_eq!(fgt2.hfgitr2, 0);
        assert_eq!(fgt2.hdfgrtr2, 0b11_1100);
        assert_eq!(fgt2.hdfgwtr2, 0b11_1100 | (1 << 21));
    }

    /// POE alone (the register the issue names): POR_EL1 and POR_EL0 untrapped, nothing else.
    #[test]
    fn poe_alone() {
        let ids = CpuIds {
            mmfr0: 1 << id::MMFR0_FGT,
            mmfr3: 1 << id::MMFR3_S1POE,
            ..CpuIds::default()
        };
        let fgt = HostTraps::for_cpu(&ids).fgt.unwrap();
        assert_eq!(fgt.hfgrtr, hfgxtr::N_POR_EL1 | hfgxtr::N_POR_EL0);
        // PMUVer 0xf (IMPLEMENTATION DEFINED PMU) is not PMUv3p9.
        let imp_pmu = CpuIds {
            mmfr0: 2 << id::MMFR0_FGT,
            dfr0: 0xf << id::DFR0_PMUVER,
            ..CpuIds::default()
        };
        assert_eq!(HostTraps::for_cpu(&imp_pmu).fgt2.unwrap().hdfgrtr2, 0);
    }
}
