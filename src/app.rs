//! Wiring: opens the store and bus, starts the actor pipeline and the HTTP server on a given
//! listener, and drains on shutdown. Tests drive `start` with a port-0 listener.
//!
//! Invariant: shutdown stops accepting first (ingest answers 503 while draining), then lets
//! in-flight requests finish, then commits every open window as a partial revision.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix_web::{web, App, HttpServer};
use netqoe_actors::bus::EventBus;
use netqoe_actors::pipeline::Pipeline;
use netqoe_actors::store::RollupStore;
use netqoe_actors::Clock;

use crate::auth::{RateLimiter, TokenBook};
use crate::config::{BusKind, Config, StorageBackend};
use crate::http::{self, AppState};
use crate::rabbit::RabbitBus;
use crate::sqlite::Sqlite;

/// Which roles this process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Roles {
    /// Ingest and query API (`POST /v1/events`, `GET /v1/rollups`, `GET /v1/probes`).
    pub api: bool,
    /// The aggregation pipeline (consume, aggregate, write rollups, sessions).
    pub aggregate: bool,
    /// The diagnosis actor (incidents, webhooks, diagnoses exchange): one per deployment.
    pub diagnose: bool,
    /// The global tier of a federation: consume the regions' window revisions from
    /// `{prefix}federation.global` on the broker of `rabbitmq.uris` (docs/federation.md).
    pub global: bool,
}

impl Roles {
    pub const ALL: Roles = Roles { api: true, aggregate: true, diagnose: true, global: false };
    pub const INGEST: Roles = Roles { api: true, aggregate: false, diagnose: false, global: false };
    pub const AGGREGATE: Roles = Roles { api: false, aggregate: true, diagnose: false, global: false };
    pub const DIAGNOSE: Roles = Roles { api: false, aggregate: false, diagnose: true, global: false };
    /// `netqoe global`: the federation consumer, its query API and the global diagnoser.
    pub const GLOBAL: Roles = Roles { api: true, aggregate: false, diagnose: true, global: true };
}

/// A running netqoe (all roles, one process).
pub struct RunningApp {
    pub addr: SocketAddr,
    /// Where `/metrics`, `/healthz` and `/readyz` answer (`addr` unless `http.admin_bind` is set).
    pub admin_addr: Option<SocketAddr>,
    pub state: web::Data<AppState>,
    /// The pipeline, when this process aggregates.
    pub pipeline: Option<Arc<Pipeline>>,
    /// The diagnosis actor of the `diagnose` role (in `run`, the pipeline's).
    pub diagnoser: Option<actix::Addr<netqoe_actors::diagnoser::DiagnoserActor>>,
    server: actix_web::dev::ServerHandle,
    admin: Option<actix_web::dev::ServerHandle>,
    server_task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    /// The global role's consumer and its stop signal.
    global: Option<(tokio::sync::watch::Sender<bool>, Vec<tokio::task::JoinHandle<()>>)>,
}

/// Starts every role on `listener` (see `start_roles`).
pub async fn start(cfg: Config, listener: TcpListener) -> anyhow::Result<RunningApp> {
    start_roles(cfg, listener, Roles::ALL).await
}

/// Starts the given roles with the configured bus (`bus.kind`) and store. Signals are not handled
/// here: the caller decides when to `shutdown` (the binary on SIGTERM/SIGINT, tests when done).
pub async fn start_roles(cfg: Config, listener: TcpListener, roles: Roles) -> anyhow::Result<RunningApp> {
    start_with_clock(cfg, listener, roles, Clock::system()).await
}

/// The sockets the app serves on, bound by the caller (as mini-redis's `run(listener, …)`): the
/// API (`http.bind`) and, optionally, the admin listener. Without one, an `http.admin_bind`
/// setting is bound at start; tests bind both to port 0 and pass them in, never picking a port by
/// binding and dropping it.
pub struct Listeners {
    pub api: TcpListener,
    pub admin: Option<TcpListener>,
}

