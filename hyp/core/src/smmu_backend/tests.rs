//! End-to-end tests: `Warden<SmmuBackend<..>>` over warden-smmu's behavioural fake SMMU, booted from QEMU
//! virt's real DTB ([`crate::test_support`]). Device accesses go through `FakeSmmu::translate`, which fetches the
//! STEs the driver wrote and walks the page tables the dispatcher built; exact command sequences come from
//! `FakeSmmu::executed`.

use super::*;
use crate::test_support::{CARVEOUT_SIZE, DTB, Harness, ITS_FRAME, Options, SIDS};
use alloc::vec;
use warden_abi::{DomainKind, Error, Function, Stat};
use warden_smmu::event::event_id;
use warden_smmu::fake::Translation;
use warden_smmu::regs::GERROR;
use warden_smmu::{Command, CommandKind, LeafSize, S2Config};

const RW: u64 = abi::PROT_READ | abi::PROT_WRITE;
const K4: u64 = abi::PGSIZE_4K;
const M2: u64 = abi::PGSIZE_2M;

fn boot_with(ril: bool, sids: u32, budget: u64) -> Result<Harness, BootError> {
    boot_driver(ril, sids, budget, warden_smmu::Config::default())
}

fn boot_driver(
    ril: bool,
    sids: u32,
    budget: u64,
    driver: warden_smmu::Config,
) -> Result<Harness, BootError> {
    Harness::boot(&Options {
        ril,
        sids,
        strtab_budget: budget,
        driver,
        ..Options::default()
    })
}

fn boot(ril: bool) -> Harness {
    boot_with(ril, SIDS, 4 << 20).unwrap()
}

/// [`boot`] with an event queue of 2^`log2` records.
fn boot_with_evtq(log2: u32) -> Harness {
    let driver = warden_smmu::Config {
        evtq_log2: log2,
        ..warden_smmu::Config::default()
    };
    boot_driver(true, SIDS, 4 << 20, driver).unwrap()
}

fn is_sync(c: &CommandKind) -> bool {
    matches!(c, CommandKind::Sync(_))
}

#[test]
fn boot_sequence_and_commands() {
    let h = boot(true);
    let kinds: Vec<CommandKind> = h.boot_cmds.iter().map(Command::decode).collect();
    let sync = kinds.iter().copied().find(is_sync).unwrap();
    let all = CommandKind::CfgiSteRange {
        sid: StreamId(0),
        range: 31,
    };
    // init: CFGI_ALL + TLBI_NSNH_ALL + sync; the run: three level-2 tables written whole (dword 0 abort) and
    // linked, CFGI_ALL + sync; dword 0, CFGI_ALL + sync. No per-table or per-StreamID command.
    assert_eq!(
        kinds,
        [all, CommandKind::TlbiNsnhAll, sync, all, sync, all, sync,]
    );
    let c = h.w.backend().driver_counters();
    assert_eq!(
        (c.ste_writes, c.cfgi_ste, c.l2_tables),
        (u64::from(SIDS), 0, 3)
    );
    // The features line for the boot log.
    let line = alloc::format!("{}", h.w.backend().features());
    assert!(line.contains("RIL yes"), "{line}");
}

#[test]
fn host_identity_after_boot() {
    let h = boot(true);
    for sid in [0, 8, 0x1ff, SIDS - 1] {
        assert_eq!(h.w.sid_domain(sid), Some(abi::DOMAIN_ID_HOST_IDENTITY));
        // Host h.ram 1:1, reads and writes, first and last page.
        for pa in [
            h.ram + CARVEOUT_SIZE,
            h.ram + 0x123_4568,
            h.ram + h.ram_size - 8,
        ] {
            assert_eq!(
                h.translate(sid, pa, true),
                Translation::Ok(pa),
                "sid {sid:#x} pa {pa:#x}"
            );
            assert_eq!(h.translate(sid, pa, false), Translation::Ok(pa));
        }
        // The MSI doorbell.
        assert_eq!(
            h.translate(sid, ITS_FRAME + 0x40, true),
            Translation::Ok(ITS_FRAME + 0x40)
        );
        // The carve-out and anything beyond h.ram fault (recorded).
        for pa in [
            h.ram,
            h.ram + CARVEOUT_SIZE - 8,
            h.ram + h.ram_size,
            0x0905_0000,
        ] {
            assert_eq!(
                h.translate(sid, pa, true),
                Translation::Fault(event_id::F_TRANSLATION),
                "sid {sid:#x} pa {pa:#x}"
            );
        }
    }
    // StreamIDs the DT does not name: aborted (in an existing level-2 table) or C_BAD_STREAMID (no table).
    assert_eq!(
        h.translate(SIDS, h.ram + CARVEOUT_SIZE, true),
        Translation::Aborted
    );
    assert_eq!(
        h.translate(0x2ff, h.ram + CARVEOUT_SIZE, true),
        Translation::Aborted
    );
    assert_eq!(
        h.translate(0x300, h.ram + CARVEOUT_SIZE, true),
        Translation::Fault(event_id::C_BAD_STREAMID)
    );
    // Faults reach READ_EVENT in order: the first carve-out write of StreamID 0.
    let r = h.call(Function::ReadEvent, &[]);
    assert_eq!(r[0], 1);
    assert_eq!(r[1], h.ram);
    assert_eq!(r[2] & 0xffff_ffff, 0);
    assert_eq!(
        (r[2] >> abi::EVENT_REASON_SHIFT) & 0xff,
        abi::EVENT_REASON_TRANSLATION
    );
}

