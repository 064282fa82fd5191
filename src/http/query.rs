//! Query API: `GET /v1/rollups` (per window, optionally merged across probes or targets by
//! sketch merge) and `GET /v1/probes` (sessions with status and stats).
//!
//! Invariant: fleet views (`group_by`) merge sketches; percentiles are never averaged.

use std::collections::BTreeMap;

use actix_web::{web, HttpRequest, HttpResponse};
use netqoe_actors::session::ListSessions;
use netqoe_actors::store::{FleetAnswer, FleetQuery, FleetRollup, QueryCursor, RollupQuery};
use netqoe_domain::event::rfc3339;
use netqoe_domain::{Metric, Rollup, Tier, WindowAgg};
use serde::Deserialize;

use super::problem::Problem;
use super::AppState;
use crate::auth::Principal;

/// Most rows one query returns (a page; `next` continues).
const MAX_LIMIT: usize = 10_000;
const DEFAULT_LIMIT: usize = 1_000;

pub fn check_query_auth(req: &HttpRequest, state: &AppState) -> Result<(), Problem> {
    let header = req.headers().get("Authorization").and_then(|h| h.to_str().ok());
    match (header, state.authenticate(header)) {
        (_, Ok(Principal::Query(_))) => Ok(()),
        (_, Ok(Principal::Probe(_))) => Err(Problem::forbidden("probe tokens cannot read; use a query token")),
        (_, Ok(Principal::Admin(_))) => Err(Problem::forbidden("admin tokens cannot read; use a query token")),
        (None, _) if !state.query_tokens_configured() => Ok(()),
        (_, Err(e)) => Err(Problem::auth(e, "query")),
    }
}

fn parse_time(field: &str, s: &str) -> Result<i64, Problem> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|d| d.timestamp_millis())
        .map_err(|e| Problem::bad_query(field, format!("{field}={s:?} is neither RFC 3339 nor epoch ms: {e}")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollupParams {
    probe: Option<String>,
    target: Option<String>,
    metric: Option<String>,
    tier: Option<String>,
    from: Option<String>,
    to: Option<String>,
    group_by: Option<String>,
    /// Only windows of this region (federation: a regional deployment answers its own region;
    /// the global tier the windows of that region's probes).
    region: Option<String>,
    limit: Option<usize>,
    /// The `next` of the previous page.
    after: Option<String>,
    /// Comma-separated window fields to answer (the identity fields always come): a client that
    /// reads a few fields of thousands of windows (the dashboard's overview) gets a smaller answer.
    fields: Option<String>,
}

/// The fields a window may carry besides its identity (`fields=` takes these).
const WINDOW_FIELDS: [&str; 18] = [
    "events",
    "count",
    "min",
    "max",
    "mean",
    "p1",
    "p10",
    "p50",
    "p90",
    "p95",
    "p99",
    "loss_pct",
    "sent",
    "received",
    "jitter_ms",
    "errors",
    "r_factor",
    "mos",
];
/// A window's identity: always answered.
const IDENTITY_FIELDS: [&str; 12] = [
    "region",
    "probe",
    "target",
    "metric",
    "tier",
    "window_start",
    "window_end",
    "revision",
    "closed",
    "probes",
    "targets",
    "regions",
];

/// (region, probe) of a stored probe id: the global tier's `region~probe`, or a regional
/// deployment's own region (`federation.region`, none when it is not federated).
pub fn region_of<'a>(probe: &'a str, own: &'a str) -> (Option<&'a str>, &'a str) {
    match netqoe_domain::federation::split_global(probe) {
        Some((r, p)) => (Some(r), p),
        None => ((!own.is_empty()).then_some(own), probe),
    }
}

fn parse_fields(s: &str) -> Result<Vec<String>, Problem> {
    let mut out = Vec::new();
    for f in s.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        if !WINDOW_FIELDS.contains(&f) && !IDENTITY_FIELDS.contains(&f) {
            return Err(Problem::bad_query(
                "fields",
                format!("fields: {f:?} is not a window field (one of {})", WINDOW_FIELDS.join(", ")),
            ));
        }
        out.push(f.to_string());
    }
    Ok(out)
}

