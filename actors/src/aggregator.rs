//! The window aggregator: one actor per shard of probes. It applies batches to event-time 1m
//! windows (per probe, target, metric), tracks each probe's watermark, and periodically commits
//! the changed windows, the watermarks and the ids of the batches they contain through the writer;
//! only then are those batches acked and their observations passed to the probe sessions.
//!
//! Invariant: a batch is acked only after a commit that contains its whole effect. Window state is
//! always either in memory (dirty or clean) or in the store, and is read back from the store
//! before any update, so a restart (process crash or actor restart) followed by redelivery of the
//! unacked batches reproduces exactly the state it lost.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};

use hashbrown::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use netqoe_domain::{
    event_hash, BatchObservation, EventSet, Rollup, Tier, Watermark, WatermarkVerdict, WindowAgg, WindowKey,
};
use tracing::Instrument;

use crate::bus::{Acker, Batch, BatchId, Delivery};
use crate::metrics::{
    tracked_send, ACTOR_ERRORS, ACTOR_HANDLER_SECONDS, ACTOR_MESSAGES, ACTOR_RESTARTS, BATCHES_AGGREGATED,
    BATCHES_SKIPPED, EVENTS_AGGREGATED, LATE_EVENTS, WATERMARK_LAG, WINDOWS_OPEN,
};
use crate::session::{Observe, SessionRegistry};
use crate::store::{ProbeMark, RollupStore, StoreError, WriteSet};
use crate::writer::{RollupWriter, Write};

/// Tunables of an aggregator.
#[derive(Clone, Debug)]
pub struct AggregatorConfig {
    /// Allowed lateness: the watermark trails the newest event time by this much.
    pub lateness_ms: i64,
    /// Commit after this many batches are pending.
    pub flush_batches: usize,
    /// Commit pending work at least this often.
    pub flush_interval: Duration,
    /// Windows and watermarks untouched this long (receiver clock) are dropped from memory once
    /// persisted; they are read back from the store when needed.
    pub idle_evict_ms: i64,
    /// Mailbox capacity (bounded: senders wait).
    pub mailbox: usize,
    /// A changed window's 1h/1d parents are re-derived at most this often (and always when it
    /// closes or on drain): how stale the coarse tiers may be.
    pub derive_interval_ms: i64,
    /// Federation: each commit's 1m windows are sent upward before its batches are acked.
    pub uplink: Option<crate::uplink::UplinkHandle>,
}

impl Default for AggregatorConfig {
    fn default() -> Self {
        Self {
            lateness_ms: 120_000,
            flush_batches: 64,
            flush_interval: Duration::from_millis(250),
            idle_evict_ms: 5 * 60_000,
            mailbox: 64,
            derive_interval_ms: 30_000,
            uplink: None,
        }
    }
}

/// Errors of the pipeline's actors.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("actor unavailable: {0}")]
    Mailbox(#[from] actix::MailboxError),
    #[error("federation uplink: {0}")]
    Uplink(#[from] crate::bus::BusError),
}

/// Apply one delivered batch.
#[derive(Message)]
#[rtype(result = "Result<(), PipelineError>")]
pub struct Process(pub Delivery);

/// Bus consumption restarted at `epoch`: drop all in-memory state (it is rebuilt from the store)
/// and ignore deliveries of earlier epochs.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reset {
    pub epoch: u64,
}

/// Commit everything pending now (used on shutdown: open windows are written as partial
/// revisions).
#[derive(Message)]
#[rtype(result = "Result<(), PipelineError>")]
pub struct Drain;

struct OpenWindow {
    agg: WindowAgg,
    /// Revision of the last persisted state (0: never persisted).
    revision: u64,
    /// Changed since the last commit.
    dirty: bool,
    /// A revision with `closed = true` was persisted.
    emitted_closed: bool,
    /// Events this window contains (persisted with it): a re-sent event is never counted twice.
    applied: EventSet,
    /// Events added since the last persisted revision (what the next commit writes of `applied`).
    fresh: EventSet,
    /// Persisted changes not yet merged into the 1h/1d parents.
    underived: bool,
    /// When the parents were last re-derived for this window (receiver clock).
    derived_ms: i64,
    last_touch_ms: i64,
}

