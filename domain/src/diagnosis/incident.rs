//! Incidents: explanations that persist open an incident after `open_after` windows and
//! resolve it after `close_after` windows without them (hysteresis), in event time.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::*;

/// How long a certificate observation stands for the windows without a new one (event time).
pub const CERT_MEMORY_MS: i64 = 24 * 3_600_000;

/// Incident lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentState {
    Open,
    Resolved,
}

/// Observed against baseline, for one metric of an incident (at its peak).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricEvidence {
    pub baseline: f64,
    pub observed: f64,
}

/// What an incident says.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: String,
    pub state: IncidentState,
    pub scope: Scope,
    pub subject: BTreeMap<String, String>,
    pub metrics: BTreeSet<String>,
    /// Event time the incident opened (end of the window that confirmed it).
    pub opened_ms: i64,
    /// Event time of the first window that showed it.
    pub first_seen_ms: i64,
    pub updated_ms: i64,
    pub resolved_ms: Option<i64>,
    pub peak_severity: f64,
    /// Largest drop of MOS below the baseline MOS among the affected pairs (RTT-measured pairs).
    pub mos_impact: Option<f64>,
    pub affected_probes: BTreeSet<String>,
    pub affected_targets: BTreeSet<String>,
    /// Per metric, the baseline and observed values of the worst affected pair.
    pub evidence: BTreeMap<String, MetricEvidence>,
    /// Confidence 0…1: how cleanly the evidence fits (share of the explained pairs degraded).
    pub confidence: f64,
    /// How unlikely the evidence of the incident's strongest window is if nothing changed in this
    /// scope (docs/diagnosis.md "How sure"); absent for a silent probe or a certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// The most plausible other explanation of the same evidence, with its p-value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_up: Option<RunnerUp>,
}

#[derive(Clone, Debug, Default)]
struct Candidate {
    run: u32,
    first_seen_ms: i64,
}

/// Fewest pairs with a level baseline for the fleet's common swing to be estimated (below it,
/// pooled level evidence compares each pair with its own past only).
const SWING_MIN_PAIRS: usize = 8;

/// Per-fleet diagnosis state: baselines of every series, candidate explanations and incidents.
#[derive(Debug, Default)]
pub struct Diagnoser {
    pub cfg: DiagnosisConfig,
    labels: BTreeMap<String, BTreeMap<String, String>>,
    baselines: BTreeMap<(String, String, Signal), Baseline>,
    mos_baselines: BTreeMap<(String, String), Baseline>,
    candidates: BTreeMap<Explanation, Candidate>,
    /// Pooled evidence: a CUSUM per signal (failures and latencies) and candidate scope.
    cusums: BTreeMap<(Signal, Explanation), Cusum>,
    /// Open incidents by explanation, with windows missing since last seen.
    open: BTreeMap<Explanation, (Incident, u32)>,
    /// Probes seen so far and windows each has been silent.
    silent: BTreeMap<String, u32>,
    /// Per (probe, target): the certificate days-to-expiry last seen and the event time it was
    /// seen (window end); forgotten after `CERT_MEMORY_MS` without a new measurement.
    certs: BTreeMap<(String, String), (f64, i64)>,
    next_id: u64,
}

impl Diagnoser {
    pub fn new(cfg: DiagnosisConfig, labels: BTreeMap<String, BTreeMap<String, String>>) -> Self {
        Self { cfg, labels, ..Default::default() }
    }

    /// Replaces the probes' labels (a configuration reload).
    pub fn set_labels(&mut self, labels: BTreeMap<String, BTreeMap<String, String>>) {
        self.labels = labels;
    }

