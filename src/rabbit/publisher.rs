//! Publishing: one confirm-mode channel (connected and declared lazily, dropped after any
//! failure), batches routed by shard with `mandatory`, Ok only after the broker's ack.

use super::*;

pub(super) struct PublisherState {
    pub(super) conn: Option<Connection>,
    pub(super) channel: Option<Channel>,
    pub(super) names: Option<Names>,
    /// No reconnect attempt before this instant (fail fast with 503 meanwhile).
    pub(super) retry_at: Option<Instant>,
    pub(super) backoff: Backoff,
    pub(super) rotation: usize,
}

impl RabbitBus {
    /// Publishes an incident change (JSON) to the diagnoses topic exchange with routing key
    /// `incident.<state>.<scope>` (e.g. `incident.open.group`), persistent, with publisher confirm.
    /// Unrouted incidents (nobody bound) are not an error.
    pub async fn publish_incident(&self, i: &netqoe_domain::diagnosis::Incident) -> Result<(), BusError> {
        let body = serde_json::to_vec(&crate::webhook::payload(i)).map_err(|e| BusError::failed(e.to_string()))?;
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
            Ok(Ok(Confirmation::Nack(_))) => Err(BusError::overloaded("the broker nacked the incident")),
            Ok(Ok(Confirmation::NotRequested)) => Err(BusError::failed("channel not in confirm mode")),
            Ok(Err(e)) => {
                self.invalidate_publisher().await;
                Err(BusError::unavailable(format!("publish incident: {e}")))
            }
            Err(_) => {
                self.invalidate_publisher().await;
                Err(BusError::overloaded("no confirm for the incident"))
            }
        }
    }

    /// A confirm-mode channel, connecting (and declaring the topology) if needed.
    pub(super) async fn publisher(&self) -> Result<(Channel, Names), BusError> {
        let mut st = self.inner.publisher.lock().await;
        if let (Some(c), Some(ch), Some(n)) = (&st.conn, &st.channel, &st.names) {
            if c.status().connected() && ch.status().connected() {
                if c.status().blocked() {
                    PUBLISH_FAILURES.with_label_values(&["blocked"]).inc();
                    return Err(BusError::overloaded("broker blocked publishing (memory or disk alarm)"));
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
            return Err(BusError::unavailable("broker unreachable; reconnect pending"));
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
                let d = reconnect_delay(&mut st.backoff);
                st.retry_at = Some(Instant::now() + d);
                tracing::warn!(error = %e, retry_in_ms = d.as_millis() as u64, "publisher cannot reach the broker");
                Err(e)
            }
        }
    }

    pub(super) async fn invalidate_publisher(&self) {
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
            other => Err(BusError::failed(format!("not confirmed: {other:?}"))),
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

    pub(super) async fn publish_batch(
        &self,
        probe: &str,
        events: Vec<Event>,
        received_ms: i64,
    ) -> Result<Published, BusError> {
        let started = Instant::now();
        let n = events.len();
        let batch_id = format!("{probe}:{received_ms}:{:016x}", rand::thread_rng().gen::<u64>());
        let payload = Envelope::encode_v2(&batch_id, probe, received_ms, 0, &events);
        let (ch, names) = self.publisher().await.inspect_err(|e| {
            if e.kind != BusErrorKind::Overloaded {
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
                Err(BusError::unavailable(
                    "the broker returned the batch as unroutable; topology re-declared at the next try",
                ))
            }
            Ok(Ok(Confirmation::Nack(_))) => {
                PUBLISH_FAILURES.with_label_values(&["nack"]).inc();
                // A channel whose quorum-queue leader died can keep nacking; start afresh.
                self.invalidate_publisher().await;
                Err(BusError::overloaded("the broker nacked the batch"))
            }
            Ok(Ok(Confirmation::NotRequested)) => Err(BusError::failed("channel not in confirm mode")),
            Ok(Err(e)) => {
                PUBLISH_FAILURES.with_label_values(&["unavailable"]).inc();
                self.invalidate_publisher().await;
                Err(BusError::unavailable(format!("publish: {e}")))
            }
            Err(_) => {
                PUBLISH_FAILURES.with_label_values(&["timeout"]).inc();
                // A confirm that never came (alarm, partition): start over on a fresh connection.
                self.invalidate_publisher().await;
                Err(BusError::overloaded(format!("no publisher confirm within {} ms", wait.as_millis())))
            }
        };
        PUBLISH_SECONDS.observe(started.elapsed().as_secs_f64());
        result
    }
}
