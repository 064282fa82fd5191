//! The aggregator over the in-memory store: acks only after the commit that holds a batch,
//! re-sent events counted once, committed redeliveries skipped, deliveries of an ended consumption
//! never applied, failed commits retried without loss or double counting, drains that commit.

mod common;

use std::sync::atomic::Ordering;

use common::*;
use netqoe_actors::aggregator::{Drain, Process, Reset};
use netqoe_actors::store::RollupStore;
use netqoe_domain::Metric;

#[actix_rt::test]
async fn a_batch_is_acked_only_after_the_commit_that_holds_it() {
    let store = TestStore::new();
    let s = shard(&store, quiet_config());
    let log = Log::default();
    let b = batch("b1", "p1", events("p1", 1, 5, base_ms()));
    s.agg.send(Process(delivery(b, false, 0, &log))).await.unwrap().unwrap();
    assert!(log.all().is_empty(), "acked before any commit: {:?}", log.all());
    assert_eq!(store.events(Metric::Rtt).await, 0, "nothing may be stored before the commit");

    s.agg.send(Drain).await.unwrap().unwrap();
    assert_eq!(log.acked(), vec!["b1".to_string()]);
    assert_eq!(store.events(Metric::Rtt).await, 5, "the drain commits the open window");
    let w = &store.m1(Metric::Rtt).await[0];
    assert!(!w.closed, "an open window is committed as a partial revision");
    // a second drain finds nothing left and writes nothing
    let commits = store.commits.load(Ordering::SeqCst);
    s.agg.send(Drain).await.unwrap().unwrap();
    assert_eq!(store.commits.load(Ordering::SeqCst), commits);
}

#[actix_rt::test]
async fn a_full_set_of_pending_batches_commits_without_a_timer() {
    let store = TestStore::new();
    let cfg = netqoe_actors::aggregator::AggregatorConfig { flush_batches: 3, ..quiet_config() };
    let s = shard(&store, cfg);
    let log = Log::default();
    let base = base_ms();
    for i in 0..3u64 {
        let b = batch(&format!("b{i}"), "p1", events("p1", 1 + i * 10, 10, base + i as i64 * 10_000));
        s.agg.send(Process(delivery(b, false, 0, &log))).await.unwrap().unwrap();
    }
    assert_eq!(log.acked().len(), 3, "the third pending batch triggers the commit");
    assert_eq!(store.events(Metric::Rtt).await, 30);
}

/// Guarantee 1 at the actor: a batch with a new id carrying events already counted (a probe that
/// re-sent after a lost 202) adds nothing, in memory and after a restart (from the stored set).
#[actix_rt::test]
async fn re_sent_events_in_a_new_batch_count_once() {
    let store = TestStore::new();
    let s = shard(&store, quiet_config());
    let log = Log::default();
    let evs = events("p1", 1, 8, base_ms());
    s.agg.send(Process(delivery(batch("a", "p1", evs.clone()), false, 0, &log))).await.unwrap().unwrap();
    s.agg.send(Process(delivery(batch("b", "p1", evs.clone()), false, 0, &log))).await.unwrap().unwrap();
    s.agg.send(Drain).await.unwrap().unwrap();
    assert_eq!(store.events(Metric::Rtt).await, 8);
    let sess = session(&s.sessions, "p1").await;
    assert_eq!((sess.events, sess.duplicates), (8, 8));

    // a fresh aggregator (process restart): the window comes from the store with its event set
    let s2 = shard(&store, quiet_config());
    let mut more = evs.clone();
    more.extend(events("p1", 9, 2, base_ms() + 8_000));
    s2.agg.send(Process(delivery(batch("c", "p1", more), false, 0, &log))).await.unwrap().unwrap();
    s2.agg.send(Drain).await.unwrap().unwrap();
    assert_eq!(store.events(Metric::Rtt).await, 10, "only the two new events are added");
    assert_eq!(log.acked(), vec!["a", "b", "c"]);
}

/// Guarantee 2: a redelivered batch whose commit landed (the ack was lost) is acked without being
/// applied again: no window read, no second observation, the skip counted.
#[actix_rt::test]
async fn a_redelivered_batch_already_committed_is_acked_without_being_applied() {
    let store = TestStore::new();
    let s = shard(&store, quiet_config());
    let log = Log::default();
    let b = batch("once", "p1", events("p1", 1, 4, base_ms()));
    s.agg.send(Process(delivery(b.clone(), false, 0, &log))).await.unwrap().unwrap();
    s.agg.send(Drain).await.unwrap().unwrap();

    let s2 = shard(&store, quiet_config());
    let loads = store.loads.load(Ordering::SeqCst);
    let skipped = netqoe_actors::metrics::BATCHES_SKIPPED.get();
    s2.agg.send(Process(delivery(b, true, 0, &log))).await.unwrap().unwrap();
    assert_eq!(log.acked(), vec!["once", "once"], "the redelivery is acked at once");
    assert_eq!(store.loads.load(Ordering::SeqCst), loads, "a committed batch must not be loaded and re-applied");
    assert!(netqoe_actors::metrics::BATCHES_SKIPPED.get() > skipped, "netqoe_batches_redelivered_skipped_total");
    s2.agg.send(Drain).await.unwrap().unwrap();
    let sess = session(&s2.sessions, "p1").await;
    assert_eq!((sess.batches, sess.duplicates), (0, 0), "a skipped redelivery is not observed again");
    assert_eq!(store.events(Metric::Rtt).await, 4);
}

