//! The diagnosis evaluation on the public scenario set (`load-tests/scenarios/`, a copy of the
//! labelled scenarios the project grew from): every expectation matched, no unexpected or false
//! incident; the same file twice gives the same incidents; a malformed file is rejected naming
//! the field.

use netqoe::eval::{parse, run, run_all};
use netqoe_domain::diagnosis::DiagnosisConfig;

fn scenarios() -> Vec<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("load-tests/scenarios");
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    v.sort();
    assert!(v.len() >= 10, "the public set is in {}", dir.display());
    v
}

#[test]
fn every_public_scenario_is_diagnosed_exactly() {
    let cfg = DiagnosisConfig::default();
    let (mut incidents, mut matched, mut expected) = (0, 0, 0);
    let all: Vec<_> = scenarios().iter().map(|p| parse(&std::fs::read_to_string(p).unwrap()).unwrap()).collect();
    // side by side, as `netqoe eval` runs them
    for (s, r) in all.iter().zip(run_all(&all, &cfg)) {
        let r = r.unwrap();
        eprintln!(
            "{}: {} events, {} incident(s) {:?}",
            s.name,
            r.events,
            r.incidents,
            r.incident_list.iter().map(|i| (&i.scope, &i.subject, i.opened_s)).collect::<Vec<_>>()
        );
        assert_eq!(r.matched, r.expectations, "{}: every expectation matched", s.name);
        assert_eq!(r.unexpected, 0, "{}: no unexpected incident", s.name);
        assert_eq!(r.false_incidents, 0, "{}: no false incident", s.name);
        incidents += r.incidents;
        matched += r.matched;
        expected += r.expectations;
    }
    assert_eq!(matched, expected);
    assert_eq!(incidents, matched, "precision 1.0");
    assert!(expected >= 7);
}

#[actix_rt::test]
async fn the_same_file_gives_the_same_incidents() {
    let path = scenarios().into_iter().find(|p| p.ends_with("voip-jitter.json")).unwrap();
    let s = parse(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cfg = DiagnosisConfig::default();
    let a = run(&s, &cfg).await.unwrap();
    let b = run(&s, &cfg).await.unwrap();
    assert!(!a.incident_list.is_empty());
    assert_eq!(a.incident_list, b.incident_list);
    assert_eq!(a.events, b.events);
    // and side by side on threads of their own (`run_all`), in the order given
    let both = std::thread::spawn(move || run_all(&[s.clone(), s], &cfg)).join().unwrap();
    assert_eq!(both.len(), 2);
    for r in both {
        let r = r.unwrap();
        assert_eq!((&r.incident_list, r.events), (&a.incident_list, a.events));
    }
}

#[test]
fn a_malformed_scenario_is_rejected_naming_the_field() {
    let good =
        std::fs::read_to_string(scenarios().into_iter().find(|p| p.ends_with("target-outage.json")).unwrap()).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&good).unwrap();
    v["faults"][0]["effect"]["loss_pct"] = 5.into();
    let e = parse(&v.to_string()).unwrap_err().to_string();
    assert!(e.contains("faults[0].effect") && e.contains("loss_pct"), "{e}");
    let mut v: serde_json::Value = serde_json::from_str(&good).unwrap();
    v["expect"][0]["scope"] = "everywhere".into();
    let e = parse(&v.to_string()).unwrap_err().to_string();
    assert!(e.contains("expect[0].scope"), "{e}");
    let mut v: serde_json::Value = serde_json::from_str(&good).unwrap();
    v["interval_s"] = "ten".into();
    let e = parse(&v.to_string()).unwrap_err().to_string();
    assert!(e.contains("interval_s"), "{e}");
    let mut v: serde_json::Value = serde_json::from_str(&good).unwrap();
    v.as_object_mut().unwrap().insert("colour".into(), "red".into());
    let e = parse(&v.to_string()).unwrap_err().to_string();
    assert!(e.contains("colour"), "{e}");
    // the kinds a target is measured with are a fixed set, and belong to targets
    let mut v: serde_json::Value = serde_json::from_str(&good).unwrap();
    v["targets"][0]["kind"] = "smtp".into();
    let e = parse(&v.to_string()).unwrap_err().to_string();
    assert!(e.contains("targets[0].kind") && e.contains("smtp"), "{e}");
    let mut v: serde_json::Value = serde_json::from_str(&good).unwrap();
    v["probes"][1]["kind"] = "dns".into();
    let e = parse(&v.to_string()).unwrap_err().to_string();
    assert!(e.contains("probes[1].kind"), "{e}");
    let mut v: serde_json::Value = serde_json::from_str(&good).unwrap();
    v["faults"][0]["effect"]["cert_day"] = 3.into();
    let e = parse(&v.to_string()).unwrap_err().to_string();
    assert!(e.contains("cert_day"), "{e}");
}

