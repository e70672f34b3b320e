//! Syndrome (`ESR_ELx`) and saved-PSTATE (`SPSR_ELx`) encodings, and the decode of a host trap into the kind
//! the hypervisor logs and counts ([`TrapKind`]).

/// `ESR_ELx.EC` shift (bits 31:26).
pub const ESR_EC_SHIFT: u64 = 26;
/// `ESR_ELx.EC` mask once shifted down.
pub const ESR_EC_MASK: u64 = 0x3f;
/// `ESR_ELx.IL`: the trapped instruction was 32 bits wide.
pub const ESR_IL: u64 = 1 << 25;
/// `ESR_ELx.ISS.WnR` of a data abort: the access was a write.
pub const ESR_WNR: u64 = 1 << 6;
/// `ESR_ELx.ISS.S1PTW` of an abort: the fault happened on a stage-1 table walk.
pub const ESR_S1PTW: u64 = 1 << 7;

/// `ESR_ELx.ISS.ISV`: the syndrome describes the access.
pub const ESR_ISV: u64 = 1 << 24;
/// `ESR_ELx.ISS.SAS` shift (access size: 0 byte, 1 halfword, 2 word, 3 doubleword).
pub const ESR_SAS_SHIFT: u64 = 22;
/// `ESR_ELx.ISS.SSE`: a load sign-extends.
pub const ESR_SSE: u64 = 1 << 21;
/// `ESR_ELx.ISS.SRT` shift (the transfer register, 31 = xzr).
pub const ESR_SRT_SHIFT: u64 = 16;
/// `ESR_ELx.ISS.SF`: the transfer register is 64 bits wide.
pub const ESR_SF: u64 = 1 << 15;
/// `ESR_ELx.ISS.imm16` of an HVC or SMC: the instruction's immediate.
pub const ESR_ISS_IMM16: u64 = 0xffff;
/// Exception class: unknown reason (what an undefined instruction reports).
pub const EC_UNKNOWN: u64 = 0x00;
/// Exception class: HVC from AArch32.
pub const EC_HVC32: u64 = 0x12;
/// Exception class: HVC from AArch64.
pub const EC_HVC64: u64 = 0x16;
/// Exception class: trapped SMC from AArch64.
pub const EC_SMC64: u64 = 0x17;
/// Exception class: trapped MSR, MRS or System instruction from AArch64.
pub const EC_SYS64: u64 = 0x18;
/// Exception class: instruction abort from a lower EL.
pub const EC_IABT_LOW: u64 = 0x20;
/// Exception class: instruction abort from the same EL.
pub const EC_IABT_CUR: u64 = 0x21;
/// Exception class: data abort from a lower EL.
pub const EC_DABT_LOW: u64 = 0x24;
/// Exception class: data abort from the same EL.
pub const EC_DABT_CUR: u64 = 0x25;
/// `ESR_ELx.ISS.DFSC`/`IFSC` mask: an abort's fault status code.
pub const FSC_MASK: u64 = 0x3f;
/// Fault status code of a synchronous external abort (not on a table walk).
pub const FSC_SEA: u64 = 0x10;
/// Fault status code of a translation fault at level 0 (levels 0..3 are `0b0001xx`, the level in
/// [`FSC_LEVEL_MASK`]).
pub const FSC_TRANSLATION: u64 = 0b00_0100;
/// The level bits of a translation, access-flag or permission fault status code.
pub const FSC_LEVEL_MASK: u64 = 0b11;
/// `SPSR_ELx.M[4:0]` mask.
pub const SPSR_MODE_MASK: u64 = 0x1f;
/// `SPSR_ELx.M` of EL0t.
pub const SPSR_MODE_EL0T: u64 = 0b00000;
/// `SPSR_ELx.M` of EL1t.
pub const SPSR_MODE_EL1T: u64 = 0b00100;
/// `SPSR_ELx.M` of EL1h.
pub const SPSR_MODE_EL1H: u64 = 0b00101;
/// `SPSR_ELx.M[4]`: the interrupted context was AArch32.
pub const SPSR_MODE_AARCH32: u64 = 0b10000;
/// `SPSR_ELx` N, Z, C, V flags.
pub const SPSR_NZCV: u64 = 0xf << 28;
/// `SPSR_ELx.DIT`.
pub const SPSR_DIT: u64 = 1 << 24;
/// `SPSR_ELx.PAN`.
pub const SPSR_PAN: u64 = 1 << 22;
/// `SPSR_ELx.SSBS`.
pub const SPSR_SSBS: u64 = 1 << 12;
/// `SPSR_ELx` D, A, I, F masks.
pub const SPSR_DAIF: u64 = 0xf << 6;
/// `SCTLR_EL1.SPAN`: clear means PAN is set on exception entry to EL1.
pub const SCTLR_EL1_SPAN: u64 = 1 << 23;
/// `SCTLR_EL1.DSSBS`: the SSBS value on exception entry to EL1.
pub const SCTLR_EL1_DSSBS: u64 = 1 << 44;
/// Offset in the EL1 vector table of synchronous exceptions from EL1 with `SP_EL0`.
pub const VECTOR_CURRENT_SP0: u64 = 0x000;
/// Offset of synchronous exceptions from EL1 with `SP_EL1`.
pub const VECTOR_CURRENT_SPX: u64 = 0x200;
/// Offset of synchronous exceptions from AArch64 EL0.
pub const VECTOR_LOWER_A64: u64 = 0x400;
/// Offset of synchronous exceptions from AArch32 EL0.
pub const VECTOR_LOWER_A32: u64 = 0x600;

