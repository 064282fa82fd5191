//! End to end over real HTTP on the embedded default: 3 probes × 2 targets × 10 simulated minutes
//! of events with known samples. Every 1m rollup must have the exact count/min/max and p1/p10/p50/p90/p95/p99
//! within 1 % of the exact quantiles; every 1h rollup must equal the merge of its 1m windows.

use std::collections::BTreeMap;

use crate::common::*;
use netqoe_actors::store::RollupQuery;
use netqoe_domain::rollup::merge_children;
use netqoe_domain::{Metric, Tier};
use serde_json::json;

const PROBES: usize = 3;
const TARGETS: [&str; 2] = ["dns.example.net", "cdn.example.org"];
const MINUTES: i64 = 10;
const EVENTS_PER_MINUTE: i64 = 6;
const SAMPLES: usize = 10;

fn exact(sorted: &[f64], q: f64) -> f64 {
    sorted[(q * (sorted.len() - 1) as f64).floor() as usize]
}

#[actix_rt::test]
async fn rollups_match_the_samples_exactly_and_within_sketch_accuracy() {
    let t = start(PROBES, &[]).await;
    let base = base_ms() + 20 * 60_000;
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    // oracle: (probe, target, minute) → samples
    let mut oracle: BTreeMap<(String, String, i64), Vec<f64>> = BTreeMap::new();
    for (pi, (probe, token)) in t.probes.iter().enumerate() {
        let mut events = Vec::new();
        let mut seq = 0;
        for m in 0..MINUTES {
            for k in 0..EVENTS_PER_MINUTE {
                for (ti, target) in TARGETS.iter().enumerate() {
                    seq += 1;
                    let ts = base + m * 60_000 + k * 10_000 + ti as i64 * 1000;
                    let median = 10.0 + 15.0 * pi as f64 + 40.0 * ti as f64;
                    let samples: Vec<f64> = (0..SAMPLES).map(|_| rng.rtt(median)).collect();
                    oracle
                        .entry((probe.clone(), target.to_string(), base + m * 60_000))
                        .or_default()
                        .extend(samples.iter().copied());
                    events.push(json!({
                        "event_id": format!("{probe}-{seq}"), "seq": seq, "ts": rfc3339(ts),
                        "target": target, "kind": "udp", "rtt_samples_ms": samples,
                        "sent": SAMPLES, "received": SAMPLES,
                    }));
                }
            }
        }
        // in batches of 25, in time order, alternating JSON and NDJSON bodies
        for (bi, chunk) in events.chunks(25).enumerate() {
            let r = if bi % 2 == 0 {
                post(&t.client, &t.app.url("/v1/events"), Some(token), "application/json", batch(chunk)).await
            } else {
                let mut nd = Vec::new();
                for e in chunk {
                    nd.extend(serde_json::to_vec(e).unwrap());
                    nd.push(b'\n');
                }
                post(&t.client, &t.app.url("/v1/events"), Some(token), "application/x-ndjson", nd).await
            };
            assert_eq!(r.status, 202, "{}", r.body);
            assert_eq!(r.body["accepted"].as_u64(), Some(chunk.len() as u64));
        }
    }
    let expected_samples: u64 = oracle.values().map(|v| v.len() as u64).sum();
    let (from, to) = (base, base + MINUTES * 60_000);
    eventually(30, "all samples aggregated", || async {
        (total_count(&t.client, &format!("http://{}", t.app.addr), &t.query_token, "rtt", from, to).await
            == expected_samples)
            .then_some(())
    })
    .await;

    let r = get(
        &t.client,
        &t.app.url(&format!("/v1/rollups?metric=rtt&tier=1m&from={}&to={}", rfc3339(from), rfc3339(to))),
        Some(&t.query_token),
    )
    .await;
    let rows = r.body["rollups"].as_array().unwrap();
    assert_eq!(rows.len(), oracle.len(), "one 1m window per probe × target × minute");
    for w in rows {
        let start =
            chrono::DateTime::parse_from_rfc3339(w["window_start"].as_str().unwrap()).unwrap().timestamp_millis();
        let key = (w["probe"].as_str().unwrap().to_string(), w["target"].as_str().unwrap().to_string(), start);
        let mut samples = oracle.get(&key).unwrap_or_else(|| panic!("unexpected window {key:?}")).clone();
        samples.sort_by(f64::total_cmp);
        assert_eq!(w["count"].as_u64().unwrap(), samples.len() as u64, "{key:?}");
        assert_eq!(w["min"].as_f64().unwrap(), samples[0], "{key:?}");
        assert_eq!(w["max"].as_f64().unwrap(), *samples.last().unwrap(), "{key:?}");
        assert_eq!(w["loss_pct"].as_f64().unwrap(), 0.0);
        for (name, q) in [("p1", 0.01), ("p10", 0.1), ("p50", 0.5), ("p90", 0.9), ("p95", 0.95), ("p99", 0.99)] {
            let want = exact(&samples, q);
            let got = w[name].as_f64().unwrap();
            assert!((got - want).abs() / want <= 0.01, "{key:?} {name}: got {got}, exact {want}");
        }
    }

    // 1h windows equal the merge of their 1m windows (read from the store itself).
    let store = t.app.state.store.as_ref();
    let q = |tier| RollupQuery {
        probe: None,
        target: None,
        metric: Some(Metric::Rtt),
        tier,
        from_ms: from - 86_400_000,
        to_ms: to,
        limit: 100_000,
        after: None,
    };
    let m1 = store.query(&q(Tier::M1)).await.unwrap();
    let h1 = store.query(&q(Tier::H1)).await.unwrap();
    assert_eq!(h1.len(), PROBES * TARGETS.len());
    for h in &h1 {
        let children: Vec<_> = m1
            .iter()
            .filter(|m| {
                m.key.probe == h.key.probe
                    && m.key.target == h.key.target
                    && Tier::H1.bin_start(m.key.start_ms) == h.key.start_ms
            })
            .collect();
        let merged = merge_children(children.iter().map(|c| &c.agg));
        assert_eq!(h.agg.count, merged.count);
        assert_eq!(h.agg.events, merged.events);
        assert_eq!(h.agg.min, merged.min);
        assert_eq!(h.agg.max, merged.max);
        assert_eq!(h.agg.sketch, merged.sketch, "1h sketch is the merge of the 1m sketches");
        assert_eq!(h.agg.sent, merged.sent);
        assert!((h.agg.sum - merged.sum).abs() < 1e-6 * merged.sum);
    }
    // fleet view: group_by=target merges sketches over the 3 probes
    let r = get(
        &t.client,
        &t.app.url(&format!("/v1/rollups?metric=rtt&tier=1h&group_by=target&from={}&to={}", from - 86_400_000, to)),
        Some(&t.query_token),
    )
    .await;
    let fleet = r.body["rollups"].as_array().unwrap();
    assert_eq!(fleet.len(), TARGETS.len());
    for f in fleet {
        assert_eq!(f["probes"].as_u64(), Some(PROBES as u64));
        let target = f["target"].as_str().unwrap();
        let mut all: Vec<f64> =
            oracle.iter().filter(|((_, tg, _), _)| tg == target).flat_map(|(_, v)| v.clone()).collect();
        all.sort_by(f64::total_cmp);
        assert_eq!(f["count"].as_u64().unwrap(), all.len() as u64);
        let got = f["p95"].as_f64().unwrap();
        let want = exact(&all, 0.95);
        assert!((got - want).abs() / want <= 0.01, "fleet p95 {got} vs {want}");
    }
    t.app.shutdown().await.unwrap();
}

