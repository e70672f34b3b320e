//! Warden hypercall ABI: function IDs, error codes, prot bits, limits, page geometry (single source of truth).
//!
//! The host talks to Warden with SMCCC **vendor-specific hypervisor service** calls (owning entity 6), SMC64
//! fast calls, issued with the SMCCC conduit (SMC or HVC). Arguments go in `x1..x6`; results come back in
//! `x0..x3`. `x0` is [`SUCCESS`] (0) or a negative [`Error`] code; the other result registers are defined per
//! call (see `docs/abi.md`). The standard SMCCC discovery calls of the range ([`VENDOR_HYP_CALL_UID`],
//! [`VENDOR_HYP_REVISION`]) are SMC32 fast calls, as SMCCC defines them.
//!
//! Everything here is also emitted as a C header for the Linux shim by [`write_c_header`]
//! (`cargo xtask gen-header` writes `host-shim/warden_abi.h`; a unit test fails when the checked-in copy drifts).
//!
//! ```
//! use warden_abi::{Function, Error, fid};
//! assert_eq!(fid(Function::MapPages), 0xC600_0005);
//! assert_eq!(Function::from_fid(0xC600_0005), Some(Function::MapPages));
//! assert_eq!(Error::from_code(-14), Some(Error::NoMem));
//! ```

#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod event;
mod header;
mod version;

pub use event::*;
pub use header::write_c_header;
pub use version::*;

/// ABI major version: bumped on any incompatible change. A shim refuses to run on a major it does not know.
pub const ABI_VERSION_MAJOR: u16 = 1;
/// ABI minor version: bumped on compatible additions (new calls, new feature bits, new stat ids).
pub const ABI_VERSION_MINOR: u16 = 2;

/// The name of the Linux module that speaks this ABI.
pub const MODULE_NAME: &str = "warden";
/// The `compatible` the hypervisor gives the SMMU node in the device tree it hands to the host (the node keeps
/// its phandle, so `iommu-map`s still point at it; Linux's own arm-smmu-v3 driver never binds to it).
pub const DT_COMPATIBLE: &str = "warden,smmu-v3-pv";

/// The Warden UUID returned by [`VENDOR_HYP_CALL_UID`]: `7f71637a-ecfe-47e6-b67a-d3a1af022896`.
pub const UUID: [u8; 16] = [
    0x7f, 0x71, 0x63, 0x7a, 0xec, 0xfe, 0x47, 0xe6, 0xb6, 0x7a, 0xd3, 0xa1, 0xaf, 0x02, 0x28, 0x96,
];
/// [`UUID`] as the four 32-bit words SMCCC returns in `w0..w3` (bytes 4i..4i+3, little-endian).
pub const UUID_WORDS: [u32; 4] = [
    u32::from_le_bytes([UUID[0], UUID[1], UUID[2], UUID[3]]),
    u32::from_le_bytes([UUID[4], UUID[5], UUID[6], UUID[7]]),
    u32::from_le_bytes([UUID[8], UUID[9], UUID[10], UUID[11]]),
    u32::from_le_bytes([UUID[12], UUID[13], UUID[14], UUID[15]]),
];

/// SMCCC function-ID bit 31: fast call.
pub const SMCCC_FAST_CALL: u32 = 1 << 31;
/// SMCCC function-ID bit 30: SMC64/HVC64 calling convention.
pub const SMCCC_64: u32 = 1 << 30;
/// Shift of the owning-entity number (bits 29:24) in a function ID.
pub const SMCCC_OWNER_SHIFT: u32 = 24;
/// Mask of the owning-entity number after shifting.
pub const SMCCC_OWNER_MASK: u32 = 0x3f;
/// Owning entity 6: vendor-specific hypervisor service calls.
pub const SMCCC_OWNER_VENDOR_HYP: u32 = 6;
/// Bits 23:16 of a function ID, which must be zero in a fast call.
pub const SMCCC_FAST_RESERVED: u32 = 0xff << 16;
/// Mask of the function number (bits 15:0).
pub const SMCCC_FUNC_MASK: u32 = 0xffff;

