//! Host stage-2 faults, decoded from the EL2 syndrome registers.

use crate::trap::esr::{EC_DABT_LOW, EC_IABT_LOW, ESR_S1PTW, ESR_WNR, exception_class};
use warden_abi::PAGE_SIZE;

/// A host stage-2 fault, decoded from the EL2 syndrome registers.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Stage2Fault {
    /// The faulting IPA (from `HPFAR_EL2` for the page, `FAR_EL2` for the offset).
    pub ipa: u64,
    /// Whether the access was a write (data aborts only).
    pub write: bool,
    /// Whether it was an instruction fetch.
    pub instruction: bool,
    /// Whether the fault happened on the host's own stage-1 table walk.
    pub s1ptw: bool,
}

impl Stage2Fault {
    /// Decodes a lower-EL instruction or data abort taken to EL2; `None` for any other exception class.
    pub fn decode(esr_el2: u64, far_el2: u64, hpfar_el2: u64) -> Option<Self> {
        let instruction = match exception_class(esr_el2) {
            EC_IABT_LOW => true,
            EC_DABT_LOW => false,
            _ => return None,
        };
        // HPFAR_EL2.FIPA (bits 43:4 for a 52-bit IPA) holds IPA bits 51:12.
        let page = ((hpfar_el2 >> 4) & ((1 << 40) - 1)) << 12;
        Some(Self {
            ipa: page | (far_el2 & (PAGE_SIZE - 1)),
            write: !instruction && esr_el2 & ESR_WNR != 0,
            instruction,
            s1ptw: esr_el2 & ESR_S1PTW != 0,
        })
    }
}