#[test]
fn paging_domain_map_translate_unmap_fault() {
    let h = boot(true);
    let d = h.paging_domain();
    let sid = 8;
    let iova = 0x10_0000;
    let pa = h.ram + (8 << 20);
    assert_eq!(
        h.ok(Function::MapPages, &[d, iova, pa, K4, 4, RW])[1],
        4 * K4
    );
    // Mapped but not attached: the device still sees host-identity.
    assert_eq!(h.translate(sid, pa, false), Translation::Ok(pa));
    h.ok(Function::Attach, &[sid as u64, d]);
    assert_eq!(h.w.sid_domain(sid), Some(d));
    assert_eq!(
        h.translate(sid, iova + 0x1234, true),
        Translation::Ok(pa + 0x1234)
    );
    assert_eq!(
        h.translate(sid, iova + 3 * K4, false),
        Translation::Ok(pa + 3 * K4)
    );
    // Identity is gone for this device (the page at `pa` is not mapped at IOVA `pa`).
    assert_eq!(
        h.translate(sid, pa, false),
        Translation::Fault(event_id::F_TRANSLATION)
    );
    // Other devices are untouched.
    assert_eq!(h.translate(9, pa, true), Translation::Ok(pa));
    assert_eq!(
        h.ok(Function::IovaToPhys, &[d, iova + 0x1234])[1],
        pa + 0x1234
    );
    while h.call(Function::ReadEvent, &[])[0] == 1 {}

    // Unmap: the TLB entries the walks above filled are invalidated, so the device faults at once.
    assert_eq!(h.ok(Function::UnmapPages, &[d, iova, K4, 4])[1], 4 * K4);
    assert_eq!(
        h.translate(sid, iova + 0x1234, true),
        Translation::Fault(event_id::F_TRANSLATION)
    );
    let r = h.call(Function::ReadEvent, &[]);
    assert_eq!(r[0], 1, "no fault record");
    assert_eq!(r[1], iova + 0x1234);
    assert_eq!(r[2] & 0xffff_ffff, u64::from(sid));
    assert_eq!(
        (r[2] >> abi::EVENT_REASON_SHIFT) & 0xff,
        abi::EVENT_REASON_TRANSLATION
    );
    let flags = r[2] >> abi::EVENT_FLAGS_SHIFT;
    assert_eq!(
        flags,
        abi::EVENT_FLAG_WRITE | abi::EVENT_FLAG_STAGE2 | abi::EVENT_FLAG_IOVA_VALID
    );
    assert_eq!(r[3], 0, "nothing lost");
    assert_eq!(h.call(Function::ReadEvent, &[])[0], 0);
    assert_eq!(
        h.call(Function::IovaToPhys, &[d, iova])[0],
        Error::NotMapped.to_reg()
    );

    // Detach: back to host-identity; the domain can be freed.
    h.ok(Function::Detach, &[sid as u64]);
    assert_eq!(h.translate(sid, pa, true), Translation::Ok(pa));
    h.ok(Function::DomainFree, &[d]);
}

/// Maps `count` pages of `pgsize` at a fresh IOVA, fills the TLB through the device, unmaps in one call and
/// returns the commands the unmap issued (after checking the device faults afterwards).
fn unmap_commands(h: &Harness, pgsize: u64, count: u64) -> Vec<CommandKind> {
    let len = pgsize * count;
    unmap_commands_at(
        h,
        pgsize,
        count,
        h.ram + (16 << 20),
        &[0, len / 2, len - K4],
    )
}

/// [`unmap_commands`] of memory at `pa`, with the device touching only the given offsets.
fn unmap_commands_at(
    h: &Harness,
    pgsize: u64,
    count: u64,
    pa: u64,
    probes: &[u64],
) -> Vec<CommandKind> {
    let d = h.paging_domain();
    let sid = 16;
    let iova = 0x4000_0000;
    h.ok(Function::MapPages, &[d, iova, pa, pgsize, count, RW]);
    h.ok(Function::Attach, &[sid, d]);
    for &off in probes {
        assert_eq!(
            h.translate(sid as u32, iova + off, false),
            Translation::Ok(pa + off)
        );
    }
    h.take_cmds();
    h.ok(Function::UnmapPages, &[d, iova, pgsize, count]);
    let cmds = h.take_cmds();
    for &off in probes {
        assert_eq!(
            h.translate(sid as u32, iova + off, false),
            Translation::Fault(event_id::F_TRANSLATION),
            "{count} x {pgsize:#x}: stale translation at +{off:#x} after unmap"
        );
    }
    h.ok(Function::Detach, &[sid]);
    h.ok(Function::DomainFree, &[d]);
    while h.call(Function::ReadEvent, &[])[0] == 1 {}
    cmds
}

#[test]
fn unmap_with_ril_is_one_tlbi_and_one_sync() {
    let h = boot(true);
    for (pgsize, count) in [(K4, 1), (K4, 16), (M2, 1), (K4, 512), (M2, 2)] {
        let cmds = unmap_commands(&h, pgsize, count);
        assert_eq!(cmds.len(), 2, "{count} x {pgsize:#x}: {cmds:x?}");
        let CommandKind::TlbiS2Ipa(t) = cmds[0] else {
            panic!("{count} x {pgsize:#x}: not a TLBI_S2_IPA: {cmds:x?}")
        };
        assert_ne!(t.tg, 0, "not a range TLBI");
        assert!(t.ipa <= 0x4000_0000 && t.ipa + t.span() >= 0x4000_0000 + pgsize * count);
        assert!(is_sync(&cmds[1]));
    }
    let c = h.w.backend().driver_counters();
    assert_eq!(c.tlbi_s2_ipa, 0);
    // The hypercall-visible counters are the driver's.
    assert_eq!(
        h.ok(Function::Stat, &[Stat::SmmuCommands.value()])[1],
        c.commands
    );
    assert_eq!(h.ok(Function::Stat, &[Stat::SmmuSyncs.value()])[1], c.syncs);
    assert_ne!(
        h.ok(Function::Version, &[])[1] & (abi::FEAT_RANGE_INVALIDATION << 32),
        0,
        "RIL advertised"
    );
}