/// SMCCC vendor-hyp "Call UID query" (SMC32 fast): returns [`UUID_WORDS`] in `w0..w3`.
pub const VENDOR_HYP_CALL_UID: u32 = 0x8600_ff01;
/// SMCCC vendor-hyp "Revision query" (SMC32 fast): returns [`ABI_VERSION_MAJOR`] in `w0`, minor in `w1`.
pub const VENDOR_HYP_REVISION: u32 = 0x8600_ff03;
/// Base of Warden's calls: SMC64 fast call, owning entity 6, function number 0.
pub const FID_BASE: u32 =
    SMCCC_FAST_CALL | SMCCC_64 | (SMCCC_OWNER_VENDOR_HYP << SMCCC_OWNER_SHIFT);

/// Whether `fid` (the low 32 bits of `x0`) is a well-formed vendor-specific hypervisor service fast call:
/// fast-call bit set, owning entity 6, bits 23:16 zero, either calling convention. These are the calls the
/// hypervisor hands to its Warden dispatcher (which answers the SMC32 discovery calls and its own SMC64 calls
/// and `NOT_SUPPORTED` to the rest); every other function ID is for the SMCCC/PSCI handling.
///
/// ```
/// use warden_abi::{Function, VENDOR_HYP_CALL_UID, is_vendor_hyp_call};
/// assert!(is_vendor_hyp_call(Function::MapPages.fid()));
/// assert!(is_vendor_hyp_call(VENDOR_HYP_CALL_UID));
/// assert!(!is_vendor_hyp_call(0x8400_0000)); // PSCI_VERSION: owner 4
/// assert!(!is_vendor_hyp_call(0x4600_0001)); // a yielding call
/// ```
#[must_use]
pub const fn is_vendor_hyp_call(fid: u32) -> bool {
    const MASK: u32 =
        SMCCC_FAST_CALL | (SMCCC_OWNER_MASK << SMCCC_OWNER_SHIFT) | SMCCC_FAST_RESERVED;
    const WANT: u32 = SMCCC_FAST_CALL | (SMCCC_OWNER_VENDOR_HYP << SMCCC_OWNER_SHIFT);
    fid & MASK == WANT
}

/// Result of every successful call in `x0`.
pub const SUCCESS: i64 = 0;

/// Defines a fieldless enum with explicit discriminants, an `ALL` table, and the C name of each variant.
macro_rules! abi_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident : $repr:ty, prefix $prefix:literal {
            $( $(#[doc = $doc:literal])* $variant:ident = $value:expr => $cname:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Eq, PartialEq, Ord, PartialOrd, Hash)]
        #[repr($repr)]
        $vis enum $name {
            $( $(#[doc = $doc])* $variant = $value, )*
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];
            /// Prefix of the C names of this enum's values.
            pub const C_PREFIX: &'static str = $prefix;

            /// The C name of this value, without [`Self::C_PREFIX`].
            #[must_use]
            pub const fn c_name(self) -> &'static str {
                match self { $($name::$variant => $cname,)* }
            }

            /// The first line of the value's documentation.
            #[must_use]
            pub const fn doc(self) -> &'static str {
                match self { $($name::$variant => abi_enum!(@first $($doc)*),)* }
            }

            /// The raw value.
            #[must_use]
            pub const fn value(self) -> $repr {
                self as $repr
            }

            /// The variant with raw value `v`, if any.
            #[must_use]
            pub const fn from_value(v: $repr) -> Option<Self> {
                $( if v == $value { return Some($name::$variant); } )*
                None
            }
        }
    };
    (@first $first:literal $($rest:literal)*) => { $first };
    (@first) => { "" };
}

// After the macro, which it uses.
mod stat;

pub use stat::{STAT_CALLS_BASE, Stat};

