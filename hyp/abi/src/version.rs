//! The version call's results: x1 packs the ABI version and the feature bits, x3 the limits.

/// Version call, x1 bits 15:0: ABI minor.
pub const VERSION_MINOR_SHIFT: u32 = 0;
/// Version call, x1 bits 31:16: ABI major.
pub const VERSION_MAJOR_SHIFT: u32 = 16;
/// Version call, x1 bits 63:32: feature bits (`FEAT_*`).
pub const VERSION_FEATURES_SHIFT: u32 = 32;
/// Feature: the SMMU invalidates IOVA ranges with one command (range invalidation, IDR3.RIL).
pub const FEAT_RANGE_INVALIDATION: u64 = 1 << 0;
/// Feature: faults are recorded and readable with [`Function::ReadEvent`](crate::Function::ReadEvent).
pub const FEAT_EVENTS: u64 = 1 << 1;
/// Feature: unmap splits blocks when asked for part of one.
pub const FEAT_SPLIT_UNMAP: u64 = 1 << 2;
/// Feature: [`Function::MapBatch`](crate::Function::MapBatch) is implemented (ABI 1.1).
pub const FEAT_MAP_BATCH: u64 = 1 << 3;
/// Feature: [`Function::UnmapBatch`](crate::Function::UnmapBatch) is implemented (ABI 1.2).
pub const FEAT_UNMAP_BATCH: u64 = 1 << 4;

/// Version call, x3 bits 15:0: maximum number of allocatable domains (host-identity not counted).
pub const LIMITS_MAX_DOMAINS_SHIFT: u32 = 0;
/// Version call, x3 bits 23:16: IOVA bits of a paging domain (IOVAs are below 2^bits).
pub const LIMITS_IOVA_BITS_SHIFT: u32 = 16;
/// Version call, x3 bits 31:24: PA bits the SMMU can output.
pub const LIMITS_PA_BITS_SHIFT: u32 = 24;
/// Version call, x3 bits 39:32: VMID bits of the SMMU.
pub const LIMITS_VMID_BITS_SHIFT: u32 = 32;
/// Version call, x3 bits 63:40: maximum number of pages the host may have donated at once.
pub const LIMITS_MAX_DONATED_SHIFT: u32 = 40;
/// Mask of an 8-bit limits field after shifting.
pub const LIMITS_MASK_8: u64 = 0xff;
/// Mask of the 16-bit max-domains field after shifting.
pub const LIMITS_MASK_16: u64 = 0xffff;
/// Mask of the 24-bit max-donated field after shifting.
pub const LIMITS_MASK_24: u64 = 0xff_ffff;

/// Packs the version call's x1.
#[must_use]
pub const fn pack_version(major: u16, minor: u16, features: u32) -> u64 {
    ((features as u64) << VERSION_FEATURES_SHIFT)
        | ((major as u64) << VERSION_MAJOR_SHIFT)
        | ((minor as u64) << VERSION_MINOR_SHIFT)
}

/// The limits the version call reports in x3.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct Limits {
    /// Maximum number of allocatable domains (host-identity not counted).
    pub max_domains: u16,
    /// IOVA bits of a paging domain.
    pub iova_bits: u8,
    /// PA bits the SMMU outputs.
    pub pa_bits: u8,
    /// VMID bits of the SMMU.
    pub vmid_bits: u8,
    /// Maximum number of pages donated at once (saturates at 2^24 - 1).
    pub max_donated_pages: u32,
}

impl Limits {
    /// Packs into the version call's x3.
    #[must_use]
    pub const fn pack(&self) -> u64 {
        let donated = if self.max_donated_pages as u64 > LIMITS_MASK_24 {
            LIMITS_MASK_24
        } else {
            self.max_donated_pages as u64
        };
        ((self.max_domains as u64) << LIMITS_MAX_DOMAINS_SHIFT)
            | ((self.iova_bits as u64) << LIMITS_IOVA_BITS_SHIFT)
            | ((self.pa_bits as u64) << LIMITS_PA_BITS_SHIFT)
            | ((self.vmid_bits as u64) << LIMITS_VMID_BITS_SHIFT)
            | (donated << LIMITS_MAX_DONATED_SHIFT)
    }

    /// Unpacks the version call's x3.
    #[must_use]
    pub const fn unpack(x3: u64) -> Self {
        Self {
            max_domains: ((x3 >> LIMITS_MAX_DOMAINS_SHIFT) & LIMITS_MASK_16) as u16,
            iova_bits: ((x3 >> LIMITS_IOVA_BITS_SHIFT) & LIMITS_MASK_8) as u8,
            pa_bits: ((x3 >> LIMITS_PA_BITS_SHIFT) & LIMITS_MASK_8) as u8,
            vmid_bits: ((x3 >> LIMITS_VMID_BITS_SHIFT) & LIMITS_MASK_8) as u8,
            max_donated_pages: ((x3 >> LIMITS_MAX_DONATED_SHIFT) & LIMITS_MASK_24) as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_round_trip() {
        let l = Limits {
            max_domains: 1024,
            iova_bits: 39,
            pa_bits: 44,
            vmid_bits: 16,
            max_donated_pages: 16384,
        };
        assert_eq!(Limits::unpack(l.pack()), l);
        let big = Limits {
            max_donated_pages: u32::MAX,
            ..l
        };
        assert_eq!(Limits::unpack(big.pack()).max_donated_pages, 0xff_ffff);
    }
}
