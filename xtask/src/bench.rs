//! `cargo xtask bench [--quick]`: Warden against Linux's own arm-smmu-v3 driver, side by side in one run.
//!
//! Six configurations of the same kernel — passthrough, native strict, native lazy, Warden identity (the shim
//! with `iommu.passthrough=1`: devices on the hyp's host-identity domain, direct DMA, no hypercalls; I/O only),
//! Warden lazy (the shim with `iommu.strict=0`), Warden strict — each boot
//! running the same workloads (`tests/bench/guest.sh`: the `warden_bench` map/unmap microbenchmark and
//! O_DIRECT I/O with `dio`, and fio jobs on the raw disks with the static fio of [`crate::fio`]). Rounds alternate the configurations (one boot per configuration per round) so
//! that drift in the machine's load affects all alike; each measurement's min/median/max is over the rounds.
//! The SMP rows ([`smp`]: native strict and Warden strict at 1, 2 and 4 threads, one domain or one each,
//! `tests/bench/smp.sh`) have boots of their own in each round and under `-icount`.
//! Results go to the terminal, `target/bench/report.json`, `target/bench/report.md` and
//! `target/bench/cost.svg` and `cost.png` (the figure).
//!
//! The modules, in the order of a run: [`plan`] (configurations, workloads, the guest script), [`run`] (the
//! boots), [`parse`] (the guest's result lines, fio's JSON, QEMU's trace), [`stats`] (aggregation over the
//! rounds), [`smp`] (the SMP rows), [`targets`] (the issues' targets), [`report`] (table, JSON, markdown), [`plot`] (the figure). [`boot`] is
//! `cargo xtask bench --boot`.

pub mod boot;
pub mod parse;
pub mod plan;
pub mod plot;
pub mod report;
pub mod run;
pub mod smp;
pub mod stats;
pub mod targets;

#[cfg(test)]
mod tests;
