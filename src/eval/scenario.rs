//! The scenario format (`load-tests/scenarios/README.md`): nodes, conditions, faults and
//! expectations, parsed strictly (unknown fields and unknown scopes or metrics are errors).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::bail;
use serde::{Deserialize, Serialize};

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
    /// Days until the target's certificate expires, as its TLS/HTTP measurements see it (none:
    /// the measurements carry no certificate).
    pub cert_days: Option<f64>,
}

impl Conditions {
    pub(super) fn overlay(&mut self, o: &Conditions) {
        macro_rules! take {
            ($($f:ident),*) => { $( if o.$f.is_some() { self.$f = o.$f; } )* };
        }
        take!(rtt_ms, jitter_ms, loss, dns_ms, connect_ms, tls_ms, ttfb_ms, diurnal_pct, cert_days);
    }
}

/// What a target is measured with. Unset: a packet train (udp), and for a target labelled
/// `kind: http` also DNS, TCP, TLS and HTTP (the format's first form). Set: only that kind's
/// measurements — `dns` one lookup, `tcp` one connect, `http` a lookup, a connect, a TLS
/// handshake and a GET — and no packet train; `udp` the train alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    Udp,
    Dns,
    Tcp,
    Http,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub id: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Targets only (a probe with a kind is an error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<TargetKind>,
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
    /// The certificate the target presents during the fault expires in this many days (a
    /// certificate about to lapse, or a renewal that shipped an old one).
    pub cert_days: Option<f64>,
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

const SCOPES: [&str; 6] = ["target", "probe", "group", "probe-offline", "certificate", "none"];
const METRICS: [&str; 9] = ["rtt", "jitter", "loss", "dns", "connect", "tls", "ttfb", "mos", "cert_days"];

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
    if let Some(i) = s.probes.iter().position(|p| p.kind.is_some()) {
        bail!("probes[{i}].kind: a kind belongs to a target");
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
