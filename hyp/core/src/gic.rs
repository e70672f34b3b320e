//! The GICv3 frames the hypervisor keeps from the host: the ITS control frame and each redistributor's
//! RD_base frame (plus the VLPI frame when the GIC has one). Everything that makes the GIC write memory —
//! the ITS command queue and tables, the redistributors' LPI property and pending tables — is programmed
//! there, so the host reaches those registers only through the emulators here:
//!
//! - [`its::ItsEmulator`]: table bases (`GITS_BASERn`) checked and pinned, flat tables only; the host's
//!   command queue shadowed by one in hyp memory that the real ITS reads, each command copied once, checked
//!   and rewritten into it (or replaced by a harmless `SYNC`) when the host writes `GITS_CWRITER`.
//! - [`rd::RdEmulator`]: `GICR_PROPBASER`/`GICR_PENDBASER` checked when written, checked again and pinned
//!   when the host sets `GICR_CTLR.EnableLPIs`; ignored while LPIs are enabled; VLPI frames read as zero. The
//!   ITS emulator passes no command aimed at a redistributor whose LPIs are not enabled.
//!
//! A host access to a trapped frame arrives as a host stage-2 data abort; [`MmioAccess::decode`] turns its
//! syndrome into an access (as KVM's MMIO emulation does), the emulator answers it, and the EL2 shell writes
//! a load's result to the register and steps over the instruction. The SGI_base frames (SGI/PPI registers
//! Linux touches on every interrupt) and the ITS translation frame (the MSI doorbell) stay mapped.
//!
//! "Pinned" means one DMA count on each page ([`crate::ownership::Ownership::inc_range`]): the page stays
//! host-owned RAM, and donation refuses it while the GIC may use it.
//!
//! Both emulators work on the real registers through [`GicRegs`] (inline asm at EL2, a behavioural fake in
//! the tests).

pub mod its;
pub mod rd;

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::ownership::{MemKind, Ownership, OwnershipError};
use crate::trap::esr::{
    EC_DABT_LOW, ESR_EC_SHIFT, ESR_IL, ESR_ISV, ESR_S1PTW, ESR_SAS_SHIFT, ESR_SF, ESR_SRT_SHIFT,
    ESR_SSE, ESR_WNR,
};
use warden_abi::PAGE_SIZE;
use warden_dt::PhysRange;

/// Size of one GIC register frame (ITS control and translation frames, redistributor frames).
pub const FRAME_SIZE: u64 = 0x1_0000;
/// Redistributor stride without VLPIs (RD_base + SGI_base).
pub const GICR_STRIDE: u64 = 2 * FRAME_SIZE;
/// Redistributor stride with VLPIs (RD_base + SGI_base + VLPI_base + reserved).
pub const GICR_STRIDE_VLPI: u64 = 4 * FRAME_SIZE;
/// Offset of the VLPI frame from RD_base when the redistributor has VLPIs.
pub const GICR_VLPI_OFFSET: u64 = 2 * FRAME_SIZE;
/// `GICR_TYPER` (RD_base offset, 64-bit).
pub const GICR_TYPER: u64 = 0x0008;
/// `GICR_TYPER.VLPIS`: the redistributor supports virtual LPIs.
pub const GICR_TYPER_VLPIS: u64 = 1 << 1;
/// `GICR_TYPER.Last`: the last redistributor of its region.
pub const GICR_TYPER_LAST: u64 = 1 << 4;
/// Most redistributors probed per region (bounds the walk if `Last` is never set).
pub const MAX_REDISTRIBUTORS: usize = 512;
/// Start of the identification registers (`GITS_PIDR4` .. `GITS_CIDR3`, `GICR_PIDR4` ..), read through.
pub const ID_REGS_START: u64 = 0xffd0;

