//! The redistributors' RD_base frames (and VLPI frames), emulated (see the [parent module](super)).
//!
//! | register (RD_base offset) | host read | host write |
//! |---|---|---|
//! | `GICR_CTLR` 0x00 | real | `EnableLPIs` only with property and pending tables in host-owned RAM (then both pinned for good: the bit is sticky); the `DPG` bits passed |
//! | `GICR_PROPBASER` 0x70, `GICR_PENDBASER` 0x78 | real | while LPIs are disabled, passed only if the table it names (as sized below) is host-owned RAM now (checked, not pinned: `EnableLPIs` checks again and pins), else ignored and reported; ignored (and reported) once enabled. A 32-bit half is checked as the 64-bit value it makes with the other half |
//! | `GICR_IIDR` 0x04, `GICR_TYPER` 0x08, `GICR_STATUSR` 0x10, `GICR_WAKER` 0x14, `GICR_SYNCR` 0xc0, ID registers | real | `STATUSR`, `WAKER` passed |
//! | `GICR_SETLPIR` 0x40, `GICR_CLRLPIR` 0x48, `GICR_INVLPIR` 0xa0, `GICR_INVALLR` 0xb0 | 0 | passed |
//! | anything else, and the whole VLPI frame | 0 | ignored (VLPI writes reported) |
//!
//! Every write is decided and carried out under the lock of its redistributor ([`RdEmulator`]'s `frames`):
//! the checks read the real registers (`EnableLPIs`, the table bases), and another CPU writing the same
//! frame must not change them between the check and the write that relies on it (a `GICR_PENDBASER`
//! write landing between `EnableLPIs`'s check of the tables and the `GICR_CTLR` write would leave the
//! redistributor using an unchecked table).
//!
//! The property table holds one byte per LPI (2^n − 8192 bytes) and the pending table one bit per INTID
//! (2^n / 8 bytes), n = min(`GICR_PROPBASER.IDbits`, `GICD_TYPER.IDbits`) + 1: what the redistributor may
//! read and write once `EnableLPIs` is set. A `GICR_PENDBASER` write is sized by the `GICR_PROPBASER` then in
//! the register (at least n = 14: 2 KiB), as Linux writes `GICR_PROPBASER` first.
//!
//! The ITS emulation asks [`RdEmulator::lpis_enabled`] before passing a command that names a redistributor
//! (`MAPC`, `MOVALL`, `SYNC`): a redistributor without pinned, checked tables is never an ITS target.

use alloc::vec::Vec;
use spin::Mutex;

use super::{
    FRAME_SIZE, GICR_VLPI_OFFSET, GicRefusal, GicRegs, ID_REGS_START, RegAccess, extract64, merge64,
};
use crate::ownership::Ownership;

/// `GICR_CTLR`.
pub const GICR_CTLR: u64 = 0x00;
/// `GICR_IIDR`.
pub const GICR_IIDR: u64 = 0x04;
/// `GICR_STATUSR`.
pub const GICR_STATUSR: u64 = 0x10;
/// `GICR_WAKER`.
pub const GICR_WAKER: u64 = 0x14;
/// `GICR_SETLPIR` (64-bit).
pub const GICR_SETLPIR: u64 = 0x40;
/// `GICR_CLRLPIR` (64-bit).
pub const GICR_CLRLPIR: u64 = 0x48;
/// `GICR_PROPBASER` (64-bit).
pub const GICR_PROPBASER: u64 = 0x70;
/// `GICR_PENDBASER` (64-bit).
pub const GICR_PENDBASER: u64 = 0x78;
/// `GICR_INVLPIR` (64-bit).
pub const GICR_INVLPIR: u64 = 0xa0;
/// `GICR_INVALLR` (64-bit).
pub const GICR_INVALLR: u64 = 0xb0;
/// `GICR_SYNCR`.
pub const GICR_SYNCR: u64 = 0xc0;
/// `GICR_CTLR.EnableLPIs`.
pub const CTLR_ENABLE_LPIS: u32 = 1 << 0;
/// `GICR_CTLR` bits the host may write besides `EnableLPIs`: `DPG0`, `DPG1NS`, `DPG1S`.
pub const CTLR_DPG: u32 = 0b111 << 24;
/// The INTIDs below the first LPI, which the property table does not describe.
const FIRST_LPI: u64 = super::its::FIRST_LPI;

