//! `netqoe probe`: measures configured targets on a schedule and delivers the events to ingest.
//!
//! Invariants: `seq` and `event_id` come from a counter persisted before use (blocks of
//! `SEQ_BLOCK`), so a restarted probe never reuses one and ingest dedups resends; a batch that
//! ingest did not acknowledge is kept in an on-disk spool (one file per batch, named by its
//! first seq) and re-sent in order; the spool is bounded (oldest dropped first, counted).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use netqoe_domain::{Kind, Status, WireBatch, WireEvent};
use serde::{Deserialize, Serialize};

/// Seq numbers reserved per write of the state file.
const SEQ_BLOCK: u64 = 1000;
/// Measurements in flight at once.
const MAX_CONCURRENT: usize = 16;

mod metrics {
    use std::sync::LazyLock;

    use netqoe_actors::metrics::{counter, counter_vec, gauge, histogram};
    use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge};

    pub static MEASUREMENTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
        counter_vec(
            "netqoe_probe_measurements_total",
            "Measurements run by the probe, by kind and outcome",
            &["kind", "outcome"],
        )
    });
    pub static SPOOL_DEPTH: LazyLock<IntGauge> = LazyLock::new(|| {
        gauge("netqoe_probe_spool_depth", "Batches in the probe's spool, not yet acknowledged by ingest")
    });
    pub static SPOOL_DROPPED: LazyLock<IntCounter> = LazyLock::new(|| {
        counter("netqoe_probe_spool_dropped_total", "Batches dropped from a full spool (oldest first)")
    });
    pub static POST_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
        histogram(
            "netqoe_probe_post_seconds",
            "Latency of the probe's POSTs to ingest",
            &[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0],
        )
    });
    pub static EVENTS_REFUSED: LazyLock<IntCounter> = LazyLock::new(|| {
        counter(
            "netqoe_probe_events_refused_total",
            "Events ingest refused as invalid (422): dropped from their batch, the rest of it re-sent",
        )
    });
    pub static POSTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
        counter_vec("netqoe_probe_posts_total", "POSTs to ingest, by outcome (accepted, retry, rejected)", &["outcome"])
    });

    pub fn init() {
        for k in ["udp", "tcp", "dns", "http", "tls", "icmp"] {
            for o in ["ok", "failed"] {
                MEASUREMENTS.with_label_values(&[k, o]);
            }
        }
        for o in ["accepted", "retry", "rejected"] {
            POSTS.with_label_values(&[o]);
        }
        LazyLock::force(&SPOOL_DEPTH);
        LazyLock::force(&SPOOL_DROPPED);
        LazyLock::force(&EVENTS_REFUSED);
        LazyLock::force(&POST_SECONDS);
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    /// Base URL of ingest, e.g. `http://ingest.example:8080`.
    pub ingest_url: String,
    /// The probe's token, or `token_file` holding it.
    #[serde(default)]
    pub token: crate::config::Secret,
    #[serde(default)]
    pub token_file: String,
    /// Where the spool and the seq counter live.
    pub state_dir: PathBuf,
    /// Name used in event ids.
    pub probe_id: String,
    #[serde(default = "d_batch_events")]
    pub batch_max_events: usize,
    #[serde(default = "d_batch_age")]
    pub batch_max_age_ms: u64,
    #[serde(default = "d_spool")]
    pub spool_max_batches: usize,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Serve the probe's own metrics on `http://<metrics_bind>/metrics` (empty: off).
    #[serde(default)]
    pub metrics_bind: String,
    pub targets: Vec<TargetConfig>,
}

fn d_batch_events() -> usize {
    100
}
fn d_batch_age() -> u64 {
    5000
}
fn d_spool() -> usize {
    10_000
}
fn d_interval() -> u64 {
    10
}
fn d_packets() -> u32 {
    10
}
fn d_timeout() -> u64 {
    2000
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// Target name as it appears in rollups.
    pub id: String,
    /// `udp` (STAMP toward a `netqoe reflector`), `tcp` (connect time), `dns` (resolution through
    /// hickory-resolver), `http` (GET timings), `tls` (handshake and certificate expiry), `icmp`.
    pub kind: String,
    /// `host:port`; an `http(s)://` URL for `http`; for `dns` the server `host:port`, or `system`
    /// for the name servers of /etc/resolv.conf; a host for `icmp`.
    pub address: String,
    #[serde(default = "d_interval")]
    pub interval_s: u64,
    /// Packets per UDP measurement.
    #[serde(default = "d_packets")]
    pub packets: u32,
    #[serde(default = "d_timeout")]
    pub timeout_ms: u64,
    /// `dns`: the name to resolve and the record type (A, AAAA, MX, TXT, NS, CNAME).
    #[serde(default)]
    pub name: String,
    #[serde(default = "d_record")]
    pub record: String,
    /// `http`, `tls`: verify the server certificate (chain and name) against the system roots.
    #[serde(default = "d_true")]
    pub tls_verify: bool,
}

fn d_true() -> bool {
    true
}

fn d_record() -> String {
    "A".into()
}

impl ProbeConfig {
    /// A probe of `targets` with every other setting at its file default.
    pub fn new(ingest_url: &str, token: &str, state_dir: &Path, probe_id: &str, targets: Vec<TargetConfig>) -> Self {
        ProbeConfig {
            ingest_url: ingest_url.into(),
            token: token.into(),
            token_file: String::new(),
            state_dir: state_dir.into(),
            probe_id: probe_id.into(),
            batch_max_events: d_batch_events(),
            batch_max_age_ms: d_batch_age(),
            spool_max_batches: d_spool(),
            labels: Default::default(),
            metrics_bind: String::new(),
            targets,
        }
    }

    pub fn load(path: &Path) -> anyhow::Result<Self> {
        Self::parse(path, true)
    }

