//! SMCCC function-ID decoding (fast/yielding, 32/64, owner) and standard return codes.
//!
//! The layout of a function identifier (Arm DEN0028, "SMC Calling Convention", section 2.5):
//! bit 31 fast call, bit 30 SMC64/HVC64 calling convention, bits 29:24 the owning entity, bits 23:16 must be
//! zero for fast calls, bits 15:0 the function number within the owner's range. The field constants are
//! warden-abi's (`SMCCC_*`), as is [`is_vendor_hyp_call`], the check the EL2 trap path makes first.

pub use warden_abi::is_vendor_hyp_call;
use warden_abi::{
    SMCCC_64, SMCCC_FAST_CALL, SMCCC_FAST_RESERVED, SMCCC_FUNC_MASK, SMCCC_OWNER_MASK,
    SMCCC_OWNER_SHIFT,
};

/// SMCCC return code: success.
pub const SUCCESS: i64 = 0;
/// SMCCC return code: the function is not implemented.
pub const NOT_SUPPORTED: i64 = -1;
/// SMCCC return code: the call is not needed on this system.
pub const NOT_REQUIRED: i64 = -2;
/// SMCCC return code: a parameter is invalid.
pub const INVALID_PARAMETER: i64 = -3;

/// `SMCCC_VERSION` (Arm architecture call 0).
pub const SMCCC_VERSION: u32 = 0x8000_0000;
/// `SMCCC_ARCH_FEATURES` (Arm architecture call 1).
pub const SMCCC_ARCH_FEATURES: u32 = 0x8000_0001;
/// The SMCCC version the hypervisor implements towards the host: 1.1 (major in bits 30:16, minor in 15:0).
pub const IMPLEMENTED_VERSION: u64 = 0x1_0001;

/// The owning entity of a call (function ID bits 29:24).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Owner {
    /// 0: Arm architecture calls (`SMCCC_VERSION`, `SMCCC_ARCH_FEATURES`, workarounds).
    Arch,
    /// 1: CPU service calls.
    Cpu,
    /// 2: SiP (silicon partner) service calls.
    Sip,
    /// 3: OEM service calls.
    Oem,
    /// 4: standard secure service calls (PSCI lives here).
    StandardSecure,
    /// 5: standard hypervisor service calls.
    StandardHyp,
    /// 6: vendor-specific hypervisor service calls (the Warden hypercall ABI).
    VendorHyp,
    /// 7..=47: reserved for future use.
    Reserved(u8),
    /// 48..=49: trusted application calls.
    TrustedApp(u8),
    /// 50..=63: trusted OS calls.
    TrustedOs(u8),
}

impl Owner {
    /// Decodes the owner field (bits 29:24 of a function ID, already shifted down).
    pub fn from_field(field: u8) -> Self {
        match field & SMCCC_OWNER_MASK as u8 {
            0 => Self::Arch,
            1 => Self::Cpu,
            2 => Self::Sip,
            3 => Self::Oem,
            4 => Self::StandardSecure,
            5 => Self::StandardHyp,
            6 => Self::VendorHyp,
            n @ 7..=47 => Self::Reserved(n),
            n @ 48..=49 => Self::TrustedApp(n),
            n => Self::TrustedOs(n),
        }
    }
}

/// A decoded SMCCC function identifier.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct FunctionId(u32);

impl FunctionId {
    /// Takes the function ID from the low 32 bits of `x0`; the upper 32 bits are ignored, as SMCCC asks
    /// (the identifier is a W register).
    pub fn from_x0(x0: u64) -> Self {
        Self(x0 as u32)
    }

    /// The raw 32-bit identifier.
    pub fn raw(self) -> u32 {
        self.0
    }

    /// Whether this is a fast call (bit 31).
    pub fn is_fast(self) -> bool {
        self.0 & SMCCC_FAST_CALL != 0
    }

    /// Whether the call uses the 64-bit convention (bit 30).
    pub fn is_64(self) -> bool {
        self.0 & SMCCC_64 != 0
    }

    /// The owning entity (bits 29:24).
    pub fn owner(self) -> Owner {
        Owner::from_field(((self.0 >> SMCCC_OWNER_SHIFT) & SMCCC_OWNER_MASK) as u8)
    }

    /// The function number within the owner's range (bits 15:0).
    pub fn number(self) -> u16 {
        (self.0 & SMCCC_FUNC_MASK) as u16
    }

    /// Whether the bits 23:16, which must be zero for a fast call, are zero.
    pub fn reserved_bits_clear(self) -> bool {
        self.0 & SMCCC_FAST_RESERVED == 0
    }

