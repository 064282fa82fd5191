//! Against a real CQL server (ScyllaDB or Cassandra 4), only when `NETQOE_SCYLLA_URI=host:9042` is
//! set: these tests are `#[ignore]`d otherwise, so they show as ignored with the reason, never as
//! passed. `scripts/test.sh` runs them (`--include-ignored`) whenever the variable is set.

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
