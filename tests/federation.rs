//! Federation against real brokers (docs/federation.md): two regions, each a whole netqoe
//! deployment on its own RabbitMQ broker, and a global tier (`netqoe global`, a separate process)
//! on a third; `netqoe federate setup` puts a dynamic shovel from each region to the global broker.
//! Region A's uplink runs through a TCP relay the test can cut.
//!
//! - region A's uplink cut for 60 s under load: A keeps answering 202 and aggregating, its uplink
//!   queue buffers, and once the link is back the global tier holds exactly the regions' windows;
//! - the global process SIGKILLed under load and restarted: the same;
//! - a region's revisions replayed (the same and an older one) change nothing, poison goes to
//!   the DLQ;
//! - the global fleet p95 per target and hour is within 1 % of the exact p95 of every region's
//!   samples together; `group_by=region` and `region=` answer per region.
//!
//! The oracle: for every regional 1m and 1h window, the global window of `region~probe` has the
//! same events, count, packets and p95 (and, for 1m, the same revision), and the global tier has
//! no window that no region has.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The three brokers of scripts/rabbitmq-federation.sh, stopped when dropped.
struct Brokers {
    dir: tempfile::TempDir,
}

const REGION_A: u16 = 5691;
const REGION_B: u16 = 5692;
const GLOBAL: u16 = 5693;

impl Brokers {
    fn script() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/rabbitmq-federation.sh")
    }
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("bash").arg(Self::script()).arg("start").arg(dir.path()).output().unwrap();
        assert!(
            out.status.success(),
            "brokers start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("{}", String::from_utf8_lossy(&out.stdout).trim());
        Self { dir }
    }
}

impl Drop for Brokers {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash").arg(Self::script()).arg("stop").arg(self.dir.path()).output();
    }
}

fn amqp(port: u16) -> String {
    format!("amqp://guest:guest@127.0.0.1:{port}/%2f?heartbeat=5")
}

/// A TCP relay to `upstream` that can be cut (every connection closed, new ones refused) and
/// restored: region A's link to the global broker.
struct Relay {
    port: u16,
    cut: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(upstream: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (c, cs) = (cut.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                if c.load(Ordering::SeqCst) {
                    drop(down);
                    continue;
                }
                let h = tokio::spawn(async move {
                    if let Ok(mut up) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                });
                cs.lock().unwrap().push(h);
            }
        });
        Self { port, cut, conns, accept }
    }
    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for h in self.conns.lock().unwrap().drain(..) {
            h.abort();
        }
    }
    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// GET on a broker's management API (guest/guest).
