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

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use netqoe_actors::bus::{Acker, Batch, BatchId, BusError, Delivery, EventBus, Incoming, Published};
use netqoe_actors::store::{
    derive_parent, parents_to_derive, CommitReport, IncidentQuery, ProbeMark, Retention, RollupQuery, RollupStore,
    StoreError, WriteSet,
};
use netqoe_actors::Clock;
use netqoe_domain::codec;
use netqoe_domain::diagnosis::{Incident, IncidentState};
use netqoe_domain::sketch::DdSketch;
use netqoe_domain::{event_hash, Event, EventSet, Metric, Rollup, SessionState, Tier, WindowAgg, WindowKey};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use tokio::sync::{mpsc, oneshot, Notify};

/// 2: rollups.applied (per-window event set), watermarks.max_seq; applied_events dropped.
/// 3: window_events (a window's event set as one delta row per revision, instead of the whole
///    set rewritten in its rollups row at every revision); seen_batches (ingest dedup: one row
///    per journaled batch with its seq range and event-id hashes) replaces seen_events, whose
///    rows a version-2 file had are kept as hashes in seen_ids until they expire.
const SCHEMA_VERSION: i64 = 3;
/// Most jobs folded into one transaction.
const GROUP_MAX: usize = 512;
/// Queue in front of the writer thread (bounded: callers wait).
const WRITER_QUEUE: usize = 1024;
/// A requeued batch becomes deliverable again after this long.
const REQUEUE_DELAY: Duration = Duration::from_millis(500);
/// Deliveries of one batch in this process before it is dead-lettered.
const DELIVERY_LIMIT: u32 = 10;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    probe TEXT NOT NULL,
    received_ms INTEGER NOT NULL,
    duplicates INTEGER NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS journal_node (node TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    probe TEXT NOT NULL,
    received_ms INTEGER NOT NULL,
    payload BLOB NOT NULL,
    reason TEXT NOT NULL,
    at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS seen_ids (
    probe TEXT NOT NULL,
    h INTEGER NOT NULL,
    ts_ms INTEGER NOT NULL,
    PRIMARY KEY (probe, h)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_ids_ts ON seen_ids (ts_ms);
CREATE TABLE IF NOT EXISTS seen_batches (
    id INTEGER PRIMARY KEY,
    probe TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    ts_ms INTEGER NOT NULL,
    hashes BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS seen_batches_seq ON seen_batches (probe, last_seq);
CREATE INDEX IF NOT EXISTS seen_batches_ts ON seen_batches (ts_ms);
CREATE TABLE IF NOT EXISTS window_events (
    start_ms INTEGER NOT NULL,
    probe TEXT NOT NULL,
    target TEXT NOT NULL,
    metric TEXT NOT NULL,
    revision INTEGER NOT NULL,
    hashes BLOB NOT NULL,
    PRIMARY KEY (start_ms, probe, target, metric, revision)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rollups (
    tier TEXT NOT NULL,
    probe TEXT NOT NULL,
    target TEXT NOT NULL,
    metric TEXT NOT NULL,
    start_ms INTEGER NOT NULL,
    revision INTEGER NOT NULL,
    closed INTEGER NOT NULL,
    events INTEGER NOT NULL,
    count INTEGER NOT NULL,
    min REAL,
    max REAL,
    sum REAL NOT NULL,
    sent INTEGER NOT NULL,
    received INTEGER NOT NULL,
    jitter_sum REAL NOT NULL,
    jitter_n INTEGER NOT NULL,
    errors TEXT NOT NULL,
    sketch BLOB NOT NULL,
    applied BLOB NOT NULL DEFAULT x'',
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (tier, probe, target, metric, start_ms)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rollups_by_target ON rollups (tier, target, metric, start_ms);
CREATE INDEX IF NOT EXISTS rollups_by_start ON rollups (tier, start_ms);
-- metric + time filters (the dashboard's fleet view) without scanning the tier
CREATE INDEX IF NOT EXISTS rollups_by_metric ON rollups (tier, metric, start_ms);
CREATE TABLE IF NOT EXISTS processed_batches (
    batch_id TEXT PRIMARY KEY,
    at_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS watermarks (
    probe TEXT PRIMARY KEY,
    max_event_ms INTEGER,
    max_seq INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS incidents (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    opened_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    body TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS incidents_opened ON incidents (opened_ms);
CREATE TABLE IF NOT EXISTS sessions (
    probe TEXT PRIMARY KEY,
    state TEXT NOT NULL
) WITHOUT ROWID;
"#;

/// Turns off SQLite's global allocation statistics (a process-wide mutex taken on every
/// allocation) before the library initialises; netqoe never reads them.
fn configure_library() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: SQLITE_CONFIG_MEMSTATUS takes one int argument. sqlite3_config is only allowed
        // before sqlite3_initialize; if the library is already initialised (another connection was
        // opened first) it returns SQLITE_MISUSE and changes nothing, which is harmless.
        let rc = unsafe { rusqlite::ffi::sqlite3_config(rusqlite::ffi::SQLITE_CONFIG_MEMSTATUS, 0 as std::ffi::c_int) };
        if rc != rusqlite::ffi::SQLITE_OK {
            tracing::debug!(rc, "sqlite memstatus left on (library already initialised)");
        }
    });
}

fn open_conn(path: &Path) -> rusqlite::Result<Connection> {
    configure_library();
    let c = Connection::open(path)?;
    c.busy_timeout(Duration::from_secs(10))?;
    c.pragma_update(None, "journal_mode", "WAL")?;
    c.pragma_update(None, "synchronous", "FULL")?;
    c.pragma_update(None, "foreign_keys", "ON")?;
    c.pragma_update(None, "temp_store", "MEMORY")?;
    c.pragma_update(None, "cache_size", -16_000)?;
    Ok(c)
}

/// What went wrong with the SQLite file, classified by SQLite's result code (never by the text of
/// the message), so the ports can say whether a retry helps.
#[derive(Clone, Debug, thiserror::Error)]
#[error("sqlite ({kind:?}): {source}")]
pub struct SqliteError {
    pub kind: SqliteErrorKind,
    #[source]
    source: Arc<dyn std::error::Error + Send + Sync>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SqliteErrorKind {
    /// Another connection holds a lock (`SQLITE_BUSY`, `SQLITE_LOCKED`): a retry soon helps.
    Busy,
    /// The disk is full or failing, or the file cannot be opened or written: a retry helps once
    /// the operator frees space or repairs the disk.
    Storage,
    /// The file, or a row in it, is not what this build wrote: a retry does not help.
    Corrupt,
    /// The writer thread stopped (the process is shutting down): another process may answer.
    Stopped,
    /// Anything else (a constraint, a statement SQLite refuses): a bug, a retry does not help.
    Failed,
}

impl SqliteError {
    fn new(kind: SqliteErrorKind, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self { kind, source: Arc::from(source.into()) }
    }

    fn stopped() -> Self {
        Self::new(SqliteErrorKind::Stopped, "sqlite writer stopped")
    }

    fn corrupt(what: impl Into<String>) -> Self {
        Self::new(SqliteErrorKind::Corrupt, what.into())
    }

    /// The journal's answer to a publish: busy is overload (503), a full or failing disk and a
    /// stopped writer are unavailability (503), the rest a failure a retry cannot mend (500).
    pub fn into_bus(self) -> BusError {
        match self.kind {
            SqliteErrorKind::Busy => BusError::Overloaded(self.to_string()),
            SqliteErrorKind::Storage | SqliteErrorKind::Stopped => BusError::Unavailable(self.to_string()),
            SqliteErrorKind::Corrupt | SqliteErrorKind::Failed => BusError::Failed(self.to_string()),
        }
    }

    pub fn into_store(self) -> StoreError {
        match self.kind {
            SqliteErrorKind::Busy | SqliteErrorKind::Storage | SqliteErrorKind::Stopped => {
                StoreError::Unavailable(self.to_string())
            }
            SqliteErrorKind::Corrupt => StoreError::Corrupt(self.to_string()),
            SqliteErrorKind::Failed => StoreError::Failed(self.to_string()),
        }
    }
}

impl From<rusqlite::Error> for SqliteError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode as C;
        let kind = match e.sqlite_error_code() {
            Some(C::DatabaseBusy | C::DatabaseLocked) => SqliteErrorKind::Busy,
            Some(C::DiskFull | C::SystemIoFailure | C::CannotOpen | C::ReadOnly | C::FileLockingProtocolFailed) => {
                SqliteErrorKind::Storage
            }
            Some(C::DatabaseCorrupt | C::NotADatabase) => SqliteErrorKind::Corrupt,
            // a row that does not decode as the column this build wrote
            None if matches!(
                e,
                rusqlite::Error::FromSqlConversionFailure(..)
                    | rusqlite::Error::InvalidColumnType(..)
                    | rusqlite::Error::IntegralValueOutOfRange(..)
            ) =>
            {
                SqliteErrorKind::Corrupt
            }
            _ => SqliteErrorKind::Failed,
        };
        Self::new(kind, e)
    }
}

impl From<serde_json::Error> for SqliteError {
    fn from(e: serde_json::Error) -> Self {
        Self::new(SqliteErrorKind::Failed, e)
    }
}

/// A writer job's answer.
type SqlResult<T> = std::result::Result<T, SqliteError>;

type Reply<T> = oneshot::Sender<T>;

enum Job {
    Publish {
        /// The journal's node id, for the batch id.
        node: String,
        probe: String,
        events: Vec<Event>,
        encoded: Vec<u8>,
        received_ms: i64,
        reply: Reply<SqlResult<Published>>,
    },
    Commit {
        ws: WriteSet,
        /// The clock's time when the commit was asked for (row update and batch times).
        now_ms: i64,
        reply: Reply<SqlResult<CommitReport>>,
    },
    Ack {
        id: i64,
    },
    DeadLetter {
        id: i64,
        at_ms: i64,
        reason: String,
    },
    SaveSessions {
        sessions: Vec<SessionState>,
        reply: Reply<SqlResult<()>>,
    },
    SaveIncidents {
        incidents: Vec<Incident>,
        reply: Reply<SqlResult<()>>,
    },
    Prune {
        now_ms: i64,
        retention: Retention,
        reply: Reply<SqlResult<u64>>,
    },
}

/// Journal delivery bookkeeping for the consumer.
#[derive(Default)]
struct JournalState {
    /// Highest journal id handed out.
    cursor: i64,
    /// Highest journal id present when the process started (those are redeliveries).
    startup_max: i64,
    inflight: HashSet<i64>,
    /// Ids returned unacked, with the instant they become deliverable again.
    requeued: BTreeMap<i64, Instant>,
    /// Deliveries per id in this process (for the delivery limit).
    deliveries: std::collections::HashMap<i64, u32>,
}

struct Shared {
    path: PathBuf,
    jobs: mpsc::Sender<Job>,
    readers: Mutex<Vec<Connection>>,
    published: Notify,
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
        conn.execute_batch(SCHEMA)?;
        let version: Option<i64> = conn.query_row("SELECT version FROM schema_version", [], |r| r.get(0)).optional()?;
        match version {
            None => {
                conn.execute("INSERT INTO schema_version (version) VALUES (?1)", [SCHEMA_VERSION])?;
            }
            Some(v) if v == SCHEMA_VERSION => {}
            Some(v @ (1 | 2)) => {
                if v == 1 {
                    ensure_column(&conn, "rollups", "applied", "BLOB NOT NULL DEFAULT x''")?;
                    ensure_column(&conn, "watermarks", "max_seq", "INTEGER")?;
                    conn.execute_batch("DROP TABLE IF EXISTS applied_events")?;
                }
                migrate_seen_events(&conn)?;
                conn.execute("UPDATE schema_version SET version = ?1", [SCHEMA_VERSION])?;
                tracing::info!(path = %path.display(), from = v, to = SCHEMA_VERSION, "store schema migrated");
            }
            Some(v) => {
                anyhow::bail!("{}: schema version {v} is newer than this build's {SCHEMA_VERSION}", path.display())
            }
        }
        let node = journal_node(&conn)?;
        let startup_max: i64 = conn.query_row("SELECT COALESCE(MAX(id), 0) FROM journal", [], |r| r.get(0))?;
        let (tx, rx) = mpsc::channel(WRITER_QUEUE);
        let shared = Arc::new(Shared {
            path: path.clone(),
            jobs: tx,
            readers: Mutex::new(Vec::new()),
            published: Notify::new(),
            acked: Notify::new(),
            journal: Mutex::new(JournalState { startup_max, ..Default::default() }),
            node,
            clock,
        });
        let weak = Arc::downgrade(&shared);
        std::thread::Builder::new().name("netqoe-sqlite-writer".into()).spawn(move || writer_loop(conn, rx, weak))?;
        Ok(Self { shared })
    }

    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Queues a job for the writer and waits for its answer (after COMMIT).
    async fn submit<T>(&self, make: impl FnOnce(Reply<SqlResult<T>>) -> Job) -> SqlResult<T> {
        let (tx, rx) = oneshot::channel();
        self.shared.jobs.send(make(tx)).await.map_err(|_| SqliteError::stopped())?;
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
        .map_err(|e| StoreError::Failed(format!("reader task: {e}")))?
    }

    /// Journal rows not yet acked (tests and readiness detail).
    pub async fn journal_depth(&self) -> Result<i64, StoreError> {
        self.read(|c| c.query_row("SELECT COUNT(*) FROM journal", [], |r| r.get(0))).await
    }

    pub async fn dead_letter_count(&self) -> Result<i64, StoreError> {
        self.read(|c| c.query_row("SELECT COUNT(*) FROM dead_letters", [], |r| r.get(0))).await
    }
}

/// The journal's node id: 64 random bits made once, when the file is created (or first opened by a
/// build that has them), and kept in it. Batch ids are `j-{node}-{row id}`: row ids alone
/// (`AUTOINCREMENT`, never reused within one file) recur across files, and a store shared by two
/// processes, or one whose data directory was reset, would take a new batch for one it already
/// committed and skip it on redelivery.
fn journal_node(conn: &Connection) -> rusqlite::Result<String> {
    if let Some(node) = conn.query_row("SELECT node FROM journal_node", [], |r| r.get(0)).optional()? {
        return Ok(node);
    }
    let node = format!("{:016x}", rand::random::<u64>());
    conn.execute("INSERT INTO journal_node (node) VALUES (?1)", [&node])?;
    Ok(node)
}

fn batch_id(node: &str, row: i64) -> String {
    format!("j-{node}-{row}")
}

/// Adds a column if the table lacks it (migrations).
/// Version 2 kept ingest dedup rows by event id text; version 3 by its hash. Rows a version-2 file
/// has (rollups keep their `applied` column, read together with `window_events`) are carried over.
fn migrate_seen_events(conn: &Connection) -> rusqlite::Result<()> {
    let exists: bool = conn.query_row(
        "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'seen_events'",
        [],
        |r| r.get(0),
    )?;
    if exists {
        let tx = conn.unchecked_transaction()?;
        {
            let mut read = tx.prepare("SELECT probe, event_id, ts_ms FROM seen_events")?;
            let mut ins = tx.prepare("INSERT OR IGNORE INTO seen_ids (probe, h, ts_ms) VALUES (?1, ?2, ?3)")?;
            let mut rows = read.query([])?;
            while let Some(r) = rows.next()? {
                let (probe, id, ts): (String, String, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
                ins.execute(params![probe, event_hash(&id) as i64, ts])?;
            }
        }
        tx.execute_batch("DROP TABLE seen_events")?;
        tx.commit()?;
    }
    Ok(())
}

fn ensure_column(conn: &Connection, table: &str, column: &str, decl: &str) -> rusqlite::Result<()> {
    let mut st = conn.prepare(&format!("SELECT 1 FROM pragma_table_info('{table}') WHERE name = ?1"))?;
    if !st.exists([column])? {
        conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
    }
    Ok(())
}

fn writer_loop(conn: Connection, mut rx: mpsc::Receiver<Job>, shared: std::sync::Weak<Shared>) {
    let mut conn = conn;
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = vec![first];
        while jobs.len() < GROUP_MAX {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let published = run_group(&mut conn, jobs);
        if let Some(s) = shared.upgrade() {
            if published {
                s.published.notify_one();
            }
        }
    }
}

/// What one job produced inside a group's transaction; sent to its caller only after COMMIT.
enum Outcome {
    Publish(SqlResult<Published>),
    Commit(SqlResult<CommitReport>),
    Unit(SqlResult<()>),
    Count(SqlResult<u64>),
    Nothing,
}

impl Outcome {
    fn failed(&self) -> bool {
        match self {
            Outcome::Publish(r) => r.is_err(),
            Outcome::Commit(r) => r.is_err(),
            Outcome::Unit(r) => r.is_err(),
            Outcome::Count(r) => r.is_err(),
            Outcome::Nothing => false,
        }
    }
}

fn exec(tx: &Transaction<'_>, job: &Job) -> Outcome {
    match job {
        Job::Publish { node, probe, events, encoded, received_ms, .. } => {
            Outcome::Publish(publish_tx(tx, node, probe, events, encoded, *received_ms).map_err(SqliteError::from))
        }
        Job::Commit { ws, now_ms, .. } => Outcome::Commit(commit_tx(tx, ws, *now_ms).map_err(SqliteError::from)),
        Job::Ack { id } => {
            if let Err(error) = tx.execute("DELETE FROM journal WHERE id = ?1", [id]) {
                tracing::warn!(%error, id, "journal ack failed");
            }
            Outcome::Nothing
        }
        Job::DeadLetter { id, at_ms, reason } => {
            let r = tx.execute(
                "INSERT OR IGNORE INTO dead_letters (id, probe, received_ms, payload, reason, at_ms)
                 SELECT id, probe, received_ms, payload, ?2, ?3 FROM journal WHERE id = ?1",
                params![id, reason, at_ms],
            );
            let r = r.and_then(|_| tx.execute("DELETE FROM journal WHERE id = ?1", [id]));
            if let Err(error) = r {
                tracing::warn!(%error, id, "dead-lettering failed");
            }
            Outcome::Nothing
        }
        Job::SaveSessions { sessions, .. } => Outcome::Unit(save_sessions_tx(tx, sessions)),
        Job::SaveIncidents { incidents, .. } => Outcome::Unit(save_incidents_tx(tx, incidents)),
        Job::Prune { now_ms, retention, .. } => {
            Outcome::Count(prune_tx(tx, *now_ms, retention).map_err(SqliteError::from))
        }
    }
}

/// Runs `jobs` in one transaction. Without savepoints (the fast path: a savepoint per job makes
/// SQLite copy every page a job touches) a failing job aborts the attempt (`Ok(None)`), and the
/// group is run again with a savepoint per job so that only the failing job fails.
fn attempt(conn: &mut Connection, jobs: &[Job], savepoints: bool) -> SqlResult<Option<Vec<Outcome>>> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut out = Vec::with_capacity(jobs.len());
    for job in jobs {
        if !savepoints {
            let o = exec(&tx, job);
            if o.failed() {
                return Ok(None); // dropping `tx` rolls the attempt back
            }
            out.push(o);
            continue;
        }
        if let Err(e) = tx.execute_batch("SAVEPOINT job") {
            out.push(fail_outcome(job, &SqliteError::from(e)));
            continue;
        }
        let o = exec(&tx, job);
        let end =
            if o.failed() { tx.execute_batch("ROLLBACK TO job; RELEASE job") } else { tx.execute_batch("RELEASE job") };
        if let Err(e) = end {
            tracing::error!(error = %e, "savepoint release failed");
        }
        out.push(o);
    }
    tx.commit()?;
    Ok(Some(out))
}

/// Runs a group of jobs in one transaction; replies only after COMMIT. Returns whether any
/// journal row was added.
fn run_group(conn: &mut Connection, jobs: Vec<Job>) -> bool {
    let outcomes = match attempt(conn, &jobs, false) {
        Ok(Some(o)) => Ok(o),
        Ok(None) => attempt(conn, &jobs, true).map(|o| o.unwrap_or_default()),
        Err(e) => Err(e),
    };
    let outcomes = match outcomes {
        Ok(o) => o,
        Err(e) => {
            for j in jobs {
                let o = fail_outcome(&j, &e);
                reply(j, o);
            }
            return false;
        }
    };
    let mut published = false;
    for (j, o) in jobs.into_iter().zip(outcomes) {
        if matches!(&o, Outcome::Publish(Ok(p)) if p.batch_id.is_some()) {
            published = true;
        }
        reply(j, o);
    }
    published
}

fn fail_outcome(job: &Job, e: &SqliteError) -> Outcome {
    let m = e.clone();
    match job {
        Job::Publish { .. } => Outcome::Publish(Err(m)),
        Job::Commit { .. } => Outcome::Commit(Err(m)),
        Job::SaveSessions { .. } | Job::SaveIncidents { .. } => Outcome::Unit(Err(m)),
        Job::Prune { .. } => Outcome::Count(Err(m)),
        Job::Ack { .. } | Job::DeadLetter { .. } => Outcome::Nothing,
    }
}

fn reply(job: Job, o: Outcome) {
    match (job, o) {
        (Job::Publish { reply, .. }, Outcome::Publish(v)) => drop(reply.send(v)),
        (Job::Commit { reply, .. }, Outcome::Commit(v)) => drop(reply.send(v)),
        (Job::SaveSessions { reply, .. }, Outcome::Unit(v)) => drop(reply.send(v)),
        (Job::SaveIncidents { reply, .. }, Outcome::Unit(v)) => drop(reply.send(v)),
        (Job::Prune { reply, .. }, Outcome::Count(v)) => drop(reply.send(v)),
        _ => {}
    }
}

/// Whether event `h` with sequence number `seq` was journaled before (`seq` at or below the
/// probe's highest journaled seq). A re-sent event carries its original seq, so the batches whose
/// seq range covers it are the few first ones ending at or after it; a version-2 file's ids are in
/// `seen_ids`. (An id re-sent under another seq is not recognised here; the aggregator's
/// per-window event sets still never count it twice.)
fn seen_before(tx: &Transaction<'_>, probe: &str, seq: i64, h: u64) -> rusqlite::Result<bool> {
    let mut st = tx.prepare_cached(
        "SELECT first_seq, hashes FROM seen_batches WHERE probe = ?1 AND last_seq >= ?2 ORDER BY last_seq LIMIT 16",
    )?;
    let mut rows = st.query(params![probe, seq])?;
    let want = h.to_le_bytes();
    while let Some(r) = rows.next()? {
        let first: i64 = r.get(0)?;
        if first > seq {
            continue;
        }
        let hashes = r.get_ref(1)?.as_blob()?;
        if hashes.chunks_exact(8).any(|c| c == want) {
            return Ok(true);
        }
    }
    tx.prepare_cached("SELECT 1 FROM seen_ids WHERE probe = ?1 AND h = ?2")?.exists(params![probe, h as i64])
}

/// Deduplicates the batch against what was journaled before (and within itself), journals the new
/// events and records them: one `seen_batches` row per batch, not one row per event. `encoded` is
/// the binary encoding of all of `events` (made by the caller, off the writer thread); it is
/// re-made here only when some were duplicates.
fn publish_tx(
    tx: &Transaction<'_>,
    node: &str,
    probe: &str,
    events: &[Event],
    encoded: &[u8],
    received_ms: i64,
) -> rusqlite::Result<Published> {
    let mark: Option<i64> = tx
        .prepare_cached("SELECT MAX(last_seq) FROM seen_batches WHERE probe = ?1")?
        .query_row([probe], |r| r.get(0))?;
    // A version-2 file's ids (no seq known) are looked up for every event until they expire.
    let legacy: bool = tx.prepare_cached("SELECT EXISTS (SELECT 1 FROM seen_ids)")?.query_row([], |r| r.get(0))?;
    let total = events.len();
    let mut fresh = Vec::with_capacity(total);
    let mut in_batch = HashSet::with_capacity(total);
    let (mut first, mut last, mut newest) = (i64::MAX, i64::MIN, i64::MIN);
    let mut hashes = Vec::with_capacity(total * 8);
    for (i, e) in events.iter().enumerate() {
        let h = event_hash(&e.event_id);
        if !in_batch.insert(h) {
            continue;
        }
        let seq = i64::try_from(e.seq).unwrap_or(i64::MAX);
        if (legacy || mark.is_some_and(|m| seq <= m)) && seen_before(tx, probe, seq, h)? {
            continue;
        }
        fresh.push(i);
        first = first.min(seq);
        last = last.max(seq);
        newest = newest.max(e.ts_ms);
        hashes.extend_from_slice(&h.to_le_bytes());
    }
    let duplicates = total - fresh.len();
    if fresh.is_empty() {
        return Ok(Published { batch_id: None, accepted: 0, duplicates });
    }
    tx.prepare_cached(
        "INSERT INTO seen_batches (probe, first_seq, last_seq, ts_ms, hashes) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![probe, first, last, newest, hashes])?;
    let reencoded;
    let payload = if duplicates == 0 {
        encoded
    } else {
        let subset: Vec<Event> = fresh.iter().map(|i| events[*i].clone()).collect();
        let mut buf = Vec::new();
        codec::encode_events(&subset, &mut buf);
        reencoded = buf;
        &reencoded[..]
    };
    tx.prepare_cached("INSERT INTO journal (probe, received_ms, duplicates, payload) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![probe, received_ms, duplicates as i64, payload])?;
    let id = tx.last_insert_rowid();
    Ok(Published { batch_id: Some(batch_id(node, id)), accepted: fresh.len(), duplicates })
}

/// Decodes a journal payload: the binary encoding, or JSON (journals written before it).
fn decode_payload(payload: &[u8]) -> SqlResult<Vec<Event>> {
    if payload.first() == Some(&codec::MAGIC) {
        codec::decode_events(payload).map_err(|e| SqliteError::corrupt(e.to_string()))
    } else {
        serde_json::from_slice(payload).map_err(|e| SqliteError::corrupt(e.to_string()))
    }
}

const ROLLUP_COLUMNS: &str = "tier, probe, target, metric, start_ms, revision, closed, events, count, min, max, sum, sent, received, jitter_sum, jitter_n, errors, sketch, applied";

fn upsert_rollup(tx: &Transaction<'_>, r: &Rollup, bump: bool, now_ms: i64) -> rusqlite::Result<usize> {
    // `bump`: derived windows take the stored revision + 1; aggregator windows carry their own
    // revision, and an older or equal one never overwrites a newer one.
    let sql = if bump {
        "INSERT INTO rollups (tier, probe, target, metric, start_ms, revision, closed, events, count, min, max, sum, sent, received, jitter_sum, jitter_n, errors, sketch, updated_ms, applied)
         VALUES (?1,?2,?3,?4,?5,1,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20)
         ON CONFLICT (tier, probe, target, metric, start_ms) DO UPDATE SET
           revision = rollups.revision + 1, closed = excluded.closed, events = excluded.events, count = excluded.count,
           min = excluded.min, max = excluded.max, sum = excluded.sum, sent = excluded.sent, received = excluded.received,
           jitter_sum = excluded.jitter_sum, jitter_n = excluded.jitter_n, errors = excluded.errors, sketch = excluded.sketch,
           updated_ms = excluded.updated_ms, applied = excluded.applied
         WHERE ?6 >= 0"
    } else {
        "INSERT INTO rollups (tier, probe, target, metric, start_ms, revision, closed, events, count, min, max, sum, sent, received, jitter_sum, jitter_n, errors, sketch, updated_ms, applied)
         VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20)
         ON CONFLICT (tier, probe, target, metric, start_ms) DO UPDATE SET
           revision = excluded.revision, closed = excluded.closed, events = excluded.events, count = excluded.count,
           min = excluded.min, max = excluded.max, sum = excluded.sum, sent = excluded.sent, received = excluded.received,
           jitter_sum = excluded.jitter_sum, jitter_n = excluded.jitter_n, errors = excluded.errors, sketch = excluded.sketch,
           updated_ms = excluded.updated_ms, applied = excluded.applied
         WHERE excluded.revision > rollups.revision"
    };
    let a = &r.agg;
    let errors = serde_json::to_string(&a.errors).unwrap_or_else(|_| "{}".into());
    tx.prepare_cached(sql)?.execute(params![
        r.key.tier.as_str(),
        r.key.probe,
        r.key.target,
        r.key.metric.as_str(),
        r.key.start_ms,
        r.revision as i64,
        r.closed,
        a.events as i64,
        a.count as i64,
        a.min,
        a.max,
        a.sum,
        a.sent as i64,
        a.received as i64,
        a.jitter_sum,
        a.jitter_n as i64,
        errors,
        a.sketch.encode(),
        now_ms,
        Vec::<u8>::new(),
    ])
}

/// Stores a window's event-set delta of one revision (only after its rollups row took it).
fn insert_window_events(tx: &Transaction<'_>, r: &Rollup) -> rusqlite::Result<()> {
    if r.applied.is_empty() {
        return Ok(());
    }
    tx.prepare_cached(
        "INSERT OR IGNORE INTO window_events (start_ms, probe, target, metric, revision, hashes) VALUES (?1,?2,?3,?4,?5,?6)",
    )?
    .execute(params![
        r.key.start_ms,
        r.key.probe,
        r.key.target,
        r.key.metric.as_str(),
        r.revision as i64,
        r.applied.encode()
    ])?;
    Ok(())
}

fn row_to_rollup(row: &rusqlite::Row<'_>) -> rusqlite::Result<Rollup> {
    let tier: String = row.get(0)?;
    let metric: String = row.get(3)?;
    let errors: String = row.get(16)?;
    let sketch: Vec<u8> = row.get(17)?;
    let applied: Vec<u8> = row.get(18)?;
    let corrupt = |what: String| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, what.into());
    let tier = Tier::parse(&tier).ok_or_else(|| corrupt(format!("unknown tier {tier}")))?;
    let metric = Metric::parse(&metric).ok_or_else(|| corrupt(format!("unknown metric {metric}")))?;
    let sketch = DdSketch::decode(&sketch).map_err(|e| corrupt(format!("sketch: {e}")))?;
    let errors: BTreeMap<String, u64> = serde_json::from_str(&errors).map_err(|e| corrupt(format!("errors: {e}")))?;
    let applied = EventSet::decode(&applied).ok_or_else(|| corrupt("applied event set".into()))?;
    Ok(Rollup {
        applied,
        key: WindowKey { probe: row.get(1)?, target: row.get(2)?, metric, tier, start_ms: row.get(4)? },
        revision: row.get::<_, i64>(5)? as u64,
        closed: row.get(6)?,
        agg: WindowAgg {
            events: row.get::<_, i64>(7)? as u64,
            count: row.get::<_, i64>(8)? as u64,
            min: row.get(9)?,
            max: row.get(10)?,
            sum: row.get(11)?,
            sent: row.get::<_, i64>(12)? as u64,
            received: row.get::<_, i64>(13)? as u64,
            jitter_sum: row.get(14)?,
            jitter_n: row.get::<_, i64>(15)? as u64,
            errors,
            sketch,
        },
    })
}

fn commit_tx(tx: &Transaction<'_>, ws: &WriteSet, now_ms: i64) -> rusqlite::Result<CommitReport> {
    let mut report = CommitReport::default();
    let mut changed = Vec::new();
    for r in &ws.rollups {
        if upsert_rollup(tx, r, false, now_ms)? == 1 {
            insert_window_events(tx, r)?;
            changed.push(r.key.clone());
            *report.written.entry(Tier::M1).or_default() += 1;
        }
    }
    for parent in parents_to_derive(&ws.derive) {
        let child = if parent.tier == Tier::H1 { Tier::M1 } else { Tier::H1 };
        let mut stmt = tx.prepare_cached(&format!(
            "SELECT {ROLLUP_COLUMNS} FROM rollups WHERE tier = ?1 AND probe = ?2 AND target = ?3 AND metric = ?4
             AND start_ms >= ?5 AND start_ms < ?6 ORDER BY start_ms"
        ))?;
        let children: Vec<Rollup> = stmt
            .query_map(
                params![
                    child.as_str(),
                    parent.probe,
                    parent.target,
                    parent.metric.as_str(),
                    parent.start_ms,
                    parent.start_ms + parent.tier.len_ms()
                ],
                row_to_rollup,
            )?
            .collect::<rusqlite::Result<_>>()?;
        let Some((agg, closed)) = derive_parent(&children) else { continue };
        upsert_rollup(
            tx,
            &Rollup { key: parent.clone(), agg, applied: EventSet::default(), revision: 0, closed },
            true,
            now_ms,
        )?;
        *report.written.entry(parent.tier).or_default() += 1;
    }
    let at = now_ms;
    let mut ins = tx.prepare_cached("INSERT OR IGNORE INTO processed_batches (batch_id, at_ms) VALUES (?1, ?2)")?;
    for id in &ws.batches {
        ins.execute(params![id, at])?;
    }
    let mut wm = tx.prepare_cached(
        "INSERT INTO watermarks (probe, max_event_ms, max_seq) VALUES (?1, ?2, ?3)
         ON CONFLICT (probe) DO UPDATE SET
           max_event_ms = MAX(COALESCE(max_event_ms, excluded.max_event_ms), COALESCE(excluded.max_event_ms, max_event_ms)),
           max_seq = MAX(COALESCE(max_seq, excluded.max_seq), COALESCE(excluded.max_seq, max_seq))",
    )?;
    for (probe, mark) in &ws.watermarks {
        wm.execute(params![probe, mark.max_event_ms, mark.max_seq.map(|s| s as i64)])?;
    }
    Ok(report)
}

fn save_sessions_tx(tx: &Transaction<'_>, sessions: &[SessionState]) -> SqlResult<()> {
    let mut st = tx.prepare_cached(
        "INSERT INTO sessions (probe, state) VALUES (?1, ?2) ON CONFLICT (probe) DO UPDATE SET state = excluded.state",
    )?;
    for s in sessions {
        let json = serde_json::to_string(s)?;
        st.execute(params![s.probe, json])?;
    }
    Ok(())
}

fn save_incidents_tx(tx: &Transaction<'_>, incidents: &[Incident]) -> SqlResult<()> {
    let mut st = tx.prepare_cached(
        "INSERT INTO incidents (id, state, opened_ms, updated_ms, body) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (id) DO UPDATE SET state = excluded.state, updated_ms = excluded.updated_ms, body = excluded.body",
    )?;
    for i in incidents {
        let body = serde_json::to_string(i)?;
        let state = if i.state == IncidentState::Open { "open" } else { "resolved" };
        st.execute(params![i.id, state, i.opened_ms, i.updated_ms, body])?;
    }
    Ok(())
}

fn prune_tx(tx: &Transaction<'_>, now_ms: i64, retention: &Retention) -> rusqlite::Result<u64> {
    let mut n = 0;
    for tier in Tier::ALL {
        n += tx.execute(
            "DELETE FROM rollups WHERE tier = ?1 AND start_ms < ?2",
            params![tier.as_str(), retention.expired_before(tier, now_ms)],
        )?;
    }
    n += tx.execute("DELETE FROM processed_batches WHERE at_ms < ?1", [now_ms - retention.dedup_ms])?;
    n += tx.execute("DELETE FROM seen_ids WHERE ts_ms < ?1", [now_ms - retention.dedup_ms])?;
    n += tx.execute("DELETE FROM seen_batches WHERE ts_ms < ?1", [now_ms - retention.dedup_ms])?;
    n += tx.execute("DELETE FROM window_events WHERE start_ms < ?1", [retention.expired_before(Tier::M1, now_ms)])?;
    Ok(n as u64)
}

#[async_trait]
impl RollupStore for Sqlite {
    async fn commit(&self, ws: WriteSet) -> Result<CommitReport, StoreError> {
        let now_ms = self.shared.clock.now_ms();
        self.submit(|reply| Job::Commit { ws, now_ms, reply }).await.map_err(SqliteError::into_store)
    }

    async fn load_windows(&self, keys: &[WindowKey]) -> Result<Vec<Rollup>, StoreError> {
        let keys = keys.to_vec();
        self.read(move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {ROLLUP_COLUMNS} FROM rollups WHERE tier = ?1 AND probe = ?2 AND target = ?3 AND metric = ?4 AND start_ms = ?5"
            ))?;
            let mut deltas = c.prepare_cached(
                "SELECT hashes FROM window_events WHERE start_ms = ?1 AND probe = ?2 AND target = ?3 AND metric = ?4
                 AND revision <= ?5",
            )?;
            let mut out = Vec::new();
            for k in keys {
                if let Some(mut r) = st
                    .query_row(params![k.tier.as_str(), k.probe, k.target, k.metric.as_str(), k.start_ms], row_to_rollup)
                    .optional()?
                {
                    // `applied` (the column) holds a version-2 file's whole set; the rows, the deltas since.
                    let mut rows = deltas
                        .query(params![k.start_ms, k.probe, k.target, k.metric.as_str(), r.revision as i64])?;
                    while let Some(row) = rows.next()? {
                        let blob: Vec<u8> = row.get(0)?;
                        if !r.applied.decode_into(&blob) {
                            return Err(rusqlite::Error::FromSqlConversionFailure(
                                0,
                                rusqlite::types::Type::Blob,
                                "window event set delta".into(),
                            ));
                        }
                    }
                    out.push(r);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn load_mark(&self, probe: &str) -> Result<Option<ProbeMark>, StoreError> {
        let probe = probe.to_string();
        self.read(move |c| {
            c.query_row("SELECT max_event_ms, max_seq FROM watermarks WHERE probe = ?1", [probe], |r| {
                Ok(ProbeMark { max_event_ms: r.get(0)?, max_seq: r.get::<_, Option<i64>>(1)?.map(|s| s as u64) })
            })
            .optional()
        })
        .await
    }

    async fn processed(&self, ids: &[BatchId]) -> Result<Vec<BatchId>, StoreError> {
        let ids = ids.to_vec();
        self.read(move |c| {
            let mut st = c.prepare_cached("SELECT 1 FROM processed_batches WHERE batch_id = ?1")?;
            let mut out = Vec::new();
            for id in ids {
                if st.exists([&id])? {
                    out.push(id);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn query(&self, q: &RollupQuery) -> Result<Vec<Rollup>, StoreError> {
        let q = q.clone();
        self.read(move |c| {
            // With a probe given, its primary-key range (its series only) is far narrower than
            // the metric or time indexes (every series), which the planner picks without
            // statistics (10,000 probes: 18 ms a query instead of µs); a unary `+` keeps those
            // columns out of index selection.
            let unary = if q.probe.is_some() { "+" } else { "" };
            let mut sql = format!(
                "SELECT {ROLLUP_COLUMNS} FROM rollups WHERE tier = ?1 AND {unary}start_ms >= ?2 AND {unary}start_ms < ?3"
            );
            let mut args: Vec<rusqlite::types::Value> =
                vec![q.tier.as_str().to_string().into(), q.from_ms.into(), q.to_ms.into()];
            if let Some(p) = &q.probe {
                args.push(p.clone().into());
                sql.push_str(&format!(" AND probe = ?{}", args.len()));
            }
            if let Some(t) = &q.target {
                args.push(t.clone().into());
                sql.push_str(&format!(" AND target = ?{}", args.len()));
            }
            if let Some(m) = q.metric {
                args.push(m.as_str().to_string().into());
                sql.push_str(&format!(" AND {unary}metric = ?{}", args.len()));
            }
            if let Some(c) = &q.after {
                let n = args.len();
                args.extend([
                    c.probe.clone().into(),
                    c.target.clone().into(),
                    c.metric.clone().into(),
                    c.start_ms.into(),
                ]);
                sql.push_str(&format!(
                    " AND (probe, target, metric, start_ms) > (?{}, ?{}, ?{}, ?{})",
                    n + 1,
                    n + 2,
                    n + 3,
                    n + 4
                ));
            }
            args.push((q.limit as i64).into());
            sql.push_str(&format!(" ORDER BY probe, target, metric, start_ms LIMIT ?{}", args.len()));
            let mut st = c.prepare(&sql)?;
            let rows = st.query_map(rusqlite::params_from_iter(args), row_to_rollup)?;
            rows.map(|r| r.map(|r| Rollup { applied: EventSet::default(), ..r })).collect()
        })
        .await
    }

    async fn save_incidents(&self, incidents: &[Incident]) -> Result<(), StoreError> {
        let incidents = incidents.to_vec();
        self.submit(|reply| Job::SaveIncidents { incidents, reply }).await.map_err(SqliteError::into_store)
    }

    async fn list_incidents(&self, q: &IncidentQuery) -> Result<Vec<Incident>, StoreError> {
        let q = q.clone();
        self.read(move |c| {
            let state = q.state.map(|s| if s == IncidentState::Open { "open" } else { "resolved" });
            let mut st = c.prepare_cached(
                "SELECT body FROM incidents WHERE opened_ms >= ?1 AND opened_ms < ?2 AND (?3 IS NULL OR state = ?3)
                 ORDER BY opened_ms DESC, id DESC LIMIT ?4",
            )?;
            let rows = st.query_map(params![q.from_ms, q.to_ms, state, q.limit as i64], |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for body in rows {
                let body = body?;
                out.push(serde_json::from_str(&body).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
                })?);
            }
            Ok(out)
        })
        .await
    }

    async fn save_sessions(&self, sessions: &[SessionState]) -> Result<(), StoreError> {
        let sessions = sessions.to_vec();
        self.submit(|reply| Job::SaveSessions { sessions, reply }).await.map_err(SqliteError::into_store)
    }

    async fn load_session(&self, probe: &str) -> Result<Option<SessionState>, StoreError> {
        let probe = probe.to_string();
        let json: Option<String> = self
            .read(move |c| c.query_row("SELECT state FROM sessions WHERE probe = ?1", [probe], |r| r.get(0)).optional())
            .await?;
        json.map(|j| serde_json::from_str(&j).map_err(|e| StoreError::Corrupt(format!("session: {e}")))).transpose()
    }

    async fn list_sessions(&self) -> Result<Vec<SessionState>, StoreError> {
        let rows: Vec<String> = self
            .read(|c| {
                let mut st = c.prepare("SELECT state FROM sessions ORDER BY probe")?;
                let r = st.query_map([], |r| r.get(0))?.collect();
                r
            })
            .await?;
        rows.iter().map(|j| serde_json::from_str(j).map_err(|e| StoreError::Corrupt(format!("session: {e}")))).collect()
    }

    async fn prune(&self, now_ms: i64, retention: &Retention) -> Result<u64, StoreError> {
        let retention = *retention;
        self.submit(|reply| Job::Prune { now_ms, retention, reply }).await.map_err(SqliteError::into_store)
    }

    async fn ready(&self) -> Result<(), StoreError> {
        if self.shared.jobs.is_closed() {
            return Err(StoreError::Unavailable("sqlite writer stopped".into()));
        }
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(()))).await
    }

    fn name(&self) -> &'static str {
        "sqlite"
    }
}

struct JournalAcker {
    id: i64,
    shared: Arc<Shared>,
    settled: bool,
}

#[async_trait]
impl Acker for JournalAcker {
    async fn ack(mut self: Box<Self>) -> Result<(), BusError> {
        self.settled = true;
        let r = self.shared.jobs.send(Job::Ack { id: self.id }).await;
        if let Ok(mut j) = self.shared.journal.lock() {
            j.inflight.remove(&self.id);
            j.deliveries.remove(&self.id);
        }
        self.shared.acked.notify_one();
        r.map_err(|_| BusError::Unavailable("sqlite writer stopped".into()))
    }

    fn release(self: Box<Self>) {
        // this delivery was not the batch's fault: take it back off the count, then requeue (drop)
        if let Ok(mut j) = self.shared.journal.lock() {
            if let Some(n) = j.deliveries.get_mut(&self.id) {
                *n = n.saturating_sub(1);
            }
        }
    }
}

impl Drop for JournalAcker {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        if let Ok(mut j) = self.shared.journal.lock() {
            j.inflight.remove(&self.id);
            j.requeued.insert(self.id, Instant::now() + REQUEUE_DELAY);
        }
        self.shared.acked.notify_one();
    }
}

struct JournalRow {
    id: i64,
    probe: String,
    received_ms: i64,
    duplicates: i64,
    payload: Vec<u8>,
}

fn read_rows(c: &Connection, requeued: &[i64], after: i64, limit: usize) -> rusqlite::Result<Vec<JournalRow>> {
    let map = |r: &rusqlite::Row<'_>| {
        Ok(JournalRow {
            id: r.get(0)?,
            probe: r.get(1)?,
            received_ms: r.get(2)?,
            duplicates: r.get(3)?,
            payload: r.get(4)?,
        })
    };
    let mut out = Vec::new();
    let mut one = c.prepare_cached("SELECT id, probe, received_ms, duplicates, payload FROM journal WHERE id = ?1")?;
    for id in requeued {
        if let Some(r) = one.query_row([id], map).optional()? {
            out.push(r);
        }
    }
    if out.len() < limit {
        let mut st = c.prepare_cached(
            "SELECT id, probe, received_ms, duplicates, payload FROM journal WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = st.query_map(params![after, (limit - out.len()) as i64], map)?;
        for r in rows {
            out.push(r?);
        }
    }
    Ok(out)
}

impl Sqlite {
    async fn consume_loop(self, tx: mpsc::Sender<Incoming>, prefetch: usize) {
        loop {
            let (free, requeued, after) = {
                let Ok(mut j) = self.shared.journal.lock() else {
                    return;
                };
                let free = prefetch.saturating_sub(j.inflight.len());
                let now = Instant::now();
                let due: Vec<i64> =
                    j.requeued.iter().filter(|(_, at)| **at <= now).map(|(id, _)| *id).take(free).collect();
                for id in &due {
                    j.requeued.remove(id);
                }
                (free, due, j.cursor)
            };
            if free == 0 {
                tokio::select! {
                    _ = self.shared.acked.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
                continue;
            }
            let req = requeued.clone();
            let rows = match self.read(move |c| read_rows(c, &req, after, free)).await {
                Ok(r) => r,
                Err(error) => {
                    tracing::warn!(%error, "journal read failed");
                    if let Ok(mut j) = self.shared.journal.lock() {
                        for id in requeued {
                            j.requeued.insert(id, Instant::now() + REQUEUE_DELAY);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            if rows.is_empty() {
                tokio::select! {
                    _ = self.shared.published.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
                continue;
            }
            for row in rows {
                let (redelivered, over_limit) = {
                    let Ok(mut j) = self.shared.journal.lock() else {
                        return;
                    };
                    j.cursor = j.cursor.max(row.id);
                    j.inflight.insert(row.id);
                    let startup_max = j.startup_max;
                    let n = j.deliveries.entry(row.id).or_insert(0);
                    *n += 1;
                    (row.id <= startup_max || *n > 1, *n > DELIVERY_LIMIT)
                };
                let events = decode_payload(&row.payload);
                let reason = match (&events, over_limit) {
                    (Err(e), _) => Some(format!("undecodable payload: {e}")),
                    (Ok(_), true) => Some(format!("delivery limit of {DELIVERY_LIMIT} reached")),
                    _ => None,
                };
                if let Some(reason) = reason {
                    tracing::error!(id = row.id, probe = %row.probe, %reason, "journal batch dead-lettered");
                    crate::http::metrics::DEAD_LETTERED.inc();
                    if let Ok(mut j) = self.shared.journal.lock() {
                        j.inflight.remove(&row.id);
                        j.deliveries.remove(&row.id);
                    }
                    let at_ms = self.shared.clock.now_ms();
                    let _ = self.shared.jobs.send(Job::DeadLetter { id: row.id, at_ms, reason }).await;
                    continue;
                }
                let batch = Batch {
                    id: batch_id(&self.shared.node, row.id),
                    probe: row.probe,
                    received_ms: row.received_ms,
                    duplicates: row.duplicates as u64,
                    events: events.unwrap_or_default(),
                };
                let acker = Box::new(JournalAcker { id: row.id, shared: self.shared.clone(), settled: false });
                let d = Delivery { batch, redelivered, acker, epoch: 0 };
                if tx.send(Incoming::Deliver(d)).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[async_trait]
impl EventBus for Sqlite {
    #[tracing::instrument(name = "bus.publish", skip_all, fields(backend = "sqlite", events = events.len()))]
    async fn publish(&self, probe: &str, events: Vec<Event>, received_ms: i64) -> Result<Published, BusError> {
        let probe = probe.to_string();
        let mut encoded = Vec::new();
        codec::encode_events(&events, &mut encoded);
        self.submit(|reply| Job::Publish { node: self.shared.node.clone(), probe, events, encoded, received_ms, reply })
            .await
            .map_err(SqliteError::into_bus)
    }

    async fn backlog(&self) -> Result<Option<u64>, BusError> {
        let rows = self.journal_depth().await.map_err(|e| BusError::Unavailable(e.to_string()))?;
        Ok(Some(rows.max(0) as u64))
    }

    fn dedups_events(&self) -> bool {
        true
    }

    async fn consume(&self, prefetch: usize) -> Result<mpsc::Receiver<Incoming>, BusError> {
        let (tx, rx) = mpsc::channel(prefetch.max(1));
        let me = self.clone();
        tokio::spawn(me.consume_loop(tx, prefetch.max(1)));
        Ok(rx)
    }

    async fn ready(&self) -> Result<(), BusError> {
        if self.shared.jobs.is_closed() {
            Err(BusError::Unavailable("sqlite writer stopped".into()))
        } else {
            Ok(())
        }
    }

    fn name(&self) -> &'static str {
        "embedded"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Errors are classified by SQLite's result code, and the ports say whether a retry helps:
    /// a lock or a full disk is a 503 (retry), a constraint or an undecodable row is not.
    #[test]
    fn errors_are_classified_by_code_and_mapped_to_retry_hints() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let a = Connection::open(&path).unwrap();
        a.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)").unwrap();

        // another connection holds the write lock
        let b = Connection::open(&path).unwrap();
        b.busy_timeout(Duration::ZERO).unwrap();
        a.execute_batch("BEGIN IMMEDIATE").unwrap();
        let busy = SqliteError::from(b.execute_batch("BEGIN IMMEDIATE").unwrap_err());
        a.execute_batch("ROLLBACK").unwrap();
        assert_eq!(busy.kind, SqliteErrorKind::Busy);
        assert!(matches!(busy.clone().into_bus(), BusError::Overloaded(_)));
        assert!(busy.into_store().retryable());

        // the file may not grow: SQLITE_FULL, as a full disk
        let page: i64 = a.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
        a.execute_batch(&format!("PRAGMA max_page_count = {}", page + 1)).unwrap();
        let full = SqliteError::from(a.execute("INSERT INTO t (v) VALUES (zeroblob(1000000))", []).unwrap_err());
        assert_eq!(full.kind, SqliteErrorKind::Storage, "{full}");
        let bus = full.clone().into_bus();
        assert!(matches!(bus, BusError::Unavailable(_)) && bus.retryable());
        assert!(full.into_store().retryable());
        a.execute_batch("PRAGMA max_page_count = 1073741823").unwrap();

        // a constraint: a bug, not a condition that passes
        a.execute("INSERT INTO t (k, v) VALUES (1, x'00')", []).unwrap();
        let dup = SqliteError::from(a.execute("INSERT INTO t (k, v) VALUES (1, x'00')", []).unwrap_err());
        assert_eq!(dup.kind, SqliteErrorKind::Failed);
        assert!(!dup.into_bus().retryable());

        // a row that is not what this build wrote
        a.execute("INSERT INTO t (k, v) VALUES (2, 'text')", []).unwrap();
        let row =
            SqliteError::from(a.query_row("SELECT v FROM t WHERE k = 2", [], |r| r.get::<_, i64>(0)).unwrap_err());
        assert_eq!(row.kind, SqliteErrorKind::Corrupt);
        let store = row.into_store();
        assert!(matches!(store, StoreError::Corrupt(_)) && !store.retryable());
        assert!(!SqliteError::corrupt("x").into_bus().retryable());
        assert!(SqliteError::stopped().into_bus().retryable());
    }
}
