//! The topology: a direct exchange routed by probe shard into K quorum queues (single active
//! consumer, delivery limit, dead-lettering into a DLQ), the diagnoses topic exchange, declared
//! idempotently after every (re)connect; every broker await bounded by a timeout.

use super::*;

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
    BusError::unavailable(format!("broker did not answer {what} in time"))
}

pub(super) async fn within<T>(
    d: Duration,
    what: &str,
    f: impl std::future::Future<Output = lapin::Result<T>>,
) -> Result<T, BusError> {
    match tokio::time::timeout(d, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(BusError::unavailable(format!("{what}: {e}"))),
        Err(_) => Err(timeout_err(what)),
    }
}

pub(super) fn quorum_args(extra: &[(&str, AMQPValue)]) -> FieldTable {
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
