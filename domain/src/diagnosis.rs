//! Diagnosis: a QoE score per window (ITU-T G.107 E-model, simplified), detection of degraded
//! windows against a learned per-series baseline, localisation of the degraded (probe, target)
//! pairs to the most specific explanation (target, probe, a group of probes sharing a label, a
//! probe gone silent), and incidents with hysteresis. Pure: windows and times are passed in.
//!
//! Invariants: a series' baseline learns only from windows that were not degraded (a fault never
//! becomes the norm while it lasts, up to `rebaseline_after` windows); an explanation opens an
//! incident only after `open_after` consecutive windows and resolves after `close_after` windows
//! without it; the same input always gives the same incidents (no hashing order, no clock).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------------
// E-model

/// R-factor from mean RTT, jitter and packet loss (fraction), after the simplified E-model of
/// Cole & Rosenbluth ("Voice over IP performance monitoring", ACM CCR 31(2), 2001) on ITU-T G.107
/// defaults for G.711 with packet-loss concealment: one-way delay d = RTT/2 + 2·jitter + 10 ms
/// (codec and jitter buffer); Id = 0.024·d + 0.11·(d − 177.3)·H(d − 177.3); Ie,eff = Ie +
/// (95 − Ie)·Ppl/(Ppl + Bpl) with Ie = 0, Bpl = 4.3 (G.113 Appendix I, G.711 PLC, random loss) and
/// Ppl in percent; R = 93.2 − Id − Ie,eff.
pub fn r_factor(rtt_ms: f64, jitter_ms: f64, loss: f64) -> f64 {
    let d = rtt_ms.max(0.0) / 2.0 + 2.0 * jitter_ms.max(0.0) + 10.0;
    let id = 0.024 * d + if d > 177.3 { 0.11 * (d - 177.3) } else { 0.0 };
    let ppl = (loss.clamp(0.0, 1.0)) * 100.0;
    let (ie, bpl) = (0.0, 4.3);
    let ie_eff = ie + (95.0 - ie) * ppl / (ppl + bpl);
    93.2 - id - ie_eff
}

/// MOS (1 … 4.5) from an R-factor (ITU-T G.107 Annex B).
pub fn mos(r: f64) -> f64 {
    if r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        1.0 + 0.035 * r + 7.0e-6 * r * (r - 60.0) * (100.0 - r)
    }
}

// ---------------------------------------------------------------------------------------------
// What a window shows

/// The quantities detection watches, per (probe, target) and 1m window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// Median RTT of the packet trains (ms).
    Rtt,
    /// RFC 3550 jitter estimate (ms).
    Jitter,
    /// Packets lost (rate; a failure count).
    Loss,
    /// Median DNS resolution time (ms).
    Dns,
    /// DNS lookups failing (rate; a failure count).
    DnsFail,
    /// Median TCP connect time (ms).
    Connect,
    /// TCP connects failing (rate; a failure count).
    ConnectFail,
    /// Median TLS handshake time (ms).
    Tls,
    /// Median time to first byte (ms).
    Ttfb,
    /// Days until the server certificate expires (tls/http): judged against a fixed threshold
    /// (`cert_warn_days`), not a baseline — a certificate ageing is not a path degrading.
    CertDays,
}

impl Signal {
    /// The metric name an incident lists for this signal.
    pub fn metric(self) -> &'static str {
        match self {
            Signal::Rtt => "rtt",
            Signal::Jitter => "jitter",
            Signal::Loss | Signal::ConnectFail => "loss",
            Signal::Dns | Signal::DnsFail => "dns",
            Signal::Connect => "connect",
            Signal::Tls => "tls",
            Signal::Ttfb => "ttfb",
            Signal::CertDays => "cert_days",
        }
    }
}

/// One signal's value in one window: a level (ms), or failures out of attempts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    Level(f64),
    Failures { failed: u64, attempts: u64 },
}

/// Everything one (probe, target) pair showed in one window.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PairWindow {
    pub values: BTreeMap<Signal, Value>,
    /// Fewest days to certificate expiry seen in the window (tls/http measurements), if any.
    pub cert_days: Option<f64>,
}

