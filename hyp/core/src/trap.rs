//! Host exceptions taken to EL2 that are not hypercalls or stage-2 faults: their decode ([`esr`]), the
//! exceptions the hypervisor injects into the host instead ([`inject`]), the trap configuration it programs
//! for the CPU's features ([`config`]), and the record of what it did not handle ([`TrapLog`]).
//!
//! Deny by default, never by crashing: a synchronous host exception of a class the hypervisor does not handle
//! (or a system register it traps and does not emulate) becomes an undefined-instruction exception at EL1,
//! exactly what the host would see on a CPU without the feature; an asynchronous one is ignored. Each kind is
//! logged once and all are counted (`STAT HOST_TRAPS_UNHANDLED`).
//!
//! ```
//! use warden_core::trap::{TrapLog, esr::TrapKind};
//!
//! static LOG: TrapLog = TrapLog::new();
//! let por_el1 = (0x18 << 26) | (1 << 25) | (3 << 20) | (4 << 17) | (10 << 10) | (2 << 1);
//! assert!(LOG.record(TrapKind::of_sync(por_el1)), "first of its kind: log it");
//! assert!(!LOG.record(TrapKind::of_sync(por_el1 | 1)), "a read of the same register: counted only");
//! assert_eq!(LOG.count(), 2);
//! ```

pub mod config;
pub mod esr;
pub mod inject;

use core::sync::atomic::{AtomicU64, Ordering};
use esr::TrapKind;

/// Words of the seen-kinds bitmap.
const SEEN_WORDS: usize = TrapKind::COUNT.div_ceil(64);

/// Which kinds of unhandled host exception have been seen (one bit per [`TrapKind::index`], 8 KiB) and how
/// many there were, shared by all CPUs without a lock.
pub struct TrapLog {
    seen: [AtomicU64; SEEN_WORDS],
    count: AtomicU64,
}

impl TrapLog {
    /// An empty log.
    pub const fn new() -> Self {
        Self {
            seen: [const { AtomicU64::new(0) }; SEEN_WORDS],
            count: AtomicU64::new(0),
        }
    }

    /// Counts one exception of `kind`; `true` the first time this kind is seen (the caller logs it then).
    pub fn record(&self, kind: TrapKind) -> bool {
        self.count.fetch_add(1, Ordering::Relaxed);
        let i = kind.index();
        let bit = 1 << (i % 64);
        self.seen[i / 64].fetch_or(bit, Ordering::Relaxed) & bit == 0
    }

    /// Unhandled host exceptions recorded since boot.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

impl Default for TrapLog {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::esr::SysRegEncoding;
    use super::*;

    #[test]
    fn once_per_kind_counted_always() {
        let log = TrapLog::new();
        let kinds = [
            TrapKind::Class(0x01),
            TrapKind::Class(0x00),
            TrapKind::SysReg {
                encoding: SysRegEncoding::new(3, 0, 10, 2, 4),
                read: true,
            },
            TrapKind::SysReg {
                encoding: SysRegEncoding::new(3, 0, 10, 2, 3),
                read: true,
            },
            TrapKind::Asynchronous { vector: 11 },
            TrapKind::Asynchronous { vector: 15 },
        ];
        for k in kinds {
            assert!(log.record(k), "{k:?} first");
        }
        for k in kinds {
            assert!(!log.record(k), "{k:?} again");
        }
        // The other direction of a logged register is the same kind.
        assert!(!log.record(TrapKind::SysReg {
            encoding: SysRegEncoding::new(3, 0, 10, 2, 4),
            read: false,
        }));
        assert_eq!(log.count(), 13);
    }

    #[test]
    fn concurrent_records_log_each_kind_once() {
        let log = TrapLog::new();
        let firsts = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for e in 0..512u16 {
                        let k = TrapKind::SysReg {
                            encoding: SysRegEncoding(e),
                            read: false,
                        };
                        if log.record(k) {
                            firsts.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(firsts.into_inner(), 512);
        assert_eq!(log.count(), 4 * 512);
    }
}