    /// Judges one finished window of the fleet; returns the incidents that opened, changed or
    /// resolved with it.
    pub fn window(&mut self, w: &FleetWindow) -> Vec<Incident> {
        let cfg = self.cfg.clone();
        // offline probes: seen before, nothing now, while others report
        let present: BTreeSet<&String> = w.pairs.keys().map(|(p, _)| p).collect();
        let mut found: BTreeMap<Explanation, (f64, Vec<Degraded>)> = BTreeMap::new();
        if !present.is_empty() {
            for (p, n) in self.silent.iter_mut() {
                *n = if present.contains(p) { 0 } else { *n + 1 };
                if *n >= cfg.offline_after {
                    let e = Explanation {
                        scope: Scope::ProbeOffline,
                        subject: BTreeMap::from([("probe".into(), p.clone())]),
                    };
                    found.insert(e, (1.0, Vec::new()));
                }
            }
            for p in present {
                self.silent.entry(p.clone()).or_insert(0);
            }
        }
        // degraded pairs per signal
        let mut degraded: BTreeMap<Signal, Vec<Degraded>> = BTreeMap::new();
        let mut reporting: BTreeMap<Signal, BTreeSet<(String, String)>> = BTreeMap::new();
        let mut mos_drop: BTreeMap<(String, String), f64> = BTreeMap::new();
        let mut pools: BTreeMap<Signal, BTreeMap<(String, String), Pool>> = BTreeMap::new();
        let mut levels: BTreeMap<Signal, BTreeMap<(String, String), Deviation>> = BTreeMap::new();
        let swing = self.common_swing(w);
        for ((p, t), pw) in &w.pairs {
            for (s, v) in &pw.values {
                reporting.entry(*s).or_default().insert((p.clone(), t.clone()));
                let b = self.baselines.entry((p.clone(), t.clone(), *s)).or_default();
                if let Value::Level(x) = v {
                    let c = swing.get(s).copied().unwrap_or(1.0);
                    if let Some((pool, mut dev)) = b.level_exceedance(*s, x / c, &cfg) {
                        dev.observed = *x;
                        pools.entry(*s).or_default().insert((p.clone(), t.clone()), pool);
                        levels.entry(*s).or_default().insert((p.clone(), t.clone()), dev);
                    }
                }
                if let (Value::Failures { failed, attempts }, Some((bf, ba))) = (v, b.failure_history(&cfg)) {
                    if POOLED_SIGNALS.contains(s) && *attempts > 0 {
                        let pool = Pool { failed: *failed, attempts: *attempts, base_failed: bf, base_attempts: ba };
                        pools.entry(*s).or_default().insert((p.clone(), t.clone()), pool);
                    }
                }
                if let Some(dev) = b.observe(*s, *v, &cfg) {
                    degraded.entry(*s).or_default().push(Degraded {
                        probe: p.clone(),
                        target: t.clone(),
                        signal: *s,
                        deviation: dev,
                    });
                }
            }
            if let Some(m) = pw.mos() {
                let b = self.mos_baselines.entry((p.clone(), t.clone())).or_default();
                // MOS falls when things degrade: judge the shortfall as a level above normal.
                let shortfall = 4.5 - m;
                if let Some(dev) = b.observe(
                    Signal::Rtt,
                    Value::Level(shortfall),
                    &DiagnosisConfig { floor_ms: 0.2, rel: 0.5, ..cfg.clone() },
                ) {
                    mos_drop.insert((p.clone(), t.clone()), dev.observed - dev.baseline);
                }
            }
        }
        for (e, conf, list) in self.expiring_certificates(w) {
            found.insert(e, (conf, list));
        }
        for (s, list) in &degraded {
            let set: BTreeSet<(String, String)> = list.iter().map(|d| (d.probe.clone(), d.target.clone())).collect();
            for e in localise(&set, &reporting[s], &self.labels, &cfg) {
                let covered: Vec<Degraded> = list.iter().filter(|d| covers(&e, d, &self.labels)).cloned().collect();
                let total = reporting[s].iter().filter(|(p, t)| covers_pair(&e, p, t, &self.labels)).count().max(1);
                let conf = covered.len() as f64 / total as f64;
                let entry = found.entry(e).or_insert((conf, Vec::new()));
                entry.0 = entry.0.min(conf);
                entry.1.extend(covered);
            }
        }
        // pooled evidence of the failure signals, accumulated across windows: an alarm carries
        // the windows its CUSUM has been rising, which count toward `open_after`
        let mut held: BTreeMap<Explanation, u32> = BTreeMap::new();
        for (s, by_pair) in &pools {
            for (e, conf, list, rising) in
                pooled_alarms(*s, by_pair, levels.get(s), &self.labels, &mut self.cusums, &cfg)
            {
                let h = held.entry(e.clone()).or_default();
                *h = (*h).max(rising);
                let entry = found.entry(e).or_insert((conf, Vec::new()));
                entry.0 = entry.0.max(conf);
                entry.1.extend(list);
            }
        }
        // an open group incident (a label group toward everything) takes what it covers: one of its
        // members, or itself toward one target, found in a window where the rest of its evidence
        // was thinner (its members' CUSUMs rise and fall a window apart; it stays the explanation)
        let folded: Vec<(Explanation, Explanation)> = found
            .keys()
            .filter_map(|e| self.open.keys().find(|g| folds(g, e, &self.labels)).map(|g| (e.clone(), g.clone())))
            .collect();
        for (e, g) in folded {
            if let Some((_, ev)) = found.remove(&e) {
                found.entry(g).or_insert((1.0, Vec::new())).1.extend(ev);
            }
        }
        // how sure: each explanation's p-value and its runner-up's
        let degraded_sets: BTreeMap<Signal, BTreeSet<(String, String)>> = degraded
            .iter()
            .map(|(s, l)| (*s, l.iter().map(|d| (d.probe.clone(), d.target.clone())).collect()))
            .collect();
        let strength = Strength {
            pools: &pools,
            degraded: &degraded_sets,
            reporting: &reporting,
            labels: &self.labels,
            cfg: &cfg,
        };
        let strengths: BTreeMap<Explanation, (f64, Option<RunnerUp>)> =
            found.iter().filter_map(|(e, (_, ev))| strength.of(e, ev).map(|s| (e.clone(), s))).collect();
        // hysteresis
        let mut changed = Vec::new();
        self.candidates.retain(|e, _| found.contains_key(e));
        for (e, (conf, evidence)) in &found {
            let rising = held.get(e).copied().unwrap_or(0);
            let since = w.start_ms - (w.end_ms - w.start_ms) * i64::from(rising.saturating_sub(1));
            let c = self.candidates.entry(e.clone()).or_insert(Candidate { run: 0, first_seen_ms: since });
            c.run = (c.run + 1).max(rising);
            if let Some((inc, missing)) = self.open.get_mut(e) {
                *missing = 0;
                update(inc, evidence, &mos_drop, *conf, w.end_ms);
                set_strength(inc, strengths.get(e));
                changed.push(inc.clone());
            } else if c.run >= cfg.open_after {
                self.next_id += 1;
                // Deterministic and unique across restarts: when it started, and what it blames.
                let key = format!("{:?}{:?}", e.scope, e.subject);
                let mut inc = Incident {
                    id: format!("inc-{}-{:08x}", c.first_seen_ms / 1000, crate::rollup::event_hash(&key) as u32),
                    state: IncidentState::Open,
                    scope: e.scope,
                    subject: e.subject.clone(),
                    metrics: BTreeSet::new(),
                    opened_ms: w.end_ms,
                    first_seen_ms: c.first_seen_ms,
                    updated_ms: w.end_ms,
                    resolved_ms: None,
                    peak_severity: 0.0,
                    mos_impact: None,
                    affected_probes: BTreeSet::new(),
                    affected_targets: BTreeSet::new(),
                    evidence: BTreeMap::new(),
                    confidence: *conf,
                    p_value: None,
                    runner_up: None,
                };
                if e.scope == Scope::ProbeOffline {
                    inc.affected_probes.extend(e.subject.get("probe").cloned());
                }
                update(&mut inc, evidence, &mos_drop, *conf, w.end_ms);
                set_strength(&mut inc, strengths.get(e));
                self.open.insert(e.clone(), (inc.clone(), 0));
                changed.push(inc);
            }
        }
        let mut resolved = Vec::new();
        for (e, (inc, missing)) in self.open.iter_mut() {
            if found.contains_key(e) {
                continue;
            }
            *missing += 1;
            if *missing >= cfg.close_after {
                inc.state = IncidentState::Resolved;
                inc.resolved_ms = Some(w.end_ms);
                inc.updated_ms = w.end_ms;
                resolved.push(e.clone());
                changed.push(inc.clone());
            }
        }
        for e in resolved {
            self.open.remove(&e);
        }
        changed
    }

