//! `STAT HYP_INTEGRITY`: a hash of the hypervisor memory that must never change after boot, so tests can show
//! that hostile DMA (or anything else) left it alone.
//!
//! At boot [`install`] fills the canary pages (`layout::HYP_CANARY_PA`, `layout::HYP_CANARY_SIZE`) with
//! `layout::canary_word` and hands [`hash`] to the dispatcher, which records its value then
//! (`HYP_INTEGRITY_BOOT`) and computes it again for every `STAT HYP_INTEGRITY`. The hash covers the image's
//! text and read-only data (`__image_start..__rodata_end`, mapped read-only at EL2) and the canary pages. It
//! is not cryptographic: the host cannot choose what a stray write would put there, it can only try to write.
//!
//! The check is in every build: a production host may ask for it as a self-check of the hypervisor's image.
//!
//! Negative control (feature `test-hooks`, built by `cargo xtask test` only): with the kernel command-line word
//! `warden.test=canary-flip` the hypervisor itself changes one canary word right after recording the boot
//! value, so a test can check that `HYP_INTEGRITY` sees it.

use warden_core::layout;

use crate::log;
use crate::smmu::El2Warden;

unsafe extern "C" {
    static __image_start: u8;
    static __rodata_end: u8;
}

/// One 64-bit word into the running hash (position-dependent: the state is rotated before each word).
fn mix(h: u64, w: u64) -> u64 {
    (h.rotate_left(23) ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Hashes the 64-bit words of `[start, end)` into `h`.
///
/// # Safety
///
/// `[start, end)` is 8-byte aligned memory mapped for reads at EL2 (VA == PA) for the hypervisor's lifetime.
unsafe fn hash_range(mut h: u64, start: u64, end: u64) -> u64 {
    let mut p = start;
    while p < end {
        // SAFETY: The caller guarantees the range is mapped and aligned; memory a device may have written (the
        // canary) is read volatile, without a Rust reference.
        h = mix(h, unsafe { core::ptr::read_volatile(p as *const u64) });
        p += 8;
    }
    h
}

/// The hash of the image's text and read-only data and of the canary pages, computed now.
pub fn hash() -> u64 {
    // Linker-script symbols; only their addresses are taken.
    let (image, rodata_end) = (
        &raw const __image_start as u64,
        &raw const __rodata_end as u64,
    );
    let mut h = 0x5741_5244_454e_0001;
    // SAFETY: Text and read-only data are mapped (read-only) by `mmu::init` for good; both ends are
    // page-aligned by the linker script.
    h = unsafe { hash_range(h, image, rodata_end) };
    // SAFETY: The canary pages are carve-out memory mapped read/write at EL2, page-aligned (layout asserts).
    unsafe {
        hash_range(
            h,
            layout::HYP_CANARY_PA,
            layout::HYP_CANARY_PA + layout::HYP_CANARY_SIZE,
        )
    }
}

/// Kernel command-line word: flip one bit of the first canary word after the boot hash (negative control).
#[cfg(feature = "test-hooks")]
pub const CANARY_FLIP_TEST: &str = "warden.test=canary-flip";

/// Fills the canary pages and installs [`hash`] as `STAT HYP_INTEGRITY` in the dispatcher; with feature
/// `test-hooks` and `warden.test=canary-flip` in `bootargs`, then changes one canary word.
#[cfg_attr(
    not(feature = "test-hooks"),
    allow(unused_variables, reason = "bootargs only select test hooks")
)]
pub fn install(w: &El2Warden, bootargs: Option<&str>) {
    let mut pa = layout::HYP_CANARY_PA;
    while pa < layout::HYP_CANARY_PA + layout::HYP_CANARY_SIZE {
        // SAFETY: The canary pages are carve-out memory mapped read/write at EL2 (VA == PA), used for nothing
        // else; an aligned 8-byte write.
        unsafe { core::ptr::write_volatile(pa as *mut u64, layout::canary_word(pa)) };
        pa += 8;
    }
    let boot = w.set_integrity_check(hash);
    log!(
        "integrity: canary {} KiB at {:#x}; hash of text, rodata and canary {boot:#018x}",
        layout::HYP_CANARY_SIZE / 1024,
        layout::HYP_CANARY_PA
    );
    #[cfg(feature = "test-hooks")]
    if bootargs.is_some_and(|a| a.split(' ').any(|w| w == CANARY_FLIP_TEST)) {
        let pa = layout::HYP_CANARY_PA;
        // SAFETY: As above: the first canary word, mapped read/write at EL2, aligned.
        unsafe { core::ptr::write_volatile(pa as *mut u64, layout::canary_word(pa) ^ 1) };
        log!("{CANARY_FLIP_TEST}: canary word at {pa:#x} changed after the boot hash");
    }
}
