//! Helpers shared by the integration tests: an in-process netqoe on a port-0 listener with a
//! temporary data directory, probe and query tokens, and an HTTP client.
#![allow(dead_code)]

use std::time::Duration;

use netqoe::app::RunningApp;
use netqoe::config::{Config, ProbeEntry, QueryToken};
use serde_json::{json, Value};

pub struct TestApp {
    pub app: RunningApp,
    pub dir: tempfile::TempDir,
    /// (probe id, token)
    pub probes: Vec<(String, String)>,
    pub query_token: String,
    pub revoked_token: String,
    pub client: awc::Client,
}

/// Config for tests: given env-style overrides, `n` probes plus a revoked one and a query token.
pub fn test_config(
    dir: &std::path::Path,
    n: usize,
    overrides: &[(&str, &str)],
) -> (Config, Vec<(String, String)>, String, String) {
    let mut env: Vec<(String, String)> = vec![
        ("NETQOE__STORAGE__DATA_DIR".into(), dir.display().to_string()),
        ("NETQOE__HTTP__WORKERS".into(), "2".into()),
    ];
    env.extend(overrides.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let mut cfg = Config::load_from(None, env).expect("test config is valid");
    let mut probes = Vec::new();
    for i in 0..n {
        let (token, digest) = netqoe::auth::mint(netqoe::auth::PROBE_PREFIX);
        let id = format!("probe-{i}");
        cfg.probes.push(ProbeEntry {
            id: id.clone(),
            token_sha256: digest.into(),
            revoked: false,
            labels: Default::default(),
        });
        probes.push((id, token));
    }
    let (revoked, digest) = netqoe::auth::mint(netqoe::auth::PROBE_PREFIX);
    cfg.probes.push(ProbeEntry {
        id: "revoked-probe".into(),
        token_sha256: digest.into(),
        revoked: true,
        labels: Default::default(),
    });
    let (query, digest) = netqoe::auth::mint(netqoe::auth::QUERY_PREFIX);
    cfg.query_tokens.push(QueryToken { name: "tests".into(), token_sha256: digest.into(), revoked: false });
    assert!(cfg.validate().is_empty(), "{:?}", cfg.validate());
    (cfg, probes, query, revoked)
}

/// A test app configured (`test_config` in a fresh data directory) but not started: change
/// `cfg`, or start it on a chosen listener (again, after a restart, with `cfg.clone()`).
pub struct Prepared {
    pub dir: tempfile::TempDir,
    pub cfg: Config,
    pub probes: Vec<(String, String)>,
    pub query_token: String,
    pub revoked_token: String,
}

pub fn prepare(n: usize, overrides: &[(&str, &str)]) -> Prepared {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, probes, query_token, revoked_token) = test_config(dir.path(), n, overrides);
    Prepared { dir, cfg, probes, query_token, revoked_token }
}

impl Prepared {
    pub async fn start_on(self, listener: std::net::TcpListener) -> TestApp {
        self.start_with_clock(listener, netqoe_actors::Clock::system()).await
    }

    /// Starts on `listener` with every role, the whole process reading `clock`.
    pub async fn start_with_clock(
        self,
        listener: impl Into<netqoe::app::Listeners>,
        clock: netqoe_actors::Clock,
    ) -> TestApp {
        assert!(self.cfg.validate().is_empty(), "{:?}", self.cfg.validate());
        let app = netqoe::app::start_with_clock(self.cfg, listener, netqoe::app::Roles::ALL, clock)
            .await
            .expect("app starts");
        let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
        let (dir, probes, query_token, revoked_token) = (self.dir, self.probes, self.query_token, self.revoked_token);
        TestApp { app, dir, probes, query_token, revoked_token, client }
    }

    /// Starts on a free loopback port.
    pub async fn start(self) -> TestApp {
        self.start_on(std::net::TcpListener::bind("127.0.0.1:0").unwrap()).await
    }
}

