//! Command submission: batches, `CMD_SYNC` completion, queue space, `GERROR.CMDQ_ERR` recovery
//! (IHI 0070 §3.5 "Command and Event queues", §4.7.3 "CMD_SYNC", §7.1 "Command queue errors").
//!
//! # Several CPUs, one queue
//!
//! Modelled on Linux's `arm_smmu_cmdq_issue_cmdlist` (drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.c): CPUs fill
//! the queue without a common lock, and no lock is held while the SMMU works. All of it is in [`SharedCmdq`]
//! (shared by every CPU through an `Arc`, from [`Smmu::shared_cmdq`]):
//! 1. **Reserve** ([`SharedCmdq::issue`]): a CPU claims room for its batch (its commands and one `CMD_SYNC`)
//!    with one compare-and-swap on the software producer index `reserved`, if the queue has room; else it
//!    polls `CMDQ_CONS` for space. A batch bigger than [`MAX_CHUNK`] or the queue is claimed in chunks (the
//!    sync closes the last one); other CPUs' commands may fall between its chunks.
//! 2. **Write** its commands into its slots (through the memory's [`crate::DmaWriter`]; straight from the
//!    batch's iterator when its `size_hint` bounds it below a chunk, as an invalidation plan's does, else
//!    through a chunk buffer) and mark each slot written: the slot's `seq` becomes the command's sequence number + 1 (the per-slot sequence that Linux
//!    keeps as a valid bitmap), with the batch that owns it next to it (for error blame).
//! 3. **Publish**: one CPU at a time (whoever takes the driver's lock with `try_lock`, the owner, Linux's
//!    `CMDQ_PROD_OWNED_FLAG`) scans from `published` over every contiguous written slot, of any CPU, and writes
//!    `CMDQ_PROD` once for all of them ([`Smmu::publish_written`]). A CPU that finds the lock taken spins
//!    until `published` covers its batch or the lock is free (an owner-handoff wait); a CPU whose scan stops
//!    at an earlier slot not yet written leaves its own to that slot's writer, who scans after writing.
//! 4. **Wait** ([`SharedCmdq::wait`]): poll `CMDQ_CONS` through the [`CmdqConsReader`] until it has passed
//!    the batch's [`SyncTicket`]; a later sync completing implies that every earlier command completed.
//!
//! The driver's lock is taken only to write `CMDQ_PROD` (by the owner of step 3, without waiting), and on
//! the slow paths: `CMDQ_CONS` not moving ([`SyncStep::Stalled`], [`IssueStep::Stalled`]: publish, check
//! `GERROR`) and error collection. Contention of the lock-free steps (a lost compare-and-swap, a wait for
//! the owner) is counted by [`SharedCmdq::contention`].
//!
//! Positions are 64-bit sequence numbers (commands reserved since init): the index and wrap bits of
//! `CMDQ_PROD`/`CMDQ_CONS` are their low bits, and the high bits never wrap, so a ticket never meets a later
//! lap of the ring and the overflow check is a subtraction. A `CMDQ_CONS` value (20 bits at most) is extended
//! against `consumed`, a lower bound of the true count that every reader raises: nobody reserves more than
//! one queue ahead of `consumed`, so the true consumer lies less than two laps (the wrap bit's period) beyond
//! a value of `consumed` loaded before the register was read, and a stale `consumed` can only make the
//! extension too small, never report a sync it has not passed (a value loaded *after* the read could be
//! ahead of it: [`SharedCmdq`]'s `observe`).
//!
//! When `CMDQ_CONS` stops moving, a waiter takes the driver's lock (its `step` callback, [`Smmu::sync_step`])
//! to publish what is written and look at `GERROR`: a command the SMMU rejected is replaced by a `CMD_SYNC`
//! and acknowledged, and the error is blamed on the batch that owns the command's slot, whichever CPU noticed
//! it. Each waiter collects its own batch's error once its sync has passed ([`SyncStep::Completed`]); while
//! no error is pending, completion takes no lock at all. A waiter that runs out of polls gives its batch up
//! ([`SyncStep::GaveUp`]): an error later found in that batch has no one to go to, so it goes to the CPU that
//! found it.

mod shared;
mod sync;

use core::sync::atomic::{AtomicU64, Ordering};

use super::Smmu;
use crate::cmd::{Command, InvalidationPlan, S2Invalidation, plan_s2_invalidation};
use crate::regs::{self, RegisterAccess};
use crate::{DmaMemory, Error, Vmid};

pub use shared::{IssueStep, SharedCmdq};
pub use sync::SyncStep;

/// Polls without progress of `CMDQ_CONS` after which a waiter checks `GERROR` under the driver's lock.
pub const STALL_CHECK_POLLS: u32 = 16;

/// Most slots one reservation claims: a bigger batch is claimed in chunks (each also at most the queue).
pub const MAX_CHUNK: usize = 32;

/// Blame key of errors found outside any batch ([`Smmu::check_global_errors`]).
const OUTSIDE: Batch = Batch(u64::MAX);

/// One batch's identity (numbered from 1 since init): the key its errors are blamed under.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Batch(u64);

/// A batch's place in the command queue, returned by [`SharedCmdq::issue`]: the batch has completed once the
/// SMMU has consumed everything before [`SyncTicket::end`].
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct SyncTicket {
    batch: Batch,
    end: u64,
}

impl SyncTicket {
    /// The sequence number just past the batch's `CMD_SYNC` (commands reserved since init).
    pub fn end(self) -> u64 {
        self.end
    }

    /// The batch.
    pub fn batch(self) -> Batch {
        self.batch
    }
}

