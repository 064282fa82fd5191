//! Harness of the actors crate's tests: the in-memory store behind a wrapper that counts calls and
//! fails on demand, ackers that record how each delivery was settled, and event builders. No
//! sleeps: tests wait for messages and for the bus to settle, and periodic flushes are pushed out
//! of the test's reach (commits happen on `Drain` or `flush_batches`).
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use async_trait::async_trait;
use netqoe_actors::aggregator::{Aggregator, AggregatorConfig};
use netqoe_actors::bus::{Acker, Batch, BusError, Delivery};
use netqoe_actors::memory::MemoryStore;
use netqoe_actors::session::{ListSessions, SessionConfig, SessionRegistry};
use netqoe_actors::store::{
    CommitReport, IncidentQuery, ProbeMark, Retention, RollupQuery, RollupStore, StoreError, WriteSet,
};
use netqoe_actors::writer::RollupWriter;
use netqoe_actors::Clock;
use netqoe_domain::diagnosis::Incident;
use netqoe_domain::{Event, Kind, Metric, Rollup, SessionState, Tier, WindowKey};

/// The in-memory store, counting calls and failing commits or reads when told to.
#[derive(Default)]
pub struct TestStore {
    pub inner: MemoryStore,
    pub commits: AtomicU64,
    pub loads: AtomicU64,
    pub processed_calls: AtomicU64,
    /// The next this many commits fail (retryable).
    pub fail_commits: AtomicUsize,
    /// While set, every call answers `Unavailable`.
    pub down: AtomicBool,
    /// Calls refused while down.
    pub down_hits: AtomicU64,
    /// Notified at every call (see `until`).
    pub progress: tokio::sync::Notify,
    pub marks: AtomicU64,
    /// While set, reads answer `Rejected` (a schema mismatch: retrying cannot help).
    pub reject_reads: AtomicBool,
    /// Rows removed by `prune`.
    pub pruned: AtomicU64,
    /// Calls of `save_incidents`.
    pub incident_saves: AtomicU64,
    /// Threads that loaded each probe's mark (one per aggregator shard that took the probe).
    pub mark_threads: Mutex<std::collections::HashMap<String, std::collections::HashSet<std::thread::ThreadId>>>,
}

impl TestStore {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Waits (at most 60 s) until `f` holds, re-checking at every store call.
    pub async fn until(&self, what: &str, f: impl Fn(&TestStore) -> bool) {
        let wait = async {
            loop {
                let called = self.progress.notified();
                if f(self) {
                    return;
                }
                called.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(60), wait).await.unwrap_or_else(|_| panic!("timed out: {what}"));
    }

    fn check(&self) -> Result<(), StoreError> {
        self.progress.notify_waiters();
        if self.down.load(Ordering::SeqCst) {
            self.down_hits.fetch_add(1, Ordering::SeqCst);
            Err(StoreError::unavailable("test store down"))
        } else {
            Ok(())
        }
    }

    /// Events counted in the stored 1m windows of `metric`.
    pub async fn events(&self, metric: Metric) -> u64 {
        self.m1(metric).await.iter().map(|r| r.agg.events).sum()
    }

    pub async fn m1(&self, metric: Metric) -> Vec<Rollup> {
        let q = RollupQuery {
            tier: Tier::M1,
            from_ms: 0,
            to_ms: i64::MAX,
            probe: None,
            target: None,
            metric: Some(metric),
            after: None,
            limit: 100_000,
        };
        self.inner.query(&q).await.expect("memory query")
    }
}

#[async_trait]
impl RollupStore for TestStore {
    async fn commit(&self, ws: WriteSet) -> Result<CommitReport, StoreError> {
        self.check()?;
        self.commits.fetch_add(1, Ordering::SeqCst);
        if self.fail_commits.load(Ordering::SeqCst) > 0 {
            self.fail_commits.fetch_sub(1, Ordering::SeqCst);
            return Err(StoreError::unavailable("injected commit failure"));
        }
        self.inner.commit(ws).await
    }
    async fn load_windows(&self, keys: &[WindowKey]) -> Result<Vec<Rollup>, StoreError> {
        self.check()?;
        if self.reject_reads.load(Ordering::SeqCst) {
            return Err(StoreError::rejected("test store rejects the read"));
        }
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.inner.load_windows(keys).await
    }
    async fn load_mark(&self, probe: &str) -> Result<Option<ProbeMark>, StoreError> {
        self.check()?;
        self.marks.fetch_add(1, Ordering::SeqCst);
        let me = std::thread::current().id();
        self.mark_threads.lock().unwrap().entry(probe.to_string()).or_default().insert(me);
        self.inner.load_mark(probe).await
    }
    async fn processed(&self, ids: &[String]) -> Result<Vec<String>, StoreError> {
        self.check()?;
        self.processed_calls.fetch_add(1, Ordering::SeqCst);
        self.inner.processed(ids).await
    }
    async fn query(&self, q: &RollupQuery) -> Result<Vec<Rollup>, StoreError> {
        self.check()?;
        self.inner.query(q).await
    }
    async fn save_sessions(&self, s: &[SessionState]) -> Result<(), StoreError> {
        self.inner.save_sessions(s).await
    }
    async fn load_session(&self, probe: &str) -> Result<Option<SessionState>, StoreError> {
        self.inner.load_session(probe).await
    }
    async fn list_sessions(&self) -> Result<Vec<SessionState>, StoreError> {
        self.inner.list_sessions().await
    }
    async fn save_incidents(&self, i: &[Incident]) -> Result<(), StoreError> {
        self.inner.save_incidents(i).await?;
        self.incident_saves.fetch_add(1, Ordering::SeqCst);
        self.progress.notify_waiters();
        Ok(())
    }
    async fn list_incidents(&self, q: &IncidentQuery) -> Result<Vec<Incident>, StoreError> {
        self.inner.list_incidents(q).await
    }
    async fn prune(&self, now_ms: i64, r: &Retention) -> Result<u64, StoreError> {
        let n = self.inner.prune(now_ms, r).await?;
        self.pruned.fetch_add(n, Ordering::SeqCst);
        self.progress.notify_waiters();
        Ok(n)
    }
    async fn ready(&self) -> Result<(), StoreError> {
        self.check()
    }
    fn name(&self) -> &'static str {
        "test"
    }
}