#[test]
fn unmap_without_ril_is_per_granule_then_vmall() {
    let h = boot(false);
    let count_tlbi = |cmds: &[CommandKind]| {
        cmds.iter()
            .filter(|c| matches!(c, CommandKind::TlbiS2Ipa(t) if t.tg == 0))
            .count()
    };
    // A 2 MiB block takes one non-range TLBI at its base. Architecturally (and in QEMU) that removes the whole
    // cached block; warden-smmu's fake caches blocks per 4 KiB page and invalidates only the page addressed,
    // so the device touches only the block's first page here.
    let cmds = unmap_commands_at(&h, M2, 1, h.ram + (16 << 20), &[0]);
    assert!(
        matches!(cmds[..], [CommandKind::TlbiS2Ipa(t), CommandKind::Sync(_)] if t.tg == 0),
        "{cmds:x?}"
    );
    // 512 4 KiB pages at 2 MiB-aligned IOVA and PA are one block too.
    let cmds = unmap_commands_at(&h, K4, 512, h.ram + (16 << 20), &[0]);
    assert_eq!(count_tlbi(&cmds), 1);
    for (pgsize, count, tlbis) in [(K4, 1, 1), (K4, 16, 16)] {
        let cmds = unmap_commands(&h, pgsize, count);
        assert_eq!(count_tlbi(&cmds), tlbis, "{count} x {pgsize:#x}");
        assert_eq!(cmds.len(), tlbis + 1, "{count} x {pgsize:#x}: one sync");
        assert!(is_sync(cmds.last().unwrap()));
    }
    // 4 KiB leaves (the PA is not 2 MiB aligned): 512 of them are still one TLBI each ...
    let pa = h.ram + (16 << 20) + K4;
    let cmds = unmap_commands_at(&h, K4, 512, pa, &[0, 511 * K4]);
    assert_eq!((count_tlbi(&cmds), cmds.len()), (512, 513));
    // ... but past the threshold (512 commands) it is one VMID-wide invalidation.
    let cmds = unmap_commands_at(&h, K4, 1024, pa, &[0, 512 * K4, 1023 * K4]);
    assert!(
        matches!(
            cmds[..],
            [CommandKind::TlbiS12Vmall { .. }, CommandKind::Sync(_)]
        ),
        "{cmds:x?}"
    );
    assert_eq!(
        h.ok(Function::Version, &[])[1] & (abi::FEAT_RANGE_INVALIDATION << 32),
        0
    );
}

#[test]
fn attach_issues_the_ste_sequence() {
    let h = boot(true);
    let d = h.paging_domain();
    let sid = 0x42u32;
    h.take_cmds();
    let ste = |s: u32| CommandKind::CfgiSte {
        sid: StreamId(s),
        leaf: true,
    };
    // Identity (S2, VMID 1) -> paging (S2, other VMID and table): two used dwords differ, so through an
    // intermediate ABORT: three CFGI_STE + sync batches.
    h.ok(Function::Attach, &[u64::from(sid), d]);
    let cmds = h.take_cmds();
    assert_eq!(cmds.len(), 6, "{cmds:x?}");
    for pair in cmds.chunks(2) {
        assert_eq!(pair[0], ste(sid));
        assert!(is_sync(&pair[1]));
    }
    // Re-attaching to the same domain does nothing.
    h.ok(Function::Attach, &[u64::from(sid), d]);
    assert!(h.take_cmds().is_empty());
    // The STE in memory is the domain's.
    let w = &h.w;
    let ste_now = w.backend().with_smmu(|s| s.ste(StreamId(sid)).unwrap());
    assert_eq!(ste_now.s2_config().unwrap().vmid, Vmid(2));

    // Blocked: stage 2 through the empty table, and the DMA is reported.
    let b = h.ok(Function::DomainAlloc, &[DomainKind::Blocked.value()])[1];
    h.ok(Function::Attach, &[u64::from(sid), b]);
    let cmds = h.take_cmds();
    assert!(
        cmds.chunks(2).all(|p| p[0] == ste(sid) && is_sync(&p[1])),
        "{cmds:x?}"
    );
    assert_eq!(
        w.backend().with_smmu(|s| s.ste(StreamId(sid)).unwrap()),
        w.backend().blocked_ste()
    );
    assert_eq!(
        h.translate(sid, h.ram + CARVEOUT_SIZE, true),
        Translation::Fault(event_id::F_TRANSLATION)
    );
    let r = h.call(Function::ReadEvent, &[]);
    assert_eq!(
        (r[0], r[1], r[2] & 0xffff_ffff),
        (1, h.ram + CARVEOUT_SIZE, u64::from(sid))
    );
    h.ok(Function::Detach, &[u64::from(sid)]);
    assert_eq!(
        h.translate(sid, h.ram + CARVEOUT_SIZE, true),
        Translation::Ok(h.ram + CARVEOUT_SIZE)
    );
}

/// Donation and reclaim reach the host stage-2 operations. (Successful donation hands the pages to the
/// page-table pool, which writes them: this harness's h.ram is synthetic, so dispatch's own end-to-end tests,
/// which back h.ram with host memory, cover that path.)
#[test]
fn donate_reaches_host_stage2_and_rolls_back() {
    let h = boot(true);
    let page = h.ram + (32 << 20);
    assert_eq!(h.translate(3, page, true), Translation::Ok(page));
    h.w.backend()
        .host()
        .fail
        .store(true, core::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        h.call(Function::Donate, &[page, 2])[0],
        Error::HwError.to_reg()
    );
    assert_eq!(h.w.backend().host().calls(), [(false, page, 2 * K4)]);
    // Nothing changed: still host memory, still mapped for devices, not donated.
    assert_eq!(h.translate(3, page + K4, true), Translation::Ok(page + K4));
    assert_eq!(h.ok(Function::Stat, &[Stat::DonatedPages.value()])[1], 0);
    assert_eq!(
        h.call(Function::Reclaim, &[page, 2])[0],
        Error::NotDonated.to_reg()
    );
    assert_eq!(h.w.backend().host().calls().len(), 1);
}

