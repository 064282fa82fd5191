//! The probe's configuration (`probe.toml`): ingest, identity, labels, spool, targets;
//! validated at once into one list of errors, `${ENV}` expanded in secrets.

use super::measure::dns::dns_record_type_ok;
use super::*;

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
                if let Err(why) = icmp::available() {
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
    expand_with(field, value, |name| std::env::var(name).ok())
}

/// `expand_env` over any variable lookup (tests pass a map instead of touching the process
/// environment, which other test threads read).
pub(super) fn expand_with(field: &str, value: &str, lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let Some(end) = rest[i..].find('}') else { bail!("{field}: unterminated ${{ in {value:?}") };
        let name = &rest[i + 2..i + end];
        match lookup(name) {
            Some(v) if !v.is_empty() => out.push_str(&v),
            _ => bail!("{field}: environment variable {name} (used as ${{{name}}}) is not set"),
        }
        rest = &rest[i + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}
