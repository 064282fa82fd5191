//! The diagnosis actor over the in-memory store: a restarted diagnoser (a new process, or the
//! supervisor's restart) replays the stored windows and upserts the same incident, never a copy.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use actix::prelude::*;
use common::*;
use netqoe_actors::diagnoser::{DiagnoserActor, DiagnoserConfig};
use netqoe_actors::store::{IncidentQuery, RollupStore, WriteSet};
use netqoe_actors::Clock;
use netqoe_domain::diagnosis::{IncidentState, Scope};
use netqoe_domain::{Metric, Rollup, Tier, WindowAgg, WindowKey};

/// A certificate with 6 days left, seen by one probe in each of the last 12 minutes.
async fn expiring_certificate(store: &TestStore) -> i64 {
    let now = netqoe_actors::now_ms();
    let first = (now / 60_000 - 14) * 60_000;
    let mut rollups = Vec::new();
    for m in 0..12 {
        let e = netqoe_domain::Event {
            cert_days: Some(6.0),
            tls_ms: Some(3.0),
            ..netqoe_domain::Event::new(format!("c{m}"), m, first + m as i64 * 60_000, "shop", netqoe_domain::Kind::Tls)
        };
        let c = e.contributions().into_iter().find(|c| c.metric == Metric::CertDays).unwrap();
        let mut agg = WindowAgg::default();
        agg.add(&c);
        let key = WindowKey {
            probe: "p1".into(),
            target: "shop".into(),
            metric: Metric::CertDays,
            tier: Tier::M1,
            start_ms: Tier::M1.bin_start(e.ts_ms),
        };
        rollups.push(Rollup { key, agg, applied: Default::default(), revision: 1, closed: true });
    }
    store.inner.commit(WriteSet { rollups, ..Default::default() }).await.unwrap();
    first
}

fn quick() -> DiagnoserConfig {
    DiagnoserConfig {
        tick: Duration::from_millis(20),
        settle_ms: 0,
        warmup_windows: 20,
        max_per_tick: 100,
        // the gauges are process-wide: only the test of each export turns it on
        max_target_series: 0,
        max_pair_series: 0,
        ..Default::default()
    }
}

#[actix_rt::test]
async fn a_restarted_diagnoser_upserts_the_same_incident() {
    let store = TestStore::new();
    let first = expiring_certificate(&store).await;
    let all =
        IncidentQuery { state: None, from_ms: first - 3_600_000, to_ms: netqoe_actors::now_ms() + 60_000, limit: 10 };

    let s: std::sync::Arc<dyn RollupStore> = store.clone();
    let d1 = DiagnoserActor::new(s.clone(), quick(), Clock::system()).start();
    store.until("the first diagnoser stores an incident", |s| s.incident_saves.load(Ordering::SeqCst) >= 1).await;
    let before = store.inner.list_incidents(&all).await.unwrap();
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!((before[0].scope, before[0].state), (Scope::Certificate, IncidentState::Open));
    drop(d1); // the actor stops with its last address

    // a new process: the same windows replayed, the same incident stored again
    let saves = store.incident_saves.load(Ordering::SeqCst);
    let _d2 = DiagnoserActor::new(s, quick(), Clock::system()).start();
    store.until("the second diagnoser stores its judgement", |s| s.incident_saves.load(Ordering::SeqCst) > saves).await;
    let after = store.inner.list_incidents(&all).await.unwrap();
    assert_eq!(after.len(), 1, "a replay must not open a second incident: {after:?}");
    assert_eq!(after[0].id, before[0].id);
    assert_eq!(after[0].opened_ms, before[0].opened_ms);
}

/// Rollups of `events` (each contribution in its own window key), committed at once.
async fn commit_events(store: &TestStore, probe: &str, events: Vec<netqoe_domain::Event>) {
    commit_tier(store, probe, Tier::M1, events).await
}

/// Rollups of `events` in `tier`'s windows, committed at once.
async fn commit_tier(store: &TestStore, probe: &str, tier: Tier, events: Vec<netqoe_domain::Event>) {
    let mut windows: std::collections::BTreeMap<WindowKey, WindowAgg> = Default::default();
    for e in &events {
        for c in e.contributions() {
            let key = WindowKey {
                probe: probe.into(),
                target: e.target.clone(),
                metric: c.metric,
                tier,
                start_ms: tier.bin_start(e.ts_ms),
            };
            windows.entry(key).or_default().add(&c);
        }
    }
    let rollups = windows
        .into_iter()
        .map(|(key, agg)| Rollup { key, agg, applied: Default::default(), revision: 1, closed: true })
        .collect();
    store.inner.commit(WriteSet { rollups, ..Default::default() }).await.unwrap();
}

