//! The `RollupStore` port: where window states, tiers, processed batch ids, watermarks and
//! sessions are persisted, and how they are queried.
//!
//! Invariant: `commit` is idempotent and all-or-nothing where the backend allows: the 1m windows,
//! the 1h/1d windows derived from them by merging (those the write set asks for), the batch ids whose effect they contain and the
//! probes' watermarks are written together, so a crash never leaves a batch half-counted.

use std::collections::BTreeMap;

use async_trait::async_trait;
use netqoe_domain::diagnosis::{Incident, IncidentState};
use netqoe_domain::{Metric, Rollup, SessionState, Tier, WindowAgg, WindowKey};

use crate::bus::BatchId;

/// One unit of persistence from an aggregator.
#[derive(Clone, Debug, Default)]
pub struct WriteSet {
    /// Full states of 1m windows, each with a revision higher than the stored one; their
    /// `applied` sets are deltas (the events added since the previous revision), and the store
    /// keeps the union of the deltas of the revisions it accepted.
    pub rollups: Vec<Rollup>,
    /// Batches whose whole effect is contained in `rollups` (and in earlier commits).
    pub batches: Vec<BatchId>,
    /// Per-probe marks (newest event time, highest applied seq), so they survive restarts.
    pub watermarks: Vec<(String, ProbeMark)>,
    /// 1m windows whose 1h parent (and that parent's 1d parent) must be re-derived from the
    /// stored children in this commit. The aggregator asks for it at a window's first commit, when
    /// it closes, on drain, and otherwise at most every `derive_interval` per window, so the cost
    /// of merging up to 60 children is not paid at every flush.
    pub derive: Vec<WindowKey>,
}

/// What the store remembers of a probe's stream. Both fields only grow (a commit keeps the max).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeMark {
    /// Newest event time seen (the watermark is this minus the allowed lateness).
    pub max_event_ms: Option<i64>,
    /// Highest `seq` among applied events: an event with a higher seq cannot have been applied
    /// before (a re-sent event carries its original seq), so only lower ones need an id lookup.
    pub max_seq: Option<u64>,
}

impl ProbeMark {
    pub fn merge(&mut self, o: &ProbeMark) {
        self.max_event_ms = self.max_event_ms.max(o.max_event_ms);
        self.max_seq = self.max_seq.max(o.max_seq);
    }
}

/// What a commit wrote, per tier.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommitReport {
    pub written: BTreeMap<Tier, u64>,
}

/// Retention per tier, ms.
///
/// A window is kept for its tier's retention, counted from the window's end, **and** for as long
/// as its parent can still change: coarse windows are re-derived by merging their stored
/// children, so a child that expired while an event can still arrive for its parent would make
/// that re-derivation shrink the parent. `reopen_ms` is how far back an event can still arrive
/// and be applied (`ingest.max_past_s` plus a day of redelivery), so a 1m window lives until
/// `max(end + m1, hour end + reopen)`, and a 1h one until `max(end + h1, day end + reopen)`.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    pub m1_ms: i64,
    pub h1_ms: i64,
    pub d1_ms: i64,
    /// How long processed batch ids and seen event ids (ingest dedup) are remembered.
    pub dedup_ms: i64,
    /// How far behind now an event can still be applied (see above).
    pub reopen_ms: i64,
}

impl Retention {
    pub fn for_tier(&self, t: Tier) -> i64 {
        match t {
            Tier::M1 => self.m1_ms,
            Tier::H1 => self.h1_ms,
            Tier::D1 => self.d1_ms,
        }
    }

    /// The instant the window of `tier` starting at `start_ms` expires (kept while `now <` it).
    pub fn keep_until(&self, tier: Tier, start_ms: i64) -> i64 {
        let own = start_ms + tier.len_ms() + self.for_tier(tier);
        match tier.parent() {
            Some(p) => own.max(p.bin_start(start_ms) + p.len_ms() + self.reopen_ms),
            None => own,
        }
    }

    /// Windows of `tier` starting before this have expired at `now_ms` (the same rule as
    /// `keep_until`, as one bound for a range delete).
    pub fn expired_before(&self, tier: Tier, now_ms: i64) -> i64 {
        let own = now_ms - tier.len_ms() - self.for_tier(tier) + 1;
        match tier.parent() {
            Some(p) => own.min(p.bin_start(now_ms - self.reopen_ms - p.len_ms()) + p.len_ms()),
            None => own,
        }
    }
}

impl Default for Retention {
    fn default() -> Self {
        let day = 86_400_000;
        Self { m1_ms: 7 * day, h1_ms: 90 * day, d1_ms: 730 * day, dedup_ms: 8 * day, reopen_ms: 8 * day }
    }
}

/// The children a coarse window is merged from: those stored, and those of this commit in hand
/// (a child written in this commit, or one the store does not keep because it is past its
/// retention, still counts), the higher revision of each.
pub fn children_with(stored: Vec<Rollup>, in_hand: &[&Rollup]) -> Vec<Rollup> {
    let mut by_start: BTreeMap<i64, Rollup> = stored.into_iter().map(|r| (r.key.start_ms, r)).collect();
    for r in in_hand {
        if by_start.get(&r.key.start_ms).is_none_or(|s| s.revision < r.revision) {
            by_start.insert(r.key.start_ms, (*r).clone());
        }
    }
    by_start.into_values().collect()
}