impl OpenWindow {
    fn new(now: i64) -> Self {
        OpenWindow {
            agg: WindowAgg::default(),
            revision: 0,
            dirty: false,
            emitted_closed: false,
            applied: EventSet::default(),
            fresh: EventSet::default(),
            underived: false,
            // a new window's parents are derived at its first commit (a new series shows in the
            // coarse tiers at once), then at most every `derive_interval_ms`
            derived_ms: i64::MIN / 2,
            last_touch_ms: now,
        }
    }
}

struct ProbeState {
    wm: Watermark,
    wm_dirty: bool,
    /// Highest seq applied (committed or pending).
    max_seq: Option<u64>,
    last_touch_ms: i64,
}

struct Pending {
    id: BatchId,
    acker: Box<dyn Acker>,
    /// None for a second copy of a batch already pending.
    observation: Option<(String, BatchObservation)>,
}

enum Loaded {
    AlreadyCommitted,
    Apply {
        /// The probe's stored mark, when its state was not in memory.
        mark: Option<ProbeMark>,
        windows: Vec<Rollup>,
    },
}

pub struct Aggregator {
    shard: usize,
    cfg: AggregatorConfig,
    store: Arc<dyn RollupStore>,
    writer: Addr<RollupWriter>,
    sessions: Addr<SessionRegistry>,
    windows: HashMap<WindowKey, OpenWindow>,
    probes: HashMap<String, ProbeState>,
    pending: Vec<Pending>,
    pending_ids: HashSet<BatchId>,
    /// Current consumption epoch; older deliveries are ignored.
    epoch: u64,
    /// Set when the pipeline stops consuming: a load waiting for the store gives up.
    stopping: Arc<AtomicBool>,
    clock: crate::Clock,
}

/// A borrowed `WindowKey`: looks a window up without allocating its strings. Hashes exactly like
/// `WindowKey` (same fields, same order, `&str` hashes as `String`).
#[derive(Hash)]
struct KeyRef<'a> {
    probe: &'a str,
    target: &'a str,
    metric: netqoe_domain::Metric,
    tier: Tier,
    start_ms: i64,
}

impl hashbrown::Equivalent<WindowKey> for KeyRef<'_> {
    fn equivalent(&self, k: &WindowKey) -> bool {
        self.start_ms == k.start_ms
            && self.metric == k.metric
            && self.tier == k.tier
            && self.target == k.target
            && self.probe == k.probe
    }
}

impl KeyRef<'_> {
    fn to_key(&self) -> WindowKey {
        WindowKey {
            probe: self.probe.to_string(),
            target: self.target.to_string(),
            metric: self.metric,
            tier: self.tier,
            start_ms: self.start_ms,
        }
    }
}

/// Every 1m window a batch touches.
fn batch_keys(batch: &Batch) -> Vec<WindowKey> {
    let mut keys = HashSet::new();
    for e in &batch.events {
        for c in e.contributions() {
            keys.insert(m1_ref(&batch.probe, e, c.metric).to_key());
        }
    }
    keys.into_iter().collect()
}

fn m1_ref<'a>(probe: &'a str, e: &'a netqoe_domain::Event, metric: netqoe_domain::Metric) -> KeyRef<'a> {
    KeyRef { probe, target: &e.target, metric, tier: Tier::M1, start_ms: Tier::M1.bin_start(e.ts_ms) }
}

impl Aggregator {
    pub fn new(
        shard: usize,
        cfg: AggregatorConfig,
        store: Arc<dyn RollupStore>,
        writer: Addr<RollupWriter>,
        sessions: Addr<SessionRegistry>,
        stopping: Arc<AtomicBool>,
        clock: crate::Clock,
    ) -> Self {
        Self {
            shard,
            cfg,
            store,
            writer,
            sessions,
            windows: HashMap::new(),
            probes: HashMap::new(),
            pending: Vec::new(),
            pending_ids: HashSet::new(),
            epoch: 0,
            stopping,
            clock,
        }
    }

    /// Forgets everything held in memory; uncommitted batches are redelivered by the bus.
    fn clear(&mut self) {
        let before = self.windows.len();
        self.windows.clear();
        self.probes.clear();
        // Dropping the ackers requeues the uncommitted batches.
        self.pending.clear();
        self.pending_ids.clear();
        self.set_windows_gauge(before);
    }

