//! The journal: the embedded bus. `publish` dedups a batch against what was journaled before and
//! appends it in the writer's transaction; the consumer hands rows out with bounded prefetch,
//! requeues what is dropped unacked, dead-letters after the delivery limit, and deletes on ack.

use super::schema::batch_id;
use super::*;

/// A requeued batch becomes deliverable again after this long.
const REQUEUE_DELAY: Duration = Duration::from_millis(500);
/// Deliveries of one batch in this process before it is dead-lettered.
const DELIVERY_LIMIT: u32 = 10;

/// Journal delivery bookkeeping for the consumer.
#[derive(Default)]
pub(super) struct JournalState {
    /// Highest journal id handed out.
    pub(super) cursor: i64,
    /// Highest journal id present when the process started (those are redeliveries).
    pub(super) startup_max: i64,
    pub(super) inflight: HashSet<i64>,
    /// Ids returned unacked, with the instant they become deliverable again.
    pub(super) requeued: BTreeMap<i64, Instant>,
    /// Deliveries per id in this process (for the delivery limit).
    pub(super) deliveries: std::collections::HashMap<i64, u32>,
}

/// Acks a row: deletes it, in the writer's next group.
fn ack_job(id: i64) -> Box<dyn Job> {
    Box::new(Detached(move |tx: &Transaction<'_>| {
        if let Err(error) = tx.execute("DELETE FROM journal WHERE id = ?1", [id]) {
            tracing::warn!(%error, id, "journal ack failed");
        }
    }))
}

/// Moves a row to `dead_letters`, in the writer's next group.
fn dead_letter_job(id: i64, at_ms: i64, reason: String) -> Box<dyn Job> {
    Box::new(Detached(move |tx: &Transaction<'_>| {
        let r = tx.execute(
            "INSERT OR IGNORE INTO dead_letters (id, probe, received_ms, payload, reason, at_ms)
             SELECT id, probe, received_ms, payload, ?2, ?3 FROM journal WHERE id = ?1",
            params![id, reason, at_ms],
        );
        let r = r.and_then(|_| tx.execute("DELETE FROM journal WHERE id = ?1", [id]));
        if let Err(error) = r {
            tracing::warn!(%error, id, "dead-lettering failed");
        }
    }))
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

struct JournalAcker {
    id: i64,
    shared: Arc<Shared>,
    settled: bool,
}

#[async_trait]
impl Acker for JournalAcker {
    async fn ack(mut self: Box<Self>) -> Result<(), BusError> {
        self.settled = true;
        let r = self.shared.jobs.send(ack_job(self.id)).await;
        if let Ok(mut j) = self.shared.journal.lock() {
            j.inflight.remove(&self.id);
            j.deliveries.remove(&self.id);
        }
        self.shared.acked.notify_one();
        r.map_err(|_| BusError::unavailable("sqlite writer stopped"))
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
                    let _ = self.shared.jobs.send(dead_letter_job(row.id, at_ms, reason)).await;
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
        let node = self.shared.node.clone();
        self.submit(
            move |tx| publish_tx(tx, &node, &probe, &events, &encoded, received_ms).map_err(SqliteError::from),
            |p: &Published| p.batch_id.is_some(),
        )
        .await
        .map_err(SqliteError::into_bus)
    }

    async fn backlog(&self) -> Result<Option<u64>, BusError> {
        let rows = self.journal_depth().await.map_err(|e| BusError::unavailable(e.to_string()))?;
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
            Err(BusError::unavailable("sqlite writer stopped"))
        } else {
            Ok(())
        }
    }

    fn name(&self) -> &'static str {
        "embedded"
    }
}