/// `next`/`after`: the cursor as hex of its JSON (opaque to clients, safe in a URL).
fn encode_cursor(c: &QueryCursor) -> String {
    hex::encode(serde_json::to_vec(c).unwrap_or_default())
}

fn decode_cursor(s: &str) -> Result<QueryCursor, Problem> {
    hex::decode(s)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| Problem::bad_query("after", "after must be the `next` value of a previous answer"))
}

/// One window's JSON; `key` is its (probe, target) — one of them absent in a group_by answer;
/// `region` the region it belongs to, when known (a global probe id answers as region + probe).
#[allow(clippy::too_many_arguments)]
fn window_json(
    region: Option<&str>,
    (key_probe, key_target): (Option<&str>, Option<&str>),
    metric: Metric,
    tier: Tier,
    start: i64,
    agg: &WindowAgg,
    extra: serde_json::Value,
    fields: Option<&[String]>,
) -> serde_json::Value {
    use serde_json::json;
    let s = agg.summary();
    let mut o = serde_json::Map::new();
    // identity fields always; the others as `fields` asks (all without it)
    let wanted = |k: &str| fields.map_or(true, |f| f.iter().any(|x| x == k));
    let mut put = |k: &str, v: serde_json::Value| {
        if IDENTITY_FIELDS.contains(&k) || wanted(k) {
            o.insert(k.to_string(), v);
        }
    };
    put("metric", json!(metric.as_str()));
    put("tier", json!(tier.as_str()));
    put("window_start", json!(rfc3339(start)));
    put("window_end", json!(rfc3339(start + tier.len_ms())));
    put("events", json!(s.events));
    put("count", json!(s.count));
    put("min", json!(s.min));
    put("max", json!(s.max));
    put("mean", json!(s.mean));
    put("p1", json!(s.p1));
    put("p10", json!(s.p10));
    put("p50", json!(s.p50));
    put("p90", json!(s.p90));
    put("p95", json!(s.p95));
    put("p99", json!(s.p99));
    put("loss_pct", json!(s.loss_pct));
    put("sent", json!(s.sent));
    put("received", json!(s.received));
    put("jitter_ms", json!(s.jitter_ms));
    if wanted("errors") {
        put("errors", json!(s.errors));
    }
    // QoE of RTT windows: the E-model on the median RTT, the jitter estimate and the loss
    // (docs/diagnosis.md); a window in which nothing answered scores MOS 1.
    if metric == Metric::Rtt {
        let qoe = s.qoe();
        if let Some((r, m)) = qoe {
            put("r_factor", json!((r * 100.0).round() / 100.0));
            put("mos", json!((m * 1000.0).round() / 1000.0));
        }
    }
    let (probe_region, key_probe) = match key_probe {
        Some(p) => {
            let (r, p) = region_of(p, "");
            (r, Some(p))
        }
        None => (None, None),
    };
    if let Some(r) = probe_region.or(region) {
        put("region", r.into());
    }
    if let Some(p) = key_probe {
        put("probe", p.into());
    }
    if let Some(t) = key_target {
        put("target", t.into());
    }
    if let serde_json::Value::Object(e) = extra {
        o.extend(e);
    }
    serde_json::Value::Object(o)
}

