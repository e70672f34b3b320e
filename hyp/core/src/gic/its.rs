//! The GICv3 ITS control frame, emulated (see the [parent module](super)).
//!
//! Register by register (offsets in the control frame):
//!
//! | register | host read | host write |
//! |---|---|---|
//! | `GITS_CTLR` 0x00 | real | `Enabled` passed through, other bits dropped |
//! | `GITS_IIDR` 0x04, ID registers 0xffd0.. | real | ignored |
//! | `GITS_TYPER` 0x08 | real with the GICv4 bits (`Virtual`, `VMOVP`, `VSGI`, `SVPET`) cleared | ignored |
//! | `GITS_CBASER` 0x80 | the host's value | only while the ITS is disabled and quiescent: the queue must be host RAM (pinned) of at most [`SHADOW_QUEUE_BYTES`]; the real register gets the shadow queue |
//! | `GITS_CWRITER` 0x88 | the host's value | each new command copied once from the host queue, checked, written at the same offset of the shadow queue (or a `SYNC` instead), then the real `CWRITER` |
//! | `GITS_CREADR` 0x90 | real (same offsets in both queues) | ignored |
//! | `GITS_BASERn` 0x100.. | the host's value (with the real register's read-only fields and page size), `Indirect` 0 | only while disabled and quiescent, device and collection tables only, `Indirect` forced to 0, at most [`MAX_TABLE_BYTES`]; the host's table must be host RAM, but the real register gets a zeroed table of the same size in hyp memory |
//! | anything else | 0 | ignored |
//!
//! The device and collection tables are the ITS's private memory, in an IMPLEMENTATION DEFINED format that an
//! ITS may read back (QEMU's keeps each device's ITT address in its device table entry): in host memory the host
//! could rewrite an entry and aim the ITS's next ITT write anywhere. So the ITS gets tables in hyp memory, the
//! way the command queue is shadowed; the host's own table memory is never used (and so not pinned).
//!
//! Commands (GICv3 physical ones only): `MAPD` (DeviceID within the ITS and the device table; with V=1 the
//! ITT — 2^(Size+1) entries of `GITS_TYPER.ITT_entry_size` — must be host RAM: pinned while mapped, the old
//! ITT released once `GITS_CREADR` has passed the command that replaced it), `MAPC` (ICID, target),
//! `MAPTI`/`MAPI` (mapped device, EventID within its ITT, LPI, ICID), `MOVI`, `DISCARD`, `INV`, `INT`,
//! `CLEAR` (mapped device, EventID), `INVALL` (ICID), `SYNC` (target), `MOVALL` (targets). A target
//! (`MAPC` with V=1, `SYNC`, `MOVALL`) must be a redistributor whose LPIs are enabled with checked, pinned
//! tables ([`RdEmulator::lpis_enabled`]): Linux enables a CPU's LPIs before it maps that CPU's collection
//! (`its_cpu_init`: `its_cpu_init_lpis`, then `its_cpu_init_collections`), and `EnableLPIs` is sticky, so a
//! collection (and so a `MAPTI`/`MOVI` to it) never leads to a redistributor without tables. Anything else,
//! or a field out of range, is replaced by a `SYNC` to the first redistributor with LPIs enabled and
//! reported.

mod commands;
mod pins;
mod registers;
mod tables;

use alloc::vec::Vec;
use spin::Mutex;

use super::rd::RdEmulator;
use super::{GicMemory, GicRefusal, GicRegs, ID_REGS_START, extract64, merge64};
use crate::ownership::Ownership;
pub use commands::opcode;
use pins::{Device, Pinned};
pub use registers::{
    BASER_COUNT, BASER_INDIRECT, BASER_TYPE_COLLECTION, BASER_TYPE_DEVICE, BASER_VALID,
    CTLR_ENABLED, CTLR_QUIESCENT, GITS_BASER0, GITS_CBASER, GITS_CREADR, GITS_CTLR, GITS_CWRITER,
    GITS_IIDR, GITS_TYPER, ItsParams, TYPER_HIDDEN, TYPER_PTA,
};
use tables::Table;

