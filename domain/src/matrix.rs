//! The state of one (probe, target) pair for one metric, as the probe × target matrix shows it
//! (MaDDash-style): ok, degraded or failing, from the pair's newest 1m window, its baseline and
//! whether an open incident covers it. The built-in page (src/http/dashboard.html, `pairState`)
//! and the `netqoe_pair_state` gauges Grafana draws use these rules and these constants; a test
//! reads the page's constants and compares them with [`MatrixThresholds::DEFAULT`].
//!
//! Invariant: pure and total — every window gets a state (a pair without a window is "no data",
//! which the caller shows by the absence of a value).

use crate::diagnosis::Incident;
use crate::event::Metric;
use crate::rollup::RollupSummary;

/// What a matrix cell can show: a latency metric, or loss, MOS or certificate days of a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MatrixMetric {
    Rtt,
    Jitter,
    Loss,
    Mos,
    Dns,
    Connect,
    Tls,
    Ttfb,
    Total,
    CertDays,
}

impl MatrixMetric {
    pub const ALL: [MatrixMetric; 10] = [
        MatrixMetric::Rtt,
        MatrixMetric::Jitter,
        MatrixMetric::Loss,
        MatrixMetric::Mos,
        MatrixMetric::Dns,
        MatrixMetric::Connect,
        MatrixMetric::Tls,
        MatrixMetric::Ttfb,
        MatrixMetric::Total,
        MatrixMetric::CertDays,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MatrixMetric::Rtt => "rtt",
            MatrixMetric::Jitter => "jitter",
            MatrixMetric::Loss => "loss",
            MatrixMetric::Mos => "mos",
            MatrixMetric::Dns => "dns",
            MatrixMetric::Connect => "connect",
            MatrixMetric::Tls => "tls",
            MatrixMetric::Ttfb => "ttfb",
            MatrixMetric::Total => "total",
            MatrixMetric::CertDays => "cert_days",
        }
    }

    /// The stored series the cell reads (loss and MOS are read from the RTT window).
    pub fn series(self) -> Metric {
        match self {
            MatrixMetric::Rtt | MatrixMetric::Loss | MatrixMetric::Mos => Metric::Rtt,
            MatrixMetric::Jitter => Metric::Jitter,
            MatrixMetric::Dns => Metric::Dns,
            MatrixMetric::Connect => Metric::Connect,
            MatrixMetric::Tls => Metric::Tls,
            MatrixMetric::Ttfb => Metric::Ttfb,
            MatrixMetric::Total => Metric::Total,
            MatrixMetric::CertDays => Metric::CertDays,
        }
    }

    /// The cells a stored series feeds.
    pub fn of_series(m: Metric) -> &'static [MatrixMetric] {
        match m {
            Metric::Rtt => &[MatrixMetric::Rtt, MatrixMetric::Loss, MatrixMetric::Mos],
            Metric::Jitter => &[MatrixMetric::Jitter],
            Metric::Dns => &[MatrixMetric::Dns],
            Metric::Connect => &[MatrixMetric::Connect],
            Metric::Tls => &[MatrixMetric::Tls],
            Metric::Ttfb => &[MatrixMetric::Ttfb],
            Metric::Total => &[MatrixMetric::Total],
            Metric::CertDays => &[MatrixMetric::CertDays],
        }
    }

    /// A latency cell: its value is the window's median, judged against the pair's baseline.
    fn is_latency(self) -> bool {
        !matches!(self, MatrixMetric::Loss | MatrixMetric::Mos | MatrixMetric::CertDays)
    }
}

/// A cell's colour; "no data" is the absence of a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PairState {
    Ok = 0,
    Degraded = 1,
    Failing = 2,
}

impl PairState {
    pub fn as_str(self) -> &'static str {
        match self {
            PairState::Ok => "ok",
            PairState::Degraded => "degraded",
            PairState::Failing => "failing",
        }
    }
}

/// One side of the thresholds (percentages are 0…100).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    pub loss_pct: f64,
    pub fail_pct: f64,
    pub mos: f64,
    pub cert_days: f64,
}

/// Degraded and failing limits, and the latency excess over the baseline that degrades.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MatrixThresholds {
    pub degraded: Limits,
    pub failing: Limits,
    /// A median above `excess` × the baseline …
    pub excess: f64,
    /// … and at least this many ms above it is degraded.
    pub excess_ms: f64,
}