/// A coarse window merged from `children` (and whether all are closed), or `None` without any.
/// Children are kept while their parent can change (`Retention::keep_until`), so the merge is
/// never missing one that expired.
pub fn derive_parent(children: &[Rollup]) -> Option<(WindowAgg, bool)> {
    if children.is_empty() {
        return None;
    }
    let agg = netqoe_domain::rollup::merge_children(children.iter().map(|c| &c.agg));
    Some((agg, children.iter().all(|c| c.closed)))
}

/// A range query over one tier. `None` filters match everything.
#[derive(Clone, Debug, PartialEq)]
pub struct RollupQuery {
    pub probe: Option<String>,
    pub target: Option<String>,
    pub metric: Option<Metric>,
    pub tier: Tier,
    /// Window starts in `[from_ms, to_ms)`.
    pub from_ms: i64,
    pub to_ms: i64,
    /// Upper bound on rows returned.
    pub limit: usize,
    /// Only windows after this one in the query order (paging).
    pub after: Option<QueryCursor>,
}

/// A position in a query's order: (probe, target, metric name, window start). Every backend
/// returns windows in this order, so a page ends where the next begins.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct QueryCursor {
    pub probe: String,
    pub target: String,
    pub metric: String,
    pub start_ms: i64,
}

impl QueryCursor {
    pub fn of(r: &Rollup) -> Self {
        QueryCursor {
            probe: r.key.probe.clone(),
            target: r.key.target.clone(),
            metric: r.key.metric.as_str().to_string(),
            start_ms: r.key.start_ms,
        }
    }

    /// Whether `r` comes after the cursor in the query order.
    pub fn precedes(&self, r: &Rollup) -> bool {
        (r.key.probe.as_str(), r.key.target.as_str(), r.key.metric.as_str(), r.key.start_ms)
            > (self.probe.as_str(), self.target.as_str(), self.metric.as_str(), self.start_ms)
    }
}

/// The query order (see `QueryCursor`).
pub fn query_order(a: &Rollup, b: &Rollup) -> std::cmp::Ordering {
    (&a.key.probe, &a.key.target, a.key.metric.as_str(), a.key.start_ms).cmp(&(
        &b.key.probe,
        &b.key.target,
        b.key.metric.as_str(),
        b.key.start_ms,
    ))
}

/// A fleet query: per (target, metric, window) the merge of every probe's window of one tier.
#[derive(Clone, Debug, PartialEq)]
pub struct FleetQuery {
    pub target: Option<String>,
    pub metric: Option<Metric>,
    pub tier: Tier,
    /// Window starts in `[from_ms, to_ms)`.
    pub from_ms: i64,
    pub to_ms: i64,
    /// Upper bound on fleet windows returned.
    pub limit: usize,
    /// A backend that answers by merging per-probe windows at query time reads at most this many
    /// (`http.max_query_windows`); one that keeps fleet windows of its own ignores it.
    pub max_windows: usize,
}

/// One fleet window: the merge of every probe's window of (target, metric, tier, start).
#[derive(Clone, Debug, PartialEq)]
pub struct FleetRollup {
    pub target: String,
    pub metric: Metric,
    pub tier: Tier,
    pub start_ms: i64,
    /// How many probes' windows it merges.
    pub probes: u64,
    pub agg: WindowAgg,
}

/// A fleet query's answer.
#[derive(Clone, Debug, PartialEq)]
pub enum FleetAnswer {
    /// Fleet windows ordered by (target, metric name, start), at most `limit`.
    Windows(Vec<FleetRollup>),
    /// The backend merges at query time and the range holds more than `max_windows` windows.
    TooWide,
}

/// Fleet windows merged from per-probe windows (any order), ordered by (target, metric, start).
pub fn merge_fleet<'a>(rows: impl IntoIterator<Item = &'a Rollup>) -> Vec<FleetRollup> {
    let mut groups: BTreeMap<(&'a str, &'static str, i64), FleetRollup> = BTreeMap::new();
    for r in rows {
        let e = groups.entry((r.key.target.as_str(), r.key.metric.as_str(), r.key.start_ms)).or_insert_with(|| {
            FleetRollup {
                target: r.key.target.clone(),
                metric: r.key.metric,
                tier: r.key.tier,
                start_ms: r.key.start_ms,
                probes: 0,
                agg: WindowAgg::default(),
            }
        });
        e.probes += 1;
        e.agg.merge(&r.agg);
    }
    groups.into_values().collect()
}

/// Which incidents to list.
#[derive(Clone, Debug)]
pub struct IncidentQuery {
    pub state: Option<IncidentState>,
    pub from_ms: i64,
    pub to_ms: i64,
    pub limit: usize,
}

impl IncidentQuery {
    pub fn matches(&self, i: &Incident) -> bool {
        self.state.is_none_or(|s| s == i.state) && i.opened_ms >= self.from_ms && i.opened_ms < self.to_ms
    }
}

