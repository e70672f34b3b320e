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

use alloc::alloc::{Layout, alloc_zeroed, dealloc};
use alloc::vec::Vec;
use spin::Mutex;

use super::rd::RdEmulator;
use super::{GicMemory, GicRefusal, GicRegs, ID_REGS_START, extract64, merge64};
use crate::ownership::Ownership;

/// `GITS_CTLR`.
pub const GITS_CTLR: u64 = 0x00;
/// `GITS_IIDR`.
pub const GITS_IIDR: u64 = 0x04;
/// `GITS_TYPER` (64-bit).
pub const GITS_TYPER: u64 = 0x08;
/// `GITS_CBASER` (64-bit).
pub const GITS_CBASER: u64 = 0x80;
/// `GITS_CWRITER` (64-bit).
pub const GITS_CWRITER: u64 = 0x88;
/// `GITS_CREADR` (64-bit).
pub const GITS_CREADR: u64 = 0x90;
/// `GITS_BASER0` (64-bit; `GITS_BASERn` at + 8 n).
pub const GITS_BASER0: u64 = 0x100;
/// Number of `GITS_BASERn` registers.
pub const BASER_COUNT: usize = 8;

/// `GITS_CTLR.Enabled`.
pub const CTLR_ENABLED: u32 = 1 << 0;
/// `GITS_CTLR.Quiescent`.
pub const CTLR_QUIESCENT: u32 = 1 << 31;
/// `GITS_TYPER` bits of GICv4 features the host is not offered: `Virtual` (1), `VMOVP` (37), `VSGI` (39),
/// `SVPET` (42:41).
pub const TYPER_HIDDEN: u64 = (1 << 1) | (1 << 37) | (1 << 39) | (0b11 << 41);
/// `GITS_TYPER.PTA`: collection targets are redistributor physical addresses (else processor numbers).
pub const TYPER_PTA: u64 = 1 << 19;
/// `GITS_CBASER`/`GITS_BASERn` `Valid`.
pub const BASER_VALID: u64 = 1 << 63;
/// `GITS_BASERn.Indirect`.
pub const BASER_INDIRECT: u64 = 1 << 62;
/// `GITS_BASERn.Type`: device table.
pub const BASER_TYPE_DEVICE: u64 = 1;
/// `GITS_BASERn.Type`: collection table.
pub const BASER_TYPE_COLLECTION: u64 = 4;
/// Physical address bits 51:12 of `GITS_CBASER`.
const CBASER_PA_MASK: u64 = ((1 << 52) - 1) & !0xfff;
/// `GITS_CBASER.Size` (4 KiB pages minus one).
const CBASER_SIZE_MASK: u64 = 0xff;
/// What the shadow queue's `GITS_CBASER` asks for besides its address and size: inner and outer
/// read/write-allocate write-back (`InnerCache` = 7, `OuterCache` = 0: same as inner), inner shareable.
const CBASER_ATTRS: u64 = (7 << 59) | (1 << 10);
/// `GITS_CBASER.Shareability`.
const CBASER_SHAREABILITY: u64 = 0b11 << 10;
/// The offset field of `GITS_CWRITER`/`GITS_CREADR` (bits 19:5).
const QUEUE_OFFSET_MASK: u64 = 0xf_ffe0;
/// `GITS_CWRITER.Retry`.
const CWRITER_RETRY: u64 = 1;
/// One ITS command.
pub const CMD_SIZE: u64 = 32;
/// The shadow queue's size: the largest host queue accepted (Linux uses 64 KiB).
pub const SHADOW_QUEUE_BYTES: usize = 64 << 10;
/// The largest device or collection table the hyp allocates (Linux's device table for 16 DeviceID bits is
/// 512 KiB).
pub const MAX_TABLE_BYTES: u64 = 1 << 20;
/// `GITS_BASERn` physical address field (bits 47:12; with 64 KiB pages bits 15:12 hold PA bits 51:48).
const BASER_PA_FIELD: u64 = 0x0000_ffff_ffff_f000;
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

