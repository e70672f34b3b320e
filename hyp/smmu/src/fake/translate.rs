//! The fake SMMU's data path: STE fetch, stage-2 walk, TLB, fault events.

use super::FakeSmmu;
use crate::StreamId;
use crate::event::{Event, event_id};
use crate::regs::{Cr0, StrtabBase, StrtabBaseCfg, mask64};
use crate::ste::{S2ConfigError, S2TG_4K, STE_DWORDS, STE_SIZE, Ste, SteKind};
use warden_abi::{BITS_PER_LEVEL, PAGE_SHIFT, PAGE_SIZE};

/// A cached stage-2 translation of one 4 KiB page, remembering the leaf (page or block) it came from: the
/// TLB is keyed by page, but a TLBI of any address inside a block drops the whole block, as on hardware.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(super) struct TlbEntry {
    pa_page: u64,
    perm: Perm,
    /// First page number (IPA >> 12) of the leaf this translation came from.
    leaf_first: u64,
    /// Pages the leaf covers (1 for a page, 512 for a 2 MiB block, 512 × 512 for 1 GiB).
    leaf_pages: u64,
    /// Physical address of the leaf descriptor (to spot a block replaced by a table while cached).
    desc_pa: u64,
}

impl TlbEntry {
    /// Whether this entry's leaf overlaps the `pages` pages from page number `first`.
    pub(super) fn leaf_overlaps(&self, first: u64, pages: u64) -> bool {
        self.leaf_first < first.saturating_add(pages)
            && first < self.leaf_first.saturating_add(self.leaf_pages)
    }

    /// Whether this entry comes from a block whose descriptor in `mem` is now a valid table: a live
    /// block→table replacement (no invalid entry and TLB invalidation in between) while the block was cached.
    pub(super) fn block_replaced_live(&self, mem: &super::FakeMemory) -> bool {
        self.leaf_pages > 1
            && mem
                .try_read64(self.desc_pa)
                .is_some_and(|d| d & (DESC_VALID | DESC_TABLE) == DESC_VALID | DESC_TABLE)
    }
}