/// Access to the real GIC registers, by physical address.
pub trait GicRegs {
    /// 32-bit read.
    fn read32(&self, pa: u64) -> u32;
    /// 32-bit write.
    fn write32(&self, pa: u64, value: u32);
    /// 64-bit read.
    fn read64(&self, pa: u64) -> u64;
    /// 64-bit write.
    fn write64(&self, pa: u64, value: u64);
}

/// Memory the ITS emulator reads and writes besides registers.
pub trait GicMemory {
    /// Reads the 8 bytes of host RAM at `pa` (8-byte aligned, inside a pinned command queue).
    fn read_host_u64(&self, pa: u64) -> u64;
    /// Makes `[va, va + len)` of hyp memory (the shadow queue) visible to a non-coherent ITS.
    fn clean_to_poc(&self, va: u64, len: u64);
}

/// Why the emulators refused a host request (logged by the EL2 shell, counted in `STAT GIC_REFUSED`).
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
pub enum GicRefusal {
    /// A table or queue names memory that is not host-owned RAM (or cannot be pinned).
    #[error("{what} at {pa:#x} (+{len:#x}) is not host-owned RAM: {err}")]
    NotHostRam {
        /// Which table.
        what: &'static str,
        /// Its base.
        pa: u64,
        /// Its length in bytes.
        len: u64,
        /// The first page's problem.
        err: OwnershipError,
    },
    /// A register write that is only accepted while the ITS is disabled and quiescent, or LPIs disabled.
    #[error("{0} written while in use: ignored")]
    InUse(&'static str),
    /// A table or queue register with an unsupported layout (indirect, too large, wrong type).
    #[error("{0}: unsupported value {1:#x}")]
    Unsupported(&'static str, u64),
    /// An ITS command the emulator does not pass (unknown opcode or a field out of range).
    #[error("ITS command {opcode:#04x} at queue offset {offset:#x} refused: {why}")]
    Command {
        /// The opcode.
        opcode: u8,
        /// Its offset in the queue.
        offset: u64,
        /// What was wrong.
        why: &'static str,
    },
    /// A `GITS_CWRITER` beyond the queue or past what the ITS has consumed.
    #[error("GITS_CWRITER {0:#x} refused (outside the queue or overrunning GITS_CREADR)")]
    Cwriter(u64),
    /// An access to a register the emulator refuses (VLPI registers).
    #[error("{0} refused")]
    Register(&'static str),
}

impl GicRefusal {
    /// What was refused, without the values: the table, register or command kind (the EL2 shell logs the
    /// first refusal of each kind even after its overall log budget is spent).
    pub fn kind(&self) -> &'static str {
        match *self {
            Self::NotHostRam { what, .. } => what,
            Self::InUse(what) | Self::Unsupported(what, _) | Self::Register(what) => what,
            Self::Command { why, .. } => why,
            Self::Cwriter(_) => "GITS_CWRITER",
        }
    }
}

/// The pins one emulator holds: each a DMA count on every page of a range
/// ([`Ownership::inc_range`]), so the pages stay host RAM and donation refuses them; counted here so that
/// `STAT MAPPED_PAGES` can leave them out (it counts DMA mappings).
#[derive(Debug, Default)]
pub struct Pins(AtomicU64);

impl Pins {
    /// Pins `[pa, pa + len)` (whole pages).
    ///
    /// # Errors
    ///
    /// [`GicRefusal::NotHostRam`] if any page is not host-owned RAM; nothing changes then.
    pub fn pin(
        &self,
        own: &Ownership,
        what: &'static str,
        pa: u64,
        len: u64,
    ) -> Result<(), GicRefusal> {
        let (base, pages) = page_span(pa, len).ok_or(GicRefusal::NotHostRam {
            what,
            pa,
            len,
            err: OwnershipError::BadRange(pa),
        })?;
        own.inc_range(base, pages, MemKind::Ram)
            .map_err(|err| GicRefusal::NotHostRam { what, pa, len, err })?;
        self.0.fetch_add(pages, Ordering::Relaxed);
        Ok(())
    }

    /// Releases a pin taken by [`Self::pin`] with the same range.
    pub fn unpin(&self, own: &Ownership, pa: u64, len: u64) {
        if let Some((base, pages)) = page_span(pa, len) {
            // A failure would be a broken invariant (a pin released twice); the counts stay as they are.
            if own.dec_range(base, pages).is_ok() {
                self.0.fetch_sub(pages, Ordering::Relaxed);
            }
        }
    }

    /// Checks that `[pa, pa + len)` is host-owned RAM now, without keeping a pin.
    ///
    /// # Errors
    ///
    /// As [`Self::pin`].
    pub fn check(
        &self,
        own: &Ownership,
        what: &'static str,
        pa: u64,
        len: u64,
    ) -> Result<(), GicRefusal> {
        self.pin(own, what, pa, len)?;
        self.unpin(own, pa, len);
        Ok(())
    }

    /// Pages pinned (a page pinned twice counts twice, as DMA counts do).
    pub fn pages(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The pages covering `[pa, pa + len)`: (first page, count); `None` for an empty or wrapping range.
fn page_span(pa: u64, len: u64) -> Option<(u64, u64)> {
    if len == 0 {
        return None;
    }
    let end = pa.checked_add(len)?.checked_add(PAGE_SIZE - 1)? & !(PAGE_SIZE - 1);
    let base = pa & !(PAGE_SIZE - 1);
    Some((base, (end - base) / PAGE_SIZE))
}

/// Where the trapped GIC frames are, found at boot.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct GicLayout {
    /// Base of each ITS (its control frame; the translation frame follows at +64 KiB).
    pub its: Vec<u64>,
    /// RD_base of each redistributor present, in `GICR_TYPER` walk order.
    pub redistributors: Vec<u64>,
    /// Whether the redistributors have VLPI frames (`GICR_TYPER.VLPIS`).
    pub vlpis: bool,
}

impl GicLayout {
    /// Walks each redistributor region of `gic` as Linux does: read `GICR_TYPER`, step by 128 KiB (256 KiB
    /// with VLPIs) until `Last`, the end of the region, or [`MAX_REDISTRIBUTORS`]. The regions must be
    /// mapped for `regs`.
    pub fn probe(gic: &warden_dt::GicV3, regs: &impl GicRegs) -> Self {
        let mut layout = Self {
            its: gic.its.iter().map(|i| i.reg.base).collect(),
            ..Self::default()
        };
        for region in &gic.redistributors {
            let end = region.base.saturating_add(region.size);
            let mut rd = region.base;
            for _ in 0..MAX_REDISTRIBUTORS {
                if rd.saturating_add(GICR_STRIDE) > end {
                    break;
                }
                let typer = regs.read64(rd + GICR_TYPER);
                layout.redistributors.push(rd);
                let stride = if typer & GICR_TYPER_VLPIS != 0 {
                    layout.vlpis = true;
                    GICR_STRIDE_VLPI
                } else {
                    GICR_STRIDE
                };
                if typer & GICR_TYPER_LAST != 0 {
                    break;
                }
                rd += stride;
            }
        }
        layout
    }

    /// The frames the host stage-2 must not map: each ITS control frame, each RD_base frame and, with VLPIs,
    /// each VLPI frame. Add them to the host stage-2's excluded list.
    pub fn trapped_frames(&self) -> Vec<PhysRange> {
        let mut v: Vec<PhysRange> = self
            .its
            .iter()
            .map(|&b| PhysRange {
                base: b,
                size: FRAME_SIZE,
            })
            .collect();
        for &rd in &self.redistributors {
            v.push(PhysRange {
                base: rd,
                size: FRAME_SIZE,
            });
            if self.vlpis {
                v.push(PhysRange {
                    base: rd + GICR_VLPI_OFFSET,
                    size: FRAME_SIZE,
                });
            }
        }
        v
    }
}

/// One host load or store, decoded from a data abort's syndrome.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct MmioAccess {
    /// The physical address accessed.
    pub pa: u64,
    /// A store (else a load).
    pub write: bool,
    /// Bytes accessed: 1, 2, 4 or 8.
    pub size: u8,
    /// The transfer register (31 = xzr for a store; a load to 31 is discarded).
    pub reg: u8,
    /// A load sign-extends to the register width.
    pub sign_extend: bool,
    /// The register is 64 bits wide (else 32: the upper half is zeroed).
    pub sf: bool,
    /// Bytes of the instruction to step over once the access is emulated: 4, or 2 for a 16-bit T32
    /// instruction (`ESR.IL` = 0, an AArch32 EL0 process in Thumb state).
    pub insn_len: u8,
}

impl MmioAccess {
    /// Decodes a lower-EL data abort at `ipa`. `None` when the syndrome does not describe the access
    /// (`ISV` = 0: load/store pair, writeback, SIMD, ...), for a stage-1 walk, or for another exception
    /// class: the caller injects an external abort.
    pub fn decode(esr: u64, ipa: u64) -> Option<Self> {
        if (esr >> ESR_EC_SHIFT) & 0x3f != EC_DABT_LOW || esr & ESR_ISV == 0 || esr & ESR_S1PTW != 0
        {
            return None;
        }
        Some(Self {
            pa: ipa,
            write: esr & ESR_WNR != 0,
            size: 1 << ((esr >> ESR_SAS_SHIFT) & 3),
            reg: ((esr >> ESR_SRT_SHIFT) & 0x1f) as u8,
            sign_extend: esr & ESR_SSE != 0,
            sf: esr & ESR_SF != 0,
            insn_len: if esr & ESR_IL != 0 { 4 } else { 2 },
        })
    }

    /// The value a store writes, from the host's general registers `x` (x0..x30): xzr reads as 0, and only
    /// the accessed bytes count.
    pub fn store_value(&self, x: &[u64; 31]) -> u64 {
        let v = x.get(usize::from(self.reg)).copied().unwrap_or(0);
        v & self.mask()
    }

    /// What a load puts in the register: `value` truncated to the access size, sign- or zero-extended, and
    /// limited to 32 bits for a W register.
    pub fn load_result(&self, value: u64) -> u64 {
        let bits = u32::from(self.size) * 8;
        let mut v = value & self.mask();
        if self.sign_extend && bits < 64 && v >> (bits - 1) & 1 != 0 {
            v |= !self.mask();
        }
        if !self.sf {
            v &= u64::from(u32::MAX);
        }
        v
    }

    fn mask(&self) -> u64 {
        match self.size {
            8 => u64::MAX,
            n => (1u64 << (u32::from(n) * 8)) - 1,
        }
    }
}

/// A 32- or 64-bit access to a register file where 64-bit registers may also be accessed as two 32-bit
/// halves (GICv3 ITS and redistributor frames).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum RegAccess {
    /// A read of `size` bytes at frame offset `off`.
    Read {
        /// Frame offset.
        off: u64,
        /// 4 or 8.
        size: u8,
    },
    /// A write.
    Write {
        /// Frame offset.
        off: u64,
        /// 4 or 8.
        size: u8,
        /// The value (32 bits for a 4-byte write).
        value: u64,
    },
}

/// Merges a 32-bit write at `off` into the 64-bit register at `reg` whose current value is `old`; a
/// 64-bit write replaces it.
pub fn merge64(old: u64, reg: u64, off: u64, size: u8, value: u64) -> u64 {
    match (size, off - reg) {
        (8, _) => value,
        (_, 0) => (old & !0xffff_ffff) | (value & 0xffff_ffff),
        _ => (old & 0xffff_ffff) | (value << 32),
    }
}

/// The part of the 64-bit `value` of the register at `reg` a `size`-byte read at `off` returns.
pub fn extract64(value: u64, reg: u64, off: u64, size: u8) -> u64 {
    match (size, off - reg) {
        (8, _) => value,
        (_, 0) => value & 0xffff_ffff,
        _ => value >> 32,
    }
}

/// A behavioural fake of GIC registers and host memory for the emulators' tests.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::{GicMemory, GicRegs};
    use crate::ownership::Ownership;
    use core::cell::RefCell;
    use std::collections::HashMap;
    use warden_dt::PhysRange;

