//! The driver against the behavioural fake SMMU: exact command sequences, handshakes, failure modes.

use super::*;
use crate::cmd::{
    CommandKind, InvalidationPolicy, LeafSize, S2Invalidation, SyncCompletion, TG_4K,
};
use crate::event::EventKind;
use crate::fake::{FakeMemory, FakeSmmu, Translation, qemu};
use crate::regs::{self, Gerror};
use crate::ste::{S2Config, Ste, SteKind};
use crate::{Command, Error, Feature, StreamId, Vmid, Wait};

type TestSmmu = Smmu<FakeSmmu, FakeMemory>;

fn config() -> Config {
    Config {
        poll_limit: 1000,
        ..Config::default()
    }
}

fn init_with(fake: impl FnOnce(FakeMemory) -> FakeSmmu, config: Config) -> (TestSmmu, FakeMemory) {
    let mem = FakeMemory::new();
    let mut smmu = Smmu::init(fake(mem.clone()), mem.clone(), config).expect("init");
    smmu.regs_mut().take_executed();
    (smmu, mem)
}

fn init() -> (TestSmmu, FakeMemory) {
    init_with(FakeSmmu::qemu, config())
}

/// Every record in the event queue, oldest first.
fn drain(smmu: &mut TestSmmu) -> Vec<crate::Event> {
    let mut events = Vec::new();
    smmu.drain_events(usize::MAX, |e| events.push(e));
    events
}

fn kinds(cmds: &[Command]) -> Vec<CommandKind> {
    cmds.iter().map(Command::decode).collect()
}

const SYNC: CommandKind = CommandKind::Sync(SyncCompletion::None);

/// The error of a command with the unknown opcode 0xFF (from [`illegal_batch`]).
const ILLEGAL: Error = Error::CommandError {
    opcode: 0xFF,
    error: crate::CmdqError::Illegal,
};

/// A batch with a bad command: `CFGI_STE` 1, a command of the unknown opcode 0xFF, `TLBI_NSNH_ALL`.
fn illegal_batch() -> [Command; 3] {
    [
        Command::cfgi_ste(StreamId(1), true),
        Command::from_raw([0xFF, 0]),
        Command::tlbi_nsnh_all(),
    ]
}

/// What the SMMU runs of [`illegal_batch`] and its `CMD_SYNC`: the bad command skipped (replaced by a
/// `CMD_SYNC`), the rest.
const ILLEGAL_BATCH_RAN: [CommandKind; 4] = [
    CommandKind::CfgiSte {
        sid: StreamId(1),
        leaf: true,
    },
    SYNC,
    CommandKind::TlbiNsnhAll,
    SYNC,
];

/// A stage-2 table for tests: 4 KiB granule, 40-bit IPA, walk from level 1 (two concatenated root tables).
struct S2Table {
    mem: FakeMemory,
    root: u64,
}

const AF: u64 = 1 << 10;
const S2AP_RW: u64 = 0b11 << 6;
const TABLE: u64 = 0b11;

impl S2Table {
    fn new(mem: &FakeMemory) -> Self {
        Self {
            mem: mem.clone(),
            root: mem.alloc(8192, 8192),
        }
    }

    fn config(&self, vmid: u16) -> S2Config {
        S2Config::new_4k(Vmid(vmid), self.root, 40, 1, 4)
    }

    fn pte_addr(&self, ipa: u64) -> u64 {
        let mut table = self.root;
        for (level, bits) in [(1u32, 10u32), (2, 9)] {
            let shift = 12 + 9 * (3 - level);
            let slot = table + 8 * ((ipa >> shift) & ((1 << bits) - 1));
            let desc = self.mem.try_read64(slot).unwrap();
            table = if desc & 1 == 0 {
                let next = self.mem.alloc(4096, 4096);
                self.mem.try_write64(slot, next | TABLE);
                next
            } else {
                desc & crate::regs::mask64(47, 12)
            };
        }
        table + 8 * ((ipa >> 12) & 511)
    }

    fn map(&self, ipa: u64, pa: u64) {
        let pte = self.pte_addr(ipa);
        self.mem.try_write64(pte, pa | TABLE | AF | S2AP_RW);
    }

    fn unmap(&self, ipa: u64) {
        let pte = self.pte_addr(ipa);
        self.mem.try_write64(pte, 0);
    }
}

