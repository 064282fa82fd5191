//! netqoe-loadgen: load generator, oracle and broker baseline for netqoe.
//!
//! - `setup` writes a netqoe config with N probes (token hashes) and the matching tokens file;
//! - `run` offers an open-loop constant-rate load (batches scheduled at fixed intended times;
//!   latency measured from the intended time, so queueing is not hidden by coordinated omission),
//!   keeps what was acknowledged and checks the stored rollups against it (zero tolerance);
//! - `baseline` measures a plain lapin publish (confirms) → consume (acks) round trip of the same
//!   batches on the same broker and queue type: the physical limit of the broker hop;
//! - `peer` sends one data set to netqoe and to InfluxDB 1.x and compares them (`peer.rs`).
//!
//! Targets 127.0.0.1 only, and every mode stops by itself after `--duration`.

mod peer;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

#[derive(Parser)]
#[command(name = "netqoe-loadgen", about = "Load generator, oracle and broker baseline for netqoe")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write DIR/netqoe.toml (N probes, one query token) and DIR/tokens.json.
    Setup {
        #[arg(long, default_value_t = 100)]
        probes: usize,
        #[arg(long)]
        out: PathBuf,
        /// bus.kind for the written config
        #[arg(long, default_value = "embedded")]
        bus: String,
    },
    /// Offer an open-loop load to a running netqoe and check the result.
    Run(RunArgs),
    /// Plain lapin publish→consume round trip on a quorum queue (no netqoe code).
    Baseline(BaselineArgs),
    /// The same samples into netqoe and into InfluxDB 1.x (the peer): ingest rate, CPU per
    /// event, two questions' latency and answers, bytes on disk (`bench.sh influx`).
    Peer(peer::PeerArgs),
}

#[derive(clap::Args, Clone)]
struct RunArgs {
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    #[arg(long)]
    tokens: PathBuf,
    /// Targets per probe.
    #[arg(long, default_value_t = 2)]
    targets: usize,
    /// Events per batch (per request).
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Offered events per second (open loop).
    #[arg(long, default_value_t = 50_000)]
    rate: u64,
    /// Seconds of load.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Sender threads.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Requests in flight per worker (beyond: requests wait, and their latency counts from the intended time).
    #[arg(long, default_value_t = 256)]
    max_in_flight: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Compare the stored rollups with what was acknowledged.
    #[arg(long)]
    oracle: bool,
    /// Longest wait for the pipeline to catch up before the oracle check (seconds).
    #[arg(long, default_value_t = 120)]
    settle: u64,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// netqoe's pid (same machine): its CPU seconds from the start of the load until the pipeline
    /// caught up are reported (`server_cpu_s`), not counting the oracle's queries afterwards.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Target the multi-machine lab (deploy/lab) instead of loopback: --url must be a lab address
    /// (10.77.0.0/16, which exists only inside the lab's network namespaces).
    #[arg(long)]
    lab: bool,
    /// Wait for the pipeline by asking the oracle (every 2 s, until it is clean or --settle has
    /// passed) instead of reading netqoe_events_aggregated_total at --url (which a load balancer in
    /// front of ingest-only nodes does not serve). The report then says when it became clean.
    #[arg(long)]
    settle_by_oracle: bool,
    /// Re-send a batch that got no 2xx (503, 429, a lost connection), the same events with the
    /// same ids, backing off from 0.5 s to 8 s with jitter, for up to this many seconds, as a
    /// probe's spool does; 0 = never (open loop only). An answer lost with the node that sent it is then counted once, not missed.
    #[arg(long, default_value_t = 0)]
    retry_secs: u64,
    /// Source addresses to send from (comma-separated, each configured on this host), probe i
    /// using address i mod n: a fleet posts from many addresses, and a per-source rate limit in
    /// front of ingest (HAProxy's) applies to each. Default: the system's choice.
    #[arg(long, value_delimiter = ',')]
    source_addrs: Vec<std::net::IpAddr>,
}

#[derive(clap::Args, Clone)]
struct BaselineArgs {
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp: String,
    #[arg(long, default_value_t = 100)]
    batch: usize,
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Unconfirmed publishes in flight.
    #[arg(long, default_value_t = 256)]
    window: usize,
    #[arg(long, default_value_t = 500)]
    prefetch: u16,
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Serialize, Deserialize)]
struct Tokens {
    probes: Vec<(String, String)>,
    query: String,
}

fn loopback_only(url: &str) -> anyhow::Result<()> {
    let host = url.split("://").nth(1).unwrap_or(url).split(['/', ':']).next().unwrap_or("");
    let host = if url.contains("://[::1]") { "[::1]" } else { host };
    if !matches!(host, "127.0.0.1" | "localhost" | "[::1]") && !host.starts_with("127.") {
        bail!("--url {url}: load tests target the loopback address only (127.0.0.0/8, localhost, [::1])");
    }
    Ok(())
}

