//! The pipeline's clock: where actors, stores and handlers read the wall-clock time.
//!
//! Invariant: nothing in the pipeline reads the system clock for a time it judges, records or
//! compares with event times; it asks its `Clock`. Production runs on `Clock::system()`;
//! `netqoe eval` and tests drive a `Clock::manual` and so run in simulated time, exactly
//! reproducibly. (Durations — timeouts, intervals, rates — are measured with `Instant`, which a
//! manual clock does not replace.)

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

#[derive(Clone, Debug, Default)]
pub struct Clock(Source);

#[derive(Clone, Debug, Default)]
enum Source {
    #[default]
    System,
    Manual(Arc<AtomicI64>),
}

impl Clock {
    /// The system's wall clock.
    pub fn system() -> Self {
        Self(Source::System)
    }

    /// A clock that reads `start_ms` until it is `set` or `advance`d (clones share the time).
    pub fn manual(start_ms: i64) -> Self {
        Self(Source::Manual(Arc::new(AtomicI64::new(start_ms))))
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        match &self.0 {
            Source::System => system_now_ms(),
            Source::Manual(t) => t.load(Ordering::SeqCst),
        }
    }

    /// Moves a manual clock to `ms` (never backwards: a clock that went back would reopen what
    /// was judged). Returns false on the system clock, which cannot be set.
    pub fn set(&self, ms: i64) -> bool {
        match &self.0 {
            Source::System => false,
            Source::Manual(t) => {
                t.fetch_max(ms, Ordering::SeqCst);
                true
            }
        }
    }

    /// Moves a manual clock forward by `ms` (false on the system clock).
    pub fn advance(&self, ms: i64) -> bool {
        match &self.0 {
            Source::System => false,
            Source::Manual(t) => {
                t.fetch_add(ms.max(0), Ordering::SeqCst);
                true
            }
        }
    }

    pub fn is_manual(&self) -> bool {
        matches!(self.0, Source::Manual(_))
    }
}

/// The system wall clock in ms since the epoch: what `Clock::system()` reads, and what a probe
/// stamps its measurements with. The pipeline asks its `Clock` instead.
pub fn system_now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_is_shared_and_never_goes_back() {
        let c = Clock::manual(1_000);
        let d = c.clone();
        assert_eq!(d.now_ms(), 1_000);
        assert!(c.advance(500));
        assert_eq!(d.now_ms(), 1_500, "clones read the same time");
        assert!(c.set(1_200));
        assert_eq!(c.now_ms(), 1_500, "set never moves it back");
        assert!(d.set(9_000));
        assert_eq!(c.now_ms(), 9_000);
        assert!(c.is_manual());
    }

    #[test]
    fn system_clock_reads_the_wall_clock_and_cannot_be_set() {
        let c = Clock::system();
        let before = system_now_ms();
        let t = c.now_ms();
        assert!(t >= before && t - before < 60_000);
        assert!(!c.set(0) && !c.advance(1) && !c.is_manual());
    }
}
