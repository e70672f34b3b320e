//! Stream table management: lazily allocated level-2 tables and safe STE updates (IHI 0070 §3.21.3
//! "Configuration structure update procedure", §5.1 "Level 1 Stream Table Descriptor").

use super::init::{alloc, write_ste_raw};
use super::{Smmu, StreamTable};
use crate::cmd::Command;
use crate::regs::RegisterAccess;
use crate::ste::{STE_DWORDS, STE_SIZE, Ste, SteKind};
use crate::{DmaMemory, Error, StreamId};
use alloc::vec::Vec;

/// All dwords of an STE, as a `used_dwords` mask.
const ALL_DWORDS: u8 = 0xFF;

impl<R: RegisterAccess, M: DmaMemory> Smmu<R, M> {
    /// The STE of `sid` as it is in memory ([`Ste::INVALID`] for a StreamID whose level-2 table does not exist
    /// yet).
    pub fn ste(&mut self, sid: StreamId) -> Result<Ste, Error> {
        match self.ste_pa(sid, false)? {
            Some(pa) => Ok(self.read_ste(pa)),
            None => Ok(Ste::INVALID),
        }
    }

    /// Installs `target` as the STE of `sid`, never letting the SMMU see a mix of old and new fields.
    ///
    /// With `used` = the dwords the current configuration interprets (abort: 0; bypass: 0–1; stage 2: 0–3):
    /// 1. dwords of `target` the current STE does not use are written (invisible to the SMMU), `CFGI_STE` +
    ///    `CMD_SYNC`;
    /// 2. if at most one dword used by both configurations differs, it is written with a single 64-bit store
    ///    (the atomic switch), `CFGI_STE` + `CMD_SYNC`; from abort/invalid this is dword 0 with `V`, i.e. the
    ///    architecture's order "dwords 1..7, CFGI_STE + SYNC, dword 0, CFGI_STE + SYNC";
    /// 3. leftover dwords that `target` does not use are cleaned up, `CFGI_STE` + `CMD_SYNC`.
    ///
    /// When two or more used dwords differ (e.g. stage 2 → stage 2 with another VMID and table), dword 0 is
    /// first switched to ABORT (one store, `CFGI_STE` + `CMD_SYNC`): the device's transactions are terminated,
    /// without events, for that short window, then the STE is built from abort as above. This is the
    /// "intermediate abort STE" sequence, strictly safer than Linux's `V = 0` break (which records `C_BAD_STE`).
    /// Rewriting an identical STE issues no command.
    ///
    /// A stage-2 `target` is validated first (`Err(InvalidVmid)` beyond the SMMU's VMID width,
    /// `Err(InvalidS2Config)` for fields the SMMU cannot take); nothing is written then.
    pub fn write_ste(&mut self, sid: StreamId, target: &Ste) -> Result<(), Error> {
        self.check_ste(target)?;
        let pa = self
            .ste_pa(sid, true)?
            .ok_or(Error::InvalidStreamId(sid.0))?;
        self.counters.ste_writes += 1;
        let mut current = self.read_ste(pa);
        if current == *target {
            return Ok(());
        }
        if critical_dwords(&current, target).count_ones() > 1 {
            let abort = Ste::abort();
            self.mem.write64(pa, abort.0[0]);
            current.0[0] = abort.0[0];
            self.sync_ste(sid)?;
        }
        // Step 1: dwords the live configuration ignores.
        let unused = !current.used_dwords();
        if self.write_dwords(pa, &mut current, target, unused & !1) {
            self.sync_ste(sid)?;
        }
        // Step 2: the single critical dword (atomic switch).
        let critical = critical_dwords(&current, target);
        if self.write_dwords(pa, &mut current, target, critical) {
            self.sync_ste(sid)?;
        }
        // Step 3: cleanup of dwords the new configuration ignores.
        if self.write_dwords(pa, &mut current, target, ALL_DWORDS) {
            self.sync_ste(sid)?;
        }
        debug_assert_eq!(current, *target);
        Ok(())
    }

