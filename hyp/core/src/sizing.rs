//! The hypervisor's memory, sized from the machine (boot protocol, part 2).
//!
//! The carve-out has two parts:
//! - the **fixed** part at the start of RAM (`layout::HYP_CARVEOUT_PA`, `layout::HYP_CARVEOUT_SIZE`): EL2
//!   stacks, canary pages, the image and a small boot heap, the same on every machine;
//! - the **sized** part ([`HypMemory::sized`]), computed at boot by [`hyp_memory`] from what the device tree
//!   says (RAM ranges, MSI doorbells, the StreamIDs the SMMU must translate) and placed by [`place`] in RAM
//!   where nothing QEMU loaded lies (highest address first). It starts with heap ([`HypMemory::heap`]: page
//!   ownership, host stage-2 tables, the ITS emulation, small allocations), then the SMMU's stream table and queues, the
//!   host-identity domain's page tables and the host domains' page-table pool, each used directly (no heap
//!   rounding).
//!
//! The formula (every term an upper bound of what the hyp allocates; the heap is a buddy allocator, so each
//! ownership array is counted rounded up to a power of two):
//!
//! | term | bytes |
//! |---|---|
//! | SMMU | 16 KiB per 256 StreamIDs the DT routes to the SMMU + [`SMMU_FIXED_BYTES`] (level-1 table, queues) |
//! | ownership | per RAM range and doorbell frame: 4 bytes per 4 KiB page (0.1 %), rounded up to a power of two |
//! | host-identity tables | ([`domain::identity_boot_tables`] of RAM and doorbells, in the geometry [`domain::Geometry::host_identity`] gives them, + [`dispatch::IDENTITY_SPARE_TABLES`]) × 4 KiB: 4 KiB per GiB + 256 KiB, and 4 KiB per 512 GiB with a level-0 root (memory above 512 GiB, or [`Machine::identity_iova_bits`]) |
//! | domain pool | [`DOMAIN_POOL_BYTES`] |
//! | host stage-2 level-3 tables | with [`RamLeaves::Pages`] (QEMU virt) per RAM range one 4 KiB table per 2 MiB, plus one ([`host_s2_page_tables`]): 2 MiB per GiB (0.2 %); with [`RamLeaves::Blocks`] (hardware) none: the boot build's few tables and the tables live donations' splits need are in the heap slack |
//! | ITS emulation | [`gic::its::HEAP_BYTES`] (3 MiB + 192 KiB: device and collection tables, a third during a rewrite, shadow queue, bookkeeping) per ITS node in the DT |
//! | heap slack | [`HEAP_SLACK_BYTES`] + 4 KiB per GiB of RAM (host stage-2 tables above level 3, DT copies, domain slots) |
//!
//! CPUs cost nothing proportional: their EL2 stacks are in the fixed part, for up to `layout::HYP_MAX_CPUS`
//! (further CPUs are never started).
//!
//! The same function gives the boot log, `STAT HYP_MEMORY_BYTES` and the README's table (a test checks the
//! table against it).

use alloc::vec::Vec;

use warden_abi::{PAGE_SIZE, PGSIZE_2M};
use warden_dt::{PhysRange, Platform};

use crate::dispatch::{self, SidRange};
use crate::host_s2::RamLeaves;
use crate::layout::{HOST_DTB_MAX_SIZE, HOST_DTB_PA, HYP_CARVEOUT_PA, HYP_CARVEOUT_SIZE};
use crate::{domain, gic, smmu_backend};

/// The physical address space the hypervisor maps (48 bits: its stage-1 and the host stage-2).
const PA_LIMIT: u64 = 1 << 48;
/// StreamIDs per level-2 stream table (the SMMU driver's `SPLIT` of 8).
const SIDS_PER_L2: u64 = 256;
/// Bytes of one level-2 stream table (256 STEs of 64 bytes).
const L2_TABLE_BYTES: u64 = 16 << 10;
/// The SMMU's memory besides level-2 stream tables: level-1 table, command and event queues, the blocked
/// domain's empty table.
pub const SMMU_FIXED_BYTES: u64 = 256 << 10;
/// Carve-out page tables for the host's DMA domains (beyond it the host donates pages).
pub const DOMAIN_POOL_BYTES: u64 = 2 << 20;
/// Heap for everything not proportional to RAM: domain slots, DT copies, the fault ring.
pub const HEAP_SLACK_BYTES: u64 = 2 << 20;
/// Heap slack per GiB of RAM (host stage-2 tables above level 3: one level-2 table per GiB).
pub const HEAP_SLACK_PER_GIB: u64 = PAGE_SIZE;
/// Bytes of ownership state per 4 KiB page (`ownership`: one `AtomicU32`).
pub const OWNERSHIP_BYTES_PER_PAGE: u64 = 4;

