//! The RabbitMQ adapter's metrics, declared once (docs/metrics.md lists them).

use super::*;

pub static PUBLISH_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    histogram("netqoe_bus_publish_confirm_seconds", "Publish until the broker's confirm", LATENCY_BUCKETS)
});
pub static PUBLISH_FAILURES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec("netqoe_bus_publish_failures_total", "Publishes that did not end in a confirm, by reason", &["reason"])
});
pub static RECONNECTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec("netqoe_bus_reconnects_total", "Broker (re)connections established, by side", &["side"])
});
pub static POISON: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "netqoe_bus_poison_messages_total",
        "Undecodable messages rejected (dead-lettered after the delivery limit)",
    )
});
pub static DLQ_DEPTH: LazyLock<IntGauge> =
    LazyLock::new(|| gauge("netqoe_bus_dlq_depth", "Messages in the dead-letter queue"));
pub static QUEUE_DEPTH: LazyLock<IntGaugeVec> =
    LazyLock::new(|| gauge_vec("netqoe_bus_queue_depth", "Ready messages per shard queue", &["shard"]));
pub static SHARD_ACTIVE: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "netqoe_bus_shard_active",
        "1 where this process holds the active (single-active-consumer) consumer of the shard queue",
        &["shard"],
    )
});
pub static SHARD_CONSUMERS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec("netqoe_bus_shard_consumers", "Consumers registered on the shard queue (all processes)", &["shard"])
});
pub static CONSUMING: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "netqoe_bus_consuming",
        "1 while this process's consumer is connected to the broker and consuming the shard queues",
    )
});
pub static CONSUMER_UNACKED: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge("netqoe_bus_consumer_unacked", "Deliveries held by this consumer and not yet settled (prefetch in use)")
});

pub fn init_metrics() {
    LazyLock::force(&PUBLISH_SECONDS);
    LazyLock::force(&POISON);
    LazyLock::force(&DLQ_DEPTH);
    LazyLock::force(&CONSUMER_UNACKED);
    for r in ["nack", "returned", "timeout", "unavailable", "blocked"] {
        PUBLISH_FAILURES.with_label_values(&[r]);
    }
    for s in ["publisher", "consumer"] {
        RECONNECTS.with_label_values(&[s]);
    }
}
