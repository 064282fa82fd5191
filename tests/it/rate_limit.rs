//! Per-probe rate limit: beyond the burst, 429 with Retry-After.

use crate::common::*;
use serde_json::{json, Value};

fn good_event(id: &str, ts: i64) -> Value {
    json!({"event_id": id, "seq": 1, "ts": rfc3339(ts), "target": "t1", "kind": "icmp", "rtt_ms": 12.5})
}

#[actix_rt::test]
async fn rate_limit_answers_429_with_retry_after() {
    let t = start(1, &[("NETQOE__INGEST__RATE_PER_PROBE", "1.0"), ("NETQOE__INGEST__BURST", "3.0")]).await;
    let now = netqoe_actors::now_ms();
    let events: Vec<Value> = (0..3).map(|i| good_event(&format!("r{i}"), now - 1000)).collect();
    let r = post(&t.client, &t.app.url("/v1/events"), Some(&t.probes[0].1), "application/json", batch(&events)).await;
    assert_eq!(r.status, 202);
    let r = post(
        &t.client,
        &t.app.url("/v1/events"),
        Some(&t.probes[0].1),
        "application/json",
        batch(&[good_event("r9", now)]),
    )
    .await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.headers.get("retry-after").is_some());
    t.app.shutdown().await.unwrap();
}