abi_enum! {
    /// Warden's calls: the function number (bits 15:0) of each SMC64 fast call under [`FID_BASE`].
    pub enum Function: u32, prefix "WARDEN_FN_" {
        /// Version and features: x1 = version and feature bits, x2 = page sizes, x3 = limits.
        Version = 0x00 => "VERSION",
        /// Allocate a domain of kind x1 ([`DomainKind`]): x1 = new domain ID.
        DomainAlloc = 0x01 => "DOMAIN_ALLOC",
        /// Free domain x1 (must not be attached to any StreamID).
        DomainFree = 0x02 => "DOMAIN_FREE",
        /// Attach StreamID x1 to domain x2 (replaces its current domain).
        Attach = 0x03 => "ATTACH",
        /// Detach StreamID x1: it goes back to the host-identity domain.
        Detach = 0x04 => "DETACH",
        /// Map x5 pages of size x4 at IOVA x2 to PA x3 in domain x1 with prot x6: x1 = bytes mapped.
        MapPages = 0x05 => "MAP_PAGES",
        /// Unmap x4 pages of size x3 at IOVA x2 in domain x1: x1 = bytes unmapped.
        UnmapPages = 0x06 => "UNMAP_PAGES",
        /// Translate IOVA x2 in domain x1: x1 = PA.
        IovaToPhys = 0x07 => "IOVA_TO_PHYS",
        /// Read one fault record: x0 = 1 (record in x1, x2) or 0 (none); x3 = records lost so far.
        ReadEvent = 0x08 => "READ_EVENT",
        /// Donate x2 pages at PA x1 to the page-table pool.
        Donate = 0x09 => "DONATE",
        /// Reclaim x2 donated, unused pages at PA x1.
        Reclaim = 0x0a => "RECLAIM",
        /// Read statistic x1 ([`Stat`]): x1 = value.
        Stat = 0x0b => "STAT",
        /// Map x3 descriptors at host PA x2 in domain x1 with prot x4, all or nothing: x1 = entries, x2 = bytes.
        ///
        /// Each descriptor ([`MAP_BATCH_ENTRY_SIZE`] bytes) is three little-endian u64: IOVA, PA, length, all
        /// multiples of 4 KiB. The array lies in one 4 KiB page of host-owned RAM, 8-byte aligned; the hyp
        /// reads it once. On error nothing is mapped and x2 = the index of the failing entry, or
        /// [`MAP_BATCH_NO_ENTRY`] when the error is about the call's own arguments (or `NOMEM`).
        MapBatch = 0x0c => "MAP_BATCH",
        /// Unmap x3 descriptors at host PA x2 in domain x1, one invalidation: x1 = entries, x2 = bytes.
        ///
        /// Each descriptor ([`UNMAP_BATCH_ENTRY_SIZE`] bytes) is two little-endian u64: IOVA and length,
        /// multiples of 4 KiB, every page mapped. The array lies as [`Function::MapBatch`]'s (one 4 KiB page of
        /// host RAM, 8-byte aligned, read once). The hyp clears every range, issues one invalidation for the
        /// batch (with its CMD_SYNC), and only then drops the pages' DMA counts. Errors as `MAP_BATCH` (x2 = the
        /// failing descriptor or [`MAP_BATCH_NO_ENTRY`]); a failing call changes nothing, except `TIMEOUT` /
        /// `HW_ERROR` (entries cleared, pages stay pinned). For lazy (flush-queue) domains (ABI 1.2).
        UnmapBatch = 0x0d => "UNMAP_BATCH",
    }
}

impl Function {
    /// The full SMCCC function ID of this call.
    #[must_use]
    pub const fn fid(self) -> u32 {
        FID_BASE | self as u32
    }

    /// The call a full function ID names, if it is one of Warden's SMC64 fast calls.
    #[must_use]
    pub const fn from_fid(fid: u32) -> Option<Self> {
        if fid & !SMCCC_FUNC_MASK != FID_BASE {
            return None;
        }
        Self::from_value(fid & SMCCC_FUNC_MASK)
    }
}

/// The full SMCCC function ID of `f` (same as [`Function::fid`]).
#[must_use]
pub const fn fid(f: Function) -> u32 {
    f.fid()
}

