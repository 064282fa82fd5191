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

    s.drain().await;
    assert_eq!(log.acked(), vec!["b1".to_string()]);
    assert_eq!(store.events(Metric::Rtt).await, 5, "the drain commits the open window");
    let w = &store.m1(Metric::Rtt).await[0];
    assert!(!w.closed, "an open window is committed as a partial revision");
    // a second drain finds nothing left and writes nothing
    let commits = store.commits.load(Ordering::SeqCst);
    s.drain().await;
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
    s.apply(&log, batch("a", "p1", evs.clone())).await;
    s.apply(&log, batch("b", "p1", evs.clone())).await;
    s.drain().await;
    assert_eq!(store.events(Metric::Rtt).await, 8);
    let sess = session(&s.sessions, "p1").await;
    assert_eq!((sess.events, sess.duplicates), (8, 8));

    // a fresh aggregator (process restart): the window comes from the store with its event set
    let s2 = shard(&store, quiet_config());
    let mut more = evs.clone();
    more.extend(events("p1", 9, 2, base_ms() + 8_000));
    s2.apply(&log, batch("c", "p1", more)).await;
    s2.drain().await;
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
    s.drain().await;

    let s2 = shard(&store, quiet_config());
    let loads = store.loads.load(Ordering::SeqCst);
    let skipped = netqoe_actors::metrics::BATCHES_SKIPPED.get();
    s2.agg.send(Process(delivery(b, true, 0, &log))).await.unwrap().unwrap();
    assert_eq!(log.acked(), vec!["once", "once"], "the redelivery is acked at once");
    assert_eq!(store.loads.load(Ordering::SeqCst), loads, "a committed batch must not be loaded and re-applied");
    assert!(netqoe_actors::metrics::BATCHES_SKIPPED.get() > skipped, "netqoe_batches_redelivered_skipped_total");
    s2.drain().await;
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
    s.apply(&log, batch("x", "p1", events("p1", 1, 2, base_ms()))).await;
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
    s.apply(&log, batch("old-1", "p1", events("p1", 1, 3, base))).await;
    s.agg.send(Reset { epoch: 1 }).await.unwrap();
    assert_eq!(log.all(), vec![Settled::Dropped("old-1".into())], "pending work of the old epoch is given back");
    // a delivery of epoch 0 that was still queued in the lane
    s.apply(&log, batch("old-2", "p1", events("p1", 4, 3, base + 3_000))).await;
    s.drain().await;
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
    s.drain().await;
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
    s.apply(&log, batch("f1", "p1", events("p1", 1, 5, base))).await;
    store.fail_commits.store(1, Ordering::SeqCst);
    assert!(s.agg.send(Drain).await.unwrap().is_err(), "the drain reports the failed commit");
    assert!(log.all().is_empty(), "nothing may be acked after a failed commit: {:?}", log.all());
    assert_eq!(store.events(Metric::Rtt).await, 0);

    // more events for the same window arrive before the retry
    s.apply(&log, batch("f2", "p1", events("p1", 6, 5, base + 5_000))).await;
    s.drain().await;
    assert_eq!(log.acked(), vec!["f1", "f2"]);
    assert_eq!(store.events(Metric::Rtt).await, 10);
    let w = &store.m1(Metric::Rtt).await[0];
    assert_eq!(w.revision, 2, "the failed revision's number is not reused");

    // and a restart after that reads back the whole event set: re-sending f1 adds nothing
    let s2 = shard(&store, quiet_config());
    s2.apply(&log, batch("f1-again", "p1", events("p1", 1, 5, base))).await;
    s2.drain().await;
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
    s.apply(&log, batch("w1", "p1", events("p1", 1, 3, base))).await;
    s.apply(&log, batch("w2", "p1", events("p1", 4, 1, base + 3 * 60_000))).await;
    s.drain().await;
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
    s.drain().await;
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
    s.apply(&log, batch("part", "p1", vec![e])).await;
    s.drain().await;
    assert_eq!(store.events(Metric::Rtt).await, 1, "the rtt window had it already");
    assert_eq!(store.events(Metric::Jitter).await, 1, "the jitter window gets it");
    let sess = session(&s.sessions, "p1").await;
    assert_eq!((sess.events, sess.duplicates), (1, 0), "not a duplicate: one of its windows lacked it");
}

