//! `netqoe-loadgen peer`: netqoe beside the peer many operators run instead — Telegraf's ping
//! plugin into InfluxDB 1.x, percentiles computed at query time — on the same samples.
//!
//! One deterministic data set (seeded: per (probe, target) a median RTT and skewed samples around
//! it, 10-packet trains with 0.5 % loss, `per_minute` measurements a minute over the last
//! `minutes` whole minutes) is sent to both in batches of `batch` measurements, closed loop with
//! the same concurrency: to netqoe as its JSON events (each probe's batches in time order), to
//! InfluxDB as line protocol, one point per RTT sample (`rtt,probe=…,target=… ms=…`, the sample's
//! index added to the measurement's time in µs so samples of one train stay distinct points).
//! Reported for each: sustained events/s and CPU µs per event (the server's user + system CPU
//! from the first write until netqoe has committed everything, or until InfluxDB's writes are
//! answered and its cache is written to disk), the latency of the two questions below, and bytes
//! on disk per series per day. Then the answers are compared:
//! - Q1, per-minute p50/p95/p99 of one series over the last hour, for `series_checked` series:
//!   netqoe's sketch answer against the exact value of the samples sent under the same rank rule
//!   (`floor(q·(n−1))`), which isolates the sketch's error (≤ 1 %);
//! - Q2, fleet p95 per target and minute over every probe: netqoe's merged sketches against the
//!   exact value of the samples sent (same rank rule), InfluxDB's `percentile()` against the exact
//!   value under its nearest-rank rule, and the two answers against each other (the rank rules
//!   alone can differ by a few tenths of a percent where the tail is sparse).
//!
//! Loopback only; it stops by itself once everything is sent and asked.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::{Rng, SeedableRng};

use crate::{cpu_seconds_of, loopback_only, metric, now_ms, Tokens};

#[derive(clap::Args, Clone)]
pub struct PeerArgs {
    /// netqoe's base URL (a `netqoe run` started with the config of `setup`).
    #[arg(long, default_value = "http://127.0.0.1:18999")]
    url: String,
    #[arg(long)]
    tokens: PathBuf,
    /// netqoe's pid (its CPU is read from /proc).
    #[arg(long)]
    server_pid: u32,
    /// netqoe's data directory (bytes on disk).
    #[arg(long)]
    data_dir: PathBuf,
    /// InfluxDB's base URL (scripts/ensure-influxdb.sh).
    #[arg(long, default_value = "http://127.0.0.1:18086")]
    influx: String,
    #[arg(long)]
    influx_pid: u32,
    /// InfluxDB's data and WAL directories' parent (bytes on disk).
    #[arg(long)]
    influx_home: PathBuf,
    /// Probes used (the first N of the tokens file).
    #[arg(long, default_value_t = 500)]
    probes: usize,
    #[arg(long, default_value_t = 10)]
    targets: usize,
    /// Whole minutes of data, ending before the current minute.
    #[arg(long, default_value_t = 10)]
    minutes: usize,
    /// Measurements per (probe, target) and minute.
    #[arg(long, default_value_t = 6)]
    per_minute: usize,
    /// Measurements per request (both sides).
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Requests in flight (both sides).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Series whose per-minute percentiles are asked and checked (Q1).
    #[arg(long, default_value_t = 20)]
    series_checked: usize,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    #[arg(long)]
    json: Option<PathBuf>,
}

const DB: &str = "netqoe_peer";
const SAMPLES: usize = 10;

/// One measurement: a packet train's RTTs (ms) at `ts_ms`.
struct Measurement {
    target: usize,
    ts_ms: i64,
    rtts: Vec<f64>,
}