abi_enum! {
    /// Error codes, returned as negative values in `x0`. Each has exactly one meaning.
    pub enum Error: i64, prefix "WARDEN_E_" {
        /// Unknown function ID or unsupported call (SMCCC NOT_SUPPORTED).
        NotSupported = -1 => "NOT_SUPPORTED",
        /// A reserved argument value or reserved bits set (e.g. a field wider than it may be).
        InvalidParameter = -3 => "INVALID_PARAMETER",
        /// The domain ID names no live domain (never allocated, freed, or stale).
        BadDomain = -4 => "BAD_DOMAIN",
        /// The StreamID is not one the device tree's iommu-map gives this SMMU.
        BadSid = -5 => "BAD_SID",
        /// An IOVA, PA or size is not aligned to the page size it goes with.
        Misaligned = -6 => "MISALIGNED",
        /// A size computation or an address range wraps around 2^64.
        Overflow = -7 => "OVERFLOW",
        /// The IOVA range does not fit in the domain's input address size.
        OutOfRangeIova = -8 => "OUT_OF_RANGE_IOVA",
        /// The PA range does not fit in the SMMU's output address size.
        OutOfRangePa = -9 => "OUT_OF_RANGE_PA",
        /// The PA range is not host memory (a hole, or MMIO that devices may not reach).
        NotHostMemory = -10 => "NOT_HOST_MEMORY",
        /// The PA range includes memory that belongs to the hypervisor.
        HypMemory = -11 => "HYP_MEMORY",
        /// The PA range includes memory the host donated to the hypervisor.
        DonatedMemory = -12 => "DONATED_MEMORY",
        /// The object is in use: a domain still attached, or memory still DMA-mapped or used as page table.
        Busy = -13 => "BUSY",
        /// The page-table pool is short: x1 = how many more pages the host should donate.
        NoMem = -14 => "NOMEM",
        /// Part of the IOVA range is not mapped (nothing was changed).
        NotMapped = -15 => "NOT_MAPPED",
        /// Part of the IOVA range is already mapped (nothing was changed).
        AlreadyMapped = -16 => "ALREADY_MAPPED",
        /// The prot argument has unknown bits, no access bit, or does not fit the memory type.
        BadProt = -17 => "BAD_PROT",
        /// The page size is not one of the supported sizes (4 KiB, 2 MiB, 1 GiB).
        BadPgsize = -18 => "BAD_PGSIZE",
        /// The SMMU did not complete a command in time (the hyp keeps the affected memory pinned).
        Timeout = -19 => "TIMEOUT",
        /// The domain kind is not one of [`DomainKind`].
        BadKind = -20 => "BAD_KIND",
        /// The page is not donated memory (reclaim of something never donated).
        NotDonated = -21 => "NOT_DONATED",
        /// A page's DMA mapping count would overflow.
        CountOverflow = -22 => "COUNT_OVERFLOW",
        /// A page count of zero, or larger than the call allows.
        BadCount = -23 => "BAD_COUNT",
        /// The SMMU reported an error other than a timeout.
        HwError = -24 => "HW_ERROR",
        /// The statistic ID is unknown.
        BadStat = -25 => "BAD_STAT",
        /// The host-identity domain cannot be freed, mapped or unmapped by the host.
        ImmutableDomain = -26 => "IMMUTABLE_DOMAIN",
        /// The operation needs a paging domain (map, unmap, iova_to_phys on a blocked domain).
        WrongDomainKind = -27 => "WRONG_DOMAIN_KIND",
        /// A hypervisor limit would be exceeded (number of domains, donated pages).
        Limit = -28 => "LIMIT",
        /// An internal invariant check failed; the call changed nothing it could undo. Please report.
        Internal = -29 => "INTERNAL",
    }
}

impl Error {
    /// The error with code `code`, if any.
    #[must_use]
    pub const fn from_code(code: i64) -> Option<Self> {
        Self::from_value(code)
    }

    /// The code as the 64-bit register value placed in `x0`.
    #[must_use]
    pub const fn to_reg(self) -> u64 {
        self as i64 as u64
    }

    /// The Linux errno (its C name, e.g. `"EINVAL"`) the host shim returns for this error; the header's
    /// `warden_errno()` is generated from it.
    #[must_use]
    pub const fn linux_errno(self) -> &'static str {
        match self {
            Error::NotSupported => "EOPNOTSUPP",
            Error::BadSid => "ENODEV",
            Error::NotHostMemory | Error::HypMemory | Error::DonatedMemory => "EPERM",
            Error::Busy => "EBUSY",
            Error::NoMem => "ENOMEM",
            Error::NotMapped => "ENOENT",
            Error::AlreadyMapped => "EEXIST",
            Error::Timeout => "ETIMEDOUT",
            Error::CountOverflow => "EOVERFLOW",
            Error::Limit => "ENOSPC",
            Error::HwError | Error::Internal => "EIO",
            Error::InvalidParameter
            | Error::BadDomain
            | Error::Misaligned
            | Error::Overflow
            | Error::OutOfRangeIova
            | Error::OutOfRangePa
            | Error::BadProt
            | Error::BadPgsize
            | Error::BadKind
            | Error::NotDonated
            | Error::BadCount
            | Error::BadStat
            | Error::ImmutableDomain
            | Error::WrongDomainKind => "EINVAL",
        }
    }
}

