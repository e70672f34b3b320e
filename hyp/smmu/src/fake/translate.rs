//! The fake SMMU's data path: STE fetch, stage-2 walk, TLB, fault events.

use super::FakeSmmu;
use crate::StreamId;
use crate::event::{Event, event_id};
use crate::regs::{Cr0, StrtabBase, StrtabBaseCfg, mask64};
use crate::ste::{S2TG_4K, STE_DWORDS, STE_SIZE, Ste, SteKind};

/// A cached stage-2 translation of one 4 KiB page.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(super) struct TlbEntry {
    pa_page: u64,
    perm: Perm,
}

/// Stage-2 access permissions of a leaf (`S2AP`, descriptor bits [7:6]).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Perm {
    /// `S2AP[0]` (bit 6): reads allowed.
    pub read: bool,
    /// `S2AP[1]` (bit 7): writes allowed.
    pub write: bool,
}

/// The outcome of a device access through the fake.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Translation {
    /// The access reaches this physical address.
    Ok(u64),
    /// Terminated without an event (GBPA abort, or an abort STE).
    Aborted,
    /// Terminated with an event of this type (written to the event queue if the STE records faults or the
    /// fault is a configuration error).
    Fault(u8),
}

// Stage-2 descriptor fields (Arm ARM D8.3): valid [0], table/page [1], S2AP [7:6], AF [10], OA [47:12].
const DESC_VALID: u64 = 1 << 0;
const DESC_TABLE: u64 = 1 << 1;
const S2AP_READ: u64 = 1 << 6;
const S2AP_WRITE: u64 = 1 << 7;
const DESC_AF: u64 = 1 << 10;
const BITS_PER_LEVEL: u32 = 9;

impl FakeSmmu {
    /// A device with StreamID `sid` accesses `iova` (a write when `write`): what happens.
    ///
    /// Follows IHI 0070 §3.3 for the subset the driver uses: disabled SMMU → `GBPA`; STE lookup (cached until a
    /// `CFGI_*`; `C_BAD_STREAMID`/`C_BAD_STE`/`F_STE_FETCH` on bad tables); abort/bypass/stage-2; the TLB
    /// (cached until a `TLBI_*`) before a walk; translation, access-flag, permission, address-size and walk
    /// external-abort faults, recorded when `STE.S2R` is set.
    pub fn translate(&mut self, sid: StreamId, iova: u64, write: bool) -> Translation {
        if !self.enabled(Cr0::SMMUEN) {
            return if crate::regs::Gbpa(self.gbpa()).abort() {
                Translation::Aborted
            } else {
                Translation::Ok(iova)
            };
        }
        let ste = match self.fetch_ste(sid) {
            Ok(ste) => ste,
            Err(id) => return self.fault(id, sid, iova, write, true),
        };
        match ste.kind() {
            SteKind::Abort => Translation::Aborted,
            SteKind::Bypass => Translation::Ok(iova),
            SteKind::Invalid | SteKind::Other => {
                self.fault(event_id::C_BAD_STE, sid, iova, write, true)
            }
            SteKind::Stage2 => self.translate_s2(&ste, sid, iova, write),
        }
    }

