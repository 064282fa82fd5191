//! Probe sessions: one supervised actor per probe holding its `SessionState` (last seen, sequence
//! gaps, duplicates, late drops, clock skew), created on first observation by the registry and
//! passivated (saved, stopped) when idle; the registry lists them for `GET /v1/probes`.
//!
//! Invariant: a session actor's state is saved to the store periodically and on passivation;
//! after a restart it is reloaded from there before any message is handled.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use netqoe_domain::{BatchObservation, SessionState};

use crate::metrics::{
    ACTOR_ERRORS, ACTOR_HANDLER_SECONDS, ACTOR_MESSAGES, ACTOR_RESTARTS, PROBES_CLOCK_AHEAD, SESSIONS_ACTIVE,
};
use crate::store::{RollupStore, StoreError};

/// A probe whose events arrive this much before their own timestamps has a clock that runs ahead
/// (`netqoe_probes_clock_ahead`, alert NetqoeProbeClockAhead).
pub const CLOCK_AHEAD_MS: f64 = 10_000.0;

#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// A session idle this long (receiver clock) is saved and its actor stopped.
    pub passivate_after: Duration,
    /// How often dirty sessions are saved.
    pub save_every: Duration,
    pub mailbox: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self { passivate_after: Duration::from_secs(600), save_every: Duration::from_secs(5), mailbox: 256 }
    }
}

/// A batch of this probe was committed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Observe {
    pub probe: String,
    pub obs: BatchObservation,
}

/// Current state of every session, live or passivated.
#[derive(Message)]
#[rtype(result = "Result<Vec<SessionState>, StoreError>")]
pub struct ListSessions;

/// Makes the named probe's session actor fail (its handler returns an error and the actor stops,
/// so its supervisor restarts it). For fault-injection tests and chaos drills.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct InjectFault {
    pub probe: String,
}

/// Saves every live session (shutdown).
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct SaveAll;

#[derive(Message)]
#[rtype(result = "()")]
struct Apply(BatchObservation);

#[derive(Message)]
#[rtype(result = "SessionState")]
struct Snapshot;

#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
struct Save;

#[derive(Message)]
#[rtype(result = "Result<(), &'static str>")]
struct Fail;

#[derive(Message)]
#[rtype(result = "()")]
struct Passivate;

/// One probe's session.
pub struct SessionActor {
    probe: String,
    state: SessionState,
    dirty: bool,
    /// Counted in `PROBES_CLOCK_AHEAD` (kept in step with the state; undone when the actor stops).
    ahead: bool,
    store: Arc<dyn RollupStore>,
    cfg: SessionConfig,
}

impl SessionActor {
    fn new(probe: String, store: Arc<dyn RollupStore>, cfg: SessionConfig) -> Self {
        Self { state: SessionState::new(probe.clone()), probe, dirty: false, ahead: false, store, cfg }
    }

    fn count_clock(&mut self) {
        let ahead = self.state.clock_ahead(CLOCK_AHEAD_MS);
        if ahead != self.ahead {
            if ahead {
                PROBES_CLOCK_AHEAD.inc();
            } else {
                PROBES_CLOCK_AHEAD.dec();
            }
            self.ahead = ahead;
        }
    }

    fn save_fut(&mut self) -> ResponseActFuture<Self, Result<(), StoreError>> {
        if !self.dirty {
            return Box::pin(actix::fut::ready(Ok(())));
        }
        let store = self.store.clone();
        let snapshot = self.state.clone();
        self.dirty = false;
        Box::pin(async move { store.save_sessions(&[snapshot]).await }.into_actor(self).map(|r, act, _| {
            if let Err(error) = &r {
                act.dirty = true;
                tracing::warn!(%error, probe = %act.probe, "session save failed");
            }
            r
        }))
    }
}

