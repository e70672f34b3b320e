//! `cargo xtask bench [--quick]`: Warden against Linux's own arm-smmu-v3 driver, side by side in one run.
//!
//! Six configurations of the same kernel — passthrough, native strict, native lazy, Warden identity (the shim
//! with `iommu.passthrough=1`: devices on the hyp's host-identity domain, direct DMA, no hypercalls; I/O only),
//! Warden lazy (the shim with `iommu.strict=0`), Warden strict — each boot
//! running the same workloads (`tests/bench/guest.sh`: the `warden_bench` map/unmap microbenchmark and
//! O_DIRECT I/O with `dio`, and fio jobs on the raw disks with the static fio of [`crate::fio`]). Rounds alternate the configurations (one boot per configuration per round) so
//! that drift in the machine's load affects all alike; each measurement's min/median/max is over the rounds.
//! Results go to the terminal, `target/bench/report.json`, `target/bench/report.md` and
//! `target/bench/cost.png`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::time::{Duration, Instant};

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::png::{Canvas, Series, panel};
use super::stats;
use crate::Ws;
use crate::qemu::{Machine, Mode, RunOpts, Verdict};
use crate::util::step;

/// A spread (max − min) / median above this makes a measurement "too noisy to trust".
const SPREAD_WARN: f64 = 0.25;

/// One kernel configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Config {
    /// Native, `iommu.passthrough=1`: no translation.
    Passthrough,
    /// Native, Linux's arm-smmu-v3 in strict mode (Debian's default).
    Strict,
    /// Native, lazy invalidation (`iommu.strict=0`).
    Lazy,
    /// Warden at EL2, the shim with `iommu.passthrough=1`: identity domains for trusted devices, which the shim
    /// puts in the hyp's host-identity domain (direct DMA, no hypercall per DMA). Compared with native
    /// passthrough; also separates running Linux under the hyp (host stage-2) from the IOMMU path. Runs the I/O
    /// workloads only (its map/unmap would be dma-direct's, as passthrough's).
    WardenIdentity,
    /// Warden at EL2, the shim with `iommu.strict=0`: lazy (flush-queue) domains, unmaps queued and sent with
    /// `UNMAP_BATCH`. Compared with native lazy.
    WardenLazy,
    /// Warden at EL2 with the shim, strict (Debian's default).
    Warden,
}

impl Config {
    /// Every configuration, in report order.
    pub const ALL: [Config; 6] = [
        Config::Passthrough,
        Config::Strict,
        Config::Lazy,
        Config::WardenIdentity,
        Config::WardenLazy,
        Config::Warden,
    ];

    /// Short name used in the report.
    pub fn name(self) -> &'static str {
        match self {
            Config::Passthrough => "passthrough",
            Config::Strict => "strict",
            Config::Lazy => "lazy",
            Config::WardenIdentity => "warden-identity",
            Config::WardenLazy => "warden-lazy",
            Config::Warden => "warden",
        }
    }

    /// Plot colour.
    pub fn color(self) -> [u8; 3] {
        match self {
            Config::Passthrough => [120, 120, 120],
            Config::Strict => [31, 119, 180],
            Config::Lazy => [44, 160, 44],
            Config::WardenIdentity => [255, 127, 14],
            Config::WardenLazy => [148, 103, 189],
            Config::Warden => [214, 39, 40],
        }
    }

    /// Whether this configuration runs the map/unmap microbenchmark (and its instruction counts).
    pub fn runs_micro(self) -> bool {
        self != Config::WardenIdentity
    }

    /// Whether the hypervisor runs at EL2 (its calls show EL2 instructions).
    pub fn under_hyp(self) -> bool {
        matches!(
            self,
            Config::WardenIdentity | Config::WardenLazy | Config::Warden
        )
    }

    /// The native configuration this one is measured against for the issue's targets: Warden strict against
    /// native strict, Warden lazy against native lazy, Warden identity against native passthrough.
    pub fn baseline(self) -> Option<Config> {
        match self {
            Config::Warden => Some(Config::Strict),
            Config::WardenLazy => Some(Config::Lazy),
            Config::WardenIdentity => Some(Config::Passthrough),
            _ => None,
        }
    }

    /// Whether this configuration times the null hypercall ([`NULL_WORKLOAD`]): those with a hypervisor and
    /// the map/unmap microbenchmark, whose per-call costs it splits into trap + work.
    pub fn runs_null(self) -> bool {
        self == Config::Warden
    }

    /// Mode, kernel arguments, and whether `warden.ko` stays unloaded.
    fn opts(self) -> (Mode, Vec<String>, bool) {
        match self {
            Config::Passthrough => (Mode::Native, vec!["iommu.passthrough=1".into()], false),
            Config::Strict => (Mode::Native, vec![], false),
            Config::Lazy => (Mode::Native, vec!["iommu.strict=0".into()], false),
            Config::WardenIdentity => (Mode::Hyp, vec!["iommu.passthrough=1".into()], false),
            Config::WardenLazy => (Mode::Hyp, vec!["iommu.strict=0".into()], false),
            Config::Warden => (Mode::Hyp, vec![], false),
        }
    }
}

/// One O_DIRECT I/O workload (run by `dio`, `tests/guest/src/dio.c`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoRun {
    /// Guest block device (`nvme0n1`, `vda`).
    pub disk: &'static str,
    /// Reads (else writes).
    pub read: bool,
    /// Random aligned offsets over the whole device (else sequential from offset 0).
    pub random: bool,
    /// Bytes per call.
    pub bs: u64,
    /// Calls (fewer if the time bound [`Plan::io_max_ms`] is reached first).
    pub count: u64,
}

impl IoRun {
    /// Workload name: `nvme0n1 read 1M` (sequential), `vda rand write 4K` (random).
    pub fn name(&self) -> String {
        format!(
            "{} {}{} {}",
            self.disk,
            if self.random { "rand " } else { "" },
            if self.read { "read" } else { "write" },
            size_label(self.bs)
        )
    }
}

/// One fio job (the static fio of [`crate::fio`], `/warden/bin/fio`) on a raw disk: `direct=1`, the io_uring
/// engine, `time_based` for [`Plan::fio_secs`] seconds (after [`Plan::fio_ramp_secs`] unmeasured), one group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FioRun {
    /// Guest block device (`nvme0n1`, `vda`).
    pub disk: &'static str,
    /// fio's `rw`: `randread`, `read` (sequential), `write` (sequential).
    pub rw: &'static str,
    /// Block size in bytes.
    pub bs: u64,
    /// Queue depth per job.
    pub iodepth: u32,
    /// Jobs (`numjobs`), reported as one group.
    pub jobs: u32,
}

/// Whether `workload` is a fio job's ([`FioRun::name`]); the O_DIRECT targets and decomposition leave them out.
pub fn is_fio(workload: &str) -> bool {
    workload.starts_with("fio ")
}

impl FioRun {
    /// Workload name: `fio nvme0n1 randread 4K qd1`, `fio vda randread 4K qd16x2` (2 jobs).
    pub fn name(&self) -> String {
        let jobs = if self.jobs > 1 {
            format!("x{}", self.jobs)
        } else {
            String::new()
        };
        format!(
            "fio {} {} {} qd{}{jobs}",
            self.disk,
            self.rw,
            size_label(self.bs),
            self.iodepth
        )
    }
}

/// Parses one fio `--output-format=json` report of a single group (`group_reporting`) into a sample of `run`:
/// MB/s (the primary value), IOPS, completion latency p50/p99 (ns) and total latency mean (ns) of the job's
/// direction.
pub fn parse_fio(run: &FioRun, json: &str) -> Result<Sample> {
    let v: serde_json::Value = serde_json::from_str(json).context("fio's output is not JSON")?;
    let job = v
        .get("jobs")
        .and_then(|j| j.get(0))
        .context("fio's JSON has no jobs")?;
    if let Some(e) = job.get("error").and_then(serde_json::Value::as_i64)
        && e != 0
    {
        bail!("fio job {} failed with error {e}", run.name());
    }
    let dir = if run.rw.contains("write") {
        "write"
    } else {
        "read"
    };
    let d = job
        .get(dir)
        .with_context(|| format!("fio's JSON has no {dir} section"))?;
    let f = |path: &[&str]| -> Result<f64> {
        let mut x = d;
        for p in path {
            x = x
                .get(p)
                .with_context(|| format!("fio's JSON lacks {dir}.{}", path.join(".")))?;
        }
        x.as_f64()
            .with_context(|| format!("fio's {dir}.{} is not a number", path.join(".")))
    };
    let bw = f(&["bw_bytes"])?;
    let ios = f(&["total_ios"])?;
    if bw <= 0.0 || ios <= 0.0 {
        bail!("fio job {} did no I/O", run.name());
    }
    let mut extra = BTreeMap::new();
    extra.insert("iops", f(&["iops"])?);
    extra.insert("clat_p50_ns", f(&["clat_ns", "percentile", "50.000000"])?);
    extra.insert("clat_p99_ns", f(&["clat_ns", "percentile", "99.000000"])?);
    // Submission + completion: with io_uring many completions are reaped at submission, so clat alone is
    // bimodal; the total latency's mean is the per-I/O time.
    extra.insert("lat_mean_ns", f(&["lat_ns", "mean"])?);
    extra.insert("calls", ios);
    Ok(Sample {
        workload: run.name(),
        value: bw / 1e6,
        unit: "MB/s",
        extra,
        lower_is_better: false,
    })
}

