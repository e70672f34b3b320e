//! The GIC emulation's EL2 shell (logic in `warden_core::gic`): the real registers through inline asm, the
//! host's trapped accesses decoded from the stage-2 abort and answered, refusals logged (the first
//! [`REFUSALS_LOGGED`], then the first of each [`GicRefusal::kind`]) and counted for `STAT GIC_REFUSED`.
//!
//! Boot order: [`el2_frames`] (EL2 stage-1 device mappings), [`probe`] once the stage-1 is on (its
//! [`GicLayout::trapped_frames`] go to the host stage-2's excluded list), [`install`] once the dispatcher
//! (and with it the ownership map) exists.

use alloc::vec::Vec;
use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};
use spin::Once;
use warden_core::gic::its::ItsEmulator;
use warden_core::gic::rd::RdEmulator;
use warden_core::gic::{GicLayout, GicMemory, GicRefusal, GicRegs, MmioAccess, RegAccess};
use warden_core::ownership::Ownership;
use warden_dt::PhysRange;
use warden_dt::Platform;

use crate::vectors::TrapFrame;
use crate::{log, mmio, mmu};

/// `GICD_TYPER`.
const GICD_TYPER: u64 = 0x0004;
/// Refusals logged; the rest are only counted.
const REFUSALS_LOGGED: u64 = 32;

/// Refusal kinds ([`GicRefusal::kind`]) remembered so that each is logged once past [`REFUSALS_LOGGED`].
const KINDS_LOGGED: usize = 64;

/// The refusal kinds logged so far.
static LOGGED_KINDS: spin::Mutex<Vec<&'static str>> = spin::Mutex::new(Vec::new());

/// Host requests the emulators refused (`STAT GIC_REFUSED`).
static REFUSED: AtomicU64 = AtomicU64::new(0);

struct Emulators {
    its: Vec<ItsEmulator<'static>>,
    rd: RdEmulator<'static>,
}

static GIC: Once<Emulators> = Once::new();

/// The real GIC registers (mapped as device memory by [`el2_frames`]).
struct GicMmio;

impl GicRegs for GicMmio {
    fn read32(&self, pa: u64) -> u32 {
        // SAFETY: The emulators only name registers inside the GIC frames `el2_frames` mapped.
        unsafe { mmio::read32(pa) }
    }
    fn write32(&self, pa: u64, value: u32) {
        dsb_st();
        // SAFETY: As above.
        unsafe { mmio::write32(pa, value) }
    }
    fn read64(&self, pa: u64) -> u64 {
        // SAFETY: As above.
        unsafe { mmio::read64(pa) }
    }
    fn write64(&self, pa: u64, value: u64) {
        dsb_st();
        // SAFETY: As above.
        unsafe { mmio::write64(pa, value) }
    }
}

/// Makes the shadow queue's commands visible to the ITS before the register write that publishes them.
fn dsb_st() {
    // SAFETY: A barrier.
    unsafe { asm!("dsb st", options(nostack, preserves_flags)) };
}

struct El2Memory;

impl GicMemory for El2Memory {
    fn read_host_u64(&self, pa: u64) -> u64 {
        // SAFETY: `pa` lies in the host's command queue, which the emulator pinned as host RAM; the EL2
        // stage-1 maps all RAM at VA == PA. A volatile read: the host may change it at any time, and the
        // emulator reads each doubleword exactly once.
        unsafe { core::ptr::read_volatile(pa as *const u64) }
    }
    fn clean_to_poc(&self, va: u64, len: u64) {
        mmu::clean_dcache_to_poc(va, len);
    }
}

/// The GIC regions the EL2 stage-1 maps as device memory: the distributor, the redistributor regions and
/// each ITS (control and translation frames).
pub fn el2_frames(platform: &Platform) -> Vec<PhysRange> {
    let Some(gic) = &platform.gic else {
        return Vec::new();
    };
    core::iter::once(&gic.distributor)
        .chain(gic.redistributors.iter())
        .chain(gic.its.iter().map(|i| &i.reg))
        .copied()
        .collect()
}

/// Finds the redistributors (the EL2 stage-1 must map [`el2_frames`]).
pub fn probe(platform: &Platform) -> GicLayout {
    platform
        .gic
        .as_ref()
        .map(|g| GicLayout::probe(g, &GicMmio))
        .unwrap_or_default()
}

