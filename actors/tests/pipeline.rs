//! The whole actor graph over the in-memory bus and store: sharding and order per probe, a
//! consumption reset mid-stream, a committed batch delivered again, and the drain.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use netqoe_actors::aggregator::AggregatorConfig;
use netqoe_actors::bus::EventBus;
use netqoe_actors::memory::MemoryBus;
use netqoe_actors::pipeline::{shard_of, Pipeline, PipelineConfig};
use netqoe_actors::session::ListSessions;
use netqoe_domain::Metric;

fn config(shards: usize, flush_batches: usize) -> PipelineConfig {
    PipelineConfig {
        shards,
        prefetch: 32,
        aggregator: AggregatorConfig {
            lateness_ms: 1_000,
            flush_batches,
            flush_interval: Duration::from_millis(10),
            ..AggregatorConfig::default()
        },
        ..PipelineConfig::default()
    }
}

async fn settled(bus: &MemoryBus) {
    tokio::time::timeout(Duration::from_secs(60), bus.settled()).await.expect("the bus settles (every batch acked)");
}

/// Publishes `batches` batches of `per` events for each probe, each batch 5 s after the previous
/// (beyond the 1 s lateness: a batch applied after a newer one of its probe would be dropped as
/// late, so order violations show as missing events).
async fn publish_all(bus: &MemoryBus, probes: usize, batches: u64, per: u64) -> u64 {
    let base = base_ms();
    let now = netqoe_actors::now_ms();
    for b in 0..batches {
        for p in 0..probes {
            let probe = format!("probe-{p:02}");
            let evs = events(&probe, 1 + b * per, per, base + b as i64 * 5_000);
            bus.publish(&probe, evs, now).await.unwrap();
        }
    }
    probes as u64 * batches * per
}

#[actix_rt::test]
async fn one_probes_batches_reach_one_shard_in_publish_order() {
    let store = TestStore::new();
    let bus = MemoryBus::new();
    let pipeline = Pipeline::start(Arc::new(bus.clone()), store.clone(), config(4, 4)).await.unwrap();
    let total = publish_all(&bus, 12, 20, 5).await;
    settled(&bus).await;
    pipeline.drain().await.unwrap();
    assert_eq!(store.events(Metric::Rtt).await, total, "every event once: no reordering, no split probe");
    let sessions = pipeline.sessions.send(ListSessions).await.unwrap().unwrap();
    assert_eq!(sessions.len(), 12);
    for s in &sessions {
        assert_eq!((s.late_dropped, s.duplicates, s.events), (0, 0, 100), "{}", s.probe);
    }
    let threads = store.mark_threads.lock().unwrap().clone();
    for (probe, t) in &threads {
        assert_eq!(t.len(), 1, "{probe} was handled by {} shards", t.len());
    }
    let used: std::collections::HashSet<_> = threads.values().flatten().collect();
    assert!(used.len() > 1, "12 probes over 4 shards use more than one shard");
    assert_eq!(bus.nacked(), 0);
}

#[test]
fn shard_of_is_stable_and_spreads() {
    // FNV-1a: the same value in every process and release (a change would move probes between
    // shards of a running cluster)
    assert_eq!(shard_of("probe-00", 4), shard_of("probe-00", 4));
    assert_eq!(shard_of("", 7), (0xcbf2_9ce4_8422_2325u64 % 7) as usize);
    let mut counts = [0usize; 4];
    for i in 0..400 {
        counts[shard_of(&format!("probe-{i}"), 4)] += 1;
    }
    assert!(counts.iter().all(|c| (60..=140).contains(c)), "{counts:?}");
    assert_eq!(shard_of("anything", 0), 0, "zero shards act as one");
}

#[actix_rt::test]
async fn a_reset_mid_stream_neither_loses_nor_double_counts() {
    let store = TestStore::new();
    let bus = MemoryBus::new();
    let pipeline = Pipeline::start(Arc::new(bus.clone()), store.clone(), config(2, 3)).await.unwrap();
    let mut total = 0;
    for round in 0..4u64 {
        let base = base_ms() + round as i64 * 60_000;
        let now = netqoe_actors::now_ms();
        for b in 0..10u64 {
            for p in 0..6 {
                let probe = format!("probe-{p}");
                let from = 1 + round * 1000 + b * 4;
                bus.publish(&probe, events(&probe, from, 4, base + b as i64 * 2_000), now).await.unwrap();
                total += 4;
            }
        }
        // a reconnect while deliveries are in flight and windows uncommitted
        bus.reset();
    }
    settled(&bus).await;
    pipeline.drain().await.unwrap();
    assert_eq!(store.events(Metric::Rtt).await, total);
}

