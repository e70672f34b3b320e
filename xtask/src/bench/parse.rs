//! Parsing a guest's output: the `@micro`, `@io`, `@fio` and `@icount` result lines, fio's JSON reports and QEMU's
//! SMMU trace.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use super::plan::{FioRun, micro_name, size_label};

/// The `key=value` fields of a result line.
pub fn fields(line: &str) -> BTreeMap<&str, &str> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .collect()
}

fn num(f: &BTreeMap<&str, &str>, k: &str) -> Option<f64> {
    f.get(k)?.parse().ok()
}

/// What `@micro` and `@icount` lines share: the call's `op`, the workload it names (at `threads` threads), the
/// buffer `size` and the number of `calls`.
struct MicroLine<'a> {
    op: &'a str,
    workload: String,
    size: f64,
    calls: f64,
}

/// A `@micro` or `@icount` line's [`MicroLine`]; `None` when a field is missing or no call was made (the line is
/// skipped).
fn micro_line<'a>(f: &BTreeMap<&'a str, &'a str>, threads: u32) -> Option<MicroLine<'a>> {
    let (Some(op), Some(size), Some(sg), Some(calls)) =
        (f.get("op"), num(f, "size"), f.get("sg"), num(f, "calls"))
    else {
        return None;
    };
    (calls > 0.0).then(|| MicroLine {
        op,
        workload: micro_name(op, threads, size as u64, *sg == "1"),
        size,
        calls,
    })
}

/// The hyp's counters of an I/O line (`hc_total`, `cmds`: absent or `na` without the shim), per I/O of `ios`.
fn per_io_counts(f: &BTreeMap<&str, &str>, ios: f64, extra: &mut BTreeMap<&'static str, f64>) {
    if let Some(v) = num(f, "hc_total") {
        extra.insert("hypercalls_per_io", v / ios);
    }
    if let Some(v) = num(f, "cmds") {
        extra.insert("smmu_cmds_per_io", v / ios);
    }
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

/// The part of fio's `--output-format=json` report that [`parse_fio`] reads.
#[derive(Debug, Deserialize)]
struct FioReport {
    /// One entry per job, or a single one with `group_reporting`.
    jobs: Vec<FioJob>,
}

/// One job (or group) of a [`FioReport`].
#[derive(Debug, Deserialize)]
struct FioJob {
    /// fio's error code for the job; 0 when it ran.
    #[serde(default)]
    error: i64,
    /// The read direction's results.
    read: FioDirection,
    /// The write direction's results.
    write: FioDirection,
}

/// One direction (read or write) of a [`FioJob`].
#[derive(Debug, Deserialize)]
struct FioDirection {
    /// Bytes per second.
    bw_bytes: f64,
    /// I/Os completed.
    total_ios: f64,
    /// I/Os per second.
    iops: f64,
    /// Completion latency (ns).
    clat_ns: FioClat,
    /// Total latency, submission to completion (ns).
    lat_ns: FioLat,
}

/// Completion latency of a [`FioDirection`]: fio leaves out the percentiles of a direction that did no I/O.
#[derive(Debug, Deserialize)]
struct FioClat {
    /// Percentiles.
    percentile: Option<FioPercentiles>,
}

/// The percentiles [`parse_fio`] reports, under fio's default `percentile_list` names.
#[derive(Debug, Deserialize)]
struct FioPercentiles {
    /// Median.
    #[serde(rename = "50.000000")]
    p50: f64,
    /// 99th percentile.
    #[serde(rename = "99.000000")]
    p99: f64,
}

/// Total latency of a [`FioDirection`].
#[derive(Debug, Deserialize)]
struct FioLat {
    /// Mean.
    mean: f64,
}

/// Parses one fio `--output-format=json` report of a single group (`group_reporting`) into a sample of `run`:
/// MB/s (the primary value), IOPS, completion latency p50/p99 (ns) and total latency mean (ns) of the job's
/// direction.
pub fn parse_fio(run: &FioRun, json: &str) -> Result<Sample> {
    let report: FioReport =
        serde_json::from_str(json).context("fio's output is not a JSON report fio would write")?;
    let job = report.jobs.first().context("fio's JSON has no jobs")?;
    if job.error != 0 {
        bail!("fio job {} failed with error {}", run.name(), job.error);
    }
    let (dir, d) = if run.rw.contains("write") {
        ("write", &job.write)
    } else {
        ("read", &job.read)
    };
    if d.bw_bytes <= 0.0 || d.total_ios <= 0.0 {
        bail!("fio job {} did no I/O", run.name());
    }
    let pct = d
        .clat_ns
        .percentile
        .as_ref()
        .with_context(|| format!("fio's JSON lacks {dir}.clat_ns.percentile"))?;
    let mut extra = BTreeMap::new();
    extra.insert("iops", d.iops);
    extra.insert("clat_p50_ns", pct.p50);
    extra.insert("clat_p99_ns", pct.p99);
    // Submission + completion: with io_uring many completions are reaped at submission, so clat alone is
    // bimodal; the total latency's mean is the per-I/O time.
    extra.insert("lat_mean_ns", d.lat_ns.mean);
    extra.insert("calls", d.total_ios);
    Ok(Sample {
        workload: run.name(),
        value: d.bw_bytes / 1e6,
        unit: "MB/s",
        extra,
        lower_is_better: false,
    })
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
            per_io_counts(&f, ios, &mut s.extra);
            out.push(s);
        } else if let Some(rest) = line.strip_prefix("@micro ") {
            let f = fields(rest);
            let (Some(t), Some(mean)) = (
                f.get("threads").and_then(|t| t.parse::<u32>().ok()),
                num(&f, "mean_ns"),
            ) else {
                continue;
            };
            let Some(MicroLine {
                op,
                workload,
                size,
                calls,
            }) = micro_line(&f, t)
            else {
                continue;
            };
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
            let own = match op {
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
            if op == "unmap" {
                if let Some(v) = num(&f, "cmds") {
                    extra.insert("smmu_cmds_per_call", v / calls);
                }
                if let Some(v) = num(&f, "syncs") {
                    extra.insert("cmd_syncs_per_call", v / calls);
                }
            }
            out.push(Sample {
                workload,
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
            per_io_counts(&f, n, &mut extra);
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
        let (Some(all), Some(nohv)) = (num(&f, "instr"), num(&f, "instr_nohv")) else {
            continue;
        };
        let Some(MicroLine {
            workload: w, calls, ..
        }) = micro_line(&f, 1)
        else {
            continue;
        };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::plan::NULL_WORKLOAD;

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
    /// The job `FIO_JSON` reports.
    const FIO_RUN: FioRun = FioRun {
        disk: "nvme0n1",
        rw: "randread",
        bs: 4096,
        iodepth: 1,
        jobs: 1,
    };

    #[test]
    fn parses_fio_reports() {
        let run = FIO_RUN;
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
    fn reports_fio_errors() {
        let run = FIO_RUN;
        let edit = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut v: serde_json::Value = serde_json::from_str(FIO_JSON).unwrap();
            f(&mut v["jobs"][0]);
            parse_fio(&run, &v.to_string()).unwrap_err().to_string()
        };
        let e = edit(&|j| j["error"] = 5.into());
        assert!(e.contains("failed with error 5"), "{e}");
        let e = edit(&|j| {
            j["read"]["clat_ns"]
                .as_object_mut()
                .unwrap()
                .remove("percentile");
        });
        assert!(e.contains("lacks read.clat_ns.percentile"), "{e}");
        let e = edit(&|j| {
            j.as_object_mut().unwrap().remove("read");
        });
        assert!(e.contains("not a JSON report"), "{e}");
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
}
