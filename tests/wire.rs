//! The probe's wire, end to end: every event the probe can build (each kind, each outcome, each
//! status) goes through a real ingest and is found in the rollups with its values and its error
//! class; a batch that ingest refuses in part loses only the events ingest named; and an event
//! from a probe whose clock runs ahead does not make the probe's on-time events vanish.

mod common;

use std::time::Duration;

use common::*;
use netqoe::probe::{to_event, HttpTimings, Measured, ProbeConfig, Spool, TargetConfig, TlsTimings};
use netqoe_domain::{Kind, Metric, Status, WireBatch, WireEvent};

fn target(id: &str, kind: &str) -> TargetConfig {
    TargetConfig {
        id: id.into(),
        kind: kind.into(),
        address: "127.0.0.1:9".into(),
        interval_s: 10,
        packets: 5,
        timeout_ms: 500,
        name: "shop.test".into(),
        record: "A".into(),
        tls_verify: true,
    }
}

fn http(status: u16, tls: bool) -> HttpTimings {
    HttpTimings {
        dns_ms: 1.5,
        connect_ms: 2.5,
        tls_ms: tls.then_some(3.5),
        ttfb_ms: 10.0,
        total_ms: 12.0,
        cert_days: tls.then_some(30.0),
        status,
    }
}

/// What each kind can measure when it succeeds, and the metrics that must then hold a value.
fn successes(kind: &str) -> Vec<(Measured, Vec<Metric>)> {
    use Metric::*;
    match kind {
        "udp" | "icmp" => vec![
            (Measured::Train { samples: vec![1.0, 2.0, 3.0], sent: 5, received: 3 }, vec![Rtt]),
            (Measured::Train { samples: vec![], sent: 5, received: 0 }, vec![]),
            (Measured::Unsent { sent: 5 }, vec![]),
        ],
        "tcp" => vec![(Measured::Connect(2.0), vec![Connect])],
        "dns" => vec![(Measured::Resolved(4.0), vec![Dns])],
        "tls" => vec![(
            Measured::Tls(TlsTimings { connect_ms: 2.0, tls_ms: 6.0, cert_days: Some(44.5) }),
            vec![Connect, Tls, CertDays],
        )],
        _ => vec![
            (Measured::Http(http(200, false)), vec![Dns, Connect, Ttfb, Total]),
            (Measured::Http(http(204, true)), vec![Dns, Connect, Tls, Ttfb, Total, CertDays]),
            (Measured::Http(http(404, false)), vec![Dns, Connect, Ttfb, Total]),
            (Measured::Http(http(503, true)), vec![Dns, Connect, Tls, Ttfb, Total, CertDays]),
        ],
    }
}

#[actix_rt::test]
async fn every_event_the_probe_can_build_is_counted() {
    let t = start(1, &[]).await;
    let (probe, token) = t.probes[0].clone();
    let ts = base_ms() + 30_000;
    let mut events: Vec<WireEvent> = Vec::new();
    // (target, primary metric, expected error class, metrics that must carry values)
    let mut expect: Vec<(String, Metric, Option<Status>, Vec<Metric>)> = Vec::new();
    let mut seq = 0;
    for kind in ["udp", "icmp", "tcp", "dns", "tls", "http"] {
        let primary = netqoe::probe::kind_of(&target("x", kind)).primary_metric();
        for (i, (m, metrics)) in successes(kind).into_iter().enumerate() {
            seq += 1;
            let id = format!("{kind}-ok-{i}");
            let e = to_event(&target(&id, kind), &probe, seq, ts, m);
            expect.push((id, primary, e.status, metrics));
            events.push(e);
        }
        // every error class, as a measurement that failed outright
        for s in Status::ALL.into_iter().filter(|s| *s != Status::Ok) {
            seq += 1;
            let id = format!("{kind}-{}", s.as_str());
            events.push(to_event(&target(&id, kind), &probe, seq, ts, Measured::Failed(s)));
            expect.push((id, primary, Some(s), vec![]));
        }
    }
    // the statuses the HTTP answers map to
    assert!(expect.iter().any(|e| e.2 == Some(Status::Http4xx) && e.0.starts_with("http-ok")));
    assert!(expect.iter().any(|e| e.2 == Some(Status::Http5xx) && e.0.starts_with("http-ok")));
    let n = events.len();
    let body = serde_json::to_vec(&WireBatch { events }).unwrap();
    let text = String::from_utf8_lossy(&body);
    for s in Status::ALL.into_iter().filter(|s| *s != Status::Ok) {
        // the names docs/api.md documents are the names on the wire
        assert!(text.contains(&format!("\"status\":\"{}\"", s.as_str())), "{s:?} is sent as documented");
    }
    let r = post(&t.client, &t.app.url("/v1/events"), Some(&token), "application/json", body).await;
    assert_eq!(r.status, 202, "every event the probe builds is accepted: {}", r.body);
    assert_eq!(r.body["accepted"], n);

    let url = t.app.url(&format!("/v1/rollups?tier=1m&from={}&to={}&limit=10000", ts - 60_000, ts + 60_000));
    let rollups = eventually(20, "every event in the rollups", || async {
        let r = get(&t.client, &url, Some(&t.query_token)).await;
        let rows = r.body["rollups"].as_array().cloned().unwrap_or_default();
        // every event adds to its primary metric's window, each under its own target
        (rows.len() >= expect.len()).then_some(rows)
    })
    .await;
    let find = |target: &str, metric: Metric| {
        rollups.iter().find(|w| w["target"] == target && w["metric"] == metric.as_str() && w["probe"] == probe.as_str())
    };
    for (target, primary, status, metrics) in &expect {
        for m in metrics {
            let w = find(target, *m).unwrap_or_else(|| panic!("{target}: no {} window", m.as_str()));
            assert!(w["count"].as_u64() >= Some(1), "{target} {}: {w}", m.as_str());
        }
        let w = find(target, *primary).unwrap_or_else(|| panic!("{target}: no {} window", primary.as_str()));
        match status {
            Some(s) => assert_eq!(w["errors"][s.as_str()], 1, "{target}: {w}"),
            None => assert!(w["errors"].as_object().is_none_or(|e| e.is_empty()), "{target}: {w}"),
        }
        if target.starts_with("udp") || target.starts_with("icmp") {
            assert_eq!(w["sent"], 5, "{target}: a train counts its packets: {w}");
        }
    }
    t.app.shutdown().await.unwrap();
}