    /// Reads and validates `path`; `read_token`: read `token_file` too (off for `--check` on a
    /// machine that does not hold the secret). The error lists every problem found, each naming
    /// its key.
    pub fn parse(path: &Path, read_token: bool) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
        let root: toml::Value =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message()))?;
        let (cfg, mut errors) = crate::config::deserialize_reporting_all::<ProbeConfig>(root);
        if let Some(mut cfg) = cfg {
            // one file for a fleet (e.g. a Kubernetes DaemonSet): ${VAR} in these comes from the environment
            let mut expand = |field: &str, v: &str| match expand_env(field, v) {
                Ok(v) => v,
                Err(e) => {
                    errors.push(e.to_string());
                    v.to_string()
                }
            };
            cfg.probe_id = expand("probe_id", &cfg.probe_id);
            cfg.token_file = expand("token_file", &cfg.token_file);
            cfg.state_dir = PathBuf::from(expand("state_dir", &cfg.state_dir.to_string_lossy()));
            if !read_token && cfg.token.is_empty() && !cfg.token_file.is_empty() {
                cfg.token = "(token_file, not read by --check)".into();
            }
            if cfg.token.is_empty() && !cfg.token_file.is_empty() {
                match std::fs::read_to_string(&cfg.token_file) {
                    Ok(t) => cfg.token = t.trim().into(),
                    Err(e) => errors.push(format!("token_file: {}: {e}", cfg.token_file)),
                }
            }
            errors.extend(cfg.problems());
            if errors.is_empty() {
                return Ok(cfg);
            }
        }
        let n = errors.len();
        let list: String = errors.iter().map(|e| format!("\n  - {e}")).collect();
        bail!("{}: {n} error(s):{list}", path.display())
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        match self.problems().as_slice() {
            [] => Ok(()),
            p => bail!("{}", p.join("; ")),
        }
    }

    /// Every semantic problem, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut e = Vec::new();
        if !(self.ingest_url.starts_with("http://") || self.ingest_url.starts_with("https://")) {
            e.push(format!("ingest_url: {:?} is not an http(s) URL", self.ingest_url));
        }
        if self.token.is_empty() {
            e.push("token: set token or token_file".into());
        }
        if self.targets.is_empty() {
            e.push("targets: at least one".into());
        }
        for (i, t) in self.targets.iter().enumerate() {
            if !matches!(t.kind.as_str(), "udp" | "tcp" | "dns" | "http" | "tls" | "icmp") {
                e.push(format!("targets[{i}].kind: {:?} is not supported (udp, tcp, dns, http, tls, icmp)", t.kind));
            }
            if t.kind == "tls"
                && t.address.rsplit_once(':').map_or(true, |(h, p)| h.is_empty() || p.parse::<u16>().is_err())
            {
                e.push(format!("targets[{i}].address: {:?} is not host:port", t.address));
            }
            if t.kind == "icmp" {
                if let Err(why) = crate::icmp::available() {
                    e.push(format!("targets[{i}].kind: icmp is unavailable on this machine: {why}"));
                }
            }
            if t.kind == "http" {
                if let Err(why) = parse_url(&t.address) {
                    e.push(format!("targets[{i}].address: {:?} is not an http:// or https:// URL ({why})", t.address));
                }
            }
            if t.kind == "dns" {
                if hickory_resolver::Name::from_ascii(&t.name).is_err() || t.name.trim_end_matches('.').is_empty() {
                    e.push(format!("targets[{i}].name: {:?} is not a host name to resolve", t.name));
                }
                if !dns_record_type_ok(&t.record) {
                    e.push(format!(
                        "targets[{i}].record: {:?} is not one of A, AAAA, MX, TXT, NS, CNAME, SOA, PTR, SRV, CAA",
                        t.record
                    ));
                }
                if t.address != "system" && !t.address.contains(':') {
                    e.push(format!(
                        "targets[{i}].address: {:?} is neither \"system\" nor a server host:port",
                        t.address
                    ));
                }
            }
            if t.interval_s == 0 {
                e.push(format!("targets[{i}].interval_s: must be at least 1"));
            }
            if t.packets == 0 || t.packets > 1000 {
                e.push(format!("targets[{i}].packets: must be 1..1000"));
            }
        }
        e
    }
}

