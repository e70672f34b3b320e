//! Running the benchmark: the timed rounds (with the SMP rows' timed boots), the trace boots (native SMMU command
//! counts), the instruction-count boots (with the SMP rows'), then the reports and the completeness check.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::parse::{Sample, attribute_counts, parse, parse_icount, trace_counts};
use super::plan::{Config, ICOUNT_CALLS, Plan};
use super::plot::plot;
use super::report::{json, markdown, table};
use super::smp::{self, SMP_CONFIGS, SmpRecord, SmpSample, parse_smp, smp_table, smp_target};
use super::stats::{Record, SPREAD_WARN, aggregate};
use super::targets::{Target, all_targets, split_notes};
use crate::Ws;
use crate::qemu::{Machine, RunOpts, Verdict};
use crate::util::step;

/// What [`run`] produced.
pub struct Outcome {
    /// The plan that was measured.
    pub plan: Plan,
    /// Every configuration × workload record.
    pub records: Vec<Record>,
    /// The SMP rows ([`smp`]).
    pub smp: Vec<SmpRecord>,
    /// `report.json`, `report.md`, `cost.svg` and `cost.png`.
    pub files: Vec<PathBuf>,
}

/// Checks that a run is complete (not how fast anything was): every configuration reported every workload of
/// the plan, every 1-thread microbenchmark workload has an instruction count, those under the hypervisor include
/// instructions at EL2 (but warden-lazy's unmaps, which are queued) and the native configurations' none, the PMU's count agrees within 5 % with the
/// `-icount` virtual time over the same calls, every SMP row of the plan has what [`smp::missing`] asks, and the
/// output files exist.
pub fn check(o: &Outcome) -> Result<()> {
    let mut missing = Vec::new();
    for cfg in Config::ALL {
        for w in o.plan.workloads(cfg) {
            let Some(r) = o
                .records
                .iter()
                .find(|r| r.config == cfg && r.workload == w)
            else {
                missing.push(format!("{} {w}", cfg.name()));
                continue;
            };
            if !w.ends_with(" t1") || r.unit != "ns/call" {
                continue;
            }
            match (
                r.extra.get("instr_per_call"),
                r.extra.get("instr_el2_per_call"),
            ) {
                (Some(&n), Some(&el2)) if n > 0.0 => {
                    let hyp = cfg.under_hyp();
                    // A lazy domain's unmaps are queued: their hypercall (UNMAP_BATCH) comes with the next
                    // flush, usually after the counted phase, as native lazy's invalidation does.
                    let queued = cfg == Config::WardenLazy && w.starts_with("unmap ");
                    if hyp && !queued && el2 <= 0.0 {
                        missing.push(format!("{} {w}: no EL2 instructions counted", cfg.name()));
                    }
                    if !hyp && el2 != 0.0 {
                        missing.push(format!(
                            "{} {w}: {el2} EL2 instructions without EL2",
                            cfg.name()
                        ));
                    }
                    match r.extra.get("icount_ns_per_call") {
                        Some(&ns) if (n - ns).abs() <= 0.05 * ns => {}
                        other => missing.push(format!(
                            "{} {w}: {n} instructions per call but {other:?} ns of -icount time",
                            cfg.name()
                        )),
                    }
                }
                _ => missing.push(format!("{} {w}: instructions per call", cfg.name())),
            }
        }
    }
    missing.extend(smp::missing(&o.plan.smp, &o.smp));
    for f in &o.files {
        if !f.is_file() {
            missing.push(f.display().to_string());
        }
    }
    if !missing.is_empty() {
        bail!("the benchmark run is incomplete: {}", missing.join("; "));
    }
    Ok(())
}