#[test]
fn init_gbpa_abort_first_then_disable_then_enable() {
    let mem = FakeMemory::new();
    let smmu = Smmu::init(FakeSmmu::qemu(mem.clone()), mem, config()).unwrap();
    let fake = &smmu.regs;
    let acc = fake.accesses();
    // The first accesses are the GBPA handshake: poll Update, read, write ABORT|Update, poll Update.
    assert_eq!((acc[0].write, acc[0].offset), (false, regs::GBPA));
    let first_write = acc.iter().position(|a| a.write).unwrap();
    assert_eq!(acc[first_write].offset, regs::GBPA);
    assert_eq!(
        acc[first_write].value as u32,
        qemu::GBPA | regs::GBPA_ABORT | regs::GBPA_UPDATE
    );
    assert!(acc[..first_write].iter().all(|a| a.offset == regs::GBPA));
    // Then CR0 = 0 with its ACK, before the ID registers are read.
    let cr0_off = acc
        .iter()
        .position(|a| a.write && a.offset == regs::CR0)
        .unwrap();
    assert_eq!(acc[cr0_off].value, 0);
    let idr0 = acc.iter().position(|a| a.offset == regs::IDR0).unwrap();
    assert!(cr0_off < idr0);
    assert!(acc[cr0_off..idr0].iter().any(|a| a.offset == regs::CR0ACK));
    // CR0 writes enable CMDQ, then EVTQ, then SMMUEN last.
    let cr0_writes: Vec<u64> = acc
        .iter()
        .filter(|a| a.write && a.offset == regs::CR0)
        .map(|a| a.value)
        .collect();
    assert_eq!(cr0_writes, [0, 0b1000, 0b1100, 0b1101]);
    assert_eq!(
        acc.iter().rev().find(|a| a.write).unwrap().offset,
        regs::CR0
    );
    // The init invalidations ran as one batch.
    assert_eq!(
        kinds(fake.executed()),
        [
            CommandKind::CfgiSteRange {
                sid: StreamId(0),
                range: 31
            },
            CommandKind::TlbiNsnhAll,
            SYNC
        ]
    );
    assert!(fake.gbpa() & regs::GBPA_ABORT != 0);
    assert_eq!(fake.cr0ack(), 0b1101);
    assert_eq!(smmu.sid_bits(), 16);
    assert!(smmu.features().range_invalidation);
    let line = std::format!("{}", smmu.features());
    assert!(
        line.contains("RIL yes") && line.contains("OAS 44 bits"),
        "{line}"
    );
}

#[test]
fn unknown_streams_abort() {
    let (mut smmu, _) = init();
    // 2-level table, no leaf: C_BAD_STREAMID event; the device never gets through.
    assert_eq!(
        smmu.regs_mut().translate(StreamId(0x42), 0x1000, false),
        Translation::Fault(0x02)
    );
    // Installing a neighbour's leaf makes 0x42 a valid abort STE: silently aborted.
    smmu.write_ste(StreamId(0x40), &Ste::bypass()).unwrap();
    assert_eq!(
        smmu.regs_mut().translate(StreamId(0x42), 0x1000, false),
        Translation::Aborted
    );
    assert_eq!(
        smmu.regs_mut().translate(StreamId(0x40), 0x1234, true),
        Translation::Ok(0x1234)
    );
    let events = drain(&mut smmu);
    assert_eq!(events.len(), 1);
    assert_eq!(
        events.first().map(|e| (e.kind, e.sid)),
        Some((EventKind::BadStreamId, StreamId(0x42)))
    );
}

#[test]
fn linear_table_when_sid_space_small() {
    let idr1 = (qemu::IDR1 & !0x3F) | 6; // SIDSIZE 6
    let (mut smmu, _) = init_with(
        |m| FakeSmmu::with_ids(m, qemu::IDR0, idr1, qemu::IDR3, qemu::IDR5),
        config(),
    );
    assert!(matches!(
        smmu.strtab,
        StreamTable::Linear { sid_bits: 6, .. }
    ));
    for sid in [0, 17, 63] {
        assert_eq!(smmu.ste(StreamId(sid)).unwrap(), Ste::abort());
        assert_eq!(
            smmu.regs_mut().translate(StreamId(sid), 0, false),
            Translation::Aborted
        );
    }
    assert_eq!(
        smmu.write_ste(StreamId(64), &Ste::bypass()),
        Err(Error::InvalidStreamId(64))
    );
    assert_eq!(
        smmu.regs_mut().translate(StreamId(64), 0, false),
        Translation::Fault(0x02)
    );
}

#[test]
fn missing_features_are_boot_errors() {
    let cases = [
        (qemu::IDR0 & !1, qemu::IDR5, Feature::Stage2),
        (
            qemu::IDR0 & !(0b11 << 2) | (0b01 << 2),
            qemu::IDR5,
            Feature::AArch64Tables,
        ),
        (qemu::IDR0 & !(1 << 4), qemu::IDR5, Feature::Coherent),
        (qemu::IDR0 | (0b11 << 21), qemu::IDR5, Feature::LittleEndian),
        (qemu::IDR0, qemu::IDR5 & !(1 << 4), Feature::Granule4K),
        (qemu::IDR0, qemu::IDR5 | 7, Feature::OutputAddressSize),
        (
            qemu::IDR0 & !(0b11 << 27),
            qemu::IDR5,
            Feature::TwoLevelStreamTable,
        ),
    ];
    for (idr0, idr5, feature) in cases {
        let mem = FakeMemory::new();
        let fake = FakeSmmu::with_ids(mem.clone(), idr0, qemu::IDR1, qemu::IDR3, idr5);
        let err = Smmu::init(fake, mem, config()).unwrap_err();
        assert_eq!(err, Error::MissingFeature(feature));
    }
}

