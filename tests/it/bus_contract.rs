//! The bus contract: every `EventBus` backend must pass the same behaviours, as every store passes
//! tests/it/store_contract.rs. Runs against the in-memory bus (the actor tests' stand-in), the
//! embedded SQLite journal and the real RabbitMQ broker on 127.0.0.1:5672 (scripts/test.sh starts
//! it; each RabbitMQ case uses its own queue prefix and deletes it afterwards).
//!
//! The pipeline relies on exactly these: a publish that returned Ok is delivered with its events,
//! probe and receive time intact; a delivery dropped without an ack comes again, marked
//! redelivered, with the same batch id; an acked batch never comes again, also not to a fresh
//! consumer; at most `prefetch` deliveries are unacked at once; one probe's batches arrive in the
//! order they were published; re-sent events are dropped at publish exactly when the bus says it
//! dedups (`dedups_events`), else they reach the aggregators, which must drop them.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use netqoe::config::Config;
use netqoe::rabbit::RabbitBus;
use netqoe_actors::bus::{Delivery, EventBus, Incoming};
use netqoe_actors::memory::MemoryBus;
use netqoe_domain::Event;
use tokio::sync::mpsc::Receiver;

/// `n` ICMP events, ids `{probe}-{tag}-{i}`, one second apart.
fn events(probe: &str, tag: &str, n: u64) -> Vec<Event> {
    let base = common::base_ms();
    (0..n).map(|i| common::icmp_event(&format!("{probe}-{tag}-{i}"), i + 1, base + i as i64 * 1000)).collect()
}

/// The next delivery (skipping consumption resets), or None when nothing comes within `wait`.
async fn next(rx: &mut Receiver<Incoming>, wait: Duration) -> Option<Delivery> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(Incoming::Deliver(d))) => return Some(d),
            Ok(Some(Incoming::Reset { .. })) => continue,
            Ok(None) | Err(_) => return None,
        }
    }
}

const COMES: Duration = Duration::from_secs(10);
const QUIET: Duration = Duration::from_millis(700);

async fn delivered_intact_and_acked_once(bus: Arc<dyn EventBus>) {
    bus.ready().await.expect("ready");
    let sent = events("probe-a", "intact", 3);
    let p = bus.publish("probe-a", sent.clone(), 1_700_000_000_123).await.expect("publish");
    let id = p.batch_id.clone().expect("a batch id");
    assert_eq!((p.accepted, p.duplicates), (3, 0));
    let mut rx = bus.consume(8).await.expect("consume");
    let d = next(&mut rx, COMES).await.expect("the published batch is delivered");
    assert_eq!(d.batch.id, id);
    assert_eq!(d.batch.probe, "probe-a");
    assert_eq!(d.batch.received_ms, 1_700_000_000_123, "the receive time travels with the batch");
    assert_eq!(d.batch.events, sent, "events arrive as published");
    assert!(!d.redelivered);
    d.acker.ack().await.expect("ack");
    assert!(next(&mut rx, QUIET).await.is_none(), "an acked batch is not delivered again");
    if let Some(n) = bus.backlog().await.expect("backlog") {
        assert_eq!(n, 0, "nothing left once acked");
    }
    // a fresh consumer (a restarted aggregator) does not get it either
    drop(rx);
    let mut fresh = bus.consume(8).await.expect("consume again");
    assert!(next(&mut fresh, QUIET).await.is_none(), "an acked batch is not delivered to a new consumer");
    bus.close().await;
}

async fn unacked_is_redelivered(bus: Arc<dyn EventBus>) {
    let p = bus.publish("probe-b", events("probe-b", "redeliver", 2), 1_000).await.expect("publish");
    let id = p.batch_id.expect("a batch id");
    let mut rx = bus.consume(8).await.expect("consume");
    let d = next(&mut rx, COMES).await.expect("delivered");
    assert_eq!(d.batch.id, id);
    if let Some(n) = bus.backlog().await.expect("backlog") {
        assert_eq!(n, 1, "a delivered, unacked batch is still backlog");
    }
    drop(d); // the aggregator failed before persisting its effect
    let again = next(&mut rx, COMES).await.expect("an unacked batch comes again");
    assert_eq!(again.batch.id, id, "with the same id (what dedup and logs key on)");
    assert_eq!(again.batch.events.len(), 2);
    assert!(again.redelivered, "marked redelivered: its effect may be committed already");
    again.acker.ack().await.expect("ack");
    assert!(next(&mut rx, QUIET).await.is_none());
    bus.close().await;
}

async fn prefetch_bounds_unacked(bus: Arc<dyn EventBus>) {
    for i in 0..4 {
        bus.publish("probe-c", events("probe-c", &format!("pf{i}"), 1), 1_000 + i).await.expect("publish");
    }
    let mut rx = bus.consume(2).await.expect("consume");
    let a = next(&mut rx, COMES).await.expect("first");
    let b = next(&mut rx, COMES).await.expect("second");
    assert!(next(&mut rx, QUIET).await.is_none(), "a third delivery while two are unacked breaks prefetch 2");
    a.acker.ack().await.expect("ack");
    let c = next(&mut rx, COMES).await.expect("acking one lets the next come");
    b.acker.ack().await.expect("ack");
    c.acker.ack().await.expect("ack");
    let d = next(&mut rx, COMES).await.expect("fourth");
    d.acker.ack().await.expect("ack");
    assert!(next(&mut rx, QUIET).await.is_none());
    bus.close().await;
}

