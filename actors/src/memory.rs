//! In-process `RollupStore`: everything in a mutex-guarded map. It is the reference
//! implementation of the store contract (tests and embedders that need no file); the embedded
//! default persists with SQLite instead.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use netqoe_domain::diagnosis::Incident;
use netqoe_domain::{Rollup, SessionState, Tier, WindowKey};

use crate::bus::BatchId;
use crate::store::{
    derive_parent, parents_to_derive, query_order, CommitReport, IncidentQuery, ProbeMark, Retention, RollupQuery,
    RollupStore, StoreError, WriteSet,
};

#[derive(Default)]
struct Inner {
    rollups: BTreeMap<WindowKey, Rollup>,
    batches: HashMap<BatchId, i64>,
    watermarks: HashMap<String, ProbeMark>,
    sessions: BTreeMap<String, SessionState>,
    incidents: BTreeMap<String, Incident>,
}

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner>, StoreError> {
        self.inner.lock().map_err(|_| StoreError::Failed("memory store lock poisoned".into()))
    }
}

fn series_range(rollups: &BTreeMap<WindowKey, Rollup>, parent: &WindowKey, child: Tier) -> Vec<Rollup> {
    let lo = WindowKey { tier: child, start_ms: parent.start_ms, ..parent.clone() };
    let hi = WindowKey { tier: child, start_ms: parent.start_ms + parent.tier.len_ms(), ..parent.clone() };
    rollups.range(lo..hi).map(|(_, r)| r.clone()).collect()
}

#[async_trait]
impl RollupStore for MemoryStore {
    async fn commit(&self, ws: WriteSet) -> Result<CommitReport, StoreError> {
        let mut g = self.lock()?;
        let mut report = CommitReport::default();
        let now = crate::now_ms();
        let mut changed = Vec::new();
        for mut r in ws.rollups {
            let newer = g.rollups.get(&r.key).is_none_or(|old| r.revision > old.revision);
            if newer {
                changed.push(r.key.clone());
                // `applied` is a delta: the stored set is the union.
                if let Some(old) = g.rollups.remove(&r.key) {
                    let mut all = old.applied;
                    all.extend(&r.applied);
                    r.applied = all;
                }
                g.rollups.insert(r.key.clone(), r);
                *report.written.entry(Tier::M1).or_default() += 1;
            }
        }
        for parent in parents_to_derive(&ws.derive) {
            let child = if parent.tier == Tier::H1 { Tier::M1 } else { Tier::H1 };
            let children = series_range(&g.rollups, &parent, child);
            let Some((agg, closed)) = derive_parent(&children) else { continue };
            let revision = g.rollups.get(&parent).map_or(1, |p| p.revision + 1);
            let applied = Default::default();
            g.rollups.insert(parent.clone(), Rollup { key: parent.clone(), agg, applied, revision, closed });
            *report.written.entry(parent.tier).or_default() += 1;
        }
        for id in ws.batches {
            g.batches.insert(id, now);
        }
        for (probe, mark) in ws.watermarks {
            g.watermarks.entry(probe).or_default().merge(&mark);
        }
        Ok(report)
    }

    async fn load_windows(&self, keys: &[WindowKey]) -> Result<Vec<Rollup>, StoreError> {
        let g = self.lock()?;
        Ok(keys.iter().filter_map(|k| g.rollups.get(k).cloned()).collect())
    }

    async fn load_mark(&self, probe: &str) -> Result<Option<ProbeMark>, StoreError> {
        Ok(self.lock()?.watermarks.get(probe).copied())
    }

    async fn processed(&self, ids: &[BatchId]) -> Result<Vec<BatchId>, StoreError> {
        let g = self.lock()?;
        Ok(ids.iter().filter(|i| g.batches.contains_key(*i)).cloned().collect())
    }

    async fn query(&self, q: &RollupQuery) -> Result<Vec<Rollup>, StoreError> {
        let g = self.lock()?;
        let mut hits: Vec<&Rollup> = g
            .rollups
            .values()
            .filter(|r| {
                r.key.tier == q.tier
                    && r.key.start_ms >= q.from_ms
                    && r.key.start_ms < q.to_ms
                    && q.probe.as_ref().is_none_or(|p| &r.key.probe == p)
                    && q.target.as_ref().is_none_or(|t| &r.key.target == t)
                    && q.metric.is_none_or(|m| r.key.metric == m)
                    && q.after.as_ref().is_none_or(|c| c.precedes(r))
            })
            .collect();
        hits.sort_by(|a, b| query_order(a, b));
        Ok(hits
            .into_iter()
            .take(q.limit)
            .map(|r| Rollup { key: r.key.clone(), agg: r.agg.clone(), applied: Default::default(), ..*r })
            .collect())
    }

    async fn save_incidents(&self, incidents: &[Incident]) -> Result<(), StoreError> {
        let mut g = self.lock()?;
        for i in incidents {
            g.incidents.insert(i.id.clone(), i.clone());
        }
        Ok(())
    }

    async fn list_incidents(&self, q: &IncidentQuery) -> Result<Vec<Incident>, StoreError> {
        let g = self.lock()?;
        let mut v: Vec<Incident> = g.incidents.values().filter(|i| q.matches(i)).cloned().collect();
        v.sort_by(|a, b| (b.opened_ms, &b.id).cmp(&(a.opened_ms, &a.id)));
        v.truncate(q.limit);
        Ok(v)
    }

    async fn save_sessions(&self, sessions: &[SessionState]) -> Result<(), StoreError> {
        let mut g = self.lock()?;
        for s in sessions {
            g.sessions.insert(s.probe.clone(), s.clone());
        }
        Ok(())
    }

    async fn load_session(&self, probe: &str) -> Result<Option<SessionState>, StoreError> {
        Ok(self.lock()?.sessions.get(probe).cloned())
    }

    async fn list_sessions(&self) -> Result<Vec<SessionState>, StoreError> {
        Ok(self.lock()?.sessions.values().cloned().collect())
    }

    async fn prune(&self, now_ms: i64, retention: &Retention) -> Result<u64, StoreError> {
        let mut g = self.lock()?;
        let before = g.rollups.len() + g.batches.len();
        g.rollups.retain(|k, _| retention.keep_until(k.tier, k.start_ms) > now_ms);
        g.batches.retain(|_, at| *at + retention.dedup_ms > now_ms);
        Ok((before - g.rollups.len() - g.batches.len()) as u64)
    }

    async fn ready(&self) -> Result<(), StoreError> {
        self.lock().map(|_| ())
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}
