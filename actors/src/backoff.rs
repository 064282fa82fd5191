//! Capped exponential backoff: the one retry schedule of the process (the aggregator waiting for
//! the store, the RabbitMQ publisher and consumer reconnecting, webhook deliveries, the probe's
//! posts). It only computes delays — callers sleep — and takes its randomness as a value, so it is
//! deterministic under test.
//!
//! Invariant: the base delay starts at `min`, doubles after every delay handed out, never exceeds
//! `max`, and returns to `min` on `reset`; a jittered delay lies in `[base/2, base]`.

use std::time::Duration;

/// A retry schedule.
#[derive(Clone, Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at `min` (at least 1 ms), doubling up to `max` (at least `min`).
    pub fn new(min: Duration, max: Duration) -> Self {
        let min = min.max(Duration::from_millis(1));
        Self { min, max: max.max(min), next: min }
    }

    /// Back to `min` (after a success, or after a long enough healthy spell).
    pub fn reset(&mut self) {
        self.next = self.min;
    }

    /// The delay the next call hands out, without advancing.
    pub fn peek(&self) -> Duration {
        self.next
    }

    /// The next delay, then doubles the base (up to `max`).
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    /// The next delay with "equal jitter": half of it fixed, half scaled by `unit` in `[0, 1)`,
    /// so that clients that failed together do not all come back together.
    pub fn next_jittered(&mut self, unit: f64) -> Duration {
        let d = self.next_delay();
        d / 2 + d.mul_f64(unit.clamp(0.0, 1.0) / 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(100 * MS, 1000 * MS);
        let got: Vec<u128> = (0..6).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 800, 1000, 1000]);
        b.reset();
        assert_eq!(b.peek(), 100 * MS);
        assert_eq!(b.next_delay(), 100 * MS);
    }

    #[test]
    fn jitter_stays_within_half_and_whole_of_the_base() {
        let mut b = Backoff::new(400 * MS, 400 * MS);
        assert_eq!(b.next_jittered(0.0), 200 * MS);
        assert_eq!(b.next_jittered(1.0), 400 * MS);
        assert_eq!(b.next_jittered(0.5), 300 * MS);
        assert_eq!(b.next_jittered(7.0), 400 * MS, "out-of-range randomness is clamped");
    }

    #[test]
    fn degenerate_bounds_are_lifted() {
        let mut b = Backoff::new(Duration::ZERO, Duration::ZERO);
        assert_eq!(b.next_delay(), MS);
        assert_eq!(b.next_delay(), MS);
    }
}
