//! The `EventBus` port: how accepted batches travel from ingest to the aggregators.
//!
//! Invariant: `publish` returns Ok only once the batch is durable (committed to the journal, or
//! confirmed by the broker). A delivery that is dropped without `ack` is redelivered.

use async_trait::async_trait;
use netqoe_domain::Event;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// Stable identity of a batch across redeliveries.
pub type BatchId = String;

/// A batch of one probe's validated, deduplicated events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    pub id: BatchId,
    pub probe: String,
    /// Receiver clock at ingest, ms.
    pub received_ms: i64,
    /// Events of the posted batch that were already accepted earlier (not carried here).
    pub duplicates: u64,
    pub events: Vec<Event>,
}

/// What ingest learns from a publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    /// None when every event was a duplicate and nothing needed publishing.
    pub batch_id: Option<BatchId>,
    pub accepted: usize,
    pub duplicates: usize,
}

pub use crate::error::{BusError, BusErrorKind, RetryHint};

/// Settles one delivery. Dropping it without calling `ack` requeues the batch, and counts as a
/// failed delivery toward the bus's delivery limit (a batch that keeps failing is poison and goes
/// to the dead letters).
#[async_trait]
pub trait Acker: Send + Sync {
    async fn ack(self: Box<Self>) -> Result<(), BusError>;

    /// Requeues the batch because of a transient condition that is not the batch's fault (the
    /// store unavailable): it is delivered again later and this delivery does not count toward
    /// the delivery limit — an outage must not turn accepted batches into dead letters.
    fn release(self: Box<Self>) {}
}

/// One batch handed to the pipeline.
pub struct Delivery {
    pub batch: Batch,
    /// The bus may have handed this batch out before (its effect may already be committed).
    pub redelivered: bool,
    /// Consumption epoch this delivery belongs to (see `Incoming::Reset`).
    pub epoch: u64,
    pub acker: Box<dyn Acker>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("batch", &self.batch.id)
            .field("probe", &self.batch.probe)
            .field("redelivered", &self.redelivered)
            .finish()
    }
}

/// What a consuming bus hands the pipeline.
#[derive(Debug)]
pub enum Incoming {
    Deliver(Delivery),
    /// Consumption restarted (reconnect, consumer cancelled): unacked deliveries will come again,
    /// possibly to another consumer, so in-memory state built from them must be dropped, and
    /// deliveries of earlier epochs still queued must not be applied.
    Reset {
        epoch: u64,
    },
}

#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Durably accepts a probe's events, dropping those whose `event_id` was accepted before.
    async fn publish(&self, probe: &str, events: Vec<Event>, received_ms: i64) -> Result<Published, BusError>;
    /// Starts delivering batches; at most `prefetch` are unacked at once (per consumer).
    async fn consume(&self, prefetch: usize) -> Result<mpsc::Receiver<Incoming>, BusError>;
    /// True when `publish` already drops re-sent events exactly (the embedded journal); false
    /// when the aggregators must deduplicate by event id against the store (a broker).
    fn dedups_events(&self) -> bool;
    /// Readiness: Ok when publishing would currently succeed.
    async fn ready(&self) -> Result<(), BusError>;
    /// Short name for health reports and logs.
    fn name(&self) -> &'static str;
    /// Stops consuming and closes connections (after the pipeline drained). Default: nothing to do.
    async fn close(&self) {}
    /// Accepted batches not yet acked that only this process's consumer takes (the embedded
    /// journal), so a drain can wait until they are aggregated; `None` where the backlog is shared
    /// with other consumers and another takes it over (a broker). Default: `None`.
    async fn backlog(&self) -> Result<Option<u64>, BusError> {
        Ok(None)
    }
}
