//! Exception handling at EL2: host HVC/SMC (Warden hypercalls, checked first; then PSCI relay), host stage-2 faults (accesses to
//! the emulated GIC frames answered by `gic`; the rest logged and answered with an injected external abort,
//! unless the address translates again after a concurrent break-before-make edit, see `host_mem`), every other
//! host exception (an undefined-instruction exception injected for a synchronous one, an asynchronous one
//! ignored; each kind logged once, all counted in [`HOST_TRAPS`]), and exceptions taken at EL2 itself, which
//! are hypervisor bugs (register dump, power off).

use aarch64_cpu::registers::{
    ELR_EL1, ESR_EL1, ESR_EL2, FAR_EL1, FAR_EL2, HPFAR_EL2, Readable, SCTLR_EL1, SPSR_EL1,
    VBAR_EL1, Writeable,
};
use core::sync::atomic::{AtomicU64, Ordering};
use warden_core::host_s2::Stage2Fault;
use warden_core::psci::{self, Action};
use warden_core::smccc;
use warden_core::trap::TrapLog;
use warden_core::trap::esr::{
    EC_DABT_LOW, EC_HVC64, EC_IABT_LOW, EC_SMC64, ESR_ISS_IMM16, TrapKind, exception_class,
};
use warden_core::trap::inject::{self, Injection};

use crate::console::log_line_forced;
use crate::vectors::{self, TrapFrame};
use crate::{firmware, log, percpu};

/// Size of the trapped SMC instruction (the preferred return address of a trapped SMC is the SMC itself).
const SMC_INSN_SIZE: u64 = 4;

/// Host stage-2 faults handled since boot (all CPUs).
pub static STAGE2_FAULTS: AtomicU64 = AtomicU64::new(0);
/// Host stage-2 translation faults on addresses that translated again once the host stage-2 lock was free
/// (another CPU was splitting a block): answered by returning to the host, which retries.
pub static STAGE2_RETRIES: AtomicU64 = AtomicU64::new(0);
/// How many of those are logged (they are rare: one window per block split or merge).
const RETRIES_LOGGED: u64 = 16;
/// The host exceptions the hypervisor did not handle (`STAT HOST_TRAPS_UNHANDLED`), each kind logged once.
pub static HOST_TRAPS: TrapLog = TrapLog::new();

/// Called by the vector assembly with the saved frame and the vector index.
#[unsafe(no_mangle)]
extern "C" fn warden_exception(frame: &mut TrapFrame, kind: u64) {
    match kind {
        vectors::LOWER_A64_SYNC | vectors::LOWER_A32_SYNC => {}
        vectors::LOWER_A64_IRQ..=vectors::LOWER_A64_SERROR
        | vectors::LOWER_A32_IRQ..=vectors::LOWER_A32_SERROR => {
            // IRQ, FIQ and SError are routed to EL1 (HCR_EL2.IMO/FMO/AMO clear): one reaching EL2 is not the
            // host's doing to answer. Return to the host.
            let what = TrapKind::Asynchronous { vector: kind as u8 };
            if HOST_TRAPS.record(what) {
                log!(
                    "host trap: {what} reached EL2 unexpectedly -> ignored (logged once per kind)"
                );
            }
            return;
        }
        _ => fatal(frame, kind, "exception at EL2"),
    }
    let esr = ESR_EL2.get();
    match exception_class(esr) {
        // SMCCC calls use immediate 0; any other immediate is no SMCCC call of ours, nor one to forward.
        ec @ (EC_HVC64 | EC_SMC64) if esr & ESR_ISS_IMM16 != 0 => {
            if ec == EC_SMC64 {
                frame.elr = frame.elr.wrapping_add(SMC_INSN_SIZE);
            }
            frame.x[0] = smccc::ret(smccc::NOT_SUPPORTED);
        }
        EC_HVC64 => host_call(frame),
        EC_SMC64 => {
            frame.elr = frame.elr.wrapping_add(SMC_INSN_SIZE);
            host_call(frame);
        }
        EC_IABT_LOW | EC_DABT_LOW => stage2_abort(frame, esr),
        _ => undefined(frame, esr),
    }
}

/// A host exception the hypervisor does not handle: log it once per kind, count it, and inject an
/// undefined-instruction exception into EL1, as a CPU without the trapped feature would raise.
fn undefined(frame: &mut TrapFrame, esr: u64) {
    let kind = TrapKind::of_sync(esr);
    if HOST_TRAPS.record(kind) {
        log!(
            "host trap: {kind} at ELR {:#x} (ESR {esr:#x}) -> undefined instruction injected (logged once per kind)",
            frame.elr
        );
    }
    let inj = inject::inject_undef(esr, frame.elr, frame.spsr, VBAR_EL1.get(), SCTLR_EL1.get());
    enter_el1(frame, &inj);
}

