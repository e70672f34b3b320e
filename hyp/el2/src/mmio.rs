//! 32-bit MMIO accessors written as single `ldr`/`str` instructions (never Rust references to device
//! memory, never `read_volatile`, whose code generation may not be virtualisable).

use core::arch::asm;

/// Reads the 32-bit register at physical (= virtual, identity map) address `addr`.
///
/// # Safety
///
/// `addr` must be a 4-byte-aligned device register mapped as device memory, whose read has no side effect
/// the caller did not intend.
pub unsafe fn read32(addr: u64) -> u32 {
    let value: u32;
    // SAFETY: Our caller promised `addr` is a mapped, aligned device register.
    unsafe {
        asm!("ldr {v:w}, [{a}]", v = out(reg) value, a = in(reg) addr, options(nostack, preserves_flags));
    }
    value
}

/// Writes the 32-bit register at `addr`.
///
/// # Safety
///
/// `addr` must be a 4-byte-aligned device register mapped as device memory, and the write must be one the
/// caller means to make.
pub unsafe fn write32(addr: u64, value: u32) {
    // SAFETY: Our caller promised `addr` is a mapped, aligned device register.
    unsafe {
        asm!("str {v:w}, [{a}]", v = in(reg) value, a = in(reg) addr, options(nostack, preserves_flags));
    }
}

/// Reads the 64-bit register at `addr`.
///
/// # Safety
///
/// As [`read32`], 8-byte aligned.
pub unsafe fn read64(addr: u64) -> u64 {
    let value: u64;
    // SAFETY: Our caller promised `addr` is a mapped, aligned device register.
    unsafe {
        asm!("ldr {v}, [{a}]", v = out(reg) value, a = in(reg) addr, options(nostack, preserves_flags));
    }
    value
}

/// Writes the 64-bit register at `addr`.
///
/// # Safety
///
/// As [`write32`], 8-byte aligned.
pub unsafe fn write64(addr: u64, value: u64) {
    // SAFETY: Our caller promised `addr` is a mapped, aligned device register.
    unsafe {
        asm!("str {v}, [{a}]", v = in(reg) value, a = in(reg) addr, options(nostack, preserves_flags));
    }
}
