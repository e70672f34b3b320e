//! Injection of synchronous exceptions into the host's EL1, as KVM's `inject_abt64` / `inject_undef64` do:
//! the EL1 syndrome, return address and saved PSTATE, and where and how the host resumes (its vector for the
//! interrupted mode, PSTATE as an exception entry to EL1h leaves it).

use super::esr::{
    EC_DABT_CUR, EC_DABT_LOW, EC_HVC32, EC_HVC64, EC_IABT_CUR, EC_IABT_LOW, EC_UNKNOWN,
    ESR_EC_SHIFT, ESR_IL, ESR_WNR, FSC_SEA, SCTLR_EL1_DSSBS, SCTLR_EL1_SPAN, SPSR_DAIF, SPSR_DIT,
    SPSR_MODE_AARCH32, SPSR_MODE_EL1H, SPSR_MODE_EL1T, SPSR_MODE_MASK, SPSR_NZCV, SPSR_PAN,
    SPSR_SSBS, VECTOR_CURRENT_SP0, VECTOR_CURRENT_SPX, VECTOR_LOWER_A32, VECTOR_LOWER_A64,
    exception_class,
};

/// The EL1 state that injects a synchronous exception into the host.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Injection {
    /// New `ESR_EL1`.
    pub esr_el1: u64,
    /// New `FAR_EL1` (the faulting virtual address of an abort); `None`: left as it is (its value is
    /// UNKNOWN for an undefined-instruction exception).
    pub far_el1: Option<u64>,
    /// New `ELR_EL1`: the instruction that took the exception.
    pub elr_el1: u64,
    /// New `SPSR_EL1`: the interrupted PSTATE.
    pub spsr_el1: u64,
    /// Where the host resumes: its EL1 vector for the source mode, synchronous entry.
    pub elr_el2: u64,
    /// The PSTATE it resumes with: EL1h, DAIF masked, NZCV/DIT kept, PAN and SSBS per `SCTLR_EL1`.
    pub spsr_el2: u64,
}

/// Where a synchronous exception to EL1 from PSTATE `spsr_el2` enters the host (`VBAR_EL1` + offset for the
/// mode), the PSTATE it enters with, and whether it came from EL1.
fn sync_entry(spsr_el2: u64, vbar_el1: u64, sctlr_el1: u64) -> (u64, u64, bool) {
    let mode = spsr_el2 & SPSR_MODE_MASK;
    let (vector, from_el1) = if mode & SPSR_MODE_AARCH32 != 0 {
        (VECTOR_LOWER_A32, false)
    } else {
        match mode {
            SPSR_MODE_EL1T => (VECTOR_CURRENT_SP0, true),
            SPSR_MODE_EL1H => (VECTOR_CURRENT_SPX, true),
            _ => (VECTOR_LOWER_A64, false),
        }
    };
    let mut spsr = (spsr_el2 & (SPSR_NZCV | SPSR_DIT | SPSR_PAN)) | SPSR_DAIF | SPSR_MODE_EL1H;
    if sctlr_el1 & SCTLR_EL1_SPAN == 0 {
        spsr |= SPSR_PAN;
    }
    if sctlr_el1 & SCTLR_EL1_DSSBS != 0 {
        spsr |= SPSR_SSBS;
    }
    (vbar_el1.wrapping_add(vector), spsr, from_el1)
}

/// Computes the injection of a synchronous external abort for a host abort taken to EL2 with syndrome
/// `esr_el2`, virtual address `far_el2`, at `elr_el2` with PSTATE `spsr_el2`, given the host's `VBAR_EL1`
/// and `SCTLR_EL1` (KVM's `inject_abt64`): an instruction or data abort (current or lower EL per the
/// source), `IL` copied, FSC = SEA, `WnR` copied for data aborts.
pub fn inject_external_abort(
    esr_el2: u64,
    far_el2: u64,
    elr_el2: u64,
    spsr_el2: u64,
    vbar_el1: u64,
    sctlr_el1: u64,
) -> Injection {
    let (vector, spsr, from_el1) = sync_entry(spsr_el2, vbar_el1, sctlr_el1);
    let ec = exception_class(esr_el2);
    let instruction = ec == EC_IABT_LOW || ec == EC_IABT_CUR;
    let new_ec = match (instruction, from_el1) {
        (true, true) => EC_IABT_CUR,
        (true, false) => EC_IABT_LOW,
        (false, true) => EC_DABT_CUR,
        (false, false) => EC_DABT_LOW,
    };
    let mut esr_el1 = (new_ec << ESR_EC_SHIFT) | (esr_el2 & ESR_IL) | FSC_SEA;
    if !instruction {
        esr_el1 |= esr_el2 & ESR_WNR;
    }
    Injection {
        esr_el1,
        far_el1: Some(far_el2),
        elr_el1: elr_el2,
        spsr_el1: spsr_el2,
        elr_el2: vector,
        spsr_el2: spsr,
    }
}

