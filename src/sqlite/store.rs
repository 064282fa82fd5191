//! The rollup store: rollups and their per-window event sets, probe marks, processed batch ids,
//! sessions and incidents, written in the writer's transaction and read from a small pool of
//! reader connections.

use super::*;

pub(super) const ROLLUP_COLUMNS: &str = "tier, probe, target, metric, start_ms, revision, closed, events, count, min, max, sum, sent, received, jitter_sum, jitter_n, errors, sketch, applied";

fn upsert_rollup(tx: &Transaction<'_>, r: &Rollup, bump: bool, now_ms: i64) -> rusqlite::Result<usize> {
    // `bump`: derived windows take the stored revision + 1; aggregator windows carry their own
    // revision, and an older or equal one never overwrites a newer one.
    let sql = if bump {
        "INSERT INTO rollups (tier, probe, target, metric, start_ms, revision, closed, events, count, min, max, sum, sent, received, jitter_sum, jitter_n, errors, sketch, updated_ms, applied)
         VALUES (?1,?2,?3,?4,?5,1,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20)
         ON CONFLICT (tier, probe, target, metric, start_ms) DO UPDATE SET
           revision = rollups.revision + 1, closed = excluded.closed, events = excluded.events, count = excluded.count,
           min = excluded.min, max = excluded.max, sum = excluded.sum, sent = excluded.sent, received = excluded.received,
           jitter_sum = excluded.jitter_sum, jitter_n = excluded.jitter_n, errors = excluded.errors, sketch = excluded.sketch,
           updated_ms = excluded.updated_ms, applied = excluded.applied
         WHERE ?6 >= 0"
    } else {
        "INSERT INTO rollups (tier, probe, target, metric, start_ms, revision, closed, events, count, min, max, sum, sent, received, jitter_sum, jitter_n, errors, sketch, updated_ms, applied)
         VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20)
         ON CONFLICT (tier, probe, target, metric, start_ms) DO UPDATE SET
           revision = excluded.revision, closed = excluded.closed, events = excluded.events, count = excluded.count,
           min = excluded.min, max = excluded.max, sum = excluded.sum, sent = excluded.sent, received = excluded.received,
           jitter_sum = excluded.jitter_sum, jitter_n = excluded.jitter_n, errors = excluded.errors, sketch = excluded.sketch,
           updated_ms = excluded.updated_ms, applied = excluded.applied
         WHERE excluded.revision > rollups.revision"
    };
    let a = &r.agg;
    let errors = serde_json::to_string(&a.errors).unwrap_or_else(|_| "{}".into());
    tx.prepare_cached(sql)?.execute(params![
        r.key.tier.as_str(),
        r.key.probe,
        r.key.target,
        r.key.metric.as_str(),
        r.key.start_ms,
        r.revision as i64,
        r.closed,
        a.events as i64,
        a.count as i64,
        a.min,
        a.max,
        a.sum,
        a.sent as i64,
        a.received as i64,
        a.jitter_sum,
        a.jitter_n as i64,
        errors,
        a.sketch.encode(),
        now_ms,
        Vec::<u8>::new(),
    ])
}

/// Stores a window's event-set delta of one revision (only after its rollups row took it).
fn insert_window_events(tx: &Transaction<'_>, r: &Rollup) -> rusqlite::Result<()> {
    if r.applied.is_empty() {
        return Ok(());
    }
    tx.prepare_cached(
        "INSERT OR IGNORE INTO window_events (start_ms, probe, target, metric, revision, hashes) VALUES (?1,?2,?3,?4,?5,?6)",
    )?
    .execute(params![
        r.key.start_ms,
        r.key.probe,
        r.key.target,
        r.key.metric.as_str(),
        r.revision as i64,
        r.applied.encode()
    ])?;
    Ok(())
}

