//! The fake SMMU's registers and command processing.

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

use super::FakeMemory;
use super::qemu;
use super::translate::TlbEntry;
use crate::cmd::{CFGI_RANGE_ALL, CMD_SIZE, Command, CommandKind};
use crate::event::{EVT_DWORDS, EVT_SIZE};
use crate::queue::Queue;
use crate::regs::{
    self, CMDQ_CONS_ERR_SHIFT, CmdqConsReader, CmdqError, Cr0, GBPA_UPDATE, Gerror,
    Q_OVERFLOW_FLAG, QueueBase, RegisterAccess,
};
use crate::ste::Ste;
use warden_abi::PAGE_SHIFT;

/// One register access seen by the fake.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct RegAccess {
    /// A write (else a read).
    pub write: bool,
    /// Register offset.
    pub offset: usize,
    /// Value read or written.
    pub value: u64,
}

/// A behavioural SMMUv3 (see the module docs of [`crate::fake`]).
#[derive(Debug)]
pub struct FakeSmmu {
    pub(super) mem: FakeMemory,
    idr: [u32; 6],
    gbpa: u32,
    cr0: u32,
    cr0ack: u32,
    cr1: u32,
    cr2: u32,
    irq_ctrl: u32,
    irq_ctrlack: u32,
    gerror: u32,
    gerrorn: u32,
    strtab_base: u64,
    strtab_base_cfg: u32,
    cmdq_base: u64,
    cmdq_prod: u32,
    cmdq_cons: u32,
    /// `cmdq_cons` as [`FakeCmdqCons`] readers see it, updated after every register access.
    cons_shared: Arc<AtomicU32>,
    evtq_base: u64,
    pub(super) evtq_prod: u32,
    evtq_cons: u32,
    accesses: Vec<RegAccess>,
    executed: Vec<Command>,
    pub(super) tlb: BTreeMap<(u16, u64), TlbEntry>,
    pub(super) ste_cache: BTreeMap<u32, Ste>,
    sync_stall: bool,
    consume_budget: Option<u32>,
    gbpa_stuck: bool,
    cr0ack_stuck: bool,
    pub(super) events_lost: u64,
    pub(super) tlb_conflicts: u64,
}

impl FakeSmmu {
    /// A fake with QEMU 10's virt machine ID registers and reset state, using `mem` as physical memory.
    pub fn qemu(mem: FakeMemory) -> Self {
        Self::with_ids(mem, qemu::IDR0, qemu::IDR1, qemu::IDR3, qemu::IDR5)
    }

    /// A fake with the given `IDR0`, `IDR1`, `IDR3` and `IDR5`.
    pub fn with_ids(mem: FakeMemory, idr0: u32, idr1: u32, idr3: u32, idr5: u32) -> Self {
        Self {
            mem,
            idr: [idr0, idr1, 0, idr3, 0, idr5],
            gbpa: qemu::GBPA,
            cr0: 0,
            cr0ack: 0,
            cr1: 0,
            cr2: 0,
            irq_ctrl: 0,
            irq_ctrlack: 0,
            gerror: 0,
            gerrorn: 0,
            strtab_base: 0,
            strtab_base_cfg: 0,
            cmdq_base: 0,
            cmdq_prod: 0,
            cmdq_cons: 0,
            cons_shared: Arc::new(AtomicU32::new(0)),
            evtq_base: 0,
            evtq_prod: 0,
            evtq_cons: 0,
            accesses: Vec::new(),
            executed: Vec::new(),
            tlb: BTreeMap::new(),
            ste_cache: BTreeMap::new(),
            sync_stall: false,
            consume_budget: None,
            gbpa_stuck: false,
            cr0ack_stuck: false,
            events_lost: 0,
            tlb_conflicts: 0,
        }
    }

    /// Every register access so far, in order.
    pub fn accesses(&self) -> &[RegAccess] {
        &self.accesses
    }

    /// Commands executed so far, in order (a command is executed when `CMDQ_CONS` moves past it).
    pub fn executed(&self) -> &[Command] {
        &self.executed
    }

    /// Returns and forgets the executed commands and register accesses.
    pub fn take_executed(&mut self) -> Vec<Command> {
        self.accesses.clear();
        core::mem::take(&mut self.executed)
    }

    /// Makes `CMD_SYNC` never complete (the consumer stops in front of it) until called with `false`.
    pub fn set_sync_stall(&mut self, stall: bool) {
        self.sync_stall = stall;
        if !stall {
            self.process_cmdq(u32::MAX);
            self.share_cons();
        }
    }

