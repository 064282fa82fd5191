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

/// Waits until nothing is left to apply: the shard queues hold no ready message (a passive
/// declare: exact, unlike the management API's sampled statistics) and no aggregator (the
/// `/metrics` URLs) holds an unacked delivery. Acks follow commits, so the store is then final
/// and a comparison with the oracle needs no grace period.
async fn quiesced(client: &awc::Client, bus: &netqoe::rabbit::RabbitBus, metrics_urls: &[String]) {
    eventually(90, "queues empty and nothing unacked", || async {
        let (_, shards) = bus.depths().await.ok()?;
        if shards.iter().any(|d| *d > 0) {
            return None;
        }
        for url in metrics_urls {
            let m = get_text(client, url).await;
            if metric_value(&m, "netqoe_bus_consumer_unacked")? != 0.0 {
                return None;
            }
        }
        Some(())
    })
    .await;
}

/// Events aggregated so far by the process serving `metrics_url` (applied, maybe not committed).
async fn aggregated(client: &awc::Client, metrics_url: &str) -> f64 {
    metric_value(&get_text(client, metrics_url).await, "netqoe_events_aggregated_total").unwrap_or(0.0)
}

/// Waits until every event of batches `0..seq` is aggregated and the pipeline is quiescent,
/// then returns (oracle, stored) per minute.
async fn settle(t: &TestApp, base: i64, seq: i64) -> (BTreeMap<i64, u64>, BTreeMap<i64, u64>) {
    let oracle = minute_oracle(base, 0..seq);
    let expected: u64 = oracle.values().sum();
    let (from, to) = (base, base + seq * STEP_MS + 120_000);
    let base_url = format!("http://{}", t.app.addr);
    eventually(120, "every acknowledged event aggregated", || async {
        (total_count(&t.client, &base_url, &t.query_token, "rtt", from, to).await >= expected).then_some(())
    })
    .await;
    let bus = netqoe::rabbit::RabbitBus::new(t.app.state.cfg.rabbitmq.clone());
    quiesced(&t.client, &bus, &[format!("{base_url}/metrics")]).await;
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

/// Two `aggregate` processes (A active on every shard, B registered as the standby) and one
/// `ingest` process, sharing K shard queues and a config with slow commits (every 3 s) and an
/// admin token.
struct SacPair {
    _dir: tempfile::TempDir,
    prefix: String,
    config: std::path::PathBuf,
    probe_token: String,
    query_token: String,
    admin_token: String,
    client: awc::Client,
    agg_a: ChildGuard,
    agg_b: ChildGuard,
    pa: u16,
    pb: u16,
    _ingest: ChildGuard,
    url: String,
}

const K: usize = 4;

impl SacPair {
    async fn start(tag: &str) -> Self {
        let prefix = unique_prefix(tag);
        let dir = tempfile::tempdir().unwrap();
        let (admin_token, admin_hash) = netqoe::auth::mint(netqoe::auth::ADMIN_PREFIX);
        let extra = format!(
            "[bus]\nkind = \"rabbitmq\"\n[rabbitmq]\nprefix = \"{prefix}\"\nshards = {K}\nreconnect_max_ms = 1000\nmanagement_url = \"http://127.0.0.1:15672\"\n[pipeline]\nflush_interval_ms = 3000\nflush_batches = 1000\n[[admin_tokens]]\nname = \"deployer\"\ntoken_sha256 = \"{admin_hash}\"\n"
        );
        let (config, probe_token, query_token) = write_config(dir.path(), &extra);
        let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
        let (pa, pb, pi) = (free_port(), free_port(), free_port());
        let agg_a = ChildGuard(spawn_netqoe(&config, &["aggregate"], pa, &[]));
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
        let ingest = ChildGuard(spawn_netqoe(&config, &["ingest"], pi, &[]));
        let url = format!("http://127.0.0.1:{pi}");
        wait_ready(&client, &url).await;
        Self {
            _dir: dir,
            prefix,
            config,
            probe_token,
            query_token,
            admin_token,
            client,
            agg_a,
            agg_b,
            pa,
            pb,
            _ingest: ingest,
            url,
        }
    }

    /// (shards this process is active on, consumers it sees per shard, summed) from its /metrics.
    async fn held(&self, port: u16) -> (i64, i64) {
        let text = get_text(&self.client, &format!("http://127.0.0.1:{port}/metrics")).await;
        let sum = |family: &str| -> i64 {
            text.lines()
                .filter(|l| l.starts_with(&format!("{family}{{")))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>() as i64
        };
        (sum("netqoe_bus_shard_active"), sum("netqoe_bus_shard_consumers"))
    }

    /// Posts batches of 20 events `from..to` through ingest; every one must get a 202.
    async fn post_range(&self, base: i64, from: i64, to: i64) {
        for b in (from..to).step_by(20) {
            let r = post(
                &self.client,
                &format!("{}/v1/events", self.url),
                Some(&self.probe_token),
                "application/json",
                batch(&batch_events(base, b, 20)),
            )
            .await;
            assert_eq!(r.status, 202, "{}", r.body);
        }
    }

    /// Waits until B alone is active on every shard (its metrics agree).
    async fn b_takes_over(&self) {
        eventually(60, "aggregator B active on every shard", || async {
            all_active_on(&shard_consumers(&self.client, &self.prefix, K).await, 1, self.agg_b.id()).then_some(())
        })
        .await;
        eventually(30, "B's metrics: active on all shards", || async {
            (self.held(self.pb).await.0 == K as i64).then_some(())
        })
        .await;
    }

    /// Once B has nothing left to apply, the stored windows must equal the oracle exactly.
    async fn assert_stored_exactly(&self, oracle: &BTreeMap<i64, u64>, from: i64, to: i64) {
        let cfg = netqoe::config::Config::load_from(Some(&self.config), Vec::new()).unwrap();
        let bus = netqoe::rabbit::RabbitBus::new(cfg.rabbitmq.clone());
        quiesced(&self.client, &bus, &[format!("http://127.0.0.1:{}/metrics", self.pb)]).await;
        let stored = stored_by_minute(&self.client, &self.url, &self.query_token, from, to).await;
        assert_eq!(&stored, oracle, "rollups equal the oracle");
        delete_prefix(&self.client, &self.prefix).await;
    }
}

#[actix_rt::test]
async fn single_active_consumer_fails_over_when_the_active_aggregator_is_killed() {
    let _g = BROKER.lock().await;
    let mut sac = SacPair::start("sac").await;
    eventually(30, "A's metrics: active on all shards; B's: on none, 2 consumers each", || async {
        (sac.held(sac.pa).await == (K as i64, 2 * K as i64) && sac.held(sac.pb).await == (0, 2 * K as i64))
            .then_some(())
    })
    .await;
    let base = base_ms() + 30 * 60_000;
    sac.post_range(base, 0, 400).await;
    // kill A mid-window: once it has applied events it has not committed (flush every 3 s)
    let (from, to) = (base, base + 900_000);
    let a_metrics = format!("http://127.0.0.1:{}/metrics", sac.pa);
    let (applied, stored) = eventually(20, "A holds applied but uncommitted events", || async {
        let applied = aggregated(&sac.client, &a_metrics).await;
        let stored = total_count(&sac.client, &sac.url, &sac.query_token, "rtt", from, to).await as f64 / 3.0;
        (applied > stored).then_some((applied, stored))
    })
    .await;
    sac.agg_a.kill();
    let killed = Instant::now();
    eprintln!("SAC failover: A killed holding {applied} applied events, {stored} of them committed");
    sac.b_takes_over().await;
    eprintln!("SAC failover: B active on all {K} shards {} ms after SIGKILL of A", killed.elapsed().as_millis());
    sac.post_range(base, 400, 800).await;
    sac.assert_stored_exactly(&minute_oracle(base, 0..800), from, to).await;
}

/// A rolling update drains the active aggregator over the admin endpoint: it commits its open
/// windows and stops consuming, the standby takes every shard over, and nothing is lost or
/// counted twice.
#[actix_rt::test]
async fn a_drained_aggregator_hands_its_shards_to_the_standby() {
    let _g = BROKER.lock().await;
    let sac = SacPair::start("sacdrain").await;
    let base = base_ms() + 30 * 60_000;
    sac.post_range(base, 0, 400).await;
    let (from, to) = (base, base + 900_000);
    let a = format!("http://127.0.0.1:{}", sac.pa);
    eventually(20, "A applied what was posted", || async {
        (aggregated(&sac.client, &format!("{a}/metrics")).await >= 400.0).then_some(())
    })
    .await;
    let r = sac
        .client
        .post(format!("{a}/admin/drain"))
        .insert_header(("Authorization", format!("Bearer {}", sac.admin_token)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    eventually(30, "A's drain is done", || async {
        let s = get(&sac.client, &format!("{a}/admin/drain"), Some(&sac.admin_token)).await;
        (s.body["done"] == true).then_some(())
    })
    .await;
    // A committed everything it had applied before letting go (flush every 3 s would not yet have)
    let stored = total_count(&sac.client, &sac.url, &sac.query_token, "rtt", from, to).await;
    assert_eq!(stored, 400 * 3, "the drain committed A's open windows");
    sac.b_takes_over().await;
    sac.post_range(base, 400, 800).await;
    sac.assert_stored_exactly(&minute_oracle(base, 0..800), from, to).await;
    drop(sac.agg_a);
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
    // netqoe_bus_consuming goes to 0 while the consumer has no broker (the alert
    // NetqoeAggregatorNotConsuming reads it) and back to 1 once it consumes again
    let mut saw_not_consuming = false;
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
        if restart.is_some() && !saw_not_consuming {
            let m = get_text(&t.client, &t.app.url("/metrics")).await;
            saw_not_consuming = metric_value(&m, "netqoe_bus_consuming") == Some(0.0);
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
    assert!(saw_not_consuming, "netqoe_bus_consuming was 0 while the broker was stopped");
    assert_eq!(metric_value(&m, "netqoe_bus_consuming"), Some(1.0), "consuming again after the restart");
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
    /// `rabbitmqctl -n nqN@localhost ARGS --formatter json`, parsed.
    fn ctl(n: u32, args: &[&str]) -> Value {
        let out = std::process::Command::new("rabbitmqctl")
            .args(["-n", &format!("nq{n}@localhost")])
            .args(args)
            .args(["--formatter", "json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "rabbitmqctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("rabbitmqctl {args:?} json: {e}"))
    }
    /// Leader node (`nqN@localhost`) of every queue whose name starts with `prefix`, as node `n` sees it.
    fn leaders(n: u32, prefix: &str) -> BTreeMap<String, String> {
        let list = Self::ctl(n, &["list_queues", "name", "leader"]);
        list.as_array()
            .unwrap()
            .iter()
            .filter(|q| q["name"].as_str().unwrap().starts_with(prefix))
            .map(|q| (q["name"].as_str().unwrap().to_string(), q["leader"].as_str().unwrap_or("").to_string()))
            .collect()
    }
    /// Client connections per AMQP port (5681 = node 1 …), as node `n` sees the cluster.
    fn connections_by_port(n: u32) -> BTreeMap<u64, usize> {
        let mut by = BTreeMap::new();
        for c in Self::ctl(n, &["list_connections", "port"]).as_array().unwrap() {
            *by.entry(c["port"].as_u64().unwrap()).or_default() += 1;
        }
        by
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
    // the victim, node 1, must matter: it holds netqoe's connections (the first URI) and leads
    // shard queues (quorum leaders are placed on the declaring client's node)
    let shards = format!("{prefix}events.shard.");
    let before = Cluster::leaders(2, &shards);
    assert_eq!(before.len(), 4, "four shard queues: {before:?}");
    let led = before.values().filter(|l| *l == "nq1@localhost").count();
    assert!(led >= 1, "node 1 leads at least one shard queue before it is killed: {before:?}");
    let conns = Cluster::connections_by_port(2);
    assert!(conns.get(&5681).copied().unwrap_or(0) >= 1, "netqoe is connected to node 1: {conns:?}");
    let reconnects = |m: &str, side: &str| {
        metric_value(m, &format!("netqoe_bus_reconnects_total{{side=\"{side}\"}}")).unwrap_or(0.0)
    };
    let m0 = get_text(&t.client, &t.app.url("/metrics")).await;
    let (pub0, con0) = (reconnects(&m0, "publisher"), reconnects(&m0, "consumer"));
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
    // the shard queues have new leaders on the surviving nodes, and netqoe reconnected there
    let after = Cluster::leaders(2, &shards);
    assert_eq!(after.len(), 4, "{after:?}");
    assert!(after.values().all(|l| l == "nq2@localhost" || l == "nq3@localhost"), "leaders moved: {after:?}");
    let conns = Cluster::connections_by_port(2);
    assert!(!conns.contains_key(&5681) && !conns.is_empty(), "netqoe's connections moved off node 1: {conns:?}");
    let m1 = get_text(&t.client, &t.app.url("/metrics")).await;
    assert!(reconnects(&m1, "publisher") > pub0, "the publisher reconnected");
    assert!(reconnects(&m1, "consumer") > con0, "the consumer reconnected");
    let (oracle, stored) = settle(&t, base, seq).await;
    let expected: u64 = oracle.values().sum();
    eprintln!(
        "cluster node loss: node 1 led {led}/4 shard queues; {ok} × 202, {unavailable} × 503; {} events expected, {} stored; longest publish stall {} ms",
        expected / 3,
        stored.values().sum::<u64>() / 3,
        stall.as_millis()
    );
    assert_eq!(stored, oracle, "no confirmed event lost, none counted twice");
    t.app.shutdown().await.unwrap();
    drop(cluster);
}
