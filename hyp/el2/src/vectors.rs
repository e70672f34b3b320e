//! The EL2 exception vector table and the saved-register frame.
//!
//! Every vector saves x0-x30, `ELR_EL2` and `SPSR_EL2` on the EL2 stack and calls
//! `traps::warden_exception` with the frame and the vector's index (0-15). On return the
//! (possibly modified) frame is restored and the assembly ERETs.

use core::arch::global_asm;

/// The registers of the interrupted context, as the vector saved them.
#[repr(C)]
#[derive(Debug)]
pub struct TrapFrame {
    /// x0..=x30.
    pub x: [u64; 31],
    /// `ELR_EL2`: where ERET returns to.
    pub elr: u64,
    /// `SPSR_EL2`: the PSTATE ERET restores.
    pub spsr: u64,
    /// Keeps the frame a multiple of 16 bytes.
    _pad: u64,
}

/// Size of [`TrapFrame`] in bytes (used by the assembly).
pub const FRAME_SIZE: usize = core::mem::size_of::<TrapFrame>();
static_assertions::const_assert_eq!(FRAME_SIZE, 272);
static_assertions::const_assert_eq!(FRAME_SIZE % 16, 0);

/// Vector index: synchronous exception from a lower EL in AArch64.
pub const LOWER_A64_SYNC: u64 = 8;
/// Vector index: IRQ from a lower EL in AArch64 (FIQ and SError follow).
pub const LOWER_A64_IRQ: u64 = 9;
/// Vector index: SError from a lower EL in AArch64.
pub const LOWER_A64_SERROR: u64 = 11;
/// Vector index: synchronous exception from a lower EL in AArch32 (the host's AArch32 EL0).
pub const LOWER_A32_SYNC: u64 = 12;
/// Vector index: IRQ from a lower EL in AArch32 (FIQ and SError follow).
pub const LOWER_A32_IRQ: u64 = 13;
/// Vector index: SError from a lower EL in AArch32.
pub const LOWER_A32_SERROR: u64 = 15;

/// Names of the 16 vectors, for the register dump.
pub const VECTOR_NAMES: [&str; 16] = [
    "current EL SP0 sync",
    "current EL SP0 IRQ",
    "current EL SP0 FIQ",
    "current EL SP0 SError",
    "current EL SPx sync",
    "current EL SPx IRQ",
    "current EL SPx FIQ",
    "current EL SPx SError",
    "lower EL AArch64 sync",
    "lower EL AArch64 IRQ",
    "lower EL AArch64 FIQ",
    "lower EL AArch64 SError",
    "lower EL AArch32 sync",
    "lower EL AArch32 IRQ",
    "lower EL AArch32 FIQ",
    "lower EL AArch32 SError",
];

global_asm!(
    r#"
    .macro ventry kind
    .balign 0x80
    sub     sp, sp, #{frame}
    stp     x0, x1, [sp, #0]
    mov     x1, #\kind
    b       warden_exception_common
    .endm

    .section .text.vectors, "ax"
    .balign 0x800
    .global warden_vectors
warden_vectors:
    ventry 0
    ventry 1
    ventry 2
    ventry 3
    ventry 4
    ventry 5
    ventry 6
    ventry 7
    ventry 8
    ventry 9
    ventry 10
    ventry 11
    ventry 12
    ventry 13
    ventry 14
    ventry 15

warden_exception_common:
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    mrs     x2, elr_el2
    mrs     x3, spsr_el2
    stp     x30, x2, [sp, #240]
    str     x3, [sp, #256]
    mov     x0, sp
    bl      warden_exception
    ldp     x30, x2, [sp, #240]
    ldr     x3, [sp, #256]
    msr     elr_el2, x2
    msr     spsr_el2, x3
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x19, [sp, #144]
    ldp     x20, x21, [sp, #160]
    ldp     x22, x23, [sp, #176]
    ldp     x24, x25, [sp, #192]
    ldp     x26, x27, [sp, #208]
    ldp     x28, x29, [sp, #224]
    ldp     x0, x1, [sp, #0]
    add     sp, sp, #{frame}
    eret
    "#,
    frame = const FRAME_SIZE,
);

/// Enters EL1 for the first time on this CPU: ERET to `entry` in EL1h with all of DAIF masked, `x0` =
/// `x0`, every other general-purpose register zero.
///
/// # Safety
///
/// EL2 must be fully set up for the host (HCR_EL2, stage-2, EL1 system registers), and `entry` must be the
/// host's code in host memory.
pub unsafe fn enter_el1(entry: u64, x0: u64) -> ! {
    // SAFETY: Our caller promised EL2 is ready for the host; after ERET this CPU runs the host and comes
    // back only through the vectors, on a fresh stack frame.
    unsafe {
        core::arch::asm!(
            "msr elr_el2, {entry}",
            "msr spsr_el2, {spsr}",
            "mov x1, xzr", "mov x2, xzr", "mov x3, xzr", "mov x4, xzr", "mov x5, xzr", "mov x6, xzr",
            "mov x7, xzr", "mov x8, xzr", "mov x9, xzr", "mov x10, xzr", "mov x11, xzr", "mov x12, xzr",
            "mov x13, xzr", "mov x14, xzr", "mov x15, xzr", "mov x16, xzr", "mov x17, xzr", "mov x18, xzr",
            "mov x19, xzr", "mov x20, xzr", "mov x21, xzr", "mov x22, xzr", "mov x23, xzr", "mov x24, xzr",
            "mov x25, xzr", "mov x26, xzr", "mov x27, xzr", "mov x28, xzr", "mov x29, xzr", "mov x30, xzr",
            "eret",
            entry = in(reg) entry,
            spsr = in(reg) SPSR_EL1H_DAIF_MASKED,
            in("x0") x0,
            options(noreturn),
        );
    }
}

/// `SPSR_EL2` for entering EL1h (M = 0b0101) with D, A, I and F masked.
pub const SPSR_EL1H_DAIF_MASKED: u64 = 0x3c5;
