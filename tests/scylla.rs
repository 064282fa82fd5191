//! Against a real CQL server (ScyllaDB or Cassandra 4), only when `NETQOE_SCYLLA_URI=host:9042` is
//! set: these tests are `#[ignore]`d otherwise, so they show as ignored with the reason, never as
//! passed. `scripts/test.sh` runs them (`--include-ignored`) whenever the variable is set. The
//! store contract's Scylla variant is in `tests/store_contract.rs`.

mod common;

use common::*;

#[actix_rt::test]
#[ignore = "needs a CQL server: set NETQOE_SCYLLA_URI=host:9042 (scripts/test.sh then runs it)"]
async fn migrate_applies_the_schema_once_and_is_a_no_op_the_second_time() {
    let uri = std::env::var("NETQOE_SCYLLA_URI").expect("NETQOE_SCYLLA_URI must be set to run this test");
    let keyspace = format!("netqoe_test_{}_{}", std::process::id(), netqoe_actors::now_ms() % 1_000_000);
    let env = vec![
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
    std::env::var("NETQOE_SCYLLA_URI").expect("NETQOE_SCYLLA_URI must be set to run this test");
    let keyspace = format!("netqoe_same_{}_{}", std::process::id(), netqoe_actors::now_ms() % 1_000_000);
    let scylla_env = [
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
    let base = base_ms() + 5 * 60_000;
    for app in [&on_scylla, &on_sqlite] {
        let mut rng = Rng(11);
        for (pi, (probe, token)) in app.probes.iter().enumerate() {
            for b in 0..6 {
                let evs = events_for(&format!("probe-{pi}"), base, b * 50, 50, &mut rng);
                let r =
                    post(&app.client, &app.app.url("/v1/events"), Some(token), "application/json", batch(&evs)).await;
                assert_eq!(r.status, 202, "{probe}: {}", r.body);
            }
        }
    }
    let total = 3 * 300 * 3;
    let (from, to) = (base, base + 600_000);
    for app in [&on_scylla, &on_sqlite] {
        let url = format!("http://{}", app.app.addr);
        eventually(60, "all samples aggregated", || async {
            (total_count(&app.client, &url, &app.query_token, "rtt", from, to).await == total).then_some(())
        })
        .await;
    }
    let a = rollup_map(&on_scylla.client, &format!("http://{}", on_scylla.app.addr), &on_scylla.query_token, from, to)
        .await;
    let b = rollup_map(&on_sqlite.client, &format!("http://{}", on_sqlite.app.addr), &on_sqlite.query_token, from, to)
        .await;
    assert!(!a.is_empty());
    assert_eq!(a.len(), b.len(), "same windows");
    for (k, v) in &a {
        assert_eq!(Some(v), b.get(k), "window {k} differs");
    }
    eprintln!("scylla store: {} windows identical to the SQLite store ({total} samples)", a.len());
    on_scylla.app.shutdown().await.unwrap();
    on_sqlite.app.shutdown().await.unwrap();
    let session = netqoe::scylla::connect(&cfg.scylla).await.unwrap();
    session.query_unpaged(format!("DROP KEYSPACE {keyspace}"), ()).await.unwrap();
}
