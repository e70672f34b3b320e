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
//! 2. **Write** its commands into its slots (through the memory's [`crate::DmaWriter`]) and mark each slot
//!    written: the slot's `seq` becomes the command's sequence number + 1 (the per-slot sequence that Linux
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

use alloc::boxed::Box;
use core::ops::DerefMut;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::{Blame, Smmu};
use crate::cmd::{
    CMD_DWORDS, CMD_SIZE, Command, CommandKind, InvalidationPlan, S2Invalidation, SyncCompletion,
    plan_s2_invalidation,
};
use crate::queue::Queue;
use crate::regs::{self, CmdqConsReader, CmdqError, Gerror, RegisterAccess};
use crate::{DmaMemory, DmaWriter, Error, Vmid, Wait};

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

/// One queue slot's bookkeeping.
#[derive(Debug, Default)]
struct Slot {
    /// Sequence number + 1 of the command last written here (0: never written).
    seq: AtomicU64,
    /// The batch that wrote it (valid once `seq` says so).
    batch: AtomicU64,
}

/// Command counters kept by the lock-free issue path.
#[derive(Debug, Default)]
struct IssueCounters {
    commands: AtomicU64,
    batches: AtomicU64,
    syncs: AtomicU64,
    tlbi_s2_ipa: AtomicU64,
    tlbi_s2_ipa_range: AtomicU64,
    tlbi_s12_vmall: AtomicU64,
    tlbi_nsnh_all: AtomicU64,
    tlbi_el2_all: AtomicU64,
    cfgi_ste: AtomicU64,
    cfgi_range: AtomicU64,
}

/// Why [`SharedCmdq::issue`] needs the driver's lock (see [`Smmu::issue_step`]).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum IssueStep {
    /// Write `CMDQ_PROD` for every contiguous written slot ([`Smmu::publish_written`]); taken with `try_lock`.
    Publish,
    /// Waiting for room, `CMDQ_CONS` did not move: publish, read `CMDQ_CONS` and check `GERROR`.
    Stalled,
    /// The batch could not be issued whole: forget its blame; errors later found in it go to their finder.
    Failed {
        /// Sequence number just past what it wrote.
        end: u64,
    },
}

/// The command queue shared by every CPU: issue and wait without the driver's lock (see the module docs).
/// Get it with [`Smmu::shared_cmdq`].
pub struct SharedCmdq<C, W> {
    cons: C,
    mem: W,
    pa: u64,
    q: Queue,
    poll_limit: u32,
    /// The software producer index: commands reserved since init (claimed by compare-and-swap).
    reserved: AtomicU64,
    /// Commands published through `CMDQ_PROD` since init (only written with the driver's lock held).
    published: AtomicU64,
    slots: Box<[Slot]>,
    next_batch: AtomicU64,
    /// Commands the SMMU is known to have consumed since init (a lower bound; only ever raised).
    consumed: AtomicU64,
    /// Number of blames the driver holds (completion takes the lock only when this is non-zero).
    blamed: AtomicUsize,
    counters: IssueCounters,
    sync_polls: AtomicU64,
    timeouts: AtomicU64,
    /// Issues that lost a compare-and-swap or waited for the owner to publish.
    waits: AtomicU64,
    /// Lost compare-and-swaps and polls while waiting for the owner, summed.
    spins: AtomicU64,
}

impl<C, W> core::fmt::Debug for SharedCmdq<C, W> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SharedCmdq")
            .field("q", &self.q)
            .field("reserved", &self.reserved)
            .field("published", &self.published)
            .field("consumed", &self.consumed)
            .field("blamed", &self.blamed)
            .finish_non_exhaustive()
    }
}

impl<C: CmdqConsReader, W: DmaWriter> SharedCmdq<C, W> {
    pub(super) fn new(cons: C, mem: W, pa: u64, q: Queue, poll_limit: u32) -> Self {
        Self {
            cons,
            mem,
            pa,
            q,
            poll_limit,
            reserved: AtomicU64::new(0),
            published: AtomicU64::new(0),
            slots: (0..q.entries()).map(|_| Slot::default()).collect(),
            next_batch: AtomicU64::new(1),
            consumed: AtomicU64::new(0),
            blamed: AtomicUsize::new(0),
            counters: IssueCounters::default(),
            sync_polls: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            waits: AtomicU64::new(0),
            spins: AtomicU64::new(0),
        }
    }