/// The lab's addresses: 10.77.0.0/16, which exists only inside deploy/lab's namespaces.
fn lab_only(url: &str) -> anyhow::Result<()> {
    let host = url.split("://").nth(1).unwrap_or(url).split(['/', ':']).next().unwrap_or("");
    match host.parse::<std::net::Ipv4Addr>() {
        Ok(a) if a.octets()[..2] == [10, 77] => Ok(()),
        _ => bail!("--url {url}: with --lab the load targets a lab address (10.77.0.0/16) only"),
    }
}

fn setup(probes: usize, out: &PathBuf, bus: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    let mut toml =
        format!("[bus]\nkind = \"{bus}\"\n[storage]\ndata_dir = {:?}\n\n", out.join("data").display().to_string());
    let mut tokens = Vec::with_capacity(probes);
    for i in 0..probes {
        let (token, digest) = netqoe::auth::mint(netqoe::auth::PROBE_PREFIX);
        let id = format!("probe-{i:05}");
        toml.push_str(&format!("[[probes]]\nid = \"{id}\"\ntoken_sha256 = \"{digest}\"\n"));
        tokens.push((id, token));
    }
    let (query, digest) = netqoe::auth::mint(netqoe::auth::QUERY_PREFIX);
    toml.push_str(&format!("\n[[query_tokens]]\nname = \"loadgen\"\ntoken_sha256 = \"{digest}\"\n"));
    std::fs::write(out.join("netqoe.toml"), toml)?;
    std::fs::write(out.join("tokens.json"), serde_json::to_vec(&Tokens { probes: tokens, query })?)?;
    println!("wrote {} and {}", out.join("netqoe.toml").display(), out.join("tokens.json").display());
    Ok(())
}

/// Generates realistic measurement events: per (probe, target) a median RTT, skewed samples around
/// it, Bernoulli packet loss over a 10-packet train. Bodies are written as JSON text directly (no
/// intermediate values): the generator shares the machine with netqoe, so its cost is kept low.
struct Generator {
    rng: rand::rngs::StdRng,
    targets: usize,
    target_names: Vec<String>,
    /// (second, "YYYY-MM-DDTHH:MM:SS") of the last timestamp formatted.
    second: (i64, String),
}

/// What one batch holds, per (target index, minute): samples acknowledged if it gets a 2xx.
struct BatchOracle {
    counts: Vec<(usize, i64, u64)>,
    /// The samples themselves (only when asked for: percentile checks).
    exact: Vec<(usize, i64, Vec<f64>)>,
}

impl Generator {
    fn new(seed: u64, targets: usize) -> Self {
        Self {
            rng: rand::rngs::StdRng::seed_from_u64(seed),
            targets,
            target_names: (0..targets).map(|t| format!("target-{t:03}.example")).collect(),
            second: (i64::MIN, String::new()),
        }
    }

    fn write_ts(&mut self, out: &mut Vec<u8>, ms: i64) {
        use std::io::Write;
        let sec = ms.div_euclid(1000);
        if self.second.0 != sec {
            let full = netqoe_domain::event::rfc3339(sec * 1000).unwrap_or_default();
            self.second = (sec, full[..19].to_string());
        }
        let _ = write!(out, "{}.{:03}Z", self.second.1, ms.rem_euclid(1000));
    }

    /// A batch of `n` events of `probe` (its index and id) ending at `ts_ms`.
    fn batch(
        &mut self,
        (probe_idx, probe): (usize, &str),
        seq: &mut u64,
        ts_ms: i64,
        n: usize,
        exact: bool,
        run_start: bool,
    ) -> (Vec<u8>, BatchOracle) {
        use std::io::Write;
        let mut out = Vec::with_capacity(64 + n * 220);
        let mut oracle = BatchOracle { counts: Vec::new(), exact: Vec::new() };
        out.extend_from_slice(b"{\"events\":[");
        let mut samples_milli = [0u64; 10];
        for i in 0..n {
            // targets cycle event by event, so a batch spreads over min(n, targets) series (the
            // old `(seq + i) % targets`, with seq also advancing, kept one target per batch)
            let t = (*seq as usize) % self.targets;
            let median = 5.0 + ((probe_idx * 31 + t * 17) % 120) as f64;
            let mut k = 0;
            for _ in 0..10 {
                if self.rng.gen::<f64>() >= 0.005 {
                    let u: f64 = self.rng.gen::<f64>().max(1e-9);
                    samples_milli[k] = ((median * (1.0 + 0.3 * (-u.ln() - 0.69))).max(0.1) * 1000.0).round() as u64;
                    k += 1;
                }
            }
            *seq += 1;
            let ts = ts_ms - (n - i) as i64;
            let minute = ts / 60_000 * 60_000;
            match oracle.counts.iter_mut().find(|(ti, m, _)| *ti == t && *m == minute) {
                Some(c) => c.2 += k as u64,
                None => oracle.counts.push((t, minute, k as u64)),
            }
            if exact {
                let vals = samples_milli[..k].iter().map(|m| *m as f64 / 1000.0);
                match oracle.exact.iter_mut().find(|(ti, m, _)| *ti == t && *m == minute) {
                    Some(e) => e.2.extend(vals),
                    None => oracle.exact.push((t, minute, vals.collect())),
                }
            }
            if i > 0 {
                out.push(b',');
            }
            let _ = write!(out, "{{\"event_id\":\"{probe}-{}\",\"seq\":{},", *seq, *seq);
            if run_start && i == 0 {
                // a run's sequence starts above the last run's: nothing below it is missing
                out.extend_from_slice(b"\"run_start\":true,");
            }
            out.extend_from_slice(b"\"ts\":\"");
            self.write_ts(&mut out, ts);
            let _ = write!(out, "\",\"target\":\"{}\",\"kind\":\"udp\",\"rtt_samples_ms\":[", self.target_names[t]);
            for (j, m) in samples_milli[..k].iter().enumerate() {
                if j > 0 {
                    out.push(b',');
                }
                let _ = write!(out, "{}.{:03}", m / 1000, m % 1000);
            }
            let _ = write!(out, "],\"sent\":10,\"received\":{k}}}");
        }
        out.extend_from_slice(b"]}");
        (out, oracle)
    }
}