#[derive(Clone, Copy, Debug, Default)]
struct Tables {
    prop: (u64, u64),
    pend: (u64, u64),
}

/// The emulated RD_base (and VLPI) frames of every redistributor.
pub struct RdEmulator<'a> {
    own: &'a Ownership,
    pins: super::Pins,
    redistributors: Vec<u64>,
    vlpis: bool,
    /// LPI INTID bits the distributor supports (`GICD_TYPER.IDbits` + 1).
    lpi_bits: u32,
    /// Per redistributor: the lock every write to its frame holds from its checks to its last register
    /// write, and the tables its `EnableLPIs` pinned.
    frames: Vec<Mutex<Option<Tables>>>,
}

impl<'a> RdEmulator<'a> {
    /// The redistributors at `redistributors` (RD_base addresses); `vlpis` if they have VLPI frames.
    pub fn new(own: &'a Ownership, redistributors: Vec<u64>, vlpis: bool, lpi_bits: u32) -> Self {
        let n = redistributors.len();
        Self {
            own,
            pins: super::Pins::default(),
            redistributors,
            vlpis,
            lpi_bits,
            frames: (0..n).map(|_| Mutex::new(None)).collect(),
        }
    }

    /// The redistributor whose trapped frames contain `pa`: (index, frame offset, in the VLPI frame).
    pub fn locate(&self, pa: u64) -> Option<(usize, u64, bool)> {
        self.redistributors.iter().enumerate().find_map(|(i, &rd)| {
            let off = pa.wrapping_sub(rd);
            if off < FRAME_SIZE {
                Some((i, off, false))
            } else if self.vlpis && off.wrapping_sub(GICR_VLPI_OFFSET) < FRAME_SIZE {
                Some((i, off - GICR_VLPI_OFFSET, true))
            } else {
                None
            }
        })
    }

    /// Answers a host access at `pa` (inside a trapped frame, see [`Self::locate`]): a read's value, 0 for
    /// a write. Refusals go to `report`.
    pub fn access(
        &self,
        regs: &impl GicRegs,
        pa: u64,
        acc: RegAccess,
        report: &mut dyn FnMut(GicRefusal),
    ) -> u64 {
        let Some((i, _, vlpi)) = self.locate(pa) else {
            return 0;
        };
        let rd = self.redistributors[i];
        if vlpi {
            if matches!(acc, RegAccess::Write { .. }) {
                report(GicRefusal::Register("redistributor VLPI frame"));
            }
            return 0;
        }
        match acc {
            RegAccess::Read { off, size } => Self::read(regs, rd, off, size),
            RegAccess::Write { off, size, value } => {
                self.write(regs, i, rd, off, size, value, report);
                0
            }
        }
    }

