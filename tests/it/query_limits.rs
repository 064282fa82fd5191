//! What one query or one probe may cost: a rollup answer is a bounded page (`next` continues, and
//! the pages together are exactly the data), a fleet view (`group_by`) merges its whole input or
//! refuses to answer, `limit` bounds its output rows, and one probe cannot open unbounded series.

use crate::common::*;
use serde_json::{json, Value};

fn ev(id: String, seq: u64, ts: i64, target: &str) -> Value {
    json!({"event_id": id, "seq": seq, "ts": rfc3339(ts), "target": target, "kind": "icmp", "rtt_ms": 5.0})
}

/// Every probe sends one event per minute for `minutes` to each of `targets`; waits until stored.
async fn feed(t: &TestApp, targets: usize, minutes: i64) -> i64 {
    let base = base_ms();
    for (probe, token) in &t.probes {
        let mut events = Vec::new();
        for m in 0..minutes {
            for k in 0..targets {
                let seq = (m as u64) * targets as u64 + k as u64;
                events.push(ev(format!("{probe}-{seq}"), seq, base + m * 60_000 + 1_000, &format!("t{k}")));
            }
        }
        let r = post(&t.client, &t.app.url("/v1/events"), Some(token), "application/json", batch(&events)).await;
        assert_eq!(r.status, 202, "{}", r.body);
    }
    let want = (t.probes.len() * targets) as u64 * minutes as u64;
    eventually(30, "all events stored", || async {
        (total_count(&t.client, &t.app.url(""), &t.query_token, "rtt", base, base + 3_600_000).await == want)
            .then_some(())
    })
    .await;
    base
}