async fn one_probes_batches_keep_their_order(bus: Arc<dyn EventBus>) {
    let mut ids = Vec::new();
    for i in 0..6 {
        let p = bus.publish("probe-d", events("probe-d", &format!("ord{i}"), 2), 1_000 + i).await.expect("publish");
        ids.push(p.batch_id.expect("id"));
    }
    let mut rx = bus.consume(16).await.expect("consume");
    let mut got = Vec::new();
    while got.len() < ids.len() {
        let d = next(&mut rx, COMES).await.unwrap_or_else(|| panic!("only {} of 6 delivered", got.len()));
        got.push(d.batch.id.clone());
        d.acker.ack().await.expect("ack");
    }
    assert_eq!(got, ids, "a probe's batches arrive in publish order (its watermark depends on it)");
    bus.close().await;
}

async fn resent_events_follow_dedups_events(bus: Arc<dyn EventBus>) {
    let evs = events("probe-e", "resent", 3);
    let first = bus.publish("probe-e", evs.clone(), 1_000).await.expect("publish");
    assert_eq!(first.accepted, 3);
    // the probe did not see the 2xx and posts the same events again, plus one new
    let mut again = evs.clone();
    again.extend(events("probe-e", "fresh", 1));
    let second = bus.publish("probe-e", again, 2_000).await.expect("publish");
    let mut rx = bus.consume(8).await.expect("consume");
    let mut delivered = Vec::new();
    while let Some(d) = next(&mut rx, if delivered.len() < 2 { COMES } else { QUIET }).await {
        delivered.push(d.batch.events.len());
        d.acker.ack().await.expect("ack");
        if bus.dedups_events() && delivered.len() == 2 {
            break;
        }
    }
    if bus.dedups_events() {
        assert_eq!((second.accepted, second.duplicates), (1, 3), "the bus drops what it accepted before");
        assert_eq!(delivered, vec![3, 1], "only the new event is delivered again");
    } else {
        assert_eq!(second.accepted, 4, "a bus that does not dedup passes everything on");
        assert_eq!(delivered, vec![3, 4], "the aggregators see the re-sent events and must drop them");
    }
    bus.close().await;
}

macro_rules! bus_contract {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;

            #[actix_rt::test]
            async fn delivered_intact_and_acked_once() {
                let (bus, _guard) = $make.await;
                super::delivered_intact_and_acked_once(bus).await;
            }
            #[actix_rt::test]
            async fn unacked_is_redelivered() {
                let (bus, _guard) = $make.await;
                super::unacked_is_redelivered(bus).await;
            }
            #[actix_rt::test]
            async fn prefetch_bounds_unacked() {
                let (bus, _guard) = $make.await;
                super::prefetch_bounds_unacked(bus).await;
            }
            #[actix_rt::test]
            async fn one_probes_batches_keep_their_order() {
                let (bus, _guard) = $make.await;
                super::one_probes_batches_keep_their_order(bus).await;
            }
            #[actix_rt::test]
            async fn resent_events_follow_dedups_events() {
                let (bus, _guard) = $make.await;
                super::resent_events_follow_dedups_events(bus).await;
            }
        }
    };
}

/// Keeps a backend's resources (a scratch directory, a broker prefix) until the case ends.
enum Guard {
    None,
    Dir(#[allow(dead_code)] tempfile::TempDir),
    Prefix(String),
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Guard::Prefix(prefix) = self {
            // the queues and exchanges of this case (the management API; blocking is fine here)
            let prefix = prefix.clone();
            std::thread::spawn(move || {
                actix_rt::System::new().block_on(async {
                    common::delete_prefix(&awc::Client::default(), &prefix).await;
                })
            })
            .join()
            .ok();
        }
    }
}

async fn memory() -> (Arc<dyn EventBus>, Guard) {
    (Arc::new(MemoryBus::new()), Guard::None)
}

async fn sqlite() -> (Arc<dyn EventBus>, Guard) {
    let dir = tempfile::tempdir().unwrap();
    let db = netqoe::sqlite::Sqlite::open(dir.path()).unwrap();
    (Arc::new(db), Guard::Dir(dir))
}

async fn rabbitmq() -> (Arc<dyn EventBus>, Guard) {
    let prefix = common::unique_prefix("bus");
    let env = [
        ("NETQOE__BUS__KIND".to_string(), "rabbitmq".to_string()),
        ("NETQOE__RABBITMQ__PREFIX".to_string(), prefix.clone()),
        ("NETQOE__RABBITMQ__SHARDS".to_string(), "1".to_string()),
    ];
    let cfg = Config::load_from(None, env).expect("config");
    (Arc::new(RabbitBus::new(cfg.rabbitmq)), Guard::Prefix(prefix))
}

bus_contract!(memory_bus, memory());
bus_contract!(sqlite_journal, sqlite());
bus_contract!(rabbitmq_broker, rabbitmq());
