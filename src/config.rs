//! Layered configuration: built-in defaults (`default.toml`), then a TOML file, then
//! `NETQOE__SECTION__KEY` environment variables. Validation collects every problem at once.
//!
//! Invariant: a `Config` that left `load` is valid; secrets (token hashes) are never logged.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

const DEFAULTS: &str = include_str!("default.toml");
const ENV_PREFIX: &str = "NETQOE__";

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Config {
    pub http: HttpConfig,
    pub storage: StorageConfig,
    pub bus: BusConfig,
    pub rabbitmq: RabbitConfig,
    pub scylla: ScyllaConfig,
    pub ingest: IngestConfig,
    pub pipeline: PipelineSection,
    pub session: SessionSection,
    pub retention: RetentionSection,
    /// What `/metrics` exports beyond the platform's own health.
    pub metrics: MetricsSection,
    pub log: LogConfig,
    /// Incident webhooks.
    #[serde(default)]
    pub webhooks: WebhookConfig,
    /// Region identity and the upward flow to a global tier (docs/federation.md).
    #[serde(default)]
    pub federation: FederationConfig,
    /// Detection and localisation thresholds (docs/diagnosis.md).
    #[serde(default)]
    pub diagnosis: netqoe_domain::diagnosis::DiagnosisConfig,
    pub probes: Vec<ProbeEntry>,
    pub query_tokens: Vec<QueryToken>,
    /// Tokens that may call the admin endpoints (`POST /admin/drain`).
    #[serde(default)]
    pub admin_tokens: Vec<QueryToken>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct HttpConfig {
    pub bind: String,
    /// Separate listener for `/metrics`, `/healthz`, `/readyz` (empty: served on `bind`).
    #[serde(default)]
    pub admin_bind: String,
    /// PEM certificate chain and private key: with both set, `bind` serves HTTPS (rustls).
    #[serde(default)]
    pub tls_cert: String,
    #[serde(default)]
    pub tls_key: String,
    /// The admin listener (`admin_bind`) serves HTTPS too, with the same certificate.
    #[serde(default)]
    pub admin_tls: bool,
    pub max_body_bytes: usize,
    /// A request body must arrive whole within this long of its headers (beyond: 408, closed).
    pub body_timeout_s: u64,
    /// Request bodies being received at once, in total (beyond: 503) and per probe (429).
    pub max_bodies_in_flight: usize,
    pub max_bodies_per_probe: usize,
    pub max_events_per_batch: usize,
    /// `GET /v1/rollups` answered at once (beyond: 503 + Retry-After).
    pub max_concurrent_queries: usize,
    /// Windows one `group_by` query may merge (beyond: 422 asking for a narrower query).
    pub max_query_windows: usize,
    pub workers: usize,
}

/// A value that must never reach a log or a `Debug` print: webhook keys, passwords, token digests.
/// `Debug` shows `<redacted>` (or `""` when unset); the value is read with [`Secret::expose`].
#[derive(Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "<redacted>" })
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_string())
    }
}

/// `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Plain,
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Plain => "plain",
            LogFormat::Json => "json",
        }
    }
}

/// `scylla.replication`: the keyspace's replication class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum ReplicationStrategy {
    SimpleStrategy,
    NetworkTopologyStrategy,
}

/// `scylla.read_consistency` / `scylla.write_consistency`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConsistencyLevel {
    One,
    Two,
    Three,
    Quorum,
    All,
    LocalQuorum,
    EachQuorum,
    LocalOne,
}

/// Federation (`[federation]`, docs/federation.md).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FederationConfig {
    /// This deployment's region: every rollup, probe and incident the API answers carries it.
    /// Empty: not part of a federation.
    pub region: String,
    /// Send each committed 1m window revision to `{prefix}federation` on this region's broker
    /// (needs `region` and `bus.kind = "rabbitmq"`).
    pub uplink: bool,
    /// `netqoe federate setup`: the global broker's AMQP URI as this region's broker reaches it
    /// (the shovel's destination).
    pub global_uri: String,
    /// `netqoe federate setup`: this region's broker management API (`http://host:15672`);
    /// empty: `rabbitmq.management_url`.
    pub management_url: String,
    /// The global role: federation messages committed together, at most (its prefetch).
    pub prefetch: usize,
    /// The global role: a 1m window is diagnosed this long after its end, so every region's
    /// revisions of it have crossed the uplinks (a region's own lateness plus the transit).
    pub settle_s: u64,
}

impl Default for FederationConfig {
    fn default() -> Self {
        Self {
            region: String::new(),
            uplink: false,
            global_uri: String::new(),
            management_url: String::new(),
            prefetch: 64,
            settle_s: 180,
        }
    }
}

