//! The scheduler: every target on its interval (spread per probe and target), measurements in
//! flight bounded, batches by size and age, posted and spooled; stops cleanly on a signal.

use super::*;

/// Measurements in flight at once.
const MAX_CONCURRENT: usize = 16;

struct StopOnDrop(actix_web::dev::ServerHandle);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let h = self.0.clone();
        actix_rt::spawn(async move { h.stop(false).await });
    }
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
    let mut backoff = netqoe_actors::backoff::Backoff::new(Duration::from_millis(250), Duration::from_secs(60));
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
                    backoff.reset();
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
                    // jitter on a quarter of the backoff: probes that lost ingest together do
                    // not come back together
                    let wait = backoff.next_delay();
                    let jitter = wait.mul_f64(rand::random::<f64>() / 4.0);
                    retry_at = Instant::now() + after.max(wait) + jitter;
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
