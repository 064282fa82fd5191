//! Running a scenario: the real pipeline actors on a manual clock at the scenario's own dates,
//! each finished 1m fleet window read back from the store and judged by the diagnoser.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use netqoe_actors::bus::EventBus;
use netqoe_actors::pipeline::{Pipeline, PipelineConfig};
use netqoe_actors::store::RollupStore;
use netqoe_domain::diagnosis::{Diagnoser, DiagnosisConfig, Incident};
use netqoe_domain::event::validate;
use netqoe_domain::EventLimits;

use super::generate::{round_events, Rng};
use super::*;

fn scope_name(i: &Incident) -> String {
    i.scope.name().to_string()
}

/// The run's throwaway SQLite directory: in memory-backed `/dev/shm` where there is one, so the
/// journal's per-publish `fsync` (durability a scratch run has no use for) costs nothing; the
/// store behaves the same on either.
fn scratch_dir() -> std::io::Result<tempfile::TempDir> {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::Builder::new().prefix("netqoe-eval-").tempdir_in(shm) {
            return Ok(d);
        }
    }
    tempfile::tempdir()
}

/// Runs one scenario through the pipeline and the diagnoser.
pub async fn run(s: &Scenario, dcfg: &DiagnosisConfig) -> anyhow::Result<ScenarioScore> {
    // The scenario runs at its own dates on a manual clock, moved to each chunk's receive time
    // before it is published: the pipeline (aggregators, writer, store) sees exactly the time a
    // live deployment would, whatever the wall clock says, so every run is reproducible.
    let start_ms = chrono::DateTime::parse_from_rfc3339(&s.start)?.timestamp_millis();
    let clock = netqoe_actors::Clock::manual(start_ms);
    let dir = scratch_dir()?;
    let db = crate::sqlite::Sqlite::open_with_clock(dir.path(), clock.clone())?;
    let bus: Arc<dyn EventBus> = Arc::new(db.clone());
    let store: Arc<dyn RollupStore> = Arc::new(db.clone());
    let mut pcfg = PipelineConfig::default();
    pcfg.aggregator.flush_interval = Duration::from_millis(20);
    pcfg.aggregator.derive_interval_ms = 3_600_000;
    pcfg.prune_every = Duration::from_secs(86_400);
    pcfg.clock = clock.clone();
    let pipeline = Pipeline::start(bus.clone(), store.clone(), pcfg).await?;
    let labels: BTreeMap<String, BTreeMap<String, String>> =
        s.probes.iter().map(|p| (p.id.clone(), p.labels.clone())).collect();
    let mut diag = Diagnoser::new(dcfg.clone(), labels);
    let limits = EventLimits::default();
    let mut rng = Rng(s.seed ^ 0x6E65_7471_6F65);
    let mut seqs = vec![0u64; s.probes.len()];
    let rounds = s.duration_s / s.interval_s;
    let mut incidents: BTreeMap<String, Incident> = BTreeMap::new();
    let mut next_minute = 0i64; // minutes judged so far
    let mut events = 0u64;
    let chunk = (600 / s.interval_s).max(1);
    let mut round = 0;
    while round < rounds {
        let until = (round + chunk).min(rounds);
        // one batch per probe and chunk, as a probe that posts every few minutes sends them: the
        // events keep their own times (the same windows, watermarks and judgements as one batch per
        // round), and the journal takes a few dozen transactions per scenario instead of thousands
        let mut batches: Vec<Vec<netqoe_domain::Event>> = vec![Vec::new(); s.probes.len()];
        let received_ms = start_ms + (until - 1) * s.interval_s * 1000;
        clock.set(received_ms);
        for r in round..until {
            for (pi, seq) in seqs.iter_mut().enumerate() {
                for w in round_events(s, &mut rng, pi, r, start_ms, seq) {
                    let i = batches[pi].len();
                    batches[pi].push(
                        validate(w, i, received_ms, &limits)
                            .map_err(|e| anyhow::anyhow!("generated event invalid: {e}"))?,
                    );
                }
            }
        }
        for (pi, evs) in batches.into_iter().enumerate() {
            if evs.is_empty() {
                continue;
            }
            events += evs.len() as u64;
            bus.publish(&s.probes[pi].id, evs, received_ms).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        round = until;
        // everything published is aggregated and committed once the journal is empty
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while bus.backlog().await.map_err(|e| anyhow::anyhow!("{e}"))?.unwrap_or(0) > 0 {
            if std::time::Instant::now() > deadline {
                bail!("the pipeline did not catch up");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // judge every minute no later round can still add to
        let published_until_s = if round >= rounds { s.duration_s } else { round * s.interval_s };
        while (next_minute + 1) * 60 <= published_until_s {
            let w = netqoe_actors::diagnoser::fleet_window(store.as_ref(), start_ms + next_minute * 60_000).await?;
            for inc in diag.window(&w) {
                incidents.insert(inc.id.clone(), inc);
            }
            next_minute += 1;
        }
    }
    pipeline.drain().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    drop(pipeline);
    let list: Vec<Reported> = incidents
        .values()
        .map(|i| Reported {
            id: i.id.clone(),
            scope: scope_name(i),
            subject: i.subject.clone(),
            metrics: i.metrics.clone(),
            opened_s: (i.opened_ms - start_ms) / 1000,
            resolved_s: i.resolved_ms.map(|r| (r - start_ms) / 1000),
            peak_severity: (i.peak_severity * 100.0).round() / 100.0,
            mos_impact: i.mos_impact.map(|m| (m * 100.0).round() / 100.0),
            confidence: (i.confidence * 100.0).round() / 100.0,
            p_value: i.p_value,
            runner_up: i.runner_up.as_ref().map(|r| {
                let subject: Vec<String> = r.subject.iter().map(|(k, v)| format!("{k}={v}")).collect();
                (format!("{} {}", r.scope.name(), subject.join(" ")), r.p_value)
            }),
        })
        .collect();
    Ok(score(s, list, events))
}
