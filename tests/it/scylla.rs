//! Against a real CQL server (ScyllaDB or Cassandra 4), only when `NETQOE_SCYLLA_URI=host:9042` is
//! set: these tests are `#[ignore]`d otherwise, so they show as ignored with the reason, never as
//! passed. `scripts/test.sh` runs them (`--include-ignored`) whenever the variable is set. The
//! store contract's Scylla variant is in `tests/it/store_contract.rs`.

use crate::common::*;
use netqoe_domain::Tier;

#[actix_rt::test]
#[ignore = "needs a CQL server: set NETQOE_SCYLLA_URI=host:9042 (scripts/test.sh then runs it)"]
async fn migrate_applies_the_schema_once_and_is_a_no_op_the_second_time() {
    let uri = std::env::var("NETQOE_SCYLLA_URI").expect("NETQOE_SCYLLA_URI must be set to run this test");
    let keyspace = format!("netqoe_test_{}_{}", std::process::id(), netqoe_actors::now_ms() % 1_000_000);
    let env = vec![
        cql_contact_points(),
        ("NETQOE__SCYLLA__KEYSPACE".to_string(), keyspace.clone()),
        ("NETQOE__SCYLLA__REPLICATION".to_string(), "SimpleStrategy".to_string()),
    ];
    let cfg = netqoe::config::Config::load_from(None, env).unwrap();
    let first = netqoe::scylla::migrate(&cfg).await.unwrap();
    assert!(matches!(first, netqoe::scylla::Migration::Applied { from: None, .. }), "{first:?}");
    let second = netqoe::scylla::migrate(&cfg).await.unwrap();
    assert_eq!(second, netqoe::scylla::Migration::AlreadyCurrent(netqoe::scylla::schema::SCHEMA_VERSION));
    let session = netqoe::scylla::connect(&cfg.scylla).await.unwrap();
    session.query_unpaged(format!("DROP KEYSPACE {keyspace}"), ()).await.unwrap();
    eprintln!("migrate ran against {uri}: applied once, then a no-op");
}

#[actix_rt::test]
#[ignore = "needs a CQL server: set NETQOE_SCYLLA_URI=host:9042 (scripts/test.sh then runs it)"]
async fn the_scylla_store_serves_the_same_query_results_as_sqlite() {
    let (cp_key, cp) = cql_contact_points();
    let keyspace = format!("netqoe_same_{}_{}", std::process::id(), netqoe_actors::now_ms() % 1_000_000);
    let scylla_env = [
        (cp_key.as_str(), cp.as_str()),
        ("NETQOE__STORAGE__BACKEND", "scylla"),
        ("NETQOE__SCYLLA__KEYSPACE", keyspace.as_str()),
        ("NETQOE__SCYLLA__REPLICATION", "SimpleStrategy"),
        ("NETQOE__SCYLLA__READ_CONSISTENCY", "ONE"),
        ("NETQOE__SCYLLA__WRITE_CONSISTENCY", "ONE"),
        ("NETQOE__PIPELINE__DERIVE_INTERVAL_MS", "0"),
    ];
    let cfg = netqoe::config::Config::load_from(
        None,
        scylla_env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>(),
    )
    .unwrap();
    netqoe::scylla::migrate(&cfg).await.expect("migrate");
    let on_scylla = start(3, &scylla_env).await;
    let on_sqlite = start(3, &[("NETQOE__PIPELINE__DERIVE_INTERVAL_MS", "0")]).await;
    let (windows, total) = same_rollups(&on_scylla, &on_sqlite, 11).await;
    eprintln!("scylla store: {windows} windows identical to the SQLite store ({total} samples)");
    on_scylla.app.shutdown().await.unwrap();
    on_sqlite.app.shutdown().await.unwrap();
    let session = netqoe::scylla::connect(&cfg.scylla).await.unwrap();
    session.query_unpaged(format!("DROP KEYSPACE {keyspace}"), ()).await.unwrap();
}

