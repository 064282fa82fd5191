//! Unit and property tests of the diagnosis: E-model values, baselines, localisation, incidents.

use std::collections::{BTreeMap, BTreeSet};

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
fn a_level_window_as_pooled_evidence_is_one_trial_against_its_own_history() {
    let cfg = DiagnosisConfig::default();
    let mut b = Baseline::default();
    assert!(b.level_exceedance(Signal::Rtt, 40.0, &cfg).is_none(), "no baseline yet");
    for i in 0..20 {
        level(&mut b, 30.0 + (i % 3) as f64);
    }
    // median 31, MAD 1: margin max(5 · 1.4826, 25 % of 31, 5 ms) = 7.75 ms, the bar half of it
    // above the median: 34.875 ms; none of the 20 windows learnt is above it
    let (pool, dev) = b.level_exceedance(Signal::Rtt, 35.0, &cfg).unwrap();
    assert_eq!(pool, Pool { failed: 1, attempts: 1, base_failed: 0, base_attempts: 20 });
    assert!((dev.severity - 4.0 / 7.75).abs() < 1e-9, "{dev:?}");
    assert_eq!(b.level_exceedance(Signal::Rtt, 34.8, &cfg).unwrap().0.failed, 0);
    // what the history holds above the bar is the pair's normal rate of exceedances
    let (pool, _) = b.level_exceedance(Signal::Rtt, 31.0, &cfg.clone()).unwrap();
    assert_eq!(pool.failed, 0);
    let loose = DiagnosisConfig { pooled_level_share: 0.0, ..cfg };
    assert_eq!(
        b.level_exceedance(Signal::Rtt, 31.5, &loose).unwrap().0,
        Pool { failed: 1, attempts: 1, base_failed: 6, base_attempts: 20 }
    );
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
    let got = d.window(&window(t, &bad));
    assert!(got.is_empty(), "{got:#?}");
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

/// SplitMix64: a uniform draw in [0, 1) (the same sequence everywhere).
fn uniform(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// Binomial draws for the pooled-evidence tests.
fn draws(state: &mut u64, n: u64, p: f64) -> u64 {
    (0..n).filter(|_| uniform(state) < p).count() as u64
}

/// Runs 8 probes × 4 targets through a diagnoser for `windows` windows, each pair's one value
/// given by `value(window, probe, target)`; returns the incidents (latest state) and the window
/// each opened.
fn fleet_run(
    labels: BTreeMap<String, BTreeMap<String, String>>,
    windows: i64,
    mut value: impl FnMut(i64, usize, usize) -> (Signal, Value),
) -> Vec<(i64, Incident)> {
    let mut d = Diagnoser::new(DiagnosisConfig::default(), labels);
    let mut opened = Vec::new();
    for i in 0..windows {
        let mut w = FleetWindow { start_ms: i * 60_000, end_ms: (i + 1) * 60_000, ..Default::default() };
        for p in 0..8 {
            for t in 0..4 {
                let (signal, v) = value(i, p, t);
                let mut pw = PairWindow::default();
                pw.values.insert(signal, v);
                w.pairs.insert((format!("p{p}"), format!("t{t}")), pw);
            }
        }
        for inc in d.window(&w) {
            match opened.iter_mut().find(|(_, o): &&mut (i64, Incident)| o.id == inc.id) {
                Some(o) => o.1 = inc,
                None => opened.push((i, inc)),
            }
        }
    }
    opened
}

/// 8 probes × 4 targets, 60 packets a pair and window at 0.2 % loss; from window 30 on, `fault`
/// gives the loss of a pair. Returns the incidents (latest state) and the window each opened.
fn loss_run(fault: impl Fn(usize, usize) -> f64, seed: u64, windows: i64) -> Vec<(i64, Incident)> {
    loss_run_labelled(BTreeMap::new(), fault, seed, windows)
}

fn loss_run_labelled(
    labels: BTreeMap<String, BTreeMap<String, String>>,
    fault: impl Fn(usize, usize) -> f64,
    seed: u64,
    windows: i64,
) -> Vec<(i64, Incident)> {
    let mut st = seed;
    fleet_run(labels, windows, |i, p, t| {
        let loss = if i >= 30 { fault(p, t) } else { 0.002 };
        (Signal::Loss, Value::Failures { failed: draws(&mut st, 60, loss), attempts: 60 })
    })
}

/// Sustained 3 % loss on one probe's access network: each of its pairs alone is rarely
/// significant (about 1.8 lost of 60 a window), the probe's pooled counts are overwhelming, and
/// the sequential test finds it — the probe blamed, saying how sure — within 5 windows at the
/// median over 20 seeds (at least 3: `open_after`), and within 10 for every seed.
#[test]
fn a_small_sustained_loss_on_one_probe_is_found_within_five_windows() {
    let mut delays = Vec::new();
    for seed in 1..=20u64 {
        let got = loss_run(|p, _| if p == 3 { 0.03 } else { 0.002 }, seed, 45);
        assert_eq!(
            got.len(),
            1,
            "seed {seed}: {:?}",
            got.iter().map(|(_, i)| (&i.scope, &i.subject)).collect::<Vec<_>>()
        );
        let (at, inc) = &got[0];
        assert_eq!(
            (inc.scope, inc.subject.get("probe").map(String::as_str)),
            (Scope::Probe, Some("p3")),
            "seed {seed}"
        );
        delays.push(at - 30 + 1);
        let p = inc.p_value.expect("a p-value");
        let ru = inc.runner_up.as_ref().expect("a runner-up");
        assert_eq!(ru.scope, Scope::Target, "seed {seed}");
        assert!(p < 1e-3 && ru.p_value > 1e-2, "seed {seed}: p {p} vs runner-up {}", ru.p_value);
    }
    delays.sort_unstable();
    assert!(delays[9] <= 5 && delays[19] <= 10, "windows to open, sorted: {delays:?}");
}

/// The same loss on one target from every probe blames the target; a blip of one window blames
/// nothing; healthy windows open nothing.
#[test]
fn pooled_loss_blames_the_target_and_ignores_a_blip() {
    for seed in 1..=10u64 {
        let got = loss_run(|_, t| if t == 2 { 0.03 } else { 0.002 }, seed, 45);
        let scopes: Vec<_> = got.iter().map(|(_, i)| (i.scope, i.subject.clone())).collect();
        assert_eq!(
            scopes,
            vec![(Scope::Target, BTreeMap::from([("target".to_string(), "t2".to_string())]))],
            "seed {seed}"
        );
        let blip = loss_run(|p, _| if p == 5 { 0.5 } else { 0.002 }, seed, 31);
        assert!(blip.is_empty(), "seed {seed}: a one-window blip opened {blip:?}");
        assert!(loss_run(|_, _| 0.002, seed, 200).is_empty(), "seed {seed}: healthy");
    }
}

/// Loss on both probes of one ASN (and no other) blames the group, never its members alone.
#[test]
fn pooled_loss_on_a_label_group_blames_the_group() {
    let labels: BTreeMap<String, BTreeMap<String, String>> = (0..8)
        .map(|p| {
            let asn = if p < 2 { "3320".to_string() } else { format!("65{p}") };
            (format!("p{p}"), BTreeMap::from([("asn".to_string(), asn)]))
        })
        .collect();
    for seed in 1..=10u64 {
        for loss in [0.05, 0.1, 0.3] {
            let got = loss_run_labelled(labels.clone(), |p, _| if p < 2 { loss } else { 0.002 }, seed, 60);
            let scopes: Vec<_> = got.iter().map(|(_, i)| (i.scope, i.subject.clone())).collect();
            let group = (Scope::Group, BTreeMap::from([("probe.asn".to_string(), "3320".to_string())]));
            assert!(scopes.contains(&group), "seed {seed}, loss {loss}: {scopes:?}");
            // never a member alone; at most the same group toward one target besides (the vote of
            // one window's degraded pairs, §4, when it held before the group's incident opened)
            assert!(
                scopes.iter().all(|(s, subj)| *s == Scope::Group && subj.get("probe.asn").is_some_and(|v| v == "3320")),
                "seed {seed}, loss {loss}: {scopes:?}"
            );
        }
    }
}

/// 8 probes × 4 targets, RTT medians 30–36 ms with ±3 % noise; every pair's value is multiplied
/// by `swing(window)` (what moves the whole fleet, a diurnal rise) and, from window 30 on, by
/// `fault(probe, target, window)`. Returns the incidents (latest state) and the window each opened.
fn rtt_run(
    labels: BTreeMap<String, BTreeMap<String, String>>,
    swing: impl Fn(i64) -> f64,
    fault: impl Fn(usize, usize, i64) -> f64,
    seed: u64,
    windows: i64,
) -> Vec<(i64, Incident)> {
    let mut st = seed;
    fleet_run(labels, windows, |i, p, t| {
        let f = if i >= 30 { fault(p, t, i) } else { 1.0 };
        let v = (30.0 + 2.0 * t as f64) * (1.0 + 0.06 * (uniform(&mut st) - 0.5)) * swing(i) * f;
        (Signal::Rtt, Value::Level(v))
    })
}

fn scopes_of(got: &[(i64, Incident)]) -> Vec<(Scope, BTreeMap<String, String>)> {
    got.iter().map(|(_, i)| (i.scope, i.subject.clone())).collect()
}

/// A sustained +20 % RTT on one probe's access network (6–7 ms, under every pair's own 25 %
/// margin, so no pair is ever judged degraded alone): its pairs' exceedances pooled across its
/// targets and windows blame the probe within a few windows, with a p-value; the same shift on
/// one target blames the target.
#[test]
fn a_small_sustained_latency_shift_is_found_by_its_pooled_exceedances() {
    let flat = |_| 1.0;
    for seed in 1..=10u64 {
        let got = rtt_run(BTreeMap::new(), flat, |p, _, _| if p == 3 { 1.2 } else { 1.0 }, seed, 50);
        assert_eq!(
            scopes_of(&got),
            vec![(Scope::Probe, BTreeMap::from([("probe".to_string(), "p3".to_string())]))],
            "seed {seed}"
        );
        let (at, inc) = &got[0];
        assert!(*at - 30 < 6, "seed {seed}: opened {} windows after the shift", at - 30 + 1);
        assert!(inc.metrics.contains("rtt"), "seed {seed}: {:?}", inc.metrics);
        assert!(inc.p_value.is_some_and(|p| p < 1e-3), "seed {seed}: p {:?}", inc.p_value);
        let got = rtt_run(BTreeMap::new(), flat, |_, t, _| if t == 1 { 1.2 } else { 1.0 }, seed, 50);
        assert_eq!(
            scopes_of(&got),
            vec![(Scope::Target, BTreeMap::from([("target".to_string(), "t1".to_string())]))],
            "seed {seed}"
        );
    }
}

/// What moves the whole fleet is not a fault of any part of it: a ±20 % diurnal-like swing (a
/// day compressed into 240 windows) opens nothing, and neither does a one-window doubling of one
/// probe's RTT, nor a group of two probes slow toward one target (the pooled target test needs
/// half of its pairs to exceed; the shared path is for the vote of §4).
#[test]
fn a_common_swing_a_blip_or_a_few_pairs_blame_no_probe_and_no_target() {
    let diurnal = |i: i64| 1.0 + 0.2 * (i as f64 * std::f64::consts::TAU / 240.0).sin();
    for seed in 1..=10u64 {
        let got = rtt_run(BTreeMap::new(), diurnal, |_, _, _| 1.0, seed, 480);
        assert!(got.is_empty(), "seed {seed}: a common swing opened {:?}", scopes_of(&got));
        let got = rtt_run(BTreeMap::new(), diurnal, |p, _, i| if p == 5 && i == 40 { 2.0 } else { 1.0 }, seed, 80);
        assert!(got.is_empty(), "seed {seed}: a one-window blip opened {:?}", scopes_of(&got));
        let labels: BTreeMap<String, BTreeMap<String, String>> = (0..8)
            .map(|p| {
                let asn = if p < 2 { "3320".to_string() } else { format!("65{p}") };
                (format!("p{p}"), BTreeMap::from([("asn".to_string(), asn)]))
            })
            .collect();
        let got = rtt_run(labels, |_| 1.0, |p, t, _| if p < 2 && t == 0 { 1.5 } else { 1.0 }, seed, 60);
        assert!(
            scopes_of(&got).iter().all(|(s, _)| !matches!(s, Scope::Target | Scope::Probe)),
            "seed {seed}: {:?}",
            scopes_of(&got)
        );
    }
}
