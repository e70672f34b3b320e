//! [`Backend`] over warden-smmu's driver, and the boot sequence that hands the SMMU to [`Warden`].
//!
//! [`SmmuBackend`] owns the [`Smmu`] behind one `spin::Mutex`, the driver lock (the innermost lock:
//! [`Warden`] calls the backend with its domain and stream locks held, never the other way round), and forwards
//! the host stage-2 half of the trait (donation, reclaim) to a [`HostStage2Ops`] the EL2 image supplies. An
//! invalidation does not hold that lock: it reserves, writes and publishes its commands and `CMD_SYNC` through
//! the driver's [`SharedCmdq`] (only the CPU that publishes `CMDQ_PROD` for everyone takes the lock, with
//! `try_lock`), then waits for its sync, taking the lock only if the queue stalls (to publish and look for a
//! command error) or an error is pending, so CPUs invalidating at once fill the queue and wait together. STE
//! updates (attach, detach: several dependent syncs) still run whole under the lock. It translates:
//! - [`SteConfig`] → [`Ste`] (stage 2 from the domain's [`warden_smmu::S2Config`]: 4 KiB granule, WB
//!   inner-shareable walks, faults recorded; [`SteConfig::Blocked`], a blocked domain, → stage 2 through an
//!   empty table, so that its DMA is *reported*, see [`SmmuBackend::blocked_ste`]);
//! - [`warden_smmu::Error`] → [`HwError`] (timeouts stay timeouts);
//! - [`Event`] → [`FaultRecord`], one at a time from the SMMU's event queue (the dispatcher's ring is the only
//!   one), with a `GERROR` the driver acknowledged reported as [`abi::EVENT_REASON_GERROR`];
//! - the driver's [`Counters`] → [`SmmuCounters`].
//!
//! # Boot ([`bring_up`])
//!
//! 1. [`Smmu::init`]: `GBPA.ABORT` before anything else, SMMU disabled, ID registers probed and checked, stream
//!    table and queues allocated, then the SMMU is **enabled with every StreamID aborting** (no level-2 table
//!    yet: `C_BAD_STREAMID`). Enabling before the host-identity STEs exist is equivalent to enabling after:
//!    until an STE is valid nothing passes, and the host has not run yet.
//! 2. The StreamIDs: every `iommu-map` entry of every PCI host, plus every `iommus` specifier, that names this
//!    SMMU ([`stream_ids`]), merged into non-overlapping [`SidRange`]s and clipped to the stream table.
//! 3. [`Warden::new`] builds the host-identity domain and points each StreamID range at it with one
//!    [`Backend::install_ste_range`], which is [`Smmu::write_ste_range`]: dwords 1..7 of every STE behind an
//!    abort dword 0 (a level-2 table not installed yet written whole that way, then linked), `CFGI_ALL` +
//!    sync, dword 0 (valid), `CFGI_ALL` + sync. Nothing is done twice, no per-table or per-StreamID command
//!    is issued, and StreamIDs outside every range keep aborting.
//!
//! ## Which StreamIDs get the host-identity STE
//!
//! All of them that the DT names, not just the PCI functions present at boot. The hyp could enumerate ECAM
//! (it may read config space), but Linux assigns bus numbers behind bridges itself and hot-plug adds functions
//! later, so a boot-time scan would leave real devices aborting. The price is memory: one 16 KiB level-2 table
//! per 256 StreamIDs, 4 MiB for QEMU virt's `iommu-map = <0 &smmu 0 0x10000>`. [`stream_table_bytes`] computes
//! it and [`bring_up`] refuses to start past [`BootConfig::strtab_budget`] (a clear boot error, not an
//! allocation failure half-way).

#[cfg(test)]
mod tests;

use alloc::sync::Arc;
use alloc::vec::Vec;

use spin::Mutex;
use warden_abi as abi;
use warden_dt::{Phandle, PhysRange, Platform, SmmuV3};
use warden_smmu::cmd::InvalidationPolicy;
use warden_smmu::driver::SharedCmdq;
use warden_smmu::{
    Command, Counters, DmaMemory, Event, Features, RegisterAccess, S2Invalidation, Smmu, Ste,
    StreamId, Vmid,
};

