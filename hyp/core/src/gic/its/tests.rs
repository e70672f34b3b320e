use super::registers::{CBASER_PA_MASK, CBASER_SIZE_MASK};
use super::*;
use crate::gic::RegAccess;
use crate::gic::rd::{CTLR_ENABLE_LPIS, GICR_CTLR, GICR_PENDBASER, GICR_PROPBASER};
use crate::gic::tests_support::{FakeGic, ownership};
use crate::ownership::{MemKind, OwnershipError, PageState};

const ITS: u64 = 0x0808_0000;
const RDS: [u64; 2] = [0x080a_0000, 0x080c_0000];
/// QEMU's ITS: physical LPIs, 8-byte ITT entries, 16 EventID bits, 16 DeviceID bits, processor-number
/// targets, no HCC, plus the GICv4 `Virtual` bit the host must not see.
const TYPER: u64 = 1 | (1 << 1) | (7 << 4) | (15 << 8) | (15 << 13);
const DEV_TABLE: u64 = 0x4080_0000;
const COLL_TABLE: u64 = 0x4090_0000;
const QUEUE: u64 = 0x40a0_0000;
const ITT: u64 = 0x40b0_0000;
const CARVEOUT: u64 = 0x4000_0000;

fn count(own: &Ownership, pa: u64) -> u32 {
    match own.state(pa) {
        PageState::Host { count, .. } => count,
        s => panic!("{s:?}"),
    }
}

struct Its<'a> {
    gic: FakeGic,
    e: ItsEmulator<'a>,
    /// The redistributors (`RDS`), LPIs disabled until [`Its::enable_lpis`].
    rd: RdEmulator<'a>,
}

impl<'a> Its<'a> {
    /// The ITS (`GITS_TYPER` = `typer`) of a GIC with the redistributors `RDS`.
    fn new(own: &'a Ownership, gic: FakeGic, typer: u64) -> Self {
        gic.set64(ITS + GITS_TYPER, typer);
        gic.set32(ITS + GITS_CTLR, CTLR_QUIESCENT);
        let e = ItsEmulator::new(ITS, &gic, own, RDS.to_vec(), 16);
        let rd = RdEmulator::new(own, RDS.to_vec(), false, 16);
        Self { gic, e, rd }
    }
    /// Linux's `its_cpu_init_lpis` on redistributor `i`: tables in host RAM, then `EnableLPIs`.
    fn enable_lpis(&self, i: usize) {
        let rd = RDS[i];
        let mut out = Vec::new();
        for (off, size, value) in [
            (GICR_PROPBASER, 8, (0x4030_0000 + 0x1_0000 * i as u64) | 15),
            (GICR_PENDBASER, 8, 0x4040_0000 + 0x1_0000 * i as u64),
            (GICR_CTLR, 4, u64::from(CTLR_ENABLE_LPIS)),
        ] {
            self.rd.access(
                &self.gic,
                rd + off,
                RegAccess::Write { off, size, value },
                &mut |r| out.push(r),
            );
        }
        assert!(out.is_empty(), "{out:?}");
        assert!(self.rd.lpis_enabled(i));
    }
    /// Writes a one-page collection table (`GITS_BASER1`) and the 64 KiB queue (`GITS_CBASER`); neither may
    /// be refused.
    #[track_caller]
    fn set_collection_table_and_queue(&self) {
        assert!(
            self.write(
                GITS_BASER0 + 8,
                8,
                BASER_VALID | (BASER_TYPE_COLLECTION << 56) | (7 << 48) | COLL_TABLE
            )
            .is_empty()
        );
        assert!(
            self.write(GITS_CBASER, 8, BASER_VALID | QUEUE | 15)
                .is_empty()
        );
    }
    fn write(&self, off: u64, size: u8, value: u64) -> Vec<GicRefusal> {
        let mut out = Vec::new();
        self.e.access(
            &self.gic,
            &self.gic,
            &self.rd,
            RegAccess::Write { off, size, value },
            &mut |r| out.push(r),
        );
        out
    }
    fn read(&self, off: u64, size: u8) -> u64 {
        self.e.access(
            &self.gic,
            &self.gic,
            &self.rd,
            RegAccess::Read { off, size },
            &mut |_| {},
        )
    }
    /// The host writes `cmds` into its queue at its CWRITER and advances CWRITER.
    fn submit(&self, cmds: &[[u64; 4]]) -> Vec<GicRefusal> {
        let mut off = self.read(GITS_CWRITER, 8);
        for c in cmds {
            self.gic.write_host(QUEUE + off, *c);
            off = (off + CMD_SIZE) % SHADOW_QUEUE_BYTES as u64;
        }
        self.write(GITS_CWRITER, 8, off)
    }
    /// The real ITS consumes everything queued.
    fn consume(&self) {
        let w = self.gic.get64(ITS + GITS_CWRITER);
        self.gic.set64(ITS + GITS_CREADR, w);
    }
}