#[test]
fn smmu_failures_become_errors() {
    let h = boot(true);
    let d = h.paging_domain();
    h.ok(Function::MapPages, &[d, 0, h.ram + (4 << 20), K4, 1, RW]);
    h.w.backend()
        .with_smmu(|s| s.regs_mut().set_sync_stall(true));
    assert_eq!(
        h.call(Function::UnmapPages, &[d, 0, K4, 1])[0],
        Error::Timeout.to_reg()
    );
    // The page stays pinned (counted) after a failed invalidation.
    assert_ne!(h.w.ownership().mapped_pages(), 0);
    h.w.backend()
        .with_smmu(|s| s.regs_mut().set_sync_stall(false));

    // A global error shows up as a GERROR record, then normal operation resumes.
    let h = boot(true);
    h.w.backend()
        .with_smmu(|s| s.regs_mut().poke(GERROR, 1 << 2));
    let r = h.call(Function::ReadEvent, &[]);
    assert_eq!(r[0], 1);
    assert_eq!(
        (r[2] >> abi::EVENT_REASON_SHIFT) & 0xff,
        abi::EVENT_REASON_GERROR
    );
    assert_eq!(r[1], 1 << 2);
    assert_eq!(h.call(Function::ReadEvent, &[])[0], 0);
}

#[test]
fn stream_ids_from_the_qemu_dtb() {
    let p = warden_dt::parse(DTB).unwrap();
    let smmu = &p.smmus[0];
    let sids = stream_ids(&p, smmu, 16);
    assert_eq!(
        sids,
        [SidRange {
            base: 0,
            count: 0x1_0000
        }]
    );
    // The whole map: 256 level-2 tables of 16 KiB.
    assert_eq!(stream_table_bytes(&sids, Some(8)), 4 << 20);
    assert_eq!(stream_table_bytes(&sids, None), 0);
    // Clipped to a smaller stream table.
    assert_eq!(
        stream_ids(&p, smmu, 8),
        [SidRange {
            base: 0,
            count: 0x100
        }]
    );
    assert_eq!(
        msi_doorbells(&p),
        [PhysRange {
            base: ITS_FRAME,
            size: 0x1_0000
        }]
    );
}

#[test]
fn stream_ids_merge_and_filter() {
    let mut p = warden_dt::parse(DTB).unwrap();
    let smmu = p.smmus[0].clone();
    let phandle = smmu.phandle.unwrap();
    let entry = p.pci_hosts[0].iommu_map[0];
    p.pci_hosts[0].iommu_map = vec![
        warden_dt::IommuMapEntry {
            sid_base: 0x500,
            length: 0x10,
            ..entry
        },
        warden_dt::IommuMapEntry {
            sid_base: 0x100,
            length: 0x10,
            ..entry
        },
        warden_dt::IommuMapEntry {
            sid_base: 0x108,
            length: 0x10,
            ..entry
        },
        warden_dt::IommuMapEntry {
            sid_base: 0x118,
            length: 0x8,
            ..entry
        },
        warden_dt::IommuMapEntry {
            sid_base: 0x900,
            length: 0x8,
            iommu: Phandle(phandle.0 + 1000),
            ..entry
        },
    ];
    p.iommu_clients.push(warden_dt::IommuClient {
        path: "/dma@0".into(),
        iommus: vec![warden_dt::IommuSpecifier {
            iommu: phandle,
            ids: vec![0x7000],
        }],
    });
    assert_eq!(
        stream_ids(&p, &smmu, 16),
        [
            SidRange {
                base: 0x100,
                count: 0x20
            },
            SidRange {
                base: 0x500,
                count: 0x10
            },
            SidRange {
                base: 0x7000,
                count: 1
            },
        ]
    );
    // 0x100..0x120 and 0x500..0x510 share no leaf with 256 STEs each; three tables.
    assert_eq!(
        stream_table_bytes(&stream_ids(&p, &smmu, 16), Some(8)),
        3 << 14
    );
}

#[test]
fn boot_refuses_past_the_strtab_budget() {
    let r = boot_with(true, 0x1_0000, 1 << 20);
    assert!(
        matches!(r, Err(BootError::StreamTableBudget { need, budget }) if need == 4 << 20 && budget == 1 << 20),
        "{:?}",
        r.err()
    );
}