impl PairWindow {
    /// MOS of the window (needs the RTT; jitter and loss default to 0).
    pub fn mos(&self) -> Option<f64> {
        let rtt = match (self.values.get(&Signal::Rtt), self.values.get(&Signal::Loss)) {
            (Some(Value::Level(v)), _) => *v,
            // nothing answered: the worst score
            (None, Some(Value::Failures { failed, attempts })) if *attempts > 0 && failed == attempts => {
                return Some(1.0)
            }
            _ => return None,
        };
        let jitter = match self.values.get(&Signal::Jitter) {
            Some(Value::Level(v)) => *v,
            _ => 0.0,
        };
        let loss = match self.values.get(&Signal::Loss) {
            Some(Value::Failures { failed, attempts }) if *attempts > 0 => *failed as f64 / *attempts as f64,
            _ => 0.0,
        };
        Some(mos(r_factor(rtt, jitter, loss)))
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration

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
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Detection per series

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// P(X ≥ k) for X ~ Binomial(n, p).
pub fn binomial_tail(k: u64, n: u64, p: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n {
        return 0.0;
    }
    let p = p.clamp(1e-12, 1.0 - 1e-12);
    // sum the lower part in log space: P(X ≥ k) = 1 − Σ_{i<k} C(n,i) p^i (1−p)^(n−i)
    let mut term = (n as f64) * (1.0 - p).ln(); // log P(X = 0)
    let mut below = 0.0;
    for i in 0..k {
        below += term.exp();
        term += ((n - i) as f64 / (i + 1) as f64).ln() + (p / (1.0 - p)).ln();
    }
    (1.0 - below).max(0.0)
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

    fn judge(&self, signal: Signal, v: Value, cfg: &DiagnosisConfig) -> Option<Deviation> {
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

// ---------------------------------------------------------------------------------------------
// Localisation

/// Whom an incident blames.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    Target,
    Probe,
    Group,
    ProbeOffline,
    /// The target's certificate expires soon (subject `{target}`).
    Certificate,
}

impl Scope {
    pub const ALL: [Scope; 5] = [Scope::Target, Scope::Probe, Scope::Group, Scope::ProbeOffline, Scope::Certificate];

    /// The scope's name, as serialised (a metric label, a routing key part).
    pub fn name(self) -> &'static str {
        match self {
            Scope::Target => "target",
            Scope::Probe => "probe",
            Scope::Group => "group",
            Scope::ProbeOffline => "probe-offline",
            Scope::Certificate => "certificate",
        }
    }
}

/// An explanation: scope and subject (`{"target": "api"}`, `{"probe.asn": "3320", "target":
/// "video"}` …).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Explanation {
    pub scope: Scope,
    pub subject: BTreeMap<String, String>,
}

/// One window of the whole fleet: per (probe, target) what it showed; probes that sent nothing
/// are absent.
#[derive(Clone, Debug, Default)]
pub struct FleetWindow {
    pub start_ms: i64,
    pub end_ms: i64,
    pub pairs: BTreeMap<(String, String), PairWindow>,
}

/// A degraded pair in one window.
#[derive(Clone, Debug, PartialEq)]
pub struct Degraded {
    pub probe: String,
    pub target: String,
    pub signal: Signal,
    pub deviation: Deviation,
}

/// Finds the explanations covering the degraded pairs of one signal. `reporting` are the
/// (probe, target) pairs that measured this signal in the window; `labels` the probes' labels.
pub fn localise(
    degraded: &BTreeSet<(String, String)>,
    reporting: &BTreeSet<(String, String)>,
    labels: &BTreeMap<String, BTreeMap<String, String>>,
    cfg: &DiagnosisConfig,
) -> Vec<Explanation> {
    let mut out = Vec::new();
    let mut explained: BTreeSet<(String, String)> = BTreeSet::new();
    let probes_of = |t: &str, set: &BTreeSet<(String, String)>| -> BTreeSet<String> {
        set.iter().filter(|(_, tt)| tt == t).map(|(p, _)| p.clone()).collect()
    };
    let targets: BTreeSet<String> = reporting.iter().map(|(_, t)| t.clone()).collect();
    let probes: BTreeSet<String> = reporting.iter().map(|(p, _)| p.clone()).collect();
    let enough = |part: usize, whole: usize| part >= 2 && part as f64 >= cfg.majority * whole as f64;

    // label groups among the reporting probes: (key, value) → members
    let mut groups: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for p in &probes {
        for (k, v) in labels.get(p).into_iter().flatten() {
            groups.entry((k.clone(), v.clone())).or_default().insert(p.clone());
        }
    }
    // the smallest label group that is exactly `set` (≥ 2 probes, not everyone)
    let group_of = |set: &BTreeSet<String>, among: &BTreeSet<String>| -> Option<(String, String)> {
        groups
            .iter()
            .filter(|(_, members)| {
                let m: BTreeSet<String> = members.intersection(among).cloned().collect();
                m.len() >= 2 && m.len() < among.len() && &m == set
            })
            .min_by_key(|((k, v), m)| (m.len(), k.clone(), v.clone()))
            .map(|(kv, _)| kv.clone())
    };

    // 1. per target: a label group exactly, else most of its probes → the target
    let mut group_targets: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for t in &targets {
        let bad = probes_of(t, degraded);
        let all = probes_of(t, reporting);
        if bad.len() < 2 {
            continue;
        }
        if let Some(g) = group_of(&bad, &all) {
            group_targets.entry(g).or_default().insert(t.clone());
        } else if enough(bad.len(), all.len()) {
            out.push(Explanation { scope: Scope::Target, subject: BTreeMap::from([("target".into(), t.clone())]) });
        } else {
            continue;
        }
        explained.extend(bad.iter().map(|p| (p.clone(), t.clone())));
    }
    for ((k, v), ts) in group_targets {
        let measured: BTreeSet<&String> = targets.iter().filter(|t| !probes_of(t, reporting).is_empty()).collect();
        if ts.len() >= 2 && ts.len() as f64 >= cfg.majority * measured.len() as f64 {
            out.push(Explanation { scope: Scope::Group, subject: BTreeMap::from([(format!("probe.{k}"), v)]) });
        } else {
            for t in ts {
                out.push(Explanation {
                    scope: Scope::Group,
                    subject: BTreeMap::from([(format!("probe.{k}"), v.clone()), ("target".into(), t)]),
                });
            }
        }
    }
    // 2. per probe: most of its targets → the probe (pairs not already explained)
    for p in &probes {
        let bad: BTreeSet<&String> = degraded
            .iter()
            .filter(|(pp, t)| pp == p && !explained.contains(&(pp.clone(), t.clone())))
            .map(|(_, t)| t)
            .collect();
        let all = reporting.iter().filter(|(pp, _)| pp == p).count();
        if enough(bad.len(), all) {
            out.push(Explanation { scope: Scope::Probe, subject: BTreeMap::from([("probe".into(), p.clone())]) });
        }
    }
    out.sort();
    out.dedup();
    out
}

// ---------------------------------------------------------------------------------------------
// Incidents

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
}