/// One ITS command.
pub const CMD_SIZE: u64 = 32;
/// The shadow queue's size: the largest host queue accepted (Linux uses 64 KiB).
pub const SHADOW_QUEUE_BYTES: usize = 64 << 10;
/// The largest device or collection table the hyp allocates (Linux's device table for 16 DeviceID bits is
/// 512 KiB).
pub const MAX_TABLE_BYTES: u64 = 1 << 20;
/// Devices (DeviceIDs with a live `MAPD`) tracked; a `MAPD` of a new device beyond this is refused.
pub const MAX_DEVICES: usize = 1024;
/// The most hyp heap one ITS emulator uses (`sizing` counts it for each ITS in the DT), each allocation
/// rounded up to a power of two as the buddy heap does: a device and a collection table of at most
/// [`MAX_TABLE_BYTES`] each, plus a third while a `GITS_BASERn` rewrite holds the old table until the
/// register names the new one; the shadow queue; the tracked devices; the ITT pins waiting for `GITS_CREADR`.
pub const HEAP_BYTES: u64 = 3 * MAX_TABLE_BYTES
    + SHADOW_QUEUE_BYTES.next_power_of_two() as u64
    + (MAX_DEVICES * core::mem::size_of::<Device>()).next_power_of_two() as u64
    + (SHADOW_QUEUE_BYTES / CMD_SIZE as usize * core::mem::size_of::<(u64, Pinned)>())
        .next_power_of_two() as u64;
/// The first LPI INTID.
pub const FIRST_LPI: u64 = 8192;

/// A 4 KiB page of the shadow queue (page aligned, as `GITS_CBASER` requires).
#[repr(C, align(4096))]
struct QueuePage([u64; 512]);

struct State {
    cbaser: u64,
    queue: Option<Pinned>,
    /// The host's `GITS_CWRITER` offset = the shadow queue's write offset.
    cwriter: u64,
    /// Commands written to the shadow queue since boot.
    submitted: u64,
    /// The shadow queue's memory is not shareable with the ITS: clean it after writing.
    flush: bool,
    tables: [Option<Table>; BASER_COUNT],
    /// The host's view of each `GITS_BASERn` it wrote.
    baser_host: [Option<u64>; BASER_COUNT],
    devices: Vec<Device>,
    /// ITT pins to release once the ITS has consumed the command with this sequence number.
    retired: Vec<(u64, Pinned)>,
    shadow: Vec<QueuePage>,
}

/// The emulated ITS control frame of one ITS.
pub struct ItsEmulator<'a> {
    base: u64,
    params: ItsParams,
    own: &'a Ownership,
    pins: super::Pins,
    /// RD_base of each redistributor (index = processor number).
    redistributors: Vec<u64>,
    /// LPI INTID bits (`GICD_TYPER.IDbits` + 1).
    lpi_bits: u32,
    state: Mutex<State>,
}

impl<'a> ItsEmulator<'a> {
    /// Takes the ITS at `base` (control frame mapped for `regs`): reads `GITS_TYPER`; allocates the shadow
    /// queue. `redistributors` as [`super::GicLayout`] found them; `lpi_bits` from `GICD_TYPER.IDbits`.
    pub fn new(
        base: u64,
        regs: &impl GicRegs,
        own: &'a Ownership,
        redistributors: Vec<u64>,
        lpi_bits: u32,
    ) -> Self {
        let params = ItsParams::from_typer(regs.read64(base + GITS_TYPER));
        let mut shadow = Vec::with_capacity(SHADOW_QUEUE_BYTES / 4096);
        shadow.resize_with(SHADOW_QUEUE_BYTES / 4096, || QueuePage([0; 512]));
        Self {
            base,
            params,
            own,
            pins: super::Pins::default(),
            redistributors,
            lpi_bits,
            state: Mutex::new(State {
                cbaser: 0,
                queue: None,
                cwriter: 0,
                submitted: 0,
                flush: false,
                tables: Default::default(),
                baser_host: [None; BASER_COUNT],
                devices: Vec::with_capacity(MAX_DEVICES),
                retired: Vec::with_capacity(SHADOW_QUEUE_BYTES / CMD_SIZE as usize),
                shadow,
            }),
        }
    }

    /// The ITS base (its control frame).
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Whether `pa` lies in this ITS's control frame.
    pub fn contains(&self, pa: u64) -> bool {
        pa.wrapping_sub(self.base) < super::FRAME_SIZE
    }

    /// The decoded `GITS_TYPER`.
    pub fn params(&self) -> ItsParams {
        self.params
    }

    /// Answers a host access to the control frame: a read's value (0 for a write). Each refused request
    /// goes to `report`. Accesses other than 4 or 8 bytes, aligned, read as zero and are ignored. `rd`
    /// says which redistributors may be command targets ([`RdEmulator::lpis_enabled`]).
    pub fn access(
        &self,
        regs: &impl GicRegs,
        mem: &impl GicMemory,
        rd: &RdEmulator<'_>,
        acc: super::RegAccess,
        report: &mut dyn FnMut(GicRefusal),
    ) -> u64 {
        let mut st = self.state.lock();
        match acc {
            super::RegAccess::Read { off, size } => self.read(&mut st, regs, off, size),
            super::RegAccess::Write { off, size, value } => {
                self.write(&mut st, regs, mem, rd, off, size, value, report);
                0
            }
        }
    }

