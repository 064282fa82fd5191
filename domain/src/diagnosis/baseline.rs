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
    /// (median, MAD) of `history`, computed once per change of it (a window asks for them up to
    /// three times: the fleet's common swing, pooled evidence, the pair's own judgement).
    robust: std::cell::Cell<Option<(f64, f64)>>,
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
                    self.robust.set(None);
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

    /// The level baseline's median and the margin above it that makes a window degraded:
    /// `max(k_mad · 1.4826 · MAD, rel · median, floor)`; `None` before `min_history` windows.
    fn level_margin(&self, signal: Signal, cfg: &DiagnosisConfig) -> Option<(f64, f64)> {
        if self.history.len() < cfg.min_history {
            return None;
        }
        let (med, mad) = self.robust();
        let floor = match signal {
            Signal::Jitter => cfg.jitter_floor_ms,
            Signal::Ttfb => cfg.ttfb_floor_ms,
            _ => cfg.floor_ms,
        };
        Some((med, (cfg.k_mad * 1.4826 * mad).max(cfg.rel * med).max(floor)))
    }

    /// Median and MAD of the level history (cached until it changes).
    fn robust(&self) -> (f64, f64) {
        if let Some(r) = self.robust.get() {
            return r;
        }
        let mut h: Vec<f64> = self.history.iter().copied().collect();
        let med = median(&mut h);
        let mut abs: Vec<f64> = h.iter().map(|y| (y - med).abs()).collect();
        let r = (med, median(&mut abs));
        self.robust.set(Some(r));
        r
    }

    /// The level baseline's median, once it holds `min_history` windows.
    pub fn level_median(&self, cfg: &DiagnosisConfig) -> Option<f64> {
        (self.history.len() >= cfg.min_history).then(|| self.robust().0)
    }

    /// A level window as pooled evidence (docs/diagnosis.md §4b): whether `x` (already divided by
    /// the fleet's common swing) lies above the median by `pooled_level_share` of the margin, as
    /// one trial, with the same question asked of every window the baseline holds as the pair's
    /// normal rate of such exceedances; and the deviation an incident shows for the pair.
    pub fn level_exceedance(&self, signal: Signal, x: f64, cfg: &DiagnosisConfig) -> Option<(Pool, Deviation)> {
        let (med, margin) = self.level_margin(signal, cfg)?;
        let bar = med + cfg.pooled_level_share * margin;
        let pool = Pool {
            failed: u64::from(x > bar),
            attempts: 1,
            base_failed: self.history.iter().filter(|y| **y > bar).count() as u64,
            base_attempts: self.history.len() as u64,
        };
        Some((pool, Deviation { baseline: med, observed: x, severity: (x - med) / margin }))
    }

    pub(crate) fn judge(&self, signal: Signal, v: Value, cfg: &DiagnosisConfig) -> Option<Deviation> {
        match v {
            Value::Level(x) => {
                let (med, margin) = self.level_margin(signal, cfg)?;
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
