//! Waiting for a batch's `CMD_SYNC` (step 4 of the [parent module](super)) and what needs the driver's
//! lock on the way: `GERROR`, blame, abandoned batches.

use core::sync::atomic::Ordering;

use super::super::{Blame, Smmu};
use super::{Batch, OUTSIDE, STALL_CHECK_POLLS, SharedCmdq, SyncTicket};
use crate::cmd::{Command, SyncCompletion};
use crate::regs::{self, CmdqConsReader, CmdqError, Gerror, RegisterAccess};
use crate::{DmaMemory, DmaWriter, Error, Wait};

/// Why [`SharedCmdq::wait`] needs the driver's lock (see [`Smmu::sync_step`]).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum SyncStep {
    /// `CMDQ_CONS` stopped moving: publish what is written, check `GERROR`.
    Stalled,
    /// The sync has passed and some batch has an error pending: collect this batch's.
    Completed,
    /// The polls ran out: the batch is abandoned.
    GaveUp,
}

impl<C: CmdqConsReader, W: DmaWriter> SharedCmdq<C, W> {
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
            let (seq, _) = self.observe(|| self.cons.read_cmdq_cons());
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

impl<R: RegisterAccess, M: DmaMemory> Smmu<R, M> {
    /// The locked step of [`SharedCmdq::wait`] for `ticket`:
    /// - [`SyncStep::Stalled`]: publishes what is written and reads `CMDQ_CONS`; if the batch has not
    ///   completed, handles `GERROR` (a rejected command is skipped and blamed on its batch, other global errors
    ///   on this one) and reads it again; if the batch has now completed, returns its error as for `Completed`;
    /// - [`SyncStep::Completed`]: removes and returns the error blamed on this batch, if any;
    /// - [`SyncStep::GaveUp`]: forgets the batch's blame, and errors later found in it go to whoever finds them.
    ///
    /// # Errors
    ///
    /// `CommandError` or `GlobalError` blamed on this batch, once it has completed.
    pub fn sync_step(&mut self, ticket: SyncTicket, step: SyncStep) -> Result<(), Error> {
        match step {
            SyncStep::Stalled => {
                self.publish_written();
                if !self.read_cons_passed(ticket) {
                    self.check_gerror(ticket.batch);
                    if !self.read_cons_passed(ticket) {
                        return Ok(());
                    }
                }
            }
            SyncStep::Completed => {}
            SyncStep::GaveUp => {
                self.abandon(ticket.batch, ticket.end);
                self.take_blame(ticket.batch);
                return Ok(());
            }
        }
        match self.take_blame(ticket.batch) {
            Some(error) => Err(error),
            None => Ok(()),
        }
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

    /// Reads `CMDQ_CONS` through the driver's register access and returns the consumed sequence number.
    pub(super) fn read_cons(&mut self) -> u64 {
        let r = &mut self.regs;
        self.cmdq.shared.observe(|| r.read32(regs::CMDQ_CONS)).0
    }

    pub(super) fn read_cons_passed(&mut self, ticket: SyncTicket) -> bool {
        self.read_cons() >= ticket.end
    }

    /// Records that nobody waits for `batch` (ending at `end`) any more; forgets batches already consumed.
    pub(super) fn abandon(&mut self, batch: Batch, end: u64) {
        let consumed = self.cmdq.shared.consumed();
        let abandoned = &mut self.cmdq.abandoned;
        abandoned.retain(|&(_, e)| e > consumed);
        if end > consumed {
            abandoned.push((batch, end));
        }
    }

    /// Handles active global errors: a command error skips the bad command (replaced by a `CMD_SYNC`, as
    /// Linux does), is blamed on the batch owning its slot (`fallback` if that batch was abandoned) and
    /// acknowledged so the SMMU resumes; other errors are acknowledged and blamed on `fallback`.
    pub(super) fn check_gerror(&mut self, fallback: Batch) {
        let gerror = self.regs.read32(regs::GERROR);
        let gerrorn = self.regs.read32(regs::GERRORN);
        let active = Gerror(gerror).active(gerrorn);
        if active == 0 {
            return;
        }
        if active & Gerror::CMDQ_ERR != 0 {
            let cmdq = self.cmdq.shared.clone();
            let (failing, cons) = cmdq.observe(|| self.regs.read32(regs::CMDQ_CONS));
            let error = CmdqError::from_cons(cons);
            let slot = cmdq.slot_pa(failing);
            let opcode = (self.mem.read64(slot) & 0xFF) as u8;
            let sync = Command::sync(SyncCompletion::None);
            for (i, dword) in sync.0.iter().enumerate() {
                self.mem.write64(slot + 8 * i as u64, *dword);
            }
            self.counters.cmdq_errors += 1;
            let owner = match cmdq.owner(failing) {
                Some(b) if !self.cmdq.abandoned.iter().any(|&(a, _)| a == b) => b,
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

    /// Records `error` against `batch`: a command error wins over global errors, which are merged; the first
    /// command error stays.
    pub(super) fn blame(&mut self, batch: Batch, error: Error) {
        let blame = &mut self.cmdq.blame;
        if let Some(b) = blame.iter_mut().find(|b| b.batch == batch) {
            b.error = match (b.error, error) {
                (Error::GlobalError(a), Error::GlobalError(b)) => Error::GlobalError(a | b),
                (Error::GlobalError(_), e) => e,
                (e, _) => e,
            };
            return;
        }
        // A batch whose waiter gave up never collects its blame: keep at most one queue's worth.
        if blame.len() >= self.cmdq.shared.q.entries() as usize {
            blame.remove(0);
        }
        blame.push(Blame { batch, error });
        self.sync_blame_count();
    }

    /// Removes and returns the error blamed on `batch`.
    pub(super) fn take_blame(&mut self, batch: Batch) -> Option<Error> {
        let i = self.cmdq.blame.iter().position(|b| b.batch == batch)?;
        let error = self.cmdq.blame.remove(i).error;
        self.sync_blame_count();
        Some(error)
    }

    pub(super) fn sync_blame_count(&self) {
        self.cmdq
            .shared
            .blamed
            .store(self.cmdq.blame.len(), Ordering::Release);
    }
}
