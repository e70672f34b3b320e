//! A run's reports: the terminal table, `report.json` and `report.md` (the figure is [`super::plot`]'s).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::plan::{Config, ICOUNT_CALLS, Plan};
use super::smp::{SmpRecord, smp_markdown, smp_target};
use super::stats::{Record, SPREAD_WARN, decompose, floor_split};
use super::targets::{Target, all_targets, split_notes};

/// `report.json`: the run's description, one record per configuration × workload, and the SMP rows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JsonReport {
    /// What was run (`--quick` or full, rounds, wall time).
    pub meta: String,
    /// One object per configuration × workload, in [`Record`] order.
    pub records: Vec<JsonRecord>,
    /// One object per configuration × placement × threads × op of the SMP rows ([`super::smp`]).
    #[serde(default)]
    pub smp: Vec<SmpRecord>,
}

/// One [`Record`] in `report.json`. Values are rounded to 3 decimals; a value that is not finite is `null`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JsonRecord {
    /// Configuration ([`Config::name`]).
    pub config: Config,
    /// Workload name.
    pub workload: String,
    /// Unit of `min`, `median` and `max`.
    pub unit: String,
    /// Minimum over the rounds.
    pub min: Option<f64>,
    /// Median over the rounds.
    pub median: Option<f64>,
    /// Maximum over the rounds.
    pub max: Option<f64>,
    /// Rounds measured.
    pub runs: usize,
    /// [`Record::spread`].
    pub spread: Option<f64>,
    /// Median over native strict's median ([`Record::ratio`]).
    pub ratio_to_strict: Option<f64>,
    /// Lower is better.
    pub lower_is_better: bool,
    /// Secondary metrics ([`Record::extra`]).
    pub extra: BTreeMap<String, Option<f64>>,
}

/// `x` rounded to 3 decimals, `None` when not finite (JSON has no NaN or infinity).
fn rounded(x: f64) -> Option<f64> {
    x.is_finite().then(|| (x * 1000.0).round() / 1000.0)
}

impl From<&Record> for JsonRecord {
    fn from(r: &Record) -> JsonRecord {
        JsonRecord {
            config: r.config,
            workload: r.workload.clone(),
            unit: r.unit.to_string(),
            min: rounded(r.min),
            median: rounded(r.median),
            max: rounded(r.max),
            runs: r.n,
            spread: rounded(r.spread()),
            ratio_to_strict: r.ratio.and_then(rounded),
            lower_is_better: r.lower_is_better,
            extra: r
                .extra
                .iter()
                .map(|(k, v)| (k.to_string(), rounded(*v)))
                .collect(),
        }
    }
}

/// `report.json` ([`JsonReport`]), pretty-printed.
pub fn json(records: &[Record], smp: &[SmpRecord], meta: &str) -> Result<String> {
    let report = JsonReport {
        meta: meta.to_string(),
        records: records.iter().map(JsonRecord::from).collect(),
        smp: smp.to_vec(),
    };
    let mut text = serde_json::to_string_pretty(&report)?;
    text.push('\n');
    Ok(text)
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

/// The markdown report.
pub fn markdown(records: &[Record], smp: &[SmpRecord], meta: &str, plan: &Plan) -> String {
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
    for Target {
        goal,
        measured,
        met,
    } in all_targets(records).into_iter().chain(smp_target(smp))
    {
        let _ = writeln!(
            o,
            "| {goal} | {measured} | {} |",
            if met { "yes" } else { "**no**" }
        );
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
    o.push_str(&smp_markdown(&plan.smp, smp));
    o.push_str("\n## Results\n\n```\n");
    o.push_str(&table(records));
    o.push_str("```\n\n![per-call cost vs buffer size](cost.svg)\n\n");
    o.push_str(
        "`cost.svg` (also `cost.png`): median over the rounds of the mean time per call, in µs, against buffer \
         size (log₂ scale) at 1 thread; left map, right unmap; one line per configuration, named in each \
         panel's legend (warden-identity has no map/unmap runs).\n",
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::parse::Sample;
    use crate::bench::stats::aggregate;

    #[test]
    fn json_has_null_for_values_that_are_not_finite() {
        let mut s = Sample {
            workload: "map 4K t1".into(),
            value: 1.23456,
            unit: "ns/call",
            extra: BTreeMap::new(),
            lower_is_better: true,
        };
        s.extra.insert("p50_ns", f64::INFINITY);
        let j = json(&aggregate(&[(Config::Warden, s)]), &[], "m").unwrap();
        let back: JsonReport = serde_json::from_str(&j).unwrap();
        let r = &back.records[0];
        assert_eq!(r.median, Some(1.235));
        assert_eq!(r.extra["p50_ns"], None);
        assert!(j.contains("\"p50_ns\": null"), "{j}");
    }
}
