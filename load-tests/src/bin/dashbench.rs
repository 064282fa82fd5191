//! `netqoe-dashbench`: what each view of `/dashboard` costs the server with a realistic amount of
//! data stored. Fills an embedded (SQLite) store with `--probes` × `--targets` RTT series over the
//! last `--minutes` minutes (1m windows, and their 1h/1d parents derived by the store), starts netqoe
//! on it (in process, loopback), then asks each view's requests — exactly the URLs the page asks,
//! one at a time as the page does — `--rounds` times and prints, per view, the requests, windows
//! and bytes answered and the total time p50 / p99 / max (client wall time on loopback, an upper
//! bound of the server's time). The page's goal: every view < 100 ms.

use std::time::{Duration, Instant};

use clap::Parser;
use netqoe_actors::store::{RollupStore, WriteSet};
use netqoe_domain::event::Contribution;
use netqoe_domain::{Metric, Rollup, Tier, WindowAgg, WindowKey};

#[derive(Parser)]
#[command(about = "cost of each /dashboard view with many windows stored")]
struct Args {
    #[arg(long, default_value_t = 100)]
    probes: usize,
    #[arg(long, default_value_t = 10)]
    targets: usize,
    /// minutes of 1m windows per series (probes × targets × minutes windows in all)
    #[arg(long, default_value_t = 100)]
    minutes: i64,
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// keep the data directory (printed) instead of removing it
    #[arg(long)]
    keep: bool,
}

fn agg(rng: &mut u64, base: f64, loss: u64) -> WindowAgg {
    let mut a = WindowAgg::default();
    let mut samples = Vec::with_capacity(10);
    for _ in 0..10 {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        samples.push(base * (1.0 + (*rng % 1000) as f64 / 2000.0));
    }
    a.add(&Contribution {
        metric: Metric::Rtt,
        values: &samples,
        sent: 10 + loss,
        received: 10,
        jitter_estimate_ms: Some(0.8),
        error: None,
    });
    a
}

