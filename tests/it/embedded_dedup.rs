//! Ingest deduplication of the embedded journal: a batch, a partial re-send, events repeated
//! within a batch, a late (lower-seq) event never seen, and a re-send of an old batch after many
//! newer ones are each recognised exactly, across a restart of the store.

use crate::common::icmp_event;
use netqoe_actors::bus::EventBus;
use netqoe_domain::Event;

fn ev(id: &str, seq: u64, now: i64) -> Event {
    icmp_event(id, seq, now)
}

fn seqs(range: std::ops::Range<u64>, now: i64) -> Vec<Event> {
    range.map(|s| ev(&format!("p-{s}"), s, now)).collect()
}

#[actix_rt::test]
async fn the_journal_accepts_each_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let now = netqoe_actors::now_ms();
    let counts = |p: netqoe_actors::bus::Published| (p.accepted, p.duplicates);
    {
        let j = netqoe::sqlite::Sqlite::open(dir.path()).unwrap();
        assert_eq!(counts(j.publish("p", seqs(10..20, now), now).await.unwrap()), (10, 0));
        // the same batch again
        assert_eq!(counts(j.publish("p", seqs(10..20, now), now).await.unwrap()), (0, 10));
        // partial overlap: 15..20 seen, 20..25 new
        assert_eq!(counts(j.publish("p", seqs(15..25, now), now).await.unwrap()), (5, 5));
        // repeated within one batch
        let mut b = seqs(25..27, now);
        b.push(ev("p-25", 25, now));
        assert_eq!(counts(j.publish("p", b, now).await.unwrap()), (2, 1));
        // a late event below the highest seq, never seen: new
        assert_eq!(counts(j.publish("p", vec![ev("p-3", 3, now)], now).await.unwrap()), (1, 0));
        // another probe with the same ids is another stream
        assert_eq!(counts(j.publish("q", seqs(10..20, now), now).await.unwrap()), (10, 0));
        // many newer batches, then an old one again
        for k in 0..40 {
            j.publish("p", seqs(100 + k * 10..110 + k * 10, now), now).await.unwrap();
        }
        assert_eq!(counts(j.publish("p", seqs(18..22, now), now).await.unwrap()), (0, 4));
    }
    // after a restart
    let j = netqoe::sqlite::Sqlite::open(dir.path()).unwrap();
    assert_eq!(counts(j.publish("p", vec![ev("p-3", 3, now), ev("p-999", 999, now)], now).await.unwrap()), (1, 1));
    assert_eq!(counts(j.publish("p", seqs(10..12, now), now).await.unwrap()), (0, 2));
}

/// A batch requeued because the store was unavailable (`Acker::release`) is delivered again
/// however often that happens — an outage must not dead-letter accepted events — while one that
/// keeps failing by itself (dropped unacked) reaches the delivery limit and the dead letters.
#[actix_rt::test]
async fn transient_requeues_never_dead_letter_a_batch() {
    use netqoe_actors::bus::Incoming;
    let dir = tempfile::tempdir().unwrap();
    let now = netqoe_actors::now_ms();
    let j = netqoe::sqlite::Sqlite::open(dir.path()).unwrap();
    j.publish("p", seqs(0..3, now), now).await.unwrap();
    let mut rx = j.consume(1).await.unwrap();
    async fn next(rx: &mut tokio::sync::mpsc::Receiver<Incoming>) -> Option<netqoe_actors::bus::Delivery> {
        match tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv()).await {
            Ok(Some(Incoming::Deliver(d))) => Some(d),
            _ => None,
        }
    }
    for round in 0..25 {
        let d = next(&mut rx).await.unwrap_or_else(|| panic!("delivered again after {round} releases"));
        d.acker.release();
    }
    assert_eq!(j.dead_letter_count().await.unwrap(), 0);
    // dropped unacked (the batch's own failure): after the limit, dead-lettered
    let mut deliveries = 0;
    while let Some(d) = next(&mut rx).await {
        deliveries += 1;
        drop(d);
        if deliveries > 20 {
            break;
        }
    }
    assert_eq!(deliveries, 10, "the delivery limit (10) applies to real failures, exactly");
    assert_eq!(j.dead_letter_count().await.unwrap(), 1);
}

