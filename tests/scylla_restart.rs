//! The CQL server stopped (SIGTERM) under load and started again: `netqoe run --store scylla`
//! keeps taking batches, `/readyz` says the store is not ready, memory stays bounded, and once the
//! server is back every accepted event is in the rollups exactly once.
//!
//! It failed until the aggregator held a batch while the store was unavailable (it used to
//! release it: newer batches of the probe passed it, advanced the watermark, and its events were
//! dropped as late after their 202 — `tests/it/store_outage.rs` pins that on the memory store).
//! Alone: `cargo test --test scylla_restart -- --ignored` (needs `NETQOE_CASSANDRA_PID`).
//!
//! Needs the local server `scripts/ensure-cassandra.sh` started (its pid in
//! `NETQOE_CASSANDRA_PID`, exported by `scripts/test.sh`): a server of someone else's is not
//! frozen. One test in this binary, so no other test shares the frozen server.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[actix_rt::test]
#[ignore = "needs the local CQL server of scripts/ensure-cassandra.sh (NETQOE_CASSANDRA_PID); scripts/test.sh runs it"]
async fn a_restarted_cql_server_loses_nothing_and_ingest_keeps_answering() {
    let lab = cql_fault_lab().await;
    let CqlFaultLab { cassandra, ref client, ref base_url, ref query_token, .. } = lab;
    let mut load = lab.load;
    for _ in 0..50 {
        load.one(client).await;
    }
    // the server is stopped (SIGTERM), stays away under load, and is started again
    unsafe { libc::kill(cassandra, libc::SIGTERM) };
    let stopping = Instant::now();
    while unsafe { libc::kill(cassandra, 0) } == 0 && stopping.elapsed() < Duration::from_secs(60) {
        load.one(client).await;
    }
    assert_ne!(unsafe { libc::kill(cassandra, 0) }, 0, "Cassandra stopped");
    let away = Instant::now();
    while away.elapsed() < Duration::from_secs(10) {
        load.one(client).await;
    }
    let r = get(client, &format!("{base_url}/readyz"), None).await;
    assert_eq!(r.status, 503, "not ready with the store stopped: {}", r.body);
    // (blocks this test's runtime while the server starts: the idle keep-alive connection is
    // closed by netqoe meanwhile, and the next batch on it goes unanswered and is re-sent)
    let restart = std::process::Command::new("bash")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/ensure-cassandra.sh"))
        .output()
        .unwrap();
    assert!(restart.status.success(), "restarted: {}", String::from_utf8_lossy(&restart.stderr));
    for _ in 0..20 {
        load.one(client).await;
    }
    eprintln!(
        "stopped and restarted: {} events accepted in all, {} batches refused, {} unanswered, RSS peak {} KiB",
        load.accepted, load.refused, load.unanswered, load.rss_peak
    );
    assert!(load.rss_peak < 512 * 1024, "memory stays bounded: {} KiB", load.rss_peak);
    load.caught_up(client, base_url, query_token).await;
}
