//! The federation uplink's invariant at the aggregator (docs/federation.md): a batch is acked only
//! after the windows it changed were committed **and** sent upward; a send that fails leaves the
//! batch unacked and the windows are sent again with the next commit; a redelivered batch the
//! store already holds (the process died between commit and send) sends its stored windows again
//! before the ack. Memory bus, store and uplink; the broker side is tests/federation.rs.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::common::{eventually, icmp_event};
use netqoe_actors::bus::{Batch, EventBus};
use netqoe_actors::memory::{MemoryBus, MemoryStore};
use netqoe_actors::pipeline::{Pipeline, PipelineConfig};
use netqoe_actors::store::{RollupStore, WriteSet};
use netqoe_actors::uplink::{MemoryUplink, UplinkHandle};
use netqoe_domain::{Metric, Tier, WindowKey};

fn batch(id: &str, base: i64, from: u64) -> Batch {
    Batch {
        id: id.into(),
        probe: "p".into(),
        received_ms: base,
        duplicates: 0,
        events: (from..from + 5).map(|s| icmp_event(&format!("e{s}"), s, base + s as i64 * 1000)).collect(),
    }
}

async fn start(uplink: Arc<MemoryUplink>) -> (MemoryBus, Arc<MemoryStore>, Pipeline) {
    let bus = MemoryBus::new();
    let store = Arc::new(MemoryStore::new());
    let mut cfg = PipelineConfig { shards: 1, ..Default::default() };
    cfg.aggregator.flush_interval = Duration::from_millis(20);
    cfg.aggregator.uplink = Some(UplinkHandle(uplink));
    let p = Pipeline::start(Arc::new(bus.clone()) as Arc<dyn EventBus>, store.clone(), cfg).await.unwrap();
    (bus, store, p)
}

fn key(base: i64) -> WindowKey {
    WindowKey { probe: "p".into(), target: "t".into(), metric: Metric::Rtt, tier: Tier::M1, start_ms: base }
}

#[actix_rt::test]
async fn a_batch_is_acked_only_once_its_windows_went_upward() {
    let uplink = Arc::new(MemoryUplink::default());
    uplink.down.store(true, Ordering::SeqCst);
    let (bus, store, p) = start(uplink.clone()).await;
    let base = (netqoe_actors::now_ms() - 3 * 3_600_000) / 60_000 * 60_000;
    bus.inject(batch("b-1", base, 0), false);
    // committed to the store, but the uplink refuses: not acked
    eventually(10, "the window committed", || async {
        (!store.load_windows(&[key(base)]).await.unwrap().is_empty()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(bus.acked().is_empty(), "acked although its windows never went upward");
    assert!(uplink.sent.lock().unwrap().is_empty());
    // the uplink is back: the next commit sends the window (a higher revision) and acks
    uplink.down.store(false, Ordering::SeqCst);
    eventually(10, "acked after the send", || async { (bus.acked() == ["b-1"]).then_some(()) }).await;
    let stored = store.load_windows(&[key(base)]).await.unwrap().remove(0);
    let sent = uplink.sent.lock().unwrap().clone();
    let last = sent.iter().filter(|r| r.key == key(base)).max_by_key(|r| r.revision).unwrap();
    assert_eq!((last.revision, &last.agg), (stored.revision, &stored.agg), "the global tier gets the stored state");
    assert_eq!(last.agg.events, 5);
    p.drain().await.unwrap();
}

#[actix_rt::test]
async fn a_redelivered_committed_batch_sends_its_stored_windows_again() {
    let uplink = Arc::new(MemoryUplink::default());
    let (bus, store, p) = start(uplink.clone()).await;
    let base = (netqoe_actors::now_ms() - 3 * 3_600_000) / 60_000 * 60_000;
    // what a process that died between its commit and its send leaves behind: the window and the
    // batch id in the store, nothing sent, the batch unacked (redelivered)
    let b = batch("b-2", base + 60_000, 0);
    let mut agg = netqoe_domain::WindowAgg::default();
    for e in &b.events {
        for c in e.contributions() {
            agg.add(&c);
        }
    }
    let window = netqoe_domain::Rollup {
        key: key(base + 60_000),
        agg,
        applied: b.events.iter().map(|e| netqoe_domain::event_hash(&e.event_id)).collect(),
        revision: 3,
        closed: false,
    };
    store
        .commit(WriteSet { rollups: vec![window.clone()], batches: vec!["b-2".into()], ..Default::default() })
        .await
        .unwrap();
    bus.inject(b, true);
    eventually(10, "the redelivery acked", || async { (bus.acked() == ["b-2"]).then_some(()) }).await;
    let sent = uplink.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!((sent[0].revision, &sent[0].agg), (3, &window.agg), "the stored state, sent again");
    // and it was not applied twice
    assert_eq!(store.load_windows(&[key(base + 60_000)]).await.unwrap()[0].agg.events, 5);
    p.drain().await.unwrap();
}