/// An ITS after Linux's probe: device table (16 pages), collection table (1 page), 64 KiB queue, enabled;
/// both redistributors with LPIs enabled.
fn probed(own: &Ownership) -> Its<'_> {
    let its = probed_lpis_off(own);
    its.enable_lpis(0);
    its.enable_lpis(1);
    its
}

/// [`probed`] before any redistributor has LPIs enabled.
fn probed_lpis_off(own: &Ownership) -> Its<'_> {
    let gic = FakeGic::default();
    gic.set64(ITS + GITS_BASER0, (BASER_TYPE_DEVICE << 56) | (7 << 48));
    gic.set64(
        ITS + GITS_BASER0 + 8,
        (BASER_TYPE_COLLECTION << 56) | (7 << 48),
    );
    let its = Its::new(own, gic, TYPER);
    assert!(
        its.write(
            GITS_BASER0,
            8,
            BASER_VALID | (BASER_TYPE_DEVICE << 56) | (7 << 48) | DEV_TABLE | 15
        )
        .is_empty()
    );
    its.set_collection_table_and_queue();
    assert!(its.write(GITS_CWRITER, 8, 0).is_empty());
    its.write(GITS_CTLR, 4, 1);
    its.gic.set32(ITS + GITS_CTLR, 1);
    its
}

fn mapd(dev: u64, size: u64, itt: u64, valid: bool) -> [u64; 4] {
    [
        u64::from(opcode::MAPD) | dev << 32,
        size,
        itt | u64::from(valid) << 63,
        0,
    ]
}
fn mapc(icid: u64, target: u64) -> [u64; 4] {
    [u64::from(opcode::MAPC), 0, 1 << 63 | target << 16 | icid, 0]
}
fn mapti(dev: u64, event: u64, lpi: u64, icid: u64) -> [u64; 4] {
    [
        u64::from(opcode::MAPTI) | dev << 32,
        event | lpi << 32,
        icid,
        0,
    ]
}
fn sync(target: u64) -> [u64; 4] {
    [u64::from(opcode::SYNC), 0, target << 16, 0]
}