#[derive(Clone, Debug, Default)]
struct Candidate {
    run: u32,
    first_seen_ms: i64,
}

/// Per-fleet diagnosis state: baselines of every series, candidate explanations and incidents.
#[derive(Debug, Default)]
pub struct Diagnoser {
    pub cfg: DiagnosisConfig,
    labels: BTreeMap<String, BTreeMap<String, String>>,
    baselines: BTreeMap<(String, String, Signal), Baseline>,
    mos_baselines: BTreeMap<(String, String), Baseline>,
    candidates: BTreeMap<Explanation, Candidate>,
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
        for ((p, t), pw) in &w.pairs {
            for (s, v) in &pw.values {
                reporting.entry(*s).or_default().insert((p.clone(), t.clone()));
                let b = self.baselines.entry((p.clone(), t.clone(), *s)).or_default();
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
        // hysteresis
        let mut changed = Vec::new();
        self.candidates.retain(|e, _| found.contains_key(e));
        for (e, (conf, evidence)) in &found {
            let c = self.candidates.entry(e.clone()).or_insert(Candidate { run: 0, first_seen_ms: w.start_ms });
            c.run += 1;
            if let Some((inc, missing)) = self.open.get_mut(e) {
                *missing = 0;
                update(inc, evidence, &mos_drop, *conf, w.end_ms);
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
                };
                if e.scope == Scope::ProbeOffline {
                    inc.affected_probes.extend(e.subject.get("probe").cloned());
                }
                update(&mut inc, evidence, &mos_drop, *conf, w.end_ms);
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

fn covers_pair(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e_model_matches_hand_computed_values() {
        // 40 ms RTT, 2 ms jitter, no loss: d = 20 + 4 + 10 = 34; Id = 0.816; R = 92.384
        let r = r_factor(40.0, 2.0, 0.0);
        assert!((r - 92.384).abs() < 1e-9, "{r}");
        // MOS(92.384) = 1 + 3.23344 + 7e-6·92.384·32.384·7.616 = 4.39294…
        assert!((mos(r) - 4.392_94).abs() < 1e-4, "{}", mos(r));
        // 1 % loss: Ie,eff = 95·1/(1 + 4.3) = 17.9245…
        let r = r_factor(40.0, 2.0, 0.01);
        assert!((r - (92.384 - 95.0 / 5.3)).abs() < 1e-9);
        // 400 ms RTT: d = 214; Id = 5.136 + 0.11·36.7 = 9.173
        let r = r_factor(400.0, 2.0, 0.0);
        assert!((r - (93.2 - 9.173)).abs() < 1e-9, "{r}");
        assert_eq!(mos(-5.0), 1.0);
        assert_eq!(mos(120.0), 4.5);
        assert!(mos(r_factor(300.0, 40.0, 0.05)) < 3.0, "bad VoIP conditions score poorly");
    }

    #[test]
    fn binomial_tail_is_right() {
        assert!((binomial_tail(1, 10, 0.1) - (1.0 - 0.9f64.powi(10))).abs() < 1e-12);
        assert_eq!(binomial_tail(0, 10, 0.1), 1.0);
        assert_eq!(binomial_tail(11, 10, 0.1), 0.0);
        assert!(binomial_tail(3, 60, 0.002) < 1e-3);
        assert!(binomial_tail(1, 60, 0.002) > 0.1);
    }

    fn level(b: &mut Baseline, x: f64) -> Option<Deviation> {
        b.observe(Signal::Rtt, Value::Level(x), &DiagnosisConfig::default())
    }

    #[test]
    fn a_level_is_judged_against_its_learned_normal() {
        let mut b = Baseline::default();
        for i in 0..20 {
            assert!(level(&mut b, 30.0 + (i % 3) as f64).is_none(), "learning");
        }
        assert!(level(&mut b, 34.0).is_none(), "within the noise and the 25 % margin");
        let d = level(&mut b, 90.0).expect("degraded");
        assert_eq!(d.baseline, 31.0);
        assert!(d.severity > 1.0);
        // a degraded window is not learned: the next one is still degraded
        assert!(level(&mut b, 90.0).is_some());
    }

    #[test]
    fn mos_of_a_window() {
        let w = |v: Vec<(Signal, Value)>| PairWindow { values: v.into_iter().collect(), ..Default::default() };
        let good = w(vec![(Signal::Rtt, Value::Level(40.0)), (Signal::Jitter, Value::Level(2.0))]);
        assert!((good.mos().unwrap() - 4.392_94).abs() < 1e-4);
        let dead = w(vec![(Signal::Loss, Value::Failures { failed: 10, attempts: 10 })]);
        assert_eq!(dead.mos(), Some(1.0), "nothing answered");
        assert_eq!(w(vec![(Signal::Dns, Value::Level(10.0))]).mos(), None);
    }

    #[test]
    fn failures_need_both_a_rate_and_significance() {
        let cfg = DiagnosisConfig::default();
        let mut b = Baseline::default();
        for _ in 0..20 {
            b.observe(Signal::Loss, Value::Failures { failed: 0, attempts: 60 }, &cfg);
        }
        let f = |failed, attempts| Value::Failures { failed, attempts };
        assert!(b.judge(Signal::Loss, f(1, 60), &cfg).is_none(), "one lost packet is noise");
        assert!(b.judge(Signal::Loss, f(1, 10), &cfg).is_none(), "10 % of 10 packets is not significant");
        assert!(b.judge(Signal::Loss, f(6, 60), &cfg).is_some());
        assert!(b.judge(Signal::Loss, f(60, 60), &cfg).is_some(), "an outage");
    }

    fn labels() -> BTreeMap<String, BTreeMap<String, String>> {
        let l = |region: &str, asn: &str, resolver: &str| {
            BTreeMap::from([
                ("region".to_string(), region.to_string()),
                ("asn".to_string(), asn.to_string()),
                ("resolver".to_string(), resolver.to_string()),
            ])
        };
        BTreeMap::from([
            ("a1".to_string(), l("eu", "100", "isp")),
            ("a2".to_string(), l("eu", "100", "isp")),
            ("b1".to_string(), l("eu", "200", "public")),
            ("c1".to_string(), l("us", "300", "isp")),
            ("c2".to_string(), l("us", "400", "public")),
        ])
    }

    fn all_pairs(targets: &[&str]) -> BTreeSet<(String, String)> {
        let mut s = BTreeSet::new();
        for p in ["a1", "a2", "b1", "c1", "c2"] {
            for t in targets {
                s.insert((p.to_string(), t.to_string()));
            }
        }
        s
    }

    fn pairs(v: &[(&str, &str)]) -> BTreeSet<(String, String)> {
        v.iter().map(|(p, t)| (p.to_string(), t.to_string())).collect()
    }

    fn subject(v: &[(&str, &str)]) -> BTreeMap<String, String> {
        v.iter().map(|(k, x)| (k.to_string(), x.to_string())).collect()
    }

    #[test]
    fn most_probes_toward_one_target_blame_the_target() {
        let cfg = DiagnosisConfig::default();
        let bad = pairs(&[("a1", "x"), ("a2", "x"), ("b1", "x"), ("c1", "x")]);
        let e = localise(&bad, &all_pairs(&["x", "y", "z"]), &labels(), &cfg);
        assert_eq!(e, vec![Explanation { scope: Scope::Target, subject: subject(&[("target", "x")]) }]);
    }

    #[test]
    fn one_probe_toward_most_targets_blames_the_probe() {
        let cfg = DiagnosisConfig::default();
        let bad = pairs(&[("c2", "x"), ("c2", "y"), ("c2", "z")]);
        let e = localise(&bad, &all_pairs(&["x", "y", "z", "w"]), &labels(), &cfg);
        assert_eq!(e, vec![Explanation { scope: Scope::Probe, subject: subject(&[("probe", "c2")]) }]);
    }

    #[test]
    fn a_label_group_toward_one_target_blames_the_shared_path() {
        let cfg = DiagnosisConfig::default();
        let bad = pairs(&[("a1", "y"), ("a2", "y")]);
        let e = localise(&bad, &all_pairs(&["x", "y", "z"]), &labels(), &cfg);
        // asn 100 = {a1, a2}; region eu also has b1, so the asn is the exact group
        assert_eq!(
            e,
            vec![Explanation { scope: Scope::Group, subject: subject(&[("probe.asn", "100"), ("target", "y")]) }]
        );
    }

    #[test]
    fn a_label_group_toward_all_targets_blames_the_group_alone() {
        let cfg = DiagnosisConfig::default();
        // resolver isp = {a1, a2, c1}: degraded toward every target
        let bad = pairs(&[("a1", "x"), ("a2", "x"), ("c1", "x"), ("a1", "y"), ("a2", "y"), ("c1", "y")]);
        let e = localise(&bad, &all_pairs(&["x", "y"]), &labels(), &cfg);
        assert_eq!(e, vec![Explanation { scope: Scope::Group, subject: subject(&[("probe.resolver", "isp")]) }]);
    }

    #[test]
    fn a_single_pair_or_scattered_noise_explains_nothing() {
        let cfg = DiagnosisConfig::default();
        let e = localise(&pairs(&[("a1", "x")]), &all_pairs(&["x", "y"]), &labels(), &cfg);
        assert!(e.is_empty());
        let e = localise(&pairs(&[("a1", "x"), ("c2", "y")]), &all_pairs(&["x", "y"]), &labels(), &cfg);
        assert!(e.is_empty());
    }

    fn window(start: i64, pairs: &[(&str, &str, f64)]) -> FleetWindow {
        let mut w = FleetWindow { start_ms: start, end_ms: start + 60_000, pairs: BTreeMap::new() };
        for (p, t, rtt) in pairs {
            w.pairs.insert(
                (p.to_string(), t.to_string()),
                PairWindow { values: BTreeMap::from([(Signal::Rtt, Value::Level(*rtt))]), ..Default::default() },
            );
        }
        w
    }

    #[test]
    fn incidents_need_consecutive_windows_and_resolve_after_quiet_ones() {
        let mut d = Diagnoser::new(DiagnosisConfig::default(), labels());
        let healthy: Vec<(&str, &str, f64)> =
            ["a1", "a2", "b1", "c1", "c2"].iter().flat_map(|p| [(*p, "x", 30.0), (*p, "y", 30.0)]).collect();
        let mut t = 0;
        for _ in 0..20 {
            assert!(d.window(&window(t, &healthy)).is_empty());
            t += 60_000;
        }
        let bad: Vec<(&str, &str, f64)> =
            healthy.iter().map(|(p, tt, r)| (*p, *tt, if *tt == "x" { 600.0 } else { *r })).collect();
        // one bad window (a blip) opens nothing
        assert!(d.window(&window(t, &bad)).is_empty());
        t += 60_000;
        assert!(d.window(&window(t, &healthy)).is_empty());
        t += 60_000;
        // three in a row open a target incident
        assert!(d.window(&window(t, &bad)).is_empty());
        t += 60_000;
        assert!(d.window(&window(t, &bad)).is_empty());
        t += 60_000;
        let opened = d.window(&window(t, &bad));
        assert_eq!(opened.len(), 1);
        assert_eq!((opened[0].scope, opened[0].state), (Scope::Target, IncidentState::Open));
        assert!(opened[0].id.starts_with(&format!("inc-{}-", opened[0].first_seen_ms / 1000)), "{}", opened[0].id);
        assert_eq!(opened[0].subject, subject(&[("target", "x")]));
        assert!(opened[0].metrics.contains("rtt") && opened[0].metrics.contains("mos"));
        assert_eq!(opened[0].evidence["rtt"], MetricEvidence { baseline: 30.0, observed: 600.0 });
        t += 60_000;
        // recovery: resolved after three healthy windows
        let mut last = Vec::new();
        for _ in 0..3 {
            last = d.window(&window(t, &healthy));
            t += 60_000;
        }
        assert_eq!(last.len(), 1);
        assert_eq!(last[0].state, IncidentState::Resolved);
        assert!(d.open_incidents().is_empty());
    }

    #[test]
    fn a_probe_that_goes_silent_is_offline_not_a_target_problem() {
        let mut d = Diagnoser::new(DiagnosisConfig::default(), labels());
        let all: Vec<(&str, &str, f64)> = ["a1", "a2", "b1", "c1", "c2"].iter().map(|p| (*p, "x", 30.0)).collect();
        let mut t = 0;
        for _ in 0..12 {
            d.window(&window(t, &all));
            t += 60_000;
        }
        let without: Vec<(&str, &str, f64)> = all.iter().filter(|(p, _, _)| *p != "c2").cloned().collect();
        let mut opened = Vec::new();
        for _ in 0..6 {
            opened.extend(d.window(&window(t, &without)));
            t += 60_000;
        }
        assert_eq!(opened[0].scope, Scope::ProbeOffline);
        assert_eq!(opened[0].subject, subject(&[("probe", "c2")]));
        assert!(opened.iter().all(|i| i.scope == Scope::ProbeOffline));
    }

    #[test]
    fn a_certificate_close_to_expiry_opens_a_certificate_incident_until_it_is_renewed() {
        let mut d = Diagnoser::new(DiagnosisConfig::default(), labels());
        let rtt: Vec<(&str, &str, f64)> =
            [("a1", "shop"), ("a2", "shop"), ("a1", "api")].map(|(p, t)| (p, t, 30.0)).to_vec();
        // certificates are measured every 10 minutes: the windows between carry none
        let run = |d: &mut Diagnoser, t: i64, shop_days: f64| {
            let mut w = window(t, &rtt);
            if (t / 60_000) % 10 == 0 {
                w.pairs.get_mut(&("a1".to_string(), "shop".to_string())).unwrap().cert_days = Some(shop_days);
                w.pairs.get_mut(&("a2".to_string(), "shop".to_string())).unwrap().cert_days = Some(shop_days);
                w.pairs.get_mut(&("a1".to_string(), "api".to_string())).unwrap().cert_days = Some(200.0);
            }
            d.window(&w)
        };
        let mut changed = Vec::new();
        for i in 0..30 {
            changed.extend(run(&mut d, i * 60_000, 90.0));
        }
        assert!(changed.is_empty(), "far from expiry: {changed:?}");
        for i in 30..60 {
            changed.extend(run(&mut d, i * 60_000, 9.5));
        }
        let opened: Vec<&Incident> = changed.iter().filter(|i| i.state == IncidentState::Open).collect();
        assert!(!opened.is_empty(), "an expiring certificate opens an incident");
        let i = opened.last().unwrap();
        assert_eq!((i.scope, i.subject.clone()), (Scope::Certificate, subject(&[("target", "shop")])));
        assert_eq!(i.opened_ms, 33 * 60_000, "open_after windows after the first sighting, held between measurements");
        assert_eq!(i.affected_probes.len(), 2);
        assert_eq!(i.metrics, BTreeSet::from(["cert_days".to_string()]));
        let ev = &i.evidence["cert_days"];
        assert_eq!(ev.baseline, 14.0);
        assert!(ev.observed < 9.5 && ev.observed > 9.4, "aged since it was seen: {}", ev.observed);
        assert_eq!(i.mos_impact, None);
        assert!(changed.iter().all(|i| i.scope == Scope::Certificate), "nothing else is blamed");
        // renewed: resolves after close_after windows
        changed.clear();
        for i in 60..70 {
            changed.extend(run(&mut d, i * 60_000, 89.0));
        }
        let resolved: Vec<&Incident> = changed.iter().filter(|i| i.state == IncidentState::Resolved).collect();
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0].resolved_ms, Some(63 * 60_000));
        assert!(d.open_incidents().is_empty());
        // turned off
        let mut off = Diagnoser::new(DiagnosisConfig { cert_warn_days: 0.0, ..Default::default() }, labels());
        let mut changed = Vec::new();
        for i in 0..20 {
            changed.extend(run(&mut off, i * 60_000, 1.0));
        }
        assert!(changed.is_empty(), "cert_warn_days = 0 disables the check");
    }

    #[test]
    fn a_certificate_observation_is_forgotten_after_a_day() {
        let mut d = Diagnoser::new(DiagnosisConfig::default(), labels());
        let mut w = window(0, &[("a1", "shop", 30.0)]);
        w.pairs.get_mut(&("a1".to_string(), "shop".to_string())).unwrap().cert_days = Some(3.0);
        d.window(&w);
        for i in 1..4 {
            d.window(&window(i * 60_000, &[("a1", "shop", 30.0)]));
        }
        assert_eq!(d.open_incidents().len(), 1);
        // the target is no longer measured for TLS: a day later the incident resolves
        let mut t = 4 * 60_000;
        while t <= CERT_MEMORY_MS + 10 * 60_000 {
            d.window(&window(t, &[("a1", "shop", 30.0)]));
            t += 60_000;
        }
        assert!(d.open_incidents().is_empty());
    }

    #[test]
    fn scope_names_are_the_serialised_names() {
        for s in Scope::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), serde_json::Value::String(s.name().into()));
        }
    }
}