    /// Registers as a map of 32-bit words (64-bit accesses are two words), host memory as a map of
    /// doublewords; every register write is logged.
    #[derive(Default)]
    pub struct FakeGic {
        words: RefCell<HashMap<u64, u32>>,
        writes: RefCell<Vec<(u64, u64)>>,
        /// Host RAM contents.
        pub ram: RefCell<HashMap<u64, u64>>,
    }

    impl FakeGic {
        pub fn get32(&self, pa: u64) -> u32 {
            self.words.borrow().get(&pa).copied().unwrap_or(0)
        }
        pub fn set32(&self, pa: u64, v: u32) {
            self.words.borrow_mut().insert(pa, v);
        }
        pub fn get64(&self, pa: u64) -> u64 {
            u64::from(self.get32(pa)) | (u64::from(self.get32(pa + 4)) << 32)
        }
        pub fn set64(&self, pa: u64, v: u64) {
            self.set32(pa, v as u32);
            self.set32(pa + 4, (v >> 32) as u32);
        }
        pub fn writes_to(&self, pa: u64) -> usize {
            self.writes
                .borrow()
                .iter()
                .filter(|(a, _)| *a == pa)
                .count()
        }
        pub fn write_host(&self, pa: u64, cmd: [u64; 4]) {
            for (i, d) in cmd.iter().enumerate() {
                self.ram.borrow_mut().insert(pa + 8 * i as u64, *d);
            }
        }
    }