    /// Makes the current `CMDQ_CONS` visible to [`FakeCmdqCons`] readers.
    fn share_cons(&self) {
        self.cons_shared.store(self.cmdq_cons, Ordering::Release);
    }

    /// A slow consumer: at most `budget` commands consumed per `CMDQ_PROD` write or `CMDQ_CONS` read
    /// (`Some(0)`: stopped); `None` consumes everything at once, starting with what is queued now.
    pub fn set_consume_budget(&mut self, budget: Option<u32>) {
        self.consume_budget = budget;
        if budget.is_none() {
            self.process_cmdq(u32::MAX);
            self.share_cons();
        }
    }

    /// Makes the `GBPA.Update` handshake never complete.
    pub fn set_gbpa_stuck(&mut self, stuck: bool) {
        self.gbpa_stuck = stuck;
    }

    /// Makes `CR0ACK` stop following `CR0`.
    pub fn set_cr0ack_stuck(&mut self, stuck: bool) {
        self.cr0ack_stuck = stuck;
    }

    /// Current `GBPA`.
    pub fn gbpa(&self) -> u32 {
        self.gbpa
    }

    /// Current `CR0ACK`.
    pub fn cr0ack(&self) -> u32 {
        self.cr0ack
    }

    /// Number of (VMID, page) entries in the TLB.
    pub fn tlb_len(&self) -> usize {
        self.tlb.len()
    }

    /// `IDR3.BBML`, the break-before-make level the fake models: below 2, a cached block whose descriptor was
    /// replaced by a table without an invalid entry and TLB invalidation in between is a TLB conflict.
    pub(super) fn bbml(&self) -> u32 {
        regs::Idr3(self.idr[3]).bbml()
    }

    /// The ID registers decoded as the driver decodes them (stage-2 input and output sizes).
    pub(super) fn features(&self) -> crate::Features {
        crate::Features::from_idrs(self.idr[0], self.idr[1], self.idr[3], self.idr[5])
    }

    /// TLB conflicts seen (only when `IDR3.BBML` < 2): a block replaced by a table while cached (found when a
    /// `TLBI_*` drops the stale block), or a walk result overlapping a cached entry of another size.
    pub fn tlb_conflicts(&self) -> u64 {
        self.tlb_conflicts
    }

    /// Event records the fake could not write because the event queue was full.
    pub fn events_lost(&self) -> u64 {
        self.events_lost
    }

    /// Whether an enable bit is acknowledged.
    pub(super) fn enabled(&self, bit: Cr0) -> bool {
        Cr0(self.cr0ack).contains(bit)
    }

    pub(super) fn strtab(&self) -> (u64, u32) {
        (self.strtab_base, self.strtab_base_cfg)
    }

    /// Consumes up to `budget` commands.
    fn process_cmdq(&mut self, budget: u32) {
        if !self.enabled(Cr0::CMDQEN)
            || Gerror(self.gerror).active(self.gerrorn) & Gerror::CMDQ_ERR != 0
        {
            return;
        }
        let base = QueueBase(self.cmdq_base);
        let q = Queue::new(base.log2size());
        let mut done = 0;
        while done < budget && !q.is_empty(self.cmdq_prod, self.cmdq_cons) {
            let slot = base.addr() + (q.index(self.cmdq_cons) as usize * CMD_SIZE) as u64;
            let (Some(d0), Some(d1)) = (self.mem.try_read64(slot), self.mem.try_read64(slot + 8))
            else {
                self.command_error(CmdqError::Abort);
                return;
            };
            let cmd = Command([d0, d1]);
            match cmd.decode() {
                CommandKind::Sync(_) if self.sync_stall => return,
                CommandKind::Other { .. } => {
                    self.command_error(CmdqError::Illegal);
                    return;
                }
                CommandKind::TlbiEl2All if !crate::regs::Idr0(self.idr[0]).hyp() => {
                    self.command_error(CmdqError::Illegal);
                    return;
                }
                kind => self.execute(kind),
            }
            self.executed.push(cmd);
            self.cmdq_cons = q.advance(self.cmdq_cons, 1);
            done += 1;
        }
    }

    /// Stops the queue on the command at CONS with `error` (IHI 0070 §7.1).
    fn command_error(&mut self, error: CmdqError) {
        self.cmdq_cons =
            (self.cmdq_cons & !(0x7F << CMDQ_CONS_ERR_SHIFT)) | error.code() << CMDQ_CONS_ERR_SHIFT;
        self.gerror = (self.gerror & !Gerror::CMDQ_ERR)
            | ((self.gerrorn ^ Gerror::CMDQ_ERR) & Gerror::CMDQ_ERR);
    }

