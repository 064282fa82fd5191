//! Fault tests against the real broker, with netqoe roles as separate processes:
//! - two aggregators share K shard queues through single-active-consumer; the active one is
//!   SIGKILLed mid-window and the other takes over; final rollups equal the oracle;
//! - the broker is restarted while a generator posts continuously: 503s while it is down, never a
//!   202 without a confirm, and afterwards every acknowledged event is stored exactly once.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// Event spacing: 20 000 events span under 17 minutes.
const STEP_MS: i64 = 50;

/// A batch of `n` events from `seq` on, `STEP_MS` apart from `base`, 3 RTT samples each.
fn batch_events(base: i64, seq: i64, n: i64) -> Vec<Value> {
    (seq..seq + n)
        .map(|s| {
            json!({"event_id": format!("e{s}"), "seq": s, "ts": rfc3339(base + s * STEP_MS), "target": "t",
                        "kind": "icmp", "rtt_samples_ms": [1.0 + (s % 7) as f64, 2.0, 3.5], "sent": 3, "received": 3})
        })
        .collect()
}

fn minute_oracle(base: i64, seqs: impl Iterator<Item = i64>) -> BTreeMap<i64, u64> {
    let mut o = BTreeMap::new();
    for s in seqs {
        *o.entry((base + s * STEP_MS) / 60_000 * 60_000).or_default() += 3;
    }
    o
}

