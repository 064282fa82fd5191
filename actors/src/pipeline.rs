//! Wires the actor graph: the bus consumer, per-shard forwarders, the sharded aggregators (each on
//! its own arbiter thread), the rollup writer and the session registry; and drains it on shutdown.
//!
//! Invariant: batches of one probe always reach the same shard, in the order the bus delivers
//! them, and every hop uses `send().await` on a bounded mailbox or channel, so a slow store slows
//! the consumer down instead of growing queues.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::mpsc;

use crate::aggregator::{Aggregator, AggregatorConfig, Drain, Process, Reset};
use crate::bus::{BusError, EventBus, Incoming};
use crate::metrics::tracked_send;
use crate::session::{SaveAll, SessionConfig, SessionRegistry};
use crate::store::{Retention, RollupStore};
use crate::writer::RollupWriter;

#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// Aggregator shards (probes are hashed onto them).
    pub shards: usize,
    /// Unacked deliveries the bus may hand out at once.
    pub prefetch: usize,
    pub aggregator: AggregatorConfig,
    pub sessions: SessionConfig,
    pub retention: Retention,
    pub prune_every: Duration,
    pub writer_mailbox: usize,
    /// Run the diagnosis actor on the committed windows (None: no diagnosis in this process).
    pub diagnosis: Option<crate::diagnoser::DiagnoserConfig>,
    /// The time every actor of the pipeline reads (system; manual in eval and tests).
    pub clock: crate::Clock,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            shards: 2,
            prefetch: 256,
            aggregator: AggregatorConfig::default(),
            sessions: SessionConfig::default(),
            retention: Retention::default(),
            prune_every: Duration::from_secs(600),
            writer_mailbox: 16,
            diagnosis: None,
            clock: crate::Clock::system(),
        }
    }
}

/// Stable shard of a probe (FNV-1a), identical in every process.
pub fn shard_of(probe: &str, shards: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in probe.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % shards.max(1) as u64) as usize
}

/// A running pipeline.
pub struct Pipeline {
    pub aggregators: Vec<Addr<Aggregator>>,
    pub sessions: Addr<SessionRegistry>,
    pub writer: Addr<RollupWriter>,
    pub diagnoser: Option<Addr<crate::diagnoser::DiagnoserActor>>,
    /// The bus consumer task (taken when the pipeline drains).
    consumer: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    arbiters: Vec<Arbiter>,
    /// Tells the aggregators to stop waiting for the store.
    stopping: Arc<std::sync::atomic::AtomicBool>,
}

impl Pipeline {
    /// Starts the actors and begins consuming. Must be called inside an actix system.
    pub async fn start(
        bus: Arc<dyn EventBus>,
        store: Arc<dyn RollupStore>,
        cfg: PipelineConfig,
    ) -> Result<Self, BusError> {
        let shards = cfg.shards.max(1);
        let agg_cfg = cfg.aggregator.clone();
        let writer_arbiter = Arbiter::new();
        let (s, r, every, mb, clock) =
            (store.clone(), cfg.retention, cfg.prune_every, cfg.writer_mailbox, cfg.clock.clone());
        let writer = Supervisor::start_in_arbiter(&writer_arbiter.handle(), move |_| {
            RollupWriter::new(s, r, every, mb, clock.clone())
        });
        let (s, c) = (store.clone(), cfg.sessions.clone());
        let sessions = Supervisor::start(move |_| SessionRegistry::new(s, c));
        let mut arbiters = vec![writer_arbiter];
        let mut aggregators = Vec::with_capacity(shards);
        let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
        for shard in 0..shards {
            let arbiter = Arbiter::new();
            let (s, w, se, c, st, clock) =
                (store.clone(), writer.clone(), sessions.clone(), agg_cfg.clone(), stopping.clone(), cfg.clock.clone());
            aggregators.push(Supervisor::start_in_arbiter(&arbiter.handle(), move |_| {
                Aggregator::new(shard, c, s, w, se, st.clone(), clock.clone())
            }));
            arbiters.push(arbiter);
        }
        let mut rx = bus.consume(cfg.prefetch).await?;
        let mut lanes = Vec::with_capacity(shards);
        for (shard, agg) in aggregators.iter().enumerate() {
            let (tx, mut lane_rx) = mpsc::channel(cfg.aggregator.mailbox.max(1));
            let agg = agg.clone();
            actix::spawn(async move {
                while let Some(d) = lane_rx.recv().await {
                    match tracked_send(&agg, "aggregator", Process(d)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(error)) => {
                            tracing::warn!(%error, shard, "batch not applied; it will be redelivered")
                        }
                        Err(error) => {
                            tracing::warn!(%error, shard, "aggregator unavailable; batch will be redelivered")
                        }
                    }
                }
            });
            lanes.push(tx);
        }
        let aggs = aggregators.clone();
        let consumer = actix::spawn(async move {
            while let Some(incoming) = rx.recv().await {
                match incoming {
                    Incoming::Deliver(d) => {
                        let shard = shard_of(&d.batch.probe, lanes.len());
                        if lanes[shard].send(d).await.is_err() {
                            break;
                        }
                    }
                    Incoming::Reset { epoch } => {
                        // Batches already queued in lanes belong to the old consumption; the
                        // aggregators drop them with their state (their acks would fail anyway).
                        tracing::info!("bus consumption restarted; aggregator state is rebuilt from the store");
                        for a in &aggs {
                            if let Err(error) = a.send(Reset { epoch }).await {
                                tracing::warn!(%error, "aggregator unavailable for reset");
                            }
                        }
                    }
                }
            }
        });
        let diagnoser = cfg.diagnosis.clone().map(|dc| {
            let (s, clock) = (store.clone(), cfg.clock.clone());
            Supervisor::start(move |_| crate::diagnoser::DiagnoserActor::new(s, dc, clock))
        });
        Ok(Self {
            aggregators,
            sessions,
            writer,
            diagnoser,
            consumer: std::sync::Mutex::new(Some(consumer)),
            arbiters,
            stopping,
        })
    }

    /// Stops consuming and commits every open window as a partial revision, then saves sessions.
    /// Idempotent: a second drain finds nothing left to commit.
    pub async fn drain(&self) -> Result<(), crate::aggregator::PipelineError> {
        self.stop_consuming();
        self.commit_now().await?;
        self.sessions.send(SaveAll).await??;
        Ok(())
    }

    /// Commits every aggregator's pending work now, without stopping anything: a drain that
    /// waits for the consumer to catch up (the embedded journal acked to the end) must not also
    /// wait for the next periodic flush, which may be a minute away.
    pub async fn commit_now(&self) -> Result<(), crate::aggregator::PipelineError> {
        for a in &self.aggregators {
            a.send(Drain).await??;
        }
        Ok(())
    }

    fn stop_consuming(&self) {
        self.stopping.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(c) = self.consumer.lock().ok().and_then(|mut c| c.take()) {
            c.abort();
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.stop_consuming();
        for a in &self.arbiters {
            a.stop();
        }
    }
}