/// Replaces each `${NAME}` in `value` with the environment variable NAME; an unset one is an
/// error naming `field`.
fn expand_env(field: &str, value: &str) -> anyhow::Result<String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let Some(end) = rest[i..].find('}') else { bail!("{field}: unterminated ${{ in {value:?}") };
        let name = &rest[i + 2..i + end];
        match std::env::var(name) {
            Ok(v) if !v.is_empty() => out.push_str(&v),
            _ => bail!("{field}: environment variable {name} (used as ${{{name}}}) is not set"),
        }
        rest = &rest[i + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_urls_parse_with_ipv6_literals_ports_and_queries() {
        let u = parse_url("http://[::1]:8080/health?x=1#frag").unwrap();
        assert_eq!((u.tls, u.host.as_str(), u.port), (false, "::1", 8080));
        assert_eq!((u.path.as_str(), u.host_header.as_str()), ("/health?x=1", "[::1]:8080"));
        let u = parse_url("https://Example.COM").unwrap();
        assert_eq!((u.tls, u.host.as_str(), u.port, u.path.as_str()), (true, "example.com", 443, "/"));
        assert_eq!(u.host_header, "example.com", "the default port is not named");
        let u = parse_url("http://10.0.0.1:81/a/b").unwrap();
        assert_eq!((u.host.as_str(), u.host_header.as_str()), ("10.0.0.1", "10.0.0.1:81"));
        for bad in ["ftp://example.com/", "example.com", "http://", "http://[::1/", "http://h:99999/"] {
            assert!(parse_url(bad).is_err(), "{bad} refused");
        }
    }

    /// An HTTP target on an IPv6 literal is measured (the hand-split URL took `[::1]` apart at
    /// its colons), and the request names the host and port as RFC 9110 asks.
    #[test]
    fn an_ipv6_http_target_is_measured_with_its_host_header() {
        use std::io::{Read, Write};
        let Ok(listener) = std::net::TcpListener::bind("[::1]:0") else {
            panic!("IPv6 loopback is needed for this test (::1)");
        };
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut c, _) = listener.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = c.read(&mut buf).unwrap();
                req.extend_from_slice(&buf[..n]);
            }
            c.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n").unwrap();
            String::from_utf8(req).unwrap()
        });
        let t = http_measure(&format!("http://[::1]:{port}/v6"), Duration::from_secs(5), true).expect("measured");
        assert_eq!(t.status, 204);
        let req = server.join().unwrap();
        assert!(req.starts_with("GET /v6 HTTP/1.1\r\n"), "{req}");
        assert!(req.contains(&format!("\r\nHost: [::1]:{port}\r\n")), "{req}");
    }

    #[test]
    fn environment_references_expand_or_name_the_field() {
        std::env::set_var("NETQOE_TEST_NODE", "node-7");
        assert_eq!(expand_env("probe_id", "probe-${NETQOE_TEST_NODE}").unwrap(), "probe-node-7");
        assert_eq!(expand_env("probe_id", "plain").unwrap(), "plain");
        let e = expand_env("token_file", "/t/${NETQOE_TEST_UNSET_VAR}").unwrap_err().to_string();
        assert!(e.contains("token_file") && e.contains("NETQOE_TEST_UNSET_VAR"), "{e}");
        assert!(expand_env("probe_id", "${OPEN").is_err());
    }

    /// A restarted probe never hands out a seq it handed out before (a reused seq means a reused
    /// event id: ingest would drop the new measurement as a duplicate of the old one).
    #[test]
    fn seqs_are_never_reused_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let mut seen = std::collections::HashSet::new();
        let mut last = 0;
        // runs that stop right after opening, inside a block, at a block's end, across blocks
        for takes in [0, 1, 5, SEQ_BLOCK as usize - 1, 1, SEQ_BLOCK as usize + 3, 0, 2] {
            let mut c = SeqCounter::open(dir.path()).unwrap();
            for i in 0..takes {
                let s = c.take().unwrap();
                assert!(seen.insert(s), "seq {s} handed out twice");
                assert!(s > last, "seqs grow: {s} after {last}");
                assert_eq!(c.starts_run(s), i == 0, "only a run's first seq starts the run");
                last = s;
            }
        }
        assert_eq!(seen.len(), 2 * SEQ_BLOCK as usize + 11);
        // what is on disk is the reservation: at least one past everything handed out
        let on_disk: u64 = std::fs::read_to_string(dir.path().join("seq")).unwrap().trim().parse().unwrap();
        assert!(on_disk > last);
    }

    #[test]
    fn a_corrupt_seq_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("seq"), "not a number").unwrap();
        let e = format!("{:#}", SeqCounter::open(dir.path()).err().expect("a corrupt counter must not restart at 1"));
        assert!(e.contains("seq") && e.contains("corrupt"), "{e}");
    }
}

/// The persisted seq counter.
pub struct SeqCounter {
    path: PathBuf,
    next: u64,
    reserved_until: u64,
    /// The first seq of this run (its event carries `run_start`).
    run_first: u64,
}

impl SeqCounter {
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("seq");
        let next = match std::fs::read_to_string(&path) {
            Ok(s) => s.trim().parse::<u64>().with_context(|| format!("{}: corrupt", path.display()))?,
            Err(_) => 1,
        };
        Ok(Self { path, next, reserved_until: next, run_first: next })
    }

    /// Whether `seq` is this run's first: its event tells ingest that the numbers the previous
    /// run reserved and did not deliver are abandoned, not missing.
    pub fn starts_run(&self, seq: u64) -> bool {
        seq == self.run_first
    }

    /// The next seq, never handed out before (across restarts).
    pub fn take(&mut self) -> anyhow::Result<u64> {
        if self.next >= self.reserved_until {
            self.reserved_until = self.next + SEQ_BLOCK;
            let tmp = self.path.with_extension("tmp");
            std::fs::write(&tmp, self.reserved_until.to_string())?;
            std::fs::rename(&tmp, &self.path)?;
        }
        let s = self.next;
        self.next += 1;
        Ok(s)
    }
}

/// The on-disk spool of unacknowledged batches.
pub struct Spool {
    dir: PathBuf,
    max: usize,
    /// Files in the spool (counted once at open, then kept up to date).
    len: usize,
    pub dropped: u64,
}

impl Spool {
    pub fn open(dir: &Path, max: usize) -> anyhow::Result<Self> {
        let dir = dir.join("spool");
        std::fs::create_dir_all(&dir)?;
        let mut s = Self { dir, max: max.max(1), len: 0, dropped: 0 };
        s.len = s.files().len();
        Ok(s)
    }

    fn files(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|r| r.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "json")).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    pub fn depth(&self) -> usize {
        self.len
    }

    /// Removes a delivered (or rejected) batch returned by `front`.
    pub fn remove(&mut self, path: &Path) -> std::io::Result<()> {
        std::fs::remove_file(path)?;
        self.len = self.len.saturating_sub(1);
        Ok(())
    }

    /// Keeps a batch (named by its first seq, so the order is the send order).
    pub fn push(&mut self, first_seq: u64, body: &[u8]) -> anyhow::Result<()> {
        let path = self.dir.join(format!("{first_seq:020}.json"));
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, body)?;
        std::fs::rename(&tmp, &path)?;
        self.len += 1;
        if self.len > self.max {
            let files = self.files();
            for old in &files[..files.len().saturating_sub(self.max)] {
                std::fs::remove_file(old)?;
                self.dropped += 1;
            }
            self.len = self.len.min(self.max);
        }
        Ok(())
    }

    /// Rewrites a spooled batch in place (same name, so the same place in the order).
    pub fn replace(&mut self, path: &Path, body: &[u8]) -> anyhow::Result<()> {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, body)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }

    /// The oldest batch.
    pub fn front(&self) -> Option<(PathBuf, Vec<u8>)> {
        let p = self.files().into_iter().next()?;
        let body = std::fs::read(&p).ok()?;
        Some((p, body))
    }
}