/// The null hypercall's workload name: `warden_bench null=1`, a round trip of Warden's VERSION call (trap to EL2,
/// SMCCC decode, dispatch, return), the floor under every per-call cost of the paravirtual path.
pub const NULL_WORKLOAD: &str = "null hypercall t1";

/// Calls per size in the instruction-count boots (map and unmap phases of this many calls each).
pub const ICOUNT_CALLS: u32 = 64;

/// What one run measures.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Rounds (boots per configuration).
    pub rounds: usize,
    /// Microbenchmark runs: (threads, size, sg).
    pub micro: Vec<(u32, u64, bool)>,
    /// Duration of each microbenchmark run.
    pub dur_ms: u32,
    /// I/O runs.
    pub io: Vec<IoRun>,
    /// Bound on each I/O run's time.
    pub io_max_ms: u32,
    /// fio jobs.
    pub fio: Vec<FioRun>,
    /// Each fio job's measured time (`runtime`, `time_based`).
    pub fio_secs: u32,
    /// Each fio job's unmeasured warm-up (`ramp_time`).
    pub fio_ramp_secs: u32,
}

impl Plan {
    /// The `--quick` plan (CI) or the full one.
    pub fn new(quick: bool) -> Plan {
        let sizes: &[u64] = if quick {
            &[4096, 65536, 1 << 20]
        } else {
            &[4096, 16384, 65536, 262_144, 1 << 20, 2 << 20]
        };
        let mut micro = Vec::new();
        for t in [1, 2] {
            for &s in sizes {
                micro.push((t, s, false));
            }
        }
        micro.push((1, 4096, true));
        if !quick {
            micro.push((1, 65536, true));
        }
        let k = if quick { 1 } else { 3 };
        let mut io = Vec::new();
        for disk in ["nvme0n1", "vda"] {
            let run = |read, random, bs, count| IoRun {
                disk,
                read,
                random,
                bs,
                count,
            };
            io.push(run(true, false, 4096, 2000 * k));
            io.push(run(true, false, 1 << 20, 128 * k));
            io.push(run(false, false, 1 << 20, 128 * k));
            // Random 4K: 1000 calls (about half a second per run on TCG) in --quick.
            let nrand = if quick { 1000 } else { 5000 };
            io.push(run(true, true, 4096, nrand));
            io.push(run(false, true, 4096, nrand));
        }
        // fio: the issue's workloads on both disks; --quick only checks that fio works in every configuration.
        let mut fio = Vec::new();
        for disk in ["nvme0n1", "vda"] {
            let job = |rw, bs, iodepth, jobs| FioRun {
                disk,
                rw,
                bs,
                iodepth,
                jobs,
            };
            fio.push(job("randread", 4096, 1, 1));
            if !quick {
                fio.push(job("randread", 4096, 16, 2));
                fio.push(job("read", 128 << 10, 1, 1));
                fio.push(job("write", 1 << 20, 1, 1));
            }
        }
        if quick {
            fio.truncate(1);
        }
        Plan {
            rounds: 3,
            micro,
            dur_ms: if quick { 200 } else { 1000 },
            io,
            io_max_ms: if quick { 3000 } else { 15000 },
            fio,
            fio_secs: if quick { 2 } else { 4 },
            fio_ramp_secs: u32::from(!quick),
        }
    }

    /// The workload names `cfg` must report: each microbenchmark's map and unmap (if it
    /// [runs them](Config::runs_micro)), each I/O run.
    pub fn workloads(&self, cfg: Config) -> Vec<String> {
        let mut out = Vec::new();
        if cfg.runs_micro() {
            for &(t, s, sg) in &self.micro {
                for op in ["map", "unmap"] {
                    out.push(micro_name(op, t, s, sg));
                }
            }
        }
        if cfg.runs_null() {
            out.push(NULL_WORKLOAD.to_string());
        }
        out.extend(self.io.iter().map(IoRun::name));
        out.extend(self.fio.iter().map(FioRun::name));
        out
    }

    /// The guest script for `cfg`: the variables, then `tests/bench/guest.sh`. `mark`: bracket each workload
    /// with a trace marker (see [`trace_counts`]); `icount`: N > 0 counts instructions over N calls per size
    /// instead (for a `-icount` boot).
    fn script(&self, ws: &Ws, cfg: Config, mark: bool, icount: u32) -> Result<String> {
        let micro: Vec<String> = self
            .micro
            .iter()
            .filter(|_| cfg.runs_micro())
            .map(|(t, s, sg)| format!("{t}:{s}:{}", u8::from(*sg)))
            .collect();
        let io: Vec<String> = self
            .io
            .iter()
            .map(|r| {
                format!(
                    "{}:{}:{}:{}:{}",
                    r.disk,
                    if r.read { "read" } else { "write" },
                    if r.random { "rand" } else { "seq" },
                    r.bs,
                    r.count
                )
            })
            .collect();
        let fio: Vec<String> = self
            .fio
            .iter()
            .map(|r| format!("{}:{}:{}:{}:{}", r.disk, r.rw, r.bs, r.iodepth, r.jobs))
            .collect();
        let body = fs::read_to_string(ws.root.join("tests/bench/guest.sh"))?;
        Ok(format!(
            "#!/bin/sh\nBENCH_MARK={}\nBENCH_CONFIG={}\nBENCH_NULL={}\nBENCH_MICRO=\"{}\"\nBENCH_DUR_MS={}\n\
             BENCH_IO=\"{}\"\nBENCH_IO_MAX_MS={}\nBENCH_FIO=\"{}\"\nBENCH_FIO_SECS={}\nBENCH_FIO_RAMP={}\n\
             BENCH_ICOUNT={icount}\n{body}",
            u8::from(mark),
            cfg.name(),
            u8::from(cfg.runs_null()),
            micro.join(" "),
            self.dur_ms,
            io.join(" "),
            self.io_max_ms,
            fio.join(" "),
            self.fio_secs,
            self.fio_ramp_secs
        ))
    }
}

/// A human label for a byte size (4K, 1M).
pub fn size_label(b: u64) -> String {
    if b >= 1 << 20 && b.is_multiple_of(1 << 20) {
        format!("{}M", b >> 20)
    } else {
        format!("{}K", b >> 10)
    }
}

/// A microbenchmark workload's name: `map 4K t1`, `unmap sg16x4K t2`; op `null` is [`NULL_WORKLOAD`].
pub fn micro_name(op: &str, threads: u32, size: u64, sg: bool) -> String {
    if op == "null" {
        return format!("null hypercall t{threads}");
    }
    let sz = size_label(size);
    let what = if sg { format!("sg16x{sz}") } else { sz };
    format!("{op} {what} t{threads}")
}

/// The `key=value` fields of a result line.
pub fn fields(line: &str) -> BTreeMap<&str, &str> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .collect()
}

fn num(f: &BTreeMap<&str, &str>, k: &str) -> Option<f64> {
    f.get(k)?.parse().ok()
}

/// One measured value of one workload in one boot.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    /// Workload name (`map 4K t1`, `unmap sg16x4K t1`, `nvme0n1 read 4K`).
    pub workload: String,
    /// Primary metric: ns per call for map/unmap, MB/s for I/O.
    pub value: f64,
    /// Unit of `value`.
    pub unit: &'static str,
    /// Secondary metrics (p50/p99 ns, ops/s, IOPS) and host-noise-free counts per call (hypercalls, SMMU
    /// commands, CMD_SYNCs); counts are absent without the shim.
    pub extra: BTreeMap<&'static str, f64>,
    /// Lower is better (times) or higher is better (throughput).
    pub lower_is_better: bool,
}