/// What the hyp's memory depends on.
#[derive(Clone, Copy, Debug)]
pub struct Machine<'a> {
    /// RAM (the DT's memory nodes).
    pub ram: &'a [PhysRange],
    /// MMIO frames devices may write (MSI doorbells): tracked like RAM.
    pub doorbells: &'a [PhysRange],
    /// StreamIDs the SMMU translates (the DT's `iommu-map`s and `iommus`).
    pub sids: &'a [SidRange],
    /// ITS nodes of the GIC (each gets an emulator with its own heap).
    pub its: usize,
    /// How the host stage-2 maps RAM ([`RamLeaves::choose`]): only [`RamLeaves::Pages`] costs level-3 tables
    /// for all of RAM.
    pub ram_leaves: RamLeaves,
    /// The host-identity domain's input size at least (`dispatch::Config::identity_iova_bits`; 0 for none):
    /// with more than 39 bits its root is at level 0, which adds level-1 tables.
    pub identity_iova_bits: u8,
}

/// The hyp's memory, by use (bytes).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct HypMemory {
    /// The fixed carve-out at the start of RAM (stacks, canary, image, boot heap).
    pub fixed: u64,
    /// The SMMU's stream table and queues.
    pub smmu: u64,
    /// Page ownership and DMA counts.
    pub ownership: u64,
    /// The host-identity domain's page tables.
    pub identity_tables: u64,
    /// Page tables of the host's domains (before donations).
    pub domain_pool: u64,
    /// The host stage-2's level-3 tables (heap): [`host_s2_page_tables`] with [`RamLeaves::Pages`], 0 with
    /// [`RamLeaves::Blocks`].
    pub host_s2_tables: u64,
    /// Host stage-2 tables above level 3 and small allocations.
    pub slack: u64,
    /// The ITS emulators' tables, shadow queues and bookkeeping (heap).
    pub its: u64,
}

impl HypMemory {
    /// Heap bytes of the sized part: all of it but the SMMU's memory, the host-identity tables and the domain
    /// pool (which are used directly), i.e. the ownership arrays, the host stage-2's level-3 tables, the ITS
    /// emulators and the slack, plus the rounding to 2 MiB.
    #[must_use]
    pub const fn heap(&self) -> u64 {
        self.sized() - self.smmu - self.identity_tables - self.domain_pool
    }

    /// The sized part of the carve-out: a multiple of 2 MiB.
    #[must_use]
    pub const fn sized(&self) -> u64 {
        let sum = self.smmu
            + self.ownership
            + self.identity_tables
            + self.domain_pool
            + self.host_s2_tables
            + self.slack
            + self.its;
        sum.div_ceil(PGSIZE_2M) * PGSIZE_2M
    }

    /// All the hyp's memory: the fixed and the sized part.
    #[must_use]
    pub const fn total(&self) -> u64 {
        self.fixed + self.sized()
    }

    /// The total in units of 1/10000 of `ram` bytes (0.01 %), rounded up.
    #[must_use]
    pub fn basis_points_of(&self, ram: u64) -> u64 {
        if ram == 0 {
            return u64::MAX;
        }
        (u128::from(self.total()) * 10_000).div_ceil(u128::from(ram)) as u64
    }
}

/// Why the hyp's memory cannot be sized or placed.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
pub enum SizingError {
    /// The device tree describes no RAM.
    #[error("the device tree describes no RAM")]
    NoRam,
    /// A memory range is empty, not page aligned or wraps.
    #[error("memory range {0:?} is empty, not page aligned or wraps")]
    BadRange(PhysRange),
    /// Two memory ranges overlap.
    #[error("memory ranges overlap at {0:?}")]
    Overlap(PhysRange),
    /// A memory range ends beyond the 48-bit physical address space the hypervisor maps.
    #[error("memory range {0:?} ends beyond 2^48")]
    BeyondPa(PhysRange),
    /// The machine is too large for the formula's arithmetic.
    #[error("memory description too large to size")]
    TooLarge,
    /// No RAM range has room for the sized part outside what must be avoided.
    #[error(
        "the hyp needs {need:#x} bytes of free RAM in one piece; the largest free piece is {found:#x} bytes"
    )]
    NoRoom {
        /// Bytes needed.
        need: u64,
        /// The largest free, suitably aligned piece found.
        found: u64,
    },
}

