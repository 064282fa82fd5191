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
use netqoe_actors::bus::{Acker, Batch, BusError, Delivery, EventBus, Incoming, Published};
use netqoe_actors::metrics::{counter, counter_vec, gauge, gauge_vec, histogram, LATENCY_BUCKETS};
use netqoe_domain::Event;
use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Mutex};

use crate::config::{redact_uri, RabbitConfig};

/// Version of the envelope carried in every message.
/// Version 1: JSON (still accepted from older publishers). Version 2: binary (published).
pub const ENVELOPE_VERSION: u32 = 1;
pub const CONTENT_TYPE: &str = "application/vnd.netqoe.batch.v1+json";
pub const CONTENT_TYPE_V2: &str = "application/vnd.netqoe.batch.v2";
/// First byte of a version-2 envelope (a JSON envelope starts with `{`).
const V2_MAGIC: u8 = 0xE2;

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

/// What travels through the broker: published as version 2 (`V2_MAGIC`, `str` batch id, `str`
/// probe, zigzag varint received_ms, varint duplicates, then the events in the binary codec of
/// `netqoe_domain::codec`); a version-1 JSON envelope is still consumed.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub v: u32,
    pub batch_id: String,
    pub probe: String,
    pub received_ms: i64,
    pub duplicates: u64,
    pub events: Vec<Event>,
}

impl Envelope {
    pub fn encode_v2(batch_id: &str, probe: &str, received_ms: i64, duplicates: u64, events: &[Event]) -> Vec<u8> {
        use netqoe_domain::codec::{encode_events, put_i64, put_str, put_varint};
        let mut out = Vec::with_capacity(64 + events.len() * 120);
        out.push(V2_MAGIC);
        put_str(&mut out, batch_id);
        put_str(&mut out, probe);
        put_i64(&mut out, received_ms);
        put_varint(&mut out, duplicates);
        encode_events(events, &mut out);
        out
    }

    /// Decodes either version.
    pub fn decode(data: &[u8]) -> Result<Envelope, String> {
        if data.first() == Some(&V2_MAGIC) {
            let mut r = netqoe_domain::codec::Reader::new(&data[1..]);
            let mut head = || -> Result<(String, String, i64, u64), netqoe_domain::codec::CodecError> {
                Ok((r.str()?.to_string(), r.str()?.to_string(), r.i64()?, r.varint()?))
            };
            let (batch_id, probe, received_ms, duplicates) = head().map_err(|e| e.to_string())?;
            let events = netqoe_domain::codec::read_events(&mut r).map_err(|e| e.to_string())?;
            if !r.is_empty() {
                return Err("trailing bytes after the envelope".into());
            }
            return Ok(Envelope { v: 2, batch_id, probe, received_ms, duplicates, events });
        }
        let e: Envelope = serde_json::from_slice(data).map_err(|e| e.to_string())?;
        if e.v != ENVELOPE_VERSION {
            return Err(format!("unsupported envelope version {}", e.v));
        }
        Ok(e)
    }
}

/// Names of everything the topology declares.
#[derive(Clone, Debug)]
pub struct Names {
    pub events_exchange: String,
    pub dead_letter_exchange: String,
    pub dlq: String,
    pub rollups_exchange: String,
    pub diagnoser_queue: String,
    pub diagnoses_exchange: String,
    pub shards: Vec<String>,
}

impl Names {
    pub fn new(prefix: &str, shards: usize) -> Self {
        Self {
            events_exchange: format!("{prefix}events"),
            dead_letter_exchange: format!("{prefix}events.dlx"),
            dlq: format!("{prefix}events.dlq"),
            rollups_exchange: format!("{prefix}rollups"),
            diagnoser_queue: format!("{prefix}diagnoser"),
            diagnoses_exchange: format!("{prefix}diagnoses"),
            shards: (0..shards).map(|i| format!("{prefix}events.shard.{i:03}")).collect(),
        }
    }
}

