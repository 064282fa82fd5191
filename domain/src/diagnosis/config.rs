//! Detection, localisation and incident thresholds (`[diagnosis]` in the configuration).

use serde::{Deserialize, Serialize};

/// Thresholds (`[diagnosis]` in the configuration; defaults documented in docs/diagnosis.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiagnosisConfig {
    /// Windows of history a baseline is learned from (trailing, non-degraded windows).
    pub horizon: usize,
    /// Windows of history needed before a series is judged at all.
    pub min_history: usize,
    /// A level is degraded above median + max(k_mad · 1.4826 · MAD, rel · median, floor).
    pub k_mad: f64,
    pub rel: f64,
    /// Floors (ms) per latency signal: smaller changes never count.
    pub floor_ms: f64,
    pub jitter_floor_ms: f64,
    pub ttfb_floor_ms: f64,
    /// A failure rate is degraded above this absolute rate (packet loss, connect failures) …
    pub loss_rate: f64,
    /// … or this one for DNS lookups …
    pub dns_fail_rate: f64,
    /// … and only if that many failures are that unlikely under the baseline rate (binomial tail).
    pub significance: f64,
    /// Share of a target's probes (or of a probe's targets) that must be degraded to blame the
    /// target (or the probe); also the share of targets a label group must be degraded toward to
    /// be blamed for all of them.
    pub majority: f64,
    /// Consecutive windows an explanation must hold before an incident opens …
    pub open_after: u32,
    /// … and windows without it before the incident resolves.
    pub close_after: u32,
    /// Windows without any data from a probe (while others report) before it is called offline.
    pub offline_after: u32,
    /// A series degraded this many windows in a row accepts its level as the new normal.
    pub rebaseline_after: u32,
    /// A target whose certificate expires in fewer days than this (as any probe last saw it)
    /// gets a `certificate` incident; 0 turns the check off.
    pub cert_warn_days: f64,
    /// Pooled evidence (docs/diagnosis.md "Pooled evidence"): a scope's failure counts, summed
    /// over its pairs, accumulate in a binomial CUSUM; the scope is blamed while the CUSUM is at
    /// or above this log-likelihood ratio (and the window still adds to it).
    pub pooled_threshold: f64,
    /// Most one window adds to a CUSUM (below the threshold: a one-window blip never alarms).
    pub pooled_step_cap: f64,
    /// The failure rate the test looks for: the pooled baseline plus this …
    pub pooled_min_shift: f64,
    /// … or this many times the baseline, whichever is larger.
    pub pooled_ratio: f64,
    /// A pooled baseline rate is taken as at least this.
    pub pooled_min_rate: f64,
    /// For the p-value of a latency (level) explanation: the share of windows a healthy pair is
    /// judged degraded by chance, assumed in the binomial test of how many of its pairs are.
    pub level_false_rate: f64,
    /// Pooled level shifts: a latency window counts as one exceedance when it lies above its
    /// pair's median by this share of the pair's margin (after the fleet's common swing is taken
    /// out) …
    pub pooled_level_share: f64,
    /// … and a scope is blamed on them only while at least this share of its pairs exceed (a
    /// group of probes slow toward one target is not the target).
    pub pooled_level_spread: f64,
}

impl Default for DiagnosisConfig {
    fn default() -> Self {
        Self {
            horizon: 60,
            min_history: 10,
            k_mad: 5.0,
            rel: 0.25,
            floor_ms: 5.0,
            jitter_floor_ms: 3.0,
            ttfb_floor_ms: 20.0,
            loss_rate: 0.02,
            dns_fail_rate: 0.05,
            significance: 1e-3,
            majority: 0.75,
            open_after: 3,
            close_after: 3,
            offline_after: 2,
            rebaseline_after: 120,
            cert_warn_days: 14.0,
            pooled_threshold: 15.0,
            pooled_step_cap: 10.0,
            pooled_min_shift: 0.01,
            pooled_ratio: 3.0,
            pooled_min_rate: 0.001,
            level_false_rate: 0.05,
            pooled_level_share: 0.5,
            pooled_level_spread: 0.5,
        }
    }
}