pub async fn start(n: usize, overrides: &[(&str, &str)]) -> TestApp {
    prepare(n, overrides).start().await
}

/// `start` with owned overrides (as built by `rabbit_overrides`).
pub async fn start_with(n: usize, overrides: &[(String, String)]) -> TestApp {
    let borrowed: Vec<(&str, &str)> = overrides.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    start(n, &borrowed).await
}

/// Minute-aligned epoch ms, two hours back from now (inside every acceptance horizon).
pub fn base_ms() -> i64 {
    let now = netqoe_actors::now_ms();
    (now - 2 * 3_600_000) / 3_600_000 * 3_600_000
}

pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Deterministic pseudo-random generator (xorshift), so the tests need no seed management.
pub struct Rng(pub u64);
impl Rng {
    pub fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    /// A skewed, RTT-like sample around `median` ms.
    pub fn rtt(&mut self, median: f64) -> f64 {
        let u = self.next_f64().max(1e-9);
        let v = median * (1.0 + 0.5 * (-u.ln() - 0.69));
        (v.max(0.05) * 1000.0).round() / 1000.0
    }
}

pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub headers: awc::http::header::HeaderMap,
}

pub async fn post(client: &awc::Client, url: &str, token: Option<&str>, content_type: &str, body: Vec<u8>) -> Resp {
    try_post(client, url, token, content_type, body).await.expect("request sent")
}

/// `post`, with a transport failure (no answer) returned rather than a panic.
pub async fn try_post(
    client: &awc::Client,
    url: &str,
    token: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
) -> Result<Resp, String> {
    let mut req = client.post(url).insert_header(("Content-Type", content_type));
    if let Some(t) = token {
        req = req.insert_header(("Authorization", format!("Bearer {t}")));
    }
    let mut res = req.send_body(body).await.map_err(|e| format!("request not answered: {e:?}"))?;
    let bytes = res.body().limit(64 << 20).await.map_err(|e| format!("body not read: {e:?}"))?;
    Ok(Resp {
        status: res.status().as_u16(),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        headers: res.headers().clone(),
    })
}

pub async fn get(client: &awc::Client, url: &str, token: Option<&str>) -> Resp {
    let mut req = client.get(url);
    if let Some(t) = token {
        req = req.insert_header(("Authorization", format!("Bearer {t}")));
    }
    let mut res = req.send().await.expect("request sent");
    let bytes = res.body().limit(64 << 20).await.expect("body read");
    Resp {
        status: res.status().as_u16(),
        body: serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into())),
        headers: res.headers().clone(),
    }
}

pub async fn get_text(client: &awc::Client, url: &str) -> String {
    let mut res = client.get(url).send().await.expect("request sent");
    let bytes = res.body().limit(64 << 20).await.expect("body read");
    String::from_utf8_lossy(&bytes).into_owned()
}

pub fn batch(events: &[Value]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "events": events })).unwrap()
}

/// Polls `f` until it returns Some, or panics after `secs`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if std::time::Instant::now() > deadline {
            panic!("timed out after {secs}s waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every window a `/v1/rollups` query (`url` with its parameters, no `limit`) answers, page after
/// page (following `next`).
pub async fn all_rollups(client: &awc::Client, url: &str, token: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = match &after {
            Some(a) => format!("{url}&limit=10000&after={a}"),
            None => format!("{url}&limit=10000"),
        };
        let r = get(client, &page, Some(token)).await;
        assert_eq!(r.status, 200, "{}", r.body);
        out.extend(r.body["rollups"].as_array().unwrap().iter().cloned());
        match r.body["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => return out,
        }
    }
}

/// Sum of `count` over all 1m rollups of a metric in a range (query API).
pub async fn total_count(client: &awc::Client, base: &str, token: &str, metric: &str, from: i64, to: i64) -> u64 {
    let url = format!("{base}/v1/rollups?metric={metric}&tier=1m&from={from}&to={to}");
    all_rollups(client, &url, token).await.iter().map(|w| w["count"].as_u64().unwrap()).sum()
}

