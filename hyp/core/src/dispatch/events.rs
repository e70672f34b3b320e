//! The fault ring: records the SMMU reported, drained by `READ_EVENT`, and the count of lost ones.

use super::*;

pub(super) struct EventRing {
    pub(super) buf: Vec<FaultRecord>,
    pub(super) head: usize,
    pub(super) len: usize,
    pub(super) lost: u64,
}

impl EventRing {
    pub(super) fn push(&mut self, r: FaultRecord) {
        if self.len == self.buf.len() {
            self.lost += 1;
            return;
        }
        let cap = self.buf.len();
        self.buf[(self.head + self.len) % cap] = r;
        self.len += 1;
    }

    pub(super) fn pop(&mut self) -> Option<FaultRecord> {
        if self.len == 0 {
            return None;
        }
        let r = self.buf[self.head];
        self.head = (self.head + 1) % self.buf.len();
        self.len -= 1;
        Some(r)
    }
}

/// Records a drain pulls from the SMMU per READ_EVENT call at most (bounded work per call).
pub(super) const EVENT_DRAIN_MAX: usize = 64;

impl<B: Backend> Warden<B> {
    /// Records a fault (for EL2's event-queue interrupt handler); counted as lost when the ring is full.
    pub fn record_event(&self, r: FaultRecord) {
        self.events.lock().push(r);
    }

    #[inline(never)]
    pub(super) fn read_event(&self) -> [u64; 4] {
        let mut ring = self.events.lock();
        // Only what the ring has room for: the rest stays in the SMMU's queue (which counts its own overflows)
        // until READ_EVENT has popped enough.
        let room = ring.buf.len() - ring.len;
        for _ in 0..room.min(EVENT_DRAIN_MAX) {
            match self.backend.next_event() {
                Some(r) => ring.push(r),
                None => break,
            }
        }
        let lost = ring.lost + self.backend.counters().event_overflows;
        match ring.pop() {
            Some(r) => [
                1,
                r.iova,
                (u64::from(r.sid.0) << abi::EVENT_SID_SHIFT)
                    | (u64::from(r.reason) << abi::EVENT_REASON_SHIFT)
                    | (u64::from(r.flags) << abi::EVENT_FLAGS_SHIFT),
                lost,
            ],
            None => [0, 0, 0, lost],
        }
    }
}
