//! Faults of the CQL server under load, with the oracle: `netqoe run --store scylla` keeps taking
//! batches (202: they are durable in the journal) while the Cassandra JVM is frozen (SIGSTOP) for
//! 20 s and then while it is stopped and started again, `/readyz` names the store as the component
//! that is not ready, the process's memory stays bounded, nothing is acked that was not persisted,
//! and once the server is back every accepted event is in the rollups exactly once.
//!
//! Needs the local server `scripts/ensure-cassandra.sh` started (its pid in
//! `NETQOE_CASSANDRA_PID`, exported by `scripts/test.sh`): a server of someone else's is not
//! frozen. One test in this binary, so no other test shares the frozen server.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// Thaws the server even when the test fails half-way.
struct Thaw(i32);

impl Drop for Thaw {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

#[actix_rt::test]
#[ignore = "needs the local CQL server of scripts/ensure-cassandra.sh (NETQOE_CASSANDRA_PID; scripts/test.sh sets it)"]
async fn a_frozen_cql_server_loses_nothing_and_ingest_keeps_answering() {
    let lab = cql_fault_lab().await;
    let CqlFaultLab { cassandra, ref client, ref base_url, ref query_token, .. } = lab;
    let mut load = lab.load;
    let mut frozen_readyz = None;
    let started = Instant::now();
    let _thaw = Thaw(cassandra);
    let mut frozen = false;
    // 40 s of load, bounded: the server frozen from 5 s to 25 s
    while started.elapsed() < Duration::from_secs(40) {
        let t = started.elapsed();
        if !frozen && t >= Duration::from_secs(5) && t < Duration::from_secs(25) {
            assert_eq!(unsafe { libc::kill(cassandra, libc::SIGSTOP) }, 0, "SIGSTOP the Cassandra JVM");
            frozen = true;
        }
        if frozen && t >= Duration::from_secs(25) {
            assert_eq!(unsafe { libc::kill(cassandra, libc::SIGCONT) }, 0);
            frozen = false;
        }
        if frozen && frozen_readyz.is_none() && t >= Duration::from_secs(12) {
            let r = get(client, &format!("{base_url}/readyz"), None).await;
            frozen_readyz = Some((r.status, r.body));
        }
        load.one(client).await;
    }
    let (status, body) = frozen_readyz.expect("readyz asked while frozen");
    assert_eq!(status, 503, "not ready while the store is frozen: {body}");
    let store = body["components"].as_array().unwrap().iter().find(|c| c["component"] == "store:scylla").cloned();
    assert_eq!(store.as_ref().map(|c| c["ready"].clone()), Some(json!(false)), "the store is named: {body}");
    eprintln!(
        "frozen: {} events accepted, {} batches refused with 503, netqoe RSS peak {} KiB",
        load.accepted, load.refused, load.rss_peak
    );
    assert!(load.accepted >= 5_000, "ingest kept accepting while the store was frozen ({})", load.accepted);
    assert!(load.rss_peak < 512 * 1024, "memory stays bounded: {} KiB", load.rss_peak);
    load.caught_up(client, base_url, query_token).await;
}
