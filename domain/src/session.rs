//! Per-probe session bookkeeping: when a probe was last heard from, how many events it sent,
//! which sequence numbers are missing, how many were dropped as too late, and its clock skew.
//!
//! Invariant: a session's counters only grow; `missing` is derived (sequence span minus events
//! seen, minus the numbers a probe declared abandoned when it restarted), so out-of-order
//! arrivals that fill a gap lower it again, and a probe restart does not fake a gap.

use serde::{Deserialize, Serialize};

/// Whether a probe is currently reporting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    Online,
    Offline,
    NeverSeen,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct SessionState {
    pub probe: String,
    /// Arrival time (receiver clock) of the first and last batch, ms.
    pub first_seen_ms: Option<i64>,
    pub last_seen_ms: Option<i64>,
    /// Newest event time reported.
    pub last_event_ms: Option<i64>,
    pub min_seq: Option<u64>,
    pub max_seq: Option<u64>,
    /// Distinct events aggregated (duplicates excluded).
    pub events: u64,
    pub batches: u64,
    pub duplicates: u64,
    pub late_dropped: u64,
    /// Sequence numbers a restarted probe declared it never used (see `WireEvent::run_start`):
    /// the reserved block of the run before, minus what that run delivered.
    #[serde(default)]
    pub abandoned: u64,
    /// Smoothed estimate of (arrival − event time) minimum per batch, ms: the probe's clock offset
    /// plus the smallest delivery delay. Positive: the probe's clock is behind.
    pub clock_skew_ms: Option<f64>,
}

/// What one batch tells a session.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct BatchObservation {
    pub arrival_ms: i64,
    /// (seq, event time) of each event aggregated from the batch.
    pub events: Vec<(u64, i64)>,
    pub duplicates: u64,
    pub late_dropped: u64,
    /// Seqs of the events in the batch that start a probe run (`run_start`).
    #[serde(default)]
    pub run_starts: Vec<u64>,
}

/// Weight of a new skew sample in the moving average.
const SKEW_EWMA: f64 = 0.2;

impl SessionState {
    pub fn new(probe: impl Into<String>) -> Self {
        Self { probe: probe.into(), ..Default::default() }
    }

    pub fn observe(&mut self, obs: &BatchObservation) {
        self.first_seen_ms.get_or_insert(obs.arrival_ms);
        self.last_seen_ms = Some(self.last_seen_ms.map_or(obs.arrival_ms, |l| l.max(obs.arrival_ms)));
        self.batches += 1;
        self.duplicates += obs.duplicates;
        self.late_dropped += obs.late_dropped;
        for &start in &obs.run_starts {
            // the previous run's highest delivered seq (in this batch or before): the numbers
            // between it and the new run's first were reserved, never used
            let before = obs.events.iter().map(|(s, _)| *s).filter(|s| *s < start).max().max(self.max_seq);
            if let Some(b) = before.filter(|b| start > b + 1) {
                self.abandoned += start - b - 1;
            }
        }
        let mut min_delay: Option<i64> = None;
        for &(seq, ts) in &obs.events {
            self.events += 1;
            self.min_seq = Some(self.min_seq.map_or(seq, |m| m.min(seq)));
            self.max_seq = Some(self.max_seq.map_or(seq, |m| m.max(seq)));
            self.last_event_ms = Some(self.last_event_ms.map_or(ts, |m| m.max(ts)));
            let d = obs.arrival_ms - ts;
            min_delay = Some(min_delay.map_or(d, |m| m.min(d)));
        }
        if let Some(d) = min_delay {
            let d = d as f64;
            self.clock_skew_ms = Some(match self.clock_skew_ms {
                None => d,
                Some(s) => s + SKEW_EWMA * (d - s),
            });
        }
    }

    /// The probe's clock runs ahead of the receiver's by at least `threshold_ms`: its events arrive
    /// before their own timestamps. (A clock that runs behind cannot be told from delivery delay,
    /// a spooled batch included, so only this direction is judged.)
    pub fn clock_ahead(&self, threshold_ms: f64) -> bool {
        self.clock_skew_ms.is_some_and(|s| s <= -threshold_ms)
    }

