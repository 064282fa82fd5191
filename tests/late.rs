//! Late data: an event within the allowed lateness raises its window's revision and changes its
//! values; one beyond it increments `late_dropped` (metric and session) and leaves the window alone.

mod common;

use common::*;
use serde_json::{json, Value};

async fn window(t: &TestApp, start: i64) -> Value {
    let r = get(
        &t.client,
        &t.app.url(&format!("/v1/rollups?metric=rtt&from={start}&to={}", start + 60_000)),
        Some(&t.query_token),
    )
    .await;
    r.body["rollups"][0].clone()
}

#[actix_rt::test]
async fn late_events_update_or_are_dropped_and_counted() {
    let t = start(1, &[("NETQOE__PIPELINE__ALLOWED_LATENESS_S", "120")]).await;
    let (probe, token) = (&t.probes[0].0, &t.probes[0].1);
    let url = t.app.url("/v1/events");
    let base = base_ms();
    let ev = |id: &str, ts: i64, rtt: f64| json!({"event_id": id, "seq": 0, "ts": rfc3339(ts), "target": "t", "kind": "icmp", "rtt_ms": rtt});
    // minutes 0..=5, one event each at +5 s: newest = 5:05, watermark = 3:05
    let events: Vec<Value> = (0..6).map(|m| ev(&format!("m{m}"), base + m * 60_000 + 5_000, 10.0)).collect();
    assert_eq!(post(&t.client, &url, Some(token), "application/json", batch(&events)).await.status, 202);
    let w3 = eventually(20, "minute 3 stored", || async {
        let w = window(&t, base + 3 * 60_000).await;
        (w["count"].as_u64() == Some(1)).then_some(w)
    })
    .await;
    let w1 = window(&t, base + 60_000).await;
    assert_eq!(w1["count"].as_u64(), Some(1));

    // within lateness: minute 3 ends at 4:00 > watermark 3:05
    assert_eq!(
        post(
            &t.client,
            &url,
            Some(token),
            "application/json",
            batch(&[ev("late-ok", base + 3 * 60_000 + 30_000, 99.0)])
        )
        .await
        .status,
        202
    );
    let w3b = eventually(20, "minute 3 re-emitted", || async {
        let w = window(&t, base + 3 * 60_000).await;
        (w["count"].as_u64() == Some(2)).then_some(w)
    })
    .await;
    assert!(w3b["revision"].as_u64() > w3["revision"].as_u64(), "revision rises: {w3} → {w3b}");
    assert_eq!(w3b["max"].as_f64(), Some(99.0));

    // beyond lateness: minute 1 ended at 2:00 ≤ watermark 3:05
    assert_eq!(
        post(
            &t.client,
            &url,
            Some(token),
            "application/json",
            batch(&[ev("late-drop", base + 60_000 + 10_000, 500.0)])
        )
        .await
        .status,
        202
    );
    eventually(20, "late drop counted on the session", || async {
        let r = get(&t.client, &t.app.url("/v1/probes"), Some(&t.query_token)).await;
        let p = r.body["probes"].as_array()?.iter().find(|p| p["probe"] == probe.as_str())?.clone();
        (p["late_dropped"].as_u64() == Some(1)).then_some(())
    })
    .await;
    let metrics = get_text(&t.client, &t.app.url("/metrics")).await;
    assert_eq!(metric_value(&metrics, "netqoe_late_events_total{outcome=\"dropped\"}"), Some(1.0));
    assert_eq!(metric_value(&metrics, "netqoe_late_events_total{outcome=\"accepted\"}"), Some(1.0));
    let w1b = window(&t, base + 60_000).await;
    assert_eq!(w1b["count"], w1["count"], "the closed window is untouched");
    assert_eq!(w1b["revision"], w1["revision"]);
    assert_eq!(w1b["max"].as_f64(), Some(10.0));
    t.app.shutdown().await.unwrap();
}

/// A probe whose clock runs 90 s ahead: its events are accepted (within `ingest.max_future_s`),
/// counted, its skew is in `/v1/probes`, and `netqoe_probes_clock_ahead` counts it (the alert
/// NetqoeProbeClockAhead reads it); a probe whose events merely arrive late is not counted.
#[actix_rt::test]
async fn a_probe_clock_ahead_is_counted_and_reported_not_dropped() {
    let t = start(2, &[]).await;
    let url = t.app.url("/v1/events");
    let now = netqoe_actors::now_ms();
    let ev = |id: &str, seq: i64, ts: i64| json!({"event_id": id, "seq": seq, "ts": rfc3339(ts), "target": "t", "kind": "icmp", "rtt_ms": 5.0});
    let ahead: Vec<Value> = (0..5).map(|i| ev(&format!("a{i}"), i, now + 90_000 + i * 1000)).collect();
    let delayed: Vec<Value> = (0..5).map(|i| ev(&format!("d{i}"), i, now - 90_000 + i * 1000)).collect();
    assert_eq!(post(&t.client, &url, Some(&t.probes[0].1), "application/json", batch(&ahead)).await.status, 202);
    assert_eq!(post(&t.client, &url, Some(&t.probes[1].1), "application/json", batch(&delayed)).await.status, 202);
    let rows = eventually(20, "both probes' sessions", || async {
        let r = get(&t.client, &t.app.url("/v1/probes"), Some(&t.query_token)).await;
        let rows = r.body["probes"].as_array()?.clone();
        (rows.iter().filter(|p| p["events"].as_u64() == Some(5)).count() == 2).then_some(rows)
    })
    .await;
    let row = |p: &str| rows.iter().find(|r| r["probe"] == p).unwrap().clone();
    let a = row(&t.probes[0].0);
    let skew = a["clock_skew_ms"].as_f64().unwrap();
    assert!((-95_000.0..=-90_000.0).contains(&skew), "the newest event is 94 s ahead: {a}");
    assert_eq!(a["late_dropped"], 0);
    assert_eq!(a["missing"], 0);
    assert!(row(&t.probes[1].0)["clock_skew_ms"].as_f64().unwrap() > 85_000.0);
    let m = get_text(&t.client, &t.app.url("/metrics")).await;
    assert_eq!(metric_value(&m, "netqoe_probes_clock_ahead"), Some(1.0), "only the probe ahead is counted");
    t.app.shutdown().await.unwrap();
}