fn now_ms() -> i64 {
    netqoe_actors::now_ms()
}

#[derive(Default)]
struct WorkerResult {
    hist: Option<Histogram<u64>>,
    statuses: BTreeMap<u16, u64>,
    offered_events: u64,
    accepted_events: u64,
    /// (probe, target, minute) → samples acknowledged
    oracle: BTreeMap<(String, String, i64), u64>,
    /// Samples of batches that never got a 2xx but whose answer was lost at least once (no
    /// response: the node may have stored them before it died): they may be stored or not. A
    /// 503/429 is a definite refusal and is not counted here.
    ambiguous: BTreeMap<(String, String, i64), u64>,
    /// Exact acknowledged samples of the windows of every 50th probe, for percentile error.
    exact: BTreeMap<(String, String, i64), Vec<f64>>,
    /// second → (accepted events, latency histogram)
    timeline: BTreeMap<u64, (u64, Histogram<u64>)>,
    /// Re-sends of batches that got no 2xx (`--retry-secs`).
    retries: u64,
    /// Every attempt that got no 2xx, by status (0: no answer), re-sent ones included: the
    /// 503s and 429s a fault caused even when the re-send was then accepted.
    refusals: BTreeMap<u16, u64>,
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds")
}

async fn worker(w: usize, args: RunArgs, probes: Vec<(usize, String, String)>, start: Instant) -> WorkerResult {
    let client_from = |addr: Option<std::net::IpAddr>| {
        let mut connector = awc::Connector::new();
        if let Some(a) = addr {
            connector = connector.local_address(a);
        }
        awc::Client::builder().connector(connector).timeout(Duration::from_secs(30)).finish()
    };
    let clients: Vec<awc::Client> = if args.source_addrs.is_empty() {
        vec![client_from(None)]
    } else {
        args.source_addrs.iter().map(|a| client_from(Some(*a))).collect()
    };
    let url = format!("{}/v1/events", args.url);
    let mut gen = Generator::new(args.seed * 1000 + w as u64, args.targets);
    let target_names = gen.target_names.clone();
    let per_worker_rate = args.rate as f64 / args.workers as f64;
    let interval = Duration::from_secs_f64(args.batch as f64 / per_worker_rate);
    let total = (args.duration as f64 / interval.as_secs_f64()).floor() as u64;
    let permits = Arc::new(tokio::sync::Semaphore::new(args.max_in_flight));
    let shared = Arc::new(std::sync::Mutex::new(WorkerResult { hist: Some(hist()), ..Default::default() }));
    // sequence numbers (and the event ids made from them) start from this run's start time in
    // µs, so a second run against the same server is new events, not duplicates of the first
    let seq_base = now_ms() as u64 * 1000;
    let mut seqs = vec![seq_base; probes.len()];
    let mut handles = Vec::new();
    for k in 0..total {
        let intended = start + interval * k as u32;
        tokio::time::sleep_until(tokio::time::Instant::from_std(intended)).await;
        let pi = (k as usize) % probes.len();
        let (idx, probe, token) = &probes[pi];
        let keep_exact = idx % 50 == 0;
        let ts = now_ms() - (Instant::now() - intended).as_millis() as i64;
        let run_start = seqs[pi] == seq_base;
        let (body, oracle) = gen.batch((*idx, probe), &mut seqs[pi], ts, args.batch, keep_exact, run_start);
        let permit = permits.clone().acquire_owned().await.expect("semaphore");
        let (client, url, token, probe, shared, names) = (
            clients[*idx % clients.len()].clone(),
            url.clone(),
            token.clone(),
            probe.clone(),
            shared.clone(),
            target_names.clone(),
        );
        let n = args.batch as u64;
        let retry_secs = args.retry_secs;
        handles.push(actix_rt::spawn(async move {
            let mut retries = 0u64;
            let mut refused: Vec<u16> = Vec::new();
            let mut answer_lost = false;
            let status = loop {
                let res = client
                    .post(&url)
                    .insert_header(("Authorization", format!("Bearer {token}")))
                    .insert_header(("Content-Type", "application/json"))
                    .send_body(body.clone())
                    .await;
                let status = match res {
                    Ok(mut r) => {
                        let _ = r.body().await;
                        r.status().as_u16()
                    }
                    Err(_) => 0,
                };
                answer_lost |= status == 0;
                if !(200..300).contains(&status) {
                    refused.push(status);
                }
                if (200..300).contains(&status) || Instant::now() >= intended + Duration::from_secs(retry_secs) {
                    break status;
                }
                // exponential backoff with jitter, as a probe's spool backs off: re-sends that all
                // came back at once would keep a per-source rate limit (HAProxy's 429) tripped
                let backoff = 500u64.saturating_mul(1 << retries.min(4));
                retries += 1;
                let jitter = rand::thread_rng().gen_range(backoff / 2..=backoff);
                tokio::time::sleep(Duration::from_millis(jitter)).await;
            };
            drop(permit);
            let latency_us = (Instant::now() - intended).as_micros().max(1) as u64;
            let second = (intended - start).as_secs();
            let mut g = shared.lock().expect("lock");
            g.offered_events += n;
            g.retries += retries;
            for r in refused {
                *g.refusals.entry(r).or_default() += 1;
            }
            *g.statuses.entry(status).or_default() += 1;
            if let Some(h) = g.hist.as_mut() {
                let _ = h.record(latency_us.min(120_000_000));
            }
            let slot = g.timeline.entry(second).or_insert_with(|| (0, hist()));
            let _ = slot.1.record(latency_us.min(120_000_000));
            if (200..300).contains(&status) {
                slot.0 += n;
                g.accepted_events += n;
                for (t, minute, n) in oracle.counts {
                    *g.oracle.entry((probe.clone(), names[t].clone(), minute)).or_default() += n;
                }
                for (t, minute, samples) in oracle.exact {
                    g.exact.entry((probe.clone(), names[t].clone(), minute)).or_default().extend(samples);
                }
            } else if answer_lost {
                for (t, minute, n) in oracle.counts {
                    *g.ambiguous.entry((probe.clone(), names[t].clone(), minute)).or_default() += n;
                }
            }
        }));
    }
    for h in handles {
        let _ = h.await;
    }
    let mut g = shared.lock().expect("lock");
    std::mem::take(&mut *g)
}

