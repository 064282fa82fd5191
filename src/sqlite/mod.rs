//! The embedded default's persistence: one SQLite file (WAL) that is both the bus (a journal of
//! accepted batches, deduplicated by event id) and the rollup store.
//!
//! All writes go through one writer thread that group-commits whatever is queued in a single
//! transaction (one fsync for many requests), each job inside its own savepoint so one failing job
//! does not fail the others. Reads use a small pool of reader connections.
//!
//! Invariants: `publish` answers only after its transaction committed (`synchronous = FULL`), so
//! a 202 survives SIGKILL and power loss. A journal row is deleted only on ack, which the pipeline
//! sends after the batch's effect is committed; rows present at start are redelivered (flagged),
//! and their batch ids are checked against `processed_batches`.
//!
//! The code is split by what each part owns: `schema` (tables, migrations, connection settings),
//! `writer` (the group-commit thread, executing opaque jobs), `journal` (the bus) and `store` (the
//! rollup store) — the last two use the writer, never the reverse; `error` classifies failures.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use netqoe_actors::bus::{Acker, Batch, BatchId, BusError, Delivery, EventBus, Incoming, Published};
use netqoe_actors::store::{
    derive_parent, parents_to_derive, CommitReport, FleetAnswer, FleetQuery, FleetRollup, IncidentQuery, ProbeMark,
    Retention, RollupQuery, RollupStore, StoreError, WriteSet,
};
use netqoe_actors::Clock;
use netqoe_domain::codec;
use netqoe_domain::diagnosis::{Incident, IncidentState};
use netqoe_domain::sketch::DdSketch;
use netqoe_domain::{event_hash, Event, EventSet, Metric, Rollup, SessionState, Tier, WindowAgg, WindowKey};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use tokio::sync::{mpsc, Notify};

mod error;
mod journal;
mod schema;
mod store;
mod writer;

use error::SqlResult;
pub use error::{SqliteError, SqliteErrorKind};
use journal::JournalState;
use schema::open_conn;
use writer::{Call, Detached, Job};

struct Shared {
    path: PathBuf,
    /// The writer thread's queue (bounded: callers wait).
    jobs: mpsc::Sender<Box<dyn Job>>,
    readers: Mutex<Vec<Connection>>,
    /// Woken by the writer after a group that added journal rows.
    published: Arc<Notify>,
    acked: Notify,
    journal: Mutex<JournalState>,
    /// This journal's random id, made when the file was created (see `journal_node`).
    node: String,
    /// The time rows are stamped with (updates, processed batches, dead letters).
    clock: Clock,
}

/// The SQLite file: implements both `EventBus` (journal) and `RollupStore`.
#[derive(Clone)]
pub struct Sqlite {
    shared: Arc<Shared>,
}

impl Sqlite {
    /// Opens (creating if needed) `dir/netqoe.db`, migrates it, and starts the writer thread.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        Self::open_with_clock(dir, Clock::system())
    }

    /// `open`, stamping rows with `clock`'s time.
    pub fn open_with_clock(dir: &Path, clock: Clock) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("netqoe.db");
        let conn = open_conn(&path)?;
        schema::migrate(&conn, &path)?;
        let node = schema::journal_node(&conn)?;
        let startup_max: i64 = conn.query_row("SELECT COALESCE(MAX(id), 0) FROM journal", [], |r| r.get(0))?;
        let published = Arc::new(Notify::new());
        let wake = published.clone();
        let jobs = writer::spawn(conn, move || wake.notify_one())?;
        let shared = Arc::new(Shared {
            path,
            jobs,
            readers: Mutex::new(Vec::new()),
            published,
            acked: Notify::new(),
            journal: Mutex::new(JournalState { startup_max, ..Default::default() }),
            node,
            clock,
        });
        Ok(Self { shared })
    }

    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Runs `run` in the writer's next group transaction and waits for its answer (after COMMIT).
    /// `publishes` says whether an answer means new journal rows (the consumer is woken).
    async fn submit<T, F>(&self, run: F, publishes: fn(&T) -> bool) -> SqlResult<T>
    where
        T: Send + 'static,
        F: FnMut(&Transaction<'_>) -> SqlResult<T> + Send + 'static,
    {
        let (job, rx) = Call::job(run, publishes);
        self.shared.jobs.send(job).await.map_err(|_| SqliteError::stopped())?;
        rx.await.map_err(|_| SqliteError::stopped())?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match shared.readers.lock().ok().and_then(|mut p| p.pop()) {
                Some(c) => c,
                None => open_conn(&shared.path).map_err(|e| SqliteError::from(e).into_store())?,
            };
            let r = f(&conn).map_err(|e| SqliteError::from(e).into_store());
            if let Ok(mut p) = shared.readers.lock() {
                if p.len() < 8 {
                    p.push(conn);
                }
            }
            r
        })
        .await
        .map_err(|e| StoreError::failed(format!("reader task: {e}")))?
    }

    /// Journal rows not yet acked (tests and readiness detail).
    pub async fn journal_depth(&self) -> Result<i64, StoreError> {
        self.read(|c| c.query_row("SELECT COUNT(*) FROM journal", [], |r| r.get(0))).await
    }

    pub async fn dead_letter_count(&self) -> Result<i64, StoreError> {
        self.read(|c| c.query_row("SELECT COUNT(*) FROM dead_letters", [], |r| r.get(0))).await
    }
}
