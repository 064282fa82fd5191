//! Window aggregates: what one window of one (probe, target, metric) knows, how events are added
//! to it, how windows merge into coarser tiers or fleet views, and the summary the query API shows.
//!
//! Invariant: `WindowAgg::merge` is associative and commutative on counts, min, max, packet counts,
//! error counts and sketches; percentiles always come from a merged sketch, never from averaging.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::event::{Contribution, Metric};
use crate::sketch::DdSketch;
use crate::window::Tier;

/// Identity of one window.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WindowKey {
    pub probe: String,
    pub target: String,
    pub metric: Metric,
    pub tier: Tier,
    /// Window start, ms since the epoch; aligned to the tier.
    pub start_ms: i64,
}

impl WindowKey {
    /// The window of the next coarser tier that contains this one.
    pub fn parent(&self) -> Option<WindowKey> {
        let tier = self.tier.parent()?;
        Some(WindowKey { tier, start_ms: tier.bin_start(self.start_ms), ..self.clone() })
    }
}

/// Mergeable state of one window.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct WindowAgg {
    /// Events that contributed to this window.
    pub events: u64,
    /// Values (samples) added; equals `sketch.count()`.
    pub count: u64,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub sum: f64,
    pub sketch: DdSketch,
    /// Packets sent / received (packet-train metrics only), for loss %.
    pub sent: u64,
    pub received: u64,
    /// Sum and number of per-event RFC 3550 jitter estimates, so the mean merges exactly.
    pub jitter_sum: f64,
    pub jitter_n: u64,
    /// Error counts by status class.
    pub errors: BTreeMap<String, u64>,
}

impl WindowAgg {
    pub fn add(&mut self, c: &Contribution<'_>) {
        self.events += 1;
        for &v in c.values {
            self.count += 1;
            self.sum += v;
            self.min = Some(self.min.map_or(v, |m| m.min(v)));
            self.max = Some(self.max.map_or(v, |m| m.max(v)));
            self.sketch.insert(v);
        }
        self.sent += c.sent;
        self.received += c.received;
        if let Some(j) = c.jitter_estimate_ms {
            self.jitter_sum += j;
            self.jitter_n += 1;
        }
        if let Some(e) = c.error {
            *self.errors.entry(e.as_str().to_string()).or_default() += 1;
        }
    }

    pub fn merge(&mut self, o: &WindowAgg) {
        self.events += o.events;
        self.count += o.count;
        self.sum += o.sum;
        self.min = match (self.min, o.min) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.max = match (self.max, o.max) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.sketch.merge(&o.sketch);
        self.sent += o.sent;
        self.received += o.received;
        self.jitter_sum += o.jitter_sum;
        self.jitter_n += o.jitter_n;
        for (k, v) in &o.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
    }

    /// What `self` holds beyond `old`, an earlier state of the same window (windows only grow):
    /// merging the result into any aggregate that includes `old` makes it include `self`. Counts,
    /// sums and sketch bins are differences (clamped at zero); `min`/`max` are `self`'s, which a
    /// merge combines correctly because a growing window's extremes only widen.
    pub fn growth_since(&self, old: &WindowAgg) -> WindowAgg {
        let mut sketch = self.sketch.clone();
        sketch.subtract(&old.sketch);
        let mut errors = self.errors.clone();
        for (k, v) in &old.errors {
            if let Some(n) = errors.get_mut(k) {
                *n = n.saturating_sub(*v);
            }
        }
        errors.retain(|_, n| *n > 0);
        WindowAgg {
            events: self.events.saturating_sub(old.events),
            count: self.count.saturating_sub(old.count),
            min: self.min,
            max: self.max,
            sum: self.sum - old.sum,
            sketch,
            sent: self.sent.saturating_sub(old.sent),
            received: self.received.saturating_sub(old.received),
            jitter_sum: self.jitter_sum - old.jitter_sum,
            jitter_n: self.jitter_n.saturating_sub(old.jitter_n),
            errors,
        }
    }

    pub fn summary(&self) -> RollupSummary {
        let q = |p| self.sketch.quantile(p).map(|v| clamp(v, self.min, self.max));
        RollupSummary {
            events: self.events,
            count: self.count,
            min: self.min,
            max: self.max,
            mean: (self.count > 0).then(|| self.sum / self.count as f64),
            p1: q(0.01),
            p10: q(0.1),
            p50: q(0.5),
            p90: q(0.9),
            p95: q(0.95),
            p99: q(0.99),
            loss_pct: (self.sent > 0)
                .then(|| 100.0 * (self.sent - self.received.min(self.sent)) as f64 / self.sent as f64),
            sent: self.sent,
            received: self.received,
            jitter_ms: (self.jitter_n > 0).then(|| self.jitter_sum / self.jitter_n as f64),
            errors: self.errors.clone(),
        }
    }
}

fn clamp(v: f64, min: Option<f64>, max: Option<f64>) -> f64 {
    let v = min.map_or(v, |m| v.max(m));
    max.map_or(v, |m| v.min(m))
}

