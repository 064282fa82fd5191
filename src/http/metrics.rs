//! Metrics of the HTTP layer and adapters, declared once and registered in the process registry
//! (`netqoe_actors::metrics::registry`), plus the `/metrics` handler.

use std::sync::LazyLock;

use actix_web::HttpResponse;
use netqoe_actors::metrics::{counter, counter_vec, histogram_vec};
use prometheus::{Encoder, HistogramVec, IntCounter, IntCounterVec, TextEncoder};

pub static EVENTS_ACCEPTED: LazyLock<IntCounter> =
    LazyLock::new(|| counter("netqoe_events_accepted_total", "Events accepted by ingest and made durable"));
pub static EVENTS_REJECTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "netqoe_events_rejected_total",
        "Events (or requests, when the body was unreadable) rejected, by reason",
        &["reason"],
    )
});
pub static EVENTS_DUPLICATE: LazyLock<IntCounter> =
    LazyLock::new(|| counter("netqoe_events_duplicate_total", "Events whose event_id was already accepted"));
pub static CONFIG_RELOADS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec("netqoe_config_reloads_total", "SIGHUP configuration reloads, by result", &["result"])
});
pub static INGEST_REQUESTS: LazyLock<IntCounterVec> =
    LazyLock::new(|| counter_vec("netqoe_ingest_requests_total", "Ingest requests by HTTP status", &["status"]));
pub static INGEST_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    histogram_vec(
        "netqoe_ingest_request_seconds",
        "Ingest request latency (until durable)",
        &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0],
        &["status"],
    )
});
pub static INGEST_BYTES: LazyLock<IntCounter> =
    LazyLock::new(|| counter("netqoe_ingest_body_bytes_total", "Request body bytes read by ingest"));
pub static DEAD_LETTERED: LazyLock<IntCounter> =
    LazyLock::new(|| counter("netqoe_batches_dead_lettered_total", "Batches moved to the dead-letter table/queue"));

pub static MALFORMED_REQUESTS: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "netqoe_http_malformed_requests_total",
        "HTTP connections ended by a request the server could not parse (logged at debug level only)",
    )
});

pub const REJECT_REASONS: &[&str] = &[
    "malformed",
    "schema",
    "invalid",
    "unsupported_media_type",
    "too_large",
    "aborted",
    "body_timeout",
    "busy",
    "too_many_series",
    "too_many_events",
    "unauthorized",
    "forbidden",
    "rate_limited",
    "unavailable",
    "failed",
];

/// Registers every family so `/metrics` lists them before traffic.
pub fn init() {
    netqoe_actors::metrics::init();
    LazyLock::force(&EVENTS_ACCEPTED);
    for r in ["applied", "rejected"] {
        CONFIG_RELOADS.with_label_values(&[r]);
    }
    LazyLock::force(&EVENTS_DUPLICATE);
    LazyLock::force(&INGEST_BYTES);
    LazyLock::force(&DEAD_LETTERED);
    LazyLock::force(&INGEST_SECONDS);
    LazyLock::force(&MALFORMED_REQUESTS);
    for r in REJECT_REASONS {
        EVENTS_REJECTED.with_label_values(&[r]);
    }
    for s in ["202", "400", "401", "403", "408", "413", "415", "422", "429", "503"] {
        INGEST_REQUESTS.with_label_values(&[s]);
    }
}

pub async fn render() -> HttpResponse {
    let families = netqoe_actors::metrics::registry().gather();
    let mut buf = Vec::new();
    match TextEncoder::new().encode(&families, &mut buf) {
        Ok(()) => HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(buf),
        Err(e) => HttpResponse::InternalServerError().body(e.to_string()),
    }
}
