//! Federation over RabbitMQ (docs/federation.md).
//!
//! A region publishes each committed 1m window revision (binary `UplinkBatch`) to its own broker's
//! `{prefix}federation` exchange, bound to the `{prefix}federation.uplink` quorum queue, with a
//! publisher confirm (`RabbitUplink`). A dynamic shovel on the region's broker (`netqoe federate
//! setup`) moves that queue to the global broker's `{prefix}federation` exchange, acking only
//! after the global broker confirmed (`ack-mode = on-confirm`), and buffers in the queue while the
//! link is down. On the global broker, `{prefix}federation.global` (quorum, delivery limit, poison
//! to `{prefix}federation.dlq`) feeds the `global` role (`start_global`), which upserts each window
//! as the series `region~probe` of its own store: a lower or equal revision never overwrites, so
//! redelivery, reordering and replays never double count.

use std::collections::HashMap;

use lapin::options::BasicRejectOptions;
use netqoe_actors::store::{RollupStore, WriteSet};
use netqoe_actors::uplink::Uplink;
use netqoe_domain::federation::{global_probe, UplinkBatch, WindowRevision};
use netqoe_domain::{EventSet, Rollup, Tier, WindowKey};

use super::*;

/// Windows per federation message, at most (a commit of more is sent as several).
pub const WINDOWS_PER_MESSAGE: usize = 256;

/// Names of the federation topology.
#[derive(Clone, Debug)]
pub struct FederationNames {
    /// Regional and global broker: where revisions are published (fanout).
    pub exchange: String,
    /// Regional broker: the buffer the shovel drains.
    pub uplink_queue: String,
    /// Global broker: what the global role consumes.
    pub global_queue: String,
    pub dead_letter_exchange: String,
    pub dlq: String,
}

impl FederationNames {
    pub fn new(prefix: &str) -> Self {
        Self {
            exchange: format!("{prefix}federation"),
            uplink_queue: format!("{prefix}federation.uplink"),
            global_queue: format!("{prefix}federation.global"),
            dead_letter_exchange: format!("{prefix}federation.dlx"),
            dlq: format!("{prefix}federation.dlq"),
        }
    }
}

static FED_WINDOWS_SENT: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "netqoe_federation_windows_sent_total",
        "1m window revisions confirmed by the region's broker for the global tier",
    )
});
static FED_SEND_FAILURES: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "netqoe_federation_send_failures_total",
        "federation publishes not confirmed (the batches stay unacked and are sent again)",
    )
});
static FED_WINDOWS_RECEIVED: LazyLock<IntCounter> = LazyLock::new(|| {
    counter(
        "netqoe_federation_windows_received_total",
        "window revisions the global role committed (including ones it already had)",
    )
});
static FED_POISON: LazyLock<IntCounter> = LazyLock::new(|| {
    counter("netqoe_federation_poison_total", "undecodable federation messages dead-lettered by the global role")
});
static FED_CONSUMING: LazyLock<IntGauge> =
    LazyLock::new(|| gauge("netqoe_federation_consuming", "1 while the global role consumes the federation queue"));

/// A durable fanout exchange (idempotent).
async fn declare_fanout(ch: &Channel, name: &str, what: &str, op: Duration) -> Result<(), BusError> {
    let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
    within(op, what, ch.exchange_declare(name, ExchangeKind::Fanout, durable, FieldTable::default())).await
}

/// A durable quorum queue bound to a fanout exchange (idempotent).
async fn declare_bound(
    ch: &Channel,
    queue: &str,
    exchange: &str,
    args: FieldTable,
    op: Duration,
) -> Result<(), BusError> {
    let qdurable = QueueDeclareOptions { durable: true, ..Default::default() };
    within(op, "declare federation queue", ch.queue_declare(queue, qdurable, args)).await?;
    within(
        op,
        "bind federation queue",
        ch.queue_bind(queue, exchange, "", QueueBindOptions::default(), FieldTable::default()),
    )
    .await?;
    Ok(())
}