#[test]
fn stuck_handshakes_time_out() {
    let mem = FakeMemory::new();
    let mut fake = FakeSmmu::qemu(mem.clone());
    fake.set_gbpa_stuck(true);
    assert_eq!(
        Smmu::init(fake, mem.clone(), config()).unwrap_err(),
        Error::Timeout(Wait::GbpaUpdate)
    );
    let mut fake = FakeSmmu::qemu(mem.clone());
    fake.set_cr0ack_stuck(true);
    fake.poke(regs::CR0ACK, 1);
    assert_eq!(
        Smmu::init(fake, mem, config()).unwrap_err(),
        Error::Timeout(Wait::Cr0Ack)
    );
}

#[test]
fn stale_gerror_acknowledged_at_init() {
    let mem = FakeMemory::new();
    let mut fake = FakeSmmu::qemu(mem.clone());
    fake.poke(regs::GERROR, Gerror::SFM_ERR);
    let mut smmu = Smmu::init(fake, mem, config()).unwrap();
    let (g, n) = (
        smmu.regs.read32(regs::GERROR),
        smmu.regs.read32(regs::GERRORN),
    );
    assert_eq!(Gerror(g).active(n), 0);
}

#[test]
fn attach_sequence_abort_to_stage2() {
    let (mut smmu, mem) = init();
    let table = S2Table::new(&mem);
    let sid = StreamId(0x0108);
    smmu.write_ste(sid, &Ste::stage2(&table.config(1))).unwrap();
    let cfgi = CommandKind::CfgiSte { sid, leaf: true };
    assert_eq!(
        kinds(&smmu.regs_mut().take_executed()),
        [
            // Leaf for SIDs 0x100..0x1ff installed and invalidated.
            CommandKind::CfgiSteRange {
                sid: StreamId(0x100),
                range: 7
            },
            SYNC,
            // Dwords 1..7, CFGI_STE + SYNC, then dword 0 with V, CFGI_STE + SYNC.
            cfgi,
            SYNC,
            cfgi,
            SYNC,
        ]
    );
    assert_eq!(smmu.ste(sid).unwrap(), Ste::stage2(&table.config(1)));
    assert_eq!(smmu.counters().l2_tables, 1);
    // Writing the same STE again costs nothing.
    smmu.write_ste(sid, &Ste::stage2(&table.config(1))).unwrap();
    assert!(smmu.regs_mut().take_executed().is_empty());
    // The device translates through the table.
    table.map(0x8000_0000, 0x4123_4000);
    assert_eq!(
        smmu.regs_mut().translate(sid, 0x8000_0010, true),
        Translation::Ok(0x4123_4010)
    );
}

/// Replays every memory write of an STE update and checks each intermediate state the SMMU could fetch.
fn check_update_states(from: &Ste, to: &Ste) -> usize {
    let (mut smmu, mem) = init();
    let sid = StreamId(3);
    smmu.write_ste(sid, from).unwrap();
    let pa = match &smmu.strtab {
        StreamTable::TwoLevel { leaves, .. } => leaves[0].unwrap() + 3 * 64,
        StreamTable::Linear { pa, .. } => pa + 3 * 64,
    };
    smmu.regs_mut().take_executed();
    mem.start_write_log();
    smmu.write_ste(sid, to).unwrap();
    let log = mem.take_write_log();
    let mut state = *from;
    for (addr, value) in log {
        if (pa..pa + 64).contains(&addr) {
            state.0[((addr - pa) / 8) as usize] = value;
            // What the SMMU would do with `state` must be what `from` or `to` does, or abort.
            let used = state.used_dwords();
            let same = |other: &Ste| {
                other.kind() == state.kind()
                    && (0..8).all(|i| used & (1 << i) == 0 || other.0[i] == state.0[i])
            };
            assert!(
                same(from) || same(to) || state.kind() == SteKind::Abort,
                "half-written STE visible: {state:x?} ({from:x?} -> {to:x?})"
            );
        }
    }
    assert_eq!(state, *to);
    assert_eq!(smmu.ste(sid).unwrap(), *to);
    smmu.regs_mut()
        .take_executed()
        .iter()
        .filter(|c| c.opcode() == crate::cmd::opcode::CMD_SYNC)
        .count()
}