#[test]
fn translation_helpers() {
    assert_eq!(LeafSize::at_level(3), LeafSize::Page4K);
    assert_eq!(LeafSize::at_level(2), LeafSize::Block2M);
    assert_eq!(LeafSize::at_level(1), LeafSize::Block1G);
    assert_eq!(LeafSize::at_level(0), LeafSize::Mixed);
    assert_eq!(
        hw_error(warden_smmu::Error::Timeout(warden_smmu::Wait::CmdSync)),
        HwError::Timeout
    );
    assert_eq!(
        hw_error(warden_smmu::Error::OutOfMemory(4096)),
        HwError::Failed
    );
    assert_eq!(
        hw_error(warden_smmu::Error::InvalidVmid(300)),
        HwError::Failed
    );
    let cfg = domain::Geometry::DOMAIN.s2_config(Vmid(5), 0x4123_4000, 4);
    assert_eq!((cfg.t0sz, cfg.sl0, cfg.ps), (25, 1, 4));
    assert_eq!(
        Ste::stage2(&cfg),
        Ste::stage2(&S2Config::new_4k(Vmid(5), 0x4123_4000, 39, 1, 4))
    );
    // A read fault of a privileged instruction fetch, and a configuration error without an address.
    let raw = warden_smmu::Event::encode_fault(
        event_id::F_PERMISSION,
        StreamId(9),
        0x7000,
        0x7000,
        true,
        2,
    );
    let rec = fault_record(&Event::decode(raw));
    assert_eq!(rec.sid, StreamId(9));
    assert_eq!(rec.iova, 0x7000);
    assert_eq!(u64::from(rec.reason), abi::EVENT_REASON_PERMISSION);
    assert_eq!(
        u64::from(rec.flags),
        abi::EVENT_FLAG_IOVA_VALID | abi::EVENT_FLAG_STAGE2
    );
    let raw = [
        u64::from(event_id::C_BAD_STREAMID) | (0x300u64 << 32),
        0,
        0,
        0,
    ];
    let rec = fault_record(&Event::decode(raw));
    assert_eq!((rec.sid, rec.iova, rec.flags), (StreamId(0x300), 0, 0));
    assert_eq!(u64::from(rec.reason), abi::EVENT_REASON_BAD_STREAMID);
}

// The fake SMMU's failure modes seen through the whole hyp (dispatcher + backend + driver): each is reported to
// the host (an error code or a READ_EVENT record) and the hyp recovers (later calls work, state is consistent).
// The driver-level tests of the same modes are in warden-smmu (`driver/tests.rs`).

const EDU_SID: u32 = 0x18;

fn stat_of(h: &Harness, s: Stat) -> u64 {
    h.ok(Function::Stat, &[s.value()])[1]
}

/// CMD_SYNC never completes: the unmap answers `TIMEOUT` and its page stays pinned (docs/abi.md: never
/// donatable, as the hyp could not confirm that no device can reach it); once syncs complete again, new calls
/// work and freeing the domain releases everything else.
#[test]
fn sync_timeout_is_reported_and_recovered_by_the_hyp() {
    let h = boot(true);
    let d = h.paging_domain();
    let pa = h.ram + (4 << 20);
    h.ok(Function::MapPages, &[d, 0, pa, K4, 2, RW]);
    h.ok(Function::Attach, &[u64::from(EDU_SID), d]);
    h.w.backend()
        .with_smmu(|s| s.regs_mut().set_sync_stall(true));
    assert_eq!(
        h.call(Function::UnmapPages, &[d, 0, K4, 1])[0],
        Error::Timeout.to_reg()
    );
    assert_eq!(
        stat_of(&h, Stat::MappedPages),
        2,
        "pinned until invalidated"
    );
    assert_eq!(h.call(Function::Donate, &[pa, 1])[0], Error::Busy.to_reg());
    h.w.backend()
        .with_smmu(|s| s.regs_mut().set_sync_stall(false));
    // Recovered: the rest of the domain still translates, the cleared page does not, new maps work.
    assert_eq!(
        h.translate(EDU_SID, 0x1008, false),
        Translation::Ok(pa + 0x1008)
    );
    h.ok(Function::UnmapPages, &[d, 0x1000, K4, 1]);
    assert_eq!(
        h.translate(EDU_SID, 0x1008, false),
        Translation::Fault(event_id::F_TRANSLATION)
    );
    h.ok(Function::Detach, &[u64::from(EDU_SID)]);
    h.ok(Function::DomainFree, &[d]);
    assert_eq!(stat_of(&h, Stat::DomainsInUse), 0);
    // Only the page whose invalidation timed out stays pinned, for good (the safe direction).
    assert_eq!(stat_of(&h, Stat::MappedPages), 1);
    assert_eq!(h.call(Function::Donate, &[pa, 1])[0], Error::Busy.to_reg());
    assert_eq!(h.w.backend().with_smmu(|s| s.counters().timeouts), 1);
    let d = h.paging_domain();
    h.ok(Function::MapPages, &[d, 0, pa, K4, 1, RW]);
    h.ok(Function::UnmapPages, &[d, 0, K4, 1]);
    h.ok(Function::DomainFree, &[d]);
}

/// The SMMU stops consuming commands: the queue fills; every call that needs the SMMU answers `TIMEOUT`
/// instead of waiting forever, calls that do not need it still work, and once the SMMU consumes again the queued
/// commands complete and the StreamID can be attached for real.
#[test]
fn full_command_queue_is_reported_and_recovered_by_the_hyp() {
    let h = boot_driver(
        true,
        SIDS,
        4 << 20,
        warden_smmu::Config {
            cmdq_log2: 3,
            ..warden_smmu::Config::default()
        },
    )
    .unwrap();
    let d = h.paging_domain();
    let pa = h.ram + (4 << 20);
    h.ok(Function::MapPages, &[d, 0, pa, K4, 1, RW]);
    h.w.backend()
        .with_smmu(|s| s.regs_mut().set_consume_budget(Some(0)));
    let mut timeouts = 0;
    for sid in 0x100..0x108u64 {
        let r = h.call(Function::Attach, &[sid, d]);
        assert_eq!(r[0], Error::Timeout.to_reg(), "SID {sid:#x}");
        timeouts += 1;
    }
    // The queue is full now (PROD and CONS: same index, other wrap bit), and every call timed out.
    let (prod, cons) = h.w.backend().with_smmu(|s| {
        let r = s.regs_mut();
        (
            r.read32(warden_smmu::regs::CMDQ_PROD),
            r.read32(warden_smmu::regs::CMDQ_CONS),
        )
    });
    assert_eq!((prod ^ cons) & 0xf, 1 << 3, "PROD {prod:#x} CONS {cons:#x}");
    let c = h.w.backend().with_smmu(|s| s.counters());
    assert_eq!(c.timeouts, timeouts);
    // Calls that do not touch the SMMU still answer.
    assert_eq!(
        h.call(Function::IovaToPhys, &[d, 0x10])[..2],
        [0, pa + 0x10]
    );
    h.w.backend()
        .with_smmu(|s| s.regs_mut().set_consume_budget(None));
    // Recovered: attach works and the device translates through the domain.
    h.ok(Function::Attach, &[u64::from(EDU_SID), d]);
    assert_eq!(h.translate(EDU_SID, 0x10, true), Translation::Ok(pa + 0x10));
    h.ok(Function::Detach, &[u64::from(EDU_SID)]);
    assert_eq!(
        h.translate(EDU_SID, h.ram + CARVEOUT_SIZE, true),
        Translation::Ok(h.ram + CARVEOUT_SIZE)
    );
}

