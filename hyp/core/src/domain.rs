//! DMA domains: stage-2 translations for devices, and the page-table pool they allocate from.
//!
//! A [`PagingDomain`] is an aarch64-paging [`Mapping`] in the [`Stage2`] regime whose tables come from the
//! [`PagePool`] (hyp carve-out pages plus pages the host donated; the host-identity domain has a pool of
//! carve-out pages only: its boot tables, [`identity_boot_tables`], and a small spare). It is never marked active, so aarch64-paging
//! issues no CPU TLB maintenance: the SMMU's TLBs are invalidated by the caller ([`crate::dispatch`]) through the
//! SMMU driver, and table pages freed by an update are **quarantined** until that invalidation completed
//! (an SMMU walk could still be reading them).
//!
//! # Geometry (what the STE needs)
//!
//! Each domain carries its [`Geometry`] (a `Copy` field). The host's domains have [`Geometry::DOMAIN`]: 4 KiB
//! granule, input size [`IOVA_BITS`] = 39 bits, walk starting at level 1: one 4 KiB root table, three levels,
//! 1 GiB / 2 MiB / 4 KiB leaves. STE fields ([`Geometry::s2_config`], a [`warden_smmu::S2Config`]):
//! `S2T0SZ` = 25, `S2SL0` = 1 (start at level 1 for 4 KiB), `S2TG` = 0 (4 KiB), `S2PS` from the SMMU's OAS
//! ([`pa_size_encoding`]). 39 bits fits any SMMUv3 with 40 bits of stage-2 input or more (QEMU's IAS is 44),
//! needs no concatenated root tables (which aarch64-paging does not build) and keeps walks at three levels.
//!
//! The host-identity domain maps host RAM and the MSI doorbells 1:1, so its input size follows the machine
//! ([`Geometry::host_identity`]): the same 39 bits / level 1 when everything lies below 512 GiB, else the
//! smallest width that covers the top address (up to the SMMU's IAS, at most 48 bits) with a level-0 root
//! (`S2SL0` = 2, four levels).
//!
//! # Live updates
//!
//! Maps only fill invalid entries, so the SMMU needs no invalidation for them. Unmap clears entries; a block
//! that an unmap cuts is replaced by a table holding the rest of the block. Unless the SMMU reports
//! `IDR3.BBML` = 2 (QEMU's does), that is break-before-make ([`PagingDomain::break_cut_blocks`]): invalid entry,
//! TLB invalidation of the whole block with its sync, then the table; DMA to the rest of the block faults in
//! that window (documented in docs/design.md). With BBML2 the block is replaced in place (as Linux's
//! io-pgtable did before it dropped splitting), and the following range invalidation uses the old block's size
//! as its TTL hint, so the stale block leaves the TLB.
//!
//! # In-place paths
//!
//! Most DMA maps and unmaps touch 4 KiB pages of level-3 tables the domain already has. For those,
//! [`PagingDomain::can_map_in_place`] + [`PagingDomain::map_pages_in_place`] and [`PagingDomain::page_runs`] +
//! [`PagingDomain::clear_pages_in_place`] read and write the level-3 descriptors directly, one pass each, instead of
//! aarch64-paging's generic walk plus the `map_need`/`unmap_need`/`leaves` walks. They apply only where the
//! generic path would allocate, split and free nothing (a 2 MiB piece cleared whole frees its table, so it takes
//! the generic path), write exactly what it would write, and report the same first mapped/unmapped IOVA; a
//! differential property test checks this against a twin domain updated generically. No cache maintenance: the
//! SMMU driver requires coherent table walks (`IDR0.COHACC`).
//!
//! # Locking
//!
//! A domain has no lock of its own here: [`crate::dispatch`] keeps each in a `spin::Mutex` slot. The pool has one
//! `spin::Mutex`, always taken last (inside a domain lock, never the other way round), held only for O(1) list
//! operations (plus O(n) for reclaim).

mod error;
mod geometry;
mod identity;
mod in_place;
mod need;
mod pool;
#[cfg(test)]
pub(crate) mod tests;

use alloc::sync::Arc;