#[test]
fn probe_gives_the_its_hyp_tables_and_shadows_the_queue() {
    let own = ownership();
    let its = probed(&own);
    // The ITS's tables are hyp memory of the host's sizes; the host reads back its own addresses.
    let dev = its.e.table_pa(0).unwrap();
    let real = its.gic.get64(ITS + GITS_BASER0);
    assert_eq!(real & 0xffff_ffff_f000, dev);
    assert_eq!(real & 0xff, 15);
    assert_eq!(dev % 4096, 0);
    assert_ne!(dev, DEV_TABLE);
    assert_eq!(
        its.read(GITS_BASER0, 8),
        BASER_VALID | (BASER_TYPE_DEVICE << 56) | (7 << 48) | DEV_TABLE | 15
    );
    assert_eq!(its.read(GITS_BASER0 + 8, 8) & 0xffff_ffff_f000, COLL_TABLE);
    assert_eq!(
        its.gic.get64(ITS + GITS_BASER0 + 8) & 0xffff_ffff_f000,
        its.e.table_pa(1).unwrap()
    );
    // The host's table pages are not the ITS's: not pinned, donation is the host's business.
    assert_eq!(count(&own, DEV_TABLE), 0);
    assert_eq!(count(&own, COLL_TABLE), 0);
    // The command queue is read by the hyp: pinned.
    assert_eq!(count(&own, QUEUE), 1);
    assert_eq!(count(&own, QUEUE + 0xf000), 1);
    // The real ITS reads the shadow queue, the host reads back its own CBASER.
    let real = its.gic.get64(ITS + GITS_CBASER);
    assert_eq!(real & CBASER_PA_MASK, its.e.shadow_pa());
    assert_eq!(real & (BASER_VALID | CBASER_SIZE_MASK), BASER_VALID | 15);
    assert_eq!(its.read(GITS_CBASER, 8), BASER_VALID | QUEUE | 15);
    // TYPER without the GICv4 bits; the 32-bit halves agree.
    assert_eq!(its.read(GITS_TYPER, 8), TYPER & !2);
    assert_eq!(its.read(GITS_TYPER, 4), (TYPER & !2) & 0xffff_ffff);
    // A command-queue page cannot be donated now.
    assert_eq!(own.donate_range(QUEUE, 1), Err(OwnershipError::Busy(QUEUE)));
}

#[test]
fn valid_commands_are_copied_and_the_real_cwriter_follows() {
    let own = ownership();
    let its = probed(&own);
    let cmds = [
        mapc(0, 1),
        mapd(3, 4, ITT, true),
        mapti(3, 31, 8192, 0),
        sync(1),
    ];
    assert!(its.submit(&cmds).is_empty());
    for (i, c) in cmds.iter().enumerate() {
        assert_eq!(its.e.shadow_command(32 * i as u64), *c);
    }
    assert_eq!(its.gic.get64(ITS + GITS_CWRITER), 128);
    assert_eq!(its.read(GITS_CWRITER, 8), 128);
    // The ITT: 2^5 entries of 8 bytes, pinned.
    assert_eq!(count(&own, ITT), 1);
    assert_eq!(its.e.tracked(), (1, 0));
}

#[test]
fn each_refused_command_becomes_a_sync() {
    let own = ownership();
    let its = probed(&own);
    assert!(its.submit(&[mapd(3, 4, ITT, true)]).is_empty());
    own.donate_range(0x40c0_0000, 1).unwrap();
    let bad = [
        mapd(4, 4, CARVEOUT + 0x1000, true), // ITT in the carve-out
        mapd(4, 4, 0x40c0_0000, true),       // ITT in a donated page
        mapd(4, 4, 0x0905_0000, true),       // ITT in SMMU MMIO
        mapd(4, 4, 0x0809_0000, true),       // ITT in the doorbell frame (not RAM)
        mapd(4, 8, 0x40ff_ff00, true),       // ITT running off the end of RAM
        mapd(0x1_0000, 4, ITT, true),        // DeviceID beyond Devbits
        mapd(8192, 4, ITT, true),            // DeviceID beyond the 16-page device table
        mapd(4, 16, ITT, true),              // 2^17 events > IDbits
        mapti(5, 0, 8192, 0),                // unmapped device
        mapti(3, 32, 8192, 0),               // EventID beyond the ITT
        mapti(3, 0, 100, 0),                 // not an LPI
        mapti(3, 0, 1 << 16, 0),             // beyond the LPI bits
        mapti(3, 0, 8192, 512),              // ICID beyond the collection table
        mapc(0, 2),                          // no third redistributor
        sync(7),                             // nor an eighth
        [u64::from(opcode::MOVALL), 0, 0, 9 << 16],
        [u64::from(opcode::INT) | 9 << 32, 0, 0, 0],
        [0x2a, 0, 0, 0], // VMAPP and friends: not a GICv3 physical command
        [0xff, 1, 2, 3],
    ];
    let refused = its.submit(&bad);
    assert_eq!(refused.len(), bad.len());
    for (i, r) in refused.iter().enumerate() {
        assert!(
            matches!(r, GicRefusal::Command { offset, .. } if *offset == 32 * (i as u64 + 1)),
            "{r:?}"
        );
        assert_eq!(its.e.shadow_command(32 * (i as u64 + 1)), sync(0));
    }
    // Nothing pinned by the refused MAPDs, the known device unchanged.
    assert_eq!(count(&own, CARVEOUT + 0x20_0000), 0);
    assert_eq!(own.state(CARVEOUT + 0x1000), PageState::Hyp);
    assert_eq!(own.state(0x40c0_0000), PageState::Donated);
    assert_eq!(its.e.tracked(), (1, 0));
}

