//! netqoe actors: the stateful parts of the pipeline (per-probe sessions, event-time window
//! aggregation, rollup writing) as supervised actix actors, and the two ports every backend
//! implements: [`bus::EventBus`] (how batches travel) and [`store::RollupStore`] (where rollups live).
//!
//! Invariant: actors never panic in handlers; they return errors, stop on unrecoverable state and
//! are restarted by their supervisor, rebuilding state from the store. Acks go back to the bus only
//! after the effect of a batch is committed to the store.

pub mod aggregator;
pub mod bus;
pub mod diagnoser;
pub mod memory;
pub mod metrics;
pub mod pair_gauges;
pub mod pipeline;
pub mod session;
pub mod store;
pub mod target_gauges;
pub mod writer;

/// Current wall-clock time in ms since the epoch. Actors read the clock; the domain never does.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