#[test]
fn ste_updates_never_expose_half_written_entries() {
    let mem = FakeMemory::new();
    let a = S2Config::new_4k(Vmid(1), mem.alloc(8192, 8192), 40, 1, 4);
    let b = S2Config::new_4k(Vmid(2), mem.alloc(8192, 8192), 40, 1, 4);
    let same_vmid_new_table = S2Config { ttb: b.ttb, ..a };
    let (s2a, s2b) = (Ste::stage2(&a), Ste::stage2(&b));
    // (from, to, syncs expected)
    let cases = [
        (Ste::abort(), s2a, 2), // dwords 1..7 + sync, dword 0 + sync
        (s2a, Ste::abort(), 2), // dword 0 + sync, cleanup + sync
        (s2a, s2b, 3),          // two critical dwords: via abort
        (s2a, Ste::stage2(&same_vmid_new_table), 1), // one critical dword: hitless
        (s2a, Ste::bypass(), 2), // dword 0 + sync, cleanup + sync
        (Ste::bypass(), s2a, 2), // hitless
        (Ste::abort(), Ste::bypass(), 2),
    ];
    for (from, to, syncs) in cases {
        assert_eq!(
            check_update_states(&from, &to),
            syncs,
            "{:?} -> {:?}",
            from.kind(),
            to.kind()
        );
    }
}

#[test]
fn write_ste_range_batches_idle_entries() {
    let (mut smmu, _) = init();
    smmu.write_ste_range(StreamId(0xf0), 0x20, &Ste::bypass())
        .unwrap();
    let cmds = kinds(&smmu.regs_mut().take_executed());
    let all = CommandKind::CfgiSteRange {
        sid: StreamId(0),
        range: 31,
    };
    // The two new level-2 tables are written whole before they are linked, under the run's invalidations.
    assert_eq!(cmds, [all, SYNC, all, SYNC]);
    assert_eq!(smmu.counters().l2_tables, 2);
    for sid in 0xf0..0x110 {
        assert_eq!(
            smmu.regs_mut().translate(StreamId(sid), 0x5000, false),
            Translation::Ok(0x5000)
        );
    }
    assert_eq!(
        smmu.regs_mut().translate(StreamId(0x110), 0x5000, false),
        Translation::Aborted
    );
    assert_eq!(
        smmu.write_ste_range(StreamId(0xffff), 2, &Ste::bypass()),
        Err(Error::InvalidStreamId(0x10000))
    );
}

/// The level-1 descriptors of a 2-level stream table.
fn l1_descriptors(smmu: &TestSmmu, mem: &FakeMemory) -> Vec<u64> {
    let StreamTable::TwoLevel { l1_pa, leaves, .. } = &smmu.strtab else {
        panic!("a 2-level stream table");
    };
    (0..leaves.len() as u64)
        .map(|i| mem.try_read64(l1_pa + 8 * i).unwrap())
        .collect()
}

/// The bulk path leaves the stream table exactly as one `write_ste` per StreamID does: every STE of the
/// StreamID space and every level-1 descriptor, over a live level-2 table, a new one filled whole and a new
/// one filled in part, for a bypass and a stage-2 target. It never lets the SMMU see a valid STE before the
/// first `CFGI_ALL`, nor a new table before its STEs.
#[test]
fn write_ste_range_bulk_fill_equals_per_ste_writes() {
    let mem0 = FakeMemory::new();
    let root = mem0.alloc(8192, 8192);
    for target in [
        Ste::bypass(),
        Ste::stage2(&S2Config::new_4k(Vmid(7), root, 40, 1, 4)),
    ] {
        let (mut bulk, bulk_mem) = init();
        let (mut single, single_mem) = init();
        for smmu in [&mut bulk, &mut single] {
            // Level-2 table 0 exists (and is live) before the run.
            smmu.write_ste(StreamId(0x05), &Ste::abort()).unwrap();
            smmu.regs_mut().take_executed();
        }
        let (first, count) = (0xf0u32, 0x120u32);
        bulk_mem.start_write_log();
        bulk.write_ste_range(StreamId(first), count, &target)
            .unwrap();
        let log = bulk_mem.take_write_log();
        for sid in first..first + count {
            single.write_ste(StreamId(sid), &target).unwrap();
        }
        for sid in 0..0x400 {
            assert_eq!(
                bulk.ste(StreamId(sid)).unwrap(),
                single.ste(StreamId(sid)).unwrap(),
                "StreamID {sid:#x}"
            );
        }
        assert_eq!(bulk.ste(StreamId(first)).unwrap(), target);
        assert_eq!(bulk.ste(StreamId(first - 1)).unwrap(), Ste::abort());
        assert_eq!(bulk.ste(StreamId(first + count)).unwrap(), Ste::abort());
        assert_eq!(
            l1_descriptors(&bulk, &bulk_mem),
            l1_descriptors(&single, &single_mem)
        );
        assert_eq!(bulk.counters().l2_tables, single.counters().l2_tables);

        // Order: every STE of the range is switched by one store of dword 0, after the first CFGI_ALL was
        // written to the queue; each level-1 descriptor comes after every STE write of its table.
        let cfgi_all = Command::cfgi_all().0[0];
        let first_cfgi = log.iter().position(|&(_, v)| v == cfgi_all).unwrap();
        let mut l2 = |sid: u32| bulk.ste_pa(StreamId(sid), false).unwrap().unwrap();
        let ste_pas: Vec<u64> = (first..first + count).map(&mut l2).collect();
        let tables = [l2(0x100), l2(0x200)];
        for (i, &(pa, v)) in log.iter().enumerate() {
            if ste_pas.contains(&pa) && v == target.0[0] {
                assert!(
                    i > first_cfgi,
                    "dword 0 of the STE at {pa:#x} before CFGI_ALL"
                );
            }
        }
        let switches = log
            .iter()
            .filter(|&&(pa, v)| ste_pas.contains(&pa) && v == target.0[0])
            .count();
        assert_eq!(switches, count as usize);
        let StreamTable::TwoLevel { l1_pa, .. } = bulk.strtab else {
            unreachable!()
        };
        for (leaf, table) in [1u64, 2].into_iter().zip(tables) {
            let l1 = log
                .iter()
                .position(|&(pa, _)| pa == l1_pa + 8 * leaf)
                .unwrap();
            let last_fill = log[..first_cfgi]
                .iter()
                .rposition(|&(pa, _)| (table..table + 256 * 64).contains(&pa))
                .unwrap();
            assert!(
                last_fill < l1,
                "level-2 table {leaf} linked before it was filled"
            );
        }
    }
}

