//! `VTCR_EL2`, the stage-2 translation control register, for the host stage-2.

use super::IPA_BITS;

/// `VTCR_EL2.T0SZ`: the IPA size is `64 - T0SZ` bits.
pub const VTCR_T0SZ: u64 = 64 - IPA_BITS as u64;
/// `VTCR_EL2.SL0` (bits 7:6) for a level-0 start with a 4 KiB granule.
pub const VTCR_SL0_LEVEL0: u64 = 2 << 6;
/// `VTCR_EL2.IRGN0` (bits 9:8): inner write-back read/write-allocate table walks.
pub const VTCR_IRGN0_WBWA: u64 = 1 << 8;
/// `VTCR_EL2.ORGN0` (bits 11:10): outer write-back read/write-allocate table walks.
pub const VTCR_ORGN0_WBWA: u64 = 1 << 10;
/// `VTCR_EL2.SH0` (bits 13:12): inner shareable table walks.
pub const VTCR_SH0_INNER: u64 = 3 << 12;
/// `VTCR_EL2.TG0` (bits 15:14): 4 KiB granule (encoding 0).
pub const VTCR_TG0_4K: u64 = 0 << 14;
/// Shift of `VTCR_EL2.PS` (bits 18:16), the physical address size.
pub const VTCR_PS_SHIFT: u64 = 16;
/// `VTCR_EL2` bit 31 is RES1.
pub const VTCR_RES1: u64 = 1 << 31;
/// The `ID_AA64MMFR0_EL1.PARange` / `VTCR_EL2.PS` encoding of 48 bits.
pub const PARANGE_48: u64 = 5;

/// The `VTCR_EL2` value for the host stage-2, given `ID_AA64MMFR0_EL1.PARange` (bits 3:0 of that register).
///
/// The IPA space is [`IPA_BITS`] wide with the root at level 0; `PS` is the CPU's physical address size,
/// capped at 48 bits (no 52-bit output addresses). Returns `None` if the CPU supports fewer than 48 bits of
/// physical address, as a level-0 root then has no valid encoding.
pub const fn vtcr(parange: u64) -> Option<u64> {
    let parange = parange & 0xf;
    if parange < PARANGE_48 {
        return None;
    }
    let ps = if parange > PARANGE_48 {
        PARANGE_48
    } else {
        parange
    };
    Some(
        VTCR_RES1
            | (ps << VTCR_PS_SHIFT)
            | VTCR_TG0_4K
            | VTCR_SH0_INNER
            | VTCR_ORGN0_WBWA
            | VTCR_IRGN0_WBWA
            | VTCR_SL0_LEVEL0
            | VTCR_T0SZ,
    )
}