/// Retention by TTL, observed on the server itself: a window written with seconds left of its
/// retention is readable, then gone once they have passed (the contract checks retention
/// through what is readable too, but over days it cannot wait for).
#[actix_rt::test]
#[ignore = "needs a CQL server: set NETQOE_SCYLLA_URI=host:9042 (scripts/test.sh then runs it)"]
async fn windows_expire_by_their_ttl_on_the_server() {
    use netqoe_actors::store::{Retention, RollupQuery, WriteSet};
    use netqoe_domain::{Metric, Rollup, Tier, WindowAgg, WindowKey};
    let now = netqoe_actors::now_ms();
    let start = Tier::M1.bin_start(now);
    let hour_end = Tier::H1.bin_start(now) + Tier::H1.len_ms();
    // chosen so the 1m window's keep_until is now + 20 s (its own retention and its hour's
    // reopening): time to make the keyspace, write and read, then wait it out
    let expires = now + 20_000;
    let retention = Retention {
        m1_ms: expires - (start + Tier::M1.len_ms()),
        reopen_ms: expires - hour_end,
        ..Retention::default()
    };
    let (store, _keyspace) = scylla_store_with(Some(retention)).await;
    let key = WindowKey { probe: "p".into(), target: "t".into(), metric: Metric::Rtt, tier: Tier::M1, start_ms: start };
    let mut agg = WindowAgg::default();
    agg.add(&netqoe_domain::event::Contribution {
        metric: Metric::Rtt,
        values: &[1.0],
        sent: 1,
        received: 1,
        jitter_estimate_ms: None,
        error: None,
    });
    let r = Rollup { key: key.clone(), agg, applied: Default::default(), revision: 1, closed: false };
    store.commit(WriteSet { rollups: vec![r], derive: vec![key.clone()], ..Default::default() }).await.unwrap();
    let q = |tier| RollupQuery {
        probe: Some("p".into()),
        target: None,
        metric: None,
        tier,
        from_ms: start - 86_400_000,
        to_ms: start + 86_400_000,
        limit: 100,
        after: None,
    };
    assert_eq!(store.query(&q(Tier::M1)).await.unwrap().len(), 1, "readable while its TTL lasts");
    assert_eq!(store.load_windows(std::slice::from_ref(&key)).await.unwrap().len(), 1);
    let left = expires + 2_000 - netqoe_actors::now_ms();
    assert!(left > 2_000, "written and read with its TTL still running");
    tokio::time::sleep(std::time::Duration::from_millis(left as u64)).await;
    assert!(store.query(&q(Tier::M1)).await.unwrap().is_empty(), "expired by the server's TTL");
    assert!(store.load_windows(std::slice::from_ref(&key)).await.unwrap().is_empty());
    assert_eq!(store.query(&q(Tier::H1)).await.unwrap().len(), 1, "the hour keeps its own 90 days");
}

/// Errors from the server are typed by what a retry can do: a schema that does not match (a
/// table the store needs was dropped) is `Rejected` and not retryable; the same store answers
/// again when the server can (`Unavailable` while it cannot: see tests/scylla_faults.rs).
#[actix_rt::test]
#[ignore = "needs a CQL server: set NETQOE_SCYLLA_URI=host:9042 (scripts/test.sh then runs it)"]
async fn a_schema_mismatch_is_rejected_not_retried() {
    use netqoe_domain::{Metric, Tier, WindowKey};
    let (cfg, _, _keyspace) = scylla_keyspace().await;
    let store =
        netqoe::scylla::store::ScyllaStore::connect(&cfg.scylla, cfg.pipeline_config().retention).await.unwrap();
    let key = WindowKey { probe: "p".into(), target: "t".into(), metric: Metric::Rtt, tier: Tier::M1, start_ms: 0 };
    use netqoe_actors::store::RollupStore;
    assert!(store.load_windows(std::slice::from_ref(&key)).await.unwrap().is_empty());
    let session = netqoe::scylla::connect(&cfg.scylla).await.unwrap();
    session.query_unpaged(format!("DROP TABLE {}.rollups_1m", cfg.scylla.keyspace), ()).await.unwrap();
    let e = store.load_windows(std::slice::from_ref(&key)).await.unwrap_err();
    assert_eq!(e.kind, netqoe_actors::store::StoreErrorKind::Rejected, "a missing table is the schema's fault: {e:?}");
    assert!(!e.retryable(), "{e}");
}

