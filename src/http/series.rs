//! Distinct series per probe: a probe may feed at most `ingest.max_series_per_probe` (target,
//! metric) series at once, so one probe cannot make the aggregators hold an unbounded number of
//! open windows (one per series and minute). A series idle for `pipeline.idle_evict_s` (when the
//! aggregator lets its windows go) no longer counts.

use std::collections::HashMap;
use std::sync::Mutex;

use netqoe_domain::{Event, Metric};

/// A probe's live series, each with when it was last fed.
type Live = HashMap<(String, Metric), i64>;

#[derive(Default)]
pub struct SeriesBook {
    probes: Mutex<HashMap<String, Live>>,
}

impl SeriesBook {
    /// Records the series of `events` (seen at `now_ms`) for `probe`, or — when they would take the
    /// probe beyond `max` live series — records nothing new and returns the indices of the events
    /// that would have opened a series beyond it.
    pub fn admit(
        &self,
        probe: &str,
        events: &[Event],
        now_ms: i64,
        max: usize,
        idle_ms: i64,
    ) -> Result<(), Vec<usize>> {
        let mut probes = self.probes.lock().unwrap_or_else(|p| p.into_inner());
        let live = probes.entry(probe.to_string()).or_default();
        let mut fresh: Vec<(usize, (String, Metric))> = Vec::new();
        for (i, e) in events.iter().enumerate() {
            for c in e.contributions() {
                let key = (e.target.clone(), c.metric);
                if !live.contains_key(&key) && !fresh.iter().any(|(_, k)| *k == key) {
                    fresh.push((i, key));
                }
            }
        }
        if live.len() + fresh.len() > max {
            live.retain(|_, seen| now_ms - *seen < idle_ms);
        }
        let room = max.saturating_sub(live.len());
        if fresh.len() > room {
            let mut beyond: Vec<usize> = fresh[room..].iter().map(|(i, _)| *i).collect();
            beyond.dedup();
            return Err(beyond);
        }
        for e in events {
            for c in e.contributions() {
                live.insert((e.target.clone(), c.metric), now_ms);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(target: &str) -> Event {
        let w: netqoe_domain::WireEvent = serde_json::from_value(serde_json::json!({
            "event_id": format!("e-{target}"), "seq": 0, "ts": "2026-01-01T00:00:00Z", "target": target,
            "kind": "tcp", "connect_ms": 1.0
        }))
        .unwrap();
        netqoe_domain::event::validate(w, 0, 1_767_225_600_000, &Default::default()).unwrap()
    }

    #[test]
    fn series_beyond_the_cap_are_named_and_idle_ones_make_room() {
        let book = SeriesBook::default();
        let batch: Vec<Event> = ["a", "b", "c"].map(ev).to_vec();
        assert_eq!(book.admit("p", &batch, 0, 3, 1000), Ok(()));
        // known series never count twice; a fourth is refused, naming its event
        assert_eq!(book.admit("p", &batch, 10, 3, 1000), Ok(()));
        let more = vec![ev("a"), ev("d"), ev("e")];
        assert_eq!(book.admit("p", &more, 20, 3, 1000), Err(vec![1, 2]));
        // another probe has its own
        assert_eq!(book.admit("q", &more, 20, 3, 1000), Ok(()));
        // once b and c idle out, d and e fit
        assert_eq!(book.admit("p", &[ev("a")], 900, 3, 1000), Ok(()));
        assert_eq!(book.admit("p", &more, 1500, 3, 1000), Ok(()));
    }
}
