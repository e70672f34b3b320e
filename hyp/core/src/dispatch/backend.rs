//! What the dispatcher needs from the hardware: the [`Backend`] trait and the types it speaks.
//!
//! The trait speaks the SMMU driver's types ([`StreamId`], [`Vmid`], [`S2Config`], [`S2Invalidation`]). Four
//! types of its own remain, each because the dispatcher needs a different shape than the driver's: [`SteConfig`]
//! (a blocked domain's STE needs a table only the backend has), [`FaultRecord`] (the record `READ_EVENT` returns,
//! `GERROR` included), [`HwError`] (failures of the driver *and* of the host stage-2, as the ABI reports them)
//! and [`SmmuCounters`] (the driver's counters and the backend's own lock statistics).

use warden_smmu::{S2Config, S2Invalidation, StreamId, Vmid};

/// What an STE should do with a StreamID's transactions. Not a driver [`warden_smmu::Ste`]: a blocked domain's
/// STE translates through an empty table the backend owns (see `smmu_backend::SmmuBackend::blocked_ste`), which
/// the dispatcher cannot name.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum SteConfig {
    /// Blocked domains: every transaction fails and is recorded as a fault (stage 2 through an empty table,
    /// not an ABORT STE, so the host learns of the blocked DMA).
    Blocked,
    /// Stage-2 translation through a domain (its [`crate::domain::PagingDomain::s2_config`]).
    Translate(S2Config),
}

/// A failure reported by the [`Backend`]: of the SMMU driver (`smmu_backend::hw_error` maps a
/// [`warden_smmu::Error`]) or of the host stage-2, in the three outcomes the ABI tells apart (`TIMEOUT`,
/// `NOMEM`, `HW_ERROR`).
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
pub enum HwError {
    /// The SMMU did not complete in time.
    #[error("SMMU timeout")]
    Timeout,
    /// The backend ran out of memory (e.g. host stage-2 tables).
    #[error("backend out of memory")]
    NoMem,
    /// Any other failure.
    #[error("SMMU or stage-2 failure")]
    Failed,
}

/// One fault record as `READ_EVENT` returns it: a driver [`warden_smmu::Event`] reduced to the ABI's reason and
/// flags (`smmu_backend::fault_record`), or a `GERROR` the driver acknowledged, which no event record carries.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct FaultRecord {
    /// StreamID.
    pub sid: StreamId,
    /// Input address (IOVA), if `flags` has [`EVENT_FLAG_IOVA_VALID`](warden_abi::EVENT_FLAG_IOVA_VALID).
    pub iova: u64,
    /// Reason: the SMMUv3 event type (`abi::EVENT_REASON_*`).
    pub reason: u8,
    /// `abi::EVENT_FLAG_*`.
    pub flags: u16,
}

/// Counters the SMMU driver keeps (a subset of [`warden_smmu::Counters`]) and the backend's command-queue
/// lock statistics, which the driver does not see.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct SmmuCounters {
    /// Commands issued.
    pub commands: u64,
    /// CMD_SYNCs issued.
    pub syncs: u64,
    /// Event-queue overflows the SMMU signalled (each lost at least one fault record; the SMMU does not say
    /// how many).
    pub event_overflows: u64,
    /// Command-queue waits: driver-lock acquisitions that found it taken, plus lock-free issues that lost a
    /// compare-and-swap or waited for the CPU publishing `CMDQ_PROD`.
    pub cmdq_lock_waits: u64,
    /// Spins of those waits (taken-lock reads, lost compare-and-swaps, polls for the publisher).
    pub cmdq_lock_spins: u64,
    /// `CMDQ_CONS` reads by CPUs waiting for their CMD_SYNC without the lock.
    pub sync_polls: u64,
}

/// What [`Warden`](super::Warden) needs from the hardware. Implemented by EL2 over warden-smmu's driver and
/// the host stage-2 (host tests run that same adapter over the fake SMMU: `test_support`). Every method must
/// return (timeouts become [`HwError::Timeout`]).
/// `Warden<B>` is `Sync` (shareable by all CPUs) exactly when `B` is.
pub trait Backend {
    /// Writes the STE of `sid` so that the device never sees a half-written entry, and waits for the SMMU to
    /// observe it (CFGI_STE + CMD_SYNC). While the SMMU is still disabled (boot), the backend may skip commands.
    ///
    /// # Errors
    ///
    /// A timeout or another SMMU failure.
    fn install_ste(&self, sid: StreamId, config: SteConfig) -> Result<(), HwError>;

    /// Points `count` StreamIDs from `first` at the same configuration (boot: every StreamID of an `iommu-map`
    /// goes to host-identity), as one operation rather than `count` [`Backend::install_ste`]s.
    ///
    /// # Errors
    ///
    /// As [`Backend::install_ste`].
    fn install_ste_range(
        &self,
        first: StreamId,
        count: u32,
        config: SteConfig,
    ) -> Result<(), HwError>;

    /// Invalidates every cached translation of `inv`'s range in its VMID (walk caches too unless
    /// `inv.leaf_only`) and waits for completion (one CMD_SYNC).
    ///
    /// # Errors
    ///
    /// A timeout or another SMMU failure.
    fn invalidate_range(&self, inv: &S2Invalidation) -> Result<(), HwError>;

    /// Invalidates everything cached for `vmid` and waits for completion.
    ///
    /// # Errors
    ///
    /// A timeout or another SMMU failure.
    fn invalidate_vmid(&self, vmid: Vmid) -> Result<(), HwError>;

    /// The next fault record from the SMMU's event queue, if any.
    fn next_event(&self) -> Option<FaultRecord>;

    /// Removes `[pa, pa + len)` from the host's stage-2 (donation), with the CPU TLB maintenance that needs.
    ///
    /// # Errors
    ///
    /// The host stage-2 could not be changed (nothing changed).
    fn host_unmap(&self, pa: u64, len: u64) -> Result<(), HwError>;

    /// Gives `[pa, pa + len)` back to the host's stage-2 (reclaim).
    ///
    /// # Errors
    ///
    /// The host stage-2 could not be changed (nothing changed).
    fn host_map(&self, pa: u64, len: u64) -> Result<(), HwError>;

    /// The driver's command counters.
    fn counters(&self) -> SmmuCounters {
        SmmuCounters::default()
    }

    /// Whether the SMMU has range invalidation (IDR3.RIL), reported as a feature bit.
    fn range_invalidation(&self) -> bool {
        false
    }

    /// Whether replacing a live block by a table needs break-before-make (the SMMU does not report
    /// `IDR3.BBML` = 2). The default, `true`, is the safe answer for any SMMU.
    fn break_before_make(&self) -> bool {
        true
    }
}