    /// Whether this is a well-formed fast call: the only kind the hypervisor services.
    pub fn is_valid_fast_call(self) -> bool {
        self.is_fast() && self.reserved_bits_clear()
    }
}

/// Encodes a negative SMCCC return code as the 64-bit register value the caller sees in `x0`.
pub fn ret(code: i64) -> u64 {
    code as u64
}

/// Answers an Arm architecture call (owner 0) that the hypervisor implements itself: `SMCCC_VERSION` gives
/// [`IMPLEMENTED_VERSION`]; `SMCCC_ARCH_FEATURES` reports `SMCCC_VERSION` and itself as implemented and every
/// other call (the CPU-erratum workarounds included) as not supported. Anything else is `NOT_SUPPORTED`.
pub fn arch_call(fid: FunctionId, x1: u64) -> u64 {
    match fid.raw() {
        SMCCC_VERSION => IMPLEMENTED_VERSION,
        SMCCC_ARCH_FEATURES => match x1 as u32 {
            SMCCC_VERSION | SMCCC_ARCH_FEATURES => ret(SUCCESS),
            _ => ret(NOT_SUPPORTED),
        },
        _ => ret(NOT_SUPPORTED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_psci_cpu_on_64() {
        let f = FunctionId::from_x0(0xc400_0003);
        assert!(f.is_fast());
        assert!(f.is_64());
        assert_eq!(f.owner(), Owner::StandardSecure);
        assert_eq!(f.number(), 3);
        assert!(f.is_valid_fast_call());
    }

    #[test]
    fn decodes_psci_version_32() {
        let f = FunctionId::from_x0(0x8400_0000);
        assert!(f.is_fast());
        assert!(!f.is_64());
        assert_eq!(f.owner(), Owner::StandardSecure);
        assert_eq!(f.number(), 0);
    }

    #[test]
    fn upper_half_of_x0_is_ignored() {
        assert_eq!(
            FunctionId::from_x0(0xdead_beef_8400_0000),
            FunctionId::from_x0(0x8400_0000)
        );
    }

    #[test]
    fn vendor_hyp_owner() {
        // The SMCCC "Call UID" query of the vendor-specific hypervisor service range.
        let f = FunctionId::from_x0(0x8600_ff01);
        assert_eq!(f.owner(), Owner::VendorHyp);
        assert_eq!(f.number(), 0xff01);
        assert_eq!(FunctionId::from_x0(0xc600_0001).owner(), Owner::VendorHyp);
    }

    #[test]
    fn every_owner_range() {
        assert_eq!(Owner::from_field(0), Owner::Arch);
        assert_eq!(Owner::from_field(1), Owner::Cpu);
        assert_eq!(Owner::from_field(2), Owner::Sip);
        assert_eq!(Owner::from_field(3), Owner::Oem);
        assert_eq!(Owner::from_field(5), Owner::StandardHyp);
        assert_eq!(Owner::from_field(7), Owner::Reserved(7));
        assert_eq!(Owner::from_field(47), Owner::Reserved(47));
        assert_eq!(Owner::from_field(48), Owner::TrustedApp(48));
        assert_eq!(Owner::from_field(49), Owner::TrustedApp(49));
        assert_eq!(Owner::from_field(50), Owner::TrustedOs(50));
        assert_eq!(Owner::from_field(63), Owner::TrustedOs(63));
    }

    #[test]
    fn yielding_and_malformed_calls_are_not_valid_fast_calls() {
        assert!(!FunctionId::from_x0(0x0400_0000).is_valid_fast_call());
        // Bits 23:16 set.
        assert!(!FunctionId::from_x0(0x8401_0000).is_valid_fast_call());
    }

    #[test]
    fn arch_calls() {
        assert_eq!(
            arch_call(FunctionId::from_x0(SMCCC_VERSION as u64), 0),
            0x1_0001
        );
        let features = FunctionId::from_x0(SMCCC_ARCH_FEATURES as u64);
        assert_eq!(arch_call(features, SMCCC_VERSION as u64), 0);
        // ARCH_WORKAROUND_1 is not offered.
        assert_eq!(arch_call(features, 0x8000_8000), u64::MAX);
        assert_eq!(
            arch_call(FunctionId::from_x0(0x8000_8000), 0),
            NOT_SUPPORTED as u64
        );
    }

    #[test]
    fn return_code_encoding() {
        assert_eq!(ret(NOT_SUPPORTED), 0xffff_ffff_ffff_ffff);
        assert_eq!(ret(INVALID_PARAMETER), 0xffff_ffff_ffff_fffd);
        assert_eq!(ret(NOT_REQUIRED), 0xffff_ffff_ffff_fffe);
    }
}
