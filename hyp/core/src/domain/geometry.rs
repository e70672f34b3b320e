//! Domain geometry: each domain's IOVA size and root level ([`Geometry`]), the STE fields they give, and entry
//! indexing.

use warden_abi::{BITS_PER_LEVEL, LEAF_LEVEL, PAGE_SHIFT, TABLE_ENTRIES, granule};
use warden_smmu::{S2Config, Vmid};

/// Input address bits of the host's domains (the ones `DOMAIN_ALLOC` makes; `VERSION`'s limits report it): their
/// IOVAs are below 2^39. The host-identity domain may be wider ([`Geometry::host_identity`]).
pub const IOVA_BITS: u32 = 39;
/// Largest input size of any domain: 48 bits, a level-0 root (52 bits would need LPA2 descriptors).
pub const MAX_IOVA_BITS: u32 = 48;

/// Level of the entries that translate 1 GiB (blocks in the host's domains, tables in host-identity).
pub(super) const LEVEL_1G: usize = 1;
/// Level of the entries that translate 2 MiB.
pub(super) const LEVEL_2M: usize = 2;
/// Bytes a level-2 entry translates (2 MiB).
pub(super) const L2_GRANULE: u64 = granule(LEVEL_2M);

/// A domain's input size and the level its walk starts at. [`Geometry::DOMAIN`] (39 bits, level-1 root) for
/// the host's domains; the host-identity domain's is chosen at boot from the machine
/// ([`Geometry::host_identity`]): wider inputs start at level 0 (no concatenated root tables, which
/// aarch64-paging does not build).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Geometry {
    iova_bits: u8,
    root_level: u8,
}

impl Geometry {
    /// The host's domains: [`IOVA_BITS`] of input, walk from level 1 (`S2T0SZ` = 25, `S2SL0` = 1): one 4 KiB
    /// root, three levels, 1 GiB / 2 MiB / 4 KiB leaves.
    pub const DOMAIN: Self = Self {
        iova_bits: IOVA_BITS as u8,
        root_level: 1,
    };

    /// The narrowest geometry with at least `bits` of input: [`Geometry::DOMAIN`] up to [`IOVA_BITS`], else
    /// `bits` with a level-0 root (`S2SL0` = 2: a root of 2^(`bits` - 39) entries, four levels); `None` beyond
    /// [`MAX_IOVA_BITS`].
    #[must_use]
    pub const fn with_bits(bits: u32) -> Option<Self> {
        if bits <= IOVA_BITS {
            Some(Self::DOMAIN)
        } else if bits <= MAX_IOVA_BITS {
            Some(Self {
                iova_bits: bits as u8,
                root_level: 0,
            })
        } else {
            None
        }
    }

    /// Input bits that cover every address below `top` (at least [`IOVA_BITS`]).
    #[must_use]
    pub const fn bits_to_cover(top: u64) -> u32 {
        let bits = if top <= 1 {
            0
        } else {
            u64::BITS - (top - 1).leading_zeros()
        };
        if bits < IOVA_BITS { IOVA_BITS } else { bits }
    }

    /// The host-identity domain's geometry on a machine whose host RAM and doorbells end at `top`, with an
    /// SMMU that takes `ias_bits` of stage-2 input: the narrowest that covers `top`, widened to `min_bits`
    /// (the `warden.identity_iova_bits=` boot argument; 0 for none) as far as the SMMU allows.
    ///
    /// # Errors
    ///
    /// The bits `top` needs, when they exceed `ias_bits` or [`MAX_IOVA_BITS`]: the SMMU cannot translate the
    /// machine's memory 1:1.
    pub const fn host_identity(top: u64, min_bits: u32, ias_bits: u32) -> Result<Self, u32> {
        let need = Self::bits_to_cover(top);
        let limit = if ias_bits < MAX_IOVA_BITS {
            ias_bits
        } else {
            MAX_IOVA_BITS
        };
        if need > limit {
            return Err(need);
        }
        let wanted = if min_bits < limit { min_bits } else { limit };
        match Self::with_bits(if wanted > need { wanted } else { need }) {
            Some(g) => Ok(g),
            None => Err(need),
        }
    }

    /// Input address bits.
    #[must_use]
    pub const fn iova_bits(self) -> u32 {
        self.iova_bits as u32
    }

    /// The level of the root table (0 or 1).
    #[must_use]
    pub const fn root_level(self) -> usize {
        self.root_level as usize
    }

    /// The first IOVA past the input range (2^[`Self::iova_bits`]).
    #[must_use]
    pub const fn end(self) -> u64 {
        1 << self.iova_bits
    }

    /// The STE's stage-2 parameters for a table of this geometry (`S2T0SZ` = 64 - [`Self::iova_bits`],
    /// `S2SL0` from [`Self::root_level`]) rooted at `root_pa`, tagged `vmid`, outputting `S2PS` = `ps` (see
    /// [`pa_size_encoding`]). Every domain's STE and the blocked STE's empty table use it.
    #[must_use]
    pub const fn s2_config(self, vmid: Vmid, root_pa: u64, ps: u8) -> S2Config {
        S2Config::new_4k(vmid, root_pa, self.iova_bits, self.root_level, ps)
    }
}

/// For the boot log: `44-bit IOVA, level-0 root`.
impl core::fmt::Display for Geometry {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{}-bit IOVA, level-{} root",
            self.iova_bits, self.root_level
        )
    }
}

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

/// Index of the entry translating `iova` in a table at `level`.
pub(super) const fn index_at(iova: u64, level: usize) -> usize {
    (iova >> (PAGE_SHIFT + (LEAF_LEVEL - level) as u32 * BITS_PER_LEVEL)) as usize
        & (TABLE_ENTRIES - 1)
}