use crate::dispatch::{
    Backend, Config, FaultRecord, Hardware, HwError, InitError, SidRange, SmmuCounters, SteConfig,
    Warden,
};
use crate::domain;
use crate::lock_stats::LockStats;

/// The host stage-2 side of donation and reclaim: EL2 implements it over its host stage-2 (with the TLB
/// maintenance that needs); tests use a recording mock.
pub trait HostStage2Ops {
    /// Removes `[pa, pa + len)` from the host's stage-2 (the pages were donated to the hyp).
    ///
    /// # Errors
    ///
    /// The stage-2 could not be changed; nothing changed.
    fn unmap(&self, pa: u64, len: u64) -> Result<(), HwError>;

    /// Maps `[pa, pa + len)` back into the host's stage-2 (the pages were reclaimed).
    ///
    /// # Errors
    ///
    /// The stage-2 could not be changed; nothing changed.
    fn map(&self, pa: u64, len: u64) -> Result<(), HwError>;
}

/// VMID of the blocked STE's empty table (the dispatcher gives host-identity VMID 1 and domains 2 and up).
pub const BLOCKED_VMID: u16 = 0;

/// [`Backend`] over an initialised [`Smmu`] and a [`HostStage2Ops`].
pub struct SmmuBackend<R: RegisterAccess, M: DmaMemory, H: HostStage2Ops> {
    smmu: Mutex<Smmu<R, M>>,
    /// The command queue shared by every CPU: issuing and waiting for a `CMD_SYNC` without `smmu`'s lock.
    cmdq: Arc<SharedCmdq<R::Cons, M::Writer>>,
    /// The driver's invalidation policy (fixed at init), to plan invalidations without the lock.
    policy: InvalidationPolicy,
    /// Contention on `smmu`'s lock (with the command queue's own, `STAT CMDQ_LOCK_WAITS`/`CMDQ_LOCK_SPINS`).
    lock_stats: LockStats,
    host: H,
    features: Features,
    range_invalidation: bool,
    /// The STE for [`SteConfig::Blocked`] (blocked domains): see [`SmmuBackend::blocked_ste`].
    blocked: Ste,
}

/// A driver failure as the dispatcher reports it: timeouts stay timeouts, everything else is a hardware error
/// (out-of-memory included: the driver's memory is hyp memory that host donations cannot replenish).
pub fn hw_error(e: warden_smmu::Error) -> HwError {
    match e {
        warden_smmu::Error::Timeout(_) => HwError::Timeout,
        _ => HwError::Failed,
    }
}

/// A decoded SMMU event as a fault record for the host.
pub fn fault_record(e: &Event) -> FaultRecord {
    let mut flags = 0u64;
    if e.kind.is_translation_fault() {
        flags |= abi::EVENT_FLAG_IOVA_VALID;
        if !e.read {
            flags |= abi::EVENT_FLAG_WRITE;
        }
    }
    if e.instruction {
        flags |= abi::EVENT_FLAG_INSTR;
    }
    if e.privileged {
        flags |= abi::EVENT_FLAG_PRIV;
    }
    if e.stage2 {
        flags |= abi::EVENT_FLAG_STAGE2;
    }
    FaultRecord {
        sid: e.sid,
        iova: e.input_addr,
        reason: e.id,
        flags: flags as u16,
    }
}