/// Many windows in memory at once stay distinct: a lookup by borrowed key finds only its own
/// window (a hash-equal key with another probe, target, metric or minute is not it).
#[actix_rt::test]
async fn a_thousand_windows_in_memory_keep_their_own_counts() {
    let store = TestStore::new();
    let s = shard(&store, quiet_config());
    let log = Log::default();
    let base = base_ms() - 20 * 60_000;
    let mut evs = Vec::new();
    let mut seq = 0;
    for minute in 0..10i64 {
        for t in 0..100 {
            // target t gets t % 3 + 1 events in each minute
            for _ in 0..(t % 3 + 1) {
                seq += 1;
                evs.push(icmp(&format!("e{seq}"), seq, base + minute * 60_000 + seq as i64 % 50_000, &format!("t{t}")));
            }
        }
    }
    s.apply(&log, batch("many", "p1", evs)).await;
    s.drain().await;
    let m1 = store.m1(Metric::Rtt).await;
    assert_eq!(m1.len(), 1000);
    for r in &m1 {
        let t: u64 = r.key.target[1..].parse().unwrap();
        assert_eq!(r.agg.events, t % 3 + 1, "{:?}", r.key);
    }
}

/// Events older than the watermark allows are dropped, counted as late in the session, and not
/// stored; the probe's stored mark keeps the highest seq even when lower ones come later.
#[actix_rt::test]
async fn late_events_are_dropped_and_counted_and_the_mark_keeps_the_highest_seq() {
    let store = TestStore::new();
    let cfg = netqoe_actors::aggregator::AggregatorConfig { lateness_ms: 1_000, ..quiet_config() };
    let s = shard(&store, cfg);
    let log = Log::default();
    let base = base_ms();
    let newest = base + 3 * 60_000;
    let send = |id: &'static str, evs| s.agg.send(Process(delivery(batch(id, "p1", evs), false, 0, &log)));
    send("new", events("p1", 10, 3, newest)).await.unwrap().unwrap();
    // seqs 1..3 in the minute at base, which the watermark (newest − 1 s) has closed: dropped
    send("old", events("p1", 1, 3, base)).await.unwrap().unwrap();
    // an event older than the newest but in a window still open is accepted
    send("inside", vec![icmp("p1-in", 5, newest + 100, "t1")]).await.unwrap().unwrap();
    s.drain().await;
    assert_eq!(store.events(Metric::Rtt).await, 4);
    let sess = session(&s.sessions, "p1").await;
    assert_eq!((sess.events, sess.late_dropped), (4, 3));
    let mark = store.inner.load_mark("p1").await.unwrap().unwrap();
    assert_eq!(mark.max_seq, Some(12), "lower seqs arriving later do not lower the mark");
    assert_eq!(mark.max_event_ms, Some(newest + 2_000));
}

/// A window committed while open is committed again, closed, when a later batch moves the
/// watermark past it — although nothing was added to it — and only once.
#[actix_rt::test]
async fn an_untouched_window_is_committed_closed_once_when_the_watermark_passes_it() {
    let store = TestStore::new();
    let cfg = netqoe_actors::aggregator::AggregatorConfig { lateness_ms: 1_000, ..quiet_config() };
    let s = shard(&store, cfg);
    let log = Log::default();
    let base = base_ms();
    s.apply(&log, batch("a", "p1", events("p1", 1, 2, base))).await;
    s.drain().await;
    let first = store.m1(Metric::Rtt).await;
    assert_eq!((first[0].revision, first[0].closed), (1, false));
    s.apply(&log, batch("b", "p1", events("p1", 3, 1, base + 2 * 60_000))).await;
    s.drain().await;
    let w = store.m1(Metric::Rtt).await.into_iter().find(|r| r.key.start_ms == base).unwrap();
    assert_eq!((w.revision, w.closed, w.agg.events), (2, true, 2), "re-written closed, unchanged");
    // nothing new: a further commit does not write it again
    s.apply(&log, batch("c", "p1", events("p1", 4, 1, base + 2 * 60_000 + 1_000))).await;
    s.drain().await;
    let w = store.m1(Metric::Rtt).await.into_iter().find(|r| r.key.start_ms == base).unwrap();
    assert_eq!(w.revision, 2, "a closed window is emitted once");
}