/// Value of a Prometheus sample line `name{labels} value` (labels as written, or "" for none).
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok())
    })
}

/// A unique exchange/queue prefix for one broker test.
pub fn unique_prefix(tag: &str) -> String {
    format!("t{}-{}-{}.", std::process::id(), tag, netqoe_actors::now_ms() % 1_000_000)
}

/// Overrides selecting the RabbitMQ bus with this prefix and shard count.
pub fn rabbit_overrides(prefix: &str, shards: usize) -> Vec<(String, String)> {
    vec![
        ("NETQOE__BUS__KIND".into(), "rabbitmq".into()),
        ("NETQOE__RABBITMQ__PREFIX".into(), prefix.into()),
        ("NETQOE__RABBITMQ__SHARDS".into(), shards.to_string()),
        ("NETQOE__RABBITMQ__RECONNECT_MAX_MS".into(), "1000".into()),
    ]
}

pub const MGMT: &str = "http://127.0.0.1:15672/api";

/// GET on the RabbitMQ management API (guest/guest).
pub async fn mgmt_get(client: &awc::Client, path: &str) -> Value {
    let mut r = client.get(format!("{MGMT}{path}")).basic_auth("guest", "guest").send().await.expect("management API");
    let b = r.body().limit(64 << 20).await.unwrap();
    serde_json::from_slice(&b).unwrap_or(Value::Null)
}