/// The group commit: jobs that queue while the writer is busy share one transaction. When one of
/// them fails (here a trigger refuses the `poison` probe's journal row), the group is run again
/// with a savepoint per job: only that job fails, every other caller gets its own success, and
/// the failed job leaves nothing behind (its dedup rows are rolled back with it, so the probe's
/// retry is accepted in full once the fault is gone).
#[actix_rt::test]
async fn one_failing_job_in_a_group_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let now = netqoe_actors::now_ms();
    let j = netqoe::sqlite::Sqlite::open(dir.path()).unwrap();
    let side = rusqlite::Connection::open(dir.path().join("netqoe.db")).unwrap();
    side.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    side.execute_batch(
        "CREATE TRIGGER poison BEFORE INSERT ON journal WHEN NEW.probe = 'poison'
         BEGIN SELECT RAISE(ABORT, 'poisoned by the test'); END;",
    )
    .unwrap();
    let batch = |p: &str| (0..10).map(|s| ev(&format!("{p}-{s}"), s, now)).collect::<Vec<_>>();
    // hold the write lock: the writer blocks on its first job while the others queue behind it,
    // so they are taken as one group when the lock is released
    side.execute_batch("BEGIN IMMEDIATE").unwrap();
    let spawn = |p: String| {
        let (j, events) = (j.clone(), batch(&p));
        tokio::spawn(async move { (p.clone(), j.publish(&p, events, now).await) })
    };
    let mut tasks = vec![spawn("first".into())];
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    for i in 0..10 {
        tasks.push(spawn(format!("a{i}")));
    }
    tasks.push(spawn("poison".into()));
    for i in 0..10 {
        tasks.push(spawn(format!("b{i}")));
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    side.execute_batch("COMMIT").unwrap();
    for t in tasks {
        let (p, r) = t.await.unwrap();
        if p == "poison" {
            assert!(r.is_err(), "the poisoned job fails");
        } else {
            let r = r.unwrap_or_else(|e| panic!("{p}: a job grouped with a failing one still succeeds: {e}"));
            assert_eq!((r.accepted, r.duplicates), (10, 0), "{p}");
        }
    }
    let rows: i64 = side.query_row("SELECT COUNT(*) FROM journal", [], |r| r.get(0)).unwrap();
    assert_eq!(rows, 21, "every batch but the poisoned one is journaled, once");
    let poisoned: i64 =
        side.query_row("SELECT COUNT(*) FROM seen_batches WHERE probe = 'poison'", [], |r| r.get(0)).unwrap();
    assert_eq!(poisoned, 0, "the failed job's dedup rows were rolled back with it");
    side.execute_batch("DROP TRIGGER poison").unwrap();
    let r = j.publish("poison", batch("poison"), now).await.unwrap();
    assert_eq!((r.accepted, r.duplicates), (10, 0), "the retry is accepted in full");
    let r = j.publish("a3", batch("a3"), now).await.unwrap();
    assert_eq!((r.accepted, r.duplicates), (0, 10), "the grouped batches are durable and deduplicated");
}

async fn next_delivery(
    rx: &mut tokio::sync::mpsc::Receiver<netqoe_actors::bus::Incoming>,
) -> netqoe_actors::bus::Delivery {
    match tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv()).await {
        Ok(Some(netqoe_actors::bus::Incoming::Deliver(d))) => d,
        other => panic!("expected a delivery, got {:?}", other.map(|o| o.map(|_| ()))),
    }
}

fn ids(d: &netqoe_actors::bus::Delivery) -> Vec<String> {
    d.batch.events.iter().map(|e| e.event_id.clone()).collect()
}

/// A partial re-send is journaled (and delivered) with only its new events, and says how many it
/// left out: the aggregators' event sets would hide a journal that carried the duplicates too, but
/// every consumer would pay for them and the probe's `duplicates` would be counted twice.
#[actix_rt::test]
async fn the_journal_carries_only_the_new_events() {
    let dir = tempfile::tempdir().unwrap();
    let now = netqoe_actors::now_ms();
    let j = netqoe::sqlite::Sqlite::open(dir.path()).unwrap();
    j.publish("p", seqs(10..20, now), now).await.unwrap();
    j.publish("p", seqs(15..25, now), now).await.unwrap();
    let mut rx = j.consume(4).await.unwrap();
    let first = next_delivery(&mut rx).await;
    assert_eq!((first.batch.events.len(), first.batch.duplicates), (10, 0));
    let second = next_delivery(&mut rx).await;
    assert_eq!(ids(&second), (20..25).map(|s| format!("p-{s}")).collect::<Vec<_>>(), "only the 5 new events");
    assert_eq!(second.batch.duplicates, 5);
}