/// The SMMU rejects a queued command (GERROR.CMDQ_ERR, as when a command in memory is corrupt): the call that
/// waits on that batch answers `HW_ERROR`, the driver skips the command and acknowledges the error, and later
/// calls work.
#[test]
fn cmdq_error_is_reported_and_recovered_by_the_hyp() {
    let h = boot(true);
    let d = h.paging_domain();
    let pa = h.ram + (4 << 20);
    h.ok(Function::MapPages, &[d, 0, pa, K4, 1, RW]);
    // Queue an attach while the SMMU is stopped, then corrupt the first unconsumed command.
    h.w.backend()
        .with_smmu(|s| s.regs_mut().set_consume_budget(Some(0)));
    assert_eq!(
        h.call(Function::Attach, &[u64::from(EDU_SID), d])[0],
        Error::Timeout.to_reg()
    );
    let mut mem = h.mem.clone();
    h.w.backend().with_smmu(|s| {
        let base = s.regs_mut().read64(warden_smmu::regs::CMDQ_BASE);
        let log2 = (base & 0x1f) as u32;
        let cons = s.regs_mut().read32(warden_smmu::regs::CMDQ_CONS);
        let slot = (base & 0x000f_ffff_ffff_ffe0) + u64::from(cons & ((1 << log2) - 1)) * 16;
        mem.write64(slot, 0xff);
        s.regs_mut().set_consume_budget(None);
    });
    let r = h.call(Function::Attach, &[u64::from(EDU_SID), d]);
    assert_eq!(r[0], Error::HwError.to_reg());
    let c = h.w.backend().with_smmu(|s| s.counters());
    assert_eq!(c.cmdq_errors, 1);
    // Acknowledged (nothing left for READ_EVENT), and the next calls work.
    while h.call(Function::ReadEvent, &[])[0] == 1 {}
    h.ok(Function::Attach, &[u64::from(EDU_SID), d]);
    assert_eq!(
        h.translate(EDU_SID, 0x10, false),
        Translation::Ok(pa + 0x10)
    );
    h.ok(Function::Detach, &[u64::from(EDU_SID)]);
    h.ok(Function::UnmapPages, &[d, 0, K4, 1]);
    h.ok(Function::DomainFree, &[d]);
    assert_eq!(h.w.backend().with_smmu(|s| s.counters().cmdq_errors), 1);
}

/// A device faults faster than the host reads events: the SMMU's event queue overflows. The host gets the
/// records that fit, the hyp acknowledges the overflow (new faults are recorded again), counts it in the
/// driver's counters and reports it: `READ_EVENT`'s x3 and `STAT EVENTS_LOST` are the hyp ring's losses plus
/// one per SMMU queue overflow (the SMMU does not say how many records an overflow lost).
#[test]
fn event_queue_overflow_is_acknowledged_and_recovered_by_the_hyp() {
    let h = boot_with_evtq(3);
    let b = h.ok(Function::DomainAlloc, &[DomainKind::Blocked.value()])[1];
    h.ok(Function::Attach, &[u64::from(EDU_SID), b]);
    for i in 0..20u64 {
        assert_eq!(
            h.translate(EDU_SID, i << 12, true),
            Translation::Fault(event_id::F_TRANSLATION)
        );
    }
    assert_eq!(h.w.backend().with_smmu(|s| s.regs_mut().events_lost()), 12);
    let mut iovas = Vec::new();
    let lost = loop {
        let r = h.call(Function::ReadEvent, &[]);
        if r[0] == 0 {
            break r[3];
        }
        iovas.push(r[1]);
    };
    // The eight that fit, in order; the hyp's own ring (16) lost none; x3 counts the SMMU's one overflow (the
    // SMMU, like real hardware, only says that it lost records, not how many: 12 here).
    assert_eq!(iovas, (0..8u64).map(|i| i << 12).collect::<Vec<_>>());
    assert_eq!(lost, 1);
    assert_eq!(h.call(Function::Stat, &[Stat::EventsLost.value()])[1], 1);
    assert_eq!(h.w.backend().with_smmu(|s| s.counters().evtq_overflows), 1);
    // Recovered: new faults reach the host again.
    assert_eq!(
        h.translate(EDU_SID, 0x77000, false),
        Translation::Fault(event_id::F_TRANSLATION)
    );
    let r = h.call(Function::ReadEvent, &[]);
    assert_eq!(
        (r[0], r[1], r[2] & 0xffff_ffff),
        (1, 0x77000, u64::from(EDU_SID))
    );
    assert_eq!(h.call(Function::ReadEvent, &[])[0], 0);
    h.ok(Function::Detach, &[u64::from(EDU_SID)]);
    h.ok(Function::DomainFree, &[b]);
}

