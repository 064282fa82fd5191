//! The diagnosis actor over the in-memory store: a restarted diagnoser (a new process, or the
//! supervisor's restart) replays the stored windows and upserts the same incident, never a copy.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use actix::prelude::*;
use common::*;
use netqoe_actors::diagnoser::{DiagnoserActor, DiagnoserConfig};
use netqoe_actors::store::{IncidentQuery, RollupStore, WriteSet};
use netqoe_domain::diagnosis::{IncidentState, Scope};
use netqoe_domain::{Metric, Rollup, Tier, WindowAgg, WindowKey};

/// A certificate with 6 days left, seen by one probe in each of the last 12 minutes.
async fn expiring_certificate(store: &TestStore) -> i64 {
    let now = netqoe_actors::now_ms();
    let first = (now / 60_000 - 14) * 60_000;
    let mut rollups = Vec::new();
    for m in 0..12 {
        let e = netqoe_domain::Event {
            cert_days: Some(6.0),
            tls_ms: Some(3.0),
            ..netqoe_domain::Event::new(format!("c{m}"), m, first + m as i64 * 60_000, "shop", netqoe_domain::Kind::Tls)
        };
        let c = e.contributions().into_iter().find(|c| c.metric == Metric::CertDays).unwrap();
        let mut agg = WindowAgg::default();
        agg.add(&c);
        let key = WindowKey {
            probe: "p1".into(),
            target: "shop".into(),
            metric: Metric::CertDays,
            tier: Tier::M1,
            start_ms: Tier::M1.bin_start(e.ts_ms),
        };
        rollups.push(Rollup { key, agg, applied: Default::default(), revision: 1, closed: true });
    }
    store.inner.commit(WriteSet { rollups, ..Default::default() }).await.unwrap();
    first
}

fn quick() -> DiagnoserConfig {
    DiagnoserConfig {
        tick: Duration::from_millis(20),
        settle_ms: 0,
        warmup_windows: 20,
        max_per_tick: 100,
        ..Default::default()
    }
}

#[actix_rt::test]
async fn a_restarted_diagnoser_upserts_the_same_incident() {
    let store = TestStore::new();
    let first = expiring_certificate(&store).await;
    let all =
        IncidentQuery { state: None, from_ms: first - 3_600_000, to_ms: netqoe_actors::now_ms() + 60_000, limit: 10 };

    let s: std::sync::Arc<dyn RollupStore> = store.clone();
    let d1 = DiagnoserActor::new(s.clone(), quick()).start();
    store.until("the first diagnoser stores an incident", |s| s.incident_saves.load(Ordering::SeqCst) >= 1).await;
    let before = store.inner.list_incidents(&all).await.unwrap();
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!((before[0].scope, before[0].state), (Scope::Certificate, IncidentState::Open));
    drop(d1); // the actor stops with its last address

    // a new process: the same windows replayed, the same incident stored again
    let saves = store.incident_saves.load(Ordering::SeqCst);
    let _d2 = DiagnoserActor::new(s, quick()).start();
    store.until("the second diagnoser stores its judgement", |s| s.incident_saves.load(Ordering::SeqCst) > saves).await;
    let after = store.inner.list_incidents(&all).await.unwrap();
    assert_eq!(after.len(), 1, "a replay must not open a second incident: {after:?}");
    assert_eq!(after[0].id, before[0].id);
    assert_eq!(after[0].opened_ms, before[0].opened_ms);
}