pub async fn rollups(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, Problem> {
    check_query_auth(&req, &state)?;
    let _permit = state.queries.try_acquire().map_err(|_| {
        Problem::unavailable(
            format!(
                "{} rollup queries are running already (http.max_concurrent_queries); retry shortly",
                state.cfg.http.max_concurrent_queries
            ),
            1,
        )
    })?;
    let params: RollupParams = web::Query::<RollupParams>::from_query(req.query_string())
        .map_err(|e| {
            let msg = e.to_string();
            let field = msg.split('`').nth(1).unwrap_or("query").to_string();
            Problem::bad_query(&field, msg)
        })?
        .into_inner();
    let tier = match params.tier.as_deref() {
        None => Tier::M1,
        Some(t) => {
            Tier::parse(t).ok_or_else(|| Problem::bad_query("tier", format!("tier={t:?}: expected 1m, 1h or 1d")))?
        }
    };
    let metric = params
        .metric
        .as_deref()
        .map(|m| {
            Metric::parse(m).ok_or_else(|| {
                Problem::bad_query(
                    "metric",
                    format!("metric={m:?}: expected one of {}", Metric::ALL.map(Metric::as_str).join(", ")),
                )
            })
        })
        .transpose()?;
    let now = state.clock.now_ms();
    let to = params.to.as_deref().map(|s| parse_time("to", s)).transpose()?.unwrap_or(now + tier.len_ms());
    let default_span = match tier {
        Tier::M1 => 3_600_000,
        Tier::H1 => 7 * 86_400_000,
        Tier::D1 => 90 * 86_400_000,
    };
    let from = params.from.as_deref().map(|s| parse_time("from", s)).transpose()?.unwrap_or(to - default_span);
    if from >= to {
        return Err(Problem::bad_query("from", "from must be before to"));
    }
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(Problem::bad_query("limit", format!("limit must be between 1 and {MAX_LIMIT}")));
    }
    let group_by = params.group_by.clone();
    if !matches!(group_by.as_deref(), None | Some("target") | Some("probe") | Some("region")) {
        return Err(Problem::bad_query("group_by", "group_by must be target, probe or region"));
    }
    let own = state.cfg.federation.region.clone();
    let region = params.region.clone();
    if let Some(r) = region.as_deref().filter(|r| !netqoe_domain::federation::valid_region(r)) {
        return Err(Problem::bad_query("region", format!("region={r:?} is not a region id")));
    }
    // another region's windows: on the global tier, the series `region~probe`
    let foreign = region.clone().filter(|r| *r != own);
    let probe = match (&foreign, params.probe) {
        (Some(r), Some(p)) if netqoe_domain::federation::split_global(&p).is_none() => {
            Some(netqoe_domain::federation::global_probe(r, &p))
        }
        (_, p) => p,
    };
    let after = params.after.as_deref().map(decode_cursor).transpose()?;
    let fields = params.fields.as_deref().map(parse_fields).transpose()?;
    if after.is_some() && group_by.is_some() {
        return Err(Problem::bad_query("after", "a group_by answer is not paged; narrow from/to instead"));
    }
    // Without group_by, `limit` rows are one page (`next` continues). A fleet view merges every
    // window of its range, so its input is bounded instead: a range wider than
    // `http.max_query_windows` is refused, never answered from part of its data.
    let max_windows = state.cfg.http.max_query_windows;
    let too_wide = || {
        Problem::new(
            actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
            "query-too-wide",
            "Query too wide",
            format!(
                "group_by would merge more than {max_windows} windows (http.max_query_windows); narrow from/to, \
                 add metric, probe or target, or use a coarser tier"
            ),
        )
        .field("group_by")
    };
    if group_by.as_deref() == Some("target") && probe.is_none() && foreign.is_none() {
        // The whole fleet of each target: the store's fleet windows (a store that keeps them
        // reads one row per answer; the others merge the probes' windows here).
        let fq =
            FleetQuery { target: params.target, metric, tier, from_ms: from, to_ms: to, limit: limit + 1, max_windows };
        let fleet = match state.store.query_fleet(&fq).await.map_err(|e| Problem::unavailable(e.to_string(), 2))? {
            FleetAnswer::Windows(w) => w,
            FleetAnswer::TooWide => return Err(too_wide()),
        };
        let body = web::block(move || fleet_answer(fleet, (tier, from, to), limit, fields, &own))
            .await
            .map_err(|e| Problem::internal(format!("query worker: {e}")))?;
        return Ok(HttpResponse::Ok().content_type("application/json").body(body));
    }
    let fetch = if group_by.is_some() { max_windows + 1 } else { limit + 1 };
    let q = RollupQuery { probe, target: params.target, metric, tier, from_ms: from, to_ms: to, limit: fetch, after };
    let mut rows = state.store.query(&q).await.map_err(|e| Problem::unavailable(e.to_string(), 2))?;
    if group_by.is_some() && rows.len() > max_windows {
        return Err(too_wide());
    }
    let body = web::block(move || {
        let next = rows_page(&mut rows, group_by.is_none(), limit);
        // a region filter keeps the page's cursor: a page may hold fewer rows, `next` goes on
        if let Some(r) = region.as_deref() {
            rows.retain(|w| region_of(&w.key.probe, &own).0 == Some(r));
        }
        answer(next, rows, (tier, from, to), group_by, limit, fields, &own)
    })
    .await
    .map_err(|e| Problem::internal(format!("query worker: {e}")))?;
    Ok(HttpResponse::Ok().content_type("application/json").body(body))
}

