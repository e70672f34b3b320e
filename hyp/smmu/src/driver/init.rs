//! Taking the SMMU: abort, disable, probe, allocate, program, enable (IHI 0070 §3.13 "Initialization";
//! the order follows Linux's `arm_smmu_device_reset`).

use alloc::vec;

use super::{CmdQueue, Config, EvtQueue, Features, SharedCmdq, Smmu, StreamTable};
use crate::cmd::{CMD_SIZE, Command, InvalidationPolicy};
use crate::event::EVT_SIZE;
use crate::queue::Queue;
use crate::regs::{
    self, Cr0, Cr1, Cr2, GBPA_ABORT, GBPA_UPDATE, Gerror, QueueBase, RegisterAccess, StrtabBase,
};
use crate::regs::{StrtabBaseCfg, l1_descriptor};
use crate::ste::{STE_SIZE, Ste};
use crate::{DmaMemory, Error, Feature, Wait};
use alloc::sync::Arc;
use alloc::vec::Vec;

/// Smallest alignment of a queue or table base (`ADDR` fields start at bit 5 or 6).
const MIN_ALIGN: usize = 64;
/// Size of a level-1 stream table descriptor.
const L1_DESC_SIZE: usize = 8;

impl<R: RegisterAccess, M: DmaMemory> Smmu<R, M> {
    /// Takes the SMMU and enables it with every StreamID aborting.
    ///
    /// Order: `GBPA.ABORT` (Update handshake) → `CR0 = 0` (CR0ACK handshake) → probe the ID registers and check
    /// the required features → allocate and program the stream table, command queue and event queue → `CR1`
    /// (write-back, inner-shareable table and queue accesses), `CR2` (`PTM`, `RECINVSID`) → enable the command
    /// queue → `CFGI_ALL`, `TLBI_EL2_ALL` (if `HYP`), `TLBI_NSNH_ALL`, `CMD_SYNC` → enable the event queue →
    /// interrupts off (the hyp polls) → `SMMUEN`.
    pub fn init(mut regs: R, mut mem: M, config: Config) -> Result<Self, Error> {
        let limit = config.poll_limit.max(1);
        // 1. Abort everything while we work (before reading or writing any other register).
        gbpa_settled(&mut regs, limit)?;
        let gbpa = regs.read32(regs::GBPA);
        regs.write32(regs::GBPA, gbpa | GBPA_ABORT | GBPA_UPDATE);
        gbpa_settled(&mut regs, limit)?;
        // 2. Disable.
        regs.write32(regs::CR0, Cr0::NONE.0);
        poll(
            &mut regs,
            limit,
            |r| r.read32(regs::CR0ACK) == Cr0::NONE.0,
            Wait::Cr0Ack,
        )?;
        // 3. Probe.
        let features = Features::from_idrs(
            regs.read32(regs::IDR0),
            regs.read32(regs::IDR1),
            regs.read32(regs::IDR3),
            regs.read32(regs::IDR5),
        );
        features.check_required()?;
        let sid_bits = features.sid_bits.min(config.max_sid_bits);
        if sid_bits > config.linear_max_sid_bits && !features.two_level_strtab {
            return Err(Error::MissingFeature(Feature::TwoLevelStreamTable));
        }
        // 4. Memory.
        let cmdq_q = Queue::new(config.cmdq_log2.min(features.cmdq_log2max).max(1));
        let evtq_q = Queue::new(config.evtq_log2.min(features.evtq_log2max));
        let cmdq_pa = alloc(&mut mem, cmdq_q.entries() as usize * CMD_SIZE)?;
        let evtq_pa = alloc(&mut mem, evtq_q.entries() as usize * EVT_SIZE)?;
        let (strtab, strtab_base, strtab_cfg) = if sid_bits <= config.linear_max_sid_bits {
            let pa = alloc(&mut mem, STE_SIZE << sid_bits)?;
            for sid in 0..1u64 << sid_bits {
                write_ste_raw(&mut mem, pa + sid * STE_SIZE as u64, &Ste::abort());
            }
            (
                StreamTable::Linear { pa, sid_bits },
                StrtabBase::new(pa),
                StrtabBaseCfg::linear(sid_bits),
            )
        } else {
            let split = config.split.clamp(1, sid_bits);
            let l1_entries = 1usize << (sid_bits - split);
            let l1_pa = alloc(&mut mem, l1_entries * L1_DESC_SIZE)?;
            let table = StreamTable::TwoLevel {
                l1_pa,
                sid_bits,
                split,
                leaves: vec![None; l1_entries],
            };
            (
                table,
                StrtabBase::new(l1_pa),
                StrtabBaseCfg::two_level(sid_bits, split),
            )
        };
        // 5. Program (SMMU disabled: no ordering constraints between these).
        let stale = regs.read32(regs::GERROR);
        let gerrorn = regs.read32(regs::GERRORN);
        if Gerror(stale).active(gerrorn) != 0 {
            regs.write32(regs::GERRORN, stale);
        }
        regs.write32(regs::CR1, Cr1::coherent_wb().0);
        regs.write32(regs::CR2, Cr2::PTM.0 | Cr2::RECINVSID.0);
        regs.write64(regs::STRTAB_BASE, strtab_base.0);
        regs.write32(regs::STRTAB_BASE_CFG, strtab_cfg.0);
        regs.write64(
            regs::CMDQ_BASE,
            QueueBase::new(cmdq_pa, cmdq_q.log2size()).0,
        );
        regs.write32(regs::CMDQ_PROD, 0);
        regs.write32(regs::CMDQ_CONS, 0);
        let mut policy = InvalidationPolicy::new(features.range_invalidation);
        policy.vmall_threshold = config.vmall_threshold;
        policy.range_mode = config.range_mode;
        let shared = Arc::new(SharedCmdq::new(
            regs.cmdq_cons_reader(),
            mem.writer(),
            cmdq_pa,
            cmdq_q,
            config.poll_limit,
        ));
        let mut smmu = Self {
            regs,
            mem,
            features,
            config,
            policy,
            cmdq: CmdQueue {
                shared,
                blame: Vec::new(),
                abandoned: Vec::new(),
            },
            evtq: EvtQueue {
                pa: evtq_pa,
                q: evtq_q,
                cons: 0,
            },
            strtab,
            counters: super::Counters::default(),
        };
        // 6. Command queue on, then forget whatever the SMMU may have cached.
        smmu.set_cr0(Cr0::CMDQEN)?;
        let el2 = smmu.features.hyp.then_some(Command::tlbi_el2_all());
        smmu.submit(
            [Command::cfgi_all()]
                .into_iter()
                .chain(el2)
                .chain([Command::tlbi_nsnh_all()]),
        )?;
        // 7. Event queue on.
        smmu.regs.write64(
            regs::EVTQ_BASE,
            QueueBase::new(evtq_pa, evtq_q.log2size()).0,
        );
        smmu.regs.write32(regs::EVTQ_PROD, 0);
        smmu.regs.write32(regs::EVTQ_CONS, 0);
        smmu.set_cr0(Cr0::CMDQEN.union(Cr0::EVTQEN))?;
        // 8. No interrupts: events and errors are polled by the hyp.
        smmu.regs.write32(regs::IRQ_CTRL, 0);
        let limit = smmu.config.poll_limit;
        poll(
            &mut smmu.regs,
            limit,
            |r| r.read32(regs::IRQ_CTRLACK) == 0,
            Wait::IrqCtrlAck,
        )?;
        // 9. Translate.
        smmu.set_cr0(Cr0::CMDQEN.union(Cr0::EVTQEN).union(Cr0::SMMUEN))?;
        Ok(smmu)
    }