/// The whole process runs on its `Clock` (as `netqoe eval` does): on a manual clock set to a day
/// in 2020, ingest accepts that day's events — the wall clock would refuse them as years in the
/// past, and a process on it does — the aggregators commit their windows, and a query without
/// `from`/`to` answers the simulated last hour. Moving the clock on moves that default range.
#[actix_rt::test]
async fn the_whole_process_runs_on_a_manual_clock() {
    let sim = chrono::DateTime::parse_from_rfc3339("2020-03-01T12:00:00Z").unwrap().timestamp_millis();
    let clock = netqoe_actors::Clock::manual(sim);
    let t = prepare(1, &[]).start_with_clock(std::net::TcpListener::bind("127.0.0.1:0").unwrap(), clock.clone()).await;
    let wall = start(1, &[]).await;
    let (probe, token) = t.probes[0].clone();
    let events = events_for(&probe, sim - 20 * 60_000, 1, 60, &mut Rng(7));
    let r =
        post(&wall.client, &wall.app.url("/v1/events"), Some(&wall.probes[0].1), "application/json", batch(&events))
            .await;
    assert_eq!(r.status, 422, "on the wall clock these events are years old: {}", r.body);
    let r = post(&t.client, &t.app.url("/v1/events"), Some(&token), "application/json", batch(&events)).await;
    assert_eq!(r.status, 202, "on the manual clock they are 20 minutes old: {}", r.body);
    let url = t.app.url("/v1/rollups?tier=1m&metric=rtt");
    let rows = eventually(30, "the simulated windows are committed and queryable", || async {
        let rows = all_rollups(&t.client, &url, &t.query_token).await;
        (rows.iter().map(|w| w["count"].as_u64().unwrap_or(0)).sum::<u64>() == 180).then_some(rows)
    })
    .await;
    for w in &rows {
        let start = w["window_start"].as_str().unwrap();
        assert!(start.starts_with("2020-03-01T11:4"), "a window of the simulated hour: {start}");
    }
    // two hours later (simulated) the default range no longer covers them
    clock.advance(2 * 3_600_000);
    assert!(all_rollups(&t.client, &url, &t.query_token).await.is_empty(), "the default range follows the clock");
    wall.app.shutdown().await.unwrap();
    t.app.shutdown().await.unwrap();
}