#[actix_rt::test]
async fn answers_are_pages_and_fleet_views_never_use_part_of_their_input() {
    let t = start(3, &[("NETQOE__HTTP__MAX_QUERY_WINDOWS", "100")]).await;
    let base = feed(&t, 4, 5).await; // 3 probes × 4 targets × 5 minutes = 60 windows
    let range = format!("metric=rtt&tier=1m&from={base}&to={}", base + 3_600_000);

    // a limit beyond one page is refused, naming it
    let r = get(&t.client, &t.app.url(&format!("/v1/rollups?{range}&limit=100000")), Some(&t.query_token)).await;
    assert_eq!((r.status, r.body["field"].as_str()), (400, Some("limit")), "{}", r.body);

    // pages of 7 windows: 9 pages, each continuing where the last stopped, together all 60 once
    let mut seen = Vec::new();
    let mut after = String::new();
    let mut pages = 0;
    loop {
        let url = t.app.url(&format!("/v1/rollups?{range}&limit=7{after}"));
        let r = get(&t.client, &url, Some(&t.query_token)).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let rows = r.body["rollups"].as_array().unwrap().clone();
        assert!(rows.len() <= 7);
        pages += 1;
        seen.extend(rows.iter().map(|w| format!("{}|{}|{}", w["probe"], w["target"], w["window_start"])));
        match r.body["next"].as_str() {
            Some(n) => {
                assert_eq!(r.body["truncated"], true);
                after = format!("&after={n}");
            }
            None => break,
        }
    }
    assert_eq!(pages, 9);
    let unique: std::collections::BTreeSet<&String> = seen.iter().collect();
    assert_eq!((seen.len(), unique.len()), (60, 60), "every window exactly once across the pages");
    let r = get(&t.client, &t.app.url(&format!("/v1/rollups?{range}&after=zz")), Some(&t.query_token)).await;
    assert_eq!((r.status, r.body["field"].as_str()), (400, Some("after")));
    // federation parameters: a region id with a character no region may hold, a grouping that
    // does not exist
    for (q, field) in [("region=eu~west", "region"), ("group_by=continent", "group_by")] {
        let r = get(&t.client, &t.app.url(&format!("/v1/rollups?{range}&{q}")), Some(&t.query_token)).await;
        assert_eq!((r.status, r.body["field"].as_str()), (400, Some(field)), "{q}: {}", r.body);
    }
    // a deployment that is not federated answers no region, and no windows for a region filter
    let r = get(&t.client, &t.app.url(&format!("/v1/rollups?{range}&limit=1")), Some(&t.query_token)).await;
    assert!(r.body["rollups"][0].get("region").is_none(), "{}", r.body);
    let r = get(&t.client, &t.app.url(&format!("/v1/rollups?{range}&region=eu")), Some(&t.query_token)).await;
    assert_eq!((r.status, r.body["rollups"].as_array().map(Vec::len)), (200, Some(0)), "{}", r.body);

    // group_by with a small limit: fewer rows, but each merges every probe (not the first windows)
    let url = t.app.url(&format!("/v1/rollups?{range}&group_by=target&limit=2"));
    let r = get(&t.client, &url, Some(&t.query_token)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let rows = r.body["rollups"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(r.body["truncated"], true);
    for w in rows {
        assert_eq!((w["probes"].as_u64(), w["count"].as_u64()), (Some(3), Some(3)), "a whole fleet window: {w}");
    }

    // a fleet view over more windows than it may merge is refused, not answered from part of them
    let t2_range = format!("tier=1m&from={base}&to={}", base + 3_600_000);
    let r = get(&t.client, &t.app.url(&format!("/v1/rollups?{t2_range}&group_by=probe")), Some(&t.query_token)).await;
    assert_eq!(r.status, 200, "60 windows fit in 100: {}", r.body);
    // group_by=probe merges each probe's targets per window: 3 probes × 5 minutes, 4 targets each
    let rows = r.body["rollups"].as_array().unwrap();
    assert_eq!(rows.len(), 15, "{}", r.body);
    assert_eq!(r.body["truncated"], false);
    for w in rows {
        assert_eq!((w["targets"].as_u64(), w["count"].as_u64()), (Some(4), Some(4)), "a probe's whole window: {w}");
        assert!(w["target"].is_null() && w["probe"].is_string(), "{w}");
    }
    let probes: std::collections::BTreeSet<&str> = rows.iter().filter_map(|w| w["probe"].as_str()).collect();
    assert_eq!(probes.len(), 3);
    let t3 = start(3, &[("NETQOE__HTTP__MAX_QUERY_WINDOWS", "50")]).await;
    let base3 = feed(&t3, 4, 5).await;
    let range3 = format!("tier=1m&from={base3}&to={}", base3 + 3_600_000);
    let r = get(&t3.client, &t3.app.url(&format!("/v1/rollups?{range3}&group_by=probe")), Some(&t3.query_token)).await;
    assert_eq!((r.status, r.body["field"].as_str()), (422, Some("group_by")), "{}", r.body);
    assert!(r.body["detail"].as_str().unwrap().contains("http.max_query_windows"), "{}", r.body);
    // the whole fleet of each target is read from the fleet windows the embedded store keeps (one
    // row per answer), so the same 60 windows are no merge at query time and need no bound
    let r = get(&t3.client, &t3.app.url(&format!("/v1/rollups?{range3}&group_by=target")), Some(&t3.query_token)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let rows = r.body["rollups"].as_array().unwrap();
    assert_eq!(rows.len(), 20, "4 targets × 5 minutes: {}", r.body);
    for w in rows {
        assert_eq!((w["probes"].as_u64(), w["count"].as_u64()), (Some(3), Some(3)), "a whole fleet window: {w}");
    }

    // queries beyond http.max_concurrent_queries wait for nobody: 503 + Retry-After, and ingest
    // is not held up meanwhile
    let held: Vec<_> = (0..4).map(|_| t.app.state.queries.try_acquire().unwrap()).collect();
    let r = get(&t.client, &t.app.url(&format!("/v1/rollups?{range}")), Some(&t.query_token)).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    assert!(r.body["detail"].as_str().unwrap().contains("http.max_concurrent_queries"), "{}", r.body);
    let (probe, token) = &t.probes[0];
    let e = ev(format!("{probe}-late-1"), 10_000, netqoe_actors::now_ms() - 1_000, "t0");
    assert_eq!(
        post(&t.client, &t.app.url("/v1/events"), Some(token), "application/json", batch(&[e])).await.status,
        202
    );
    drop(held);
    let r = get(&t.client, &t.app.url(&format!("/v1/rollups?{range}&limit=1")), Some(&t.query_token)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    t.app.shutdown().await.unwrap();
    t3.app.shutdown().await.unwrap();
}

#[actix_rt::test]
async fn a_probe_cannot_open_unbounded_series() {
    let t = start(1, &[("NETQOE__INGEST__MAX_SERIES_PER_PROBE", "10")]).await;
    let (probe, token) = (&t.probes[0].0, &t.probes[0].1);
    let url = t.app.url("/v1/events");
    let now = netqoe_actors::now_ms();
    // 8 targets (one rtt series each): fine
    let first: Vec<Value> = (0..8).map(|k| ev(format!("{probe}-{k}"), k, now - 10_000, &format!("t{k}"))).collect();
    assert_eq!(post(&t.client, &url, Some(token), "application/json", batch(&first)).await.status, 202);
    // 5 more, 2 of them known: 3 new would make 11 > 10; the event opening the 11th is named
    let more: Vec<Value> =
        (6..11).map(|k| ev(format!("{probe}-{}", k + 100), k + 100, now - 5_000, &format!("t{k}"))).collect();
    let r = post(&t.client, &url, Some(token), "application/json", batch(&more)).await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.body["field"], "events[4].target", "{}", r.body);
    assert!(r.body["detail"].as_str().unwrap().contains("ingest.max_series_per_probe"), "{}", r.body);
    // the known and the fitting ones still go through
    let fits: Vec<Value> = more[..4].to_vec();
    assert_eq!(post(&t.client, &url, Some(token), "application/json", batch(&fits)).await.status, 202);
    t.app.shutdown().await.unwrap();
}