/// How a delivery was settled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settled {
    Acked(String),
    Released(String),
    /// Dropped without an ack: the bus redelivers it (and counts a failed delivery).
    Dropped(String),
}

#[derive(Clone, Default)]
pub struct Log(pub Arc<Mutex<Vec<Settled>>>);

impl Log {
    pub fn all(&self) -> Vec<Settled> {
        self.0.lock().unwrap().clone()
    }
    pub fn acked(&self) -> Vec<String> {
        self.all()
            .into_iter()
            .filter_map(|s| match s {
                Settled::Acked(id) => Some(id),
                _ => None,
            })
            .collect()
    }
}

struct RecordingAcker {
    id: String,
    log: Log,
    done: bool,
}

#[async_trait]
impl Acker for RecordingAcker {
    async fn ack(mut self: Box<Self>) -> Result<(), BusError> {
        self.done = true;
        self.log.0.lock().unwrap().push(Settled::Acked(self.id.clone()));
        Ok(())
    }
    fn release(mut self: Box<Self>) {
        self.done = true;
        self.log.0.lock().unwrap().push(Settled::Released(self.id.clone()));
    }
}

impl Drop for RecordingAcker {
    fn drop(&mut self) {
        if !self.done {
            self.log.0.lock().unwrap().push(Settled::Dropped(self.id.clone()));
        }
    }
}

/// A minute-aligned base time in the recent past (the watermark is bounded by arrival time).
pub fn base_ms() -> i64 {
    let now = netqoe_actors::now_ms();
    now - now % 60_000 - 10 * 60_000
}

/// An ICMP event with one RTT sample: one contribution to the `rtt` window of its minute.
pub fn icmp(id: &str, seq: u64, ts_ms: i64, target: &str) -> Event {
    Event { rtt_samples_ms: vec![1.0 + seq as f64], ..Event::new(id, seq, ts_ms, target, Kind::Icmp) }
}

/// `n` events of `probe` with seqs `from..from+n`, 1 s apart from `ts0`.
pub fn events(probe: &str, from: u64, n: u64, ts0: i64) -> Vec<Event> {
    (from..from + n).map(|s| icmp(&format!("{probe}-{s}"), s, ts0 + (s - from) as i64 * 1000, "t1")).collect()
}

pub fn batch(id: &str, probe: &str, events: Vec<Event>) -> Batch {
    Batch { id: id.into(), probe: probe.into(), received_ms: netqoe_actors::now_ms(), duplicates: 0, events }
}

pub fn delivery(b: Batch, redelivered: bool, epoch: u64, log: &Log) -> Delivery {
    let acker = Box::new(RecordingAcker { id: b.id.clone(), log: log.clone(), done: false });
    Delivery { batch: b, redelivered, epoch, acker }
}

/// Commits happen only when a test asks (drain) or after many batches.
pub fn quiet_config() -> AggregatorConfig {
    AggregatorConfig { flush_interval: Duration::from_secs(3600), flush_batches: 1000, ..AggregatorConfig::default() }
}

/// One aggregator with its writer and session registry, in the test's actix system.
pub struct Shard {
    pub agg: Addr<Aggregator>,
    pub sessions: Addr<SessionRegistry>,
    pub writer: Addr<RollupWriter>,
}

impl Shard {
    /// Hands the aggregator a first delivery of `b` (epoch 0) and waits until it is applied.
    pub async fn apply(&self, log: &Log, b: Batch) {
        self.agg.send(netqoe_actors::aggregator::Process(delivery(b, false, 0, log))).await.unwrap().unwrap();
    }

    /// Commits everything pending now; the commit must succeed.
    pub async fn drain(&self) {
        self.agg.send(netqoe_actors::aggregator::Drain).await.unwrap().unwrap();
    }
}

pub fn shard(store: &Arc<TestStore>, cfg: AggregatorConfig) -> Shard {
    let s: Arc<dyn RollupStore> = store.clone();
    let writer =
        RollupWriter::new(s.clone(), Retention::default(), Duration::from_secs(3600), 16, Clock::system()).start();
    let sessions = SessionRegistry::new(s.clone(), SessionConfig::default()).start();
    let (w, se) = (writer.clone(), sessions.clone());
    let stopping = Arc::new(AtomicBool::new(false));
    let agg = Supervisor::start(move |_| Aggregator::new(0, cfg, s, w, se, stopping, Clock::system()));
    Shard { agg, sessions, writer }
}

pub async fn session(sessions: &Addr<SessionRegistry>, probe: &str) -> SessionState {
    let all = sessions.send(ListSessions).await.expect("registry").expect("sessions");
    all.into_iter().find(|s| s.probe == probe).unwrap_or_else(|| SessionState::new(probe.to_string()))
}