use aarch64_paging::Mapping;
use aarch64_paging::descriptor::{PhysicalAddress, Stage2Attributes};
use aarch64_paging::paging::{Constraints, MemoryRegion, Stage2};
use warden_abi as abi;
use warden_abi::{PAGE_SIZE, granule};

pub use error::DomainError;
pub use geometry::{Geometry, IOVA_BITS, MAX_IOVA_BITS, pa_size_encoding};
pub use identity::{identity_boot_tables, pieces_below_1g};
pub use pool::{POOL_RESERVE, PagePool, PoolStats, PoolTranslation, Reservation};

static_assertions::const_assert_eq!(core::mem::size_of::<usize>(), 8);

/// Stage-2 attributes for a validated prot.
#[must_use]
pub fn attributes(prot: u64) -> Stage2Attributes {
    let mut a = Stage2Attributes::VALID | Stage2Attributes::ACCESS_FLAG;
    a |= match (prot & abi::PROT_READ != 0, prot & abi::PROT_WRITE != 0) {
        (true, true) => Stage2Attributes::S2AP_ACCESS_RW,
        (true, false) => Stage2Attributes::S2AP_ACCESS_RO,
        (false, true) => Stage2Attributes::S2AP_ACCESS_WO,
        (false, false) => Stage2Attributes::S2AP_ACCESS_NONE,
    };
    if prot & abi::PROT_MMIO != 0 {
        a |= Stage2Attributes::MEMATTR_DEVICE_nGnRE;
    } else if prot & abi::PROT_CACHE != 0 {
        a |= Stage2Attributes::MEMATTR_NORMAL_OUTER_WB
            | Stage2Attributes::MEMATTR_NORMAL_INNER_WB
            | Stage2Attributes::SH_INNER;
    } else {
        a |= Stage2Attributes::MEMATTR_NORMAL_OUTER_NC | Stage2Attributes::MEMATTR_NORMAL_INNER_NC;
    }
    if prot & abi::PROT_NOEXEC != 0 {
        a |= Stage2Attributes::XN;
    }
    a
}

/// One leaf of a walk: `len` bytes at `iova` translate to `pa` through an entry at `level`.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Leaf {
    /// First IOVA (inside the walked range).
    pub iova: u64,
    /// Its PA.
    pub pa: u64,
    /// Bytes (inside the walked range).
    pub len: u64,
    /// Level of the entry (1 = 1 GiB block, 2 = 2 MiB block, 3 = page).
    pub level: usize,
}

/// What an unmap did to the tables.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct ClearOutcome {
    /// Whether table pages were detached (a walk-cache invalidation is needed, not just leaves).
    pub tables_freed: bool,
}

fn region(iova: u64, len: u64) -> MemoryRegion {
    MemoryRegion::new(iova as usize, (iova + len) as usize)
}

/// A stage-2 translation for devices.
pub struct PagingDomain {
    map: Mapping<PoolTranslation, Stage2>,
    vmid: warden_smmu::Vmid,
    geometry: Geometry,
}

impl core::fmt::Debug for PagingDomain {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PagingDomain")
            .field("vmid", &self.vmid)
            .field("root", &self.root_pa())
            .field("geometry", &self.geometry)
            .finish()
    }
}

impl PagingDomain {
    /// A new, empty domain of [`Geometry::DOMAIN`] (a host's domain) with VMID `vmid` whose tables come from
    /// `pool` (quarantine tag `tag`).
    ///
    /// # Errors
    ///
    /// [`DomainError::NoMem`] if the pool cannot give the root table (keeping `keep` pages free).
    pub fn new(
        pool: Arc<PagePool>,
        tag: u16,
        vmid: warden_smmu::Vmid,
        keep: usize,
    ) -> Result<Self, DomainError> {
        Self::with_geometry(pool, tag, vmid, keep, Geometry::DOMAIN)
    }

