//! The command queue: `GITS_CBASER` and `GITS_CWRITER` writes, and the check of each command.

use super::pins::{Device, Pinned};
use super::registers::*;
use super::{
    CMD_SIZE, FIRST_LPI, GicMemory, GicRefusal, GicRegs, ItsEmulator, MAX_DEVICES, RdEmulator,
    SHADOW_QUEUE_BYTES, State,
};

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

impl ItsEmulator<'_> {
    pub(super) fn write_cbaser(
        &self,
        st: &mut State,
        regs: &impl GicRegs,
        v: u64,
    ) -> Result<(), GicRefusal> {
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

    /// Commands between the real `creadr` and the shadow write offset, in the current queue.
    pub(super) fn in_flight(st: &State, creadr: u64) -> u64 {
        let Some(q) = st.queue else { return 0 };
        let r = (creadr & QUEUE_OFFSET_MASK) % q.len;
        ((st.cwriter + q.len - r) % q.len) / CMD_SIZE
    }

    pub(super) fn write_cwriter(
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
    pub(super) fn harmless(&self, rd: &RdEmulator<'_>) -> [u64; 4] {
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

    pub(super) fn check_device(&self, st: &State, id: u32) -> Result<(), &'static str> {
        if self.params.dev_bits < 32 && u64::from(id) >> self.params.dev_bits != 0 {
            return Err("DeviceID beyond GITS_TYPER.Devbits");
        }
        if u64::from(id) >= Self::table_entries(st, BASER_TYPE_DEVICE) {
            return Err("DeviceID beyond the device table");
        }
        Ok(())
    }

    pub(super) fn check_icid(&self, st: &State, icid: u64) -> Result<(), &'static str> {
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
    pub(super) fn check_target(&self, rd: &RdEmulator<'_>, dw: u64) -> Result<(), &'static str> {
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
    pub(super) fn check_event(&self, st: &State, id: u32, event: u64) -> Result<(), &'static str> {
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
    pub(super) fn check(
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
}
