//! The HTTP surface: ingest (`POST /v1/events`), query (`/v1/rollups`, `/v1/probes`), health
//! (`/healthz`, `/readyz`) and `/metrics`.
//!
//! Invariant: a 202 is sent only after the bus said the batch is durable; every error is an RFC
//! 9457 problem body naming the offending field where there is one.

pub mod ingest;
pub mod metrics;
pub mod problem;
pub mod query;
pub mod series;

use std::sync::Arc;

use actix::Addr;
use actix_web::{web, HttpResponse};
use netqoe_actors::bus::EventBus;
use netqoe_actors::session::SessionRegistry;
use netqoe_actors::store::RollupStore;

use crate::auth::{RateLimiter, TokenBook};
use crate::config::Config;

/// Everything handlers need, shared across workers.
/// Request bodies being received now, in total and per probe (`http.max_bodies_in_flight`,
/// `http.max_bodies_per_probe`): what bounds the memory clients can make the server hold.
#[derive(Default)]
pub struct BodySlots {
    total: std::sync::atomic::AtomicUsize,
    per_probe: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

/// Which bound refused a body.
#[derive(Debug, PartialEq)]
pub enum SlotRefused {
    Total(usize),
    Probe(usize),
}

/// One body being received; frees its slot when dropped.
pub struct BodySlot<'a> {
    slots: &'a BodySlots,
    probe: String,
}