/// Parses the `@micro`, `@io` and `@fio` lines of a guest's output into samples (a malformed `@fio` report is
/// an error: fio ran but its result cannot be read).
pub fn parse(log: &str) -> Result<Vec<Sample>> {
    let mut out = Vec::new();
    for line in log.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(rest) = line.strip_prefix("@fio ") {
            let (head, json) = rest
                .split_once(" json=")
                .with_context(|| format!("an @fio line without json=: {rest:.200}"))?;
            let f = fields(head);
            let (Some(disk), Some(rw), Some(bs), Some(iodepth), Some(jobs)) = (
                f.get("disk"),
                f.get("rw"),
                f.get("bs").and_then(|x| x.parse().ok()),
                f.get("qd").and_then(|x| x.parse().ok()),
                f.get("jobs").and_then(|x| x.parse().ok()),
            ) else {
                bail!("a malformed @fio line: {head}");
            };
            // The plan's names (static): an @fio line names only disks and directions the plan can.
            let known = |x: &str| {
                ["nvme0n1", "vda", "randread", "read", "write"]
                    .into_iter()
                    .find(|k| *k == x)
                    .with_context(|| format!("an @fio line names {x:?}: {head}"))
            };
            let run = FioRun {
                disk: known(disk)?,
                rw: known(rw)?,
                bs,
                iodepth,
                jobs,
            };
            let mut s = parse_fio(&run, json)?;
            let ios = s.extra.get("calls").copied().unwrap_or(0.0);
            if let Some(v) = num(&f, "hc_total") {
                s.extra.insert("hypercalls_per_io", v / ios);
            }
            if let Some(v) = num(&f, "cmds") {
                s.extra.insert("smmu_cmds_per_io", v / ios);
            }
            out.push(s);
        } else if let Some(rest) = line.strip_prefix("@micro ") {
            let f = fields(rest);
            let (Some(op), Some(t), Some(size), Some(sg), Some(calls), Some(mean)) = (
                f.get("op"),
                f.get("threads").and_then(|t| t.parse::<u32>().ok()),
                num(&f, "size"),
                f.get("sg"),
                num(&f, "calls"),
                num(&f, "mean_ns"),
            ) else {
                continue;
            };
            if calls <= 0.0 {
                continue;
            }
            let mut extra = BTreeMap::new();
            for (k, name) in [
                ("p50_ns", "p50_ns"),
                ("p99_ns", "p99_ns"),
                ("ops_per_s", "ops_per_s"),
            ] {
                if let Some(v) = num(&f, k) {
                    extra.insert(name, v);
                }
            }
            extra.insert("size", size);
            extra.insert("calls", calls);
            // Counts over the whole run, per call of this op (map: MAP_PAGES calls; unmap: UNMAP_PAGES calls and
            // the SMMU commands and syncs, which only unmaps issue) and all hypercalls per map+unmap pair.
            let own = match *op {
                "map" => "hc_map",
                "null" => "hc_null",
                _ => "hc_unmap",
            };
            if let Some(v) = num(&f, own) {
                extra.insert("hypercalls_per_call", v / calls);
            }
            if let Some(v) = num(&f, "hc_total") {
                extra.insert("hypercalls_per_pair", v / calls);
            }
            if *op == "unmap" {
                if let Some(v) = num(&f, "cmds") {
                    extra.insert("smmu_cmds_per_call", v / calls);
                }
                if let Some(v) = num(&f, "syncs") {
                    extra.insert("cmd_syncs_per_call", v / calls);
                }
            }
            out.push(Sample {
                workload: micro_name(op, t, size as u64, *sg == "1"),
                value: mean,
                unit: "ns/call",
                extra,
                lower_is_better: true,
            });
        } else if let Some(rest) = line.strip_prefix("@io ") {
            let f = fields(rest);
            let (Some(disk), Some(kind), Some(pattern), Some(bs), Some(n), Some(ns)) = (
                f.get("disk"),
                f.get("kind"),
                f.get("pattern"),
                num(&f, "bs"),
                num(&f, "count"),
                num(&f, "ns"),
            ) else {
                continue;
            };
            if n <= 0.0 || ns <= 0.0 {
                continue;
            }
            let secs = ns / 1e9;
            let mut extra = BTreeMap::new();
            extra.insert("iops", n / secs);
            extra.insert("calls", n);
            if let Some(v) = num(&f, "hc_total") {
                extra.insert("hypercalls_per_io", v / n);
            }
            if let Some(v) = num(&f, "cmds") {
                extra.insert("smmu_cmds_per_io", v / n);
            }
            out.push(Sample {
                workload: format!(
                    "{disk} {}{kind} {}",
                    if *pattern == "rand" { "rand " } else { "" },
                    size_label(bs as u64)
                ),
                value: n * bs / secs / 1e6,
                unit: "MB/s",
                extra,
                lower_is_better: false,
            });
        }
    }
    Ok(out)
}

/// Instructions per call from the `@icount` lines of an instruction-count boot: `(workload, key, value)` with
/// keys `instr_per_call` (EL1 and EL2: everything the call executed, the hypervisor's part included),
/// `instr_el2_per_call` (its EL2 part: the same count minus one with `exclude_hv`) and, when the line has it,
/// `icount_ns_per_call` (guest ktime over the same calls: under `-icount shift=0` one nanosecond per
/// instruction at any exception level, a cross-check of `instr_per_call` independent of the PMU).
pub fn parse_icount(log: &str) -> Vec<(String, &'static str, f64)> {
    let mut out = Vec::new();
    for line in log.lines() {
        let Some(rest) = line.trim_end_matches('\r').strip_prefix("@icount ") else {
            continue;
        };
        let f = fields(rest);
        let (Some(op), Some(size), Some(sg), Some(calls), Some(all), Some(nohv)) = (
            f.get("op"),
            num(&f, "size"),
            f.get("sg"),
            num(&f, "calls"),
            num(&f, "instr"),
            num(&f, "instr_nohv"),
        ) else {
            continue;
        };
        if calls <= 0.0 {
            continue;
        }
        let w = micro_name(op, 1, size as u64, *sg == "1");
        out.push((w.clone(), "instr_per_call", all / calls));
        out.push((w.clone(), "instr_el2_per_call", (all - nohv) / calls));
        if let Some(ns) = num(&f, "ns") {
            out.push((w, "icount_ns_per_call", ns / calls));
        }
    }
    out
}

/// SMMU commands and CMD_SYNCs of each workload, from QEMU's `smmuv3_cmdq_opcode` and `smmuv3_read_mmio` trace
/// (log backend): the guest brackets every workload with a 64-bit read of SMMU register offset 0x18, which
/// nothing else issues, so the commands between the (2k+1)-th and (2k+2)-th marker are workload k's.
pub fn trace_counts(trace: &str) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut inside = false;
    let (mut cmds, mut syncs) = (0, 0);
    for line in trace.lines() {
        if line.contains("smmuv3_read_mmio")
            && line.contains("addr: 0x18 ")
            && line.contains("size: 0x8")
        {
            if inside {
                out.push((cmds, syncs));
            }
            inside = !inside;
            (cmds, syncs) = (0, 0);
        } else if inside && line.contains("smmuv3_cmdq_opcode") {
            cmds += 1;
            if line.contains("CMD_SYNC") {
                syncs += 1;
            }
        }
    }
    out
}

/// Per-call command counts of each native sample of a marked boot: `(workload, key, value)`. Samples come in
/// workload order (a map line, then its unmap line; or one I/O line), one trace segment per workload.
pub fn attribute_counts(
    samples: &[Sample],
    segs: &[(u64, u64)],
) -> Vec<(String, &'static str, f64)> {
    let mut out = Vec::new();
    let mut k = 0;
    for s in samples {
        let is_map = s.workload.starts_with("map ");
        let Some(&(cmds, syncs)) = segs.get(k) else {
            break;
        };
        let calls = s.extra.get("calls").copied().unwrap_or(0.0);
        if calls > 0.0 && !is_map {
            let io = s.unit == "MB/s";
            let (ck, sk) = if io {
                ("smmu_cmds_per_io", "cmd_syncs_per_io")
            } else {
                ("smmu_cmds_per_call", "cmd_syncs_per_call")
            };
            out.push((s.workload.clone(), ck, cmds as f64 / calls));
            out.push((s.workload.clone(), sk, syncs as f64 / calls));
        }
        if !is_map {
            k += 1;
        }
    }
    out
}

/// Aggregated result of one configuration × workload.
#[derive(Clone, Debug)]
pub struct Record {
    /// Configuration.
    pub config: Config,
    /// Workload name.
    pub workload: String,
    /// Unit of the values.
    pub unit: &'static str,
    /// Min, median, max over the rounds.
    pub min: f64,
    /// Median over the rounds.
    pub median: f64,
    /// Max over the rounds.
    pub max: f64,
    /// Number of rounds measured.
    pub n: usize,
    /// Median of each secondary metric.
    pub extra: BTreeMap<&'static str, f64>,
    /// Median over native strict's median (None for strict itself or when strict is missing).
    pub ratio: Option<f64>,
    /// Lower is better.
    pub lower_is_better: bool,
}

impl Record {
    /// (max − min) / median.
    pub fn spread(&self) -> f64 {
        if self.median > 0.0 {
            (self.max - self.min) / self.median
        } else {
            0.0
        }
    }
}

/// Aggregates every (config, sample) into records with ratios to native strict.
pub fn aggregate(samples: &[(Config, Sample)]) -> Vec<Record> {
    let mut groups: BTreeMap<(String, Config), Vec<&Sample>> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for (c, s) in samples {
        if !order.contains(&s.workload) {
            order.push(s.workload.clone());
        }
        groups.entry((s.workload.clone(), *c)).or_default().push(s);
    }
    let mut out = Vec::new();
    for w in &order {
        for c in Config::ALL {
            let Some(v) = groups.get(&(w.clone(), c)) else {
                continue;
            };
            let mut xs: Vec<f64> = v.iter().map(|s| s.value).collect();
            let Some((min, median, max)) = stats(&mut xs) else {
                continue;
            };
            let mut extra = BTreeMap::new();
            let keys: Vec<&'static str> = v.iter().flat_map(|s| s.extra.keys().copied()).collect();
            for k in keys {
                let mut ys: Vec<f64> = v.iter().filter_map(|s| s.extra.get(k).copied()).collect();
                if let Some((_, m, _)) = stats(&mut ys) {
                    extra.insert(k, m);
                }
            }
            out.push(Record {
                config: c,
                workload: w.clone(),
                unit: v[0].unit,
                min,
                median,
                max,
                n: v.len(),
                extra,
                ratio: None,
                lower_is_better: v[0].lower_is_better,
            });
        }
    }
    let strict: BTreeMap<String, f64> = out
        .iter()
        .filter(|r| r.config == Config::Strict)
        .map(|r| (r.workload.clone(), r.median))
        .collect();
    let identity: BTreeMap<String, f64> = out
        .iter()
        .filter(|r| r.config == Config::WardenIdentity)
        .map(|r| (r.workload.clone(), r.median))
        .collect();
    for r in &mut out {
        if r.config != Config::Strict
            && let Some(&s) = strict.get(&r.workload)
            && s > 0.0
        {
            r.ratio = Some(r.median / s);
        }
        if r.config == Config::Warden
            && let Some(&s) = identity.get(&r.workload)
            && s > 0.0
        {
            r.extra.insert("ratio_to_warden_identity", r.median / s);
        }
    }
    let medians: BTreeMap<(Config, String), f64> = out
        .iter()
        .map(|r| ((r.config, r.workload.clone()), r.median))
        .collect();
    for r in &mut out {
        if let Some(b) = r.config.baseline()
            && let Some(&m) = medians.get(&(b, r.workload.clone()))
            && m > 0.0
        {
            r.extra.insert("ratio_to_native", r.median / m);
        }
    }
    out
}

