//! PSCI function IDs, decoding and the relay policy for host calls.
//!
//! The host's SMC (trapped through `HCR_EL2.TSC`) and HVC instructions both arrive here as the registers
//! `x0..=x3`. [`decide`] turns them into an [`Action`] for the EL2 image: forward the call unchanged to the
//! firmware's PSCI (`smc #0` from EL2), relay a `CPU_ON` through the hypervisor's secondary entry, answer
//! locally, or hand a vendor-specific hypervisor call (the Warden ABI) to the hypercall dispatcher.
//!
//! Calls that would let a CPU resume at a host-chosen address *at EL2* (powerdown `CPU_SUSPEND`,
//! `SYSTEM_SUSPEND`, `CPU_DEFAULT_SUSPEND`) or that change memory semantics behind the hypervisor's back
//! (`MEM_PROTECT*`, `MIGRATE`) are refused with `NOT_SUPPORTED`; Linux copes without them.

use crate::smccc::{self, FunctionId, Owner};

/// PSCI function number of `PSCI_VERSION`.
pub const FN_VERSION: u16 = 0x00;
/// PSCI function number of `CPU_SUSPEND`.
pub const FN_CPU_SUSPEND: u16 = 0x01;
/// PSCI function number of `CPU_OFF`.
pub const FN_CPU_OFF: u16 = 0x02;
/// PSCI function number of `CPU_ON`.
pub const FN_CPU_ON: u16 = 0x03;
/// PSCI function number of `AFFINITY_INFO`.
pub const FN_AFFINITY_INFO: u16 = 0x04;
/// PSCI function number of `MIGRATE`.
pub const FN_MIGRATE: u16 = 0x05;
/// PSCI function number of `MIGRATE_INFO_TYPE`.
pub const FN_MIGRATE_INFO_TYPE: u16 = 0x06;
/// PSCI function number of `MIGRATE_INFO_UP_CPU`.
pub const FN_MIGRATE_INFO_UP_CPU: u16 = 0x07;
/// PSCI function number of `SYSTEM_OFF`.
pub const FN_SYSTEM_OFF: u16 = 0x08;
/// PSCI function number of `SYSTEM_RESET`.
pub const FN_SYSTEM_RESET: u16 = 0x09;
/// PSCI function number of `PSCI_FEATURES`.
pub const FN_FEATURES: u16 = 0x0a;
/// PSCI function number of `SYSTEM_RESET2`.
pub const FN_SYSTEM_RESET2: u16 = 0x12;

/// `PSCI_VERSION` function ID (SMC32).
pub const PSCI_VERSION: u32 = 0x8400_0000;
/// `CPU_OFF` function ID (SMC32).
pub const CPU_OFF: u32 = 0x8400_0002;
/// `CPU_ON` function ID (SMC64), the form the hypervisor uses when relaying.
pub const CPU_ON_64: u32 = 0xc400_0003;
/// `CPU_ON` function ID (SMC32).
pub const CPU_ON_32: u32 = 0x8400_0003;
/// `SYSTEM_OFF` function ID (SMC32).
pub const SYSTEM_OFF: u32 = 0x8400_0008;
/// `SYSTEM_RESET` function ID (SMC32).
pub const SYSTEM_RESET: u32 = 0x8400_0009;
/// `PSCI_FEATURES` function ID (SMC32).
pub const PSCI_FEATURES: u32 = 0x8400_000a;

/// PSCI return code: success.
pub const SUCCESS: i64 = 0;
/// PSCI return code: not supported.
pub const NOT_SUPPORTED: i64 = -1;
/// PSCI return code: invalid parameters.
pub const INVALID_PARAMETERS: i64 = -2;
/// PSCI return code: the target CPU is already on.
pub const ALREADY_ON: i64 = -4;
/// PSCI return code: invalid address (e.g. an entry point outside host memory).
pub const INVALID_ADDRESS: i64 = -9;

/// The affinity fields of an MPIDR (Aff3 in bits 39:32, Aff2..Aff0 in bits 23:0).
pub const MPIDR_AFFINITY_MASK: u64 = 0xff_00ff_ffff;

/// What the EL2 image must do with a host SMC or HVC.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Action {
    /// Issue the same call (`x0..=x3` unchanged) to the firmware with `smc #0` and return its `x0..=x3`.
    Forward,
    /// Relay `CPU_ON`: record `entry` and `context` for CPU `cpu`, then call the firmware's
    /// `CPU_ON(target, hypervisor secondary entry, per-CPU data)` and return its result.
    CpuOn {
        /// Logical index of the target CPU (its position in the device tree's `/cpus`).
        cpu: usize,
        /// The target's MPIDR affinity value, as the host passed it.
        target: u64,
        /// Where the host wants the CPU to start, at EL1 (a physical address).
        entry: u64,
        /// The value the host wants in the new CPU's `x0`.
        context: u64,
    },
    /// Answer locally: write this value to the caller's `x0` (`x1..=x3` unchanged).
    Return(u64),
    /// A vendor-specific hypervisor service call: the hypercall dispatcher decides.
    VendorHyp,
}