impl BodySlots {
    pub fn take(&self, probe: &str, total_max: usize, per_probe_max: usize) -> Result<BodySlot<'_>, SlotRefused> {
        use std::sync::atomic::Ordering;
        let mut per = self.per_probe.lock().unwrap_or_else(|p| p.into_inner());
        let mine = per.get(probe).copied().unwrap_or(0);
        if mine >= per_probe_max {
            return Err(SlotRefused::Probe(per_probe_max));
        }
        if self.total.load(Ordering::SeqCst) >= total_max {
            return Err(SlotRefused::Total(total_max));
        }
        self.total.fetch_add(1, Ordering::SeqCst);
        per.insert(probe.to_string(), mine + 1);
        Ok(BodySlot { slots: self, probe: probe.to_string() })
    }

    /// Bodies being received now.
    pub fn in_flight(&self) -> usize {
        self.total.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for BodySlot<'_> {
    fn drop(&mut self) {
        let mut per = self.slots.per_probe.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = per.get_mut(&self.probe) {
            *n -= 1;
            if *n == 0 {
                per.remove(&self.probe);
            }
        }
        self.slots.total.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// What `SIGHUP` reloads without a restart: probes (tokens, revocations, labels) and query tokens.
pub struct Live {
    pub tokens: TokenBook,
    pub probes: Vec<crate::config::ProbeEntry>,
}

pub struct AppState {
    /// The configuration the process started with (probes and tokens: see `live`).
    pub cfg: Config,
    pub live: std::sync::RwLock<Live>,
    pub limiter: RateLimiter,
    pub bus: Arc<dyn EventBus>,
    pub store: Arc<dyn RollupStore>,
    /// The local session registry (None in the ingest-only role: sessions are read from the store).
    pub sessions: Option<Addr<SessionRegistry>>,
    /// The local pipeline (aggregate role), drained by `POST /admin/drain`.
    pub pipeline: Option<Arc<netqoe_actors::pipeline::Pipeline>>,
    /// Set when a drain began: ingest answers 503 from then on.
    pub draining: std::sync::atomic::AtomicBool,
    /// Ingest requests being handled now (a drain is done when none are left).
    pub in_flight: std::sync::atomic::AtomicUsize,
    /// Request bodies being received now.
    pub bodies: BodySlots,
    /// Live series per probe (`ingest.max_series_per_probe`).
    pub series: series::SeriesBook,
    /// Permits for rollup queries (`http.max_concurrent_queries`).
    pub queries: tokio::sync::Semaphore,
    /// What an admin-requested drain has done so far.
    pub drain: std::sync::Mutex<crate::drain::DrainProgress>,
    /// The time ingest validates against, queries default to and the drain records.
    pub clock: netqoe_actors::Clock,
    /// The global tier of a federation (`netqoe global`): `/v1/probes` lists the regions' probes
    /// from their windows.
    pub global: bool,
}

/// Decrements the in-flight count when an ingest request ends, however it ends.
pub struct InFlight<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> InFlight<'a> {
    pub fn enter(counter: &'a std::sync::atomic::AtomicUsize) -> Self {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Self(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl AppState {
    pub fn authenticate(&self, header: Option<&str>) -> Result<crate::auth::Principal, crate::auth::AuthError> {
        match self.live.read() {
            Ok(l) => l.tokens.authenticate(header),
            Err(_) => Err(crate::auth::AuthError::Unknown),
        }
    }

    pub fn query_tokens_configured(&self) -> bool {
        self.live.read().map(|l| l.tokens.query_tokens_configured).unwrap_or(true)
    }

    pub fn probes(&self) -> Vec<crate::config::ProbeEntry> {
        self.live.read().map(|l| l.probes.clone()).unwrap_or_default()
    }
}

/// Ingest and query API (the `ingest` role and `run`).
pub fn api_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(only(web::resource("/v1/events").route(web::post().to(ingest::post_events)), "POST"))
        .service(only(web::resource("/v1/rollups").route(web::get().to(query::rollups)), "GET"))
        .service(only(web::resource("/v1/probes").route(web::get().to(query::probes)), "GET"))
        .service(only(web::resource("/v1/incidents").route(web::get().to(query::incidents)), "GET"))
        .service(only(web::resource("/dashboard").route(web::get().to(dashboard)), "GET"));
}

/// Any other method on `resource`: 405 with `Allow` and a problem body. (actix answers HEAD for
/// a GET route itself.)
fn only(resource: actix_web::Resource, allow: &'static str) -> actix_web::Resource {
    resource.default_service(web::to(move |req: actix_web::HttpRequest| async move {
        let p = problem::Problem::new(
            actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "Method not allowed",
            format!("{} {} is not served; use {allow}", req.method(), req.path()),
        );
        let mut r = actix_web::ResponseError::error_response(&p);
        r.headers_mut()
            .insert(actix_web::http::header::ALLOW, actix_web::http::header::HeaderValue::from_static(allow));
        r
    }))
}

/// Any path no route serves: 404 with a problem body (as every error is).
pub async fn not_found(req: actix_web::HttpRequest) -> HttpResponse {
    actix_web::ResponseError::error_response(&problem::Problem::new(
        actix_web::http::StatusCode::NOT_FOUND,
        "not-found",
        "Not found",
        format!("no resource at {}; see docs/api.md", req.path()),
    ))
}

/// The built-in live page: one self-contained HTML document (no external assets), reading
/// `/metrics`, `/v1/rollups` and `/v1/probes` from the same origin.
async fn dashboard() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((
            "Content-Security-Policy",
            "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:",
        ))
        .body(include_str!("dashboard.html"))
}

/// Health and metrics (every role).
pub fn admin_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(only(web::resource("/healthz").route(web::get().to(healthz)), "GET"))
        .service(only(web::resource("/readyz").route(web::get().to(readyz)), "GET"))
        .service(only(web::resource("/metrics").route(web::get().to(metrics::render)), "GET"))
        .service(only(
            web::resource("/admin/drain").route(web::post().to(start_drain)).route(web::get().to(drain_status)),
            "GET, POST",
        ));
}

fn check_admin(req: &actix_web::HttpRequest, state: &AppState) -> Result<(), problem::Problem> {
    let header = req.headers().get("Authorization").and_then(|h| h.to_str().ok());
    match state.authenticate(header) {
        Ok(crate::auth::Principal::Admin(_)) => Ok(()),
        Ok(_) => Err(problem::Problem::forbidden("only an admin token may drain (netqoe token mint --admin NAME)")),
        Err(e) => Err(problem::Problem::auth(e, "admin")),
    }
}

