//! Domain geometry: the IOVA size, root level and STE fields every domain shares, and entry indexing.

use warden_abi::{BITS_PER_LEVEL, LEAF_LEVEL, PAGE_SHIFT, TABLE_ENTRIES, granule};

/// Input address bits of every domain (IOVAs are below 2^39).
pub const IOVA_BITS: u32 = 39;
/// The level of the root table.
pub const ROOT_LEVEL: usize = 1;
/// `S2T0SZ` for the STE (64 - [`IOVA_BITS`]).
pub const S2_T0SZ: u8 = 64 - IOVA_BITS as u8;
/// `S2SL0` for the STE: 1 = the walk starts at level 1 (4 KiB granule).
pub const S2_SL0: u8 = 1;

/// The `S2PS`/`OAS` encoding of a PA width (32, 36, 40, 42, 44, 48, 52 bits); `None` for other widths.
#[must_use]
pub const fn pa_size_encoding(pa_bits: u8) -> Option<u8> {
    match pa_bits {
        32 => Some(0),
        36 => Some(1),
        40 => Some(2),
        42 => Some(3),
        44 => Some(4),
        48 => Some(5),
        52 => Some(6),
        _ => None,
    }
}

/// Everything an SMMU stage-2 STE needs for a domain.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct S2Config {
    /// The domain's VMID.
    pub vmid: u16,
    /// Physical address of the root table (`S2TTB`), 4 KiB aligned.
    pub root_pa: u64,
    /// `S2T0SZ`.
    pub t0sz: u8,
    /// `S2SL0`.
    pub sl0: u8,
    /// `S2PS` (the SMMU's OAS encoding, see [`pa_size_encoding`]).
    pub ps: u8,
}

/// Bytes a level-2 entry translates (2 MiB).
pub(super) const L2_GRANULE: u64 = granule(ROOT_LEVEL + 1);

/// Index of the entry translating `iova` in a table at `level`.
pub(super) const fn index_at(iova: u64, level: usize) -> usize {
    (iova >> (PAGE_SHIFT + (LEAF_LEVEL - level) as u32 * BITS_PER_LEVEL)) as usize
        & (TABLE_ENTRIES - 1)
}