/// Decides what to do with a host call, given its `x0..=x3`, the MPIDR of each CPU (device-tree order) and a
/// predicate telling whether a physical address is host RAM (a `CPU_ON` entry point must be).
///
/// Never panics, whatever the registers hold. A vendor-specific hypervisor call
/// ([`smccc::is_vendor_hyp_call`]) is [`Action::VendorHyp`] whatever the other registers hold; the EL2 trap
/// path makes that check itself first and calls `decide` only for the other calls.
pub fn decide(regs: [u64; 4], cpus: &[u64], is_host_ram: impl Fn(u64) -> bool) -> Action {
    let fid = FunctionId::from_x0(regs[0]);
    if smccc::is_vendor_hyp_call(fid.raw()) {
        return Action::VendorHyp;
    }
    if !fid.is_valid_fast_call() {
        return Action::Return(smccc::ret(smccc::NOT_SUPPORTED));
    }
    match fid.owner() {
        Owner::Arch => Action::Return(smccc::arch_call(fid, regs[1])),
        Owner::StandardSecure => decide_psci(fid, regs, cpus, is_host_ram),
        // Owner::VendorHyp never gets here: every well-formed one was taken above.
        _ => Action::Return(smccc::ret(smccc::NOT_SUPPORTED)),
    }
}

/// Whether the hypervisor relays PSCI function `number` (in either calling convention) to the host.
fn relayed(number: u16) -> bool {
    matches!(
        number,
        FN_VERSION
            | FN_CPU_OFF
            | FN_CPU_ON
            | FN_AFFINITY_INFO
            | FN_MIGRATE_INFO_TYPE
            | FN_MIGRATE_INFO_UP_CPU
            | FN_SYSTEM_OFF
            | FN_SYSTEM_RESET
            | FN_FEATURES
            | FN_SYSTEM_RESET2
    )
}

