//! Process-wide gauges the aggregator keeps (alone in this test binary: no other test moves them).

mod common;

use common::*;
use netqoe_actors::aggregator::{AggregatorConfig, Drain, Process};
use netqoe_actors::metrics::{WATERMARK_LAG, WINDOWS_OPEN};

#[actix_rt::test]
async fn open_windows_and_watermark_lag_follow_the_aggregator() {
    let store = TestStore::new();
    let s = shard(&store, AggregatorConfig { idle_evict_ms: -1, ..quiet_config() });
    let log = Log::default();
    let before = WINDOWS_OPEN.get();
    let base = base_ms();
    // three minutes of one series: three windows open
    let evs = vec![icmp("a", 1, base, "t1"), icmp("b", 2, base + 60_000, "t1"), icmp("c", 3, base + 120_000, "t1")];
    let mut b = batch("w", "p1", evs);
    b.received_ms = base + 120_000 + 90_000;
    s.agg.send(Process(delivery(b, false, 0, &log))).await.unwrap().unwrap();
    assert_eq!(WINDOWS_OPEN.get() - before, 3);
    assert_eq!(WATERMARK_LAG.get(), 90.0, "arrival minus the newest event time, seconds");
    // committed and idle: evicted, the gauge comes back down
    s.agg.send(Drain).await.unwrap().unwrap();
    assert_eq!(WINDOWS_OPEN.get() - before, 0);
}