/// Applies an injection: the EL1 syndrome registers, and the frame ERET resumes the host with.
fn enter_el1(frame: &mut TrapFrame, inj: &Injection) {
    ESR_EL1.set(inj.esr_el1);
    if let Some(far) = inj.far_el1 {
        FAR_EL1.set(far);
    }
    ELR_EL1.set(inj.elr_el1);
    SPSR_EL1.set(inj.spsr_el1);
    frame.elr = inj.elr_el2;
    frame.spsr = inj.spsr_el2;
}

/// A host SMC or HVC: Warden hypercalls first (the hot path: straight to the dispatcher, without the PSCI
/// relay's decode), then PSCI relay and SMCCC architecture calls.
fn host_call(frame: &mut TrapFrame) {
    if smccc::is_vendor_hyp_call(frame.x[0] as u32) {
        return vendor_hyp_call(frame);
    }
    let regs = [frame.x[0], frame.x[1], frame.x[2], frame.x[3]];
    let action = {
        let cpus = percpu::mpidrs();
        psci::decide(regs, cpus, crate::host_is_ram)
    };
    match action {
        Action::Return(x0) => frame.x[0] = x0,
        Action::Forward => {
            let r = firmware::smc(regs);
            frame.x[..4].copy_from_slice(&r);
        }
        Action::CpuOn {
            cpu,
            target,
            entry,
            context,
        } => {
            percpu::set_boot_args(cpu, entry, context);
            let r = firmware::smc([
                u64::from(psci::CPU_ON_64),
                target,
                crate::entry::secondary_entry_pa(),
                cpu as u64,
            ]);
            frame.x[0] = r[0];
        }
        // Not reached (taken above); kept so that `decide`'s answer is obeyed whatever it is.
        Action::VendorHyp => vendor_hyp_call(frame),
    }
}

/// A vendor-specific hypervisor call (SMCCC owner 6): the Warden dispatcher answers in `x0..x3`.
fn vendor_hyp_call(frame: &mut TrapFrame) {
    let x = &frame.x;
    let r = crate::smmu::hypercall(x[0] as u32, [x[1], x[2], x[3], x[4], x[5], x[6]]);
    frame.x[..4].copy_from_slice(&r);
}

/// A host access to an IPA its stage-2 does not map: log it and inject a synchronous external abort.
fn stage2_abort(frame: &mut TrapFrame, esr: u64) {
    let far = FAR_EL2.get();
    let Some(fault) = Stage2Fault::decode(esr, far, HPFAR_EL2.get()) else {
        // Only reached for the two abort classes, which always decode; answered like any unhandled trap.
        return undefined(frame, esr);
    };
    if crate::gic::handle(frame, esr, fault.ipa) {
        // An emulated GIC register (ITS control frame, redistributor RD_base).
        return;
    }
    if crate::host_mem::fault_is_transient(esr, fault.ipa) {
        // A break-before-make window of a donation or reclaim on another CPU: the address translates again,
        // the host retries the access.
        let n = STAGE2_RETRIES.fetch_add(1, Ordering::Relaxed);
        if n < RETRIES_LOGGED {
            log!(
                "host stage-2 fault: {} IPA {:#x} during a block split or merge on another CPU -> retried",
                if fault.write { 'W' } else { 'R' },
                fault.ipa
            );
        }
        return;
    }
    STAGE2_FAULTS.fetch_add(1, Ordering::Relaxed);
    log!(
        "host stage-2 fault: {} IPA {:#x} (ELR {:#x}, ESR {:#x}) -> external abort injected",
        if fault.write { 'W' } else { 'R' },
        fault.ipa,
        frame.elr,
        esr
    );
    let inj = inject::inject_external_abort(
        esr,
        far,
        frame.elr,
        frame.spsr,
        VBAR_EL1.get(),
        SCTLR_EL1.get(),
    );
    enter_el1(frame, &inj);
}

/// Prints a full register dump and powers the machine off. Never returns.
pub fn fatal(frame: &TrapFrame, kind: u64, what: &str) -> ! {
    let name = vectors::VECTOR_NAMES
        .get(kind as usize)
        .copied()
        .unwrap_or("?");
    log_line_forced(format_args!(
        "PANIC: {what}: {name} on CPU {}",
        percpu::current_index_or_max()
    ));
    log_line_forced(format_args!(
        "ESR_EL2 {:#018x}  ELR_EL2 {:#018x}  FAR_EL2 {:#018x}",
        ESR_EL2.get(),
        frame.elr,
        FAR_EL2.get()
    ));
    log_line_forced(format_args!(
        "SPSR_EL2 {:#018x}  HPFAR_EL2 {:#018x}",
        frame.spsr,
        HPFAR_EL2.get()
    ));
    for i in (0..31).step_by(3) {
        match i {
            30 => log_line_forced(format_args!("x30 {:#018x}", frame.x[30])),
            _ => log_line_forced(format_args!(
                "x{:<2} {:#018x}  x{:<2} {:#018x}  x{:<2} {:#018x}",
                i,
                frame.x[i],
                i + 1,
                frame.x[i + 1],
                i + 2,
                frame.x[i + 2]
            )),
        }
    }
    firmware::system_off()
}