impl<R: RegisterAccess, M: DmaMemory> Smmu<R, M> {
    /// Submits `cmds` as one batch and waits for it: [`Smmu::issue`], then [`SharedCmdq::wait`] with this
    /// driver as the lock holder (for a caller that owns the driver outright, e.g. at boot).
    ///
    /// # Errors
    ///
    /// As [`Smmu::issue`] and [`SharedCmdq::wait`].
    pub fn submit<I: IntoIterator<Item = Command>>(&mut self, cmds: I) -> Result<(), Error> {
        let ticket = self.issue(cmds)?;
        let cmdq = self.cmdq.shared.clone();
        cmdq.wait(ticket, |step| self.sync_step(ticket, step))
    }

    /// The command queue shared by every CPU, for issuing and waiting without this driver's lock.
    pub fn shared_cmdq(&self) -> alloc::sync::Arc<SharedCmdq<R::Cons, M::Writer>> {
        self.cmdq.shared.clone()
    }

    /// Issues `cmds` as one batch with the driver's lock held (this `&mut`): [`SharedCmdq::issue`], publishing
    /// through this driver; returns the batch's [`SyncTicket`] without waiting for the SMMU.
    ///
    /// # Errors
    ///
    /// As [`SharedCmdq::issue`].
    pub fn issue<I: IntoIterator<Item = Command>>(&mut self, cmds: I) -> Result<SyncTicket, Error> {
        let cmdq = self.cmdq.shared.clone();
        cmdq.issue_with(cmds, |batch, step| Some(self.issue_step(batch, step)))
    }

    /// The locked steps of [`SharedCmdq::issue`] for `batch` (see [`IssueStep`]).
    ///
    /// # Errors
    ///
    /// None so far: errors found while issuing are blamed on their batch and reported by its wait.
    pub fn issue_step(&mut self, batch: Batch, step: IssueStep) -> Result<(), Error> {
        match step {
            IssueStep::Publish => self.publish_written(),
            IssueStep::Stalled => {
                self.publish_written();
                self.read_cons();
                self.check_gerror(batch);
            }
            IssueStep::Failed { end } => {
                self.take_blame(batch);
                self.abandon(batch, end);
            }
        }
        Ok(())
    }

    /// Publishes every written command from `published` on, of whichever CPU, with one `CMDQ_PROD` write.
    /// Ordering: each writer stores its commands before its slot mark (a release store), this CPU reads the
    /// marks first, and the register write is ordered after every memory write this CPU has observed
    /// ([`RegisterAccess`]'s contract; EL2's `dsb st` is cumulative), so the SMMU reads whole commands.
    pub fn publish_written(&mut self) {
        let cmdq = &self.cmdq.shared;
        let start = cmdq.published.load(Ordering::Acquire);
        let mut end = start;
        while cmdq.is_written(end) {
            end += 1;
        }
        if end == start {
            return;
        }
        let prod = end as u32 & cmdq.q.position_mask();
        self.regs.write32(regs::CMDQ_PROD, prod);
        self.counters.prod_writes += 1;
        self.cmdq.shared.published.store(end, Ordering::SeqCst);
    }

    /// Plans and submits the stage-2 invalidation `req` (one batch: e.g. one range `TLBI_S2_IPA` and one
    /// `CMD_SYNC` with RIL).
    pub fn invalidate_s2(&mut self, req: &S2Invalidation) -> Result<(), Error> {
        let plan = self.plan_invalidation(req);
        self.submit(plan)
    }

    /// The commands [`Smmu::invalidate_s2`] would submit for `req`, to combine several ranges in one batch.
    pub fn plan_invalidation(&self, req: &S2Invalidation) -> InvalidationPlan {
        plan_s2_invalidation(req, &self.policy)
    }

    /// Plans and submits several stage-2 invalidations as ONE batch (one `CMD_SYNC`), e.g. the discontiguous
    /// pieces of one unmap hypercall.
    pub fn invalidate_s2_many(&mut self, reqs: &[S2Invalidation]) -> Result<(), Error> {
        let policy = self.policy;
        self.submit(
            reqs.iter()
                .flat_map(|req| plan_s2_invalidation(req, &policy)),
        )
    }

    /// Invalidates every TLB entry of `vmid` (`TLBI_S12_VMALL` + `CMD_SYNC`), e.g. before reusing a VMID.
    pub fn invalidate_vmid(&mut self, vmid: Vmid) -> Result<(), Error> {
        self.submit([Command::tlbi_s12_vmall(vmid)])
    }

    /// The command counters of the shared queue, merged into `c`.
    pub(super) fn cmdq_counters(&self, c: &mut super::Counters) {
        let shared = &self.cmdq.shared;
        let k = &shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        // Numbered from 1: every number handed out is a batch issued or being issued, unless it failed.
        c.batches = (get(&shared.next_batch) - 1).saturating_sub(get(&k.failed));
        c.syncs = get(&k.syncs);
        c.tlbi_s2_ipa = get(&k.tlbi_s2_ipa);
        c.tlbi_s2_ipa_range = get(&k.tlbi_s2_ipa_range);
        c.tlbi_s12_vmall = get(&k.tlbi_s12_vmall);
        c.tlbi_nsnh_all = get(&k.tlbi_nsnh_all);
        c.tlbi_el2_all = get(&k.tlbi_el2_all);
        c.cfgi_ste = get(&k.cfgi_ste);
        c.cfgi_range = get(&k.cfgi_range);
        c.commands = get(&k.other)
            + c.syncs
            + c.tlbi_s2_ipa
            + c.tlbi_s2_ipa_range
            + c.tlbi_s12_vmall
            + c.tlbi_nsnh_all
            + c.tlbi_el2_all
            + c.cfgi_ste
            + c.cfgi_range;
        let (sync_polls, timeouts) = shared.counters();
        c.sync_polls = sync_polls;
        c.timeouts += timeouts;
    }
}