    fn set_windows_gauge(&self, before: usize) {
        WINDOWS_OPEN.add(self.windows.len() as i64 - before as i64);
    }

    /// Window keys the batch touches that are not in memory (to be read from the store).
    fn missing_keys(&self, batch: &Batch) -> Vec<WindowKey> {
        let mut keys = HashSet::new();
        for e in &batch.events {
            for c in e.contributions() {
                let k = m1_ref(&batch.probe, e, c.metric);
                if !self.windows.contains_key(&k) {
                    keys.insert(k.to_key());
                }
            }
        }
        keys.into_iter().collect()
    }

    fn apply(&mut self, batch: &Batch, mark: Option<ProbeMark>, loaded: Vec<Rollup>) -> BatchObservation {
        let _span = tracing::info_span!("aggregate.apply", batch_id = %batch.id, shard = self.shard, events = batch.events.len())
            .entered();
        let now = self.clock.now_ms();
        let before = self.windows.len();
        if let Some(m) = mark {
            self.probes.entry(batch.probe.clone()).or_insert(ProbeState {
                wm: Watermark { max_event_ms: m.max_event_ms },
                wm_dirty: false,
                max_seq: m.max_seq,
                last_touch_ms: now,
            });
        }
        for r in loaded {
            self.windows.entry(r.key).or_insert(OpenWindow {
                agg: r.agg,
                revision: r.revision,
                dirty: false,
                emitted_closed: r.closed,
                applied: r.applied,
                fresh: EventSet::default(),
                underived: false,
                derived_ms: now,
                last_touch_ms: now,
            });
        }
        let probe = self.probes.entry(batch.probe.clone()).or_insert(ProbeState {
            wm: Watermark::default(),
            wm_dirty: false,
            max_seq: None,
            last_touch_ms: now,
        });
        probe.last_touch_ms = now;
        let mut obs = BatchObservation {
            arrival_ms: batch.received_ms,
            events: Vec::with_capacity(batch.events.len()),
            duplicates: batch.duplicates,
            late_dropped: 0,
            run_starts: Vec::new(),
        };
        let mut newest = i64::MIN;
        for e in &batch.events {
            let h = event_hash(&e.event_id);
            let contributions = e.contributions();
            let keys: Vec<KeyRef<'_>> = contributions.iter().map(|c| m1_ref(&batch.probe, e, c.metric)).collect();
            // A window that already contains the event skips it; the event is a duplicate when
            // every window it touches has it (after a partial commit, only some may).
            let seen = keys.iter().filter(|k| self.windows.get(*k).is_some_and(|w| w.applied.contains(h))).count();
            if !contributions.is_empty() && seen == contributions.len() {
                obs.duplicates += 1;
                continue;
            }
            if e.run_start {
                obs.run_starts.push(e.seq);
            }
            match probe.wm.observe(e.ts_ms, batch.received_ms, self.cfg.lateness_ms) {
                WatermarkVerdict::LateDropped => {
                    obs.late_dropped += 1;
                    LATE_EVENTS.with_label_values(&["dropped"]).inc();
                    tracing::debug!(probe = %batch.probe, event_id = %e.event_id, "late event dropped");
                    continue;
                }
                WatermarkVerdict::LateAccepted => LATE_EVENTS.with_label_values(&["accepted"]).inc(),
                WatermarkVerdict::InOrder => probe.wm_dirty = true,
            }
            if probe.max_seq.is_none_or(|m| e.seq > m) {
                probe.max_seq = Some(e.seq);
                probe.wm_dirty = true;
            }
            newest = newest.max(e.ts_ms);
            obs.events.push((e.seq, e.ts_ms));
            for (c, k) in contributions.iter().zip(keys) {
                if !self.windows.contains_key(&k) {
                    self.windows.insert(k.to_key(), OpenWindow::new(now));
                }
                let Some(w) = self.windows.get_mut(&k) else { continue };
                if w.applied.insert(h) {
                    w.fresh.insert(h);
                    w.agg.add(c);
                    w.dirty = true;
                    w.last_touch_ms = now;
                }
            }
        }
        EVENTS_AGGREGATED.inc_by(obs.events.len() as u64);
        tracing::debug!(
            batch = %batch.id, probe = %batch.probe, shard = self.shard, applied = obs.events.len(),
            duplicates = obs.duplicates, late_dropped = obs.late_dropped, "batch applied"
        );
        if newest > i64::MIN {
            WATERMARK_LAG.set((batch.received_ms - newest) as f64 / 1000.0);
        }
        self.set_windows_gauge(before);
        obs
    }