#[test]
fn the_host_cannot_change_a_command_after_cwriter() {
    let own = ownership();
    let its = probed(&own);
    let good = mapd(3, 4, ITT, true);
    assert!(its.submit(&[good]).is_empty());
    // Another CPU rewrites the command in the host queue right after the CWRITER write.
    its.gic.write_host(QUEUE, mapd(3, 4, CARVEOUT, true));
    assert_eq!(its.e.shadow_command(0), good);
    // And writing CWRITER again (same value) does not re-read it.
    assert!(its.write(GITS_CWRITER, 8, 32).is_empty());
    assert_eq!(its.e.shadow_command(0), good);
    assert_eq!(own.state(CARVEOUT), PageState::Hyp);
}

#[test]
fn old_itts_are_released_only_after_the_its_passed_the_command() {
    let own = ownership();
    let its = probed(&own);
    const ITT2: u64 = ITT + 0x1_0000;
    assert!(its.submit(&[mapd(3, 4, ITT, true)]).is_empty());
    its.consume();
    // Remap to another ITT, then unmap.
    assert!(
        its.submit(&[mapd(3, 4, ITT2, true), mapd(3, 0, 0, false)])
            .is_empty()
    );
    assert_eq!(its.e.tracked(), (0, 2));
    // The 16-page queue and two one-page ITTs.
    assert_eq!(its.e.pinned_pages(), 18);
    assert_eq!(count(&own, ITT), 1);
    assert_eq!(count(&own, ITT2), 1);
    // The ITS has read the remap only.
    its.gic.set64(ITS + GITS_CREADR, 64);
    its.read(GITS_CREADR, 8);
    assert_eq!(count(&own, ITT), 0);
    assert_eq!(count(&own, ITT2), 1);
    its.consume();
    assert_eq!(its.read(GITS_CREADR, 8), 96);
    assert_eq!(count(&own, ITT2), 0);
    assert_eq!(its.e.tracked(), (0, 0));
    assert_eq!(its.e.pinned_pages(), 16);
    // Now the old ITT page can be donated.
    own.donate_range(ITT, 1).unwrap();
}

#[test]
fn queue_wraps_around() {
    let own = ownership();
    let its = probed(&own);
    let slots = SHADOW_QUEUE_BYTES as u64 / CMD_SIZE;
    // Fill most of the queue, let the ITS consume it, then a batch that crosses the end.
    let many: Vec<[u64; 4]> = (0..slots - 3).map(|_| sync(1)).collect();
    assert!(its.submit(&many).is_empty());
    its.consume();
    let batch = [
        mapc(1, 1),
        mapd(7, 2, ITT, true),
        mapti(7, 3, 8200, 1),
        sync(0),
        sync(1),
    ];
    assert!(its.submit(&batch).is_empty());
    assert_eq!(its.gic.get64(ITS + GITS_CWRITER), 2 * CMD_SIZE);
    assert_eq!(its.e.shadow_command((slots - 3) * CMD_SIZE), batch[0]);
    assert_eq!(its.e.shadow_command((slots - 1) * CMD_SIZE), batch[2]);
    assert_eq!(its.e.shadow_command(0), batch[3]);
    assert_eq!(its.e.shadow_command(CMD_SIZE), batch[4]);
}

