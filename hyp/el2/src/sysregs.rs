//! EL2 system-register setup for running the host at EL1 (the state Linux's `el2_setup.h` leaves for an
//! EL1 kernel, in nVHE form), and the host stage-2 switch-on. Which traps are set comes from
//! `warden_core::trap::config` (host-tested); this module reads the ID registers and writes the results.
//!
//! Registers aarch64-cpu names are written through it; the few it lacks (`VPIDR_EL2`, `HSTR_EL2`,
//! `ZCR_EL2`, `SMCR_EL2`, `HCRX_EL2`, the FEAT_FGT2 registers, a few ID registers) use their `S3_*`
//! encodings in one-line asm.

use aarch64_cpu::registers::{
    CNTHCTL_EL2, CNTVOFF_EL2, CPTR_EL2, HAFGRTR_EL2, HCR_EL2, HDFGRTR_EL2, HDFGWTR_EL2, HFGITR_EL2,
    HFGRTR_EL2, HFGWTR_EL2, ICC_SRE_EL2, ICH_HCR_EL2, ID_AA64DFR0_EL1, ID_AA64ISAR1_EL1,
    ID_AA64MMFR0_EL1, ID_AA64MMFR1_EL1, ID_AA64PFR0_EL1, ID_AA64PFR1_EL1, MDCR_EL2, MIDR_EL1,
    MPIDR_EL1, Readable, SCTLR_EL1, VMPIDR_EL2, VTCR_EL2, Writeable,
};
use core::arch::asm;
use warden_core::trap::config::{CpuIds, HostTraps, mdcr};

/// `CNTHCTL_EL2` (E2H = 0): `EL1PCTEN` | `EL1PCEN`, EL1 uses the physical counter and timer.
const CNTHCTL_EL1_PHYS: u64 = 0b11;
/// `CPTR_EL2` (E2H = 0): RES1 bits 13, 12 (TSM cleared below), 9, 8 (TZ cleared below) and 7:0; `TFP`,
/// `TTA`, `TAM` and `TCPAC` clear (FP/SIMD, trace, activity monitors and `CPACR_EL1` untrapped).
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

fn field(value: u64, shift: u32) -> u64 {
    (value >> shift) & 0xf
}

/// Reads an ID register aarch64-cpu does not name, by its `S3_0_C0_Cm_op2` encoding.
macro_rules! read_id {
    ($enc:literal) => {{
        let v: u64;
        // SAFETY: Reading an ID register has no side effect (and reads as zero where the CPU does not
        // implement it: the ID space is RAZ).
        unsafe { asm!(concat!("mrs {}, ", $enc), out(reg) v, options(nomem, nostack, preserves_flags)) };
        v
    }};
}

/// Writes an EL2 trap-control register aarch64-cpu does not name, by its `S3_4_*` encoding.
macro_rules! write_el2 {
    ($enc:literal, $value:expr) => {{
        let v: u64 = $value;
        // SAFETY: The caller checked the CPU has the register; it only controls which host accesses trap to
        // EL2 (or what EL1 may enable), never EL2's own state.
        unsafe { asm!(concat!("msr ", $enc, ", {}"), in(reg) v, options(nomem, nostack, preserves_flags)) };
    }};
}

/// The ID registers the trap configuration depends on.
fn cpu_ids() -> CpuIds {
    CpuIds {
        pfr0: ID_AA64PFR0_EL1.get(),
        pfr1: ID_AA64PFR1_EL1.get(),
        pfr2: read_id!("s3_0_c0_c4_2"),
        mmfr0: ID_AA64MMFR0_EL1.get(),
        mmfr1: ID_AA64MMFR1_EL1.get(),
        mmfr3: read_id!("s3_0_c0_c7_3"),
        dfr0: ID_AA64DFR0_EL1.get(),
        isar1: ID_AA64ISAR1_EL1.get(),
        isar2: read_id!("s3_0_c0_c6_2"),
    }
}

/// Sets up this CPU's EL2 state for a host at EL1 (everything except `HCR_EL2` and the stage-2, see
/// [`enable_host_stage2`]).
pub fn init_el2_for_host() {
    let ids = cpu_ids();
    let traps = HostTraps::for_cpu(&ids);
    let (pfr0, pfr1, dfr0) = (ids.pfr0, ids.pfr1, ids.dfr0);

    // Timers: EL1 owns the physical timer and counter; no virtual offset.
    CNTHCTL_EL2.set(CNTHCTL_EL1_PHYS);
    CNTVOFF_EL2.set(0);

    // Debug/PMU: no traps, every PMU counter visible to EL1 (HPMN = PMCR_EL0.N) if a PMU exists; the
    // profiling and trace buffers EL1's if present.
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
    MDCR_EL2.set(traps.mdcr | (hpmn & mdcr::HPMN_MASK));

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
        let smfr0 = read_id!("s3_0_c0_c4_5");
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

    // HCRX_EL2: every EL1 feature the CPU has enabled.
    if let Some(hcrx) = traps.hcrx {
        write_el2!("s3_4_c1_c2_2", hcrx);
    }

    // Fine-grained traps: none for the features the CPU has (the "n" bits set for them).
    if let Some(fgt) = traps.fgt {
        HFGRTR_EL2.set(fgt.hfgrtr);
        HFGWTR_EL2.set(fgt.hfgwtr);
        HFGITR_EL2.set(fgt.hfgitr);
        HDFGRTR_EL2.set(fgt.hdfgrtr);
        HDFGWTR_EL2.set(fgt.hdfgwtr);
        if let Some(hafgrtr) = fgt.hafgrtr {
            HAFGRTR_EL2.set(hafgrtr);
        }
    }
    if let Some(fgt2) = traps.fgt2 {
        write_el2!("s3_4_c3_c1_2", fgt2.hfgrtr2);
        write_el2!("s3_4_c3_c1_3", fgt2.hfgwtr2);
        write_el2!("s3_4_c3_c1_7", fgt2.hfgitr2);
        write_el2!("s3_4_c3_c1_0", fgt2.hdfgrtr2);
        write_el2!("s3_4_c3_c1_1", fgt2.hdfgwtr2);
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
    HCR_EL2.set(HostTraps::for_cpu(&cpu_ids()).hcr);
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