async fn metric(client: &awc::Client, url: &str, name: &str) -> Option<f64> {
    let mut r = client.get(format!("{url}/metrics")).send().await.ok()?;
    let b = r.body().limit(64 << 20).await.ok()?;
    String::from_utf8_lossy(&b)
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
}

/// CPU seconds (user + system) this process used so far, from /proc/self/stat.
fn own_cpu_seconds() -> Option<f64> {
    cpu_seconds_of("self")
}

/// User + system CPU seconds of a process (`self` or a pid), from /proc.
fn cpu_seconds_of(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn pct(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    if args.lab {
        lab_only(&args.url)?;
    } else {
        loopback_only(&args.url)?;
    }
    let tokens: Tokens =
        serde_json::from_slice(&std::fs::read(&args.tokens).with_context(|| format!("{}", args.tokens.display()))?)?;
    if tokens.probes.is_empty() {
        bail!("{}: no probes", args.tokens.display());
    }
    let admin = actix_rt::System::new();
    let url = args.url.clone();
    let minute_ms = now_ms() / 60_000 * 60_000;
    let (aggregated_before, stored_before) = admin.block_on(async {
        let c = awc::Client::builder().timeout(Duration::from_secs(60)).finish();
        let aggregated = metric(&c, &url, "netqoe_batches_aggregated_total").await.unwrap_or(0.0);
        // what the windows this run writes to hold already (an earlier run in the same minute):
        // the oracle counts only what this run adds
        let before = if args.oracle {
            stored_rtt_counts(&c, &url, &tokens.query, minute_ms).await
        } else {
            Some(Default::default())
        };
        (aggregated, before)
    });
    let Some(stored_before) = stored_before else {
        bail!("the oracle could not read the windows stored before the run (queries refused)");
    };
    let server_cpu = || args.server_pid.and_then(|p| cpu_seconds_of(&p.to_string()));
    let server_cpu_before = server_cpu();
    let start = Instant::now() + Duration::from_millis(200);
    let started_ms = now_ms();
    let mut threads = Vec::new();
    for w in 0..args.workers {
        let probes: Vec<(usize, String, String)> = tokens
            .probes
            .iter()
            .enumerate()
            .filter(|(i, _)| i % args.workers == w)
            .map(|(i, (p, t))| (i, p.clone(), t.clone()))
            .collect();
        let a = args.clone();
        threads.push(std::thread::spawn(move || actix_rt::System::new().block_on(worker(w, a, probes, start))));
    }
    let progress_until = start + Duration::from_secs(args.duration);
    while Instant::now() < progress_until {
        std::thread::sleep(
            Duration::from_secs(5)
                .min(progress_until.saturating_duration_since(Instant::now()) + Duration::from_millis(1)),
        );
        eprintln!("loadgen: {:>4.0}/{} s", (Instant::now() - start).as_secs_f64().max(0.0), args.duration);
    }
    let mut total = WorkerResult { hist: Some(hist()), ..Default::default() };
    for t in threads {
        let r = t.join().map_err(|_| anyhow::anyhow!("worker panicked"))?;
        if let (Some(a), Some(b)) = (total.hist.as_mut(), r.hist.as_ref()) {
            a.add(b).ok();
        }
        for (k, v) in r.statuses {
            *total.statuses.entry(k).or_default() += v;
        }
        for (k, v) in r.refusals {
            *total.refusals.entry(k).or_default() += v;
        }
        total.offered_events += r.offered_events;
        total.accepted_events += r.accepted_events;
        total.retries += r.retries;
        for (k, v) in r.ambiguous {
            *total.ambiguous.entry(k).or_default() += v;
        }
        for (k, v) in r.oracle {
            *total.oracle.entry(k).or_default() += v;
        }
        for (k, v) in r.exact {
            total.exact.entry(k).or_default().extend(v);
        }
        for (s, (n, h)) in r.timeline {
            let slot = total.timeline.entry(s).or_insert_with(|| (0, hist()));
            slot.0 += n;
            slot.1.add(&h).ok();
        }
    }
    let send_secs = args.duration as f64;
    let h = total.hist.take().unwrap_or_else(hist);
    // consumer side: until the pipeline has aggregated everything acknowledged
    let (caught_up_s, oracle_report, server_cpu_s) = admin.block_on(async {
        let c = awc::Client::builder().timeout(Duration::from_secs(60)).finish();
        // caught up = every 2xx'd batch committed and acked (netqoe_batches_aggregated_total);
        // events *applied* (netqoe_events_aggregated_total) run ahead of the commit, and an
        // oracle read then found windows "missing" that were stored a flush later
        let batches_2xx: u64 = total.statuses.iter().filter(|(s, _)| (200..300).contains(*s)).map(|(_, n)| n).sum();
        let want = aggregated_before + batches_2xx as f64;
        let deadline = Instant::now() + Duration::from_secs(args.settle);
        let mut caught = None;
        let mut server_cpu_s = None;
        if args.settle_by_oracle {
            let mut last = serde_json::Value::Null;
            while Instant::now() < deadline {
                last = check_oracle(&c, &args.url, &tokens.query, &total, &stored_before, started_ms).await;
                if last["clean"] == serde_json::Value::Bool(true) {
                    caught = Some((Instant::now() - start).as_secs_f64());
                    break;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            return (caught, Some(last), None);
        }
        while Instant::now() < deadline {
            if metric(&c, &args.url, "netqoe_batches_aggregated_total").await.unwrap_or(0.0) >= want {
                caught = Some((Instant::now() - start).as_secs_f64());
                server_cpu_s = server_cpu().zip(server_cpu_before).map(|(b, a)| b - a);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let report = if args.oracle {
            Some(check_oracle(&c, &args.url, &tokens.query, &total, &stored_before, started_ms).await)
        } else {
            None
        };
        (caught, report, server_cpu_s)
    });
    let offered = total.offered_events as f64 / send_secs;
    let accepted = total.accepted_events as f64 / send_secs;
    let consumed = caught_up_s.map(|s| total.accepted_events as f64 / s);
    println!("offered   {:>10.0} events/s ({} events)", offered, total.offered_events);
    println!("accepted  {:>10.0} events/s ({} events, 2xx)", accepted, total.accepted_events);
    // the (probe, target) series the acknowledged events fell in: the oracle checks each one's windows
    let series: std::collections::BTreeSet<(&str, &str)> =
        total.oracle.keys().map(|(p, t, _)| (p.as_str(), t.as_str())).collect();
    let windows = total.oracle.len();
    println!("series    {:>10} (probe, target) pairs, {windows} 1m windows to check", series.len());
    match consumed {
        Some(c) => println!(
            "consumed  {:>10.0} events/s (aggregated and committed, caught up {:.1} s after start)",
            c,
            caught_up_s.unwrap_or(0.0)
        ),
        None => println!("consumed  (did not catch up within {} s)", args.settle),
    }
    println!("statuses  {:?}", total.statuses);
    println!(
        "latency   p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms (from intended send time)",
        pct(&h, 0.5),
        pct(&h, 0.99),
        pct(&h, 0.999),
        h.max() as f64 / 1000.0
    );
    if let Some(r) = &oracle_report {
        println!("oracle    {}", serde_json::to_string(r)?);
    }
    let timeline: Vec<serde_json::Value> = total
        .timeline
        .iter()
        .map(|(s, (n, h))| serde_json::json!({"second": s, "accepted_events": n, "p99_ms": pct(h, 0.99)}))
        .collect();
    let report = serde_json::json!({
        "offered_events_per_s": offered, "accepted_events_per_s": accepted, "consumed_events_per_s": consumed,
        "offered_events": total.offered_events, "accepted_events": total.accepted_events,
        "series": series.len(), "windows": windows,
        "statuses": total.statuses, "refusals": total.refusals, "retries": total.retries, "p50_ms": pct(&h, 0.5), "p99_ms": pct(&h, 0.99), "p999_ms": pct(&h, 0.999),
        "max_ms": h.max() as f64 / 1000.0, "oracle": oracle_report,
        "caught_up_at_ms": caught_up_s.map(|c| started_ms + (c * 1000.0) as i64 + 200), "timeline": timeline,
        "batch": args.batch, "rate": args.rate, "duration_s": args.duration, "probes": tokens.probes.len(), "targets": args.targets,
    "loadgen_cpu_s": own_cpu_seconds(), "server_cpu_s": server_cpu_s,
    });
    if let Some(p) = &args.json {
        std::fs::write(p, serde_json::to_vec_pretty(&report)?)?;
    }
    if oracle_report.as_ref().is_some_and(|r| r["clean"] != serde_json::Value::Bool(true)) {
        bail!("oracle found differences");
    }
    Ok(())
}

/// Compares stored 1m windows with the acknowledged samples: zero tolerance on counts.
/// (probe, target, minute) → samples stored.
type Counts = BTreeMap<(String, String, i64), u64>;

/// A query answered 200 with JSON, asked again when refused (a load balancer's per-source 429, a
/// 503) or unanswered: never read as "nothing stored". None after 20 tries.
async fn get_json_retrying(c: &awc::Client, q: &str, token: &str) -> Option<serde_json::Value> {
    for attempt in 0..20u64 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(250 * attempt.min(4))).await;
        }
        let Ok(mut r) = c.get(q).insert_header(("Authorization", format!("Bearer {token}"))).send().await else {
            continue;
        };
        if r.status().as_u16() != 200 {
            continue;
        }
        let b = r.body().limit(64 << 20).await.unwrap_or_default();
        if let Ok(parsed) = serde_json::from_slice::<serde_json::Value>(&b) {
            return Some(parsed);
        }
    }
    None
}

/// Every RTT 1m window stored from `from_ms` on, with its sample count (all pages).
async fn stored_rtt_counts(c: &awc::Client, url: &str, token: &str, from_ms: i64) -> Option<Counts> {
    let to = now_ms() + 120_000;
    let mut out = Counts::new();
    let mut after = String::new();
    loop {
        let q = format!("{url}/v1/rollups?metric=rtt&tier=1m&from={from_ms}&to={to}&limit=10000&fields=count{after}");
        let v = get_json_retrying(c, &q, token).await?;
        for w in v["rollups"].as_array().into_iter().flatten() {
            let start = chrono::DateTime::parse_from_rfc3339(w["window_start"].as_str().unwrap_or(""))
                .map(|d| d.timestamp_millis())
                .unwrap_or(0);
            let key =
                (w["probe"].as_str().unwrap_or("").to_string(), w["target"].as_str().unwrap_or("").to_string(), start);
            out.insert(key, w["count"].as_u64().unwrap_or(0));
        }
        match v["next"].as_str() {
            Some(n) => after = format!("&after={n}"),
            None => return Some(out),
        }
    }
}

async fn check_oracle(
    c: &awc::Client,
    url: &str,
    token: &str,
    run: &WorkerResult,
    before: &Counts,
    started_ms: i64,
) -> serde_json::Value {
    let (oracle, ambiguous, exact) = (&run.oracle, &run.ambiguous, &run.exact);
    // events are stamped from the run's start on: windows before its minute are another run's
    let from = started_ms / 60_000 * 60_000;
    let to = now_ms() + 120_000;
    let mut stored: BTreeMap<(String, String, i64), u64> = BTreeMap::new();
    let mut quantiles: BTreeMap<(String, String, i64), [f64; 3]> = BTreeMap::new();
    let probes: std::collections::BTreeSet<&String> =
        oracle.keys().chain(ambiguous.keys()).map(|(p, _, _)| p).collect();
    let mut query_failures = 0u64;
    for p in probes {
        // page by page (`next`), as a client must
        let mut windows = Vec::new();
        let mut after = String::new();
        loop {
            let q = format!("{url}/v1/rollups?probe={p}&metric=rtt&tier=1m&from={from}&to={to}&limit=10000{after}");
            // a refused query (a load balancer's per-source 429, a 503) is asked again, never read
            // as "nothing stored"; one that keeps failing makes the check unclean
            let Some(v) = get_json_retrying(c, &q, token).await else {
                query_failures += 1;
                break;
            };
            windows.extend(v["rollups"].as_array().cloned().unwrap_or_default());
            match v["next"].as_str() {
                Some(n) => after = format!("&after={n}"),
                None => break,
            }
        }
        for w in windows {
            let start = chrono::DateTime::parse_from_rfc3339(w["window_start"].as_str().unwrap_or(""))
                .map(|d| d.timestamp_millis())
                .unwrap_or(0);
            let key = (p.clone(), w["target"].as_str().unwrap_or("").to_string(), start);
            let q = |k: &str| w[k].as_f64().unwrap_or(f64::NAN);
            quantiles.insert(key.clone(), [q("p50"), q("p95"), q("p99")]);
            stored.insert(key, w["count"].as_u64().unwrap_or(0));
        }
    }
    let (mut missing, mut duplicated, mut differing, mut stored_unacked) = (0u64, 0u64, 0u64, 0u64);
    let keys: std::collections::BTreeSet<&(String, String, i64)> = oracle.keys().chain(ambiguous.keys()).collect();
    for k in &keys {
        let want = oracle.get(*k).copied().unwrap_or(0);
        let maybe = ambiguous.get(*k).copied().unwrap_or(0);
        let got = stored.get(*k).copied().unwrap_or(0).saturating_sub(before.get(*k).copied().unwrap_or(0));
        if got < want {
            differing += 1;
            missing += want - got;
        } else if got > want + maybe {
            differing += 1;
            duplicated += got - want - maybe;
        } else {
            // stored beyond what was acknowledged, within what may have landed unanswered
            stored_unacked += got - want;
        }
    }
    let unexpected = stored.keys().filter(|k| !keys.contains(k) && !before.contains_key(*k)).count();
    // percentile error against the exact samples (every 50th probe's windows)
    let mut max_err: f64 = 0.0;
    let mut checked = 0;
    for (k, samples) in exact {
        // a window that held another run's samples too has other percentiles
        let (Some(got), false, false) = (quantiles.get(k), samples.is_empty(), before.contains_key(k)) else {
            continue;
        };
        let mut v = samples.clone();
        v.sort_by(f64::total_cmp);
        for (i, q) in [0.5, 0.95, 0.99].iter().enumerate() {
            let want = v[(q * (v.len() - 1) as f64).floor() as usize];
            if want > 0.0 {
                max_err = max_err.max((got[i] - want).abs() / want);
            }
        }
        checked += 1;
    }
    serde_json::json!({"windows": keys.len(), "windows_differing": differing,
                       "stored_unacknowledged_samples": stored_unacked, "missing_samples": missing,
                       "duplicated_samples": duplicated, "unexpected_windows": unexpected,
                       "percentile_windows_checked": checked, "max_percentile_rel_error": max_err,
                       "query_failures": query_failures,
                       "clean": query_failures == 0 && differing == 0 && unexpected == 0 && max_err <= 0.01 + 1e-9})
}

fn baseline(args: BaselineArgs) -> anyhow::Result<()> {
    let host = args.amqp.split('@').next_back().unwrap_or("");
    if !(host.starts_with("127.") || host.starts_with("localhost")) {
        bail!("--amqp: the baseline targets a broker on the loopback address only");
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        use futures_util::StreamExt;
        use lapin::options::*;
        use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
        let props = || lapin::ConnectionProperties::default()
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio);
        let pubc = lapin::Connection::connect(&args.amqp, props()).await?;
        let subc = lapin::Connection::connect(&args.amqp, props()).await?;
        let pch = pubc.create_channel().await?;
        let sch = subc.create_channel().await?;
        let queue = format!("netqoe-bench.baseline.{}", std::process::id());
        let mut qargs = FieldTable::default();
        qargs.insert(ShortString::from("x-queue-type"), AMQPValue::LongString(LongString::from("quorum")));
        pch.queue_declare(&queue, QueueDeclareOptions { durable: true, ..Default::default() }, qargs).await?;
        pch.confirm_select(ConfirmSelectOptions::default()).await?;
        sch.basic_qos(args.prefetch, BasicQosOptions::default()).await?;
        // the same batches netqoe receives
        let mut gen = Generator::new(1, 2);
        let mut seq = 0;
        let payload = gen.batch((0, "probe-00000"), &mut seq, now_ms(), args.batch, false, false).0;
        let consumed = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stop = Instant::now() + Duration::from_secs(args.duration);
        let cons = consumed.clone();
        let mut consumer = sch.basic_consume(&queue, "baseline", BasicConsumeOptions::default(), FieldTable::default()).await?;
        let consumer_task = tokio::spawn(async move {
            let mut since_ack = 0u32;
            while let Some(Ok(d)) = consumer.next().await {
                since_ack += 1;
                cons.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if since_ack >= 50 {
                    let _ = d.acker.ack(BasicAckOptions { multiple: true }).await;
                    since_ack = 0;
                }
                if Instant::now() > stop {
                    let _ = d.acker.ack(BasicAckOptions { multiple: true }).await;
                    break;
                }
            }
        });
        let warm = Instant::now() + Duration::from_secs(2);
        let mut in_flight = futures_util::stream::FuturesUnordered::new();
        let mut published = 0u64;
        let mut warm_count: Option<(Instant, u64)> = None;
        while Instant::now() < stop {
            while in_flight.len() < args.window {
                let c = pch.basic_publish("", &queue, BasicPublishOptions::default(), &payload, lapin::BasicProperties::default().with_delivery_mode(2)).await?;
                in_flight.push(c);
                published += 1;
            }
            if let Some(r) = in_flight.next().await {
                r?;
            }
            if warm_count.is_none() && Instant::now() > warm {
                warm_count = Some((Instant::now(), consumed.load(std::sync::atomic::Ordering::Relaxed)));
            }
        }
        while let Some(r) = in_flight.next().await {
            r?;
        }
        let end_count = consumed.load(std::sync::atomic::Ordering::Relaxed);
        let (t0, c0) = warm_count.unwrap_or((Instant::now(), 0));
        let secs = (Instant::now() - t0).as_secs_f64().max(0.001);
        let msgs = (end_count - c0) as f64 / secs;
        consumer_task.abort();
        let _ = pch.queue_delete(&queue, QueueDeleteOptions::default()).await;
        let report = serde_json::json!({"messages_per_s": msgs, "events_per_s": msgs * args.batch as f64, "batch": args.batch,
                                        "payload_bytes": payload.len(), "published": published});
        println!("baseline  {:>10.0} events/s ({:.0} msgs/s of {} events, {} bytes each)", msgs * args.batch as f64, msgs, args.batch, payload.len());
        if let Some(p) = &args.json {
            std::fs::write(p, serde_json::to_vec_pretty(&report)?)?;
        }
        Ok::<_, anyhow::Error>(())
    })
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Setup { probes, out, bus } => setup(probes, &out, &bus),
        Cmd::Run(a) => run(a),
        Cmd::Baseline(a) => baseline(a),
        Cmd::Peer(a) => peer::peer(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets_are_allowed() {
        assert!(loopback_only("http://127.0.0.1:8080").is_ok());
        assert!(loopback_only("http://localhost:8080").is_ok());
        assert!(loopback_only("http://[::1]:8080").is_ok());
        assert!(loopback_only("http://10.0.0.1:8080").is_err());
        assert!(loopback_only("http://example.com").is_err());
        assert!(lab_only("http://10.77.20.10:8080").is_ok());
        assert!(lab_only("http://10.78.20.10:8080").is_err());
        assert!(lab_only("http://127.0.0.1:8080").is_err());
        assert!(lab_only("http://lb-1:8080").is_err());
    }

    #[test]
    fn generated_batches_are_valid_events() {
        let mut g = Generator::new(1, 3);
        let mut seq = 0;
        let now = now_ms();
        let (body, oracle) = g.batch((0, "p"), &mut seq, now, 50, true, true);
        let batch: netqoe_domain::WireBatch = serde_json::from_slice(&body).unwrap();
        let mut samples = 0;
        let mut targets = std::collections::BTreeSet::new();
        for (i, w) in batch.events.into_iter().enumerate() {
            samples += w.rtt_samples_ms.as_ref().map_or(0, Vec::len) as u64;
            let e = netqoe_domain::event::validate(w, i, now, &Default::default()).unwrap();
            assert_eq!(e.seq, i as u64 + 1);
            assert_eq!(e.run_start, i == 0, "the run's first event says so");
            targets.insert(e.target);
        }
        // one batch spreads over every target (it used to keep one: half the series with 2 targets)
        assert_eq!(targets.len(), 3, "{targets:?}");
        assert_eq!(seq, 50);
        let second = g.batch((0, "p"), &mut seq, now, 2, false, false).0;
        let second: netqoe_domain::WireBatch = serde_json::from_slice(&second).unwrap();
        assert_eq!(second.events[0].event_id, "p-51", "ids continue, never restart within a run");
        assert_eq!(oracle.counts.iter().map(|c| c.2).sum::<u64>(), samples, "the oracle counts every sample");
        assert_eq!(oracle.exact.iter().map(|e| e.2.len() as u64).sum::<u64>(), samples);
    }
}
