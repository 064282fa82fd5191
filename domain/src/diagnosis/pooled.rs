//! Pooled evidence: a candidate explanation's failure counts summed over all the pairs it covers
//! and tested against their pooled baseline, accumulated across windows by a one-sided binomial
//! CUSUM (Page 1954) so a sustained small excess is found within a few windows while a one-window
//! blip is not; and the p-values an incident reports for its explanation and the runner-up.
//!
//! Invariant: pure arithmetic on counts; the same windows always give the same alarms.

use std::collections::{BTreeMap, BTreeSet};

use super::*;

/// Failures of a scope in one window, and its pairs' baselines pooled (sums over the pairs).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Pool {
    pub failed: u64,
    pub attempts: u64,
    pub base_failed: u64,
    pub base_attempts: u64,
}

impl Pool {
    pub fn add(&mut self, o: &Pool) {
        self.failed += o.failed;
        self.attempts += o.attempts;
        self.base_failed += o.base_failed;
        self.base_attempts += o.base_attempts;
    }

    /// The pooled baseline rate, taken high: the failures of the baseline windows plus two Poisson
    /// standard deviations and one, over their attempts — a baseline that happened to see few
    /// failures must not make ordinary ones look like a fault — and at least `min_rate`.
    pub fn base_rate(&self, min_rate: f64) -> f64 {
        if self.base_attempts == 0 {
            return min_rate.max(1e-12);
        }
        let f = self.base_failed as f64;
        ((f + 2.0 * f.sqrt() + 1.0) / self.base_attempts as f64).max(min_rate)
    }

    /// The pairs' own baseline rate (the plain estimate), for evidence shown to people.
    pub fn observed_base(&self) -> f64 {
        if self.base_attempts == 0 {
            0.0
        } else {
            self.base_failed as f64 / self.base_attempts as f64
        }
    }

    pub fn rate(&self) -> f64 {
        if self.attempts == 0 {
            0.0
        } else {
            self.failed as f64 / self.attempts as f64
        }
    }

    /// P(X ≥ failed) under the pooled baseline rate: how unlikely this many failures are if
    /// nothing changed.
    pub fn p_value(&self, cfg: &DiagnosisConfig) -> f64 {
        binomial_tail(self.failed, self.attempts, self.base_rate(cfg.pooled_min_rate))
    }

    /// The rate the sequential test looks for: the baseline plus `pooled_min_shift`, or
    /// `pooled_ratio` times it, whichever is larger.
    pub fn alternative_rate(&self, cfg: &DiagnosisConfig) -> f64 {
        let p0 = self.base_rate(cfg.pooled_min_rate);
        (p0 + cfg.pooled_min_shift).max(p0 * cfg.pooled_ratio).min(0.999)
    }

    /// This window's log-likelihood ratio of "the rate rose to the alternative" against "it is
    /// the baseline" (natural log).
    pub fn llr(&self, cfg: &DiagnosisConfig) -> f64 {
        binomial_llr(self.failed, self.attempts, self.base_rate(cfg.pooled_min_rate), self.alternative_rate(cfg))
    }
}

/// `ln L(p1) − ln L(p0)` of `failed` of `attempts` Bernoulli trials.
pub fn binomial_llr(failed: u64, attempts: u64, p0: f64, p1: f64) -> f64 {
    let (p0, p1) = (p0.clamp(1e-12, 1.0 - 1e-12), p1.clamp(1e-12, 1.0 - 1e-12));
    let ok = attempts.saturating_sub(failed) as f64;
    failed as f64 * (p1 / p0).ln() + ok * ((1.0 - p1) / (1.0 - p0)).ln()
}

