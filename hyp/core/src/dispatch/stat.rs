//! `STAT` and the counters EL2 installs behind it.

use super::*;

impl<B: Backend> Warden<B> {
    /// Records the bytes of RAM the hypervisor keeps (`STAT HYP_MEMORY_BYTES`); only the first call counts.
    pub fn set_hyp_memory(&self, bytes: u64) {
        self.hyp_memory.call_once(|| bytes);
    }

    /// Installs the hash behind `STAT HYP_INTEGRITY` (EL2: the image's text and read-only data and the canary
    /// pages) and records its current value as `HYP_INTEGRITY_BOOT`, which it returns. Only the first call
    /// counts. Without it both stats are `BAD_STAT`.
    pub fn set_integrity_check(&self, hash: fn() -> u64) -> u64 {
        self.integrity.call_once(|| (hash, hash())).1
    }

    /// Installs EL2's record of unhandled host exceptions behind `STAT HOST_TRAPS_UNHANDLED` (without it the
    /// stat is `BAD_STAT`). Only the first call counts.
    pub fn set_trap_log(&self, log: &'static TrapLog) {
        self.trap_log.call_once(|| log);
    }

    /// Installs the GIC emulation's counters: `refused` is `STAT GIC_REFUSED`; `pinned` (pages it holds DMA
    /// counts on) is subtracted from `STAT MAPPED_PAGES`, which counts DMA mappings only. Only the first call
    /// counts. Without it `GIC_REFUSED` is `BAD_STAT`.
    pub fn set_gic_stats(&self, refused: fn() -> u64, pinned: fn() -> u64) {
        self.gic_stats.call_once(|| (refused, pinned));
    }

    /// `STAT(id)`, its ID decoded by [`Warden::call`]: [`Error::BadStat`] for a stat EL2 did not install.
    #[inline(never)]
    pub(super) fn stat(&self, id: StatId) -> Result<u64, CallError> {
        let stat = match id {
            // `StatId::from_reg` only names functions below `FUNCTION_SLOTS`.
            StatId::Calls(f) => return Ok(self.calls[f.value() as usize].load(Ordering::Relaxed)),
            StatId::Value(stat) => stat,
        };
        let pool = self.pool.stats();
        Ok(match stat {
            Stat::DomainsInUse => self.alloc.lock().in_use as u64,
            Stat::DomainsMax => u64::from(self.max_domains),
            Stat::PoolTotalPages => pool.total as u64,
            Stat::PoolFreePages => pool.free as u64,
            Stat::DonatedPages => self.own.donated_pages(),
            Stat::DonatedFreePages => pool.donated_free as u64,
            Stat::AttachedSids => {
                let s = self.streams.lock();
                u64::from(s.attached.iter().skip(1).sum::<u32>())
            }
            Stat::EventsLost => self.events.lock().lost + self.backend.counters().event_overflows,
            Stat::SmmuCommands => self.backend.counters().commands,
            Stat::SmmuSyncs => self.backend.counters().syncs,
            Stat::Invalidations => self.invalidations.load(Ordering::Relaxed),
            Stat::CallsTotal => self.calls_total.load(Ordering::Relaxed),
            Stat::ErrorsTotal => self.errors_total.load(Ordering::Relaxed),
            Stat::MappedPages => self
                .own
                .mapped_pages()
                .saturating_sub(self.gic_stats.get().map_or(0, |g| (g.1)())),
            Stat::TablePagesInUse => (pool.total - pool.free - pool.quarantined) as u64,
            Stat::HypIntegrity => (self.integrity.get().ok_or(Error::BadStat)?.0)(),
            Stat::HypIntegrityBoot => self.integrity.get().ok_or(Error::BadStat)?.1,
            Stat::HostTrapsUnhandled => self.trap_log.get().ok_or(Error::BadStat)?.count(),
            Stat::GicRefused => (self.gic_stats.get().ok_or(Error::BadStat)?.0)(),
            Stat::HypMemoryBytes => *self.hyp_memory.get().ok_or(Error::BadStat)?,
            Stat::CmdqLockWaits => self.backend.counters().cmdq_lock_waits,
            Stat::CmdqLockSpins => self.backend.counters().cmdq_lock_spins,
            Stat::SyncPolls => self.backend.counters().sync_polls,
            Stat::DomainLockWaits => self.slot_locks.waits(),
            Stat::DomainLockSpins => self.slot_locks.spins(),
        })
    }
}