/// Stage-2 access permissions of a leaf (`S2AP`, descriptor bits \[7:6\]).
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
        // An `S2T0SZ` beyond the IAS, or an `S2SL0` inconsistent with it, makes the STE ILLEGAL (IHI 0070
        // §5.2, STE.S2T0SZ and STE.S2SL0): C_BAD_STE, before any walk.
        let f = self.features();
        if let Err(S2ConfigError::InputSize | S2ConfigError::StartLevel) =
            cfg.validate(f.oas_encoding as u8, f.ias_bits)
        {
            return self.fault(event_id::C_BAD_STE, sid, iova, write, true);
        }
        let page = iova >> PAGE_SHIFT;
        let offset = iova & (PAGE_SIZE - 1);
        if let Some(entry) = self.tlb.get(&(cfg.vmid.0, page)).copied() {
            return if allowed(entry.perm, write) {
                Translation::Ok((entry.pa_page << PAGE_SHIFT) | offset)
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
            let shift = PAGE_SHIFT + BITS_PER_LEVEL * (3 - level);
            let index_bits = if first { ias - shift } else { BITS_PER_LEVEL };
            let index = (iova >> shift) & ((1 << index_bits) - 1);
            first = false;
            let Some(desc) = self.mem.try_read64(table + 8 * index) else {
                return self.fault(event_id::F_WALK_EABT, sid, iova, write, record);
            };
            if desc & DESC_VALID == 0 || (level == 3 && desc & DESC_TABLE == 0) {
                return self.fault(event_id::F_TRANSLATION, sid, iova, write, record);
            }
            let oa = desc & mask64(47, PAGE_SHIFT);
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
            let entry = TlbEntry {
                pa_page: pa >> PAGE_SHIFT,
                perm,
                leaf_first: (iova & !((1 << shift) - 1)) >> PAGE_SHIFT,
                leaf_pages: 1 << (shift - PAGE_SHIFT),
                desc_pa: table + 8 * index,
            };
            // Without BBML2, a walk result overlapping a cached entry of another leaf size is a TLB
            // conflict (IHI 0070 §3.21.1): the tables changed size under a cached translation.
            if self.bbml() < 2
                && self.tlb.iter().any(|(&(v, _), e)| {
                    v == cfg.vmid.0
                        && e.leaf_pages != entry.leaf_pages
                        && e.leaf_overlaps(entry.leaf_first, entry.leaf_pages)
                })
            {
                self.tlb_conflicts += 1;
                return self.fault(event_id::F_TLB_CONFLICT, sid, iova, write, record);
            }
            self.tlb.insert((cfg.vmid.0, page), entry);
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

#[cfg(test)]
mod tests {
    use crate::cmd::TlbiS2Ipa;
    use crate::event::event_id;
    use crate::fake::{FakeMemory, FakeSmmu, Translation, qemu};
    use crate::ste::{S2Config, Ste};
    use crate::{Command, Config, Smmu, StreamId, Vmid};

    const AF: u64 = 1 << 10;
    const S2AP_RW: u64 = 0b11 << 6;
    const TABLE: u64 = 0b11;
    const BLOCK: u64 = 0b01;
    const MIB2: u64 = 2 << 20;

    /// A driver over the fake with `sid` translated by a 40-bit, level-1-rooted table in which IOVA
    /// `[2 MiB, 4 MiB)` is one 2 MiB block to PA 0x4040_0000 and IOVA `[4 MiB, 4 MiB + 4 KiB)` one page.
    fn setup(sid: StreamId, vmid: u16) -> (Smmu<FakeSmmu, FakeMemory>, FakeMemory, u64) {
        setup_with(sid, vmid, qemu::IDR3)
    }

    /// [`setup`] with the fake's `IDR3` set to `idr3`.
    fn setup_with(
        sid: StreamId,
        vmid: u16,
        idr3: u32,
    ) -> (Smmu<FakeSmmu, FakeMemory>, FakeMemory, u64) {
        let mem = FakeMemory::new();
        let config = Config {
            poll_limit: 1000,
            ..Config::default()
        };
        let fake = FakeSmmu::with_ids(mem.clone(), qemu::IDR0, qemu::IDR1, idr3, qemu::IDR5);
        let mut smmu = Smmu::init(fake, mem.clone(), config).unwrap();
        // Two concatenated level-1 tables (40-bit IPA from level 1), one level-2 table, one level-3 table.
        let root = mem.alloc(8192, 8192);
        let l2 = mem.alloc(4096, 4096);
        let l3 = mem.alloc(4096, 4096);
        assert!(mem.try_write64(root, l2 | TABLE));
        assert!(mem.try_write64(l2 + 8, 0x4040_0000 | BLOCK | AF | S2AP_RW));
        assert!(mem.try_write64(l2 + 16, l3 | TABLE));
        assert!(mem.try_write64(l3, 0x4100_0000 | TABLE | AF | S2AP_RW));
        let cfg = S2Config::new_4k(Vmid(vmid), root, 40, 1, 4);
        smmu.write_ste(sid, &Ste::stage2(&cfg)).unwrap();
        (smmu, mem, l2)
    }

    fn tlbi(vmid: u16, ipa: u64, tg: u8, num: u8, scale: u8) -> Command {
        Command::tlbi_s2_ipa(TlbiS2Ipa {
            vmid: Vmid(vmid),
            ipa,
            leaf: true,
            tg,
            ttl: 0,
            num,
            scale,
        })
    }

    #[test]
    fn non_range_tlbi_inside_a_block_drops_the_whole_block() {
        let sid = StreamId(3);
        let (mut smmu, mem, l2) = setup(sid, 9);
        // Warm the TLB with pages from both ends of the block and the separate page.
        for iova in [MIB2, MIB2 + 0x1000, MIB2 + 0x1f_f008, 2 * MIB2] {
            assert!(matches!(
                smmu.regs_mut().translate(sid, iova, false),
                Translation::Ok(_)
            ));
        }
        assert_eq!(
            smmu.regs_mut().translate(sid, MIB2 + 0x1f_f008, true),
            Translation::Ok(0x405f_f008)
        );
        assert_eq!(smmu.regs_mut().tlb_len(), 4);
        // Another VMID's TLBI touches nothing.
        smmu.submit([tlbi(8, MIB2 + 0x5000, 0, 0, 0)]).unwrap();
        assert_eq!(smmu.regs_mut().tlb_len(), 4);
        // A non-range TLBI of one page in the middle of the block (none of the cached pages).
        smmu.submit([tlbi(9, MIB2 + 0x5000, 0, 0, 0)]).unwrap();
        assert_eq!(
            smmu.regs_mut().tlb_len(),
            1,
            "every page of the block is dropped, the separate page stays"
        );
        // The walk sees the table as it is now: clear the block, its pages fault.
        assert!(mem.try_write64(l2 + 8, 0));
        assert_eq!(
            smmu.regs_mut().translate(sid, MIB2 + 0x1000, false),
            Translation::Fault(0x10)
        );
        // A page TLBI does not reach beyond its page's leaf.
        smmu.submit([tlbi(9, 2 * MIB2 + 0x1000, 0, 0, 0)]).unwrap();
        assert_eq!(smmu.regs_mut().tlb_len(), 1);
        smmu.submit([tlbi(9, 2 * MIB2, 0, 0, 0)]).unwrap();
        assert_eq!(smmu.regs_mut().tlb_len(), 0);
    }

    #[test]
    fn range_tlbi_overlapping_part_of_a_block_drops_the_whole_block() {
        let sid = StreamId(4);
        let (mut smmu, _, _) = setup(sid, 5);
        for iova in [MIB2, MIB2 + 0x10_0000, 2 * MIB2] {
            assert!(matches!(
                smmu.regs_mut().translate(sid, iova, false),
                Translation::Ok(_)
            ));
        }
        // Two 4 KiB granules at the block's last page: the block goes, the page after it stays.
        smmu.submit([tlbi(5, 2 * MIB2 - 0x2000, crate::cmd::TG_4K, 1, 0)])
            .unwrap();
        assert_eq!(smmu.regs_mut().tlb_len(), 1);
    }

    /// `IDR3` with `BBML` = 0.
    const IDR3_BBML0: u32 = qemu::IDR3 & !(0b11 << 11);

    /// The 2 MiB block at IOVA 2 MiB (cached) replaced by a level-3 table mapping the same pages.
    fn replace_block_by_table(mem: &FakeMemory, l2: u64) {
        let l3 = mem.alloc(4096, 4096);
        for i in 0..512 {
            assert!(mem.try_write64(l3 + 8 * i, (0x4040_0000 + (i << 12)) | TABLE | AF | S2AP_RW));
        }
        assert!(mem.try_write64(l2 + 8, l3 | TABLE));
    }

    #[test]
    fn bbml0_flags_a_live_block_to_table_replacement() {
        let sid = StreamId(3);
        let (mut smmu, mem, l2) = setup_with(sid, 9, IDR3_BBML0);
        assert_eq!(smmu.features().bbml, 0);
        assert_eq!(
            smmu.regs_mut().translate(sid, MIB2, false),
            Translation::Ok(0x4040_0000)
        );
        replace_block_by_table(&mem, l2);
        // A walk for another page of the block meets the table while the block is cached: conflict.
        assert_eq!(
            smmu.regs_mut().translate(sid, MIB2 + 0x3000, false),
            Translation::Fault(event_id::F_TLB_CONFLICT)
        );
        assert_eq!(smmu.regs_mut().tlb_conflicts(), 1);
        // The TLBI that finally drops the stale block finds it replaced live: flagged too.
        smmu.submit([tlbi(9, MIB2, 0, 0, 0)]).unwrap();
        assert_eq!(smmu.regs_mut().tlb_conflicts(), 2);
        assert_eq!(
            smmu.regs_mut().translate(sid, MIB2 + 0x3000, false),
            Translation::Ok(0x4040_3000)
        );
    }

    #[test]
    fn bbml0_accepts_break_before_make() {
        let sid = StreamId(3);
        let (mut smmu, mem, l2) = setup_with(sid, 9, IDR3_BBML0);
        assert!(matches!(
            smmu.regs_mut().translate(sid, MIB2, false),
            Translation::Ok(_)
        ));
        // Break: invalid entry, TLBI (+ CMD_SYNC), then make.
        assert!(mem.try_write64(l2 + 8, 0));
        smmu.submit([tlbi(9, MIB2, 0, 0, 0)]).unwrap();
        replace_block_by_table(&mem, l2);
        for iova in [MIB2, MIB2 + 0x3000] {
            assert!(matches!(
                smmu.regs_mut().translate(sid, iova, false),
                Translation::Ok(_)
            ));
        }
        smmu.submit([tlbi(9, MIB2, 0, 0, 0)]).unwrap();
        assert_eq!(smmu.regs_mut().tlb_conflicts(), 0);
    }

    #[test]
    fn bbml2_tolerates_a_live_block_to_table_replacement() {
        let sid = StreamId(3);
        let (mut smmu, mem, l2) = setup(sid, 9);
        assert_eq!(smmu.features().bbml, 2);
        assert!(matches!(
            smmu.regs_mut().translate(sid, MIB2, false),
            Translation::Ok(_)
        ));
        replace_block_by_table(&mem, l2);
        assert!(matches!(
            smmu.regs_mut().translate(sid, MIB2 + 0x3000, false),
            Translation::Ok(_)
        ));
        smmu.submit([tlbi(9, MIB2, 0, 0, 0)]).unwrap();
        assert_eq!(smmu.regs_mut().tlb_conflicts(), 0);
    }

    /// The input size and start level of an STE are checked against QEMU's 44-bit IAS as IHI 0070 §5.2 says:
    /// a 44-bit input walked from level 0 translates (also at the top of the input range); a 48-bit input, or
    /// 44 bits from level 1 (32 concatenated tables, more than 16), makes the STE ILLEGAL: `C_BAD_STE`.
    #[test]
    fn input_size_and_start_level_are_checked_against_the_ias() {
        let sid = StreamId(6);
        let (mut smmu, mem, _) = setup(sid, 7);
        assert_eq!(smmu.features().ias_bits, 44);
        let (l0, l1, l2) = (
            mem.alloc(4096, 4096),
            mem.alloc(4096, 4096),
            mem.alloc(4096, 4096),
        );
        // IOVA 2^43 + 2 MiB: level-0 index 16, level-1 index 0, level-2 index 1: a 2 MiB block.
        let iova = (1 << 43) + MIB2;
        assert!(mem.try_write64(l0 + 8 * 16, l1 | TABLE));
        assert!(mem.try_write64(l1, l2 | TABLE));
        assert!(mem.try_write64(l2 + 8, 0x4060_0000 | BLOCK | AF | S2AP_RW));
        let mut translate_with = |bits: u8, level: u8| {
            let ste = Ste::stage2(&S2Config::new_4k(Vmid(7), l0, bits, level, 4));
            let fake = smmu.regs_mut();
            fake.ste_cache.insert(sid.0, ste);
            fake.translate(sid, iova + 0x1234, false)
        };
        assert_eq!(translate_with(44, 0), Translation::Ok(0x4060_1234));
        assert_eq!(
            translate_with(48, 0),
            Translation::Fault(event_id::C_BAD_STE)
        );
        assert_eq!(
            translate_with(44, 1),
            Translation::Fault(event_id::C_BAD_STE)
        );
    }
}