/// Deletes every queue and exchange whose name starts with `prefix` (test clean-up).
pub async fn delete_prefix(client: &awc::Client, prefix: &str) {
    for kind in ["queues", "exchanges"] {
        let list = mgmt_get(client, &format!("/{kind}/%2F")).await;
        for q in list.as_array().cloned().unwrap_or_default() {
            let name = q["name"].as_str().unwrap_or_default();
            if name.starts_with(prefix) {
                let _ = client.delete(format!("{MGMT}/{kind}/%2F/{name}")).basic_auth("guest", "guest").send().await;
            }
        }
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts `netqoe --config CONFIG ARGS…` listening on `port`, with extra environment.
pub fn spawn_netqoe(
    config: &std::path::Path,
    args: &[&str],
    port: u16,
    env: &[(String, String)],
) -> std::process::Child {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_netqoe"));
    c.arg("--config").arg(config).args(args);
    c.env("NETQOE__HTTP__BIND", format!("127.0.0.1:{port}")).env("NETQOE__LOG__LEVEL", "warn");
    for (k, v) in env {
        c.env(k, v);
    }
    c.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::inherit()).spawn().expect("netqoe starts")
}

pub async fn wait_ready(client: &awc::Client, base: &str) {
    eventually(60, "process ready", || async {
        match client.get(format!("{base}/readyz")).send().await {
            Ok(r) if r.status().as_u16() == 200 => Some(()),
            _ => None,
        }
    })
    .await;
}

/// Writes a config file with one probe and one query token; returns (path, probe token, query token).
pub fn write_config(dir: &std::path::Path, extra: &str) -> (std::path::PathBuf, String, String) {
    let (probe_token, probe_hash) = netqoe::auth::mint(netqoe::auth::PROBE_PREFIX);
    let (query_token, query_hash) = netqoe::auth::mint(netqoe::auth::QUERY_PREFIX);
    let path = dir.join("netqoe.toml");
    let text = format!(
        "{extra}\n[storage]\ndata_dir = {:?}\n\n[[probes]]\nid = \"p1\"\ntoken_sha256 = \"{probe_hash}\"\n\n[[query_tokens]]\nname = \"t\"\ntoken_sha256 = \"{query_hash}\"\n",
        dir.join("data").display().to_string()
    );
    std::fs::write(&path, text).unwrap();
    (path, probe_token, query_token)
}

/// A child process killed when the guard drops (so a failing test leaves no orphan behind).
pub struct ChildGuard(pub std::process::Child);

impl ChildGuard {
    pub fn id(&self) -> u32 {
        self.0.id()
    }
    /// SIGKILL now and reap.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Serialises the tests of one binary that use the shared broker (alarms, restarts, clusters).
pub static BROKER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Stored 1m RTT sample counts per window start (query API).
pub async fn stored_by_minute(
    client: &awc::Client,
    url: &str,
    token: &str,
    from: i64,
    to: i64,
) -> std::collections::BTreeMap<i64, u64> {
    all_rollups(client, &format!("{url}/v1/rollups?metric=rtt&from={from}&to={to}"), token)
        .await
        .iter()
        .map(|w| {
            let s =
                chrono::DateTime::parse_from_rfc3339(w["window_start"].as_str().unwrap()).unwrap().timestamp_millis();
            (s, w["count"].as_u64().unwrap())
        })
        .collect()
}

/// `n` UDP events of `probe` from `from_seq`, one per second from `base`, alternating two targets.
pub fn events_for(probe: &str, base: i64, from_seq: i64, n: i64, rng: &mut Rng) -> Vec<Value> {
    (from_seq..from_seq + n)
        .map(|seq| {
            let target = if seq % 2 == 0 { "a.example" } else { "b.example" };
            json!({"event_id": format!("{probe}-{seq}"), "seq": seq, "ts": rfc3339(base + seq * 1_000), "target": target,
                   "kind": "udp", "rtt_samples_ms": [rng.rtt(20.0), rng.rtt(25.0), rng.rtt(30.0)], "sent": 4, "received": 3})
        })
        .collect()
}

/// The rollups a query API returns, keyed without revision/closed (which legitimately differ).
pub async fn rollup_map(
    client: &awc::Client,
    base_url: &str,
    token: &str,
    from: i64,
    to: i64,
) -> std::collections::BTreeMap<String, Value> {
    let mut out = std::collections::BTreeMap::new();
    for tier in ["1m", "1h"] {
        let url = format!("{base_url}/v1/rollups?tier={tier}&from={}&to={to}", from - 86_400_000);
        for mut w in all_rollups(client, &url, token).await {
            let o = w.as_object_mut().unwrap();
            o.remove("revision");
            o.remove("closed");
            let key = format!("{}|{}|{}|{}|{}", o["tier"], o["probe"], o["target"], o["metric"], o["window_start"]);
            out.insert(key, w);
        }
    }
    out
}

/// The differential check of two deployments: posts the same events (seeded, 6 batches of 50 per
/// probe) to both, waits until both have aggregated every sample, and asserts that both query APIs
/// return the same 1m and 1h windows (revision/closed aside). Returns (windows, samples).
pub async fn same_rollups(a: &TestApp, b: &TestApp, seed: u64) -> (usize, u64) {
    let base = base_ms() + 5 * 60_000;
    for app in [a, b] {
        let mut rng = Rng(seed);
        for (pi, (probe, token)) in app.probes.iter().enumerate() {
            for batch_no in 0..6 {
                let evs = events_for(&format!("probe-{pi}"), base, batch_no * 50, 50, &mut rng);
                let r =
                    post(&app.client, &app.app.url("/v1/events"), Some(token), "application/json", batch(&evs)).await;
                assert_eq!(r.status, 202, "{probe}: {}", r.body);
            }
        }
    }
    assert_eq!(a.probes.len(), b.probes.len(), "both deployments need the same probes");
    // 300 events per probe, 3 RTT samples each
    let total = a.probes.len() as u64 * 300 * 3;
    let (from, to) = (base, base + 600_000);
    let mut maps = Vec::new();
    for app in [a, b] {
        let url = format!("http://{}", app.app.addr);
        eventually(60, "all samples aggregated", || async {
            (total_count(&app.client, &url, &app.query_token, "rtt", from, to).await == total).then_some(())
        })
        .await;
        maps.push(rollup_map(&app.client, &url, &app.query_token, from, to).await);
    }
    let (x, y) = (&maps[0], &maps[1]);
    assert!(!x.is_empty());
    assert_eq!(x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>(), "same windows");
    for (k, v) in x {
        assert_eq!(Some(v), y.get(k), "window {k} differs");
    }
    (x.len(), total)
}

/// An open incident blaming `subject` for loss, opened at `opened_ms` (tests adjust what they need).
pub fn sample_incident(
    id: &str,
    scope: netqoe_domain::diagnosis::Scope,
    subject: &[(&str, &str)],
    opened_ms: i64,
) -> netqoe_domain::diagnosis::Incident {
    use netqoe_domain::diagnosis::{Incident, IncidentState, MetricEvidence};
    Incident {
        id: id.into(),
        state: IncidentState::Open,
        scope,
        subject: subject.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        metrics: ["loss".to_string()].into(),
        opened_ms,
        first_seen_ms: opened_ms - 180_000,
        updated_ms: opened_ms,
        resolved_ms: None,
        peak_severity: 50.0,
        mos_impact: Some(3.4),
        affected_probes: Default::default(),
        affected_targets: Default::default(),
        evidence: [("loss".to_string(), MetricEvidence { baseline: 0.002, observed: 1.0 })].into(),
        confidence: 1.0,
        p_value: None,
        runner_up: None,
    }
}

/// A validated ICMP event with one 1 ms sample (for tests that talk to a bus or store directly).
pub fn icmp_event(id: &str, seq: u64, ts_ms: i64) -> netqoe_domain::Event {
    netqoe_domain::Event {
        rtt_samples_ms: vec![1.0],
        ..netqoe_domain::Event::new(id, seq, ts_ms, "t", netqoe_domain::Kind::Icmp)
    }
}

/// A fresh self-signed certificate (RSA 2048, SHA-256) for `cn` and 127.0.0.1, valid from now for
/// `days` days, and its key.
pub fn self_signed_cert(cn: &str, days: u32) -> (openssl::x509::X509, openssl::pkey::PKey<openssl::pkey::Private>) {
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;
    use openssl::x509::extension::SubjectAlternativeName;
    use openssl::x509::{X509Builder, X509NameBuilder};
    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&BigNum::from_u32(1).unwrap().to_asn1_integer().unwrap()).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
    b.set_not_after(&Asn1Time::days_from_now(days).unwrap()).unwrap();
    let san = SubjectAlternativeName::new().dns(cn).ip("127.0.0.1").build(&b.x509v3_context(None, None)).unwrap();
    b.append_extension(san).unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    (b.build(), key)
}

/// A keyspace of its own on the CQL server named by `NETQOE_SCYLLA_URI`, migrated; dropped by
/// the guard.
pub struct ScyllaKeyspace(String, Option<netqoe::config::ScyllaConfig>);

impl ScyllaKeyspace {
    /// Drops the keyspace from a thread with its own runtime and its own session: a session
    /// belongs to the runtime that made it, and the test's (single-threaded) runtime is blocked
    /// in this drop, so using that one would wait for the request timeout and drop nothing.
    fn drop_now(&mut self) {
        if let Some(cfg) = self.1.take() {
            let ks = self.0.clone();
            let dropped = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async {
                    let session = netqoe::scylla::connect(&cfg).await.map_err(|e| e.to_string())?;
                    session
                        .query_unpaged(format!("DROP KEYSPACE IF EXISTS {ks}"), ())
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok::<(), String>(())
                })
            })
            .join();
            match dropped {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("keyspace {} not dropped: {e}", self.0),
                Err(_) => eprintln!("keyspace {} not dropped: the dropping thread panicked", self.0),
            }
        }
    }
}

