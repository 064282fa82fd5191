//! Consuming: the shard queues with manual acks and bounded prefetch, reconnecting with backoff
//! and announcing each new channel with `Incoming::Reset`; an unacked delivery is nacked back on
//! drop.

use super::*;

impl RabbitBus {
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
                        Some(Err(e)) => return Err(BusError::unavailable(format!("consumer: {e}"))),
                        None => return Err(BusError::unavailable("consumer cancelled")),
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
                                    let (consumers, active) = crate::rabbit::management::consumer_state(&q, tag);
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

    pub(super) fn start_consumer(&self, prefetch: usize) -> mpsc::Receiver<Incoming> {
        let (tx, rx) = mpsc::channel(prefetch.max(1));
        // exported only by consuming processes (0 until connected), so an alert on 0 means an
        // aggregator that cannot reach the broker, never an ingest
        CONSUMING.set(0);
        let me = self.clone();
        let handle = tokio::spawn(async move {
            let mut backoff = reconnect_backoff(&me.inner.cfg);
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
                tokio::time::sleep(reconnect_delay(&mut backoff)).await;
            }
        });
        if let Ok(mut c) = self.inner.consumer.lock() {
            *c = Some(handle);
        }
        rx
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
