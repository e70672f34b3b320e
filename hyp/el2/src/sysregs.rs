//! EL2 system-register setup for running the host at EL1 (the state Linux's `el2_setup.h` leaves for an
//! EL1 kernel, in nVHE form), and the host stage-2 switch-on.
//!
//! Registers aarch64-cpu names are written through it; the few it lacks (`VPIDR_EL2`, `HSTR_EL2`,
//! `ZCR_EL2`, `SMCR_EL2`, `HCRX_EL2`, `ICH_HCR_EL2` is named) use their `S3_*` encodings in one-line asm.

use aarch64_cpu::registers::{
    CNTHCTL_EL2, CNTVOFF_EL2, CPTR_EL2, HCR_EL2, HDFGRTR_EL2, HDFGWTR_EL2, HFGITR_EL2, HFGRTR_EL2,
    HFGWTR_EL2, ICC_SRE_EL2, ICH_HCR_EL2, ID_AA64DFR0_EL1, ID_AA64MMFR0_EL1, ID_AA64MMFR1_EL1,
    ID_AA64PFR0_EL1, ID_AA64PFR1_EL1, MDCR_EL2, MIDR_EL1, MPIDR_EL1, Readable, SCTLR_EL1,
    VMPIDR_EL2, VTCR_EL2, Writeable,
};
use core::arch::asm;

/// `HCR_EL2.VM`: stage-2 translation for EL1&0.
pub const HCR_VM: u64 = 1 << 0;
/// `HCR_EL2.SWIO`: set/way invalidation override (data cache invalidate by set/way becomes clean+invalidate).
pub const HCR_SWIO: u64 = 1 << 1;
/// `HCR_EL2.TSC`: trap EL1 SMC to EL2.
pub const HCR_TSC: u64 = 1 << 19;
/// `HCR_EL2.RW`: EL1 is AArch64.
pub const HCR_RW: u64 = 1 << 31;
/// `HCR_EL2.APK`: do not trap pointer-authentication key registers.
pub const HCR_APK: u64 = 1 << 40;
/// `HCR_EL2.API`: do not trap pointer-authentication instructions.
pub const HCR_API: u64 = 1 << 41;
/// `HCR_EL2.ATA`: allow EL1 allocation-tag access (only with MTE2).
pub const HCR_ATA: u64 = 1 << 56;
/// The host's `HCR_EL2`: AArch64 EL1, stage-2 on, SMC trapped, pointer authentication untrapped. IRQ, FIQ
/// and SError stay routed to EL1 (`IMO`/`FMO`/`AMO` clear): the host owns the GIC.
pub const HCR_HOST: u64 = HCR_VM | HCR_SWIO | HCR_TSC | HCR_RW | HCR_APK | HCR_API;

/// `CNTHCTL_EL2` (E2H = 0): `EL1PCTEN` | `EL1PCEN`, EL1 uses the physical counter and timer.
const CNTHCTL_EL1_PHYS: u64 = 0b11;
/// `CPTR_EL2` (E2H = 0): RES1 bits 13, 12 (TSM cleared below), 9, 8 (TZ cleared below) and 7:0.
const CPTR_EL2_RES1: u64 = 0x33ff;
/// `CPTR_EL2.TZ`: trap SVE.
const CPTR_EL2_TZ: u64 = 1 << 8;
/// `CPTR_EL2.TSM`: trap SME.
const CPTR_EL2_TSM: u64 = 1 << 12;
/// `SCTLR_EL1` for the host's entry: its RES1 bits (29, 28, 23, 22, 20, 11), MMU and caches off, little-endian.
const SCTLR_EL1_MMU_OFF: u64 = 0x30d0_0800;
/// `ZCR_ELx.LEN`: the largest vector length.
const ZCR_LEN_MAX: u64 = 0xf;
/// `SMCR_ELx.LEN` largest | `EZT0` (bit 30, with SME2) | `FA64` (bit 31, with SME_FA64).
const SMCR_LEN_MAX: u64 = 0xf;
const SMCR_EZT0: u64 = 1 << 30;
const SMCR_FA64: u64 = 1 << 31;
/// `HCRX_EL2.MSCEn` | `TCR2En`, as Linux's nVHE host sets them; `GCSEn` (bit 22) added with GCS.
const HCRX_MSCEN: u64 = 1 << 11;
const HCRX_TCR2EN: u64 = 1 << 14;
const HCRX_GCSEN: u64 = 1 << 22;
/// `HFGRTR_EL2`/`HFGWTR_EL2` negative-polarity bits: set = do not trap. nPIRE0_EL1 (57), nPIR_EL1 (58),
/// nPOR_EL0 (59), nTPIDR2_EL0 (55), nSMPRI_EL1 (54), nGCS_EL0 (52), nGCS_EL1 (53).
const HFGXTR_NPIR: u64 = (1 << 57) | (1 << 58);
const HFGXTR_NPOR_EL0: u64 = 1 << 59;
const HFGXTR_NSME: u64 = (1 << 55) | (1 << 54);
const HFGXTR_NGCS: u64 = (1 << 52) | (1 << 53);

