//! Detection per series: a baseline learnt from healthy windows, and a window's deviation from
//! it (binomial tail for counts, robust level shift for latencies).

use std::collections::VecDeque;

use super::*;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// P(X ≥ k) for X ~ Binomial(n, p), in log space: the lower terms subtracted from 1 when `k` is
/// at most the mean, else the upper terms summed from `k` (so a tail far below 1e-16 keeps its
/// size instead of vanishing in `1 − …`); never below the smallest positive double when `k ≤ n`.
pub fn binomial_tail(k: u64, n: u64, p: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n {
        return 0.0;
    }
    let p = p.clamp(1e-12, 1.0 - 1e-12);
    let step = |i: u64| ((n - i) as f64 / (i + 1) as f64).ln() + (p / (1.0 - p)).ln(); // log P(i+1)/P(i)
    let mut term = (n as f64) * (1.0 - p).ln(); // log P(X = 0)
    if k as f64 <= n as f64 * p {
        let mut below = 0.0;
        for i in 0..k {
            below += term.exp();
            term += step(i);
        }
        return (1.0 - below).max(0.0);
    }
    for i in 0..k {
        term += step(i);
    }
    let (top, mut sum, mut i) = (term, 0.0, k);
    loop {
        sum += (term - top).exp();
        if i == n || term < top - 60.0 {
            break;
        }
        term += step(i);
        i += 1;
    }
    (top.exp() * sum).clamp(f64::MIN_POSITIVE, 1.0)
}

/// The learned normal of one signal of one (probe, target) pair.
#[derive(Clone, Debug, Default)]
pub struct Baseline {
    history: VecDeque<f64>,
    /// Failure baselines: (failed, attempts) of the same windows.
    fails: VecDeque<(u64, u64)>,
    degraded_run: u32,
}

/// A degraded window of one signal: the baseline and what was observed.
#[derive(Clone, Debug, PartialEq)]
pub struct Deviation {
    pub baseline: f64,
    pub observed: f64,
    /// How far past the threshold: observed excess / threshold excess (≥ 1 when degraded).
    pub severity: f64,
}

impl Baseline {
    /// Judges `v` against the baseline, then learns from it unless it was degraded.
    pub fn observe(&mut self, signal: Signal, v: Value, cfg: &DiagnosisConfig) -> Option<Deviation> {
        let dev = self.judge(signal, v, cfg);
        if dev.is_some() {
            self.degraded_run += 1;
        } else {
            self.degraded_run = 0;
        }
        if dev.is_none() || self.degraded_run >= cfg.rebaseline_after {
            match v {
                Value::Level(x) => {
                    self.history.push_back(x);
                    if self.history.len() > cfg.horizon {
                        self.history.pop_front();
                    }
                }
                Value::Failures { failed, attempts } => {
                    self.fails.push_back((failed, attempts));
                    if self.fails.len() > cfg.horizon {
                        self.fails.pop_front();
                    }
                }
            }
        }
        dev
    }

    /// The failures and attempts of the windows a failure baseline holds, once it holds
    /// `min_history` of them (what pooled evidence sums as the pair's normal).
    pub fn failure_history(&self, cfg: &DiagnosisConfig) -> Option<(u64, u64)> {
        (self.fails.len() >= cfg.min_history)
            .then(|| self.fails.iter().fold((0, 0), |acc, (f, a)| (acc.0 + f, acc.1 + a)))
    }

    pub(crate) fn judge(&self, signal: Signal, v: Value, cfg: &DiagnosisConfig) -> Option<Deviation> {
        match v {
            Value::Level(x) => {
                if self.history.len() < cfg.min_history {
                    return None;
                }
                let mut h: Vec<f64> = self.history.iter().copied().collect();
                let med = median(&mut h);
                let mut abs: Vec<f64> = h.iter().map(|y| (y - med).abs()).collect();
                let mad = median(&mut abs);
                let floor = match signal {
                    Signal::Jitter => cfg.jitter_floor_ms,
                    Signal::Ttfb => cfg.ttfb_floor_ms,
                    _ => cfg.floor_ms,
                };
                let margin = (cfg.k_mad * 1.4826 * mad).max(cfg.rel * med).max(floor);
                (x > med + margin).then(|| Deviation { baseline: med, observed: x, severity: (x - med) / margin })
            }
            Value::Failures { failed, attempts } => {
                if attempts == 0 || self.fails.len() < cfg.min_history {
                    return None;
                }
                let (f, a) = self.fails.iter().fold((0u64, 0u64), |acc, (f, a)| (acc.0 + f, acc.1 + a));
                let base = if a == 0 { 0.0 } else { f as f64 / a as f64 };
                let rate = failed as f64 / attempts as f64;
                let guard = if signal == Signal::DnsFail { cfg.dns_fail_rate } else { cfg.loss_rate };
                let p0 = base.max(0.001);
                let degraded = rate > guard.max(2.0 * base) && binomial_tail(failed, attempts, p0) < cfg.significance;
                degraded.then(|| Deviation {
                    baseline: base,
                    observed: rate,
                    severity: rate / guard.max(2.0 * base).max(1e-9),
                })
            }
        }
    }
}