/// Serial logs of boots whose script exited 0 but whose guest then did not power off (QEMU killed after the
/// grace period, every CPU's registers appended to the log). Their measurements are complete and kept; the run
/// reports each one (a warning and the reports' summary line), so a hang at power-off is seen, not hidden.
static POWEROFF_HANGS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// One boot of `cfg` running `script`; fails unless the script exits 0 (a guest that then fails to power off is
/// recorded in [`POWEROFF_HANGS`]). Its serial log goes to `log`.
fn boot_script(
    m: &Machine,
    cfg: Config,
    script: &Path,
    timeout: Duration,
    smp: u32,
    qemu_args: &[String],
    log: &Path,
) -> Result<String> {
    let (mode, append, no_shim) = cfg.opts();
    let o = RunOpts {
        script: Some(script.to_path_buf()),
        timeout,
        mode,
        no_shim,
        smp,
        append,
        qemu_args: qemu_args.to_vec(),
    };
    let out = m.boot(&o, false)?;
    fs::write(log, &out.log)?;
    if out.verdict == Verdict::NoPoweroff(0) {
        eprintln!(
            "xtask: warning: {}: {}; its results are kept (serial log with every CPU's registers: {})",
            cfg.name(),
            out.describe(),
            log.display()
        );
        POWEROFF_HANGS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(log.to_path_buf());
    } else if !matches!(out.verdict, Verdict::Exited(0)) {
        bail!(
            "{}: {} (serial log: {})",
            cfg.name(),
            out.describe(),
            log.display()
        );
    }
    Ok(out.log)
}

/// The host's load averages over 1, 5 and 15 minutes (`/proc/loadavg`), for the report's description.
fn load_average() -> String {
    let text = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let l: Vec<&str> = text.split_whitespace().take(3).collect();
    if l.len() == 3 {
        l.join(" / ")
    } else {
        "unknown".into()
    }
}