/// One I/O workload's gap between native strict and Warden, split at Warden identity (direct DMA under the hyp).
#[derive(Clone, Debug, PartialEq)]
pub struct Decomposition {
    /// I/O workload name.
    pub workload: String,
    /// Median (MB/s) of native strict.
    pub strict: f64,
    /// Median of warden-identity.
    pub identity: f64,
    /// Median of warden.
    pub warden: f64,
    /// Median of passthrough (direct DMA natively), when measured.
    pub passthrough: Option<f64>,
}

impl Decomposition {
    /// warden-identity / strict: running under the hyp with direct DMA instead of natively with Linux's strict
    /// IOMMU mappings (host stage-2 in this emulator, and no per-DMA IOMMU work).
    pub fn under_hyp(&self) -> f64 {
        self.identity / self.strict
    }
    /// warden-identity / passthrough: both with direct DMA, so only running under the hyp differs.
    pub fn hyp_vs_passthrough(&self) -> Option<f64> {
        self.passthrough.map(|p| self.identity / p)
    }
    /// warden / warden-identity: the paravirtual IOMMU path (shim, hypercalls, hyp page tables, SMMU commands).
    pub fn iommu(&self) -> f64 {
        self.warden / self.identity
    }
    /// warden / strict: the product of the two.
    pub fn total(&self) -> f64 {
        self.warden / self.strict
    }
}

/// The decomposition of every I/O workload that has all three medians, in record order.
pub fn decompose(records: &[Record]) -> Vec<Decomposition> {
    let median = |cfg: Config, w: &str| {
        records
            .iter()
            .find(|r| r.config == cfg && r.workload == w)
            .map(|r| r.median)
            .filter(|m| *m > 0.0)
    };
    let mut out = Vec::new();
    for r in records
        .iter()
        .filter(|r| r.config == Config::Warden && r.unit == "MB/s" && !is_fio(&r.workload))
    {
        if let (Some(strict), Some(identity)) = (
            median(Config::Strict, &r.workload),
            median(Config::WardenIdentity, &r.workload),
        ) && r.median > 0.0
        {
            out.push(Decomposition {
                workload: r.workload.clone(),
                strict,
                identity,
                warden: r.median,
                passthrough: median(Config::Passthrough, &r.workload),
            });
        }
    }
    out
}

/// Not an issue target, reported next to them: the worst warden / warden-identity and warden-identity / strict
/// throughput ratios, sequential and random, so that a reader sees which part of a missed I/O target the IOMMU
/// path causes.
pub fn split_notes(records: &[Record]) -> Vec<String> {
    let d = decompose(records);
    let mut out = Vec::new();
    for random in [false, true] {
        let of = |f: &dyn Fn(&Decomposition) -> f64| {
            d.iter()
                .filter(|x| x.workload.contains(" rand ") == random)
                .map(|x| (f(x), x.workload.as_str()))
                .min_by(|a, b| a.0.total_cmp(&b.0))
        };
        if let (Some((i, iw)), Some((s, sw))) = (of(&|x| x.iommu()), of(&|x| x.under_hyp())) {
            out.push(format!(
                "O_DIRECT {}: IOMMU path alone (warden / warden-identity) worst {i:.2}× ({iw}); under the hyp \
                 with direct DMA (warden-identity / native strict) worst {s:.2}× ({sw})",
                if random { "random" } else { "sequential" }
            ));
        }
    }
    out
}

