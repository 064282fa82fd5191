//! The `Uplink` port: where a region sends each committed 1m window revision for the global tier
//! (federation; docs/federation.md). The RabbitMQ adapter publishes to the region's
//! `netqoe.federation` exchange with a publisher confirm; a shovel moves it to the global broker.
//!
//! Invariant: an aggregator acks a batch only after the windows it changed were committed **and**
//! handed to the uplink (`send` Ok = durable on the region's broker). A crash between the two
//! leaves the batch unacked: its redelivery is recognised as committed and the stored state of its
//! windows is sent again, so every committed revision reaches the uplink at least once, and the
//! global tier's revision ordering makes more than once harmless.

use std::sync::Arc;

use async_trait::async_trait;
use netqoe_domain::Rollup;

use crate::bus::BusError;

#[async_trait]
pub trait Uplink: Send + Sync + 'static {
    /// Sends full states of committed 1m windows upward; Ok only once they are durable.
    async fn send(&self, windows: &[Rollup]) -> Result<(), BusError>;
}

/// A shareable uplink in a configuration (Debug without its internals).
#[derive(Clone)]
pub struct UplinkHandle(pub Arc<dyn Uplink>);

impl std::fmt::Debug for UplinkHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Uplink")
    }
}

/// An uplink that keeps what it was sent in memory (tests and the contract's reference).
#[derive(Default)]
pub struct MemoryUplink {
    pub sent: std::sync::Mutex<Vec<Rollup>>,
    /// While set, `send` fails as a broker that cannot be reached.
    pub down: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl Uplink for MemoryUplink {
    async fn send(&self, windows: &[Rollup]) -> Result<(), BusError> {
        if self.down.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(BusError::unavailable("uplink down"));
        }
        self.sent.lock().map_err(|_| BusError::failed("poisoned"))?.extend_from_slice(windows);
        Ok(())
    }
}
