//! Per-CPU state: the MPIDR of each logical CPU (device-tree order), the host entry point and context a
//! `CPU_ON` asked for, and this CPU's index (kept in `TPIDR_EL2`).

use aarch64_cpu::registers::{MPIDR_EL1, Readable, TPIDR_EL2, Writeable};
use core::sync::atomic::{AtomicU64, Ordering};
use spin::Once;
use warden_core::layout::HYP_MAX_CPUS;
use warden_core::psci::MPIDR_AFFINITY_MASK;

static MPIDRS: Once<([u64; HYP_MAX_CPUS], usize)> = Once::new();

/// Host entry point and context per CPU, written by the CPU relaying `CPU_ON`, read by the new CPU.
static BOOT_ENTRY: [AtomicU64; HYP_MAX_CPUS] = [const { AtomicU64::new(0) }; HYP_MAX_CPUS];
static BOOT_CONTEXT: [AtomicU64; HYP_MAX_CPUS] = [const { AtomicU64::new(0) }; HYP_MAX_CPUS];

/// Records the CPUs' MPIDRs (at most [`HYP_MAX_CPUS`]; extra CPUs are ignored and never started).
pub fn init(mpidrs: impl Iterator<Item = u64>) {
    MPIDRS.call_once(|| {
        let mut table = [0; HYP_MAX_CPUS];
        let mut n = 0;
        for m in mpidrs.take(HYP_MAX_CPUS) {
            table[n] = m;
            n += 1;
        }
        (table, n)
    });
}

/// The known CPUs' MPIDRs in logical order (empty before [`init`]).
pub fn mpidrs() -> &'static [u64] {
    match MPIDRS.get() {
        Some((table, n)) => &table[..*n],
        None => &[],
    }
}

/// The logical index of the CPU with this MPIDR.
pub fn index_of(mpidr: u64) -> Option<usize> {
    mpidrs()
        .iter()
        .position(|&m| m & MPIDR_AFFINITY_MASK == mpidr & MPIDR_AFFINITY_MASK)
}

/// Records this CPU's logical index (in `TPIDR_EL2`).
pub fn set_current_index(index: usize) {
    TPIDR_EL2.set(index as u64);
}

/// This CPU's logical index, or `HYP_MAX_CPUS` if unknown (for the panic path only).
pub fn current_index_or_max() -> usize {
    let tpidr = TPIDR_EL2.get() as usize;
    if tpidr < HYP_MAX_CPUS {
        tpidr
    } else {
        index_of(MPIDR_EL1.get()).unwrap_or(HYP_MAX_CPUS)
    }
}

/// Stores what CPU `cpu` runs when it enters the host.
pub fn set_boot_args(cpu: usize, entry: u64, context: u64) {
    if cpu < HYP_MAX_CPUS {
        BOOT_ENTRY[cpu].store(entry, Ordering::Relaxed);
        BOOT_CONTEXT[cpu].store(context, Ordering::Release);
    }
}

/// What CPU `cpu` runs when it enters the host: `(entry, context)`.
pub fn boot_args(cpu: usize) -> (u64, u64) {
    let context = BOOT_CONTEXT[cpu].load(Ordering::Acquire);
    (BOOT_ENTRY[cpu].load(Ordering::Relaxed), context)
}
