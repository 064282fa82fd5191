//! The probe × target matrix as Prometheus gauges, for Grafana: `netqoe_pair_state{group, probe,
//! target, metric}` is 0 (ok), 1 (degraded) or 2 (failing) for each pair's newest judged 1m
//! window, by the rules of the built-in page's matrix ([`netqoe_domain::matrix`]); a pair or
//! metric without a window has no value ("no data"). `group` is the value of one probe label
//! (`metrics.pair_group_label`, e.g. region), so Grafana can group rows as the page does.
//!
//! Invariant: cardinality is bounded. Probe ids are labels here, so at most `max_pairs` pairs
//! (`metrics.max_pair_series`) are exported, each with at most 10 metric series; a pair keeps its
//! slot while it reports, a new one is admitted only while there is room, and one silent for
//! [`EXPIRE_WINDOWS`] judged windows gives up its slot (while silent it has no value: a gap, never
//! a stale state). Pairs left out are counted in `netqoe_pair_series_refused`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use netqoe_domain::diagnosis::Incident;
use netqoe_domain::matrix::{incident_covers, pair_state, MatrixMetric, MatrixThresholds};
use netqoe_domain::{Metric, Rollup, RollupSummary};
use prometheus::{GaugeVec, IntGauge};

use crate::metrics::{gauge, gauge_vec_f64};
pub use crate::target_gauges::EXPIRE_WINDOWS;

pub static PAIR_STATE: LazyLock<GaugeVec> = LazyLock::new(|| {
    gauge_vec_f64(
        "netqoe_pair_state",
        "State of a (probe, target) pair for a metric in the newest judged 1m window: 0 ok, 1 degraded, 2 failing (no value: no data)",
        &["group", "probe", "target", "metric"],
    )
});
pub static PAIR_REFUSED: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "netqoe_pair_series_refused",
        "Pairs seen in the newest judged window but not exported: metrics.max_pair_series is reached",
    )
});

type Pair = (String, String);
/// A series' hourly medians: [the previous hour's, the current hour's] (outer `None`: no window).
type HourMedians = [Option<Option<f64>>; 2];

/// What one judged window gives the matrix.
pub struct MatrixInput<'a> {
    /// Every 1m rollup of the window.
    pub rows: &'a [Rollup],
    /// The 1h rollups of the window's hour and the hour before (the baselines).
    pub hourly: &'a [Rollup],
    /// Start of the window's hour.
    pub hour_ms: i64,
    pub open: &'a [Incident],
    /// Probe id → labels.
    pub labels: &'a BTreeMap<String, BTreeMap<String, String>>,
}

/// The exported pairs, their group and expiry clocks (in judged windows).
#[derive(Debug, Default)]
pub struct PairGauges {
    max_pairs: usize,
    group_label: String,
    thresholds: MatrixThresholds,
    /// exported pair → (group label value it is exported under, windows since it last reported)
    exported: BTreeMap<Pair, (String, u64)>,
}

impl PairGauges {
    pub fn new(max_pairs: usize, group_label: impl Into<String>) -> Self {
        Self {
            max_pairs,
            group_label: group_label.into(),
            thresholds: MatrixThresholds::DEFAULT,
            exported: BTreeMap::new(),
        }
    }

    pub fn exported(&self) -> impl Iterator<Item = &Pair> {
        self.exported.keys()
    }

    fn group_of(&self, labels: &BTreeMap<String, BTreeMap<String, String>>, probe: &str) -> String {
        if self.group_label.is_empty() {
            return String::new();
        }
        labels
            .get(probe)
            .and_then(|l| l.get(&self.group_label))
            .cloned()
            .unwrap_or_else(|| format!("(no {})", self.group_label))
    }

    /// Sets the gauges from the newest judged window; returns how many pairs were left out.
    pub fn update(&mut self, input: &MatrixInput<'_>) -> usize {
        let mut window: BTreeMap<Pair, BTreeMap<Metric, RollupSummary>> = BTreeMap::new();
        for r in input.rows {
            window
                .entry((r.key.probe.clone(), r.key.target.clone()))
                .or_default()
                .insert(r.key.metric, r.agg.summary());
        }
        // the baseline of a series: its previous hour's median, else the current hour's (as the
        // page: a previous hour without a median gives no baseline)
        let mut hours: BTreeMap<(&str, &str, Metric), HourMedians> = BTreeMap::new();
        for r in input.hourly {
            let k = (r.key.probe.as_str(), r.key.target.as_str(), r.key.metric);
            let current = usize::from(r.key.start_ms >= input.hour_ms);
            hours.entry(k).or_default()[current] = Some(r.agg.summary().p50);
        }
        let baseline_of = |k| match hours.get(&k) {
            Some([Some(before), _]) => *before,
            Some([None, now]) => now.flatten(),
            None => None,
        };
        for ((probe, target), (group, age)) in self.exported.iter_mut() {
            remove_series(group, probe, target);
            if window.contains_key(&(probe.clone(), target.clone())) {
                *age = 0;
            } else {
                *age += 1;
            }
        }
        self.exported.retain(|_, (_, age)| *age < EXPIRE_WINDOWS);
        let mut refused = 0;
        for ((probe, target), metrics) in &window {
            let key = (probe.clone(), target.clone());
            let group = self.group_of(input.labels, probe);
            let room = self.exported.len() < self.max_pairs;
            match self.exported.get_mut(&key) {
                Some(e) => e.0 = group.clone(),
                None if !room => {
                    refused += 1;
                    continue;
                }
                None => {
                    self.exported.insert(key, (group.clone(), 0));
                }
            }
            let mut cells = BTreeSet::new();
            for (series, w) in metrics {
                let baseline = baseline_of((probe.as_str(), target.as_str(), *series));
                for &cell in MatrixMetric::of_series(*series) {
                    if !cells.insert(cell) {
                        continue;
                    }
                    let incident = input.open.iter().any(|i| incident_covers(i, probe, target, cell));
                    let st = pair_state(&self.thresholds, cell, w, baseline, incident);
                    PAIR_STATE.with_label_values(&[&group, probe, target, cell.as_str()]).set(st as i32 as f64);
                }
            }
        }
        PAIR_REFUSED.set(refused as i64);
        refused
    }
}

fn remove_series(group: &str, probe: &str, target: &str) {
    for m in MatrixMetric::ALL {
        // removing a label set that was never set is an error the prometheus crate reports; ignored
        let _ = PAIR_STATE.remove_label_values(&[group, probe, target, m.as_str()]);
    }
}