impl From<TcpListener> for Listeners {
    fn from(api: TcpListener) -> Self {
        Self { api, admin: None }
    }
}

/// `start_roles` on a given clock: every actor, store, handler and drain reads its time from
/// `clock` (a manual clock runs the whole process in simulated time; tests use it).
pub async fn start_with_clock(
    cfg: Config,
    listeners: impl Into<Listeners>,
    roles: Roles,
    clock: Clock,
) -> anyhow::Result<RunningApp> {
    http::metrics::init();
    let Listeners { api: listener, admin: admin_listener } = listeners.into();
    // Everything that can fail on the environment (ports, directories) fails here, before any
    // server or actor runs, so a bad setting ends the start with a clear error and nothing to undo.
    let admin_listener = match admin_listener {
        Some(l) => Some(l),
        None if cfg.http.admin_bind.is_empty() => None,
        None => Some(
            std::net::TcpListener::bind(&cfg.http.admin_bind)
                .map_err(|e| anyhow::anyhow!("http.admin_bind {}: {e}", cfg.http.admin_bind))?,
        ),
    };
    // the SQLite file is opened only when the bus or the store is it
    let db = if cfg.bus.kind == BusKind::Embedded || cfg.storage.backend == StorageBackend::Sqlite {
        Some(
            Sqlite::open_with_clock(&cfg.storage.data_dir, clock.clone())
                .map_err(|e| anyhow::anyhow!("storage.data_dir {}: {e:#}", cfg.storage.data_dir.display()))?,
        )
    } else {
        None
    };
    let sqlite = || db.clone().expect("opened above for an embedded bus or a SQLite store");
    let rabbit = (cfg.bus.kind == BusKind::Rabbitmq).then(|| RabbitBus::new(cfg.rabbitmq.clone()));
    let bus: Arc<dyn EventBus> = match &rabbit {
        Some(r) => Arc::new(r.clone()),
        None => Arc::new(sqlite()),
    };
    let store: Arc<dyn RollupStore> = match cfg.storage.backend {
        StorageBackend::Scylla => Arc::new(
            crate::scylla::store::ScyllaStore::connect(&cfg.scylla, cfg.pipeline_config().retention)
                .await
                .map(|s| s.with_clock(clock.clone()))
                .map_err(|e| anyhow::anyhow!("scylla store ({}): {e}", cfg.scylla.contact_points.join(",")))?,
        ),
        StorageBackend::Sqlite => Arc::new(sqlite()),
    };
    // Connect the publisher now, on this (the main) runtime, so its I/O outlives the HTTP workers;
    // an unreachable broker is not fatal here (ingest answers 503 and retries the connection).
    if let Err(error) = bus.ready().await {
        tracing::warn!(%error, bus = bus.name(), "bus not ready at start");
    }
    let mut pcfg = cfg.pipeline_config();
    pcfg.clock = clock.clone();
    if let (true, Some(r)) = (cfg.federation.uplink, &rabbit) {
        let uplink =
            crate::rabbit::federation::RabbitUplink::new(r.clone(), cfg.federation.region.clone(), clock.clone());
        pcfg.aggregator.uplink = Some(netqoe_actors::uplink::UplinkHandle(Arc::new(uplink)));
    }
    if let (true, Some(d)) = (roles.global, pcfg.diagnosis.as_mut()) {
        // the regions' windows arrive after their own lateness and the uplink's transit
        d.settle_ms = d.settle_ms.max(cfg.federation.settle_s as i64 * 1000);
    }
    let global = roles.global.then(|| {
        let (stop, closing) = tokio::sync::watch::channel(false);
        // the global store has no pipeline whose writer prunes it: expire its windows here
        let prune = {
            let (store, clock, retention, every) = (store.clone(), clock.clone(), pcfg.retention, pcfg.prune_every);
            let mut closing = closing.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tokio::select! {
                        _ = tick.tick() => match store.prune(clock.now_ms(), &retention).await {
                            Ok(n) if n > 0 => tracing::info!(rows = n, "pruned expired rows"),
                            Ok(_) => {}
                            Err(error) => tracing::warn!(%error, "prune failed"),
                        },
                        _ = async { let _ = closing.wait_for(|c| *c).await; } => return,
                    }
                }
            })
        };
        let consumer = crate::rabbit::federation::start_global(
            cfg.rabbitmq.clone(),
            store.clone(),
            cfg.federation.prefetch,
            closing,
        );
        (stop, vec![consumer, prune])
    });
    if roles.diagnose {
        // incident changes go to the webhooks and, over a broker, to the diagnoses exchange
        let mut sinks = Vec::new();
        if !cfg.webhooks.urls.is_empty() {
            sinks.push(crate::webhook::start(cfg.webhooks.clone()));
        }
        if let Some(r) = &rabbit {
            sinks.push(crate::webhook::start_broker(r.clone(), cfg.webhooks.queue));
        }
        if let (Some(d), false) = (pcfg.diagnosis.as_mut(), sinks.is_empty()) {
            d.sink = Some(crate::webhook::fan_out(sinks, cfg.webhooks.queue));
        }
    } else {
        pcfg.diagnosis = None;
    }
    let (pipeline, diagnoser) = if roles.aggregate {
        let p = Pipeline::start(bus.clone(), store.clone(), pcfg).await?;
        let d = p.diagnoser.clone();
        (Some(Arc::new(p)), d)
    } else {
        let d = pcfg.diagnosis.map(|dc| {
            let (s, clock) = (store.clone(), clock.clone());
            actix::Supervisor::start(move |_| netqoe_actors::diagnoser::DiagnoserActor::new(s, dc, clock))
        });
        (None, d)
    };
    if cfg.query_tokens.is_empty() {
        tracing::warn!("no query_tokens configured: the query API is open to any caller that is not a probe");
    }
    if cfg.probes.is_empty() {
        tracing::warn!(
            "no probes configured: ingest rejects every request (mint one with `netqoe token mint --probe ID`)"
        );
    }
    let state = web::Data::new(AppState {
        live: std::sync::RwLock::new(crate::http::Live {
            tokens: TokenBook::from_config(&cfg),
            probes: cfg.probes.clone(),
        }),
        limiter: RateLimiter::new(cfg.ingest.rate_per_probe, cfg.ingest.burst),
        bus,
        store,
        sessions: pipeline.as_ref().map(|p| p.sessions.clone()),
        pipeline: pipeline.clone(),
        draining: std::sync::atomic::AtomicBool::new(false),
        in_flight: std::sync::atomic::AtomicUsize::new(0),
        bodies: Default::default(),
        series: Default::default(),
        queries: tokio::sync::Semaphore::new(cfg.http.max_concurrent_queries),
        drain: std::sync::Mutex::new(crate::drain::DrainProgress::default()),
        clock,
        global: roles.global,
        cfg,
    });
    let addr = listener.local_addr()?;
    let data = state.clone();
    let workers = match state.cfg.http.workers {
        0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
        n => n,
    };
    let separate_admin = admin_listener.is_some();
    let server = HttpServer::new(move || {
        let app = App::new().app_data(data.clone()).default_service(web::to(http::not_found));
        let app = if separate_admin { app } else { app.configure(http::admin_routes) };
        if roles.api {
            app.configure(http::api_routes)
        } else {
            app
        }
    })
    .workers(workers)
    .shutdown_timeout(30)
    .disable_signals();
    // read once: `http.bind` and, with `http.admin_tls`, the admin listener serve it
    let tls = if state.cfg.http.tls_cert.is_empty() {
        None
    } else {
        Some(
            crate::tls::server_config(&state.cfg.http.tls_cert, &state.cfg.http.tls_key)
                .map_err(|e| anyhow::anyhow!("http.tls_cert: {e}"))?,
        )
    };
    let server = match tls.clone() {
        None => server.listen(listener)?,
        Some(tls) => server.listen_rustls_0_23(listener, tls)?,
    }
    .run();
    let handle = server.handle();
    let server_task = Some(tokio::task::spawn_local(server));
    let (admin, admin_addr) = if let Some(listener) = admin_listener {
        let data = state.clone();
        let admin = HttpServer::new(move || {
            App::new().app_data(data.clone()).default_service(web::to(http::not_found)).configure(http::admin_routes)
        })
        .workers(1)
        .disable_signals();
        let bind = listener.local_addr().map_or_else(|_| state.cfg.http.admin_bind.clone(), |a| a.to_string());
        let admin = match tls.clone().filter(|_| state.cfg.http.admin_tls) {
            Some(tls) => admin.listen_rustls_0_23(listener, tls),
            None => admin.listen(listener),
        }
        .map_err(|e| anyhow::anyhow!("http.admin_bind {bind}: {e}"))?;
        let admin_addr = admin.addrs().first().copied();
        let admin = admin.run();
        let h = admin.handle();
        tokio::task::spawn_local(admin);
        (Some(h), admin_addr)
    } else {
        (None, Some(addr))
    };
    let tls = tls.is_some();
    tracing::info!(%addr, tls, ?admin_addr, ?roles, bus = state.bus.name(), data_dir = %state.cfg.storage.data_dir.display(), "netqoe listening");
    Ok(RunningApp { addr, admin_addr, state, pipeline, diagnoser, server: handle, admin, server_task, global })
}