async fn fill(store: &dyn RollupStore, args: &Args, now: i64) -> anyhow::Result<usize> {
    let first = (now / 60_000 - args.minutes) * 60_000;
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut windows = 0;
    for p in 0..args.probes {
        let mut ws = WriteSet::default();
        for t in 0..args.targets {
            for m in 0..args.minutes {
                let start_ms = first + m * 60_000;
                let key = WindowKey {
                    probe: format!("probe-{p:04}"),
                    target: format!("target-{t:02}.example"),
                    metric: Metric::Rtt,
                    tier: Tier::M1,
                    start_ms,
                };
                let loss = u64::from(p == 7 && t == 3 && m > args.minutes - 10) * 3;
                let rollup = Rollup {
                    key: key.clone(),
                    agg: agg(&mut rng, 10.0 + (p % 50) as f64 + t as f64, loss),
                    applied: Default::default(),
                    revision: 1,
                    closed: true,
                };
                ws.rollups.push(rollup);
                // each hour's parents derived once, from its last child
                if (start_ms + 60_000) % 3_600_000 == 0 || m == args.minutes - 1 {
                    ws.derive.push(key);
                }
                windows += 1;
            }
        }
        store.commit(ws).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(windows)
}

/// The requests of each view, as `src/http/dashboard.html` asks them.
fn views(now: i64) -> Vec<(&'static str, Vec<String>)> {
    let minute = now / 60_000 * 60_000;
    let hour = now / 3_600_000 * 3_600_000;
    let overview = vec![
        "/v1/probes".to_string(),
        format!(
            "/v1/rollups?tier=1m&from={}&to={minute}&limit=10000&fields=events,errors,p50,loss_pct,mos,min",
            minute - 2 * 60_000
        ),
        format!("/v1/rollups?tier=1h&from={}&to={}&limit=10000&fields=p50,mos", hour - 3_600_000, hour + 3_600_000),
        "/v1/incidents?state=open".to_string(),
    ];
    // a graph: the probes, the metric's targets, the range, the incidents of the range
    let graph = |tier: &str, span: i64, len: i64, pair: &str| {
        let to = (now + 1).div_euclid(len) * len + len;
        vec![
            "/v1/probes".to_string(),
            format!(
                "/v1/rollups?metric=rtt&tier=1h&from={}&to={}&group_by=target&limit=10000",
                hour - 3_600_000,
                hour + 3_600_000
            ),
            format!("/v1/rollups?metric=rtt&tier={tier}&from={}&to={to}&target=target-03.example{pair}", to - span),
            format!("/v1/incidents?from={}&to={}&limit=1000", to - span - 7 * 86_400_000, now + 60_000),
        ]
    };
    let h = 3_600_000;
    let pair = "&probe=probe-0007&limit=10000";
    let fleet = "&group_by=target&limit=10000";
    vec![
        ("overview (worst now, matrix)", overview),
        ("graph: a pair, 3 h (1m)", graph("1m", 3 * h, 60_000, pair)),
        ("graph: a pair, 30 h (1h)", graph("1h", 30 * h, h, pair)),
        ("graph: a pair, 10 d (1h)", graph("1h", 240 * h, h, pair)),
        ("graph: a pair, 1 y (1d)", graph("1d", 365 * 24 * h, 24 * h, pair)),
        ("graph: a target's fleet, 3 h (1m)", graph("1m", 3 * h, 60_000, fleet)),
        ("graph: a target's fleet, 30 h (1h)", graph("1h", 30 * h, h, fleet)),
        ("incidents", vec![format!("/v1/incidents?from={}&to={}&limit=1000", now - 7 * 86_400_000, now + 60_000)]),
        ("probes", vec!["/v1/probes".to_string()]),
    ]
}

fn pct(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    actix_rt::System::new().block_on(async move {
        let dir = tempfile_dir()?;
        let now = netqoe_actors::now_ms();
        let db = netqoe::sqlite::Sqlite::open(&dir)?;
        let t0 = Instant::now();
        let windows = fill(&db, &args, now).await?;
        drop(db);
        eprintln!(
            "stored {windows} 1m windows ({} probes × {} targets × {} min) and their 1h/1d parents in {:.1} s",
            args.probes,
            args.targets,
            args.minutes,
            t0.elapsed().as_secs_f64()
        );
        let env = vec![
            ("NETQOE__STORAGE__DATA_DIR".to_string(), dir.display().to_string()),
            ("NETQOE__LOG__LEVEL".to_string(), "error".to_string()),
        ];
        let mut cfg = netqoe::config::Config::load_from(None, env)?;
        for p in 0..args.probes {
            let (_, digest) = netqoe::auth::mint(netqoe::auth::PROBE_PREFIX);
            cfg.probes.push(netqoe::config::ProbeEntry {
                id: format!("probe-{p:04}"),
                token_sha256: digest.into(),
                revoked: false,
                labels: [("region".to_string(), format!("r{}", p % 4))].into(),
            });
        }
        netqoe::init_logging("plain", "error");
        let app = netqoe::app::start(cfg, std::net::TcpListener::bind("127.0.0.1:0")?).await?;
        let client = awc::Client::builder().timeout(Duration::from_secs(60)).finish();
        println!(
            "| view | requests | windows answered | bytes | total p50 ms | total p99 ms | total max ms | < 100 ms |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        for (name, urls) in views(now) {
            let mut totals = Vec::with_capacity(args.rounds);
            let (mut rows, mut bytes) = (0usize, 0usize);
            for round in 0..=args.rounds {
                let start = Instant::now();
                let (mut r, mut b) = (0, 0);
                for u in &urls {
                    let mut res = client.get(app.url(u)).send().await.map_err(|e| anyhow::anyhow!("{u}: {e}"))?;
                    let body = res.body().limit(256 << 20).await?;
                    anyhow::ensure!(
                        res.status().is_success(),
                        "{u}: {} {}",
                        res.status(),
                        String::from_utf8_lossy(&body)
                    );
                    let v: serde_json::Value = serde_json::from_slice(&body)?;
                    r += v["rollups"].as_array().map_or(0, Vec::len);
                    b += body.len();
                }
                // round 0 warms the caches and is not counted
                if round > 0 {
                    totals.push(start.elapsed().as_secs_f64() * 1000.0);
                }
                (rows, bytes) = (r, b);
            }
            totals.sort_by(f64::total_cmp);
            let p99 = pct(&totals, 0.99);
            println!(
                "| {name} | {} | {rows} | {bytes} | {:.1} | {p99:.1} | {:.1} | {} |",
                urls.len(),
                pct(&totals, 0.5),
                totals[totals.len() - 1],
                if p99 < 100.0 { "yes" } else { "**no**" }
            );
        }
        app.shutdown().await?;
        if args.keep {
            eprintln!("data kept in {}", dir.display());
        } else {
            std::fs::remove_dir_all(&dir)?;
        }
        Ok(())
    })
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("netqoe-dashbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
