//! The rollup writer: the one place aggregators' write sets reach the store. It bounds in-flight
//! commits (one at a time per writer, a bounded mailbox in front), times them, counts rows per
//! tier, and prunes expired data on a schedule.
//!
//! Invariant: a `Write` answers Ok only after the store committed the whole write set.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::metrics::{
    ACTOR_ERRORS, ACTOR_HANDLER_SECONDS, ACTOR_MESSAGES, ACTOR_RESTARTS, ROLLUPS_WRITTEN, STORE_ERRORS,
    STORE_IN_FLIGHT, STORE_WRITE_SECONDS,
};
use crate::store::{CommitReport, Retention, RollupStore, StoreError, WriteSet};

/// Commit one write set.
#[derive(Message)]
#[rtype(result = "Result<CommitReport, StoreError>")]
pub struct Write(pub WriteSet);

pub struct RollupWriter {
    store: Arc<dyn RollupStore>,
    retention: Retention,
    /// How often expired rows are pruned.
    prune_every: Duration,
    mailbox: usize,
    clock: crate::Clock,
}

impl RollupWriter {
    pub fn new(
        store: Arc<dyn RollupStore>,
        retention: Retention,
        prune_every: Duration,
        mailbox: usize,
        clock: crate::Clock,
    ) -> Self {
        Self { store, retention, prune_every, mailbox, clock }
    }
}

impl Actor for RollupWriter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.mailbox);
        ctx.run_interval(self.prune_every, |act, ctx| {
            let store = act.store.clone();
            let retention = act.retention;
            let now = act.clock.now_ms();
            ctx.spawn(
                async move {
                    match store.prune(now, &retention).await {
                        Ok(n) if n > 0 => tracing::info!(rows = n, "pruned expired rows"),
                        Ok(_) => {}
                        Err(error) => {
                            STORE_ERRORS.with_label_values(&["prune"]).inc();
                            tracing::warn!(%error, "prune failed");
                        }
                    }
                }
                .into_actor(act),
            );
        });
    }
}

impl Supervised for RollupWriter {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        ACTOR_RESTARTS.with_label_values(&["writer"]).inc();
    }
}

impl Handler<Write> for RollupWriter {
    type Result = AtomicResponse<Self, Result<CommitReport, StoreError>>;

    fn handle(&mut self, msg: Write, _ctx: &mut Context<Self>) -> Self::Result {
        ACTOR_MESSAGES.with_label_values(&["writer"]).inc();
        let store = self.store.clone();
        AtomicResponse::new(Box::pin(
            async move {
                STORE_IN_FLIGHT.inc();
                let started = Instant::now();
                let r = store.commit(msg.0).await;
                STORE_IN_FLIGHT.dec();
                STORE_WRITE_SECONDS.observe(started.elapsed().as_secs_f64());
                ACTOR_HANDLER_SECONDS.with_label_values(&["writer"]).observe(started.elapsed().as_secs_f64());
                match &r {
                    Ok(report) => {
                        for (tier, n) in &report.written {
                            ROLLUPS_WRITTEN.with_label_values(&[tier.as_str()]).inc_by(*n);
                        }
                    }
                    Err(error) => {
                        STORE_ERRORS.with_label_values(&["commit"]).inc();
                        ACTOR_ERRORS.with_label_values(&["writer"]).inc();
                        tracing::warn!(%error, "store commit failed");
                    }
                }
                r
            }
            .into_actor(self),
        ))
    }
}