    /// [`Self::new`] with the input size and root level of `geometry` (the host-identity domain's).
    ///
    /// # Errors
    ///
    /// [`DomainError::NoMem`] if the pool cannot give the root table (keeping `keep` pages free).
    pub fn with_geometry(
        pool: Arc<PagePool>,
        tag: u16,
        vmid: warden_smmu::Vmid,
        keep: usize,
        geometry: Geometry,
    ) -> Result<Self, DomainError> {
        pool.reserve(1, keep)?;
        let t = PoolTranslation {
            pool,
            tag,
            freed: core::cell::Cell::new(0),
            allocated: 0,
            in_use: core::cell::Cell::new(0),
            next_table: core::cell::Cell::new(None),
        };
        Ok(Self {
            map: Mapping::new(t, geometry.root_level(), Stage2),
            vmid,
            geometry,
        })
    }

    /// The VMID.
    #[must_use]
    pub fn vmid(&self) -> warden_smmu::Vmid {
        self.vmid
    }

    /// The input size and root level.
    #[must_use]
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// Physical address of the root table.
    #[must_use]
    pub fn root_pa(&self) -> u64 {
        self.map.root_address().0 as u64
    }

    /// The STE parameters, for an SMMU that outputs `pa_bits` (must have an encoding, see
    /// [`pa_size_encoding`]; else 48 bits is used).
    #[must_use]
    pub fn s2_config(&self, pa_bits: u8) -> warden_smmu::S2Config {
        self.geometry.s2_config(
            self.vmid,
            self.root_pa(),
            pa_size_encoding(pa_bits).unwrap_or(5),
        )
    }

    /// Table pages this domain holds.
    #[must_use]
    pub fn table_pages(&self) -> usize {
        self.map.translation().in_use.get()
    }

    /// Calls `f` for every leaf (valid or not) covering `[iova, iova + len)`; the range must be page aligned and
    /// inside the domain's input range ([`Geometry::end`]).
    fn walk(
        &self,
        iova: u64,
        len: u64,
        mut f: impl FnMut(u64, u64, Option<u64>, usize) -> Result<(), ()>,
    ) -> bool {
        self.map
            .walk_range(&region(iova, len), &mut |mr, d, level| {
                let s = mr.start().0 as u64;
                let e = mr.end().0 as u64;
                let pa = d
                    .is_valid()
                    .then(|| d.output_address().0 as u64 + (s & (granule(level) - 1)));
                f(s, e, pa, level)
            })
            .is_ok()
    }

    /// Maps `[iova, iova + len)` to `pa` with the largest blocks that fit. The caller checked the range is
    /// unmapped and reserved [`Self::map_need`] pages.
    ///
    /// # Errors
    ///
    /// [`DomainError::Internal`] if aarch64-paging refuses (arguments out of its range: a broken invariant).
    pub fn map(
        &mut self,
        iova: u64,
        pa: u64,
        len: u64,
        attrs: Stage2Attributes,
    ) -> Result<(), DomainError> {
        self.map
            .map_range(
                &region(iova, len),
                PhysicalAddress(pa as usize),
                attrs,
                Constraints::empty(),
            )
            .map_err(|_| DomainError::Internal)
    }

    /// Break (of break-before-make): makes the whole aligned block at `block` (`g` bytes) one invalid entry,
    /// with no attributes and PA 0 so that nothing reads it as a block.
    ///
    /// # Errors
    ///
    /// [`DomainError::Internal`] if aarch64-paging refuses (a broken invariant).
    fn break_block(&mut self, block: u64, g: u64) -> Result<(), DomainError> {
        self.map(block, 0, g, Stage2Attributes::empty())
    }

    /// Calls `f(iova, pa, len, level)` with each leaf in `[iova, iova + len)` in order (mapped or not: `pa` is
    /// `None` for a hole) until `f` returns `false`.
    pub fn leaves(
        &self,
        iova: u64,
        len: u64,
        mut f: impl FnMut(u64, Option<u64>, u64, usize) -> bool,
    ) {
        self.walk(iova, len, |s, e, pa, level| {
            if f(s, pa, e - s, level) {
                Ok(())
            } else {
                Err(())
            }
        });
    }

