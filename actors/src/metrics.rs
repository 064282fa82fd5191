//! Every metric of the actors crate, declared once. Labels come from small fixed sets (actor
//! type, tier, outcome): never a probe id or a target.
//!
//! The registry here is the process's single registry; other crates register into it.

use std::sync::LazyLock;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

/// The process-wide registry `/metrics` renders.
pub fn registry() -> &'static Registry {
    &REGISTRY
}

/// Registers a collector in the process registry and returns it (for `LazyLock` declarations in
/// any crate). Registration only fails on a duplicate name, a bug the metrics test catches.
pub fn reg<C: prometheus::core::Collector + Clone + 'static>(c: C) -> C {
    if let Err(e) = REGISTRY.register(Box::new(c.clone())) {
        tracing::error!(error = %e, "metric registration failed");
    }
    c
}

// Registering constructors for `LazyLock` metric declarations in every crate of the process.

pub fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    reg(IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition"))
}

pub fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    reg(IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition"))
}

/// A gauge vector of floating-point values (quantiles, ratios).
pub fn gauge_vec_f64(name: &str, help: &str, labels: &[&str]) -> prometheus::GaugeVec {
    reg(prometheus::GaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition"))
}

pub fn counter(name: &str, help: &str) -> IntCounter {
    reg(IntCounter::new(name, help).expect("valid metric definition"))
}

pub fn gauge(name: &str, help: &str) -> IntGauge {
    reg(IntGauge::new(name, help).expect("valid metric definition"))
}

pub fn histogram(name: &str, help: &str, buckets: &[f64]) -> Histogram {
    reg(Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
        .expect("valid metric definition"))
}

pub fn histogram_vec(name: &str, help: &str, buckets: &[f64], labels: &[&str]) -> HistogramVec {
    reg(HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), labels)
        .expect("valid metric definition"))
}

/// Latency buckets (seconds) of the pipeline's histograms.
pub const LATENCY_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

pub static ACTOR_RESTARTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec("netqoe_actor_restarts_total", "Actor restarts by supervisors, by actor type", &["actor"])
});
pub static ACTOR_MAILBOX: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "netqoe_actor_mailbox_depth",
        "Messages sent to actors of a type and not yet answered (queued or in a handler)",
        &["actor"],
    )
});
pub static ACTOR_MESSAGES: LazyLock<IntCounterVec> =
    LazyLock::new(|| counter_vec("netqoe_actor_messages_total", "Messages handled, by actor type", &["actor"]));
pub static ACTOR_ERRORS: LazyLock<IntCounterVec> =
    LazyLock::new(|| counter_vec("netqoe_actor_errors_total", "Handler errors, by actor type", &["actor"]));
pub static ACTOR_HANDLER_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    histogram_vec("netqoe_actor_handler_seconds", "Handler latency by actor type", LATENCY_BUCKETS, &["actor"])
});
pub static SESSIONS_ACTIVE: LazyLock<IntGauge> =
    LazyLock::new(|| gauge("netqoe_sessions_active", "Probe session actors alive (not passivated)"));
pub static PROBES_CLOCK_AHEAD: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge(
        "netqoe_probes_clock_ahead",
        "Live probe sessions whose events arrive at least 10 s before their own timestamps (clock ahead)",
    )
});
pub static WINDOWS_OPEN: LazyLock<IntGauge> =
    LazyLock::new(|| gauge("netqoe_windows_open", "1m windows held in memory by aggregators"));
pub static LATE_EVENTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "netqoe_late_events_total",
        "Out-of-order events: accepted within the allowed lateness, or dropped beyond it",
        &["outcome"],
    )
});
pub static EVENTS_AGGREGATED: LazyLock<IntCounter> =
    LazyLock::new(|| counter("netqoe_events_aggregated_total", "Events applied to windows"));
pub static BATCHES_AGGREGATED: LazyLock<IntCounter> =
    LazyLock::new(|| counter("netqoe_batches_aggregated_total", "Batches whose effect was committed and acked"));
pub static BATCHES_SKIPPED: LazyLock<IntCounter> = LazyLock::new(|| {
    counter("netqoe_batches_redelivered_skipped_total", "Redelivered batches skipped because already committed")
});
pub static ROLLUPS_WRITTEN: LazyLock<IntCounterVec> =
    LazyLock::new(|| counter_vec("netqoe_rollups_written_total", "Rollup rows written, by tier", &["tier"]));
pub static STORE_WRITE_SECONDS: LazyLock<Histogram> =
    LazyLock::new(|| histogram("netqoe_store_write_seconds", "Latency of one store commit", LATENCY_BUCKETS));