fn checked_ranges(ranges: &[PhysRange]) -> Result<Vec<PhysRange>, SizingError> {
    let mut sorted = ranges.to_vec();
    for r in &sorted {
        if r.size == 0
            || !r.base.is_multiple_of(PAGE_SIZE)
            || !r.size.is_multiple_of(PAGE_SIZE)
            || r.base.checked_add(r.size).is_none()
        {
            return Err(SizingError::BadRange(*r));
        }
    }
    if let Some(r) = sorted.iter().find(|r| r.end() > PA_LIMIT) {
        return Err(SizingError::BeyondPa(*r));
    }
    sorted.sort_unstable_by_key(|r| r.base);
    if let Some(w) = sorted.windows(2).find(|w| w[0].end() > w[1].base) {
        return Err(SizingError::Overlap(w[1]));
    }
    Ok(sorted)
}

/// Bytes of the level-3 tables the host stage-2 maps `ram` with (4 KiB pages,
/// [`crate::host_s2::RamLeaves::Pages`]): one 4 KiB table per 2 MiB of each range, plus one for a range
/// whose ends are not 2 MiB aligned. An upper bound: the build maps each range minus the hyp's memory.
///
/// # Errors
///
/// [`SizingError::TooLarge`] if the sum overflows.
pub fn host_s2_page_tables(ram: &[PhysRange]) -> Result<u64, SizingError> {
    ram.iter().try_fold(0u64, |acc, r| {
        (r.size.div_ceil(PGSIZE_2M) + 1)
            .checked_mul(PAGE_SIZE)
            .and_then(|b| acc.checked_add(b))
            .ok_or(SizingError::TooLarge)
    })
}

fn pow2(bytes: u64) -> Result<u64, SizingError> {
    bytes
        .checked_next_power_of_two()
        .ok_or(SizingError::TooLarge)
}

/// The hyp's memory on `machine` (see the module docs for the formula).
///
/// # Errors
///
/// No RAM; empty, unaligned, wrapping or overlapping ranges; sizes beyond the arithmetic.
pub fn hyp_memory(machine: &Machine<'_>) -> Result<HypMemory, SizingError> {
    if machine.ram.is_empty() {
        return Err(SizingError::NoRam);
    }
    let mut tracked = machine.ram.to_vec();
    tracked.extend_from_slice(machine.doorbells);
    let tracked = checked_ranges(&tracked)?;

    let mut ownership = 0u64;
    for r in &tracked {
        let words = (r.size / PAGE_SIZE)
            .checked_mul(OWNERSHIP_BYTES_PER_PAGE)
            .ok_or(SizingError::TooLarge)?;
        ownership = ownership
            .checked_add(pow2(words)?)
            .ok_or(SizingError::TooLarge)?;
    }
    let runs: Vec<(u64, u64)> = tracked.iter().map(|r| (r.base, r.size)).collect();
    // The geometry the boot picks for these runs on an SMMU with the largest input size: a smaller IAS gives a
    // geometry with no more tables, or refuses to boot. `checked_ranges` keeps them below 2^48.
    let top = runs.iter().map(|&(b, s)| b + s).max().unwrap_or(0);
    let geometry = domain::Geometry::host_identity(
        top,
        machine.identity_iova_bits.into(),
        domain::MAX_IOVA_BITS,
    )
    .map_err(|_| SizingError::TooLarge)?;
    // The carve-out's two parts are 2 MiB aligned and sized, so taking them out of RAM cuts no 2 MiB block
    // (nor moves the top past a 2^n boundary the boot's runs would not cross): the boot tables over all RAM
    // bound those over host RAM.
    let identity_pages =
        (domain::identity_boot_tables(&runs, geometry) + dispatch::IDENTITY_SPARE_TABLES) as u64;
    let identity_tables = identity_pages
        .checked_mul(PAGE_SIZE)
        .ok_or(SizingError::TooLarge)?;

    let mut l2_tables = 0u64;
    for s in machine.sids {
        l2_tables += u64::from(s.count).div_ceil(SIDS_PER_L2) + 1;
    }
    let smmu = l2_tables * L2_TABLE_BYTES + SMMU_FIXED_BYTES;

    let ram_bytes = machine
        .ram
        .iter()
        .try_fold(0u64, |a, r| a.checked_add(r.size))
        .ok_or(SizingError::TooLarge)?;
    let slack = HEAP_SLACK_BYTES + ram_bytes.div_ceil(1 << 30) * HEAP_SLACK_PER_GIB;
    let host_s2_tables = match machine.ram_leaves {
        RamLeaves::Pages => host_s2_page_tables(machine.ram)?,
        RamLeaves::Blocks => 0,
    };
    let its = u64::try_from(machine.its)
        .ok()
        .and_then(|n| n.checked_mul(gic::its::HEAP_BYTES))
        .ok_or(SizingError::TooLarge)?;

    let m = HypMemory {
        fixed: HYP_CARVEOUT_SIZE,
        smmu,
        ownership,
        identity_tables,
        domain_pool: DOMAIN_POOL_BYTES,
        host_s2_tables,
        slack,
        its,
    };
    // The sums in `sized`/`total` must not overflow.
    [
        m.smmu,
        m.ownership,
        m.identity_tables,
        m.domain_pool,
        m.host_s2_tables,
        m.slack,
        m.its,
        m.fixed,
        PGSIZE_2M,
    ]
    .iter()
    .try_fold(0u64, |a, &b| a.checked_add(b))
    .ok_or(SizingError::TooLarge)?;
    Ok(m)
}