/// Incident webhooks (`[webhooks]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// Endpoints that receive every incident change (POST JSON).
    pub urls: Vec<String>,
    /// HMAC-SHA256 key for `X-Netqoe-Signature` (required when `urls` is set; never logged).
    pub secret: Secret,
    pub timeout_ms: u64,
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt (at most 60 s).
    pub backoff_ms: u64,
    /// Notifications waiting for delivery, at most (beyond: dropped and counted).
    pub queue: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            urls: Vec::new(),
            secret: Secret::default(),
            timeout_ms: 5000,
            max_attempts: 5,
            backoff_ms: 500,
            queue: 1000,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    /// Where rollups, marks, batch ids and sessions live.
    pub backend: StorageBackend,
}

/// `storage.backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// The SQLite file in `storage.data_dir`.
    Sqlite,
    /// The `[scylla]` cluster (the schema is applied with `netqoe migrate`).
    Scylla,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct BusConfig {
    pub kind: BusKind,
}

/// `bus.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BusKind {
    /// The SQLite journal in `storage.data_dir`: one process runs every role.
    Embedded,
    /// The `[rabbitmq]` cluster: roles may run in separate processes.
    Rabbitmq,
}

impl BusKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BusKind::Embedded => "embedded",
            BusKind::Rabbitmq => "rabbitmq",
        }
    }

    /// Whether `roles` can run in a process on this bus: apart from the others only over a broker.
    pub fn allows(self, roles: crate::app::Roles) -> bool {
        self == BusKind::Rabbitmq || roles == crate::app::Roles::ALL
    }
}

