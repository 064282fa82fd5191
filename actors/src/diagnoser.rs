//! The diagnosis actor: every `tick` it reads the 1m windows of the whole fleet that have
//! finished (window end + `settle` before the wall clock), feeds them in order to the pure
//! `Diagnoser`, and stores the incidents that opened, changed or resolved.
//!
//! Invariants: windows are judged in event-time order, each once per actor life; on start (and
//! on restart, where the state is rebuilt) the last `warmup_windows` windows are replayed from the
//! store so baselines are learned before anything new is judged; incident ids are deterministic
//! (start and subject), so a replay after a restart upserts the same incident rather than a copy.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use netqoe_domain::diagnosis::{
    Diagnoser, DiagnosisConfig, FleetWindow, Incident, IncidentState, PairWindow, Scope, Signal, Value,
};
use netqoe_domain::{Metric, Rollup, Tier};

use crate::metrics::{
    ACTOR_ERRORS, ACTOR_MESSAGES, ACTOR_RESTARTS, INCIDENTS_OPEN, INCIDENTS_OPENED, INCIDENTS_RESOLVED,
    NOTIFICATIONS_DROPPED,
};
use crate::pair_gauges::{MatrixInput, PairGauges};
use crate::store::{RollupQuery, RollupStore, StoreError};
use crate::target_gauges::{self, TargetGauges};

/// Tunables of the diagnosis actor.
#[derive(Clone, Debug)]
pub struct DiagnoserConfig {
    pub thresholds: DiagnosisConfig,
    /// Probe id → labels (`region`, `asn`, `resolver`, …).
    pub labels: BTreeMap<String, BTreeMap<String, String>>,
    pub tick: Duration,
    /// A window is judged this long after its end (late batches still arriving).
    pub settle_ms: i64,
    /// Windows replayed at start to learn baselines.
    pub warmup_windows: i64,
    /// Most windows judged per tick (catch-up is spread out).
    pub max_per_tick: i64,
    /// Where changed incidents are also sent (webhooks), bounded: when it is full the
    /// notification is dropped and counted (the incident itself is stored regardless).
    pub sink: Option<tokio::sync::mpsc::Sender<Incident>>,
    /// Targets whose fleet QoE is exported as `netqoe_target_*` gauges (0: none); see
    /// [`crate::target_gauges`].
    pub max_target_series: usize,
    /// (probe, target) pairs whose matrix state is exported as `netqoe_pair_state` (0: none);
    /// see [`crate::pair_gauges`].
    pub max_pair_series: usize,
    /// The probe label whose value is the `group` label of `netqoe_pair_state` ("" for none).
    pub pair_group_label: String,
}

impl Default for DiagnoserConfig {
    fn default() -> Self {
        Self {
            thresholds: DiagnosisConfig::default(),
            labels: BTreeMap::new(),
            tick: Duration::from_secs(10),
            settle_ms: 30_000,
            warmup_windows: 60,
            max_per_tick: 30,
            sink: None,
            max_target_series: 100,
            max_pair_series: 500,
            pair_group_label: "region".into(),
        }
    }
}

/// What one (probe, target) pair's 1m rollups show, as diagnosis signals.
pub fn pair_window(rollups: &[&Rollup]) -> PairWindow {
    let mut pw = PairWindow::default();
    for r in rollups {
        let a = &r.agg;
        let p50 = || a.sketch.quantile(0.5);
        let failures = || Value::Failures { failed: a.errors.values().sum(), attempts: a.events };
        let mut level = |s: Signal| {
            if let Some(v) = p50() {
                pw.values.insert(s, Value::Level(v));
            }
        };
        match r.key.metric {
            Metric::Rtt => {
                if a.count >= 3 {
                    level(Signal::Rtt);
                }
                if a.jitter_n > 0 {
                    pw.values.insert(Signal::Jitter, Value::Level(a.jitter_sum / a.jitter_n as f64));
                }
                if a.sent > 0 {
                    pw.values.insert(
                        Signal::Loss,
                        Value::Failures { failed: a.sent.saturating_sub(a.received), attempts: a.sent },
                    );
                }
            }
            Metric::Dns => {
                level(Signal::Dns);
                pw.values.insert(Signal::DnsFail, failures());
            }
            Metric::Connect => {
                level(Signal::Connect);
                pw.values.insert(Signal::ConnectFail, failures());
            }
            Metric::Tls => level(Signal::Tls),
            Metric::Ttfb => level(Signal::Ttfb),
            // the certificate closest to expiry (tls and http rollups of one target both carry it)
            Metric::CertDays => {
                if let Some(d) = a.min {
                    pw.cert_days = Some(pw.cert_days.map_or(d, |x: f64| x.min(d)));
                }
            }
            // jitter is judged from the RTT windows' RFC 3550 estimate; total time follows ttfb
            Metric::Jitter | Metric::Total => {}
        }
    }
    pw
}

