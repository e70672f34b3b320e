//! `cargo xtask bench --boot`: boot-to-userspace wall time under the hypervisor and natively, in one invocation.
//!
//! Each boot runs a script that exits at once; the time measured is from starting QEMU to the init's first line
//! ([`crate::initramfs::USERSPACE_MARKER`]). Boots alternate between the two modes so that drift in the machine's
//! load affects both alike. The goal (hyp/native ≤ 1.1) is reported, not asserted.

use std::fs;
use std::time::Duration;

use anyhow::{Result, bail};

use super::stats::stats;
use crate::Ws;
use crate::qemu::{Machine, Mode, RunOpts, Verdict};
use crate::util::step;

/// Target ratio of median boot times, hyp over native.
const GOAL_RATIO: f64 = 1.1;

/// Runs the boot benchmark with `runs` boots per mode.
pub fn boot(ws: &Ws, runs: usize) -> Result<()> {
    let m = Machine::prepare(ws, true)?;
    let dir = ws.out.join("bench");
    fs::create_dir_all(&dir)?;
    let script = dir.join("boot.sh");
    fs::write(&script, "#!/bin/sh\nexit 0\n")?;
    let mut times: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for i in 0..runs {
        for (k, mode) in [Mode::Hyp, Mode::Native].into_iter().enumerate() {
            let o = RunOpts {
                script: Some(script.clone()),
                timeout: Duration::from_secs(180),
                mode,
                ..RunOpts::default()
            };
            let out = m.boot(&o, false)?;
            let (Verdict::Exited(0), Some(t)) = (&out.verdict, out.userspace) else {
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
                "boot {}/{runs} {:>6}: userspace after {:.2} s",
                i + 1,
                mode.name(),
                t.as_secs_f64()
            ));
            times[k].push(t.as_secs_f64());
        }
    }
    println!("boot to userspace (s), {runs} boots each:");
    println!("{:<8} {:>8} {:>8} {:>8}", "mode", "min", "median", "max");
    let mut medians = [0.0; 2];
    for (k, mode) in [Mode::Hyp, Mode::Native].into_iter().enumerate() {
        let (lo, med, hi) = stats(&mut times[k]).unwrap_or_default();
        medians[k] = med;
        println!("{:<8} {lo:>8.2} {med:>8.2} {hi:>8.2}", mode.name());
    }
    let ratio = medians[0] / medians[1];
    let verdict = if ratio <= GOAL_RATIO {
        "meets"
    } else {
        "misses"
    };
    println!("ratio hyp/native (medians): {ratio:.3} ({verdict} the goal of <= {GOAL_RATIO})");
    Ok(())
}
