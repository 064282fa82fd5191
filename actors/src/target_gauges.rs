//! Per-target QoE as Prometheus gauges, for Grafana: the fleet's view of each target in the newest
//! 1m window the diagnoser judged (every probe's window of the target merged, sketches merged,
//! never averaged) — latency p50/p95 per metric, loss, MOS, failed attempts, probes reporting.
//!
//! Invariant: cardinality is bounded. At most `max_targets` targets are exported (the
//! `metrics.max_target_series` setting); a target keeps its series while it reports, a new one
//! is admitted only while there is room, and one that has not reported for `EXPIRE_WINDOWS`
//! judged windows gives up its slot, making room (a target silent in a window has no value in
//! it: its series are removed at once, so a graph shows a gap, not the last value). Targets left out are
//! counted in `netqoe_target_series_refused`. No probe id is ever a label.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use netqoe_domain::{Metric, Rollup, RollupSummary, WindowAgg};
use prometheus::{Gauge, GaugeVec, IntGauge};

use crate::metrics::{gauge, gauge_vec_f64, reg};

/// Judged windows without a report after which a target's series are removed.
pub const EXPIRE_WINDOWS: u64 = 10;

/// The latency metrics exported as quantiles (cert_days is a level, not a latency).
const LATENCY: [Metric; 7] =
    [Metric::Rtt, Metric::Jitter, Metric::Dns, Metric::Connect, Metric::Tls, Metric::Ttfb, Metric::Total];

pub static TARGET_LATENCY: LazyLock<GaugeVec> = LazyLock::new(|| {
    gauge_vec_f64(
        "netqoe_target_latency_ms",
        "Fleet latency per target in the newest judged 1m window (all probes merged), by metric and quantile",
        &["target", "metric", "quantile"],
    )
});
pub static TARGET_LOSS: LazyLock<GaugeVec> = LazyLock::new(|| {
    gauge_vec_f64(
        "netqoe_target_loss_ratio",
        "Packets lost / sent toward a target in the newest judged 1m window (all probes)",
        &["target"],
    )
});
pub static TARGET_MOS: LazyLock<GaugeVec> = LazyLock::new(|| {
    gauge_vec_f64(
        "netqoe_target_mos",
        "E-model MOS of a target's fleet RTT window (median RTT, jitter, loss of all probes)",
        &["target"],
    )
});
pub static TARGET_FAILURES: LazyLock<GaugeVec> = LazyLock::new(|| {
    gauge_vec_f64(
        "netqoe_target_failure_ratio",
        "Failed measurements / measurements of a target in the newest judged 1m window, by metric",
        &["target", "metric"],
    )
});
pub static TARGET_CERT_DAYS: LazyLock<GaugeVec> = LazyLock::new(|| {
    gauge_vec_f64(
        "netqoe_target_cert_days",
        "Fewest days left on a target's certificate seen by any probe",
        &["target"],
    )
});
pub static TARGET_PROBES: LazyLock<GaugeVec> = LazyLock::new(|| {
    gauge_vec_f64("netqoe_target_probes", "Probes that reported a target in the newest judged 1m window", &["target"])
});
pub static TARGET_REFUSED: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "netqoe_target_series_refused",
        "Targets seen in the newest judged window but not exported: metrics.max_target_series is reached",
    )
});
pub static TARGET_WINDOW: LazyLock<Gauge> = LazyLock::new(|| {
    reg(Gauge::new(
        "netqoe_target_window_end_seconds",
        "End (Unix seconds) of the window the netqoe_target_* gauges describe",
    )
    .expect("valid metric definition"))
});

/// One target's fleet window: each metric's windows of every probe merged.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TargetQoe {
    pub probes: usize,
    pub metrics: BTreeMap<Metric, RollupSummary>,
}

impl TargetQoe {
    /// MOS of the merged RTT window, as the query API computes it (1 when nothing answered).
    pub fn mos(&self) -> Option<f64> {
        self.metrics.get(&Metric::Rtt)?.qoe().map(|(_, mos)| mos)
    }
}

/// The fleet view per target of one window's rollups (any tier; the caller passes one window).
pub fn by_target<'a>(rows: impl IntoIterator<Item = &'a Rollup>) -> BTreeMap<String, TargetQoe> {
    let mut merged: BTreeMap<&str, (BTreeSet<&str>, BTreeMap<Metric, WindowAgg>)> = BTreeMap::new();
    for r in rows {
        let (probes, metrics) = merged.entry(r.key.target.as_str()).or_default();
        probes.insert(r.key.probe.as_str());
        metrics.entry(r.key.metric).or_default().merge(&r.agg);
    }
    merged
        .into_iter()
        .map(|(t, (probes, metrics))| {
            let metrics = metrics.into_iter().map(|(m, a)| (m, a.summary())).collect();
            (t.to_string(), TargetQoe { probes: probes.len(), metrics })
        })
        .collect()
}

/// The exported set and its expiry clocks (in judged windows).
#[derive(Debug, Default)]
pub struct TargetGauges {
    max_targets: usize,
    /// exported target → judged windows since it last reported
    exported: BTreeMap<String, u64>,
}

