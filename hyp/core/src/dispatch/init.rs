//! Boot: the configuration EL2 passes, the host-identity pool, and [`Warden::new`].

use super::*;

/// A range of StreamIDs from an `iommu-map` (`base .. base + count`).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct SidRange {
    /// First StreamID.
    pub base: u32,
    /// Number of StreamIDs.
    pub count: u32,
}

/// What EL2 chooses for [`Warden::new`]: memory and limits. EL2 passes it inside
/// [`BootConfig`](crate::smmu_backend::BootConfig); what the SMMU and the DT say is [`Hardware`].
#[derive(Clone, Copy, Debug)]
pub struct Config<'a> {
    /// All RAM (DT `memory` nodes), page aligned.
    pub ram: &'a [PhysRange],
    /// Hypervisor memory inside RAM (the carve-out): never mapped for any device.
    pub hyp: &'a [PhysRange],
    /// Part of `hyp` given to page tables. Its first [`identity_reserve_pages`] pages (in the order of
    /// the ranges) are the host-identity domain's own pool (its boot tables and `identity_spare_tables`); the
    /// rest, with donated pages, is the pool of the host's domains (at least [`MIN_DOMAIN_POOL_PAGES`]).
    pub pool: &'a [PhysRange],
    /// Maximum number of allocatable domains (≤ 2^[`Hardware::vmid_bits`] - 2, ≤ 65534).
    pub max_domains: u16,
    /// Maximum number of pages the host may have donated at once.
    pub max_donated_pages: usize,
    /// EL2 accesses RAM page `pa` at `pa + phys_offset` (0 for an identity map).
    pub phys_offset: u64,
    /// Capacity of the fault ring.
    pub event_ring: usize,
    /// Spare level-3 tables of the host-identity domain, beyond its boot tables, for the 2 MiB blocks that
    /// donations cut (when it is empty, a donated page of the cut block becomes the table). See
    /// [`IDENTITY_SPARE_TABLES`].
    pub identity_spare_tables: usize,
    /// The host-identity domain's input size at least (`warden.identity_iova_bits=`, see
    /// [`crate::host_s2::IdentityIovaBits`]; 0 for none): it only widens what the machine needs
    /// ([`domain::Geometry::host_identity`]), and never beyond [`Hardware::ias_bits`].
    pub identity_iova_bits: u8,
}

/// What the SMMU and the device tree tell [`Warden::new`] (`smmu_backend::bring_up` reads them).
#[derive(Clone, Copy, Debug)]
pub struct Hardware<'a> {
    /// MMIO frames devices may write (MSI doorbells such as the GIC ITS `GITS_TRANSLATER` frame): mapped in the
    /// host-identity domain and mappable with `PROT_MMIO`.
    pub msi_doorbells: &'a [PhysRange],
    /// Valid StreamIDs (from the DT's `iommu-map`s of this SMMU). Non-overlapping.
    pub sids: &'a [SidRange],
    /// VMID bits of the SMMU (8 or 16).
    pub vmid_bits: u8,
    /// PA bits the SMMU outputs (its OAS: 32, 36, 40, 42, 44, 48).
    pub pa_bits: u8,
    /// Stage-2 input bits the SMMU takes (its IAS: the OAS on an AArch64-only SMMU, 44 on QEMU's): the
    /// host-identity domain's input size cannot exceed it.
    pub ias_bits: u8,
}

/// The host-identity domain's spare level-3 tables that EL2 configures (`Config::identity_spare_tables`):
/// 256 KiB, enough for the blocks that 64 scattered donations cut before donated pages become tables.
pub const IDENTITY_SPARE_TABLES: usize = 64;

/// Carve-out pages the host's domains need at least (beyond the host-identity pool): one domain's root and
/// the reserve allocating calls keep for unmap splits.
pub const MIN_DOMAIN_POOL_PAGES: usize = POOL_RESERVE + 1;

/// The host-identity domain's VMID (the host's domains have their slot + 1).
pub(super) const IDENTITY_VMID: Vmid = Vmid(1);

