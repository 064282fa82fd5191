//! A store that stops answering (retryable errors) while batches keep arriving: every accepted
//! event is counted once the store is back, none dropped as late. The aggregator holds the batch
//! it cannot load and waits for the store; were it to requeue it, the probe's newer batches would
//! pass it, advance the watermark by more than the allowed lateness, and the older events — each
//! answered 202 — would be dropped as late (found by `tests/scylla_restart.rs` on a real CQL
//! server; reproduced here without one).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::{eventually, icmp_event};
use async_trait::async_trait;
use netqoe::sqlite::Sqlite;
use netqoe_actors::bus::{BatchId, EventBus};
use netqoe_actors::memory::MemoryStore;
use netqoe_actors::pipeline::{Pipeline, PipelineConfig};
use netqoe_actors::store::{
    CommitReport, IncidentQuery, ProbeMark, Retention, RollupQuery, RollupStore, StoreError, WriteSet,
};
use netqoe_domain::diagnosis::Incident;
use netqoe_domain::{Metric, Rollup, SessionState, Tier, WindowKey};

/// A `MemoryStore` that answers `Unavailable` to everything while `down`.
struct Outage {
    inner: MemoryStore,
    down: AtomicBool,
}

impl Outage {
    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::unavailable("test outage"))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl RollupStore for Outage {
    async fn commit(&self, ws: WriteSet) -> Result<CommitReport, StoreError> {
        self.check()?;
        self.inner.commit(ws).await
    }
    async fn load_windows(&self, keys: &[WindowKey]) -> Result<Vec<Rollup>, StoreError> {
        self.check()?;
        self.inner.load_windows(keys).await
    }
    async fn load_mark(&self, probe: &str) -> Result<Option<ProbeMark>, StoreError> {
        self.check()?;
        self.inner.load_mark(probe).await
    }
    async fn processed(&self, ids: &[BatchId]) -> Result<Vec<BatchId>, StoreError> {
        self.check()?;
        self.inner.processed(ids).await
    }
    async fn query(&self, q: &RollupQuery) -> Result<Vec<Rollup>, StoreError> {
        self.check()?;
        self.inner.query(q).await
    }
    async fn save_sessions(&self, sessions: &[SessionState]) -> Result<(), StoreError> {
        self.check()?;
        self.inner.save_sessions(sessions).await
    }
    async fn load_session(&self, probe: &str) -> Result<Option<SessionState>, StoreError> {
        self.check()?;
        self.inner.load_session(probe).await
    }
    async fn list_sessions(&self) -> Result<Vec<SessionState>, StoreError> {
        self.check()?;
        self.inner.list_sessions().await
    }
    async fn save_incidents(&self, incidents: &[Incident]) -> Result<(), StoreError> {
        self.check()?;
        self.inner.save_incidents(incidents).await
    }
    async fn list_incidents(&self, q: &IncidentQuery) -> Result<Vec<Incident>, StoreError> {
        self.check()?;
        self.inner.list_incidents(q).await
    }
    async fn prune(&self, now_ms: i64, retention: &Retention) -> Result<u64, StoreError> {
        self.check()?;
        self.inner.prune(now_ms, retention).await
    }
    async fn ready(&self) -> Result<(), StoreError> {
        self.check()
    }
    fn name(&self) -> &'static str {
        "outage"
    }
}

async fn per_minute(store: &dyn RollupStore, from: i64, to: i64) -> std::collections::BTreeMap<i64, u64> {
    let q = RollupQuery {
        probe: None,
        target: None,
        metric: Some(Metric::Rtt),
        tier: Tier::M1,
        from_ms: from,
        to_ms: to,
        limit: 10_000,
        after: None,
    };
    store.query(&q).await.unwrap().iter().map(|r| (r.key.start_ms, r.agg.count)).collect()
}

#[actix_rt::test]
async fn batches_arriving_during_a_store_outage_are_all_counted_once_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Sqlite::open(dir.path()).unwrap();
    let outage = Arc::new(Outage { inner: MemoryStore::new(), down: AtomicBool::new(false) });
    let store: Arc<dyn RollupStore> = outage.clone();
    let mut cfg = PipelineConfig::default();
    cfg.aggregator.flush_interval = Duration::from_millis(20);
    cfg.shards = 1;
    let p = Pipeline::start(Arc::new(journal.clone()), store.clone(), cfg).await.unwrap();
    let now = netqoe_actors::now_ms();
    let base = (now - 3 * 3_600_000) / 60_000 * 60_000;
    let mut oracle = std::collections::BTreeMap::new();
    let mut seq = 0u64;
    // one batch per event-time minute: every batch needs a window the aggregator must load
    let mut publish = |minute: i64| {
        let ts = base + minute * 60_000;
        let evs: Vec<_> = (0..5).map(|k| icmp_event(&format!("e{}", seq + k), seq + k, ts + k as i64 * 1000)).collect();
        seq += 5;
        *oracle.entry(ts).or_insert(0u64) += 5;
        (evs, ts)
    };
    for minute in 0..3 {
        let (evs, ts) = publish(minute);
        journal.publish("p", evs, ts).await.unwrap();
    }
    eventually(20, "before the outage: stored", || async {
        (per_minute(store.as_ref(), base, base + 3_600_000).await.values().sum::<u64>() == 15).then_some(())
    })
    .await;
    // down for 2 s while 20 more minutes of event time (far past the allowed lateness) arrive,
    // then up while more keep arriving
    outage.down.store(true, Ordering::SeqCst);
    for minute in 3..23 {
        let (evs, ts) = publish(minute);
        journal.publish("p", evs, ts).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    outage.down.store(false, Ordering::SeqCst);
    for minute in 23..30 {
        let (evs, ts) = publish(minute);
        journal.publish("p", evs, ts).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let want = oracle.clone();
    eventually(30, "every accepted event counted once the store is back", || async {
        (per_minute(store.as_ref(), base, base + 3_600_000).await == want).then_some(())
    })
    .await;
    assert_eq!(journal.dead_letter_count().await.unwrap(), 0, "an outage dead-letters nothing");
    p.drain().await.unwrap();
}
