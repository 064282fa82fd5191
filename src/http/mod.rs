//! The HTTP surface: ingest (`POST /v1/events`), query (`/v1/rollups`, `/v1/probes`), health
//! (`/healthz`, `/readyz`) and `/metrics`.
//!
//! Invariant: a 202 is sent only after the bus said the batch is durable; every error is an RFC
//! 9457 problem body naming the offending field where there is one.

pub mod ingest;
pub mod metrics;
pub mod problem;
pub mod query;

use std::sync::Arc;

use actix::Addr;
use actix_web::{web, HttpResponse};
use netqoe_actors::bus::EventBus;
use netqoe_actors::session::SessionRegistry;
use netqoe_actors::store::RollupStore;

use crate::auth::{RateLimiter, TokenBook};
use crate::config::Config;

/// Everything handlers need, shared across workers.
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
    /// Set when a drain began: ingest answers 503 from then on.
    pub draining: std::sync::atomic::AtomicBool,
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
    cfg.route("/v1/events", web::post().to(ingest::post_events))
        .route("/v1/rollups", web::get().to(query::rollups))
        .route("/v1/probes", web::get().to(query::probes))
        .route("/v1/incidents", web::get().to(query::incidents))
        .route("/dashboard", web::get().to(dashboard));
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
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics::render));
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