abi_enum! {
    /// Domain kinds for [`Function::DomainAlloc`].
    pub enum DomainKind: u64, prefix "WARDEN_DOMAIN_" {
        /// A translating domain: starts empty, filled with map/unmap.
        Paging = 0 => "PAGING",
        /// A blocking domain: every DMA of an attached StreamID aborts (and is reported).
        Blocked = 1 => "BLOCKED",
    }
}

/// The ID of the built-in host-identity domain (all host RAM 1:1, nothing of the hyp). Every StreamID starts
/// attached to it; [`Function::Detach`] returns a StreamID to it. The host cannot free, map or unmap it.
pub const DOMAIN_ID_HOST_IDENTITY: u64 = 0;

/// prot: the device may read.
pub const PROT_READ: u64 = 1 << 0;
/// prot: the device may write.
pub const PROT_WRITE: u64 = 1 << 1;
/// prot: cacheable, coherent memory (Normal write-back); without it, Normal non-cacheable.
pub const PROT_CACHE: u64 = 1 << 2;
/// prot: the device may not fetch instructions (stage-2 XN).
pub const PROT_NOEXEC: u64 = 1 << 3;
/// prot: the PA is an MMIO region devices may write (an MSI doorbell); Device-nGnRE. Not with [`PROT_CACHE`].
pub const PROT_MMIO: u64 = 1 << 4;
/// prot: privileged accesses only (accepted and ignored: stage 2 has no privilege distinction).
pub const PROT_PRIV: u64 = 1 << 5;
/// Every defined prot bit (the values equal Linux's `IOMMU_*`); any other bit is [`Error::BadProt`].
pub const PROT_ALL: u64 = PROT_READ | PROT_WRITE | PROT_CACHE | PROT_NOEXEC | PROT_MMIO | PROT_PRIV;

// Translation geometry: the 4 KiB granule (Arm ARM D8.2), the only one Warden uses. Every page-sized thing
// (the host stage-2, the domains' SMMU stage-2 tables, the EL2 stage-1, ownership tracking, donation and
// reclaim) takes its geometry from here.

/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 12;
/// The translation granule (4 KiB): the size of a page, of a translation table, and the unit of ownership
/// tracking, donation and reclaim.
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;
/// log2 of the size of one translation descriptor (8 bytes).
const DESC_SHIFT: u32 = 3;
/// Input-address bits one table level resolves (9): a table is one page of 8-byte descriptors.
pub const BITS_PER_LEVEL: u32 = PAGE_SHIFT - DESC_SHIFT;
/// Descriptors in one translation table (512).
pub const TABLE_ENTRIES: usize = 1 << BITS_PER_LEVEL;
/// The level whose descriptors map single pages (3); levels 1 and 2 may hold blocks.
pub const LEAF_LEVEL: usize = 3;

/// Bytes one descriptor at `level` covers: [`PAGE_SIZE`] at [`LEAF_LEVEL`], 2 MiB at 2, 1 GiB at 1, 512 GiB
/// at 0.
///
/// `level` must be at most [`LEAF_LEVEL`] (a larger one fails to compile in a constant, panics otherwise).
#[must_use]
pub const fn granule(level: usize) -> u64 {
    PAGE_SIZE << ((LEAF_LEVEL - level) as u32 * BITS_PER_LEVEL)
}

/// 4 KiB page (a level-3 descriptor).
pub const PGSIZE_4K: u64 = granule(LEAF_LEVEL);
/// 2 MiB block (a level-2 descriptor).
pub const PGSIZE_2M: u64 = granule(LEAF_LEVEL - 1);
/// 1 GiB block (a level-1 descriptor).
pub const PGSIZE_1G: u64 = granule(LEAF_LEVEL - 2);
/// Bitmap of supported page sizes (Linux's `pgsize_bitmap`).
pub const PGSIZE_BITMAP: u64 = PGSIZE_4K | PGSIZE_2M | PGSIZE_1G;

