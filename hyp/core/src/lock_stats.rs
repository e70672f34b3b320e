//! Contention counters for `spin::Mutex`es: how often a CPU found a lock taken, and how long it spun.
//!
//! [`LockStats::lock`] is `Mutex::lock` plus two relaxed counters that are touched only when the lock was
//! taken (an uncontended acquisition costs one `try_lock`, as before). While it waits, a CPU reads the lock
//! (`is_locked`) rather than retrying the atomic swap, so waiters do not steal the line from the holder; each
//! read that still finds it taken is one spin. The dispatcher keeps one [`LockStats`] for all domain slots
//! (`STAT DOMAIN_LOCK_*`), the SMMU backend one for its driver lock (`STAT CMDQ_LOCK_*`, with the lock-free
//! command queue's own waits).

use core::sync::atomic::{AtomicU64, Ordering};

use spin::{Mutex, MutexGuard};

/// Contention counters of one lock or one family of locks.
#[derive(Debug, Default)]
pub struct LockStats {
    waits: AtomicU64,
    spins: AtomicU64,
}

impl LockStats {
    /// Counters at zero.
    pub const fn new() -> Self {
        Self {
            waits: AtomicU64::new(0),
            spins: AtomicU64::new(0),
        }
    }

    /// Locks `mutex`; if it was taken, counts one wait and the spins until it was acquired.
    pub fn lock<'a, T>(&self, mutex: &'a Mutex<T>) -> MutexGuard<'a, T> {
        if let Some(guard) = mutex.try_lock() {
            return guard;
        }
        let mut spins = 0u64;
        let guard = loop {
            while mutex.is_locked() {
                spins += 1;
                core::hint::spin_loop();
            }
            if let Some(guard) = mutex.try_lock() {
                break guard;
            }
            spins += 1;
        };
        self.waits.fetch_add(1, Ordering::Relaxed);
        self.spins.fetch_add(spins, Ordering::Relaxed);
        guard
    }

    /// Acquisitions that found the lock taken.
    pub fn waits(&self) -> u64 {
        self.waits.load(Ordering::Relaxed)
    }

    /// Reads of a taken lock while waiting for it, summed over all waits.
    pub fn spins(&self) -> u64 {
        self.spins.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncontended_acquisitions_count_nothing() {
        let stats = LockStats::new();
        let m = Mutex::new(0);
        for _ in 0..10 {
            *stats.lock(&m) += 1;
        }
        assert_eq!((*m.lock(), stats.waits(), stats.spins()), (10, 0, 0));
    }

    #[test]
    fn a_taken_lock_counts_one_wait_and_its_spins() {
        let stats = LockStats::new();
        let m = Mutex::new(0u32);
        let started = core::sync::atomic::AtomicBool::new(false);
        let held = m.lock();
        std::thread::scope(|s| {
            s.spawn(|| {
                started.store(true, Ordering::Release);
                *stats.lock(&m) += 1;
            });
            while !started.load(Ordering::Acquire) {
                std::thread::yield_now();
            }
            // The other thread is about to find the lock taken; let it spin a while.
            std::thread::sleep(std::time::Duration::from_millis(20));
            drop(held);
        });
        assert_eq!(*m.lock(), 1);
        assert_eq!(stats.waits(), 1);
        assert!(stats.spins() > 0);
    }
}