/// Identity domain prot: everything host RAM, coherent.
pub(super) const IDENTITY_PROT: u64 = abi::PROT_READ | abi::PROT_WRITE | abi::PROT_CACHE;
pub(super) const DOORBELL_PROT: u64 =
    abi::PROT_READ | abi::PROT_WRITE | abi::PROT_MMIO | abi::PROT_NOEXEC;

/// Splits `ranges` (page-aligned parts taken in order) into their first `n` pages and the rest.
pub(super) fn split_pages(ranges: &[PhysRange], n: usize) -> (Vec<PhysRange>, Vec<PhysRange>) {
    let (mut head, mut tail) = (Vec::new(), Vec::new());
    let mut left = n as u64;
    for r in ranges {
        let base = r.base.next_multiple_of(PAGE_SIZE);
        let count = r.end().saturating_sub(base) / PAGE_SIZE;
        let take = count.min(left);
        left -= take;
        if take > 0 {
            head.push(PhysRange {
                base,
                size: take * PAGE_SIZE,
            });
        }
        if count > take {
            tail.push(PhysRange {
                base: base + take * PAGE_SIZE,
                size: (count - take) * PAGE_SIZE,
            });
        }
    }
    (head, tail)
}

/// The host-identity domain's runs: host RAM (read/write, cacheable) and the MSI doorbells, from the
/// ownership map (a scan of every page).
#[cfg(test)]
pub(super) fn identity_runs(own: &Ownership) -> Vec<(u64, u64, u64)> {
    let mut runs: Vec<(u64, u64, u64)> = Vec::new();
    own.host_runs(MemKind::Ram, |b, s| runs.push((b, s, IDENTITY_PROT)));
    own.host_runs(MemKind::Mmio, |b, s| runs.push((b, s, DOORBELL_PROT)));
    runs
}

/// [`identity_runs`] of the ownership map [`Ownership::new`] builds from the same ranges (every page the
/// host's but `hyp`), computed range-wise: each RAM range minus `hyp`, then each doorbell frame, in address
/// order within each kind, as `Ownership::host_runs` reports them. The boot does this instead of scanning
/// the map page by page (twice: for the runs and for their table count); in this crate's unit tests every
/// [`Warden::new`] checks that both agree.
fn boot_identity_runs(
    ram: &[PhysRange],
    msi_doorbells: &[PhysRange],
    hyp: &[PhysRange],
) -> Vec<(u64, u64, u64)> {
    let mut runs: Vec<(u64, u64, u64)> = Vec::new();
    for (ranges, prot) in [(ram, IDENTITY_PROT), (msi_doorbells, DOORBELL_PROT)] {
        let mut sorted = ranges.to_vec();
        sorted.sort_unstable_by_key(|r| r.base);
        for r in sorted {
            for piece in crate::host_s2::subtract(r, hyp) {
                runs.push((piece.base, piece.size, prot));
            }
        }
    }
    runs
}

/// The host-identity domain's boot tables for `runs` (as [`identity_runs`] gives them) in `geometry`.
fn identity_boot(runs: &[(u64, u64, u64)], geometry: Geometry) -> usize {
    let runs: Vec<(u64, u64)> = runs.iter().map(|&(b, s, _)| (b, s)).collect();
    domain::identity_boot_tables(&runs, geometry)
}

/// The host-identity domain's geometry for `runs` ([`domain::Geometry::host_identity`] of their top),
/// widened to `min_bits` as far as an SMMU with `ias_bits` of stage-2 input allows.
///
/// # Errors
///
/// [`InitError::BeyondIas`] if the runs end beyond what the SMMU translates.
fn identity_geometry(
    runs: &[(u64, u64, u64)],
    min_bits: u8,
    ias_bits: u8,
) -> Result<Geometry, InitError> {
    let top = runs.iter().map(|&(b, s, _)| b + s).max().unwrap_or(0);
    Geometry::host_identity(top, min_bits.into(), ias_bits.into()).map_err(|need| {
        InitError::BeyondIas {
            top,
            need_bits: need as u8,
            ias_bits,
        }
    })
}

