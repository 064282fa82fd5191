//! The file's schema, its version and the migrations from older versions; the connection
//! settings (WAL, `synchronous = FULL`) every connection gets.

use super::*;

/// 2: rollups.applied (per-window event set), watermarks.max_seq; applied_events dropped.
/// 3: window_events (a window's event set as one delta row per revision, instead of the whole
///    set rewritten in its rollups row at every revision); seen_batches (ingest dedup: one row
///    per journaled batch with its seq range and event-id hashes) replaces seen_events, whose
///    rows a version-2 file had are kept as hashes in seen_ids until they expire.
/// 4: fleet_rollups (per tier, target, metric and window the merge of every probe's window, kept
///    by each commit), built from the stored rollups when an older file is opened.
const SCHEMA_VERSION: i64 = 4;

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
-- the merge of every probe's window of (tier, target, metric, start): fleet questions read these
CREATE TABLE IF NOT EXISTS fleet_rollups (
    tier TEXT NOT NULL,
    target TEXT NOT NULL,
    metric TEXT NOT NULL,
    start_ms INTEGER NOT NULL,
    probes INTEGER NOT NULL,
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
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (tier, start_ms, target, metric)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS fleet_rollups_by_target ON fleet_rollups (tier, target, metric, start_ms);
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

pub(super) fn open_conn(path: &Path) -> rusqlite::Result<Connection> {
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

/// Creates the schema if the file is new, or migrates it from an older version; refuses a newer one.
pub(super) fn migrate(conn: &Connection, path: &Path) -> anyhow::Result<()> {
    conn.execute_batch(SCHEMA)?;
    let version: Option<i64> = conn.query_row("SELECT version FROM schema_version", [], |r| r.get(0)).optional()?;
    match version {
        None => {
            conn.execute("INSERT INTO schema_version (version) VALUES (?1)", [SCHEMA_VERSION])?;
        }
        Some(v) if v == SCHEMA_VERSION => {}
        Some(v @ (1..=3)) => {
            if v == 1 {
                ensure_column(conn, "rollups", "applied", "BLOB NOT NULL DEFAULT x''")?;
                ensure_column(conn, "watermarks", "max_seq", "INTEGER")?;
                conn.execute_batch("DROP TABLE IF EXISTS applied_events")?;
            }
            if v <= 2 {
                migrate_seen_events(conn)?;
            }
            build_fleet(conn)?;
            conn.execute("UPDATE schema_version SET version = ?1", [SCHEMA_VERSION])?;
            tracing::info!(path = %path.display(), from = v, to = SCHEMA_VERSION, "store schema migrated");
        }
        Some(v) => {
            anyhow::bail!("{}: schema version {v} is newer than this build's {SCHEMA_VERSION}", path.display())
        }
    }
    Ok(())
}

/// The journal's node id: 64 random bits made once, when the file is created (or first opened by a
/// build that has them), and kept in it. Batch ids are `j-{node}-{row id}`: row ids alone
/// (`AUTOINCREMENT`, never reused within one file) recur across files, and a store shared by two
/// processes, or one whose data directory was reset, would take a new batch for one it already
/// committed and skip it on redelivery.
pub(super) fn journal_node(conn: &Connection) -> rusqlite::Result<String> {
    if let Some(node) = conn.query_row("SELECT node FROM journal_node", [], |r| r.get(0)).optional()? {
        return Ok(node);
    }
    let node = format!("{:016x}", rand::random::<u64>());
    conn.execute("INSERT INTO journal_node (node) VALUES (?1)", [&node])?;
    Ok(node)
}

pub(super) fn batch_id(node: &str, row: i64) -> String {
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

/// Version 4 keeps fleet windows; a file of an older version gets them built from its rollups,
/// one (tier, target, metric, start) group at a time in the order of `rollups_by_target`.
fn build_fleet(conn: &Connection) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    tx.execute("DELETE FROM fleet_rollups", [])?;
    {
        let mut read = tx.prepare(&format!(
            "SELECT {} FROM rollups ORDER BY tier, target, metric, start_ms",
            super::store::ROLLUP_COLUMNS
        ))?;
        let mut rows = read.query([])?;
        let mut growth = super::store::FleetGrowth::default();
        let mut group: Option<(String, String, i64)> = None;
        while let Some(row) = rows.next()? {
            let r = super::store::row_to_rollup(row)?;
            let k = (r.key.tier.as_str().to_string(), r.key.target.clone(), r.key.start_ms);
            if group.as_ref().is_some_and(|g| g.0 != k.0 || g.1 != k.1) {
                std::mem::take(&mut growth).apply(&tx, 0)?;
            }
            group = Some(k);
            growth.add(&r.key, None, &r.agg);
        }
        growth.apply(&tx, 0)?;
    }
    tx.commit()
}

fn ensure_column(conn: &Connection, table: &str, column: &str, decl: &str) -> rusqlite::Result<()> {
    let mut st = conn.prepare(&format!("SELECT 1 FROM pragma_table_info('{table}') WHERE name = ?1"))?;
    if !st.exists([column])? {
        conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
    }
    Ok(())
}
