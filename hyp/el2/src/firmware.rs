//! Calls into the firmware's PSCI (QEMU's emulated EL3) with `smc #0` from EL2.

use core::arch::asm;
use warden_core::psci;

/// Issues an SMCCC fast call to the firmware and returns `x0..=x3`.
pub fn smc(args: [u64; 4]) -> [u64; 4] {
    let mut r = args;
    // SAFETY: An SMC from EL2 enters the firmware, which preserves x18-x30 and SP per SMCCC; we declare
    // x4-x17 clobbered too (SMCCC 1.0 callers must). No memory is shared with the firmware.
    unsafe {
        asm!(
            "smc #0",
            inout("x0") r[0], inout("x1") r[1], inout("x2") r[2], inout("x3") r[3],
            out("x4") _, out("x5") _, out("x6") _, out("x7") _, out("x8") _, out("x9") _,
            out("x10") _, out("x11") _, out("x12") _, out("x13") _, out("x14") _, out("x15") _,
            out("x16") _, out("x17") _,
            options(nostack),
        );
    }
    r
}

/// Powers the machine off (PSCI `SYSTEM_OFF`); parks the CPU if the firmware returns.
pub fn system_off() -> ! {
    let _ = smc([u64::from(psci::SYSTEM_OFF), 0, 0, 0]);
    park()
}

/// Stops this CPU for good.
pub fn park() -> ! {
    loop {
        aarch64_cpu::asm::wfe();
    }
}
