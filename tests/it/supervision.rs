//! Supervision: a probe's session actor made to fail is restarted by its supervisor (state
//! reloaded from the store), the pipeline keeps going, and the restart shows in /metrics.

use crate::common::*;
use netqoe_actors::session::InjectFault;
use serde_json::json;

#[actix_rt::test]
async fn a_failed_session_actor_is_restarted_and_the_pipeline_keeps_going() {
    let t = start(2, &[("NETQOE__SESSION__SAVE_EVERY_S", "1")]).await;
    let url = t.app.url("/v1/events");
    let now = netqoe_actors::now_ms();
    let ev = |id: String, ts: i64| json!({"event_id": id, "seq": 0, "ts": rfc3339(ts), "target": "t", "kind": "icmp", "rtt_ms": 5.0});
    for (probe, token) in &t.probes {
        let events: Vec<_> = (0..5).map(|i| ev(format!("{probe}-a{i}"), now - 30_000 + i)).collect();
        assert_eq!(post(&t.client, &url, Some(token), "application/json", batch(&events)).await.status, 202);
    }
    let base = format!("http://{}", t.app.addr);
    eventually(20, "first events aggregated", || async {
        (total_count(&t.client, &base, &t.query_token, "rtt", now - 600_000, now + 60_000).await == 10).then_some(())
    })
    .await;
    // give the session a chance to persist (save_every 1 s), then fail it
    eventually(20, "session persisted", || async {
        let s = netqoe_actors::store::RollupStore::load_session(t.app.state.store.as_ref(), "probe-0").await.ok()??;
        (s.events == 5).then_some(())
    })
    .await;
    let before = metric_value(
        &get_text(&t.client, &t.app.url("/metrics")).await,
        "netqoe_actor_restarts_total{actor=\"session\"}",
    )
    .unwrap();
    let failed = t.app.pipeline.as_ref().unwrap().sessions.send(InjectFault { probe: "probe-0".into() }).await.unwrap();
    assert!(failed, "the fault was injected into a live session");

    // the pipeline keeps going for both probes
    for (probe, token) in &t.probes {
        let events: Vec<_> = (0..5).map(|i| ev(format!("{probe}-b{i}"), now - 20_000 + i)).collect();
        assert_eq!(post(&t.client, &url, Some(token), "application/json", batch(&events)).await.status, 202);
    }
    eventually(20, "later events aggregated", || async {
        (total_count(&t.client, &base, &t.query_token, "rtt", now - 600_000, now + 60_000).await == 20).then_some(())
    })
    .await;
    let metrics = get_text(&t.client, &t.app.url("/metrics")).await;
    let after = metric_value(&metrics, "netqoe_actor_restarts_total{actor=\"session\"}").unwrap();
    assert_eq!(after, before + 1.0, "exactly one session restart counted");
    // the restarted session reloaded its saved state and kept counting
    let p = eventually(20, "restarted session counts on", || async {
        let r = get(&t.client, &t.app.url("/v1/probes"), Some(&t.query_token)).await;
        let p = r.body["probes"].as_array()?.iter().find(|p| p["probe"] == "probe-0")?.clone();
        (p["events"].as_u64() == Some(10)).then_some(p)
    })
    .await;
    assert_eq!(p["status"], "online");
    t.app.shutdown().await.unwrap();
}
