//! netqoe actors: the stateful parts of the pipeline (per-probe sessions, event-time window
//! aggregation, rollup writing) as supervised actix actors, and the two ports every backend
//! implements: [`bus::EventBus`] (how batches travel) and [`store::RollupStore`] (where rollups live).
//!
//! Invariant: actors never panic in handlers; they return errors, stop on unrecoverable state and
//! are restarted by their supervisor, rebuilding state from the store. Acks go back to the bus only
//! after the effect of a batch is committed to the store.

pub mod aggregator;
pub mod backoff;
pub mod bus;
pub mod clock;
pub mod diagnoser;
pub mod error;
pub mod memory;
pub mod metrics;
pub mod pair_gauges;
pub mod pipeline;
pub mod session;
pub mod store;
pub mod target_gauges;
pub mod uplink;
pub mod writer;

pub use clock::{system_now_ms as now_ms, Clock};
