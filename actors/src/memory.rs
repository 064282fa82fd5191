//! In-process `RollupStore` and `EventBus`: everything in mutex-guarded maps. They are the
//! reference implementations of the two ports (tests and embedders that need no file or broker);
//! the embedded default persists with SQLite instead.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use netqoe_domain::diagnosis::Incident;
use netqoe_domain::{Rollup, SessionState, Tier, WindowKey};

use netqoe_domain::Event;
use tokio::sync::mpsc;

use crate::bus::{Acker, Batch, BatchId, BusError, Delivery, EventBus, Incoming, Published};
use crate::store::{
    derive_parent, parents_to_derive, query_order, CommitReport, IncidentQuery, ProbeMark, Retention, RollupQuery,
    RollupStore, StoreError, WriteSet,
};

#[derive(Default)]
struct Inner {
    rollups: BTreeMap<WindowKey, Rollup>,
    batches: HashMap<BatchId, i64>,
    watermarks: HashMap<String, ProbeMark>,
    sessions: BTreeMap<String, SessionState>,
    incidents: BTreeMap<String, Incident>,
}

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    clock: crate::Clock,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store that stamps what it records (processed batch ids) with `clock`'s time.
    pub fn with_clock(clock: crate::Clock) -> Self {
        Self { inner: Mutex::default(), clock }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner>, StoreError> {
        self.inner.lock().map_err(|_| StoreError::failed("memory store lock poisoned"))
    }
}

fn series_range(rollups: &BTreeMap<WindowKey, Rollup>, parent: &WindowKey, child: Tier) -> Vec<Rollup> {
    let lo = WindowKey { tier: child, start_ms: parent.start_ms, ..parent.clone() };
    let hi = WindowKey { tier: child, start_ms: parent.start_ms + parent.tier.len_ms(), ..parent.clone() };
    rollups.range(lo..hi).map(|(_, r)| r.clone()).collect()
}

#[async_trait]
impl RollupStore for MemoryStore {
    async fn commit(&self, ws: WriteSet) -> Result<CommitReport, StoreError> {
        let mut g = self.lock()?;
        let mut report = CommitReport::default();
        let now = self.clock.now_ms();
        let mut changed = Vec::new();
        for mut r in ws.rollups {
            let newer = g.rollups.get(&r.key).is_none_or(|old| r.revision > old.revision);
            if newer {
                changed.push(r.key.clone());
                // `applied` is a delta: the stored set is the union.
                if let Some(old) = g.rollups.remove(&r.key) {
                    let mut all = old.applied;
                    all.extend(&r.applied);
                    r.applied = all;
                }
                g.rollups.insert(r.key.clone(), r);
                *report.written.entry(Tier::M1).or_default() += 1;
            }
        }
        for parent in parents_to_derive(&ws.derive) {
            let child = if parent.tier == Tier::H1 { Tier::M1 } else { Tier::H1 };
            let children = series_range(&g.rollups, &parent, child);
            let Some((agg, closed)) = derive_parent(&children) else { continue };
            let revision = g.rollups.get(&parent).map_or(1, |p| p.revision + 1);
            let applied = Default::default();
            g.rollups.insert(parent.clone(), Rollup { key: parent.clone(), agg, applied, revision, closed });
            *report.written.entry(parent.tier).or_default() += 1;
        }
        for id in ws.batches {
            g.batches.insert(id, now);
        }
        for (probe, mark) in ws.watermarks {
            g.watermarks.entry(probe).or_default().merge(&mark);
        }
        Ok(report)
    }

    async fn load_windows(&self, keys: &[WindowKey]) -> Result<Vec<Rollup>, StoreError> {
        let g = self.lock()?;
        Ok(keys.iter().filter_map(|k| g.rollups.get(k).cloned()).collect())
    }

    async fn load_mark(&self, probe: &str) -> Result<Option<ProbeMark>, StoreError> {
        Ok(self.lock()?.watermarks.get(probe).copied())
    }

    async fn processed(&self, ids: &[BatchId]) -> Result<Vec<BatchId>, StoreError> {
        let g = self.lock()?;
        Ok(ids.iter().filter(|i| g.batches.contains_key(*i)).cloned().collect())
    }