/// Pages of `Config::pool` the host-identity domain keeps for its tables: its boot tables
/// ([`domain::identity_boot_tables`] over host RAM (`ram` less `hyp`) and the doorbells, in the geometry
/// [`Warden::new`] picks with `Config::identity_iova_bits` = `min_iova_bits` on an SMMU with the largest IAS
/// (48 bits; with a smaller one it picks a geometry needing no more pages): no 1 GiB blocks, so the root,
/// with a level-0 root a level-1 table per 512 GiB, one level-2 table per GiB and a level-3 table per 2 MiB
/// block that is only partly host memory) plus `spare_tables` (`Config::identity_spare_tables`).
/// [`Warden::new`] takes them from the start of `Config::pool`.
///
/// # Errors
///
/// The memory description is inconsistent.
pub fn identity_reserve_pages(
    ram: &[PhysRange],
    msi_doorbells: &[PhysRange],
    hyp: &[PhysRange],
    spare_tables: usize,
    min_iova_bits: u8,
) -> Result<usize, InitError> {
    // The same checks of the ranges as the boot's.
    Ownership::new(ram, msi_doorbells, hyp)?;
    let runs = boot_identity_runs(ram, msi_doorbells, hyp);
    let geometry = identity_geometry(&runs, min_iova_bits, domain::MAX_IOVA_BITS as u8)?;
    Ok(identity_boot(&runs, geometry).saturating_add(spare_tables))
}

