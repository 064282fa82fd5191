//! `netqoe eval`: scores the diagnosis against labelled scenarios (format:
//! `load-tests/scenarios/README.md`). A scenario's events are generated deterministically from
//! its seed, validated like ingest validates them, published to the embedded journal and
//! aggregated by the real pipeline actors into the SQLite store, in simulated time (no sleeping:
//! a two-hour scenario takes seconds); each finished 1m window of the fleet is read back from the
//! store and judged by the diagnoser; the incidents are matched against the expectations.
//!
//! Invariant: the same file gives the same incident list (all randomness from the seed, all
//! times reported relative to the scenario start).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use netqoe_actors::bus::EventBus;
use netqoe_actors::pipeline::{Pipeline, PipelineConfig};
use netqoe_actors::store::RollupStore;
use netqoe_domain::diagnosis::{Diagnoser, DiagnosisConfig, Incident};
use netqoe_domain::event::validate;
use netqoe_domain::{EventLimits, Kind, Status, WireEvent};
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------------
// Format

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Conditions {
    pub rtt_ms: Option<f64>,
    pub jitter_ms: Option<f64>,
    pub loss: Option<f64>,
    pub dns_ms: Option<f64>,
    pub connect_ms: Option<f64>,
    pub tls_ms: Option<f64>,
    pub ttfb_ms: Option<f64>,
    pub diurnal_pct: Option<f64>,
}

