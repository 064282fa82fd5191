//! Scoring: incidents matched to expectations (scope, subject, metrics, time), precision,
//! recall, localisation accuracy and detection delay.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::generate::matches;
use super::*;

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
    /// The explanation's p-value and the runner-up's (`scope subject=…`, p-value).
    pub p_value: Option<f64>,
    pub runner_up: Option<(String, f64)>,
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

pub(super) fn median_max(d: &[i64]) -> (Option<i64>, Option<i64>) {
    (d.get(d.len().saturating_sub(1) / 2).copied(), d.last().copied())
}