/// Outcome of one POST.
pub enum Posted {
    Accepted,
    /// Retry later (network error, 429, 5xx), after at least this long.
    Retry(Duration),
    /// The batch is invalid (4xx other than 429): it will never be accepted as sent. `refused`
    /// lists the events ingest named (`index`, `errors[].field`), which the probe drops while it
    /// re-sends the rest; empty when ingest named none (the whole batch is dropped).
    Rejected {
        why: String,
        refused: Vec<usize>,
    },
}

pub async fn post(client: &awc::Client, cfg: &ProbeConfig, body: Vec<u8>) -> Posted {
    let url = format!("{}/v1/events", cfg.ingest_url.trim_end_matches('/'));
    let res = client
        .post(url)
        .insert_header(("Authorization", format!("Bearer {}", cfg.token.expose())))
        .insert_header(("Content-Type", "application/json"))
        .send_body(body)
        .await;
    match res {
        Ok(mut r) if r.status().is_success() => {
            let _ = r.body().await;
            Posted::Accepted
        }
        Ok(mut r) => {
            let status = r.status().as_u16();
            let after = r
                .headers()
                .get("Retry-After")
                .and_then(|h| h.to_str().ok())
                .and_then(|s| s.parse::<u64>().ok())
                .map(Duration::from_secs);
            let text = String::from_utf8_lossy(&r.body().await.unwrap_or_default()).to_string();
            if status == 429 || status >= 500 {
                Posted::Retry(after.unwrap_or(Duration::from_secs(1)))
            } else {
                let refused = if status == 422 { refused_events(&text) } else { Vec::new() };
                Posted::Rejected { why: format!("HTTP {status}: {text}"), refused }
            }
        }
        Err(_) => Posted::Retry(Duration::from_millis(500)),
    }
}