/// ITS command opcodes (GICv3 physical commands).
pub mod opcode {
    /// `MOVI`.
    pub const MOVI: u8 = 0x01;
    /// `INT`.
    pub const INT: u8 = 0x03;
    /// `CLEAR`.
    pub const CLEAR: u8 = 0x04;
    /// `SYNC`.
    pub const SYNC: u8 = 0x05;
    /// `MAPD`.
    pub const MAPD: u8 = 0x08;
    /// `MAPC`.
    pub const MAPC: u8 = 0x09;
    /// `MAPTI`.
    pub const MAPTI: u8 = 0x0a;
    /// `MAPI`.
    pub const MAPI: u8 = 0x0b;
    /// `INV`.
    pub const INV: u8 = 0x0c;
    /// `INVALL`.
    pub const INVALL: u8 = 0x0d;
    /// `MOVALL`.
    pub const MOVALL: u8 = 0x0e;
    /// `DISCARD`.
    pub const DISCARD: u8 = 0x0f;
}

/// What `GITS_TYPER` says about the ITS.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct ItsParams {
    /// The real `GITS_TYPER`.
    pub typer: u64,
    /// Bytes per ITT entry.
    pub itt_entry_size: u64,
    /// EventID bits.
    pub id_bits: u32,
    /// DeviceID bits.
    pub dev_bits: u32,
    /// Collection IDs the ITS holds without a table (`HCC`).
    pub hcc: u64,
    /// ICID bits.
    pub cid_bits: u32,
    /// Targets are physical addresses.
    pub pta: bool,
}

impl ItsParams {
    /// Decodes `GITS_TYPER`.
    pub fn from_typer(typer: u64) -> Self {
        Self {
            typer,
            itt_entry_size: ((typer >> 4) & 0xf) + 1,
            id_bits: ((typer >> 8) & 0x1f) as u32 + 1,
            dev_bits: ((typer >> 13) & 0x1f) as u32 + 1,
            hcc: (typer >> 24) & 0xff,
            cid_bits: if typer & (1 << 36) != 0 {
                ((typer >> 32) & 0xf) as u32 + 1
            } else {
                16
            },
            pta: typer & TYPER_PTA != 0,
        }
    }
}

/// A pinned range of host RAM.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
struct Pinned {
    pa: u64,
    len: u64,
}

/// Zeroed hyp memory (VA == PA) the real ITS uses as a device or collection table; freed when dropped.
#[derive(Debug)]
struct HypTable {
    addr: u64,
    layout: Layout,
}

impl HypTable {
    /// `len` bytes aligned to `align` (a page size), or `None` if the heap cannot provide them.
    fn new(len: u64, align: u64) -> Option<Self> {
        let layout =
            Layout::from_size_align(usize::try_from(len).ok()?, usize::try_from(align).ok()?)
                .ok()?;
        if layout.size() == 0 {
            return None;
        }
        // SAFETY: `layout` has a non-zero size.
        let p = unsafe { alloc_zeroed(layout) };
        (!p.is_null()).then(|| Self {
            addr: p as u64,
            layout,
        })
    }
}

impl Drop for HypTable {
    fn drop(&mut self) {
        // SAFETY: `addr` came from `alloc_zeroed(self.layout)` in `new` and is freed only here.
        unsafe { dealloc(self.addr as *mut u8, self.layout) }
    }
}

/// A table a `GITS_BASERn` holds.
#[derive(Debug)]
struct Table {
    mem: HypTable,
    /// Its `Type` field.
    kind: u64,
    /// Entries it holds.
    entries: u64,
}

/// A `GITS_BASERn` value's table: (physical address, page size, bytes).
fn baser_table(v: u64) -> (u64, u64, u64) {
    let (pa, page) = match (v >> 8) & 3 {
        0 => (v & 0xffff_ffff_f000, 4096),
        1 => (v & 0xffff_ffff_c000, 16384),
        _ => ((v & 0xffff_ffff_0000) | ((v >> 12) & 0xf) << 48, 65536),
    };
    (pa, page, ((v & 0xff) + 1) * page)
}

/// `v` with its address field set to `pa` (encoded for the page size `v` names).
fn baser_with_pa(v: u64, pa: u64) -> u64 {
    let field = match (v >> 8) & 3 {
        0 | 1 => pa & 0xffff_ffff_f000,
        _ => (pa & 0xffff_ffff_0000) | ((pa >> 48) & 0xf) << 12,
    };
    (v & !BASER_PA_FIELD) | field
}