/// The series of the families named `prefix`* in the registry's text, as (series with labels → value).
fn series_of(prefix: &str) -> std::collections::BTreeMap<String, f64> {
    let text = prometheus::TextEncoder::new().encode_to_string(&netqoe_actors::metrics::registry().gather()).unwrap();
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit_once(' ').map(|(s, v)| (s.to_string(), v.parse().unwrap())))
        .collect()
}

/// The fleet's view per target reaches the `netqoe_target_*` gauges: sketches merged across
/// probes (the p50 of both probes' samples, not an average of their medians), loss, MOS, a
/// refused service's failure ratio; at most `max_target_series` targets, the rest counted.
#[actix_rt::test]
async fn the_diagnoser_exports_each_targets_fleet_qoe_within_the_cap() {
    use netqoe_domain::{Event, Kind, Status};
    let store = TestStore::new();
    let now = netqoe_actors::now_ms();
    // the newest finished minute only: the gauges describe the newest judged window
    let ts = (now / 60_000 - 1) * 60_000 + 1_000;
    let udp = |id: &str, samples: &[f64], sent, received| Event {
        rtt_samples_ms: samples.to_vec(),
        sent: Some(sent),
        received: Some(received),
        ..Event::new(id, 1, ts, "gauge-voice", Kind::Udp)
    };
    // probe a: 10, 12, 14 ms, 1 of 4 lost; probe b: 40, 42, 44, 46 ms, none lost
    commit_events(&store, "a", vec![udp("a1", &[10.0, 12.0, 14.0], 4, 3)]).await;
    commit_events(&store, "b", vec![udp("b1", &[40.0, 42.0, 44.0, 46.0], 4, 4)]).await;
    let refused = |id: &str| Event { status: Status::Refused, ..Event::new(id, 2, ts, "gauge-shop", Kind::Tcp) };
    commit_events(&store, "a", vec![refused("a2"), refused("a3")]).await;
    let dns = Event { dns_ms: Some(7.0), ..Event::new("a4", 3, ts, "gauge-zdns", Kind::Dns) };
    commit_events(&store, "a", vec![dns]).await;

    let s: std::sync::Arc<dyn RollupStore> = store.clone();
    let _d = DiagnoserActor::new(s, DiagnoserConfig { max_target_series: 2, ..quick() }, Clock::system()).start();
    let want = "netqoe_target_probes{target=\"gauge-voice\"}";
    let mut series = series_of("netqoe_target_");
    for _ in 0..250 {
        if series.contains_key(want) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        series = series_of("netqoe_target_");
    }
    assert_eq!(series.get(want), Some(&2.0), "{series:#?}");
    // quantiles of the merged sketch, i.e. of all 7 samples (10 12 14 40 42 44 46: the median 40,
    // p95 44, within the sketch's 1 %), not an average of the probes' medians ((12 + 43) / 2)
    let p50 = series["netqoe_target_latency_ms{metric=\"rtt\",quantile=\"0.5\",target=\"gauge-voice\"}"];
    assert!((p50 - 40.0).abs() / 40.0 <= 0.011, "fleet p50 {p50}");
    let p95 = series["netqoe_target_latency_ms{metric=\"rtt\",quantile=\"0.95\",target=\"gauge-voice\"}"];
    assert!((p95 - 44.0).abs() / 44.0 <= 0.011, "fleet p95 {p95}");
    assert_eq!(series["netqoe_target_loss_ratio{target=\"gauge-voice\"}"], 1.0 / 8.0);
    let mos = series["netqoe_target_mos{target=\"gauge-voice\"}"];
    assert!(mos > 1.0 && mos < 4.5, "MOS {mos}");
    assert_eq!(series["netqoe_target_failure_ratio{metric=\"connect\",target=\"gauge-shop\"}"], 1.0);
    assert_eq!(series["netqoe_target_probes{target=\"gauge-shop\"}"], 1.0);
    // the cap: two targets exported (in name order), the third counted
    assert!(!series.keys().any(|k| k.contains("gauge-zdns")), "{series:#?}");
    assert_eq!(series["netqoe_target_series_refused"], 1.0);
    let end = series["netqoe_target_window_end_seconds"];
    assert_eq!(end as i64 * 1000, (now / 60_000) * 60_000, "the window the gauges describe");
}

