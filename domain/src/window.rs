//! Event-time windows: tumbling bins per tier and the per-probe watermark that decides whether a
//! late event still updates its window or is dropped (and counted).
//!
//! Invariant: `Tier::bin_start` maps every timestamp to exactly one window per tier, and a 1m
//! window lies wholly inside one 1h window, which lies wholly inside one 1d window (UTC).

use serde::{Deserialize, Serialize};

/// Rollup tiers, finest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Tier {
    #[serde(rename = "1m")]
    M1,
    #[serde(rename = "1h")]
    H1,
    #[serde(rename = "1d")]
    D1,
}

impl Tier {
    pub const ALL: [Tier; 3] = [Tier::M1, Tier::H1, Tier::D1];

    pub fn len_ms(self) -> i64 {
        match self {
            Tier::M1 => 60_000,
            Tier::H1 => 3_600_000,
            Tier::D1 => 86_400_000,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::M1 => "1m",
            Tier::H1 => "1h",
            Tier::D1 => "1d",
        }
    }

    pub fn parse(s: &str) -> Option<Tier> {
        match s {
            "1m" => Some(Tier::M1),
            "1h" => Some(Tier::H1),
            "1d" => Some(Tier::D1),
            _ => None,
        }
    }

    /// Start of the window of this tier containing `ts_ms` (floor division, so negative
    /// timestamps are binned correctly too).
    pub fn bin_start(self, ts_ms: i64) -> i64 {
        ts_ms.div_euclid(self.len_ms()) * self.len_ms()
    }

    /// The next coarser tier, built by merging windows of this one.
    pub fn parent(self) -> Option<Tier> {
        match self {
            Tier::M1 => Some(Tier::H1),
            Tier::H1 => Some(Tier::D1),
            Tier::D1 => None,
        }
    }
}

/// What the watermark says about an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatermarkVerdict {
    /// At or after the newest event time seen.
    InOrder,
    /// Older than the newest event, but its 1m window is still open: it updates the window.
    LateAccepted,
    /// Its 1m window closed (window end ≤ watermark): counted in `late_dropped`, never applied.
    LateDropped,
}

/// Per-probe watermark: newest event time seen minus the allowed lateness.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Watermark {
    /// Newest event time seen for this probe, if any.
    pub max_event_ms: Option<i64>,
}

impl Watermark {
    pub fn value(&self, lateness_ms: i64) -> Option<i64> {
        self.max_event_ms.map(|m| m - lateness_ms)
    }

    /// Classifies `ts_ms` without changing the watermark.
    pub fn classify(&self, ts_ms: i64, lateness_ms: i64) -> WatermarkVerdict {
        match self.max_event_ms {
            None => WatermarkVerdict::InOrder,
            Some(max) if ts_ms >= max => WatermarkVerdict::InOrder,
            Some(max) => {
                let window_end = Tier::M1.bin_start(ts_ms) + Tier::M1.len_ms();
                if window_end <= max - lateness_ms {
                    WatermarkVerdict::LateDropped
                } else {
                    WatermarkVerdict::LateAccepted
                }
            }
        }
    }

    /// Classifies `ts_ms` and advances the watermark when the event is newer — but never past
    /// `arrival_ms`, the time the server received its batch. Ingest accepts events up to
    /// `ingest.max_future_s` ahead (a probe's clock may run fast), more than the allowed lateness:
    /// were such an event to move the watermark to its own time, the probe's next on-time events
    /// would be behind it and dropped after their 202. Bounded by arrival, a future event is counted
    /// in its own window, which stays open until real time reaches it.
    pub fn observe(&mut self, ts_ms: i64, arrival_ms: i64, lateness_ms: i64) -> WatermarkVerdict {
        let v = self.classify(ts_ms, lateness_ms);
        if v == WatermarkVerdict::InOrder {
            let bounded = ts_ms.min(arrival_ms);
            self.max_event_ms = Some(self.max_event_ms.map_or(bounded, |m| m.max(bounded)));
        }
        v
    }