/// A target measured without a packet train sends only its kind's events, and a certificate
/// fault reaches the TLS measurements (and counts down with time): what the diagnosis judges
/// for dns, tcp and http targets and for certificates can be evaluated.
#[test]
fn service_kinds_send_only_their_measurements_and_carry_the_certificate() {
    let text =
        std::fs::read_to_string(scenarios().into_iter().find(|p| p.ends_with("service-kinds.json")).unwrap()).unwrap();
    let s = parse(&text).unwrap();
    let start = chrono::DateTime::parse_from_rfc3339(&s.start).unwrap().timestamp_millis();
    let kinds = |round: i64| {
        let mut seq = 0;
        let mut rng = netqoe::eval::Rng(1);
        netqoe::eval::round_events(&s, &mut rng, 0, round, start, &mut seq)
    };
    let healthy = kinds(0);
    let by_target = |evs: &[netqoe_domain::WireEvent], t: &str| -> Vec<netqoe_domain::Kind> {
        evs.iter().filter(|e| e.target == t).map(|e| e.kind).collect()
    };
    use netqoe_domain::Kind;
    assert_eq!(by_target(&healthy, "resolver"), [Kind::Dns]);
    assert_eq!(by_target(&healthy, "db"), [Kind::Tcp]);
    assert_eq!(by_target(&healthy, "shop"), [Kind::Dns, Kind::Tcp, Kind::Tls, Kind::Http]);
    assert_eq!(by_target(&healthy, "voip-gw"), [Kind::Udp]);
    let cert = |evs: &[netqoe_domain::WireEvent]| {
        evs.iter().find(|e| e.target == "shop" && e.kind == Kind::Tls).and_then(|e| e.cert_days)
    };
    assert_eq!(cert(&healthy), Some(60.0));
    // the fault (from 1800 s) presents a certificate with 5 days left
    let faulted = kinds(2000 / s.interval_s);
    assert!(cert(&faulted).is_some_and(|d| d < 5.0 && d > 4.9), "{:?}", cert(&faulted));
}

/// The goal of the pooled evidence, end to end (generated events → journal → aggregator →
/// store → diagnoser): sustained 3 % loss on one probe's access network of the sweep's template
/// fleet is blamed on that probe within 5 windows, and nothing else opens.
#[actix_rt::test]
async fn three_percent_loss_on_one_probe_is_found_within_five_windows() {
    let families = netqoe::eval::families();
    let f = families.iter().find(|f| f.name == "loss, one probe").unwrap();
    let p = netqoe::eval::point(f, 3.0, 7, &DiagnosisConfig::default()).await.unwrap();
    assert!(p.found, "{p:?}");
    assert!(p.delay_s.unwrap() <= 300, "{p:?}");
    assert_eq!(p.other_incidents, 0, "{p:?}");
    // the table and the curve name every family
    let rows = vec![(f.name.to_string(), f.unit.to_string(), vec![p])];
    let table = netqoe::eval::table(&rows);
    assert!(table.contains("loss, one probe") && table.contains("3%"), "{table}");
    let svg = netqoe::eval::svg(&rows);
    assert!(svg.starts_with("<svg") && svg.contains("loss, one probe"), "{svg}");
}

/// Pooled level shifts end to end: +20 % RTT on one probe of the sweep's template fleet (5.6 ms
/// on a 28 ms path, under every pair's own 25 % margin, so no pair is ever judged degraded alone)
/// is blamed on that probe within 5 windows through the whole pipeline, and nothing else opens;
/// the same on a label group blames the group.
#[test]
fn a_twenty_percent_rtt_rise_is_found_on_its_probe_and_on_its_group() {
    let families = netqoe::eval::families();
    let cfg = DiagnosisConfig::default();
    for name in ["RTT, one probe", "RTT, a label group"] {
        let f = families.iter().find(|f| f.name == name).unwrap();
        let p = actix::System::new().block_on(netqoe::eval::point(f, 20.0, 7, &cfg)).unwrap();
        assert!(p.found, "{name}: {p:?}");
        assert!(p.delay_s.unwrap() <= 300, "{name}: {p:?}");
        assert_eq!(p.other_incidents, 0, "{name}: {p:?}");
    }
}
