//! Incident webhooks: every incident that opens, changes or resolves is POSTed as JSON to each
//! configured URL, signed with HMAC-SHA256 over the body (`X-Netqoe-Signature: sha256=<hex>`),
//! and retried with exponential backoff on errors, timeouts and non-2xx answers.
//!
//! Invariant: bounded — one queue of `webhooks.queue` notifications (the diagnoser drops and counts
//! what does not fit; the incident itself is stored and listed regardless) and one delivery at a
//! time, at most `webhooks.max_attempts` tries each.

use std::time::Duration;

use hmac::{Hmac, Mac};
use netqoe_actors::metrics::WEBHOOK_DELIVERIES;
use netqoe_domain::diagnosis::{Incident, IncidentState};
use sha2::Sha256;
use tokio::sync::mpsc;

use crate::config::WebhookConfig;

/// `sha256=<hex HMAC-SHA256 of body under secret>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The JSON a webhook receives.
pub fn payload(i: &Incident) -> serde_json::Value {
    let event = match i.state {
        IncidentState::Resolved => "incident.resolved",
        IncidentState::Open if i.updated_ms == i.opened_ms => "incident.opened",
        IncidentState::Open => "incident.updated",
    };
    serde_json::json!({ "event": event, "incident": i })
}

/// Forwards each incident to every sink (webhooks, the broker); a full sink drops and counts.
pub fn fan_out(sinks: Vec<mpsc::Sender<Incident>>, queue: usize) -> mpsc::Sender<Incident> {
    let (tx, mut rx) = mpsc::channel::<Incident>(queue.max(1));
    actix_rt::spawn(async move {
        while let Some(i) = rx.recv().await {
            for s in &sinks {
                if s.try_send(i.clone()).is_err() {
                    netqoe_actors::metrics::NOTIFICATIONS_DROPPED.inc();
                }
            }
        }
    });
    tx
}

/// Publishes every incident to the broker's diagnoses exchange (a few tries each, then dropped
/// and counted as failed: the incident stays in the store and the API either way).
pub fn start_broker(bus: crate::rabbit::RabbitBus, queue: usize) -> mpsc::Sender<Incident> {
    let (tx, mut rx) = mpsc::channel::<Incident>(queue.max(1));
    actix_rt::spawn(async move {
        while let Some(i) = rx.recv().await {
            for attempt in 1..=5u32 {
                match bus.publish_incident(&i).await {
                    Ok(()) => break,
                    Err(error) => {
                        tracing::warn!(%error, id = %i.id, attempt, "incident not published to the broker");
                        tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                    }
                }
            }
        }
    });
    tx
}

/// Starts the delivery task (on the current actix runtime); returns the queue to feed it.
pub fn start(cfg: WebhookConfig) -> mpsc::Sender<Incident> {
    let (tx, mut rx) = mpsc::channel::<Incident>(cfg.queue.max(1));
    actix_rt::spawn(async move {
        let client = awc::Client::builder().timeout(Duration::from_millis(cfg.timeout_ms)).finish();
        while let Some(i) = rx.recv().await {
            let body = match serde_json::to_vec(&payload(&i)) {
                Ok(b) => b,
                Err(error) => {
                    tracing::error!(%error, "incident not serialisable");
                    continue;
                }
            };
            let sig = signature(cfg.secret.expose(), &body);
            let delivery = format!("{}-{}", i.id, i.updated_ms);
            for url in &cfg.urls {
                let mut wait = netqoe_actors::backoff::Backoff::new(
                    Duration::from_millis(cfg.backoff_ms),
                    Duration::from_secs(60),
                );
                for attempt in 1..=cfg.max_attempts.max(1) {
                    let res = client
                        .post(url)
                        .insert_header(("Content-Type", "application/json"))
                        .insert_header(("X-Netqoe-Signature", sig.clone()))
                        .insert_header(("X-Netqoe-Delivery", delivery.clone()))
                        .send_body(body.clone())
                        .await;
                    let outcome = match res {
                        Ok(r) if r.status().is_success() => Ok(()),
                        Ok(r) => Err(format!("HTTP {}", r.status())),
                        Err(e) => Err(e.to_string()),
                    };
                    match outcome {
                        Ok(()) => {
                            WEBHOOK_DELIVERIES.with_label_values(&["delivered"]).inc();
                            break;
                        }
                        Err(error) if attempt < cfg.max_attempts => {
                            WEBHOOK_DELIVERIES.with_label_values(&["retried"]).inc();
                            tracing::warn!(%url, %error, attempt, "webhook delivery failed; retrying");
                            tokio::time::sleep(wait.next_delay()).await;
                        }
                        Err(error) => {
                            WEBHOOK_DELIVERIES.with_label_values(&["failed"]).inc();
                            tracing::error!(%url, %error, id = %i.id, "webhook delivery given up");
                        }
                    }
                }
            }
        }
    });
    tx
}

#[cfg(test)]
mod tests {
    /// RFC 4231, test case 2 (HMAC-SHA-256): a known answer, not a second run of the same code.
    #[test]
    fn the_signature_is_rfc_4231_hmac_sha256() {
        assert_eq!(
            super::signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
