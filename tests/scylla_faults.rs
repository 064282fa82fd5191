//! Faults of the CQL server under load, with the oracle: `netqoe run --store scylla` keeps taking
//! batches (202: they are durable in the journal) while the Cassandra JVM is frozen (SIGSTOP) for
//! 20 s, `/readyz` names the store as the component that is not ready, the process's memory stays
//! bounded, nothing is acked that was not persisted, and once the server is back every accepted
//! event is in the rollups exactly once.
//!
//! Needs the local server `scripts/ensure-cassandra.sh` started (its pid in
//! `NETQOE_CASSANDRA_PID`, exported by `scripts/test.sh`): a server of someone else's is not
//! frozen. One test in this binary, so no other test shares the frozen server.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Thaws the server even when the test fails half-way.
struct Thaw(i32);

impl Drop for Thaw {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

#[actix_rt::test]
#[ignore = "needs the local CQL server of scripts/ensure-cassandra.sh (NETQOE_CASSANDRA_PID; scripts/test.sh sets it)"]
async fn a_frozen_cql_server_loses_nothing_and_ingest_keeps_answering() {
    let cassandra: i32 = std::env::var("NETQOE_CASSANDRA_PID")
        .expect("NETQOE_CASSANDRA_PID must name the Cassandra started by scripts/ensure-cassandra.sh")
        .parse()
        .expect("NETQOE_CASSANDRA_PID is a pid");
    let (_, mut env, _keyspace) = scylla_keyspace().await;
    env.push(("NETQOE__STORAGE__BACKEND".into(), "scylla".into()));
    env.push(("NETQOE__SCYLLA__REQUEST_TIMEOUT_MS".into(), "2000".into()));
    let dir = tempfile::tempdir().unwrap();
    let (config, probe_token, query_token) = write_config(dir.path(), "");
    let port = free_port();
    let child = ChildGuard(spawn_netqoe(&config, &["run"], port, &env));
    let base_url = format!("http://127.0.0.1:{port}");
    let client = awc::Client::builder().timeout(Duration::from_secs(20)).finish();
    wait_ready(&client, &base_url).await;
    let url = format!("{base_url}/v1/events");

    let base = base_ms() + 20 * 60_000;
    let mut rng = Rng(7);
    let mut oracle: BTreeMap<i64, u64> = BTreeMap::new();
    let (mut accepted, mut refused, mut seq) = (0u64, 0u64, 0i64);
    let mut rss_peak = 0u64;
    let mut frozen_readyz = None;
    let started = Instant::now();
    let _thaw = Thaw(cassandra);
    let mut frozen = false;
    // 40 s of load, bounded: the server frozen from 5 s to 25 s
    while started.elapsed() < Duration::from_secs(40) {
        let t = started.elapsed();
        if !frozen && t >= Duration::from_secs(5) && t < Duration::from_secs(25) {
            assert_eq!(unsafe { libc::kill(cassandra, libc::SIGSTOP) }, 0, "SIGSTOP the Cassandra JVM");
            frozen = true;
        }
        if frozen && t >= Duration::from_secs(25) {
            assert_eq!(unsafe { libc::kill(cassandra, libc::SIGCONT) }, 0);
            frozen = false;
        }
        if frozen && frozen_readyz.is_none() && t >= Duration::from_secs(12) {
            let r = get(&client, &format!("{base_url}/readyz"), None).await;
            frozen_readyz = Some((r.status, r.body));
        }
        let events: Vec<_> = (0..50)
            .map(|k| {
                let s = seq + k;
                json!({"event_id": format!("e{s}"), "seq": s, "ts": rfc3339(base + s * 20), "target": "t1",
                       "kind": "icmp", "rtt_samples_ms": [rng.rtt(20.0)], "sent": 1, "received": 1})
            })
            .collect();
        let r = post(&client, &url, Some(&probe_token), "application/json", batch(&events)).await;
        match r.status {
            202 => {
                for k in 0..50 {
                    let ts = base + (seq + k) * 20;
                    *oracle.entry(ts / 60_000 * 60_000).or_default() += 1;
                }
                accepted += 50;
                seq += 50;
            }
            503 => {
                assert!(r.headers.get("retry-after").is_some(), "a 503 says when to retry: {}", r.body);
                refused += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            s => panic!("ingest answered {s}: {}", r.body),
        }
        rss_peak = rss_peak.max(rss_kib(child.id()));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = frozen_readyz.expect("readyz asked while frozen");
    assert_eq!(status, 503, "not ready while the store is frozen: {body}");
    let store = body["components"].as_array().unwrap().iter().find(|c| c["component"] == "store:scylla").cloned();
    assert_eq!(store.as_ref().map(|c| c["ready"].clone()), Some(json!(false)), "the store is named: {body}");
    eprintln!("{accepted} events accepted, {refused} batches refused with 503, netqoe RSS peak {rss_peak} KiB");
    assert!(accepted >= 5_000, "ingest kept accepting while the store was frozen ({accepted})");
    assert!(rss_peak < 512 * 1024, "memory stays bounded: {rss_peak} KiB");

    // back: everything accepted is in the CQL rollups once
    let (from, to) = (base, base + 60 * 60_000);
    eventually(90, "all accepted events in the CQL rollups", || async {
        (total_count(&client, &base_url, &query_token, "rtt", from, to).await == accepted).then_some(())
    })
    .await;
    let got = stored_by_minute(&client, &base_url, &query_token, from, to).await;
    assert_eq!(got, oracle, "per window: the accepted events, each once");
    let r = get(&client, &format!("{base_url}/readyz"), None).await;
    assert_eq!(r.status, 200, "ready again: {}", r.body);
}