impl Actor for SessionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        SESSIONS_ACTIVE.inc();
        ctx.set_mailbox_capacity(self.cfg.mailbox);
        // Reload the persisted state before handling anything (first start and every restart).
        let store = self.store.clone();
        let probe = self.probe.clone();
        ctx.wait(async move { store.load_session(&probe).await }.into_actor(self).map(|r, act, _| match r {
            Ok(Some(saved)) => {
                // Observations handled before a failed load are kept on top of the saved state.
                let mut s = saved;
                merge_counters(&mut s, &act.state);
                act.state = s;
                act.count_clock();
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, probe = %act.probe, "session load failed; starting empty"),
        }));
        ctx.run_interval(self.cfg.save_every, |act, ctx| {
            ctx.wait(act.save_fut().map(|_, _, _| ()));
        });
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        SESSIONS_ACTIVE.dec();
        if std::mem::take(&mut self.ahead) {
            PROBES_CLOCK_AHEAD.dec();
        }
    }
}

/// Adds `extra`'s counters to `base` (used when a load completes after observations arrived).
fn merge_counters(base: &mut SessionState, extra: &SessionState) {
    if extra.batches == 0 {
        return;
    }
    base.events += extra.events;
    base.batches += extra.batches;
    base.duplicates += extra.duplicates;
    base.late_dropped += extra.late_dropped;
    base.last_seen_ms = base.last_seen_ms.max(extra.last_seen_ms);
    base.last_event_ms = base.last_event_ms.max(extra.last_event_ms);
    base.first_seen_ms = base.first_seen_ms.or(extra.first_seen_ms);
    base.min_seq = match (base.min_seq, extra.min_seq) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    base.max_seq = base.max_seq.max(extra.max_seq);
    base.clock_skew_ms = extra.clock_skew_ms.or(base.clock_skew_ms);
}

impl Supervised for SessionActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        ACTOR_RESTARTS.with_label_values(&["session"]).inc();
        tracing::warn!(probe = %self.probe, "session actor restarting; state reloaded from the store");
        self.state = SessionState::new(self.probe.clone());
        self.dirty = false;
    }
}

impl Handler<Apply> for SessionActor {
    type Result = ();
    fn handle(&mut self, msg: Apply, _ctx: &mut Context<Self>) {
        ACTOR_MESSAGES.with_label_values(&["session"]).inc();
        let started = std::time::Instant::now();
        self.state.observe(&msg.0);
        self.dirty = true;
        self.count_clock();
        ACTOR_HANDLER_SECONDS.with_label_values(&["session"]).observe(started.elapsed().as_secs_f64());
    }
}

impl Handler<Snapshot> for SessionActor {
    type Result = MessageResult<Snapshot>;
    fn handle(&mut self, _: Snapshot, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.state.clone())
    }
}

impl Handler<Save> for SessionActor {
    type Result = AtomicResponse<Self, Result<(), StoreError>>;
    fn handle(&mut self, _: Save, _ctx: &mut Context<Self>) -> Self::Result {
        AtomicResponse::new(self.save_fut())
    }
}

impl Handler<Fail> for SessionActor {
    type Result = Result<(), &'static str>;
    fn handle(&mut self, _: Fail, ctx: &mut Context<Self>) -> Self::Result {
        ACTOR_ERRORS.with_label_values(&["session"]).inc();
        tracing::warn!(probe = %self.probe, "injected fault: session actor stops");
        ctx.stop();
        Err("injected fault")
    }
}

impl Handler<Passivate> for SessionActor {
    type Result = AtomicResponse<Self, ()>;
    fn handle(&mut self, _: Passivate, _ctx: &mut Context<Self>) -> Self::Result {
        AtomicResponse::new(Box::pin(self.save_fut().map(|_, _, ctx: &mut Context<Self>| ctx.stop())))
    }
}

struct Entry {
    addr: Addr<SessionActor>,
    last_activity: std::time::Instant,
}

/// Creates, finds, lists and passivates session actors.
pub struct SessionRegistry {
    store: Arc<dyn RollupStore>,
    cfg: SessionConfig,
    live: HashMap<String, Entry>,
}