pub static STORE_IN_FLIGHT: LazyLock<IntGauge> =
    LazyLock::new(|| gauge("netqoe_store_writes_in_flight", "Store commits in progress"));
pub static STORE_ERRORS: LazyLock<IntCounterVec> =
    LazyLock::new(|| counter_vec("netqoe_store_errors_total", "Store operation failures, by operation", &["op"]));
pub static WATERMARK_LAG: LazyLock<prometheus::Gauge> = LazyLock::new(|| {
    reg(prometheus::Gauge::new(
        "netqoe_watermark_lag_seconds",
        "Receiver clock minus the newest event time of the last batch aggregated",
    )
    .expect("valid metric definition"))
});

pub static INCIDENTS_OPENED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec("netqoe_incidents_opened_total", "Incidents opened by the diagnosis, by scope", &["scope"])
});
pub static INCIDENTS_OPEN: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec("netqoe_incidents_open", "Incidents currently open (this process's diagnoser), by scope", &["scope"])
});
pub static INCIDENTS_RESOLVED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec("netqoe_incidents_resolved_total", "Incidents resolved by the diagnosis, by scope", &["scope"])
});

pub static NOTIFICATIONS_DROPPED: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "netqoe_incident_notifications_dropped_total",
        "Incident notifications dropped because the webhook queue was full",
    )
});
pub static WEBHOOK_DELIVERIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "netqoe_webhook_deliveries_total",
        "Webhook deliveries, by outcome (delivered, retried, failed)",
        &["outcome"],
    )
});

/// Forces every metric into the registry so `/metrics` lists each family from the start.
pub fn init() {
    LazyLock::force(&ACTOR_RESTARTS);
    LazyLock::force(&ACTOR_MAILBOX);
    LazyLock::force(&ACTOR_MESSAGES);
    LazyLock::force(&ACTOR_ERRORS);
    LazyLock::force(&ACTOR_HANDLER_SECONDS);
    LazyLock::force(&SESSIONS_ACTIVE);
    LazyLock::force(&PROBES_CLOCK_AHEAD);
    LazyLock::force(&WINDOWS_OPEN);
    LazyLock::force(&LATE_EVENTS);
    LazyLock::force(&EVENTS_AGGREGATED);
    LazyLock::force(&BATCHES_AGGREGATED);
    LazyLock::force(&BATCHES_SKIPPED);
    LazyLock::force(&ROLLUPS_WRITTEN);
    LazyLock::force(&STORE_WRITE_SECONDS);
    LazyLock::force(&STORE_IN_FLIGHT);
    LazyLock::force(&STORE_ERRORS);
    LazyLock::force(&WATERMARK_LAG);
    LazyLock::force(&INCIDENTS_OPENED);
    LazyLock::force(&INCIDENTS_OPEN);
    LazyLock::force(&NOTIFICATIONS_DROPPED);
    for o in ["delivered", "retried", "failed"] {
        WEBHOOK_DELIVERIES.with_label_values(&[o]);
    }
    for s in netqoe_domain::diagnosis::Scope::ALL.map(|s| s.name()) {
        INCIDENTS_OPENED.with_label_values(&[s]);
        INCIDENTS_RESOLVED.with_label_values(&[s]);
        INCIDENTS_OPEN.with_label_values(&[s]);
    }
    for a in ["aggregator", "session", "session_registry", "writer", "diagnoser"] {
        ACTOR_RESTARTS.with_label_values(&[a]);
        ACTOR_MAILBOX.with_label_values(&[a]);
        ACTOR_MESSAGES.with_label_values(&[a]);
        ACTOR_ERRORS.with_label_values(&[a]);
    }
    for o in ["accepted", "dropped"] {
        LATE_EVENTS.with_label_values(&[o]);
    }
    for t in ["1m", "1h", "1d"] {
        ROLLUPS_WRITTEN.with_label_values(&[t]);
    }
    for op in ["commit", "prune"] {
        STORE_ERRORS.with_label_values(&[op]);
    }
    for a in ["aggregator", "session", "writer"] {
        ACTOR_HANDLER_SECONDS.with_label_values(&[a]);
    }
}

/// Sends a message with `send().await` (backpressure) while keeping the mailbox-depth gauge.
pub async fn tracked_send<A, M>(
    addr: &actix::Addr<A>,
    actor: &'static str,
    msg: M,
) -> Result<M::Result, actix::MailboxError>
where
    A: actix::Actor + actix::Handler<M>,
    A::Context: actix::dev::ToEnvelope<A, M>,
    M: actix::Message + Send + 'static,
    M::Result: Send,
{
    let g = ACTOR_MAILBOX.with_label_values(&[actor]);
    g.inc();
    let r = addr.send(msg).await;
    g.dec();
    r
}
