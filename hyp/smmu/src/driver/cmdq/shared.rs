//! The lock-free path of [`SharedCmdq`]: reserve, write and publish a batch (steps 1 to 3 of the
//! [parent module](super)).

use alloc::boxed::Box;
use core::ops::DerefMut;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::super::Smmu;
use super::{Batch, MAX_CHUNK, SyncTicket};
use crate::cmd::{CMD_DWORDS, CMD_SIZE, Command, SyncCompletion, opcode};
use crate::queue::Queue;
use crate::regs::{CmdqConsReader, RegisterAccess};
use crate::{DmaMemory, DmaWriter, Error, Wait};

/// One queue slot's bookkeeping.
#[derive(Debug, Default)]
pub(super) struct Slot {
    /// Sequence number + 1 of the command last written here (0: never written).
    pub(super) seq: AtomicU64,
    /// The batch that wrote it (valid once `seq` says so).
    pub(super) batch: AtomicU64,
}

/// Command counters kept by the lock-free issue path: one atomic add per command, for its kind (the total is
/// their sum), and none per batch (batches are numbered: the issued ones are those numbered, less `failed`).
#[derive(Debug, Default)]
pub(super) struct IssueCounters {
    /// Commands of no kind counted below.
    pub(super) other: AtomicU64,
    /// Batches that could not be issued whole.
    pub(super) failed: AtomicU64,
    pub(super) syncs: AtomicU64,
    pub(super) tlbi_s2_ipa: AtomicU64,
    pub(super) tlbi_s2_ipa_range: AtomicU64,
    pub(super) tlbi_s12_vmall: AtomicU64,
    pub(super) tlbi_nsnh_all: AtomicU64,
    pub(super) tlbi_el2_all: AtomicU64,
    pub(super) cfgi_ste: AtomicU64,
    pub(super) cfgi_range: AtomicU64,
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
    pub(super) cons: C,
    pub(super) mem: W,
    pub(super) pa: u64,
    pub(super) q: Queue,
    pub(super) poll_limit: u32,
    /// The software producer index: commands reserved since init (claimed by compare-and-swap).
    pub(super) reserved: AtomicU64,
    /// Commands published through `CMDQ_PROD` since init (only written with the driver's lock held).
    pub(super) published: AtomicU64,
    pub(super) slots: Box<[Slot]>,
    pub(super) next_batch: AtomicU64,
    /// Commands the SMMU is known to have consumed since init (a lower bound; only ever raised).
    pub(super) consumed: AtomicU64,
    /// Number of blames the driver holds (completion takes the lock only when this is non-zero).
    pub(super) blamed: AtomicUsize,
    pub(super) counters: IssueCounters,
    pub(super) sync_polls: AtomicU64,
    pub(super) timeouts: AtomicU64,
    /// Issues that lost a compare-and-swap or waited for the owner to publish.
    pub(super) waits: AtomicU64,
    /// Lost compare-and-swaps and polls while waiting for the owner, summed.
    pub(super) spins: AtomicU64,
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
    pub(in crate::driver) fn new(cons: C, mem: W, pa: u64, q: Queue, poll_limit: u32) -> Self {
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
    pub(super) fn observe(&self, read: impl FnOnce() -> u32) -> (u64, u32) {
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

    pub(super) fn slot(&self, seq: u64) -> &Slot {
        &self.slots[self.q.index(seq as u32) as usize]
    }

    pub(super) fn slot_pa(&self, seq: u64) -> u64 {
        self.pa + (self.q.index(seq as u32) as usize * CMD_SIZE) as u64
    }

    /// Whether the command with sequence number `seq` has been written.
    pub(super) fn is_written(&self, seq: u64) -> bool {
        self.slot(seq).seq.load(Ordering::SeqCst) == seq + 1
    }

    /// The batch that wrote the command with sequence number `seq`, if it is still in its slot.
    pub(super) fn owner(&self, seq: u64) -> Option<Batch> {
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
            // The fast path: the one locked step every batch takes, without `issue_step`'s dispatch.
            IssueStep::Publish => lock(true).map(|mut s| {
                s.publish_written();
                Ok(())
            }),
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
        // A batch whose iterator promises fewer commands than a chunk (an invalidation plan, an array) is
        // written straight from the iterator into its reserved slots: no chunk buffer to fill first.
        let mut direct = match cmds.size_hint() {
            (_, Some(most)) if most < chunk_max => Some(most),
            _ => None,
        };
        let mut end = None;
        let result = loop {
            let (start, n, last) = if let Some(most) = direct.take() {
                let n = most + 1;
                let start = match self.reserve(batch, n as u64, &mut step) {
                    Ok(start) => start,
                    Err(e) => break Err(e),
                };
                self.write_direct(batch, start, most, &mut cmds)
            } else {
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
                }
                (start, n as u64, last)
            };
            let chunk_end = start + n;
            end = Some(chunk_end);
            self.publish(batch, chunk_end, &mut step);
            if last {
                break Ok(SyncTicket {
                    batch,
                    end: chunk_end,
                });
            }
        };
        if result.is_err() {
            self.counters.failed.fetch_add(1, Ordering::Relaxed);
            let end = end.unwrap_or(0);
            let _ = step(batch, IssueStep::Failed { end });
        }
        result
    }

    /// Writes the commands of `cmds`, which promised at most `most`, and the batch's `CMD_SYNC` into the `most + 1`
    /// slots reserved from `start`: `(start, most + 1, last)`. An iterator that yields fewer commands leaves
    /// its missing slots to `CMD_SYNC`s (no-ops); one that yields more puts its next command in the last slot
    /// instead of the sync (`last` false: the batch goes on, chunk by chunk, and its sync closes a later one).
    fn write_direct(
        &self,
        batch: Batch,
        start: u64,
        most: usize,
        cmds: &mut impl Iterator<Item = Command>,
    ) -> (u64, u64, bool) {
        let sync = Command::sync(SyncCompletion::None);
        let mut seq = start;
        for cmd in cmds.by_ref().take(most) {
            self.write(batch, seq, cmd);
            seq += 1;
        }
        while seq < start + most as u64 {
            self.write(batch, seq, sync);
            seq += 1;
        }
        let more = cmds.next();
        self.write(batch, seq, more.unwrap_or(sync));
        (start, most as u64 + 1, more.is_none())
    }

    /// Claims `n` slots (at most the queue) for `batch`: the sequence number of the first.
    pub(super) fn reserve(
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
    pub(super) fn write(&self, batch: Batch, seq: u64, cmd: Command) {
        let index = self.q.index(seq as u32) as usize;
        let pa = self.pa + (index * CMD_SIZE) as u64;
        for (i, dword) in cmd.0.iter().enumerate() {
            self.mem.write64(pa + 8 * i as u64, *dword);
        }
        self.count_kind(cmd);
        let slot = &self.slots[index];
        slot.batch.store(batch.0, Ordering::Relaxed);
        // SeqCst: a publisher's scan that starts after this store sees it (module docs, step 3), and sees the
        // command written before it.
        slot.seq.store(seq + 1, Ordering::SeqCst);
    }

    /// Makes sure the slots up to `end` are published, or left to an earlier slot's writer (module docs).
    pub(super) fn publish(
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

    /// Counts `cmd` in its kind's counter (`other` for a kind not counted on its own).
    fn count_kind(&self, cmd: Command) {
        let c = &self.counters;
        let counter = match cmd.opcode() {
            opcode::CMD_SYNC => &c.syncs,
            opcode::TLBI_S2_IPA if cmd.is_range_tlbi() => &c.tlbi_s2_ipa_range,
            opcode::TLBI_S2_IPA => &c.tlbi_s2_ipa,
            opcode::TLBI_S12_VMALL => &c.tlbi_s12_vmall,
            opcode::TLBI_NSNH_ALL => &c.tlbi_nsnh_all,
            opcode::TLBI_EL2_ALL => &c.tlbi_el2_all,
            opcode::CFGI_STE => &c.cfgi_ste,
            opcode::CFGI_STE_RANGE => &c.cfgi_range,
            _ => &c.other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