/// A one-sided CUSUM of per-window log-likelihood ratios: `S = max(0, S + min(llr, cap))`,
/// bounded by `h + cap`. It alarms while `S ≥ h` **and** the last two windows together add
/// evidence of their own (`llr ≥ 1`: the alternative at least e times as likely), so an alarm
/// says "sustained and still going on": one window alone adds at most `cap < h` and never
/// alarms; a fault that ended stops alarming within two windows, and the bound keeps the memory
/// short. The baseline is frozen while `S > 0`: failures of a fault under way never become the
/// normal they are tested against (the pairs' own baselines may learn them, being judged alone).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Cusum {
    pub s: f64,
    /// The last window's log-likelihood ratio.
    last: f64,
    /// (failed, attempts) of the baseline frozen when `S` left zero.
    base: Option<(u64, u64)>,
    /// Consecutive windows with `S` above zero that showed some of the excess (a failure, an
    /// exceedance): how long the evidence has been building without a break, what counts toward
    /// `open_after`. A window showing none of it breaks the run: evidence left over from an
    /// earlier blip adds to `S`, not to the run, so an incident still needs `open_after`
    /// consecutive windows.
    pub rising: u32,
}

impl Cusum {
    /// Tests a scope's pooled window by the evidence of the scope without its worst member
    /// (`rest`), scaled to all its pairs' attempts and at most what all of them (`all`) give: a
    /// scope-wide excess counts at nearly full strength, one member's alone (a stray failure
    /// elsewhere beside it) hardly at all. Judged against the scope's baseline, frozen while the
    /// CUSUM is up.
    pub fn test(&mut self, all: &Pool, rest: &Pool, cfg: &DiagnosisConfig) -> bool {
        let (mut all, mut rest) = (*all, *rest);
        match self.base.filter(|_| self.s > 0.0) {
            Some(base) => {
                (all.base_failed, all.base_attempts) = base;
                (rest.base_failed, rest.base_attempts) = base;
            }
            None => self.base = Some((all.base_failed, all.base_attempts)),
        }
        (rest.base_failed, rest.base_attempts) = (all.base_failed, all.base_attempts);
        let r = rest.llr(cfg);
        let scaled = r * all.attempts as f64 / rest.attempts.max(1) as f64;
        self.step_showing(if r > 0.0 { all.llr(cfg).min(scaled) } else { r }, all.failed > 0, cfg)
    }

    /// One window's evidence, `shows` whether the window held any of the excess at all.
    pub fn step(&mut self, llr: f64, cfg: &DiagnosisConfig) -> bool {
        self.step_showing(llr, llr > 0.0, cfg)
    }

    fn step_showing(&mut self, llr: f64, shows: bool, cfg: &DiagnosisConfig) -> bool {
        let h = cfg.pooled_threshold;
        self.s = (self.s + llr.min(cfg.pooled_step_cap)).clamp(0.0, h + cfg.pooled_step_cap);
        let recent = llr + self.last;
        self.last = llr;
        self.rising = if self.s > 0.0 && shows { self.rising + 1 } else { 0 };
        self.s >= h && recent >= 1.0
    }
}

/// An alternative explanation an incident was weighed against, with its p-value.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunnerUp {
    pub scope: Scope,
    pub subject: std::collections::BTreeMap<String, String>,
    pub p_value: f64,
}

/// The failure signals pooled evidence is gathered for.
pub const POOLED_SIGNALS: [Signal; 3] = [Signal::Loss, Signal::DnsFail, Signal::ConnectFail];

type Pair = (String, String);

fn probe_of(k: &Pair) -> &String {
    &k.0
}

fn target_of(k: &Pair) -> &String {
    &k.1
}

/// The member (probe or target, by `key`) of `pairs` with the highest pooled failure rate.
fn worst<'a>(pairs: &[(&'a Pair, &Pool)], key: fn(&'a Pair) -> &'a String) -> Option<&'a String> {
    let mut by: BTreeMap<&String, Pool> = BTreeMap::new();
    for (k, p) in pairs {
        by.entry(key(k)).or_default().add(p);
    }
    by.into_iter().max_by(|a, b| a.1.rate().total_cmp(&b.1.rate()).then(b.0.cmp(a.0))).map(|(k, _)| k)
}

