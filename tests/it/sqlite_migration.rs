//! Store files of older schema versions open, are migrated in place to the current one (4), and
//! keep their rollups, event sets and ingest dedup records.

use crate::common;

use netqoe_actors::store::RollupStore;
use netqoe_domain::{Metric, Tier, WindowKey};

#[actix_rt::test]
async fn a_version_1_store_is_migrated_in_place() {
    let dir = tempfile::tempdir().unwrap();
    {
        let c = rusqlite::Connection::open(dir.path().join("netqoe.db")).unwrap();
        c.execute_batch(
            "CREATE TABLE schema_version (version INTEGER NOT NULL);
             INSERT INTO schema_version (version) VALUES (1);
             CREATE TABLE rollups (tier TEXT NOT NULL, probe TEXT NOT NULL, target TEXT NOT NULL, metric TEXT NOT NULL,
               start_ms INTEGER NOT NULL, revision INTEGER NOT NULL, closed INTEGER NOT NULL, events INTEGER NOT NULL,
               count INTEGER NOT NULL, min REAL, max REAL, sum REAL NOT NULL, sent INTEGER NOT NULL, received INTEGER NOT NULL,
               jitter_sum REAL NOT NULL, jitter_n INTEGER NOT NULL, errors TEXT NOT NULL, sketch BLOB NOT NULL,
               updated_ms INTEGER NOT NULL, PRIMARY KEY (tier, probe, target, metric, start_ms)) WITHOUT ROWID;
             INSERT INTO rollups VALUES ('1m', 'p', 't', 'rtt', 60000, 3, 0, 1, 0, NULL, NULL, 0.0, 0, 0, 0.0, 0, '{}', x'01000000', 0);
             CREATE TABLE watermarks (probe TEXT PRIMARY KEY, max_event_ms INTEGER NOT NULL) WITHOUT ROWID;
             CREATE TABLE applied_events (probe TEXT NOT NULL, event_id TEXT NOT NULL, ts_ms INTEGER NOT NULL,
               PRIMARY KEY (probe, event_id)) WITHOUT ROWID;",
        )
        .unwrap();
    }
    let store = netqoe::sqlite::Sqlite::open(dir.path()).expect("a version-1 file opens");
    let key =
        WindowKey { probe: "p".into(), target: "t".into(), metric: Metric::Rtt, tier: Tier::M1, start_ms: 60_000 };
    let got = store.load_windows(std::slice::from_ref(&key)).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].revision, 3);
    assert!(got[0].applied.is_empty());
    let c = rusqlite::Connection::open(dir.path().join("netqoe.db")).unwrap();
    let v: i64 = c.query_row("SELECT version FROM schema_version", [], |r| r.get(0)).unwrap();
    assert_eq!(v, 4);
    let gone: i64 =
        c.query_row("SELECT COUNT(*) FROM sqlite_master WHERE name = 'applied_events'", [], |r| r.get(0)).unwrap();
    assert_eq!(gone, 0);
    drop(store);
    // and a second open is a no-op
    netqoe::sqlite::Sqlite::open(dir.path()).expect("reopens");
}

#[actix_rt::test]
async fn a_version_2_store_keeps_its_event_sets_and_dedup_records() {
    use netqoe_actors::bus::EventBus;
    use netqoe_domain::{event_hash, EventSet};
    let dir = tempfile::tempdir().unwrap();
    let now = netqoe_actors::now_ms();
    let start = now / 60_000 * 60_000;
    let set: EventSet = ["old-1", "old-2"].iter().map(|i| event_hash(i)).collect();
    {
        let c = rusqlite::Connection::open(dir.path().join("netqoe.db")).unwrap();
        c.execute_batch(
            "CREATE TABLE schema_version (version INTEGER NOT NULL);
             INSERT INTO schema_version (version) VALUES (2);
             CREATE TABLE rollups (tier TEXT NOT NULL, probe TEXT NOT NULL, target TEXT NOT NULL, metric TEXT NOT NULL,
               start_ms INTEGER NOT NULL, revision INTEGER NOT NULL, closed INTEGER NOT NULL, events INTEGER NOT NULL,
               count INTEGER NOT NULL, min REAL, max REAL, sum REAL NOT NULL, sent INTEGER NOT NULL, received INTEGER NOT NULL,
               jitter_sum REAL NOT NULL, jitter_n INTEGER NOT NULL, errors TEXT NOT NULL, sketch BLOB NOT NULL,
               applied BLOB NOT NULL DEFAULT x'', updated_ms INTEGER NOT NULL,
               PRIMARY KEY (tier, probe, target, metric, start_ms)) WITHOUT ROWID;
             CREATE TABLE seen_events (probe TEXT NOT NULL, event_id TEXT NOT NULL, ts_ms INTEGER NOT NULL,
               PRIMARY KEY (probe, event_id)) WITHOUT ROWID;
             CREATE INDEX seen_events_ts ON seen_events (ts_ms);",
        )
        .unwrap();
        c.execute(
            "INSERT INTO rollups VALUES ('1m', 'p', 't', 'rtt', ?1, 3, 0, 2, 0, NULL, NULL, 0.0, 0, 0, 0.0, 0, '{}', x'01000000', ?2, 0)",
            rusqlite::params![start, set.encode()],
        )
        .unwrap();
        c.execute("INSERT INTO seen_events VALUES ('p', 'old-1', ?1)", [now]).unwrap();
    }
    let store = netqoe::sqlite::Sqlite::open(dir.path()).expect("a version-2 file opens");
    let key = WindowKey { probe: "p".into(), target: "t".into(), metric: Metric::Rtt, tier: Tier::M1, start_ms: start };
    let got = store.load_windows(std::slice::from_ref(&key)).await.unwrap();
    assert_eq!(got[0].applied, set, "the whole set of a version-2 row is kept");
    // the event id recorded by version 2 is still recognised at ingest
    let ev = |id: &str| common::icmp_event(id, 1, now);
    let p = store.publish("p", vec![ev("old-1"), ev("new-1")], now).await.unwrap();
    assert_eq!((p.accepted, p.duplicates), (1, 1));
    let c = rusqlite::Connection::open(dir.path().join("netqoe.db")).unwrap();
    let v: i64 = c.query_row("SELECT version FROM schema_version", [], |r| r.get(0)).unwrap();
    assert_eq!(v, 4);
    let gone: i64 =
        c.query_row("SELECT COUNT(*) FROM sqlite_master WHERE name = 'seen_events'", [], |r| r.get(0)).unwrap();
    assert_eq!(gone, 0);
}