/// A device with a live `MAPD`.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
struct Device {
    id: u32,
    itt: Pinned,
    /// EventIDs it has (2^(Size+1)).
    events: u64,
}

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

    fn write_cbaser(&self, st: &mut State, regs: &impl GicRegs, v: u64) -> Result<(), GicRefusal> {
        if !self.idle(regs) {
            return Err(GicRefusal::InUse("GITS_CBASER"));
        }
        let len = ((v & CBASER_SIZE_MASK) + 1) * 4096;
        let queue = if v & BASER_VALID != 0 {
            if len > SHADOW_QUEUE_BYTES as u64 {
                return Err(GicRefusal::Unsupported("GITS_CBASER (queue too large)", v));
            }
            let q = Pinned {
                pa: v & CBASER_PA_MASK,
                len,
            };
            self.pins.pin(self.own, "ITS command queue", q.pa, q.len)?;
            Some(q)
        } else {
            None
        };
        // Commands the ITS consumed release their pins; any it never will (a queue abandoned while disabled)
        // keep theirs for good, which is safe.
        let creadr = regs.read64(self.base + GITS_CREADR);
        self.release(st, creadr);
        st.retired.clear();
        if let Some(old) = st.queue.take() {
            self.pins.unpin(self.own, old.pa, old.len);
        }
        st.queue = queue;
        st.cbaser = v;
        st.cwriter = 0;
        let shadow_pa = st.shadow.as_ptr() as u64;
        let real = if queue.is_some() {
            BASER_VALID | shadow_pa | CBASER_ATTRS | (v & CBASER_SIZE_MASK)
        } else {
            0
        };
        regs.write64(self.base + GITS_CBASER, real);
        st.flush = regs.read64(self.base + GITS_CBASER) & CBASER_SHAREABILITY == 0;
        // Writing CBASER resets CREADR; CWRITER too, so that the ITS never replays old shadow entries.
        regs.write64(self.base + GITS_CWRITER, 0);
        Ok(())
    }

    fn write_baser(
        &self,
        st: &mut State,
        regs: &impl GicRegs,
        mem: &impl GicMemory,
        n: usize,
        v: u64,
    ) -> Result<(), GicRefusal> {
        let addr = self.base + GITS_BASER0 + 8 * n as u64;
        let old = regs.read64(addr);
        let kind = (old >> 56) & 7;
        if kind != BASER_TYPE_DEVICE && kind != BASER_TYPE_COLLECTION {
            // Unimplemented (type 0: RAZ/WI) or a vPE table (GICv4, not offered).
            return if kind == 0 {
                Ok(())
            } else {
                Err(GicRefusal::Unsupported("GITS_BASERn (vPE table)", v))
            };
        }
        if !self.idle(regs) {
            return Err(GicRefusal::InUse("GITS_BASERn"));
        }
        let v = v & !BASER_INDIRECT;
        if v & BASER_VALID == 0 {
            regs.write64(addr, v & !BASER_PA_FIELD);
            let now = regs.read64(addr);
            st.tables[n] = None;
            st.baser_host[n] = Some((now & !BASER_PA_FIELD) | (v & BASER_PA_FIELD));
            return Ok(());
        }
        let (pa, page, len) = baser_table(v);
        if len > MAX_TABLE_BYTES {
            return Err(GicRefusal::Unsupported("GITS_BASERn (table too large)", v));
        }
        // The host's table must be its own RAM, though the ITS never uses it.
        self.pins.check(self.own, "ITS table", pa, len)?;
        let table = HypTable::new(len, page)
            .ok_or(GicRefusal::Unsupported("GITS_BASERn (no hyp memory)", v))?;
        // The zeroes reach memory before the ITS may read the table without snooping caches.
        mem.clean_to_poc(table.addr, len);
        regs.write64(addr, baser_with_pa(v, table.addr));
        let now = regs.read64(addr);
        let (real_pa, real_page, real_len) = baser_table(now);
        if now & BASER_VALID == 0
            || now & BASER_INDIRECT != 0
            || real_len > len
            || real_pa != table.addr & !(real_page - 1)
            || table.addr % real_page != 0
        {
            regs.write64(addr, old);
            return Err(GicRefusal::Unsupported(
                "GITS_BASERn (value the ITS changed)",
                now,
            ));
        }
        st.tables[n] = Some(Table {
            entries: real_len / (((now >> 48) & 0x1f) + 1),
            mem: table,
            kind,
        });
        st.baser_host[n] = Some(baser_with_pa(now, pa));
        Ok(())
    }

    /// Commands between the real `creadr` and the shadow write offset, in the current queue.
    fn in_flight(st: &State, creadr: u64) -> u64 {
        let Some(q) = st.queue else { return 0 };
        let r = (creadr & QUEUE_OFFSET_MASK) % q.len;
        ((st.cwriter + q.len - r) % q.len) / CMD_SIZE
    }

    /// Releases the ITT pins of commands the ITS has consumed (`creadr` = the real `GITS_CREADR`).
    fn release(&self, st: &mut State, creadr: u64) {
        // Saturating: a CREADR the ITS moved oddly must release nothing early, never underflow.
        let consumed = st.submitted.saturating_sub(Self::in_flight(st, creadr));
        st.retired.retain(|&(seq, p)| {
            if seq < consumed {
                self.pins.unpin(self.own, p.pa, p.len);
                false
            } else {
                true
            }
        });
    }

    fn write_cwriter(
        &self,
        st: &mut State,
        regs: &impl GicRegs,
        mem: &impl GicMemory,
        rd: &RdEmulator<'_>,
        v: u64,
        report: &mut dyn FnMut(GicRefusal),
    ) {
        let Some(q) = st.queue else {
            report(GicRefusal::Cwriter(v));
            return;
        };
        let new = v & QUEUE_OFFSET_MASK;
        if new >= q.len {
            report(GicRefusal::Cwriter(v));
            return;
        }
        let creadr = regs.read64(self.base + GITS_CREADR);
        self.release(st, creadr);
        let n = ((new + q.len - st.cwriter) % q.len) / CMD_SIZE;
        // At most len / 32 - 1 commands may be outstanding (a full queue has CWRITER one behind CREADR).
        if Self::in_flight(st, creadr) + n >= q.len / CMD_SIZE {
            report(GicRefusal::Cwriter(v));
            return;
        }
        for _ in 0..n {
            let off = st.cwriter;
            let mut cmd = [0u64; 4];
            for (i, d) in cmd.iter_mut().enumerate() {
                *d = mem.read_host_u64(q.pa + off + 8 * i as u64);
            }
            let seq = st.submitted;
            let checked = match self.check(st, rd, cmd, seq) {
                Ok(()) => cmd,
                Err(why) => {
                    report(GicRefusal::Command {
                        opcode: cmd[0] as u8,
                        offset: off,
                        why,
                    });
                    self.harmless(rd)
                }
            };
            let page = &mut st.shadow[(off / 4096) as usize];
            let slot = ((off % 4096) / 8) as usize;
            page.0[slot..slot + 4].copy_from_slice(&checked);
            if st.flush {
                mem.clean_to_poc(page.0[slot..].as_ptr() as u64, CMD_SIZE);
            }
            st.submitted += 1;
            st.cwriter = (off + CMD_SIZE) % q.len;
        }
        regs.write64(self.base + GITS_CWRITER, new | (v & CWRITER_RETRY));
    }

    /// The command written instead of a refused one: `SYNC` to the first redistributor with LPIs enabled
    /// (the first redistributor if none has them yet: a `SYNC` gives it nothing to do).
    fn harmless(&self, rd: &RdEmulator<'_>) -> [u64; 4] {
        let i = (0..self.redistributors.len())
            .find(|&i| rd.lpis_enabled(i))
            .unwrap_or(0);
        // RDbase (bits 50:16): the RD_base address, or the processor number.
        let target = if self.params.pta {
            self.redistributors.get(i).copied().unwrap_or(0) & !0xffff
        } else {
            (i as u64) << 16
        };
        [u64::from(opcode::SYNC), 0, target, 0]
    }

    fn table_entries(st: &State, kind: u64) -> u64 {
        st.tables
            .iter()
            .flatten()
            .find(|t| t.kind == kind)
            .map_or(0, |t| t.entries)
    }

    fn check_device(&self, st: &State, id: u32) -> Result<(), &'static str> {
        if self.params.dev_bits < 32 && u64::from(id) >> self.params.dev_bits != 0 {
            return Err("DeviceID beyond GITS_TYPER.Devbits");
        }
        if u64::from(id) >= Self::table_entries(st, BASER_TYPE_DEVICE) {
            return Err("DeviceID beyond the device table");
        }
        Ok(())
    }

    fn check_icid(&self, st: &State, icid: u64) -> Result<(), &'static str> {
        if icid >> self.params.cid_bits != 0 {
            return Err("ICID beyond GITS_TYPER.CIDbits");
        }
        if icid >= self.params.hcc && icid >= Self::table_entries(st, BASER_TYPE_COLLECTION) {
            return Err("ICID beyond the collection table");
        }
        Ok(())
    }

    /// Checks the RDbase field (bits 50:16) of a command doubleword: it must name a redistributor whose LPIs
    /// are enabled with checked, pinned tables ([`RdEmulator::lpis_enabled`]; `EnableLPIs` is sticky, so
    /// it stays a valid target).
    fn check_target(&self, rd: &RdEmulator<'_>, dw: u64) -> Result<(), &'static str> {
        let field = (dw >> 16) & ((1 << 35) - 1);
        let i = if self.params.pta {
            self.redistributors.iter().position(|&r| r == field << 16)
        } else {
            usize::try_from(field)
                .ok()
                .filter(|&i| i < self.redistributors.len())
        }
        .ok_or("target is not a redistributor")?;
        if rd.lpis_enabled(i) {
            Ok(())
        } else {
            Err("target redistributor has LPIs disabled")
        }
    }

    /// The mapped device `id` and the EventID check.
    fn check_event(&self, st: &State, id: u32, event: u64) -> Result<(), &'static str> {
        let d = st
            .devices
            .iter()
            .find(|d| d.id == id)
            .ok_or("device not mapped")?;
        if event >= d.events {
            return Err("EventID beyond the device's ITT");
        }
        Ok(())
    }

    /// Checks one command and applies its effect on the tracked state (device map, ITT pins).
    fn check(
        &self,
        st: &mut State,
        rd: &RdEmulator<'_>,
        cmd: [u64; 4],
        seq: u64,
    ) -> Result<(), &'static str> {
        let op = cmd[0] as u8;
        let dev = (cmd[0] >> 32) as u32;
        let event = cmd[1] & 0xffff_ffff;
        let icid = cmd[2] & 0xffff;
        match op {
            opcode::MAPD => {
                self.check_device(st, dev)?;
                let old = st.devices.iter().position(|d| d.id == dev);
                let new = if cmd[2] & (1 << 63) != 0 {
                    let size = (cmd[1] & 0x1f) as u32 + 1;
                    if size > self.params.id_bits {
                        return Err("MAPD Size beyond GITS_TYPER.IDbits");
                    }
                    let events = 1u64 << size;
                    let itt = Pinned {
                        pa: cmd[2] & ((1 << 52) - 1) & !0xff,
                        len: events * self.params.itt_entry_size,
                    };
                    if old.is_none() && st.devices.len() >= MAX_DEVICES {
                        return Err("too many devices");
                    }
                    self.pins
                        .pin(self.own, "ITT", itt.pa, itt.len)
                        .map_err(|_| "MAPD ITT is not host-owned RAM")?;
                    Some(Device {
                        id: dev,
                        itt,
                        events,
                    })
                } else {
                    None
                };
                if let Some(i) = old {
                    let d = st.devices.swap_remove(i);
                    st.retired.push((seq, d.itt));
                }
                if let Some(d) = new {
                    st.devices.push(d);
                }
                Ok(())
            }
            opcode::MAPC => {
                self.check_icid(st, icid)?;
                if cmd[2] & (1 << 63) != 0 {
                    self.check_target(rd, cmd[2])?;
                }
                Ok(())
            }
            opcode::MAPTI | opcode::MAPI => {
                self.check_event(st, dev, event)?;
                self.check_icid(st, icid)?;
                if op == opcode::MAPTI {
                    let lpi = cmd[1] >> 32;
                    if lpi < FIRST_LPI || lpi >> self.lpi_bits != 0 {
                        return Err("pINTID is not an LPI");
                    }
                } else if event < FIRST_LPI || event >> self.lpi_bits != 0 {
                    return Err("MAPI EventID is not an LPI");
                }
                Ok(())
            }
            opcode::MOVI => {
                self.check_event(st, dev, event)?;
                self.check_icid(st, icid)
            }
            opcode::DISCARD | opcode::INV | opcode::INT | opcode::CLEAR => {
                self.check_event(st, dev, event)
            }
            opcode::INVALL => self.check_icid(st, icid),
            opcode::SYNC => self.check_target(rd, cmd[2]),
            opcode::MOVALL => {
                self.check_target(rd, cmd[2])?;
                self.check_target(rd, cmd[3])
            }
            _ => Err("unknown or unsupported opcode"),
        }
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