/// Ingest accepts events up to `ingest.max_future_s` (300 s) ahead, more than the allowed
/// lateness (120 s): one event at now + 240 s must not push the probe's on-time events behind its
/// watermark. Every event that got a 202 is in the rollups, and none is counted as late-dropped.
#[actix_rt::test]
async fn an_event_from_the_near_future_does_not_drop_later_on_time_events() {
    let t = start(1, &[("NETQOE__PIPELINE__ALLOWED_LATENESS_S", "120")]).await;
    let (probe, token) = (&t.probes[0].0, &t.probes[0].1);
    let url = t.app.url("/v1/events");
    let now = netqoe_actors::now_ms();
    let ev = |id: String, seq: u64, ts: i64| serde_json::json!({"event_id": id, "seq": seq, "ts": rfc3339(ts), "target": "t", "kind": "icmp", "rtt_ms": 10.0});
    let ahead = batch(&[ev(format!("{probe}-ahead"), 0, now + 240_000)]);
    assert_eq!(post(&t.client, &url, Some(token), "application/json", ahead).await.status, 202);
    // then a minute's worth of on-time events (the last 60 s), in three batches
    for b in 0..3u64 {
        let events: Vec<_> = (0..20u64)
            .map(|k| {
                let seq = 1 + b * 20 + k;
                ev(format!("{probe}-{seq}"), seq, now - 60_000 + (seq as i64) * 900)
            })
            .collect();
        assert_eq!(post(&t.client, &url, Some(token), "application/json", batch(&events)).await.status, 202);
    }
    let (from, to) = (now - 10 * 60_000, now + 10 * 60_000);
    eventually(20, "all 61 events in the rollups", || async {
        (total_count(&t.client, &t.app.url(""), &t.query_token, "rtt", from, to).await == 61).then_some(())
    })
    .await;
    let r = get(&t.client, &t.app.url("/v1/probes"), Some(&t.query_token)).await;
    let p = r.body["probes"].as_array().unwrap().iter().find(|p| p["probe"] == probe.as_str()).unwrap().clone();
    assert_eq!(p["late_dropped"], 0, "{p}");
    t.app.shutdown().await.unwrap();
}

/// This process's Prometheus registry as text (the probe's metrics live in it).
fn metrics_text() -> String {
    prometheus::TextEncoder::new().encode_to_string(&netqoe_actors::metrics::registry().gather()).unwrap()
}

fn probe_cfg(state: &std::path::Path, ingest: &str, token: &str) -> ProbeConfig {
    ProbeConfig {
        batch_max_events: 100,
        batch_max_age_ms: 100,
        spool_max_batches: 100,
        ..ProbeConfig::new(ingest, token, state, "probe-0", vec![target("t", "tcp")])
    }
}

/// A spooled batch with two events ingest will refuse (one of them in the JSON decoder, one in
/// validation): the probe drops exactly those and delivers the other eight, counting the two.
#[actix_rt::test]
async fn a_partly_refused_batch_keeps_its_valid_events() {
    let t = start(1, &[]).await;
    let (_, token) = t.probes[0].clone();
    let state = tempfile::tempdir().unwrap();
    let ts = base_ms() + 5_000;
    let mut events: Vec<serde_json::Value> = (1..=10)
        .map(|seq| {
            serde_json::to_value(to_event(&target("good", "tcp"), "probe-0", seq, ts, Measured::Connect(1.0))).unwrap()
        })
        .collect();
    events[3]["connect_ms"] = serde_json::json!(-1.0); // validation: must not be negative
    events[6]["status"] = serde_json::json!("exploded"); // decoder: unknown status
    let mut spool = Spool::open(state.path(), 100).unwrap();
    spool.push(1, &serde_json::to_vec(&serde_json::json!({ "events": events })).unwrap()).unwrap();
    drop(spool);
    let before = metrics_text();
    let refused_before = metric_value(&before, "netqoe_probe_events_refused_total").unwrap_or(0.0);
    let cfg = probe_cfg(state.path(), &t.app.url(""), &token);
    tokio::time::timeout(Duration::from_secs(20), netqoe::probe::run(cfg, Some(0))).await.unwrap().unwrap();
    assert_eq!(Spool::open(state.path(), 100).unwrap().depth(), 0, "the rest was delivered");
    let (client, base, query) = (&t.client, t.app.url(""), t.query_token.clone());
    eventually(20, "the eight valid events are stored", || async {
        let n = total_count(client, &base, &query, "connect", ts - 60_000, ts + 60_000).await;
        assert!(n <= 8, "{n} stored");
        (n == 8).then_some(())
    })
    .await;
    let after = metrics_text();
    let refused = metric_value(&after, "netqoe_probe_events_refused_total").unwrap_or(0.0) - refused_before;
    assert_eq!(refused, 2.0, "the two refused events are counted");
    assert_eq!(Kind::Tcp.primary_metric(), Metric::Connect);
    t.app.shutdown().await.unwrap();
}
