//! `RollupStore` on ScyllaDB / Cassandra 4 (CQL native protocol v4, only CQL both accept).
//!
//! Invariants (how a crash or a replayed write never double-counts, without transactions):
//! - A 1m window's state and its event set live in one row and change in one UPDATE (the set
//!   grows by the revision's delta, packed into one map cell keyed by the delta's hash:
//!   `events_chunks = events_chunks + ?`; a replay writes the same cell), so the row is the unit
//!   of atomicity: whatever else of a commit did not land, a window never holds a count without
//!   the ids of the events in it.
//! - Every rollup write carries `USING TIMESTAMP window start (µs) + revision`: a replay of an
//!   older revision (driver retry, speculative execution, a stale aggregator) loses to the newer
//!   value by last-write-wins. Derived (1h/1d) windows use the sum of their children's revisions,
//!   which grows whenever any child changes.
//! - A commit writes in this order: probe marks (each column `USING TIMESTAMP` its own value, so
//!   the maximum wins), 1m windows, derived windows, and last the batch ids; a batch id is
//!   therefore only recorded once its whole effect is stored, and a mark is never behind the
//!   windows (an event above the mark's seq cannot have been applied).
//! - Statements are prepared once and marked idempotent; at most `scylla.max_in_flight`
//!   requests run at once. Retention counts from a window's end: each write carries `USING TTL`
//!   = what is left of `Retention::keep_until` (a window already past it is not written, but its
//!   parents are still derived from it), and tables expire the rest by `default_time_to_live`;
//!   `prune` deletes nothing itself.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, LazyLock, Mutex};

use async_trait::async_trait;
use futures_util::StreamExt;
use netqoe_actors::bus::BatchId;
use netqoe_actors::metrics::counter_vec;
use netqoe_actors::store::{
    children_with, derive_parent, parents_to_derive, query_order, CommitReport, IncidentQuery, ProbeMark, Retention,
    RollupQuery, RollupStore, StoreError, WriteSet,
};
use netqoe_domain::diagnosis::{Incident, IncidentState};
use netqoe_domain::sketch::DdSketch;
use netqoe_domain::{EventSet, Metric, Rollup, SessionState, Tier, WindowAgg, WindowKey};
use scylla::client::session::Session;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;
use scylla::{DeserializeRow, SerializeRow};
use tokio::sync::Semaphore;

/// CQL requests sent, by kind (`read`, `read_range`, `read_revision`, `write`, `batch`) and table: a fixed set (the statements
/// are prepared once), so the labels are bounded. A batch counts once, as a request does.
pub static CQL_REQUESTS: LazyLock<prometheus::IntCounterVec> = LazyLock::new(|| {
    counter_vec("netqoe_cql_requests_total", "CQL requests sent by the store, by kind and table", &["kind", "table"])
});

/// `(kind, table)` of a prepared statement, from its text (`SELECT … FROM ks.t`, `UPDATE ks.t`,
/// `INSERT INTO ks.t`, `DELETE FROM ks.t`).
fn request_labels(p: &PreparedStatement, batch: bool) -> [&str; 2] {
    let text = p.get_statement();
    let kind = if batch {
        "batch"
    } else if text.trim_start().get(..6).is_some_and(|v| v.eq_ignore_ascii_case("select")) {
        if text.contains(">=") {
            "read_range"
        } else if text.starts_with("SELECT revision ") {
            "read_revision"
        } else {
            "read"
        }
    } else {
        "write"
    };
    // (every statement of this file spells its keywords in capitals)
    let at = ["FROM ", "UPDATE ", "INTO "].iter().find_map(|w| text.find(w).map(|i| i + w.len()));
    let table = at
        .and_then(|i| text[i..].split_whitespace().next())
        .map(|t| t.rsplit('.').next().unwrap_or(t))
        .unwrap_or("other");
    [kind, table]
}

use super::schema::{BUCKET_1D_MS, BUCKET_1H_MS, BUCKET_1M_MS};
use crate::config::{ConsistencyLevel, ScyllaConfig};

/// Most series remembered as already indexed (then the memory is cleared and rebuilt).
const SERIES_CACHE: usize = 200_000;

fn bucket_width(tier: Tier) -> i64 {
    match tier {
        Tier::M1 => BUCKET_1M_MS,
        Tier::H1 => BUCKET_1H_MS,
        Tier::D1 => BUCKET_1D_MS,
    }
}

/// Partition bucket of a window start: `floor(start_ms / bucket width)` (a day for 1m, 30 days
/// for 1h, 366 days for 1d), so a 1h window lies in one 1m bucket and a 1d window in one 1h bucket.
pub fn bucket_of(tier: Tier, start_ms: i64) -> i64 {
    start_ms.div_euclid(bucket_width(tier))
}

/// The buckets a window-start range `[from, to)` touches, ascending.
pub fn buckets(tier: Tier, from_ms: i64, to_ms: i64) -> Vec<i64> {
    if to_ms <= from_ms {
        return Vec::new();
    }
    (bucket_of(tier, from_ms)..=bucket_of(tier, to_ms - 1)).collect()
}

/// Write timestamp (µs) of a window's revision: increases with the revision.
pub fn write_timestamp(start_ms: i64, revision: u64) -> i64 {
    start_ms.saturating_mul(1000).saturating_add(revision as i64)
}

fn consistency(c: ConsistencyLevel) -> Consistency {
    match c {
        ConsistencyLevel::One => Consistency::One,
        ConsistencyLevel::Two => Consistency::Two,
        ConsistencyLevel::Three => Consistency::Three,
        ConsistencyLevel::Quorum => Consistency::Quorum,
        ConsistencyLevel::All => Consistency::All,
        ConsistencyLevel::LocalQuorum => Consistency::LocalQuorum,
        ConsistencyLevel::EachQuorum => Consistency::EachQuorum,
        ConsistencyLevel::LocalOne => Consistency::LocalOne,
    }
}

fn tier_index(t: Tier) -> usize {
    match t {
        Tier::M1 => 0,
        Tier::H1 => 1,
        Tier::D1 => 2,
    }
}

fn tier_name(t: Tier) -> &'static str {
    t.as_str()
}

/// The state columns in the order every statement binds and selects them.
const STATE: &str =
    "revision, closed, events, count, min, max, sum, sent, received, jitter_sum, jitter_n, errors, sketch, events_applied, \
     events_chunks";
/// The state without the event set: what derivations and queries read (the set is only needed
/// when an aggregator loads a window to update it, and it is by far the largest column).
const LIGHT: &str =
    "revision, closed, events, count, min, max, sum, sent, received, jitter_sum, jitter_n, errors, sketch";

/// Most statements in one unlogged batch.
const BATCH_ROWS: usize = 64;
/// Most windows whose stored revision is remembered (then the memory is cleared and rebuilt).
const REVISION_CACHE: usize = 400_000;