    /// Per latency signal, the fleet's common swing this window: the median over the pairs with
    /// a level baseline of value / baseline median (a diurnal rise that moves every path alike,
    /// or a baseline still catching up with it); 1 with fewer than `SWING_MIN_PAIRS` pairs.
    /// Pooled level evidence divides each value by it, so a scope is compared with the rest of
    /// the fleet and not only with its own past.
    fn common_swing(&self, w: &FleetWindow) -> BTreeMap<Signal, f64> {
        let mut ratios: BTreeMap<Signal, Vec<f64>> = BTreeMap::new();
        for ((p, t), pw) in &w.pairs {
            for (s, v) in &pw.values {
                let Value::Level(x) = v else { continue };
                let med = self.baselines.get(&(p.clone(), t.clone(), *s)).and_then(|b| b.level_median(&self.cfg));
                if let Some(m) = med.filter(|m| *m > 0.0) {
                    ratios.entry(*s).or_default().push(x / m);
                }
            }
        }
        ratios
            .into_iter()
            .filter(|(_, r)| r.len() >= SWING_MIN_PAIRS)
            .map(|(s, mut r)| {
                r.sort_by(f64::total_cmp);
                let n = r.len();
                let m = if n % 2 == 1 { r[n / 2] } else { (r[n / 2 - 1] + r[n / 2]) / 2.0 };
                (s, if m > 0.0 { m } else { 1.0 })
            })
            .collect()
    }