/// A window's aggregate from the 11 columns `events, count, min, max, sum, sent, received,
/// jitter_sum, jitter_n, errors, sketch` starting at column `at`.
fn agg_from_row(row: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<WindowAgg> {
    let corrupt =
        |what: String| rusqlite::Error::FromSqlConversionFailure(at, rusqlite::types::Type::Text, what.into());
    let errors: String = row.get(at + 9)?;
    let sketch: Vec<u8> = row.get(at + 10)?;
    let sketch = DdSketch::decode(&sketch).map_err(|e| corrupt(format!("sketch: {e}")))?;
    let errors: BTreeMap<String, u64> = serde_json::from_str(&errors).map_err(|e| corrupt(format!("errors: {e}")))?;
    Ok(WindowAgg {
        events: row.get::<_, i64>(at)? as u64,
        count: row.get::<_, i64>(at + 1)? as u64,
        min: row.get(at + 2)?,
        max: row.get(at + 3)?,
        sum: row.get(at + 4)?,
        sent: row.get::<_, i64>(at + 5)? as u64,
        received: row.get::<_, i64>(at + 6)? as u64,
        jitter_sum: row.get(at + 7)?,
        jitter_n: row.get::<_, i64>(at + 8)? as u64,
        errors,
        sketch,
    })
}

pub(super) fn row_to_rollup(row: &rusqlite::Row<'_>) -> rusqlite::Result<Rollup> {
    let tier: String = row.get(0)?;
    let metric: String = row.get(3)?;
    let applied: Vec<u8> = row.get(18)?;
    let corrupt = |what: String| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, what.into());
    let tier = Tier::parse(&tier).ok_or_else(|| corrupt(format!("unknown tier {tier}")))?;
    let metric = Metric::parse(&metric).ok_or_else(|| corrupt(format!("unknown metric {metric}")))?;
    let applied = EventSet::decode(&applied).ok_or_else(|| corrupt("applied event set".into()))?;
    Ok(Rollup {
        applied,
        key: WindowKey { probe: row.get(1)?, target: row.get(2)?, metric, tier, start_ms: row.get(4)? },
        revision: row.get::<_, i64>(5)? as u64,
        closed: row.get(6)?,
        agg: agg_from_row(row, 7)?,
    })
}

const FLEET_COLUMNS: &str =
    "tier, target, metric, start_ms, probes, events, count, min, max, sum, sent, received, jitter_sum, jitter_n, errors, sketch";

fn row_to_fleet(row: &rusqlite::Row<'_>) -> rusqlite::Result<FleetRollup> {
    let tier: String = row.get(0)?;
    let metric: String = row.get(2)?;
    let corrupt = |what: String| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, what.into());
    Ok(FleetRollup {
        tier: Tier::parse(&tier).ok_or_else(|| corrupt(format!("unknown tier {tier}")))?,
        target: row.get(1)?,
        metric: Metric::parse(&metric).ok_or_else(|| corrupt(format!("unknown metric {metric}")))?,
        start_ms: row.get(3)?,
        probes: row.get::<_, i64>(4)? as u64,
        agg: agg_from_row(row, 5)?,
    })
}

/// The stored state of one window (its event set not read).
fn stored_window(tx: &Transaction<'_>, k: &WindowKey) -> rusqlite::Result<Option<(u64, WindowAgg)>> {
    tx.prepare_cached(
        "SELECT revision, events, count, min, max, sum, sent, received, jitter_sum, jitter_n, errors, sketch
         FROM rollups WHERE tier = ?1 AND probe = ?2 AND target = ?3 AND metric = ?4 AND start_ms = ?5",
    )?
    .query_row(params![k.tier.as_str(), k.probe, k.target, k.metric.as_str(), k.start_ms], |row| {
        Ok((row.get::<_, i64>(0)? as u64, agg_from_row(row, 1)?))
    })
    .optional()
}

/// What one commit adds to the fleet windows: per (tier, target, metric, start), the growth of
/// every probe window it changed, and how many of those windows are new.
#[derive(Default)]
pub(super) struct FleetGrowth(HashMap<(Tier, String, Metric, i64), (WindowAgg, u64)>);

impl FleetGrowth {
    /// A probe window went from `old` (absent: new) to `new`.
    pub(super) fn add(&mut self, k: &WindowKey, old: Option<&WindowAgg>, new: &WindowAgg) {
        if old.is_some_and(|o| o.events == new.events) {
            // every event adds one to `events`: a window that grew by none is unchanged (a
            // revision that only marks it closed)
            return;
        }
        let e = self.0.entry((k.tier, k.target.clone(), k.metric, k.start_ms)).or_default();
        match old {
            Some(o) => e.0.merge(&new.growth_since(o)),
            None => {
                e.0.merge(new);
                e.1 += 1;
            }
        }
    }