/// Cuts a page of `limit` rows; the cursor of its last row when more follow.
fn rows_page(rows: &mut Vec<Rollup>, paged: bool, limit: usize) -> Option<QueryCursor> {
    if !paged || rows.len() <= limit {
        return None;
    }
    rows.truncate(limit);
    rows.last().map(QueryCursor::of)
}

/// The JSON answer (built off the HTTP worker: a page can be thousands of windows).
fn answer(
    next: Option<QueryCursor>,
    rows: Vec<Rollup>,
    (tier, from, to): (Tier, i64, i64),
    group_by: Option<String>,
    limit: usize,
    fields: Option<Vec<String>>,
    own: &str,
) -> String {
    let group_by = group_by.as_deref();
    let own_region = (!own.is_empty()).then_some(own);
    let mut truncated = next.is_some();
    let mut out: Vec<serde_json::Value> = match group_by {
        None => rows
            .iter()
            .map(|r: &Rollup| {
                window_json(
                    own_region,
                    (Some(&r.key.probe), Some(&r.key.target)),
                    r.key.metric,
                    tier,
                    r.key.start_ms,
                    &r.agg,
                    serde_json::json!({"revision": r.revision, "closed": r.closed}),
                    fields.as_deref(),
                )
            })
            .collect(),
        Some(g) => {
            let by_target = g == "target";
            let by_region = g == "region";
            let mut groups: BTreeMap<(String, Metric, i64), (WindowAgg, std::collections::BTreeSet<String>)> =
                BTreeMap::new();
            for r in &rows {
                let (k, member) = if by_region {
                    (region_of(&r.key.probe, own).0.unwrap_or_default().to_string(), r.key.probe.clone())
                } else if by_target {
                    (r.key.target.clone(), r.key.probe.clone())
                } else {
                    (r.key.probe.clone(), r.key.target.clone())
                };
                let e = groups.entry((k, r.key.metric, r.key.start_ms)).or_default();
                e.0.merge(&r.agg);
                e.1.insert(member);
            }
            groups
                .iter()
                .map(|((k, m, start), (agg, members))| {
                    let extra = if by_target || by_region {
                        serde_json::json!({"probes": members.len()})
                    } else {
                        serde_json::json!({"targets": members.len()})
                    };
                    if by_region {
                        window_json(Some(k), (None, None), *m, tier, *start, agg, extra, fields.as_deref())
                    } else if by_target {
                        // the regions the group spans (the global tier merges across them)
                        let regions: std::collections::BTreeSet<&str> =
                            members.iter().filter_map(|p| region_of(p, own).0).collect();
                        let mut extra = extra;
                        if regions.len() > 1 {
                            extra["regions"] = serde_json::json!(regions.len());
                        }
                        let region = if regions.len() == 1 { regions.first().copied() } else { None };
                        window_json(region, (None, Some(k)), *m, tier, *start, agg, extra, fields.as_deref())
                    } else {
                        window_json(own_region, (Some(k), None), *m, tier, *start, agg, extra, fields.as_deref())
                    }
                })
                .collect()
        }
    };
    if out.len() > limit {
        // groups beyond `limit`: the answer says so (each group shown is complete)
        out.truncate(limit);
        truncated = true;
    }

    envelope((tier, from, to), group_by, truncated, next.as_ref(), out)
}

