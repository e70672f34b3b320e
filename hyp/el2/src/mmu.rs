//! The EL2 stage-1 identity map (aarch64-paging, `El2` regime), built once the device tree is read.
//!
//! - the carve-out: image text read-only executable, read-only data read-only, everything else (data, bss,
//!   stacks, heap) read/write execute-never;
//! - all RAM the device tree lists, read/write execute-never (the hypervisor reads the DTB and the Linux
//!   `Image` header, writes the host DTB, and will zero donated pages);
//! - the PL011 and the SMMU register frames as device memory.
//!
//! Secondary CPUs switch to the same table with [`switch_secondary`].

use aarch64_cpu::registers::{TTBR0_EL2, Writeable};
use aarch64_paging::descriptor::El23Attributes;
use aarch64_paging::idmap::IdMap;
use aarch64_paging::paging::{El2, MemoryRegion};
use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};
use spin::Mutex;
use warden_abi::PAGE_SIZE;
use warden_core::layout;
use warden_dt::PhysRange;

use crate::entry::{MAIR_IDX_DEVICE, MAIR_IDX_NORMAL};

/// Root level of the EL2 table (48-bit VA, matching `TCR_EL2.T0SZ` = 16 from the entry code).
const ROOT_LEVEL: usize = 0;

const NORMAL: El23Attributes = El23Attributes::VALID
    .union(El23Attributes::ATTRIBUTE_INDEX_1)
    .union(El23Attributes::INNER_SHAREABLE)
    .union(El23Attributes::USER_RES1)
    .union(El23Attributes::ACCESSED);
const DEVICE: El23Attributes = El23Attributes::VALID
    .union(El23Attributes::ATTRIBUTE_INDEX_0)
    .union(El23Attributes::USER_RES1)
    .union(El23Attributes::ACCESSED)
    .union(El23Attributes::XN);
const RW_DATA: El23Attributes = NORMAL.union(El23Attributes::XN);
const RO_DATA: El23Attributes = NORMAL
    .union(El23Attributes::XN)
    .union(El23Attributes::READ_ONLY);
const TEXT: El23Attributes = NORMAL.union(El23Attributes::READ_ONLY);

static_assertions::const_assert_eq!(MAIR_IDX_DEVICE, 0);
static_assertions::const_assert_eq!(MAIR_IDX_NORMAL, 1);

static MAP: Mutex<Option<IdMap<El2>>> = Mutex::new(None);
static ROOT: AtomicU64 = AtomicU64::new(0);

unsafe extern "C" {
    static __image_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
}

fn sym(s: &u8) -> u64 {
    s as *const u8 as u64
}

/// What the EL2 stage-1 must map besides the carve-out.
pub struct El2MapSpec<'a> {
    /// RAM banks.
    pub ram: &'a [PhysRange],
    /// Device regions (PL011, SMMU frames).
    pub devices: &'a [PhysRange],
}

fn map(idmap: &mut IdMap<El2>, r: PhysRange, attrs: El23Attributes) {
    if r.is_empty() {
        return;
    }
    let start = r.base & !(PAGE_SIZE - 1);
    let end = (r.end() + PAGE_SIZE - 1) & !(PAGE_SIZE - 1);
    idmap
        .map_range(&MemoryRegion::new(start as usize, end as usize), attrs)
        .unwrap_or_else(|e| panic!("EL2 stage-1: mapping {start:#x}..{end:#x}: {e}"));
}

/// Builds the EL2 stage-1 and switches this (the boot) CPU to it.
pub fn init(spec: &El2MapSpec<'_>) {
    // SAFETY: Linker-script symbols; only their addresses are used.
    let (image, text_end, rodata_end) =
        unsafe { (sym(&__image_start), sym(&__text_end), sym(&__rodata_end)) };
    let carveout = PhysRange {
        base: layout::HYP_CARVEOUT_PA,
        size: layout::HYP_CARVEOUT_SIZE,
    };
    let mut idmap = IdMap::new(ROOT_LEVEL, El2);
    for bank in spec.ram {
        // RAM outside the carve-out.
        map(
            &mut idmap,
            PhysRange::from_bounds(bank.base, bank.end().min(carveout.base)),
            RW_DATA,
        );
        map(
            &mut idmap,
            PhysRange::from_bounds(bank.base.max(carveout.end()), bank.end()),
            RW_DATA,
        );
    }
    map(
        &mut idmap,
        PhysRange::from_bounds(carveout.base, image),
        RW_DATA,
    );
    map(&mut idmap, PhysRange::from_bounds(image, text_end), TEXT);
    map(
        &mut idmap,
        PhysRange::from_bounds(text_end, rodata_end),
        RO_DATA,
    );
    map(
        &mut idmap,
        PhysRange::from_bounds(rodata_end, carveout.end()),
        RW_DATA,
    );
    for d in spec.devices {
        map(&mut idmap, *d, DEVICE);
    }
    // SAFETY: The new map covers everything the hypervisor uses — its image, stacks and heap (the carve-out),
    // the DTB and host RAM, the console — with the attributes the boot map gave them (or stricter ones the
    // code respects), and it is kept alive in `MAP` forever.
    unsafe {
        idmap.activate();
    }
    flush_el2_tlb();
    ROOT.store(idmap.root_address().0 as u64, Ordering::Release);
    *MAP.lock() = Some(idmap);
}

/// Switches a secondary CPU from the boot map to the table [`init`] built.
pub fn switch_secondary() {
    let root = ROOT.load(Ordering::Acquire);
    assert_ne!(root, 0, "secondary CPU up before the EL2 stage-1 exists");
    TTBR0_EL2.set(root);
    flush_el2_tlb();
}

fn flush_el2_tlb() {
    // SAFETY: Invalidating EL2 TLB entries only makes the CPU re-walk the current table.
    unsafe {
        asm!(
            "dsb ishst",
            "isb",
            "tlbi alle2",
            "dsb nsh",
            "isb",
            options(nostack, preserves_flags)
        )
    };
}

/// Cleans the data cache to the point of coherency for `[start, start + len)`, so that a CPU or device
/// reading with caches off (the host entering with its MMU off) sees what was written.
pub fn clean_dcache_to_poc(start: u64, len: u64) {
    let ctr: u64;
    // SAFETY: Reading CTR_EL0 has no side effect.
    unsafe { asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack, preserves_flags)) };
    let line = 4u64 << ((ctr >> 16) & 0xf);
    let mut addr = start & !(line - 1);
    while addr < start + len {
        // SAFETY: `dc cvac` on a mapped address only writes back dirty lines.
        unsafe { asm!("dc cvac, {}", in(reg) addr, options(nostack, preserves_flags)) };
        addr += line;
    }
    // SAFETY: Barriers and I-cache invalidation have no other effect.
    unsafe {
        asm!(
            "dsb sy",
            "ic iallu",
            "dsb sy",
            "isb",
            options(nostack, preserves_flags)
        )
    };
}