    /// Commits changed windows (and windows the watermark just closed), watermarks and pending
    /// batch ids; then acks the batches and informs the sessions.
    /// `all_parents`: re-derive the parents of every window with underived changes (drain).
    fn flush(&mut self, all_parents: bool) -> ResponseActFuture<Self, Result<(), PipelineError>> {
        let lateness = self.cfg.lateness_ms;
        let now = self.clock.now_ms();
        let mut rollups = Vec::new();
        let mut derive = Vec::new();
        for (k, w) in self.windows.iter_mut() {
            let closed = self.probes.get(&k.probe).is_some_and(|p| p.wm.closes(k.start_ms, lateness));
            if w.dirty || (closed && !w.emitted_closed) {
                w.revision += 1;
                w.dirty = false;
                w.underived = true;
                rollups.push(Rollup {
                    key: k.clone(),
                    agg: w.agg.clone(),
                    applied: std::mem::take(&mut w.fresh),
                    revision: w.revision,
                    closed,
                });
            }
            if w.underived && (closed || all_parents || now - w.derived_ms >= self.cfg.derive_interval_ms) {
                w.underived = false;
                w.derived_ms = now;
                derive.push(k.clone());
            }
        }
        let watermarks: Vec<(String, ProbeMark)> = self
            .probes
            .iter_mut()
            .filter(|(_, p)| p.wm_dirty)
            .map(|(id, p)| {
                p.wm_dirty = false;
                (id.clone(), ProbeMark { max_event_ms: p.wm.max_event_ms, max_seq: p.max_seq })
            })
            .collect();
        let pending = std::mem::take(&mut self.pending);
        if rollups.is_empty() && watermarks.is_empty() && pending.is_empty() && derive.is_empty() {
            self.evict();
            return Box::pin(actix::fut::ready(Ok(())));
        }
        // The deltas are kept until the commit is known: a failed one puts them back.
        let written: Vec<(WindowKey, bool, EventSet)> =
            rollups.iter().map(|r| (r.key.clone(), r.closed, r.applied.clone())).collect();
        // federation: the committed windows go upward before any batch of them is acked
        let upward = self.cfg.uplink.clone().map(|u| (u, rollups.clone()));
        let ws = WriteSet {
            rollups,
            batches: pending.iter().filter(|p| p.observation.is_some()).map(|p| p.id.clone()).collect(),
            watermarks: watermarks.clone(),
            derive: derive.clone(),
        };
        let writer = self.writer.clone();
        let sessions = self.sessions.clone();
        let shard = self.shard;
        let span = tracing::info_span!(
            "store.commit",
            shard,
            windows = ws.rollups.len(),
            batches = ws.batches.len(),
            batch_ids = %ws.batches.join(","),
        );
        Box::pin(
            async move {
                match tracked_send(&writer, "writer", Write(ws)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err((PipelineError::Store(e), pending)),
                    Err(e) => return Err((PipelineError::Mailbox(e), pending)),
                }
                if let Some((uplink, windows)) = upward {
                    // Committed but not sent: the batches stay unacked and every window stays
                    // dirty, so the next commit (a higher revision) sends them again.
                    if let Err(e) = uplink.0.send(&windows).await {
                        return Err((PipelineError::Uplink(e), pending));
                    }
                }
                let mut observations = Vec::new();
                let mut committed = Vec::new();
                for p in pending {
                    committed.push(p.id);
                    if let Some(o) = p.observation {
                        BATCHES_AGGREGATED.inc();
                        observations.push(o);
                    }
                    if let Err(error) = p.acker.ack().await {
                        // The batch is committed: a redelivery will be recognised and skipped.
                        tracing::warn!(%error, shard, "ack failed after commit");
                    }
                }
                for (probe, obs) in observations {
                    if let Err(error) = tracked_send(&sessions, "session_registry", Observe { probe, obs }).await {
                        tracing::warn!(%error, "session registry unavailable; observation lost");
                    }
                }
                Ok(committed)
            }
            .instrument(span)
            .into_actor(self)
            .map(move |res, act, _ctx| match res {
                Ok(committed) => {
                    tracing::debug!(shard = act.shard, batches = ?committed, "batches committed and acked");
                    for id in committed {
                        act.pending_ids.remove(&id);
                    }
                    for (k, closed, _) in written {
                        if closed {
                            if let Some(w) = act.windows.get_mut(&k) {
                                w.emitted_closed = true;
                            }
                        }
                    }
                    act.evict();
                    Ok(())
                }
                Err((e, pending)) => {
                    ACTOR_ERRORS.with_label_values(&["aggregator"]).inc();
                    tracing::warn!(error = %e, shard = act.shard, "commit failed; will retry");
                    // Everything written stays dirty (the next revision is higher still).
                    for (k, _, delta) in written {
                        if let Some(w) = act.windows.get_mut(&k) {
                            w.dirty = true;
                            w.fresh.extend(&delta);
                        }
                    }
                    for (probe, _) in watermarks {
                        if let Some(p) = act.probes.get_mut(&probe) {
                            p.wm_dirty = true;
                        }
                    }
                    for k in derive {
                        if let Some(w) = act.windows.get_mut(&k) {
                            w.underived = true;
                        }
                    }
                    let mut restored = pending;
                    restored.append(&mut act.pending);
                    act.pending = restored;
                    Err(e)
                }
            }),
        )
    }