impl Drop for ScyllaKeyspace {
    fn drop(&mut self) {
        self.drop_now();
    }
}

pub async fn scylla_store() -> (std::sync::Arc<dyn netqoe_actors::store::RollupStore>, ScyllaKeyspace) {
    scylla_store_with(None).await
}

/// `scylla.contact_points` for the CQL server the suite runs against: `NETQOE_SCYLLA_URI`
/// (`host:port[,host:port…]`, set by scripts/test.sh), as the configuration variable a `netqoe`
/// reads — the binary itself never reads `NETQOE_SCYLLA_URI`.
pub fn cql_contact_points() -> (String, String) {
    let uri = std::env::var("NETQOE_SCYLLA_URI").expect("NETQOE_SCYLLA_URI must be set to run the CQL tests");
    let list: Vec<&str> = uri.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    ("NETQOE__SCYLLA__CONTACT_POINTS".to_string(), serde_json::to_string(&list).unwrap())
}

/// A fresh, migrated keyspace on the CQL server of `NETQOE_SCYLLA_URI`: its configuration, the
/// `NETQOE__*` variables that select it (for a child `netqoe`), and the guard that drops it.
pub async fn scylla_keyspace() -> (netqoe::config::Config, Vec<(String, String)>, ScyllaKeyspace) {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let ks = format!("netqoe_contract_{}_{}", std::process::id(), N.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let env = vec![
        cql_contact_points(),
        ("NETQOE__SCYLLA__KEYSPACE".to_string(), ks.clone()),
        ("NETQOE__SCYLLA__REPLICATION".to_string(), "SimpleStrategy".to_string()),
        ("NETQOE__SCYLLA__READ_CONSISTENCY".to_string(), "ONE".to_string()),
        ("NETQOE__SCYLLA__WRITE_CONSISTENCY".to_string(), "ONE".to_string()),
    ];
    let cfg = netqoe::config::Config::load_from(None, env.clone()).unwrap();
    netqoe::scylla::migrate(&cfg).await.expect("migrate");
    let guard = ScyllaKeyspace(ks, Some(cfg.scylla.clone()));
    (cfg, env, guard)
}

/// `scylla_store` with the given retention (TTLs) instead of the configured one.
pub async fn scylla_store_with(
    retention: Option<netqoe_actors::store::Retention>,
) -> (std::sync::Arc<dyn netqoe_actors::store::RollupStore>, ScyllaKeyspace) {
    let (cfg, _, guard) = scylla_keyspace().await;
    let retention = retention.unwrap_or(cfg.pipeline_config().retention);
    let store = netqoe::scylla::store::ScyllaStore::connect(&cfg.scylla, retention).await.expect("connect");
    (std::sync::Arc::new(store) as std::sync::Arc<dyn netqoe_actors::store::RollupStore>, guard)
}

/// Resident memory of process `pid`, KiB (0 when gone).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The load and its oracle: 50 events per batch, one batch at a time.
pub struct Load {
    pub url: String,
    pub token: String,
    pub base: i64,
    pub rng: Rng,
    pub oracle: std::collections::BTreeMap<i64, u64>,
    pub accepted: u64,
    pub refused: u64,
    /// Batches that got no answer at all (re-sent).
    pub unanswered: u64,
    pub seq: i64,
    pub rss_peak: u64,
    pub pid: u32,
}

impl Load {
    pub async fn one(&mut self, client: &awc::Client) {
        let events: Vec<_> = (0..50)
            .map(|k| {
                let s = self.seq + k;
                serde_json::json!({"event_id": format!("e{s}"), "seq": s, "ts": rfc3339(self.base + s * 20), "target": "t1",
                       "kind": "icmp", "rtt_samples_ms": [self.rng.rtt(20.0)], "sent": 1, "received": 1})
            })
            .collect();
        let t0 = std::time::Instant::now();
        // A batch without an answer is not counted and is sent again with the same ids, as a
        // probe does: if it was in fact accepted, the re-send is deduplicated.
        let r = match try_post(client, &self.url, Some(&self.token), "application/json", batch(&events)).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("load: {e} after {:?} (not counted; re-sent)", t0.elapsed());
                self.unanswered += 1;
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                return;
            }
        };
        match r.status {
            202 => {
                for k in 0..50 {
                    let ts = self.base + (self.seq + k) * 20;
                    *self.oracle.entry(ts / 60_000 * 60_000).or_default() += 1;
                }
                self.accepted += 50;
                self.seq += 50;
            }
            503 => {
                assert!(r.headers.get("retry-after").is_some(), "a 503 says when to retry: {}", r.body);
                self.refused += 1;
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            s => panic!("ingest answered {s}: {}", r.body),
        }
        self.rss_peak = self.rss_peak.max(rss_kib(self.pid));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    /// Ready again (the driver reconnects by itself), then every accepted event in the CQL
    /// rollups, each once.
    pub async fn caught_up(&self, client: &awc::Client, base_url: &str, query_token: &str) {
        eventually(120, "ready again", || async {
            (get(client, &format!("{base_url}/readyz"), None).await.status == 200).then_some(())
        })
        .await;
        let (from, to) = (self.base, self.base + 60 * 60_000);
        eventually(120, "all accepted events in the CQL rollups", || async {
            (total_count(client, base_url, query_token, "rtt", from, to).await == self.accepted).then_some(())
        })
        .await;
        let got = stored_by_minute(client, base_url, query_token, from, to).await;
        assert_eq!(got, self.oracle, "per window: the accepted events, each once");
        let r = get(client, &format!("{base_url}/readyz"), None).await;
        assert_eq!(r.status, 200, "ready again: {}", r.body);
    }
}

/// A child `netqoe run --store scylla` on a fresh keyspace of the local test server, for the CQL
/// fault tests: the server's pid (`NETQOE_CASSANDRA_PID`), the process, its base URL, a client,
/// the query token, a `Load` aimed at it, and the guards to keep.
pub struct CqlFaultLab {
    pub cassandra: i32,
    pub child: ChildGuard,
    pub base_url: String,
    pub client: awc::Client,
    pub query_token: String,
    pub load: Load,
    pub keyspace: ScyllaKeyspace,
    pub dir: tempfile::TempDir,
}

pub async fn cql_fault_lab() -> CqlFaultLab {
    // The pid file of the server's home first: an earlier test (tests/scylla_restart.rs) may
    // have restarted it under a new pid.
    let from_home = std::env::var("NETQOE_CASSANDRA_HOME")
        .ok()
        .and_then(|h| std::fs::read_to_string(std::path::Path::new(&h).join("pid")).ok());
    let cassandra: i32 = from_home
        .or_else(|| std::env::var("NETQOE_CASSANDRA_PID").ok())
        .expect("NETQOE_CASSANDRA_HOME or NETQOE_CASSANDRA_PID must name the Cassandra of scripts/ensure-cassandra.sh")
        .trim()
        .parse()
        .expect("the Cassandra pid is a number");
    let (_, mut env, keyspace) = scylla_keyspace().await;
    env.push(("NETQOE__STORAGE__BACKEND".into(), "scylla".into()));
    env.push(("NETQOE__SCYLLA__REQUEST_TIMEOUT_MS".into(), "2000".into()));
    let dir = tempfile::tempdir().unwrap();
    let (config, probe_token, query_token) = write_config(dir.path(), "");
    let port = free_port();
    let child = ChildGuard(spawn_netqoe(&config, &["run"], port, &env));
    let base_url = format!("http://127.0.0.1:{port}");
    let client = awc::Client::builder().timeout(Duration::from_secs(20)).finish();
    wait_ready(&client, &base_url).await;
    let load = Load {
        url: format!("{base_url}/v1/events"),
        token: probe_token,
        base: base_ms() + 20 * 60_000,
        rng: Rng(7),
        oracle: std::collections::BTreeMap::new(),
        accepted: 0,
        refused: 0,
        unanswered: 0,
        seq: 0,
        rss_peak: 0,
        pid: child.id(),
    };
    CqlFaultLab { cassandra, child, base_url, client, query_token, load, keyspace, dir }
}