    fn translate_s2(&mut self, ste: &Ste, sid: StreamId, iova: u64, write: bool) -> Translation {
        let record = ste.s2_records_faults();
        let Some(cfg) = ste
            .s2_config()
            .filter(|_| ste.s2_supported_format() && ste.s2_tg() == S2TG_4K)
        else {
            return self.fault(event_id::C_BAD_STE, sid, iova, write, true);
        };
        let page = iova >> crate::PAGE_SHIFT;
        let offset = iova & (crate::PAGE_SIZE - 1);
        if let Some(entry) = self.tlb.get(&(cfg.vmid.0, page)).copied() {
            return if allowed(entry.perm, write) {
                Translation::Ok((entry.pa_page << crate::PAGE_SHIFT) | offset)
            } else {
                self.fault(event_id::F_PERMISSION, sid, iova, write, record)
            };
        }
        let ias = cfg.ias_bits();
        if ias >= 64 || iova >> ias != 0 {
            return self.fault(event_id::F_TRANSLATION, sid, iova, write, record);
        }
        let out_bits = crate::regs::pa_range_bits(cfg.ps.into()).unwrap_or(crate::MAX_ADDR_BITS);
        let mut table = cfg.ttb;
        let mut level = u32::from(cfg.start_level());
        let mut first = true;
        loop {
            let shift = crate::PAGE_SHIFT + BITS_PER_LEVEL * (3 - level);
            let index_bits = if first { ias - shift } else { BITS_PER_LEVEL };
            let index = (iova >> shift) & ((1 << index_bits) - 1);
            first = false;
            let Some(desc) = self.mem.try_read64(table + 8 * index) else {
                return self.fault(event_id::F_WALK_EABT, sid, iova, write, record);
            };
            if desc & DESC_VALID == 0 || (level == 3 && desc & DESC_TABLE == 0) {
                return self.fault(event_id::F_TRANSLATION, sid, iova, write, record);
            }
            let oa = desc & mask64(47, crate::PAGE_SHIFT);
            if level < 3 && desc & DESC_TABLE != 0 {
                table = oa;
                level += 1;
                continue;
            }
            if level == 0 {
                return self.fault(event_id::F_TRANSLATION, sid, iova, write, record);
            }
            if desc & DESC_AF == 0 {
                return self.fault(event_id::F_ACCESS, sid, iova, write, record);
            }
            let perm = Perm {
                read: desc & S2AP_READ != 0,
                write: desc & S2AP_WRITE != 0,
            };
            if !allowed(perm, write) {
                return self.fault(event_id::F_PERMISSION, sid, iova, write, record);
            }
            let pa = (oa & !((1 << shift) - 1)) | (iova & ((1 << shift) - 1));
            if pa >> out_bits != 0 {
                return self.fault(event_id::F_ADDR_SIZE, sid, iova, write, record);
            }
            self.tlb.insert(
                (cfg.vmid.0, page),
                TlbEntry {
                    pa_page: pa >> crate::PAGE_SHIFT,
                    perm,
                },
            );
            return Translation::Ok(pa);
        }
    }

    /// The STE for `sid` from the cache or the stream table, or the event type of the failure.
    fn fetch_ste(&mut self, sid: StreamId) -> Result<Ste, u8> {
        if let Some(ste) = self.ste_cache.get(&sid.0) {
            return Ok(*ste);
        }
        let (base, cfg) = self.strtab();
        let (base, cfg) = (StrtabBase(base).addr(), StrtabBaseCfg(cfg));
        let sid64 = u64::from(sid.0);
        if sid64 >> cfg.log2size() != 0 {
            return Err(event_id::C_BAD_STREAMID);
        }
        let ste_pa = if cfg.fmt() == StrtabBaseCfg::FMT_2LVL {
            let split = cfg.split();
            let l1 = self
                .mem
                .try_read64(base + 8 * (sid64 >> split))
                .ok_or(event_id::F_STE_FETCH)?;
            let span = (l1 & 0x1F) as u32;
            let l2_index = sid64 & ((1 << split) - 1);
            // SPAN = 0: no level-2 table (QEMU 10 and IHI 0070 §5.1 report C_BAD_STREAMID).
            if span == 0 || l2_index >> (span - 1) != 0 {
                return Err(event_id::C_BAD_STREAMID);
            }
            (l1 & mask64(51, 6)) + l2_index * STE_SIZE as u64
        } else {
            base + sid64 * STE_SIZE as u64
        };
        let mut ste = Ste::INVALID;
        for i in 0..STE_DWORDS {
            ste.0[i] = self
                .mem
                .try_read64(ste_pa + 8 * i as u64)
                .ok_or(event_id::F_STE_FETCH)?;
        }
        if ste.valid() {
            self.ste_cache.insert(sid.0, ste);
        }
        Ok(ste)
    }

    fn fault(
        &mut self,
        id: u8,
        sid: StreamId,
        iova: u64,
        write: bool,
        record: bool,
    ) -> Translation {
        /// `CLASS` = IN: the fault is on the input address.
        const CLASS_IN: u8 = 2;
        if record {
            self.record_event(Event::encode_fault(id, sid, iova, iova, !write, CLASS_IN));
        }
        Translation::Fault(id)
    }
}

fn allowed(perm: Perm, write: bool) -> bool {
    if write { perm.write } else { perm.read }
}