    impl GicRegs for FakeGic {
        fn read32(&self, pa: u64) -> u32 {
            self.get32(pa)
        }
        fn write32(&self, pa: u64, value: u32) {
            self.writes.borrow_mut().push((pa, u64::from(value)));
            self.set32(pa, value);
        }
        fn read64(&self, pa: u64) -> u64 {
            self.get64(pa)
        }
        fn write64(&self, pa: u64, value: u64) {
            self.writes.borrow_mut().push((pa, value));
            self.set64(pa, value);
        }
    }

    impl GicMemory for FakeGic {
        fn read_host_u64(&self, pa: u64) -> u64 {
            self.ram.borrow().get(&pa).copied().unwrap_or(0)
        }
        fn clean_to_poc(&self, _: u64, _: u64) {}
    }

    /// 16 MiB of RAM at 1 GiB, the first 2 MiB the hyp's (a carve-out), and the ITS doorbell frame.
    pub fn ownership() -> Ownership {
        Ownership::new(
            &[PhysRange {
                base: 0x4000_0000,
                size: 0x100_0000,
            }],
            &[PhysRange {
                base: 0x0809_0000,
                size: 0x1_0000,
            }],
            &[PhysRange {
                base: 0x4000_0000,
                size: 0x20_0000,
            }],
        )
        .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ownership::PageState;
    use warden_dt::PhysRange;

    /// ESR of a data abort from EL1 with a valid syndrome.
    pub(crate) fn esr(write: bool, sas: u64, srt: u64, sse: bool, sf: bool) -> u64 {
        (EC_DABT_LOW << ESR_EC_SHIFT)
            | ESR_ISV
            | (sas << ESR_SAS_SHIFT)
            | (srt << ESR_SRT_SHIFT)
            | if sse { ESR_SSE } else { 0 }
            | if sf { ESR_SF } else { 0 }
            | if write { ESR_WNR } else { 0 }
            | ESR_IL
            | 0x06
    }

    #[test]
    fn decode_store_and_load() {
        let a = MmioAccess::decode(esr(true, 3, 5, false, true), 0x0808_0088).unwrap();
        assert_eq!(
            a,
            MmioAccess {
                pa: 0x0808_0088,
                write: true,
                size: 8,
                reg: 5,
                sign_extend: false,
                sf: true,
                insn_len: 4,
            }
        );
        // A 16-bit T32 load (an AArch32 process in Thumb state): step over 2 bytes, not 4.
        let t = MmioAccess::decode(esr(false, 2, 1, false, false) & !ESR_IL, 0x0808_0000).unwrap();
        assert_eq!(t.insn_len, 2);
        let mut x = [0u64; 31];
        x[5] = 0x1234_5678_9abc_def0;
        assert_eq!(a.store_value(&x), 0x1234_5678_9abc_def0);
        // A 32-bit store of w5 writes the low word only.
        let w = MmioAccess::decode(esr(true, 2, 5, false, false), 0x0808_0088).unwrap();
        assert_eq!(w.store_value(&x), 0x9abc_def0);
        // xzr (31) stores zero.
        let z = MmioAccess::decode(esr(true, 2, 31, false, false), 0x0808_0088).unwrap();
        assert_eq!(z.reg, 31);
        assert_eq!(z.store_value(&x), 0);
    }

    #[test]
    fn load_extension() {
        // ldrsb x0: sign-extends to 64 bits.
        let a = MmioAccess::decode(esr(false, 0, 0, true, true), 0).unwrap();
        assert_eq!(a.load_result(0x80), 0xffff_ffff_ffff_ff80);
        // ldrsh w0: sign-extends to 32 bits, upper half zero.
        let a = MmioAccess::decode(esr(false, 1, 0, true, false), 0).unwrap();
        assert_eq!(a.load_result(0x1_8000), 0xffff_8000);
        // ldr w0: zero-extends, truncates.
        let a = MmioAccess::decode(esr(false, 2, 0, false, false), 0).unwrap();
        assert_eq!(a.load_result(0x1_8000_0000), 0x8000_0000);
        // ldr x0.
        let a = MmioAccess::decode(esr(false, 3, 0, false, true), 0).unwrap();
        assert_eq!(a.load_result(u64::MAX), u64::MAX);
    }

    #[test]
    fn decode_refuses_what_it_cannot_emulate() {
        // ISV = 0 (e.g. ldp).
        assert_eq!(
            MmioAccess::decode(esr(true, 2, 0, false, false) & !ESR_ISV, 0),
            None
        );
        // A fault on the host's stage-1 walk.
        assert_eq!(
            MmioAccess::decode(esr(false, 2, 0, false, false) | ESR_S1PTW, 0),
            None
        );
        // An instruction abort.
        assert_eq!(MmioAccess::decode(0x20 << ESR_EC_SHIFT | ESR_ISV, 0), None);
    }

    #[test]
    fn halves_of_64_bit_registers() {
        assert_eq!(
            merge64(0x1111_2222_3333_4444, 0x88, 0x88, 4, 0xaaaa_bbbb),
            0x1111_2222_aaaa_bbbb
        );
        assert_eq!(
            merge64(0x1111_2222_3333_4444, 0x88, 0x8c, 4, 0xaaaa_bbbb),
            0xaaaa_bbbb_3333_4444
        );
        assert_eq!(merge64(1, 0x88, 0x88, 8, 7), 7);
        assert_eq!(extract64(0x1111_2222_3333_4444, 0x88, 0x8c, 4), 0x1111_2222);
        assert_eq!(extract64(0x1111_2222_3333_4444, 0x88, 0x88, 4), 0x3333_4444);
    }

    struct TyperRegs(Vec<(u64, u64)>);
    impl GicRegs for TyperRegs {
        fn read32(&self, _: u64) -> u32 {
            0
        }
        fn write32(&self, _: u64, _: u32) {}
        fn read64(&self, pa: u64) -> u64 {
            self.0.iter().find(|(a, _)| *a == pa).map_or(0, |(_, v)| *v)
        }
        fn write64(&self, _: u64, _: u64) {}
    }

    fn gic() -> warden_dt::GicV3 {
        warden_dt::GicV3 {
            path: "/intc@8000000".into(),
            phandle: None,
            distributor: PhysRange {
                base: 0x0800_0000,
                size: 0x1_0000,
            },
            redistributors: alloc::vec![PhysRange {
                base: 0x080a_0000,
                size: 0xf6_0000
            }],
            cpu_interfaces: Vec::new(),
            its: alloc::vec![warden_dt::GicIts {
                path: "/intc@8000000/its@8080000".into(),
                phandle: None,
                reg: PhysRange {
                    base: 0x0808_0000,
                    size: 0x2_0000
                },
            }],
        }
    }

    #[test]
    fn probe_stops_at_last_and_traps_rd_base_only() {
        // QEMU virt with 2 CPUs: the second redistributor says Last.
        let regs = TyperRegs(alloc::vec![(0x080c_0008, GICR_TYPER_LAST | (1 << 8))]);
        let l = GicLayout::probe(&gic(), &regs);
        assert_eq!(l.redistributors, [0x080a_0000, 0x080c_0000]);
        assert!(!l.vlpis);
        assert_eq!(
            l.trapped_frames(),
            [
                PhysRange {
                    base: 0x0808_0000,
                    size: FRAME_SIZE
                },
                PhysRange {
                    base: 0x080a_0000,
                    size: FRAME_SIZE
                },
                PhysRange {
                    base: 0x080c_0000,
                    size: FRAME_SIZE
                },
            ]
        );
        // With VLPIs: 256 KiB stride, the VLPI frame trapped too.
        let regs = TyperRegs(alloc::vec![
            (0x080a_0008, GICR_TYPER_VLPIS),
            (0x080e_0008, GICR_TYPER_VLPIS | GICR_TYPER_LAST)
        ]);
        let l = GicLayout::probe(&gic(), &regs);
        assert_eq!(l.redistributors, [0x080a_0000, 0x080e_0000]);
        assert!(l.trapped_frames().contains(&PhysRange {
            base: 0x0810_0000,
            size: FRAME_SIZE
        }));
        // Never past the region, even without Last.
        let l = GicLayout::probe(&gic(), &TyperRegs(Vec::new()));
        assert_eq!(l.redistributors.len(), 0xf6_0000 / GICR_STRIDE as usize);
    }

    #[test]
    fn pins_are_dma_counts_and_block_donation() {
        let own = Ownership::new(
            &[PhysRange {
                base: 0x4000_0000,
                size: 0x40_0000,
            }],
            &[],
            &[PhysRange {
                base: 0x4000_0000,
                size: 0x10_0000,
            }],
        )
        .unwrap();
        let pins = Pins::default();
        // 4 KiB from 0x4020_0100: two pages.
        pins.pin(&own, "t", 0x4020_0100, 0x1000).unwrap();
        assert_eq!(pins.pages(), 2);
        assert_eq!(
            own.state(0x4020_1000),
            PageState::Host {
                kind: MemKind::Ram,
                count: 1
            }
        );
        assert!(own.donate_range(0x4020_0000, 1).is_err());
        // Into the hyp's memory: refused, nothing pinned.
        assert!(matches!(
            pins.pin(&own, "t", 0x400f_f000, 0x2000),
            Err(GicRefusal::NotHostRam { .. })
        ));
        assert_eq!(
            own.state(0x4010_0000),
            PageState::Host {
                kind: MemKind::Ram,
                count: 0
            }
        );
        assert_eq!(pins.pages(), 2);
        pins.unpin(&own, 0x4020_0100, 0x1000);
        assert_eq!(pins.pages(), 0);
        own.donate_range(0x4020_0000, 2).unwrap();
    }
}
