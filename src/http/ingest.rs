//! `POST /v1/events`: authenticate the probe, check media type and size, decode (JSON or NDJSON),
//! validate every event, rate-limit, publish durably, answer 202 with accepted/duplicate counts.
//!
//! Invariant: a batch is all-or-nothing: one invalid event rejects the batch and nothing of it is
//! stored; the 202 is written only after `EventBus::publish` returned Ok.

use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use netqoe_actors::bus::{BusError, Published, RetryHint};
use netqoe_domain::event::validate;
use netqoe_domain::{Event, EventLimits, WireBatch, WireEvent};
use tracing::Instrument;

use super::metrics::{
    EVENTS_ACCEPTED, EVENTS_DUPLICATE, EVENTS_REJECTED, INGEST_BYTES, INGEST_REQUESTS, INGEST_SECONDS,
};
use super::problem::{FieldProblem, Problem};
use super::AppState;
use crate::auth::Principal;

/// Most field errors listed in one problem body.
const MAX_LISTED_ERRORS: usize = 50;

pub async fn post_events(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Problem> {
    let started = Instant::now();
    let _in_flight = super::InFlight::enter(&state.in_flight);
    let r = ingest(&req, payload, &state).await;
    let status = match &r {
        Ok(_) => "202".to_string(),
        Err(p) => p.status.to_string(),
    };
    INGEST_REQUESTS.with_label_values(&[&status]).inc();
    INGEST_SECONDS.with_label_values(&[&status]).observe(started.elapsed().as_secs_f64());
    r
}

fn reject(reason: &str, n: usize, p: Problem) -> Problem {
    EVENTS_REJECTED.with_label_values(&[reason]).inc_by(n.max(1) as u64);
    p
}

pub fn probe_of(req: &HttpRequest, state: &AppState) -> Result<String, Problem> {
    let header = req.headers().get("Authorization").and_then(|h| h.to_str().ok());
    match state.authenticate(header) {
        Ok(Principal::Probe(id)) => Ok(id),
        Ok(Principal::Query(_)) => Err(Problem::forbidden("a query token cannot ingest events; use the probe's token")),
        Ok(Principal::Admin(_)) => {
            Err(Problem::forbidden("an admin token cannot ingest events; use the probe's token"))
        }
        Err(e) => Err(Problem::auth(e, "probe")),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Format {
    Json,
    Ndjson,
}

fn format_of(req: &HttpRequest) -> Result<Format, Problem> {
    let ct = req.headers().get("Content-Type").and_then(|h| h.to_str().ok()).unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match mime.as_str() {
        "application/json" => Ok(Format::Json),
        "application/x-ndjson" | "application/ndjson" => Ok(Format::Ndjson),
        _ => Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            format!("Content-Type {ct:?} is not accepted; send application/json or application/x-ndjson"),
        )
        .field("Content-Type")),
    }
}

fn too_large(limit: usize) -> Problem {
    reject(
        "too_large",
        1,
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            "Request body too large",
            format!("the body exceeds the {limit}-byte limit (http.max_body_bytes); send smaller batches"),
        )
        .field("body"),
    )
}

/// A body declared larger than the limit is refused before it is read.
fn check_declared_size(req: &HttpRequest, limit: usize) -> Result<(), Problem> {
    let declared =
        req.headers().get("Content-Length").and_then(|h| h.to_str().ok()).and_then(|s| s.parse::<usize>().ok());
    match declared {
        Some(n) if n > limit => Err(too_large(limit)),
        _ => Ok(()),
    }
}