#[test]
fn cwriter_cannot_overrun_the_its() {
    let own = ownership();
    let its = probed(&own);
    let slots = SHADOW_QUEUE_BYTES as u64 / CMD_SIZE;
    // With nothing consumed, at most slots - 1 commands fit.
    let full: Vec<[u64; 4]> = (0..slots - 1).map(|_| sync(0)).collect();
    assert!(its.submit(&full).is_empty());
    let before = its.gic.writes_to(ITS + GITS_CWRITER);
    // One more would overwrite what the ITS has not read.
    assert!(matches!(
        its.submit(&[sync(0)])[..],
        [GicRefusal::Cwriter(_)]
    ));
    assert_eq!(its.gic.writes_to(ITS + GITS_CWRITER), before);
    // Beyond the queue.
    assert!(matches!(
        its.write(GITS_CWRITER, 8, 0x1_0000)[..],
        [GicRefusal::Cwriter(_)]
    ));
}

#[test]
fn table_registers_only_while_disabled_and_only_host_ram() {
    let own = ownership();
    let its = probed(&own);
    let real_baser = its.gic.get64(ITS + GITS_BASER0);
    let host_baser = its.read(GITS_BASER0, 8);
    let real_cbaser = its.gic.get64(ITS + GITS_CBASER);
    // Enabled: every table write is ignored.
    assert_eq!(
        its.write(GITS_BASER0, 8, BASER_VALID | (1 << 56) | CARVEOUT),
        [GicRefusal::InUse("GITS_BASERn")]
    );
    assert_eq!(
        its.write(GITS_CBASER, 8, BASER_VALID | CARVEOUT),
        [GicRefusal::InUse("GITS_CBASER")]
    );
    assert_eq!(its.gic.get64(ITS + GITS_BASER0), real_baser);
    assert_eq!(its.gic.get64(ITS + GITS_CBASER), real_cbaser);
    // Disabled and quiescent: still only host RAM.
    its.write(GITS_CTLR, 4, 0);
    its.gic.set32(ITS + GITS_CTLR, CTLR_QUIESCENT);
    own.donate_range(0x40c0_0000, 16).unwrap();
    for pa in [CARVEOUT, 0x40c0_0000, 0x0905_0000, 0x40ff_8000] {
        let r = its.write(
            GITS_BASER0,
            8,
            BASER_VALID | (1 << 56) | (7 << 48) | pa | 15,
        );
        assert!(
            matches!(r[..], [GicRefusal::NotHostRam { .. }]),
            "{pa:#x}: {r:?}"
        );
        assert_eq!(its.gic.get64(ITS + GITS_BASER0), real_baser);
        assert_eq!(its.read(GITS_BASER0, 8), host_baser);
        let r = its.write(GITS_CBASER, 8, BASER_VALID | pa | 15);
        assert!(
            matches!(r[..], [GicRefusal::NotHostRam { .. }]),
            "{pa:#x}: {r:?}"
        );
        assert_eq!(its.gic.get64(ITS + GITS_CBASER), real_cbaser);
        assert_eq!(its.read(GITS_CBASER, 8), BASER_VALID | QUEUE | 15);
    }
    // A queue larger than the shadow.
    assert!(matches!(
        its.write(GITS_CBASER, 8, BASER_VALID | QUEUE | 16)[..],
        [GicRefusal::Unsupported(..)]
    ));
    // Indirect is RAZ/WI: the table is taken flat.
    assert!(
        its.write(
            GITS_BASER0,
            8,
            BASER_VALID | BASER_INDIRECT | (1 << 56) | (7 << 48) | 0x40d0_0000
        )
        .is_empty()
    );
    assert_eq!(its.read(GITS_BASER0, 8) & BASER_INDIRECT, 0);
    assert_eq!(its.gic.get64(ITS + GITS_BASER0) & BASER_INDIRECT, 0);
    assert_eq!(its.read(GITS_BASER0, 8) & 0xffff_ffff_f000, 0x40d0_0000);
    // A new queue: the old one released, the real CWRITER reset with it.
    assert!(
        its.write(GITS_CBASER, 8, BASER_VALID | 0x40e0_0000 | 15)
            .is_empty()
    );
    assert_eq!(count(&own, QUEUE), 0);
    assert_eq!(count(&own, 0x40e0_0000), 1);
    assert_eq!(its.gic.get64(ITS + GITS_CWRITER), 0);
    assert_eq!(
        own.state(0x40e0_0000),
        PageState::Host {
            kind: MemKind::Ram,
            count: 1
        }
    );
}

