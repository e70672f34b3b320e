//! Command submission: batches, `CMD_SYNC` completion, queue space, `GERROR.CMDQ_ERR` recovery
//! (IHI 0070 §3.5 "Command and Event queues", §4.7.3 "CMD_SYNC", §7.1 "Command queue errors").
//!
//! # Several CPUs, one queue
//!
//! Submitting a batch is two steps, so that no lock is held while the SMMU works (Linux's
//! `arm_smmu_cmdq_issue_cmdlist` is the reference; it also drops its lock before polling for the sync):
//! 1. [`Smmu::issue`] (`&mut Smmu`: the caller holds its lock around the driver) writes the commands and one
//!    `CMD_SYNC`, publishes them with one `CMDQ_PROD` write and returns a [`SyncTicket`]: the position just past
//!    that sync. It only waits if the queue is full (bounded, as before).
//! 2. [`CmdqWaiter::wait`] (`&CmdqWaiter`, shared by every CPU through an `Arc`) polls `CMDQ_CONS` through the
//!    [`CmdqConsReader`] until it has passed the ticket. Meanwhile other CPUs issue and wait for their own
//!    batches; a later sync completing implies that every earlier command completed (the SMMU consumes in order).
//!
//! Positions are 64-bit sequence numbers (commands written since init), so a ticket never meets a later lap of
//! the ring. A `CMDQ_CONS` value (20 bits at most) is extended against `consumed`, a lower bound of the true
//! count that every reader raises: the issuer never lets `prod` run more than one queue ahead of `consumed`,
//! so the true consumer lies less than two laps (the wrap bit's period) beyond any value of `consumed`, and a
//! stale `consumed` can only make the extension too small, never report a sync it has not passed.
//!
//! When `CMDQ_CONS` stops moving for [`STALL_CHECK_POLLS`] polls, the waiter takes the driver's lock briefly
//! (its `step` callback, [`Smmu::sync_step`] with [`SyncStep::Stalled`]) to look at `GERROR`: a command the
//! SMMU rejected is replaced by a `CMD_SYNC` and acknowledged, and the error is blamed on the batch whose range
//! holds the command (found in the in-flight batch ends), whichever CPU noticed it. Each waiter collects its
//! own batch's error once its sync has passed ([`SyncStep::Completed`]); while no error is pending, completion
//! takes no lock at all. A waiter that runs out of polls gives its batch up ([`SyncStep::GaveUp`]): an error
//! later found in that batch has no one to go to, so it goes to the CPU that found it.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::{BatchEnd, Blame, Smmu};
use crate::cmd::{
    CMD_DWORDS, CMD_SIZE, Command, CommandKind, InvalidationPlan, S2Invalidation, SyncCompletion,
    plan_s2_invalidation,
};
use crate::queue::Queue;
use crate::regs::{self, CmdqConsReader, CmdqError, Gerror, RegisterAccess};
use crate::{DmaMemory, Error, Vmid, Wait};

/// Polls without progress of `CMDQ_CONS` after which a waiter checks `GERROR` under the driver's lock.
pub const STALL_CHECK_POLLS: u32 = 16;

/// Blame key of errors found while a batch is being issued (its end is not known yet).
const ISSUING: u64 = u64::MAX;
/// Blame key of errors found outside any batch ([`Smmu::check_global_errors`]).
const OUTSIDE: u64 = u64::MAX - 1;

/// A batch's place in the command queue, returned by [`Smmu::issue`]: the batch has completed once the SMMU
/// has consumed everything before [`SyncTicket::end`].
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct SyncTicket {
    end: u64,
}

impl SyncTicket {
    /// The sequence number just past the batch's `CMD_SYNC` (commands written since init).
    pub fn end(self) -> u64 {
        self.end
    }
}