/// The events a 422 problem body names (`index`, and each `errors[].field` as `events[N]…`),
/// sorted and without repeats.
pub fn refused_events(problem: &str) -> Vec<usize> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(problem) else { return Vec::new() };
    let mut out: Vec<usize> = v.get("index").and_then(|i| i.as_u64()).map(|i| i as usize).into_iter().collect();
    for e in v.get("errors").and_then(|e| e.as_array()).into_iter().flatten() {
        if let Some(i) = e.get("field").and_then(|f| f.as_str()).and_then(event_index) {
            out.push(i);
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// `events[12].rtt_ms` → Some(12).
fn event_index(field: &str) -> Option<usize> {
    let rest = field.strip_prefix("events[")?;
    rest[..rest.find(']')?].parse().ok()
}

/// The batch `body` without the events at `refused`, and how many went; None when nothing would
/// be left or be removed, or the body is not a batch (then the whole batch goes). The body is
/// handled as plain JSON: a refused event may be one the typed decoder cannot read.
fn without_refused(body: &[u8], refused: &[usize]) -> Option<(Vec<u8>, usize)> {
    let mut batch: serde_json::Value = serde_json::from_slice(body).ok()?;
    let events = batch.get_mut("events")?.as_array_mut()?;
    let before = events.len();
    let mut i = 0;
    events.retain(|_| {
        i += 1;
        refused.binary_search(&(i - 1)).is_err()
    });
    let dropped = before - events.len();
    if events.is_empty() || dropped == 0 {
        return None;
    }
    Some((serde_json::to_vec(&batch).ok()?, dropped))
}

/// Events in a batch body (0 when it is not one).
fn events_in(body: &[u8]) -> usize {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|b| b.get("events").and_then(|e| e.as_array()).map(Vec::len))
        .unwrap_or(0)
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// Measures one target once; returns the event as a probe posts it.
pub async fn measure(t: &TargetConfig, probe: &str, seq: u64) -> WireEvent {
    let ts = netqoe_actors::now_ms();
    to_event(t, probe, seq, ts, measured(t).await)
}

/// What one measurement found, before it becomes an event.
#[derive(Clone, Debug)]
pub enum Measured {
    /// A packet train (udp, icmp): the RTTs of the packets that came back.
    Train {
        samples: Vec<f64>,
        sent: u32,
        received: u32,
    },
    /// A packet train that could not be sent at all (no route, no name).
    Unsent {
        sent: u32,
    },
    /// `tcp`: the connect time, ms.
    Connect(f64),
    /// `dns`: the resolution time, ms.
    Resolved(f64),
    Tls(TlsTimings),
    Http(HttpTimings),
    /// The measurement failed with this status (never `ok`).
    Failed(Status),
}

/// The event kind of a target (the config allows only these names).
pub fn kind_of(t: &TargetConfig) -> Kind {
    match t.kind.as_str() {
        "udp" => Kind::Udp,
        "dns" => Kind::Dns,
        "http" => Kind::Http,
        "tls" => Kind::Tls,
        "icmp" => Kind::Icmp,
        _ => Kind::Tcp,
    }
}

/// A duration in ms, to the microsecond.
fn ms3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The typed wire event for one measurement of `t`: the only way the probe makes an event, so
/// what it sends is what ingest decodes (the same `WireEvent`, serialised by serde).
pub fn to_event(t: &TargetConfig, probe: &str, seq: u64, ts_ms: i64, m: Measured) -> WireEvent {
    let mut e = WireEvent {
        event_id: format!("{probe}-{seq}"),
        seq,
        ts: rfc3339(ts_ms),
        target: t.id.clone(),
        kind: kind_of(t),
        ..Default::default()
    };
    match m {
        Measured::Train { samples, sent, received } if received > 0 => {
            e.rtt_samples_ms = Some(samples.iter().map(|x| ms3(*x)).collect());
            (e.sent, e.received) = (Some(sent), Some(received));
        }
        Measured::Train { sent, .. } => {
            (e.sent, e.received, e.status) = (Some(sent), Some(0), Some(Status::Timeout));
        }
        Measured::Unsent { sent } => {
            (e.sent, e.received, e.status) = (Some(sent), Some(0), Some(Status::Unreachable));
        }
        Measured::Connect(ms) => e.connect_ms = Some(ms3(ms)),
        Measured::Resolved(ms) => e.dns_ms = Some(ms3(ms)),
        Measured::Tls(h) => {
            (e.connect_ms, e.tls_ms, e.cert_days) =
                (Some(ms3(h.connect_ms)), Some(ms3(h.tls_ms)), h.cert_days.map(ms3));
        }
        Measured::Http(h) => {
            e.dns_ms = Some(ms3(h.dns_ms));
            e.connect_ms = Some(ms3(h.connect_ms));
            e.tls_ms = h.tls_ms.map(ms3);
            e.ttfb_ms = Some(ms3(h.ttfb_ms));
            e.total_ms = Some(ms3(h.total_ms.max(h.ttfb_ms)));
            e.cert_days = h.cert_days.map(ms3);
            e.status = match h.status {
                500.. => Some(Status::Http5xx),
                400..=499 => Some(Status::Http4xx),
                _ => None,
            };
        }
        Measured::Failed(s) => {
            e.status = Some(s);
            if matches!(e.kind, Kind::Udp | Kind::Icmp) {
                // a train that failed as a whole: every packet counts as lost
                (e.sent, e.received) = (Some(t.packets), Some(0));
            }
        }
    }
    e
}

/// Runs a blocking measurement (OpenSSL handshakes) off the runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, Status> + Send + 'static) -> Result<T, Status> {
    tokio::task::spawn_blocking(f).await.unwrap_or(Err(Status::Error))
}

/// Measures `t` once.
async fn measured(t: &TargetConfig) -> Measured {
    let timeout = Duration::from_millis(t.timeout_ms);
    let (address, verify) = (t.address.clone(), t.tls_verify);
    let or_failed = |r: Result<Measured, Status>| r.unwrap_or_else(Measured::Failed);
    match kind_of(t) {
        Kind::Http => or_failed(blocking(move || http_measure(&address, timeout, verify)).await.map(Measured::Http)),
        Kind::Tls => or_failed(blocking(move || tls_measure(&address, timeout, verify)).await.map(Measured::Tls)),
        Kind::Icmp => {
            let name = t.address.trim_start_matches('[').trim_end_matches(']');
            let host = tokio::net::lookup_host((name, 0)).await.ok().and_then(|mut a| a.next());
            let (count, spacing) = (t.packets.min(u32::from(u16::MAX)) as u16, Duration::from_millis(20));
            let r = match (host, crate::icmp::available()) {
                (Some(a), Ok(kind)) => {
                    tokio::task::spawn_blocking(move || crate::icmp::ping(kind, a.ip(), count, spacing, timeout))
                        .await
                        .ok()
                }
                _ => None,
            };
            match r {
                Some(Ok((samples, sent))) => {
                    let received = samples.len() as u32;
                    Measured::Train { samples, sent, received }
                }
                _ => Measured::Unsent { sent: t.packets },
            }
        }
        Kind::Dns => or_failed(dns_lookup(&t.address, &t.name, &t.record, timeout).await.map(Measured::Resolved)),
        kind => match (kind, tokio::net::lookup_host(&t.address).await.ok().and_then(|mut a| a.next())) {
            (Kind::Udp, Some(addr)) => {
                match crate::stamp::measure(addr, t.packets, Duration::from_millis(20), timeout).await {
                    Ok(r) => Measured::Train { samples: r.rtt_ms, sent: r.sent, received: r.received },
                    Err(_) => Measured::Unsent { sent: t.packets },
                }
            }
            (Kind::Udp, None) => Measured::Unsent { sent: t.packets },
            (_, Some(addr)) => {
                let started = Instant::now();
                match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
                    Ok(Ok(_)) => Measured::Connect(started.elapsed().as_secs_f64() * 1000.0),
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        Measured::Failed(Status::Refused)
                    }
                    Ok(Err(_)) => Measured::Failed(Status::Unreachable),
                    Err(_) => Measured::Failed(Status::Timeout),
                }
            }
            (_, None) => Measured::Failed(Status::Error),
        },
    }
}

/// An HTTP(S) target URL, parsed with the `url` crate (IPv6 literals, userinfo, query strings and
/// fragments as RFC 3986 has them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl {
    pub tls: bool,
    /// The host to resolve and to name in SNI: a domain, or an IP literal without brackets.
    pub host: String,
    pub port: u16,
    /// Path and query (never the fragment), as the request line carries them.
    pub path: String,
    /// The `Host` header: the host as written (IPv6 in brackets) and the port when not the
    /// scheme's default.
    pub host_header: String,
}

/// Parses an `http://` or `https://` URL; the error says what is wrong with it.
pub fn parse_url(text: &str) -> Result<HttpUrl, String> {
    let u = url::Url::parse(text).map_err(|e| e.to_string())?;
    let tls = match u.scheme() {
        "https" => true,
        "http" => false,
        other => return Err(format!("scheme {other}: only http and https are measured")),
    };
    let host = match u.host() {
        Some(url::Host::Domain(d)) if !d.is_empty() => d.to_string(),
        Some(url::Host::Ipv4(a)) => a.to_string(),
        Some(url::Host::Ipv6(a)) => a.to_string(),
        _ => return Err("no host".into()),
    };
    let port = u.port_or_known_default().ok_or("no port")?;
    let host_str = u.host_str().unwrap_or_default();
    let host_header = match u.port() {
        Some(p) => format!("{host_str}:{p}"),
        None => host_str.to_string(),
    };
    let path = u[url::Position::BeforePath..url::Position::AfterQuery].to_string();
    Ok(HttpUrl { tls, host, port, path, host_header })
}