/// Runs the whole benchmark.
pub fn run(ws: &Ws, quick: bool) -> Result<Outcome> {
    let started = Instant::now();
    let plan = Plan::new(quick);
    let mut m = Machine::prepare(ws, true)?;
    m.add_fio(ws)?;
    let dir = ws.out.join("bench");
    fs::create_dir_all(&dir)?;
    let out_dir = ws.root.join("target/bench");
    fs::create_dir_all(&out_dir)?;
    let pid = std::process::id();
    let script_path =
        |cfg: Config, kind: &str| dir.join(format!("guest-{pid}-{}{kind}.sh", cfg.name()));
    // Every script is written once, up front: the whole run measures the same workloads.
    let counts_plan = Plan {
        dur_ms: 50,
        fio: Vec::new(),
        ..plan.clone()
    };
    let mut scripts = Vec::new();
    for cfg in Config::ALL {
        for (kind, text) in [
            ("", plan.script(ws, cfg, false, 0)?),
            ("-mark", counts_plan.script(ws, cfg, true, 0)?),
            ("-icount", plan.script(ws, cfg, false, ICOUNT_CALLS)?),
        ] {
            if !kind.is_empty() && !cfg.runs_micro() {
                continue;
            }
            fs::write(script_path(cfg, kind), text)?;
            scripts.push(script_path(cfg, kind));
        }
    }
    for cfg in SMP_CONFIGS {
        let mut kinds = vec![("-smp-icount", true)];
        if plan.smp.dur_ms.is_some() {
            kinds.push(("-smp", false));
        }
        for (kind, icount) in kinds {
            fs::write(script_path(cfg, kind), plan.smp.script(ws, icount)?)?;
            scripts.push(script_path(cfg, kind));
        }
    }
    let res = measure(ws, &m, &plan, quick, &script_path, started);
    for p in scripts {
        let _ = fs::remove_file(p);
    }
    let (records, smp) = res?;
    let mut meta = format!(
        "{} run of {} rounds, {:.0} s wall (including boots), QEMU TCG, 2 vCPUs (SMP rows: {}), host load \
         average (1/5/15 min) {}",
        if quick { "--quick" } else { "full" },
        plan.rounds,
        started.elapsed().as_secs_f64(),
        plan.smp.vcpus(),
        load_average()
    );
    let hangs = std::mem::take(
        &mut *POWEROFF_HANGS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    if !hangs.is_empty() {
        let logs: Vec<String> = hangs.iter().map(|p| p.display().to_string()).collect();
        meta.push_str(&format!(
            "; {} boot(s) finished their script but did not power off (killed; logs: {})",
            hangs.len(),
            logs.join(", ")
        ));
        eprintln!("xtask: warning: {meta}");
    }
    let tbl = table(&records);
    println!("{tbl}");
    for Target {
        goal,
        measured,
        met,
    } in all_targets(&records)
    {
        println!(
            "target: {goal}: {measured} -> {}",
            if met { "met" } else { "MISSED" }
        );
    }
    for n in split_notes(&records) {
        println!("not a target: {n}");
    }
    println!("SMP rows:\n{}", smp_table(&smp));
    if let Some(t) = smp_target(&smp) {
        println!(
            "target: {}: {} -> {}",
            t.goal,
            t.measured,
            if t.met { "met" } else { "MISSED" }
        );
    }
    let noisy = records.iter().filter(|r| r.spread() > SPREAD_WARN).count();
    if noisy > 0 {
        eprintln!(
            "xtask: warning: {noisy} measurement(s) spread more than {:.0} % between rounds (marked `noisy`)",
            SPREAD_WARN * 100.0
        );
    }
    let mut files = vec![out_dir.join("report.json"), out_dir.join("report.md")];
    fs::write(&files[0], json(&records, &smp, &meta)?)?;
    fs::write(&files[1], markdown(&records, &smp, &meta, &plan))?;
    files.extend(plot(&records, &out_dir)?);
    step(format!(
        "{meta}; reports in {}",
        out_dir.join("report.{json,md}, cost.{svg,png}").display()
    ));
    Ok(Outcome {
        plan,
        records,
        smp,
        files,
    })
}

/// One SMP boot of `cfg` running `script` (`icount`: under `-icount shift=0`) with the plan's vCPUs and
/// disks; its `@smp` measurements.
fn boot_smp(
    m: &Machine,
    plan: &Plan,
    cfg: Config,
    script: &Path,
    icount: bool,
    log: &Path,
) -> Result<Vec<SmpSample>> {
    let t0 = Instant::now();
    let mut args = plan.smp.qemu_args();
    if icount {
        args.extend(["-icount".to_string(), "shift=0".to_string()]);
    }
    let out = boot_script(
        m,
        cfg,
        script,
        Duration::from_secs(600),
        plan.smp.vcpus(),
        &args,
        log,
    )
    .with_context(|| format!("SMP boot{}", if icount { " (-icount)" } else { "" }))?;
    let got = parse_smp(&out);
    step(format!(
        "{:<15} SMP rows{}: {} results in {:.1} s",
        cfg.name(),
        if icount { " (-icount)" } else { "" },
        got.len(),
        t0.elapsed().as_secs_f64()
    ));
    Ok(got)
}

/// The boots of one run: the timed rounds (each with the SMP rows' timed boots), the trace boots (native command
/// counts), the instruction-count boots (and the SMP rows').
fn measure(
    ws: &Ws,
    m: &Machine,
    plan: &Plan,
    quick: bool,
    script_path: &dyn Fn(Config, &str) -> PathBuf,
    started: Instant,
) -> Result<(Vec<Record>, Vec<SmpRecord>)> {
    let dir = ws.out.join("bench");
    let mut samples: Vec<(Config, Sample)> = Vec::new();
    let mut smp_timed: Vec<(Config, SmpSample)> = Vec::new();
    let timeout = Duration::from_secs(if quick { 300 } else { 900 });
    for round in 0..plan.rounds {
        for cfg in Config::ALL {
            let t0 = Instant::now();
            let log = dir.join(format!("{}-round{}.log", cfg.name(), round + 1));
            let out = boot_script(m, cfg, &script_path(cfg, ""), timeout, 2, &[], &log)
                .with_context(|| format!("round {}", round + 1))?;
            let got = parse(&out).with_context(|| format!("serial log: {}", log.display()))?;
            step(format!(
                "round {}/{} {:<15}: {} results in {:.1} s",
                round + 1,
                plan.rounds,
                cfg.name(),
                got.len(),
                t0.elapsed().as_secs_f64()
            ));
            if got.len() < plan.workloads(cfg).len() {
                bail!(
                    "{} round {}: only {} results (serial log: {})",
                    cfg.name(),
                    round + 1,
                    got.len(),
                    log.display()
                );
            }
            samples.extend(got.into_iter().map(|s| (cfg, s)));
        }
        for cfg in SMP_CONFIGS
            .into_iter()
            .filter(|_| plan.smp.dur_ms.is_some())
        {
            let log = dir.join(format!("{}-smp-round{}.log", cfg.name(), round + 1));
            let got = boot_smp(m, plan, cfg, &script_path(cfg, "-smp"), false, &log)
                .with_context(|| format!("round {}", round + 1))?;
            smp_timed.extend(got.into_iter().map(|s| (cfg, s)));
        }
    }
    let mut records = aggregate(&samples);
    let mut add = |cfg: Config, counts: Vec<(String, &'static str, f64)>| {
        for (w, k, v) in counts {
            if let Some(r) = records
                .iter_mut()
                .find(|r| r.config == cfg && r.workload == w)
            {
                r.extra.insert(k, v);
            }
        }
    };
    // Native command counts: one more boot per translating native configuration, with QEMU's trace on (it
    // slows QEMU down, so these boots' times are not used).
    for cfg in [Config::Strict, Config::Lazy] {
        let trace = dir.join(format!("trace-{}-{}.log", std::process::id(), cfg.name()));
        let _ = fs::remove_file(&trace);
        let t0 = Instant::now();
        let trace_arg = trace.display().to_string();
        let args = [
            "-trace",
            "enable=smmuv3_cmdq_opcode",
            "-trace",
            "enable=smmuv3_read_mmio",
            "-D",
            &trace_arg,
        ]
        .map(String::from);
        let log = dir.join(format!("{}-counts.log", cfg.name()));
        let out = boot_script(
            m,
            cfg,
            &script_path(cfg, "-mark"),
            Duration::from_secs(600),
            2,
            &args,
            &log,
        )
        .context("command-count boot")?;
        let segs = trace_counts(&fs::read_to_string(&trace).unwrap_or_default());
        let _ = fs::remove_file(&trace);
        let counts = attribute_counts(&parse(&out)?, &segs);
        step(format!(
            "{:<15} SMMU command counts from QEMU's trace: {} workloads in {:.1} s",
            cfg.name(),
            segs.len(),
            t0.elapsed().as_secs_f64()
        ));
        add(cfg, counts);
    }
    // Instructions per call: one boot per configuration under -icount shift=0 (QEMU's PMU counts
    // INST_RETIRED only then) with one vCPU (the count is QEMU's global instruction counter, so a second
    // vCPU's instructions would leak into it).
    for cfg in Config::ALL.into_iter().filter(|c| c.runs_micro()) {
        let t0 = Instant::now();
        let log = dir.join(format!("{}-icount.log", cfg.name()));
        let out = boot_script(
            m,
            cfg,
            &script_path(cfg, "-icount"),
            Duration::from_secs(600),
            1,
            &["-icount".to_string(), "shift=0".to_string()],
            &log,
        )
        .context("instruction-count boot")?;
        let counts = parse_icount(&out);
        step(format!(
            "{:<15} instructions per call (-icount): {} workloads in {:.1} s",
            cfg.name(),
            counts
                .iter()
                .map(|c| &c.0)
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            t0.elapsed().as_secs_f64()
        ));
        add(cfg, counts);
    }
    let mut smp_records = Vec::new();
    for cfg in SMP_CONFIGS {
        let log = dir.join(format!("{}-smp-icount.log", cfg.name()));
        let icount = boot_smp(m, plan, cfg, &script_path(cfg, "-smp-icount"), true, &log)?;
        let timed: Vec<SmpSample> = smp_timed
            .iter()
            .filter(|(c, _)| *c == cfg)
            .map(|(_, s)| s.clone())
            .collect();
        smp_records.extend(smp::aggregate_smp(cfg, &timed, &icount));
    }
    step(format!(
        "all boots done after {:.0} s",
        started.elapsed().as_secs_f64()
    ));
    Ok((records, smp_records))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::plan::{FioRun, IoRun, NULL_WORKLOAD, is_fio};
    use crate::bench::tests::sample;

    #[test]
    fn checks_completeness() {
        let plan = Plan {
            rounds: 1,
            micro: vec![(1, 4096, false)],
            dur_ms: 10,
            io: vec![IoRun {
                disk: "vda",
                read: true,
                random: true,
                bs: 4096,
                count: 1,
            }],
            io_max_ms: 10,
            fio: vec![FioRun {
                disk: "nvme0n1",
                rw: "randread",
                bs: 4096,
                iodepth: 1,
                jobs: 1,
            }],
            fio_secs: 1,
            fio_ramp_secs: 0,
            smp: crate::bench::smp::SmpPlan {
                threads: vec![],
                icount_calls: 1,
                dur_ms: None,
            },
        };
        const FIO: &str = "fio nvme0n1 randread 4K qd1";
        assert_eq!(
            plan.workloads(Config::Warden),
            [
                "map 4K t1",
                "unmap 4K t1",
                NULL_WORKLOAD,
                "vda rand read 4K",
                FIO
            ]
        );
        assert_eq!(
            plan.workloads(Config::Strict),
            ["map 4K t1", "unmap 4K t1", "vda rand read 4K", FIO]
        );
        assert_eq!(
            plan.workloads(Config::WardenIdentity),
            ["vda rand read 4K", FIO]
        );
        let mut samples = Vec::new();
        for cfg in Config::ALL {
            for w in plan.workloads(cfg) {
                let mut s = sample(&w, 1.0);
                if w.starts_with("vda") || is_fio(&w) {
                    s.unit = "MB/s";
                }
                samples.push((cfg, s));
            }
        }
        let mut o = Outcome {
            plan,
            records: aggregate(&samples),
            smp: vec![],
            files: vec![],
        };
        let e = check(&o).unwrap_err().to_string();
        assert!(e.contains("warden map 4K t1: instructions per call"), "{e}");
        assert!(
            e.contains("warden null hypercall t1: instructions per call"),
            "{e}"
        );
        for r in &mut o.records {
            if r.unit == "ns/call" {
                let queued = r.config == Config::WardenLazy && r.workload.starts_with("unmap ");
                let el2 = if r.config.under_hyp() && !queued {
                    5.0
                } else {
                    0.0
                };
                r.extra.insert("instr_per_call", 10.0);
                r.extra.insert("instr_el2_per_call", el2);
                r.extra.insert("icount_ns_per_call", 10.2);
            }
        }
        check(&o).unwrap();
        // A lazy map still needs its hypercall's EL2 instructions.
        let lazy_map = |o: &mut Outcome| {
            o.records
                .iter_mut()
                .find(|r| r.config == Config::WardenLazy && r.workload == "map 4K t1")
                .unwrap()
                .extra
                .insert("instr_el2_per_call", 0.0);
        };
        lazy_map(&mut o);
        let e = check(&o).unwrap_err().to_string();
        assert!(e.contains("warden-lazy map 4K t1: no EL2"), "{e}");
        for r in &mut o.records {
            if r.config == Config::WardenLazy && r.workload == "map 4K t1" {
                r.extra.insert("instr_el2_per_call", 5.0);
            }
        }
        check(&o).unwrap();
        o.records.retain(|r| {
            !(matches!(r.config, Config::Lazy | Config::WardenIdentity)
                && r.workload.contains("rand"))
        });
        o.files.push(PathBuf::from("/nonexistent/report.md"));
        let e = check(&o).unwrap_err().to_string();
        assert!(
            e.contains("lazy vda rand read 4K")
                && e.contains("warden-identity vda rand read 4K")
                && e.contains(&format!("warden-identity {FIO}"))
                && !e.contains(&format!("warden {FIO}"))
                && e.contains("report.md"),
            "{e}"
        );
    }
}