    /// Drops persisted state that is closed or idle; the store has it.
    fn evict(&mut self) {
        let before = self.windows.len();
        let now = self.clock.now_ms();
        let idle = self.cfg.idle_evict_ms;
        self.windows.retain(|_, w| w.dirty || w.underived || !(w.emitted_closed || now - w.last_touch_ms > idle));
        let with_windows: HashSet<&str> = self.windows.keys().map(|k| k.probe.as_str()).collect();
        self.probes.retain(|id, p| p.wm_dirty || now - p.last_touch_ms <= idle || with_windows.contains(id.as_str()));
        self.set_windows_gauge(before);
    }
}

impl Actor for Aggregator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.cfg.mailbox);
        ctx.run_interval(self.cfg.flush_interval, |act, ctx| {
            ctx.wait(act.flush(false).map(|r, _, _| {
                if let Err(error) = r {
                    tracing::debug!(%error, "periodic flush failed");
                }
            }));
        });
    }
}

impl Supervised for Aggregator {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        ACTOR_RESTARTS.with_label_values(&["aggregator"]).inc();
        tracing::warn!(shard = self.shard, "aggregator restarting; state is rebuilt from the store");
        self.clear();
    }
}

impl Handler<Process> for Aggregator {
    type Result = AtomicResponse<Self, Result<(), PipelineError>>;