/// Every fault record is delivered by READ_EVENT or counted in its x3 / `STAT EVENTS_LOST`: each READ_EVENT
/// moves from the SMMU's queue into the hyp's ring (16 records here) only what the ring has room for, so the
/// rest waits in the queue and nothing is lost while the queue holds it; the queue's own overflows are counted
/// (above: [`event_queue_overflow_is_acknowledged_and_recovered_by_the_hyp`], and
/// [`records_wait_in_the_smmu_queue_while_the_ring_is_full`]). There is no third buffer between them.
#[test]
fn every_event_record_is_delivered_or_counted_lost() {
    let h = boot(true);
    let b = h.ok(Function::DomainAlloc, &[DomainKind::Blocked.value()])[1];
    h.ok(Function::Attach, &[u64::from(EDU_SID), b]);
    const FAULTS: u64 = 100;
    for i in 0..FAULTS {
        assert_eq!(
            h.translate(EDU_SID, i << 12, true),
            Translation::Fault(event_id::F_TRANSLATION)
        );
    }
    // The SMMU lost nothing (its queue is large).
    assert_eq!(h.w.backend().with_smmu(|s| s.regs_mut().events_lost()), 0);
    let mut iovas = Vec::new();
    let mut lost_seen = Vec::new();
    loop {
        let r = h.call(Function::ReadEvent, &[]);
        lost_seen.push(r[3]);
        if r[0] == 0 {
            break;
        }
        iovas.push(r[1]);
    }
    let lost = *lost_seen.last().unwrap();
    // First READ_EVENT: 16 moved (the ring's room), one popped; each later one moves the one record that
    // fits. All delivered, in order: nothing vanishes.
    assert_eq!(iovas, (0..FAULTS).map(|i| i << 12).collect::<Vec<_>>());
    assert_eq!(lost, 0);
    assert!(lost_seen.iter().all(|&l| l == 0), "{lost_seen:?}");
    assert_eq!(h.call(Function::Stat, &[Stat::EventsLost.value()])[1], 0);
    assert_eq!(h.w.backend().with_smmu(|s| s.counters().evtq_overflows), 0);
    h.ok(Function::Detach, &[u64::from(EDU_SID)]);
    h.ok(Function::DomainFree, &[b]);
}

/// The hyp's ring is full (16 records, one popped) when a device faults again: READ_EVENT leaves the new
/// records in the SMMU's queue (16 entries) instead of moving and dropping them; the faults past the queue's
/// size are lost by the SMMU, which counts as one overflow. So the host gets every record but those the
/// queue itself could not take, and x3 says 1.
#[test]
fn records_wait_in_the_smmu_queue_while_the_ring_is_full() {
    let h = boot_with_evtq(4);
    let b = h.ok(Function::DomainAlloc, &[DomainKind::Blocked.value()])[1];
    h.ok(Function::Attach, &[u64::from(EDU_SID), b]);
    let fault = |i: u64| {
        assert_eq!(
            h.translate(EDU_SID, i << 12, true),
            Translation::Fault(event_id::F_TRANSLATION)
        );
    };
    let smmu_lost = || h.w.backend().with_smmu(|s| s.regs_mut().events_lost());
    (0..16).for_each(fault);
    // 16 moved into the ring (its room), the first popped: 15 in the ring, the queue empty.
    let r = h.call(Function::ReadEvent, &[]);
    assert_eq!((r[0], r[1], r[3]), (1, 0, 0));
    // 20 more faults: the queue takes 16, the SMMU loses 4.
    (16..36).for_each(fault);
    assert_eq!(smmu_lost(), 4);
    let mut iovas = vec![r[1]];
    let lost = loop {
        let r = h.call(Function::ReadEvent, &[]);
        if r[0] == 0 {
            break r[3];
        }
        // Nothing dropped on the way: the only loss is the queue's overflow, seen when the ring had room.
        assert!(r[3] <= 1, "x3 {}", r[3]);
        iovas.push(r[1]);
    };
    assert_eq!(iovas, (0..32u64).map(|i| i << 12).collect::<Vec<_>>());
    assert_eq!(lost, 1);
    assert_eq!(h.call(Function::Stat, &[Stat::EventsLost.value()])[1], 1);
    assert_eq!(h.w.backend().with_smmu(|s| s.counters().evtq_overflows), 1);
    h.ok(Function::Detach, &[u64::from(EDU_SID)]);
    h.ok(Function::DomainFree, &[b]);
}

/// Unmaps parts of three 2 MiB blocks (a range across the boundary of the first two; one page inside the
/// third) while a device has them cached, on a fake SMMU with `IDR3.BBML` = `bbml`: returns the TLB conflicts the fake saw
/// and the `CMD_SYNC`s each unmap issued, after checking that what stays mapped still translates.
fn split_blocks_under_dma(bbml: u32) -> (u64, [usize; 2]) {
    let h = Harness::boot(&Options {
        bbml,
        ..Options::default()
    })
    .unwrap();
    assert_eq!(h.w.backend().features().bbml, bbml);
    let d = h.paging_domain();
    let sid = 16;
    let iova = 0x4000_0000;
    let pa = h.ram + (16 << 20);
    h.ok(Function::MapPages, &[d, iova, pa, M2, 3, RW]);
    h.ok(Function::Attach, &[sid, d]);
    let probes = [0, M2 - K4, M2, M2 + 0x10_0000, 2 * M2, 2 * M2 + 0x1f_f000];
    let dma = |off: u64| h.translate(sid as u32, iova + off, true);
    for &off in &probes {
        assert_eq!(dma(off), Translation::Ok(pa + off));
    }
    let mut syncs = [0; 2];
    for (i, (off, pages)) in [(M2 - K4, 2), (2 * M2 + 0x8000, 1)].into_iter().enumerate() {
        h.take_cmds();
        h.ok(Function::UnmapPages, &[d, iova + off, K4, pages]);
        syncs[i] = h.take_cmds().iter().filter(|c| is_sync(c)).count();
        for p in 0..pages {
            assert_eq!(
                dma(off + p * K4),
                Translation::Fault(event_id::F_TRANSLATION)
            );
        }
        // The rest of the blocks still translates, to the same pages.
        for &keep in &[
            0,
            M2 - 2 * K4,
            M2 + K4,
            M2 + 0x10_0000,
            2 * M2,
            2 * M2 + 0x1f_f000,
        ] {
            assert_eq!(dma(keep), Translation::Ok(pa + keep), "+{keep:#x}");
        }
    }
    let conflicts = h.w.backend().with_smmu(|s| s.regs_mut().tlb_conflicts());
    (conflicts, syncs)
}