impl SessionRegistry {
    pub fn new(store: Arc<dyn RollupStore>, cfg: SessionConfig) -> Self {
        Self { store, cfg, live: HashMap::new() }
    }

    fn session(&mut self, probe: &str) -> Addr<SessionActor> {
        if let Some(e) = self.live.get_mut(probe) {
            e.last_activity = std::time::Instant::now();
            return e.addr.clone();
        }
        let (store, cfg, p) = (self.store.clone(), self.cfg.clone(), probe.to_string());
        let addr = Supervisor::start(move |_| SessionActor::new(p, store, cfg));
        self.live.insert(probe.to_string(), Entry { addr: addr.clone(), last_activity: std::time::Instant::now() });
        addr
    }
}

impl Actor for SessionRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.cfg.mailbox);
        let every = (self.cfg.passivate_after / 4).max(Duration::from_millis(50));
        ctx.run_interval(every, |act, _ctx| {
            let idle = act.cfg.passivate_after;
            let expired: Vec<String> =
                act.live.iter().filter(|(_, e)| e.last_activity.elapsed() > idle).map(|(p, _)| p.clone()).collect();
            for probe in expired {
                if let Some(e) = act.live.remove(&probe) {
                    tracing::debug!(%probe, "session passivated");
                    // The registry held the last address: once this message is handled and the
                    // actor stops, its supervisor does not restart it.
                    e.addr.do_send(Passivate);
                }
            }
        });
    }
}

impl Supervised for SessionRegistry {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        ACTOR_RESTARTS.with_label_values(&["session_registry"]).inc();
    }
}

impl Handler<Observe> for SessionRegistry {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, msg: Observe, _ctx: &mut Context<Self>) -> Self::Result {
        ACTOR_MESSAGES.with_label_values(&["session_registry"]).inc();
        let addr = self.session(&msg.probe);
        Box::pin(async move {
            if let Err(error) = addr.send(Apply(msg.obs)).await {
                tracing::warn!(%error, probe = %msg.probe, "session unavailable; observation lost");
            }
        })
    }
}

impl Handler<InjectFault> for SessionRegistry {
    type Result = ResponseFuture<bool>;
    fn handle(&mut self, msg: InjectFault, _ctx: &mut Context<Self>) -> Self::Result {
        let addr = self.live.get(&msg.probe).map(|e| e.addr.clone());
        Box::pin(async move {
            match addr {
                Some(a) => matches!(a.send(Fail).await, Ok(Err(_))),
                None => false,
            }
        })
    }
}

impl Handler<SaveAll> for SessionRegistry {
    type Result = ResponseFuture<Result<(), StoreError>>;
    fn handle(&mut self, _: SaveAll, _ctx: &mut Context<Self>) -> Self::Result {
        let addrs: Vec<_> = self.live.values().map(|e| e.addr.clone()).collect();
        Box::pin(async move {
            for a in addrs {
                match a.send(Save).await {
                    Ok(r) => r?,
                    Err(e) => return Err(StoreError::failed(format!("session actor unavailable: {e}"))),
                }
            }
            Ok(())
        })
    }
}

impl Handler<ListSessions> for SessionRegistry {
    type Result = ResponseFuture<Result<Vec<SessionState>, StoreError>>;
    fn handle(&mut self, _: ListSessions, _ctx: &mut Context<Self>) -> Self::Result {
        let addrs: Vec<_> = self.live.iter().map(|(p, e)| (p.clone(), e.addr.clone())).collect();
        let store = self.store.clone();
        Box::pin(async move {
            let mut by_probe: std::collections::BTreeMap<String, SessionState> =
                store.list_sessions().await?.into_iter().map(|s| (s.probe.clone(), s)).collect();
            for (probe, addr) in addrs {
                if let Ok(s) = addr.send(Snapshot).await {
                    by_probe.insert(probe, s);
                }
            }
            Ok(by_probe.into_values().collect())
        })
    }
}