/// Every probe's measurements, in time order.
fn generate(a: &PeerArgs, start_ms: i64) -> Vec<Vec<Measurement>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(a.seed);
    let step = 60_000 / a.per_minute as i64;
    (0..a.probes)
        .map(|p| {
            let mut out = Vec::with_capacity(a.targets * a.minutes * a.per_minute);
            for slot in 0..(a.minutes * a.per_minute) as i64 {
                for t in 0..a.targets {
                    let median = 5.0 + ((p * 31 + t * 17) % 120) as f64;
                    let mut rtts = Vec::with_capacity(SAMPLES);
                    for _ in 0..SAMPLES {
                        if rng.gen::<f64>() >= 0.005 {
                            let u: f64 = rng.gen::<f64>().max(1e-9);
                            rtts.push(((median * (1.0 + 0.3 * (-u.ln() - 0.69))).max(0.1) * 1000.0).round() / 1000.0);
                        }
                    }
                    // spread over the slot by probe, never past it
                    let ts_ms = start_ms + slot * step + (p as i64 * 7 + t as i64) % step;
                    out.push(Measurement { target: t, ts_ms, rtts });
                }
            }
            out.sort_by_key(|m| m.ts_ms);
            out
        })
        .collect()
}

fn target_name(t: usize) -> String {
    format!("peer-target-{t:03}.example")
}