#[derive(Clone, Deserialize, Serialize)]
pub struct RabbitConfig {
    pub uris: Vec<String>,
    pub prefix: String,
    pub shards: usize,
    pub delivery_limit: u32,
    pub publish_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    pub op_timeout_ms: u64,
    pub reconnect_min_ms: u64,
    pub reconnect_max_ms: u64,
    /// Management API (`http://host:15672`) read for each shard's active consumer; empty: not read.
    pub management_url: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ScyllaConfig {
    pub contact_points: Vec<String>,
    pub keyspace: String,
    pub replication: ReplicationStrategy,
    pub datacenters: BTreeMap<String, u32>,
    pub replication_factor: u32,
    pub local_dc: String,
    pub read_consistency: ConsistencyLevel,
    pub write_consistency: ConsistencyLevel,
    pub username: String,
    pub password: Secret,
    pub tls: bool,
    pub ca_file: String,
    pub max_in_flight: usize,
    pub request_timeout_ms: u64,
    /// Most bytes of mutations in one unlogged batch (the server's `batch_size_warn_threshold`).
    pub batch_max_bytes: usize,
    /// Most partitions one unlogged batch covers (the server's
    /// `unlogged_batch_across_partitions_warn_threshold`; 1: single-partition batches only).
    pub batch_max_partitions: usize,
}

/// `amqp://user:secret@host:5672/vhost` → `amqp://host:5672/vhost` (for logs and errors).
pub fn redact_uri(uri: &str) -> String {
    match (uri.find("://"), uri.find('@')) {
        (Some(s), Some(at)) if at > s => format!("{}{}", &uri[..s + 3], &uri[at + 1..]),
        _ => uri.to_string(),
    }
}

impl std::fmt::Debug for RabbitConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitConfig")
            .field("uris", &self.uris.iter().map(|u| redact_uri(u)).collect::<Vec<_>>())
            .field("prefix", &self.prefix)
            .field("shards", &self.shards)
            .field("delivery_limit", &self.delivery_limit)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct IngestConfig {
    pub rate_per_probe: f64,
    pub burst: f64,
    pub max_future_s: i64,
    pub max_past_s: i64,
    pub retry_after_s: u64,
    pub max_duration_ms: f64,
    /// Distinct (target, metric) series one probe may feed at once (beyond: 422 naming them).
    pub max_series_per_probe: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct PipelineSection {
    pub shards: usize,
    pub prefetch: usize,
    pub flush_batches: usize,
    pub flush_interval_ms: u64,
    pub derive_interval_ms: i64,
    pub allowed_lateness_s: i64,
    pub idle_evict_s: i64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SessionSection {
    pub offline_after_s: i64,
    pub passivate_after_s: u64,
    pub save_every_s: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RetentionSection {
    pub m1_days: i64,
    pub h1_days: i64,
    pub d1_days: i64,
    pub prune_every_s: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct MetricsSection {
    /// Targets whose fleet QoE (latency p50/p95, loss, MOS, failures) is exported as
    /// `netqoe_target_*` gauges by the diagnosing process; 0 exports none. Bounds the series.
    pub max_target_series: usize,
    /// (probe, target) pairs whose matrix state is exported as `netqoe_pair_state`; 0: none.
    pub max_pair_series: usize,
    /// The probe label exported as the `group` label of `netqoe_pair_state` ("": none).
    pub pair_group_label: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ProbeEntry {
    pub id: String,
    pub token_sha256: Secret,
    #[serde(default)]
    pub revoked: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct QueryToken {
    pub name: String,
    pub token_sha256: Secret,
    #[serde(default)]
    pub revoked: bool,
}

/// Every problem found, each naming its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{} configuration error(s):", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Deserializes `root`, reporting every type error and unknown key (each `key: message`) rather
/// than the first: each one found is removed and the rest read again. `None` when what is left
/// still cannot be read (a required key missing).
pub fn deserialize_reporting_all<T: serde::de::DeserializeOwned>(mut root: toml::Value) -> (Option<T>, Vec<String>) {
    let none = toml::Value::Table(Default::default());
    let mut errors = Vec::new();
    loop {
        match serde_path_to_error::deserialize::<_, T>(root.clone()) {
            Ok(v) => return (Some(v), errors),
            Err(e) => {
                let path = e.path().to_string();
                let path = if path == "." { String::new() } else { path };
                let msg = e.inner().message().to_string();
                errors.push(if path.is_empty() { msg.clone() } else { format!("{path}: {msg}") });
                // an unknown key is named in the message, its path is its table's
                let unknown = msg.strip_prefix("unknown field `").and_then(|r| r.split('`').next());
                let target = match unknown {
                    Some(k) if path.is_empty() => k.to_string(),
                    Some(k) if path != k && !path.ends_with(&format!(".{k}")) => format!("{path}.{k}"),
                    _ => path,
                };
                if errors.len() > 100 || !reset_to_default(&mut root, &none, &target) {
                    return (None, errors);
                }
            }
        }
    }
}

/// Puts `defaults`' value at `path` (`a.b`, `a[0].b`) into `root`, or removes it there when the
/// defaults have none; false when `path` names nothing in `root` (nothing could change).
fn reset_to_default(root: &mut toml::Value, defaults: &toml::Value, path: &str) -> bool {
    let segs: Vec<&str> = path.split(['.', '[', ']']).filter(|s| !s.is_empty()).collect();
    let Some((last, parents)) = segs.split_last() else { return false };
    let mut node = root;
    let mut dflt = Some(defaults);
    for seg in parents {
        let next = match (node, seg.parse::<usize>()) {
            (toml::Value::Array(a), Ok(i)) => a.get_mut(i),
            (toml::Value::Table(t), _) => t.get_mut(*seg),
            _ => None,
        };
        let Some(next) = next else { return false };
        node = next;
        dflt = dflt.and_then(|d| d.get(*seg));
    }
    let default = dflt.and_then(|d| d.get(*last)).cloned();
    match (node, last.parse::<usize>()) {
        (toml::Value::Array(a), Ok(i)) if i < a.len() => {
            a.remove(i);
            true
        }
        (toml::Value::Table(t), _) if t.contains_key(*last) => {
            match default {
                Some(d) => t.insert(last.to_string(), d),
                None => t.remove(*last),
            };
            true
        }
        _ => false,
    }
}

fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// Parses an environment value as a TOML value (number, bool, array, inline table), falling back
/// to a plain string.
fn env_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

impl Config {
    /// Loads defaults, then `file` (if any), then the given environment (`NETQOE__…` pairs).
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        let mut root: toml::Value =
            toml::from_str(DEFAULTS).map_err(|e| ConfigErrors(vec![format!("built-in defaults: {e}")]))?;
        if let Some(path) = file {
            match std::fs::read_to_string(path) {
                Ok(text) => match toml::from_str::<toml::Value>(&text) {
                    Ok(v) => merge(&mut root, v),
                    Err(e) => errors.push(format!("{}: {}", path.display(), e.message())),
                },
                Err(e) => errors.push(format!("{}: cannot read: {e}", path.display())),
            }
        }
        for (k, v) in env {
            let Some(rest) = k.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
            if path.iter().any(String::is_empty) {
                errors.push(format!("{k}: malformed variable name"));
                continue;
            }
            let mut over = env_value(&v);
            for seg in path.iter().rev() {
                let mut t = toml::Table::new();
                t.insert(seg.clone(), over);
                over = toml::Value::Table(t);
            }
            merge(&mut root, over);
        }
        let defaults: toml::Value = toml::from_str(DEFAULTS).map_err(|e| ConfigErrors(vec![e.to_string()]))?;
        // Every type error, not only the first: each one found is reported with its key and the
        // value replaced by its default (or removed), then the rest is read again.
        let mut unknown = Vec::new();
        let parsed = loop {
            unknown.clear();
            let mut note = |p: serde_ignored::Path<'_>| unknown.push(p.to_string());
            let de = serde_ignored::Deserializer::new(root.clone(), &mut note);
            match serde_path_to_error::deserialize::<_, Config>(de) {
                Ok(cfg) => break Some(cfg),
                Err(e) => {
                    let path = e.path().to_string();
                    errors.push(format!("{path}: {}", e.inner().message()));
                    if errors.len() > 100 || !reset_to_default(&mut root, &defaults, &path) {
                        break None;
                    }
                }
            }
        };
        for u in unknown {
            errors.push(format!("{u}: unknown key"));
        }
        if let Some(cfg) = &parsed {
            errors.extend(cfg.validate());
        }
        match parsed {
            Some(cfg) if errors.is_empty() => Ok(cfg),
            _ => Err(ConfigErrors(errors)),
        }
    }

    /// Loads with the process environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigErrors> {
        Self::load_from(file, std::env::vars())
    }

    /// `validate`, and what only the roles a process runs decide: the ingest, aggregate and
    /// diagnose roles run apart from the others only over a broker (`bus.kind`).
    pub fn validate_for(&self, roles: crate::app::Roles) -> Vec<String> {
        let mut e = self.validate();
        if !self.bus.kind.allows(roles) {
            e.push(
                "bus.kind: the ingest, aggregate and diagnose roles run apart only over a broker; set \
                 bus.kind = \"rabbitmq\" (or use `netqoe run`)"
                    .to_string(),
            );
        }
        e
    }

    /// Every semantic problem, each naming its key.
    pub fn validate(&self) -> Vec<String> {
        let mut e = Vec::new();
        let f = &self.federation;
        if !f.region.is_empty() && !netqoe_domain::federation::valid_region(&f.region) {
            e.push(format!("federation.region: {:?} must be 1-64 characters of A-Z a-z 0-9 - _ . : / @ [ ]", f.region));
        }
        if f.uplink && f.region.is_empty() {
            e.push("federation.uplink: needs federation.region (the global tier files windows by region)".into());
        }
        if f.uplink && self.bus.kind != BusKind::Rabbitmq {
            e.push("federation.uplink: windows travel over the region's broker; set bus.kind = \"rabbitmq\"".into());
        }
        if !(1..=10_000).contains(&f.prefetch) {
            e.push("federation.prefetch: must be between 1 and 10000".into());
        }
        if f.settle_s > 86_400 {
            e.push("federation.settle_s: at most 86400 (a day)".into());
        }
        if self.http.bind.parse::<SocketAddr>().is_err() {
            e.push(format!("http.bind: {:?} is not an address such as 127.0.0.1:8080", self.http.bind));
        }
        if !self.http.admin_bind.is_empty() && self.http.admin_bind == self.http.bind {
            e.push(format!(
                "http.admin_bind: {:?} is http.bind too; give the admin listener its own port, or leave it empty to serve both on http.bind",
                self.http.admin_bind
            ));
        }
        if !self.http.admin_bind.is_empty() && self.http.admin_bind.parse::<SocketAddr>().is_err() {
            e.push(format!("http.admin_bind: {:?} is not an address such as 127.0.0.1:9100", self.http.admin_bind));
        }
        if !matches!(
            self.log.level.to_ascii_lowercase().as_str(),
            "error" | "warn" | "info" | "debug" | "trace" | "off"
        ) {
            e.push(format!("log.level: {:?} must be one of error, warn, info, debug, trace, off", self.log.level));
        }
        if !(1024..=64 << 20).contains(&self.http.max_body_bytes) {
            e.push("http.max_body_bytes: must be between 1024 and 67108864".into());
        }
        if !(1..=600).contains(&self.http.body_timeout_s) {
            e.push("http.body_timeout_s: must be between 1 and 600".into());
        }
        if !(1..=100_000).contains(&self.http.max_bodies_in_flight) {
            e.push("http.max_bodies_in_flight: must be between 1 and 100000".into());
        }
        if !(1..=self.http.max_bodies_in_flight.max(1)).contains(&self.http.max_bodies_per_probe) {
            e.push("http.max_bodies_per_probe: must be between 1 and http.max_bodies_in_flight".into());
        }
        if !(1..=1024).contains(&self.http.max_concurrent_queries) {
            e.push("http.max_concurrent_queries: must be between 1 and 1024".into());
        }
        if !(1..=10_000_000).contains(&self.http.max_query_windows) {
            e.push("http.max_query_windows: must be between 1 and 10000000".into());
        }
        if !(1..=100_000).contains(&self.http.max_events_per_batch) {
            e.push("http.max_events_per_batch: must be between 1 and 100000".into());
        }
        if self.storage.data_dir.as_os_str().is_empty() {
            e.push("storage.data_dir: must not be empty".into());
        }
        let r = &self.rabbitmq;
        if r.uris.is_empty() {
            e.push("rabbitmq.uris: at least one broker URI is needed".into());
        }
        for (i, u) in r.uris.iter().enumerate() {
            if !(u.starts_with("amqp://") || u.starts_with("amqps://")) {
                e.push(format!("rabbitmq.uris[{i}]: {:?} must start with amqp:// or amqps://", redact_uri(u)));
            }
        }
        if r.prefix.is_empty() || !r.prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)) {
            e.push("rabbitmq.prefix: must be non-empty, of [A-Za-z0-9-_.:]".into());
        }
        if !(1..=1024).contains(&r.shards) {
            e.push("rabbitmq.shards: must be between 1 and 1024".into());
        }
        if !(1..=1000).contains(&r.delivery_limit) {
            e.push("rabbitmq.delivery_limit: must be between 1 and 1000".into());
        }
        for (k, v) in [
            ("publish_timeout_ms", r.publish_timeout_ms),
            ("connect_timeout_ms", r.connect_timeout_ms),
            ("op_timeout_ms", r.op_timeout_ms),
            ("reconnect_min_ms", r.reconnect_min_ms),
        ] {
            if !(10..=600_000).contains(&v) {
                e.push(format!("rabbitmq.{k}: must be between 10 and 600000"));
            }
        }
        if !r.management_url.is_empty() {
            if let Err(why) =
                crate::rabbit::management::Management::new(&r.management_url, r.uris.first().map_or("", String::as_str))
            {
                e.push(format!("rabbitmq.management_url: {why}"));
            }
        }
        if r.reconnect_max_ms < r.reconnect_min_ms {
            e.push("rabbitmq.reconnect_max_ms: must be at least reconnect_min_ms".into());
        }
        let sc = &self.scylla;
        if sc.contact_points.is_empty() {
            e.push("scylla.contact_points: at least one host:port is needed".into());
        }
        let ident = |s: &str| {
            !s.is_empty()
                && s.len() <= 48
                && s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        };
        if !ident(&sc.keyspace) {
            e.push(format!(
                "scylla.keyspace: {:?} must be a CQL identifier ([A-Za-z][A-Za-z0-9_]*, ≤ 48)",
                sc.keyspace
            ));
        }
        match sc.replication {
            ReplicationStrategy::SimpleStrategy if sc.replication_factor == 0 => {
                e.push("scylla.replication_factor: must be at least 1".into())
            }
            ReplicationStrategy::SimpleStrategy => {}
            ReplicationStrategy::NetworkTopologyStrategy => {
                if sc.datacenters.is_empty() || sc.datacenters.values().any(|rf| *rf == 0) {
                    e.push("scylla.datacenters: give each data center a replication factor ≥ 1".into());
                }
                for dc in sc.datacenters.keys() {
                    if !dc.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b)) {
                        e.push(format!("scylla.datacenters: {dc:?} is not a data center name"));
                    }
                }
            }
        }
        if !(1..=65_536).contains(&sc.max_in_flight) {
            e.push("scylla.max_in_flight: must be between 1 and 65536".into());
        }
        if !(1024..=1 << 20).contains(&sc.batch_max_bytes) {
            e.push("scylla.batch_max_bytes: must be between 1024 and 1048576".into());
        }
        if !(1..=1024).contains(&sc.batch_max_partitions) {
            e.push("scylla.batch_max_partitions: must be between 1 and 1024".into());
        }
        if !(10..=600_000).contains(&sc.request_timeout_ms) {
            e.push("scylla.request_timeout_ms: must be between 10 and 600000".into());
        }
        if self.ingest.rate_per_probe.is_nan() || self.ingest.rate_per_probe <= 0.0 {
            e.push("ingest.rate_per_probe: must be positive".into());
        }
        if self.ingest.burst < self.ingest.rate_per_probe.min(1.0) || !self.ingest.burst.is_finite() {
            e.push("ingest.burst: must be at least 1 and finite".into());
        }
        if self.ingest.max_future_s < 0 {
            e.push("ingest.max_future_s: must not be negative".into());
        }
        if self.ingest.max_past_s <= 0 {
            e.push("ingest.max_past_s: must be positive".into());
        }
        if self.ingest.max_past_s > self.retention.m1_days * 86_400 {
            e.push("ingest.max_past_s: must not exceed the 1m retention (retention.m1_days)".into());
        }
        if !(self.ingest.max_duration_ms > 0.0 && self.ingest.max_duration_ms.is_finite()) {
            e.push("ingest.max_duration_ms: must be positive".into());
        }
        if !(1..=256).contains(&self.pipeline.shards) {
            e.push("pipeline.shards: must be between 1 and 256".into());
        }
        if !(1..=100_000).contains(&self.pipeline.prefetch) {
            e.push("pipeline.prefetch: must be between 1 and 100000".into());
        }
        if !(1..=10_000).contains(&self.pipeline.flush_batches) {
            e.push("pipeline.flush_batches: must be between 1 and 10000".into());
        }
        if !(10..=60_000).contains(&self.pipeline.flush_interval_ms) {
            e.push("pipeline.flush_interval_ms: must be between 10 and 60000".into());
        }
        if !self.webhooks.urls.is_empty() && self.webhooks.secret.is_empty() {
            e.push("webhooks.secret: required when webhooks.urls is set (receivers verify X-Netqoe-Signature)".into());
        }
        for (i, u) in self.webhooks.urls.iter().enumerate() {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                e.push(format!("webhooks.urls[{i}]: {u:?} is not an http(s) URL"));
            }
        }
        let m = &self.metrics;
        if m.max_target_series > 10_000 {
            e.push("metrics.max_target_series: must be at most 10000 (about 24 series per target)".into());
        }
        if m.max_pair_series > 100_000 {
            e.push("metrics.max_pair_series: must be at most 100000 (up to 10 series per pair)".into());
        }
        if m.pair_group_label.len() > 64
            || !m.pair_group_label.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            e.push(format!(
                "metrics.pair_group_label: {:?} must be a probe label name (0-64 characters of [A-Za-z0-9-_.])",
                m.pair_group_label
            ));
        }
        let d = &self.diagnosis;
        if d.min_history == 0 || d.min_history > d.horizon {
            e.push("diagnosis.min_history: must be between 1 and diagnosis.horizon".into());
        }
        if !(0.0..=1.0).contains(&d.majority) || d.majority == 0.0 {
            e.push("diagnosis.majority: must be in (0, 1]".into());
        }
        if d.open_after == 0 || d.close_after == 0 || d.offline_after == 0 {
            e.push("diagnosis.open_after, close_after, offline_after: must be at least 1".into());
        }
        if !(0.0..1.0).contains(&d.significance) || d.significance == 0.0 {
            e.push("diagnosis.significance: must be in (0, 1)".into());
        }
        if !(0.0..=3650.0).contains(&d.cert_warn_days) {
            e.push("diagnosis.cert_warn_days: must be a number of days in 0..=3650 (0 turns the check off)".into());
        }
        if !(0..=3_600_000).contains(&self.pipeline.derive_interval_ms) {
            e.push("pipeline.derive_interval_ms: must be between 0 and 3600000".into());
        }
        if self.pipeline.allowed_lateness_s < 0 || self.pipeline.allowed_lateness_s >= self.ingest.max_past_s {
            e.push("pipeline.allowed_lateness_s: must be >= 0 and below ingest.max_past_s".into());
        }
        if !(1..=1_000_000).contains(&self.ingest.max_series_per_probe) {
            e.push("ingest.max_series_per_probe: must be between 1 and 1000000".into());
        }
        if self.pipeline.idle_evict_s < 1 {
            e.push("pipeline.idle_evict_s: must be at least 1".into());
        }
        if self.session.offline_after_s < 1 {
            e.push("session.offline_after_s: must be at least 1".into());
        }
        if self.session.save_every_s < 1 {
            e.push("session.save_every_s: must be at least 1".into());
        }
        let r = &self.retention;
        if r.m1_days < 1 || r.h1_days < r.m1_days || r.d1_days < r.h1_days {
            e.push("retention: need 1 <= m1_days <= h1_days <= d1_days".into());
        }
        if r.prune_every_s < 1 {
            e.push("retention.prune_every_s: must be at least 1".into());
        }
        let mut ids = std::collections::HashSet::new();
        let mut hashes = std::collections::HashSet::new();
        for (i, p) in self.probes.iter().enumerate() {
            let valid_id = !p.id.is_empty()
                && p.id.len() <= 128
                && p.id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !valid_id {
                e.push(format!("probes[{i}].id: {:?} must be 1-128 characters of [A-Za-z0-9-_.]", p.id));
            }
            if !ids.insert(p.id.clone()) {
                e.push(format!("probes[{i}].id: duplicate probe id {:?}", p.id));
            }
            if !is_sha256_hex(p.token_sha256.expose()) {
                e.push(format!("probes[{i}].token_sha256: must be 64 hex characters (netqoe token mint)"));
            } else if !hashes.insert(p.token_sha256.expose().to_ascii_lowercase()) {
                e.push(format!("probes[{i}].token_sha256: token hash used twice"));
            }
        }
        for (section, tokens) in [("query_tokens", &self.query_tokens), ("admin_tokens", &self.admin_tokens)] {
            for (i, q) in tokens.iter().enumerate() {
                if q.name.is_empty() {
                    e.push(format!("{section}[{i}].name: must not be empty"));
                }
                if !is_sha256_hex(q.token_sha256.expose()) {
                    e.push(format!("{section}[{i}].token_sha256: must be 64 hex characters (netqoe token mint)"));
                } else if !hashes.insert(q.token_sha256.expose().to_ascii_lowercase()) {
                    e.push(format!(
                        "{section}[{i}].token_sha256: token hash used twice (probe, query and admin tokens must differ)"
                    ));
                }
            }
        }
        match (self.http.tls_cert.is_empty(), self.http.tls_key.is_empty()) {
            (true, true) => {}
            (false, false) => {
                if let Err(why) = crate::tls::server_config(&self.http.tls_cert, &self.http.tls_key) {
                    e.push(format!("http.tls_cert: {why}"));
                }
            }
            (true, false) => e.push("http.tls_cert: required when http.tls_key is set".into()),
            (false, true) => e.push("http.tls_key: required when http.tls_cert is set".into()),
        }
        if self.http.admin_tls && self.http.tls_cert.is_empty() {
            e.push(
                "http.admin_tls: needs http.tls_cert and http.tls_key (the admin listener uses that certificate)"
                    .into(),
            );
        }
        if self.http.admin_tls && self.http.admin_bind.is_empty() {
            e.push("http.admin_tls: needs http.admin_bind (without it the admin routes are served on http.bind, which is HTTPS whenever http.tls_cert is set)".into());
        }
        e
    }

    pub fn bind_addr(&self) -> SocketAddr {
        self.http.bind.parse().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8080)))
    }

    pub fn pipeline_config(&self) -> netqoe_actors::pipeline::PipelineConfig {
        use netqoe_actors::aggregator::AggregatorConfig;
        use netqoe_actors::session::SessionConfig;
        use netqoe_actors::store::Retention;
        let day = 86_400_000;
        netqoe_actors::pipeline::PipelineConfig {
            shards: self.pipeline.shards,
            prefetch: self.pipeline.prefetch,
            aggregator: AggregatorConfig {
                lateness_ms: self.pipeline.allowed_lateness_s * 1000,
                flush_batches: self.pipeline.flush_batches,
                flush_interval: Duration::from_millis(self.pipeline.flush_interval_ms),
                idle_evict_ms: self.pipeline.idle_evict_s * 1000,
                mailbox: 64,
                derive_interval_ms: self.pipeline.derive_interval_ms,
                uplink: None,
            },
            sessions: SessionConfig {
                passivate_after: Duration::from_secs(self.session.passivate_after_s),
                save_every: Duration::from_secs(self.session.save_every_s),
                mailbox: 256,
            },
            retention: Retention {
                m1_ms: self.retention.m1_days * day,
                h1_ms: self.retention.h1_days * day,
                d1_ms: self.retention.d1_days * day,
                dedup_ms: self.ingest.max_past_s * 1000 + day,
                reopen_ms: self.ingest.max_past_s * 1000 + day,
            },
            prune_every: Duration::from_secs(self.retention.prune_every_s),
            writer_mailbox: 16,
            diagnosis: Some(netqoe_actors::diagnoser::DiagnoserConfig {
                thresholds: self.diagnosis.clone(),
                labels: self.probes.iter().map(|p| (p.id.clone(), p.labels.clone())).collect(),
                max_target_series: self.metrics.max_target_series,
                max_pair_series: self.metrics.max_pair_series,
                pair_group_label: self.metrics.pair_group_label.clone(),
                ..Default::default()
            }),
            // the system clock; `app::start_with_clock` replaces it
            clock: netqoe_actors::Clock::system(),
        }
    }

    pub fn event_limits(&self) -> netqoe_domain::EventLimits {
        netqoe_domain::EventLimits {
            max_future_ms: self.ingest.max_future_s * 1000,
            max_past_ms: self.ingest.max_past_s * 1000,
            max_duration_ms: self.ingest.max_duration_ms,
            ..Default::default()
        }
    }
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::load_from(None, env(&[])).unwrap();
        assert_eq!(c.http.bind, "127.0.0.1:8080");
        assert_eq!(c.pipeline.allowed_lateness_s, 120);
        assert_eq!(
            c.diagnosis,
            netqoe_domain::diagnosis::DiagnosisConfig::default(),
            "default.toml documents the defaults"
        );
        let c = Config::load_from(None, env(&[("NETQOE__DIAGNOSIS__OPEN_AFTER", "5")])).unwrap();
        assert_eq!(c.diagnosis.open_after, 5);
    }

    #[test]
    fn env_overrides_file_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[http]\nbind = \"127.0.0.1:9000\"\nmax_events_per_batch = 10\n").unwrap();
        let c = Config::load_from(Some(&f), env(&[("NETQOE__HTTP__BIND", "0.0.0.0:7000"), ("OTHER", "x")])).unwrap();
        assert_eq!(c.http.bind, "0.0.0.0:7000");
        assert_eq!(c.http.max_events_per_batch, 10);
    }

    #[test]
    fn reports_every_error_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "[http]\nbind = \"nope\"\ncolour = 3\n[log]\nformat = \"xml\"\n[[probes]]\nid = \"p 1\"\ntoken_sha256 = \"zz\"\n",
        )
        .unwrap();
        let e = Config::load_from(
            Some(&f),
            env(&[("NETQOE__PIPELINE__SHARDS", "0"), ("NETQOE__DIAGNOSIS__CERT_WARN_DAYS", "-1")]),
        )
        .unwrap_err();
        let text = e.to_string();
        for needle in [
            "http.colour: unknown key",
            "http.bind",
            "log.format",
            "probes[0].id",
            "probes[0].token_sha256",
            "pipeline.shards",
            "diagnosis.cert_warn_days",
        ] {
            assert!(text.contains(needle), "missing {needle} in {text}");
        }
    }

    #[test]
    fn an_unknown_backend_or_bus_is_an_error_naming_the_field_not_a_fallback() {
        let e = Config::load_from(None, env(&[("NETQOE__STORAGE__BACKEND", "mongo"), ("NETQOE__BUS__KIND", "kafka")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("storage.backend: unknown variant `mongo`, expected `sqlite` or `scylla`"), "{e}");
        assert!(e.contains("bus.kind: unknown variant `kafka`, expected `embedded` or `rabbitmq`"), "{e}");
        let c = Config::load_from(None, env(&[("NETQOE__STORAGE__BACKEND", "scylla")])).unwrap();
        assert_eq!((c.storage.backend, c.bus.kind), (StorageBackend::Scylla, BusKind::Embedded));
    }

    #[test]
    fn cql_settings_and_secrets_are_typed() {
        let c = Config::load_from(
            None,
            env(&[
                ("NETQOE__SCYLLA__READ_CONSISTENCY", "ONE"),
                ("NETQOE__SCYLLA__REPLICATION", "SimpleStrategy"),
                ("NETQOE__SCYLLA__PASSWORD", "hunter2"),
                ("NETQOE__WEBHOOKS__SECRET", "s3cret"),
            ]),
        )
        .unwrap();
        assert_eq!(c.scylla.read_consistency, ConsistencyLevel::One);
        assert_eq!(c.scylla.write_consistency, ConsistencyLevel::LocalQuorum, "the default");
        assert_eq!(c.scylla.replication, ReplicationStrategy::SimpleStrategy);
        assert_eq!((c.scylla.password.expose(), c.webhooks.secret.expose()), ("hunter2", "s3cret"));
        let printed = format!("{c:?}");
        assert!(!printed.contains("hunter2") && !printed.contains("s3cret"), "secrets are redacted: {printed}");
        let e = Config::load_from(
            None,
            env(&[("NETQOE__SCYLLA__WRITE_CONSISTENCY", "MOST"), ("NETQOE__SCYLLA__REPLICATION", "Simple")]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("scylla.write_consistency: unknown variant `MOST`"), "{e}");
        assert!(e.contains("scylla.replication: unknown variant `Simple`"), "{e}");
    }

    #[test]
    fn the_matrix_export_is_bounded_and_its_group_is_a_label_name() {
        let c = Config::load_from(None, env(&[])).unwrap();
        assert_eq!((c.metrics.max_pair_series, c.metrics.pair_group_label.as_str()), (500, "region"));
        let e = Config::load_from(
            None,
            env(&[("NETQOE__METRICS__MAX_PAIR_SERIES", "1000000"), ("NETQOE__METRICS__PAIR_GROUP_LABEL", "a b")]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("metrics.max_pair_series") && e.contains("metrics.pair_group_label"), "{e}");
    }
}