/// The command queue's consumer side, shared by every CPU: waits for [`SyncTicket`]s without the driver's lock.
/// Get it with [`Smmu::cmdq_waiter`].
pub struct CmdqWaiter<C> {
    cons: C,
    q: Queue,
    poll_limit: u32,
    /// Commands the SMMU is known to have consumed since init (a lower bound; only ever raised).
    consumed: AtomicU64,
    /// Number of [`Blame`]s the driver holds (completion takes the lock only when this is non-zero).
    blamed: AtomicUsize,
    sync_polls: AtomicU64,
    timeouts: AtomicU64,
}

impl<C> core::fmt::Debug for CmdqWaiter<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CmdqWaiter")
            .field("q", &self.q)
            .field("consumed", &self.consumed)
            .field("blamed", &self.blamed)
            .finish_non_exhaustive()
    }
}

impl<C: CmdqConsReader> CmdqWaiter<C> {
    pub(super) fn new(cons: C, q: Queue, poll_limit: u32) -> Self {
        Self {
            cons,
            q,
            poll_limit,
            consumed: AtomicU64::new(0),
            blamed: AtomicUsize::new(0),
            sync_polls: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
        }
    }

    /// Extends the `CMDQ_CONS` value `cons` to a sequence number (see the module docs) and raises `consumed`.
    fn observe(&self, cons: u32) -> u64 {
        let base = self.consumed.load(Ordering::Acquire);
        let ahead = cons.wrapping_sub(base as u32) & self.q.position_mask();
        let seq = base + u64::from(ahead);
        self.consumed.fetch_max(seq, Ordering::AcqRel);
        seq
    }

    /// Commands the SMMU is known to have consumed since init.
    pub fn consumed(&self) -> u64 {
        self.consumed.load(Ordering::Acquire)
    }

    /// Whether the batch of `ticket` is known to have completed.
    pub fn is_done(&self, ticket: SyncTicket) -> bool {
        self.consumed() >= ticket.end
    }

    /// (`CMDQ_CONS` polls by waiters, waits that timed out) since init.
    pub fn counters(&self) -> (u64, u64) {
        (
            self.sync_polls.load(Ordering::Relaxed),
            self.timeouts.load(Ordering::Relaxed),
        )
    }

    /// Waits (bounded by [`crate::Config::poll_limit`] polls) until the SMMU has consumed the `CMD_SYNC` of
    /// `ticket`, without any lock. `step` must take the driver's lock and call [`Smmu::sync_step`] with `ticket`
    /// and the [`SyncStep`] it is given; it runs when `CMDQ_CONS` has not moved for [`STALL_CHECK_POLLS`] polls,
    /// once after completion if some batch has an error pending, and once when the polls run out.
    ///
    /// # Errors
    ///
    /// `Timeout(CmdSync)` when the SMMU stops consuming (the batch stays queued), or the error blamed on this
    /// batch: `CommandError` (the command was skipped, the rest completed) or `GlobalError`.
    pub fn wait(
        &self,
        ticket: SyncTicket,
        mut step: impl FnMut(SyncStep) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let mut last = None;
        let mut stalled = 0u32;
        for _ in 0..self.poll_limit.max(1) {
            self.sync_polls.fetch_add(1, Ordering::Relaxed);
            let seq = self.observe(self.cons.read_cmdq_cons());
            if seq >= ticket.end {
                // A blame on this batch was recorded before its failing command was acknowledged, hence
                // before the SMMU could pass the sync observed here.
                return if self.blamed.load(Ordering::Acquire) == 0 {
                    Ok(())
                } else {
                    step(SyncStep::Completed)
                };
            }
            if last == Some(seq) {
                stalled += 1;
                if stalled.is_multiple_of(STALL_CHECK_POLLS) {
                    step(SyncStep::Stalled)?;
                    if self.is_done(ticket) {
                        return Ok(());
                    }
                }
            } else {
                stalled = 0;
            }
            last = Some(seq);
            core::hint::spin_loop();
        }
        self.timeouts.fetch_add(1, Ordering::Relaxed);
        // Giving up only forgets the batch's blame; the timeout is what the caller learns.
        let _ = step(SyncStep::GaveUp);
        Err(Error::Timeout(Wait::CmdSync))
    }
}