    /// True when the 1m window starting at `start_ms` can no longer change.
    pub fn closes(&self, start_ms: i64, lateness_ms: i64) -> bool {
        self.value(lateness_ms).is_some_and(|w| start_ms + Tier::M1.len_ms() <= w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bins_are_floor_aligned() {
        assert_eq!(Tier::M1.bin_start(59_999), 0);
        assert_eq!(Tier::M1.bin_start(60_000), 60_000);
        assert_eq!(Tier::M1.bin_start(-1), -60_000);
        assert_eq!(Tier::H1.bin_start(3_600_000 * 5 + 7), 3_600_000 * 5);
    }

    #[test]
    fn watermark_classifies_lateness() {
        let lateness = 120_000;
        let mut w = Watermark::default();
        assert_eq!(w.observe(600_000, 600_000, lateness), WatermarkVerdict::InOrder);
        // window [420s, 480s) ends at 480s ≤ 600s − 120s: closed
        assert_eq!(w.classify(470_000, lateness), WatermarkVerdict::LateDropped);
        // window [480s, 540s) ends at 540s > 480s: still open
        assert_eq!(w.classify(480_000, lateness), WatermarkVerdict::LateAccepted);
        assert_eq!(w.classify(600_000, lateness), WatermarkVerdict::InOrder);
        assert!(w.closes(420_000, lateness));
        assert!(!w.closes(480_000, lateness));
    }

    #[test]
    fn a_future_event_does_not_push_on_time_events_out() {
        let lateness = 120_000;
        let now = 10_000_000;
        let mut w = Watermark::default();
        // a probe's clock jumps 240 s ahead for one event (ingest allows up to 300 s)
        assert_eq!(w.observe(now + 240_000, now, lateness), WatermarkVerdict::InOrder);
        assert_eq!(w.max_event_ms, Some(now), "the watermark stops at the arrival time");
        // the on-time events after it, a second later, are in order or within the lateness
        for k in 0..60 {
            let v = w.observe(now + 1_000 + k * 1_000, now + 1_000 + k * 1_000, lateness);
            assert_ne!(v, WatermarkVerdict::LateDropped, "event {k}");
        }
        // the future event's window closes only once real time has passed it
        assert!(!w.closes(Tier::M1.bin_start(now + 240_000), lateness));
        w.observe(now + 400_000, now + 400_000, lateness);
        assert!(w.closes(Tier::M1.bin_start(now + 240_000), lateness));
    }

    proptest! {
        #[test]
        fn the_watermark_never_moves_back_nor_past_the_newest_arrival(
            evs in proptest::collection::vec((0i64..1_000_000, 0i64..1_000_000), 1..50),
        ) {
            let mut w = Watermark::default();
            let mut newest_arrival = i64::MIN;
            for (ts, arrival) in evs {
                let before = w.max_event_ms;
                w.observe(ts, arrival, 120_000);
                newest_arrival = newest_arrival.max(arrival);
                prop_assert!(w.max_event_ms >= before);
                prop_assert!(w.max_event_ms.is_none_or(|m| m <= newest_arrival));
            }
        }

        #[test]
        fn every_timestamp_lands_in_exactly_one_window_per_tier(ts in -10_000_000_000_000i64..10_000_000_000_000i64) {
            for tier in Tier::ALL {
                let s = tier.bin_start(ts);
                prop_assert!(s <= ts && ts < s + tier.len_ms());
                prop_assert_eq!(s.rem_euclid(tier.len_ms()), 0);
                // the window's edges: its first and last instant are in it, the instants just
                // outside belong to the neighbours
                prop_assert_eq!(tier.bin_start(s), s);
                prop_assert_eq!(tier.bin_start(s + tier.len_ms() - 1), s);
                prop_assert_eq!(tier.bin_start(s - 1), s - tier.len_ms());
                prop_assert_eq!(tier.bin_start(s + tier.len_ms()), s + tier.len_ms());
            }
            // nesting: a 1m window sits inside the 1h window of the same ts, and 1h inside 1d
            let m = Tier::M1.bin_start(ts);
            let h = Tier::H1.bin_start(ts);
            let d = Tier::D1.bin_start(ts);
            prop_assert!(h <= m && m + 60_000 <= h + 3_600_000);
            prop_assert!(d <= h && h + 3_600_000 <= d + 86_400_000);
            prop_assert_eq!(Tier::H1.bin_start(m), h);
            prop_assert_eq!(Tier::D1.bin_start(h), d);
        }
    }
}
