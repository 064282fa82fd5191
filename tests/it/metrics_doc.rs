//! docs/metrics.md and /metrics agree: after an embedded run with traffic (good events, a bad
//! request, a duplicate), every documented family of the embedded build is exported, non-zero where
//! the doc says traffic flows, and nothing is exported that the doc does not list.

use std::collections::{BTreeMap, BTreeSet};

use crate::common::*;
use serde_json::json;

struct Family {
    name: String,
    kind: String,
    everywhere: bool,
    traffic: bool,
}

fn documented() -> Vec<Family> {
    let doc =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/metrics.md")).unwrap();
    doc.lines()
        .filter(|l| l.starts_with("| `netqoe_"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            Family {
                name: cells[1].trim_matches('`').to_string(),
                kind: cells[2].to_string(),
                everywhere: cells[4] == "all",
                traffic: cells[5] == "yes",
            }
        })
        .collect()
}

/// family → (type, sum of its samples; for histograms the `_count` samples)
fn exported(text: &str) -> BTreeMap<String, (String, f64)> {
    let mut out: BTreeMap<String, (String, f64)> = BTreeMap::new();
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            if let (Some(n), Some(t)) = (it.next(), it.next()) {
                out.insert(n.to_string(), (t.to_string(), 0.0));
            }
        }
    }
    for l in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (series, value) = l.rsplit_once(' ').unwrap();
        let name = series.split('{').next().unwrap();
        let v: f64 = value.parse().unwrap_or(0.0);
        if let Some(e) = out.get_mut(name) {
            e.1 += v;
        } else if let Some(base) = name.strip_suffix("_count") {
            if let Some(e) = out.get_mut(base) {
                e.1 += v;
            }
        }
    }
    out
}

#[actix_rt::test]
async fn every_documented_metric_is_exported_and_moves_with_traffic() {
    let t = start(1, &[]).await;
    let token = &t.probes[0].1;
    let now = netqoe_actors::now_ms();
    let events: Vec<_> = (0..20)
        .map(|i| {
            json!({"event_id": format!("m{i}"), "seq": i, "ts": rfc3339(now - 90_000 + i * 1000), "target": "t",
                        "kind": "icmp", "rtt_samples_ms": [3.0, 4.0], "sent": 2, "received": 2})
        })
        .collect();
    let url = t.app.url("/v1/events");
    assert_eq!(post(&t.client, &url, Some(token), "application/json", batch(&events)).await.status, 202);
    assert_eq!(post(&t.client, &url, Some(token), "application/json", batch(&events[..2])).await.status, 202);
    assert_eq!(post(&t.client, &url, Some(token), "application/json", b"{".to_vec()).await.status, 400);
    let base = format!("http://{}", t.app.addr);
    eventually(20, "events aggregated", || async {
        (total_count(&t.client, &base, &t.query_token, "rtt", now - 600_000, now + 60_000).await == 40).then_some(())
    })
    .await;
    let doc = documented();
    assert!(doc.len() >= 20, "the doc table was parsed");
    // Metrics are process-wide and the other tests of this binary run beside this one: a gauge
    // (the watermark lag) holds whichever aggregator set it last, so a reading that finds a
    // traffic metric at zero posts one more back-dated event of its own and reads again.
    let mut extra = 0;
    let got = eventually(20, "every traffic metric non-zero", || {
        extra += 1;
        let (url, doc) = (&url, &doc);
        let e = json!({"event_id": format!("m-extra-{extra}"), "seq": 1000 + extra, "ts": rfc3339(now - 60_000),
                       "target": "t", "kind": "icmp", "rtt_samples_ms": [3.0], "sent": 1, "received": 1});
        let t = &t;
        async move {
            let got = exported(&get_text(&t.client, &t.app.url("/metrics")).await);
            let zero = doc
                .iter()
                .filter(|f| f.everywhere && f.traffic)
                .any(|f| got.get(&f.name).is_some_and(|(_, s)| *s <= 0.0));
            if zero {
                post(&t.client, url, Some(token), "application/json", batch(&[e])).await;
                return None;
            }
            Some(got)
        }
    })
    .await;
    for f in doc.iter().filter(|f| f.everywhere) {
        let (kind, sum) = got.get(&f.name).unwrap_or_else(|| panic!("{} is documented but not exported", f.name));
        assert_eq!(kind, &f.kind, "{}: type", f.name);
        if f.traffic {
            assert!(*sum > 0.0, "{} should be non-zero after traffic", f.name);
        }
    }
    let listed: BTreeSet<&str> = doc.iter().map(|f| f.name.as_str()).collect();
    for name in got.keys().filter(|n| n.starts_with("netqoe_")) {
        assert!(listed.contains(name.as_str()), "{name} is exported but not documented in docs/metrics.md");
    }
    t.app.shutdown().await.unwrap();
}
