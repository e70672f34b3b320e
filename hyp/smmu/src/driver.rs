//! The SMMUv3 driver: initialisation, command batches, stream table entries, event draining.
//!
//! Invariants (each is tested against the behavioural fake in `driver/tests.rs`):
//! - Initialisation sets `GBPA.ABORT` (with the `Update` handshake) before touching anything else, so no DMA
//!   bypasses the SMMU between reset and enable; every StreamID starts as ABORT (linear table filled with abort
//!   STEs; 2-level leaves filled with abort STEs when allocated; StreamIDs with no leaf are rejected by the SMMU
//!   with a `C_BAD_STREAMID` event, recorded because `CR2.RECINVSID` is set).
//! - Every poll is bounded by [`Config::poll_limit`]; running out is `Err(Error::Timeout)`, never a hang.
//! - A batch reserves its slots with a compare-and-swap, writes its commands and one `CMD_SYNC`, and one owner
//!   updates `CMDQ_PROD` for every CPU's written commands ([`SharedCmdq::issue`], no lock held but the
//!   owner's `try_lock` for the register write); its caller waits for `CMDQ_CONS` to pass that sync
//!   ([`SharedCmdq::wait`], without the lock), so several CPUs fill the queue and wait at once. A batch
//!   larger than the free space is claimed in chunks, waiting (bounded) for room.
//! - A command the SMMU rejects (`GERROR.CMDQ_ERR`) is replaced in the queue by a `CMD_SYNC`, the error is
//!   acknowledged through `GERRORN`, the batch completes, and the caller of the batch that owns the command
//!   (whichever CPU noticed the error) gets `Err(Error::CommandError)`.
//! - STE updates never expose a half-written entry: see [`Smmu::write_ste`].
//! - Event records are read from the event queue in bounded batches and handed to the caller (the driver keeps
//!   no ring of its own); event queue overflows (`EVENTQ_PROD.OVFLG`) are counted and acknowledged.

mod cmdq;
mod evtq;
mod features;
mod init;
mod strtab;
#[cfg(test)]
mod tests;

pub use cmdq::{Batch, IssueStep, MAX_CHUNK, STALL_CHECK_POLLS, SharedCmdq, SyncStep, SyncTicket};
pub use features::Features;

use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::DmaMemory;
use crate::cmd::{InvalidationPolicy, RangeMode};
use crate::queue::Queue;
use crate::regs::RegisterAccess;

/// Driver settings.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Config {
    /// log2 of the command queue entries wanted (clamped to `IDR1.CMDQS`); 16 bytes each.
    pub cmdq_log2: u32,
    /// log2 of the event queue entries wanted (clamped to `IDR1.EVENTQS`); 32 bytes each.
    pub evtq_log2: u32,
    /// Iterations of every bounded poll (handshakes, sync completion, queue space) before `Err(Timeout)`.
    pub poll_limit: u32,
    /// StreamID spaces of at most this many bits get a linear stream table.
    pub linear_max_sid_bits: u32,
    /// StreamIDs the stream table covers at most (the SMMU's `SIDSIZE` if smaller).
    pub max_sid_bits: u32,
    /// 2-level tables: log2 of STEs per level-2 table (`STRTAB_BASE_CFG.SPLIT`: 6, 8 or 10).
    pub split: u32,
    /// Invalidations needing more than this many `TLBI_S2_IPA` become one `TLBI_S12_VMALL`.
    pub vmall_threshold: u64,
    /// How range invalidations are split (with `IDR3.RIL`).
    pub range_mode: RangeMode,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            cmdq_log2: 10,
            evtq_log2: 8,
            poll_limit: 1_000_000,
            linear_max_sid_bits: 8,
            max_sid_bits: 16,
            split: 8,
            vmall_threshold: InvalidationPolicy::DEFAULT_VMALL_THRESHOLD,
            range_mode: RangeMode::Single,
        }
    }
}

/// Activity counters (monotonic since init), for the hyp to report.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct Counters {
    /// Commands written to the queue, `CMD_SYNC`s included.
    pub commands: u64,
    /// Batches issued whole (each ends with one `CMD_SYNC`; one `CMDQ_PROD` write may publish several); a batch
    /// still being issued by another CPU already counts.
    pub batches: u64,
    /// `CMD_SYNC` commands.
    pub syncs: u64,
    /// `CMDQ_PROD` writes (each publishes every command written so far, of any CPU).
    pub prod_writes: u64,
    /// Non-range `CMD_TLBI_S2_IPA`.
    pub tlbi_s2_ipa: u64,
    /// Range `CMD_TLBI_S2_IPA` (`TG` ≠ 0).
    pub tlbi_s2_ipa_range: u64,
    /// `CMD_TLBI_S12_VMALL`.
    pub tlbi_s12_vmall: u64,
    /// `CMD_TLBI_NSNH_ALL`.
    pub tlbi_nsnh_all: u64,
    /// `CMD_TLBI_EL2_ALL`.
    pub tlbi_el2_all: u64,
    /// `CMD_CFGI_STE`.
    pub cfgi_ste: u64,
    /// `CMD_CFGI_STE_RANGE` / `CMD_CFGI_ALL`.
    pub cfgi_range: u64,
    /// STE updates through [`Smmu::write_ste`].
    pub ste_writes: u64,
    /// Level-2 stream tables allocated.
    pub l2_tables: u64,
    /// Bounded polls that ran out.
    pub timeouts: u64,
    /// Reads of `CMDQ_CONS` by CPUs waiting for their `CMD_SYNC` ([`SharedCmdq::wait`]).
    pub sync_polls: u64,
    /// Commands rejected by the SMMU (`GERROR.CMDQ_ERR`).
    pub cmdq_errors: u64,
    /// Other global errors acknowledged.
    pub global_errors: u64,
    /// Event records read from the event queue.
    pub events: u64,
    /// Event queue overflows signalled by the SMMU (records the SMMU itself lost).
    pub evtq_overflows: u64,
}