fn timeout_err(what: &str) -> BusError {
    BusError::Unavailable(format!("broker did not answer {what} in time"))
}

async fn within<T>(
    d: Duration,
    what: &str,
    f: impl std::future::Future<Output = lapin::Result<T>>,
) -> Result<T, BusError> {
    match tokio::time::timeout(d, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(BusError::Unavailable(format!("{what}: {e}"))),
        Err(_) => Err(timeout_err(what)),
    }
}

fn quorum_args(extra: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    t.insert(ShortString::from("x-queue-type"), AMQPValue::LongString(LongString::from("quorum")));
    for (k, v) in extra {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

/// Declares every exchange, queue and binding (idempotent; run after each (re)connect).
pub async fn declare_topology(ch: &Channel, cfg: &RabbitConfig, op: Duration) -> Result<Names, BusError> {
    let n = Names::new(&cfg.prefix, cfg.shards);
    let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
    let qdurable = QueueDeclareOptions { durable: true, ..Default::default() };
    within(
        op,
        "declare events exchange",
        ch.exchange_declare(&n.events_exchange, ExchangeKind::Direct, durable, FieldTable::default()),
    )
    .await?;
    within(
        op,
        "declare dead-letter exchange",
        ch.exchange_declare(&n.dead_letter_exchange, ExchangeKind::Fanout, durable, FieldTable::default()),
    )
    .await?;
    within(op, "declare DLQ", ch.queue_declare(&n.dlq, qdurable, quorum_args(&[]))).await?;
    within(
        op,
        "bind DLQ",
        ch.queue_bind(&n.dlq, &n.dead_letter_exchange, "", QueueBindOptions::default(), FieldTable::default()),
    )
    .await?;
    for (i, q) in n.shards.iter().enumerate() {
        let args = quorum_args(&[
            ("x-single-active-consumer", AMQPValue::Boolean(true)),
            ("x-delivery-limit", AMQPValue::LongInt(cfg.delivery_limit as i32)),
            ("x-dead-letter-exchange", AMQPValue::LongString(LongString::from(n.dead_letter_exchange.as_str()))),
        ]);
        within(op, "declare shard queue", ch.queue_declare(q, qdurable, args)).await?;
        within(
            op,
            "bind shard queue",
            ch.queue_bind(q, &n.events_exchange, &i.to_string(), QueueBindOptions::default(), FieldTable::default()),
        )
        .await?;
    }
    within(
        op,
        "declare rollups exchange",
        ch.exchange_declare(&n.rollups_exchange, ExchangeKind::Fanout, durable, FieldTable::default()),
    )
    .await?;
    within(op, "declare diagnoser queue", ch.queue_declare(&n.diagnoser_queue, qdurable, quorum_args(&[]))).await?;
    within(
        op,
        "bind diagnoser queue",
        ch.queue_bind(&n.diagnoser_queue, &n.rollups_exchange, "", QueueBindOptions::default(), FieldTable::default()),
    )
    .await?;
    within(
        op,
        "declare diagnoses exchange",
        ch.exchange_declare(&n.diagnoses_exchange, ExchangeKind::Topic, durable, FieldTable::default()),
    )
    .await?;
    Ok(n)
}

/// Connects to the first broker of the list that answers (starting at a rotating position).
pub async fn connect(cfg: &RabbitConfig, name: &str, start: usize) -> Result<Connection, BusError> {
    let timeout = Duration::from_millis(cfg.connect_timeout_ms);
    let mut last = BusError::Unavailable("no broker URI configured".into());
    for k in 0..cfg.uris.len() {
        let uri = &cfg.uris[(start + k) % cfg.uris.len()];
        let props = ConnectionProperties::default()
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio)
            .with_connection_name(LongString::from(name));
        match tokio::time::timeout(timeout, Connection::connect(uri, props)).await {
            Ok(Ok(c)) => {
                tracing::info!(broker = %redact_uri(uri), connection = name, "connected to broker");
                return Ok(c);
            }
            Ok(Err(e)) => last = BusError::Unavailable(format!("{}: {e}", redact_uri(uri))),
            Err(_) => last = BusError::Unavailable(format!("{}: connect timed out", redact_uri(uri))),
        }
    }
    Err(last)
}

/// Capped exponential backoff with full jitter.
struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(cfg: &RabbitConfig) -> Self {
        let min = Duration::from_millis(cfg.reconnect_min_ms);
        Self { min, max: Duration::from_millis(cfg.reconnect_max_ms), next: min }
    }
    fn reset(&mut self) {
        self.next = self.min;
    }
    fn delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        let ms = d.as_millis() as u64;
        Duration::from_millis(ms / 2 + rand::thread_rng().gen_range(0..=ms / 2 + 1))
    }
}

