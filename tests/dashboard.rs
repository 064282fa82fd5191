//! The built-in `/dashboard` page: served by the binary, self-contained (no external asset), and
//! the endpoints it reads answer with the fields it renders. (The headless-browser test that
//! screenshots it is still to come.)

mod common;

use common::*;
use serde_json::json;

#[actix_rt::test]
async fn the_dashboard_is_self_contained_and_its_data_is_there() {
    let t = start(1, &[]).await;
    let mut res = t.client.get(t.app.url("/dashboard")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert!(res.headers().get("content-type").unwrap().to_str().unwrap().starts_with("text/html"));
    assert!(res.headers().get("content-security-policy").unwrap().to_str().unwrap().contains("default-src 'self'"));
    let html = String::from_utf8(res.body().limit(1 << 20).await.unwrap().to_vec()).unwrap();
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("//cdn"), "no external assets");
    for needle in
        ["fetch(\"/metrics\")", "/v1/rollups?metric=rtt&tier=1m&group_by=target", "fetch(\"/v1/probes\"", "<svg"]
    {
        assert!(html.contains(needle), "page reads/draws {needle}");
    }

    // feed events, then check the fields the page renders exist
    let now = netqoe_actors::now_ms();
    let events: Vec<_> = (0..12)
        .map(|i| json!({"event_id": format!("d{i}"), "seq": i, "ts": rfc3339(now - 300_000 + i * 20_000), "target": "cdn.example",
                        "kind": "udp", "rtt_samples_ms": [10.0 + i as f64, 12.0], "sent": 3, "received": 2}))
        .collect();
    assert_eq!(
        post(&t.client, &t.app.url("/v1/events"), Some(&t.probes[0].1), "application/json", batch(&events))
            .await
            .status,
        202
    );
    let base = format!("http://{}", t.app.addr);
    eventually(20, "events aggregated", || async {
        (total_count(&t.client, &base, &t.query_token, "rtt", now - 3_600_000, now + 60_000).await == 24).then_some(())
    })
    .await;
    let r = get(
        &t.client,
        &t.app.url(&format!(
            "/v1/rollups?metric=rtt&tier=1m&group_by=target&from={}&to={}&limit=100000",
            now - 3_600_000,
            now + 60_000
        )),
        Some(&t.query_token),
    )
    .await;
    let w = &r.body["rollups"][0];
    for field in ["target", "p95", "loss_pct", "probes"] {
        assert!(!w[field].is_null(), "group_by=target windows carry {field}: {w}");
    }
    let p = get(&t.client, &t.app.url("/v1/probes"), Some(&t.query_token)).await;
    let probe = &p.body["probes"][0];
    for field in ["probe", "status", "events", "late_dropped", "missing", "last_seen"] {
        assert!(!probe[field].is_null(), "probes carry {field}: {probe}");
    }
    let m = get_text(&t.client, &t.app.url("/metrics")).await;
    assert!(m.contains("netqoe_actor_messages_total{actor=\"aggregator\"}"));
    t.app.shutdown().await.unwrap();
}