fn unmap_req(vmid: u16, iova: u64, size: u64) -> S2Invalidation {
    S2Invalidation {
        vmid: Vmid(vmid),
        iova,
        size,
        leaf_size: LeafSize::Page4K,
        leaf_only: true,
    }
}

#[test]
fn range_unmap_is_one_tlbi_and_one_sync_with_ril() {
    let (mut smmu, _) = init();
    for pages in [1u64, 2, 3, 17, 31, 32, 33, 100, 255, 256, 257, 511, 512] {
        let before = smmu.counters();
        smmu.invalidate_s2(&unmap_req(5, 0x10_0000 + 0x3000, pages << 12))
            .unwrap();
        let cmds = kinds(&smmu.regs_mut().take_executed());
        assert_eq!(cmds.len(), 2, "pages {pages}");
        let CommandKind::TlbiS2Ipa(t) = cmds[0] else {
            panic!("{cmds:?}")
        };
        assert_eq!(
            (t.vmid, t.ipa, t.tg, t.ttl, t.leaf),
            (Vmid(5), 0x10_3000, TG_4K, 3, true)
        );
        assert!(t.span() >= pages << 12);
        assert_eq!(cmds[1], SYNC);
        let after = smmu.counters();
        assert_eq!(after.prod_writes - before.prod_writes, 1);
        assert_eq!(after.tlbi_s2_ipa_range - before.tlbi_s2_ipa_range, 1);
        assert_eq!(after.syncs - before.syncs, 1);
        assert_eq!(after.commands - before.commands, 2);
    }
}

#[test]
fn unmap_without_ril_per_granule_then_vmall() {
    let (mut smmu, _) = init_with(
        |m| {
            FakeSmmu::with_ids(
                m,
                qemu::IDR0,
                qemu::IDR1,
                qemu::IDR3 & !(1 << 10),
                qemu::IDR5,
            )
        },
        config(),
    );
    assert!(!smmu.invalidation_policy().range);
    smmu.invalidate_s2(&unmap_req(2, 0x4000, 3 << 12)).unwrap();
    let cmds = kinds(&smmu.regs_mut().take_executed());
    let page = |ipa| {
        CommandKind::TlbiS2Ipa(crate::cmd::TlbiS2Ipa {
            vmid: Vmid(2),
            ipa,
            leaf: true,
            tg: 0,
            ttl: 0,
            num: 0,
            scale: 0,
        })
    };
    assert_eq!(cmds, [page(0x4000), page(0x5000), page(0x6000), SYNC]);
    smmu.invalidate_s2(&unmap_req(2, 0, 512 << 12)).unwrap();
    assert_eq!(smmu.regs_mut().take_executed().len(), 513);
    smmu.invalidate_s2(&unmap_req(2, 0, 513 << 12)).unwrap();
    assert_eq!(
        kinds(&smmu.regs_mut().take_executed()),
        [CommandKind::TlbiS12Vmall { vmid: Vmid(2) }, SYNC]
    );
    // Asking for RIL on an SMMU without it is ignored.
    smmu.set_invalidation_policy(InvalidationPolicy::new(true));
    assert!(!smmu.invalidation_policy().range);
}