/// Without BBML2 a cut block goes invalid and leaves the TLB (its own TLBI + CMD_SYNC) before the table that
/// keeps the rest of it is written: the fake SMMU, modelling BBML 0, sees no TLB conflict.
#[test]
fn block_splits_break_before_make_without_bbml2() {
    for bbml in [0, 1] {
        let (conflicts, syncs) = split_blocks_under_dma(bbml);
        assert_eq!(conflicts, 0, "BBML {bbml}: TLB conflict");
        // One break per cut block (two, then one), then the unmap's own invalidation.
        assert_eq!(syncs, [3, 2], "BBML {bbml}");
    }
}

/// With BBML2 the blocks are split in place, as before: one invalidation per unmap.
#[test]
fn block_splits_in_place_with_bbml2() {
    let (conflicts, syncs) = split_blocks_under_dma(2);
    assert_eq!(conflicts, 0);
    assert_eq!(syncs, [1, 1]);
}

static_assertions::assert_impl_all!(Warden<crate::test_support::FakeBackend>: Sync, Send);

/// Four CPUs map and unmap in their own domains through the shipped backend (each unmap is one invalidation
/// batch, issued and waited for through the lock-free shared command queue), while a fifth reads STAT: every call
/// succeeds, every unmap's TLBI reaches the SMMU before its sync, and the devices see exactly the final mappings.
#[test]
fn cpus_invalidate_concurrently_through_one_queue() {
    const ROUNDS: u64 = 100;
    let h = boot(true);
    let domains: Vec<u64> = (0..4).map(|_| h.paging_domain()).collect();
    h.take_cmds();
    let before = h.w.backend().driver_counters();
    std::thread::scope(|s| {
        for (t, &d) in domains.iter().enumerate() {
            let h = &h;
            s.spawn(move || {
                let pa = h.ram + (8 << 20) + (t as u64) * (1 << 20);
                for i in 0..ROUNDS {
                    let iova = (i % 16) * K4;
                    h.ok(Function::MapPages, &[d, iova, pa + iova, K4, 1, RW]);
                    if i + 16 < ROUNDS {
                        h.ok(Function::UnmapPages, &[d, iova, K4, 1]);
                    }
                }
            });
        }
        s.spawn(|| {
            for _ in 0..ROUNDS {
                h.res(Function::Stat, &[Stat::SmmuSyncs.value()]).unwrap();
            }
        });
    });
    let after = h.w.backend().driver_counters();
    let unmaps = 4 * (ROUNDS - 16);
    assert_eq!(after.batches - before.batches, unmaps);
    assert_eq!(after.cmdq_errors, 0);
    assert_eq!(after.timeouts, 0);
    let cmds = h.take_cmds();
    assert_eq!(cmds.iter().filter(|c| is_sync(c)).count() as u64, unmaps);
    assert_eq!(
        cmds.len() as u64,
        2 * unmaps,
        "one TLBI and one sync per unmap"
    );
    for (t, &d) in domains.iter().enumerate() {
        let sid = 0x10 + t as u32;
        h.ok(Function::Attach, &[u64::from(sid), d]);
        let pa = h.ram + (8 << 20) + (t as u64) * (1 << 20);
        for page in 0..16 {
            assert_eq!(
                h.translate(sid, page * K4, false),
                Translation::Ok(pa + page * K4)
            );
        }
    }
}

/// The command-queue stats: every invalidation's wait polls `CMDQ_CONS`; a CPU that finds the queue locked
/// counts one wait and its spins.
#[test]
fn cmdq_contention_stats() {
    let h = boot(true);
    let d = h.paging_domain();
    let stat = |s: Stat| h.res(Function::Stat, &[s.value()]).unwrap();
    let polls = stat(Stat::SyncPolls);
    h.ok(Function::MapPages, &[d, 0, h.ram + (4 << 20), K4, 1, RW]);
    h.ok(Function::UnmapPages, &[d, 0, K4, 1]);
    assert!(stat(Stat::SyncPolls) > polls, "the unmap's wait polled");
    assert_eq!(stat(Stat::CmdqLockWaits), 0);
    assert_eq!(stat(Stat::CmdqLockSpins), 0);
    let started = core::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        h.w.backend().with_smmu(|_| {
            s.spawn(|| {
                started.store(true, core::sync::atomic::Ordering::Release);
                h.ok(Function::MapPages, &[d, 0, h.ram + (4 << 20), K4, 1, RW]);
                h.ok(Function::UnmapPages, &[d, 0, K4, 1]);
            });
            while !started.load(core::sync::atomic::Ordering::Acquire) {
                std::thread::yield_now();
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        });
    });
    assert_eq!(stat(Stat::CmdqLockWaits), 1);
    assert!(stat(Stat::CmdqLockSpins) > 0);
}