/// Declares the region's side: the exchange and the uplink queue bound to it (idempotent).
pub async fn declare_region(ch: &Channel, prefix: &str, op: Duration) -> Result<FederationNames, BusError> {
    let n = FederationNames::new(prefix);
    declare_fanout(ch, &n.exchange, "declare federation exchange", op).await?;
    declare_bound(ch, &n.uplink_queue, &n.exchange, quorum_args(&[]), op).await?;
    Ok(n)
}

/// Declares the global side: the exchange the shovels publish to, the global queue (delivery
/// limit, dead-lettering) and its DLQ (idempotent).
pub async fn declare_global(
    ch: &Channel,
    prefix: &str,
    delivery_limit: u32,
    op: Duration,
) -> Result<FederationNames, BusError> {
    let n = FederationNames::new(prefix);
    declare_fanout(ch, &n.exchange, "declare federation exchange", op).await?;
    declare_fanout(ch, &n.dead_letter_exchange, "declare federation dead-letter exchange", op).await?;
    declare_bound(ch, &n.dlq, &n.dead_letter_exchange, quorum_args(&[]), op).await?;
    let args = quorum_args(&[
        ("x-delivery-limit", AMQPValue::LongInt(delivery_limit as i32)),
        ("x-dead-letter-exchange", AMQPValue::LongString(LongString::from(n.dead_letter_exchange.as_str()))),
    ]);
    declare_bound(ch, &n.global_queue, &n.exchange, args, op).await?;
    Ok(n)
}

/// The region's uplink: publishes committed windows to its own broker (the bus's publisher
/// connection), Ok only after the broker confirmed a routed message.
pub struct RabbitUplink {
    bus: RabbitBus,
    region: String,
    clock: netqoe_actors::Clock,
    /// The region's topology is declared on the current publisher channel.
    declared: std::sync::atomic::AtomicBool,
}

impl RabbitUplink {
    pub fn new(bus: RabbitBus, region: String, clock: netqoe_actors::Clock) -> Self {
        init_federation_metrics();
        Self { bus, region, clock, declared: std::sync::atomic::AtomicBool::new(false) }
    }

    async fn publish(&self, payload: &[u8]) -> Result<(), BusError> {
        let (ch, _) = self.bus.publisher().await?;
        let op = self.bus.op();
        let prefix = &self.bus.inner.cfg.prefix;
        if !self.declared.load(Ordering::Relaxed) {
            declare_region(&ch, prefix, op).await?;
            self.declared.store(true, Ordering::Relaxed);
        }
        let wait = Duration::from_millis(self.bus.inner.cfg.publish_timeout_ms);
        let exchange = FederationNames::new(prefix).exchange;
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type(ShortString::from("application/vnd.netqoe.federation.v1"));
        let outcome = tokio::time::timeout(wait, async {
            ch.basic_publish(
                &exchange,
                "",
                BasicPublishOptions { mandatory: true, ..Default::default() },
                payload,
                props,
            )
            .await?
            .await
        })
        .await;
        match outcome {
            Ok(Ok(Confirmation::Ack(None))) => Ok(()),
            Ok(Ok(Confirmation::Ack(Some(_)))) => {
                self.declared.store(false, Ordering::Relaxed);
                Err(BusError::unavailable("federation message unroutable (no uplink queue bound)"))
            }
            Ok(Ok(Confirmation::Nack(_))) => Err(BusError::overloaded("the broker nacked a federation message")),
            Ok(Ok(Confirmation::NotRequested)) => Err(BusError::failed("channel not in confirm mode")),
            Ok(Err(e)) => {
                self.declared.store(false, Ordering::Relaxed);
                self.bus.invalidate_publisher().await;
                Err(BusError::unavailable(format!("publish federation message: {e}")))
            }
            Err(_) => {
                self.declared.store(false, Ordering::Relaxed);
                self.bus.invalidate_publisher().await;
                Err(BusError::overloaded("no confirm for a federation message"))
            }
        }
    }
}