/// The cqlsh recipes of docs/cql.md ("Queries operators ask"), executed against the server over
/// data netqoe wrote, each returning rows: the doc cannot drift from the schema. The doc's example
/// constants (day 20414, its midnight, hour bucket 680 and its hour) are checked to agree with the
/// bucket rules it states, then replaced by today's.
#[actix_rt::test]
#[ignore = "needs a CQL server: set NETQOE_SCYLLA_URI=host:9042 (scripts/test.sh then runs it)"]
async fn the_cql_doc_recipes_run_and_return_rows() {
    const DAY: i64 = 86_400_000;
    const H1_BUCKET: i64 = 2_592_000_000;
    let doc = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/cql.md")).unwrap();
    let section = doc.split("## Queries operators ask").nth(1).expect("the recipes section");
    let sql = section.split("```sql").nth(1).and_then(|s| s.split("```").next()).expect("its sql block");
    // the doc's constants follow its own bucket rules
    assert_eq!(1_763_769_600_000 / DAY, 20414);
    assert_eq!(1_763_823_600_000 / H1_BUCKET, 680);
    for c in ["20414", "1763769600000", "680", "1763823600000"] {
        assert!(sql.contains(c), "the recipes use {c}");
    }

    let (cfg, mut env, _keyspace) = scylla_keyspace().await;
    env.push(("NETQOE__STORAGE__BACKEND".into(), "scylla".into()));
    env.push(("NETQOE__PIPELINE__DERIVE_INTERVAL_MS".into(), "0".into()));
    env.push(("NETQOE__SESSION__SAVE_EVERY_S".into(), "1".into()));
    let t = start_with(2, &env).await;
    let now = netqoe_actors::now_ms();
    let midnight = now / DAY * DAY;
    let ts = (now - 60_000).max(midnight + 1_000);
    let hour = Tier::H1.bin_start(ts);
    let (probe, token) = &t.probes[1];
    assert_eq!(probe, "probe-1");
    let events: Vec<serde_json::Value> = ["dns.example.net", "cdn.example.org"]
        .iter()
        .enumerate()
        .map(|(i, target)| {
            serde_json::json!({"event_id": format!("doc-{i}"), "seq": i, "ts": rfc3339(ts), "target": target,
                               "kind": "icmp", "rtt_samples_ms": [12.5], "sent": 1, "received": 1})
        })
        .collect();
    let r = post(&t.client, &t.app.url("/v1/events"), Some(token), "application/json", batch(&events)).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let incident =
        sample_incident("doc-incident", netqoe_domain::diagnosis::Scope::Target, &[("target", "cdn.example.org")], now);
    t.app.state.store.save_incidents(&[incident]).await.unwrap();
    eventually(30, "the 1h window and the session stored", || async {
        let r = get(
            &t.client,
            &t.app.url(&format!("/v1/rollups?tier=1h&from={hour}&to={}", hour + 3_600_000)),
            Some(&t.query_token),
        )
        .await;
        let sessions = t.app.state.store.list_sessions().await.ok()?;
        (r.body["rollups"].as_array().is_some_and(|a| a.len() >= 2) && !sessions.is_empty()).then_some(())
    })
    .await;

    let session = netqoe::scylla::connect(&cfg.scylla).await.unwrap();
    let ks = format!("{}.", cfg.scylla.keyspace);
    let day = (midnight / DAY).to_string();
    let statements: Vec<String> = sql
        .split(';')
        .map(|s| s.lines().filter(|l| !l.trim_start().starts_with("--")).collect::<Vec<_>>().join(" "))
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.replace("netqoe.", &ks)
                .replace("1763769600000", &midnight.to_string())
                .replace("1763823600000", &hour.to_string())
                .replace("20414", &day)
                .replace("bucket = 680", &format!("bucket = {}", hour / H1_BUCKET))
        })
        .collect();
    assert_eq!(statements.len(), 4, "{statements:?}");
    for q in &statements {
        let res = session.query_unpaged(q.as_str(), ()).await.unwrap_or_else(|e| panic!("{q}: {e}"));
        let rows = res.into_rows_result().unwrap_or_else(|e| panic!("{q}: {e}")).rows_num();
        assert!(rows >= 1, "the recipe returns rows over netqoe's data: {q}");
    }
    t.app.shutdown().await.unwrap();
}

