//! `netqoe probe`: measures configured targets on a schedule and delivers the events to ingest.
//!
//! Invariants: `seq` and `event_id` come from a counter persisted before use (blocks of
//! `SEQ_BLOCK`), so a restarted probe never reuses one and ingest dedups resends; a batch that
//! ingest did not acknowledge is kept in an on-disk spool (one file per batch, named by its
//! first seq) and re-sent in order; the spool is bounded (oldest dropped first, counted).
//!
//! A folder per concern: `config`, `seq`, `spool`, `deliver`, `schedule`, and `measure/` (one file
//! per kind, the socket helpers in `measure/net.rs` below them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use netqoe_domain::{Kind, Status, WireBatch, WireEvent};
use serde::{Deserialize, Serialize};

mod config;
mod deliver;
pub mod measure;
mod metrics;
mod schedule;
mod seq;
mod spool;
#[cfg(test)]
mod tests;

pub use config::*;
pub use deliver::*;
pub use measure::*;
pub use schedule::*;
pub use seq::*;
pub use spool::*;