#[async_trait]
impl Uplink for RabbitUplink {
    async fn send(&self, windows: &[Rollup]) -> Result<(), BusError> {
        let m1: Vec<&Rollup> = windows.iter().filter(|r| r.key.tier == Tier::M1).collect();
        for chunk in m1.chunks(WINDOWS_PER_MESSAGE) {
            let batch = UplinkBatch {
                region: self.region.clone(),
                committed_ms: self.clock.now_ms(),
                windows: chunk
                    .iter()
                    .map(|r| WindowRevision {
                        key: r.key.clone(),
                        revision: r.revision,
                        closed: r.closed,
                        agg: r.agg.clone(),
                    })
                    .collect(),
            };
            if let Err(e) = self.publish(&batch.encode()).await {
                FED_SEND_FAILURES.inc();
                return Err(e);
            }
            FED_WINDOWS_SENT.inc_by(chunk.len() as u64);
        }
        Ok(())
    }
}

pub fn init_federation_metrics() {
    LazyLock::force(&FED_WINDOWS_SENT);
    LazyLock::force(&FED_SEND_FAILURES);
    LazyLock::force(&FED_WINDOWS_RECEIVED);
    LazyLock::force(&FED_POISON);
    LazyLock::force(&FED_CONSUMING);
}

/// The global role's consumer: until `closing` turns true, consumes the global queue of the
/// broker in `cfg` (reconnecting with backoff, re-declaring, re-consuming), and commits each
/// group of messages to `store` before acking them.
pub fn start_global(
    cfg: RabbitConfig,
    store: Arc<dyn RollupStore>,
    prefetch: usize,
    closing: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    init_federation_metrics();
    tokio::spawn(async move {
        let mut backoff = reconnect_backoff(&cfg);
        let mut rotation = 0;
        loop {
            if *closing.borrow() {
                return;
            }
            let started = Instant::now();
            match consume_global(&cfg, store.as_ref(), prefetch, closing.clone(), rotation).await {
                Ok(()) => return,
                Err(error) => tracing::warn!(%error, "global role lost the broker; reconnecting"),
            }
            FED_CONSUMING.set(0);
            if started.elapsed() > Duration::from_secs(30) {
                backoff.reset();
            }
            rotation += 1;
            let mut c = closing.clone();
            tokio::select! {
                _ = tokio::time::sleep(reconnect_delay(&mut backoff)) => {}
                _ = async { let _ = c.wait_for(|c| *c).await; } => return,
            }
        }
    })
}