#[test]
fn ctlr_passes_enabled_only() {
    let own = ownership();
    let its = probed(&own);
    its.write(GITS_CTLR, 4, 0xffff_fffe);
    assert_eq!(its.gic.get32(ITS + GITS_CTLR), 0);
    its.write(GITS_CTLR, 4, 3);
    assert_eq!(its.gic.get32(ITS + GITS_CTLR), 1);
    // Unknown offsets read zero and ignore writes.
    assert_eq!(its.read(0x400, 4), 0);
    its.write(0x400, 4, 5);
    assert_eq!(its.gic.writes_to(ITS + 0x400), 0);
}

#[test]
fn physical_address_targets() {
    // GITS_TYPER.PTA: targets are RD_base addresses (bits 50:16 of the command), not processor numbers.
    let own = ownership();
    let gic = FakeGic::default();
    gic.set64(
        ITS + GITS_BASER0 + 8,
        (BASER_TYPE_COLLECTION << 56) | (7 << 48),
    );
    let its = Its::new(&own, gic, TYPER | TYPER_PTA);
    its.enable_lpis(0);
    its.enable_lpis(1);
    its.set_collection_table_and_queue();
    let good = mapc(0, RDS[1] >> 16);
    assert!(its.submit(&[good]).is_empty());
    assert_eq!(its.e.shadow_command(0), good);
    // Processor number 1 is not a redistributor address here.
    assert_eq!(its.submit(&[mapc(0, 1)]).len(), 1);
    // The harmless replacement syncs the first redistributor by address.
    assert_eq!(
        its.e.shadow_command(32),
        [u64::from(opcode::SYNC), 0, RDS[0], 0]
    );
}

#[test]
fn targets_need_lpis_enabled() {
    // Linux's order on each CPU: EnableLPIs (its_cpu_init_lpis), then MAPC + INVALL of its collection.
    let own = ownership();
    let its = probed_lpis_off(&own);
    // Before any redistributor has tables, nothing may target one; a refused command becomes a SYNC to
    // the first redistributor (there is no better one).
    let r = its.submit(&[mapc(0, 0), sync(0)]);
    assert!(
        r.iter().all(|r| matches!(
            r,
            GicRefusal::Command {
                why: "target redistributor has LPIs disabled",
                ..
            }
        )),
        "{r:?}"
    );
    assert_eq!(r.len(), 2);
    assert_eq!(its.e.shadow_command(0), sync(0));
    // CPU 1 comes up first: its redistributor takes commands, CPU 0's does not.
    its.enable_lpis(1);
    let invall = |icid: u64| [u64::from(opcode::INVALL), 0, icid, 0];
    assert!(its.submit(&[mapc(1, 1), invall(1), sync(1)]).is_empty());
    let movall = |from: u64, to: u64| [u64::from(opcode::MOVALL), 0, from << 16, to << 16];
    let before = its.read(GITS_CWRITER, 8);
    let refused = [mapc(0, 0), sync(0), movall(1, 0), movall(0, 1)];
    assert_eq!(its.submit(&refused).len(), refused.len());
    for i in 0..refused.len() as u64 {
        // Replaced by a SYNC to the redistributor that has LPIs.
        assert_eq!(its.e.shadow_command(before + 32 * i), sync(1));
    }
    // Unmapping a collection names no target.
    let unmap = [u64::from(opcode::MAPC), 0, 5, 0];
    assert!(its.submit(&[unmap]).is_empty());
    // Then CPU 0 comes up (or back: EnableLPIs is sticky).
    its.enable_lpis(0);
    assert!(its.submit(&[mapc(0, 0), sync(0), movall(1, 0)]).is_empty());
}
