//! Host stage-2 construction: identity for host RAM and MMIO, never the hyp carve-out nor SMMU frames.
//!
//! The host kernel runs at EL1 behind one stage-2 translation (VMID 0) shared by every CPU. It is an identity
//! map built from the platform description: all RAM as normal write-back memory and the MMIO windows (the
//! regions of the device nodes [`crate::devices`] classified for the host) as device memory, minus the
//! excluded regions — the hypervisor carve-out, the SMMU register frames, withheld devices. An access to an unmapped IPA faults to EL2, which
//! injects an external abort into the host. RAM is mapped with blocks ([`RamLeaves::Blocks`], on hardware) or
//! 4 KiB pages ([`RamLeaves::Pages`], for QEMU's TCG), as [`RamLeaves::choose`] decides at boot; MMIO with block mappings (1 GiB, 2 MiB) wherever alignment allows.
//!
//! ```
//! use warden_core::host_s2::{HostStage2, HostS2Spec, RamLeaves};
//! use warden_dt::PhysRange;
//!
//! let ram = [PhysRange::from_bounds(0x4000_0000, 0x8000_0000)];
//! let mmio = [PhysRange::from_bounds(0, 0x4000_0000)];
//! let excluded = [
//!     PhysRange::from_bounds(0x4000_0000, 0x41e0_0000),
//!     PhysRange::from_bounds(0x0905_0000, 0x0907_0000),
//! ];
//! let spec = HostS2Spec { ram: &ram, mmio: &mmio, excluded: &excluded, ram_leaves: RamLeaves::Pages };
//! let s2 = HostStage2::build(&spec).unwrap();
//! assert_eq!(s2.translate(0x4000_1000), None);
//! let t = s2.translate(0x4200_0000).unwrap();
//! assert_eq!((t.pa, t.level), (0x4200_0000, 3));
//! ```

mod fault;
mod fill;
mod layout;
mod reserve;
mod tables;
mod vtcr;

#[cfg(test)]
mod edit_tests;
#[cfg(test)]
mod tests;

pub use fault::Stage2Fault;
pub(crate) use layout::subtract;
pub use layout::{
    HOST_S2_ARG, HostS2Layout, HostS2Spec, IDENTITY_IOVA_BITS_ARG, IdentityIovaBits, LeavesChoice,
    LeavesReason, QEMU_VIRT_COMPATIBLE, RamLeaves,
};
pub use reserve::{HeapTables, MAX_TABLES_PER_EDIT, PoolTables, TableSource};
pub use tables::HostStage2;
pub use vtcr::{
    PARANGE_48, VTCR_IRGN0_WBWA, VTCR_ORGN0_WBWA, VTCR_PS_SHIFT, VTCR_RES1, VTCR_SH0_INNER,
    VTCR_SL0_LEVEL0, VTCR_T0SZ, VTCR_TG0_4K, vtcr,
};

use aarch64_paging::descriptor::Stage2Attributes;

use warden_dt::PhysRange;

use crate::ownership::MemKind;

/// Size of the intermediate physical address space the host stage-2 covers: 48 bits (root table at level 0).
pub const IPA_BITS: u32 = 48;
/// The first IPA the host stage-2 cannot map.
pub const IPA_LIMIT: u64 = 1 << IPA_BITS;
/// The level of the root table for [`IPA_BITS`] with a 4 KiB granule.
pub const ROOT_LEVEL: usize = 0;

/// Stage-2 attributes of host RAM: normal inner/outer write-back, inner shareable, read/write, executable.
pub const RAM_ATTRIBUTES: Stage2Attributes = Stage2Attributes::VALID
    .union(Stage2Attributes::MEMATTR_NORMAL_INNER_WB)
    .union(Stage2Attributes::MEMATTR_NORMAL_OUTER_WB)
    .union(Stage2Attributes::S2AP_ACCESS_RW)
    .union(Stage2Attributes::SH_INNER)
    .union(Stage2Attributes::ACCESS_FLAG);

/// Stage-2 attributes of host MMIO: Device-nGnRE, read/write, execute-never.
pub const MMIO_ATTRIBUTES: Stage2Attributes = Stage2Attributes::VALID
    .union(Stage2Attributes::MEMATTR_DEVICE_nGnRE)
    .union(Stage2Attributes::S2AP_ACCESS_RW)
    .union(Stage2Attributes::ACCESS_FLAG)
    .union(Stage2Attributes::XN);

/// Errors building the host stage-2.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum HostS2Error {
    /// A region reaches past [`IPA_LIMIT`]; carries the region's end.
    OutOfRange(u64),
    /// A RAM region overlaps an MMIO region; carries the start of the RAM region.
    RamOverlapsMmio(u64),
    /// The page-table library refused a mapping (e.g. out of memory); carries the start of the region.
    Map(u64),
    /// A runtime edit's start or length is not page aligned, or its length is zero or overflows; carries
    /// the start.
    Misaligned(u64),
    /// A runtime edit reaches outside the host RAM this stage-2 was built with (the carve-out, an SMMU
    /// frame, MMIO, beyond RAM); carries the start.
    NotHostRam(u64),
    /// The table reserve could not be refilled to [`MAX_TABLES_PER_EDIT`] pages before a runtime edit that
    /// may split a block (the table source, [`PoolTables`] at EL2, is empty); nothing changed. Carries the
    /// start of the edit.
    NoTables(u64),
}

impl core::fmt::Display for HostS2Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::OutOfRange(end) => write!(
                f,
                "region ending at {end:#x} is beyond the {IPA_BITS}-bit IPA space"
            ),
            Self::RamOverlapsMmio(start) => write!(f, "RAM at {start:#x} overlaps an MMIO window"),
            Self::Map(start) => write!(f, "mapping the region at {start:#x} failed"),
            Self::Misaligned(start) => write!(f, "range at {start:#x} is not a page-aligned range"),
            Self::NotHostRam(start) => write!(f, "range at {start:#x} is not host RAM"),
            Self::NoTables(start) => write!(
                f,
                "no free page for the page tables of the edit at {start:#x} (donate pages, then retry)"
            ),
        }
    }
}

/// One valid leaf descriptor of the host stage-2, as found by a table walk.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Leaf {
    /// The IPA range the descriptor covers.
    pub ipa: PhysRange,
    /// The output address of the descriptor (equal to `ipa.base` in an identity map).
    pub pa: u64,
    /// Translation level of the descriptor: 1 (1 GiB block), 2 (2 MiB block) or 3 (4 KiB page).
    pub level: usize,
    /// Memory type of the mapping.
    pub kind: MemKind,
    /// The raw stage-2 attributes.
    pub attributes: Stage2Attributes,
}

/// A host IPA translated through the stage-2 tables.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Translation {
    /// The output physical address.
    pub pa: u64,
    /// Memory type.
    pub kind: MemKind,
    /// Level of the leaf descriptor.
    pub level: usize,
}

/// CPU TLB maintenance for a live edit of the host stage-2 (see [`HostStage2::unmap_range`]).
pub trait HostS2Tlb {
    /// Called after descriptors covering `region` changed: must return only once no CPU's TLB (stage-2
    /// entries and combined stage-1+2 entries of VMID 0) can hold a translation of `region` made from the old
    /// descriptors. At EL2: `DSB ISHST`; `TLBI IPAS2E1IS` for each page of `region` (or one
    /// `TLBI VMALLS12E1IS` for large regions); `DSB ISH`; `TLBI VMALLE1IS`; `DSB ISH`; `ISB`.
    fn invalidate(&mut self, region: PhysRange);
}