/// Why [`CmdqWaiter::wait`] needs the driver's lock (see [`Smmu::sync_step`]).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum SyncStep {
    /// `CMDQ_CONS` stopped moving: check `GERROR`.
    Stalled,
    /// The sync has passed and some batch has an error pending: collect this batch's.
    Completed,
    /// The polls ran out: the batch is abandoned.
    GaveUp,
}

impl<R: RegisterAccess, M: DmaMemory> Smmu<R, M> {
    /// Submits `cmds` as one batch and waits for it: [`Smmu::issue`], then [`CmdqWaiter::wait`] with this
    /// driver as the lock holder (for a caller that owns the driver outright, e.g. at boot).
    ///
    /// # Errors
    ///
    /// As [`Smmu::issue`] and [`CmdqWaiter::wait`].
    pub fn submit<I: IntoIterator<Item = Command>>(&mut self, cmds: I) -> Result<(), Error> {
        let ticket = self.issue(cmds)?;
        let waiter = self.waiter.clone();
        waiter.wait(ticket, |step| self.sync_step(ticket, step))
    }

    /// The shared consumer side of the command queue, for waiting on [`SyncTicket`]s without this driver.
    pub fn cmdq_waiter(&self) -> alloc::sync::Arc<CmdqWaiter<R::Cons>> {
        self.waiter.clone()
    }

    /// Issues `cmds` as one batch: writes them and a `CMD_SYNC` to the queue and updates `CMDQ_PROD` once;
    /// returns the batch's [`SyncTicket`] without waiting for the SMMU (see [`CmdqWaiter::wait`]).
    ///
    /// A batch bigger than the free space publishes what fits, waits (bounded) for room and continues; it still
    /// ends with one sync.
    ///
    /// # Errors
    ///
    /// `Timeout(CmdqSpace)` when the SMMU stops consuming (what was written stays queued; a later batch
    /// continues after it).
    pub fn issue<I: IntoIterator<Item = Command>>(&mut self, cmds: I) -> Result<SyncTicket, Error> {
        let consumed = self.waiter.consumed();
        while self
            .cmdq
            .batch_ends
            .front()
            .is_some_and(|b| b.end <= consumed)
        {
            self.cmdq.batch_ends.pop_front();
        }
        if let Err(e) = self.write_batch(cmds) {
            self.cmdq.blame.retain(|b| b.end != ISSUING);
            self.sync_blame_count();
            return Err(e);
        }
        let end = self.cmdq.prod;
        for b in &mut self.cmdq.blame {
            if b.end == ISSUING {
                b.end = end;
            }
        }
        self.cmdq.batch_ends.push_back(BatchEnd {
            end,
            abandoned: false,
        });
        Ok(SyncTicket { end })
    }

    fn write_batch<I: IntoIterator<Item = Command>>(&mut self, cmds: I) -> Result<(), Error> {
        for cmd in cmds {
            // Keep one slot for the closing sync.
            self.reserve(2)?;
            self.push(cmd);
        }
        self.reserve(1)?;
        self.push(Command::sync(SyncCompletion::None));
        self.counters.batches += 1;
        self.publish();
        Ok(())
    }