/// Reads the body, holding memory only for the bytes that arrived (never the declared size), and
/// only for `timeout`: a client that stalls gets 408 and loses the connection.
async fn read_body(
    mut payload: web::Payload,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<web::BytesMut, Problem> {
    let read = async {
        let mut body = web::BytesMut::with_capacity(8192.min(limit));
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| {
                reject(
                    "aborted",
                    1,
                    Problem::new(StatusCode::BAD_REQUEST, "unreadable-body", "Unreadable body", e.to_string())
                        .field("body"),
                )
            })?;
            if body.len() + chunk.len() > limit {
                return Err(too_large(limit));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    let body = tokio::time::timeout(timeout, read).await.map_err(|_| {
        reject(
            "body_timeout",
            1,
            Problem::new(
                StatusCode::REQUEST_TIMEOUT,
                "body-timeout",
                "Request body timeout",
                format!("the body did not arrive within {} s of the headers (http.body_timeout_s)", timeout.as_secs()),
            )
            .field("body"),
        )
    })??;
    INGEST_BYTES.inc_by(body.len() as u64);
    Ok(body)
}

/// A slot for one body of `probe`, or 503 (every slot taken) / 429 (the probe's taken).
fn body_slot<'a>(state: &'a AppState, probe: &str) -> Result<super::BodySlot<'a>, Problem> {
    let h = &state.cfg.http;
    state.bodies.take(probe, h.max_bodies_in_flight, h.max_bodies_per_probe).map_err(|refused| match refused {
        super::SlotRefused::Total(n) => reject(
            "busy",
            1,
            Problem::unavailable(
                format!("{n} request bodies are being received already (http.max_bodies_in_flight); retry later"),
                1,
            ),
        ),
        super::SlotRefused::Probe(n) => reject(
            "busy",
            1,
            Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-bodies",
                "Too many concurrent requests",
                format!(
                    "probe {probe} has {n} request bodies in flight already (http.max_bodies_per_probe); \
                     send batches one after another"
                ),
            )
            .retry_after(1),
        ),
    })
}

/// Maps a decode error at `path` to 400 (not JSON) or 422 (JSON of the wrong shape).
fn decode_problem(path: String, err: &serde_json::Error) -> Problem {
    let msg = err.to_string();
    let mut field = if path.is_empty() || path == "." { "body".to_string() } else { path };
    // serde names the unknown or missing key in its message; the path may or may not include it.
    let named = msg.strip_prefix("unknown field `").or_else(|| msg.strip_prefix("missing field `"));
    if let Some(name) = named.and_then(|rest| rest.split('`').next()).filter(|n| !n.is_empty()) {
        if field == "body" {
            field = name.to_string();
        } else if field != name && !field.ends_with(&format!(".{name}")) {
            field = format!("{field}.{name}");
        }
    }
    match err.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof | serde_json::error::Category::Io => {
            reject(
                "malformed",
                1,
                Problem::new(StatusCode::BAD_REQUEST, "malformed-json", "Malformed JSON", msg).field(field),
            )
        }
        serde_json::error::Category::Data => reject(
            "schema",
            1,
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "schema-violation", "Event schema violation", msg)
                .field(field),
        ),
    }
}

fn decode(body: &[u8], format: Format) -> Result<Vec<WireEvent>, Problem> {
    match format {
        Format::Json => {
            // Fast path without path tracking; only a failing body is parsed again to name the field.
            if let Ok(batch) = serde_json::from_slice::<WireBatch>(body) {
                return Ok(batch.events);
            }
            let mut de = serde_json::Deserializer::from_slice(body);
            let batch: WireBatch = serde_path_to_error::deserialize(&mut de).map_err(|e| {
                let path = e.path().to_string();
                decode_problem(path, e.inner())
            })?;
            de.end().map_err(|e| decode_problem(String::new(), &e))?;
            Ok(batch.events)
        }
        Format::Ndjson => {
            let mut out = Vec::new();
            for line in body.split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let i = out.len();
                if let Ok(ev) = serde_json::from_slice::<WireEvent>(line) {
                    out.push(ev);
                    continue;
                }
                let mut de = serde_json::Deserializer::from_slice(line);
                let ev: WireEvent = serde_path_to_error::deserialize(&mut de).map_err(|e| {
                    let p = e.path().to_string();
                    let path =
                        if p.is_empty() || p == "." { format!("events[{i}]") } else { format!("events[{i}].{p}") };
                    decode_problem(path, e.inner())
                })?;
                de.end().map_err(|e| decode_problem(format!("events[{i}]"), &e))?;
                out.push(ev);
            }
            Ok(out)
        }
    }
}