/// One window's pooled judgement of one failure signal. Every probe's failures toward its
/// targets, and every target's from its probes, are pooled and accumulated in a CUSUM per scope;
/// returns the scopes that alarm, with the pairs whose failure rate is above their baseline as
/// evidence and the share of the scope's pairs they are.
///
/// Probes first, each without its worst target (one bad target seen by a probe is not the
/// probe's access network). When the probes whose CUSUM is rising (a third of the way to the
/// threshold or more) are all within one label group and most (`majority`) of its reporting
/// members, the smallest such group is blamed instead of each of them (as `localise` does).
/// Then targets, each over the pairs the rising probes did not take and without its worst probe
/// (one bad access link is not the target).
///
/// Latency signals (`levels`: each pair's deviation, its pool one trial — "above its median by
/// `pooled_level_share` of its margin" — docs/diagnosis.md §4b) go the same way, and a scope is
/// blamed only while at least `pooled_level_spread` of its pairs exceed: a shift that moved the
/// scope, not a few of its pairs.
pub fn pooled_alarms(
    signal: Signal,
    pools: &BTreeMap<Pair, Pool>,
    levels: Option<&BTreeMap<Pair, Deviation>>,
    labels: &BTreeMap<String, BTreeMap<String, String>>,
    cusums: &mut BTreeMap<(Signal, Explanation), Cusum>,
    cfg: &DiagnosisConfig,
) -> Vec<(Explanation, f64, Vec<Degraded>, u32)> {
    let min_share = if levels.is_some() { cfg.pooled_level_spread } else { 0.0 };
    // updates a scope's CUSUM on its pairs (without the worst member `by` names); its evidence
    // when it alarms
    let judge = |cusums: &mut BTreeMap<(Signal, Explanation), Cusum>,
                 e: &Explanation,
                 pairs: &[(&Pair, &Pool)],
                 by: fn(&Pair) -> &String|
     -> Option<(f64, Vec<Degraded>, u32)> {
        let members: BTreeSet<&String> = pairs.iter().map(|(k, _)| by(k)).collect();
        if members.len() < 2 {
            return None;
        }
        let w = worst(pairs, by);
        let (mut rest, mut all) = (Pool::default(), Pool::default());
        pairs.iter().filter(|(k, _)| Some(by(k)) != w).for_each(|(_, p)| rest.add(p));
        pairs.iter().for_each(|(_, p)| all.add(p));
        let c = cusums.entry((signal, e.clone())).or_default();
        if !c.test(&all, &rest, cfg) {
            return None;
        }
        let rising = c.rising;
        let alt = all.alternative_rate(cfg);
        let list: Vec<Degraded> = pairs
            .iter()
            .filter(|(_, p)| p.failed > 0 && p.rate() > p.observed_base())
            .filter_map(|(k, p)| {
                let deviation = match levels {
                    Some(devs) => devs.get(*k)?.clone(),
                    None => Deviation { baseline: p.observed_base(), observed: p.rate(), severity: p.rate() / alt },
                };
                Some(Degraded { probe: k.0.clone(), target: k.1.clone(), signal, deviation })
            })
            .collect();
        let share = list.len() as f64 / pairs.len().max(1) as f64;
        (share >= min_share).then_some((share, list, rising))
    };
    let mut out = Vec::new();
    // probes: over their targets
    let probes: BTreeSet<&String> = pools.keys().map(|(p, _)| p).collect();
    let mut bad: BTreeMap<&String, (f64, Vec<Degraded>, u32)> = BTreeMap::new();
    for p in &probes {
        let pairs: Vec<(&Pair, &Pool)> = pools.iter().filter(|(pair, _)| &pair.0 == *p).collect();
        let e = Explanation { scope: Scope::Probe, subject: BTreeMap::from([("probe".into(), (*p).clone())]) };
        if let Some(found) = judge(cusums, &e, &pairs, target_of) {
            bad.insert(p, found);
        }
    }
    // probes whose CUSUM is a third of the way up or more: a fault shared by a group of probes raises
    // their CUSUMs together, a window apart at most
    let mut up: BTreeSet<&String> = bad.keys().copied().collect();
    for p in &probes {
        let e = Explanation { scope: Scope::Probe, subject: BTreeMap::from([("probe".into(), (*p).clone())]) };
        if cusums.get(&(signal, e)).is_some_and(|c| c.s >= cfg.pooled_threshold / 3.0) {
            up.insert(p);
        }
    }
    let mut groups: BTreeMap<(&String, &String), BTreeSet<&String>> = BTreeMap::new();
    for p in &probes {
        for (k, v) in labels.get(*p).into_iter().flatten() {
            groups.entry((k, v)).or_default().insert(p);
        }
    }
    // the smallest group (not everyone) holding every rising probe, of which they are most
    // (`majority`)
    let group = (!bad.is_empty() && up.len() >= 2)
        .then(|| {
            groups
                .iter()
                .filter(|(_, m)| {
                    m.len() < probes.len() && up.is_subset(m) && up.len() as f64 >= cfg.majority * m.len() as f64
                })
                .min_by_key(|((k, v), m)| (m.len(), *k, *v))
        })
        .flatten();
    // the pairs of rising probes (and of a blamed group) are left out of the targets' pools
    let mut taken: BTreeSet<&String> = up.clone();
    if let Some(((k, v), members)) = group {
        taken.extend(members.iter().copied());
        let e = Explanation { scope: Scope::Group, subject: BTreeMap::from([(format!("probe.{k}"), (*v).clone())]) };
        let share = bad.values().map(|(s, _, _)| *s).fold(f64::INFINITY, f64::min);
        let rising = bad.values().map(|(_, _, r)| *r).min().unwrap_or(0);
        out.push((e, share, bad.values().flat_map(|(_, l, _)| l.clone()).collect(), rising));
    } else if up.len() == bad.len() || up.len() < 2 {
        for (p, (share, list, rising)) in &bad {
            let e = Explanation { scope: Scope::Probe, subject: BTreeMap::from([("probe".into(), (*p).clone())]) };
            out.push((e, *share, list.clone(), *rising));
        }
    } else {
        // several probes rising, not yet all alarming and no group holds them: each alarming
        // probe is blamed only once no group can still take it
        for (p, (share, list, rising)) in &bad {
            let in_group = groups.values().any(|m| {
                m.len() >= 2
                    && m.len() < probes.len()
                    && m.contains(p)
                    && m.iter().filter(|x| up.contains(*x)).count() >= 2
            });
            if !in_group {
                let e = Explanation { scope: Scope::Probe, subject: BTreeMap::from([("probe".into(), (*p).clone())]) };
                out.push((e, *share, list.clone(), *rising));
            }
        }
    }
    // targets: over their probes, those taken above left out
    let targets: BTreeSet<&String> = pools.keys().map(|(_, t)| t).collect();
    for t in targets {
        let pairs: Vec<(&Pair, &Pool)> =
            pools.iter().filter(|(pair, _)| &pair.1 == t && !taken.contains(&pair.0)).collect();
        let e = Explanation { scope: Scope::Target, subject: BTreeMap::from([("target".into(), t.clone())]) };
        if let Some((share, list, rising)) = judge(cusums, &e, &pairs, probe_of) {
            out.push((e, share, list, rising));
        }
    }
    out
}