/// A JSON string literal.
fn js(s: &str) -> String {
    let mut o = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// A JSON number (null when not finite).
fn jn(x: f64) -> String {
    if x.is_finite() {
        format!("{}", (x * 1000.0).round() / 1000.0)
    } else {
        "null".into()
    }
}

/// `report.json`: one object per configuration × workload.
pub fn json(records: &[Record], meta: &str) -> String {
    let mut o = format!("{{\"meta\": {},\n \"records\": [\n", js(meta));
    for (i, r) in records.iter().enumerate() {
        let extra: Vec<String> = r
            .extra
            .iter()
            .map(|(k, v)| format!("{}: {}", js(k), jn(*v)))
            .collect();
        let _ = writeln!(
            o,
            "  {{\"config\": {}, \"workload\": {}, \"unit\": {}, \"min\": {}, \"median\": {}, \"max\": {}, \
             \"runs\": {}, \"spread\": {}, \"ratio_to_strict\": {}, \"lower_is_better\": {}, \"extra\": {{{}}}}}{}",
            js(r.config.name()),
            js(&r.workload),
            js(r.unit),
            jn(r.min),
            jn(r.median),
            jn(r.max),
            r.n,
            jn(r.spread()),
            r.ratio.map(jn).unwrap_or_else(|| "null".into()),
            r.lower_is_better,
            extra.join(", "),
            if i + 1 < records.len() { "," } else { "" }
        );
    }
    o.push_str("]}\n");
    o
}

fn fmt_val(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

/// The result table (plain text, also used inside report.md's code block).
pub fn table(records: &[Record]) -> String {
    let mut o = format!(
        "{:<30} {:<15} {:>10} {:>10} {:>10} {:>8} {:>6} {:>7} {:>7} {:>10} {:>8}  {}\n",
        "workload",
        "config",
        "min",
        "median",
        "max",
        "unit",
        "×strict",
        "hc/call",
        "cmd/call",
        "instr/call",
        "IOPS",
        "note"
    );
    for r in records {
        let mut note = if r.spread() > SPREAD_WARN {
            format!("noisy: spread {:.0} % ", r.spread() * 100.0)
        } else {
            String::new()
        };
        if let (Some(p50), Some(p99)) = (r.extra.get("clat_p50_ns"), r.extra.get("clat_p99_ns")) {
            let _ = write!(note, "clat p50 {:.0} µs p99 {:.0} µs", p50 / 1e3, p99 / 1e3);
        }
        let hc = r
            .extra
            .get("hypercalls_per_call")
            .or_else(|| r.extra.get("hypercalls_per_io"))
            .map(|v| format!("{v:.2}"))
            .unwrap_or_else(|| "-".into());
        let cmd = r
            .extra
            .get("smmu_cmds_per_call")
            .or_else(|| r.extra.get("smmu_cmds_per_io"))
            .map(|v| format!("{v:.2}"))
            .unwrap_or_else(|| "-".into());
        let instr = r
            .extra
            .get("instr_per_call")
            .map(|v| format!("{v:.0}"))
            .unwrap_or_else(|| "-".into());
        let iops = r
            .extra
            .get("iops")
            .map(|v| format!("{v:.0}"))
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            o,
            "{:<30} {:<15} {:>10} {:>10} {:>10} {:>8} {:>6} {:>7} {:>7} {:>10} {:>8}  {}",
            r.workload,
            r.config.name(),
            fmt_val(r.min),
            fmt_val(r.median),
            fmt_val(r.max),
            r.unit,
            r.ratio
                .map(|x| format!("{x:.2}"))
                .unwrap_or_else(|| "-".into()),
            hc,
            cmd,
            instr,
            iops,
            note
        );
    }
    o
}

/// The issue's targets, checked against the Warden records: (target, measured, met?).
pub fn targets(records: &[Record]) -> Vec<(String, String, bool)> {
    let mut out = Vec::new();
    let warden: Vec<&Record> = records
        .iter()
        .filter(|r| r.config == Config::Warden)
        .collect();
    let worst = |pred: &dyn Fn(&Record) -> bool| -> Option<(f64, String)> {
        warden
            .iter()
            .filter(|r| pred(r))
            .filter_map(|r| r.ratio.map(|x| (x, r.workload.clone())))
            .max_by(|a, b| a.0.total_cmp(&b.0))
    };
    if let Some((x, w)) = worst(&|r| r.workload.starts_with("unmap ")) {
        out.push((
            "unmap ≤ 1.0× native strict at every size".into(),
            format!("worst {x:.2}× ({w})"),
            x <= 1.0,
        ));
    }
    if let Some((x, w)) = worst(&|r| r.workload.starts_with("map ")) {
        out.push((
            "map ≤ 1.5× native strict at every size".into(),
            format!("worst {x:.2}× ({w})"),
            x <= 1.5,
        ));
    }
    for random in [false, true] {
        let io_worst = warden
            .iter()
            .filter(|r| {
                r.unit == "MB/s" && !is_fio(&r.workload) && r.workload.contains(" rand ") == random
            })
            .filter_map(|r| r.ratio.map(|x| (x, r.workload.clone())))
            .min_by(|a, b| a.0.total_cmp(&b.0));
        if let Some((x, w)) = io_worst {
            out.push((
                format!(
                    "O_DIRECT {} throughput (MB/s, IOPS) ≥ 0.95× native strict",
                    if random { "random" } else { "sequential" }
                ),
                format!("worst {x:.2}× ({w})"),
                x >= 0.95,
            ));
        }
    }
    let cmds = warden
        .iter()
        .filter(|r| r.workload.starts_with("unmap ") && !r.workload.contains("sg16"))
        .filter_map(|r| r.extra.get("smmu_cmds_per_call").copied())
        .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
    if let Some(x) = cmds {
        out.push((
            "SMMU commands per contiguous unmap ≤ 2 (up to 2 MiB)".into(),
            format!("max {x:.2}"),
            x <= 2.0 + 1e-9,
        ));
    }
    let sg = warden
        .iter()
        .filter(|r| r.workload.starts_with("map sg16"))
        .filter_map(|r| r.extra.get("hypercalls_per_call").copied())
        .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
    if let Some(x) = sg {
        out.push((
            "hypercalls per dma_map_sg of 16 segments = 1".into(),
            format!("{x:.2}"),
            x <= 1.0 + 1e-9,
        ));
    }
    out
}

/// Issue 14's fio targets: Warden strict ≥ 0.95× native strict, Warden lazy ≥ 0.95× native lazy, Warden identity
/// ≥ 0.95× native passthrough, in throughput on every fio workload, both disks (the worst ratio of each mode).
/// (target, measured, met?).
pub fn fio_targets(records: &[Record]) -> Vec<(String, String, bool)> {
    let mut out = Vec::new();
    for cfg in [Config::Warden, Config::WardenLazy, Config::WardenIdentity] {
        let Some(base) = cfg.baseline() else { continue };
        let worst = records
            .iter()
            .filter(|r| r.config == cfg && is_fio(&r.workload))
            .filter_map(|r| {
                r.extra
                    .get("ratio_to_native")
                    .map(|&x| (x, r.workload.as_str()))
            })
            .min_by(|a, b| a.0.total_cmp(&b.0));
        if let Some((x, w)) = worst {
            out.push((
                format!(
                    "{} fio throughput ≥ 0.95× native {} on every workload",
                    cfg.name(),
                    base.name()
                ),
                format!("worst {x:.2}× ({w})"),
                x >= 0.95,
            ));
        }
    }
    out
}

/// Issue 14's targets for Warden lazy and Warden identity: O_DIRECT throughput ≥ 0.95× their native
/// counterpart (native lazy, native passthrough), and lazy unmaps at ≤ 1 hypercall per 16. (target, measured,
/// met?).
pub fn mode_targets(records: &[Record]) -> Vec<(String, String, bool)> {
    let mut out = Vec::new();
    for cfg in [Config::WardenLazy, Config::WardenIdentity] {
        let Some(base) = cfg.baseline() else { continue };
        let worst = records
            .iter()
            .filter(|r| r.config == cfg && r.unit == "MB/s" && !is_fio(&r.workload))
            .filter_map(|r| {
                r.extra
                    .get("ratio_to_native")
                    .map(|&x| (x, r.workload.as_str()))
            })
            .min_by(|a, b| a.0.total_cmp(&b.0));
        if let Some((x, w)) = worst {
            out.push((
                format!(
                    "{} O_DIRECT throughput ≥ 0.95× native {}",
                    cfg.name(),
                    base.name()
                ),
                format!("worst {x:.2}× ({w})"),
                x >= 0.95,
            ));
        }
    }
    let lazy = records
        .iter()
        .filter(|r| r.config == Config::WardenLazy && r.workload.starts_with("unmap "))
        .filter_map(|r| {
            r.extra
                .get("hypercalls_per_call")
                .map(|&x| (x, r.workload.as_str()))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((x, w)) = lazy {
        out.push((
            "warden-lazy: ≤ 1 hypercall per 16 unmaps".into(),
            format!("worst {x:.3} per unmap ({w})"),
            x <= 1.0 / 16.0 + 1e-9,
        ));
    }
    out
}

/// One Warden 1-thread map/unmap record split at the null hypercall: its hypercalls' trap cost (the null
/// hypercall's × hypercalls per call) and the rest (the work: shim, hyp checks, page tables, SMMU commands).
#[derive(Clone, Debug, PartialEq)]
pub struct FloorSplit {
    /// Workload name.
    pub workload: String,
    /// Median ns per call.
    pub ns: f64,
    /// Hypercalls per call.
    pub hypercalls: f64,
    /// `hypercalls` × the null hypercall's median ns.
    pub trap_ns: f64,
    /// Instructions per call (EL1 + EL2) and `hypercalls` × the null hypercall's, when counted.
    pub instr: Option<(f64, f64)>,
}

/// The split of every Warden 1-thread map/unmap record that has a hypercall count, when the null hypercall was
/// measured.
pub fn floor_split(records: &[Record]) -> Vec<FloorSplit> {
    let warden = |w: &str| {
        records
            .iter()
            .find(|r| r.config == Config::Warden && r.workload == w)
    };
    let Some(null) = warden(NULL_WORKLOAD) else {
        return Vec::new();
    };
    let null_instr = null.extra.get("instr_per_call").copied();
    records
        .iter()
        .filter(|r| {
            r.config == Config::Warden
                && r.unit == "ns/call"
                && r.workload.ends_with(" t1")
                && r.workload != NULL_WORKLOAD
        })
        .filter_map(|r| {
            let hc = *r.extra.get("hypercalls_per_call")?;
            Some(FloorSplit {
                workload: r.workload.clone(),
                ns: r.median,
                hypercalls: hc,
                trap_ns: hc * null.median,
                instr: r
                    .extra
                    .get("instr_per_call")
                    .zip(null_instr)
                    .map(|(&i, n)| (i, hc * n)),
            })
        })
        .collect()
}

/// Issue 14's map targets against the null hypercall, at 1 thread: time ≤ native strict + one null hypercall,
/// and instructions ≤ 1.5× native strict's. (target, measured, met?).
pub fn floor_targets(records: &[Record]) -> Vec<(String, String, bool)> {
    let mut out = Vec::new();
    let find = |cfg: Config, w: &str| records.iter().find(|r| r.config == cfg && r.workload == w);
    let Some(null) = find(Config::Warden, NULL_WORKLOAD) else {
        return out;
    };
    let maps: Vec<(&Record, &Record)> = records
        .iter()
        .filter(|r| {
            r.config == Config::Warden
                && r.workload.starts_with("map ")
                && r.workload.ends_with(" t1")
        })
        .filter_map(|r| Some((r, find(Config::Strict, &r.workload)?)))
        .collect();
    let excess = maps
        .iter()
        .map(|(w, s)| (w.median - s.median - null.median, w.workload.as_str()))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((x, w)) = excess {
        out.push((
            "map time ≤ native strict + one null hypercall (1 thread)".into(),
            format!(
                "worst {x:+.0} ns over that bound ({w}; null hypercall {:.0} ns)",
                null.median
            ),
            x <= 0.0,
        ));
    }
    let instr = maps
        .iter()
        .filter_map(|(w, s)| {
            let (a, b) = (
                w.extra.get("instr_per_call")?,
                s.extra.get("instr_per_call")?,
            );
            (*b > 0.0).then(|| (a / b, w.workload.as_str()))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((x, w)) = instr {
        out.push((
            "map ≤ 1.5× native strict in instructions per call (1 thread)".into(),
            format!("worst {x:.2}× ({w})"),
            x <= 1.5,
        ));
    }
    out
}

/// The PNG: mean ns per call vs buffer size at 1 thread; left panel map, right panel unmap; one line per
/// configuration (colours in report.md).
pub fn plot(records: &[Record]) -> Result<Vec<u8>> {
    let mut c = Canvas::new(1000, 420);
    for (i, op) in ["map", "unmap"].into_iter().enumerate() {
        let mut series = Vec::new();
        for cfg in Config::ALL.into_iter().filter(|c| c.runs_micro()) {
            let mut points: Vec<(f64, f64)> = records
                .iter()
                .filter(|r| {
                    r.config == cfg
                        && r.workload.starts_with(&format!("{op} "))
                        && r.workload.ends_with(" t1")
                        && !r.workload.contains("sg16")
                })
                .filter_map(|r| r.extra.get("size").map(|s| (*s, r.median)))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            series.push(Series {
                color: cfg.color(),
                points,
            });
        }
        let x0 = 40 + i as i64 * 500;
        panel(&mut c, (x0, 40, x0 + 420, 380), &series, 5000.0);
    }
    // Legend: one colour square per plotted configuration, in Config::ALL order, top left.
    for (k, cfg) in Config::ALL
        .into_iter()
        .filter(|c| c.runs_micro())
        .enumerate()
    {
        let x = 50 + 30 * k as i64;
        c.rect(x, 10, x + 18, 28, cfg.color());
    }
    c.png()
}

/// The markdown report.
pub fn markdown(records: &[Record], meta: &str, plan: &Plan) -> String {
    let mut o = String::from("# Warden vs Linux's arm-smmu-v3: `cargo xtask bench`\n\n");
    let _ = writeln!(o, "{meta}\n");
    let _ = writeln!(
        o,
        "Configurations: passthrough (`--native iommu.passthrough=1`), strict (`--native`, Debian's default), \
         lazy (`--native iommu.strict=0`), warden-identity (hypervisor + shim with `iommu.passthrough=1`: the \
         devices in identity domains, which are the hyp's host-identity domain, direct DMA, no hypercalls; I/O \
         workloads only, since its map/unmap would be dma-direct's as in passthrough), warden-lazy (hypervisor + \
         shim with `iommu.strict=0`: flush-queue domains, unmaps queued and sent with UNMAP_BATCH), warden \
         (hypervisor + shim, strict). Issue 14 compares warden with strict, warden-lazy with lazy and \
         warden-identity with passthrough (`ratio_to_native` in report.json). {} rounds, one boot per configuration \
         per round, configurations alternating; min/median/max over the rounds. Microbenchmark: \
         `warden_bench` on the NVMe controller, {} ms per run, mean ns per call (tN = N threads; sg16xS = \
         dma_map_sg of 16 S-byte segments). I/O: `dio` (tests/guest/src/dio.c), one pread/pwrite at a time \
         with O_DIRECT, sequential from offset 0 or (`rand`) at xorshift-random block-aligned offsets over the \
         whole 512 MiB disk, each run bounded to {} ms; MB/s and IOPS over CLOCK_MONOTONIC. fio: a static \
         aarch64 build of Debian's fio {} on the raw disk, direct=1, the io_uring engine, time_based for {} s \
         after {} s of ramp, one group (`qdNxJ` = queue depth N per job, J jobs); MB/s, IOPS and completion \
         latency p50/p99 from its JSON report. ×strict = median \
         over native strict's median. hc/call = hypercalls per call (MAP_PAGES or MAP_BATCH per map, \
         UNMAP_PAGES per unmap; per I/O: every hypercall; Warden only), cmd/call = SMMU commands per unmap (per I/O): Warden from the \
         hyp's counters, strict and lazy from QEMU's `smmuv3_cmdq_opcode` trace in one extra boot each. \
         instr/call = guest instructions per call (EL1 and EL2, so Warden's include the hypervisor's; \
         `instr_el2_per_call` in report.json is the EL2 part), counted in one more boot per configuration \
         under `-icount shift=0 -smp 1`, where QEMU's PMU counts retired instructions exactly: warden_bench \
         maps {} times then unmaps {} times, single-threaded, between reads of two PERF_COUNT_HW_INSTRUCTIONS \
         counters (exclude_hv = 0 and 1), minus the reads' own cost, minimum of 3 repeats (a batch of maps \
         then a batch of unmaps, not alternating pairs as in the timed runs). Cross-check: the guest's ktime \
         over the same calls (`icount_ns_per_call`; 1 ns per instruction at any EL under shift=0) must agree \
         within 5 %, and native configurations must show 0 EL2 instructions.\n",
        plan.rounds,
        plan.dur_ms,
        plan.io_max_ms,
        crate::fio::VERSION,
        plan.fio_secs,
        plan.fio_ramp_secs,
        ICOUNT_CALLS,
        ICOUNT_CALLS
    );
    o.push_str("## Targets (issues 6 and 14)\n\n| target | measured | met |\n|---|---|---|\n");
    for (t, m, ok) in targets(records)
        .into_iter()
        .chain(floor_targets(records))
        .chain(mode_targets(records))
        .chain(fio_targets(records))
    {
        let _ = writeln!(o, "| {t} | {m} | {} |", if ok { "yes" } else { "**no**" });
    }
    o.push('\n');
    for n in split_notes(records) {
        let _ = writeln!(o, "Not a target: {n}.  ");
    }
    let f = floor_split(records);
    if !f.is_empty() {
        o.push_str(
            "\n## The floor: trap + work\n\nWarden, 1 thread. The null hypercall (`warden_bench null=1`: Warden's \
             VERSION call through the same SMCCC conduit as the shim's calls) is the cost of one round trip to EL2 \
             and back with no work; each call's cost splits into its hypercalls × that (trap) and the rest \
             (work: the shim, the hyp's checks, page tables, SMMU commands).\n\n\
             | workload | ns/call | hc/call | trap ns | work ns | instr/call | trap instr | work instr |\n\
             |---|---|---|---|---|---|---|---|\n",
        );
        for x in &f {
            let (i, ti, wi) = match x.instr {
                Some((i, t)) => (
                    format!("{i:.0}"),
                    format!("{t:.0}"),
                    format!("{:.0}", i - t),
                ),
                None => ("-".into(), "-".into(), "-".into()),
            };
            let _ = writeln!(
                o,
                "| {} | {} | {:.2} | {} | {} | {i} | {ti} | {wi} |",
                x.workload,
                fmt_val(x.ns),
                x.hypercalls,
                fmt_val(x.trap_ns),
                fmt_val(x.ns - x.trap_ns)
            );
        }
    }
    let d = decompose(records);
    if !d.is_empty() {
        o.push_str(
            "\n## Decomposition of the I/O gap\n\nMedian MB/s of this run. native strict → warden-identity: Linux \
             under the hypervisor (host stage-2, two-stage softmmu walks in QEMU TCG) with direct DMA, instead of \
             natively with strict IOMMU mappings, so this step also drops native strict's per-DMA IOMMU work; \
             identity/passthrough compares two direct-DMA configurations and isolates running under the hyp. \
             warden-identity → warden: the paravirtual IOMMU path (shim, hypercalls, hyp page tables, SMMU \
             invalidations) on the same hypervisor. warden/strict = identity/strict × warden/identity. Ratios < 1 \
             are slower.\n\n\
             | workload | strict | warden-identity | warden | identity/strict (under the hyp) | \
             warden/identity (IOMMU path) | warden/strict | passthrough | identity/passthrough |\n\
             |---|---|---|---|---|---|---|---|---|\n",
        );
        for x in &d {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {:.2}× | {:.2}× | {:.2}× | {} | {} |",
                x.workload,
                fmt_val(x.strict),
                fmt_val(x.identity),
                fmt_val(x.warden),
                x.under_hyp(),
                x.iommu(),
                x.total(),
                x.passthrough.map(fmt_val).unwrap_or_else(|| "-".into()),
                x.hyp_vs_passthrough()
                    .map(|r| format!("{r:.2}×"))
                    .unwrap_or_else(|| "-".into())
            );
        }
    }
    o.push_str("\n## Results\n\n```\n");
    o.push_str(&table(records));
    o.push_str("```\n\n![per-call cost vs buffer size](cost.png)\n\n");
    o.push_str(
        "`cost.png`: mean ns per call (y, linear from 0, grid every 5 µs) against buffer size (x, log2, grid \
         at each power of two) at 1 thread; left map, right unmap. Colours (also the legend squares, left to \
         right): grey passthrough, blue strict, green lazy, purple warden-lazy, red warden (warden-identity has \
         no map/unmap runs).\n",
    );
    o
}

/// What [`run`] produced.
pub struct Outcome {
    /// The plan that was measured.
    pub plan: Plan,
    /// Every configuration × workload record.
    pub records: Vec<Record>,
    /// `report.json`, `report.md` and `cost.png`.
    pub files: Vec<PathBuf>,
}

/// Checks that a run is complete (not how fast anything was): every configuration reported every workload of
/// the plan, every 1-thread microbenchmark workload has an instruction count, those under the hypervisor include
/// instructions at EL2 (but warden-lazy's unmaps, which are queued) and the native configurations' none, the PMU's count agrees within 5 % with the
/// `-icount` virtual time over the same calls, and the output files exist.
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

/// One boot of `cfg` running `script`; fails unless the script exits 0. Its serial log goes to `log`.
fn boot_script(
    m: &Machine,
    cfg: Config,
    script: &Path,
    timeout: Duration,
    smp: u32,
    qemu_args: &[&str],
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
        qemu_args: qemu_args.iter().map(|s| s.to_string()).collect(),
    };
    let out = m.boot(&o, false)?;
    fs::write(log, &out.log)?;
    if !matches!(out.verdict, Verdict::Exited(0)) {
        bail!(
            "{}: {} (serial log: {})",
            cfg.name(),
            out.describe(),
            log.display()
        );
    }
    Ok(out.log)
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
    let res = measure(ws, &m, &plan, quick, &script_path, started);
    for p in scripts {
        let _ = fs::remove_file(p);
    }
    let records = res?;
    let meta = format!(
        "{} run of {} rounds, {:.0} s wall (including boots), QEMU TCG, 2 vCPUs",
        if quick { "--quick" } else { "full" },
        plan.rounds,
        started.elapsed().as_secs_f64()
    );
    let tbl = table(&records);
    println!("{tbl}");
    for (t, m, ok) in targets(&records)
        .into_iter()
        .chain(floor_targets(&records))
        .chain(mode_targets(&records))
        .chain(fio_targets(&records))
    {
        println!("target: {t}: {m} -> {}", if ok { "met" } else { "MISSED" });
    }
    for n in split_notes(&records) {
        println!("not a target: {n}");
    }
    let noisy = records.iter().filter(|r| r.spread() > SPREAD_WARN).count();
    if noisy > 0 {
        eprintln!(
            "xtask: warning: {noisy} measurement(s) spread more than {:.0} % between rounds (marked `noisy`)",
            SPREAD_WARN * 100.0
        );
    }
    let files = ["report.json", "report.md", "cost.png"].map(|f| out_dir.join(f));
    fs::write(&files[0], json(&records, &meta))?;
    fs::write(&files[1], markdown(&records, &meta, &plan))?;
    fs::write(&files[2], plot(&records)?)?;
    step(format!(
        "{meta}; reports in {}",
        out_dir.join("report.{json,md}, cost.png").display()
    ));
    Ok(Outcome {
        plan,
        records,
        files: files.to_vec(),
    })
}

/// The boots of one run: the timed rounds, the trace boots (native command counts), the instruction-count boots.
fn measure(
    ws: &Ws,
    m: &Machine,
    plan: &Plan,
    quick: bool,
    script_path: &dyn Fn(Config, &str) -> PathBuf,
    started: Instant,
) -> Result<Vec<Record>> {
    let dir = ws.out.join("bench");
    let mut samples: Vec<(Config, Sample)> = Vec::new();
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
        ];
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
            &["-icount", "shift=0"],
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
    step(format!(
        "all boots done after {:.0} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "noise\n\
@micro op=map threads=1 size=4096 sg=0 calls=100 mean_ns=2000 p50_ns=1900 p99_ns=3000 ops_per_s=9 hc_total=300 hc_map=100 hc_unmap=100 cmds=200 syncs=100\r\n\
@micro op=unmap threads=1 size=4096 sg=0 calls=100 mean_ns=6000 p50_ns=5000 p99_ns=9000 ops_per_s=9 hc_total=na hc_map=na hc_unmap=na cmds=na syncs=na\n\
@micro op=map threads=1 size=4096 sg=1 calls=0 mean_ns=0\n\
@io disk=vda kind=read pattern=seq bs=4096 count=1000 ns=500000000 hc_total=2000 cmds=2000 syncs=1000\n\
@io disk=nvme0n1 kind=write pattern=rand bs=4096 count=250 ns=125000000 hc_total=na cmds=na syncs=na\n\
@io disk=vda kind=read pattern=seq bs=4096 broken\n";

    #[test]
    fn parses_result_lines() {
        let s = parse(LOG).unwrap();
        assert_eq!(s.len(), 4, "{s:?}");
        assert_eq!(s[0].workload, "map 4K t1");
        assert_eq!(s[0].value, 2000.0);
        assert_eq!(s[0].extra["hypercalls_per_call"], 1.0);
        assert_eq!(s[0].extra["hypercalls_per_pair"], 3.0);
        assert!(!s[0].extra.contains_key("smmu_cmds_per_call"));
        assert_eq!(s[1].workload, "unmap 4K t1");
        assert!(!s[1].extra.contains_key("hypercalls_per_call"));
        assert_eq!(s[2].workload, "vda read 4K");
        assert!((s[2].value - 8.192).abs() < 1e-9);
        assert_eq!(s[2].extra["iops"], 2000.0);
        assert_eq!(s[2].extra["smmu_cmds_per_io"], 2.0);
        assert_eq!(s[3].workload, "nvme0n1 rand write 4K");
        assert_eq!(s[3].extra["iops"], 2000.0);
        assert!(!s[3].extra.contains_key("hypercalls_per_io"));
    }

    #[test]
    fn parses_the_null_hypercall() {
        let log = "@micro op=null threads=1 size=0 sg=0 calls=500 mean_ns=800 p50_ns=700 p99_ns=2000 \
ops_per_s=9 hc_null=500\n@icount op=null size=0 sg=0 calls=64 instr=19200 instr_nohv=6400 ns=19300\n";
        let s = parse(log).unwrap();
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!(s[0].workload, NULL_WORKLOAD);
        assert_eq!(s[0].value, 800.0);
        assert_eq!(s[0].extra["hypercalls_per_call"], 1.0);
        assert_eq!(
            parse_icount(log),
            vec![
                (NULL_WORKLOAD.to_string(), "instr_per_call", 300.0),
                (NULL_WORKLOAD.to_string(), "instr_el2_per_call", 200.0),
                (
                    NULL_WORKLOAD.to_string(),
                    "icount_ns_per_call",
                    19300.0 / 64.0
                ),
            ]
        );
    }

    #[test]
    fn splits_calls_at_the_null_hypercall() {
        let rec = |cfg, w: &str, ns, hc: Option<f64>, instr: f64| {
            let mut s = sample(w, ns);
            if let Some(h) = hc {
                s.extra.insert("hypercalls_per_call", h);
            }
            (cfg, s, instr)
        };
        let rows = [
            rec(Config::Warden, NULL_WORKLOAD, 1000.0, Some(1.0), 300.0),
            rec(Config::Warden, "map 4K t1", 5000.0, Some(1.0), 1500.0),
            rec(Config::Warden, "unmap 4K t1", 4000.0, Some(1.0), 1200.0),
            rec(Config::Warden, "map 4K t2", 9000.0, Some(1.0), 0.0),
            rec(Config::Strict, "map 4K t1", 3500.0, None, 1000.0),
        ];
        let samples: Vec<(Config, Sample)> = rows.iter().map(|(c, s, _)| (*c, s.clone())).collect();
        let mut r = aggregate(&samples);
        assert!(
            floor_targets(&r)
                .iter()
                .all(|t| !t.0.contains("instructions"))
        );
        for (c, s, i) in &rows {
            let x = r
                .iter_mut()
                .find(|x| x.config == *c && x.workload == s.workload)
                .unwrap();
            if *i > 0.0 {
                x.extra.insert("instr_per_call", *i);
            }
        }
        let f = floor_split(&r);
        assert_eq!(f.len(), 2, "{f:?}");
        assert_eq!(f[0].workload, "map 4K t1");
        assert_eq!((f[0].trap_ns, f[0].instr), (1000.0, Some((1500.0, 300.0))));
        assert_eq!(f[1].workload, "unmap 4K t1");
        let t = floor_targets(&r);
        assert_eq!(t.len(), 2, "{t:?}");
        // 5000 - 3500 - 1000 = +500 ns over the bound; 1500 / 1000 = 1.5× meets the instruction target.
        assert!(!t[0].2 && t[0].1.contains("+500 ns"), "{t:?}");
        assert!(t[1].2 && t[1].1.contains("1.50×"), "{t:?}");
        let md = markdown(&r, "m", &Plan::new(true));
        assert!(
            md.contains("| map 4K t1 | 5000 | 1.00 | 1000 | 4000 | 1500 | 300 | 1200 |"),
            "{md}"
        );
        r.retain(|x| x.workload != NULL_WORKLOAD);
        assert!(floor_split(&r).is_empty() && floor_targets(&r).is_empty());
    }

    #[test]
    fn parses_instruction_counts() {
        let log = "x\n@icount op=map size=4096 sg=0 calls=64 instr=6400 instr_nohv=3200\r\n\
@icount op=unmap size=65536 sg=1 calls=64 instr=640 instr_nohv=640 ns=704\n\
@icount op=map size=4096 sg=0 calls=0 instr=1 instr_nohv=1\n\
@icount op=map size=4096 sg=0 calls=64 instr=1\n";
        assert_eq!(
            parse_icount(log),
            vec![
                ("map 4K t1".to_string(), "instr_per_call", 100.0),
                ("map 4K t1".to_string(), "instr_el2_per_call", 50.0),
                ("unmap sg16x64K t1".to_string(), "instr_per_call", 10.0),
                ("unmap sg16x64K t1".to_string(), "instr_el2_per_call", 0.0),
                ("unmap sg16x64K t1".to_string(), "icount_ns_per_call", 11.0),
            ]
        );
    }

    /// A real report: fio 3.33 (`crate::fio`) under Warden, 4 KiB random reads at depth 1 on NVMe for 2 s.
    const FIO_JSON: &str = include_str!("testdata/fio-nvme-randread-qd1.json");

    #[test]
    fn parses_fio_reports() {
        let run = FioRun {
            disk: "nvme0n1",
            rw: "randread",
            bs: 4096,
            iodepth: 1,
            jobs: 1,
        };
        let s = parse_fio(&run, FIO_JSON).unwrap();
        assert_eq!(s.workload, "fio nvme0n1 randread 4K qd1");
        assert_eq!((s.unit, s.lower_is_better), ("MB/s", false));
        assert!((s.value - 3.070464).abs() < 1e-9, "{}", s.value);
        assert!((s.extra["iops"] - 749.625187).abs() < 1e-6);
        assert_eq!(s.extra["clat_p50_ns"], 5408.0);
        assert_eq!(s.extra["clat_p99_ns"], 6782976.0);
        assert_eq!(s.extra["calls"], 1500.0);
        assert!((s.extra["lat_mean_ns"] - 1298077.292667).abs() < 1e-3);
        // A write job reads the write section, which did nothing here.
        let w = FioRun { rw: "write", ..run };
        assert!(
            parse_fio(&w, FIO_JSON)
                .unwrap_err()
                .to_string()
                .contains("did no I/O")
        );
        assert!(parse_fio(&run, "{\"jobs\": []}").is_err());
        assert!(parse_fio(&run, "fio: engine io_uring not loadable").is_err());
        // Through the guest's @fio line (counters per I/O), one line of JSON as guest.sh prints it.
        let one_line: String = FIO_JSON.chars().filter(|&c| c != '\n').collect();
        let log = format!(
            "@fio disk=nvme0n1 rw=randread bs=4096 qd=1 jobs=1 hc_total=3038 hc_map=1500 hc_unmap=1500 \
             cmds=3000 syncs=1500 json={one_line}\r\n"
        );
        let p = parse(&log).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].workload, s.workload);
        assert!((p[0].extra["hypercalls_per_io"] - 3038.0 / 1500.0).abs() < 1e-9);
        assert_eq!(p[0].extra["smmu_cmds_per_io"], 2.0);
        assert!(parse("@fio disk=sdz rw=randread bs=4096 qd=1 jobs=1 json={}").is_err());
        assert!(parse("@fio disk=vda rw=randread").is_err());
    }

    #[test]
    fn fio_targets_per_mode() {
        let mut s = Vec::new();
        for (c, v) in [
            (Config::Strict, 100.0),
            (Config::Warden, 96.0),
            (Config::Lazy, 100.0),
            (Config::WardenLazy, 90.0),
            (Config::Passthrough, 100.0),
            (Config::WardenIdentity, 99.0),
        ] {
            let mut x = sample("fio vda randread 4K qd1", v);
            x.unit = "MB/s";
            s.push((c, x));
            // O_DIRECT rows are not fio's targets.
            let mut d = sample("vda rand read 4K", 1.0);
            d.unit = "MB/s";
            s.push((c, d));
        }
        let t = fio_targets(&aggregate(&s));
        assert_eq!(t.len(), 3, "{t:?}");
        assert!(t[0].0.starts_with("warden fio") && t[0].1.contains("0.96") && t[0].2);
        assert!(t[1].0.starts_with("warden-lazy fio") && t[1].1.contains("0.90") && !t[1].2);
        assert!(t[2].0.starts_with("warden-identity fio") && t[2].2);
        assert!(t.iter().all(|x| x.1.contains("fio vda")));
        assert!(targets(&aggregate(&s)).iter().all(|x| !x.1.contains("fio")));
    }

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

    fn sample(w: &str, v: f64) -> Sample {
        Sample {
            workload: w.into(),
            value: v,
            unit: "ns/call",
            extra: BTreeMap::new(),
            lower_is_better: true,
        }
    }

    #[test]
    fn aggregates_with_ratio_to_strict() {
        let mut s = Vec::new();
        for v in [10.0, 12.0, 11.0] {
            s.push((Config::Strict, sample("unmap 4K t1", v)));
        }
        for v in [22.0, 31.0, 20.0] {
            s.push((Config::Warden, sample("unmap 4K t1", v)));
        }
        let r = aggregate(&s);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].config, Config::Strict);
        assert_eq!((r[0].min, r[0].median, r[0].max), (10.0, 11.0, 12.0));
        assert_eq!(r[0].ratio, None);
        assert_eq!(r[1].ratio, Some(2.0));
        assert!((r[1].spread() - 0.5).abs() < 1e-9);
        let t = targets(&r);
        assert_eq!(t.len(), 1);
        assert!(table(&r).contains("instr/call"));
        assert!(!t[0].2, "2× strict misses the unmap target");
        assert!(table(&r).contains("noisy"));
        let j = json(&r, "m\"x");
        assert!(j.contains("\"ratio_to_strict\": 2,"), "{j}");
        assert!(j.contains("\"meta\": \"m\\\"x\""));
    }

    #[test]
    fn compares_each_warden_mode_with_its_native_counterpart() {
        let io = |w: &str, v: f64| Sample {
            unit: "MB/s",
            lower_is_better: false,
            ..sample(w, v)
        };
        let unmap = |hc: f64| {
            let mut s = sample("unmap 4K t1", 100.0);
            s.extra.insert("hypercalls_per_call", hc);
            s
        };
        let s = vec![
            (Config::Lazy, io("vda read 1M", 100.0)),
            (Config::WardenLazy, io("vda read 1M", 96.0)),
            (Config::Passthrough, io("vda read 1M", 200.0)),
            (Config::WardenIdentity, io("vda read 1M", 180.0)),
            (Config::Strict, io("vda read 1M", 50.0)),
            (Config::WardenLazy, unmap(1.0 / 32.0)),
        ];
        let r = aggregate(&s);
        let get = |c: Config| {
            r.iter()
                .find(|x| x.config == c && x.unit == "MB/s")
                .unwrap()
        };
        assert_eq!(get(Config::WardenLazy).extra["ratio_to_native"], 0.96);
        assert_eq!(get(Config::WardenIdentity).extra["ratio_to_native"], 0.9);
        assert_eq!(
            get(Config::WardenLazy).ratio,
            Some(96.0 / 50.0),
            "×strict as before"
        );
        assert!(!get(Config::Lazy).extra.contains_key("ratio_to_native"));
        let t = mode_targets(&r);
        assert_eq!(t.len(), 3, "{t:?}");
        assert!(t[0].0.contains("warden-lazy") && t[0].0.contains("native lazy") && t[0].2);
        assert!(t[1].0.contains("warden-identity") && t[1].0.contains("passthrough") && !t[1].2);
        assert!(t[2].0.contains("1 hypercall per 16") && t[2].2, "{t:?}");
        let r = aggregate(&[(Config::WardenLazy, unmap(0.1))]);
        assert!(!mode_targets(&r)[0].2, "1 per 10 misses 1 per 16");
    }

    #[test]
    fn decomposes_the_io_gap() {
        let io = |v: f64| Sample {
            unit: "MB/s",
            lower_is_better: false,
            ..sample("nvme0n1 rand read 4K", v)
        };
        let s = vec![
            (Config::Strict, io(10.0)),
            (Config::WardenIdentity, io(8.0)),
            (Config::Warden, io(6.0)),
            (Config::Warden, sample("map 4K t1", 5.0)),
        ];
        let r = aggregate(&s);
        let d = decompose(&r);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].hyp_vs_passthrough(), None);
        assert_eq!((d[0].strict, d[0].identity, d[0].warden), (10.0, 8.0, 6.0));
        assert!((d[0].under_hyp() - 0.8).abs() < 1e-9);
        assert!((d[0].iommu() - 0.75).abs() < 1e-9);
        assert!((d[0].total() - 0.6).abs() < 1e-9);
        let w = r
            .iter()
            .find(|r| r.config == Config::Warden && r.unit == "MB/s")
            .unwrap();
        assert_eq!(w.extra["ratio_to_warden_identity"], 0.75);
        let n = split_notes(&r);
        assert_eq!(n.len(), 1, "{n:?}");
        assert!(
            n[0].contains("random") && n[0].contains("worst 0.75×") && n[0].contains("worst 0.80×")
        );
        let md = markdown(&r, "m", &Plan::new(true));
        assert!(
            md.contains(
                "| nvme0n1 rand read 4K | 10.00 | 8.00 | 6.00 | 0.80× | 0.75× | 0.60× | - | - |"
            ),
            "{md}"
        );
        assert!(table(&r).contains("warden-identity"));
    }

    #[test]
    fn cuts_the_trace_at_markers() {
        let trace = "smmuv3_cmdq_opcode <--- SMMU_CMD_SYNC\n\
smmuv3_read_mmio addr: 0x18 val:0x0 size: 0x8(0)\n\
smmuv3_cmdq_opcode <--- SMMU_CMD_TLBI_NH_VA\n\
smmuv3_read_mmio addr: 0x1c val:0x0 size: 0x4(0)\n\
smmuv3_cmdq_opcode <--- SMMU_CMD_SYNC\n\
smmuv3_read_mmio addr: 0x18 val:0x0 size: 0x8(0)\n\
smmuv3_cmdq_opcode <--- SMMU_CMD_SYNC\n\
smmuv3_read_mmio addr: 0x18 val:0x0 size: 0x8(0)\n\
smmuv3_read_mmio addr: 0x18 val:0x0 size: 0x8(0)\n";
        let segs = trace_counts(trace);
        assert_eq!(segs, vec![(2, 1), (0, 0)]);
        let s = parse(LOG).unwrap();
        // map+unmap 4K share segment 0, the I/O line gets segment 1.
        let c = attribute_counts(&s, &segs);
        assert_eq!(
            c,
            vec![
                ("unmap 4K t1".to_string(), "smmu_cmds_per_call", 0.02),
                ("unmap 4K t1".to_string(), "cmd_syncs_per_call", 0.01),
                ("vda read 4K".to_string(), "smmu_cmds_per_io", 0.0),
                ("vda read 4K".to_string(), "cmd_syncs_per_io", 0.0),
            ]
        );
    }

    #[test]
    fn plans() {
        let q = Plan::new(true);
        let f = Plan::new(false);
        assert!(q.rounds >= 2 && f.rounds >= 3);
        assert!(q.micro.len() < f.micro.len());
        assert!(f.micro.contains(&(2, 2 << 20, false)));
        assert!(q.micro.iter().any(|m| m.2), "an sg run in --quick too");
        assert_eq!(size_label(4096), "4K");
        assert_eq!(size_label(2 << 20), "2M");
    }
}