    /// Sequence numbers inside the seen span that no event carried.
    pub fn missing(&self) -> u64 {
        match (self.min_seq, self.max_seq) {
            (Some(lo), Some(hi)) => (hi - lo + 1).saturating_sub(self.events).saturating_sub(self.abandoned),
            _ => 0,
        }
    }

    pub fn status(&self, now_ms: i64, offline_after_ms: i64) -> SessionStatus {
        match self.last_seen_ms {
            None => SessionStatus::NeverSeen,
            Some(l) if now_ms - l > offline_after_ms => SessionStatus::Offline,
            Some(_) => SessionStatus::Online,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(seqs: std::ops::Range<u64>, run_start: Option<u64>) -> BatchObservation {
        BatchObservation {
            arrival_ms: 1,
            events: seqs.map(|s| (s, 0)).collect(),
            run_starts: run_start.into_iter().collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_probe_restart_is_not_a_gap_but_a_lost_event_still_is() {
        let mut s = SessionState::new("p1");
        // run 1 uses 1..=537 of its block 1..1001; run 2 starts at 1001, run 3 at 2001
        s.observe(&batch(1..538, None));
        s.observe(&batch(1001..1100, Some(1001)));
        assert_eq!(s.missing(), 0);
        s.observe(&batch(1100..1200, None));
        // a real loss inside a run is reported
        s.observe(&batch(1201..1300, None));
        assert_eq!(s.missing(), 1);
        // the last batch of a run and the first of the next in one observation
        s.observe(&batch(1300..1400, None));
        let mut both = batch(1400..1450, None);
        both.events.extend((2001..2010).map(|q| (q, 0)));
        both.run_starts = vec![2001];
        s.observe(&both);
        assert_eq!(s.missing(), 1);
        assert_eq!(s.abandoned, (1001 - 538) + (2001 - 1450));
    }

    #[test]
    fn only_events_from_the_future_say_the_clock_is_ahead() {
        let mut s = SessionState::new("p");
        assert!(!s.clock_ahead(10_000.0), "no data: not ahead");
        // arriving 90 s after their timestamps: delay (or a late clock), never "ahead"
        s.observe(&BatchObservation { arrival_ms: 190_000, events: vec![(1, 100_000)], ..Default::default() });
        assert!(!s.clock_ahead(10_000.0));
        let mut f = SessionState::new("f");
        f.observe(&BatchObservation { arrival_ms: 100_000, events: vec![(1, 190_000)], ..Default::default() });
        assert!(f.clock_ahead(10_000.0), "skew {:?}", f.clock_skew_ms);
        assert!(!f.clock_ahead(100_000.0), "90 s ahead is below a 100 s threshold");
        let mut edge = SessionState::new("e");
        edge.observe(&BatchObservation { arrival_ms: 100_000, events: vec![(1, 110_000)], ..Default::default() });
        assert!(edge.clock_ahead(10_000.0), "exactly the threshold counts");
    }

    #[test]
    fn gaps_and_skew() {
        let mut s = SessionState::new("p1");
        s.observe(&BatchObservation {
            arrival_ms: 10_000,
            events: vec![(1, 9_000), (2, 9_500), (5, 9_800)],
            duplicates: 1,
            late_dropped: 0,
            ..Default::default()
        });
        assert_eq!(s.missing(), 2);
        assert_eq!(s.clock_skew_ms, Some(200.0));
        s.observe(&BatchObservation {
            arrival_ms: 11_000,
            events: vec![(3, 10_000), (4, 10_500)],
            duplicates: 0,
            late_dropped: 2,
            ..Default::default()
        });
        assert_eq!(s.missing(), 0);
        assert_eq!(s.events, 5);
        assert_eq!(s.duplicates, 1);
        assert_eq!(s.late_dropped, 2);
        assert_eq!(s.status(11_500, 60_000), SessionStatus::Online);
        assert_eq!(s.status(80_000, 60_000), SessionStatus::Offline);
        assert_eq!(SessionState::new("x").status(0, 1), SessionStatus::NeverSeen);
    }
}