    /// Sets `count` StreamIDs from `first` to `target`. When every one of them is currently invalid or abort
    /// (the boot-time case), in bulk, with two `CFGI_ALL` + `CMD_SYNC` batches in all:
    /// 1. every STE of the range gets `target`'s dwords 1..7 behind an abort dword 0, which the SMMU reads
    ///    as ABORT whatever the other dwords hold; a level-2 table not installed yet is written whole this
    ///    way (its StreamIDs outside the range as abort STEs) before its level-1 descriptor, with no
    ///    invalidation of its own: until step 2 the SMMU sees either the old, invalid descriptor
    ///    (`C_BAD_STREAMID`) or the new table's abort STEs, so every StreamID of it aborts;
    /// 2. `CFGI_ALL` + `CMD_SYNC`: no stale level-1 descriptor or STE survives;
    /// 3. dword 0 of each STE becomes `target`'s (one 64-bit store each: the atomic switch), then `CFGI_ALL`
    ///    + `CMD_SYNC`.
    ///
    /// The stream table ends as one [`Smmu::write_ste`] per StreamID leaves it, which is how this goes when
    /// any STE of the range is live.
    pub fn write_ste_range(
        &mut self,
        first: StreamId,
        count: u32,
        target: &Ste,
    ) -> Result<(), Error> {
        self.check_ste(target)?;
        let end = first
            .0
            .checked_add(count)
            .ok_or(Error::InvalidStreamId(u32::MAX))?;
        if count == 0 {
            return Ok(());
        }
        if u64::from(end - 1) >> self.sid_bits() != 0 {
            return Err(Error::InvalidStreamId(end - 1));
        }
        let runs = self.ste_runs(first.0, end);
        let mut all_idle = true;
        for run in runs.iter() {
            if let Some(pa) = run.pa {
                for i in 0..run.count {
                    let kind = self.read_ste(pa + u64::from(i) * STE_SIZE as u64).kind();
                    all_idle &= matches!(kind, SteKind::Invalid | SteKind::Abort);
                }
            }
        }
        if !all_idle {
            for sid in first.0..end {
                self.write_ste(StreamId(sid), target)?;
            }
            return Ok(());
        }
        self.counters.ste_writes += u64::from(count);
        let mut staged = *target;
        staged.0[0] = Ste::abort().0[0];
        let mut firsts = Vec::with_capacity(runs.len());
        for run in runs {
            let pa = match run.pa {
                Some(pa) => {
                    for i in 0..run.count {
                        let ste = pa + u64::from(i) * STE_SIZE as u64;
                        self.mem.write64s(ste + 8, &target.0[1..]);
                    }
                    pa
                }
                None => {
                    let sids = run.first..run.first + run.count;
                    let abort = Ste::abort();
                    let (l2, offset) = self.install_leaf(run.first, |sid| {
                        if sids.contains(&sid) { &staged } else { &abort }
                    })?;
                    l2 + offset
                }
            };
            firsts.push((pa, run.count));
        }
        self.submit([Command::cfgi_all()])?;
        for (pa, n) in firsts {
            for i in 0..n {
                self.mem
                    .write64(pa + u64::from(i) * STE_SIZE as u64, target.0[0]);
            }
        }
        self.submit([Command::cfgi_all()])
    }

    /// The STEs of StreamIDs `[first, end)` (inside the stream table), as runs that each lie in one level-2
    /// table (one run for a linear table), in order.
    fn ste_runs(&self, first: u32, end: u32) -> Vec<SteRun> {
        match &self.strtab {
            StreamTable::Linear { pa, .. } => alloc::vec![SteRun {
                first,
                count: end - first,
                pa: Some(*pa + u64::from(first) * STE_SIZE as u64),
            }],
            StreamTable::TwoLevel { split, leaves, .. } => {
                let split = *split;
                let mut runs = Vec::new();
                let mut sid = first;
                while sid < end {
                    let leaf_end = (u64::from(sid >> split) + 1) << split;
                    let count = (leaf_end.min(u64::from(end)) - u64::from(sid)) as u32;
                    let offset = u64::from(sid & ((1 << split) - 1)) * STE_SIZE as u64;
                    runs.push(SteRun {
                        first: sid,
                        count,
                        pa: leaves[(sid >> split) as usize].map(|l2| l2 + offset),
                    });
                    sid += count;
                }
                runs
            }
        }
    }

    /// Rejects stage-2 STEs this SMMU cannot take.
    fn check_ste(&self, target: &Ste) -> Result<(), Error> {
        if let Some(cfg) = target.s2_config() {
            if cfg.vmid.0 > self.features.max_vmid() {
                return Err(Error::InvalidVmid(cfg.vmid.0));
            }
            cfg.validate(self.features.oas_encoding as u8, self.features.ias_bits)
                .map_err(Error::InvalidS2Config)?;
        }
        Ok(())
    }

    /// Writes the dwords of `target` selected by `mask` that differ from `current`, dword 0 last; returns
    /// whether anything was written.
    fn write_dwords(&mut self, pa: u64, current: &mut Ste, target: &Ste, mask: u8) -> bool {
        let mut wrote = false;
        for i in (1..STE_DWORDS).chain([0]) {
            if mask & (1 << i) != 0 && current.0[i] != target.0[i] {
                self.mem.write64(pa + 8 * i as u64, target.0[i]);
                current.0[i] = target.0[i];
                wrote = true;
            }
        }
        wrote
    }

