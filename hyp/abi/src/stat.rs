//! Statistic IDs for the stat call.

abi_enum! {
    /// Statistic IDs for [`Function::Stat`](crate::Function::Stat). IDs from [`STAT_CALLS_BASE`] count calls
    /// per function.
    pub enum Stat: u64, prefix "WARDEN_STAT_" {
        /// Allocated domains (host-identity not counted).
        DomainsInUse = 0 => "DOMAINS_IN_USE",
        /// Maximum number of allocatable domains.
        DomainsMax = 1 => "DOMAINS_MAX",
        /// Pages in the page-table pool (hyp carve-out part plus donated pages).
        PoolTotalPages = 2 => "POOL_TOTAL_PAGES",
        /// Free pages in the page-table pool.
        PoolFreePages = 3 => "POOL_FREE_PAGES",
        /// Pages the host has donated and not reclaimed.
        DonatedPages = 4 => "DONATED_PAGES",
        /// Donated pages not in use as page tables (reclaimable).
        DonatedFreePages = 5 => "DONATED_FREE_PAGES",
        /// StreamIDs attached to a domain other than host-identity.
        AttachedSids = 6 => "ATTACHED_SIDS",
        /// Fault records lost: dropped because the hyp's event ring was full, plus one per SMMU event-queue
        /// overflow (each loses at least one record; the SMMU does not say how many).
        EventsLost = 7 => "EVENTS_LOST",
        /// SMMU commands issued (from the SMMU driver).
        SmmuCommands = 8 => "SMMU_COMMANDS",
        /// SMMU CMD_SYNCs issued (from the SMMU driver).
        SmmuSyncs = 9 => "SMMU_SYNCS",
        /// TLB invalidations requested (range or VMID-wide, each with its sync).
        Invalidations = 10 => "INVALIDATIONS",
        /// Warden calls handled (all functions).
        CallsTotal = 11 => "CALLS_TOTAL",
        /// Warden calls that returned an error.
        ErrorsTotal = 12 => "ERRORS_TOTAL",
        /// 4 KiB pages currently DMA-mapped, summed over paging domains (the GIC emulation's pins, which use
        /// the same per-page counts, are left out).
        MappedPages = 13 => "MAPPED_PAGES",
        /// Page-table pages in use by domains (including host-identity).
        TablePagesInUse = 14 => "TABLE_PAGES_IN_USE",
        /// Hash of the hyp's never-changing memory (text, rodata, canary pages), computed on each call.
        ///
        /// The image's text and read-only data and the canary pages the hypervisor fills at boot; 64 bits,
        /// not cryptographic. `BAD_STAT` where the hypervisor has no such check (host unit tests).
        HypIntegrity = 15 => "HYP_INTEGRITY",
        /// The HYP_INTEGRITY hash as computed at boot, once the canary pages were filled.
        HypIntegrityBoot = 16 => "HYP_INTEGRITY_BOOT",
        /// Host exceptions the hypervisor did not handle since boot: synchronous ones (a trapped instruction
        /// or register it does not emulate) answered with an undefined-instruction exception at EL1,
        /// asynchronous ones ignored. `BAD_STAT` where the hypervisor has no trap handler (host unit tests).
        HostTrapsUnhandled = 17 => "HOST_TRAPS_UNHANDLED",
        /// Host requests the GIC emulation refused: ITS commands replaced by a `SYNC` (unknown opcode, a
        /// field out of range, a `MAPD` whose ITT is not host-owned RAM), table and queue registers naming
        /// memory that is not host-owned RAM or written while in use, `GICR_CTLR.EnableLPIs` with such tables,
        /// VLPI register writes. `BAD_STAT` where the hypervisor does not emulate the GIC.
        GicRefused = 18 => "GIC_REFUSED",
        /// Bytes of RAM the hypervisor keeps for itself: the fixed carve-out plus the part sized from the machine
        /// at boot (docs/abi.md). `BAD_STAT` where the hypervisor did not set it (host unit tests).
        HypMemoryBytes = 19 => "HYP_MEMORY_BYTES",
        /// Command-queue waits: acquisitions of the SMMU driver's lock that found it taken, plus lock-free
        /// issues that lost the compare-and-swap on the queue's producer index or waited for the CPU
        /// publishing `CMDQ_PROD`.
        CmdqLockWaits = 20 => "CMDQ_LOCK_WAITS",
        /// Spins of those waits: reads of the taken lock, lost compare-and-swaps and polls while waiting for
        /// the publishing CPU, summed over all waits.
        CmdqLockSpins = 21 => "CMDQ_LOCK_SPINS",
        /// Reads of the SMMU's `CMDQ_CONS` by CPUs waiting, without the lock, for their batch's CMD_SYNC.
        SyncPolls = 22 => "SYNC_POLLS",
        /// Acquisitions of a domain's lock that found it taken (another CPU in the same domain), all domains.
        DomainLockWaits = 23 => "DOMAIN_LOCK_WAITS",
        /// Reads of a taken domain lock while waiting for it, summed over all waits and domains.
        DomainLockSpins = 24 => "DOMAIN_LOCK_SPINS",
    }
}

/// Stat ID `STAT_CALLS_BASE + n` counts calls of function number `n` ([`Function`](crate::Function)).
pub const STAT_CALLS_BASE: u64 = 0x100;