/// The JSON of a `group_by=target` answer from the store's fleet windows (same shape as a
/// merge of the rows: each window with the number of probes it merges).
fn fleet_answer(
    mut fleet: Vec<FleetRollup>,
    range: (Tier, i64, i64),
    limit: usize,
    fields: Option<Vec<String>>,
    own: &str,
) -> String {
    let truncated = fleet.len() > limit;
    let own_region = (!own.is_empty()).then_some(own);
    fleet.truncate(limit);
    let out = fleet
        .iter()
        .map(|f| {
            let extra = serde_json::json!({"probes": f.probes});
            window_json(
                own_region,
                (None, Some(&f.target)),
                f.metric,
                range.0,
                f.start_ms,
                &f.agg,
                extra,
                fields.as_deref(),
            )
        })
        .collect();
    envelope(range, Some("target"), truncated, None, out)
}

fn envelope(
    (tier, from, to): (Tier, i64, i64),
    group_by: Option<&str>,
    truncated: bool,
    next: Option<&QueryCursor>,
    out: Vec<serde_json::Value>,
) -> String {
    serde_json::json!({
        "tier": tier.as_str(),
        "from": rfc3339(from),
        "to": rfc3339(to),
        "group_by": group_by,
        "truncated": truncated,
        "next": next.map(encode_cursor),
        "rollups": out,
    })
    .to_string()
}

pub async fn probes(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, Problem> {
    check_query_auth(&req, &state)?;
    if state.global {
        return global_probes(&state).await;
    }
    let sessions = match &state.sessions {
        Some(registry) => registry
            .send(ListSessions)
            .await
            .map_err(|e| Problem::unavailable(format!("session registry: {e}"), 2))?
            .map_err(|e| Problem::unavailable(e.to_string(), 2))?,
        None => state.store.list_sessions().await.map_err(|e| Problem::unavailable(e.to_string(), 2))?,
    };
    let now = state.clock.now_ms();
    let offline_after = state.cfg.session.offline_after_s * 1000;
    let mut by_id: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    let probes = state.probes();
    let labels_of = |id: &str| {
        probes.iter().find(|p| p.id == id).map(|p| serde_json::json!(p.labels)).unwrap_or(serde_json::json!({}))
    };
    for s in &sessions {
        by_id.insert(
            s.probe.clone(),
            serde_json::json!({
                "region": region_of(&s.probe, &state.cfg.federation.region).0,
                "probe": s.probe,
                "status": s.status(now, offline_after),
                "labels": labels_of(&s.probe),
                "first_seen": s.first_seen_ms.and_then(rfc3339),
                "last_seen": s.last_seen_ms.and_then(rfc3339),
                "last_event": s.last_event_ms.and_then(rfc3339),
                "events": s.events,
                "batches": s.batches,
                "duplicates": s.duplicates,
                "late_dropped": s.late_dropped,
                "missing": s.missing(),
                "clock_skew_ms": s.clock_skew_ms,
            }),
        );
    }
    for p in &probes {
        by_id.entry(p.id.clone()).or_insert_with(|| {
            serde_json::json!({"probe": p.id, "status": "never_seen", "labels": p.labels, "events": 0, "revoked": p.revoked})
        });
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({"probes": by_id.into_values().collect::<Vec<_>>()})))
}