    /// Folds the growth into the stored fleet windows. Invariant kept: a fleet window is the merge
    /// of the stored probe windows of its (tier, target, metric, start), changed in the same
    /// transaction as they are.
    pub(super) fn apply(self, tx: &Transaction<'_>, now_ms: i64) -> rusqlite::Result<()> {
        let mut read = tx.prepare_cached(&format!(
            "SELECT {FLEET_COLUMNS} FROM fleet_rollups WHERE tier = ?1 AND start_ms = ?2 AND target = ?3 AND metric = ?4"
        ))?;
        let mut write = tx.prepare_cached(
            "INSERT OR REPLACE INTO fleet_rollups (tier, target, metric, start_ms, probes, events, count, min, max, sum,
               sent, received, jitter_sum, jitter_n, errors, sketch, updated_ms)
             VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17)",
        )?;
        for ((tier, target, metric, start_ms), (growth, added)) in self.0 {
            let stored =
                read.query_row(params![tier.as_str(), start_ms, target, metric.as_str()], row_to_fleet).optional()?;
            let (mut agg, probes) = match stored {
                Some(f) => (f.agg, f.probes),
                None => (WindowAgg::default(), 0),
            };
            agg.merge(&growth);
            let errors = serde_json::to_string(&agg.errors).unwrap_or_else(|_| "{}".into());
            write.execute(params![
                tier.as_str(),
                target,
                metric.as_str(),
                start_ms,
                (probes + added) as i64,
                agg.events as i64,
                agg.count as i64,
                agg.min,
                agg.max,
                agg.sum,
                agg.sent as i64,
                agg.received as i64,
                agg.jitter_sum,
                agg.jitter_n as i64,
                errors,
                agg.sketch.encode(),
                now_ms,
            ])?;
        }
        Ok(())
    }
}

fn commit_tx(tx: &Transaction<'_>, ws: &WriteSet, now_ms: i64) -> rusqlite::Result<CommitReport> {
    let mut report = CommitReport::default();
    let mut fleet = FleetGrowth::default();
    for r in &ws.rollups {
        let old = stored_window(tx, &r.key)?;
        if old.as_ref().is_some_and(|(rev, _)| *rev >= r.revision) {
            continue;
        }
        if upsert_rollup(tx, r, false, now_ms)? == 1 {
            insert_window_events(tx, r)?;
            fleet.add(&r.key, old.as_ref().map(|o| &o.1), &r.agg);
            *report.written.entry(Tier::M1).or_default() += 1;
        }
    }
    for parent in parents_to_derive(&ws.derive) {
        let child = if parent.tier == Tier::H1 { Tier::M1 } else { Tier::H1 };
        let mut stmt = tx.prepare_cached(&format!(
            "SELECT {ROLLUP_COLUMNS} FROM rollups WHERE tier = ?1 AND probe = ?2 AND target = ?3 AND metric = ?4
             AND start_ms >= ?5 AND start_ms < ?6 ORDER BY start_ms"
        ))?;
        let children: Vec<Rollup> = stmt
            .query_map(
                params![
                    child.as_str(),
                    parent.probe,
                    parent.target,
                    parent.metric.as_str(),
                    parent.start_ms,
                    parent.start_ms + parent.tier.len_ms()
                ],
                row_to_rollup,
            )?
            .collect::<rusqlite::Result<_>>()?;
        let Some((agg, closed)) = derive_parent(&children) else { continue };
        let old = stored_window(tx, &parent)?;
        fleet.add(&parent, old.as_ref().map(|o| &o.1), &agg);
        upsert_rollup(
            tx,
            &Rollup { key: parent.clone(), agg, applied: EventSet::default(), revision: 0, closed },
            true,
            now_ms,
        )?;
        *report.written.entry(parent.tier).or_default() += 1;
    }
    fleet.apply(tx, now_ms)?;
    let at = now_ms;
    let mut ins = tx.prepare_cached("INSERT OR IGNORE INTO processed_batches (batch_id, at_ms) VALUES (?1, ?2)")?;
    for id in &ws.batches {
        ins.execute(params![id, at])?;
    }
    let mut wm = tx.prepare_cached(
        "INSERT INTO watermarks (probe, max_event_ms, max_seq) VALUES (?1, ?2, ?3)
         ON CONFLICT (probe) DO UPDATE SET
           max_event_ms = MAX(COALESCE(max_event_ms, excluded.max_event_ms), COALESCE(excluded.max_event_ms, max_event_ms)),
           max_seq = MAX(COALESCE(max_seq, excluded.max_seq), COALESCE(excluded.max_seq, max_seq))",
    )?;
    for (probe, mark) in &ws.watermarks {
        wm.execute(params![probe, mark.max_event_ms, mark.max_seq.map(|s| s as i64)])?;
    }
    Ok(report)
}