#[actix_rt::test]
#[ignore = "needs a CQL server: set NETQOE_SCYLLA_URI=host:9042 (scripts/test.sh then runs it)"]
async fn a_version_2_keyspace_is_upgraded_and_its_event_sets_still_count() {
    use netqoe_actors::store::{RollupStore, WriteSet};
    use netqoe_domain::{EventSet, Metric, Rollup, WindowAgg, WindowKey};
    let (cfg, _, _guard) = scylla_keyspace().await;
    let ks = &cfg.scylla.keyspace;
    let session = netqoe::scylla::connect(&cfg.scylla).await.unwrap();
    // what version 2 had: the rollup tables without events_chunks (a window's event set one
    // element per event). Re-created rather than altered: a dropped column shadows every cell
    // older than the drop, and window writes carry their window's start as timestamp.
    for t in ["1m", "1h", "1d"] {
        for table in [format!("rollups_{t}"), format!("rollups_by_target_{t}")] {
            session.query_unpaged(format!("DROP TABLE {ks}.{table}"), ()).await.unwrap();
        }
    }
    for st in netqoe::scylla::schema::statements(&cfg).into_iter().filter(|s| s.contains(".rollups_")) {
        let v2 = st.replace(", events_chunks map<bigint, blob>", "");
        assert_ne!(v2, st, "the v3 column is in {st}");
        session.query_unpaged(v2, ()).await.unwrap();
    }
    session.query_unpaged(format!("UPDATE {ks}.schema_version SET version = 2 WHERE id = 0"), ()).await.unwrap();
    let start = Tier::M1.bin_start(netqoe_actors::now_ms());
    let bucket = netqoe::scylla::store::bucket_of(Tier::M1, start);
    session
        .query_unpaged(
            format!(
                "UPDATE {ks}.rollups_1m USING TIMESTAMP ? SET revision = 1, events = 2, count = 2, \
                 events_applied = {{41, 42}} \
                 WHERE probe = 'p' AND target = 't' AND metric = 'rtt' AND bucket = ? AND start_ms = ?"
            ),
            (netqoe::scylla::store::write_timestamp(start, 1), bucket, start),
        )
        .await
        .unwrap();
    let up = netqoe::scylla::migrate(&cfg).await.unwrap();
    assert!(matches!(up, netqoe::scylla::Migration::Applied { from: Some(2), .. }), "{up:?}");
    let store =
        netqoe::scylla::store::ScyllaStore::connect(&cfg.scylla, cfg.pipeline_config().retention).await.unwrap();
    let key = WindowKey { probe: "p".into(), target: "t".into(), metric: Metric::Rtt, tier: Tier::M1, start_ms: start };
    let loaded = store.load_windows(std::slice::from_ref(&key)).await.unwrap();
    let set = |r: &Rollup| -> Vec<u64> {
        let mut v: Vec<u64> = r.applied.iter().collect();
        v.sort_unstable();
        v
    };
    assert_eq!(loaded.len(), 1);
    assert_eq!(set(&loaded[0]), vec![41, 42], "the version-2 event set is read");
    // the next revision adds its delta as a chunk; the window holds both
    let delta: EventSet = [43u64].into_iter().collect();
    let agg = WindowAgg { events: 3, count: 3, ..loaded[0].agg.clone() };
    let next = Rollup { key: key.clone(), agg, applied: delta, revision: 2, closed: false };
    store.commit(WriteSet { rollups: vec![next], ..Default::default() }).await.unwrap();
    let fresh =
        netqoe::scylla::store::ScyllaStore::connect(&cfg.scylla, cfg.pipeline_config().retention).await.unwrap();
    let loaded = fresh.load_windows(std::slice::from_ref(&key)).await.unwrap();
    assert_eq!(set(&loaded[0]), vec![41, 42, 43], "old elements and the new chunk together");
    assert_eq!(loaded[0].agg.events, 3);
}

/// The distributed backends in one process: RabbitMQ as the bus and the CQL server as the store.
/// Events posted to ingest reach the CQL rollups through the broker, and no SQLite file is opened
/// or created (it is neither the bus nor the store).
#[actix_rt::test]
#[ignore = "needs a CQL server (NETQOE_SCYLLA_URI) and RabbitMQ: scripts/test.sh provides both"]
async fn over_rabbitmq_and_cql_no_sqlite_file_is_opened() {
    let (_cfg, mut env, _keyspace) = scylla_keyspace().await;
    let prefix = unique_prefix("nosqlite");
    env.extend(rabbit_overrides(&prefix, 2));
    env.push(("NETQOE__STORAGE__BACKEND".into(), "scylla".into()));
    env.push(("NETQOE__PIPELINE__DERIVE_INTERVAL_MS".into(), "0".into()));
    let t = start_with(1, &env).await;
    let (probe, token) = &t.probes[0];
    let now = netqoe_actors::now_ms();
    let events: Vec<serde_json::Value> = (0..5)
        .map(|i| {
            serde_json::json!({"event_id": format!("{probe}-n{i}"), "seq": i, "ts": rfc3339(now - 60_000 + i * 1_000),
                "target": "nosqlite.example", "kind": "udp", "rtt_samples_ms": [20.0, 21.0], "sent": 2, "received": 2})
        })
        .collect();
    let r = post(&t.client, &t.app.url("/v1/events"), Some(token), "application/json", batch(&events)).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let base = format!("http://{}", t.app.addr);
    eventually(30, "events aggregated into the CQL store", || async {
        (total_count(&t.client, &base, &t.query_token, "rtt", now - 3_600_000, now + 60_000).await == 10).then_some(())
    })
    .await;
    assert_eq!(t.app.state.bus.backlog().await.unwrap(), None, "a broker's backlog is shared, not local");
    let files: Vec<_> =
        std::fs::read_dir(t.dir.path()).unwrap().filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    assert!(
        !files.iter().any(|f| f.to_string_lossy().starts_with("netqoe.db")),
        "no SQLite file in the data directory: {files:?}"
    );
    t.app.shutdown().await.unwrap();
    delete_prefix(&awc::Client::default(), &prefix).await;
}