/// The probe × target matrix reaches `netqoe_pair_state` with the page's rules: loss degrades a
/// pair, a median far over the previous hour's median degrades it (the current hour's is not
/// the baseline when the previous one exists), a refused service fails; rows are grouped by the
/// configured probe label; at most `max_pair_series` pairs, the rest counted.
#[actix_rt::test]
async fn the_diagnoser_exports_the_probe_target_matrix_within_the_cap() {
    use netqoe_domain::{Event, Kind, Status};
    let store = TestStore::new();
    let now = netqoe_actors::now_ms();
    let ts = (now / 60_000 - 1) * 60_000 + 1_000;
    let hour = ts - ts.rem_euclid(3_600_000);
    let udp = |id: &str, ts: i64, samples: &[f64], sent, received| Event {
        rtt_samples_ms: samples.to_vec(),
        sent: Some(sent),
        received: Some(received),
        ..Event::new(id, 1, ts, "pair-voice", Kind::Udp)
    };
    // a: 1 of 4 lost (25 %: degraded, not failing); b: 40-46 ms against 10 ms the hour before
    // (and 42 ms this hour, which must not be the baseline); c: no label, 20 ms, no baseline
    commit_events(&store, "pa", vec![udp("a1", ts, &[10.0, 12.0, 14.0], 4, 3)]).await;
    commit_events(&store, "pb", vec![udp("b1", ts, &[40.0, 42.0, 44.0, 46.0], 4, 4)]).await;
    commit_tier(&store, "pb", Tier::H1, vec![udp("b0", hour - 600_000, &[10.0, 10.0, 10.0], 3, 3)]).await;
    commit_tier(&store, "pb", Tier::H1, vec![udp("b2", hour + 1_000, &[42.0], 1, 1)]).await;
    commit_events(&store, "pc", vec![udp("c1", ts, &[20.0, 20.0], 2, 2)]).await;
    let refused = |id: &str| Event { status: Status::Refused, ..Event::new(id, 2, ts, "pair-shop", Kind::Tcp) };
    commit_events(&store, "pa", vec![refused("a2"), refused("a3")]).await;
    let dns = Event { dns_ms: Some(7.0), ..Event::new("c4", 3, ts, "pair-zdns", Kind::Dns) };
    commit_events(&store, "pc", vec![dns]).await;

    let labels = [("pa", "eu"), ("pb", "us")]
        .into_iter()
        .map(|(p, r)| (p.to_string(), [("region".to_string(), r.to_string())].into()))
        .collect();
    let s: std::sync::Arc<dyn RollupStore> = store.clone();
    let cfg = DiagnoserConfig { max_pair_series: 4, pair_group_label: "region".into(), labels, ..quick() };
    let _d = DiagnoserActor::new(s, cfg, Clock::system()).start();
    let state = |g: &str, p: &str, t: &str, m: &str| {
        format!("netqoe_pair_state{{group=\"{g}\",metric=\"{m}\",probe=\"{p}\",target=\"{t}\"}}")
    };
    let want = state("(no region)", "pc", "pair-voice", "rtt");
    let mut series = series_of("netqoe_pair_");
    for _ in 0..250 {
        if series.contains_key(&want) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        series = series_of("netqoe_pair_");
    }
    assert_eq!(series.get(&want), Some(&0.0), "{series:#?}");
    assert_eq!(series[&state("eu", "pa", "pair-voice", "loss")], 1.0, "25 % loss: degraded");
    assert_eq!(series[&state("eu", "pa", "pair-voice", "rtt")], 1.0);
    assert_eq!(series[&state("us", "pb", "pair-voice", "rtt")], 1.0, "43 ms over a 10 ms baseline");
    assert_eq!(series[&state("us", "pb", "pair-voice", "loss")], 0.0);
    assert_eq!(series[&state("eu", "pa", "pair-shop", "connect")], 2.0, "refused 2/2: failing");
    assert!(!series.contains_key(&state("eu", "pa", "pair-shop", "rtt")), "no window, no value");
    // the cap: four pairs exported (in order), the fifth counted
    assert!(!series.keys().any(|k| k.contains("pair-zdns")), "{series:#?}");
    assert_eq!(series["netqoe_pair_series_refused"], 1.0);
}