/// The whole fleet's 1m window starting at `start_ms`, read from the store.
pub async fn fleet_window(store: &dyn RollupStore, start_ms: i64) -> Result<FleetWindow, StoreError> {
    Ok(fleet_window_of(start_ms, &fleet_rows(store, start_ms).await?))
}

/// Every 1m rollup of the window starting at `start_ms`.
pub async fn fleet_rows(store: &dyn RollupStore, start_ms: i64) -> Result<Vec<Rollup>, StoreError> {
    let q = RollupQuery {
        probe: None,
        target: None,
        metric: None,
        tier: Tier::M1,
        from_ms: start_ms,
        to_ms: start_ms + 60_000,
        limit: 1_000_000,
        after: None,
    };
    store.query(&q).await
}

/// The 1h rollups of the hour starting at `hour_ms` and the hour before (the matrix's baselines).
pub async fn hourly_rows(store: &dyn RollupStore, hour_ms: i64) -> Result<Vec<Rollup>, StoreError> {
    let q = RollupQuery {
        probe: None,
        target: None,
        metric: None,
        tier: Tier::H1,
        from_ms: hour_ms - 3_600_000,
        to_ms: hour_ms + 3_600_000,
        limit: 1_000_000,
        after: None,
    };
    store.query(&q).await
}

/// What the newest window of a tick gives the gauges.
#[derive(Default)]
struct Newest {
    targets: BTreeMap<String, target_gauges::TargetQoe>,
    rows: Vec<Rollup>,
    hourly: Vec<Rollup>,
    hour_ms: i64,
}

/// The diagnosis's view of one window's rollups: each (probe, target) pair's signals.
pub fn fleet_window_of(start_ms: i64, rows: &[Rollup]) -> FleetWindow {
    let mut by_pair: BTreeMap<(String, String), Vec<&Rollup>> = BTreeMap::new();
    for r in rows {
        by_pair.entry((r.key.probe.clone(), r.key.target.clone())).or_default().push(r);
    }
    let pairs = by_pair.into_iter().map(|(k, v)| (k, pair_window(&v))).collect();
    FleetWindow { start_ms, end_ms: start_ms + 60_000, pairs }
}

pub struct DiagnoserActor {
    store: Arc<dyn RollupStore>,
    cfg: DiagnoserConfig,
    diag: Diagnoser,
    /// Start of the next window to judge (None: not started).
    next_ms: Option<i64>,
    busy: bool,
    targets: TargetGauges,
    pairs: PairGauges,
    clock: crate::Clock,
}

impl DiagnoserActor {
    pub fn new(store: Arc<dyn RollupStore>, cfg: DiagnoserConfig, clock: crate::Clock) -> Self {
        let diag = Diagnoser::new(cfg.thresholds.clone(), cfg.labels.clone());
        let targets = TargetGauges::new(cfg.max_target_series);
        let pairs = PairGauges::new(cfg.max_pair_series, cfg.pair_group_label.clone());
        Self { store, cfg, diag, next_ms: None, busy: false, targets, pairs, clock }
    }