/// Waits until every event of batches `0..seq` is aggregated (plus a moment for any double
/// application to show), then returns (oracle, stored) per minute.
async fn settle(t: &TestApp, base: i64, seq: i64) -> (BTreeMap<i64, u64>, BTreeMap<i64, u64>) {
    let oracle = minute_oracle(base, 0..seq);
    let expected: u64 = oracle.values().sum();
    let (from, to) = (base, base + seq * STEP_MS + 120_000);
    let base_url = format!("http://{}", t.app.addr);
    eventually(120, "every acknowledged event aggregated", || async {
        (total_count(&t.client, &base_url, &t.query_token, "rtt", from, to).await >= expected).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    (oracle, stored_by_minute(&t.client, &base_url, &t.query_token, from, to).await)
}

/// (registered consumers, tags of the active ones) per shard queue, from the management API.
async fn shard_consumers(client: &awc::Client, prefix: &str, shards: usize) -> Vec<(usize, Vec<String>)> {
    let mut out = Vec::new();
    for i in 0..shards {
        let q = mgmt_get(client, &format!("/queues/%2F/{prefix}events.shard.{i:03}")).await;
        let details = q["consumer_details"].as_array().cloned().unwrap_or_default();
        let active = details
            .iter()
            .filter(|c| c["active"].as_bool() == Some(true))
            .map(|c| c["consumer_tag"].as_str().unwrap_or_default().to_string())
            .collect();
        out.push((details.len(), active));
    }
    out
}

/// Every shard has `n` registered consumers, exactly one of them active, owned by process `pid`.
fn all_active_on(s: &[(usize, Vec<String>)], n: usize, pid: u32) -> bool {
    s.iter().all(|(count, active)| *count == n && active.len() == 1 && active[0].contains(&format!("-{pid}-")))
}

#[actix_rt::test]
async fn single_active_consumer_fails_over_when_the_active_aggregator_is_killed() {
    let _g = BROKER.lock().await;
    const K: usize = 4;
    let prefix = unique_prefix("sac");
    let dir = tempfile::tempdir().unwrap();
    // slow commits so the killed aggregator certainly held uncommitted window state
    let extra = format!(
        "[bus]\nkind = \"rabbitmq\"\n[rabbitmq]\nprefix = \"{prefix}\"\nshards = {K}\nreconnect_max_ms = 1000\nmanagement_url = \"http://127.0.0.1:15672\"\n[pipeline]\nflush_interval_ms = 3000\nflush_batches = 1000\n"
    );
    let (config, probe_token, query_token) = write_config(dir.path(), &extra);
    let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
    let (pa, pb, pi) = (free_port(), free_port(), free_port());
    let mut agg_a = ChildGuard(spawn_netqoe(&config, &["aggregate"], pa, &[]));
    wait_ready(&client, &format!("http://127.0.0.1:{pa}")).await;
    eventually(30, "aggregator A consumes every shard", || async {
        all_active_on(&shard_consumers(&client, &prefix, K).await, 1, agg_a.id()).then_some(())
    })
    .await;
    let agg_b = ChildGuard(spawn_netqoe(&config, &["aggregate"], pb, &[]));
    wait_ready(&client, &format!("http://127.0.0.1:{pb}")).await;
    eventually(30, "both aggregators registered on every shard, A alone active", || async {
        all_active_on(&shard_consumers(&client, &prefix, K).await, 2, agg_a.id()).then_some(())
    })
    .await;
    // each process says on /metrics which shards it holds, read from the management API
    let held = |port: u16| {
        let client = client.clone();
        async move {
            let text = get_text(&client, &format!("http://127.0.0.1:{port}/metrics")).await;
            let sum = |family: &str| -> i64 {
                text.lines()
                    .filter(|l| l.starts_with(&format!("{family}{{")))
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .sum::<f64>() as i64
            };
            (sum("netqoe_bus_shard_active"), sum("netqoe_bus_shard_consumers"))
        }
    };
    eventually(30, "A's metrics: active on all shards; B's: on none, 2 consumers each", || async {
        (held(pa).await == (K as i64, 2 * K as i64) && held(pb).await == (0, 2 * K as i64)).then_some(())
    })
    .await;
    let _ingest = ChildGuard(spawn_netqoe(&config, &["ingest"], pi, &[]));
    let url = format!("http://127.0.0.1:{pi}");
    wait_ready(&client, &url).await;

    let base = base_ms() + 30 * 60_000;
    let post_range = |from: i64, to: i64| {
        let (client, url, token) = (client.clone(), url.clone(), probe_token.clone());
        async move {
            for b in (from..to).step_by(20) {
                let r = post(
                    &client,
                    &format!("{url}/v1/events"),
                    Some(&token),
                    "application/json",
                    batch(&batch_events(base, b, 20)),
                )
                .await;
                assert_eq!(r.status, 202, "{}", r.body);
            }
        }
    };
    post_range(0, 400).await;
    // A has applied some of it (and committed little: flush every 3 s); kill it mid-window
    tokio::time::sleep(Duration::from_millis(300)).await;
    agg_a.kill();
    let killed = Instant::now();
    eventually(60, "aggregator B active on every shard", || async {
        all_active_on(&shard_consumers(&client, &prefix, K).await, 1, agg_b.id()).then_some(())
    })
    .await;
    eprintln!("SAC failover: B active on all {K} shards {} ms after SIGKILL of A", killed.elapsed().as_millis());
    eventually(30, "B's metrics: active on all shards", || async { (held(pb).await.0 == K as i64).then_some(()) })
        .await;
    post_range(400, 800).await;
    let oracle = minute_oracle(base, 0..800);
    let (from, to) = (base, base + 900_000);
    let expected: u64 = oracle.values().sum();
    eventually(90, "every acknowledged event aggregated", || async {
        (total_count(&client, &url, &query_token, "rtt", from, to).await == expected).then_some(())
    })
    .await;
    // give a moment for any double application to show, then compare exactly
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(stored_by_minute(&client, &url, &query_token, from, to).await, oracle, "rollups equal the oracle");
    delete_prefix(&client, &prefix).await;
}

fn rabbitmqctl(args: &[&str]) {
    let out = std::process::Command::new("rabbitmqctl").args(args).output().expect("rabbitmqctl runs");
    assert!(out.status.success(), "rabbitmqctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Starts the broker application again even if the test fails half-way.
struct StartAppGuard;
impl Drop for StartAppGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl").arg("start_app").output();
    }
}

#[actix_rt::test]
async fn broker_restart_under_load_loses_no_acknowledged_event_and_counts_none_twice() {
    let _g = BROKER.lock().await;
    let prefix = unique_prefix("restart");
    let mut ov = rabbit_overrides(&prefix, 4);
    ov.push(("NETQOE__RABBITMQ__PUBLISH_TIMEOUT_MS".into(), "2000".into()));
    ov.push(("NETQOE__RABBITMQ__CONNECT_TIMEOUT_MS".into(), "1000".into()));
    let t = start_with(1, &ov).await;
    let token = t.probes[0].1.clone();
    let url = t.app.url("/v1/events");
    let base = netqoe_actors::now_ms() / 60_000 * 60_000 - 90 * 60_000;
    let (mut sent, mut ok, mut unavailable) = (0u64, 0u64, 0u64);
    let mut pending: Vec<i64> = Vec::new(); // batches answered 503: the probe re-sends them later
    let mut first_ok_after_restart: Option<Duration> = None;
    let started = Instant::now();
    let mut restart: Option<std::thread::JoinHandle<Instant>> = None;
    let mut restarted_at: Option<Instant> = None;
    let guard = StartAppGuard;
    let mut seq = 0i64;
    // at most 1000 batches (20 000 events), paced, for at most 40 s
    while started.elapsed() < Duration::from_secs(40) && seq < 20_000 {
        if restart.is_none() && restarted_at.is_none() && started.elapsed() > Duration::from_secs(2) {
            restart = Some(std::thread::spawn(|| {
                rabbitmqctl(&["stop_app"]);
                std::thread::sleep(Duration::from_secs(3));
                rabbitmqctl(&["start_app"]);
                Instant::now()
            }));
        }
        if restart.as_ref().is_some_and(|h| h.is_finished()) {
            restarted_at = Some(restart.take().unwrap().join().expect("restart thread"));
        }
        let b = if restarted_at.is_some() && !pending.is_empty() {
            pending.remove(0)
        } else {
            seq += 20;
            seq - 20
        };
        let r = post(&t.client, &url, Some(&token), "application/json", batch(&batch_events(base, b, 20))).await;
        sent += 1;
        match r.status {
            202 => {
                ok += 1;
                if let (Some(at), None) = (restarted_at, first_ok_after_restart) {
                    first_ok_after_restart = Some(at.elapsed());
                }
                let settled = restarted_at.is_some_and(|at| at.elapsed() > Duration::from_secs(5));
                if settled && pending.is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            503 => {
                unavailable += 1;
                assert!(r.headers.get("retry-after").is_some());
                pending.push(b);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("unexpected status {other}: {}", r.body),
        }
    }
    if let Some(h) = restart.take() {
        restarted_at = Some(h.join().expect("restart thread"));
    }
    drop(guard);
    assert!(restarted_at.is_some(), "the broker restart completed");
    assert!(unavailable > 0, "clients saw 503s while the broker was down");
    // the probe finally re-sends what was refused
    for b in std::mem::take(&mut pending) {
        let r = eventually(60, "re-sent batch accepted", || {
            let (c, u, tk) = (t.client.clone(), url.clone(), token.clone());
            async move {
                let r = post(&c, &u, Some(&tk), "application/json", batch(&batch_events(base, b, 20))).await;
                (r.status == 202).then_some(r)
            }
        })
        .await;
        assert_eq!(r.status, 202);
    }
    let (oracle, stored) = settle(&t, base, seq).await;
    let expected: u64 = oracle.values().sum();
    let stored_total: u64 = stored.values().sum();
    let m = get_text(&t.client, &t.app.url("/metrics")).await;
    eprintln!(
        "broker restart: sent {sent} requests, {ok} × 202, {unavailable} × 503; events {} expected, {} stored; duplicates reported {}; recovery {:.1} s after start_app",
        expected / 3,
        stored_total / 3,
        metric_value(&m, "netqoe_events_duplicate_total").unwrap_or(0.0),
        first_ok_after_restart.map(|d| d.as_secs_f64()).unwrap_or(f64::NAN),
    );
    assert_eq!(stored, oracle, "every event stored exactly once");
    let client = t.client.clone();
    t.app.shutdown().await.unwrap();
    delete_prefix(&client, &prefix).await;
}

/// A private 3-node cluster (scripts/rabbitmq-cluster.sh), stopped when dropped.
struct Cluster {
    dir: tempfile::TempDir,
}

impl Cluster {
    fn script() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/rabbitmq-cluster.sh")
    }
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("bash").arg(Self::script()).arg("start").arg(dir.path()).output().unwrap();
        assert!(
            out.status.success(),
            "cluster start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("3-node cluster: {}", String::from_utf8_lossy(&out.stdout).trim());
        Self { dir }
    }
    fn kill_node(&self, n: u32) {
        let pid = std::fs::read_to_string(self.dir.path().join(format!("nq{n}/pid"))).unwrap();
        let pid: i32 = pid.trim().parse().unwrap();
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "SIGKILL node {n}");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash").arg(Self::script()).arg("stop").arg(self.dir.path()).output();
    }
}

#[actix_rt::test]
async fn cluster_node_sigkill_under_load_loses_no_confirmed_event() {
    let _g = BROKER.lock().await;
    let cluster = Cluster::start();
    let prefix = unique_prefix("cluster");
    let uris = "[\"amqp://guest:guest@127.0.0.1:5681/%2f?heartbeat=5\", \"amqp://guest:guest@127.0.0.1:5682/%2f?heartbeat=5\", \"amqp://guest:guest@127.0.0.1:5683/%2f?heartbeat=5\"]";
    let mut ov = rabbit_overrides(&prefix, 4);
    ov.push(("NETQOE__RABBITMQ__URIS".into(), uris.into()));
    ov.push(("NETQOE__RABBITMQ__PUBLISH_TIMEOUT_MS".into(), "3000".into()));
    ov.push(("NETQOE__RABBITMQ__CONNECT_TIMEOUT_MS".into(), "1000".into()));
    let t = start_with(1, &ov).await;
    let token = t.probes[0].1.clone();
    let url = t.app.url("/v1/events");
    let base = netqoe_actors::now_ms() / 60_000 * 60_000 - 90 * 60_000;
    let started = Instant::now();
    let (mut ok, mut unavailable, mut seq) = (0u64, 0u64, 0i64);
    let mut pending = Vec::new();
    let mut last_ok = Instant::now();
    let mut stall = Duration::ZERO;
    let mut killed: Option<Instant> = None;
    while started.elapsed() < Duration::from_secs(20) && seq < 20_000 {
        if killed.is_none() && started.elapsed() > Duration::from_secs(4) {
            cluster.kill_node(1);
            killed = Some(Instant::now());
        }
        let b = if killed.is_some() && !pending.is_empty() {
            pending.remove(0)
        } else {
            seq += 20;
            seq - 20
        };
        let r = post(&t.client, &url, Some(&token), "application/json", batch(&batch_events(base, b, 20))).await;
        match r.status {
            202 => {
                ok += 1;
                stall = stall.max(last_ok.elapsed());
                last_ok = Instant::now();
                if killed.is_some_and(|k| k.elapsed() > Duration::from_secs(8)) && pending.is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            503 => {
                unavailable += 1;
                pending.push(b);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("unexpected status {other}: {}", r.body),
        }
    }
    assert!(killed.is_some());
    for b in std::mem::take(&mut pending) {
        eventually(60, "re-sent batch accepted", || {
            let (c, u, tk) = (t.client.clone(), url.clone(), token.clone());
            async move {
                let r = post(&c, &u, Some(&tk), "application/json", batch(&batch_events(base, b, 20))).await;
                if r.status != 202 {
                    eprintln!("re-send of batch {b}: {} {}", r.status, r.body);
                }
                (r.status == 202).then_some(())
            }
        })
        .await;
    }
    let (oracle, stored) = settle(&t, base, seq).await;
    let expected: u64 = oracle.values().sum();
    eprintln!(
        "cluster node loss: {ok} × 202, {unavailable} × 503; {} events expected, {} stored; longest publish stall {} ms",
        expected / 3,
        stored.values().sum::<u64>() / 3,
        stall.as_millis()
    );
    assert_eq!(stored, oracle, "no confirmed event lost, none counted twice");
    t.app.shutdown().await.unwrap();
    drop(cluster);
}