/// Where the sized part goes: `size` bytes (a multiple of 2 MiB) inside one of `ram`, overlapping nothing in
/// `avoid`, at the highest address that fits, aligned to the largest power of two ≤ `size` (at most 1 GiB, at
/// least 2 MiB) so that the buddy heap can hand out its large power-of-two blocks.
///
/// # Errors
///
/// [`SizingError::NoRoom`] with the largest free aligned piece there is; bad `ram` ranges.
pub fn place(ram: &[PhysRange], size: u64, avoid: &[PhysRange]) -> Result<PhysRange, SizingError> {
    let ram = checked_ranges(ram)?;
    let align = if size == 0 {
        PGSIZE_2M
    } else {
        (1u64 << (63 - size.leading_zeros())).clamp(PGSIZE_2M, 1 << 30)
    };
    let mut largest = 0u64;
    // Free pieces of every RAM range (RAM minus `avoid`), highest first.
    let mut pieces: Vec<(u64, u64)> = Vec::new();
    for r in &ram {
        let mut free = alloc::vec![(r.base, r.end())];
        for a in avoid.iter().filter(|a| a.size != 0) {
            let mut next = Vec::new();
            for &(s, e) in &free {
                if a.end() <= s || a.base >= e {
                    next.push((s, e));
                } else {
                    if a.base > s {
                        next.push((s, a.base));
                    }
                    if a.end() < e {
                        next.push((a.end(), e));
                    }
                }
            }
            free = next;
        }
        pieces.extend(free);
    }
    pieces.sort_unstable_by_key(|&(s, _)| core::cmp::Reverse(s));
    for (s, e) in pieces {
        let top = e & !(PGSIZE_2M - 1);
        let start = s.next_multiple_of(PGSIZE_2M);
        if top > start {
            largest = largest.max(top - start);
        }
        if let Some(base) = top.checked_sub(size).map(|b| b & !(align - 1))
            && base >= s
            && size != 0
        {
            return Ok(PhysRange { base, size });
        }
    }
    Err(SizingError::NoRoom {
        need: size,
        found: largest,
    })
}

/// The sized part of the carve-out, placed: where each of its uses lies.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Plan {
    /// The sizes.
    pub memory: HypMemory,
    /// The host stage-2's RAM leaves the sizes are for.
    pub ram_leaves: RamLeaves,
    /// The host-identity domain's input size at least that the sizes are for ([`Machine::identity_iova_bits`]).
    pub identity_iova_bits: u8,
    /// The sized part: heap, then SMMU memory, host-identity tables, domain pool.
    pub region: PhysRange,
}

impl Plan {
    fn part(&self, offset: u64, size: u64) -> PhysRange {
        PhysRange {
            base: self.region.base + offset,
            size,
        }
    }

    /// The heap part (first, at the region's power-of-two aligned base).
    #[must_use]
    pub fn heap(&self) -> PhysRange {
        self.part(0, self.memory.heap())
    }