    /// The locked step of [`CmdqWaiter::wait`] for `ticket`:
    /// - [`SyncStep::Stalled`]: reads `CMDQ_CONS`; if the batch has not completed, handles `GERROR` (a rejected
    ///   command is skipped and blamed on its batch, other global errors on this one) and reads it again; if
    ///   the batch has now completed, returns its error as for `Completed`;
    /// - [`SyncStep::Completed`]: removes and returns the error blamed on this batch, if any;
    /// - [`SyncStep::GaveUp`]: forgets the batch's blame, and errors later found in it go to whoever finds them.
    ///
    /// # Errors
    ///
    /// `CommandError` or `GlobalError` blamed on this batch, once it has completed.
    pub fn sync_step(&mut self, ticket: SyncTicket, step: SyncStep) -> Result<(), Error> {
        match step {
            SyncStep::Stalled => {
                if !self.read_cons_passed(ticket) {
                    self.check_gerror(ticket.end);
                    if !self.read_cons_passed(ticket) {
                        return Ok(());
                    }
                }
            }
            SyncStep::Completed => {}
            SyncStep::GaveUp => {
                if let Some(b) = self
                    .cmdq
                    .batch_ends
                    .iter_mut()
                    .find(|b| b.end == ticket.end)
                {
                    b.abandoned = true;
                }
                self.take_blame(ticket.end);
                return Ok(());
            }
        }
        match self.take_blame(ticket.end) {
            Some(error) => Err(error),
            None => Ok(()),
        }
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

    /// Plans and submits several stage-2 invalidations as ONE batch (one `CMD_SYNC`, one `CMDQ_PROD` update),
    /// e.g. the discontiguous pieces of one unmap hypercall.
    pub fn invalidate_s2_many(&mut self, reqs: &[S2Invalidation]) -> Result<(), Error> {
        let policy = self.policy;
        self.submit(
            reqs.iter()
                .flat_map(|req| plan_s2_invalidation(req, &policy)),
        )
    }

    /// Checks `GERROR` outside a batch (e.g. from a periodic poll): acknowledges whatever is active and reports
    /// it as `Err(GlobalError(bits))`. A pending command error also skips the offending command; it is blamed on
    /// the batch that owns the command (its waiter reports it), or reported here if no batch in flight does.
    ///
    /// # Errors
    ///
    /// `GlobalError`, or `CommandError` for a command of no batch in flight.
    pub fn check_global_errors(&mut self) -> Result<(), Error> {
        self.check_gerror(OUTSIDE);
        match self.take_blame(OUTSIDE) {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Invalidates every TLB entry of `vmid` (`TLBI_S12_VMALL` + `CMD_SYNC`), e.g. before reusing a VMID.
    pub fn invalidate_vmid(&mut self, vmid: Vmid) -> Result<(), Error> {
        self.submit([Command::tlbi_s12_vmall(vmid)])
    }

    /// Writes `cmd` at the driver's producer index (not yet visible to the SMMU) and counts it.
    fn push(&mut self, cmd: Command) {
        let slot =
            self.cmdq.pa + (self.cmdq.q.index(self.cmdq.prod as u32) as usize * CMD_SIZE) as u64;
        for (i, dword) in cmd.0.iter().enumerate().take(CMD_DWORDS) {
            self.mem.write64(slot + 8 * i as u64, *dword);
        }
        self.cmdq.prod += 1;
        let c = &mut self.counters;
        c.commands += 1;
        match cmd.decode() {
            CommandKind::Sync(_) => c.syncs += 1,
            CommandKind::TlbiS2Ipa(t) if t.tg != 0 => c.tlbi_s2_ipa_range += 1,
            CommandKind::TlbiS2Ipa(_) => c.tlbi_s2_ipa += 1,
            CommandKind::TlbiS12Vmall { .. } => c.tlbi_s12_vmall += 1,
            CommandKind::TlbiNsnhAll => c.tlbi_nsnh_all += 1,
            CommandKind::TlbiEl2All => c.tlbi_el2_all += 1,
            CommandKind::CfgiSte { .. } => c.cfgi_ste += 1,
            CommandKind::CfgiSteRange { .. } => c.cfgi_range += 1,
            CommandKind::PrefetchConfig { .. } | CommandKind::Other { .. } => {}
        }
    }

    /// Makes everything pushed so far visible to the SMMU (the register write orders the memory writes).
    fn publish(&mut self) {
        let prod = self.cmdq.prod as u32 & self.cmdq.q.position_mask();
        self.regs.write32(regs::CMDQ_PROD, prod);
        self.counters.prod_writes += 1;
    }

    /// Reads `CMDQ_CONS` through the driver's register access and returns the consumed sequence number.
    fn read_cons(&mut self) -> u64 {
        let cons = self.regs.read32(regs::CMDQ_CONS);
        self.waiter.observe(cons)
    }

    fn read_cons_passed(&mut self, ticket: SyncTicket) -> bool {
        self.read_cons() >= ticket.end
    }

    /// Free slots as far as the driver knows.
    fn space(&self) -> u64 {
        u64::from(self.cmdq.q.entries()) - (self.cmdq.prod - self.waiter.consumed())
    }

    /// Ensures `n` free slots, publishing and waiting for the SMMU to make room if needed.
    fn reserve(&mut self, n: u64) -> Result<(), Error> {
        if self.space() >= n {
            return Ok(());
        }
        let mut last = self.read_cons();
        if self.space() >= n {
            return Ok(());
        }
        self.publish();
        for _ in 0..self.config.poll_limit.max(1) {
            let seq = self.read_cons();
            if self.space() >= n {
                return Ok(());
            }
            if seq == last {
                self.check_gerror(ISSUING);
            }
            last = seq;
            core::hint::spin_loop();
        }
        self.counters.timeouts += 1;
        Err(Error::Timeout(Wait::CmdqSpace))
    }

    /// Handles active global errors: a command error skips the bad command (replaced by a `CMD_SYNC`, as
    /// Linux does), is blamed on the batch owning it (`fallback` if no batch in flight does) and acknowledged
    /// so the SMMU resumes; other errors are acknowledged and blamed on `fallback`.
    fn check_gerror(&mut self, fallback: u64) {
        let gerror = self.regs.read32(regs::GERROR);
        let gerrorn = self.regs.read32(regs::GERRORN);
        let active = Gerror(gerror).active(gerrorn);
        if active == 0 {
            return;
        }
        if active & Gerror::CMDQ_ERR != 0 {
            let cons = self.regs.read32(regs::CMDQ_CONS);
            let failing = self.waiter.observe(cons);
            let error = CmdqError::from_cons(cons);
            let slot = self.cmdq.pa + (self.cmdq.q.index(cons) as usize * CMD_SIZE) as u64;
            let opcode = (self.mem.read64(slot) & 0xFF) as u8;
            let sync = Command::sync(SyncCompletion::None);
            for (i, dword) in sync.0.iter().enumerate() {
                self.mem.write64(slot + 8 * i as u64, *dword);
            }
            self.counters.cmdq_errors += 1;
            let owner = match self.cmdq.batch_ends.iter().find(|b| b.end > failing) {
                Some(b) if !b.abandoned => b.end,
                _ => fallback,
            };
            self.blame(owner, Error::CommandError { opcode, error });
        }
        let others = active & !Gerror::CMDQ_ERR;
        if others != 0 {
            self.counters.global_errors += 1;
            self.blame(fallback, Error::GlobalError(others));
        }
        // Acknowledge everything active: GERRORN takes GERROR's value for those bits. The blame is recorded
        // first, so a waiter that sees its sync pass (only possible after this write) finds it.
        self.regs.write32(regs::GERRORN, gerrorn ^ active);
    }

    /// Records `error` against the batch ending at `end`: a command error wins over global errors, which are
    /// merged; the first command error stays.
    fn blame(&mut self, end: u64, error: Error) {
        let blame = &mut self.cmdq.blame;
        if let Some(b) = blame.iter_mut().find(|b| b.end == end) {
            b.error = match (b.error, error) {
                (Error::GlobalError(a), Error::GlobalError(b)) => Error::GlobalError(a | b),
                (Error::GlobalError(_), e) => e,
                (e, _) => e,
            };
            return;
        }
        // A batch whose waiter gave up never collects its blame: keep at most one queue's worth.
        if blame.len() >= self.cmdq.q.entries() as usize {
            blame.remove(0);
        }
        blame.push(Blame { end, error });
        self.sync_blame_count();
    }

    /// Removes and returns the error blamed on the batch ending at `end`.
    fn take_blame(&mut self, end: u64) -> Option<Error> {
        let i = self.cmdq.blame.iter().position(|b| b.end == end)?;
        let error = self.cmdq.blame.remove(i).error;
        self.sync_blame_count();
        Some(error)
    }

    fn sync_blame_count(&self) {
        self.waiter
            .blamed
            .store(self.cmdq.blame.len(), Ordering::Release);
    }
}
