//! STAT: every counter, and the values EL2 installs (integrity, trap log, GIC).

use super::*;

static INTEGRITY: AtomicU64 = AtomicU64::new(0x1234);

fn integrity_hash() -> u64 {
    INTEGRITY.load(Ordering::Relaxed)
}

#[test]
fn integrity_stat() {
    let h = harness();
    let w = &h.w;
    // Without EL2's check: BAD_STAT, nothing else changes.
    assert_eq!(
        res(w, Function::Stat, &[Stat::HypIntegrity.value()]),
        Err(Error::BadStat)
    );
    assert_eq!(
        res(w, Function::Stat, &[Stat::HypIntegrityBoot.value()]),
        Err(Error::BadStat)
    );
    assert_eq!(w.set_integrity_check(integrity_hash), 0x1234);
    assert_eq!(stat(w, Stat::HypIntegrity), 0x1234);
    // The current value is computed on every call; the boot value stays.
    INTEGRITY.store(0x5678, Ordering::Relaxed);
    assert_eq!(stat(w, Stat::HypIntegrity), 0x5678);
    assert_eq!(stat(w, Stat::HypIntegrityBoot), 0x1234);
    // Only the first installation counts.
    assert_eq!(w.set_integrity_check(|| 0), 0x1234);
    assert_eq!(stat(w, Stat::HypIntegrity), 0x5678);
}

#[test]
fn host_traps_unhandled_stat() {
    use crate::trap::{TrapLog, esr::TrapKind};
    static LOG: TrapLog = TrapLog::new();
    let h = harness();
    let w = &h.w;
    assert_eq!(
        res(w, Function::Stat, &[Stat::HostTrapsUnhandled.value()]),
        Err(Error::BadStat)
    );
    w.set_trap_log(&LOG);
    assert_eq!(stat(w, Stat::HostTrapsUnhandled), 0);
    LOG.record(TrapKind::Class(0x01));
    LOG.record(TrapKind::Class(0x01));
    LOG.record(TrapKind::Asynchronous { vector: 11 });
    assert_eq!(stat(w, Stat::HostTrapsUnhandled), 3);
}

#[test]
fn gic_stats() {
    let h = harness();
    let w = &h.w;
    assert_eq!(
        res(w, Function::Stat, &[Stat::GicRefused.value()]),
        Err(Error::BadStat)
    );
    let mapped = stat(w, Stat::MappedPages);
    w.set_gic_stats(|| 42, || 0);
    w.set_gic_stats(|| 7, || 1);
    assert_eq!(stat(w, Stat::GicRefused), 42);
    assert_eq!(stat(w, Stat::MappedPages), mapped);
}

#[test]
fn stats() {
    let h = harness();
    let w = &h.w;
    for &s in Stat::ALL {
        if matches!(
            s,
            Stat::HypIntegrity
                | Stat::HypIntegrityBoot
                | Stat::HostTrapsUnhandled
                | Stat::GicRefused
                | Stat::HypMemoryBytes
        ) {
            continue;
        }
        assert!(res(w, Function::Stat, &[s.value()]).is_ok(), "{s:?}");
    }
    // Set once by EL2, BAD_STAT before.
    assert_eq!(
        res(w, Function::Stat, &[Stat::HypMemoryBytes.value()]),
        Err(Error::BadStat)
    );
    w.set_hyp_memory(70 << 20);
    w.set_hyp_memory(1);
    assert_eq!(stat(w, Stat::HypMemoryBytes), 70 << 20);
    // The driver's own counters: boot's commands and syncs, and every one since.
    let c = w.backend().driver_counters();
    assert!(c.commands > 0 && c.syncs > 0, "{c:?}");
    assert_eq!(stat(w, Stat::SmmuCommands), c.commands);
    assert_eq!(stat(w, Stat::SmmuSyncs), c.syncs);
    let d = alloc_paging(w);
    assert_eq!(res(w, Function::DomainFree, &[d]), Ok(0));
    assert!(
        stat(w, Stat::SmmuCommands) > c.commands,
        "DOMAIN_FREE invalidates its VMID"
    );
    assert!(stat(w, Stat::SmmuSyncs) > c.syncs);
    assert_eq!(stat(w, Stat::DomainsMax), 8);
    assert_eq!(res(w, Function::Stat, &[999]), Err(Error::BadStat));
    assert_eq!(
        res(w, Function::Stat, &[abi::STAT_CALLS_BASE + 0x0f]),
        Err(Error::BadStat)
    );
    assert_eq!(res(w, Function::Stat, &[u64::MAX]), Err(Error::BadStat));
    let calls = abi::STAT_CALLS_BASE + u64::from(Function::Stat.value());
    let before = res(w, Function::Stat, &[calls]).unwrap();
    assert_eq!(res(w, Function::Stat, &[calls]).unwrap(), before + 1);
    // Host-identity's tables are in its own pool, outside the STAT pool values.
    assert_eq!(stat(w, Stat::TablePagesInUse), 0);
    assert_eq!(stat(w, Stat::PoolTotalPages), 256 - IDENTITY_RESERVE);
    let ip = w.identity_pool_stats();
    assert_eq!(
        (ip.total, ip.total - ip.free),
        (IDENTITY_RESERVE as usize, 4)
    );
    let d = alloc_paging(w);
    assert_eq!(stat(w, Stat::TablePagesInUse), 1);
    assert_eq!(res(w, Function::DomainFree, &[d]), Ok(0));
    assert_eq!(stat(w, Stat::TablePagesInUse), 0);
}

/// A CPU that finds a domain's lock taken counts one wait and its spins; uncontended calls count nothing.
#[test]
fn domain_lock_contention_stats() {
    let (h, d) = paging_harness();
    let w = &h.w;
    res(w, Function::IovaToPhys, &[d, 0]).unwrap_err();
    assert_eq!(stat(w, Stat::DomainLockWaits), 0);
    assert_eq!(stat(w, Stat::DomainLockSpins), 0);
    let started = std::sync::atomic::AtomicBool::new(false);
    let held = w.slots[0].lock();
    std::thread::scope(|s| {
        s.spawn(|| {
            started.store(true, Ordering::Release);
            // Locks slot 0 (host-identity).
            w.identity_ste()
        });
        while !started.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        drop(held);
    });
    assert_eq!(stat(w, Stat::DomainLockWaits), 1);
    assert!(stat(w, Stat::DomainLockSpins) > 0);
    // One CPU used the SMMU: its command-queue lock never waited; the sync polls are the driver's.
    assert_eq!(stat(w, Stat::CmdqLockWaits), 0);
    assert_eq!(
        stat(w, Stat::SyncPolls),
        w.backend().driver_counters().sync_polls
    );
}
