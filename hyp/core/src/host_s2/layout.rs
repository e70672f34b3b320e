//! The platform description the host stage-2 is built from: address ranges, the borrowed spec and its owned
//! form.

use alloc::vec::Vec;

use warden_abi::PAGE_SIZE;

/// A half-open physical address range `[start, end)`.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Region {
    /// First address in the range.
    pub start: u64,
    /// First address after the range.
    pub end: u64,
}

impl Region {
    /// The range `[start, end)`.
    pub const fn new(start: u64, end: u64) -> Self {
        Self { start, end }
    }

    /// The range of `size` bytes at `start` (saturating at the top of the address space).
    pub const fn with_size(start: u64, size: u64) -> Self {
        Self {
            start,
            end: start.saturating_add(size),
        }
    }

    /// Whether the range holds no address.
    pub const fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// Whether `addr` lies in the range.
    pub const fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }

    /// Whether the two ranges share at least one address.
    pub const fn overlaps(&self, other: &Region) -> bool {
        self.start < other.end && other.start < self.end
    }

    /// The largest page-aligned range inside this one.
    pub(super) const fn shrink_to_pages(self) -> Self {
        Self {
            start: self.start.saturating_add(PAGE_SIZE - 1) & !(PAGE_SIZE - 1),
            end: self.end & !(PAGE_SIZE - 1),
        }
    }

    /// The smallest page-aligned range holding this one.
    pub(super) const fn grow_to_pages(self) -> Self {
        Self {
            start: self.start & !(PAGE_SIZE - 1),
            end: self.end.saturating_add(PAGE_SIZE - 1) & !(PAGE_SIZE - 1),
        }
    }
}

/// The platform description the host stage-2 is built from.
#[derive(Clone, Copy, Debug)]
pub struct HostS2Spec<'a> {
    /// Every RAM bank (from the device tree's `/memory` nodes). Shrunk to page boundaries.
    pub ram: &'a [Region],
    /// Every MMIO window the host may use (from the boot-time classification, [`crate::devices`]).
    /// Grown to page boundaries.
    pub mmio: &'a [Region],
    /// Ranges never mapped for the host, whatever `ram` and `mmio` say: the hypervisor carve-out, the SMMU
    /// register frames. Grown to page boundaries.
    pub excluded: &'a [Region],
}

/// `ranges` minus every hole in `holes` (both page aligned), as a list of non-empty ranges in order.
pub(crate) fn subtract(range: Region, holes: &[Region]) -> Vec<Region> {
    let mut pieces = alloc::vec![range];
    for hole in holes {
        let mut next = Vec::new();
        for piece in pieces {
            if !piece.overlaps(hole) {
                next.push(piece);
                continue;
            }
            let below = Region::new(piece.start, hole.start.min(piece.end));
            let above = Region::new(hole.end.max(piece.start), piece.end);
            for part in [below, above] {
                if !part.is_empty() {
                    next.push(part);
                }
            }
        }
        pieces = next;
    }
    pieces
}
/// The inputs of [`HostStage2::build`](super::HostStage2::build) for a platform, owned.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct HostS2Layout {
    /// RAM banks.
    pub ram: Vec<Region>,
    /// MMIO the host may use.
    pub mmio: Vec<Region>,
    /// Never mapped for the host.
    pub excluded: Vec<Region>,
}

impl HostS2Layout {
    /// The host stage-2 layout of a classified platform ([`crate::devices::classify`]): all RAM; as MMIO
    /// only the host regions of the classified device nodes; excluded the hypervisor carve-out, every SMMU
    /// frame and every withheld node's regions.
    pub fn from_devices(devices: &crate::devices::Classification<'_>) -> Self {
        Self {
            ram: devices.ram().to_vec(),
            mmio: devices.host_mmio(),
            excluded: devices.excluded(),
        }
    }

    /// The borrowed form [`HostStage2::build`](super::HostStage2::build) takes.
    pub fn spec(&self) -> HostS2Spec<'_> {
        HostS2Spec {
            ram: &self.ram,
            mmio: &self.mmio,
            excluded: &self.excluded,
        }
    }
}
