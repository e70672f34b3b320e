//! Command submission: batches, `CMD_SYNC` completion, queue space, `GERROR.CMDQ_ERR` recovery
//! (IHI 0070 §3.5 "Command and Event queues", §4.7.3 "CMD_SYNC", §7.1 "Command queue errors").

use super::Smmu;
use crate::cmd::{
    CMD_DWORDS, CMD_SIZE, Command, CommandKind, InvalidationPlan, S2Invalidation, SyncCompletion,
    plan_s2_invalidation,
};
use crate::regs::{self, CmdqError, Gerror, RegisterAccess};
use crate::{DmaMemory, Error, Vmid, Wait};

/// What went wrong while waiting, remembered until the batch completes.
#[derive(Clone, Copy, Debug, Default)]
struct BatchErrors {
    command: Option<(u8, CmdqError)>,
    global: u32,
}

impl<R: RegisterAccess, M: DmaMemory> Smmu<R, M> {
    /// Submits `cmds` as one batch: writes them and a `CMD_SYNC` to the queue, updates `CMDQ_PROD` once, and
    /// waits (bounded) until the SMMU has consumed the sync.
    ///
    /// A batch bigger than the free space publishes what fits, waits (bounded) for room and continues; it still
    /// ends with one sync. Errors: `Timeout(CmdSync)` / `Timeout(CmdqSpace)` when the SMMU stops consuming (the
    /// commands stay queued; a later batch continues after them), `CommandError` when the SMMU rejected one of
    /// them (it was skipped, the others completed), `GlobalError` for other `GERROR` bits.
    pub fn submit<I: IntoIterator<Item = Command>>(&mut self, cmds: I) -> Result<(), Error> {
        let mut errors = BatchErrors::default();
        for cmd in cmds {
            // Keep one slot for the closing sync.
            self.reserve(2, &mut errors)?;
            self.push(cmd);
        }
        self.reserve(1, &mut errors)?;
        self.push(Command::sync(SyncCompletion::None));
        self.counters.batches += 1;
        self.publish();
        let waited = self.wait_consumed(Wait::CmdSync, &mut errors);
        match (errors.command, errors.global, waited) {
            (Some((opcode, error)), _, _) => Err(Error::CommandError { opcode, error }),
            (None, global, _) if global != 0 => Err(Error::GlobalError(global)),
            (None, _, result) => result,
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
    /// it as `Err(GlobalError(bits))` (a pending command error also skips the offending command).
    pub fn check_global_errors(&mut self) -> Result<(), Error> {
        let mut errors = BatchErrors::default();
        self.check_gerror(&mut errors);
        match errors.command {
            Some((opcode, error)) => Err(Error::CommandError { opcode, error }),
            None if errors.global != 0 => Err(Error::GlobalError(errors.global)),
            None => Ok(()),
        }
    }

    /// Invalidates every TLB entry of `vmid` (`TLBI_S12_VMALL` + `CMD_SYNC`), e.g. before reusing a VMID.
    pub fn invalidate_vmid(&mut self, vmid: Vmid) -> Result<(), Error> {
        self.submit([Command::tlbi_s12_vmall(vmid)])
    }

    /// Writes `cmd` at the driver's producer index (not yet visible to the SMMU) and counts it.
    fn push(&mut self, cmd: Command) {
        let slot = self.cmdq.pa + (self.cmdq.q.index(self.cmdq.prod) as usize * CMD_SIZE) as u64;
        for (i, dword) in cmd.0.iter().enumerate().take(CMD_DWORDS) {
            self.mem.write64(slot + 8 * i as u64, *dword);
        }
        self.cmdq.prod = self.cmdq.q.advance(self.cmdq.prod, 1);
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
        self.regs.write32(regs::CMDQ_PROD, self.cmdq.prod);
        self.counters.prod_writes += 1;
    }

    /// Ensures `n` free slots, publishing and waiting for the SMMU to make room if needed.
    fn reserve(&mut self, n: u32, errors: &mut BatchErrors) -> Result<(), Error> {
        let q = self.cmdq.q;
        if q.space(self.cmdq.prod, self.cmdq.cons) >= n {
            return Ok(());
        }
        self.cmdq.cons = self.regs.read32(regs::CMDQ_CONS) & q.position_mask();
        if q.space(self.cmdq.prod, self.cmdq.cons) >= n {
            return Ok(());
        }
        self.publish();
        let mut last = self.cmdq.cons;
        for _ in 0..self.config.poll_limit.max(1) {
            let cons = self.regs.read32(regs::CMDQ_CONS);
            self.cmdq.cons = cons & q.position_mask();
            if q.space(self.cmdq.prod, self.cmdq.cons) >= n {
                return Ok(());
            }
            if self.cmdq.cons == last {
                self.check_gerror(errors);
            }
            last = self.cmdq.cons;
            core::hint::spin_loop();
        }
        self.counters.timeouts += 1;
        Err(Error::Timeout(Wait::CmdqSpace))
    }

    /// Waits (bounded) until the SMMU has consumed everything published, handling command errors on the way.
    fn wait_consumed(&mut self, what: Wait, errors: &mut BatchErrors) -> Result<(), Error> {
        let q = self.cmdq.q;
        let mut last = None;
        for _ in 0..self.config.poll_limit.max(1) {
            let cons = self.regs.read32(regs::CMDQ_CONS) & q.position_mask();
            self.cmdq.cons = cons;
            if q.is_empty(self.cmdq.prod, cons) {
                return Ok(());
            }
            if last == Some(cons) {
                self.check_gerror(errors);
            }
            last = Some(cons);
            core::hint::spin_loop();
        }
        self.counters.timeouts += 1;
        Err(Error::Timeout(what))
    }

    /// Handles active global errors: a command error skips the bad command (replaced by a `CMD_SYNC`, as
    /// Linux does) and is acknowledged so the SMMU resumes; other errors are acknowledged and remembered.
    fn check_gerror(&mut self, errors: &mut BatchErrors) {
        let gerror = self.regs.read32(regs::GERROR);
        let gerrorn = self.regs.read32(regs::GERRORN);
        let active = Gerror(gerror).active(gerrorn);
        if active == 0 {
            return;
        }
        if active & Gerror::CMDQ_ERR != 0 {
            let cons = self.regs.read32(regs::CMDQ_CONS);
            let error = CmdqError::from_cons(cons);
            let slot = self.cmdq.pa + (self.cmdq.q.index(cons) as usize * CMD_SIZE) as u64;
            let opcode = (self.mem.read64(slot) & 0xFF) as u8;
            let sync = Command::sync(SyncCompletion::None);
            for (i, dword) in sync.0.iter().enumerate() {
                self.mem.write64(slot + 8 * i as u64, *dword);
            }
            self.counters.cmdq_errors += 1;
            errors.command.get_or_insert((opcode, error));
        }
        let others = active & !Gerror::CMDQ_ERR;
        if others != 0 {
            self.counters.global_errors += 1;
            errors.global |= others;
        }
        // Acknowledge everything active: GERRORN takes GERROR's value for those bits.
        self.regs.write32(regs::GERRORN, gerrorn ^ active);
    }
}