async fn ingest(req: &HttpRequest, payload: web::Payload, state: &AppState) -> Result<HttpResponse, Problem> {
    if state.draining.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(reject("unavailable", 1, Problem::unavailable("this node is draining; retry on another", 1)));
    }
    let probe = match probe_of(req, state) {
        Ok(p) => p,
        Err(p) => return Err(reject(if p.status == 401 { "unauthorized" } else { "forbidden" }, 1, p)),
    };
    let format = format_of(req).map_err(|p| reject("unsupported_media_type", 1, p))?;
    let limit = state.cfg.http.max_body_bytes;
    check_declared_size(req, limit)?;
    let _slot = body_slot(state, &probe)?;
    let timeout = std::time::Duration::from_secs(state.cfg.http.body_timeout_s);
    let body = read_body(payload, limit, timeout).await?;
    let now = state.clock.now_ms();
    let max = state.cfg.http.max_events_per_batch;
    let events = events_of(&body, format == Format::Ndjson, now, &state.cfg.event_limits(), max)?;
    let n = events.len();
    let max_series = state.cfg.ingest.max_series_per_probe;
    let idle_ms = state.cfg.pipeline.idle_evict_s * 1000;
    if let Err(beyond) = state.series.admit(&probe, &events, now, max_series, idle_ms) {
        let reason =
            format!("opens a series beyond the {max_series} this probe may feed (ingest.max_series_per_probe)");
        let mut p = Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "too-many-series",
            "Too many series",
            format!(
                "{} event(s) would open series beyond the {max_series} probe {probe} may feed at once \
                 (ingest.max_series_per_probe); nothing was stored",
                beyond.len()
            ),
        )
        .field(format!("events[{}].target", beyond[0]));
        p.errors = beyond
            .iter()
            .take(MAX_LISTED_ERRORS)
            .map(|i| FieldProblem { field: format!("events[{i}].target"), reason: reason.clone() })
            .collect();
        return Err(reject("too_many_series", n, p));
    }
    if let Err(wait) = state.limiter.take(&probe, n) {
        return Err(reject(
            "rate_limited",
            n,
            Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Rate limit exceeded",
                format!("probe {probe} exceeds {} events/s (ingest.rate_per_probe)", state.cfg.ingest.rate_per_probe),
            )
            .retry_after(wait),
        ));
    }
    // Over a broker, re-sent events are recognised downstream (each window knows its events);
    // `duplicates` here counts what the bus itself recognised.
    // one span per batch, from here through the bus; the aggregator's `aggregate.apply` and
    // `store.commit` spans carry the same batch id (also across processes over a broker)
    let span = tracing::info_span!("ingest.batch", %probe, events = n, batch_id = tracing::field::Empty);
    let published = state.bus.publish(&probe, events, now).instrument(span.clone()).await;
    if let Ok(Published { batch_id: Some(id), .. }) = &published {
        span.record("batch_id", id.as_str());
    }
    match published {
        Ok(p) => {
            EVENTS_ACCEPTED.inc_by(p.accepted as u64);
            EVENTS_DUPLICATE.inc_by(p.duplicates as u64);
            if p.batch_id.is_none() {
                // Nothing new to aggregate, so no batch will reach the session: tell it here.
                let obs = netqoe_domain::BatchObservation {
                    arrival_ms: now,
                    duplicates: p.duplicates as u64,
                    ..Default::default()
                };
                let msg = netqoe_actors::session::Observe { probe: probe.clone(), obs };
                if let Some(registry) = &state.sessions {
                    if let Err(error) = registry.send(msg).await {
                        tracing::warn!(%error, %probe, "session registry unavailable");
                    }
                }
            }
            tracing::debug!(%probe, accepted = p.accepted, duplicates = p.duplicates, batch = ?p.batch_id, "batch accepted");
            Ok(HttpResponse::Accepted().json(serde_json::json!({
                "accepted": p.accepted,
                "duplicates": p.duplicates,
                "batch_id": p.batch_id,
            })))
        }
        Err(e) => {
            if e.retryable() {
                tracing::warn!(error = %e, %probe, "publish failed; answering 503");
            } else {
                tracing::error!(error = %e, %probe, "publish failed and a retry cannot help; answering 500");
            }
            Err(publish_failed(&e, n, state.cfg.ingest.retry_after_s))
        }
    }
}