/// 64-bit FNV-1a of an event id: what a window remembers of each event it contains. Stable across
/// processes and versions (it is persisted).
pub fn event_hash(event_id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in event_id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Hashes are already uniformly distributed (`event_hash`): the set uses them as they are.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdentityHasher(u64);

impl std::hash::Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) ^ u64::from(*b) ^ (self.0 >> 56);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type HashBuild = std::hash::BuildHasherDefault<IdentityHasher>;

/// A set of `event_hash`es: the events a 1m window contains (in memory and as loaded from a
/// store), or the events added to it since its previous revision (in a `WriteSet`). Stored with
/// the window's state, so a window can never count an event twice even when the other writes of
/// a commit (other windows, batch ids) did not happen.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct EventSet(std::collections::HashSet<u64, HashBuild>);

impl EventSet {
    pub fn contains(&self, h: u64) -> bool {
        self.0.contains(&h)
    }

    /// Adds `h`; false if it was there already.
    pub fn insert(&mut self, h: u64) -> bool {
        self.0.insert(h)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.0.iter().copied()
    }

    /// Adds every hash of `other`.
    pub fn extend(&mut self, other: &EventSet) {
        self.0.extend(other.0.iter().copied());
    }

    /// 8 bytes little-endian per hash, ascending (a canonical form).
    pub fn encode(&self) -> Vec<u8> {
        let mut v: Vec<u64> = self.0.iter().copied().collect();
        v.sort_unstable();
        v.iter().flat_map(|h| h.to_le_bytes()).collect()
    }

    /// Decodes `encode`'s form; hashes may come in any order, and several encodings may be
    /// decoded into one set with `decode_into`.
    pub fn decode(buf: &[u8]) -> Option<Self> {
        let mut s = EventSet::default();
        s.decode_into(buf).then_some(s)
    }

    /// Adds the hashes of an encoding; false if it is malformed.
    pub fn decode_into(&mut self, buf: &[u8]) -> bool {
        if !buf.len().is_multiple_of(8) {
            return false;
        }
        self.0.reserve(buf.len() / 8);
        for c in buf.chunks_exact(8) {
            let mut a = [0u8; 8];
            a.copy_from_slice(c);
            self.0.insert(u64::from_le_bytes(a));
        }
        true
    }
}

impl FromIterator<u64> for EventSet {
    fn from_iter<I: IntoIterator<Item = u64>>(iter: I) -> Self {
        EventSet(iter.into_iter().collect())
    }
}

/// A stored window: its key, state and the revision that orders its versions.
#[derive(Clone, Debug, PartialEq)]
pub struct Rollup {
    pub key: WindowKey,
    pub agg: WindowAgg,
    /// 1m windows: the events contained, when loaded from a store; in a `WriteSet`, the events
    /// added since the previous revision (stores keep the union). Empty for derived tiers.
    pub applied: EventSet,
    /// Incremented each time the window's state is persisted; an upsert with a lower or equal
    /// revision never overwrites a higher one.
    pub revision: u64,
    /// The watermark passed the window's end: only data beyond the lateness could change it, and
    /// that is dropped.
    pub closed: bool,
}

/// What the query API reports per window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RollupSummary {
    pub events: u64,
    pub count: u64,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub mean: Option<f64>,
    /// The low edge of the "smoke" band (p1–p99) a latency graph draws.
    pub p1: Option<f64>,
    /// The low edge of the inner band (p10–p90).
    pub p10: Option<f64>,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub loss_pct: Option<f64>,
    pub sent: u64,
    pub received: u64,
    pub jitter_ms: Option<f64>,
    pub errors: BTreeMap<String, u64>,
}

impl RollupSummary {
    /// QoE of an RTT window: the E-model's R-factor and MOS on the median RTT, the jitter
    /// estimate and the loss (docs/diagnosis.md); a window in which nothing answered scores
    /// (R 0, MOS 1); `None` when the window holds no packet.
    pub fn qoe(&self) -> Option<(f64, f64)> {
        let loss = self.loss_pct.unwrap_or(0.0) / 100.0;
        match self.p50 {
            Some(rtt) => {
                let r = crate::diagnosis::r_factor(rtt, self.jitter_ms.unwrap_or(0.0), loss);
                Some((r, crate::diagnosis::mos(r)))
            }
            None if self.sent > 0 && self.received == 0 => Some((0.0, 1.0)),
            None => None,
        }
    }

