//! Diagnosis: a QoE score per window (ITU-T G.107 E-model, simplified), detection of degraded
//! windows against a learned per-series baseline, localisation of the degraded (probe, target)
//! pairs to the most specific explanation (target, probe, a group of probes sharing a label, a
//! probe gone silent), and incidents with hysteresis. Pure: windows and times are passed in.
//!
//! Invariants: a series' baseline learns only from windows that were not degraded (a fault never
//! becomes the norm while it lasts, up to `rebaseline_after` windows); an explanation opens an
//! incident only after `open_after` consecutive windows and resolves after `close_after` windows
//! without it; the same input always gives the same incidents (no hashing order, no clock).

mod baseline;
mod config;
mod emodel;
mod incident;
mod localise;
mod pooled;
mod signal;
#[cfg(test)]
mod tests;

pub use baseline::*;
pub use config::*;
pub use emodel::*;
pub use incident::*;
pub use localise::*;
pub use pooled::*;
pub use signal::*;