async fn consume_global(
    cfg: &RabbitConfig,
    store: &dyn RollupStore,
    prefetch: usize,
    mut closing: tokio::sync::watch::Receiver<bool>,
    rotation: usize,
) -> Result<(), BusError> {
    let op = Duration::from_millis(cfg.op_timeout_ms);
    let conn = connect(cfg, "netqoe-global", rotation).await?;
    let ch = within(op, "open channel", conn.create_channel()).await?;
    let names = declare_global(&ch, &cfg.prefix, cfg.delivery_limit, op).await?;
    let prefetch = prefetch.clamp(1, u16::MAX as usize);
    within(op, "basic.qos", ch.basic_qos(prefetch as u16, BasicQosOptions::default())).await?;
    let tag = format!("netqoe-global-{}-{:08x}", std::process::id(), rand::thread_rng().gen::<u32>());
    let mut stream = within(
        op,
        "basic.consume",
        ch.basic_consume(&names.global_queue, &tag, BasicConsumeOptions::default(), FieldTable::default()),
    )
    .await?;
    FED_CONSUMING.set(1);
    tracing::info!(queue = %names.global_queue, prefetch, "global role consuming the federation queue");
    loop {
        let first = tokio::select! {
            _ = async { let _ = closing.wait_for(|c| *c).await; } => {
                let _ = tokio::time::timeout(op, conn.close(200, "shutdown")).await;
                return Ok(());
            }
            next = stream.next() => next,
        };
        let mut deliveries = vec![next_delivery(first)?];
        // what is already there joins this commit (bounded by the prefetch)
        while deliveries.len() < prefetch {
            match tokio::time::timeout(Duration::from_millis(2), stream.next()).await {
                Ok(next) => deliveries.push(next_delivery(next)?),
                Err(_) => break,
            }
        }
        let mut windows: HashMap<WindowKey, Rollup> = HashMap::new();
        let mut good = Vec::with_capacity(deliveries.len());
        for d in deliveries {
            match UplinkBatch::decode(&d.data).and_then(to_global) {
                Ok(rollups) => {
                    for r in rollups {
                        match windows.get(&r.key) {
                            Some(have) if have.revision >= r.revision => {}
                            _ => {
                                windows.insert(r.key.clone(), r);
                            }
                        }
                    }
                    good.push(d);
                }
                Err(error) => {
                    FED_POISON.inc();
                    tracing::error!(%error, "undecodable federation message; dead-lettered");
                    within(op, "reject", d.acker.reject(BasicRejectOptions { requeue: false })).await?;
                }
            }
        }
        if good.is_empty() {
            continue;
        }
        let n = windows.len() as u64;
        let rollups: Vec<Rollup> = windows.into_values().collect();
        let derive: Vec<WindowKey> = rollups.iter().map(|r| r.key.clone()).collect();
        let ws = WriteSet { rollups, batches: Vec::new(), watermarks: Vec::new(), derive };
        let mut wait = netqoe_actors::backoff::Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        loop {
            match store.commit(ws.clone()).await {
                Ok(_) => break,
                Err(e) if e.retryable() && !*closing.borrow() => {
                    let d = wait.next_delay();
                    tracing::warn!(error = %e, retry_in = ?d, "global store unavailable; federation messages held");
                    tokio::time::sleep(d).await;
                }
                Err(e) => {
                    // not committed: back to the queue (counted toward the delivery limit)
                    for d in good {
                        let _ =
                            within(op, "nack", d.acker.nack(BasicNackOptions { requeue: true, ..Default::default() }))
                                .await;
                    }
                    return Err(BusError::unavailable(format!("global store: {e}")));
                }
            }
        }
        FED_WINDOWS_RECEIVED.inc_by(n);
        for d in good {
            within(op, "ack", d.acker.ack(BasicAckOptions::default())).await?;
        }
    }
}

fn next_delivery(next: Option<lapin::Result<lapin::message::Delivery>>) -> Result<lapin::message::Delivery, BusError> {
    match next {
        Some(Ok(d)) => Ok(d),
        Some(Err(e)) => Err(BusError::unavailable(format!("global consumer: {e}"))),
        None => Err(BusError::unavailable("global consumer cancelled")),
    }
}

/// A region's windows as the global tier stores them: series `region~probe`, no event sets (the
/// region deduplicated events; the global tier orders whole windows by revision).
pub fn to_global(b: UplinkBatch) -> Result<Vec<Rollup>, netqoe_domain::federation::UplinkDecodeError> {
    b.windows
        .into_iter()
        .map(|w| {
            if w.key.tier != Tier::M1 {
                return Err(netqoe_domain::federation::UplinkDecodeError(format!(
                    "a {} window: only 1m windows travel (the global tier derives 1h and 1d)",
                    w.key.tier.as_str()
                )));
            }
            Ok(Rollup {
                key: WindowKey { probe: global_probe(&b.region, &w.key.probe), ..w.key },
                agg: w.agg,
                applied: EventSet::default(),
                revision: w.revision,
                closed: w.closed,
            })
        })
        .collect()
}

/// What `netqoe federate setup` did.
#[derive(Debug)]
pub struct SetupReport {
    pub shovel: String,
    pub vhost: String,
    pub value: serde_json::Value,
}

