//! Draining a process: stop accepting (ingest answers 503 with Retry-After, /readyz fails so load
//! balancers move away), let the ingest requests in flight finish, let the local pipeline catch up
//! with the bus's local backlog (the embedded journal), commit every open window and stop
//! consuming. Asked for over `POST /admin/drain` (the process keeps running, reporting progress)
//! or run by `RunningApp::shutdown`.
//!
//! Invariant: `done` means every event answered 2xx by this process is committed in the rollups,
//! or, where the backlog is left (a catch-up that timed out, a shared broker queue), still on the
//! bus for the next start or another aggregator — never dropped.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use actix_web::web;

use crate::http::AppState;

/// How long a drain waits for requests in flight and for the pipeline to catch up with the local
/// backlog before it commits and stops consuming anyway.
const CATCH_UP: Duration = Duration::from_secs(60);

/// Progress of a drain asked for over `POST /admin/drain`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DrainProgress {
    /// When it was asked for (ms since the epoch); None: never.
    pub requested_ms: Option<i64>,
    /// The pipeline committed its open windows and stopped consuming (true where there is none).
    pub pipeline_drained: bool,
    /// Why the pipeline drain failed, if it did (ask again to retry).
    pub error: Option<String>,
    /// Local backlog (embedded journal rows) not yet aggregated when the pipeline stopped
    /// consuming (0 when it caught up; otherwise aggregated at the next start). None: the bus
    /// has no local backlog (a broker: another aggregator takes it).
    pub journal_backlog: Option<u64>,
}

/// The drain's progress as `GET /admin/drain` reports it.
pub fn status(state: &AppState) -> serde_json::Value {
    let progress = state.drain.lock().map(|p| p.clone()).unwrap_or_default();
    let in_flight = state.in_flight.load(Ordering::SeqCst);
    let draining = state.draining.load(Ordering::SeqCst);
    serde_json::json!({
        "draining": draining,
        "in_flight_requests": in_flight,
        "pipeline": if state.pipeline.is_none() { "none" } else if progress.pipeline_drained { "drained" } else { "draining" },
        "error": progress.error,
        "journal_backlog": progress.journal_backlog,
        "done": draining && in_flight == 0 && progress.pipeline_drained,
    })
}

/// Begins a drain (or retries one that failed); the pipeline part runs in the background.
pub fn begin(state: web::Data<AppState>) {
    let first = !state.draining.swap(true, Ordering::SeqCst);
    let retry = state.drain.lock().map(|p| p.error.is_some()).unwrap_or(false);
    if !(first || retry) {
        return;
    }
    tracing::warn!("drain requested over the admin endpoint: ingest answers 503 from now on");
    if let Ok(mut p) = state.drain.lock() {
        *p = DrainProgress {
            requested_ms: Some(state.clock.now_ms()),
            pipeline_drained: state.pipeline.is_none(),
            error: None,
            journal_backlog: None,
        };
    }
    let Some(pipeline) = state.pipeline.clone() else { return };
    actix_web::rt::spawn(async move {
        let backlog = catch_up(&state).await;
        if let Ok(mut p) = state.drain.lock() {
            p.journal_backlog = backlog;
        }
        let r = pipeline.drain().await;
        if r.is_ok() {
            // give the shards up at the broker too: until this process's consumers are
            // cancelled, single-active-consumer keeps them here and no standby takes over
            state.bus.close().await;
        }
        match &r {
            Ok(()) => tracing::info!("admin drain: pipeline drained (windows committed, consuming stopped)"),
            Err(error) => tracing::error!(%error, "admin drain: pipeline drain failed; ask again to retry"),
        }
        if let Ok(mut p) = state.drain.lock() {
            match r {
                Ok(()) => p.pipeline_drained = true,
                Err(e) => p.error = Some(e.to_string()),
            }
        }
    });
}

/// Waits (up to `CATCH_UP`) for the ingest requests in flight to end and for the local pipeline
/// to aggregate and commit the bus's local backlog; returns what is left (None: no local backlog,
/// or it could not be read).
pub async fn catch_up(state: &AppState) -> Option<u64> {
    let deadline = Instant::now() + CATCH_UP;
    while state.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pipeline = state.pipeline.as_ref()?;
    loop {
        match state.bus.backlog().await {
            Ok(None) => return None,
            Ok(Some(0)) => return Some(0),
            Ok(Some(n)) if Instant::now() >= deadline => {
                tracing::warn!(rows = n, "drain: the pipeline did not catch up with the journal in time; the rest is aggregated at the next start");
                return Some(n);
            }
            Ok(Some(_)) => {
                // what was delivered is committed (and so acked) now, not at the next flush
                if let Err(error) = pipeline.commit_now().await {
                    tracing::warn!(%error, "drain: commit while catching up failed; retrying");
                }
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(error) => {
                tracing::warn!(%error, "drain: backlog unreadable; draining without catching up");
                return None;
            }
        }
    }
}