/// Computes the injection of an undefined-instruction exception (KVM's `inject_undef64`: `ESR_EL1.EC` = 0,
/// "unknown reason", `IL` as the trapped instruction's) for a host exception taken to EL2 with syndrome
/// `esr_el2` at `elr_el2` with PSTATE `spsr_el2`, given the host's `VBAR_EL1` and `SCTLR_EL1`.
///
/// `ELR_EL1` is the instruction itself: `elr_el2` for every trap, except an HVC, whose `ELR_EL2` is the
/// next instruction (4 bytes on, or 2 for a 16-bit T32 HVC: `IL` clear).
pub fn inject_undef(
    esr_el2: u64,
    elr_el2: u64,
    spsr_el2: u64,
    vbar_el1: u64,
    sctlr_el1: u64,
) -> Injection {
    let (vector, spsr, _) = sync_entry(spsr_el2, vbar_el1, sctlr_el1);
    let il = esr_el2 & ESR_IL;
    let elr_el1 = match exception_class(esr_el2) {
        EC_HVC64 | EC_HVC32 => elr_el2.wrapping_sub(if il != 0 { 4 } else { 2 }),
        _ => elr_el2,
    };
    Injection {
        esr_el1: (EC_UNKNOWN << ESR_EC_SHIFT) | il,
        far_el1: None,
        elr_el1,
        spsr_el1: spsr_el2,
        elr_el2: vector,
        spsr_el2: spsr,
    }
}

#[cfg(test)]
mod tests {
    use super::super::esr::{EC_SMC64, EC_SYS64, ESR_EC_MASK, FSC_MASK, SPSR_MODE_EL0T};
    use super::*;

    #[test]
    fn inject_from_el1h_data_write() {
        let esr = (EC_DABT_LOW << ESR_EC_SHIFT) | ESR_IL | ESR_WNR | 0x07;
        // EL1h, IRQs unmasked, Z flag set, SPAN set (PAN untouched), DSSBS set.
        let spsr = SPSR_MODE_EL1H | (1 << 30);
        let sctlr = SCTLR_EL1_SPAN | SCTLR_EL1_DSSBS;
        let inj = inject_external_abort(
            esr,
            0xffff_0000_dead_b000,
            0xffff_8000_0001_0000,
            spsr,
            0xffff_8000_0800_0000,
            sctlr,
        );
        assert_eq!(
            inj.esr_el1,
            (EC_DABT_CUR << ESR_EC_SHIFT) | ESR_IL | ESR_WNR | FSC_SEA
        );
        assert_eq!(inj.far_el1, Some(0xffff_0000_dead_b000));
        assert_eq!(inj.elr_el1, 0xffff_8000_0001_0000);
        assert_eq!(inj.spsr_el1, spsr);
        assert_eq!(inj.elr_el2, 0xffff_8000_0800_0200);
        assert_eq!(
            inj.spsr_el2,
            (1 << 30) | SPSR_DAIF | SPSR_MODE_EL1H | SPSR_SSBS
        );
    }

    #[test]
    fn inject_vector_offsets_and_classes() {
        let dabt = (EC_DABT_LOW << ESR_EC_SHIFT) | ESR_IL;
        let iabt = (EC_IABT_LOW << ESR_EC_SHIFT) | ESR_IL;
        let vbar = 0x1000_0000;
        let el0 = inject_external_abort(dabt, 0, 0, SPSR_MODE_EL0T, vbar, 0);
        assert_eq!(el0.elr_el2, vbar + VECTOR_LOWER_A64);
        assert_eq!(el0.esr_el1 >> ESR_EC_SHIFT, EC_DABT_LOW);
        // SPAN clear: PAN set on entry.
        assert_ne!(el0.spsr_el2 & SPSR_PAN, 0);
        let el1t = inject_external_abort(iabt, 0, 0, SPSR_MODE_EL1T, vbar, SCTLR_EL1_SPAN);
        assert_eq!(el1t.elr_el2, vbar + VECTOR_CURRENT_SP0);
        assert_eq!(el1t.esr_el1 >> ESR_EC_SHIFT, EC_IABT_CUR);
        assert_eq!(el1t.spsr_el2 & SPSR_PAN, 0);
        let a32 = inject_external_abort(iabt, 0, 0, SPSR_MODE_AARCH32, vbar, SCTLR_EL1_SPAN);
        assert_eq!(a32.elr_el2, vbar + VECTOR_LOWER_A32);
        assert_eq!(a32.esr_el1 >> ESR_EC_SHIFT, EC_IABT_LOW);
        // Instruction aborts never carry WnR.
        let i = inject_external_abort(iabt | ESR_WNR, 0, 0, SPSR_MODE_EL1H, vbar, 0);
        assert_eq!(i.esr_el1 & ESR_WNR, 0);
        assert_eq!(i.esr_el1 & FSC_MASK, FSC_SEA);
    }