    async fn query(&self, q: &RollupQuery) -> Result<Vec<Rollup>, StoreError> {
        let g = self.lock()?;
        let mut hits: Vec<&Rollup> = g
            .rollups
            .values()
            .filter(|r| {
                r.key.tier == q.tier
                    && r.key.start_ms >= q.from_ms
                    && r.key.start_ms < q.to_ms
                    && q.probe.as_ref().is_none_or(|p| &r.key.probe == p)
                    && q.target.as_ref().is_none_or(|t| &r.key.target == t)
                    && q.metric.is_none_or(|m| r.key.metric == m)
                    && q.after.as_ref().is_none_or(|c| c.precedes(r))
            })
            .collect();
        hits.sort_by(|a, b| query_order(a, b));
        Ok(hits
            .into_iter()
            .take(q.limit)
            .map(|r| Rollup { key: r.key.clone(), agg: r.agg.clone(), applied: Default::default(), ..*r })
            .collect())
    }

    async fn save_incidents(&self, incidents: &[Incident]) -> Result<(), StoreError> {
        let mut g = self.lock()?;
        for i in incidents {
            g.incidents.insert(i.id.clone(), i.clone());
        }
        Ok(())
    }

    async fn list_incidents(&self, q: &IncidentQuery) -> Result<Vec<Incident>, StoreError> {
        let g = self.lock()?;
        let mut v: Vec<Incident> = g.incidents.values().filter(|i| q.matches(i)).cloned().collect();
        v.sort_by(|a, b| (b.opened_ms, &b.id).cmp(&(a.opened_ms, &a.id)));
        v.truncate(q.limit);
        Ok(v)
    }

    async fn save_sessions(&self, sessions: &[SessionState]) -> Result<(), StoreError> {
        let mut g = self.lock()?;
        for s in sessions {
            g.sessions.insert(s.probe.clone(), s.clone());
        }
        Ok(())
    }

    async fn load_session(&self, probe: &str) -> Result<Option<SessionState>, StoreError> {
        Ok(self.lock()?.sessions.get(probe).cloned())
    }

    async fn list_sessions(&self) -> Result<Vec<SessionState>, StoreError> {
        Ok(self.lock()?.sessions.values().cloned().collect())
    }

    async fn prune(&self, now_ms: i64, retention: &Retention) -> Result<u64, StoreError> {
        let mut g = self.lock()?;
        let before = g.rollups.len() + g.batches.len();
        g.rollups.retain(|k, _| retention.keep_until(k.tier, k.start_ms) > now_ms);
        g.batches.retain(|_, at| *at + retention.dedup_ms > now_ms);
        Ok((before - g.rollups.len() - g.batches.len()) as u64)
    }

    async fn ready(&self) -> Result<(), StoreError> {
        self.lock().map(|_| ())
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}

/// In-process `EventBus` with a broker's delivery semantics, for tests and embedders: batches are
/// delivered in publish order, at most `prefetch` unacked at once; a delivery dropped without
/// `ack` (or released) goes back to the front of the queue marked redelivered; [`MemoryBus::reset`]
/// ends the current consumption as a reconnect would (every unacked delivery is requeued, its
/// acker no longer settles anything, and the consumer is told `Incoming::Reset`). Like a broker,
/// it does not drop re-sent events: the aggregators must.
#[derive(Clone, Default)]
pub struct MemoryBus {
    state: std::sync::Arc<Mutex<BusState>>,
    wake: std::sync::Arc<tokio::sync::Notify>,
}

#[derive(Default)]
struct BusState {
    queue: std::collections::VecDeque<(Batch, bool)>,
    /// Delivered and not yet settled, by delivery tag.
    unacked: HashMap<u64, Batch>,
    next_tag: u64,
    next_batch: u64,
    epoch: u64,
    prefetch: usize,
    acked: Vec<BatchId>,
    /// Deliveries dropped without an ack (they count toward a broker's delivery limit).
    nacked: u64,
    unavailable: bool,
}

impl MemoryBus {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BusState> {
        // a poisoned lock only means a test thread panicked; the state itself is consistent
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ids of the batches acked so far, in ack order.
    pub fn acked(&self) -> Vec<BatchId> {
        self.lock().acked.clone()
    }

    /// Deliveries dropped without an ack so far.
    pub fn nacked(&self) -> u64 {
        self.lock().nacked
    }

    /// Batches not yet acked (queued or delivered).
    pub fn outstanding(&self) -> usize {
        let g = self.lock();
        g.queue.len() + g.unacked.len()
    }

    /// Makes `publish` and `ready` fail with `Unavailable` (a broker that cannot be reached).
    pub fn set_available(&self, up: bool) {
        self.lock().unavailable = !up;
    }