/// Starts the emulators for `layout` with the dispatcher's ownership map. Call once, before the host runs.
pub fn install(platform: &Platform, layout: &GicLayout, own: &'static Ownership) {
    let Some(gic) = &platform.gic else { return };
    let id_bits = (GicMmio.read32(gic.distributor.base + GICD_TYPER) >> 19) & 0x1f;
    let lpi_bits = id_bits + 1;
    let its = layout
        .its
        .iter()
        .map(|&base| {
            let e = ItsEmulator::new(base, &GicMmio, own, layout.redistributors.clone(), lpi_bits);
            log!(
                "GIC ITS at {base:#x} emulated (GITS_TYPER {:#x}); shadow command queue at {:#x}",
                e.params().typer,
                e.shadow_pa()
            );
            e
        })
        .collect();
    let rd = RdEmulator::new(own, layout.redistributors.clone(), layout.vlpis, lpi_bits);
    log!(
        "GIC: {} redistributor RD_base frame(s) emulated{} ({lpi_bits} INTID bits); SGI frames left to the host",
        layout.redistributors.len(),
        if layout.vlpis {
            " with their VLPI frames"
        } else {
            ""
        }
    );
    GIC.call_once(|| Emulators { its, rd });
}

/// `STAT GIC_REFUSED`.
pub fn refused() -> u64 {
    REFUSED.load(Ordering::Relaxed)
}

/// Pages the emulators pin (left out of `STAT MAPPED_PAGES`).
pub fn pinned_pages() -> u64 {
    GIC.get().map_or(0, |g| {
        g.its.iter().map(ItsEmulator::pinned_pages).sum::<u64>() + g.rd.pinned_pages()
    })
}

fn report(r: GicRefusal) {
    let n = REFUSED.fetch_add(1, Ordering::Relaxed);
    let first_of_kind = {
        let mut kinds = LOGGED_KINDS.lock();
        let new = !kinds.contains(&r.kind());
        if new && kinds.len() < KINDS_LOGGED {
            kinds.push(r.kind());
        }
        new
    };
    if n < REFUSALS_LOGGED {
        log!("GIC: refused: {r}");
    } else if n == REFUSALS_LOGGED {
        log!("GIC: refused: {r} (further refusals only counted: STAT GIC_REFUSED)");
    } else if first_of_kind {
        log!("GIC: refused: {r} (first of its kind; further ones only counted)");
    }
}

/// A host stage-2 data abort at `ipa`: if it lies in a trapped GIC frame and the syndrome describes the
/// access, emulates it (a load's result goes to its register) and steps over the instruction. `false`:
/// not a GIC frame, or an access the syndrome does not describe (`ISV` = 0): the caller injects an external
/// abort. Byte, halfword and unaligned accesses read as zero and write nothing (the GIC does not define them).
pub fn handle(frame: &mut TrapFrame, esr: u64, ipa: u64) -> bool {
    let Some(g) = GIC.get() else { return false };
    let its = g.its.iter().find(|e| e.contains(ipa));
    let base = match its {
        Some(e) => e.base(),
        None => match g.rd.locate(ipa) {
            Some((_, off, _)) => ipa - off,
            None => return false,
        },
    };
    let Some(acc) = MmioAccess::decode(esr, ipa) else {
        return false;
    };
    let off = ipa - base;
    let value = if (acc.size == 4 || acc.size == 8) && ipa.is_multiple_of(u64::from(acc.size)) {
        let ra = if acc.write {
            RegAccess::Write {
                off,
                size: acc.size,
                value: acc.store_value(&frame.x),
            }
        } else {
            RegAccess::Read {
                off,
                size: acc.size,
            }
        };
        let mut rep = |r| report(r);
        match its {
            Some(e) => e.access(&GicMmio, &El2Memory, &g.rd, ra, &mut rep),
            None => g.rd.access(&GicMmio, ipa, ra, &mut rep),
        }
    } else {
        0
    };
    if !acc.write && acc.reg < 31 {
        frame.x[usize::from(acc.reg)] = acc.load_result(value);
    }
    frame.elr = frame.elr.wrapping_add(u64::from(acc.insn_len));
    true
}