    /// The global tier (federation): a region's probe (`region~probe`) carries its region as the
    /// `region` label, so a region is a label group the localisation can blame.
    fn label_regions(&mut self, windows: &[FleetWindow]) {
        let mut grew = false;
        for (probe, _) in windows.iter().flat_map(|w| w.pairs.keys()) {
            if let Some((region, _)) = netqoe_domain::federation::split_global(probe) {
                if !self.cfg.labels.contains_key(probe) {
                    let labels = BTreeMap::from([("region".to_string(), region.to_string())]);
                    self.cfg.labels.insert(probe.clone(), labels);
                    grew = true;
                }
            }
        }
        if grew {
            self.diag.set_labels(self.cfg.labels.clone());
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        let now = self.clock.now_ms();
        let ready_until = now - self.cfg.settle_ms; // windows ending by then are judged
        let next = *self.next_ms.get_or_insert_with(|| (now / 60_000 - self.cfg.warmup_windows - 1) * 60_000);
        let mut starts = Vec::new();
        let mut m = next;
        while m + 60_000 <= ready_until && (starts.len() as i64) < self.cfg.max_per_tick {
            starts.push(m);
            m += 60_000;
        }
        if starts.is_empty() {
            return;
        }
        self.busy = true;
        let store = self.store.clone();
        let with_pairs = self.cfg.max_pair_series > 0;
        let fut = async move {
            let mut windows = Vec::with_capacity(starts.len());
            let mut newest = Newest::default();
            let last = starts.last().copied();
            for s in starts {
                let rows = fleet_rows(store.as_ref(), s).await?;
                windows.push(fleet_window_of(s, &rows));
                if Some(s) == last {
                    newest.targets = target_gauges::by_target(&rows);
                    if with_pairs {
                        newest.hour_ms = s - s.rem_euclid(3_600_000);
                        newest.hourly = hourly_rows(store.as_ref(), newest.hour_ms).await?;
                        newest.rows = rows;
                    }
                }
            }
            Ok::<_, StoreError>((windows, newest))
        };
        ctx.wait(fut.into_actor(self).then(move |res, act, _ctx| {
            // every change in order for the sink (a webhook must see `opened` before `updated`,
            // also when one tick judges several windows); the newest version of each to store
            let mut notify: Vec<Incident> = Vec::new();
            let mut changed: Vec<Incident> = Vec::new();
            match res {
                Ok((windows, newest)) => {
                    if let Some(w) = windows.last().filter(|_| act.cfg.max_target_series > 0) {
                        act.targets.update(w.end_ms, &newest.targets);
                    }
                    act.label_regions(&windows);
                    for w in &windows {
                        ACTOR_MESSAGES.with_label_values(&["diagnoser"]).inc();
                        for i in act.diag.window(w) {
                            if i.state == IncidentState::Open && i.updated_ms == i.opened_ms {
                                INCIDENTS_OPENED.with_label_values(&[i.scope.name()]).inc();
                                tracing::warn!(id = %i.id, scope = i.scope.name(), subject = ?i.subject, metrics = ?i.metrics, "incident opened");
                            } else if i.state == IncidentState::Resolved {
                                INCIDENTS_RESOLVED.with_label_values(&[i.scope.name()]).inc();
                                tracing::info!(id = %i.id, "incident resolved");
                            }
                            changed.retain(|c| c.id != i.id);
                            notify.push(i.clone());
                            changed.push(i);
                        }
                        act.next_ms = Some(w.start_ms + 60_000);
                    }
                    let open = act.diag.open_incidents();
                    if with_pairs && !windows.is_empty() {
                        act.pairs.update(&MatrixInput {
                            rows: &newest.rows,
                            hourly: &newest.hourly,
                            hour_ms: newest.hour_ms,
                            open: &open,
                            labels: &act.cfg.labels,
                        });
                    }
                    for scope in Scope::ALL {
                        let n = open.iter().filter(|i| i.scope == scope).count();
                        INCIDENTS_OPEN.with_label_values(&[scope.name()]).set(n as i64);
                    }
                }
                Err(error) => {
                    ACTOR_ERRORS.with_label_values(&["diagnoser"]).inc();
                    tracing::warn!(%error, "diagnosis could not read windows; retrying next tick");
                }
            }
            if let Some(sink) = &act.cfg.sink {
                for i in notify {
                    if let Err(e) = sink.try_send(i) {
                        let i = e.into_inner();
                        NOTIFICATIONS_DROPPED.inc();
                        tracing::warn!(id = %i.id, "incident notification queue full; notification dropped");
                    }
                }
            }
            let store = act.store.clone();
            async move {
                if !changed.is_empty() {
                    if let Err(error) = store.save_incidents(&changed).await {
                        ACTOR_ERRORS.with_label_values(&["diagnoser"]).inc();
                        tracing::warn!(%error, n = changed.len(), "incidents not stored");
                    }
                }
            }
            .into_actor(act)
            .map(|_, act, _| act.busy = false)
        }));
    }
}

impl Actor for DiagnoserActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(16);
        ctx.run_interval(self.cfg.tick, |act, ctx| act.tick(ctx));
        // first pass at once (warm-up)
        ctx.run_later(Duration::from_millis(10), |act, ctx| act.tick(ctx));
    }
}

/// New probe labels (a configuration reload).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetLabels(pub BTreeMap<String, BTreeMap<String, String>>);

impl Handler<SetLabels> for DiagnoserActor {
    type Result = ();

    fn handle(&mut self, msg: SetLabels, _ctx: &mut Context<Self>) {
        ACTOR_MESSAGES.with_label_values(&["diagnoser"]).inc();
        self.cfg.labels = msg.0.clone();
        self.diag.set_labels(msg.0);
    }
}

impl Supervised for DiagnoserActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        ACTOR_RESTARTS.with_label_values(&["diagnoser"]).inc();
        tracing::warn!("diagnoser restarting; baselines are relearned from the stored windows");
        self.diag = Diagnoser::new(self.cfg.thresholds.clone(), self.cfg.labels.clone());
        self.next_ms = None;
        self.busy = false;
    }
}