/// The bind values of both window UPDATEs (per-probe and by-target tables bind in the same order;
/// the by-target row gets an empty event-set delta).
#[derive(SerializeRow, Clone)]
#[scylla(flavor = "enforce_order", skip_name_checks)]
struct SeriesWrite<'a> {
    ts: i64,
    ttl: i32,
    revision: i64,
    closed: bool,
    events: i64,
    count: i64,
    min: Option<f64>,
    max: Option<f64>,
    sum: f64,
    sent: i64,
    received: i64,
    jitter_sum: f64,
    jitter_n: i64,
    errors: BTreeMap<String, i64>,
    sketch: Vec<u8>,
    /// The revision's event-set delta: {hash of the delta: its hashes, 8 bytes LE each, sorted}
    /// (empty: nothing added).
    chunk: BTreeMap<i64, Vec<u8>>,
    probe: &'a str,
    target: &'a str,
    metric: &'a str,
    bucket: i64,
    start_ms: i64,
}

/// A revision's event-set delta as one map entry: the hashes sorted and packed (8 bytes LE each),
/// keyed by a hash of them, so a replayed write sets the same cell and two different deltas
/// never overwrite each other.
fn event_chunk(delta: &EventSet) -> BTreeMap<i64, Vec<u8>> {
    if delta.is_empty() {
        return BTreeMap::new();
    }
    let mut hs: Vec<u64> = delta.iter().collect();
    hs.sort_unstable();
    let mut key: u64 = 0xcbf2_9ce4_8422_2325;
    let mut bytes = Vec::with_capacity(8 * hs.len());
    for h in hs {
        key = (key ^ h).wrapping_mul(0x0000_0100_0000_01b3).rotate_left(29);
        bytes.extend_from_slice(&h.to_le_bytes());
    }
    BTreeMap::from([((key >> 1) as i64, bytes)])
}

impl SeriesWrite<'_> {
    /// About the bytes of its mutation as the server measures a batch (each cell's value plus
    /// its timestamp, TTL and deletion time; an event-set element is a cell of its own).
    fn bytes(&self) -> usize {
        const CELL: usize = 16;
        let errors: usize = self.errors.keys().map(|k| k.len() + 8 + CELL).sum();
        let key = self.probe.len() + self.target.len() + self.metric.len() + 16;
        let chunk: usize = self.chunk.values().map(|c| c.len() + 8 + CELL).sum();
        key + 13 * CELL + 80 + self.sketch.len() + chunk + errors
    }
}

/// How much one unlogged batch may hold (`scylla.batch_max_bytes`, `scylla.batch_max_partitions`).
#[derive(Clone, Copy, Debug)]
struct BatchBudget {
    bytes: usize,
    partitions: usize,
}

