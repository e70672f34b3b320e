//! What a bench run measures: the six kernel configurations, the workloads (map/unmap microbenchmark, O_DIRECT
//! I/O, fio jobs) and the guest script that runs them.

use std::fs;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::smp::SmpPlan;
use crate::Ws;
use crate::qemu::Mode;

/// One kernel configuration; serialised as its [name](Config::name).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
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

    /// The native configuration this one is measured against for the targets: Warden strict against
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
    pub(super) fn opts(self) -> (Mode, Vec<String>, bool) {
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
    /// Guest block device (one of [`DISKS`]).
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
    /// Guest block device (one of [`DISKS`]).
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

/// The null hypercall's workload name: `warden_bench null=1`, a round trip of Warden's VERSION call (trap to EL2,
/// SMCCC decode, dispatch, return), the floor under every per-call cost of the paravirtual path.
pub const NULL_WORKLOAD: &str = "null hypercall t1";

/// The guest's block devices the I/O and fio rows run on: the NVMe disk and the virtio-blk disk (both raw, the
/// guest machine's `-drive`s; `tests/bench/guest.sh` waits for them).
pub const DISKS: [&str; 2] = ["nvme0n1", "vda"];

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
    /// The SMP rows' boots.
    pub smp: SmpPlan,
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
        for disk in DISKS {
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
        // fio: the workloads on both disks; --quick only checks that fio works in every configuration.
        let mut fio = Vec::new();
        for disk in DISKS {
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
            smp: SmpPlan::new(quick),
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
    /// with a trace marker (see [`trace_counts`](super::parse::trace_counts)); `icount`: N > 0 counts instructions over N calls per size
    /// instead (for a `-icount` boot).
    pub(super) fn script(&self, ws: &Ws, cfg: Config, mark: bool, icount: u32) -> Result<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn configs_serialise_as_their_names() {
        for c in Config::ALL {
            let text = serde_json::to_string(&c).unwrap();
            assert_eq!(text, format!("\"{}\"", c.name()));
            assert_eq!(serde_json::from_str::<Config>(&text).unwrap(), c);
        }
        assert!(serde_json::from_str::<Config>("\"native\"").is_err());
    }
}