/// Most descriptors one [`Function::MapBatch`] call takes (x3 = 1..=this).
pub const MAP_BATCH_MAX_ENTRIES: u64 = 64;
/// Size in bytes of one [`Function::MapBatch`] descriptor: IOVA, PA and length, each a little-endian u64.
pub const MAP_BATCH_ENTRY_SIZE: u64 = 24;
/// Alignment of a [`Function::MapBatch`] descriptor array (it must also lie within one 4 KiB page).
pub const MAP_BATCH_ALIGN: u64 = 8;
/// [`Function::MapBatch`]'s and [`Function::UnmapBatch`]'s x2 on an error that is not about one descriptor
/// (arguments, domain, `NOMEM`).
pub const MAP_BATCH_NO_ENTRY: u64 = u64::MAX;
/// Most descriptors one [`Function::UnmapBatch`] call takes (x3 = 1..=this).
pub const UNMAP_BATCH_MAX_ENTRIES: u64 = 64;
/// Size in bytes of one [`Function::UnmapBatch`] descriptor: IOVA and length, each a little-endian u64 (the
/// array's alignment and placement are [`Function::MapBatch`]'s: [`MAP_BATCH_ALIGN`], one 4 KiB page).
pub const UNMAP_BATCH_ENTRY_SIZE: u64 = 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_is_the_4k_granule() {
        assert_eq!(PAGE_SIZE, 0x1000);
        assert_eq!((BITS_PER_LEVEL, TABLE_ENTRIES), (9, 512));
        assert_eq!(
            TABLE_ENTRIES as u64 * 8,
            PAGE_SIZE,
            "a table fills one page"
        );
        assert_eq!(
            [granule(0), granule(1), granule(2), granule(3)],
            [1 << 39, 1 << 30, 1 << 21, 1 << 12]
        );
        assert_eq!(
            (PGSIZE_4K, PGSIZE_2M, PGSIZE_1G),
            (0x1000, 0x20_0000, 0x4000_0000)
        );
    }

    #[test]
    fn function_ids_round_trip() {
        for &f in Function::ALL {
            assert_eq!(Function::from_fid(f.fid()), Some(f));
            assert_eq!(f.fid() >> 24, 0xC6);
        }
        assert_eq!(Function::from_fid(0xC600_00FF), None);
        assert_eq!(
            Function::from_fid(0x8600_0005),
            None,
            "SMC32 form is not a Warden call"
        );
        assert_eq!(Function::from_fid(0xC500_0005), None);
    }

    #[test]
    fn vendor_hyp_call_decode() {
        // Every Warden call and both discovery calls are vendor-hyp calls.
        for &f in Function::ALL {
            assert!(is_vendor_hyp_call(f.fid()), "{f:?}");
        }
        assert!(is_vendor_hyp_call(VENDOR_HYP_CALL_UID));
        assert!(is_vendor_hyp_call(VENDOR_HYP_REVISION));
        // Either convention, any function number: the dispatcher answers the unknown ones.
        assert!(is_vendor_hyp_call(0x8600_0005));
        assert!(is_vendor_hyp_call(0xC600_FFFF));
        // Yielding calls (bit 31 clear).
        assert!(!is_vendor_hyp_call(0x4600_0005));
        assert!(!is_vendor_hyp_call(0x0600_0001));
        // Bits 23:16 set: malformed, whichever bit.
        for bit in 16..24 {
            assert!(
                !is_vendor_hyp_call(Function::Version.fid() | 1 << bit),
                "bit {bit}"
            );
        }
        // Every other owner, in both conventions.
        for owner in (0..=SMCCC_OWNER_MASK).filter(|&o| o != SMCCC_OWNER_VENDOR_HYP) {
            for conv in [0, SMCCC_64] {
                let fid = SMCCC_FAST_CALL | conv | owner << SMCCC_OWNER_SHIFT | 5;
                assert!(!is_vendor_hyp_call(fid), "{fid:#x}");
            }
        }
        // PSCI (owner 4), SMCCC_VERSION (owner 0), standard hyp (owner 5).
        for fid in [0x8400_0000, 0xC400_0003, 0x8000_0000, 0xC500_0005] {
            assert!(!is_vendor_hyp_call(fid), "{fid:#x}");
        }
    }

    #[test]
    fn error_codes_distinct_and_negative() {
        for (i, a) in Error::ALL.iter().enumerate() {
            assert!(a.value() < 0);
            assert_eq!(Error::from_code(a.value()), Some(*a));
            for b in &Error::ALL[i + 1..] {
                assert_ne!(a.value(), b.value());
                assert_ne!(a.c_name(), b.c_name());
            }
        }
        assert_eq!(Error::NotSupported.value(), -1);
        assert_eq!(Error::NoMem.to_reg(), (-14i64) as u64);
    }

    #[test]
    fn uuid_words_match_smccc_layout() {
        assert_eq!(
            UUID_WORDS,
            [0x7a63_717f, 0xe647_feec, 0xa1d3_7ab6, 0x9628_02af]
        );
    }

    #[test]
    fn prot_matches_linux() {
        assert_eq!(
            (
                PROT_READ,
                PROT_WRITE,
                PROT_CACHE,
                PROT_NOEXEC,
                PROT_MMIO,
                PROT_PRIV
            ),
            (1, 2, 4, 8, 16, 32)
        );
    }

    /// The shim's debugfs walks statistics and functions from 0 until `warden_stat_name`/`warden_fn_name`
    /// return NULL, so both must be numbered without gaps.
    #[test]
    fn stats_and_functions_are_dense() {
        for (i, s) in Stat::ALL.iter().enumerate() {
            assert_eq!(s.value(), i as u64, "{s:?}");
        }
        for (i, f) in Function::ALL.iter().enumerate() {
            assert_eq!(f.value(), i as u32, "{f:?}");
        }
    }

    /// The header's lookup functions cover every error, statistic and function, with this crate's names and
    /// errnos (the shim has no table of its own).
    #[test]
    fn header_names_cover_the_abi() {
        let mut h = String::new();
        write_c_header(&mut h).unwrap();
        let body = |f: &str| {
            let start = h.find(f).unwrap_or_else(|| panic!("no {f} in the header"));
            let end = start + h[start..].find("\n}\n").unwrap();
            h[start..end].to_string()
        };
        let strerror = body("warden_strerror(long status)");
        let errno = body("warden_errno(long status)");
        for &e in Error::ALL {
            let case = format!("case WARDEN_E_{}:\n", e.c_name());
            assert!(
                strerror.contains(&format!("{case}\t\treturn \"{}\";", e.c_name())),
                "{e:?}"
            );
            assert!(
                errno.contains(&format!("{case}\t\treturn -{};", e.linux_errno())),
                "{e:?}"
            );
        }
        assert!(errno.contains("case WARDEN_E_INVALID_PARAMETER:\n\t\treturn -EINVAL;"));
        assert!(errno.contains("case WARDEN_E_NOMEM:\n\t\treturn -ENOMEM;"));
        let stat = body("warden_stat_name(unsigned long long id)");
        for &s in Stat::ALL {
            let name = s.c_name().to_ascii_lowercase();
            assert!(stat.contains(&format!(
                "case WARDEN_STAT_{}:\n\t\treturn \"{name}\";",
                s.c_name()
            )));
        }
        assert!(stat.contains("\"domains_in_use\"") && stat.contains("\"table_pages_in_use\""));
        let func = body("warden_fn_name(unsigned int fn)");
        for &f in Function::ALL {
            let name = f.c_name().to_ascii_lowercase();
            assert!(func.contains(&format!(
                "case WARDEN_FN_{}:\n\t\treturn \"{name}\";",
                f.c_name()
            )));
        }
        assert!(func.contains("\"domain_alloc\"") && func.contains("\"unmap_batch\""));
    }

    /// checkpatch's default line length: no header line is longer than 100 columns (tabs = 8).
    #[test]
    fn header_lines_fit_in_100_columns() {
        let mut h = String::new();
        write_c_header(&mut h).unwrap();
        for line in h.lines() {
            let cols: usize = line.chars().map(|c| if c == '\t' { 8 } else { 1 }).sum();
            assert!(cols <= 100, "{cols} columns: {line}");
        }
    }

    #[test]
    fn checked_in_header_is_current() {
        let mut s = String::new();
        write_c_header(&mut s).unwrap();
        let checked_in = include_str!("../../../host-shim/warden_abi.h");
        assert!(
            s == checked_in,
            "host-shim/warden_abi.h is stale: run `cargo xtask gen-header` (or the test `regenerate_header` with \
             WARDEN_REGEN_HEADER=1)"
        );
    }

    /// With `WARDEN_REGEN_HEADER=1`, rewrites the checked-in header (a fallback for `cargo xtask gen-header`).
    #[test]
    fn regenerate_header() {
        if std::env::var_os("WARDEN_REGEN_HEADER").is_none() {
            return;
        }
        let mut s = String::new();
        write_c_header(&mut s).unwrap();
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../host-shim/warden_abi.h");
        std::fs::write(path, s).unwrap();
    }
}
