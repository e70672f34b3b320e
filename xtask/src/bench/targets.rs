//! The issues' targets (6 and 14), checked against a run's records ([`Target`]: goal, measured, met), reported,
//! never asserted.

use super::plan::{Config, NULL_WORKLOAD, is_fio};
use super::stats::{Decomposition, Record, decompose};

/// One target checked against a run's records: what it asks, what was measured, and whether that meets it.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// The target, as the issue states it (`unmap ≤ 1.0× native strict at every size`).
    pub goal: String,
    /// What the run measured, with the workload that decided it (`worst 1.20× (unmap 4K t1)`).
    pub measured: String,
    /// Whether the measurement meets the goal.
    pub met: bool,
}

impl Target {
    /// A checked target.
    fn new(goal: impl Into<String>, measured: String, met: bool) -> Target {
        Target {
            goal: goal.into(),
            measured,
            met,
        }
    }
}

/// The throughput goal of the O_DIRECT and fio targets: at least this fraction of the native counterpart's.
const THROUGHPUT_GOAL: f64 = 0.95;

/// Every target, in report order: [`targets`], [`floor_targets`], [`mode_targets`], [`fio_targets`].
pub fn all_targets(records: &[Record]) -> Vec<Target> {
    let mut out = targets(records);
    out.extend(floor_targets(records));
    out.extend(mode_targets(records));
    out.extend(fio_targets(records));
    out
}

/// The lowest `ratio_to_native` among the records of `cfg` that `keep` accepts, and its workload.
fn worst_vs_native(
    records: &[Record],
    cfg: Config,
    keep: impl Fn(&Record) -> bool,
) -> Option<(f64, &str)> {
    records
        .iter()
        .filter(|r| r.config == cfg && keep(r))
        .filter_map(|r| {
            r.extra
                .get("ratio_to_native")
                .map(|&x| (x, r.workload.as_str()))
        })
        .min_by(|a, b| a.0.total_cmp(&b.0))
}

/// Issue 6's targets, checked against the Warden records.
pub fn targets(records: &[Record]) -> Vec<Target> {
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
        out.push(Target::new(
            "unmap ≤ 1.0× native strict at every size",
            format!("worst {x:.2}× ({w})"),
            x <= 1.0,
        ));
    }
    if let Some((x, w)) = worst(&|r| r.workload.starts_with("map ")) {
        out.push(Target::new(
            "map ≤ 1.5× native strict at every size",
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
            out.push(Target::new(
                format!(
                    "O_DIRECT {} throughput (MB/s, IOPS) ≥ {THROUGHPUT_GOAL}× native strict",
                    if random { "random" } else { "sequential" }
                ),
                format!("worst {x:.2}× ({w})"),
                x >= THROUGHPUT_GOAL,
            ));
        }
    }
    let cmds = warden
        .iter()
        .filter(|r| r.workload.starts_with("unmap ") && !r.workload.contains("sg16"))
        .filter_map(|r| r.extra.get("smmu_cmds_per_call").copied())
        .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
    if let Some(x) = cmds {
        out.push(Target::new(
            "SMMU commands per contiguous unmap ≤ 2 (up to 2 MiB)",
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
        out.push(Target::new(
            "hypercalls per dma_map_sg of 16 segments = 1",
            format!("{x:.2}"),
            x <= 1.0 + 1e-9,
        ));
    }
    out
}

/// Issue 14's fio targets: Warden strict ≥ 0.95× native strict, Warden lazy ≥ 0.95× native lazy, Warden identity
/// ≥ 0.95× native passthrough, in throughput on every fio workload, both disks (the worst ratio of each mode).
pub fn fio_targets(records: &[Record]) -> Vec<Target> {
    let mut out = Vec::new();
    for cfg in [Config::Warden, Config::WardenLazy, Config::WardenIdentity] {
        let Some(base) = cfg.baseline() else { continue };
        if let Some((x, w)) = worst_vs_native(records, cfg, |r| is_fio(&r.workload)) {
            out.push(Target::new(
                format!(
                    "{} fio throughput ≥ {THROUGHPUT_GOAL}× native {} on every workload",
                    cfg.name(),
                    base.name()
                ),
                format!("worst {x:.2}× ({w})"),
                x >= THROUGHPUT_GOAL,
            ));
        }
    }
    out
}

/// Issue 14's targets for Warden lazy and Warden identity: O_DIRECT throughput ≥ 0.95× their native
/// counterpart (native lazy, native passthrough), and lazy unmaps at ≤ 1 hypercall per 16.
pub fn mode_targets(records: &[Record]) -> Vec<Target> {
    let mut out = Vec::new();
    for cfg in [Config::WardenLazy, Config::WardenIdentity] {
        let Some(base) = cfg.baseline() else { continue };
        let direct = |r: &Record| r.unit == "MB/s" && !is_fio(&r.workload);
        if let Some((x, w)) = worst_vs_native(records, cfg, direct) {
            out.push(Target::new(
                format!(
                    "{} O_DIRECT throughput ≥ {THROUGHPUT_GOAL}× native {}",
                    cfg.name(),
                    base.name()
                ),
                format!("worst {x:.2}× ({w})"),
                x >= THROUGHPUT_GOAL,
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
        out.push(Target::new(
            "warden-lazy: ≤ 1 hypercall per 16 unmaps",
            format!("worst {x:.3} per unmap ({w})"),
            x <= 1.0 / 16.0 + 1e-9,
        ));
    }
    out
}

/// Issue 14's map targets against the null hypercall, at 1 thread: time ≤ native strict + one null hypercall,
/// and instructions ≤ 1.5× native strict's.
pub fn floor_targets(records: &[Record]) -> Vec<Target> {
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
        out.push(Target::new(
            "map time ≤ native strict + one null hypercall (1 thread)",
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
        out.push(Target::new(
            "map ≤ 1.5× native strict in instructions per call (1 thread)",
            format!("worst {x:.2}× ({w})"),
            x <= 1.5,
        ));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::parse::Sample;
    use crate::bench::stats::aggregate;
    use crate::bench::tests::sample;

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
        assert!(t[0].goal.starts_with("warden fio") && t[0].measured.contains("0.96") && t[0].met);
        assert!(
            t[1].goal.starts_with("warden-lazy fio") && t[1].measured.contains("0.90") && !t[1].met
        );
        assert!(t[2].goal.starts_with("warden-identity fio") && t[2].met);
        assert!(t.iter().all(|x| x.measured.contains("fio vda")));
        assert!(
            targets(&aggregate(&s))
                .iter()
                .all(|x| !x.measured.contains("fio"))
        );
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
        assert!(t[0].goal.contains("warden-lazy") && t[0].goal.contains("native lazy") && t[0].met);
        assert!(
            t[1].goal.contains("warden-identity") && t[1].goal.contains("passthrough") && !t[1].met
        );
        assert!(
            t[2].goal.contains("1 hypercall per 16") && t[2].met,
            "{t:?}"
        );
        let r = aggregate(&[(Config::WardenLazy, unmap(0.1))]);
        assert!(!mode_targets(&r)[0].met, "1 per 10 misses 1 per 16");
    }
}