    /// Failed measurements in the window (every error class).
    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Merges the windows of `children` (all of one series, of the tier below `parent`) into the
/// parent window's aggregate, in ascending window order so the result is deterministic.
pub fn merge_children<'a>(children: impl IntoIterator<Item = &'a WindowAgg>) -> WindowAgg {
    let mut out = WindowAgg::default();
    for c in children {
        out.merge(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Contribution, Status};
    use proptest::prelude::*;

    fn contrib(values: &[f64]) -> Contribution<'_> {
        Contribution { metric: Metric::Rtt, values, sent: 10, received: 9, jitter_estimate_ms: Some(2.0), error: None }
    }

    #[test]
    fn summary_reports_loss_and_jitter() {
        let mut a = WindowAgg::default();
        a.add(&contrib(&[1.0, 2.0, 3.0]));
        a.add(&Contribution { error: Some(Status::Timeout), ..contrib(&[]) });
        let s = a.summary();
        assert_eq!(s.count, 3);
        assert_eq!(s.events, 2);
        assert_eq!(s.min, Some(1.0));
        assert_eq!(s.max, Some(3.0));
        assert_eq!(s.mean, Some(2.0));
        assert_eq!(s.loss_pct, Some(10.0));
        assert_eq!(s.jitter_ms, Some(2.0));
        assert_eq!(s.errors.get("timeout"), Some(&1));
    }

    #[test]
    fn event_sets_round_trip_and_reject_garbage() {
        let mut s = EventSet::default();
        assert!(s.insert(event_hash("b")));
        assert!(s.insert(event_hash("a")));
        assert!(!s.insert(event_hash("a")));
        assert!(s.contains(event_hash("b")) && !s.contains(event_hash("c")));
        assert_eq!(EventSet::decode(&s.encode()), Some(s.clone()));
        assert_eq!(EventSet::decode(&[1, 2, 3]), None);
        let mut unsorted = s.encode();
        unsorted.rotate_left(8);
        assert_eq!(EventSet::decode(&unsorted), Some(s.clone()), "order does not matter");
        // deltas decoded into one set give the union
        let mut delta = EventSet::default();
        delta.insert(event_hash("c"));
        let mut all = EventSet::decode(&s.encode()).unwrap();
        assert!(all.decode_into(&delta.encode()));
        assert_eq!(all.len(), 3);
        assert!(!all.decode_into(&[0; 7]));
        assert_eq!(event_hash("probe-1-42"), event_hash("probe-1-42"));
        assert_eq!(event_hash(""), 0xcbf2_9ce4_8422_2325);
    }

    #[test]
    fn parent_key_is_the_enclosing_window() {
        let k = WindowKey {
            probe: "p".into(),
            target: "t".into(),
            metric: Metric::Rtt,
            tier: Tier::M1,
            start_ms: 7_260_000,
        };
        let h = k.parent().unwrap();
        assert_eq!((h.tier, h.start_ms), (Tier::H1, 7_200_000));
        let d = h.parent().unwrap();
        assert_eq!((d.tier, d.start_ms), (Tier::D1, 0));
        assert!(d.parent().is_none());
    }

    proptest! {
        #[test]
        fn merge_of_parts_equals_aggregate_of_whole(
            parts in proptest::collection::vec(proptest::collection::vec(0.0f64..5000.0, 0..40), 1..8)
        ) {
            let mut whole = WindowAgg::default();
            let mut pieces = Vec::new();
            for p in &parts {
                let mut w = WindowAgg::default();
                w.add(&contrib(p));
                whole.add(&contrib(p));
                pieces.push(w);
            }
            let merged = merge_children(pieces.iter());
            prop_assert_eq!(merged.count, whole.count);
            prop_assert_eq!(merged.events, whole.events);
            prop_assert_eq!(merged.min, whole.min);
            prop_assert_eq!(merged.max, whole.max);
            prop_assert_eq!(&merged.sketch, &whole.sketch);
            prop_assert_eq!(merged.sent, whole.sent);
            prop_assert!((merged.sum - whole.sum).abs() <= 1e-6 * whole.sum.abs().max(1.0));
        }

        #[test]
        fn a_fleet_kept_by_growths_equals_the_merge_of_its_windows(
            // (window, values) in the order they arrive; each step is one committed revision
            steps in proptest::collection::vec((0usize..4, proptest::collection::vec(0.0f64..5000.0, 0..20), proptest::bool::ANY), 1..30)
        ) {
            let mut windows = vec![WindowAgg::default(); 4];
            let mut fleet = WindowAgg::default();
            for (w, values, failed) in &steps {
                let old = windows[*w].clone();
                windows[*w].add(&contrib(values));
                if *failed {
                    windows[*w].add(&Contribution { error: Some(Status::Timeout), ..contrib(&[]) });
                }
                fleet.merge(&windows[*w].growth_since(&old));
            }
            let want = merge_children(windows.iter());
            prop_assert_eq!(fleet.count, want.count);
            prop_assert_eq!(fleet.events, want.events);
            prop_assert_eq!(fleet.min, want.min);
            prop_assert_eq!(fleet.max, want.max);
            prop_assert_eq!(&fleet.sketch, &want.sketch);
            prop_assert_eq!(fleet.sent, want.sent);
            prop_assert_eq!(fleet.received, want.received);
            prop_assert_eq!(fleet.jitter_n, want.jitter_n);
            prop_assert_eq!(&fleet.errors, &want.errors);
            prop_assert!((fleet.sum - want.sum).abs() <= 1e-6 * want.sum.abs().max(1.0));
        }
    }
}