impl<R: RegisterAccess, M: DmaMemory, H: HostStage2Ops> SmmuBackend<R, M, H> {
    /// A backend for a running system: every [`Backend::install_ste`] goes to the SMMU at once.
    ///
    /// # Errors
    ///
    /// [`warden_smmu::Error::OutOfMemory`] if the blocked domain's empty table cannot be allocated.
    pub fn new(mut smmu: Smmu<R, M>, host: H) -> Result<Self, warden_smmu::Error> {
        let features = *smmu.features();
        let range_invalidation = smmu.invalidation_policy().range;
        let page = abi::PAGE_SIZE as usize;
        let root = smmu
            .memory_mut()
            .alloc_zeroed(page, page)
            .ok_or(warden_smmu::Error::OutOfMemory(page))?;
        let blocked = Ste::stage2(&domain::Geometry::DOMAIN.s2_config(
            Vmid(BLOCKED_VMID),
            root,
            features.oas_encoding as u8,
        ));
        Ok(Self {
            cmdq: smmu.shared_cmdq(),
            policy: smmu.invalidation_policy(),
            lock_stats: LockStats::new(),
            smmu: Mutex::new(smmu),
            host,
            features,
            range_invalidation,
            blocked,
        })
    }

    /// The STE of a blocked StreamID: stage 2 through an all-invalid root table (VMID [`BLOCKED_VMID`], which
    /// no domain uses; an empty table never fills a TLB). Every access faults with `F_TRANSLATION`, which the
    /// SMMU records (`S2R`), so DMA of a blocked device is reported, whereas an ABORT STE
    /// ([`Ste::abort`], still used for StreamIDs the DT does not name) terminates it silently.
    pub fn blocked_ste(&self) -> Ste {
        self.blocked
    }

    /// The STE for a dispatch-level configuration.
    pub fn ste_for(&self, config: SteConfig) -> Ste {
        match config {
            SteConfig::Blocked => self.blocked,
            SteConfig::Translate(c) => Ste::stage2(&c),
        }
    }

    /// The features probed at init (for the boot log: its `Display` is one line).
    pub fn features(&self) -> &Features {
        &self.features
    }

    /// All of the driver's counters.
    pub fn driver_counters(&self) -> Counters {
        self.lock().counters()
    }

    /// Runs `f` with the driver locked (diagnostics, and the fake's test hooks through [`Smmu::regs_mut`]).
    pub fn with_smmu<T>(&self, f: impl FnOnce(&mut Smmu<R, M>) -> T) -> T {
        f(&mut self.lock())
    }

    /// The host stage-2 operations.
    pub fn host(&self) -> &H {
        &self.host
    }

    /// Locks the driver, counting contention.
    fn lock(&self) -> spin::MutexGuard<'_, Smmu<R, M>> {
        self.lock_stats.lock(&self.smmu)
    }

    /// Issues `cmds` and a `CMD_SYNC` as one batch through the shared command queue, then waits for that
    /// sync; the driver's lock is only tried to publish `CMDQ_PROD` and taken on the slow paths.
    fn issue_and_wait(&self, cmds: impl IntoIterator<Item = Command>) -> Result<(), HwError> {
        let ticket = self
            .cmdq
            .issue(cmds, |try_only| {
                if try_only {
                    self.smmu.try_lock()
                } else {
                    Some(self.lock())
                }
            })
            .map_err(hw_error)?;
        self.cmdq
            .wait(ticket, |step| self.lock().sync_step(ticket, step))
            .map_err(hw_error)
    }
}

impl<R: RegisterAccess, M: DmaMemory, H: HostStage2Ops> Backend for SmmuBackend<R, M, H> {
    fn install_ste(&self, sid: StreamId, config: SteConfig) -> Result<(), HwError> {
        let ste = self.ste_for(config);
        self.lock().write_ste(sid, &ste).map_err(hw_error)
    }

    fn install_ste_range(
        &self,
        first: StreamId,
        count: u32,
        config: SteConfig,
    ) -> Result<(), HwError> {
        let ste = self.ste_for(config);
        self.lock()
            .write_ste_range(first, count, &ste)
            .map_err(hw_error)
    }

    fn invalidate_range(&self, inv: &S2Invalidation) -> Result<(), HwError> {
        self.issue_and_wait(warden_smmu::cmd::plan_s2_invalidation(inv, &self.policy))
    }