    fn read(&self, st: &mut State, regs: &impl GicRegs, off: u64, size: u8) -> u64 {
        let reg = off & !7;
        let r64 = |v: u64| extract64(v, reg, off, size);
        match reg {
            GITS_CTLR if size == 4 && off == GITS_CTLR => {
                u64::from(regs.read32(self.base + GITS_CTLR))
            }
            GITS_CTLR if size == 4 => u64::from(regs.read32(self.base + GITS_IIDR)),
            GITS_TYPER => r64(self.params.typer & !TYPER_HIDDEN),
            GITS_CBASER => r64(st.cbaser),
            GITS_CWRITER => r64(st.cwriter),
            GITS_CREADR => {
                let creadr = regs.read64(self.base + GITS_CREADR);
                self.release(st, creadr);
                r64(creadr)
            }
            r if (GITS_BASER0..GITS_BASER0 + 8 * BASER_COUNT as u64).contains(&r) => {
                let n = ((r - GITS_BASER0) / 8) as usize;
                r64(
                    st.baser_host[n].unwrap_or_else(|| regs.read64(self.base + r))
                        & !BASER_INDIRECT,
                )
            }
            _ if off >= ID_REGS_START && size == 4 => u64::from(regs.read32(self.base + off)),
            _ => 0,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn write(
        &self,
        st: &mut State,
        regs: &impl GicRegs,
        mem: &impl GicMemory,
        rd: &RdEmulator<'_>,
        off: u64,
        size: u8,
        value: u64,
        report: &mut dyn FnMut(GicRefusal),
    ) {
        let reg = off & !7;
        match reg {
            GITS_CTLR if size == 4 && off == GITS_CTLR => {
                let old = regs.read32(self.base + GITS_CTLR);
                let new = (old & !CTLR_ENABLED) | (value as u32 & CTLR_ENABLED);
                regs.write32(self.base + GITS_CTLR, new & !CTLR_QUIESCENT);
            }
            GITS_CBASER => {
                let v = merge64(st.cbaser, reg, off, size, value);
                if let Err(e) = self.write_cbaser(st, regs, v) {
                    report(e);
                }
            }
            GITS_CWRITER => {
                let v = merge64(st.cwriter, reg, off, size, value);
                self.write_cwriter(st, regs, mem, rd, v, report);
            }
            r if (GITS_BASER0..GITS_BASER0 + 8 * BASER_COUNT as u64).contains(&r) => {
                let n = ((r - GITS_BASER0) / 8) as usize;
                let old = st.baser_host[n].unwrap_or_else(|| regs.read64(self.base + r));
                let v = merge64(old & !BASER_INDIRECT, reg, off, size, value);
                if let Err(e) = self.write_baser(st, regs, mem, n, v) {
                    report(e);
                }
            }
            _ => {}
        }
    }

    /// Whether the ITS is disabled and has finished everything it was doing.
    fn idle(&self, regs: &impl GicRegs) -> bool {
        let ctlr = regs.read32(self.base + GITS_CTLR);
        ctlr & CTLR_ENABLED == 0 && ctlr & CTLR_QUIESCENT != 0
    }

    /// The shadow queue's command at `off` (tests and diagnostics).
    pub fn shadow_command(&self, off: u64) -> [u64; 4] {
        let st = self.state.lock();
        let page = &st.shadow[(off as usize / 4096) % st.shadow.len()];
        let slot = ((off % 4096) / 8) as usize;
        [
            page.0[slot],
            page.0[slot + 1],
            page.0[slot + 2],
            page.0[slot + 3],
        ]
    }

    /// The physical address of the hyp table behind `GITS_BASERn` (tests and diagnostics).
    pub fn table_pa(&self, n: usize) -> Option<u64> {
        self.state
            .lock()
            .tables
            .get(n)?
            .as_ref()
            .map(|t| t.mem.addr)
    }

    /// Pages this ITS pins (command queue, ITTs).
    pub fn pinned_pages(&self) -> u64 {
        self.pins.pages()
    }

    /// The shadow queue's physical address (VA == PA at EL2).
    pub fn shadow_pa(&self) -> u64 {
        self.state.lock().shadow.as_ptr() as u64
    }

    /// DeviceIDs with a live `MAPD`, and pins waiting for the ITS to pass their command.
    pub fn tracked(&self) -> (usize, usize) {
        let st = self.state.lock();
        (st.devices.len(), st.retired.len())
    }
}

#[cfg(test)]
mod tests;