/// Rows journaled before a restart and not acked may already have been committed by the previous
/// run (the commit landed, the ack did not): after the restart they are delivered marked
/// `redelivered`, so the aggregator looks their batch ids up instead of applying them blindly.
/// A batch journaled after the restart is a first delivery.
#[actix_rt::test]
async fn rows_journaled_before_a_restart_are_delivered_as_redeliveries() {
    let dir = tempfile::tempdir().unwrap();
    let now = netqoe_actors::now_ms();
    {
        let j = netqoe::sqlite::Sqlite::open(dir.path()).unwrap();
        j.publish("p", seqs(0..3, now), now).await.unwrap();
        j.publish("p", seqs(3..6, now), now).await.unwrap();
        // never consumed: the process stops with both rows unacked
    }
    let j = netqoe::sqlite::Sqlite::open(dir.path()).unwrap();
    j.publish("p", seqs(6..9, now), now).await.unwrap();
    let mut rx = j.consume(4).await.unwrap();
    let got: Vec<(Vec<String>, bool)> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            let d = next_delivery(&mut rx).await;
            v.push((ids(&d), d.redelivered));
            d.acker.ack().await.unwrap();
        }
        v
    };
    let flags: Vec<bool> = got.iter().map(|(_, r)| *r).collect();
    assert_eq!(flags, vec![true, true, false], "journaled before the restart → redelivered: {got:?}");
    assert_eq!(got[2].0, (6..9).map(|s| format!("p-{s}")).collect::<Vec<_>>());
}

/// A delivery dropped without an ack comes back marked `redelivered` (its effect may be committed),
/// and a journal row whose payload cannot be decoded goes to the dead letters, not to a consumer.
#[actix_rt::test]
async fn an_unacked_delivery_returns_redelivered_and_an_undecodable_row_is_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let now = netqoe_actors::now_ms();
    let j = netqoe::sqlite::Sqlite::open(dir.path()).unwrap();
    j.publish("p", seqs(0..3, now), now).await.unwrap();
    j.publish("p", seqs(3..6, now), now).await.unwrap();
    let side = rusqlite::Connection::open(dir.path().join("netqoe.db")).unwrap();
    side.execute("UPDATE journal SET payload = x'b2ff00' WHERE id = (SELECT MAX(id) FROM journal)", []).unwrap();
    let mut rx = j.consume(4).await.unwrap();
    let first = next_delivery(&mut rx).await;
    assert!(!first.redelivered, "a first delivery");
    drop(first);
    let again = next_delivery(&mut rx).await;
    assert_eq!((ids(&again).len(), again.redelivered), (3, true), "the dropped delivery, marked redelivered");
    again.acker.ack().await.unwrap();
    let none = tokio::time::timeout(std::time::Duration::from_secs(2), rx.recv()).await;
    assert!(none.is_err(), "the undecodable row is not delivered");
    assert_eq!(j.dead_letter_count().await.unwrap(), 1, "it is dead-lettered");
}

/// The journal's dedup records live for `retention.dedup_ms`: within it a re-send is recognised,
/// after it the records are pruned (and counted) and the same events are accepted again.
#[actix_rt::test]
async fn dedup_records_expire_with_the_dedup_retention() {
    use netqoe_actors::store::{Retention, RollupStore};
    let dir = tempfile::tempdir().unwrap();
    let now = netqoe_actors::now_ms();
    let j = netqoe::sqlite::Sqlite::open(dir.path()).unwrap();
    let day = 86_400_000;
    let retention = Retention { dedup_ms: day, ..Retention::default() };
    j.publish("p", seqs(0..3, now), now).await.unwrap();
    assert_eq!(j.prune(now + day / 2, &retention).await.unwrap(), 0, "nothing is past the dedup retention yet");
    assert_eq!(j.publish("p", seqs(0..3, now), now).await.unwrap().accepted, 0, "still recognised");
    let pruned = j.prune(now + 2 * day, &retention).await.unwrap();
    let side = rusqlite::Connection::open(dir.path().join("netqoe.db")).unwrap();
    let left: i64 = side
        .query_row("SELECT (SELECT COUNT(*) FROM seen_ids) + (SELECT COUNT(*) FROM seen_batches)", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0, "every dedup record of the probe is gone");
    assert!(pruned >= 1, "and counted ({pruned})");
    assert_eq!(j.publish("p", seqs(0..3, now), now).await.unwrap().accepted, 3, "accepted again once forgotten");
}
