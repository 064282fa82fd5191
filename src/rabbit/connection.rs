//! Connecting to the first broker of the configured list that answers, and the capped
//! exponential backoff with jitter between attempts.

use super::*;

/// Connects to the first broker of the list that answers (starting at a rotating position).
pub async fn connect(cfg: &RabbitConfig, name: &str, start: usize) -> Result<Connection, BusError> {
    let timeout = Duration::from_millis(cfg.connect_timeout_ms);
    let mut last = BusError::unavailable("no broker URI configured");
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
            Ok(Err(e)) => last = BusError::unavailable(format!("{}: {e}", redact_uri(uri))),
            Err(_) => last = BusError::unavailable(format!("{}: connect timed out", redact_uri(uri))),
        }
    }
    Err(last)
}

/// The reconnect schedule of `rabbitmq.reconnect_min_ms`..`reconnect_max_ms`.
pub(super) fn reconnect_backoff(cfg: &RabbitConfig) -> Backoff {
    Backoff::new(Duration::from_millis(cfg.reconnect_min_ms), Duration::from_millis(cfg.reconnect_max_ms))
}

/// The next reconnect delay, jittered.
pub(super) fn reconnect_delay(b: &mut Backoff) -> Duration {
    b.next_jittered(rand::thread_rng().gen())
}