/// A first delivery (not flagged redelivered) is never looked up: the lookup costs a read per
/// batch and only a redelivery can have been committed before.
#[actix_rt::test]
async fn only_redeliveries_are_looked_up_among_committed_batches() {
    let store = TestStore::new();
    let s = shard(&store, quiet_config());
    let log = Log::default();
    s.agg
        .send(Process(delivery(batch("x", "p1", events("p1", 1, 2, base_ms())), false, 0, &log)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.processed_calls.load(Ordering::SeqCst), 0);
}

/// Guarantee 3: after a consumption reset, deliveries of the ended consumption still queued are
/// never applied (the bus hands them out again, possibly to another consumer), and what was
/// pending is forgotten unacked.
#[actix_rt::test]
async fn deliveries_from_before_a_reset_are_never_applied() {
    let store = TestStore::new();
    let s = shard(&store, quiet_config());
    let log = Log::default();
    let base = base_ms();
    s.agg
        .send(Process(delivery(batch("old-1", "p1", events("p1", 1, 3, base)), false, 0, &log)))
        .await
        .unwrap()
        .unwrap();
    s.agg.send(Reset { epoch: 1 }).await.unwrap();
    assert_eq!(log.all(), vec![Settled::Dropped("old-1".into())], "pending work of the old epoch is given back");
    // a delivery of epoch 0 that was still queued in the lane
    s.agg
        .send(Process(delivery(batch("old-2", "p1", events("p1", 4, 3, base + 3_000)), false, 0, &log)))
        .await
        .unwrap()
        .unwrap();
    s.agg.send(Drain).await.unwrap().unwrap();
    assert_eq!(store.events(Metric::Rtt).await, 0, "nothing of the ended consumption may be counted");
    assert_eq!(log.all(), vec![Settled::Dropped("old-1".into()), Settled::Dropped("old-2".into())]);

    // the redeliveries of the new epoch are applied, once
    s.agg
        .send(Process(delivery(batch("old-1", "p1", events("p1", 1, 3, base)), true, 1, &log)))
        .await
        .unwrap()
        .unwrap();
    s.agg
        .send(Process(delivery(batch("old-2", "p1", events("p1", 4, 3, base + 3_000)), true, 1, &log)))
        .await
        .unwrap()
        .unwrap();
    s.agg.send(Drain).await.unwrap().unwrap();
    assert_eq!(store.events(Metric::Rtt).await, 6);
    assert_eq!(log.acked(), vec!["old-1", "old-2"]);
}

/// Item 7: a failed commit acks nothing; the retry writes a higher revision holding everything,
/// and nothing is counted twice.
#[actix_rt::test]
async fn a_failed_commit_keeps_its_batches_unacked_and_the_retry_counts_them_once() {
    let store = TestStore::new();
    let s = shard(&store, quiet_config());
    let log = Log::default();
    let base = base_ms();
    s.agg.send(Process(delivery(batch("f1", "p1", events("p1", 1, 5, base)), false, 0, &log))).await.unwrap().unwrap();
    store.fail_commits.store(1, Ordering::SeqCst);
    assert!(s.agg.send(Drain).await.unwrap().is_err(), "the drain reports the failed commit");
    assert!(log.all().is_empty(), "nothing may be acked after a failed commit: {:?}", log.all());
    assert_eq!(store.events(Metric::Rtt).await, 0);

    // more events for the same window arrive before the retry
    s.agg
        .send(Process(delivery(batch("f2", "p1", events("p1", 6, 5, base + 5_000)), false, 0, &log)))
        .await
        .unwrap()
        .unwrap();
    s.agg.send(Drain).await.unwrap().unwrap();
    assert_eq!(log.acked(), vec!["f1", "f2"]);
    assert_eq!(store.events(Metric::Rtt).await, 10);
    let w = &store.m1(Metric::Rtt).await[0];
    assert_eq!(w.revision, 2, "the failed revision's number is not reused");

    // and a restart after that reads back the whole event set: re-sending f1 adds nothing
    let s2 = shard(&store, quiet_config());
    s2.agg
        .send(Process(delivery(batch("f1-again", "p1", events("p1", 1, 5, base)), false, 0, &log)))
        .await
        .unwrap()
        .unwrap();
    s2.agg.send(Drain).await.unwrap().unwrap();
    assert_eq!(store.events(Metric::Rtt).await, 10, "the delta of the failed commit was written with the retry");
}

/// A watermark that passes a window's end commits it closed, and its 1h parent is derived.
#[actix_rt::test]
async fn a_window_the_watermark_passes_is_committed_closed_with_its_parents() {
    let store = TestStore::new();
    let cfg = netqoe_actors::aggregator::AggregatorConfig { lateness_ms: 1_000, ..quiet_config() };
    let s = shard(&store, cfg);
    let log = Log::default();
    let base = base_ms();
    s.agg.send(Process(delivery(batch("w1", "p1", events("p1", 1, 3, base)), false, 0, &log))).await.unwrap().unwrap();
    s.agg
        .send(Process(delivery(batch("w2", "p1", events("p1", 4, 1, base + 3 * 60_000)), false, 0, &log)))
        .await
        .unwrap()
        .unwrap();
    s.agg.send(Drain).await.unwrap().unwrap();
    let m1 = store.m1(Metric::Rtt).await;
    assert_eq!(m1.len(), 2);
    assert!(m1.iter().find(|r| r.key.start_ms == base).unwrap().closed, "the passed window is closed");
    let h1 = store
        .inner
        .query(&netqoe_actors::store::RollupQuery {
            tier: netqoe_domain::Tier::H1,
            from_ms: 0,
            to_ms: i64::MAX,
            probe: None,
            target: None,
            metric: Some(Metric::Rtt),
            after: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(h1.iter().map(|r| r.agg.events).sum::<u64>(), 4, "the hour holds every committed minute");
}

/// While the store cannot answer a load, the batch is held (not released, not dropped): the
/// shard stops, and it is applied once the store is back.
#[actix_rt::test]
async fn a_batch_waits_for_an_unavailable_store_instead_of_being_passed() {
    let store = TestStore::new();
    let s = shard(&store, quiet_config());
    let log = Log::default();
    store.down.store(true, Ordering::SeqCst);
    let fut = s.agg.send(Process(delivery(batch("held", "p1", events("p1", 1, 2, base_ms())), false, 0, &log)));
    let handle = actix_rt::spawn(fut);
    // the load is refused and retried with backoff while the delivery stays in hand
    store.until("three refused loads", |s| s.down_hits.load(Ordering::SeqCst) >= 3).await;
    assert!(!handle.is_finished(), "the batch must be held while the store is down");
    assert!(log.all().is_empty());
    store.down.store(false, Ordering::SeqCst);
    handle.await.unwrap().unwrap().unwrap();
    s.agg.send(Drain).await.unwrap().unwrap();
    assert_eq!(log.acked(), vec!["held"]);
    assert_eq!(store.events(Metric::Rtt).await, 2);
}

/// An event some of whose windows already hold it (a window stored from an earlier run, its
/// sibling not) is added only to the windows that lack it.
#[actix_rt::test]
async fn an_event_already_in_some_of_its_windows_is_added_only_to_the_others() {
    let store = TestStore::new();
    let base = base_ms();
    let mut e = icmp("p1-1", 1, base + 1_000, "t1");
    e.jitter_ms = Some(2.0);
    // the rtt window already holds the event; the jitter window does not exist yet
    let rtt = e.contributions().into_iter().find(|c| c.metric == Metric::Rtt).unwrap();
    let mut agg = netqoe_domain::WindowAgg::default();
    agg.add(&rtt);
    let mut applied = netqoe_domain::EventSet::default();
    applied.insert(netqoe_domain::event_hash(&e.event_id));
    let key = netqoe_domain::WindowKey {
        probe: "p1".into(),
        target: "t1".into(),
        metric: Metric::Rtt,
        tier: netqoe_domain::Tier::M1,
        start_ms: base,
    };
    let seeded = netqoe_domain::Rollup { key, agg, applied, revision: 1, closed: false };
    store.inner.commit(netqoe_actors::store::WriteSet { rollups: vec![seeded], ..Default::default() }).await.unwrap();

    let s = shard(&store, quiet_config());
    let log = Log::default();
    s.agg.send(Process(delivery(batch("part", "p1", vec![e]), false, 0, &log))).await.unwrap().unwrap();
    s.agg.send(Drain).await.unwrap().unwrap();
    assert_eq!(store.events(Metric::Rtt).await, 1, "the rtt window had it already");
    assert_eq!(store.events(Metric::Jitter).await, 1, "the jitter window gets it");
    let sess = session(&s.sessions, "p1").await;
    assert_eq!((sess.events, sess.duplicates), (1, 0), "not a duplicate: one of its windows lacked it");
}