async fn hour_events(store: &TestStore) -> u64 {
    let q = netqoe_actors::store::RollupQuery {
        tier: netqoe_domain::Tier::H1,
        from_ms: 0,
        to_ms: i64::MAX,
        probe: None,
        target: None,
        metric: Some(Metric::Rtt),
        after: None,
        limit: 10,
    };
    store.inner.query(&q).await.unwrap().iter().map(|r| r.agg.events).sum()
}

/// The 1h parent is derived at a window's first commit, then not again before
/// `derive_interval_ms` — unless the window closes (or a drain asks for every parent).
#[actix_rt::test]
async fn parents_are_derived_at_first_commit_on_close_and_not_at_every_flush() {
    let store = TestStore::new();
    let cfg = netqoe_actors::aggregator::AggregatorConfig {
        lateness_ms: 1_000,
        flush_batches: 1,
        derive_interval_ms: 3_600_000,
        ..quiet_config()
    };
    let s = shard(&store, cfg);
    let log = Log::default();
    // 70 minutes back: the closing batch below (61 minutes later, so in another hour) is still
    // in the past, where the watermark can pass the first window
    let base = base_ms() - 70 * 60_000;
    s.apply(&log, batch("a", "p1", events("p1", 1, 2, base))).await;
    assert_eq!((store.events(Metric::Rtt).await, hour_events(&store).await), (2, 2), "derived at the first commit");
    s.apply(&log, batch("b", "p1", events("p1", 3, 2, base + 10_000))).await;
    assert_eq!(
        (store.events(Metric::Rtt).await, hour_events(&store).await),
        (4, 2),
        "not re-derived within the interval"
    );
    // the watermark passes the window: it closes and its parent is brought up to date
    s.apply(&log, batch("c", "p1", events("p1", 5, 1, base + 61 * 60_000))).await;
    // the first hour re-derived because its window closed (4), the new hour at its first commit (1)
    assert_eq!(hour_events(&store).await, 5, "the closed window's hour and the new one's");
    assert_eq!(log.acked(), vec!["a", "b", "c"]);
}

/// A batch whose events are all duplicates changes no window and no mark, and is still acked at
/// the next commit (a commit with only batch ids in it).
#[actix_rt::test]
async fn a_batch_of_only_duplicates_is_acked_at_the_next_commit() {
    let store = TestStore::new();
    let s = shard(&store, quiet_config());
    let log = Log::default();
    let evs = events("p1", 1, 3, base_ms());
    s.apply(&log, batch("a", "p1", evs.clone())).await;
    s.drain().await;
    s.apply(&log, batch("dup", "p1", evs)).await;
    s.drain().await;
    assert_eq!(log.acked(), vec!["a", "dup"]);
    assert!(!store.inner.processed(&["dup".to_string()]).await.unwrap().is_empty(), "its id is committed");
}

/// Committed windows idle longer than `idle_evict_ms` leave memory: the next event for one is
/// applied to the state read back from the store (nothing lost, nothing doubled).
#[actix_rt::test]
async fn idle_windows_are_evicted_after_their_commit_and_read_back_when_needed() {
    let store = TestStore::new();
    let cfg = netqoe_actors::aggregator::AggregatorConfig { idle_evict_ms: -1, ..quiet_config() };
    let s = shard(&store, cfg);
    let log = Log::default();
    let base = base_ms();
    let send = |id: &'static str, evs| s.agg.send(Process(delivery(batch(id, "p1", evs), false, 0, &log)));
    send("a", events("p1", 1, 2, base)).await.unwrap().unwrap();
    s.drain().await;
    let (loads, marks) = (store.loads.load(Ordering::SeqCst), store.marks.load(Ordering::SeqCst));
    send("b", events("p1", 3, 2, base + 5_000)).await.unwrap().unwrap();
    assert_eq!(store.loads.load(Ordering::SeqCst), loads + 1, "the evicted window is read back");
    assert_eq!(store.marks.load(Ordering::SeqCst), marks + 1, "the evicted probe's mark is read back");
    s.drain().await;
    assert_eq!(store.events(Metric::Rtt).await, 4);
}