impl MatrixThresholds {
    pub const DEFAULT: MatrixThresholds = MatrixThresholds {
        degraded: Limits { loss_pct: 2.0, fail_pct: 5.0, mos: 3.6, cert_days: 14.0 },
        failing: Limits { loss_pct: 50.0, fail_pct: 50.0, mos: 2.0, cert_days: 0.0 },
        excess: 1.5,
        excess_ms: 5.0,
    };
}

impl Default for MatrixThresholds {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The state of a pair's cell for `metric`, from the newest window `w` of `metric.series()`,
/// the pair's baseline median of that series (`None` while none is known) and whether an open
/// incident covers the pair and the metric.
pub fn pair_state(
    t: &MatrixThresholds,
    metric: MatrixMetric,
    w: &RollupSummary,
    baseline_p50: Option<f64>,
    incident: bool,
) -> PairState {
    let mut st = PairState::Ok;
    match metric {
        MatrixMetric::Loss => {
            if let Some(l) = w.loss_pct {
                st = level_up(l, t.degraded.loss_pct, t.failing.loss_pct);
            }
        }
        MatrixMetric::Mos => {
            if let Some((_, mos)) = w.qoe() {
                st = if mos < t.failing.mos {
                    PairState::Failing
                } else if mos < t.degraded.mos {
                    PairState::Degraded
                } else {
                    PairState::Ok
                };
            }
        }
        MatrixMetric::CertDays => {
            if let Some(d) = w.min {
                st = if d <= t.failing.cert_days {
                    PairState::Failing
                } else if d < t.degraded.cert_days {
                    PairState::Degraded
                } else {
                    PairState::Ok
                };
            }
        }
        m => {
            debug_assert!(m.is_latency());
            if let (Some(v), Some(base)) = (w.p50, baseline_p50) {
                if v > base * t.excess && v - base > t.excess_ms {
                    st = PairState::Degraded;
                }
            }
            if m == MatrixMetric::Rtt {
                if let Some(l) = w.loss_pct {
                    st = st.max(level_up(l, t.degraded.loss_pct, t.failing.loss_pct));
                }
            }
        }
    }
    let fail = if w.events > 0 { 100.0 * w.failed() as f64 / w.events as f64 } else { 0.0 };
    if fail >= t.failing.fail_pct {
        st = PairState::Failing;
    } else if fail >= t.degraded.fail_pct && st == PairState::Ok {
        st = PairState::Degraded;
    }
    if incident && st == PairState::Ok {
        st = PairState::Degraded;
    }
    st
}

fn level_up(v: f64, degraded: f64, failing: f64) -> PairState {
    if v >= failing {
        PairState::Failing
    } else if v >= degraded {
        PairState::Degraded
    } else {
        PairState::Ok
    }
}

/// Whether an open incident covers the (probe, target) pair and the cell's metric: the pair is
/// among its affected pairs or its subject (a scope with no probe or no target covers all of
/// them), and it names the metric or a metric read from the same series.
pub fn incident_covers(i: &Incident, probe: &str, target: &str, metric: MatrixMetric) -> bool {
    let probe_ok = i.affected_probes.contains(probe)
        || i.subject.get("probe").is_some_and(|p| p == probe)
        || (i.affected_probes.is_empty() && !i.subject.contains_key("probe"));
    let target_ok = i.affected_targets.contains(target)
        || i.subject.get("target").is_some_and(|t| t == target)
        || (i.affected_targets.is_empty() && !i.subject.contains_key("target"));
    let metric_ok = i.metrics.iter().any(|m| {
        m == metric.as_str() || MatrixMetric::ALL.iter().any(|c| c.as_str() == m && c.series() == metric.series())
    });
    probe_ok && target_ok && metric_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn rtt(p50: f64, sent: u64, received: u64) -> RollupSummary {
        RollupSummary {
            events: sent,
            count: received,
            min: Some(p50),
            max: Some(p50),
            mean: Some(p50),
            p1: Some(p50),
            p10: Some(p50),
            p50: Some(p50),
            p90: Some(p50),
            p95: Some(p50),
            p99: Some(p50),
            loss_pct: Some(100.0 * (sent - received) as f64 / sent as f64),
            sent,
            received,
            jitter_ms: Some(1.0),
            errors: BTreeMap::new(),
        }
    }

    const T: MatrixThresholds = MatrixThresholds::DEFAULT;

    #[test]
    fn loss_degrades_then_fails_the_rtt_and_loss_cells() {
        let ok = rtt(20.0, 100, 99);
        assert_eq!(pair_state(&T, MatrixMetric::Loss, &ok, None, false), PairState::Ok);
        let lossy = rtt(20.0, 100, 97);
        assert_eq!(pair_state(&T, MatrixMetric::Loss, &lossy, None, false), PairState::Degraded);
        assert_eq!(pair_state(&T, MatrixMetric::Rtt, &lossy, Some(20.0), false), PairState::Degraded);
        let dead = rtt(20.0, 100, 40);
        assert_eq!(pair_state(&T, MatrixMetric::Rtt, &dead, Some(20.0), false), PairState::Failing);
        assert_eq!(pair_state(&T, MatrixMetric::Mos, &dead, None, false), PairState::Failing);
    }

    #[test]
    fn latency_needs_both_the_ratio_and_the_absolute_excess_over_the_baseline() {
        // 3 ms → 6 ms is 2× but only 3 ms more: ok; 20 → 40 ms is degraded
        assert_eq!(pair_state(&T, MatrixMetric::Rtt, &rtt(6.0, 10, 10), Some(3.0), false), PairState::Ok);
        assert_eq!(pair_state(&T, MatrixMetric::Rtt, &rtt(40.0, 10, 10), Some(20.0), false), PairState::Degraded);
        assert_eq!(
            pair_state(&T, MatrixMetric::Rtt, &rtt(40.0, 10, 10), None, false),
            PairState::Ok,
            "no baseline yet"
        );
    }

    #[test]
    fn failed_measurements_and_open_incidents() {
        let mut w = rtt(30.0, 10, 10);
        w.loss_pct = None;
        w.errors.insert("refused".into(), 5);
        assert_eq!(pair_state(&T, MatrixMetric::Connect, &w, None, false), PairState::Failing);
        w.errors.insert("refused".into(), 1);
        assert_eq!(pair_state(&T, MatrixMetric::Connect, &w, None, false), PairState::Degraded);
        w.errors.clear();
        assert_eq!(pair_state(&T, MatrixMetric::Connect, &w, None, false), PairState::Ok);
        assert_eq!(pair_state(&T, MatrixMetric::Connect, &w, None, true), PairState::Degraded);
    }

    #[test]
    fn certificates_warn_within_two_weeks_and_fail_when_expired() {
        let days = |d: f64| RollupSummary { min: Some(d), events: 1, ..rtt(0.0, 1, 1) };
        assert_eq!(pair_state(&T, MatrixMetric::CertDays, &days(30.0), None, false), PairState::Ok);
        assert_eq!(pair_state(&T, MatrixMetric::CertDays, &days(10.0), None, false), PairState::Degraded);
        assert_eq!(pair_state(&T, MatrixMetric::CertDays, &days(-1.0), None, false), PairState::Failing);
    }

    #[test]
    fn an_incident_covers_its_pairs_and_the_metrics_of_its_series() {
        let i = Incident {
            id: "i".into(),
            state: crate::diagnosis::IncidentState::Open,
            scope: crate::diagnosis::Scope::Target,
            subject: BTreeMap::from([("target".to_string(), "t1".to_string())]),
            metrics: ["loss".to_string()].into(),
            opened_ms: 0,
            first_seen_ms: 0,
            updated_ms: 0,
            resolved_ms: None,
            peak_severity: 1.0,
            mos_impact: None,
            affected_probes: ["p1".to_string()].into(),
            affected_targets: Default::default(),
            evidence: Default::default(),
            confidence: 1.0,
            p_value: None,
            runner_up: None,
        };
        assert!(incident_covers(&i, "p1", "t1", MatrixMetric::Loss));
        assert!(incident_covers(&i, "p1", "t1", MatrixMetric::Rtt), "loss is read from the RTT series");
        assert!(!incident_covers(&i, "p1", "t1", MatrixMetric::Dns));
        assert!(!incident_covers(&i, "p2", "t1", MatrixMetric::Loss));
        assert!(!incident_covers(&i, "p1", "t2", MatrixMetric::Loss));
    }
}