#[test]
fn after_unmap_and_tlbi_the_device_cannot_reach_the_page() {
    let (mut smmu, mem) = init();
    let table = S2Table::new(&mem);
    let sid = StreamId(0x10);
    smmu.write_ste(sid, &Ste::stage2(&table.config(7))).unwrap();
    for i in 0..4 {
        table.map(0x20_0000 + i * 4096, 0x4000_0000 + i * 4096);
    }
    assert_eq!(
        smmu.regs_mut().translate(sid, 0x20_1008, false),
        Translation::Ok(0x4000_1008)
    );
    assert_eq!(
        smmu.regs_mut().translate(sid, 0x20_3000, true),
        Translation::Ok(0x4000_3000)
    );
    table.unmap(0x20_1000);
    // Still cached in the TLB: this is why the TLBI matters.
    assert_eq!(
        smmu.regs_mut().translate(sid, 0x20_1008, false),
        Translation::Ok(0x4000_1008)
    );
    smmu.invalidate_s2(&unmap_req(7, 0x20_1000, 4096)).unwrap();
    assert_eq!(
        smmu.regs_mut().translate(sid, 0x20_1008, false),
        Translation::Fault(0x10)
    );
    // The neighbour is unaffected.
    assert_eq!(
        smmu.regs_mut().translate(sid, 0x20_3000, true),
        Translation::Ok(0x4000_3000)
    );
    let events = drain(&mut smmu);
    assert_eq!(events.len(), 1);
    let e = events[0];
    assert_eq!(
        (e.kind, e.sid, e.input_addr, e.read, e.stage2),
        (EventKind::Translation, sid, 0x20_1008, true, true)
    );
    // Unmapped beyond the IPA size: a translation fault too.
    assert_eq!(
        smmu.regs_mut().translate(sid, 1 << 40, false),
        Translation::Fault(0x10)
    );
    // Invalidating the whole VMID drops everything cached for it.
    assert!(smmu.regs_mut().tlb_len() > 0);
    smmu.invalidate_vmid(Vmid(7)).unwrap();
    assert_eq!(smmu.regs_mut().tlb_len(), 0);
}

#[test]
fn permission_and_access_faults_are_decoded() {
    let (mut smmu, mem) = init();
    let table = S2Table::new(&mem);
    let sid = StreamId(0x11);
    smmu.write_ste(sid, &Ste::stage2(&table.config(9))).unwrap();
    let pte = table.pte_addr(0x1000);
    mem.try_write64(pte, 0x5000 | TABLE | AF | (0b01 << 6)); // read-only
    assert_eq!(
        smmu.regs_mut().translate(sid, 0x1000, false),
        Translation::Ok(0x5000)
    );
    assert_eq!(
        smmu.regs_mut().translate(sid, 0x1000, true),
        Translation::Fault(0x13)
    );
    let pte = table.pte_addr(0x2000);
    mem.try_write64(pte, 0x6000 | TABLE | S2AP_RW); // AF clear
    assert_eq!(
        smmu.regs_mut().translate(sid, 0x2000, false),
        Translation::Fault(0x12)
    );
    let pte = table.pte_addr(0x3000);
    mem.try_write64(pte, (1 << 45) | TABLE | AF | S2AP_RW); // beyond the 44-bit S2PS
    assert_eq!(
        smmu.regs_mut().translate(sid, 0x3000, false),
        Translation::Fault(0x11)
    );
    let events = drain(&mut smmu);
    assert_eq!(events.len(), 3);
    let got: Vec<_> = events
        .iter()
        .map(|e| (e.kind, e.input_addr, e.read))
        .collect();
    assert_eq!(
        got,
        [
            (EventKind::Permission, 0x1000, false),
            (EventKind::Access, 0x2000, true),
            (EventKind::AddressSize, 0x3000, true)
        ]
    );
}

#[test]
fn queue_wraps_over_many_batches() {
    let (mut smmu, _) = init_with(
        FakeSmmu::qemu,
        Config {
            cmdq_log2: 3,
            ..config()
        },
    );
    let mut expected = Vec::new();
    for i in 0..100u32 {
        let cmds = [
            Command::cfgi_ste(StreamId(i), true),
            Command::tlbi_s12_vmall(Vmid(i as u16)),
        ];
        smmu.submit(cmds).unwrap();
        expected.extend(kinds(&cmds));
        expected.push(SYNC);
    }
    assert_eq!(kinds(&smmu.regs_mut().take_executed()), expected);
    assert_eq!(smmu.counters().batches, 101);
}

#[test]
fn batch_larger_than_queue_and_slow_consumer() {
    let (mut smmu, _) = init_with(
        FakeSmmu::qemu,
        Config {
            cmdq_log2: 3,
            ..config()
        },
    );
    let cmds: Vec<Command> = (0..20).map(|i| Command::tlbi_s12_vmall(Vmid(i))).collect();
    smmu.regs_mut().set_consume_budget(Some(1));
    smmu.submit(cmds.iter().copied()).unwrap();
    let mut expected = kinds(&cmds);
    expected.push(SYNC);
    assert_eq!(kinds(&smmu.regs_mut().take_executed()), expected);
    // A stopped consumer: the full queue is reported, not waited on forever.
    smmu.regs_mut().set_consume_budget(Some(0));
    assert_eq!(
        smmu.submit(cmds.iter().copied()),
        Err(Error::Timeout(Wait::CmdqSpace))
    );
    // Recovery: the consumer resumes, everything already queued completes, new batches work.
    smmu.regs_mut().set_consume_budget(None);
    smmu.submit([Command::tlbi_nsnh_all()]).unwrap();
    let done = kinds(&smmu.regs_mut().take_executed());
    assert_eq!(done.last(), Some(&SYNC));
    assert_eq!(done[done.len() - 2], CommandKind::TlbiNsnhAll);
    assert_eq!(smmu.counters().timeouts, 1);
}