/// The dynamic shovel's name on the region's broker.
pub fn shovel_name(prefix: &str, region: &str) -> String {
    format!("{prefix}federation-{region}")
}

/// The shovel definition (`rabbitmqctl set_parameter shovel NAME '<this JSON>'`): the region's
/// uplink queue to the global broker's federation exchange, acked on the global broker's confirm,
/// never deleted, reconnecting every 5 s while the link is down.
pub fn shovel_value(prefix: &str, vhost: &str, global_uri: &str) -> serde_json::Value {
    let n = FederationNames::new(prefix);
    // the region's own node (a direct connection), in the vhost the uplink queue is in
    let src = if vhost == "/" {
        "amqp://".to_string()
    } else {
        format!("amqp:///{}", percent_encoding::utf8_percent_encode(vhost, percent_encoding::NON_ALPHANUMERIC))
    };
    serde_json::json!({
        "src-protocol": "amqp091",
        "src-uri": src,
        "src-queue": n.uplink_queue,
        "src-prefetch-count": 64,
        "dest-protocol": "amqp091",
        "dest-uri": global_uri,
        "dest-exchange": n.exchange,
        "dest-add-forward-headers": false,
        "ack-mode": "on-confirm",
        "src-delete-after": "never",
        "reconnect-delay": 5,
    })
}

/// `netqoe federate setup` (idempotent): declares the region's exchange and uplink queue on the
/// region's broker, the global exchange, queue and DLQ on the global broker, and puts the dynamic
/// shovel between them through the region's management API. `dry_run`: only prints what it would
/// do.
pub async fn setup(cfg: &crate::config::Config, dry_run: bool) -> Result<SetupReport, String> {
    let f = &cfg.federation;
    if f.region.is_empty() {
        return Err("federation.region: set this deployment's region".into());
    }
    if f.global_uri.is_empty() {
        return Err(
            "federation.global_uri: set the global broker's AMQP URI (as the region's broker reaches it)".into()
        );
    }
    let mgmt_url = if f.management_url.is_empty() { &cfg.rabbitmq.management_url } else { &f.management_url };
    if mgmt_url.is_empty() {
        return Err("federation.management_url: set the region's management API (http://host:15672)".into());
    }
    let first = cfg.rabbitmq.uris.first().ok_or("rabbitmq.uris: no broker configured")?;
    let mgmt = crate::rabbit::management::Management::new(mgmt_url, first)
        .map_err(|e| format!("federation.management_url: {e}"))?;
    let name = shovel_name(&cfg.rabbitmq.prefix, &f.region);
    let value = shovel_value(&cfg.rabbitmq.prefix, &mgmt.vhost(), &f.global_uri);
    let report = SetupReport { shovel: name.clone(), vhost: mgmt.vhost(), value: value.clone() };
    if dry_run {
        return Ok(report);
    }
    let op = Duration::from_millis(cfg.rabbitmq.op_timeout_ms);
    let region = connect(&cfg.rabbitmq, "netqoe-federate-setup", 0).await.map_err(|e| format!("region broker: {e}"))?;
    let ch = within(op, "open channel", region.create_channel()).await.map_err(|e| e.to_string())?;
    declare_region(&ch, &cfg.rabbitmq.prefix, op).await.map_err(|e| format!("region broker: {e}"))?;
    let _ = within(op, "close", region.close(200, "done")).await;
    let global_cfg = RabbitConfig { uris: vec![f.global_uri.clone()], ..cfg.rabbitmq.clone() };
    let global = connect(&global_cfg, "netqoe-federate-setup", 0).await.map_err(|e| format!("global broker: {e}"))?;
    let ch = within(op, "open channel", global.create_channel()).await.map_err(|e| e.to_string())?;
    declare_global(&ch, &cfg.rabbitmq.prefix, cfg.rabbitmq.delivery_limit, op)
        .await
        .map_err(|e| format!("global broker: {e}"))?;
    let _ = within(op, "close", global.close(200, "done")).await;
    mgmt.put_parameter("shovel", &name, &value, op).await.map_err(|e| format!("shovel {name}: {e}"))?;
    Ok(report)
}