    fn execute(&mut self, kind: CommandKind) {
        match kind {
            CommandKind::CfgiSte { sid, .. } => {
                self.ste_cache.remove(&sid.0);
            }
            CommandKind::CfgiSteRange { sid, range } => {
                if range >= CFGI_RANGE_ALL {
                    self.ste_cache.clear();
                } else {
                    let span = 1u64 << (range + 1);
                    let first = u64::from(sid.0) & !(span - 1);
                    self.ste_cache
                        .retain(|s, _| !(first..first + span).contains(&u64::from(*s)));
                }
            }
            CommandKind::TlbiS2Ipa(t) => {
                let first = t.ipa >> PAGE_SHIFT;
                let pages = t.span() >> PAGE_SHIFT;
                let vmid = t.vmid.0;
                // Drops every cached page whose leaf overlaps the range: a non-range TLBI of one address
                // inside a 2 MiB or 1 GiB block removes the whole block (the fake caches it page by page).
                self.drop_tlb(|v, e| v == vmid && e.leaf_overlaps(first, pages));
            }
            CommandKind::TlbiS12Vmall { vmid } => self.drop_tlb(|v, _| v == vmid.0),
            CommandKind::TlbiNsnhAll => self.drop_tlb(|_, _| true),
            CommandKind::TlbiEl2All | CommandKind::PrefetchConfig { .. } | CommandKind::Sync(_) => {
            }
            CommandKind::Other { .. } => {}
        }
    }

    /// Drops the TLB entries `f` selects; without BBML2, counts a TLB conflict for each stale block among them
    /// that was replaced by a table live (the SMMU could have held both translations).
    fn drop_tlb(&mut self, f: impl Fn(u16, &TlbEntry) -> bool) {
        let check = self.bbml() < 2;
        let mut conflicts = 0;
        self.tlb.retain(|&(v, _), e| {
            let drop = f(v, e);
            if drop && check && e.block_replaced_live(&self.mem) {
                conflicts += 1;
            }
            !drop
        });
        self.tlb_conflicts += conflicts;
    }

    /// Writes an event record to the event queue, or signals overflow when it is full (IHI 0070 §3.5.4).
    pub fn record_event(&mut self, raw: [u64; EVT_DWORDS]) {
        if !self.enabled(Cr0::EVTQEN) {
            self.events_lost += 1;
            return;
        }
        let base = QueueBase(self.evtq_base);
        let q = Queue::new(base.log2size());
        if q.is_full(self.evtq_prod, self.evtq_cons) {
            self.events_lost += 1;
            // Toggle OVFLG only if no overflow is pending acknowledgement.
            if (self.evtq_prod ^ self.evtq_cons) & Q_OVERFLOW_FLAG == 0 {
                self.evtq_prod ^= Q_OVERFLOW_FLAG;
            }
            return;
        }
        let slot = base.addr() + (q.index(self.evtq_prod) as usize * EVT_SIZE) as u64;
        for (i, dword) in raw.iter().enumerate() {
            self.mem.try_write64(slot + 8 * i as u64, *dword);
        }
        self.evtq_prod = (self.evtq_prod & Q_OVERFLOW_FLAG) | q.advance(self.evtq_prod, 1);
    }

    fn read(&mut self, offset: usize) -> u64 {
        match offset {
            regs::IDR0 => self.idr[0].into(),
            regs::IDR1 => self.idr[1].into(),
            regs::IDR2 => self.idr[2].into(),
            regs::IDR3 => self.idr[3].into(),
            regs::IDR4 => self.idr[4].into(),
            regs::IDR5 => self.idr[5].into(),
            regs::AIDR => 2, // SMMUv3.2
            regs::CR0 => self.cr0.into(),
            regs::CR0ACK => self.cr0ack.into(),
            regs::CR1 => self.cr1.into(),
            regs::CR2 => self.cr2.into(),
            regs::GBPA => self.gbpa.into(),
            regs::IRQ_CTRL => self.irq_ctrl.into(),
            regs::IRQ_CTRLACK => self.irq_ctrlack.into(),
            regs::GERROR => self.gerror.into(),
            regs::GERRORN => self.gerrorn.into(),
            regs::STRTAB_BASE => self.strtab_base,
            regs::STRTAB_BASE_CFG => self.strtab_base_cfg.into(),
            regs::CMDQ_BASE => self.cmdq_base,
            regs::CMDQ_PROD => self.cmdq_prod.into(),
            regs::CMDQ_CONS => {
                if let Some(budget) = self.consume_budget {
                    self.process_cmdq(budget);
                }
                self.cmdq_cons.into()
            }
            regs::EVTQ_BASE => self.evtq_base,
            regs::EVTQ_PROD => self.evtq_prod.into(),
            regs::EVTQ_CONS => self.evtq_cons.into(),
            _ => 0,
        }
    }