pub use crate::error::{RetryHint, StoreError, StoreErrorKind};

#[async_trait]
pub trait RollupStore: Send + Sync + 'static {
    /// Upserts 1m windows (a lower or equal revision never overwrites), re-derives their 1h and
    /// 1d windows by merging children, records batch ids and watermarks.
    async fn commit(&self, ws: WriteSet) -> Result<CommitReport, StoreError>;
    /// Current stored state of the given windows (missing ones are simply absent), each with its
    /// whole event set.
    async fn load_windows(&self, keys: &[WindowKey]) -> Result<Vec<Rollup>, StoreError>;
    async fn load_mark(&self, probe: &str) -> Result<Option<ProbeMark>, StoreError>;
    /// The subset of `ids` already committed.
    async fn processed(&self, ids: &[BatchId]) -> Result<Vec<BatchId>, StoreError>;
    /// Windows of one tier, ordered by (probe, target, metric, start), without their event sets.
    async fn query(&self, q: &RollupQuery) -> Result<Vec<Rollup>, StoreError>;
    /// Fleet windows (see `FleetQuery`). Every backend answers as if merging the probes' stored
    /// windows of the range (`merge_fleet`); this default does exactly that, reading at most
    /// `max_windows` of them. A backend may keep fleet windows of its own, maintained in the same
    /// commit as the probes' windows, and answer from those.
    async fn query_fleet(&self, q: &FleetQuery) -> Result<FleetAnswer, StoreError> {
        let rq = RollupQuery {
            probe: None,
            target: q.target.clone(),
            metric: q.metric,
            tier: q.tier,
            from_ms: q.from_ms,
            to_ms: q.to_ms,
            limit: q.max_windows.saturating_add(1),
            after: None,
        };
        let rows = self.query(&rq).await?;
        if rows.len() > q.max_windows {
            return Ok(FleetAnswer::TooWide);
        }
        let mut out = merge_fleet(&rows);
        out.truncate(q.limit);
        Ok(FleetAnswer::Windows(out))
    }
    async fn save_sessions(&self, sessions: &[SessionState]) -> Result<(), StoreError>;
    async fn load_session(&self, probe: &str) -> Result<Option<SessionState>, StoreError>;
    async fn list_sessions(&self) -> Result<Vec<SessionState>, StoreError>;
    /// Upserts incidents by id (the latest state of each).
    async fn save_incidents(&self, incidents: &[Incident]) -> Result<(), StoreError>;
    /// Incidents opened in `[from_ms, to_ms)` (optionally in one state), newest first.
    async fn list_incidents(&self, q: &IncidentQuery) -> Result<Vec<Incident>, StoreError>;
    /// Deletes windows past their tier's retention and expired dedup records; returns rows deleted.
    async fn prune(&self, now_ms: i64, retention: &Retention) -> Result<u64, StoreError>;
    async fn ready(&self) -> Result<(), StoreError>;
    fn name(&self) -> &'static str;
}

/// The 1h and 1d windows that must be re-derived after the given 1m windows changed, coarse
/// tiers after fine ones so each is merged from up-to-date children.
pub fn parents_to_derive<'a>(m1: impl IntoIterator<Item = &'a WindowKey>) -> Vec<WindowKey> {
    let mut h1 = std::collections::BTreeSet::new();
    for k in m1 {
        if let Some(p) = k.parent() {
            h1.insert(p);
        }
    }
    let d1: std::collections::BTreeSet<WindowKey> = h1.iter().filter_map(|k| k.parent()).collect();
    h1.into_iter().chain(d1).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DAY: i64 = 86_400_000;

    #[test]
    fn a_minute_lives_while_its_hour_can_change() {
        let r = Retention::default();
        let hour = 1_000 * 3_600_000;
        // 7 days of retention, but the hour takes events for 8 days after its end
        assert_eq!(r.keep_until(Tier::M1, hour), hour + 3_600_000 + 8 * DAY);
        assert_eq!(r.keep_until(Tier::M1, hour + 59 * 60_000), hour + 3_600_000 + 8 * DAY);
        // an hour's own 90 days outlast its day's reopening; a day has no parent
        assert_eq!(r.keep_until(Tier::H1, hour), hour + 3_600_000 + 90 * DAY);
        assert_eq!(r.keep_until(Tier::D1, 0), DAY + 730 * DAY);
    }

    proptest! {
        #[test]
        fn the_range_bound_agrees_with_keep_until(
            start in -1_000_000_000_000i64..1_000_000_000_000,
            age in 0i64..800 * DAY,
            tier in 0usize..3,
            m1_days in 1i64..30,
            reopen_days in 0i64..30,
        ) {
            let tier = Tier::ALL[tier];
            let start = tier.bin_start(start);
            let r = Retention { m1_ms: m1_days * DAY, reopen_ms: reopen_days * DAY, ..Retention::default() };
            let now = start + age;
            prop_assert_eq!(start < r.expired_before(tier, now), r.keep_until(tier, start) <= now);
        }
    }
}