/// Timings of one HTTP(S) GET.
#[derive(Clone, Debug)]
pub struct HttpTimings {
    pub dns_ms: f64,
    pub connect_ms: f64,
    pub tls_ms: Option<f64>,
    pub ttfb_ms: f64,
    /// Request written to the last body byte read (the whole exchange after the handshake).
    pub total_ms: f64,
    /// Days until the server certificate's notAfter (https only).
    pub cert_days: Option<f64>,
    pub status: u16,
}

/// Most body bytes an HTTP measurement reads; the total time stops there.
const MAX_BODY: usize = 8 << 20;

/// Resolves `host:port` with the system resolver (blocking): the address and how long it took.
fn resolve_blocking(host: &str, port: u16) -> Result<(std::net::SocketAddr, f64), Status> {
    use std::net::ToSocketAddrs;
    let t0 = Instant::now();
    let addr = (host, port).to_socket_addrs().map_err(|_| Status::DnsError)?.next().ok_or(Status::Nxdomain)?;
    Ok((addr, t0.elapsed().as_secs_f64() * 1000.0))
}

/// TCP connect with a timeout (blocking): the stream and the connect time in ms.
fn connect_blocking(addr: std::net::SocketAddr, timeout: Duration) -> Result<(std::net::TcpStream, f64), Status> {
    let t1 = Instant::now();
    let tcp = std::net::TcpStream::connect_timeout(&addr, timeout).map_err(|e| match e.kind() {
        std::io::ErrorKind::ConnectionRefused => Status::Refused,
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => Status::Timeout,
        _ => Status::Unreachable,
    })?;
    let ms = t1.elapsed().as_secs_f64() * 1000.0;
    tcp.set_read_timeout(Some(timeout)).map_err(|_| Status::Error)?;
    tcp.set_write_timeout(Some(timeout)).map_err(|_| Status::Error)?;
    Ok((tcp, ms))
}

/// A finished TLS handshake: the stream, the handshake time (ms) and the days until the server
/// certificate expires.
type Handshake = (openssl::ssl::SslStream<std::net::TcpStream>, f64, Option<f64>);

/// TLS handshake over `tcp` with SNI `host`, verifying the chain and the name against the system
/// roots unless `verify` is off.
fn tls_handshake(host: &str, tcp: std::net::TcpStream, verify: bool) -> Result<Handshake, Status> {
    let mut b = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls()).map_err(|_| Status::TlsError)?;
    if !verify {
        b.set_verify(openssl::ssl::SslVerifyMode::NONE);
    }
    let mut conf = b.build().configure().map_err(|_| Status::TlsError)?;
    conf.set_verify_hostname(verify);
    let t2 = Instant::now();
    let s = conf.connect(host, tcp).map_err(|e| match e {
        // the handshake failed because the chain or the name did not verify
        openssl::ssl::HandshakeError::Failure(mid)
            if mid.ssl().verify_result() != openssl::x509::X509VerifyResult::OK =>
        {
            Status::CertError
        }
        _ => Status::TlsError,
    })?;
    let tls_ms = t2.elapsed().as_secs_f64() * 1000.0;
    let cert_days = s.ssl().peer_certificate().and_then(|c| {
        let now = openssl::asn1::Asn1Time::days_from_now(0).ok()?;
        let d = now.diff(c.not_after()).ok()?;
        Some((f64::from(d.days) + f64::from(d.secs) / 86_400.0).max(0.0))
    });
    Ok((s, tls_ms, cert_days))
}

/// One HTTP(S) GET, blocking (run it on a blocking thread): name resolution, TCP connect, TLS
/// handshake (and certificate expiry), time to the first response byte, time to the last body
/// byte, status code. Errors are event status classes.
pub fn http_measure(url: &str, timeout: Duration, verify: bool) -> Result<HttpTimings, Status> {
    let HttpUrl { tls, host, port, path, host_header } = parse_url(url).map_err(|_| Status::Error)?;
    let (addr, dns_ms) = resolve_blocking(&host, port)?;
    let (tcp, connect_ms) = connect_blocking(addr, timeout)?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: netqoe-probe\r\nConnection: close\r\n\r\n");
    let exchange = |s: &mut dyn ReadWrite| -> Result<(f64, f64, u16), Status> {
        let t = Instant::now();
        s.write_all(request.as_bytes()).map_err(|_| Status::Error)?;
        let mut buf = vec![0u8; 16 << 10];
        let mut got = s.read(&mut buf).map_err(|_| Status::Timeout)?;
        let ttfb = t.elapsed().as_secs_f64() * 1000.0;
        let mut head: Vec<u8> = buf[..got].to_vec();
        // the status line and headers, then the body to its end (Content-Length or close)
        let head_end = loop {
            if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if got == 0 || head.len() > 64 << 10 {
                return Err(Status::Error);
            }
            got = s.read(&mut buf).map_err(|_| Status::Timeout)?;
            head.extend_from_slice(&buf[..got]);
        };
        let text = String::from_utf8_lossy(&head[..head_end]).to_string();
        let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or(Status::Error)?;
        let length = text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case("content-length").then(|| v.trim().parse::<usize>().ok()).flatten()
        });
        let want = length.unwrap_or(MAX_BODY).min(MAX_BODY);
        let mut body = head.len() - head_end;
        while body < want {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => body += n,
                Err(_) => return Err(Status::Timeout),
            }
        }
        Ok((ttfb, t.elapsed().as_secs_f64() * 1000.0, status))
    };
    if tls {
        let (mut s, tls_ms, cert_days) = tls_handshake(&host, tcp, verify)?;
        let (ttfb_ms, total_ms, status) = exchange(&mut s)?;
        Ok(HttpTimings { dns_ms, connect_ms, tls_ms: Some(tls_ms), ttfb_ms, total_ms, cert_days, status })
    } else {
        let mut s = tcp;
        let (ttfb_ms, total_ms, status) = exchange(&mut s)?;
        Ok(HttpTimings { dns_ms, connect_ms, tls_ms: None, ttfb_ms, total_ms, cert_days: None, status })
    }
}