    fn invalidate_vmid(&self, vmid: Vmid) -> Result<(), HwError> {
        self.issue_and_wait([Command::tlbi_s12_vmall(vmid)])
    }

    fn next_event(&self) -> Option<FaultRecord> {
        let mut smmu = self.lock();
        if let Err(e) = smmu.check_global_errors() {
            let code = match e {
                warden_smmu::Error::GlobalError(bits) => u64::from(bits),
                warden_smmu::Error::CommandError { opcode, .. } => u64::from(opcode),
                _ => 0,
            };
            return Some(FaultRecord {
                sid: StreamId(0),
                iova: code,
                reason: abi::EVENT_REASON_GERROR as u8,
                flags: 0,
            });
        }
        // One record straight from the SMMU's event queue: the dispatcher's ring is the only buffer, so a
        // record is either delivered or counted as lost there (or lost by the SMMU itself, counted per overflow).
        let mut record = None;
        smmu.drain_events(1, |e| record = Some(fault_record(&e)));
        record
    }

    fn host_unmap(&self, pa: u64, len: u64) -> Result<(), HwError> {
        self.host.unmap(pa, len)
    }

    fn host_map(&self, pa: u64, len: u64) -> Result<(), HwError> {
        self.host.map(pa, len)
    }

    fn counters(&self) -> SmmuCounters {
        let c = self.lock().counters();
        let (cmdq_waits, cmdq_spins) = self.cmdq.contention();
        SmmuCounters {
            commands: c.commands,
            syncs: c.syncs,
            event_overflows: c.evtq_overflows,
            cmdq_lock_waits: self.lock_stats.waits() + cmdq_waits,
            cmdq_lock_spins: self.lock_stats.spins() + cmdq_spins,
            sync_polls: c.sync_polls,
        }
    }

    fn range_invalidation(&self) -> bool {
        self.range_invalidation
    }

    fn break_before_make(&self) -> bool {
        self.features.bbml < 2
    }
}

/// The StreamIDs routed to `smmu`: every PCI host `iommu-map` entry and every `iommus` specifier naming it,
/// sorted, merged (overlapping or adjacent ranges joined) and clipped to `sid_bits`.
pub fn stream_ids(platform: &Platform, smmu: &SmmuV3, sid_bits: u32) -> Vec<SidRange> {
    let Some(phandle) = smmu.phandle else {
        return Vec::new();
    };
    let limit = if sid_bits >= 32 {
        1u64 << 32
    } else {
        1u64 << sid_bits
    };
    let mut spans: Vec<(u64, u64)> = Vec::new();
    for host in &platform.pci_hosts {
        for e in host.iommu_map.iter().filter(|e| e.iommu == phandle) {
            spans.push((
                u64::from(e.sid_base),
                u64::from(e.sid_base) + u64::from(e.length),
            ));
        }
    }
    for client in &platform.iommu_clients {
        for spec in client.iommus.iter().filter(|s| s.iommu == phandle) {
            if let Some(&sid) = spec.ids.first() {
                spans.push((u64::from(sid), u64::from(sid) + 1));
            }
        }
    }
    spans.retain_mut(|(start, end)| {
        *end = (*end).min(limit);
        start < end
    });
    spans.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (start, end) in spans {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
        .into_iter()
        .map(|(start, end)| SidRange {
            base: start as u32,
            count: (end - start) as u32,
        })
        .collect()
}

/// Bytes of level-2 stream tables the StreamIDs of `sids` need (`2^split` STEs of 64 bytes per table; 0 for a
/// linear table, which [`Smmu::init`] allocated whole).
pub fn stream_table_bytes(sids: &[SidRange], split: Option<u32>) -> u64 {
    let Some(split) = split else { return 0 };
    let mut leaves: Vec<u64> = Vec::new();
    for r in sids {
        let first = u64::from(r.base) >> split;
        let last = (u64::from(r.base) + u64::from(r.count) - 1) >> split;
        for leaf in first..=last {
            if leaves.last() != Some(&leaf) {
                leaves.push(leaf);
            }
        }
    }
    leaves.dedup();
    leaves.len() as u64 * ((warden_smmu::ste::STE_SIZE as u64) << split)
}

/// What [`bring_up`] needs besides the platform and the hardware: the dispatcher's [`Config`] (the
/// [`Hardware`] half of [`Warden::new`]'s input, bring_up reads from the DT and the SMMU) and the SMMU's.
#[derive(Clone, Copy, Debug)]
pub struct BootConfig<'a> {
    /// Memory and limits of the dispatcher.
    pub warden: Config<'a>,
    /// Most bytes of level-2 stream tables the host-identity StreamIDs may take.
    pub strtab_budget: u64,
    /// Driver settings.
    pub driver: warden_smmu::Config,
}