/// A version-3 file (no fleet windows) gets its fleet windows built from its rollups when opened,
/// each the merge of the stored probe windows of its tier, target, metric and start.
#[actix_rt::test]
async fn a_version_3_store_gets_its_fleet_windows_built() {
    use netqoe_actors::store::{merge_fleet, FleetAnswer, FleetQuery, RollupQuery, WriteSet};
    use netqoe_domain::event::Contribution;
    use netqoe_domain::{Rollup, WindowAgg};
    let dir = tempfile::tempdir().unwrap();
    let now = netqoe_actors::now_ms();
    let hour = Tier::H1.bin_start(now - 86_400_000);
    let mut rollups = Vec::new();
    for (i, probe) in ["a", "b", "c"].iter().enumerate() {
        for target in ["x", "y"] {
            for m in [0, 1, 59] {
                let mut agg = WindowAgg::default();
                let values = [1.0 + i as f64, 20.0 + m as f64];
                agg.add(&Contribution {
                    metric: Metric::Rtt,
                    values: &values,
                    sent: 2,
                    received: 2,
                    jitter_estimate_ms: None,
                    error: None,
                });
                let key = WindowKey {
                    probe: probe.to_string(),
                    target: target.into(),
                    metric: Metric::Rtt,
                    tier: Tier::M1,
                    start_ms: hour + m * 60_000,
                };
                rollups.push(Rollup { key, agg, applied: Default::default(), revision: 1, closed: true });
            }
        }
    }
    {
        let store = netqoe::sqlite::Sqlite::open(dir.path()).unwrap();
        let derive = rollups.iter().map(|r| r.key.clone()).collect();
        store.commit(WriteSet { rollups, derive, ..Default::default() }).await.unwrap();
    }
    {
        let c = rusqlite::Connection::open(dir.path().join("netqoe.db")).unwrap();
        c.execute_batch("DROP TABLE fleet_rollups; UPDATE schema_version SET version = 3;").unwrap();
    }
    let store = netqoe::sqlite::Sqlite::open(dir.path()).expect("a version-3 file opens");
    for tier in Tier::ALL {
        let (from_ms, to_ms) = (Tier::D1.bin_start(hour), Tier::D1.bin_start(hour) + 86_400_000);
        let rows = store
            .query(&RollupQuery {
                probe: None,
                target: None,
                metric: None,
                tier,
                from_ms,
                to_ms,
                limit: 1000,
                after: None,
            })
            .await
            .unwrap();
        let fq = FleetQuery { target: None, metric: None, tier, from_ms, to_ms, limit: 1000, max_windows: 1 };
        let FleetAnswer::Windows(got) = store.query_fleet(&fq).await.unwrap() else {
            panic!("kept fleet windows are never too wide")
        };
        let want = merge_fleet(&rows);
        assert_eq!(got.len(), if tier == Tier::M1 { 6 } else { 2 }, "{}", tier.as_str());
        assert_eq!(got, want, "{}", tier.as_str());
    }
    let c = rusqlite::Connection::open(dir.path().join("netqoe.db")).unwrap();
    let v: i64 = c.query_row("SELECT version FROM schema_version", [], |r| r.get(0)).unwrap();
    assert_eq!(v, 4);
}