fn netqoe_body(probe: &str, ms: &[Measurement], seq: &mut u64) -> Vec<u8> {
    let events: Vec<serde_json::Value> = ms
        .iter()
        .map(|m| {
            *seq += 1;
            serde_json::json!({
                "event_id": format!("{probe}-peer-{seq}"), "seq": *seq,
                "ts": netqoe_domain::event::rfc3339(m.ts_ms).unwrap_or_default(),
                "target": target_name(m.target), "kind": "udp",
                "rtt_samples_ms": m.rtts, "sent": SAMPLES, "received": m.rtts.len(),
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "events": events })).expect("JSON")
}

fn line_protocol(probe: &str, ms: &[Measurement]) -> Vec<u8> {
    use std::io::Write;
    let mut out = Vec::with_capacity(ms.len() * SAMPLES * 70);
    for m in ms {
        for (j, v) in m.rtts.iter().enumerate() {
            let _ = writeln!(
                out,
                "rtt,probe={probe},target={} ms={v} {}",
                target_name(m.target),
                m.ts_ms * 1000 + j as i64
            );
        }
    }
    out
}

/// Sends every probe's batches (in order per probe) with `concurrency` requests in flight;
/// returns the wall seconds and the requests that failed.
async fn send_all(
    concurrency: usize,
    work: Vec<Vec<(String, Vec<u8>)>>,
    post: impl Fn(String, Vec<u8>) -> futures_util::future::LocalBoxFuture<'static, bool> + Clone + 'static,
) -> (f64, u64) {
    let started = Instant::now();
    // task k sends the batches of probes k, k + c, k + 2c, … one after another
    let mut lanes: Vec<Vec<(String, Vec<u8>)>> = (0..concurrency).map(|_| Vec::new()).collect();
    for (i, probe) in work.into_iter().enumerate() {
        lanes[i % concurrency].extend(probe);
    }
    let handles: Vec<_> = lanes
        .into_iter()
        .map(|lane| {
            let post = post.clone();
            actix_rt::spawn(async move {
                let mut failed = 0u64;
                for (key, body) in lane {
                    // a refused batch (503, 429, a lost connection) is sent again, as a probe would
                    let mut tries = 0;
                    while !post(key.clone(), body.clone()).await {
                        tries += 1;
                        if tries == 20 {
                            failed += 1;
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
                failed
            })
        })
        .collect();
    let mut failed = 0;
    for h in handles {
        failed += h.await.unwrap_or(1);
    }
    (started.elapsed().as_secs_f64(), failed)
}

async fn influx_query(c: &awc::Client, base: &str, q: &str) -> anyhow::Result<(f64, serde_json::Value)> {
    let started = Instant::now();
    let mut r = c
        .get(format!("{base}/query"))
        .query(&[("db", DB), ("q", q), ("epoch", "ms")])
        .map_err(|e| anyhow::anyhow!("query string: {e}"))?
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("influx query: {e}"))?;
    let body = r.body().limit(512 << 20).await.map_err(|e| anyhow::anyhow!("influx answer: {e}"))?;
    let secs = started.elapsed().as_secs_f64();
    if !r.status().is_success() {
        bail!("influx answered {}: {}", r.status(), String::from_utf8_lossy(&body));
    }
    Ok((secs, serde_json::from_slice(&body)?))
}

async fn netqoe_query(c: &awc::Client, url: &str, token: &str) -> anyhow::Result<(f64, serde_json::Value)> {
    let started = Instant::now();
    let mut r = c
        .get(url)
        .insert_header(("Authorization", format!("Bearer {token}")))
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("netqoe query: {e}"))?;
    let body = r.body().limit(512 << 20).await.map_err(|e| anyhow::anyhow!("netqoe answer: {e}"))?;
    let secs = started.elapsed().as_secs_f64();
    if r.status().as_u16() != 200 {
        bail!("netqoe answered {}: {}", r.status(), String::from_utf8_lossy(&body));
    }
    Ok((secs, serde_json::from_slice(&body)?))
}

/// Bytes a directory takes on disk (allocated blocks: InfluxDB's series files are preallocated
/// sparse files, whose apparent size is not what they take).
fn dir_bytes(p: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let Ok(rd) = std::fs::read_dir(p) else { return 0 };
    for e in rd.flatten() {
        match e.metadata() {
            Ok(m) if m.is_dir() => total += dir_bytes(&e.path()),
            Ok(m) => total += m.blocks() * 512,
            Err(_) => {}
        }
    }
    total
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn rel(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        a.abs()
    } else {
        (a - b).abs() / b.abs()
    }
}

pub fn peer(a: PeerArgs) -> anyhow::Result<()> {
    loopback_only(&a.url)?;
    loopback_only(&a.influx)?;
    let tokens: Tokens = serde_json::from_slice(&std::fs::read(&a.tokens).context("tokens file")?)?;
    if tokens.probes.len() < a.probes {
        bail!("--probes {}: the tokens file has {}", a.probes, tokens.probes.len());
    }
    let now = now_ms();
    let start_ms = (now / 60_000 - a.minutes as i64 - 1) * 60_000;
    let data = generate(&a, start_ms);
    let events: usize = data.iter().map(Vec::len).sum();
    let samples: usize = data.iter().flatten().map(|m| m.rtts.len()).sum();
    let series = a.probes * a.targets;
    eprintln!(
        "peer: {} probes × {} targets = {series} series, {events} measurements ({samples} RTT samples) over {} minutes",
        a.probes, a.targets, a.minutes
    );
    let system = actix_rt::System::new();
    let json_out = a.json.clone();
    let report = system.block_on(async move {
        let c = awc::Client::builder().timeout(Duration::from_secs(600)).finish();
        // ---- InfluxDB: a fresh database, the samples as line protocol
        influx_query(&c, &a.influx, &format!("DROP DATABASE {DB}")).await.ok();
        let mut r = c
            .post(format!("{}/query", a.influx))
            .query(&[("q", format!("CREATE DATABASE {DB}"))])
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("influx: {e}"))?;
        let _ = r.body().await;
        let influx_work: Vec<Vec<(String, Vec<u8>)>> = data
            .iter()
            .enumerate()
            .map(|(p, ms)| {
                let probe = &tokens.probes[p].0;
                ms.chunks(a.batch).map(|b| (String::new(), line_protocol(probe, b))).collect()
            })
            .collect();
        let write_url = format!("{}/write?db={DB}&precision=u", a.influx);
        let ic = c.clone();
        let influx_cpu0 = cpu_seconds_of(&a.influx_pid.to_string()).unwrap_or(0.0);
        let (influx_secs, influx_failed) = send_all(a.concurrency, influx_work, move |_, body| {
            let (c, url) = (ic.clone(), write_url.clone());
            Box::pin(async move {
                match c.post(&url).send_body(body).await {
                    Ok(mut r) => {
                        let _ = r.body().await;
                        r.status().as_u16() == 204
                    }
                    Err(_) => false,
                }
            })
        })
        .await;
        let influx_cpu_write = cpu_seconds_of(&a.influx_pid.to_string()).unwrap_or(0.0) - influx_cpu0;
        // the cache is snapshotted to TSM files 5 s after the last write (ensure-influxdb.sh):
        // wait for the WAL to empty, so the disk holds the data as it will stay
        let wal = a.influx_home.join("wal").join(DB);
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_secs(2)).await;
            if dir_bytes(&wal) < 64 << 10 {
                break;
            }
        }
        let influx_cpu_all = cpu_seconds_of(&a.influx_pid.to_string()).unwrap_or(0.0) - influx_cpu0;
        let influx_disk = dir_bytes(&a.influx_home.join("data").join(DB)) + dir_bytes(&wal);

        // ---- netqoe: the same measurements as events
        let mut seq = now as u64 * 1000;
        let netqoe_work: Vec<Vec<(String, Vec<u8>)>> = data
            .iter()
            .enumerate()
            .map(|(p, ms)| {
                let (probe, token) = &tokens.probes[p];
                ms.chunks(a.batch).map(|b| (token.clone(), netqoe_body(probe, b, &mut seq))).collect()
            })
            .collect();
        let batches: usize = netqoe_work.iter().map(Vec::len).sum();
        let aggregated0 = metric(&c, &a.url, "netqoe_batches_aggregated_total").await.unwrap_or(0.0);
        let events_url = format!("{}/v1/events", a.url);
        let nc = c.clone();
        let pid = a.server_pid.to_string();
        let netqoe_cpu0 = cpu_seconds_of(&pid).unwrap_or(0.0);
        let started = Instant::now();
        let (netqoe_send_secs, netqoe_failed) = send_all(a.concurrency, netqoe_work, move |token, body| {
            let (c, url) = (nc.clone(), events_url.clone());
            Box::pin(async move {
                match c
                    .post(&url)
                    .insert_header(("Authorization", format!("Bearer {token}")))
                    .insert_header(("Content-Type", "application/json"))
                    .send_body(body)
                    .await
                {
                    Ok(mut r) => {
                        let _ = r.body().await;
                        (200..300).contains(&r.status().as_u16())
                    }
                    Err(_) => false,
                }
            })
        })
        .await;
        // caught up: every batch committed and acked
        let want = aggregated0 + batches as f64;
        let deadline = Instant::now() + Duration::from_secs(300);
        while metric(&c, &a.url, "netqoe_batches_aggregated_total").await.unwrap_or(0.0) < want {
            if Instant::now() > deadline {
                bail!("netqoe did not commit every batch within 300 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let netqoe_secs = started.elapsed().as_secs_f64();
        let netqoe_cpu = cpu_seconds_of(&pid).unwrap_or(0.0) - netqoe_cpu0;
        // windows close once the watermark passes them: wait for every window to be final
        tokio::time::sleep(Duration::from_secs(3)).await;
        let netqoe_disk = dir_bytes(&a.data_dir);

        // ---- Q1: per-minute p50/p95/p99 of one series, last hour
        let from = now - 3_600_000;
        let to = now + 60_000;
        let mut q1_influx = Vec::new();
        let mut q1_netqoe = Vec::new();
        let mut q1_err: f64 = 0.0;
        let mut q1_windows = 0;
        for k in 0..a.series_checked.min(series) {
            let (p, t) = ((k * 7919) % a.probes, k % a.targets);
            let (probe, tname) = (&tokens.probes[p].0, target_name(t));
            let (secs, _) = influx_query(
                &c,
                &a.influx,
                &format!(
                    "SELECT percentile(ms,50), percentile(ms,95), percentile(ms,99) FROM rtt WHERE probe='{probe}' \
                     AND target='{tname}' AND time >= {}ms AND time < {}ms GROUP BY time(1m) fill(none)",
                    from, to
                ),
            )
            .await?;
            q1_influx.push(secs);
            let (secs, v) = netqoe_query(
                &c,
                &format!(
                    "{}/v1/rollups?probe={probe}&target={tname}&metric=rtt&tier=1m&from={from}&to={to}&fields=p50,p95,p99,count",
                    a.url
                ),
                &tokens.query,
            )
            .await?;
            q1_netqoe.push(secs);
            // the exact answer under the sketch's rank rule, from the samples sent
            let mut by_minute: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
            for m in data[p].iter().filter(|m| m.target == t) {
                by_minute.entry(m.ts_ms / 60_000 * 60_000).or_default().extend(&m.rtts);
            }
            for w in v["rollups"].as_array().into_iter().flatten() {
                let ws = chrono::DateTime::parse_from_rfc3339(w["window_start"].as_str().unwrap_or(""))
                    .map(|d| d.timestamp_millis())
                    .unwrap_or(0);
                let Some(vals) = by_minute.get_mut(&ws) else { continue };
                vals.sort_by(f64::total_cmp);
                for (q, f) in [(0.5, "p50"), (0.95, "p95"), (0.99, "p99")] {
                    let exact = vals[(q * (vals.len() - 1) as f64).floor() as usize];
                    q1_err = q1_err.max(rel(w[f].as_f64().unwrap_or(f64::NAN), exact));
                }
                q1_windows += 1;
            }
        }
        // ---- Q2: fleet p95 per target and minute over every probe, last hour
        let mut q2_influx = Vec::new();
        let mut q2_netqoe = Vec::new();
        let mut influx_p95: BTreeMap<(String, i64), f64> = BTreeMap::new();
        let mut netqoe_p95: BTreeMap<(String, i64), f64> = BTreeMap::new();
        for _ in 0..3 {
            let (secs, v) = influx_query(
                &c,
                &a.influx,
                &format!(
                    "SELECT percentile(ms,95) FROM rtt WHERE time >= {from}ms AND time < {to}ms GROUP BY time(1m), target fill(none)"
                ),
            )
            .await?;
            q2_influx.push(secs);
            influx_p95.clear();
            for s in v["results"][0]["series"].as_array().into_iter().flatten() {
                let t = s["tags"]["target"].as_str().unwrap_or("").to_string();
                for row in s["values"].as_array().into_iter().flatten() {
                    if let (Some(ts), Some(p)) = (row[0].as_i64(), row[1].as_f64()) {
                        influx_p95.insert((t.clone(), ts), p);
                    }
                }
            }
            let (secs, v) = netqoe_query(
                &c,
                &format!(
                    "{}/v1/rollups?metric=rtt&tier=1m&from={from}&to={to}&group_by=target&fields=p95&limit=10000",
                    a.url
                ),
                &tokens.query,
            )
            .await?;
            q2_netqoe.push(secs);
            netqoe_p95.clear();
            for w in v["rollups"].as_array().into_iter().flatten() {
                let ws = chrono::DateTime::parse_from_rfc3339(w["window_start"].as_str().unwrap_or(""))
                    .map(|d| d.timestamp_millis())
                    .unwrap_or(0);
                netqoe_p95.insert((w["target"].as_str().unwrap_or("").to_string(), ws), w["p95"].as_f64().unwrap_or(f64::NAN));
            }
        }
        // the exact fleet p95 per (target, minute) from the samples sent, under both rank rules
        let mut fleet: BTreeMap<(String, i64), Vec<f64>> = BTreeMap::new();
        for m in data.iter().flatten() {
            fleet.entry((target_name(m.target), m.ts_ms / 60_000 * 60_000)).or_default().extend(&m.rtts);
        }
        let (mut q2_err, mut q2_influx_err, mut q2_between): (f64, f64, f64) = (0.0, 0.0, 0.0);
        let mut q2_missing = 0;
        for (k, vals) in fleet.iter_mut() {
            vals.sort_by(f64::total_cmp);
            let n = vals.len();
            let floor_rank = vals[(0.95 * (n - 1) as f64).floor() as usize];
            let nearest_rank = vals[((n as f64 * 0.95 + 0.5).floor() as usize).clamp(1, n) - 1];
            match (netqoe_p95.get(k), influx_p95.get(k)) {
                (Some(got), Some(peer)) => {
                    q2_err = q2_err.max(rel(*got, floor_rank));
                    q2_influx_err = q2_influx_err.max(rel(*peer, nearest_rank));
                    q2_between = q2_between.max(rel(*got, *peer));
                }
                _ => q2_missing += 1,
            }
        }
        let day = 86_400_000.0 / (a.minutes as f64 * 60_000.0);
        let per_series_day = |bytes: u64| bytes as f64 / series as f64 * day;
        Ok::<_, anyhow::Error>(serde_json::json!({
            "series": series, "events": events, "samples": samples, "minutes": a.minutes,
            "batch": a.batch, "concurrency": a.concurrency,
            "influx": {
                "write_seconds": influx_secs, "events_per_s": events as f64 / influx_secs,
                "points_per_s": samples as f64 / influx_secs, "failed_requests": influx_failed,
                "cpu_s_writing": influx_cpu_write, "cpu_s_with_snapshot": influx_cpu_all,
                "cpu_us_per_event": 1e6 * influx_cpu_all / events as f64,
                "disk_bytes": influx_disk, "disk_bytes_per_series_day": per_series_day(influx_disk),
                "q1_median_s": median(&mut q1_influx), "q2_median_s": median(&mut q2_influx),
            },
            "netqoe": {
                "send_seconds": netqoe_send_secs, "committed_seconds": netqoe_secs,
                "events_per_s": events as f64 / netqoe_secs, "failed_requests": netqoe_failed,
                "cpu_s": netqoe_cpu, "cpu_us_per_event": 1e6 * netqoe_cpu / events as f64,
                "disk_bytes": netqoe_disk, "disk_bytes_per_series_day": per_series_day(netqoe_disk),
                "q1_median_s": median(&mut q1_netqoe), "q2_median_s": median(&mut q2_netqoe),
            },
            "q1": {"windows_checked": q1_windows, "max_rel_error_vs_exact": q1_err},
            "q2": {"groups": fleet.len(), "missing": q2_missing, "netqoe_max_rel_error_vs_exact": q2_err,
                   "influx_max_rel_error_vs_exact_nearest_rank": q2_influx_err,
                   "max_rel_difference_netqoe_vs_influx": q2_between},
        }))
    })?;
    let i = &report["influx"];
    let n = &report["netqoe"];
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    println!(
        "{:8} {:>10} {:>10} {:>12} {:>10} {:>10} {:>14}",
        "", "events/s", "CPU µs/ev", "Q1 series s", "Q2 fleet s", "disk MiB", "B/series/day"
    );
    for (name, v) in [("netqoe", n), ("influxdb", i)] {
        println!(
            "{:8} {:>10.0} {:>10.2} {:>12.4} {:>10.4} {:>10.1} {:>14.0}",
            name,
            f(&v["events_per_s"]),
            f(&v["cpu_us_per_event"]),
            f(&v["q1_median_s"]),
            f(&v["q2_median_s"]),
            f(&v["disk_bytes"]) / 1048576.0,
            f(&v["disk_bytes_per_series_day"])
        );
    }
    println!(
        "ratios: CPU per event {:.1}× less, Q1 {:.1}× faster, Q2 (fleet p95) {:.1}× faster\nanswers: Q1 netqoe max {:.3} % from exact over {} windows; Q2 netqoe max {:.3} % from exact, InfluxDB {:.3} % (its nearest-rank rule), the two {:.3} % apart, over {} groups ({} missing)",
        f(&i["cpu_us_per_event"]) / f(&n["cpu_us_per_event"]),
        f(&i["q1_median_s"]) / f(&n["q1_median_s"]),
        f(&i["q2_median_s"]) / f(&n["q2_median_s"]),
        100.0 * f(&report["q1"]["max_rel_error_vs_exact"]),
        report["q1"]["windows_checked"],
        100.0 * f(&report["q2"]["netqoe_max_rel_error_vs_exact"]),
        100.0 * f(&report["q2"]["influx_max_rel_error_vs_exact_nearest_rank"]),
        100.0 * f(&report["q2"]["max_rel_difference_netqoe_vs_influx"]),
        report["q2"]["groups"],
        report["q2"]["missing"]
    );
    if let Some(p) = &json_out {
        std::fs::write(p, serde_json::to_vec_pretty(&report)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> PeerArgs {
        use clap::Parser;
        #[derive(Parser)]
        struct P {
            #[command(flatten)]
            a: PeerArgs,
        }
        P::parse_from([
            "p",
            "--tokens",
            "t",
            "--server-pid",
            "1",
            "--data-dir",
            "d",
            "--influx-pid",
            "2",
            "--influx-home",
            "h",
            "--probes",
            "3",
            "--targets",
            "2",
            "--minutes",
            "2",
            "--per-minute",
            "6",
        ])
        .a
    }

    #[test]
    fn the_data_set_is_seeded_in_time_order_and_inside_its_minutes() {
        let a = args();
        let start = 1_800_000_000_000 / 60_000 * 60_000;
        let (d1, d2) = (generate(&a, start), generate(&a, start));
        assert_eq!(d1.len(), 3);
        for (p, ms) in d1.iter().enumerate() {
            assert_eq!(ms.len(), 2 * 2 * 6, "targets × minutes × per_minute");
            assert!(ms.windows(2).all(|w| w[0].ts_ms <= w[1].ts_ms), "probe {p} in time order");
            assert!(ms.iter().all(|m| m.ts_ms >= start && m.ts_ms < start + 2 * 60_000));
            for t in 0..2 {
                let per_minute = ms.iter().filter(|m| m.target == t && m.ts_ms < start + 60_000).count();
                assert_eq!(per_minute, 6);
            }
            let same = ms.iter().zip(&d2[p]).all(|(x, y)| x.ts_ms == y.ts_ms && x.rtts == y.rtts);
            assert!(same, "the same seed gives the same samples");
        }
    }

    #[test]
    fn every_sample_is_its_own_point_and_the_events_carry_every_sample() {
        let m = vec![Measurement { target: 1, ts_ms: 1_000, rtts: vec![1.5, 2.25, 3.0] }];
        let lp = String::from_utf8(line_protocol("probe-00001", &m)).unwrap();
        let lines: Vec<&str> = lp.lines().collect();
        assert_eq!(lines[0], "rtt,probe=probe-00001,target=peer-target-001.example ms=1.5 1000000");
        assert_eq!(lines[2], "rtt,probe=probe-00001,target=peer-target-001.example ms=3 1000002");
        let mut seq = 41;
        let body: serde_json::Value = serde_json::from_slice(&netqoe_body("probe-00001", &m, &mut seq)).unwrap();
        let e = &body["events"][0];
        assert_eq!((e["seq"].as_u64(), e["received"].as_u64(), e["sent"].as_u64()), (Some(42), Some(3), Some(10)));
        assert_eq!(e["rtt_samples_ms"], serde_json::json!([1.5, 2.25, 3.0]));
        assert_eq!(e["ts"], "1970-01-01T00:00:01.000Z");
    }
}