    /// Remembers the window's certificate observations and returns, per target whose
    /// certificate (as last seen by some probe, aged to the window's end) expires within
    /// `cert_warn_days`, its explanation, the share of its probes that see it and the evidence.
    /// Certificates are measured every few minutes or hours, so the last observation stands
    /// for the windows without one (up to `CERT_MEMORY_MS`).
    fn expiring_certificates(&mut self, w: &FleetWindow) -> Vec<(Explanation, f64, Vec<Degraded>)> {
        for ((p, t), pw) in &w.pairs {
            if let Some(d) = pw.cert_days {
                self.certs.insert((p.clone(), t.clone()), (d, w.end_ms));
            }
        }
        self.certs.retain(|_, (_, at)| w.end_ms - *at <= CERT_MEMORY_MS);
        let warn = self.cfg.cert_warn_days;
        let mut by_target: BTreeMap<&String, (usize, Vec<Degraded>)> = BTreeMap::new();
        for ((p, t), (days, at)) in &self.certs {
            let entry = by_target.entry(t).or_default();
            entry.0 += 1;
            let now = (days - (w.end_ms - at) as f64 / 86_400_000.0).max(0.0);
            if warn > 0.0 && now < warn {
                entry.1.push(Degraded {
                    probe: p.clone(),
                    target: t.clone(),
                    signal: Signal::CertDays,
                    deviation: Deviation { baseline: warn, observed: now, severity: warn / now.max(1.0) },
                });
            }
        }
        by_target
            .into_iter()
            .filter(|(_, (_, list))| !list.is_empty())
            .map(|(t, (seen, list))| {
                let e =
                    Explanation { scope: Scope::Certificate, subject: BTreeMap::from([("target".into(), t.clone())]) };
                (e, list.len() as f64 / seen as f64, list)
            })
            .collect()
    }