/// The exception class of syndrome `esr`.
pub const fn exception_class(esr: u64) -> u64 {
    (esr >> ESR_EC_SHIFT) & ESR_EC_MASK
}

/// Whether abort syndrome `esr` reports a translation fault (at any level).
pub const fn is_translation_fault(esr: u64) -> bool {
    esr & FSC_MASK & !FSC_LEVEL_MASK == FSC_TRANSLATION
}

/// A short name for exception class `ec`, for log lines.
pub fn class_name(ec: u64) -> &'static str {
    match ec {
        0x00 => "unknown reason",
        0x01 => "WFI/WFE",
        0x03 | 0x04 | 0x05 | 0x06 | 0x0c => "AArch32 coprocessor access",
        0x07 => "SVE/SIMD/FP access",
        0x0a => "LD64B/ST64B",
        0x0e => "illegal execution state",
        0x11 | 0x15 => "SVC",
        EC_HVC32 | EC_HVC64 => "HVC",
        0x13 | EC_SMC64 => "SMC",
        EC_SYS64 => "MSR/MRS/system instruction",
        0x19 => "SVE access",
        0x1a => "ERET",
        0x1c => "pointer authentication failure",
        0x1d => "SME access",
        EC_IABT_LOW | EC_IABT_CUR => "instruction abort",
        0x22 => "PC alignment",
        EC_DABT_LOW | EC_DABT_CUR => "data abort",
        0x26 => "SP alignment",
        0x28 | 0x2c => "floating-point exception",
        0x2d => "GCS",
        0x2f => "SError",
        0x30..=0x35 => "debug (breakpoint/step/watchpoint)",
        0x38 | 0x3c => "BKPT/BRK",
        _ => "reserved class",
    }
}

/// The encoding of a system register or system instruction (`op0`, `op1`, `CRn`, `CRm`, `op2`) as one 16-bit
/// value, `op0:op1:CRn:CRm:op2` from bit 15 down, as `ESR_ELx.ISS` of [`EC_SYS64`] names it.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Hash)]
pub struct SysRegEncoding(pub u16);

impl SysRegEncoding {
    /// Builds the encoding from its five fields (each masked to its width).
    pub const fn new(op0: u16, op1: u16, crn: u16, crm: u16, op2: u16) -> Self {
        Self(
            ((op0 & 3) << 14)
                | ((op1 & 7) << 11)
                | ((crn & 0xf) << 7)
                | ((crm & 0xf) << 3)
                | (op2 & 7),
        )
    }

    /// The encoding an [`EC_SYS64`] syndrome names: ISS `Op0` (21:20), `Op2` (19:17), `Op1` (16:14),
    /// `CRn` (13:10), `CRm` (4:1).
    pub const fn from_iss(iss: u64) -> Self {
        Self::new(
            ((iss >> 20) & 3) as u16,
            ((iss >> 14) & 7) as u16,
            ((iss >> 10) & 0xf) as u16,
            ((iss >> 1) & 0xf) as u16,
            ((iss >> 17) & 7) as u16,
        )
    }

    /// `(op0, op1, CRn, CRm, op2)`.
    pub const fn fields(self) -> (u16, u16, u16, u16, u16) {
        let e = self.0;
        (
            e >> 14,
            (e >> 11) & 7,
            (e >> 7) & 0xf,
            (e >> 3) & 0xf,
            e & 7,
        )
    }
}

impl core::fmt::Display for SysRegEncoding {
    /// The assembler's generic name, `S<op0>_<op1>_C<n>_C<m>_<op2>`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let (op0, op1, crn, crm, op2) = self.fields();
        write!(f, "S{op0}_{op1}_C{crn}_C{crm}_{op2}")
    }
}

/// `ESR_ELx.ISS.Direction` of [`EC_SYS64`]: set for a read (MRS, SYSL).
const ISS_SYS64_READ: u64 = 1;

/// What kind of host exception the hypervisor did not handle: the unit it logs once and counts.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Hash)]
pub enum TrapKind {
    /// A synchronous exception of a class the hypervisor does not handle (any class but
    /// [`EC_SYS64`]).
    Class(u8),
    /// A trapped system-register access or system instruction ([`EC_SYS64`]), keyed by its encoding.
    SysReg {
        /// The register or instruction.
        encoding: SysRegEncoding,
        /// MRS/SYSL (a read) rather than MSR/SYS; not part of the kind (one log line per register).
        read: bool,
    },
    /// An asynchronous exception (IRQ, FIQ, SError) from the host that reached EL2; `vector` is the index of
    /// the EL2 vector that took it (9–11 from AArch64, 13–15 from AArch32).
    Asynchronous {
        /// EL2 vector index (0–15).
        vector: u8,
    },
}

