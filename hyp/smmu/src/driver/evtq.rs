//! Event queue draining (IHI 0070 §3.5, §7.3; overflow: §3.5.4 "Queue overflow").

use super::Smmu;
use crate::DmaMemory;
use crate::event::{EVT_DWORDS, EVT_SIZE, Event};
use crate::regs::{self, Q_OVERFLOW_FLAG, RegisterAccess};

impl<R: RegisterAccess, M: DmaMemory> Smmu<R, M> {
    /// Reads up to `max` records from the event queue, oldest first, hands each (decoded) to `sink`, and
    /// returns how many were read. The driver keeps no copy: records not read stay in the queue, which is the
    /// only buffer before the caller's (nothing is dropped here).
    ///
    /// An event queue overflow (`EVENTQ_PROD.OVFLG` differing from our `OVACKFLG`: the SMMU lost records) is
    /// counted in [`super::Counters::evtq_overflows`] and acknowledged by copying the flag into `EVENTQ_CONS`.
    /// At most one queue's worth of records is read per call, so the call is bounded.
    pub fn drain_events(&mut self, max: usize, mut sink: impl FnMut(Event)) -> usize {
        let q = self.evtq.q;
        let prod = self.regs.read32(regs::EVTQ_PROD);
        let mut cons = self.evtq.cons & q.position_mask();
        let mut read = 0;
        while !q.is_empty(prod, cons) && read < max.min(q.entries() as usize) {
            let slot = self.evtq.pa + (q.index(cons) as usize * EVT_SIZE) as u64;
            let mut raw = [0; EVT_DWORDS];
            for (i, dword) in raw.iter_mut().enumerate() {
                *dword = self.mem.read64(slot + 8 * i as u64);
            }
            sink(Event::decode(raw));
            self.counters.events += 1;
            cons = q.advance(cons, 1);
            read += 1;
        }
        let overflow = prod & Q_OVERFLOW_FLAG;
        if overflow != self.evtq.cons & Q_OVERFLOW_FLAG {
            self.counters.evtq_overflows += 1;
        }
        let new_cons = cons | overflow;
        if new_cons != self.evtq.cons {
            self.evtq.cons = new_cons;
            self.regs.write32(regs::EVTQ_CONS, new_cons);
        }
        read
    }
}