async fn mgmt(client: &awc::Client, port: u16, path: &str) -> Value {
    let url = format!("http://127.0.0.1:{}/api{path}", port + 10_000);
    match client.get(url).basic_auth("guest", "guest").send().await {
        Ok(mut r) => serde_json::from_slice(&r.body().limit(16 << 20).await.unwrap_or_default()).unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

/// Messages in a queue (ready + unacked), exactly: a passive declare over AMQP.
async fn depth(port: u16, queue: &str) -> Option<u32> {
    let conn = lapin::Connection::connect(&amqp(port), lapin::ConnectionProperties::default()).await.ok()?;
    let ch = conn.create_channel().await.ok()?;
    let q = ch
        .queue_declare(
            queue,
            lapin::options::QueueDeclareOptions { passive: true, ..Default::default() },
            lapin::types::FieldTable::default(),
        )
        .await
        .ok()?;
    let _ = conn.close(200, "done").await;
    Some(q.message_count())
}

/// One window's comparable figures.
#[derive(Debug, Clone, PartialEq)]
struct Fig {
    events: u64,
    count: u64,
    sent: u64,
    received: u64,
    p95: Option<String>,
    revision: Option<u64>,
}

fn fig(w: &Value, with_revision: bool) -> Fig {
    Fig {
        events: w["events"].as_u64().unwrap(),
        count: w["count"].as_u64().unwrap(),
        sent: w["sent"].as_u64().unwrap_or(0),
        received: w["received"].as_u64().unwrap_or(0),
        p95: w["p95"].as_f64().map(|v| format!("{v:.9}")),
        revision: if with_revision { w["revision"].as_u64() } else { None },
    }
}

type Windows = BTreeMap<(String, String, String, String), Fig>;

/// Every window of `tier` an API answers, keyed (region, probe, target, start).
async fn windows(client: &awc::Client, base: &str, token: &str, tier: &str, from: i64, to: i64) -> Windows {
    let url = format!("{base}/v1/rollups?metric=rtt&tier={tier}&from={from}&to={to}");
    all_rollups(client, &url, token)
        .await
        .iter()
        .map(|w| {
            let key = (
                w["region"].as_str().unwrap_or("?").to_string(),
                w["probe"].as_str().unwrap().to_string(),
                w["target"].as_str().unwrap().to_string(),
                w["window_start"].as_str().unwrap().to_string(),
            );
            (key, fig(w, tier == "1m"))
        })
        .collect()
}

struct Region {
    t: TestApp,
    seq: i64,
}

impl Region {
    fn base(&self) -> String {
        format!("http://{}", self.t.app.addr)
    }
    /// One batch of 20 events (one a second of event time) from each probe; every sample sent
    /// is added to `samples` per (target, hour).
    async fn round(&mut self, base_ms: i64, rng: &mut Rng, samples: &mut BTreeMap<(String, i64), Vec<f64>>) -> bool {
        let mut all_ok = true;
        for (probe, token) in self.t.probes.clone() {
            let events = events_for(&probe, base_ms, self.seq, 20, rng);
            let r = try_post(
                &self.t.client,
                &format!("{}/v1/events", self.base()),
                Some(&token),
                "application/json",
                batch(&events),
            )
            .await;
            if r.as_ref().map(|r| r.status).ok() != Some(202) {
                all_ok = false;
                eprintln!("region post: {:?}", r.map(|r| (r.status, r.body)));
                continue;
            }
            for e in &events {
                let ts = chrono::DateTime::parse_from_rfc3339(e["ts"].as_str().unwrap()).unwrap().timestamp_millis();
                let hour = ts - ts.rem_euclid(3_600_000);
                let key = (e["target"].as_str().unwrap().to_string(), hour);
                samples
                    .entry(key)
                    .or_default()
                    .extend(e["rtt_samples_ms"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()));
            }
        }
        self.seq += 20;
        all_ok
    }
}

async fn start_region(name: &str, broker: u16, prefix: &str, global_uri: &str) -> Region {
    let mut ov = rabbit_overrides(prefix, 2);
    ov.push(("NETQOE__RABBITMQ__URIS".into(), format!("[\"{}\"]", amqp(broker))));
    ov.push(("NETQOE__PIPELINE__ALLOWED_LATENESS_S".into(), "5".into()));
    let borrowed: Vec<(&str, &str)> = ov.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut p = prepare(4, &borrowed);
    p.cfg.federation.region = name.into();
    p.cfg.federation.uplink = true;
    p.cfg.federation.global_uri = global_uri.into();
    p.cfg.federation.management_url = format!("http://127.0.0.1:{}", broker + 10_000);
    let report = netqoe::rabbit::federation::setup(&p.cfg, false).await.expect("federate setup");
    // idempotent: a second run changes nothing and succeeds
    netqoe::rabbit::federation::setup(&p.cfg, false).await.expect("federate setup again");
    eprintln!("region {name}: shovel {} -> {global_uri}", report.shovel);
    Region { t: p.start().await, seq: 0 }
}

/// The global tier as a child process (`netqoe global`).
fn spawn_global(config: &std::path::Path, port: u16) -> ChildGuard {
    ChildGuard(spawn_netqoe(config, &["global"], port, &[]))
}

/// Waits until both uplink queues and the global queue are empty, then compares the global tier
/// with the regions (1m with revisions, and 1h); returns the number of 1m windows compared.
async fn converged(
    client: &awc::Client,
    regions: &[&Region],
    global: &str,
    token: &str,
    prefix: &str,
    range: (i64, i64),
) -> usize {
    let names = netqoe::rabbit::federation::FederationNames::new(prefix);
    let mut last;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let a = depth(REGION_A, &names.uplink_queue).await;
        let b = depth(REGION_B, &names.uplink_queue).await;
        let g = depth(GLOBAL, &names.global_queue).await;
        if (a, b, g) == (Some(0), Some(0), Some(0)) {
            let mut want = Windows::new();
            for r in regions {
                want.extend(windows(client, &r.base(), &r.t.query_token, "1m", range.0, range.1).await);
            }
            let have = windows(client, global, token, "1m", range.0, range.1).await;
            if have == want {
                let mut want_h = Windows::new();
                for r in regions {
                    want_h.extend(windows(client, &r.base(), &r.t.query_token, "1h", range.0, range.1).await);
                }
                let have_h = windows(client, global, token, "1h", range.0, range.1).await;
                if have_h == want_h {
                    return want.len();
                }
                last = format!("1h differs: global {have_h:?} regions {want_h:?}");
            } else {
                let missing = want.iter().filter(|(k, v)| have.get(*k) != Some(*v)).count();
                let extra = have.keys().filter(|k| !want.contains_key(*k)).count();
                last = format!(
                    "1m: {missing} of {} regional windows not (yet) equal in the global tier, {extra} extra",
                    want.len()
                );
            }
        } else {
            last = format!("queues: uplink A {a:?}, uplink B {b:?}, global {g:?}");
        }
        assert!(Instant::now() < deadline, "the global tier did not converge: {last}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn exact_p95(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * 0.95).floor() as usize]
}

#[actix_rt::test]
async fn regions_roll_up_into_the_global_tier_exactly_once_through_cuts_kills_and_replays() {
    let _g = BROKER.lock().await;
    let brokers = Brokers::start();
    let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
    let prefix = unique_prefix("fed");
    let relay = Relay::start(GLOBAL).await;
    let mut a = start_region("region-a", REGION_A, &prefix, &amqp(relay.port)).await;
    let mut b = start_region("region-b", REGION_B, &prefix, &amqp(GLOBAL)).await;

    // the global tier: its own store, consuming the global broker
    let gdir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[bus]\nkind = \"rabbitmq\"\n\n[rabbitmq]\nuris = [\"{}\"]\nprefix = \"{prefix}\"\nreconnect_max_ms = 1000\n",
        amqp(GLOBAL)
    );
    let (gconfig, _, gtoken) = write_config(gdir.path(), &extra);
    let gport = free_port();
    let gbase = format!("http://127.0.0.1:{gport}");
    let mut global = spawn_global(&gconfig, gport);
    wait_ready(&client, &gbase).await;

    // the shovels run (the management API of each region)
    for (port, r) in [(REGION_A, "region-a"), (REGION_B, "region-b")] {
        eventually(60, "shovel running", || async {
            let list = mgmt(&client, port, "/shovels/%2F").await;
            let name = netqoe::rabbit::federation::shovel_name(&prefix, r);
            list.as_array()?.iter().any(|s| s["name"] == name.as_str() && s["state"] == "running").then_some(())
        })
        .await;
    }

    let base_ms = base_ms();
    let range = (base_ms - 3_600_000, base_ms + 3 * 3_600_000);
    let mut rng = Rng(7);
    let mut samples: BTreeMap<(String, i64), Vec<f64>> = BTreeMap::new();
    for _ in 0..6 {
        assert!(a.round(base_ms, &mut rng, &mut samples).await);
        assert!(b.round(base_ms, &mut rng, &mut samples).await);
    }
    let n = converged(&client, &[&a, &b], &gbase, &gtoken, &prefix, range).await;
    eprintln!("before the cut: {n} 1m windows in the global tier equal the regions'");

    // 1. region A's uplink cut for 60 s under load
    let names = netqoe::rabbit::federation::FederationNames::new(&prefix);
    relay.cut();
    let cut_at = Instant::now();
    let mut max_buffered = 0;
    let mut rounds = 0;
    while cut_at.elapsed() < Duration::from_secs(60) {
        assert!(a.round(base_ms, &mut rng, &mut samples).await, "region A refused events while cut off");
        assert!(b.round(base_ms, &mut rng, &mut samples).await);
        rounds += 1;
        max_buffered = max_buffered.max(depth(REGION_A, &names.uplink_queue).await.unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    let a_alone = windows(&client, &a.base(), &a.t.query_token, "1m", range.0, range.1).await;
    let g_during = windows(&client, &gbase, &gtoken, "1m", range.0, range.1).await;
    let a_in_global = g_during.keys().filter(|k| k.0 == "region-a").count();
    eprintln!(
        "cut 60 s: {rounds} rounds; region A holds {} windows, the global tier {a_in_global} of them; \
         A's uplink queue buffered up to {max_buffered} messages",
        a_alone.len()
    );
    assert!(max_buffered > 0, "nothing was buffered while the uplink was cut");
    let st = netqoe::rabbit::federation::status(&a.t.app.state.cfg).await.unwrap();
    eprintln!("federate status while cut: {st:?}");
    assert!(st.state != "running" && st.queued > 0, "{st:?}");
    assert!(a_in_global < a_alone.len(), "region A's new windows reached the global tier through a cut link");
    relay.restore();
    let n = converged(&client, &[&a, &b], &gbase, &gtoken, &prefix, range).await;
    eprintln!(
        "after the cut: {n} 1m windows equal, {:.1} s after the link came back",
        cut_at.elapsed().as_secs_f64() - 60.0
    );

    // (the management API's queue figures are sampled every few seconds)
    eventually(30, "federate status: running, nothing waiting", || async {
        let st = netqoe::rabbit::federation::status(&a.t.app.state.cfg).await.ok()?;
        (st.state == "running" && st.queued == 0).then_some(())
    })
    .await;

    // 2. the global process SIGKILLed under load, and restarted
    for i in 0..8 {
        assert!(a.round(base_ms, &mut rng, &mut samples).await);
        assert!(b.round(base_ms, &mut rng, &mut samples).await);
        if i == 3 {
            global.kill();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let queued = depth(GLOBAL, &names.global_queue).await;
    eprintln!("global killed: {queued:?} messages wait in the global queue");
    global = spawn_global(&gconfig, gport);
    wait_ready(&client, &gbase).await;
    let n = converged(&client, &[&a, &b], &gbase, &gtoken, &prefix, range).await;
    eprintln!("after the restart: {n} 1m windows equal");

    // 3. replays: region A's stored windows sent again at their revision and one below it, with
    //    another window's content; and one undecodable message
    let before = windows(&client, &gbase, &gtoken, "1m", range.0, range.1).await;
    let keys: Vec<netqoe_domain::WindowKey> = a_alone
        .keys()
        .take(20)
        .map(|(_, probe, target, start)| netqoe_domain::WindowKey {
            probe: probe.clone(),
            target: target.clone(),
            metric: netqoe_domain::Metric::Rtt,
            tier: netqoe_domain::Tier::M1,
            start_ms: chrono::DateTime::parse_from_rfc3339(start).unwrap().timestamp_millis(),
        })
        .collect();
    let stored = a.t.app.state.store.load_windows(&keys).await.unwrap();
    assert_eq!(stored.len(), keys.len());
    let bytes = netqoe_domain::federation::UplinkBatch {
        region: "region-a".into(),
        committed_ms: 0,
        windows: stored
            .iter()
            .map(|r| netqoe_domain::federation::WindowRevision {
                key: r.key.clone(),
                revision: r.revision,
                closed: r.closed,
                agg: r.agg.clone(),
            })
            .collect(),
    }
    .encode()
    .len();
    let samples_per_window = stored.iter().map(|r| r.agg.count).sum::<u64>() as f64 / stored.len() as f64;
    eprintln!(
        "uplink size: {:.0} bytes a window revision ({samples_per_window:.0} samples a window)",
        bytes as f64 / stored.len() as f64
    );
    let replay = |rev_shift: u64, other: bool| netqoe_domain::federation::UplinkBatch {
        region: "region-a".into(),
        committed_ms: 0,
        windows: stored
            .iter()
            .enumerate()
            .map(|(i, r)| netqoe_domain::federation::WindowRevision {
                key: r.key.clone(),
                revision: r.revision.saturating_sub(rev_shift),
                closed: r.closed,
                agg: if other { stored[(i + 1) % stored.len()].agg.clone() } else { r.agg.clone() },
            })
            .collect(),
    };
    let conn = lapin::Connection::connect(&amqp(GLOBAL), lapin::ConnectionProperties::default()).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(Default::default()).await.unwrap();
    for payload in
        [replay(0, false).encode(), replay(1, true).encode(), replay(0, true).encode(), b"NQF1 not a batch".to_vec()]
    {
        let c = ch
            .basic_publish(
                &names.exchange,
                "",
                Default::default(),
                &payload,
                lapin::BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap();
        assert!(c.await.unwrap().is_ack());
    }
    let _ = conn.close(200, "done").await;
    eventually(60, "the replays consumed and the poison dead-lettered", || async {
        (depth(GLOBAL, &names.global_queue).await == Some(0) && depth(GLOBAL, &names.dlq).await == Some(1))
            .then_some(())
    })
    .await;
    let after = windows(&client, &gbase, &gtoken, "1m", range.0, range.1).await;
    assert_eq!(before, after, "a replayed revision changed the global tier");
    let n = converged(&client, &[&a, &b], &gbase, &gtoken, &prefix, range).await;

    // 4. the regions' probes, as the global tier sees them (their events are two hours old:
    //    listed, and offline)
    let probes = get(&client, &format!("{gbase}/v1/probes"), Some(&gtoken)).await.body;
    let mut seen: Vec<(String, String, String)> = probes["probes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let s = |k: &str| p[k].as_str().unwrap_or_default().to_string();
            (s("region"), s("probe"), s("status"))
        })
        .collect();
    seen.sort();
    let want: Vec<(String, String, String)> = ["region-a", "region-b"]
        .iter()
        .flat_map(|r| (0..4).map(move |i| (r.to_string(), format!("probe-{i}"), "offline".to_string())))
        .collect();
    assert_eq!(seen, want, "{probes}");

    // 5. fleet answers across regions
    let url = format!("{gbase}/v1/rollups?metric=rtt&tier=1h&group_by=target&from={}&to={}", range.0, range.1);
    let fleet = get(&client, &url, Some(&gtoken)).await;
    assert_eq!(fleet.status, 200, "{}", fleet.body);
    let fleet = fleet.body;
    let mut checked = 0;
    let mut worst: f64 = 0.0;
    for w in fleet["rollups"].as_array().unwrap() {
        let start =
            chrono::DateTime::parse_from_rfc3339(w["window_start"].as_str().unwrap()).unwrap().timestamp_millis();
        let target = w["target"].as_str().unwrap().to_string();
        let all =
            samples.get_mut(&(target.clone(), start)).unwrap_or_else(|| panic!("no samples for {target} {start}"));
        assert_eq!(w["count"].as_u64().unwrap(), all.len() as u64, "{target} {start}: count");
        let exact = exact_p95(all);
        let got = w["p95"].as_f64().unwrap();
        let err = (got - exact).abs() / exact;
        worst = worst.max(err);
        assert!(err <= 0.01, "{target} {start}: global fleet p95 {got} vs exact {exact} ({:.3} %)", err * 100.0);
        checked += 1;
    }
    assert!(checked >= 2);
    // per region: what each region holds in total
    let url = format!("{gbase}/v1/rollups?metric=rtt&tier=1h&group_by=region&from={}&to={}", range.0, range.1);
    let by_region = get(&client, &url, Some(&gtoken)).await.body;
    for (r, t) in [("region-a", &a), ("region-b", &b)] {
        let global_total: u64 = by_region["rollups"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|w| w["region"] == r)
            .map(|w| w["count"].as_u64().unwrap())
            .sum();
        let own = total_count(&client, &t.base(), &t.t.query_token, "rtt", range.0, range.1).await;
        assert_eq!(global_total, own, "{r}: group_by=region total");
        let url = format!(
            "{gbase}/v1/rollups?metric=rtt&tier=1m&region={r}&probe=probe-0&from={}&to={}&limit=5000",
            range.0, range.1
        );
        let one = get(&client, &url, Some(&gtoken)).await.body;
        let rows = one["rollups"].as_array().unwrap();
        assert!(!rows.is_empty() && rows.iter().all(|w| w["region"] == r && w["probe"] == "probe-0"));
    }
    let ma = get_text(&client, &format!("{}/metrics", a.base())).await;
    let mb = get_text(&client, &format!("{}/metrics", b.base())).await;
    let mg = get_text(&client, &format!("{gbase}/metrics")).await;
    eprintln!(
        "figures: {n} 1m windows; revisions sent A {:?}, B {:?}; received by the restarted global process {:?}; \
         max buffered during the cut {max_buffered} messages; fleet p95 worst error {:.3} % over {checked} (target, hour) groups",
        metric_value(&ma, "netqoe_federation_windows_sent_total"),
        metric_value(&mb, "netqoe_federation_windows_sent_total"),
        metric_value(&mg, "netqoe_federation_windows_received_total"),
        worst * 100.0
    );
    global.kill();
    a.t.app.shutdown().await.unwrap();
    b.t.app.shutdown().await.unwrap();
    drop(relay);
    drop(brokers);
}