/// Timings of one TLS handshake toward `host:port`.
#[derive(Clone, Debug)]
pub struct TlsTimings {
    pub connect_ms: f64,
    pub tls_ms: f64,
    pub cert_days: Option<f64>,
}

/// TCP connect and TLS handshake toward `address` (`host:port`, SNI = host), blocking.
pub fn tls_measure(address: &str, timeout: Duration, verify: bool) -> Result<TlsTimings, Status> {
    let (host, port) = address.rsplit_once(':').ok_or(Status::Error)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let (addr, _) = resolve_blocking(host, port.parse().map_err(|_| Status::Error)?)?;
    let (tcp, connect_ms) = connect_blocking(addr, timeout)?;
    let (mut s, tls_ms, cert_days) = tls_handshake(host, tcp, verify)?;
    let _ = s.shutdown();
    Ok(TlsTimings { connect_ms, tls_ms, cert_days })
}

trait ReadWrite: std::io::Read + std::io::Write {}
impl<T: std::io::Read + std::io::Write> ReadWrite for T {}

struct StopOnDrop(actix_web::dev::ServerHandle);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let h = self.0.clone();
        actix_rt::spawn(async move { h.stop(false).await });
    }
}

/// The resolver a `dns` target measures: `system` (the name servers of /etc/resolv.conf) or one
/// server `host:port`; no cache, no hosts file, one attempt, so every lookup is a real query.
async fn dns_resolver(address: &str, timeout: Duration) -> Result<hickory_resolver::TokioResolver, Status> {
    use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
    use hickory_resolver::name_server::TokioConnectionProvider;
    let provider = TokioConnectionProvider::default();
    let mut builder = if address == "system" {
        hickory_resolver::TokioResolver::builder(provider).map_err(|_| Status::DnsError)?
    } else {
        let server = tokio::net::lookup_host(address).await.ok().and_then(|mut a| a.next()).ok_or(Status::DnsError)?;
        let ns = NameServerConfig::new(server, hickory_resolver::proto::xfer::Protocol::Udp);
        hickory_resolver::TokioResolver::builder_with_config(
            ResolverConfig::from_parts(None, vec![], vec![ns]),
            provider,
        )
    };
    let o = builder.options_mut();
    o.timeout = timeout;
    o.attempts = 1;
    o.cache_size = 0;
    o.use_hosts_file = ResolveHosts::Never;
    o.try_tcp_on_error = false;
    Ok(builder.build())
}

/// One resolution of `name`/`record` through hickory-resolver: the time until the answer (ms),
/// or the event status: `nxdomain`, `servfail`, `timeout`, `dns_error`. An answer with no record
/// of the type (NODATA) is a completed resolution.
async fn dns_lookup(address: &str, name: &str, record: &str, timeout: Duration) -> Result<f64, Status> {
    use hickory_resolver::proto::op::ResponseCode;
    use hickory_resolver::proto::ProtoErrorKind;
    let rtype: hickory_resolver::proto::rr::RecordType =
        record.to_ascii_uppercase().parse().map_err(|_| Status::DnsError)?;
    let fqdn = format!("{}.", name.trim_end_matches('.'));
    let resolver = dns_resolver(address, timeout).await?;
    let started = Instant::now();
    // the resolver's own timeout bounds the query; this one bounds everything around it
    let r = tokio::time::timeout(timeout + Duration::from_millis(500), resolver.lookup(fqdn.as_str(), rtype))
        .await
        .map_err(|_| Status::Timeout)?;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    match r {
        Ok(_) => Ok(ms),
        Err(e) => match e.proto().map(|p| p.kind()) {
            Some(ProtoErrorKind::NoRecordsFound { response_code, .. }) => match *response_code {
                ResponseCode::NoError => Ok(ms),
                ResponseCode::NXDomain => Err(Status::Nxdomain),
                ResponseCode::ServFail => Err(Status::Servfail),
                _ => Err(Status::DnsError),
            },
            Some(ProtoErrorKind::Timeout) => Err(Status::Timeout),
            Some(ProtoErrorKind::Io(io)) if io.kind() == std::io::ErrorKind::TimedOut => Err(Status::Timeout),
            _ => Err(Status::DnsError),
        },
    }
}

/// Whether `record` is a record type a `dns` target may ask for.
fn dns_record_type_ok(record: &str) -> bool {
    matches!(
        record.to_ascii_uppercase().as_str(),
        "A" | "AAAA" | "MX" | "TXT" | "NS" | "CNAME" | "SOA" | "PTR" | "SRV" | "CAA"
    )
}

/// Writes the measured events not yet batched to the spool as one batch (named by its first seq).
fn spool_pending(pending: &mut Vec<(u64, WireEvent)>, spool: &mut Spool) -> anyhow::Result<()> {
    let Some(&(first, _)) = pending.first() else { return Ok(()) };
    let events: Vec<WireEvent> = pending.drain(..).map(|(_, e)| e).collect();
    spool.push(first, &serde_json::to_vec(&WireBatch { events })?)?;
    metrics::SPOOL_DROPPED.inc_by(std::mem::take(&mut spool.dropped));
    Ok(())
}

/// Runs the probe: measures every target on its interval, batches, posts, spools. `rounds`:
/// stop after that many rounds of every target (None: run until the task is dropped).
pub async fn run(cfg: ProbeConfig, rounds: Option<u64>) -> anyhow::Result<()> {
    run_until(cfg, rounds, std::future::pending()).await
}