/// Within `idle_evict_ms` (and while open) a committed window and its probe stay in memory: the
/// next batch reads nothing from the store.
#[actix_rt::test]
async fn recently_used_windows_stay_in_memory_after_their_commit() {
    let store = TestStore::new();
    let s = shard(&store, quiet_config()); // idle_evict_ms: 5 minutes
    let log = Log::default();
    let base = base_ms();
    let send = |id: &'static str, evs| s.agg.send(Process(delivery(batch(id, "p1", evs), false, 0, &log)));
    send("a", events("p1", 1, 2, base)).await.unwrap().unwrap();
    s.drain().await;
    let (loads, marks) = (store.loads.load(Ordering::SeqCst), store.marks.load(Ordering::SeqCst));
    send("b", events("p1", 3, 2, base + 5_000)).await.unwrap().unwrap();
    assert_eq!(store.loads.load(Ordering::SeqCst), loads, "the window is still in memory");
    assert_eq!(store.marks.load(Ordering::SeqCst), marks, "the probe is still in memory");
    s.drain().await;
    assert_eq!(store.events(Metric::Rtt).await, 4);
}

/// A store error that a retry cannot fix is not waited on: the batch is given back (unacked, so
/// the bus counts a failed delivery toward its dead-letter limit) and the shard goes on.
#[actix_rt::test]
async fn a_rejected_read_gives_the_batch_back_instead_of_waiting() {
    let store = TestStore::new();
    let s = shard(&store, quiet_config());
    let log = Log::default();
    store.reject_reads.store(true, Ordering::SeqCst);
    let r =
        s.agg.send(Process(delivery(batch("x", "p1", events("p1", 1, 2, base_ms())), false, 0, &log))).await.unwrap();
    assert!(r.is_err(), "the handler reports the error");
    assert_eq!(log.all(), vec![Settled::Dropped("x".into())]);
    store.reject_reads.store(false, Ordering::SeqCst);
    let r =
        s.agg.send(Process(delivery(batch("y", "p1", events("p1", 3, 2, base_ms())), false, 0, &log))).await.unwrap();
    assert!(r.is_ok(), "the shard is not stuck");
}

/// A probe's stored mark is read when its state is not in memory: after a restart, an event for
/// a window the stored watermark has closed is dropped as late, as it would have been before.
#[actix_rt::test]
async fn a_restarted_aggregator_judges_lateness_by_the_stored_mark() {
    let store = TestStore::new();
    let cfg = netqoe_actors::aggregator::AggregatorConfig { lateness_ms: 1_000, ..quiet_config() };
    let s = shard(&store, cfg.clone());
    let log = Log::default();
    let base = base_ms();
    s.apply(&log, batch("a", "p1", events("p1", 10, 1, base + 5 * 60_000))).await;
    s.drain().await;
    let s2 = shard(&store, cfg);
    s2.apply(&log, batch("old", "p1", events("p1", 1, 2, base))).await;
    s2.drain().await;
    assert_eq!(store.events(Metric::Rtt).await, 1, "the old events are late by the stored watermark");
    assert_eq!(session(&s2.sessions, "p1").await.late_dropped, 2);
}

/// Two copies of one batch pending at once (a redelivery while the first is uncommitted) are
/// both settled by the commit that holds it, and counted once.
#[actix_rt::test]
async fn a_second_copy_pending_is_settled_with_the_first() {
    let store = TestStore::new();
    let s = shard(&store, quiet_config());
    let log = Log::default();
    let b = batch("twice", "p1", events("p1", 1, 3, base_ms()));
    s.agg.send(Process(delivery(b.clone(), false, 0, &log))).await.unwrap().unwrap();
    s.agg.send(Process(delivery(b, true, 0, &log))).await.unwrap().unwrap();
    assert_eq!(store.processed_calls.load(Ordering::SeqCst), 0, "a pending copy needs no store lookup");
    s.drain().await;
    assert_eq!(log.acked(), vec!["twice", "twice"]);
    assert_eq!(store.events(Metric::Rtt).await, 3);
    assert_eq!(session(&s.sessions, "p1").await.batches, 1, "observed once");
}