/// `POST /admin/drain`: stop accepting (ingest answers 503 with Retry-After, /readyz fails so
/// load balancers move away), let in-flight requests finish, commit the pipeline's open windows
/// and stop consuming (another aggregator takes the shards over). 202 with the progress;
/// `GET /admin/drain` reports it until `done`. The process keeps running until it is stopped.
async fn start_drain(
    req: actix_web::HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, problem::Problem> {
    check_admin(&req, &state)?;
    crate::drain::begin(state.clone());
    Ok(HttpResponse::Accepted().json(crate::drain::status(&state)))
}

async fn drain_status(
    req: actix_web::HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, problem::Problem> {
    check_admin(&req, &state)?;
    Ok(HttpResponse::Ok().json(crate::drain::status(&state)))
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let bus = state.bus.ready().await;
    let store = state.store.ready().await;
    let draining = state.draining.load(std::sync::atomic::Ordering::Relaxed);
    let component = |name: &str, r: Result<(), String>| match r {
        Ok(()) => serde_json::json!({"component": name, "ready": true}),
        Err(e) => serde_json::json!({"component": name, "ready": false, "detail": e}),
    };
    let ready = bus.is_ok() && store.is_ok() && !draining;
    let body = serde_json::json!({
        "ready": ready,
        "components": [
            component(&format!("bus:{}", state.bus.name()), bus.map_err(|e| e.to_string())),
            component(&format!("store:{}", state.store.name()), store.map_err(|e| e.to_string())),
            component("ingest", if draining { Err("draining".into()) } else { Ok(()) }),
        ]
    });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_slots_bound_the_total_and_each_probe_and_free_on_drop() {
        let slots = BodySlots::default();
        let a1 = slots.take("a", 3, 2).unwrap();
        let a2 = slots.take("a", 3, 2).unwrap();
        assert_eq!(slots.take("a", 3, 2).err(), Some(SlotRefused::Probe(2)));
        let b1 = slots.take("b", 3, 2).unwrap();
        assert_eq!(slots.take("c", 3, 2).err(), Some(SlotRefused::Total(3)));
        assert_eq!(slots.in_flight(), 3);
        drop(a1);
        let a3 = slots.take("a", 3, 2).unwrap();
        drop((a2, a3, b1));
        assert_eq!(slots.in_flight(), 0);
        assert!(slots.per_probe.lock().unwrap().is_empty(), "no entry is left for an idle probe");
    }

    /// The page's matrix and the `netqoe_pair_state` gauges (Grafana) colour a pair by one set of
    /// rules; the page's constants must be the domain's.
    #[test]
    fn the_pages_matrix_thresholds_are_the_domains() {
        let page = include_str!("dashboard.html");
        let object = |name: &str| -> std::collections::BTreeMap<String, f64> {
            let start = page.find(&format!("const {name} = {{")).expect(name) + name.len() + 10;
            let body = &page[start..start + page[start..].find('}').unwrap()];
            body.split(',')
                .map(|kv| {
                    let (k, v) = kv.split_once(':').unwrap();
                    (k.trim().to_string(), v.trim().parse().unwrap())
                })
                .collect()
        };
        let t = netqoe_domain::matrix::MatrixThresholds::DEFAULT;
        let d = object("DEGRADED");
        let want = [
            ("loss", t.degraded.loss_pct),
            ("fail", t.degraded.fail_pct),
            ("mos", t.degraded.mos),
            ("excess", t.excess),
            ("excessMs", t.excess_ms),
            ("certDays", t.degraded.cert_days),
        ];
        assert_eq!(d, want.iter().map(|(k, v)| (k.to_string(), *v)).collect());
        let f = object("FAILING");
        let want = [
            ("loss", t.failing.loss_pct),
            ("fail", t.failing.fail_pct),
            ("mos", t.failing.mos),
            ("certDays", t.failing.cert_days),
        ];
        assert_eq!(f, want.iter().map(|(k, v)| (k.to_string(), *v)).collect());
    }
}