/// Why [`bring_up`] failed (a boot error: the hyp stops with this message).
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
pub enum BootError {
    /// The SMMU node has no phandle, so nothing can route StreamIDs to it.
    #[error("the SMMU node has no phandle")]
    NoPhandle,
    /// The SMMU driver failed (missing feature, timeout, memory).
    #[error("SMMU: {0}")]
    Smmu(#[from] warden_smmu::Error),
    /// The host-identity StreamIDs need more level-2 stream table memory than the budget.
    #[error("stream table needs {need} bytes for the DT's StreamIDs, budget {budget}")]
    StreamTableBudget {
        /// Bytes needed.
        need: u64,
        /// The budget.
        budget: u64,
    },
    /// The SMMU's output size is not one the dispatcher takes.
    #[error("SMMU output address size unusable")]
    OutputSize,
    /// [`Warden::new`] refused the configuration.
    #[error("hypercall state: {0}")]
    Init(#[from] InitError),
}

/// The MSI doorbells devices must reach: the GITS_TRANSLATER frame of every GICv3 ITS.
pub fn msi_doorbells(platform: &Platform) -> Vec<PhysRange> {
    platform
        .gic
        .iter()
        .flat_map(|g| g.its.iter())
        .filter_map(|its| its.translation_frame())
        .collect()
}

/// Takes the SMMU `node` of `platform` through `regs`/`mem` and returns the hypervisor's DMA state with every
/// StreamID the DT routes to it in the host-identity domain (see the module docs for the order).
///
/// # Errors
///
/// See [`BootError`]. On error the SMMU may be left enabled with every StreamID aborting (safe).
pub fn bring_up<R, M, H>(
    platform: &Platform,
    node: &SmmuV3,
    regs: R,
    mem: M,
    host: H,
    config: &BootConfig<'_>,
) -> Result<Warden<SmmuBackend<R, M, H>>, BootError>
where
    R: RegisterAccess,
    M: DmaMemory,
    H: HostStage2Ops,
{
    let _: Phandle = node.phandle.ok_or(BootError::NoPhandle)?;
    let smmu = Smmu::init(regs, mem, config.driver)?;
    let features = *smmu.features();
    let sid_bits = smmu.sid_bits();
    let sids = stream_ids(platform, node, sid_bits);
    let two_level = sid_bits > config.driver.linear_max_sid_bits;
    let split = two_level.then(|| config.driver.split.clamp(1, sid_bits));
    let need = stream_table_bytes(&sids, split);
    if need > config.strtab_budget {
        return Err(BootError::StreamTableBudget {
            need,
            budget: config.strtab_budget,
        });
    }
    let pa_bits = features
        .oas_bits
        .and_then(|b| u8::try_from(b.min(48)).ok())
        .ok_or(BootError::OutputSize)?;
    let doorbells = msi_doorbells(platform);
    let backend = SmmuBackend::new(smmu, host)?;
    let warden = Warden::new(
        &config.warden,
        &Hardware {
            msi_doorbells: &doorbells,
            sids: &sids,
            vmid_bits: if features.vmid16 { 16 } else { 8 },
            pa_bits,
            ias_bits: u8::try_from(features.ias_bits).map_err(|_| BootError::OutputSize)?,
        },
        backend,
    )?;
    Ok(warden)
}