fn field(value: u64, shift: u32) -> u64 {
    (value >> shift) & 0xf
}

/// Reads `ID_AA64MMFR3_EL1` (not named by aarch64-cpu).
fn id_aa64mmfr3() -> u64 {
    let v: u64;
    // SAFETY: Reading an ID register has no side effect.
    unsafe { asm!("mrs {}, s3_0_c0_c7_3", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Reads `ID_AA64SMFR0_EL1` (not named by aarch64-cpu).
fn id_aa64smfr0() -> u64 {
    let v: u64;
    // SAFETY: Reading an ID register has no side effect.
    unsafe { asm!("mrs {}, s3_0_c0_c4_5", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Sets up this CPU's EL2 state for a host at EL1 (everything except `HCR_EL2` and the stage-2, see
/// [`enable_host_stage2`]).
pub fn init_el2_for_host() {
    let pfr0 = ID_AA64PFR0_EL1.get();
    let pfr1 = ID_AA64PFR1_EL1.get();
    let mmfr0 = ID_AA64MMFR0_EL1.get();
    let mmfr1 = ID_AA64MMFR1_EL1.get();
    let mmfr3 = id_aa64mmfr3();
    let dfr0 = ID_AA64DFR0_EL1.get();

    // Timers: EL1 owns the physical timer and counter; no virtual offset.
    CNTHCTL_EL2.set(CNTHCTL_EL1_PHYS);
    CNTVOFF_EL2.set(0);

    // Debug/PMU: no traps, every PMU counter visible to EL1 (HPMN = PMCR_EL0.N) if a PMU exists.
    let pmuver = field(dfr0, 8);
    let hpmn = if pmuver != 0 && pmuver != 0xf {
        let pmcr: u64;
        // SAFETY: Reading PMCR_EL0 at EL2 has no side effect.
        unsafe {
            asm!("mrs {}, pmcr_el0", out(reg) pmcr, options(nomem, nostack, preserves_flags))
        };
        (pmcr >> 11) & 0x1f
    } else {
        0
    };
    MDCR_EL2.set(hpmn);

    // GICv3 system registers for EL1; no virtual interrupts.
    if field(pfr0, 24) != 0 {
        ICC_SRE_EL2.set(ICC_SRE_EL2.get() | 0b1001); // SRE | Enable
        aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
        ICH_HCR_EL2.set(0);
    }

    // No CP15 traps; virtual IDs are the real ones.
    // SAFETY: HSTR_EL2 = 0 only stops trapping AArch32 CP15 accesses.
    unsafe {
        asm!(
            "msr hstr_el2, xzr",
            options(nomem, nostack, preserves_flags)
        )
    };
    // SAFETY: VPIDR_EL2 is what EL1 reads as MIDR_EL1: the real value.
    unsafe {
        asm!("msr vpidr_el2, {}", in(reg) MIDR_EL1.get(), options(nomem, nostack, preserves_flags))
    };
    VMPIDR_EL2.set(MPIDR_EL1.get());

    // No FP/SVE/SME traps; full vector lengths for EL1.
    let sve = field(pfr0, 32) != 0;
    let sme = field(pfr1, 24) != 0;
    let mut cptr = CPTR_EL2_RES1;
    if sve {
        cptr &= !CPTR_EL2_TZ;
    }
    if sme {
        cptr &= !CPTR_EL2_TSM;
    }
    CPTR_EL2.set(cptr);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
    if sve {
        // SAFETY: ZCR_EL2 (S3_4_C1_C2_0) exists with SVE; it only caps EL1's vector length.
        unsafe {
            asm!("msr s3_4_c1_c2_0, {}", in(reg) ZCR_LEN_MAX, options(nomem, nostack, preserves_flags))
        };
    }
    if sme {
        let smfr0 = id_aa64smfr0();
        let mut smcr = SMCR_LEN_MAX;
        if smfr0 >> 63 != 0 {
            smcr |= SMCR_FA64;
        }
        if field(pfr1, 24) >= 2 {
            smcr |= SMCR_EZT0;
        }
        // SAFETY: SMCR_EL2 (S3_4_C1_C2_6) exists with SME; it only caps what EL1 may enable.
        unsafe {
            asm!("msr s3_4_c1_c2_6, {}", in(reg) smcr, options(nomem, nostack, preserves_flags))
        };
    }

    // HCRX_EL2 as Linux's nVHE host expects it.
    if field(mmfr1, 40) != 0 {
        let mut hcrx = HCRX_MSCEN | HCRX_TCR2EN;
        if field(pfr1, 44) != 0 {
            hcrx |= HCRX_GCSEN;
        }
        // SAFETY: HCRX_EL2 (S3_4_C1_C2_2) exists with FEAT_HCX; these bits only enable EL1 features.
        unsafe {
            asm!("msr s3_4_c1_c2_2, {}", in(reg) hcrx, options(nomem, nostack, preserves_flags))
        };
    }

    // Fine-grained traps: none, the negative-polarity bits set for the features present.
    if field(mmfr0, 56) != 0 {
        let mut fgt = 0;
        if sme {
            fgt |= HFGXTR_NSME;
        }
        if field(mmfr3, 8) != 0 {
            fgt |= HFGXTR_NPIR;
        }
        if field(mmfr3, 16) != 0 {
            fgt |= HFGXTR_NPOR_EL0;
        }
        if field(pfr1, 44) != 0 {
            fgt |= HFGXTR_NGCS;
        }
        HFGRTR_EL2.set(fgt);
        HFGWTR_EL2.set(fgt);
        HFGITR_EL2.set(0);
        HDFGRTR_EL2.set(0);
        HDFGWTR_EL2.set(0);
    }

    // The host starts with its MMU and caches off.
    SCTLR_EL1.set(SCTLR_EL1_MMU_OFF);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// Programs `VTCR_EL2`, `VTTBR_EL2` (root `root_pa`, VMID 0) and `HCR_EL2` on this CPU, then invalidates
/// the EL1&0 TLBs.
pub fn enable_host_stage2(vtcr: u64, root_pa: u64) {
    VTCR_EL2.set(vtcr);
    aarch64_cpu::registers::VTTBR_EL2.set(root_pa);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
    let mut hcr = HCR_HOST;
    if field(ID_AA64PFR1_EL1.get(), 8) >= 2 {
        hcr |= HCR_ATA;
    }
    HCR_EL2.set(hcr);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
    // SAFETY: TLB maintenance for the EL1&0 regime has no effect on EL2's own translations.
    unsafe {
        asm!(
            "tlbi vmalls12e1",
            "tlbi alle1",
            "dsb nsh",
            "isb",
            options(nostack, preserves_flags)
        )
    };
}

/// `ID_AA64MMFR0_EL1.PARange`.
pub fn parange() -> u64 {
    ID_AA64MMFR0_EL1.get() & 0xf
}