impl Conditions {
    fn overlay(&mut self, o: &Conditions) {
        macro_rules! take {
            ($($f:ident),*) => { $( if o.$f.is_some() { self.$f = o.$f; } )* };
        }
        take!(rtt_ms, jitter_ms, loss, dns_ms, connect_ms, tls_ms, ttfb_ms, diurnal_pct);
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub id: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Override {
    #[serde(rename = "match")]
    pub matches: BTreeMap<String, String>,
    pub set: Conditions,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineSpec {
    pub default: Conditions,
    #[serde(default)]
    pub overrides: Vec<Override>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Effect {
    pub rtt_ms_add: Option<f64>,
    pub jitter_ms_add: Option<f64>,
    pub loss: Option<f64>,
    pub dns_ms_add: Option<f64>,
    pub dns_fail: Option<f64>,
    pub connect_ms_add: Option<f64>,
    pub tls_ms_add: Option<f64>,
    pub ttfb_ms_add: Option<f64>,
    pub offline: Option<bool>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    pub id: String,
    #[serde(rename = "match")]
    pub matches: BTreeMap<String, String>,
    pub from_s: i64,
    pub to_s: i64,
    pub effect: Effect,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    pub fault: Option<String>,
    pub scope: String,
    #[serde(default)]
    pub subject: BTreeMap<String, String>,
    #[serde(default)]
    pub metrics: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub seed: u64,
    pub start: String,
    pub duration_s: i64,
    pub interval_s: i64,
    pub probes: Vec<Node>,
    pub targets: Vec<Node>,
    pub baseline: BaselineSpec,
    #[serde(default)]
    pub faults: Vec<Fault>,
    #[serde(default)]
    pub expect: Vec<Expectation>,
}

const SCOPES: [&str; 5] = ["target", "probe", "group", "probe-offline", "none"];
const METRICS: [&str; 8] = ["rtt", "jitter", "loss", "dns", "connect", "tls", "ttfb", "mos"];

fn check_match(m: &BTreeMap<String, String>, field: &str) -> anyhow::Result<()> {
    for k in m.keys() {
        if !(k == "probe" || k == "target" || k.starts_with("probe.") || k.starts_with("target.")) {
            bail!("{field}: unknown key {k:?} (probe, target, probe.<label>, target.<label>)");
        }
    }
    Ok(())
}

/// Parses and checks a scenario; errors name the field (`faults[0].effect.rtt_ms_addd`).
pub fn parse(text: &str) -> anyhow::Result<Scenario> {
    let mut de = serde_json::Deserializer::from_str(text);
    let s: Scenario = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        anyhow::anyhow!("{}: {}", if path.is_empty() || path == "." { "scenario".into() } else { path }, e.inner())
    })?;
    chrono::DateTime::parse_from_rfc3339(&s.start).map_err(|e| anyhow::anyhow!("start: not RFC 3339: {e}"))?;
    if s.interval_s <= 0 || s.interval_s > 3600 {
        bail!("interval_s: must be 1..3600");
    }
    if s.duration_s <= 0 || s.duration_s > 14 * 86_400 {
        bail!("duration_s: must be 1..1209600");
    }
    if s.probes.is_empty() || s.targets.is_empty() {
        bail!("probes/targets: at least one of each");
    }
    for (i, o) in s.baseline.overrides.iter().enumerate() {
        check_match(&o.matches, &format!("baseline.overrides[{i}].match"))?;
    }
    let faults: BTreeSet<&str> = s.faults.iter().map(|f| f.id.as_str()).collect();
    for (i, f) in s.faults.iter().enumerate() {
        check_match(&f.matches, &format!("faults[{i}].match"))?;
        if f.to_s < f.from_s {
            bail!("faults[{i}].to_s: before from_s");
        }
        if let Some(l) = f.effect.loss {
            if !(0.0..=1.0).contains(&l) {
                bail!("faults[{i}].effect.loss: must be 0..1");
            }
        }
    }
    for (i, e) in s.expect.iter().enumerate() {
        if !SCOPES.contains(&e.scope.as_str()) {
            bail!("expect[{i}].scope: {:?} is not one of {SCOPES:?}", e.scope);
        }
        if let Some(f) = &e.fault {
            if !faults.contains(f.as_str()) {
                bail!("expect[{i}].fault: no fault {f:?}");
            }
        }
        for m in &e.metrics {
            if !METRICS.contains(&m.as_str()) {
                bail!("expect[{i}].metrics: unknown metric {m:?}");
            }
        }
    }
    Ok(s)
}

// ---------------------------------------------------------------------------------------------
// Generation

/// SplitMix64: small, fast, and the same sequence on every platform and version.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.unit().max(1e-12), self.unit());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
    fn exp(&mut self) -> f64 {
        -self.unit().max(1e-12).ln()
    }
}

fn matches(m: &BTreeMap<String, String>, p: &Node, t: &Node) -> bool {
    m.iter().all(|(k, v)| match k.as_str() {
        "probe" => &p.id == v,
        "target" => &t.id == v,
        k => {
            if let Some(l) = k.strip_prefix("probe.") {
                p.labels.get(l) == Some(v)
            } else if let Some(l) = k.strip_prefix("target.") {
                t.labels.get(l) == Some(v)
            } else {
                false
            }
        }
    })
}

struct PathState {
    c: Conditions,
    dns_fail: f64,
    offline: bool,
}

fn conditions(s: &Scenario, p: &Node, t: &Node, at_s: i64, start_ms: i64) -> PathState {
    let mut c = s.baseline.default.clone();
    for o in &s.baseline.overrides {
        if matches(&o.matches, p, t) {
            c.overlay(&o.set);
        }
    }
    if let (Some(pct), Some(rtt)) = (c.diurnal_pct, c.rtt_ms) {
        // sine over 24 h with its peak at 20:00 UTC
        let ms = start_ms + at_s * 1000;
        let hour = (ms.rem_euclid(86_400_000)) as f64 / 3_600_000.0;
        let phase = (hour - 20.0) / 24.0 * std::f64::consts::TAU;
        c.rtt_ms = Some(rtt * (1.0 + pct / 100.0 * phase.cos()));
    }
    let mut st = PathState { c, dns_fail: 0.0, offline: false };
    for f in &s.faults {
        if at_s < f.from_s || at_s >= f.to_s || !matches(&f.matches, p, t) {
            continue;
        }
        let e = &f.effect;
        let add = |v: &mut Option<f64>, a: Option<f64>| {
            if let (Some(x), Some(a)) = (v.as_mut(), a) {
                *x += a;
            }
        };
        add(&mut st.c.rtt_ms, e.rtt_ms_add);
        add(&mut st.c.jitter_ms, e.jitter_ms_add);
        add(&mut st.c.dns_ms, e.dns_ms_add);
        add(&mut st.c.connect_ms, e.connect_ms_add);
        add(&mut st.c.tls_ms, e.tls_ms_add);
        add(&mut st.c.ttfb_ms, e.ttfb_ms_add);
        if let Some(l) = e.loss {
            st.c.loss = Some(l);
        }
        if let Some(d) = e.dns_fail {
            st.dns_fail = d;
        }
        if e.offline == Some(true) {
            st.offline = true;
        }
    }
    st
}

fn ms3(x: f64) -> f64 {
    (x.max(0.01) * 1000.0).round() / 1000.0
}

/// The events one probe sends for one round (all targets), as a probe would post them.
fn round_events(s: &Scenario, rng: &mut Rng, pi: usize, round: i64, start_ms: i64, seq: &mut u64) -> Vec<WireEvent> {
    let p = &s.probes[pi];
    let at_s = round * s.interval_s;
    let ts = rfc3339(start_ms + at_s * 1000);
    let mut out = Vec::new();
    let push = |out: &mut Vec<WireEvent>, seq: &mut u64, target: &str, what: &str, w: WireEvent| {
        *seq += 1;
        out.push(WireEvent {
            event_id: format!("{}-{round}-{target}-{what}", p.id),
            seq: *seq,
            ts: ts.clone(),
            target: target.to_string(),
            ..w
        });
    };
    for t in &s.targets {
        let st = conditions(s, p, t, at_s, start_ms);
        if st.offline {
            continue;
        }
        let c = &st.c;
        let loss = c.loss.unwrap_or(0.0).clamp(0.0, 1.0);
        let rtt = c.rtt_ms.unwrap_or(30.0);
        let jitter = c.jitter_ms.unwrap_or(1.0);
        // packet train of 10: each packet lost with `loss`; delays = path + queueing (exponential)
        let mut samples = Vec::new();
        for _ in 0..10 {
            if rng.unit() >= loss {
                samples.push(ms3(rtt * (1.0 + 0.02 * rng.normal()) + jitter * rng.exp()));
            }
        }
        let received = samples.len() as u32;
        let status = if received == 0 { Some(Status::Timeout) } else { None };
        let train = WireEvent {
            kind: Kind::Udp,
            rtt_samples_ms: (received > 0).then_some(samples),
            sent: Some(10),
            received: Some(received),
            status,
            ..Default::default()
        };
        push(&mut out, seq, &t.id, "udp", train);
        if t.labels.get("kind").map(String::as_str) != Some("http") {
            continue;
        }
        let lognormal = |rng: &mut Rng, median: f64| ms3(median * (0.08 * rng.normal()).exp());
        if rng.unit() < st.dns_fail {
            push(
                &mut out,
                seq,
                &t.id,
                "dns",
                WireEvent { kind: Kind::Dns, status: Some(Status::Servfail), ..Default::default() },
            );
            continue;
        }
        let dns = lognormal(rng, c.dns_ms.unwrap_or(15.0));
        push(&mut out, seq, &t.id, "dns", WireEvent { kind: Kind::Dns, dns_ms: Some(dns), ..Default::default() });
        if rng.unit() < loss {
            push(
                &mut out,
                seq,
                &t.id,
                "tcp",
                WireEvent { kind: Kind::Tcp, status: Some(Status::Timeout), ..Default::default() },
            );
            continue;
        }
        let connect = lognormal(rng, c.connect_ms.unwrap_or(rtt));
        push(
            &mut out,
            seq,
            &t.id,
            "tcp",
            WireEvent { kind: Kind::Tcp, connect_ms: Some(connect), ..Default::default() },
        );
        let tls = lognormal(rng, c.tls_ms.unwrap_or(rtt));
        push(&mut out, seq, &t.id, "tls", WireEvent { kind: Kind::Tls, tls_ms: Some(tls), ..Default::default() });
        let ttfb = lognormal(rng, c.ttfb_ms.unwrap_or(3.0 * rtt));
        push(&mut out, seq, &t.id, "http", WireEvent { kind: Kind::Http, ttfb_ms: Some(ttfb), ..Default::default() });
    }
    out
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Running and scoring

/// An incident as the evaluation reports it (times relative to the scenario start).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Reported {
    pub id: String,
    pub scope: String,
    pub subject: BTreeMap<String, String>,
    pub metrics: BTreeSet<String>,
    pub opened_s: i64,
    pub resolved_s: Option<i64>,
    pub peak_severity: f64,
    pub mos_impact: Option<f64>,
    pub confidence: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ScenarioScore {
    pub name: String,
    pub expectations: usize,
    pub matched: usize,
    pub incidents: usize,
    pub unexpected: usize,
    pub false_incidents: usize,
    pub slow_to_resolve: usize,
    pub precision: f64,
    pub recall: f64,
    pub localisation_accuracy: f64,
    pub delays_s: Vec<i64>,
    pub incident_list: Vec<Reported>,
    pub events: u64,
}

fn scope_name(i: &Incident) -> String {
    i.scope.name().to_string()
}

/// The run's throwaway SQLite directory: in memory-backed `/dev/shm` where there is one, so the
/// journal's per-publish `fsync` (durability a scratch run has no use for) costs nothing; the
/// store behaves the same on either.
fn scratch_dir() -> std::io::Result<tempfile::TempDir> {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::Builder::new().prefix("netqoe-eval-").tempdir_in(shm) {
            return Ok(d);
        }
    }
    tempfile::tempdir()
}

/// Runs one scenario through the pipeline and the diagnoser.
pub async fn run(s: &Scenario, dcfg: &DiagnosisConfig) -> anyhow::Result<ScenarioScore> {
    // The scenario runs at its own dates on a manual clock, moved to each chunk's receive time
    // before it is published: the pipeline (aggregators, writer, store) sees exactly the time a
    // live deployment would, whatever the wall clock says, so every run is reproducible.
    let start_ms = chrono::DateTime::parse_from_rfc3339(&s.start)?.timestamp_millis();
    let clock = netqoe_actors::Clock::manual(start_ms);
    let dir = scratch_dir()?;
    let db = crate::sqlite::Sqlite::open_with_clock(dir.path(), clock.clone())?;
    let bus: Arc<dyn EventBus> = Arc::new(db.clone());
    let store: Arc<dyn RollupStore> = Arc::new(db.clone());
    let mut pcfg = PipelineConfig::default();
    pcfg.aggregator.flush_interval = Duration::from_millis(20);
    pcfg.aggregator.derive_interval_ms = 3_600_000;
    pcfg.prune_every = Duration::from_secs(86_400);
    pcfg.clock = clock.clone();
    let pipeline = Pipeline::start(bus.clone(), store.clone(), pcfg).await?;
    let labels: BTreeMap<String, BTreeMap<String, String>> =
        s.probes.iter().map(|p| (p.id.clone(), p.labels.clone())).collect();
    let mut diag = Diagnoser::new(dcfg.clone(), labels);
    let limits = EventLimits::default();
    let mut rng = Rng(s.seed ^ 0x6E65_7471_6F65);
    let mut seqs = vec![0u64; s.probes.len()];
    let rounds = s.duration_s / s.interval_s;
    let mut incidents: BTreeMap<String, Incident> = BTreeMap::new();
    let mut next_minute = 0i64; // minutes judged so far
    let mut events = 0u64;
    let chunk = (600 / s.interval_s).max(1);
    let mut round = 0;
    while round < rounds {
        let until = (round + chunk).min(rounds);
        // one batch per probe and chunk, as a probe that posts every few minutes sends them: the
        // events keep their own times (the same windows, watermarks and judgements as one batch per
        // round), and the journal takes a few dozen transactions per scenario instead of thousands
        let mut batches: Vec<Vec<netqoe_domain::Event>> = vec![Vec::new(); s.probes.len()];
        let received_ms = start_ms + (until - 1) * s.interval_s * 1000;
        clock.set(received_ms);
        for r in round..until {
            for (pi, seq) in seqs.iter_mut().enumerate() {
                for w in round_events(s, &mut rng, pi, r, start_ms, seq) {
                    let i = batches[pi].len();
                    batches[pi].push(
                        validate(w, i, received_ms, &limits)
                            .map_err(|e| anyhow::anyhow!("generated event invalid: {e}"))?,
                    );
                }
            }
        }
        for (pi, evs) in batches.into_iter().enumerate() {
            if evs.is_empty() {
                continue;
            }
            events += evs.len() as u64;
            bus.publish(&s.probes[pi].id, evs, received_ms).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        round = until;
        // everything published is aggregated and committed once the journal is empty
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while bus.backlog().await.map_err(|e| anyhow::anyhow!("{e}"))?.unwrap_or(0) > 0 {
            if std::time::Instant::now() > deadline {
                bail!("the pipeline did not catch up");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // judge every minute no later round can still add to
        let published_until_s = if round >= rounds { s.duration_s } else { round * s.interval_s };
        while (next_minute + 1) * 60 <= published_until_s {
            let w = netqoe_actors::diagnoser::fleet_window(store.as_ref(), start_ms + next_minute * 60_000).await?;
            for inc in diag.window(&w) {
                incidents.insert(inc.id.clone(), inc);
            }
            next_minute += 1;
        }
    }
    pipeline.drain().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    drop(pipeline);
    let list: Vec<Reported> = incidents
        .values()
        .map(|i| Reported {
            id: i.id.clone(),
            scope: scope_name(i),
            subject: i.subject.clone(),
            metrics: i.metrics.clone(),
            opened_s: (i.opened_ms - start_ms) / 1000,
            resolved_s: i.resolved_ms.map(|r| (r - start_ms) / 1000),
            peak_severity: (i.peak_severity * 100.0).round() / 100.0,
            mos_impact: i.mos_impact.map(|m| (m * 100.0).round() / 100.0),
            confidence: (i.confidence * 100.0).round() / 100.0,
        })
        .collect();
    Ok(score(s, list, events))
}

fn involves(s: &Scenario, f: &Fault, r: &Reported) -> bool {
    let pairs: Vec<(&Node, &Node)> = s
        .probes
        .iter()
        .flat_map(|p| s.targets.iter().map(move |t| (p, t)))
        .filter(|(p, t)| matches(&f.matches, p, t))
        .collect();
    r.subject.iter().any(|(k, v)| match k.as_str() {
        "probe" => pairs.iter().any(|(p, _)| &p.id == v),
        "target" => pairs.iter().any(|(_, t)| &t.id == v),
        k => k.strip_prefix("probe.").is_some_and(|l| pairs.iter().any(|(p, _)| p.labels.get(l) == Some(v))),
    })
}

/// Matches incidents to expectations as `load-tests/scenarios/README.md` defines it.
pub fn score(s: &Scenario, list: Vec<Reported>, events: u64) -> ScenarioScore {
    let fault = |id: &Option<String>| id.as_ref().and_then(|f| s.faults.iter().find(|x| &x.id == f));
    let mut used = BTreeSet::new();
    let mut delays = Vec::new();
    let mut matched = 0;
    let mut slow = 0;
    let mut real = 0;
    let mut false_incidents = BTreeSet::new();
    for e in &s.expect {
        let f = fault(&e.fault);
        if e.scope == "none" {
            for r in &list {
                let hit = match f {
                    None => true,
                    Some(f) => involves(s, f, r) && r.opened_s >= f.from_s && r.opened_s <= f.to_s + 180,
                };
                if hit {
                    false_incidents.insert(r.id.clone());
                }
            }
            continue;
        }
        real += 1;
        let Some(f) = f else { continue };
        let hit = list
            .iter()
            .filter(|r| !used.contains(&r.id) && r.scope == e.scope && r.subject == e.subject)
            .filter(|r| r.opened_s >= f.from_s - s.interval_s && r.opened_s <= f.to_s + 180)
            .min_by_key(|r| r.opened_s);
        if let Some(r) = hit {
            used.insert(r.id.clone());
            matched += 1;
            delays.push((r.opened_s - f.from_s).max(0));
            if r.resolved_s.map_or(true, |t| t > f.to_s + 300) {
                slow += 1;
            }
        }
    }
    let unexpected = list.iter().filter(|r| !used.contains(&r.id)).count();
    // localisation: among incidents during a fault (involving it), the share naming it right
    let mut during = 0;
    for r in &list {
        if s.faults
            .iter()
            .any(|f| involves(s, f, r) && r.opened_s >= f.from_s - s.interval_s && r.opened_s <= f.to_s + 180)
        {
            during += 1;
        }
    }
    let ratio = |a: usize, b: usize| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    delays.sort_unstable();
    ScenarioScore {
        name: s.name.clone(),
        expectations: real,
        matched,
        incidents: list.len(),
        unexpected,
        false_incidents: false_incidents.len(),
        slow_to_resolve: slow,
        precision: ratio(used.len(), list.len()),
        recall: ratio(matched, real),
        localisation_accuracy: ratio(matched, during.max(matched)),
        delays_s: delays,
        incident_list: list,
        events,
    }
}

fn median_max(d: &[i64]) -> (Option<i64>, Option<i64>) {
    (d.get(d.len().saturating_sub(1) / 2).copied(), d.last().copied())
}

/// `netqoe eval FILE...`: prints the table (or JSON); fails when a file is malformed.
pub async fn eval_files(
    files: &[std::path::PathBuf],
    json: bool,
    dcfg: &DiagnosisConfig,
) -> anyhow::Result<Vec<ScenarioScore>> {
    let mut scores = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).with_context(|| format!("{}", f.display()))?;
        let s = parse(&text).with_context(|| format!("{}", f.display()))?;
        scores.push(run(&s, dcfg).await.with_context(|| format!("{}", f.display()))?);
    }
    let all_incidents: usize = scores.iter().map(|s| s.incidents).sum();
    let all_used: usize = scores.iter().map(|s| s.incidents - s.unexpected).sum();
    let all_exp: usize = scores.iter().map(|s| s.expectations).sum();
    let all_matched: usize = scores.iter().map(|s| s.matched).sum();
    let mut delays: Vec<i64> = scores.iter().flat_map(|s| s.delays_s.clone()).collect();
    delays.sort_unstable();
    let ratio = |a: usize, b: usize| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    let (med, max) = median_max(&delays);
    if json {
        let out = serde_json::json!({
            "scenarios": scores,
            "overall": {"precision": ratio(all_used, all_incidents), "recall": ratio(all_matched, all_exp),
                        "incidents": all_incidents, "expectations": all_exp, "matched": all_matched,
                        "false_incidents": scores.iter().map(|s| s.false_incidents).sum::<usize>(),
                        "median_delay_s": med, "max_delay_s": max},
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "{:<26} {:>6} {:>7} {:>9} {:>5} {:>9} {:>6} {:>8} {:>9} {:>9}",
            "scenario",
            "expect",
            "matched",
            "incidents",
            "false",
            "precision",
            "recall",
            "loc acc",
            "delay med",
            "delay max"
        );
        let opt = |v: Option<i64>| v.map_or("-".to_string(), |x| format!("{x} s"));
        for s in &scores {
            let (m, x) = median_max(&s.delays_s);
            println!(
                "{:<26} {:>6} {:>7} {:>9} {:>5} {:>9.2} {:>6.2} {:>8.2} {:>9} {:>9}",
                s.name,
                s.expectations,
                s.matched,
                s.incidents,
                s.false_incidents,
                s.precision,
                s.recall,
                s.localisation_accuracy,
                opt(m),
                opt(x)
            );
            for r in &s.incident_list {
                // plain words for people: `target=shop`, `loss, rtt`, a number or "-"
                let subject: Vec<String> = r.subject.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let metrics: Vec<&str> = r.metrics.iter().map(String::as_str).collect();
                println!(
                    "    {} {} {} metrics {} opened +{} s, resolved {}, severity {}, MOS impact {}",
                    r.id,
                    r.scope,
                    subject.join(" "),
                    metrics.join(", "),
                    r.opened_s,
                    r.resolved_s.map_or("never".into(), |t| format!("+{t} s")),
                    r.peak_severity,
                    r.mos_impact.map_or("-".to_string(), |m| format!("{m:.2}"))
                );
            }
        }
        println!(
            "{:<26} {:>6} {:>7} {:>9} {:>5} {:>9.2} {:>6.2} {:>8} {:>9} {:>9}",
            "overall",
            all_exp,
            all_matched,
            all_incidents,
            scores.iter().map(|s| s.false_incidents).sum::<usize>(),
            ratio(all_used, all_incidents),
            ratio(all_matched, all_exp),
            "",
            opt(med),
            opt(max)
        );
    }
    Ok(scores)
}