impl TrapKind {
    /// The kind of a synchronous exception with syndrome `esr`.
    pub const fn of_sync(esr: u64) -> Self {
        let ec = exception_class(esr);
        if ec == EC_SYS64 {
            TrapKind::SysReg {
                encoding: SysRegEncoding::from_iss(esr),
                read: esr & ISS_SYS64_READ != 0,
            }
        } else {
            TrapKind::Class(ec as u8)
        }
    }

    /// A dense index, distinct per kind ([`TrapKind::SysReg`]'s `read` excluded), below [`TrapKind::COUNT`].
    pub const fn index(self) -> usize {
        match self {
            TrapKind::Class(ec) => (ec & ESR_EC_MASK as u8) as usize,
            TrapKind::SysReg { encoding, .. } => 64 + encoding.0 as usize,
            TrapKind::Asynchronous { vector } => 64 + (1 << 16) + (vector & 0xf) as usize,
        }
    }

    /// Number of distinct [`TrapKind::index`] values: 64 classes, 2^16 encodings, 16 vectors.
    pub const COUNT: usize = 64 + (1 << 16) + 16;
}

impl core::fmt::Display for TrapKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            TrapKind::Class(ec) => write!(f, "EC {ec:#04x} ({})", class_name(u64::from(ec))),
            TrapKind::SysReg { encoding, read } => write!(
                f,
                "EC {EC_SYS64:#04x} ({} {encoding})",
                if read { "read of" } else { "write of" }
            ),
            TrapKind::Asynchronous { vector } => {
                write!(f, "asynchronous exception (EL2 vector {vector})")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    /// `mrs x3, S3_0_C15_C2_1`: ISS with Op0 3, Op2 1, Op1 0, CRn 15, Rt 3, CRm 2, read.
    const IMPDEF_READ: u64 = (EC_SYS64 << ESR_EC_SHIFT)
        | ESR_IL
        | (3 << 20)
        | (1 << 17)
        | (15 << 10)
        | (3 << 5)
        | (2 << 1)
        | 1;

    #[test]
    fn translation_faults_are_told_apart_at_every_level() {
        let abort = (EC_DABT_LOW << ESR_EC_SHIFT) | ESR_IL;
        for level in 0..4 {
            assert!(is_translation_fault(abort | FSC_TRANSLATION | level));
        }
        // Access flag (0b0010xx), permission (0b0011xx) and external aborts are not.
        assert!(!is_translation_fault(abort | 0b00_1001));
        assert!(!is_translation_fault(abort | 0b00_1111));
        assert!(!is_translation_fault(abort | FSC_SEA));
    }

    #[test]
    fn sysreg_decode_and_name() {
        let k = TrapKind::of_sync(IMPDEF_READ);
        let TrapKind::SysReg { encoding, read } = k else {
            panic!("{k:?}")
        };
        assert!(read);
        assert_eq!(encoding.fields(), (3, 0, 15, 2, 1));
        assert_eq!(encoding, SysRegEncoding::new(3, 0, 15, 2, 1));
        assert_eq!(format!("{k}"), "EC 0x18 (read of S3_0_C15_C2_1)");
        // POR_EL1 is S3_0_C10_C2_4; PIR_EL1 S3_0_C10_C2_3.
        assert_eq!(
            format!("{}", SysRegEncoding::new(3, 0, 10, 2, 4)),
            "S3_0_C10_C2_4"
        );
        // The direction and Rt are not part of the kind.
        let write_x7 = (IMPDEF_READ & !1 & !(0x1f << 5)) | (7 << 5);
        let w = TrapKind::of_sync(write_x7);
        assert_eq!(w.index(), k.index());
        assert_eq!(format!("{w}"), "EC 0x18 (write of S3_0_C15_C2_1)");
    }

    #[test]
    fn indices_distinct_and_in_range() {
        let mut seen = alloc::vec![false; TrapKind::COUNT];
        let kinds = (0..64u8)
            .map(TrapKind::Class)
            .chain((0..=u16::MAX).map(|e| TrapKind::SysReg {
                encoding: SysRegEncoding(e),
                read: e & 1 == 0,
            }))
            .chain((0..16u8).map(|vector| TrapKind::Asynchronous { vector }));
        for k in kinds {
            let i = k.index();
            assert!(i < TrapKind::COUNT, "{k:?}");
            assert!(!seen[i], "{k:?} shares index {i}");
            seen[i] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn class_kinds_and_names() {
        let wfi = (0x01 << ESR_EC_SHIFT) | ESR_IL;
        assert_eq!(TrapKind::of_sync(wfi), TrapKind::Class(1));
        assert_eq!(format!("{}", TrapKind::of_sync(wfi)), "EC 0x01 (WFI/WFE)");
        assert_eq!(
            format!("{}", TrapKind::Class(0x3f)),
            "EC 0x3f (reserved class)"
        );
        assert_eq!(
            format!("{}", TrapKind::Asynchronous { vector: 11 }),
            "asynchronous exception (EL2 vector 11)"
        );
        assert_eq!(exception_class(IMPDEF_READ), EC_SYS64);
    }
}
