//! Bad input: each malformed request gets its specific status and an RFC 9457 problem body naming
//! the field (and event index), and nothing of it is stored. Also: a batch posted twice is
//! acknowledged with its duplicates and counted once.

mod common;

use common::*;
use serde_json::{json, Value};

fn good_event(id: &str, ts: i64) -> Value {
    json!({"event_id": id, "seq": 1, "ts": rfc3339(ts), "target": "t1", "kind": "icmp", "rtt_ms": 12.5})
}

fn with(mut e: Value, key: &str, v: Value) -> Value {
    e[key] = v;
    e
}

#[actix_rt::test]
async fn every_bad_input_gets_its_status_and_a_problem_naming_the_field() {
    let t = start(1, &[("NETQOE__HTTP__MAX_BODY_BYTES", "4096"), ("NETQOE__HTTP__MAX_EVENTS_PER_BATCH", "20")]).await;
    let probe = t.probes[0].1.clone();
    let url = t.app.url("/v1/events");
    let now = netqoe_actors::now_ms();
    let ok = good_event("a", now - 60_000);
    let json_ct = "application/json";
    let huge: Vec<Value> = (0..60).map(|i| good_event(&format!("h{i}"), now - 60_000)).collect();
    let many: Vec<Value> = (0..21).map(|i| good_event(&format!("m{i}"), now - 60_000)).collect();
    let mut nan_body = batch(std::slice::from_ref(&ok));
    let s = String::from_utf8(nan_body.clone()).unwrap().replace("12.5", "NaN");
    nan_body = s.into_bytes();
    // (name, token, content type, body, status, field)
    type Case<'a> = (&'a str, Option<String>, &'a str, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("malformed json", Some(probe.clone()), json_ct, b"{\"events\": [".to_vec(), 400, "events"),
        ("not json at all", Some(probe.clone()), json_ct, b"hello".to_vec(), 400, "body"),
        (
            "unknown field",
            Some(probe.clone()),
            json_ct,
            batch(&[with(ok.clone(), "colour", json!("red"))]),
            422,
            "events[0].colour",
        ),
        ("unknown top-level field", Some(probe.clone()), json_ct, b"{\"events\":[],\"x\":1}".to_vec(), 422, "x"),
        (
            "wrong content type",
            Some(probe.clone()),
            "text/plain",
            batch(std::slice::from_ref(&ok)),
            415,
            "Content-Type",
        ),
        ("NaN", Some(probe.clone()), json_ct, nan_body, 400, "events[0].rtt_ms"),
        (
            "negative rtt",
            Some(probe.clone()),
            json_ct,
            batch(&[ok.clone(), with(ok.clone(), "rtt_ms", json!(-3.0))]),
            422,
            "events[1].rtt_ms",
        ),
        (
            "absurd rtt",
            Some(probe.clone()),
            json_ct,
            batch(&[with(ok.clone(), "rtt_ms", json!(1e12))]),
            422,
            "events[0].rtt_ms",
        ),
        (
            "future timestamp",
            Some(probe.clone()),
            json_ct,
            batch(&[with(ok.clone(), "ts", json!(rfc3339(now + 3_600_000)))]),
            422,
            "events[0].ts",
        ),
        (
            "ancient timestamp",
            Some(probe.clone()),
            json_ct,
            batch(&[with(ok.clone(), "ts", json!("2001-01-01T00:00:00Z"))]),
            422,
            "events[0].ts",
        ),
        (
            "wrong type",
            Some(probe.clone()),
            json_ct,
            batch(&[with(ok.clone(), "seq", json!("one"))]),
            422,
            "events[0].seq",
        ),
        (
            "unknown kind",
            Some(probe.clone()),
            json_ct,
            batch(&[with(ok.clone(), "kind", json!("smoke"))]),
            422,
            "events[0].kind",
        ),
        ("oversized body", Some(probe.clone()), json_ct, batch(&huge), 413, "body"),
        ("too many events", Some(probe.clone()), json_ct, batch(&many), 422, "events"),
        ("empty batch", Some(probe.clone()), json_ct, batch(&[]), 422, "events"),
        ("missing token", None, json_ct, batch(std::slice::from_ref(&ok)), 401, "Authorization"),
        (
            "invalid token",
            Some("nqp_not-a-real-token".into()),
            json_ct,
            batch(std::slice::from_ref(&ok)),
            401,
            "Authorization",
        ),
        (
            "revoked token",
            Some(t.revoked_token.clone()),
            json_ct,
            batch(std::slice::from_ref(&ok)),
            403,
            "Authorization",
        ),
        (
            "query token on ingest",
            Some(t.query_token.clone()),
            json_ct,
            batch(std::slice::from_ref(&ok)),
            403,
            "Authorization",
        ),
    ];
    for (name, token, ct, body, status, field) in cases {
        let r = post(&t.client, &url, token.as_deref(), ct, body).await;
        assert_eq!(r.status, status, "{name}: {}", r.body);
        assert_eq!(r.headers.get("content-type").unwrap(), "application/problem+json", "{name}");
        assert_eq!(r.body["status"].as_u64(), Some(status as u64), "{name}: {}", r.body);
        assert_eq!(r.body["field"].as_str(), Some(field), "{name}: {}", r.body);
        assert!(r.body["type"].as_str().unwrap().starts_with("https://"), "{name}");
        assert!(!r.body["detail"].as_str().unwrap().is_empty(), "{name}");
        if field.starts_with("events[") {
            assert!(r.body["index"].is_u64(), "{name}: the event index is given: {}", r.body);
        }
    }
    // probe token on the query API
    let r = get(&t.client, &t.app.url("/v1/rollups"), Some(&probe)).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.body["field"], "Authorization");
    let r = get(&t.client, &t.app.url("/v1/rollups"), None).await;
    assert_eq!(r.status, 401);
    let r = get(&t.client, &t.app.url("/v1/rollups?tier=5m"), Some(&t.query_token)).await;
    assert_eq!((r.status, r.body["field"].as_str()), (400, Some("tier")));
    let r = get(&t.client, &t.app.url("/v1/rollups?colour=red"), Some(&t.query_token)).await;
    assert_eq!((r.status, r.body["field"].as_str()), (400, Some("colour")));

    // nothing of the above was stored
    assert_eq!(t.app.state.bus.backlog().await.unwrap(), Some(0));
    let all = get(&t.client, &t.app.url("/v1/rollups?from=0&limit=10000"), Some(&t.query_token)).await;
    assert_eq!(all.body["rollups"].as_array().unwrap().len(), 0, "{}", all.body);
    let metrics = get_text(&t.client, &t.app.url("/metrics")).await;
    assert_eq!(metric_value(&metrics, "netqoe_events_accepted_total"), Some(0.0));
    assert!(metric_value(&metrics, "netqoe_events_rejected_total{reason=\"invalid\"}").unwrap() >= 5.0);

    // a good batch still goes through afterwards, and a re-sent batch is counted once
    let events: Vec<Value> = (0..5).map(|i| good_event(&format!("ok{i}"), now - 60_000 + i)).collect();
    let r = post(&t.client, &url, Some(&probe), json_ct, batch(&events)).await;
    assert_eq!((r.status, r.body["accepted"].as_u64(), r.body["duplicates"].as_u64()), (202, Some(5), Some(0)));
    let r = post(&t.client, &url, Some(&probe), json_ct, batch(&events)).await;
    assert_eq!(
        (r.status, r.body["accepted"].as_u64(), r.body["duplicates"].as_u64()),
        (202, Some(0), Some(5)),
        "{}",
        r.body
    );
    // partly new: 2 new + 5 old
    let mut mixed = events.clone();
    mixed.push(good_event("ok5", now - 50_000));
    mixed.push(good_event("ok6", now - 50_000));
    let r = post(&t.client, &url, Some(&probe), json_ct, batch(&mixed)).await;
    assert_eq!((r.status, r.body["accepted"].as_u64(), r.body["duplicates"].as_u64()), (202, Some(2), Some(5)));
    let base = format!("http://{}", t.app.addr);
    eventually(20, "7 distinct events aggregated", || async {
        (total_count(&t.client, &base, &t.query_token, "rtt", now - 3_600_000, now + 60_000).await == 7).then_some(())
    })
    .await;
    let probes = eventually(20, "session shows duplicates", || async {
        let r = get(&t.client, &t.app.url("/v1/probes"), Some(&t.query_token)).await;
        let p = r.body["probes"].as_array().unwrap().iter().find(|p| p["probe"] == "probe-0").cloned()?;
        (p["duplicates"].as_u64() == Some(10)).then_some(p)
    })
    .await;
    assert_eq!(probes["events"].as_u64(), Some(7));
    let metrics = get_text(&t.client, &t.app.url("/metrics")).await;
    assert_eq!(metric_value(&metrics, "netqoe_events_duplicate_total"), Some(10.0));
    assert_eq!(metric_value(&metrics, "netqoe_events_accepted_total"), Some(7.0));
    t.app.shutdown().await.unwrap();
}