    /// Incidents open now.
    pub fn open_incidents(&self) -> Vec<Incident> {
        self.open.values().map(|(i, _)| i.clone()).collect()
    }
}

/// The p-values of the incident's strongest window so far (its smallest p-value), with that
/// window's runner-up — like `peak_severity`, what the evidence showed at its clearest.
fn set_strength(inc: &mut Incident, s: Option<&(f64, Option<RunnerUp>)>) {
    if let Some((p, runner_up)) = s {
        if inc.p_value.is_none_or(|old| *p < old) {
            inc.p_value = Some(*p);
            inc.runner_up = runner_up.clone();
        }
    }
}

/// Whether open group explanation `g` (a label group toward every target) takes explanation `e`:
/// a probe that is one of its members, or the same group toward one target.
fn folds(g: &Explanation, e: &Explanation, labels: &BTreeMap<String, BTreeMap<String, String>>) -> bool {
    if g.scope != Scope::Group || g.subject.contains_key("target") {
        return false;
    }
    match e.scope {
        Scope::Probe => e.subject.get("probe").is_some_and(|p| covers_pair(g, p, "", labels)),
        Scope::Group => e.subject.contains_key("target") && g.subject.iter().all(|(k, v)| e.subject.get(k) == Some(v)),
        _ => false,
    }
}

pub(crate) fn covers_pair(
    e: &Explanation,
    probe: &str,
    target: &str,
    labels: &BTreeMap<String, BTreeMap<String, String>>,
) -> bool {
    e.subject.iter().all(|(k, v)| match k.as_str() {
        "probe" => probe == v,
        "target" => target == v,
        k => k
            .strip_prefix("probe.")
            .is_some_and(|label| labels.get(probe).and_then(|l| l.get(label)).is_some_and(|x| x == v)),
    })
}

fn covers(e: &Explanation, d: &Degraded, labels: &BTreeMap<String, BTreeMap<String, String>>) -> bool {
    covers_pair(e, &d.probe, &d.target, labels)
}

fn update(inc: &mut Incident, evidence: &[Degraded], mos_drop: &BTreeMap<(String, String), f64>, conf: f64, at: i64) {
    inc.updated_ms = at;
    inc.confidence = inc.confidence.max(conf);
    for d in evidence {
        inc.metrics.insert(d.signal.metric().to_string());
        inc.affected_probes.insert(d.probe.clone());
        inc.affected_targets.insert(d.target.clone());
        if d.deviation.severity > inc.peak_severity {
            inc.peak_severity = d.deviation.severity;
        }
        let m = inc
            .evidence
            .entry(d.signal.metric().to_string())
            .or_insert(MetricEvidence { baseline: d.deviation.baseline, observed: d.deviation.observed });
        // the worst: furthest above its baseline — or, for a certificate, closest to expiry
        let worse = if d.signal == Signal::CertDays {
            d.deviation.observed < m.observed
        } else {
            d.deviation.observed - d.deviation.baseline > m.observed - m.baseline
        };
        if worse {
            *m = MetricEvidence { baseline: d.deviation.baseline, observed: d.deviation.observed };
        }
        // MOS follows RTT, jitter and loss only; its own noise (one lost packet) is not evidence.
        let voice = matches!(d.signal, Signal::Rtt | Signal::Jitter | Signal::Loss);
        if let Some(drop) = mos_drop.get(&(d.probe.clone(), d.target.clone())).filter(|_| voice) {
            inc.metrics.insert("mos".into());
            inc.mos_impact = Some(inc.mos_impact.map_or(*drop, |x: f64| x.max(*drop)));
        }
    }
}