/// The global tier's `/v1/probes`: every region's probe with a 1h window in the last 24 hours
/// (the regions keep the sessions; the global tier sees their windows), with its region, the start
/// of its newest hour, its targets, and `online` when it has a 1m window that ended within
/// `session.offline_after_s` plus `federation.settle_s` (else `offline`). Each of the two reads
/// takes at most `http.max_query_windows` windows; beyond, `truncated` is true.
async fn global_probes(state: &AppState) -> Result<HttpResponse, Problem> {
    let now = state.clock.now_ms();
    let max = state.cfg.http.max_query_windows;
    let read = |tier: Tier, from_ms: i64| {
        let q = RollupQuery {
            probe: None,
            target: None,
            metric: None,
            tier,
            from_ms,
            to_ms: now + tier.len_ms(),
            limit: max + 1,
            after: None,
        };
        let store = state.store.clone();
        async move { store.query(&q).await.map_err(|e| Problem::unavailable(e.to_string(), 2)) }
    };
    let fresh = (state.cfg.session.offline_after_s + state.cfg.federation.settle_s as i64) * 1000;
    let hours = read(Tier::H1, now - 86_400_000).await?;
    let recent = read(Tier::M1, now - fresh - 60_000).await?;
    let truncated = hours.len() > max || recent.len() > max;
    let online: std::collections::BTreeSet<&str> = recent
        .iter()
        .take(max)
        .filter(|r| now - (r.key.start_ms + 60_000) <= fresh)
        .map(|r| r.key.probe.as_str())
        .collect();
    let mut by_probe: BTreeMap<&str, (i64, std::collections::BTreeSet<&str>)> = BTreeMap::new();
    for r in hours.iter().take(max) {
        let e = by_probe.entry(r.key.probe.as_str()).or_insert((i64::MIN, Default::default()));
        e.0 = e.0.max(r.key.start_ms);
        e.1.insert(r.key.target.as_str());
    }
    let out: Vec<serde_json::Value> = by_probe
        .iter()
        .map(|(id, (hour, targets))| {
            let (region, probe) = region_of(id, "");
            serde_json::json!({
                "region": region,
                "probe": probe,
                "status": if online.contains(id) { "online" } else { "offline" },
                "last_hour": rfc3339(*hour),
                "targets": targets.len(),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({"probes": out, "truncated": truncated})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentParams {
    state: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<usize>,
}

/// `GET /v1/incidents?state=open|resolved&from=&to=&limit=`: incidents opened in `[from, to)`
/// (default: the last 7 days), newest first.
pub async fn incidents(
    req: HttpRequest,
    params: Result<web::Query<IncidentParams>, actix_web::Error>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Problem> {
    use netqoe_actors::store::IncidentQuery;
    use netqoe_domain::diagnosis::IncidentState;
    check_query_auth(&req, &state)?;
    let p = params.map_err(|e| Problem::bad_query("query", e.to_string()))?.into_inner();
    let now = state.clock.now_ms();
    let from = p.from.as_deref().map(|s| parse_time("from", s)).transpose()?.unwrap_or(now - 7 * 86_400_000);
    let to = p.to.as_deref().map(|s| parse_time("to", s)).transpose()?.unwrap_or(now + 86_400_000);
    if to <= from {
        return Err(Problem::bad_query("to", "to must be after from"));
    }
    let st = match p.state.as_deref() {
        None => None,
        Some("open") => Some(IncidentState::Open),
        Some("resolved") => Some(IncidentState::Resolved),
        Some(other) => return Err(Problem::bad_query("state", format!("state={other:?}: use open or resolved"))),
    };
    let limit = p.limit.unwrap_or(1000);
    if limit == 0 || limit > 10_000 {
        return Err(Problem::bad_query("limit", "limit must be between 1 and 10000"));
    }
    let list = state
        .store
        .list_incidents(&IncidentQuery { state: st, from_ms: from, to_ms: to, limit })
        .await
        .map_err(|e| Problem::unavailable(e.to_string(), 2))?;
    let out: Vec<serde_json::Value> = list
        .iter()
        .map(|i| {
            let mut v = serde_json::to_value(i).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                // a regional deployment's incidents are its region's; the global tier's name
                // theirs in the subject (`region` label group, or a probe's `region~probe`)
                let own = &state.cfg.federation.region;
                let region = i
                    .subject
                    .get("probe.region")
                    .cloned()
                    .or_else(|| i.subject.get("probe").and_then(|p| region_of(p, own).0.map(str::to_string)));
                o.insert("region".into(), serde_json::json!(region.or_else(|| (!own.is_empty()).then(|| own.clone()))));
                for (k, ms) in [
                    ("opened", Some(i.opened_ms)),
                    ("first_seen", Some(i.first_seen_ms)),
                    ("updated", Some(i.updated_ms)),
                    ("resolved", i.resolved_ms),
                ] {
                    o.insert(k.into(), serde_json::json!(ms.and_then(rfc3339)));
                }
            }
            v
        })
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "incidents": out })))
}