#[test]
fn sync_timeout_is_reported_and_recovered() {
    let (mut smmu, _) = init();
    smmu.regs_mut().set_sync_stall(true);
    assert_eq!(
        smmu.invalidate_vmid(Vmid(3)),
        Err(Error::Timeout(Wait::CmdSync))
    );
    assert_eq!(
        kinds(&smmu.regs_mut().take_executed()),
        [CommandKind::TlbiS12Vmall { vmid: Vmid(3) }]
    );
    smmu.regs_mut().set_sync_stall(false);
    smmu.invalidate_vmid(Vmid(4)).unwrap();
    assert_eq!(
        kinds(&smmu.regs_mut().take_executed()),
        [SYNC, CommandKind::TlbiS12Vmall { vmid: Vmid(4) }, SYNC]
    );
    assert_eq!(smmu.counters().timeouts, 1);
}

#[test]
fn illegal_command_is_skipped_reported_and_acknowledged() {
    let (mut smmu, _) = init();
    let err = smmu.submit(illegal_batch());
    assert_eq!(err, Err(ILLEGAL));
    // The bad command was replaced by a CMD_SYNC; the rest of the batch ran.
    assert_eq!(kinds(&smmu.regs_mut().take_executed()), ILLEGAL_BATCH_RAN);
    let (g, n) = (
        smmu.regs.read32(regs::GERROR),
        smmu.regs.read32(regs::GERRORN),
    );
    assert_eq!(Gerror(g).active(n), 0);
    assert_eq!(
        smmu.regs.read32(regs::CMDQ_CONS) >> 24,
        0,
        "CONS.ERR cleared"
    );
    smmu.invalidate_vmid(Vmid(1)).unwrap();
    assert_eq!(smmu.counters().cmdq_errors, 1);
    // TLBI_EL2_ALL on an SMMU without HYP is illegal too (the driver never sends it there).
    assert!(matches!(
        smmu.submit([Command::tlbi_el2_all()]),
        Err(Error::CommandError { opcode: 0x20, .. })
    ));
}

#[test]
fn event_queue_overflow_is_counted_and_acknowledged() {
    let (mut smmu, _) = init_with(
        FakeSmmu::qemu,
        Config {
            evtq_log2: 2,
            ..config()
        },
    );
    // Ten faults from StreamIDs without a leaf: four fit in the queue, six are lost by the SMMU.
    for sid in 0..10 {
        smmu.regs_mut().translate(StreamId(0x1000 + sid), 0, false);
    }
    assert_eq!(smmu.regs_mut().events_lost(), 6);
    let events = drain(&mut smmu);
    assert_eq!(events.len(), 4);
    assert_eq!(smmu.counters().evtq_overflows, 1);
    let sids: Vec<u32> = events.iter().map(|e| e.sid.0).collect();
    assert_eq!(sids, [0x1000, 0x1001, 0x1002, 0x1003]);
    // Acknowledged: new events flow, no second overflow counted.
    smmu.regs_mut().translate(StreamId(0x2000), 0, false);
    assert_eq!(drain(&mut smmu).len(), 1);
    assert_eq!(smmu.counters().evtq_overflows, 1);
    assert_eq!(smmu.counters().events, 5);
}

/// The driver keeps no ring: a bounded drain reads at most `max` records and leaves the rest in the queue,
/// so nothing is dropped between the SMMU and the caller.
#[test]
fn bounded_drains_leave_the_rest_queued_and_drop_nothing() {
    let (mut smmu, _) = init_with(
        FakeSmmu::qemu,
        Config {
            evtq_log2: 4,
            ..config()
        },
    );
    let mut sids = Vec::new();
    for round in 0..6u32 {
        for i in 0..16 {
            smmu.regs_mut()
                .translate(StreamId(0x1000 + round * 16 + i), 0, false);
        }
        // Two bounded drains: 10 records, then the 6 left in the queue.
        assert_eq!(smmu.drain_events(10, |e| sids.push(e.sid.0)), 10);
        assert_eq!(smmu.drain_events(10, |e| sids.push(e.sid.0)), 6);
        assert_eq!(smmu.drain_events(10, |e| sids.push(e.sid.0)), 0);
    }
    assert_eq!(sids, (0x1000..0x1000 + 96).collect::<Vec<u32>>());
    assert_eq!(smmu.counters().events, 96);
    assert_eq!(smmu.counters().evtq_overflows, 0);
}

