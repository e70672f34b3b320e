//! Domain geometry: the IOVA size, root level and STE fields every domain shares, and entry indexing.

use warden_abi::{BITS_PER_LEVEL, LEAF_LEVEL, PAGE_SHIFT, TABLE_ENTRIES, granule};
use warden_smmu::{S2Config, Vmid};

/// Input address bits of every domain (IOVAs are below 2^39).
pub const IOVA_BITS: u32 = 39;
/// The level of the root table.
pub const ROOT_LEVEL: usize = 1;

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

/// The STE's stage-2 parameters for a table of this geometry ([`IOVA_BITS`] of input, walk from
/// [`ROOT_LEVEL`]: `S2T0SZ` = 25, `S2SL0` = 1) rooted at `root_pa`, tagged `vmid`, outputting `S2PS` = `ps`
/// (see [`pa_size_encoding`]). Every domain's STE and the blocked STE's empty table use it.
#[must_use]
pub const fn s2_config(vmid: Vmid, root_pa: u64, ps: u8) -> S2Config {
    S2Config::new_4k(vmid, root_pa, IOVA_BITS as u8, ROOT_LEVEL as u8, ps)
}

/// Bytes a level-2 entry translates (2 MiB).
pub(super) const L2_GRANULE: u64 = granule(ROOT_LEVEL + 1);

/// Index of the entry translating `iova` in a table at `level`.
pub(super) const fn index_at(iova: u64, level: usize) -> usize {
    (iova >> (PAGE_SHIFT + (LEAF_LEVEL - level) as u32 * BITS_PER_LEVEL)) as usize
        & (TABLE_ENTRIES - 1)
}
