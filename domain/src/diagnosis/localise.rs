//! Localisation: the most specific explanation (target, probe, label group, silent probe) that
//! covers a window's degraded pairs.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::*;

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