/// The command queue: its shared, lock-free part and the error bookkeeping kept under the driver's lock.
struct CmdQueue<C, W> {
    shared: Arc<SharedCmdq<C, W>>,
    /// Errors blamed on batches, until their waiter collects them (see [`Smmu::sync_step`]).
    blame: Vec<Blame>,
    /// Batches nobody waits for any more, with their ends (dropped once consumed): an error found in one
    /// goes to the CPU that finds it.
    abandoned: Vec<(Batch, u64)>,
}

impl<C, W> core::fmt::Debug for CmdQueue<C, W> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CmdQueue")
            .field("shared", &self.shared)
            .field("blame", &self.blame)
            .field("abandoned", &self.abandoned)
            .finish()
    }
}

/// An error blamed on `batch`.
#[derive(Clone, Copy, Debug)]
struct Blame {
    batch: Batch,
    error: crate::Error,
}

/// Where the event queue is and how far the driver has consumed it.
#[derive(Debug)]
struct EvtQueue {
    pa: u64,
    q: Queue,
    /// Consumer index, overflow-ack flag included.
    cons: u32,
}

/// Stream table layout.
#[derive(Debug)]
enum StreamTable {
    /// `2^sid_bits` STEs at `pa`.
    Linear { pa: u64, sid_bits: u32 },
    /// Level-1 table at `l1_pa`; `leaves[i]` is the level-2 table of StreamIDs `i << split ..`.
    TwoLevel {
        l1_pa: u64,
        sid_bits: u32,
        split: u32,
        leaves: alloc::vec::Vec<Option<u64>>,
    },
}

/// An initialised, enabled SMMUv3.
pub struct Smmu<R: RegisterAccess, M: DmaMemory> {
    regs: R,
    mem: M,
    features: Features,
    config: Config,
    policy: InvalidationPolicy,
    cmdq: CmdQueue<R::Cons, M::Writer>,
    evtq: EvtQueue,
    strtab: StreamTable,
    counters: Counters,
}

impl<R: RegisterAccess, M: DmaMemory> core::fmt::Debug for Smmu<R, M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Smmu")
            .field("features", &self.features)
            .field("cmdq", &self.cmdq)
            .field("evtq", &self.evtq)
            .field("strtab", &self.strtab)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl<R: RegisterAccess, M: DmaMemory> Smmu<R, M> {
    /// The features probed at init.
    pub fn features(&self) -> &Features {
        &self.features
    }

    /// The activity counters (those of the [`SharedCmdq`] included).
    pub fn counters(&self) -> Counters {
        let mut c = self.counters;
        self.cmdq_counters(&mut c);
        c
    }

    /// The invalidation policy in force (derived from `IDR3.RIL` and the [`Config`]).
    pub fn invalidation_policy(&self) -> InvalidationPolicy {
        self.policy
    }

    /// Replaces the invalidation policy (range invalidation can only be enabled if the SMMU has it).
    pub fn set_invalidation_policy(&mut self, policy: InvalidationPolicy) {
        self.policy = InvalidationPolicy {
            range: policy.range && self.features.range_invalidation,
            ..policy
        };
    }

    /// Number of StreamID bits the stream table covers.
    pub fn sid_bits(&self) -> u32 {
        match self.strtab {
            StreamTable::Linear { sid_bits, .. } | StreamTable::TwoLevel { sid_bits, .. } => {
                sid_bits
            }
        }
    }

    /// The register access, e.g. for the fake's test hooks.
    pub fn regs_mut(&mut self) -> &mut R {
        &mut self.regs
    }

    /// The DMA memory.
    pub fn memory_mut(&mut self) -> &mut M {
        &mut self.mem
    }

    /// A bounded poll of `read` until `done` holds; counts and reports `Err(Timeout(what))` when it runs out.
    fn poll<T>(
        &mut self,
        what: crate::Wait,
        mut read: impl FnMut(&mut R) -> T,
        done: impl Fn(&T) -> bool,
    ) -> Result<T, crate::Error> {
        for _ in 0..self.config.poll_limit.max(1) {
            let value = read(&mut self.regs);
            if done(&value) {
                return Ok(value);
            }
            core::hint::spin_loop();
        }
        self.counters.timeouts += 1;
        Err(crate::Error::Timeout(what))
    }
}