    /// The SMMU's stream table and queues.
    #[must_use]
    pub fn smmu(&self) -> PhysRange {
        self.part(self.memory.heap(), self.memory.smmu)
    }

    /// The host-identity domain's page tables.
    #[must_use]
    pub fn identity_tables(&self) -> PhysRange {
        self.part(
            self.memory.heap() + self.memory.smmu,
            self.memory.identity_tables,
        )
    }

    /// The host domains' page-table pool.
    #[must_use]
    pub fn domain_pool(&self) -> PhysRange {
        self.part(
            self.memory.heap() + self.memory.smmu + self.memory.identity_tables,
            self.memory.domain_pool,
        )
    }

    /// The regions the host's DT reserves (`no-map`): the fixed carve-out, the sized part's heap, and the rest
    /// of the sized part (SMMU memory first: the stream table and queues), so that tests can aim at each.
    #[must_use]
    pub fn reserved(&self) -> [PhysRange; 3] {
        let smmu = self.smmu();
        [
            self.hyp_ranges()[0],
            self.heap(),
            PhysRange {
                base: smmu.base,
                size: self.region.end() - smmu.base,
            },
        ]
    }

    /// All hypervisor memory: the fixed carve-out and the sized part.
    #[must_use]
    pub fn hyp_ranges(&self) -> [PhysRange; 2] {
        [
            PhysRange {
                base: HYP_CARVEOUT_PA,
                size: HYP_CARVEOUT_SIZE,
            },
            self.region,
        ]
    }
}