    /// Puts a batch on the queue as a broker would hand it out again after a lost ack.
    pub fn inject(&self, batch: Batch, redelivered: bool) {
        self.lock().queue.push_back((batch, redelivered));
        self.wake.notify_waiters();
    }

    /// Ends the current consumption (a reconnect): unacked deliveries are requeued in front, marked
    /// redelivered, and the consumer is sent `Incoming::Reset` before anything else.
    pub fn reset(&self) -> u64 {
        let mut g = self.lock();
        g.epoch += 1;
        let mut back: Vec<(u64, Batch)> = g.unacked.drain().collect();
        back.sort_by_key(|(tag, _)| std::cmp::Reverse(*tag));
        for (_, b) in back {
            g.queue.push_front((b, true));
        }
        let epoch = g.epoch;
        drop(g);
        self.wake.notify_waiters();
        epoch
    }

    /// Waits until every published batch is acked.
    pub async fn settled(&self) {
        loop {
            let notified = self.wake.notified();
            if self.outstanding() == 0 {
                return;
            }
            notified.await;
        }
    }

    fn settle(&self, tag: u64, acked: bool, counts: bool) -> bool {
        let mut g = self.lock();
        let Some(b) = g.unacked.remove(&tag) else { return false };
        if acked {
            g.acked.push(b.id);
        } else {
            if counts {
                g.nacked += 1;
            }
            g.queue.push_front((b, true));
        }
        drop(g);
        self.wake.notify_waiters();
        true
    }
}

struct MemoryAcker {
    bus: MemoryBus,
    tag: u64,
    settled: bool,
}

#[async_trait]
impl Acker for MemoryAcker {
    async fn ack(mut self: Box<Self>) -> Result<(), BusError> {
        self.settled = true;
        if self.bus.settle(self.tag, true, false) {
            Ok(())
        } else {
            Err(BusError::unavailable("delivery belongs to an ended consumption"))
        }
    }

    fn release(mut self: Box<Self>) {
        self.settled = true;
        self.bus.settle(self.tag, false, false);
    }
}

impl Drop for MemoryAcker {
    fn drop(&mut self) {
        if !self.settled {
            self.bus.settle(self.tag, false, true);
        }
    }
}

#[async_trait]
impl EventBus for MemoryBus {
    async fn publish(&self, probe: &str, events: Vec<Event>, received_ms: i64) -> Result<Published, BusError> {
        let mut g = self.lock();
        if g.unavailable {
            return Err(BusError::unavailable("memory bus marked unavailable"));
        }
        g.next_batch += 1;
        let id = format!("mem-{}", g.next_batch);
        let accepted = events.len();
        let batch = Batch { id: id.clone(), probe: probe.to_string(), received_ms, duplicates: 0, events };
        g.queue.push_back((batch, false));
        drop(g);
        self.wake.notify_waiters();
        Ok(Published { batch_id: Some(id), accepted, duplicates: 0 })
    }

    async fn backlog(&self) -> Result<Option<u64>, BusError> {
        let g = self.lock();
        Ok(Some((g.queue.len() + g.unacked.len()) as u64))
    }

    async fn consume(&self, prefetch: usize) -> Result<mpsc::Receiver<Incoming>, BusError> {
        let (tx, rx) = mpsc::channel(prefetch.max(1));
        self.lock().prefetch = prefetch.max(1);
        let bus = self.clone();
        tokio::spawn(async move {
            let mut epoch = bus.lock().epoch;
            loop {
                let notified = bus.wake.notified();
                let next = {
                    let mut g = bus.lock();
                    if g.epoch != epoch {
                        epoch = g.epoch;
                        Some(Incoming::Reset { epoch })
                    } else if g.unacked.len() < g.prefetch {
                        g.queue.pop_front().map(|(batch, redelivered)| {
                            g.next_tag += 1;
                            let tag = g.next_tag;
                            g.unacked.insert(tag, batch.clone());
                            let acker = Box::new(MemoryAcker { bus: bus.clone(), tag, settled: false });
                            Incoming::Deliver(Delivery { batch, redelivered, epoch, acker })
                        })
                    } else {
                        None
                    }
                };
                match next {
                    Some(m) => {
                        if tx.send(m).await.is_err() {
                            return;
                        }
                    }
                    None => notified.await,
                }
            }
        });
        Ok(rx)
    }

    fn dedups_events(&self) -> bool {
        false
    }

    async fn ready(&self) -> Result<(), BusError> {
        if self.lock().unavailable {
            Err(BusError::unavailable("memory bus marked unavailable"))
        } else {
            Ok(())
        }
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}