impl RunningApp {
    /// Applies a reloaded configuration's probes (tokens, revocations, labels) and query tokens
    /// without a restart; other sections need one. Returns the number of probes.
    pub async fn reload(&self, cfg: &Config) -> usize {
        let live = crate::http::Live { tokens: TokenBook::from_config(cfg), probes: cfg.probes.clone() };
        if let Ok(mut l) = self.state.live.write() {
            *l = live;
        }
        let labels: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>> =
            cfg.probes.iter().map(|p| (p.id.clone(), p.labels.clone())).collect();
        if let Some(d) = &self.diagnoser {
            if let Err(error) = d.send(netqoe_actors::diagnoser::SetLabels(labels)).await {
                tracing::warn!(%error, "diagnoser unavailable; it keeps the old labels until restarted");
            }
        }
        cfg.probes.len()
    }

    pub fn url(&self, path: &str) -> String {
        let scheme = if self.state.cfg.http.tls_cert.is_empty() { "http" } else { "https" };
        format!("{scheme}://{}{}", self.addr, path)
    }

    /// Stops accepting, finishes in-flight requests, drains the pipeline.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.state.draining.store(true, Ordering::Relaxed);
        self.server.stop(true).await;
        if let Some(a) = self.admin.take() {
            a.stop(true).await;
        }
        if let Some(t) = self.server_task.take() {
            t.await??;
        }
        self.drain().await
    }

    async fn drain(&mut self) -> anyhow::Result<()> {
        if let Some((stop, tasks)) = self.global.take() {
            // messages being committed finish (and are acked); the rest stay on the broker
            stop.send_replace(true);
            for task in tasks {
                let _ = tokio::time::timeout(std::time::Duration::from_secs(30), task).await;
            }
        }
        if let Some(p) = &self.pipeline {
            // first aggregate and commit what the embedded journal already holds (batches that
            // got their 202 just before the signal may still be on their way to an aggregator)
            if let Some(left) = crate::drain::catch_up(&self.state).await.filter(|n| *n > 0) {
                tracing::warn!(rows = left, "draining: journal rows left for the next start");
            }
            tracing::info!("draining: committing open windows as partial revisions");
            p.drain().await?;
        }
        self.state.bus.close().await;
        tracing::info!("drained");
        Ok(())
    }
}