    /// `CFGI_STE` (leaf: the level-1 descriptor was invalidated when installed) + `CMD_SYNC` for `sid`.
    fn sync_ste(&mut self, sid: StreamId) -> Result<(), Error> {
        self.submit([Command::cfgi_ste(sid, true)])
    }

    fn read_ste(&mut self, pa: u64) -> Ste {
        let mut ste = Ste::INVALID;
        for (i, dword) in ste.0.iter_mut().enumerate() {
            *dword = self.mem.read64(pa + 8 * i as u64);
        }
        ste
    }

    /// Physical address of `sid`'s STE; with `create`, allocates (all-abort) and installs its level-2 table
    /// first (then `CFGI_STE_RANGE` over the leaf + `CMD_SYNC`, so no stale copy of the invalid level-1
    /// descriptor survives). `Ok(None)`: no level-2 table and `create` is false.
    pub(super) fn ste_pa(&mut self, sid: StreamId, create: bool) -> Result<Option<u64>, Error> {
        let ste_size = STE_SIZE as u64;
        match &mut self.strtab {
            StreamTable::Linear { pa, sid_bits } => {
                if u64::from(sid.0) >> *sid_bits != 0 {
                    return Err(Error::InvalidStreamId(sid.0));
                }
                Ok(Some(*pa + u64::from(sid.0) * ste_size))
            }
            StreamTable::TwoLevel {
                sid_bits,
                split,
                leaves,
                ..
            } => {
                if u64::from(sid.0) >> *sid_bits != 0 {
                    return Err(Error::InvalidStreamId(sid.0));
                }
                let split = *split;
                let l1_index = (sid.0 >> split) as usize;
                let offset = u64::from(sid.0 & ((1 << split) - 1)) * ste_size;
                if let Some(l2) = leaves[l1_index] {
                    return Ok(Some(l2 + offset));
                }
                if !create {
                    return Ok(None);
                }
                let abort = Ste::abort();
                let (l2, _) = self.install_leaf(sid.0, |_| &abort)?;
                let first = StreamId((l1_index as u32) << split);
                self.submit([Command::cfgi_ste_range(first, (split - 1) as u8)])?;
                Ok(Some(l2 + offset))
            }
        }
    }

    /// Allocates and installs the level-2 table holding `sid` (a 2-level table where it has none): every
    /// STE written whole, `ste_of(StreamID)`, then the level-1 descriptor (one 64-bit store) that publishes
    /// it. Returns the table's address and `sid`'s offset in it. Issues no invalidation: the caller does,
    /// before relying on the new descriptor.
    fn install_leaf<'s>(
        &mut self,
        sid: u32,
        ste_of: impl Fn(u32) -> &'s Ste,
    ) -> Result<(u64, u64), Error> {
        let StreamTable::TwoLevel { l1_pa, split, .. } = self.strtab else {
            unreachable!("level-2 tables exist only in a 2-level stream table");
        };
        let l1_index = (sid >> split) as usize;
        let l2 = alloc(&mut self.mem, STE_SIZE << split)?;
        let first = (l1_index as u32) << split;
        for i in 0..1u32 << split {
            write_ste_raw(
                &mut self.mem,
                l2 + u64::from(i) * STE_SIZE as u64,
                ste_of(first + i),
            );
        }
        self.mem
            .write64(l1_pa + 8 * l1_index as u64, Self::l1_desc(l2, split));
        if let StreamTable::TwoLevel { leaves, .. } = &mut self.strtab {
            leaves[l1_index] = Some(l2);
        }
        self.counters.l2_tables += 1;
        Ok((l2, u64::from(sid & ((1 << split) - 1)) * STE_SIZE as u64))
    }
}

/// Consecutive StreamIDs whose STEs lie in one level-2 table (or the linear table).
struct SteRun {
    /// The first StreamID.
    first: u32,
    /// How many.
    count: u32,
    /// Address of the first one's STE; `None` if its level-2 table is not installed yet.
    pa: Option<u64>,
}

/// Dwords used by both `current` and `target` whose values differ: what cannot be written invisibly.
fn critical_dwords(current: &Ste, target: &Ste) -> u8 {
    let both = current.used_dwords() & target.used_dwords();
    let mut mask = 0;
    for i in 0..STE_DWORDS {
        if both & (1 << i) != 0 && current.0[i] != target.0[i] {
            mask |= 1 << i;
        }
    }
    mask
}