/// `run`, until `stop` completes (SIGTERM, SIGINT): then the measurements not yet batched are
/// written to the spool as one last batch, so a stopped probe loses nothing it measured; the
/// next start delivers them.
pub async fn run_until(
    cfg: ProbeConfig,
    rounds: Option<u64>,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut stop = std::pin::pin!(stop);
    metrics::init();
    let _server = if cfg.metrics_bind.is_empty() {
        None
    } else {
        let server = actix_web::HttpServer::new(|| {
            actix_web::App::new().route("/metrics", actix_web::web::get().to(crate::http::metrics::render))
        })
        .workers(1)
        .disable_signals()
        .bind(&cfg.metrics_bind)
        .with_context(|| format!("metrics_bind {}", cfg.metrics_bind))?
        .run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Some(StopOnDrop(handle))
    };
    tracing::info!(probe = %cfg.probe_id, targets = cfg.targets.len(), labels = ?cfg.labels, ingest = %cfg.ingest_url, "probe started");
    let mut seq = SeqCounter::open(&cfg.state_dir)?;
    let mut spool = Spool::open(&cfg.state_dir, cfg.spool_max_batches)?;
    let client = awc::Client::builder().timeout(Duration::from_secs(10)).finish();
    let start = Instant::now();
    // Each target starts at its own offset within its interval (stable per probe and target), so
    // a fleet of probes does not measure, or post, in lock-step.
    let mut base: Vec<Instant> = cfg
        .targets
        .iter()
        .map(|t| {
            let h = netqoe_domain::event_hash(&format!("{}/{}", cfg.probe_id, t.id));
            let spread_ms = (t.interval_s * 1000).min(1000 * 60) / 4;
            start + Duration::from_millis(if spread_ms == 0 { 0 } else { h % spread_ms })
        })
        .collect();
    // each round also starts a little late by a fresh random amount (up to 5 % of the interval,
    // at most 2 s), so rounds of different probes that share an offset drift apart
    let round_jitter = |interval_s: u64| {
        use rand::Rng;
        let max_ms = (interval_s * 50).min(2000);
        Duration::from_millis(if max_ms == 0 { 0 } else { rand::thread_rng().gen_range(0..max_ms) })
    };
    let mut next_due = base.clone();
    let mut done: Vec<u64> = vec![0; cfg.targets.len()];
    let mut pending: Vec<(u64, WireEvent)> = Vec::new();
    let mut oldest: Option<Instant> = None;
    let mut retry_at = Instant::now();
    let mut backoff = Duration::from_millis(250);
    loop {
        let now = Instant::now();
        // the due measurements run concurrently, at most MAX_CONCURRENT at a time
        let mut due = Vec::new();
        for (i, t) in cfg.targets.iter().enumerate() {
            if rounds.is_some_and(|r| done[i] >= r) || now < next_due[i] {
                continue;
            }
            due.push((i, seq.take()?));
            done[i] += 1;
            base[i] += Duration::from_secs(t.interval_s);
            next_due[i] = base[i] + round_jitter(t.interval_s);
        }
        if !due.is_empty() {
            use futures_util::StreamExt;
            let (targets, probe_id, seq) = (&cfg.targets, cfg.probe_id.as_str(), &seq);
            let results: Vec<(u64, WireEvent)> = futures_util::stream::iter(due)
                .map(|(i, s)| {
                    let t = &targets[i];
                    async move {
                        let mut e = measure(t, probe_id, s).await;
                        e.run_start = seq.starts_run(s);
                        let outcome = if e.status.is_some() { "failed" } else { "ok" };
                        metrics::MEASUREMENTS.with_label_values(&[t.kind.as_str(), outcome]).inc();
                        (s, e)
                    }
                })
                .buffer_unordered(MAX_CONCURRENT)
                .collect()
                .await;
            pending.extend(results);
            pending.sort_by_key(|(s, _)| *s);
            oldest.get_or_insert(now);
        }
        let finished =
            rounds.is_some() && cfg.targets.iter().enumerate().all(|(i, _)| rounds.is_some_and(|r| done[i] >= r));
        let age = oldest.map_or(Duration::ZERO, |o| o.elapsed());
        if !pending.is_empty()
            && (pending.len() >= cfg.batch_max_events || age >= Duration::from_millis(cfg.batch_max_age_ms) || finished)
        {
            spool_pending(&mut pending, &mut spool)?;
            oldest = None;
        }
        // deliver the spool in order
        while Instant::now() >= retry_at {
            let Some((path, body)) = spool.front() else { break };
            let t0 = Instant::now();
            let posted = post(&client, &cfg, body.clone()).await;
            metrics::POST_SECONDS.observe(t0.elapsed().as_secs_f64());
            metrics::POSTS
                .with_label_values(&[match posted {
                    Posted::Accepted => "accepted",
                    Posted::Retry(_) => "retry",
                    Posted::Rejected { .. } => "rejected",
                }])
                .inc();
            match posted {
                Posted::Accepted => {
                    spool.remove(&path)?;
                    backoff = Duration::from_millis(250);
                }
                Posted::Rejected { why, refused } => match without_refused(&body, &refused) {
                    // ingest named the events it refused: drop those, keep and re-send the rest
                    Some((rest, dropped)) => {
                        tracing::warn!(%why, dropped, batch = %path.display(), "ingest refused events of a batch; the rest is re-sent");
                        metrics::EVENTS_REFUSED.inc_by(dropped as u64);
                        spool.replace(&path, &rest)?;
                    }
                    None => {
                        let n = events_in(&body);
                        tracing::error!(%why, events = n, batch = %path.display(), "ingest rejected a batch; dropped");
                        metrics::EVENTS_REFUSED.inc_by(n as u64);
                        spool.remove(&path)?;
                    }
                },
                Posted::Retry(after) => {
                    // full jitter on a quarter of the backoff: probes that lost ingest together
                    // do not come back together
                    let jitter = {
                        use rand::Rng;
                        let quarter = (backoff.as_millis() as u64 / 4).max(1);
                        Duration::from_millis(rand::thread_rng().gen_range(0..quarter))
                    };
                    retry_at = Instant::now() + after.max(backoff) + jitter;
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                    break;
                }
            }
        }
        let depth = spool.depth();
        metrics::SPOOL_DEPTH.set(depth as i64);
        if finished && pending.is_empty() && depth == 0 {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            _ = &mut stop => {
                spool_pending(&mut pending, &mut spool)?;
                tracing::info!(spooled = spool.depth(), "probe stopping; unsent batches stay in the spool");
                return Ok(());
            }
        }
    }
}