    fn write(&mut self, offset: usize, value: u64) {
        let v32 = value as u32;
        match offset {
            regs::CR0 => {
                self.cr0 = v32;
                if !self.cr0ack_stuck {
                    self.cr0ack = v32;
                }
                if !Cr0(v32).contains(Cr0::SMMUEN) {
                    self.ste_cache.clear();
                }
            }
            regs::CR1 => self.cr1 = v32,
            regs::CR2 => self.cr2 = v32,
            regs::GBPA => {
                self.gbpa = if self.gbpa_stuck {
                    v32 | GBPA_UPDATE
                } else {
                    v32 & !GBPA_UPDATE
                };
            }
            regs::IRQ_CTRL => {
                self.irq_ctrl = v32;
                self.irq_ctrlack = v32;
            }
            regs::GERRORN => {
                self.gerrorn = v32;
                if Gerror(self.gerror).active(self.gerrorn) & Gerror::CMDQ_ERR == 0 {
                    self.cmdq_cons &= !(0x7F << CMDQ_CONS_ERR_SHIFT);
                    self.process_cmdq(self.consume_budget.unwrap_or(u32::MAX));
                }
            }
            regs::STRTAB_BASE => self.strtab_base = value,
            regs::STRTAB_BASE_CFG => self.strtab_base_cfg = v32,
            regs::CMDQ_BASE => self.cmdq_base = value,
            regs::CMDQ_PROD => {
                self.cmdq_prod = v32;
                self.process_cmdq(self.consume_budget.unwrap_or(u32::MAX));
            }
            regs::CMDQ_CONS => self.cmdq_cons = v32,
            regs::EVTQ_BASE => self.evtq_base = value,
            regs::EVTQ_PROD => self.evtq_prod = v32,
            regs::EVTQ_CONS => self.evtq_cons = v32,
            _ => {}
        }
    }

    /// Sets a raw register value behind the driver's back (e.g. a stale `GERROR`).
    pub fn poke(&mut self, offset: usize, value: u32) {
        match offset {
            regs::GERROR => self.gerror = value,
            regs::GBPA => self.gbpa = value,
            regs::CR0ACK => self.cr0ack = value,
            _ => self.write(offset, value.into()),
        }
        self.share_cons();
    }
}

/// The fake's [`CmdqConsReader`]: the `CMDQ_CONS` value as of the last register access of the fake's owner
/// (the fake's consumer only moves when the owner writes `CMDQ_PROD`, reads `CMDQ_CONS` or lifts a stall).
#[derive(Clone, Debug)]
pub struct FakeCmdqCons(Arc<AtomicU32>);

impl CmdqConsReader for FakeCmdqCons {
    fn read_cmdq_cons(&self) -> u32 {
        self.0.load(Ordering::Acquire)
    }
}

impl RegisterAccess for FakeSmmu {
    type Cons = FakeCmdqCons;

    fn cmdq_cons_reader(&self) -> FakeCmdqCons {
        FakeCmdqCons(self.cons_shared.clone())
    }

    fn read32(&mut self, offset: usize) -> u32 {
        let value = self.read(offset) as u32;
        self.share_cons();
        self.accesses.push(RegAccess {
            write: false,
            offset,
            value: value.into(),
        });
        value
    }

    fn write32(&mut self, offset: usize, value: u32) {
        self.accesses.push(RegAccess {
            write: true,
            offset,
            value: value.into(),
        });
        self.write(offset, value.into());
        self.share_cons();
    }

    fn read64(&mut self, offset: usize) -> u64 {
        let value = self.read(offset);
        self.share_cons();
        self.accesses.push(RegAccess {
            write: false,
            offset,
            value,
        });
        value
    }

    fn write64(&mut self, offset: usize, value: u64) {
        self.accesses.push(RegAccess {
            write: true,
            offset,
            value,
        });
        self.write(offset, value);
        self.share_cons();
    }
}