/// What `netqoe federate status` reports of a region's uplink.
#[derive(Debug, Clone, PartialEq)]
pub struct UplinkStatus {
    pub shovel: String,
    /// The shovel's state as the region's broker reports it (`running`, `starting`,
    /// `terminated`), or `missing` when no such shovel is defined.
    pub state: String,
    /// Messages waiting in the uplink queue (buffered while the link is down).
    pub queued: u64,
}

/// `netqoe federate status`: the region's shovel and uplink queue, from its management API.
pub async fn status(cfg: &crate::config::Config) -> Result<UplinkStatus, String> {
    let f = &cfg.federation;
    if f.region.is_empty() {
        return Err("federation.region: set this deployment's region".into());
    }
    let mgmt_url = if f.management_url.is_empty() { &cfg.rabbitmq.management_url } else { &f.management_url };
    if mgmt_url.is_empty() {
        return Err("federation.management_url: set the region's management API (http://host:15672)".into());
    }
    let first = cfg.rabbitmq.uris.first().ok_or("rabbitmq.uris: no broker configured")?;
    let mgmt = crate::rabbit::management::Management::new(mgmt_url, first)
        .map_err(|e| format!("federation.management_url: {e}"))?;
    let op = Duration::from_millis(cfg.rabbitmq.op_timeout_ms);
    let name = shovel_name(&cfg.rabbitmq.prefix, &f.region);
    let shovels = mgmt.shovels(op).await?;
    let state = shovels
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["name"] == name.as_str())
        .map_or("missing".to_string(), |s| s["state"].as_str().unwrap_or("unknown").to_string());
    let queue = mgmt.queue(&FederationNames::new(&cfg.rabbitmq.prefix).uplink_queue, op).await?;
    Ok(UplinkStatus { shovel: name, state, queued: queue["messages"].as_u64().unwrap_or(0) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shovel_reads_the_uplink_queue_of_the_regions_vhost_and_acks_on_the_global_confirm() {
        let v = shovel_value("netqoe.", "/", "amqps://u:p@global:5671/%2f");
        assert_eq!(v["src-uri"], "amqp://");
        assert_eq!(v["src-queue"], "netqoe.federation.uplink");
        assert_eq!(v["dest-exchange"], "netqoe.federation");
        assert_eq!(v["dest-uri"], "amqps://u:p@global:5671/%2f");
        assert_eq!(v["ack-mode"], "on-confirm");
        assert_eq!(v["src-delete-after"], "never");
        let v = shovel_value("netqoe.", "eu/west", "amqp://global");
        assert_eq!(v["src-uri"], "amqp:///eu%2Fwest");
    }

    #[test]
    fn a_regions_windows_become_series_of_its_region_and_only_1m_windows_travel() {
        let w = |tier: Tier, start_ms: i64| WindowRevision {
            key: WindowKey {
                probe: "p-1".into(),
                target: "t".into(),
                metric: netqoe_domain::Metric::Rtt,
                tier,
                start_ms,
            },
            revision: 4,
            closed: true,
            agg: Default::default(),
        };
        let b = UplinkBatch { region: "eu".into(), committed_ms: 0, windows: vec![w(Tier::M1, 60_000)] };
        let r = to_global(b).unwrap();
        assert_eq!((r[0].key.probe.as_str(), r[0].revision, r[0].closed), ("eu~p-1", 4, true));
        assert!(r[0].applied.is_empty());
        let b = UplinkBatch { region: "eu".into(), committed_ms: 0, windows: vec![w(Tier::H1, 0)] };
        assert!(to_global(b).is_err(), "a derived window is refused (the global tier derives its own)");
    }
}