impl TargetGauges {
    pub fn new(max_targets: usize) -> Self {
        Self { max_targets, exported: BTreeMap::new() }
    }

    /// The targets exported now.
    pub fn exported(&self) -> impl Iterator<Item = &str> {
        self.exported.keys().map(String::as_str)
    }

    /// Sets the gauges from the newest judged window (`end_ms`, its fleet view per target);
    /// returns how many targets were left out for want of room.
    pub fn update(&mut self, end_ms: i64, window: &BTreeMap<String, TargetQoe>) -> usize {
        for (target, age) in self.exported.iter_mut() {
            if window.contains_key(target) {
                *age = 0;
            } else {
                // silent in this window: no value (a gap in Grafana), its slot kept for a while
                *age += 1;
                remove_series(target);
            }
        }
        let expired: Vec<String> =
            self.exported.iter().filter(|(_, age)| **age >= EXPIRE_WINDOWS).map(|(t, _)| t.clone()).collect();
        for t in expired {
            remove_series(&t);
            self.exported.remove(&t);
        }
        let mut refused = 0;
        for (target, q) in window {
            if !self.exported.contains_key(target) {
                if self.exported.len() >= self.max_targets {
                    refused += 1;
                    continue;
                }
                self.exported.insert(target.clone(), 0);
            }
            // a target's series describe this window alone: what it did not report is removed
            remove_series(target);
            set_series(target, q);
        }
        TARGET_REFUSED.set(refused as i64);
        TARGET_WINDOW.set(end_ms as f64 / 1000.0);
        refused
    }
}

fn set_series(target: &str, q: &TargetQoe) {
    TARGET_PROBES.with_label_values(&[target]).set(q.probes as f64);
    for (metric, s) in &q.metrics {
        if s.events > 0 {
            let failed = s.failed();
            TARGET_FAILURES.with_label_values(&[target, metric.as_str()]).set(failed as f64 / s.events as f64);
        }
        if LATENCY.contains(metric) {
            for (quantile, v) in [("0.5", s.p50), ("0.95", s.p95)] {
                if let Some(v) = v {
                    TARGET_LATENCY.with_label_values(&[target, metric.as_str(), quantile]).set(v);
                }
            }
        }
        if *metric == Metric::Rtt {
            if let Some(loss) = s.loss_pct {
                TARGET_LOSS.with_label_values(&[target]).set(loss / 100.0);
            }
        }
        if *metric == Metric::CertDays {
            if let Some(d) = s.min {
                TARGET_CERT_DAYS.with_label_values(&[target]).set(d);
            }
        }
    }
    if let Some(m) = q.mos() {
        TARGET_MOS.with_label_values(&[target]).set(m);
    }
}

fn remove_series(target: &str) {
    // removing a label set that was never set is an error the prometheus crate reports; ignored
    let _ = TARGET_PROBES.remove_label_values(&[target]);
    let _ = TARGET_LOSS.remove_label_values(&[target]);
    let _ = TARGET_MOS.remove_label_values(&[target]);
    let _ = TARGET_CERT_DAYS.remove_label_values(&[target]);
    for metric in Metric::ALL {
        let _ = TARGET_FAILURES.remove_label_values(&[target, metric.as_str()]);
        for quantile in ["0.5", "0.95"] {
            let _ = TARGET_LATENCY.remove_label_values(&[target, metric.as_str(), quantile]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qoe(probes: usize) -> TargetQoe {
        TargetQoe { probes, metrics: BTreeMap::new() }
    }

    fn probes_series(target: &str) -> Option<f64> {
        let text = prometheus::TextEncoder::new().encode_to_string(&crate::metrics::registry().gather()).unwrap();
        let prefix = format!("netqoe_target_probes{{target=\"{target}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(&prefix).map(|v| v.parse().unwrap()))
    }

    #[test]
    fn a_silent_target_shows_a_gap_at_once_and_gives_up_its_slot_after_the_expiry() {
        let mut g = TargetGauges::new(1);
        let one = |t: &str, n| BTreeMap::from([(t.to_string(), qoe(n))]);
        assert_eq!(g.update(60_000, &one("unit-a", 3)), 0);
        assert_eq!(probes_series("unit-a"), Some(3.0));
        // unit-a silent: no value at once, but its slot is kept, so unit-b is refused
        assert_eq!(g.update(120_000, &one("unit-b", 1)), 1);
        assert_eq!(probes_series("unit-a"), None, "a silent target has no stale value");
        assert_eq!(probes_series("unit-b"), None);
        assert_eq!(g.exported().collect::<Vec<_>>(), ["unit-a"]);
        // after EXPIRE_WINDOWS silent windows the slot is free and unit-b gets it
        for w in 2..EXPIRE_WINDOWS as i64 {
            assert_eq!(g.update(w * 60_000, &BTreeMap::new()), 0);
            assert_eq!(g.exported().count(), 1, "slot still held after {w} windows");
        }
        assert_eq!(g.update(EXPIRE_WINDOWS as i64 * 60_000, &one("unit-b", 2)), 0);
        assert_eq!(g.exported().collect::<Vec<_>>(), ["unit-b"]);
        assert_eq!(probes_series("unit-b"), Some(2.0));
    }
}