    #[test]
    fn undef_from_el1h_sysreg_trap() {
        // msr S3_0_C15_C0_0, x1 from EL1h: Z flag set, IRQs unmasked, PAN set, DIT set.
        let esr = (EC_SYS64 << ESR_EC_SHIFT) | ESR_IL | (3 << 20) | (15 << 10) | (1 << 5);
        let spsr = SPSR_MODE_EL1H | (1 << 30) | SPSR_PAN | SPSR_DIT;
        let vbar = 0xffff_8000_0801_0000;
        let inj = inject_undef(esr, 0xffff_8000_0010_0404, spsr, vbar, SCTLR_EL1_SPAN);
        assert_eq!(inj.esr_el1, ESR_IL, "EC 0 (unknown reason), IL set, ISS 0");
        assert_eq!(inj.far_el1, None);
        assert_eq!(
            inj.elr_el1, 0xffff_8000_0010_0404,
            "the trapped instruction"
        );
        assert_eq!(inj.spsr_el1, spsr);
        assert_eq!(inj.elr_el2, vbar + VECTOR_CURRENT_SPX);
        assert_eq!(
            inj.spsr_el2,
            (1 << 30) | SPSR_PAN | SPSR_DIT | SPSR_DAIF | SPSR_MODE_EL1H
        );
    }

    #[test]
    fn undef_vector_per_mode_and_return_address_per_class() {
        let vbar = 0x1000_0000;
        let sys = (EC_SYS64 << ESR_EC_SHIFT) | ESR_IL;
        for (mode, vector) in [
            (SPSR_MODE_EL0T, VECTOR_LOWER_A64),
            (SPSR_MODE_EL1T, VECTOR_CURRENT_SP0),
            (SPSR_MODE_EL1H, VECTOR_CURRENT_SPX),
            (SPSR_MODE_AARCH32, VECTOR_LOWER_A32),
        ] {
            let inj = inject_undef(sys, 0x8000, mode, vbar, 0);
            assert_eq!(inj.elr_el2, vbar + vector, "mode {mode:#x}");
            assert_eq!(inj.spsr_el2 & SPSR_MODE_MASK, SPSR_MODE_EL1H);
            assert_ne!(inj.spsr_el2 & SPSR_PAN, 0, "SPAN clear: PAN set on entry");
            assert_eq!((inj.esr_el1 >> ESR_EC_SHIFT) & ESR_EC_MASK, EC_UNKNOWN);
        }
        // A trapped SMC's ELR_EL2 is the SMC; an HVC's is the next instruction: ELR_EL1 is the HVC either way.
        let smc = (EC_SMC64 << ESR_EC_SHIFT) | ESR_IL | 5;
        assert_eq!(
            inject_undef(smc, 0x8000, SPSR_MODE_EL1H, vbar, 0).elr_el1,
            0x8000
        );
        let hvc = (EC_HVC64 << ESR_EC_SHIFT) | ESR_IL | 5;
        assert_eq!(
            inject_undef(hvc, 0x8004, SPSR_MODE_EL1H, vbar, 0).elr_el1,
            0x8000
        );
        let t16_hvc = EC_HVC32 << ESR_EC_SHIFT;
        let inj = inject_undef(t16_hvc, 0x8002, SPSR_MODE_AARCH32, vbar, 0);
        assert_eq!(inj.elr_el1, 0x8000);
        assert_eq!(inj.esr_el1, 0, "16-bit instruction: IL clear");
        // DSSBS set: SSBS set on entry.
        let inj = inject_undef(sys, 0x8000, SPSR_MODE_EL1H, vbar, SCTLR_EL1_DSSBS);
        assert_ne!(inj.spsr_el2 & SPSR_SSBS, 0);
    }
}