    /// Clears every entry of `[iova, iova + len)` (splitting blocks at the ends; the caller reserved
    /// [`Self::unmap_need`] pages). Detached tables go to quarantine until [`PagePool::release_quarantine`].
    ///
    /// # Errors
    ///
    /// [`DomainError::Internal`] if aarch64-paging refuses (a broken invariant).
    pub fn clear(&mut self, iova: u64, len: u64) -> Result<ClearOutcome, DomainError> {
        let before = self.map.translation().freed.get();
        // Pass pa = iova so that aarch64-paging's alignment test for whole blocks follows the IOVA.
        self.map
            .map_range(
                &region(iova, len),
                PhysicalAddress(iova as usize),
                Stage2Attributes::empty(),
                Constraints::empty(),
            )
            .map_err(|_| DomainError::Internal)?;
        Ok(ClearOutcome {
            tables_freed: self.map.translation().freed.get() != before,
        })
    }

    /// Break-before-make for the blocks an unmap of `[iova, iova + len)` cuts (at most one at each end, the
    /// same one if the range lies inside a block), for an SMMU without `IDR3.BBML` = 2. Each cut block is made
    /// invalid, `invalidate(block_iova, block_len, level)` must remove it from the SMMU's TLBs and wait (a TLBI
    /// plus CMD_SYNC), then the block is mapped again with its attributes through tables from the pages the
    /// caller reserved ([`Self::unmap_need`]: the same tables a split in place takes), exactly as a split in
    /// place leaves it. A following [`Self::clear`] of the range then splits nothing.
    ///
    /// Between the invalid entry and the new table, DMA to the rest of the block faults (see the module docs).
    ///
    /// # Errors
    ///
    /// What `invalidate` returns, or [`DomainError::Internal`] if aarch64-paging refuses (a broken invariant);
    /// either way the block is written back as it was (from invalid to valid: no break-before-make needed).
    pub fn break_cut_blocks<E: From<DomainError>>(
        &mut self,
        iova: u64,
        len: u64,
        mut invalidate: impl FnMut(u64, u64, usize) -> Result<(), E>,
    ) -> Result<(), E> {
        let end = iova + len;
        // (block IOVA, block PA, level, attributes) of the blocks cut at the start and at the end.
        let mut cut: [Option<(u64, u64, usize, Stage2Attributes)>; 2] = [None, None];
        let _ = self
            .map
            .walk_range(&region(iova, len), &mut |mr, d, level| {
                let (s, e) = (mr.start().0 as u64, mr.end().0 as u64);
                let g = granule(level);
                if level < 3 && d.is_valid() && (s % g != 0 || e % g != 0) {
                    let block = (s & !(g - 1), d.output_address().0 as u64, level, d.flags());
                    if cut[0].is_none() && s == iova {
                        cut[0] = Some(block);
                    }
                    if e == end && cut[0].is_none_or(|first| first.0 != block.0) {
                        cut[1] = Some(block);
                    }
                }
                Ok::<(), ()>(())
            });
        for (block, pa, level, attrs) in cut.into_iter().flatten() {
            let g = granule(level);
            self.break_block(block, g)?;
            if let Err(e) = invalidate(block, g, level) {
                let _ = self.map(block, pa, g, attrs);
                return Err(e);
            }
            // Make: the whole block again, through new tables (mapped in pieces cut where the unmap starts and
            // ends, so that aarch64-paging writes a table): the unmapped part is cleared by `clear` next, like a
            // split in place, so the caller's walk of what it unmaps still sees the pages.
            let cuts = [
                block,
                iova.clamp(block, block + g),
                end.clamp(block, block + g),
                block + g,
            ];
            for (s, e) in cuts.windows(2).map(|w| (w[0], w[1])).filter(|(s, e)| s < e) {
                if let Err(err) = self.map(s, pa + (s - block), e - s, attrs) {
                    let _ = self.map(block, pa, g, attrs);
                    return Err(err.into());
                }
            }
        }
        Ok(())
    }

    /// The PA `iova` translates to, if mapped.
    #[must_use]
    pub fn translate(&self, iova: u64) -> Option<u64> {
        if iova >= self.geometry.end() {
            return None;
        }
        let page = iova & !(PAGE_SIZE - 1);
        let mut out = None;
        self.walk(page, PAGE_SIZE, |_, _, pa, _| {
            out = pa;
            Ok(())
        });
        out.map(|pa| pa + (iova & (PAGE_SIZE - 1)))
    }
}
