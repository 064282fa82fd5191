//! The probe's own metrics (`metrics_bind`), declared once.

use std::sync::LazyLock;

use netqoe_actors::metrics::{counter, counter_vec, gauge, histogram};
use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge};

pub static MEASUREMENTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "netqoe_probe_measurements_total",
        "Measurements run by the probe, by kind and outcome",
        &["kind", "outcome"],
    )
});
pub static SPOOL_DEPTH: LazyLock<IntGauge> =
    LazyLock::new(|| gauge("netqoe_probe_spool_depth", "Batches in the probe's spool, not yet acknowledged by ingest"));
pub static SPOOL_DROPPED: LazyLock<IntCounter> =
    LazyLock::new(|| counter("netqoe_probe_spool_dropped_total", "Batches dropped from a full spool (oldest first)"));
pub static POST_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    histogram(
        "netqoe_probe_post_seconds",
        "Latency of the probe's POSTs to ingest",
        &[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0],
    )
});
pub static EVENTS_REFUSED: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "netqoe_probe_events_refused_total",
        "Events ingest refused as invalid (422): dropped from their batch, the rest of it re-sent",
    )
});
pub static POSTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec("netqoe_probe_posts_total", "POSTs to ingest, by outcome (accepted, retry, rejected)", &["outcome"])
});

pub fn init() {
    for k in ["udp", "tcp", "dns", "http", "tls", "icmp"] {
        for o in ["ok", "failed"] {
            MEASUREMENTS.with_label_values(&[k, o]);
        }
    }
    for o in ["accepted", "retry", "rejected"] {
        POSTS.with_label_values(&[o]);
    }
    LazyLock::force(&SPOOL_DEPTH);
    LazyLock::force(&SPOOL_DROPPED);
    LazyLock::force(&EVENTS_REFUSED);
    LazyLock::force(&POST_SECONDS);
}