fn decide_psci(
    fid: FunctionId,
    regs: [u64; 4],
    cpus: &[u64],
    is_host_ram: impl Fn(u64) -> bool,
) -> Action {
    let number = fid.number();
    if number > 0x1f || !relayed(number) {
        return Action::Return(smccc::ret(NOT_SUPPORTED));
    }
    // SMC32 arguments are 32-bit: the upper halves of the registers are ignored.
    let arg = |r: u64| if fid.is_64() { r } else { r & 0xffff_ffff };
    match number {
        FN_CPU_ON => {
            let target = arg(regs[1]);
            let entry = arg(regs[2]);
            let context = arg(regs[3]);
            let Some(cpu) = cpus
                .iter()
                .position(|&m| m & MPIDR_AFFINITY_MASK == target & MPIDR_AFFINITY_MASK)
            else {
                return Action::Return(smccc::ret(INVALID_PARAMETERS));
            };
            if !is_host_ram(entry) {
                return Action::Return(smccc::ret(INVALID_ADDRESS));
            }
            Action::CpuOn {
                cpu,
                target,
                entry,
                context,
            }
        }
        FN_FEATURES => {
            let queried = FunctionId::from_x0(regs[1]);
            if queried.raw() == smccc::SMCCC_VERSION {
                // PSCI 1.0: PSCI_FEATURES(SMCCC_VERSION) = SUCCESS advertises SMCCC >= 1.1.
                return Action::Return(smccc::ret(SUCCESS));
            }
            if queried.is_valid_fast_call()
                && queried.owner() == Owner::StandardSecure
                && queried.number() <= 0x1f
                && relayed(queried.number())
            {
                Action::Forward
            } else {
                Action::Return(smccc::ret(NOT_SUPPORTED))
            }
        }
        _ => Action::Forward,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPUS: [u64; 2] = [0x8000_0000, 0x8000_0001];

    fn ram(pa: u64) -> bool {
        (0x41e0_0000..0x8000_0000).contains(&pa)
    }

    fn d(regs: [u64; 4]) -> Action {
        decide(regs, &CPUS, ram)
    }

    const NS: u64 = NOT_SUPPORTED as u64;

    #[test]
    fn cpu_on_64_is_relayed_with_the_target_index() {
        assert_eq!(
            d([CPU_ON_64 as u64, 1, 0x4220_0000, 0x1234_5678_9abc]),
            Action::CpuOn {
                cpu: 1,
                target: 1,
                entry: 0x4220_0000,
                context: 0x1234_5678_9abc
            }
        );
    }

    #[test]
    fn cpu_on_32_truncates_arguments() {
        assert_eq!(
            d([
                CPU_ON_32 as u64,
                0xffff_ffff_0000_0000,
                0xffff_ffff_4220_0000,
                0xaaaa_0000_0000_0007
            ]),
            Action::CpuOn {
                cpu: 0,
                target: 0,
                entry: 0x4220_0000,
                context: 7
            }
        );
    }

    #[test]
    fn cpu_on_unknown_target_or_bad_entry() {
        assert_eq!(
            d([CPU_ON_64 as u64, 5, 0x4220_0000, 0]),
            Action::Return(INVALID_PARAMETERS as u64)
        );
        // Entry in the hypervisor carve-out.
        assert_eq!(
            d([CPU_ON_64 as u64, 1, 0x4020_0000, 0]),
            Action::Return(INVALID_ADDRESS as u64)
        );
        // Entry in MMIO.
        assert_eq!(
            d([CPU_ON_64 as u64, 1, 0x0900_0000, 0]),
            Action::Return(INVALID_ADDRESS as u64)
        );
    }

    #[test]
    fn forwarded_calls() {
        for fid in [
            PSCI_VERSION,
            CPU_OFF,
            SYSTEM_OFF,
            SYSTEM_RESET,
            0x8400_0004,
            0xc400_0004,
            0x8400_0006,
        ] {
            assert_eq!(d([fid as u64, 0, 0, 0]), Action::Forward, "{fid:#x}");
        }
        // SYSTEM_RESET2, both conventions.
        assert_eq!(d([0x8400_0012, 0, 0, 0]), Action::Forward);
        assert_eq!(d([0xc400_0012, 0, 0, 0]), Action::Forward);
    }

    #[test]
    fn refused_psci_calls() {
        // CPU_SUSPEND, MIGRATE, SYSTEM_SUSPEND, CPU_DEFAULT_SUSPEND, MEM_PROTECT, out of the PSCI range.
        for fid in [
            0xc400_0001u32,
            0xc400_0005,
            0xc400_000e,
            0xc400_000c,
            0x8400_0013,
            0x8400_0020,
            0x8400_ffff,
        ] {
            assert_eq!(d([fid as u64, 0, 0, 0]), Action::Return(NS), "{fid:#x}");
        }
    }

    #[test]
    fn psci_features() {
        let f = PSCI_FEATURES as u64;
        assert_eq!(d([f, smccc::SMCCC_VERSION as u64, 0, 0]), Action::Return(0));
        assert_eq!(d([f, CPU_ON_64 as u64, 0, 0]), Action::Forward);
        assert_eq!(d([f, SYSTEM_OFF as u64, 0, 0]), Action::Forward);
        assert_eq!(d([f, 0xc400_0001, 0, 0]), Action::Return(NS));
        assert_eq!(d([f, 0x8600_ff01, 0, 0]), Action::Return(NS));
        assert_eq!(d([f, 0, 0, 0]), Action::Return(NS));
    }

    #[test]
    fn arch_calls_answered_locally() {
        assert_eq!(
            d([smccc::SMCCC_VERSION as u64, 0, 0, 0]),
            Action::Return(0x1_0001)
        );
        assert_eq!(
            d([smccc::SMCCC_ARCH_FEATURES as u64, 0x8000_8000, 0, 0]),
            Action::Return(NS)
        );
    }

    #[test]
    fn vendor_hyp_goes_to_dispatch() {
        assert_eq!(d([0x8600_ff01, 0, 0, 0]), Action::VendorHyp);
        assert_eq!(d([0xc600_0010, 1, 2, 3]), Action::VendorHyp);
    }

    #[test]
    fn vendor_hyp_decode_agrees_with_the_fast_check() {
        // Every owner and convention (bits 31:24), reserved bits 23:16 clear or set, assorted function numbers,
        // junk in the upper half of x0: `decide` says VendorHyp exactly when the EL2 fast check does, and that
        // is exactly the well-formed fast calls of owner 6.
        for hi in 0..=0xffu64 {
            for mid in [0u64, 0x01, 0x80, 0xff] {
                for lo in [0u64, 1, 5, 0xd, 0xff01, 0xff03, 0xffff] {
                    for upper in [0u64, 0xdead_beef] {
                        let x0 = upper << 32 | hi << 24 | mid << 16 | lo;
                        let fast = smccc::is_vendor_hyp_call(x0 as u32);
                        assert_eq!(fast, (hi == 0x86 || hi == 0xc6) && mid == 0, "{x0:#x}");
                        let action = d([x0, u64::MAX, u64::MAX, u64::MAX]);
                        assert_eq!(action == Action::VendorHyp, fast, "{x0:#x}: {action:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn other_owners_and_malformed_calls_are_not_supported() {
        for x0 in [
            0x8200_0000u64,
            0x4600_0001,
            0x8610_0001,
            0x8300_0001,
            0x8500_0000,
            0xb200_0000,
            0x0400_0000,
            0x8401_0000,
            0,
        ] {
            assert_eq!(d([x0, 0, 0, 0]), Action::Return(NS), "{x0:#x}");
        }
    }

    #[test]
    fn never_panics_on_any_function_id_pattern() {
        for hi in 0..=0xffu64 {
            for lo in [0u64, 1, 3, 0xa, 0x1f, 0xff01, 0xffff] {
                let _ = d([(hi << 24) | lo, u64::MAX, u64::MAX, u64::MAX]);
            }
        }
    }
}
