//! RabbitMQ `EventBus`: ingest publishes each accepted batch (versioned JSON envelope) to a direct
//! exchange routed by probe shard into K quorum queues (single active consumer, delivery limit,
//! dead-lettering into a DLQ), with publisher confirms and `mandatory`; aggregators consume the
//! shard queues with manual acks and bounded prefetch.
//!
//! lapin does not recover anything by itself: this module owns reconnects (capped exponential
//! backoff with jitter over the configured broker list), re-declares the topology and re-consumes
//! after each one, and wraps every broker await in a timeout.
//!
//! Invariants: `publish` returns Ok only after the broker's ack of a routed message; anything
//! else (nack, return, timeout, lost connection, `connection.blocked`) is an error that ingest
//! turns into 503. After every reconnect the consumer first emits `Incoming::Reset` with a new
//! epoch, so state built from deliveries of a dead channel is dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use netqoe_actors::bus::{Acker, Batch, BusError, BusErrorKind, Delivery, EventBus, Incoming, Published};
use netqoe_actors::metrics::{counter, counter_vec, gauge, gauge_vec, histogram, LATENCY_BUCKETS};
use netqoe_domain::Event;
use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Mutex};

use crate::config::{redact_uri, RabbitConfig};

mod connection;
mod consumer;
mod envelope;
pub mod federation;
pub mod management;
mod metrics;
mod publisher;
mod topology;

pub use connection::*;
use connection::{reconnect_backoff, reconnect_delay};
pub use envelope::*;
pub use metrics::*;
use netqoe_actors::backoff::Backoff;
use publisher::PublisherState;
use topology::within;
pub use topology::*;

struct Inner {
    cfg: RabbitConfig,
    publisher: Mutex<PublisherState>,
    epoch: AtomicU64,
    /// Set by `close`: the consumer loop closes its connection and ends.
    closing: tokio::sync::watch::Sender<bool>,
    /// The consumer loop, awaited by `close`.
    consumer: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The management API, when `management_url` is set (validated with the config).
    management: Option<crate::rabbit::management::Management>,
}

/// The RabbitMQ bus.
#[derive(Clone)]
pub struct RabbitBus {
    inner: Arc<Inner>,
}

impl RabbitBus {
    pub fn new(cfg: RabbitConfig) -> Self {
        init_metrics();
        let backoff = reconnect_backoff(&cfg);
        Self {
            inner: Arc::new(Inner {
                publisher: Mutex::new(PublisherState {
                    conn: None,
                    channel: None,
                    names: None,
                    retry_at: None,
                    backoff,
                    rotation: 0,
                }),
                epoch: AtomicU64::new(0),
                closing: tokio::sync::watch::channel(false).0,
                consumer: std::sync::Mutex::new(None),
                management: (!cfg.management_url.is_empty())
                    .then(|| {
                        crate::rabbit::management::Management::new(
                            &cfg.management_url,
                            cfg.uris.first().map_or("", String::as_str),
                        )
                        .ok()
                    })
                    .flatten(),
                cfg,
            }),
        }
    }

    pub fn names(&self) -> Names {
        Names::new(&self.inner.cfg.prefix, self.inner.cfg.shards)
    }

    fn op(&self) -> Duration {
        Duration::from_millis(self.inner.cfg.op_timeout_ms)
    }
}

#[async_trait]
impl EventBus for RabbitBus {
    #[tracing::instrument(name = "bus.publish", skip_all, fields(backend = "rabbitmq", events = events.len()))]
    async fn publish(&self, probe: &str, events: Vec<Event>, received_ms: i64) -> Result<Published, BusError> {
        self.publish_batch(probe, events, received_ms).await
    }

    async fn consume(&self, prefetch: usize) -> Result<mpsc::Receiver<Incoming>, BusError> {
        Ok(self.start_consumer(prefetch))
    }

    fn dedups_events(&self) -> bool {
        false
    }

    async fn ready(&self) -> Result<(), BusError> {
        self.publisher().await.map(|_| ())
    }

    fn name(&self) -> &'static str {
        "rabbitmq"
    }

    async fn close(&self) {
        self.inner.closing.send_replace(true);
        let consumer = self.inner.consumer.lock().ok().and_then(|mut c| c.take());
        if let Some(h) = consumer {
            let _ = tokio::time::timeout(self.op(), h).await;
        }
        let mut st = self.inner.publisher.lock().await;
        st.channel = None;
        if let Some(c) = st.conn.take() {
            let _ = tokio::time::timeout(self.op(), c.close(200, "shutdown")).await;
        }
    }
}