    /// Reads `CMDQ_CONS` with `read`, extends the value to a sequence number (see the module docs) and raises
    /// `consumed`; returns the sequence number and the raw value. `consumed` is loaded *before* the register
    /// is read: every value it holds then came from an earlier read, so the SMMU's consumer is at least there
    /// when `read` runs. (Loaded after, it could come from a later read by another CPU, be ahead of this
    /// value, and the difference would wrap to a position almost two laps beyond: a sync reported passed
    /// that the SMMU has not reached.)
    fn observe(&self, read: impl FnOnce() -> u32) -> (u64, u32) {
        let base = self.consumed.load(Ordering::SeqCst);
        let cons = read();
        let ahead = cons.wrapping_sub(base as u32) & self.q.position_mask();
        let seq = base + u64::from(ahead);
        self.consumed.fetch_max(seq, Ordering::AcqRel);
        (seq, cons)
    }

    /// Commands the SMMU is known to have consumed since init.
    pub fn consumed(&self) -> u64 {
        self.consumed.load(Ordering::Acquire)
    }

    /// Commands published through `CMDQ_PROD` since init.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Acquire)
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

    /// Contention of the lock-free issue steps since init: (issues that lost a compare-and-swap on the
    /// producer index or waited for the owner to publish, lost compare-and-swaps and owner-wait polls).
    pub fn contention(&self) -> (u64, u64) {
        (
            self.waits.load(Ordering::Relaxed),
            self.spins.load(Ordering::Relaxed),
        )
    }

    fn slot(&self, seq: u64) -> &Slot {
        &self.slots[self.q.index(seq as u32) as usize]
    }

    fn slot_pa(&self, seq: u64) -> u64 {
        self.pa + (self.q.index(seq as u32) as usize * CMD_SIZE) as u64
    }

    /// Whether the command with sequence number `seq` has been written.
    fn is_written(&self, seq: u64) -> bool {
        self.slot(seq).seq.load(Ordering::SeqCst) == seq + 1
    }

    /// The batch that wrote the command with sequence number `seq`, if it is still in its slot.
    fn owner(&self, seq: u64) -> Option<Batch> {
        let slot = self.slot(seq);
        let batch = slot.batch.load(Ordering::Acquire);
        (slot.seq.load(Ordering::Acquire) == seq + 1).then_some(Batch(batch))
    }

    /// Issues `cmds` and one `CMD_SYNC` as one batch from any CPU, without holding the driver's lock: reserve,
    /// write, publish (module docs); returns the batch's [`SyncTicket`] without waiting for the SMMU (see
    /// [`SharedCmdq::wait`]). `lock(true)` must try to take the driver's lock without waiting, `lock(false)`
    /// take it (`None` only for a try that failed).
    ///
    /// # Errors
    ///
    /// `Timeout(CmdqSpace)` when the SMMU stops consuming (what was written stays queued; a later batch
    /// continues after it).
    pub fn issue<R, M, G>(
        &self,
        cmds: impl IntoIterator<Item = Command>,
        mut lock: impl FnMut(bool) -> Option<G>,
    ) -> Result<SyncTicket, Error>
    where
        R: RegisterAccess<Cons = C>,
        M: DmaMemory<Writer = W>,
        G: DerefMut<Target = Smmu<R, M>>,
    {
        self.issue_with(cmds, |batch, step| match step {
            IssueStep::Publish => lock(true).map(|mut s| s.issue_step(batch, step)),
            _ => lock(false).map(|mut s| s.issue_step(batch, step)),
        })
    }

