//! A store file of schema version 1 (before per-window event sets) opens, is migrated to version
//! 2, and keeps its rollups.

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
    assert_eq!(v, 2);
    let gone: i64 =
        c.query_row("SELECT COUNT(*) FROM sqlite_master WHERE name = 'applied_events'", [], |r| r.get(0)).unwrap();
    assert_eq!(gone, 0);
    drop(store);
    // and a second open is a no-op
    netqoe::sqlite::Sqlite::open(dir.path()).expect("reopens");
}
