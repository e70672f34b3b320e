//! Tests across the bench modules: parsing, aggregation, targets and reports together.

use std::collections::BTreeMap;

use super::parse::Sample;
use super::plan::{Config, NULL_WORKLOAD, Plan};
use super::report::{JsonReport, json, markdown, table};
use super::stats::{aggregate, decompose, floor_split};
use super::targets::{floor_targets, split_notes, targets};

/// A sample of `w` with value `v` (ns/call, lower is better) and no secondary metrics.
pub(super) fn sample(w: &str, v: f64) -> Sample {
    Sample {
        workload: w.into(),
        value: v,
        unit: "ns/call",
        extra: BTreeMap::new(),
        lower_is_better: true,
    }
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
            .all(|t| !t.goal.contains("instructions"))
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
    assert!(!t[0].met && t[0].measured.contains("+500 ns"), "{t:?}");
    assert!(t[1].met && t[1].measured.contains("1.50×"), "{t:?}");
    let md = markdown(&r, &[], "m", &Plan::new(true));
    assert!(
        md.contains("| map 4K t1 | 5000 | 1.00 | 1000 | 4000 | 1500 | 300 | 1200 |"),
        "{md}"
    );
    r.retain(|x| x.workload != NULL_WORKLOAD);
    assert!(floor_split(&r).is_empty() && floor_targets(&r).is_empty());
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
    assert!(!t[0].met, "2× strict misses the unmap target");
    assert!(table(&r).contains("noisy"));
    let j = json(&r, &[], "m\"x").unwrap();
    assert!(j.contains("\"ratio_to_strict\": 2.0,"), "{j}");
    assert!(j.contains("\"meta\": \"m\\\"x\""));
    let back: JsonReport = serde_json::from_str(&j).unwrap();
    assert_eq!(back.meta, "m\"x");
    assert_eq!(back.records.len(), 2);
    let w = &back.records[1];
    assert_eq!(
        (w.config, w.workload.as_str()),
        (Config::Warden, "unmap 4K t1")
    );
    assert_eq!(
        (w.min, w.median, w.max, w.runs),
        (Some(20.0), Some(22.0), Some(31.0), 3)
    );
    assert_eq!((w.ratio_to_strict, w.spread), (Some(2.0), Some(0.5)));
    assert_eq!(back.records[0].ratio_to_strict, None);
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
    let md = markdown(&r, &[], "m", &Plan::new(true));
    assert!(
        md.contains(
            "| nvme0n1 rand read 4K | 10.00 | 8.00 | 6.00 | 0.80× | 0.75× | 0.60× | - | - |"
        ),
        "{md}"
    );
    assert!(table(&r).contains("warden-identity"));
}