#[test]
fn bad_stream_ids_and_configs_are_errors() {
    let (mut smmu, _) = init();
    assert_eq!(
        smmu.write_ste(StreamId(1 << 16), &Ste::abort()),
        Err(Error::InvalidStreamId(1 << 16))
    );
    assert_eq!(
        smmu.ste(StreamId(u32::MAX)),
        Err(Error::InvalidStreamId(u32::MAX))
    );
    assert_eq!(smmu.ste(StreamId(0x300)), Ok(Ste::INVALID));
    assert!(
        smmu.regs_mut().take_executed().is_empty(),
        "reading never allocates or invalidates"
    );
}

#[test]
fn several_ranges_in_one_batch() {
    let (mut smmu, _) = init();
    let reqs = [
        unmap_req(1, 0x1000, 0x3000),
        unmap_req(1, 0x40_0000, 0x20_0000),
        unmap_req(2, 0, 0x1000),
    ];
    smmu.invalidate_s2_many(&reqs).unwrap();
    let cmds = kinds(&smmu.regs_mut().take_executed());
    assert_eq!(cmds.len(), 4);
    assert!(
        cmds[..3]
            .iter()
            .all(|c| matches!(c, CommandKind::TlbiS2Ipa(t) if t.tg == TG_4K))
    );
    assert_eq!(cmds[3], SYNC);
    assert_eq!(smmu.counters().tlbi_s2_ipa_range, 3);
}

#[test]
fn global_errors_outside_batches_are_acknowledged() {
    let (mut smmu, _) = init();
    assert_eq!(smmu.check_global_errors(), Ok(()));
    smmu.regs_mut().poke(regs::GERROR, Gerror::EVTQ_ABT_ERR);
    assert_eq!(
        smmu.check_global_errors(),
        Err(Error::GlobalError(Gerror::EVTQ_ABT_ERR))
    );
    assert_eq!(smmu.check_global_errors(), Ok(()));
    assert_eq!(smmu.counters().global_errors, 1);
    // The SMMU toggling the bit again is a new occurrence of the error.
    smmu.regs_mut().poke(regs::GERROR, 0);
    assert_eq!(
        smmu.check_global_errors(),
        Err(Error::GlobalError(Gerror::EVTQ_ABT_ERR))
    );
}

#[test]
fn ste_updates_reach_the_smmu_despite_its_ste_cache() {
    let (mut smmu, mem) = init();
    let table = S2Table::new(&mem);
    table.map(0x3000, 0x7000);
    let sid = StreamId(0x21);
    smmu.write_ste(sid, &Ste::bypass()).unwrap();
    assert_eq!(
        smmu.regs_mut().translate(sid, 0x3000, false),
        Translation::Ok(0x3000)
    ); // now cached
    smmu.write_ste(sid, &Ste::stage2(&table.config(4))).unwrap();
    assert_eq!(
        smmu.regs_mut().translate(sid, 0x3000, false),
        Translation::Ok(0x7000)
    );
    smmu.write_ste(sid, &Ste::abort()).unwrap();
    assert_eq!(
        smmu.regs_mut().translate(sid, 0x3000, false),
        Translation::Aborted
    );
}

#[test]
fn stage2_parameters_are_validated_before_any_write() {
    let (mut smmu, mem) = init();
    let table = S2Table::new(&mem);
    let bad_ps = S2Config {
        ps: 5,
        ..table.config(1)
    }; // 48-bit output on a 44-bit SMMU
    assert_eq!(
        smmu.write_ste(StreamId(1), &Ste::stage2(&bad_ps)),
        Err(Error::InvalidS2Config(crate::S2ConfigError::OutputSize))
    );
    let too_wide = S2Config::new_4k(Vmid(1), table.root, 48, 0, 4); // IAS 48 > 44
    assert_eq!(
        smmu.write_ste_range(StreamId(1), 4, &Ste::stage2(&too_wide)),
        Err(Error::InvalidS2Config(crate::S2ConfigError::InputSize))
    );
    assert!(smmu.regs_mut().take_executed().is_empty());
    assert_eq!(smmu.ste(StreamId(1)), Ok(Ste::INVALID));
    // 8-bit VMIDs: 256 is out of range.
    let idr0 = qemu::IDR0 & !(1 << 18);
    let (mut smmu, _) = init_with(
        |m| FakeSmmu::with_ids(m, idr0, qemu::IDR1, qemu::IDR3, qemu::IDR5),
        config(),
    );
    let big = S2Config {
        vmid: Vmid(256),
        ..table.config(1)
    };
    assert_eq!(
        smmu.write_ste(StreamId(1), &Ste::stage2(&big)),
        Err(Error::InvalidVmid(256))
    );
}

mod cmdq_concurrency;