fn save_sessions_tx(tx: &Transaction<'_>, sessions: &[SessionState]) -> SqlResult<()> {
    let mut st = tx.prepare_cached(
        "INSERT INTO sessions (probe, state) VALUES (?1, ?2) ON CONFLICT (probe) DO UPDATE SET state = excluded.state",
    )?;
    for s in sessions {
        let json = serde_json::to_string(s)?;
        st.execute(params![s.probe, json])?;
    }
    Ok(())
}

fn save_incidents_tx(tx: &Transaction<'_>, incidents: &[Incident]) -> SqlResult<()> {
    let mut st = tx.prepare_cached(
        "INSERT INTO incidents (id, state, opened_ms, updated_ms, body) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (id) DO UPDATE SET state = excluded.state, updated_ms = excluded.updated_ms, body = excluded.body",
    )?;
    for i in incidents {
        let body = serde_json::to_string(i)?;
        let state = if i.state == IncidentState::Open { "open" } else { "resolved" };
        st.execute(params![i.id, state, i.opened_ms, i.updated_ms, body])?;
    }
    Ok(())
}

fn prune_tx(tx: &Transaction<'_>, now_ms: i64, retention: &Retention) -> rusqlite::Result<u64> {
    let mut n = 0;
    for tier in Tier::ALL {
        n += tx.execute(
            "DELETE FROM rollups WHERE tier = ?1 AND start_ms < ?2",
            params![tier.as_str(), retention.expired_before(tier, now_ms)],
        )?;
    }
    for tier in Tier::ALL {
        n += tx.execute(
            "DELETE FROM fleet_rollups WHERE tier = ?1 AND start_ms < ?2",
            params![tier.as_str(), retention.expired_before(tier, now_ms)],
        )?;
    }
    n += tx.execute("DELETE FROM processed_batches WHERE at_ms < ?1", [now_ms - retention.dedup_ms])?;
    n += tx.execute("DELETE FROM seen_ids WHERE ts_ms < ?1", [now_ms - retention.dedup_ms])?;
    n += tx.execute("DELETE FROM seen_batches WHERE ts_ms < ?1", [now_ms - retention.dedup_ms])?;
    n += tx.execute("DELETE FROM window_events WHERE start_ms < ?1", [retention.expired_before(Tier::M1, now_ms)])?;
    Ok(n as u64)
}

#[async_trait]
impl RollupStore for Sqlite {
    async fn commit(&self, ws: WriteSet) -> Result<CommitReport, StoreError> {
        let now_ms = self.shared.clock.now_ms();
        self.submit(move |tx| commit_tx(tx, &ws, now_ms).map_err(SqliteError::from), |_| false)
            .await
            .map_err(SqliteError::into_store)
    }

