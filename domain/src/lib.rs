//! Pure domain of netqoe: measurement events and their validation, event-time windows and tiers,
//! DDSketch percentile sketches, window aggregates and per-probe session bookkeeping.
//!
//! Invariant: nothing in this crate performs I/O or reads a clock. Time is always passed in as
//! milliseconds since the Unix epoch, so every function here is deterministic and unit-testable.

pub mod codec;
pub mod diagnosis;
pub mod event;
pub mod federation;
pub mod matrix;
pub mod rollup;
pub mod session;
pub mod sketch;
pub mod stamp;
pub mod window;

pub use event::{Event, EventLimits, FieldError, Kind, Metric, Status, WireBatch, WireEvent};
pub use rollup::{event_hash, EventSet, Rollup, RollupSummary, WindowAgg, WindowKey};
pub use session::{BatchObservation, SessionState, SessionStatus};
pub use sketch::DdSketch;
pub use window::{Tier, Watermark, WatermarkVerdict};
