//! Aggregating samples over the rounds: min/median/max, ratios to the native baselines, the I/O gap's
//! decomposition and the split of each call at the null hypercall.

use std::collections::BTreeMap;

use super::parse::Sample;
use super::plan::{Config, NULL_WORKLOAD, is_fio};

/// A spread (max − min) / median above this makes a measurement "too noisy to trust".
pub const SPREAD_WARN: f64 = 0.25;

/// Min, median and max of `xs` (sorted in place); `None` when empty.
pub fn stats(xs: &mut [f64]) -> Option<(f64, f64, f64)> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    let median = if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    };
    Some((xs[0], median, xs[n - 1]))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_median_max() {
        assert_eq!(stats(&mut [3.0, 1.0, 2.0]), Some((1.0, 2.0, 3.0)));
        assert_eq!(stats(&mut [4.0, 1.0, 2.0, 3.0]), Some((1.0, 2.5, 4.0)));
        assert_eq!(stats(&mut [5.0]), Some((5.0, 5.0, 5.0)));
        assert_eq!(stats(&mut []), None);
    }
}