    fn handle(&mut self, msg: Process, _ctx: &mut Context<Self>) -> Self::Result {
        ACTOR_MESSAGES.with_label_values(&["aggregator"]).inc();
        let started = Instant::now();
        let Delivery { batch, redelivered, acker, epoch } = msg.0;
        if epoch < self.epoch || self.stopping.load(Ordering::Relaxed) {
            // From before a consumption reset, or still queued in a lane when the pipeline
            // stopped consuming (a drain): the bus redelivers it, possibly to the standby that
            // takes the shard over; applying it here would let this process commit windows that
            // are no longer its own.
            drop(acker);
            return AtomicResponse::new(Box::pin(actix::fut::ready(Ok(()))));
        }
        if self.pending_ids.contains(&batch.id) {
            // Another copy is pending: settle this one with it.
            self.pending.push(Pending { id: batch.id, acker, observation: None });
            return AtomicResponse::new(Box::pin(actix::fut::ready(Ok(()))));
        }
        let need_wm = !self.probes.contains_key(&batch.probe);
        let keys = self.missing_keys(&batch);
        let store = self.store.clone();
        let probe = batch.probe.clone();
        let id = batch.id.clone();
        let stopping = self.stopping.clone();
        let shard = self.shard;
        // A store that cannot answer now (retryable) is waited for, holding the batch: this
        // shard stops here, its mailbox fills, the bus stops delivering and ingest answers 503
        // once the bus is full. Releasing the batch instead would let the probe's newer batches
        // pass it, advance the watermark, and drop the older events as late after their 202.
        let fut = async move {
            let mut backoff = crate::backoff::Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
            loop {
                let res: Result<Loaded, StoreError> = async {
                    if redelivered && !store.processed(std::slice::from_ref(&id)).await?.is_empty() {
                        return Ok(Loaded::AlreadyCommitted);
                    }
                    let mark = if need_wm { Some(store.load_mark(&probe).await?.unwrap_or_default()) } else { None };
                    let windows = if keys.is_empty() { Vec::new() } else { store.load_windows(&keys).await? };
                    Ok(Loaded::Apply { mark, windows })
                }
                .await;
                match res {
                    Err(e) if e.retryable() && !stopping.load(Ordering::Relaxed) => {
                        ACTOR_ERRORS.with_label_values(&["aggregator"]).inc();
                        let wait = backoff.next_delay();
                        tracing::warn!(error = %e, batch = %id, shard, retry_in = ?wait, "store unavailable; batch held until it answers");
                        tokio::time::sleep(wait).await;
                    }
                    res => return res,
                }
            }
        }
        .into_actor(self)
        .then(move |res, act, _ctx| -> ResponseActFuture<Self, Result<(), PipelineError>> {
            match res {
                Err(e) => {
                    ACTOR_ERRORS.with_label_values(&["aggregator"]).inc();
                    tracing::warn!(error = %e, batch = %batch.id, "cannot load window state; batch requeued");
                    if e.retryable() {
                        // only when stopping: requeued without counting a delivery
                        acker.release();
                    } else {
                        drop(acker);
                    }
                    Box::pin(actix::fut::ready(Err(e.into())))
                }
                Ok(Loaded::AlreadyCommitted) => {
                    BATCHES_SKIPPED.inc();
                    // Federation: the process that committed it may have died before sending its
                    // windows upward; send their stored state again (the global tier keeps the
                    // highest revision, so a second copy changes nothing).
                    let resend = act.cfg.uplink.clone().map(|u| (u, batch_keys(&batch), act.store.clone()));
                    Box::pin(
                        async move {
                            if let Some((uplink, keys, store)) = resend {
                                let sent = async {
                                    let windows = store.load_windows(&keys).await.map_err(PipelineError::Store)?;
                                    uplink.0.send(&windows).await.map_err(PipelineError::Uplink)
                                }
                                .await;
                                if let Err(e) = sent {
                                    acker.release();
                                    return Err(e);
                                }
                            }
                            if let Err(error) = acker.ack().await {
                                tracing::warn!(%error, "ack of an already committed batch failed");
                            }
                            Ok(())
                        }
                        .into_actor(act),
                    )
                }
                Ok(Loaded::Apply { mark, windows }) => {
                    let obs = act.apply(&batch, mark, windows);
                    act.pending_ids.insert(batch.id.clone());
                    act.pending.push(Pending { id: batch.id, acker, observation: Some((batch.probe, obs)) });
                    ACTOR_HANDLER_SECONDS.with_label_values(&["aggregator"]).observe(started.elapsed().as_secs_f64());
                    if act.pending.len() >= act.cfg.flush_batches {
                        act.flush(false)
                    } else {
                        Box::pin(actix::fut::ready(Ok(())))
                    }
                }
            }
        });
        AtomicResponse::new(Box::pin(fut))
    }
}

impl Handler<Reset> for Aggregator {
    type Result = ();

    fn handle(&mut self, msg: Reset, _ctx: &mut Context<Self>) {
        self.epoch = self.epoch.max(msg.epoch);
        self.clear();
    }
}

impl Handler<Drain> for Aggregator {
    type Result = AtomicResponse<Self, Result<(), PipelineError>>;

    fn handle(&mut self, _: Drain, _ctx: &mut Context<Self>) -> Self::Result {
        AtomicResponse::new(self.flush(true))
    }
}