/// Sizes the hyp's memory for `platform` (its RAM, MSI doorbells, the StreamIDs of its first SMMU and its ITS
/// nodes) with host RAM mapped by `ram_leaves` and the host-identity domain at least `identity_iova_bits` wide
/// (0: as the machine needs), and
/// places it: highest RAM first, avoiding the fixed carve-out and the host DTB slot, the initrd `/chosen`
/// names, every `/memreserve/` and `/reserved-memory` region, and `loaded` (what the loader put in RAM that
/// the DT does not name: the boot DTB, the Linux `Image`).
///
/// # Errors
///
/// See [`hyp_memory`] and [`place`].
pub fn plan(
    platform: &Platform,
    ram_leaves: RamLeaves,
    identity_iova_bits: u8,
    loaded: &[PhysRange],
) -> Result<Plan, SizingError> {
    let doorbells = smmu_backend::msi_doorbells(platform);
    let sids: Vec<SidRange> = platform
        .smmus
        .first()
        .map(|s| smmu_backend::stream_ids(platform, s, 32))
        .unwrap_or_default();
    let memory = hyp_memory(&Machine {
        ram: &platform.memory,
        doorbells: &doorbells,
        sids: &sids,
        its: platform.gic.as_ref().map_or(0, |g| g.its.len()),
        ram_leaves,
        identity_iova_bits,
    })?;
    let mut avoid = alloc::vec![PhysRange {
        base: HYP_CARVEOUT_PA,
        size: HOST_DTB_PA + HOST_DTB_MAX_SIZE - HYP_CARVEOUT_PA,
    }];
    avoid.extend(platform.chosen.initrd);
    avoid.extend(platform.reserved.iter().map(|r| r.range));
    avoid.extend_from_slice(loaded);
    let region = place(&platform.memory, memory.sized(), &avoid)?;
    Ok(Plan {
        memory,
        ram_leaves,
        identity_iova_bits,
        region,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;

    fn r(base: u64, size: u64) -> PhysRange {
        PhysRange { base, size }
    }

    fn virt(ram: &[PhysRange]) -> HypMemory {
        virt_with(ram, RamLeaves::Pages)
    }

    fn virt_with(ram: &[PhysRange], ram_leaves: RamLeaves) -> HypMemory {
        hyp_memory(&Machine {
            ram,
            doorbells: &[r(0x0809_0000, 0x1_0000)],
            sids: &[SidRange {
                base: 0,
                count: 0x1_0000,
            }],
            its: 1,
            ram_leaves,
            identity_iova_bits: 0,
        })
        .unwrap()
    }

    /// RAM above 512 GiB: host-identity's root is at level 0, so its tables add one level-1 table per 512 GiB
    /// touched; `warden.identity_iova_bits=44` on a small machine adds one (its root's first entry).
    #[test]
    fn identity_tables_above_512_gib() {
        let server = virt(&[r(512 * GIB, 2048 * GIB)]);
        assert_eq!(
            server.identity_tables,
            (1 + 5 + (1 + 2048) + 1 + dispatch::IDENTITY_SPARE_TABLES as u64) * 4096,
            "root; L1 for 0–512 GiB (doorbell) and the four 512 GiB spans of RAM; L2 for GiB 0 and each GiB \
             of RAM; an L3 for the doorbell; the spare"
        );
        let widened = |bits| {
            hyp_memory(&Machine {
                ram: &[r(GIB, GIB)],
                doorbells: &[r(0x0809_0000, 0x1_0000)],
                sids: &[],
                its: 1,
                ram_leaves: RamLeaves::Pages,
                identity_iova_bits: bits,
            })
            .unwrap()
            .identity_tables
        };
        assert_eq!(widened(44), widened(0) + 4096);
        assert_eq!(widened(39), widened(0));
    }

    #[test]
    fn qemu_virt_sizes() {
        let m1 = virt(&[r(GIB, GIB)]);
        assert_eq!(m1.smmu, 257 * 16 * 1024 + SMMU_FIXED_BYTES);
        assert_eq!(
            m1.ownership,
            MIB + 64,
            "1 MiB of words for RAM, 16 for the doorbell frame"
        );
        assert_eq!(
            m1.identity_tables,
            (1 + 2 + 1 + dispatch::IDENTITY_SPARE_TABLES as u64) * 4096,
            "root, L2 for GiB 0 (doorbell) and 1, an L3 for the doorbell (RAM is 2 MiB blocks), the spare"
        );
        assert_eq!(
            m1.host_s2_tables,
            (512 + 1) * 4096,
            "one level-3 table per 2 MiB of RAM, one more for unaligned ends"
        );
        assert!(m1.heap() >= m1.ownership + m1.host_s2_tables + m1.slack);
        assert_eq!(m1.sized() % PGSIZE_2M, 0);
        let m16 = virt(&[r(GIB, 16 * GIB)]);
        assert_eq!(m16.ownership, 16 * MIB + 64);
        assert_eq!(m16.host_s2_tables, (8192 + 1) * 4096);
        // Everything but the host stage-2's page-granular tables (2 MiB per GiB, added for QEMU's TLB: see
        // `host_s2::RamLeaves`) stays within the 0.3 % it always had; with them, within the 0.5 % goal.
        let without_pages = HypMemory {
            host_s2_tables: 0,
            ..m16
        };
        assert!(
            without_pages.basis_points_of(16 * GIB) <= 30,
            "≤ 0.3 % at 16 GiB besides the level-3 tables: {m16:?}"
        );
        assert!(
            m16.basis_points_of(16 * GIB) <= 50,
            "≤ 0.5 % at 16 GiB: {m16:?}"
        );
        // Falling as RAM grows.
        let mut last = u64::MAX;
        for gib in [1, 4, 16, 64, 256, 512] {
            let bp = virt(&[r(GIB, gib * GIB)]).basis_points_of(gib * GIB);
            assert!(bp <= last, "{gib} GiB: {bp} bp after {last}");
            last = bp;
        }
    }

    /// With blocks nothing is reserved per 2 MiB of RAM: the sizes differ from pages by exactly the level-3
    /// tables, and the total stays within the 0.3 % it had before pages.
    #[test]
    fn blocks_reserve_no_level_3_tables() {
        for gib in [1, 16, 64, 512] {
            let ram = [r(GIB, gib * GIB)];
            let pages = virt_with(&ram, RamLeaves::Pages);
            let blocks = virt_with(&ram, RamLeaves::Blocks);
            assert_eq!(blocks.host_s2_tables, 0, "{gib} GiB");
            assert_eq!(
                pages.host_s2_tables,
                host_s2_page_tables(&ram).unwrap(),
                "{gib} GiB"
            );
            assert_eq!(
                blocks,
                HypMemory {
                    host_s2_tables: 0,
                    ..pages
                },
                "{gib} GiB: only the level-3 tables differ"
            );
            assert!(blocks.total() < pages.total(), "{gib} GiB");
            if gib >= 16 {
                assert!(
                    blocks.basis_points_of(gib * GIB) <= 30,
                    "{gib} GiB: {blocks:?}"
                );
            }
        }
    }

    #[test]
    fn each_its_adds_its_emulators_heap() {
        let ram = [r(GIB, 4 * GIB)];
        let m = |its: usize| {
            hyp_memory(&Machine {
                ram: &ram,
                doorbells: &[],
                sids: &[],
                its,
                ram_leaves: RamLeaves::Pages,
                identity_iova_bits: 0,
            })
            .unwrap()
        };
        let (none, one, four) = (m(0), m(1), m(4));
        assert_eq!(none.its, 0);
        assert_eq!(one.its, gic::its::HEAP_BYTES);
        assert_eq!(four.its, 4 * gic::its::HEAP_BYTES);
        // Two of the three tables the ITS may hold at once, and its shadow queue, at least.
        const {
            assert!(gic::its::HEAP_BYTES >= 2 * gic::its::MAX_TABLE_BYTES + (64 << 10));
        }
        // All of it in the heap, besides what the heap held before (the 2 MiB rounding may absorb some).
        for m in [none, one, four] {
            assert!(
                m.heap() >= m.ownership + m.host_s2_tables + m.slack + m.its,
                "{m:?}"
            );
        }
        assert!(four.total() > one.total() && one.total() > none.total());
        assert_eq!(four.smmu, none.smmu);
        assert_eq!(
            hyp_memory(&Machine {
                ram: &ram,
                doorbells: &[],
                sids: &[],
                its: usize::MAX,
                ram_leaves: RamLeaves::Pages,
                identity_iova_bits: 0,
            }),
            Err(SizingError::TooLarge)
        );
    }

    #[test]
    fn holes_and_several_ranges_cost_per_range() {
        let one = virt(&[r(GIB, 4 * GIB)]);
        let two = virt(&[r(GIB, 2 * GIB), r(64 * GIB, 2 * GIB)]);
        assert_eq!(one.ownership, two.ownership, "a hole costs nothing");
        assert!(two.identity_tables <= 2 * one.identity_tables);
    }

    #[test]
    fn hostile_ranges_are_errors() {
        let m = |ram: &[PhysRange]| {
            hyp_memory(&Machine {
                ram,
                doorbells: &[],
                sids: &[],
                its: 0,
                ram_leaves: RamLeaves::Blocks,
                identity_iova_bits: 0,
            })
        };
        assert_eq!(m(&[]), Err(SizingError::NoRam));
        assert_eq!(m(&[r(GIB, 0)]), Err(SizingError::BadRange(r(GIB, 0))));
        assert_eq!(
            m(&[r(GIB + 1, GIB)]),
            Err(SizingError::BadRange(r(GIB + 1, GIB)))
        );
        assert_eq!(
            m(&[r(!0xfff, 0x2000)]),
            Err(SizingError::BadRange(r(!0xfff, 0x2000)))
        );
        assert_eq!(
            m(&[r(GIB, 2 * GIB), r(2 * GIB, GIB)]),
            Err(SizingError::Overlap(r(2 * GIB, GIB)))
        );
        // Huge: beyond the physical address space.
        assert_eq!(
            m(&[r(0, 1 << 63)]),
            Err(SizingError::BeyondPa(r(0, 1 << 63)))
        );
        assert_eq!(
            m(&[r(GIB, 1 << 48)]),
            Err(SizingError::BeyondPa(r(GIB, 1 << 48)))
        );
        assert!(m(&[r(0, 1 << 48)]).is_ok(), "all of it is fine");
    }

    #[test]
    fn placement_takes_the_top_and_avoids() {
        let ram = [r(GIB, GIB)];
        let p = place(&ram, 8 * MIB, &[]).unwrap();
        assert_eq!(p, r(2 * GIB - 8 * MIB, 8 * MIB));
        // Something loaded at the top: below it, aligned to 8 MiB.
        let p = place(&ram, 8 * MIB, &[r(2 * GIB - 3 * MIB, MIB)]).unwrap();
        assert_eq!(p, r(2 * GIB - 16 * MIB, 8 * MIB));
        // Highest range first, even if listed first.
        let p = place(&[r(8 * GIB, GIB), r(GIB, GIB)], 6 * MIB, &[]).unwrap();
        assert_eq!(p.base, 9 * GIB - 8 * MIB, "aligned to 4 MiB");
        // Too small: the largest free piece is reported.
        assert_eq!(
            place(&[r(GIB, 64 * MIB)], 10 * MIB, &[r(GIB, 60 * MIB)]),
            Err(SizingError::NoRoom {
                need: 10 * MIB,
                found: 4 * MIB
            })
        );
        assert!(place(&ram, 0, &[]).is_err());
    }
}