    async fn load_windows(&self, keys: &[WindowKey]) -> Result<Vec<Rollup>, StoreError> {
        let keys = keys.to_vec();
        self.read(move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {ROLLUP_COLUMNS} FROM rollups WHERE tier = ?1 AND probe = ?2 AND target = ?3 AND metric = ?4 AND start_ms = ?5"
            ))?;
            let mut deltas = c.prepare_cached(
                "SELECT hashes FROM window_events WHERE start_ms = ?1 AND probe = ?2 AND target = ?3 AND metric = ?4
                 AND revision <= ?5",
            )?;
            let mut out = Vec::new();
            for k in keys {
                if let Some(mut r) = st
                    .query_row(params![k.tier.as_str(), k.probe, k.target, k.metric.as_str(), k.start_ms], row_to_rollup)
                    .optional()?
                {
                    // `applied` (the column) holds a version-2 file's whole set; the rows, the deltas since.
                    let mut rows = deltas
                        .query(params![k.start_ms, k.probe, k.target, k.metric.as_str(), r.revision as i64])?;
                    while let Some(row) = rows.next()? {
                        let blob: Vec<u8> = row.get(0)?;
                        if !r.applied.decode_into(&blob) {
                            return Err(rusqlite::Error::FromSqlConversionFailure(
                                0,
                                rusqlite::types::Type::Blob,
                                "window event set delta".into(),
                            ));
                        }
                    }
                    out.push(r);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn load_mark(&self, probe: &str) -> Result<Option<ProbeMark>, StoreError> {
        let probe = probe.to_string();
        self.read(move |c| {
            c.query_row("SELECT max_event_ms, max_seq FROM watermarks WHERE probe = ?1", [probe], |r| {
                Ok(ProbeMark { max_event_ms: r.get(0)?, max_seq: r.get::<_, Option<i64>>(1)?.map(|s| s as u64) })
            })
            .optional()
        })
        .await
    }

    async fn processed(&self, ids: &[BatchId]) -> Result<Vec<BatchId>, StoreError> {
        let ids = ids.to_vec();
        self.read(move |c| {
            let mut st = c.prepare_cached("SELECT 1 FROM processed_batches WHERE batch_id = ?1")?;
            let mut out = Vec::new();
            for id in ids {
                if st.exists([&id])? {
                    out.push(id);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn query(&self, q: &RollupQuery) -> Result<Vec<Rollup>, StoreError> {
        let q = q.clone();
        self.read(move |c| {
            // With a probe given, its primary-key range (its series only) is far narrower than
            // the metric or time indexes (every series), which the planner picks without
            // statistics (10,000 probes: 18 ms a query instead of µs); a unary `+` keeps those
            // columns out of index selection.
            let unary = if q.probe.is_some() { "+" } else { "" };
            let mut sql = format!(
                "SELECT {ROLLUP_COLUMNS} FROM rollups WHERE tier = ?1 AND {unary}start_ms >= ?2 AND {unary}start_ms < ?3"
            );
            let mut args: Vec<rusqlite::types::Value> =
                vec![q.tier.as_str().to_string().into(), q.from_ms.into(), q.to_ms.into()];
            if let Some(p) = &q.probe {
                args.push(p.clone().into());
                sql.push_str(&format!(" AND probe = ?{}", args.len()));
            }
            if let Some(t) = &q.target {
                args.push(t.clone().into());
                sql.push_str(&format!(" AND target = ?{}", args.len()));
            }
            if let Some(m) = q.metric {
                args.push(m.as_str().to_string().into());
                sql.push_str(&format!(" AND {unary}metric = ?{}", args.len()));
            }
            if let Some(c) = &q.after {
                let n = args.len();
                args.extend([
                    c.probe.clone().into(),
                    c.target.clone().into(),
                    c.metric.clone().into(),
                    c.start_ms.into(),
                ]);
                sql.push_str(&format!(
                    " AND (probe, target, metric, start_ms) > (?{}, ?{}, ?{}, ?{})",
                    n + 1,
                    n + 2,
                    n + 3,
                    n + 4
                ));
            }
            args.push((q.limit as i64).into());
            sql.push_str(&format!(" ORDER BY probe, target, metric, start_ms LIMIT ?{}", args.len()));
            let mut st = c.prepare(&sql)?;
            let rows = st.query_map(rusqlite::params_from_iter(args), row_to_rollup)?;
            rows.map(|r| r.map(|r| Rollup { applied: EventSet::default(), ..r })).collect()
        })
        .await
    }

    /// Read from the fleet windows the commits keep, not merged at query time: a fleet question
    /// reads one row per answer (`max_windows` does not apply).
    async fn query_fleet(&self, q: &FleetQuery) -> Result<FleetAnswer, StoreError> {
        let q = q.clone();
        self.read(move |c| {
            let mut sql = format!(
                "SELECT {FLEET_COLUMNS} FROM fleet_rollups WHERE tier = ?1 AND start_ms >= ?2 AND start_ms < ?3"
            );
            let mut args: Vec<rusqlite::types::Value> =
                vec![q.tier.as_str().to_string().into(), q.from_ms.into(), q.to_ms.into()];
            if let Some(t) = &q.target {
                args.push(t.clone().into());
                sql.push_str(&format!(" AND target = ?{}", args.len()));
            }
            if let Some(m) = q.metric {
                args.push(m.as_str().to_string().into());
                sql.push_str(&format!(" AND metric = ?{}", args.len()));
            }
            args.push((q.limit as i64).into());
            sql.push_str(&format!(" ORDER BY target, metric, start_ms LIMIT ?{}", args.len()));
            let mut st = c.prepare_cached(&sql)?;
            let rows = st.query_map(rusqlite::params_from_iter(args), row_to_fleet)?;
            Ok(FleetAnswer::Windows(rows.collect::<rusqlite::Result<_>>()?))
        })
        .await
    }

    async fn save_incidents(&self, incidents: &[Incident]) -> Result<(), StoreError> {
        let incidents = incidents.to_vec();
        self.submit(move |tx| save_incidents_tx(tx, &incidents), |_| false).await.map_err(SqliteError::into_store)
    }

    async fn list_incidents(&self, q: &IncidentQuery) -> Result<Vec<Incident>, StoreError> {
        let q = q.clone();
        self.read(move |c| {
            let state = q.state.map(|s| if s == IncidentState::Open { "open" } else { "resolved" });
            let mut st = c.prepare_cached(
                "SELECT body FROM incidents WHERE opened_ms >= ?1 AND opened_ms < ?2 AND (?3 IS NULL OR state = ?3)
                 ORDER BY opened_ms DESC, id DESC LIMIT ?4",
            )?;
            let rows = st.query_map(params![q.from_ms, q.to_ms, state, q.limit as i64], |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for body in rows {
                let body = body?;
                out.push(serde_json::from_str(&body).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
                })?);
            }
            Ok(out)
        })
        .await
    }

    async fn save_sessions(&self, sessions: &[SessionState]) -> Result<(), StoreError> {
        let sessions = sessions.to_vec();
        self.submit(move |tx| save_sessions_tx(tx, &sessions), |_| false).await.map_err(SqliteError::into_store)
    }

    async fn load_session(&self, probe: &str) -> Result<Option<SessionState>, StoreError> {
        let probe = probe.to_string();
        let json: Option<String> = self
            .read(move |c| c.query_row("SELECT state FROM sessions WHERE probe = ?1", [probe], |r| r.get(0)).optional())
            .await?;
        json.map(|j| serde_json::from_str(&j).map_err(|e| StoreError::corrupt(format!("session: {e}")))).transpose()
    }

    async fn list_sessions(&self) -> Result<Vec<SessionState>, StoreError> {
        let rows: Vec<String> = self
            .read(|c| {
                let mut st = c.prepare("SELECT state FROM sessions ORDER BY probe")?;
                let r = st.query_map([], |r| r.get(0))?.collect();
                r
            })
            .await?;
        rows.iter().map(|j| serde_json::from_str(j).map_err(|e| StoreError::corrupt(format!("session: {e}")))).collect()
    }

    async fn prune(&self, now_ms: i64, retention: &Retention) -> Result<u64, StoreError> {
        let retention = *retention;
        self.submit(move |tx| prune_tx(tx, now_ms, &retention).map_err(SqliteError::from), |_| false)
            .await
            .map_err(SqliteError::into_store)
    }

    async fn ready(&self) -> Result<(), StoreError> {
        if self.shared.jobs.is_closed() {
            return Err(StoreError::unavailable("sqlite writer stopped"));
        }
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(()))).await
    }

    fn name(&self) -> &'static str {
        "sqlite"
    }
}