/// What an incident reports of its explanation's strength in one window: the p-value of the
/// explanation and of the most plausible alternative covering the same evidence (the runner-up).
///
/// Failure signals: the pooled binomial tail of the failures over the scope's pairs against their
/// pooled baseline; an alternative (for a target: each probe that sees it failing; for a probe or
/// a group: each target it fails toward) is tested on its *other* pairs — if the probe were the
/// cause, its other targets would fail too. Latency signals the same way on their exceedances
/// (each pair one trial against its own history's rate, §4b); a latency signal without any pair
/// old enough to have a baseline falls back to a binomial test of how many of the scope's
/// reporting pairs were judged degraded, each by chance with `level_false_rate`.
pub struct Strength<'a> {
    pub pools: &'a BTreeMap<Signal, BTreeMap<Pair, Pool>>,
    pub degraded: &'a BTreeMap<Signal, BTreeSet<Pair>>,
    pub reporting: &'a BTreeMap<Signal, BTreeSet<Pair>>,
    pub labels: &'a BTreeMap<String, BTreeMap<String, String>>,
    pub cfg: &'a DiagnosisConfig,
}

impl Strength<'_> {
    fn p_over(&self, signal: Signal, covers: &dyn Fn(&str, &str) -> bool) -> Option<f64> {
        if let Some(pools) = self.pools.get(&signal) {
            let mut pool = Pool::default();
            pools.iter().filter(|((p, t), _)| covers(p, t)).for_each(|(_, x)| pool.add(x));
            (pool.attempts > 0).then(|| pool.p_value(self.cfg))
        } else {
            let n = self.reporting.get(&signal)?.iter().filter(|(p, t)| covers(p, t)).count() as u64;
            let empty = BTreeSet::new();
            let k = self.degraded.get(&signal).unwrap_or(&empty).iter().filter(|(p, t)| covers(p, t)).count() as u64;
            (n > 0).then(|| binomial_tail(k, n, self.cfg.level_false_rate))
        }
    }

    /// (p-value, runner-up) of `e` given its evidence; `None` for explanations without a test
    /// (a silent probe, a certificate).
    pub fn of(&self, e: &Explanation, evidence: &[Degraded]) -> Option<(f64, Option<RunnerUp>)> {
        if matches!(e.scope, Scope::ProbeOffline | Scope::Certificate) {
            return None;
        }
        let signals: BTreeSet<Signal> = evidence.iter().map(|d| d.signal).collect();
        let own = |p: &str, t: &str| covers_pair(e, p, t, self.labels);
        let p = signals.iter().filter_map(|s| self.p_over(*s, &own)).min_by(f64::total_cmp)?;
        let mut alternatives: BTreeSet<Explanation> = BTreeSet::new();
        for d in evidence {
            let (key, value) = if e.scope == Scope::Target { ("probe", &d.probe) } else { ("target", &d.target) };
            let scope = if e.scope == Scope::Target { Scope::Probe } else { Scope::Target };
            alternatives.insert(Explanation { scope, subject: BTreeMap::from([(key.to_string(), value.clone())]) });
        }
        let runner_up = alternatives
            .into_iter()
            .filter_map(|alt| {
                let other = |p: &str, t: &str| covers_pair(&alt, p, t, self.labels) && !own(p, t);
                let p = signals.iter().filter_map(|s| self.p_over(*s, &other)).min_by(f64::total_cmp)?;
                Some(RunnerUp { scope: alt.scope, subject: alt.subject, p_value: p })
            })
            .min_by(|a, b| a.p_value.total_cmp(&b.p_value));
        Some((p, runner_up))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_likelihood_ratio_of_a_known_case() {
        // 3 of 100 under 1 % vs 0.2 %: 3·ln 5 + 97·ln(0.99/0.998), by hand 4.82831 − 0.78068
        let l = binomial_llr(3, 100, 0.002, 0.01);
        assert!((l - (3.0 * 5f64.ln() + 97.0 * (0.99f64 / 0.998).ln())).abs() < 1e-12);
        assert!((l - 4.04763).abs() < 1e-4, "{l}");
        // nothing failed: evidence against the alternative
        assert!(binomial_llr(0, 100, 0.002, 0.01) < 0.0);
    }

    #[test]
    fn the_binomial_tail_of_a_known_case() {
        // P(X ≥ 2), n = 10, p = 0.1: 1 − 0.9^10 − 10·0.1·0.9^9 = 0.263901071
        assert!((binomial_tail(2, 10, 0.1) - 0.263_901_071).abs() < 1e-9);
        // a far tail keeps its size: P(X ≥ 30), n = 100, p = 0.05 = 8.5564e-16 (exact sum)
        let far = binomial_tail(30, 100, 0.05);
        assert!((far / 8.556_384_8e-16 - 1.0).abs() < 1e-6, "{far}");
        assert!(binomial_tail(100, 100, 0.001) > 0.0, "never exactly zero when k ≤ n");
        // pooled: 7 lost of 240 at a 0.2 % baseline (29 of 14,400, taken as (29 + 2·√29 + 1) /
        // 14,400 = 0.283 %) is far beyond chance: by hand 6.8354e-6
        let p = Pool { failed: 7, attempts: 240, base_failed: 29, base_attempts: 14_400 };
        let cfg = DiagnosisConfig::default();
        assert!((p.p_value(&cfg) - 6.8354e-6).abs() < 1e-9, "{}", p.p_value(&cfg));
    }

    #[test]
    fn a_sustained_small_excess_alarms_within_a_few_windows_and_a_blip_never() {
        let cfg = DiagnosisConfig::default();
        // a probe with 4 targets × 60 packets a window at a 0.2 % baseline, now losing 3 %
        let pool = |failed| Pool { failed, attempts: 240, base_failed: 29, base_attempts: 14_400 };
        let mut c = Cusum::default();
        let alarms: Vec<bool> = (0..4).map(|_| c.step(pool(7).llr(&cfg), &cfg)).collect();
        assert_eq!(alarms, vec![false, true, true, true], "S = {}", c.s);
        // it stops within two windows without the excess
        c.step(pool(0).llr(&cfg), &cfg);
        assert!(!c.step(pool(0).llr(&cfg), &cfg));
        // one window of 50 % loss, then normal: never an alarm
        let mut b = Cusum::default();
        assert!(!b.step(pool(120).llr(&cfg), &cfg));
        for _ in 0..20 {
            assert!(!b.step(pool(0).llr(&cfg), &cfg));
        }
    }

    /// SplitMix64 + inversion: binomial draws without a dependency.
    fn binomial(state: &mut u64, n: u64, p: f64) -> u64 {
        let mut k = 0;
        for _ in 0..n {
            *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = *state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            if ((z >> 11) as f64 / (1u64 << 53) as f64) < p {
                k += 1;
            }
        }
        k
    }

    /// A healthy scope — failures at its baseline rate, the baseline estimated from 60 windows
    /// of the same process — never crosses the threshold in a simulated day of windows, for a
    /// fixed set of seeds over failure rates 0–2 % and 60–600 attempts a window.
    #[test]
    fn healthy_windows_never_alarm() {
        let cfg = DiagnosisConfig::default();
        let mut alarms = Vec::new();
        for seed in 0..200u64 {
            for rate in [0.0, 0.002, 0.005, 0.0074, 0.01, 0.02] {
                for attempts in [60u64, 77, 240, 600] {
                    let mut st = seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ attempts;
                    let history: u64 = (0..60).map(|_| binomial(&mut st, attempts, rate)).sum();
                    let mut c = Cusum::default();
                    for w in 0..1440 {
                        let failed = binomial(&mut st, attempts, rate);
                        let p = Pool { failed, attempts, base_failed: history, base_attempts: 60 * attempts };
                        if c.step(p.llr(&cfg), &cfg) {
                            alarms.push((seed, rate, attempts, w));
                            break;
                        }
                    }
                }
            }
        }
        assert!(
            alarms.is_empty(),
            "{} of 4,800 healthy days alarmed: {:?}",
            alarms.len(),
            &alarms[..alarms.len().min(5)]
        );
    }
}
