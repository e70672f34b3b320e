//! Circular queue index arithmetic (IHI 0070 §3.5 "Command and Event queues").
//!
//! A queue of `2^log2size` entries is indexed by PROD and CONS values holding the entry index in bits
//! `[log2size-1:0]` and a wrap bit at bit `log2size`, toggled each time the index wraps. The queue is empty when
//! index and wrap are both equal, full when the indexes are equal and the wrap bits differ. Bits above the wrap
//! bit (`CMDQ_CONS.ERR`, the overflow flags) are not part of the position and are ignored here.

/// Geometry of one queue: `2^log2size` entries.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Queue {
    log2size: u32,
}

/// Largest queue the architecture allows: `CMDQS`/`EVENTQS` are at most 19 (IHI 0070 §6.3.2).
pub const MAX_LOG2SIZE: u32 = 19;

impl Queue {
    /// A queue of `2^log2size` entries; `log2size` is clamped to [`MAX_LOG2SIZE`].
    pub const fn new(log2size: u32) -> Self {
        Self {
            log2size: if log2size > MAX_LOG2SIZE {
                MAX_LOG2SIZE
            } else {
                log2size
            },
        }
    }

    /// log2 of the number of entries.
    pub const fn log2size(self) -> u32 {
        self.log2size
    }

    /// Number of entries.
    pub const fn entries(self) -> u32 {
        1 << self.log2size
    }

    /// Mask of the index and wrap bits of a PROD/CONS value.
    pub const fn position_mask(self) -> u32 {
        (1 << (self.log2size + 1)) - 1
    }

    /// The entry index of a PROD/CONS value.
    pub const fn index(self, value: u32) -> u32 {
        value & (self.entries() - 1)
    }

    /// The wrap bit of a PROD/CONS value.
    pub const fn wrap(self, value: u32) -> bool {
        value & self.entries() != 0
    }

    /// Whether the queue is empty.
    pub const fn is_empty(self, prod: u32, cons: u32) -> bool {
        (prod ^ cons) & self.position_mask() == 0
    }

    /// Whether the queue is full.
    pub const fn is_full(self, prod: u32, cons: u32) -> bool {
        (prod ^ cons) & self.position_mask() == self.entries()
    }

    /// Number of entries between `cons` and `prod` (written and not yet consumed).
    pub const fn used(self, prod: u32, cons: u32) -> u32 {
        (prod & self.position_mask()).wrapping_sub(cons & self.position_mask())
            & self.position_mask()
    }

    /// Number of free entries.
    pub const fn space(self, prod: u32, cons: u32) -> u32 {
        self.entries() - self.used(prod, cons)
    }

    /// `value` advanced by `n` entries (index and wrap bit only; other bits are dropped).
    pub const fn advance(self, value: u32, n: u32) -> u32 {
        (value & self.position_mask()).wrapping_add(n) & self.position_mask()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn empty_full_wrap() {
        let q = Queue::new(2);
        assert_eq!(q.entries(), 4);
        assert!(q.is_empty(0, 0));
        assert!(q.is_full(4, 0));
        assert!(q.is_full(0, 4));
        assert!(!q.is_full(3, 0));
        assert_eq!(q.space(3, 0), 1);
        assert_eq!(q.advance(3, 1), 4);
        assert_eq!(q.advance(7, 1), 0);
        assert_eq!(q.index(6), 2);
        assert!(q.wrap(6));
        assert_eq!(q.used(1, 6), 3);
        // ERR / overflow bits above the position are ignored.
        assert!(q.is_empty(5 | 1 << 24, 5));
        assert_eq!(Queue::new(30).log2size(), MAX_LOG2SIZE);
    }

    proptest! {
        /// Advancing CONS by `used` always reaches PROD, and used + space is the queue size.
        #[test]
        fn used_and_space(log2 in 0u32..=MAX_LOG2SIZE, cons in any::<u32>(), n in any::<u32>()) {
            let q = Queue::new(log2);
            let cons = cons & q.position_mask();
            let n = n % (q.entries() + 1);
            let prod = q.advance(cons, n);
            prop_assert_eq!(q.used(prod, cons), n);
            prop_assert_eq!(q.space(prod, cons), q.entries() - n);
            prop_assert_eq!(q.is_empty(prod, cons), n == 0);
            prop_assert_eq!(q.is_full(prod, cons), n == q.entries());
        }
    }
}