struct PublisherState {
    conn: Option<Connection>,
    channel: Option<Channel>,
    names: Option<Names>,
    /// No reconnect attempt before this instant (fail fast with 503 meanwhile).
    retry_at: Option<Instant>,
    backoff: Backoff,
    rotation: usize,
}

struct Inner {
    cfg: RabbitConfig,
    publisher: Mutex<PublisherState>,
    epoch: AtomicU64,
    /// Set by `close`: the consumer loop closes its connection and ends.
    closing: tokio::sync::watch::Sender<bool>,
    /// The consumer loop, awaited by `close`.
    consumer: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The management API, when `management_url` is set (validated with the config).
    management: Option<crate::rabbit_mgmt::Management>,
}

/// The RabbitMQ bus.
#[derive(Clone)]
pub struct RabbitBus {
    inner: Arc<Inner>,
}

impl RabbitBus {
    pub fn new(cfg: RabbitConfig) -> Self {
        init_metrics();
        let backoff = Backoff::new(&cfg);
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
                        crate::rabbit_mgmt::Management::new(
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

    /// Publishes an incident change (JSON) to the diagnoses topic exchange with routing key
    /// `incident.<state>.<scope>` (e.g. `incident.open.group`), persistent, with publisher confirm.
    /// Unrouted incidents (nobody bound) are not an error.
    pub async fn publish_incident(&self, i: &netqoe_domain::diagnosis::Incident) -> Result<(), BusError> {
        let body = serde_json::to_vec(&crate::webhook::payload(i)).map_err(|e| BusError::Failed(e.to_string()))?;
        let (ch, names) = self.publisher().await?;
        let state = if i.state == netqoe_domain::diagnosis::IncidentState::Open { "open" } else { "resolved" };
        let scope = i.scope.name();
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type(ShortString::from("application/json"))
            .with_message_id(ShortString::from(format!("{}-{}", i.id, i.updated_ms).as_str()));
        let wait = Duration::from_millis(self.inner.cfg.publish_timeout_ms);
        let outcome = tokio::time::timeout(wait, async {
            ch.basic_publish(
                &names.diagnoses_exchange,
                &format!("incident.{state}.{scope}"),
                BasicPublishOptions::default(),
                &body,
                props,
            )
            .await?
            .await
        })
        .await;
        match outcome {
            Ok(Ok(Confirmation::Ack(_))) => Ok(()),
            Ok(Ok(Confirmation::Nack(_))) => Err(BusError::Overloaded("the broker nacked the incident".into())),
            Ok(Ok(Confirmation::NotRequested)) => Err(BusError::Failed("channel not in confirm mode".into())),
            Ok(Err(e)) => {
                self.invalidate_publisher().await;
                Err(BusError::Unavailable(format!("publish incident: {e}")))
            }
            Err(_) => {
                self.invalidate_publisher().await;
                Err(BusError::Overloaded("no confirm for the incident".into()))
            }
        }
    }

    /// A confirm-mode channel, connecting (and declaring the topology) if needed.
    async fn publisher(&self) -> Result<(Channel, Names), BusError> {
        let mut st = self.inner.publisher.lock().await;
        if let (Some(c), Some(ch), Some(n)) = (&st.conn, &st.channel, &st.names) {
            if c.status().connected() && ch.status().connected() {
                if c.status().blocked() {
                    PUBLISH_FAILURES.with_label_values(&["blocked"]).inc();
                    return Err(BusError::Overloaded("broker blocked publishing (memory or disk alarm)".into()));
                }
                return Ok((ch.clone(), n.clone()));
            }
        }
        st.channel = None;
        st.names = None;
        if let Some(c) = st.conn.take() {
            let _ = tokio::time::timeout(Duration::from_millis(200), c.close(0, "reconnecting")).await;
        }
        if st.retry_at.is_some_and(|t| Instant::now() < t) {
            return Err(BusError::Unavailable("broker unreachable; reconnect pending".into()));
        }
        let attempt = async {
            let conn = connect(&self.inner.cfg, "netqoe-publisher", st.rotation).await?;
            let ch = within(self.op(), "open channel", conn.create_channel()).await?;
            within(self.op(), "confirm.select", ch.confirm_select(ConfirmSelectOptions::default())).await?;
            let names = declare_topology(&ch, &self.inner.cfg, self.op()).await?;
            Ok::<_, BusError>((conn, ch, names))
        };
        match attempt.await {
            Ok((conn, ch, names)) => {
                RECONNECTS.with_label_values(&["publisher"]).inc();
                st.backoff.reset();
                st.retry_at = None;
                st.conn = Some(conn);
                st.channel = Some(ch.clone());
                st.names = Some(names.clone());
                Ok((ch, names))
            }
            Err(e) => {
                st.rotation += 1;
                let d = st.backoff.delay();
                st.retry_at = Some(Instant::now() + d);
                tracing::warn!(error = %e, retry_in_ms = d.as_millis() as u64, "publisher cannot reach the broker");
                Err(e)
            }
        }
    }

    async fn invalidate_publisher(&self) {
        let mut st = self.inner.publisher.lock().await;
        st.channel = None;
        st.names = None;
        if let Some(c) = st.conn.take() {
            let _ = tokio::time::timeout(Duration::from_millis(200), c.close(0, "publish failed")).await;
        }
    }

    /// Publishes raw bytes to a shard queue (used by tests to inject poison messages).
    pub async fn publish_raw(&self, shard: usize, payload: &[u8]) -> Result<(), BusError> {
        let (ch, names) = self.publisher().await?;
        let confirm = within(
            self.op(),
            "publish",
            ch.basic_publish(
                &names.events_exchange,
                &shard.to_string(),
                BasicPublishOptions { mandatory: true, ..Default::default() },
                payload,
                BasicProperties::default().with_delivery_mode(2),
            ),
        )
        .await?;
        match within(self.op(), "confirm", confirm).await? {
            Confirmation::Ack(None) => Ok(()),
            other => Err(BusError::Failed(format!("not confirmed: {other:?}"))),
        }
    }

    /// Ready messages in the dead-letter queue and in each shard queue.
    pub async fn depths(&self) -> Result<(u32, Vec<u32>), BusError> {
        let (ch, names) = self.publisher().await?;
        let passive = QueueDeclareOptions { passive: true, ..Default::default() };
        let dlq =
            within(self.op(), "inspect DLQ", ch.queue_declare(&names.dlq, passive, FieldTable::default())).await?;
        let mut shards = Vec::new();
        for q in &names.shards {
            let s = within(self.op(), "inspect shard", ch.queue_declare(q, passive, FieldTable::default())).await?;
            shards.push(s.message_count());
        }
        Ok((dlq.message_count(), shards))
    }

    async fn consume_once(
        &self,
        tx: &mpsc::Sender<Incoming>,
        prefetch: usize,
        epoch: u64,
        rotation: usize,
    ) -> Result<(), BusError> {
        let cfg = &self.inner.cfg;
        let conn = connect(cfg, "netqoe-consumer", rotation).await?;
        let setup = within(self.op(), "open channel", conn.create_channel()).await?;
        let names = declare_topology(&setup, cfg, self.op()).await?;
        let per_shard = prefetch.div_ceil(cfg.shards).max(1) as u16;
        let mut streams = Vec::with_capacity(names.shards.len());
        // process id and a random instance: unique also where every container's pid is 1
        let instance = format!("{}-{:08x}", std::process::id(), rand::thread_rng().gen::<u32>());
        let mut tags = Vec::with_capacity(names.shards.len());
        for q in &names.shards {
            let ch = within(self.op(), "open channel", conn.create_channel()).await?;
            within(self.op(), "basic.qos", ch.basic_qos(per_shard, BasicQosOptions::default())).await?;
            let tag = format!("netqoe-{instance}-{q}");
            tags.push(tag.clone());
            let consumer = within(
                self.op(),
                "basic.consume",
                ch.basic_consume(q, &tag, BasicConsumeOptions::default(), FieldTable::default()),
            )
            .await?;
            streams.push(consumer);
        }
        RECONNECTS.with_label_values(&["consumer"]).inc();
        CONSUMING.set(1);
        tracing::info!(shards = names.shards.len(), prefetch_per_shard = per_shard, epoch, "consuming shard queues");
        let mut merged = futures_util::stream::select_all(streams);
        let mut depth_tick = tokio::time::interval(Duration::from_secs(5));
        let mut closing = self.inner.closing.subscribe();
        loop {
            tokio::select! {
                _ = async { let _ = closing.wait_for(|c| *c).await; } => {
                    let _ = tokio::time::timeout(self.op(), conn.close(200, "shutdown")).await;
                    return Ok(());
                }
                next = merged.next() => {
                    let delivery = match next {
                        Some(Ok(d)) => d,
                        Some(Err(e)) => return Err(BusError::Unavailable(format!("consumer: {e}"))),
                        None => return Err(BusError::Unavailable("consumer cancelled".into())),
                    };
                    let envelope = Envelope::decode(&delivery.data);
                    let envelope = match envelope {
                        Ok(e) => e,
                        Err(reason) => {
                            POISON.inc();
                            tracing::error!(%reason, redelivered = delivery.redelivered, "undecodable message; returned to the queue until its delivery limit dead-letters it");
                            let nack = delivery.acker.nack(BasicNackOptions { requeue: true, ..Default::default() });
                            within(self.op(), "nack", nack).await?;
                            continue;
                        }
                    };
                    CONSUMER_UNACKED.inc();
                    let d = Delivery {
                        batch: Batch {
                            id: envelope.batch_id,
                            probe: envelope.probe,
                            received_ms: envelope.received_ms,
                            duplicates: envelope.duplicates,
                            events: envelope.events,
                        },
                        redelivered: delivery.redelivered,
                        acker: Box::new(RabbitAcker { acker: Some(delivery.acker), op: self.op() }),
                        epoch,
                    };
                    if tx.send(Incoming::Deliver(d)).await.is_err() {
                        return Ok(());
                    }
                }
                _ = depth_tick.tick() => {
                    let passive = QueueDeclareOptions { passive: true, ..Default::default() };
                    if let Ok(q) = within(self.op(), "inspect DLQ", setup.queue_declare(&names.dlq, passive, FieldTable::default())).await {
                        DLQ_DEPTH.set(q.message_count() as i64);
                    }
                    for (i, name) in names.shards.iter().enumerate() {
                        if let Ok(q) = within(self.op(), "inspect shard", setup.queue_declare(name, passive, FieldTable::default())).await {
                            QUEUE_DEPTH.with_label_values(&[&format!("{i:03}")]).set(q.message_count() as i64);
                        }
                    }
                    if let Some(m) = &self.inner.management {
                        for (i, (name, tag)) in names.shards.iter().zip(&tags).enumerate() {
                            match m.queue(name, self.op()).await {
                                Ok(q) => {
                                    let (consumers, active) = crate::rabbit_mgmt::consumer_state(&q, tag);
                                    let shard = format!("{i:03}");
                                    SHARD_CONSUMERS.with_label_values(&[&shard]).set(consumers);
                                    SHARD_ACTIVE.with_label_values(&[&shard]).set(i64::from(active));
                                }
                                Err(error) => {
                                    tracing::debug!(%error, queue = %name, "management API unavailable; shard activity not updated");
                                    break;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

struct RabbitAcker {
    acker: Option<lapin::acker::Acker>,
    op: Duration,
}

#[async_trait]
impl Acker for RabbitAcker {
    async fn ack(mut self: Box<Self>) -> Result<(), BusError> {
        let Some(a) = self.acker.take() else { return Ok(()) };
        CONSUMER_UNACKED.dec();
        within(self.op, "ack", a.ack(BasicAckOptions::default())).await
    }
}

impl Drop for RabbitAcker {
    fn drop(&mut self) {
        // Not acked: hand it back to the broker now (closing the channel would too).
        if let Some(a) = self.acker.take() {
            CONSUMER_UNACKED.dec();
            if let Ok(h) = tokio::runtime::Handle::try_current() {
                let op = self.op;
                h.spawn(async move {
                    let _ = tokio::time::timeout(op, a.nack(BasicNackOptions { requeue: true, ..Default::default() }))
                        .await;
                });
            }
        }
    }
}

#[async_trait]
impl EventBus for RabbitBus {
    #[tracing::instrument(name = "bus.publish", skip_all, fields(backend = "rabbitmq", events = events.len()))]
    async fn publish(&self, probe: &str, events: Vec<Event>, received_ms: i64) -> Result<Published, BusError> {
        let started = Instant::now();
        let n = events.len();
        let batch_id = format!("{probe}:{received_ms}:{:016x}", rand::thread_rng().gen::<u64>());
        let payload = Envelope::encode_v2(&batch_id, probe, received_ms, 0, &events);
        let (ch, names) = self.publisher().await.inspect_err(|e| {
            if !matches!(e, BusError::Overloaded(_)) {
                PUBLISH_FAILURES.with_label_values(&["unavailable"]).inc();
            }
        })?;
        let shard = netqoe_actors::pipeline::shard_of(probe, self.inner.cfg.shards);
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type(ShortString::from(CONTENT_TYPE_V2))
            .with_message_id(ShortString::from(batch_id.as_str()))
            .with_timestamp((received_ms / 1000) as u64);
        let wait = Duration::from_millis(self.inner.cfg.publish_timeout_ms);
        let outcome = tokio::time::timeout(wait, async {
            let confirm = ch
                .basic_publish(
                    &names.events_exchange,
                    &shard.to_string(),
                    BasicPublishOptions { mandatory: true, ..Default::default() },
                    &payload,
                    props,
                )
                .await?;
            confirm.await
        })
        .await;
        let result = match outcome {
            Ok(Ok(Confirmation::Ack(None))) => Ok(Published { batch_id: Some(batch_id), accepted: n, duplicates: 0 }),
            Ok(Ok(Confirmation::Ack(Some(_)))) => {
                PUBLISH_FAILURES.with_label_values(&["returned"]).inc();
                // The topology is gone (a queue or binding deleted): the next publish connects
                // afresh and declares it again, so a retry can succeed.
                self.invalidate_publisher().await;
                Err(BusError::Unavailable(
                    "the broker returned the batch as unroutable; topology re-declared at the next try".into(),
                ))
            }
            Ok(Ok(Confirmation::Nack(_))) => {
                PUBLISH_FAILURES.with_label_values(&["nack"]).inc();
                // A channel whose quorum-queue leader died can keep nacking; start afresh.
                self.invalidate_publisher().await;
                Err(BusError::Overloaded("the broker nacked the batch".into()))
            }
            Ok(Ok(Confirmation::NotRequested)) => Err(BusError::Failed("channel not in confirm mode".into())),
            Ok(Err(e)) => {
                PUBLISH_FAILURES.with_label_values(&["unavailable"]).inc();
                self.invalidate_publisher().await;
                Err(BusError::Unavailable(format!("publish: {e}")))
            }
            Err(_) => {
                PUBLISH_FAILURES.with_label_values(&["timeout"]).inc();
                // A confirm that never came (alarm, partition): start over on a fresh connection.
                self.invalidate_publisher().await;
                Err(BusError::Overloaded(format!("no publisher confirm within {} ms", wait.as_millis())))
            }
        };
        PUBLISH_SECONDS.observe(started.elapsed().as_secs_f64());
        result
    }

    async fn consume(&self, prefetch: usize) -> Result<mpsc::Receiver<Incoming>, BusError> {
        let (tx, rx) = mpsc::channel(prefetch.max(1));
        // exported only by consuming processes (0 until connected), so an alert on 0 means an
        // aggregator that cannot reach the broker, never an ingest
        CONSUMING.set(0);
        let me = self.clone();
        let handle = tokio::spawn(async move {
            let mut backoff = Backoff::new(&me.inner.cfg);
            let mut rotation = 0;
            loop {
                let epoch = me.inner.epoch.fetch_add(1, Ordering::SeqCst) + 1;
                if tx.send(Incoming::Reset { epoch }).await.is_err() {
                    return;
                }
                let started = Instant::now();
                let stop = *me.inner.closing.borrow();
                if stop {
                    return;
                }
                let outcome = me.consume_once(&tx, prefetch, epoch, rotation).await;
                CONSUMING.set(0);
                match outcome {
                    Ok(()) => return,
                    Err(error) => tracing::warn!(%error, "consumer lost the broker; reconnecting"),
                }
                if started.elapsed() > Duration::from_secs(30) {
                    backoff.reset();
                }
                rotation += 1;
                tokio::time::sleep(backoff.delay()).await;
            }
        });
        if let Ok(mut c) = self.inner.consumer.lock() {
            *c = Some(handle);
        }
        Ok(rx)
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

#[cfg(test)]
mod envelope_tests {
    use super::*;

    fn event(id: &str) -> Event {
        Event {
            rtt_samples_ms: vec![1.5, 2.25],
            sent: Some(2),
            received: Some(2),
            ..Event::new(id, 7, 1_790_000_000_123, "t.example", netqoe_domain::Kind::Udp)
        }
    }

    #[test]
    fn both_envelope_versions_decode() {
        let evs = vec![event("a"), event("b")];
        let v2 = Envelope::encode_v2("b1", "p", 1_790_000_000_000, 3, &evs);
        let e = Envelope::decode(&v2).unwrap();
        assert_eq!(
            (e.batch_id.as_str(), e.probe.as_str(), e.received_ms, e.duplicates),
            ("b1", "p", 1_790_000_000_000, 3)
        );
        assert_eq!(e.events, evs);
        let v1 = serde_json::to_vec(&Envelope {
            v: 1,
            batch_id: "b1".into(),
            probe: "p".into(),
            received_ms: 5,
            duplicates: 0,
            events: evs.clone(),
        })
        .unwrap();
        assert_eq!(Envelope::decode(&v1).unwrap().events, evs);
        assert!(v2.len() < v1.len());
        assert!(Envelope::decode(&v2[..v2.len() - 1]).is_err());
        assert!(Envelope::decode(b"this is not an envelope").is_err());
        assert!(Envelope::decode(br#"{"v":99,"batch_id":"x","probe":"p","received_ms":0,"duplicates":0,"events":[]}"#)
            .is_err());
    }
}