/// Packs statements into the groups sent as one request each: a partition's rows stay together
/// and in order (one mutation where they share a batch); a group holds at most `BATCH_ROWS`
/// statements, `budget.partitions` partitions and about `budget.bytes` (a larger partition is
/// split, a larger statement goes alone). Several partitions share a batch, so a commit costs a
/// few requests rather than one per window and probe: on a 2-core Cassandra node the per-request
/// work (native transport, event loop) was over half its CPU.
fn pack<K: Ord, T>(rows: Vec<(K, T)>, size: impl Fn(&T) -> usize, budget: BatchBudget) -> Vec<Vec<T>> {
    let mut parts: BTreeMap<K, Vec<T>> = BTreeMap::new();
    for (k, t) in rows {
        parts.entry(k).or_default().push(t);
    }
    let mut out = Vec::new();
    let (mut cur, mut bytes, mut n_parts) = (Vec::new(), 0, 0);
    for ts in parts.into_values() {
        let mut first = true;
        for t in ts {
            let n = size(&t);
            let new_part = first as usize;
            if !cur.is_empty()
                && (cur.len() >= BATCH_ROWS || bytes + n > budget.bytes || n_parts + new_part > budget.partitions)
            {
                out.push(std::mem::take(&mut cur));
                (bytes, n_parts) = (0, 0);
                first = true;
            }
            if first {
                n_parts += 1;
                first = false;
            }
            bytes += n;
            cur.push(t);
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// One macro declares both row shapes, so their column order (which must match `FULL` and
/// `LIGHT`) cannot drift apart.
macro_rules! state_rows {
    ($($f:ident: $t:ty,)*) => {
        #[derive(DeserializeRow)]
        #[scylla(flavor = "enforce_order", skip_name_checks)]
        struct StateRow {
            $($f: $t,)*
            events_applied: Option<Vec<i64>>,
            events_chunks: Option<BTreeMap<i64, Vec<u8>>>,
        }

        /// `StateRow` without the event set (`LIGHT`).
        #[derive(DeserializeRow)]
        #[scylla(flavor = "enforce_order", skip_name_checks)]
        struct LightRow {
            $($f: $t,)*
        }

        impl LightRow {
            fn into_rollup(self, tier: Tier) -> Result<Rollup, StoreError> {
                StateRow { $($f: self.$f,)* events_applied: None, events_chunks: None }.into_rollup(tier)
            }
        }
    };
}

state_rows! {
    probe: String,
    target: String,
    metric: String,
    start_ms: i64,
    revision: Option<i64>,
    closed: Option<bool>,
    events: Option<i64>,
    count: Option<i64>,
    min: Option<f64>,
    max: Option<f64>,
    sum: Option<f64>,
    sent: Option<i64>,
    received: Option<i64>,
    jitter_sum: Option<f64>,
    jitter_n: Option<i64>,
    errors: Option<BTreeMap<String, i64>>,
    sketch: Option<Vec<u8>>,
}

fn corrupt(what: String) -> StoreError {
    StoreError::corrupt(format!("row: {what}"))
}

impl StateRow {
    fn into_rollup(self, tier: Tier) -> Result<Rollup, StoreError> {
        let metric = Metric::parse(&self.metric).ok_or_else(|| corrupt(format!("unknown metric {}", self.metric)))?;
        let sketch = match &self.sketch {
            Some(b) => DdSketch::decode(b).map_err(|e| corrupt(format!("sketch: {e}")))?,
            None => DdSketch::default(),
        };
        let u = |v: Option<i64>| v.unwrap_or(0).max(0) as u64;
        Ok(Rollup {
            key: WindowKey { probe: self.probe, target: self.target, metric, tier, start_ms: self.start_ms },
            agg: WindowAgg {
                events: u(self.events),
                count: u(self.count),
                min: self.min,
                max: self.max,
                sum: self.sum.unwrap_or(0.0),
                sent: u(self.sent),
                received: u(self.received),
                jitter_sum: self.jitter_sum.unwrap_or(0.0),
                jitter_n: u(self.jitter_n),
                errors: self.errors.unwrap_or_default().into_iter().map(|(k, v)| (k, v.max(0) as u64)).collect(),
                sketch,
            },
            applied: {
                let mut set: EventSet = self.events_applied.unwrap_or_default().into_iter().map(|h| h as u64).collect();
                for chunk in self.events_chunks.unwrap_or_default().into_values() {
                    if chunk.len() % 8 != 0 {
                        return Err(corrupt(format!("event chunk of {} bytes", chunk.len())));
                    }
                    for h in chunk.chunks_exact(8) {
                        set.insert(u64::from_le_bytes(h.try_into().expect("8 bytes")));
                    }
                }
                set
            },
            revision: u(self.revision),
            closed: self.closed.unwrap_or(false),
        })
    }
}

/// Prepared statements of one tier.
struct TierStatements {
    write: PreparedStatement,
    write_by_target: PreparedStatement,
    /// One window (key equality), with its event set.
    read_one: PreparedStatement,
    /// One window's stored revision.
    read_revision: PreparedStatement,
    /// A series' windows in `[from, to)` of one bucket (no event sets).
    read_range: PreparedStatement,
    /// One target's windows of a metric in `[from, to)` of one bucket (all probes; no event sets).
    read_by_target: PreparedStatement,
}

struct Statements {
    tiers: [TierStatements; 3],
    series_insert: PreparedStatement,
    series_by_target_insert: PreparedStatement,
    series_of_probe: PreparedStatement,
    series_of_target: PreparedStatement,
    series_all: PreparedStatement,
    mark_event: PreparedStatement,
    mark_seq: PreparedStatement,
    mark_read: PreparedStatement,
    batch_insert: PreparedStatement,
    batch_read: PreparedStatement,
    session_write: PreparedStatement,
    session_read: PreparedStatement,
    session_all: PreparedStatement,
    incident_write: PreparedStatement,
    incident_day_write: PreparedStatement,
    incidents_of_day: PreparedStatement,
    incident_read: PreparedStatement,
    ready: PreparedStatement,
}

/// The session and what bounds its use: every request of the store goes through here, so the
/// in-flight cap and the batch budget hold for all of them, background writers included.
struct Cql {
    session: Arc<Session>,
    in_flight: Semaphore,
    batch: BatchBudget,
    /// Consistency of the unlogged batches (that of the writes).
    write_consistency: Consistency,
}

impl Cql {
    /// One of `scylla.max_in_flight` request slots.
    async fn permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, StoreError> {
        self.in_flight.acquire().await.map_err(|_| StoreError::unavailable("store closed"))
    }

    async fn exec(
        &self,
        p: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> Result<(), StoreError> {
        let _permit = self.permit().await?;
        CQL_REQUESTS.with_label_values(&request_labels(p, false)).inc();
        self.session.execute_unpaged(p, values).await.map_err(|e| classify(&e))?;
        Ok(())
    }

    /// All rows of a (paged) query.
    async fn rows<R>(
        &self,
        p: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> Result<Vec<R>, StoreError>
    where
        R: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm>,
    {
        let _permit = self.permit().await?;
        CQL_REQUESTS.with_label_values(&request_labels(p, false)).inc();
        let pager = self.session.execute_iter(p.clone(), values).await.map_err(|e| classify_pager(&e))?;
        let mut stream = pager.rows_stream::<R>().map_err(|e| StoreError::failed(e.to_string()))?;
        let mut out = Vec::new();
        while let Some(r) = stream.next().await {
            out.push(r.map_err(|e| classify_row(&e))?);
        }
        Ok(out)
    }

    /// Sends each group as one request: a lone statement as itself, more as an unlogged batch
    /// (idempotent: every statement is), all concurrently within the in-flight cap.
    async fn send_packed<V: scylla::serialize::row::SerializeRow>(
        &self,
        groups: Vec<Vec<(&PreparedStatement, V)>>,
    ) -> Result<(), StoreError> {
        let sends = groups.into_iter().map(|mut g| async move {
            if g.len() == 1 {
                let (p, v) = g.pop().expect("one row");
                return self.exec(p, v).await;
            }
            let mut b = Batch::new(BatchType::Unlogged);
            let mut values = Vec::with_capacity(g.len());
            for (p, v) in g {
                b.append_statement(p.clone());
                values.push(v);
            }
            b.set_consistency(self.write_consistency);
            b.set_is_idempotent(true);
            self.exec_batch(&b, values).await
        });
        for r in futures_util::future::join_all(sends).await {
            r?;
        }
        Ok(())
    }

    async fn exec_batch(
        &self,
        b: &Batch,
        values: impl scylla::serialize::batch::BatchValues,
    ) -> Result<(), StoreError> {
        let _permit = self.permit().await?;
        if let Some(scylla::statement::batch::BatchStatement::PreparedStatement(p)) = b.statements.first() {
            CQL_REQUESTS.with_label_values(&request_labels(p, true)).inc();
        }
        self.session.batch(b, values).await.map_err(|e| classify(&e))?;
        Ok(())
    }
}

/// A session save: probe, state (JSON), time, and where its outcome goes.
type SessionSave = (String, String, i64, tokio::sync::oneshot::Sender<Result<(), StoreError>>);
/// Session saves queued at most (then `save_sessions` waits: backpressure).
const SESSION_QUEUE: usize = 1024;

/// Writes the session saves of every session actor together: each turn takes what is queued
/// (one save per probe, the newest: two of one row in a batch would share a timestamp) and writes
/// it packed, then answers each caller. Session actors save every few seconds each, so with 10,000
/// probes one request per save was as many requests as all the commits' together.
async fn session_writer(cql: Arc<Cql>, write: PreparedStatement, mut queue: tokio::sync::mpsc::Receiver<SessionSave>) {
    while let Some(first) = queue.recv().await {
        let mut turn = vec![first];
        while turn.len() < SESSION_QUEUE {
            match queue.try_recv() {
                Ok(s) => turn.push(s),
                Err(_) => break,
            }
        }
        let mut newest: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for (i, (probe, ..)) in turn.iter().enumerate() {
            newest.insert(probe.as_str(), i);
        }
        let rows = turn
            .iter()
            .enumerate()
            .filter(|(i, (probe, ..))| newest.get(probe.as_str()) == Some(i))
            .map(|(_, (probe, json, now, _))| (probe.as_str(), (&write, (probe.as_str(), json.as_str(), *now))))
            .collect();
        let res = cql.send_packed(pack(rows, |(_, (p, j, _))| 3 * 16 + 8 + p.len() + j.len(), cql.batch)).await;
        for (.., reply) in turn {
            let _ = reply.send(res.clone());
        }
    }
}

/// The Scylla store.
pub struct ScyllaStore {
    cql: Arc<Cql>,
    st: Statements,
    /// Session saves, written by `session_writer` (see there).
    sessions: tokio::sync::mpsc::Sender<SessionSave>,
    retention: Retention,
    /// Series already written to the series index by this process.
    indexed: Mutex<HashSet<(String, String, Metric)>>,
    /// The stored revision of 1m windows this process loaded or wrote (0: known absent), so a
    /// commit need not read a window before writing it: a revision at or below the remembered
    /// one is not written again (its event set would otherwise join the row's). A window not
    /// remembered has its revision read first. Closed windows are forgotten once written.
    revisions: Mutex<std::collections::HashMap<WindowKey, u64>>,
    /// The time TTLs count from and rows are stamped with.
    clock: netqoe_actors::Clock,
}

async fn prepare(
    session: &Session,
    cql: String,
    consistency: Consistency,
    idempotent: bool,
) -> anyhow::Result<PreparedStatement> {
    let mut p = session.prepare(cql.as_str()).await.map_err(|e| anyhow::anyhow!("prepare {cql}: {e}"))?;
    p.set_consistency(consistency);
    p.set_is_idempotent(idempotent);
    Ok(p)
}

impl ScyllaStore {
    /// Connects, and prepares every statement once (the schema must be applied: `netqoe migrate`).
    pub async fn connect(cfg: &ScyllaConfig, retention: Retention) -> anyhow::Result<Self> {
        let session = super::connect(cfg).await?;
        Self::with_session(session, cfg, retention).await
    }

    pub async fn with_session(session: Session, cfg: &ScyllaConfig, retention: Retention) -> anyhow::Result<Self> {
        let ks = &cfg.keyspace;
        let (r, w) = (consistency(cfg.read_consistency), consistency(cfg.write_consistency));
        let mut tiers = Vec::new();
        for tier in Tier::ALL {
            let t = tier_name(tier);
            let set = "revision = ?, closed = ?, events = ?, count = ?, min = ?, max = ?, sum = ?, sent = ?, \
                       received = ?, jitter_sum = ?, jitter_n = ?, errors = ?, sketch = ?";
            tiers.push(TierStatements {
                write: prepare(
                    &session,
                    format!(
                        "UPDATE {ks}.rollups_{t} USING TIMESTAMP ? AND TTL ? SET {set}, events_chunks = events_chunks + ? \
                         WHERE probe = ? AND target = ? AND metric = ? AND bucket = ? AND start_ms = ?"
                    ),
                    w,
                    true,
                )
                .await?,
                write_by_target: prepare(
                    &session,
                    format!(
                        "UPDATE {ks}.rollups_by_target_{t} USING TIMESTAMP ? AND TTL ? SET {set}, events_chunks = events_chunks + ? \
                         WHERE probe = ? AND target = ? AND metric = ? AND bucket = ? AND start_ms = ?"
                    ),
                    w,
                    true,
                )
                .await?,
                read_one: prepare(
                    &session,
                    format!(
                        "SELECT probe, target, metric, start_ms, {STATE} FROM {ks}.rollups_{t} \
                         WHERE probe = ? AND target = ? AND metric = ? AND bucket = ? AND start_ms = ?"
                    ),
                    r,
                    true,
                )
                .await?,
                read_revision: prepare(
                    &session,
                    format!(
                        "SELECT revision FROM {ks}.rollups_{t} \
                         WHERE probe = ? AND target = ? AND metric = ? AND bucket = ? AND start_ms = ?"
                    ),
                    r,
                    true,
                )
                .await?,
                read_range: prepare(
                    &session,
                    format!(
                        "SELECT probe, target, metric, start_ms, {LIGHT} FROM {ks}.rollups_{t} \
                         WHERE probe = ? AND target = ? AND metric = ? AND bucket = ? AND start_ms >= ? AND start_ms < ?"
                    ),
                    r,
                    true,
                )
                .await?,
                read_by_target: prepare(
                    &session,
                    format!(
                        "SELECT probe, target, metric, start_ms, {LIGHT} FROM {ks}.rollups_by_target_{t} \
                         WHERE target = ? AND metric = ? AND bucket = ? AND start_ms >= ? AND start_ms < ?"
                    ),
                    r,
                    true,
                )
                .await?,
            });
        }
        let tiers: [TierStatements; 3] = tiers.try_into().map_err(|_| anyhow::anyhow!("three tiers expected"))?;
        let p = |cql: String, c: Consistency| {
            let s = &session;
            async move { prepare(s, cql, c, true).await }
        };
        let st = Statements {
            tiers,
            series_insert: p(format!("INSERT INTO {ks}.series (probe, target, metric) VALUES (?, ?, ?)"), w).await?,
            series_by_target_insert: p(
                format!("INSERT INTO {ks}.series_by_target (target, metric, probe) VALUES (?, ?, ?)"),
                w,
            )
            .await?,
            series_of_probe: p(format!("SELECT probe, target, metric FROM {ks}.series WHERE probe = ?"), r).await?,
            series_of_target: p(format!("SELECT probe, target, metric FROM {ks}.series_by_target WHERE target = ?"), r)
                .await?,
            series_all: p(format!("SELECT probe, target, metric FROM {ks}.series"), r).await?,
            mark_event: p(format!("UPDATE {ks}.probe_marks USING TIMESTAMP ? SET max_event_ms = ? WHERE probe = ?"), w)
                .await?,
            mark_seq: p(format!("UPDATE {ks}.probe_marks USING TIMESTAMP ? SET max_seq = ? WHERE probe = ?"), w)
                .await?,
            mark_read: p(format!("SELECT max_event_ms, max_seq FROM {ks}.probe_marks WHERE probe = ?"), r).await?,
            batch_insert: p(format!("INSERT INTO {ks}.processed_batches (batch_id, at_ms) VALUES (?, ?)"), w).await?,
            batch_read: p(format!("SELECT batch_id FROM {ks}.processed_batches WHERE batch_id = ?"), r).await?,
            session_write: p(format!("INSERT INTO {ks}.probe_sessions (probe, state, updated_ms) VALUES (?, ?, ?)"), w)
                .await?,
            session_read: p(format!("SELECT state FROM {ks}.probe_sessions WHERE probe = ?"), r).await?,
            session_all: p(format!("SELECT state FROM {ks}.probe_sessions"), r).await?,
            // the whole incident as JSON in `evidence`; the other columns are for cqlsh readers
            incident_write: p(
                format!(
                    "INSERT INTO {ks}.incidents (id, state, scope, subject, metrics, opened_ms, updated_ms, resolved_ms, \
                     peak_severity, mos_impact, evidence) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                ),
                w,
            )
            .await?,
            incident_day_write: p(
                format!("INSERT INTO {ks}.incidents_by_day (day, opened_ms, id, state) VALUES (?, ?, ?, ?)"),
                w,
            )
            .await?,
            incidents_of_day: p(
                format!(
                    "SELECT id FROM {ks}.incidents_by_day WHERE day = ? AND opened_ms >= ? AND opened_ms < ?"
                ),
                r,
            )
            .await?,
            incident_read: p(format!("SELECT evidence FROM {ks}.incidents WHERE id = ?"), r).await?,
            ready: p("SELECT release_version FROM system.local".to_string(), Consistency::One).await?,
        };
        let cql = Arc::new(Cql {
            session: Arc::new(session),
            in_flight: Semaphore::new(cfg.max_in_flight.max(1)),
            // `SeriesWrite::bytes` is an estimate: keep a margin under the server's threshold
            batch: BatchBudget { bytes: cfg.batch_max_bytes * 4 / 5, partitions: cfg.batch_max_partitions.max(1) },
            write_consistency: w,
        });
        let (sessions, queue) = tokio::sync::mpsc::channel(SESSION_QUEUE);
        tokio::spawn(session_writer(cql.clone(), st.session_write.clone(), queue));
        Ok(Self {
            cql,
            st,
            sessions,
            retention,
            indexed: Mutex::new(HashSet::new()),
            revisions: Mutex::new(std::collections::HashMap::new()),
            clock: netqoe_actors::Clock::system(),
        })
    }

    /// The store, counting TTLs from and stamping rows with `clock`'s time (system by default).
    pub fn with_clock(mut self, clock: netqoe_actors::Clock) -> Self {
        self.clock = clock;
        self
    }

    async fn read_one(&self, k: &WindowKey) -> Result<Option<Rollup>, StoreError> {
        let s = &self.st.tiers[tier_index(k.tier)];
        let rows: Vec<StateRow> = self
            .cql
            .rows(&s.read_one, (&k.probe, &k.target, k.metric.as_str(), bucket_of(k.tier, k.start_ms), k.start_ms))
            .await?;
        rows.into_iter().next().map(|r| r.into_rollup(k.tier)).transpose()
    }

    /// The bind values of a window's write (None: past its retention, not written).
    fn series_write<'a>(&self, r: &'a Rollup, now: i64) -> Option<SeriesWrite<'a>> {
        let k = &r.key;
        let a = &r.agg;
        // Retention counts from the window's end (and lasts while its parent can still change,
        // `Retention::keep_until`), not from the write: the TTL is what is left of it.
        let left_ms = self.retention.keep_until(k.tier, k.start_ms) - now;
        if left_ms <= 0 {
            return None;
        }
        Some(SeriesWrite {
            ts: write_timestamp(k.start_ms, r.revision),
            ttl: (left_ms / 1000).clamp(1, i32::MAX as i64) as i32,
            revision: r.revision as i64,
            closed: r.closed,
            events: a.events as i64,
            count: a.count as i64,
            min: a.min,
            max: a.max,
            sum: a.sum,
            sent: a.sent as i64,
            received: a.received as i64,
            jitter_sum: a.jitter_sum,
            jitter_n: a.jitter_n as i64,
            errors: a.errors.iter().map(|(k, v)| (k.clone(), *v as i64)).collect(),
            sketch: a.sketch.encode(),
            chunk: event_chunk(&r.applied),
            probe: &k.probe,
            target: &k.target,
            metric: k.metric.as_str(),
            bucket: bucket_of(k.tier, k.start_ms),
            start_ms: k.start_ms,
        })
    }

    /// Writes `rows` of one statement in as few requests as `pack` allows, all concurrently within
    /// the in-flight cap.
    async fn write_grouped<'a, K: Ord>(
        &self,
        p: &PreparedStatement,
        rows: Vec<(K, SeriesWrite<'a>)>,
    ) -> Result<(), StoreError> {
        let rows = rows.into_iter().map(|(k, w)| (k, (p, w))).collect();
        self.cql.send_packed(pack(rows, |(_, w)| w.bytes(), self.cql.batch)).await
    }

    /// Writes windows (any tiers) to both tables and indexes their series; returns how many were
    /// written (not past their retention).
    async fn write_many(&self, rs: &[&Rollup]) -> Result<usize, StoreError> {
        let now = self.clock.now_ms();
        let mut by_tier: [Vec<&Rollup>; 3] = Default::default();
        for r in rs {
            by_tier[tier_index(r.key.tier)].push(r);
        }
        let mut n = 0;
        let mut sends = Vec::new();
        for (tier, rs) in Tier::ALL.into_iter().zip(by_tier.iter()) {
            let s = &self.st.tiers[tier_index(tier)];
            let mut own = Vec::new();
            let mut by_target = Vec::new();
            for r in rs {
                let Some(w) = self.series_write(r, now) else { continue };
                n += 1;
                let t = SeriesWrite { chunk: BTreeMap::new(), ..w.clone() };
                own.push(((w.probe, w.target, w.metric, w.bucket), w));
                // (same key type as `own`: the by-target partition has no probe)
                by_target.push((("", t.target, t.metric, t.bucket), t));
            }
            sends.push(self.write_grouped(&s.write, own));
            sends.push(self.write_grouped(&s.write_by_target, by_target));
        }
        let (written, indexed) = tokio::join!(futures_util::future::join_all(sends), self.index_series(rs));
        for r in written {
            r?;
        }
        indexed?;
        Ok(n)
    }

    /// The stored revision of each 1m window of `rs` (remembered, else read).
    async fn stored_revisions(&self, rs: &[Rollup]) -> Result<Vec<u64>, StoreError> {
        let known: Vec<Option<u64>> = {
            let g = self.revisions.lock().map_err(|_| StoreError::failed("revision cache poisoned"))?;
            rs.iter().map(|r| g.get(&r.key).copied()).collect()
        };
        let reads = rs.iter().zip(known).map(|(r, k)| async move {
            if let Some(rev) = k {
                return Ok(rev);
            }
            let k = &r.key;
            let s = &self.st.tiers[tier_index(k.tier)];
            let rows: Vec<(Option<i64>,)> = self
                .cql
                .rows(
                    &s.read_revision,
                    (&k.probe, &k.target, k.metric.as_str(), bucket_of(k.tier, k.start_ms), k.start_ms),
                )
                .await?;
            Ok::<u64, StoreError>(rows.first().and_then(|(r,)| *r).unwrap_or(0).max(0) as u64)
        });
        futures_util::future::join_all(reads).await.into_iter().collect()
    }

    fn remember(&self, windows: impl IntoIterator<Item = (WindowKey, Option<u64>)>) {
        if let Ok(mut g) = self.revisions.lock() {
            for (k, rev) in windows {
                match rev {
                    Some(rev) => {
                        if g.len() >= REVISION_CACHE && !g.contains_key(&k) {
                            g.clear();
                        }
                        let e = g.entry(k).or_insert(0);
                        *e = (*e).max(rev);
                    }
                    None => {
                        g.remove(&k);
                    }
                }
            }
        }
    }

    /// Records the series of `rs` not recorded yet in both series indexes (packed, like windows).
    async fn index_series(&self, rs: &[&Rollup]) -> Result<(), StoreError> {
        // distinct series first (borrowed), so the cache is asked once per series, not per window
        let mut fresh: BTreeSet<(&str, &str, Metric)> =
            rs.iter().map(|r| (r.key.probe.as_str(), r.key.target.as_str(), r.key.metric)).collect();
        {
            let g = self.indexed.lock().map_err(|_| StoreError::failed("series cache poisoned"))?;
            fresh.retain(|(p, t, m)| !g.contains(&(p.to_string(), t.to_string(), *m)));
        }
        if fresh.is_empty() {
            return Ok(());
        }
        let size = |(_, (p, t, m)): &(&PreparedStatement, (&str, &str, &str))| 3 * 16 + p.len() + t.len() + m.len();
        let by_probe = fresh.iter().map(|(p, t, m)| (*p, (&self.st.series_insert, (*p, *t, m.as_str())))).collect();
        let by_target =
            fresh.iter().map(|(p, t, m)| (*t, (&self.st.series_by_target_insert, (*t, m.as_str(), *p)))).collect();
        let (a, b) = tokio::join!(
            self.cql.send_packed(pack(by_probe, size, self.cql.batch)),
            self.cql.send_packed(pack(by_target, size, self.cql.batch))
        );
        a?;
        b?;
        if let Ok(mut g) = self.indexed.lock() {
            if g.len() + fresh.len() > SERIES_CACHE {
                g.clear();
            }
            g.extend(fresh.into_iter().map(|(p, t, m)| (p.to_string(), t.to_string(), m)));
        }
        Ok(())
    }

    /// Windows of `tier` for one series in `[from, to)`, ascending.
    async fn series_range(
        &self,
        tier: Tier,
        probe: &str,
        target: &str,
        metric: Metric,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Rollup>, StoreError> {
        let s = &self.st.tiers[tier_index(tier)];
        let mut out = Vec::new();
        for b in buckets(tier, from_ms, to_ms) {
            let rows: Vec<LightRow> =
                self.cql.rows(&s.read_range, (probe, target, metric.as_str(), b, from_ms, to_ms)).await?;
            for r in rows {
                out.push(r.into_rollup(tier)?);
            }
        }
        Ok(out)
    }

    /// Re-derives the `parents` of `tier`, concurrently; returns the windows written.
    async fn derive_level(
        &self,
        parents: &[WindowKey],
        tier: Tier,
        in_hand: &[&Rollup],
        report: &mut CommitReport,
    ) -> Result<Vec<Rollup>, StoreError> {
        let level = parents.iter().filter(|p| p.tier == tier);
        let mut out = Vec::new();
        for r in futures_util::future::join_all(level.map(|p| self.derive(p, in_hand))).await {
            if let Some(r) = r? {
                out.push(r);
            }
        }
        let n = self.write_many(&out.iter().collect::<Vec<_>>()).await?;
        if n > 0 {
            *report.written.entry(tier).or_default() += n as u64;
        }
        Ok(out)
    }

    /// Re-derives `parent` from its stored children and those of this commit in `in_hand` (which
    /// may be past their retention and not stored); returns what is to be written.
    async fn derive(&self, parent: &WindowKey, in_hand: &[&Rollup]) -> Result<Option<Rollup>, StoreError> {
        let child = if parent.tier == Tier::H1 { Tier::M1 } else { Tier::H1 };
        let end = parent.start_ms + parent.tier.len_ms();
        let mine: Vec<&Rollup> = in_hand
            .iter()
            .copied()
            .filter(|r| {
                r.key.tier == child
                    && r.key.probe == parent.probe
                    && r.key.target == parent.target
                    && r.key.metric == parent.metric
                    && (parent.start_ms..end).contains(&r.key.start_ms)
            })
            .collect();
        let stored =
            self.series_range(child, &parent.probe, &parent.target, parent.metric, parent.start_ms, end).await?;
        let children = children_with(stored, &mine);
        let Some((agg, closed)) = derive_parent(&children) else { return Ok(None) };
        // Grows whenever any child changes, so a newer derivation always wins.
        let revision: u64 = children.iter().map(|c| c.revision).sum::<u64>() + children.len() as u64;
        Ok(Some(Rollup { key: parent.clone(), agg, applied: EventSet::default(), revision, closed }))
    }

    /// The series matching a query, sorted by (probe, target, metric).
    async fn series_for(&self, q: &RollupQuery) -> Result<Vec<(String, String, Metric)>, StoreError> {
        #[derive(DeserializeRow)]
        #[scylla(flavor = "enforce_order", skip_name_checks)]
        struct SeriesRow {
            probe: String,
            target: String,
            metric: String,
        }
        let rows: Vec<SeriesRow> = match (&q.probe, &q.target) {
            (Some(p), _) => self.cql.rows(&self.st.series_of_probe, (p,)).await?,
            (None, Some(t)) => self.cql.rows(&self.st.series_of_target, (t,)).await?,
            (None, None) => self.cql.rows(&self.st.series_all, ()).await?,
        };
        // in the query order: by metric name (QueryCursor)
        let mut set = BTreeSet::new();
        for r in rows {
            let Some(m) = Metric::parse(&r.metric) else { continue };
            if q.target.as_ref().is_some_and(|t| *t != r.target) || q.metric.is_some_and(|qm| qm != m) {
                continue;
            }
            set.insert((r.probe, r.target, m.as_str(), m));
        }
        Ok(set.into_iter().map(|(p, t, _, m)| (p, t, m)).collect())
    }
}

/// What a driver error means for the caller, from its type (never its text): the server refusing
/// the request itself — syntax, an invalid statement (a table or column the schema lacks), missing
/// permissions, bad configuration — is `Rejected` (a retry cannot help); timeouts, overload,
/// unavailable replicas and broken connections are `Unavailable` (the statements are idempotent,
/// so a retry is safe and may well succeed).
fn classify(e: &scylla::errors::ExecutionError) -> StoreError {
    use scylla::errors::{ExecutionError as E, PrepareError};
    let refused = match e {
        E::BadQuery(_) => true,
        E::LastAttemptError(a) => attempt_refused(a),
        E::PrepareError(PrepareError::AllAttemptsFailed { first_attempt }) => attempt_refused(first_attempt),
        _ => false,
    };
    if refused {
        StoreError::rejected(e.to_string())
    } else {
        StoreError::unavailable(e.to_string())
    }
}

fn attempt_refused(a: &scylla::errors::RequestAttemptError) -> bool {
    use scylla::errors::{DbError as D, RequestAttemptError as A};
    match a {
        A::DbError(db, _) => matches!(
            db,
            D::SyntaxError
                | D::Invalid
                | D::Unauthorized
                | D::ConfigError
                | D::AlreadyExists { .. }
                | D::AuthenticationError
        ),
        A::SerializationError(_) | A::CqlRequestSerialization(_) => true,
        _ => false,
    }
}

fn classify_pager(e: &scylla::errors::PagerExecutionError) -> StoreError {
    use scylla::errors::{PagerExecutionError as P, PrepareError};
    match e {
        P::SerializationError(_) => StoreError::rejected(e.to_string()),
        P::PrepareError(PrepareError::AllAttemptsFailed { first_attempt }) if attempt_refused(first_attempt) => {
            StoreError::rejected(e.to_string())
        }
        P::NextPageError(n) => classify_page(n),
        _ => StoreError::unavailable(e.to_string()),
    }
}

fn classify_page(e: &scylla::errors::NextPageError) -> StoreError {
    use scylla::errors::{NextPageError as N, RequestError as R};
    match e {
        N::RequestFailure(R::LastAttemptError(a)) if attempt_refused(a) => StoreError::rejected(e.to_string()),
        N::TypeCheckError(_) => StoreError::rejected(e.to_string()),
        _ => StoreError::unavailable(e.to_string()),
    }
}

fn classify_row(e: &scylla::errors::NextRowError) -> StoreError {
    match e {
        scylla::errors::NextRowError::NextPageError(n) => classify_page(n),
        scylla::errors::NextRowError::RowDeserializationError(_) => corrupt(e.to_string()),
        _ => StoreError::unavailable(e.to_string()),
    }
}

#[async_trait]
impl RollupStore for ScyllaStore {
    async fn commit(&self, ws: WriteSet) -> Result<CommitReport, StoreError> {
        let mut report = CommitReport::default();
        // 1. marks (never behind the windows), packed into batches
        let mut marks = Vec::with_capacity(2 * ws.watermarks.len());
        for (probe, mark) in &ws.watermarks {
            if let Some(e) = mark.max_event_ms {
                marks.push((probe.as_str(), (&self.st.mark_event, (e, e, probe.as_str()))));
            }
            if let Some(s) = mark.max_seq {
                let s = s.min(i64::MAX as u64) as i64;
                marks.push((probe.as_str(), (&self.st.mark_seq, (s, s, probe.as_str()))));
            }
        }
        self.cql.send_packed(pack(marks, |(_, (_, _, p))| 2 * 16 + 16 + p.len(), self.cql.batch)).await?;
        // 2. 1m windows newer than the stored revision (remembered from loads and writes, read
        // otherwise), grouped per partition
        let stored = self.stored_revisions(&ws.rollups).await?;
        let newer: Vec<&Rollup> =
            ws.rollups.iter().zip(&stored).filter(|(r, s)| r.revision > **s).map(|(r, _)| r).collect();
        let n = self.write_many(&newer).await?;
        if n > 0 {
            *report.written.entry(Tier::M1).or_default() += n as u64;
        }
        // a closed window is not written again by its owner: forget it
        self.remember(newer.iter().map(|r| (r.key.clone(), (!r.closed).then_some(r.revision))));
        // 3. derived tiers, 1h before 1d
        // (each merged from the stored children and this commit's: a 1m window past its
        // retention is not stored, yet its events count in 1h and 1d)
        let parents = parents_to_derive(&ws.derive);
        let h1 = self.derive_level(&parents, Tier::H1, &ws.rollups.iter().collect::<Vec<_>>(), &mut report).await?;
        self.derive_level(&parents, Tier::D1, &h1.iter().collect::<Vec<_>>(), &mut report).await?;
        // 4. batch ids, last
        let at = self.clock.now_ms();
        let ids = ws.batches.iter().map(|id| (id, (&self.st.batch_insert, (id, at)))).collect();
        self.cql.send_packed(pack(ids, |(_, (id, _))| 8 + 16 + id.len(), self.cql.batch)).await?;
        Ok(report)
    }

    async fn load_windows(&self, keys: &[WindowKey]) -> Result<Vec<Rollup>, StoreError> {
        let found = futures_util::future::join_all(keys.iter().map(|k| self.read_one(k))).await;
        let mut out = Vec::new();
        let mut seen = Vec::with_capacity(keys.len());
        for (k, f) in keys.iter().zip(found) {
            match f? {
                Some(r) => {
                    seen.push((k.clone(), Some(r.revision)));
                    out.push(r);
                }
                None => seen.push((k.clone(), Some(0))),
            }
        }
        self.remember(seen.into_iter().filter(|(k, _)| k.tier == Tier::M1));
        Ok(out)
    }

    async fn load_mark(&self, probe: &str) -> Result<Option<ProbeMark>, StoreError> {
        let rows: Vec<(Option<i64>, Option<i64>)> = self.cql.rows(&self.st.mark_read, (probe,)).await?;
        Ok(rows.into_iter().next().map(|(e, s)| ProbeMark { max_event_ms: e, max_seq: s.map(|s| s.max(0) as u64) }))
    }

    async fn processed(&self, ids: &[BatchId]) -> Result<Vec<BatchId>, StoreError> {
        let mut out = Vec::new();
        for id in ids {
            let rows: Vec<(String,)> = self.cql.rows(&self.st.batch_read, (id,)).await?;
            if !rows.is_empty() {
                out.push(id.clone());
            }
        }
        Ok(out)
    }

    async fn query(&self, q: &RollupQuery) -> Result<Vec<Rollup>, StoreError> {
        let mut out: Vec<Rollup> = Vec::new();
        // A fleet query for one target, or a fleet snapshot (no probe, at most one window of the
        // tier, as the diagnoser asks every minute): the by-target partitions, one read per
        // (target, metric) instead of one per series. Each series has at most one window in a
        // snapshot, so reading them all before ordering costs no more than the ordered path.
        let fleet_pairs: Option<Vec<(String, Metric)>> = match (&q.probe, &q.target, q.metric) {
            (None, Some(target), Some(metric)) => Some(vec![(target.clone(), metric)]),
            (None, _, _) if q.to_ms - q.from_ms <= q.tier.len_ms() => {
                let pairs: BTreeSet<(String, Metric)> =
                    self.series_for(q).await?.into_iter().map(|(_, t, m)| (t, m)).collect();
                Some(pairs.into_iter().collect())
            }
            _ => None,
        };
        if let Some(pairs) = fleet_pairs {
            let s = &self.st.tiers[tier_index(q.tier)];
            for (target, metric) in &pairs {
                for b in buckets(q.tier, q.from_ms, q.to_ms) {
                    let rows: Vec<LightRow> =
                        self.cql.rows(&s.read_by_target, (target, metric.as_str(), b, q.from_ms, q.to_ms)).await?;
                    for r in rows {
                        out.push(r.into_rollup(q.tier)?);
                    }
                }
            }
            out.retain(|r| q.after.as_ref().map_or(true, |c| c.precedes(r)));
            out.sort_by(query_order);
            out.truncate(q.limit);
        } else {
            for (probe, target, metric) in self.series_for(q).await? {
                if out.len() >= q.limit {
                    break;
                }
                let from = match &q.after {
                    // the cursor's own series resumes after its window; earlier ones are skipped
                    Some(c)
                        if (probe.as_str(), target.as_str(), metric.as_str()) == (&c.probe, &c.target, &c.metric) =>
                    {
                        q.from_ms.max(c.start_ms + 1)
                    }
                    Some(c)
                        if (probe.as_str(), target.as_str(), metric.as_str()) < (&c.probe, &c.target, &c.metric) =>
                    {
                        continue
                    }
                    _ => q.from_ms,
                };
                if from >= q.to_ms {
                    continue;
                }
                let mut rows = self.series_range(q.tier, &probe, &target, metric, from, q.to_ms).await?;
                rows.truncate(q.limit - out.len());
                out.extend(rows);
            }
        }
        for r in &mut out {
            r.applied = EventSet::default();
        }
        Ok(out)
    }

    async fn save_incidents(&self, incidents: &[Incident]) -> Result<(), StoreError> {
        for i in incidents {
            let json = serde_json::to_string(i).map_err(|e| StoreError::failed(e.to_string()))?;
            let state = if i.state == IncidentState::Open { "open" } else { "resolved" };
            let scope = i.scope.name();
            let metrics: Vec<String> = i.metrics.iter().cloned().collect();
            self.cql
                .exec(
                    &self.st.incident_write,
                    (
                        &i.id,
                        state,
                        scope,
                        &i.subject,
                        metrics,
                        i.opened_ms,
                        i.updated_ms,
                        i.resolved_ms,
                        i.peak_severity,
                        i.mos_impact,
                        json,
                    ),
                )
                .await?;
            self.cql
                .exec(&self.st.incident_day_write, (i.opened_ms.div_euclid(86_400_000), i.opened_ms, &i.id, state))
                .await?;
        }
        Ok(())
    }

    async fn list_incidents(&self, q: &IncidentQuery) -> Result<Vec<Incident>, StoreError> {
        let mut out = Vec::new();
        if q.to_ms <= q.from_ms {
            return Ok(out);
        }
        // one partition per day; a long range is capped at 400 days
        let (first, last) = (q.from_ms.div_euclid(86_400_000), (q.to_ms - 1).div_euclid(86_400_000));
        for day in first.max(last - 400)..=last {
            let ids: Vec<(String,)> = self.cql.rows(&self.st.incidents_of_day, (day, q.from_ms, q.to_ms)).await?;
            for (id,) in ids {
                let rows: Vec<(Option<String>,)> = self.cql.rows(&self.st.incident_read, (&id,)).await?;
                if let Some((Some(json),)) = rows.into_iter().next() {
                    let i: Incident = serde_json::from_str(&json).map_err(|e| corrupt(format!("incident: {e}")))?;
                    if q.matches(&i) {
                        out.push(i);
                    }
                }
            }
        }
        out.sort_by(|a, b| (b.opened_ms, &b.id).cmp(&(a.opened_ms, &a.id)));
        out.truncate(q.limit);
        Ok(out)
    }

    async fn save_sessions(&self, sessions: &[SessionState]) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let mut replies = Vec::with_capacity(sessions.len());
        for s in sessions {
            let json = serde_json::to_string(s).map_err(|e| StoreError::failed(e.to_string()))?;
            let (tx, rx) = tokio::sync::oneshot::channel();
            let gone = || StoreError::unavailable("session writer stopped");
            self.sessions.send((s.probe.clone(), json, now, tx)).await.map_err(|_| gone())?;
            replies.push(rx);
        }
        for rx in replies {
            rx.await.map_err(|_| StoreError::unavailable("session writer stopped"))??;
        }
        Ok(())
    }

    async fn load_session(&self, probe: &str) -> Result<Option<SessionState>, StoreError> {
        let rows: Vec<(Option<String>,)> = self.cql.rows(&self.st.session_read, (probe,)).await?;
        match rows.into_iter().next().and_then(|(s,)| s) {
            Some(json) => serde_json::from_str(&json).map(Some).map_err(|e| corrupt(format!("session: {e}"))),
            None => Ok(None),
        }
    }

    async fn list_sessions(&self) -> Result<Vec<SessionState>, StoreError> {
        let rows: Vec<(Option<String>,)> = self.cql.rows(&self.st.session_all, ()).await?;
        let mut out: Vec<SessionState> = rows
            .into_iter()
            .filter_map(|(s,)| s)
            .map(|j| serde_json::from_str(&j).map_err(|e| corrupt(format!("session: {e}"))))
            .collect::<Result<_, _>>()?;
        out.sort_by(|a, b| a.probe.cmp(&b.probe));
        Ok(out)
    }

    async fn prune(&self, _now_ms: i64, _retention: &Retention) -> Result<u64, StoreError> {
        // Every table expires its rows by `default_time_to_live` (set per tier from the retention).
        Ok(0)
    }

    async fn ready(&self) -> Result<(), StoreError> {
        self.cql.rows::<(Option<String>,)>(&self.st.ready, ()).await.map(|_| ())
    }

    fn name(&self) -> &'static str {
        "scylla"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_the_range_and_nest_the_tiers() {
        let day = 86_400_000;
        assert_eq!(buckets(Tier::M1, 0, day), vec![0]);
        assert_eq!(buckets(Tier::M1, day - 60_000, day + 60_000), vec![0, 1]);
        assert_eq!(bucket_of(Tier::M1, 1_763_769_600_000), 20_414, "the day number, as docs/cql.md shows");
        assert!(buckets(Tier::M1, 5, 5).is_empty());
        // a 1h window lies in one 1m bucket, a 1d window in one 1h bucket
        for start in [0, 23 * 3_600_000, 29 * day, 30 * day - 3_600_000] {
            assert_eq!(buckets(Tier::M1, start, start + 3_600_000).len(), 1);
        }
        for start in (0..400).map(|d| d * day) {
            assert_eq!(buckets(Tier::H1, start, start + day).len(), 1);
        }
    }

    #[test]
    fn pack_keeps_partitions_together_within_the_budget() {
        let b = BatchBudget { bytes: 100, partitions: 2 };
        // partition a: 3 rows of 10 bytes, b: one of 90, c and d: one of 10, e: one of 500
        let rows = vec![("a", 1), ("b", 9), ("a", 2), ("c", 4), ("a", 3), ("d", 5), ("e", 50)];
        let groups = pack(
            rows,
            |v| {
                if *v == 9 {
                    90
                } else if *v == 50 {
                    500
                } else {
                    10
                }
            },
            b,
        );
        assert_eq!(groups, vec![vec![1, 2, 3], vec![9, 4], vec![5], vec![50]]);
        // one partition larger than the budget is split, in order
        let big: Vec<_> = (0..25).map(|i| ("p", i)).collect();
        let groups = pack(big, |_| 10, b);
        assert_eq!(groups.iter().map(Vec::len).collect::<Vec<_>>(), vec![10, 10, 5]);
        assert_eq!(groups.concat(), (0..25).collect::<Vec<_>>());
        // never more than BATCH_ROWS statements
        let many: Vec<_> = (0..200).map(|i| (i, i)).collect();
        let groups = pack(many, |_| 1, BatchBudget { bytes: 1 << 20, partitions: 1024 });
        assert!(groups.iter().all(|g| g.len() <= BATCH_ROWS));
        assert_eq!(groups.len(), 200usize.div_ceil(BATCH_ROWS));
    }

    #[test]
    fn newer_revisions_write_with_higher_timestamps() {
        let t = 1_790_000_040_000;
        assert!(write_timestamp(t, 2) > write_timestamp(t, 1));
        assert_eq!(write_timestamp(t, 0), t * 1000);
        assert_eq!(consistency(ConsistencyLevel::LocalQuorum), Consistency::LocalQuorum);
    }
}