    fn read(regs: &impl GicRegs, rd: u64, off: u64, size: u8) -> u64 {
        let reg = off & !7;
        match (reg, size) {
            (GICR_CTLR | GICR_STATUSR | GICR_SYNCR, 4) => u64::from(regs.read32(rd + off)),
            (0x08 | GICR_PROPBASER | GICR_PENDBASER, _) => {
                extract64(regs.read64(rd + reg), reg, off, size)
            }
            _ if off >= ID_REGS_START && size == 4 => u64::from(regs.read32(rd + off)),
            _ => 0,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn write(
        &self,
        regs: &impl GicRegs,
        i: usize,
        rd: u64,
        off: u64,
        size: u8,
        value: u64,
        report: &mut dyn FnMut(GicRefusal),
    ) {
        let reg = off & !7;
        // Held until the last register write: no other CPU's write to this frame in between.
        let mut pinned = self.frames[i].lock();
        let enabled = regs.read32(rd + GICR_CTLR) & CTLR_ENABLE_LPIS != 0;
        match reg {
            GICR_CTLR if off == GICR_CTLR && size == 4 => {
                let v = value as u32;
                let dpg = v & CTLR_DPG;
                if enabled || v & CTLR_ENABLE_LPIS == 0 {
                    // EnableLPIs is sticky: never cleared here.
                    let keep = if enabled { CTLR_ENABLE_LPIS } else { 0 };
                    regs.write32(rd + GICR_CTLR, dpg | keep);
                    return;
                }
                match self.pin_tables(regs, rd) {
                    Ok(t) => {
                        *pinned = Some(t);
                        regs.write32(rd + GICR_CTLR, dpg | CTLR_ENABLE_LPIS);
                    }
                    Err(e) => {
                        regs.write32(rd + GICR_CTLR, dpg);
                        report(e);
                    }
                }
            }
            // STATUSR and WAKER.
            GICR_STATUSR if size == 4 => regs.write32(rd + off, value as u32),
            GICR_PROPBASER | GICR_PENDBASER => {
                if enabled {
                    report(GicRefusal::InUse(if reg == GICR_PROPBASER {
                        "GICR_PROPBASER"
                    } else {
                        "GICR_PENDBASER"
                    }));
                    return;
                }
                let v = merge64(regs.read64(rd + reg), reg, off, size, value);
                let checked = if reg == GICR_PROPBASER {
                    self.prop_table(v).and_then(|(pa, len)| {
                        self.pins.check(self.own, "LPI property table", pa, len)
                    })
                } else {
                    let (pa, len) = self.pend_table(regs.read64(rd + GICR_PROPBASER), v);
                    self.pins.check(self.own, "LPI pending table", pa, len)
                };
                match checked {
                    Ok(()) => regs.write64(rd + reg, v),
                    Err(e) => report(e),
                }
            }
            GICR_SETLPIR | GICR_CLRLPIR | GICR_INVLPIR | GICR_INVALLR => {
                let v = merge64(0, reg, off, size, value);
                regs.write64(rd + reg, v);
            }
            _ => {}
        }
    }

    /// Checks and pins the tables the real `GICR_PROPBASER`/`GICR_PENDBASER` of `rd` name.
    fn pin_tables(&self, regs: &impl GicRegs, rd: u64) -> Result<Tables, GicRefusal> {
        let prop = regs.read64(rd + GICR_PROPBASER);
        let pend = regs.read64(rd + GICR_PENDBASER);
        let t = Tables {
            prop: self.prop_table(prop)?,
            pend: self.pend_table(prop, pend),
        };
        self.pins
            .pin(self.own, "LPI property table", t.prop.0, t.prop.1)?;
        if let Err(e) = self
            .pins
            .pin(self.own, "LPI pending table", t.pend.0, t.pend.1)
        {
            self.pins.unpin(self.own, t.prop.0, t.prop.1);
            return Err(e);
        }
        Ok(t)
    }

    /// INTID bits the LPI tables cover for the `GICR_PROPBASER` value `prop`: its `IDbits` + 1, cut to the
    /// distributor's.
    fn id_bits(&self, prop: u64) -> u32 {
        ((prop & 0x1f) as u32 + 1).min(self.lpi_bits)
    }

    /// The property table `prop` (a `GICR_PROPBASER` value) names: (base, bytes).
    ///
    /// # Errors
    ///
    /// [`GicRefusal::Unsupported`] if it covers no LPI (fewer than 14 INTID bits).
    fn prop_table(&self, prop: u64) -> Result<(u64, u64), GicRefusal> {
        let bits = self.id_bits(prop);
        if bits < 14 {
            return Err(GicRefusal::Unsupported("GICR_PROPBASER (IDbits)", prop));
        }
        Ok((prop & 0x000f_ffff_ffff_f000, (1u64 << bits) - FIRST_LPI))
    }

    /// The pending table `pend` (a `GICR_PENDBASER` value) names, sized by `prop` (`GICR_PROPBASER`, at
    /// least the 14 INTID bits of the smallest LPI range): (base, bytes).
    fn pend_table(&self, prop: u64, pend: u64) -> (u64, u64) {
        let bits = self.id_bits(prop).max(14);
        (pend & 0x000f_ffff_ffff_0000, (1u64 << bits) / 8)
    }

    /// Pages the redistributors' LPI tables pin.
    pub fn pinned_pages(&self) -> u64 {
        self.pins.pages()
    }

    /// Whether redistributor `i` has its tables pinned.
    pub fn lpis_enabled(&self, i: usize) -> bool {
        self.frames.get(i).is_some_and(|f| f.lock().is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gic::tests_support::FakeGic;
    use crate::ownership::{MemKind, PageState};

    const RD0: u64 = 0x080a_0000;
    const RD1: u64 = 0x080c_0000;

    fn setup(own: &Ownership) -> (FakeGic, RdEmulator<'_>) {
        let gic = FakeGic::default();
        gic.set64(RD1 + 0x08, 1 << 4);
        (gic, RdEmulator::new(own, alloc::vec![RD0, RD1], false, 16))
    }

    fn w(regs: &FakeGic, e: &RdEmulator<'_>, pa: u64, size: u8, value: u64) -> Vec<GicRefusal> {
        let mut out = Vec::new();
        let off = pa - (pa & !0xffff);
        e.access(regs, pa, RegAccess::Write { off, size, value }, &mut |r| {
            out.push(r)
        });
        out
    }

    fn count(own: &Ownership, pa: u64) -> u32 {
        match own.state(pa) {
            PageState::Host { count, .. } => count,
            s => panic!("{s:?}"),
        }
    }

    #[test]
    fn enable_lpis_pins_host_tables() {
        let own = crate::gic::tests_support::ownership();
        let (gic, e) = setup(&own);
        // 16 ID bits: 56 KiB of properties, 8 KiB of pending bits.
        assert!(w(&gic, &e, RD1 + GICR_PROPBASER, 8, 0x4030_0000 | 15).is_empty());
        assert!(w(&gic, &e, RD1 + GICR_PENDBASER, 8, 0x4040_0000).is_empty());
        assert!(w(&gic, &e, RD1 + GICR_CTLR, 4, 1).is_empty());
        assert_eq!(gic.get32(RD1 + GICR_CTLR) & CTLR_ENABLE_LPIS, 1);
        assert!(e.lpis_enabled(1));
        assert_eq!(e.pinned_pages(), 14 + 2);
        assert_eq!(count(&own, 0x4030_0000), 1);
        assert_eq!(count(&own, 0x4030_d000), 1);
        assert_eq!(count(&own, 0x4030_e000), 0);
        assert_eq!(count(&own, 0x4040_1000), 1);
        assert_eq!(count(&own, 0x4040_2000), 0);
        assert_eq!(
            own.donate_range(0x4030_0000, 1),
            Err(crate::ownership::OwnershipError::Busy(0x4030_0000))
        );
        // Now the bases cannot move, and EnableLPIs cannot be cleared.
        assert_eq!(
            w(&gic, &e, RD1 + GICR_PROPBASER, 8, 0x4010_0000 | 15),
            [GicRefusal::InUse("GICR_PROPBASER")]
        );
        assert_eq!(
            w(&gic, &e, RD1 + GICR_PENDBASER + 4, 4, 0),
            [GicRefusal::InUse("GICR_PENDBASER")]
        );
        assert_eq!(gic.get64(RD1 + GICR_PROPBASER), 0x4030_0000 | 15);
        w(&gic, &e, RD1 + GICR_CTLR, 4, 0);
        assert_eq!(gic.get32(RD1 + GICR_CTLR) & CTLR_ENABLE_LPIS, 1);
    }

    #[test]
    fn bases_are_checked_when_written() {
        let own = crate::gic::tests_support::ownership();
        let (gic, e) = setup(&own);
        let not_ram = |r: &[GicRefusal], table: &str| matches!(r, [GicRefusal::NotHostRam { what, .. }] if *what == table);
        // The pending table in the carve-out (what a hostile host would aim at): ignored.
        assert!(w(&gic, &e, RD0 + GICR_PROPBASER, 8, 0x4030_0000 | 15).is_empty());
        let r = w(&gic, &e, RD0 + GICR_PENDBASER, 8, 0x4000_0000);
        assert!(not_ram(&r, "LPI pending table"), "{r:?}");
        assert_eq!(gic.get64(RD0 + GICR_PENDBASER), 0);
        assert_eq!(gic.writes_to(RD0 + GICR_PENDBASER), 0);
        // A pending table (16 ID bits: 8 KiB) whose second page is donated.
        own.donate_range(0x4061_0000 + 0x1000, 1).unwrap();
        let r = w(&gic, &e, RD0 + GICR_PENDBASER, 8, 0x4061_0000);
        assert!(not_ram(&r, "LPI pending table"), "{r:?}");
        // A donated page as the property table, MMIO (the SMMU frame), and no LPI ID bits: ignored.
        own.donate_range(0x4050_0000, 16).unwrap();
        let r = w(&gic, &e, RD0 + GICR_PROPBASER, 8, 0x4050_0000 | 15);
        assert!(not_ram(&r, "LPI property table"), "{r:?}");
        assert_eq!(own.state(0x4050_0000), PageState::Donated);
        let r = w(&gic, &e, RD0 + GICR_PROPBASER, 8, 0x0905_0000 | 15);
        assert!(not_ram(&r, "LPI property table"), "{r:?}");
        assert!(matches!(
            w(&gic, &e, RD0 + GICR_PROPBASER, 8, 0x4030_0000 | 12)[..],
            [GicRefusal::Unsupported(..)]
        ));
        // A property table (56 KiB) on the carve-out's last pages.
        let r = w(&gic, &e, RD0 + GICR_PROPBASER, 8, 0x401f_2000 | 15);
        assert!(not_ram(&r, "LPI property table"), "{r:?}");
        assert_eq!(gic.get64(RD0 + GICR_PROPBASER), 0x4030_0000 | 15);
        // A 32-bit half is checked as the value it makes: a low half naming RAM passes, a high half
        // aiming past RAM does not.
        assert!(w(&gic, &e, RD0 + GICR_PENDBASER, 4, 0x4040_0000).is_empty());
        assert_eq!(gic.get64(RD0 + GICR_PENDBASER), 0x4040_0000);
        let r = w(&gic, &e, RD0 + GICR_PENDBASER + 4, 4, 1);
        assert!(not_ram(&r, "LPI pending table"), "{r:?}");
        assert_eq!(gic.get64(RD0 + GICR_PENDBASER), 0x4040_0000);
        // Nothing was pinned by the checks; the good pair enables.
        assert_eq!(e.pinned_pages(), 0);
        assert_eq!(count(&own, 0x4030_0000), 0);
        assert!(w(&gic, &e, RD0 + GICR_CTLR, 4, 1).is_empty());
        assert!(e.lpis_enabled(0));
    }

    #[test]
    fn enable_lpis_checks_the_tables_again() {
        let own = crate::gic::tests_support::ownership();
        let (gic, e) = setup(&own);
        // Checked when written, then the pending table's page donated before EnableLPIs.
        assert!(w(&gic, &e, RD0 + GICR_PROPBASER, 8, 0x4030_0000 | 15).is_empty());
        assert!(w(&gic, &e, RD0 + GICR_PENDBASER, 8, 0x4040_0000).is_empty());
        own.donate_range(0x4040_0000, 1).unwrap();
        let r = w(&gic, &e, RD0 + GICR_CTLR, 4, 1);
        assert!(matches!(
            r[..],
            [GicRefusal::NotHostRam {
                what: "LPI pending table",
                ..
            }]
        ));
        assert_eq!(gic.get32(RD0 + GICR_CTLR) & CTLR_ENABLE_LPIS, 0);
        assert!(!e.lpis_enabled(0));
        // Nothing stays pinned.
        assert_eq!(count(&own, 0x4030_0000), 0);
        // A pending table sized by a PROPBASER written after it: checked again at EnableLPIs with the
        // larger size (the distributor's 16 bits: 8 KiB, second page donated).
        own.reclaim_range(0x4040_0000, 1).unwrap();
        assert!(w(&gic, &e, RD0 + GICR_PROPBASER, 8, 0x4030_0000 | 13).is_empty());
        assert!(w(&gic, &e, RD0 + GICR_PENDBASER, 8, 0x4070_0000).is_empty());
        own.donate_range(0x4070_1000, 1).unwrap();
        assert!(w(&gic, &e, RD0 + GICR_PROPBASER, 8, 0x4030_0000 | 15).is_empty());
        assert_eq!(w(&gic, &e, RD0 + GICR_CTLR, 4, 1).len(), 1);
        assert!(!e.lpis_enabled(0));
        // Then a good pair works.
        assert!(w(&gic, &e, RD0 + GICR_PENDBASER, 8, 0x4040_0000).is_empty());
        assert!(w(&gic, &e, RD0 + GICR_CTLR, 4, 1).is_empty());
        assert_eq!(
            own.state(0x4030_0000),
            PageState::Host {
                kind: MemKind::Ram,
                count: 1
            }
        );
    }

    #[test]
    fn table_size_follows_the_distributor_limit() {
        let own = crate::gic::tests_support::ownership();
        let gic = FakeGic::default();
        // The distributor has 14 ID bits: the host's 20 are cut to 14 (8 KiB of properties, 2 KiB pending).
        let e = RdEmulator::new(&own, alloc::vec![RD0], false, 14);
        w(&gic, &e, RD0 + GICR_PROPBASER, 8, 0x4030_0000 | 19);
        w(&gic, &e, RD0 + GICR_PENDBASER, 8, 0x4040_0000);
        assert!(w(&gic, &e, RD0 + GICR_CTLR, 4, 1).is_empty());
        assert_eq!(count(&own, 0x4030_1000), 1);
        assert_eq!(count(&own, 0x4030_2000), 0);
    }

    #[test]
    fn passthrough_and_vlpi_frames() {
        let own = crate::gic::tests_support::ownership();
        let gic = FakeGic::default();
        gic.set64(RD0 + 0x08, 0x0000_0001_0000_0003);
        let e = RdEmulator::new(&own, alloc::vec![RD0], true, 16);
        let rd = |off: u64, size: u8| {
            e.access(&gic, RD0 + off, RegAccess::Read { off, size }, &mut |_| {})
        };
        assert_eq!(rd(0x08, 8), 0x0000_0001_0000_0003);
        assert_eq!(rd(0x0c, 4), 1);
        // Reserved offsets read as zero.
        assert_eq!(rd(0x200, 4), 0);
        // WAKER and INVALLR go through.
        w(&gic, &e, RD0 + GICR_WAKER, 4, 2);
        assert_eq!(gic.get32(RD0 + GICR_WAKER), 2);
        w(&gic, &e, RD0 + GICR_INVALLR, 8, 0);
        assert_eq!(gic.writes_to(RD0 + GICR_INVALLR), 1);
        // The VLPI frame: reads zero, writes refused and not passed.
        let vpend = RD0 + GICR_VLPI_OFFSET + 0x78;
        assert_eq!(e.locate(vpend), Some((0, 0x78, true)));
        assert_eq!(
            w(&gic, &e, vpend, 8, 0x4000_0000),
            [GicRefusal::Register("redistributor VLPI frame")]
        );
        assert_eq!(gic.writes_to(vpend), 0);
    }

    /// Registers shared by threads; a read of `stall_at` (once) pauses the reader until another thread
    /// says it is done or a second has passed, so a test can put another CPU's access inside that window.
    struct RacyGic {
        regs: std::sync::Mutex<std::collections::HashMap<u64, u64>>,
        stall_at: u64,
        armed: core::sync::atomic::AtomicBool,
        stalled: std::sync::mpsc::SyncSender<()>,
        resume: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
    }

    impl GicRegs for RacyGic {
        fn read32(&self, pa: u64) -> u32 {
            self.read64(pa & !7).wrapping_shr(((pa & 4) * 8) as u32) as u32
        }
        fn write32(&self, pa: u64, value: u32) {
            self.write64(pa, u64::from(value));
        }
        fn read64(&self, pa: u64) -> u64 {
            let v = self.regs.lock().unwrap().get(&pa).copied().unwrap_or(0);
            if pa == self.stall_at && self.armed.swap(false, core::sync::atomic::Ordering::SeqCst) {
                self.stalled.send(()).unwrap();
                let _ = self
                    .resume
                    .lock()
                    .unwrap()
                    .recv_timeout(std::time::Duration::from_secs(1));
            }
            v
        }
        fn write64(&self, pa: u64, value: u64) {
            self.regs.lock().unwrap().insert(pa, value);
        }
    }

    #[test]
    fn a_table_base_written_by_another_cpu_during_enable_lpis_never_reaches_the_redistributor() {
        let own = crate::gic::tests_support::ownership();
        let (stalled_tx, stalled_rx) = std::sync::mpsc::sync_channel(1);
        let (resume_tx, resume_rx) = std::sync::mpsc::channel();
        let gic = RacyGic {
            regs: Default::default(),
            stall_at: RD1 + GICR_PENDBASER,
            armed: false.into(),
            stalled: stalled_tx,
            resume: std::sync::Mutex::new(resume_rx),
        };
        let e = RdEmulator::new(&own, alloc::vec![RD0, RD1], false, 16);
        let good = 0x4040_0000;
        let mut r = Vec::new();
        let wr = |pa: u64, size: u8, value: u64, out: &mut Vec<GicRefusal>| {
            let off = pa & 0xffff;
            e.access(&gic, pa, RegAccess::Write { off, size, value }, &mut |x| {
                out.push(x)
            });
        };
        wr(RD1 + GICR_PROPBASER, 8, 0x4030_0000 | 15, &mut r);
        wr(RD1 + GICR_PENDBASER, 8, good, &mut r);
        assert!(r.is_empty());
        gic.armed.store(true, core::sync::atomic::Ordering::SeqCst);
        let (enable, attack) = std::thread::scope(|s| {
            // CPU A sets EnableLPIs; its check of the tables reads GICR_PENDBASER and stalls there...
            let a = s.spawn(|| {
                let mut out = Vec::new();
                e.access(
                    &gic,
                    RD1 + GICR_CTLR,
                    RegAccess::Write {
                        off: GICR_CTLR,
                        size: 4,
                        value: 1,
                    },
                    &mut |x| out.push(x),
                );
                out
            });
            // ... while CPU B aims GICR_PENDBASER at the carve-out.
            stalled_rx.recv().unwrap();
            let b = s.spawn(|| {
                let mut out = Vec::new();
                e.access(
                    &gic,
                    RD1 + GICR_PENDBASER,
                    RegAccess::Write {
                        off: GICR_PENDBASER,
                        size: 8,
                        value: 0x4000_0000,
                    },
                    &mut |x| out.push(x),
                );
                out
            });
            // B either finished (no lock: its write landed inside A's check) or waits for A's lock, which
            // the timeout in `read64` lets A release.
            std::thread::sleep(std::time::Duration::from_millis(50));
            let _ = resume_tx.send(());
            (a.join().unwrap(), b.join().unwrap())
        });
        assert!(enable.is_empty(), "{enable:?}");
        assert_eq!(gic.read32(RD1 + GICR_CTLR) & CTLR_ENABLE_LPIS, 1);
        // The redistributor uses exactly the tables that were checked and pinned.
        assert_eq!(gic.read64(RD1 + GICR_PENDBASER), good);
        assert_eq!(attack, [GicRefusal::InUse("GICR_PENDBASER")]);
        assert_eq!(count(&own, good), 1);
    }
}