impl<B: Backend> Warden<B> {
    /// Builds the state: the ownership map, the two pools, the host-identity domain (all host RAM and the
    /// doorbells 1:1, largest blocks), and points every valid StreamID at host-identity through `backend`.
    ///
    /// # Errors
    ///
    /// See [`InitError`].
    pub fn new(config: &Config<'_>, hw: &Hardware<'_>, backend: B) -> Result<Self, InitError> {
        let vmid_limit = 1u32 << hw.vmid_bits.min(16);
        if !matches!(hw.vmid_bits, 8 | 16)
            || config.max_domains == 0
            || u32::from(config.max_domains) + 2 > vmid_limit
            || config.max_domains == u16::MAX
            || domain::pa_size_encoding(hw.pa_bits).is_none()
            || hw.pa_bits > 48
            || config.event_ring == 0
        {
            return Err(InitError::BadConfig);
        }
        let mut sid_ranges = hw.sids.to_vec();
        sid_ranges.sort_unstable_by_key(|r| r.base);
        let mut total_sids = 0usize;
        for (i, r) in sid_ranges.iter().enumerate() {
            if r.count == 0 || r.base.checked_add(r.count - 1).is_none() {
                return Err(InitError::BadConfig);
            }
            if let Some(next) = sid_ranges.get(i + 1)
                && u64::from(r.base) + u64::from(r.count) > u64::from(next.base)
            {
                return Err(InitError::BadConfig);
            }
            total_sids += r.count as usize;
        }
        for p in config.pool {
            if !config
                .hyp
                .iter()
                .any(|h| h.base <= p.base && p.end() <= h.end())
            {
                return Err(InitError::BadConfig);
            }
        }

        let own = Ownership::new(config.ram, hw.msi_doorbells, config.hyp)?;
        let runs = boot_identity_runs(config.ram, hw.msi_doorbells, config.hyp);
        #[cfg(test)]
        assert_eq!(
            runs,
            identity_runs(&own),
            "range-wise runs = the ownership map's"
        );
        let geometry = identity_geometry(&runs, config.identity_iova_bits, hw.ias_bits)?;
        let boot = identity_boot(&runs, geometry);
        let reserve = boot.saturating_add(config.identity_spare_tables);
        let have: usize = config
            .pool
            .iter()
            .map(|r| {
                (r.end().saturating_sub(r.base.next_multiple_of(PAGE_SIZE)) / PAGE_SIZE) as usize
            })
            .sum();
        let need = reserve + MIN_DOMAIN_POOL_PAGES;
        if have < need {
            return Err(InitError::PoolTooSmall { need, have });
        }
        let (identity_ranges, domain_ranges) = split_pages(config.pool, reserve);
        let identity_pool = Arc::new(PagePool::new(&identity_ranges, 0, config.phys_offset));
        let pool = Arc::new(PagePool::new(
            &domain_ranges,
            config.max_donated_pages,
            config.phys_offset,
        ));

        // The host-identity domain, slot 0, VMID 1, with tables from its own pool only, in 2 MiB blocks at most.
        let mut identity =
            PagingDomain::with_geometry(identity_pool.clone(), 0, IDENTITY_VMID, 0, geometry)?;
        for (base, size, prot) in runs {
            for (b, s) in domain::pieces_below_1g(base, size) {
                let need = identity.map_need(b, b, s)?;
                identity_pool.reserve(need, 0)?;
                identity.map(b, b, s, domain::attributes(prot))?;
            }
        }
        debug_assert_eq!(
            identity.table_pages(),
            boot,
            "identity_boot_tables is exact"
        );

        let mut slots = Vec::with_capacity(usize::from(config.max_domains) + 1);
        slots.push(Mutex::new(Slot {
            generation: 0,
            kind: SlotKind::Identity(identity),
        }));
        for _ in 0..config.max_domains {
            slots.push(Mutex::new(Slot {
                generation: 1,
                kind: SlotKind::Free,
            }));
        }
        let free = (1..=config.max_domains).rev().collect();
        let mut attached = alloc::vec![0u32; usize::from(config.max_domains) + 1];
        attached[0] = total_sids as u32;

        let w = Self {
            backend,
            own,
            pool,
            identity_pool,
            sid_ranges,
            streams: Mutex::new(Streams {
                domain: alloc::vec![0; total_sids],
                attached,
            }),
            alloc: Mutex::new(AllocState { free, in_use: 0 }),
            slots,
            events: Mutex::new(EventRing {
                buf: alloc::vec![FaultRecord::default(); config.event_ring],
                head: 0,
                len: 0,
                lost: 0,
            }),
            pa_bits: hw.pa_bits,
            vmid_bits: hw.vmid_bits,
            max_domains: config.max_domains,
            max_donated: config.max_donated_pages,
            calls: Default::default(),
            calls_total: AtomicU64::new(0),
            errors_total: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
            slot_locks: LockStats::new(),
            phys_offset: config.phys_offset,
            integrity: spin::Once::new(),
            trap_log: spin::Once::new(),
            gic_stats: spin::Once::new(),
            hyp_memory: spin::Once::new(),
        };
        let identity_ste = w.identity_ste();
        for r in &w.sid_ranges {
            w.backend
                .install_ste_range(StreamId(r.base), r.count, identity_ste)?;
        }
        Ok(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: u64 = 1 << 30;

    fn r(base: u64, size: u64) -> PhysRange {
        PhysRange { base, size }
    }

    /// The range-wise runs equal the ownership map's scan: ranges out of order, hyp pieces at a range's
    /// start, middle and end, two doorbell frames, no hyp at all.
    #[test]
    fn boot_runs_equal_the_ownership_scan() {
        let ram = [r(8 * G, 2 * G), r(G, G)];
        let doorbells = [r(0x0809_0000, 0x1_0000), r(0x0800_0000, 0x1000)];
        for hyp in [
            &[
                r(G, 0xc0_0000),
                r(0x7f00_0000, 0x100_0000),
                r(9 * G + 0x20_0000, 0x4000),
            ][..],
            &[r(10 * G - 0x20_0000, 0x20_0000)][..],
            &[][..],
        ] {
            let own = Ownership::new(&ram, &doorbells, hyp).unwrap();
            let runs = boot_identity_runs(&ram, &doorbells, hyp);
            assert_eq!(runs, identity_runs(&own), "{hyp:?}");
            assert!(runs.iter().all(|&(_, s, _)| s > 0));
        }
    }
}
