//! `cargo xtask bench --boot`: boot-to-userspace time under the hypervisor and natively, in one invocation.
//!
//! Each boot runs a script that exits at once; measured from starting QEMU to the init's first line
//! ([`crate::initramfs::USERSPACE_MARKER`]) are the wall time and the CPU time QEMU used (all its threads):
//! on a shared machine the wall time also counts time QEMU waited for a core, the CPU time does not. Boots
//! alternate between the two modes so that drift in the machine's load affects both alike. The goal
//! (hyp/native ≤ 1.1) is reported for both measures, not asserted.

use std::fs;
use std::time::Duration;

use anyhow::{Result, bail};

use super::stats::stats;
use crate::Ws;
use crate::qemu::{Machine, Mode, RunOpts, Verdict};
use crate::util::step;

/// Target ratio of median boot times, hyp over native.
const GOAL_RATIO: f64 = 1.1;

/// What is measured per boot.
const MEASURES: [&str; 2] = ["wall", "QEMU CPU"];

/// Runs the boot benchmark with `runs` boots per mode, `qemu_args` added to every boot's QEMU command line.
pub fn boot(ws: &Ws, runs: usize, qemu_args: &[String]) -> Result<()> {
    let m = Machine::prepare(ws, true)?;
    let dir = ws.out.join("bench");
    fs::create_dir_all(&dir)?;
    let script = dir.join("boot.sh");
    fs::write(&script, "#!/bin/sh\nexit 0\n")?;
    // times[measure][mode]
    let mut times: [[Vec<f64>; 2]; 2] = Default::default();
    for i in 0..runs {
        for (k, mode) in [Mode::Hyp, Mode::Native].into_iter().enumerate() {
            let o = RunOpts {
                script: Some(script.clone()),
                timeout: Duration::from_secs(300),
                mode,
                qemu_args: qemu_args.to_vec(),
                ..RunOpts::default()
            };
            let out = m.boot(&o, false)?;
            let (Verdict::Exited(0), Some(t), Some(cpu)) =
                (&out.verdict, out.userspace, out.userspace_cpu)
            else {
                let log = dir.join(format!("failed-{}.log", mode.name()));
                fs::write(&log, &out.log)?;
                bail!(
                    "{} boot {} failed: {} (serial log: {})",
                    mode.name(),
                    i + 1,
                    out.describe(),
                    log.display()
                );
            };
            step(format!(
                "boot {}/{runs} {:>6}: userspace after {:.2} s (QEMU CPU {:.2} s)",
                i + 1,
                mode.name(),
                t.as_secs_f64(),
                cpu.as_secs_f64()
            ));
            times[0][k].push(t.as_secs_f64());
            times[1][k].push(cpu.as_secs_f64());
        }
    }
    println!("boot to userspace (s), {runs} boots each:");
    println!(
        "{:<8} {:<8} {:>8} {:>8} {:>8}",
        "measure", "mode", "min", "median", "max"
    );
    for (j, measure) in MEASURES.into_iter().enumerate() {
        let mut medians = [0.0; 2];
        for (k, mode) in [Mode::Hyp, Mode::Native].into_iter().enumerate() {
            let (lo, med, hi) = stats(&mut times[j][k]).unwrap_or_default();
            medians[k] = med;
            println!(
                "{measure:<8} {:<8} {lo:>8.2} {med:>8.2} {hi:>8.2}",
                mode.name()
            );
        }
        let ratio = medians[0] / medians[1];
        let verdict = if ratio <= GOAL_RATIO {
            "meets"
        } else {
            "misses"
        };
        println!(
            "{measure}: ratio hyp/native (medians) {ratio:.3} ({verdict} the goal of <= {GOAL_RATIO})"
        );
    }
    Ok(())
}