/// The answer to a publish that failed, by its retry hint. Nothing was stored either way.
/// `WithBackoff`: 503 with Retry-After (the probe keeps the batch and comes back). `NoRetry`: the
/// bus refuses this batch or failed in a way a retry cannot mend — a 500 says so rather than
/// promise that later will do (the probe still keeps the batch; an operator must look).
fn publish_failed(e: &BusError, n: usize, retry_after_s: u64) -> Problem {
    match e.retry_hint() {
        RetryHint::WithBackoff => reject("unavailable", n, Problem::unavailable(e.to_string(), retry_after_s)),
        RetryHint::NoRetry => reject("failed", n, Problem::internal(e.to_string())),
    }
}

/// The events of a request body: decoded (JSON or NDJSON) and each validated, or the problem —
/// 400 for what is not JSON, 422 for a schema or rule violation, naming the field. This is the
/// whole of what ingest makes of the bytes a client sends (fuzzed in `tests/it/fuzz_ingest.rs`).
pub fn events_of(body: &[u8], ndjson: bool, now: i64, limits: &EventLimits, max: usize) -> Result<Vec<Event>, Problem> {
    let format = if ndjson { Format::Ndjson } else { Format::Json };
    let wire = decode(body, format)?;
    let n = wire.len();
    if n == 0 {
        return Err(reject(
            "invalid",
            1,
            Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "empty-batch",
                "Empty batch",
                "a batch needs at least one event",
            )
            .field("events"),
        ));
    }
    if n > max {
        return Err(reject(
            "too_many_events",
            n,
            Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "too-many-events",
                "Too many events",
                format!("{n} events exceed the limit of {max} per batch (http.max_events_per_batch)"),
            )
            .field("events"),
        ));
    }
    let mut events = Vec::with_capacity(n);
    let mut errors = Vec::new();
    for (i, w) in wire.into_iter().enumerate() {
        match validate(w, i, now, limits) {
            Ok(e) => events.push(e),
            Err(fe) => {
                if errors.len() < MAX_LISTED_ERRORS {
                    errors.push(FieldProblem { field: fe.field, reason: fe.reason });
                }
            }
        }
    }
    if !errors.is_empty() {
        let first = &errors[0];
        let mut p = Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-event",
            "Invalid event",
            format!("{}: {} (the whole batch was rejected; nothing was stored)", first.field, first.reason),
        )
        .field(first.field.clone());
        p.errors = errors;
        return Err(reject("invalid", n, p));
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_publish_is_503_with_retry_after_only_when_a_retry_can_help() {
        for e in [BusError::unavailable("broker down"), BusError::overloaded("nack")] {
            let p = publish_failed(&e, 3, 7);
            assert_eq!((p.status, p.retry_after), (503, Some(7)), "{e}");
        }
        let p = publish_failed(&BusError::failed("channel not in confirm mode"), 3, 7);
        assert_eq!((p.status, p.retry_after), (500, None));
        assert!(p.detail.contains("confirm mode"), "{}", p.detail);
    }

    #[test]
    fn decode_errors_name_fields() {
        let p = decode(
            br#"{"events":[{"event_id":"a","seq":1,"ts":"x","target":"t","kind":"icmp","rtt_ms":NaN}]}"#,
            Format::Json,
        )
        .unwrap_err();
        assert_eq!(p.status, 400);
        assert_eq!(p.field.as_deref(), Some("events[0].rtt_ms"));
        let p = decode(
            br#"{"events":[{"event_id":"a","seq":1,"ts":"x","target":"t","kind":"icmp","colour":1}]}"#,
            Format::Json,
        )
        .unwrap_err();
        assert_eq!(p.status, 422);
        assert_eq!(p.field.as_deref(), Some("events[0].colour"));
        assert_eq!(p.index, Some(0));
        let p = decode(b"{\"event_id\":\"a\"}\n{nope", Format::Ndjson).unwrap_err();
        assert_eq!(p.status, 422);
        assert_eq!(p.field.as_deref(), Some("events[0].seq"));
    }
}