    /// Writes CR0 and waits for CR0ACK to match.
    fn set_cr0(&mut self, value: Cr0) -> Result<(), Error> {
        self.regs.write32(regs::CR0, value.0);
        self.poll(
            Wait::Cr0Ack,
            |r| r.read32(regs::CR0ACK),
            |ack| *ack == value.0,
        )
        .map(|_| ())
    }

    /// Level-1 descriptor for a level-2 table at `l2_pa` holding `2^split` STEs.
    pub(super) fn l1_desc(l2_pa: u64, split: u32) -> u64 {
        l1_descriptor(l2_pa, split)
    }
}

/// Allocates `size` bytes aligned to their size (queues and tables must be), at least [`MIN_ALIGN`].
pub(super) fn alloc<M: DmaMemory>(mem: &mut M, size: usize) -> Result<u64, Error> {
    let align = size.next_power_of_two().max(MIN_ALIGN);
    mem.alloc_zeroed(size, align)
        .ok_or(Error::OutOfMemory(size))
}

/// Writes all eight dwords of an STE that no device can be using yet.
pub(super) fn write_ste_raw<M: DmaMemory>(mem: &mut M, pa: u64, ste: &Ste) {
    mem.write64s(pa, &ste.0);
}

/// Waits for `GBPA.Update` to clear (the SMMU has taken the last `GBPA` write).
fn gbpa_settled<R: RegisterAccess>(regs: &mut R, limit: u32) -> Result<(), Error> {
    poll(
        regs,
        limit,
        |r| r.read32(regs::GBPA) & GBPA_UPDATE == 0,
        Wait::GbpaUpdate,
    )
}

/// A bounded poll before the driver value exists.
fn poll<R: RegisterAccess>(
    regs: &mut R,
    limit: u32,
    mut done: impl FnMut(&mut R) -> bool,
    what: Wait,
) -> Result<(), Error> {
    for _ in 0..limit.max(1) {
        if done(regs) {
            return Ok(());
        }
        core::hint::spin_loop();
    }
    Err(Error::Timeout(what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_aligns_to_size() {
        struct Mem(Vec<(usize, usize)>);
        struct NoWriter;
        impl crate::DmaWriter for NoWriter {
            fn write64(&self, _: u64, _: u64) {}
        }
        impl DmaMemory for Mem {
            type Writer = NoWriter;
            fn alloc_zeroed(&mut self, size: usize, align: usize) -> Option<u64> {
                self.0.push((size, align));
                Some(0)
            }
            fn read64(&mut self, _: u64) -> u64 {
                0
            }
            fn write64(&mut self, _: u64, _: u64) {}
            fn writer(&self) -> NoWriter {
                NoWriter
            }
        }
        let mut mem = Mem(Vec::new());
        alloc(&mut mem, 16 << 10).unwrap();
        alloc(&mut mem, 32).unwrap();
        alloc(&mut mem, 3000).unwrap();
        assert_eq!(mem.0, [(16 << 10, 16 << 10), (32, 64), (3000, 4096)]);
    }
}