#[actix_rt::test]
async fn a_committed_batch_delivered_again_is_skipped() {
    let store = TestStore::new();
    let bus = MemoryBus::new();
    let pipeline = Pipeline::start(Arc::new(bus.clone()), store.clone(), config(2, 1)).await.unwrap();
    let now = netqoe_actors::now_ms();
    let evs = events("p", 1, 6, base_ms());
    let id = bus.publish("p", evs.clone(), now).await.unwrap().batch_id.unwrap();
    settled(&bus).await;
    let skipped = netqoe_actors::metrics::BATCHES_SKIPPED.get();
    // the ack was lost: the broker hands the same batch out again
    bus.inject(batch(&id, "p", evs), true);
    settled(&bus).await;
    pipeline.drain().await.unwrap();
    assert!(netqoe_actors::metrics::BATCHES_SKIPPED.get() > skipped);
    assert_eq!(store.events(Metric::Rtt).await, 6);
    assert_eq!(bus.acked(), vec![id.clone(), id]);
}

#[actix_rt::test]
async fn drain_commits_what_is_pending_and_stops_consuming() {
    let store = TestStore::new();
    let bus = MemoryBus::new();
    let cfg = PipelineConfig {
        aggregator: AggregatorConfig {
            flush_interval: Duration::from_secs(3600),
            flush_batches: 1000,
            ..AggregatorConfig::default()
        },
        ..config(2, 1000)
    };
    let pipeline = Pipeline::start(Arc::new(bus.clone()), store.clone(), cfg).await.unwrap();
    let total = publish_all(&bus, 4, 3, 5).await;
    // each probe's first batch is being applied (its mark was read); nothing commits without a drain
    store.until("a mark read for each probe", |s| s.marks.load(std::sync::atomic::Ordering::SeqCst) >= 4).await;
    assert!(bus.acked().is_empty());
    pipeline.drain().await.unwrap();
    let stored = store.events(Metric::Rtt).await;
    assert_eq!(stored, bus.acked().len() as u64 * 5, "exactly the acked batches are stored");
    assert!(stored > 0 && stored <= total);
    // consumption stopped: a batch published now is neither applied nor acked
    bus.publish("late", events("late", 1, 1, base_ms()), netqoe_actors::now_ms()).await.unwrap();
    pipeline.commit_now().await.unwrap();
    assert_eq!(store.events(Metric::Rtt).await, stored);
    assert!(bus.outstanding() >= 1);
}

/// With fewer pending batches than `flush_batches`, the periodic flush (every `flush_interval`)
/// commits and acks them.
#[actix_rt::test]
async fn the_periodic_flush_commits_what_is_pending() {
    let store = TestStore::new();
    let bus = MemoryBus::new();
    let pipeline = Pipeline::start(Arc::new(bus.clone()), store.clone(), config(1, 1000)).await.unwrap();
    bus.publish("p", events("p", 1, 3, base_ms()), netqoe_actors::now_ms()).await.unwrap();
    settled(&bus).await;
    assert_eq!(store.events(Metric::Rtt).await, 3);
    drop(pipeline);
}

/// The writer prunes on its schedule: expired windows leave the store without anyone asking.
#[actix_rt::test]
async fn the_writer_prunes_expired_windows_on_its_schedule() {
    use actix::Actor;
    use netqoe_actors::store::{Retention, RollupStore, WriteSet};
    let store = TestStore::new();
    let old = netqoe_domain::Rollup {
        key: netqoe_domain::WindowKey {
            probe: "p".into(),
            target: "t".into(),
            metric: Metric::Rtt,
            tier: netqoe_domain::Tier::M1,
            start_ms: 0,
        },
        agg: Default::default(),
        applied: Default::default(),
        revision: 1,
        closed: true,
    };
    store.inner.commit(WriteSet { rollups: vec![old], ..Default::default() }).await.unwrap();
    let short = Retention { m1_ms: 1, h1_ms: 1, d1_ms: 1, dedup_ms: 1, reopen_ms: 0 };
    let s: Arc<dyn RollupStore> = store.clone();
    let _writer = netqoe_actors::writer::RollupWriter::new(
        s,
        short,
        Duration::from_millis(10),
        4,
        netqoe_actors::Clock::system(),
    )
    .start();
    store.until("the expired window is pruned", |s| s.pruned.load(std::sync::atomic::Ordering::SeqCst) >= 1).await;
    assert_eq!(store.m1(Metric::Rtt).await.len(), 0);
}