    /// [`SharedCmdq::issue`] with the locked steps as one callback: `step(batch, IssueStep::Publish)` returns
    /// `None` when the lock is taken (only that step may), others run [`Smmu::issue_step`] under the lock.
    ///
    /// # Errors
    ///
    /// As [`SharedCmdq::issue`].
    pub fn issue_with(
        &self,
        cmds: impl IntoIterator<Item = Command>,
        mut step: impl FnMut(Batch, IssueStep) -> Option<Result<(), Error>>,
    ) -> Result<SyncTicket, Error> {
        let batch = Batch(self.next_batch.fetch_add(1, Ordering::Relaxed));
        let chunk_max = MAX_CHUNK.min(self.q.entries() as usize);
        let mut cmds = cmds.into_iter();
        let mut kinds = [0u64; KINDS];
        let mut end = None;
        let result = loop {
            // The next chunk: up to `chunk_max` commands; the one that has room for the sync is the last.
            let mut chunk = [Command([0; CMD_DWORDS]); MAX_CHUNK];
            let mut n = 0;
            while n < chunk_max {
                let Some(cmd) = cmds.next() else { break };
                chunk[n] = cmd;
                n += 1;
            }
            let last = n < chunk_max;
            if last {
                chunk[n] = Command::sync(SyncCompletion::None);
                n += 1;
            }
            let start = match self.reserve(batch, n as u64, &mut step) {
                Ok(start) => start,
                Err(e) => break Err(e),
            };
            for (i, cmd) in chunk[..n].iter().enumerate() {
                self.write(batch, start + i as u64, *cmd);
                count_kind(&mut kinds, *cmd);
            }
            let chunk_end = start + n as u64;
            end = Some(chunk_end);
            self.publish(batch, chunk_end, &mut step);
            if last {
                break Ok(SyncTicket {
                    batch,
                    end: chunk_end,
                });
            }
        };
        self.add_counts(&kinds);
        if result.is_err() {
            let end = end.unwrap_or(0);
            let _ = step(batch, IssueStep::Failed { end });
        } else {
            self.counters.batches.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Claims `n` slots (at most the queue) for `batch`: the sequence number of the first.
    fn reserve(
        &self,
        batch: Batch,
        n: u64,
        step: &mut impl FnMut(Batch, IssueStep) -> Option<Result<(), Error>>,
    ) -> Result<u64, Error> {
        let entries = u64::from(self.q.entries());
        let mut lost = 0u64;
        let mut polls = 0u32;
        let mut last = None;
        let mut reserved = self.reserved.load(Ordering::Relaxed);
        let result = loop {
            if reserved + n - self.consumed() <= entries {
                match self.reserved.compare_exchange_weak(
                    reserved,
                    reserved + n,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                ) {
                    Ok(start) => break Ok(start),
                    Err(now) => {
                        lost += 1;
                        reserved = now;
                        continue;
                    }
                }
            }
            // No room: poll for the SMMU to consume; when it does not move, publish and check `GERROR` under
            // the lock (the queue may be full of written, unpublished commands, or stopped on an error).
            if polls >= self.poll_limit.max(1) {
                self.timeouts.fetch_add(1, Ordering::Relaxed);
                break Err(Error::Timeout(Wait::CmdqSpace));
            }
            polls += 1;
            let (seq, _) = self.observe(|| self.cons.read_cmdq_cons());
            if last == Some(seq)
                && let Some(Err(e)) = step(batch, IssueStep::Stalled)
            {
                break Err(e);
            }
            last = Some(seq);
            core::hint::spin_loop();
            reserved = self.reserved.load(Ordering::Relaxed);
        };
        if lost > 0 {
            self.waits.fetch_add(1, Ordering::Relaxed);
            self.spins.fetch_add(lost, Ordering::Relaxed);
        }
        result
    }

    /// Writes `cmd` into the reserved slot of sequence number `seq` and marks the slot written.
    fn write(&self, batch: Batch, seq: u64, cmd: Command) {
        let pa = self.slot_pa(seq);
        for (i, dword) in cmd.0.iter().enumerate() {
            self.mem.write64(pa + 8 * i as u64, *dword);
        }
        let slot = self.slot(seq);
        slot.batch.store(batch.0, Ordering::Relaxed);
        // SeqCst: a publisher's scan that starts after this store sees it (module docs, step 3), and sees the
        // command written before it.
        slot.seq.store(seq + 1, Ordering::SeqCst);
    }

    /// Makes sure the slots up to `end` are published, or left to an earlier slot's writer (module docs).
    fn publish(
        &self,
        batch: Batch,
        end: u64,
        step: &mut impl FnMut(Batch, IssueStep) -> Option<Result<(), Error>>,
    ) {
        let mut spins = 0u64;
        for _ in 0..self.poll_limit.max(1) {
            if self.published.load(Ordering::SeqCst) >= end
                || step(batch, IssueStep::Publish).is_some()
            {
                break;
            }
            spins += 1;
            core::hint::spin_loop();
        }
        // Polls running out leave the slots written: the next publisher, or this batch's waiter when the
        // queue stalls ([`SyncStep::Stalled`]), publishes them.
        if spins > 0 {
            self.waits.fetch_add(1, Ordering::Relaxed);
            self.spins.fetch_add(spins, Ordering::Relaxed);
        }
    }

    fn add_counts(&self, kinds: &[u64; KINDS]) {
        let c = &self.counters;
        let fields = [
            &c.commands,
            &c.syncs,
            &c.tlbi_s2_ipa,
            &c.tlbi_s2_ipa_range,
            &c.tlbi_s12_vmall,
            &c.tlbi_nsnh_all,
            &c.tlbi_el2_all,
            &c.cfgi_ste,
            &c.cfgi_range,
        ];
        for (field, n) in fields.iter().zip(kinds) {
            if *n != 0 {
                field.fetch_add(*n, Ordering::Relaxed);
            }
        }
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

/// Entries of a command count: commands, syncs, then the kinds [`count_kind`] tells apart.
const KINDS: usize = 9;

/// Counts `cmd` into `kinds`: commands, syncs, then one per [`IssueCounters`] command kind.
fn count_kind(kinds: &mut [u64; KINDS], cmd: Command) {
    kinds[0] += 1;
    let i = match cmd.decode() {
        CommandKind::Sync(_) => 1,
        CommandKind::TlbiS2Ipa(t) if t.tg != 0 => 3,
        CommandKind::TlbiS2Ipa(_) => 2,
        CommandKind::TlbiS12Vmall { .. } => 4,
        CommandKind::TlbiNsnhAll => 5,
        CommandKind::TlbiEl2All => 6,
        CommandKind::CfgiSte { .. } => 7,
        CommandKind::CfgiSteRange { .. } => 8,
        CommandKind::PrefetchConfig { .. } | CommandKind::Other { .. } => return,
    };
    kinds[i] += 1;
}

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

    /// Reads `CMDQ_CONS` through the driver's register access and returns the consumed sequence number.
    fn read_cons(&mut self) -> u64 {
        let r = &mut self.regs;
        self.cmdq.shared.observe(|| r.read32(regs::CMDQ_CONS)).0
    }

    fn read_cons_passed(&mut self, ticket: SyncTicket) -> bool {
        self.read_cons() >= ticket.end
    }

    /// Records that nobody waits for `batch` (ending at `end`) any more; forgets batches already consumed.
    fn abandon(&mut self, batch: Batch, end: u64) {
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
    fn check_gerror(&mut self, fallback: Batch) {
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
    fn blame(&mut self, batch: Batch, error: Error) {
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
    fn take_blame(&mut self, batch: Batch) -> Option<Error> {
        let i = self.cmdq.blame.iter().position(|b| b.batch == batch)?;
        let error = self.cmdq.blame.remove(i).error;
        self.sync_blame_count();
        Some(error)
    }

    fn sync_blame_count(&self) {
        self.cmdq
            .shared
            .blamed
            .store(self.cmdq.blame.len(), Ordering::Release);
    }

    /// The command counters of the shared queue, merged into `c`.
    pub(super) fn cmdq_counters(&self, c: &mut super::Counters) {
        let shared = &self.cmdq.shared;
        let k = &shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        c.commands = get(&k.commands);
        c.batches = get(&k.batches);
        c.syncs = get(&k.syncs);
        c.tlbi_s2_ipa = get(&k.tlbi_s2_ipa);
        c.tlbi_s2_ipa_range = get(&k.tlbi_s2_ipa_range);
        c.tlbi_s12_vmall = get(&k.tlbi_s12_vmall);
        c.tlbi_nsnh_all = get(&k.tlbi_nsnh_all);
        c.tlbi_el2_all = get(&k.tlbi_el2_all);
        c.cfgi_ste = get(&k.cfgi_ste);
        c.cfgi_range = get(&k.cfgi_range);
        let (sync_polls, timeouts) = shared.counters();
        c.sync_polls = sync_polls;
        c.timeouts += timeouts;
    }
}
