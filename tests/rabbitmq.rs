//! Integration tests against the real RabbitMQ broker on 127.0.0.1:5672 (scripts/test.sh starts
//! it). Every test uses its own exchange/queue prefix and removes it afterwards; tests that
//! disturb the broker itself (alarms, restarts) are serialised by a process-wide lock.

mod common;

use std::time::{Duration, Instant};

use common::*;
use netqoe::rabbit::RabbitBus;

#[actix_rt::test]
async fn through_the_broker_rollups_equal_the_embedded_run() {
    let _g = BROKER.lock().await;
    let prefix = unique_prefix("e2e");
    // coarse tiers derived at every commit, so both runs' 1h windows are current when compared
    let mut ov = rabbit_overrides(&prefix, 4);
    ov.push(("NETQOE__PIPELINE__DERIVE_INTERVAL_MS".into(), "0".into()));
    let rabbit = start_with(3, &ov).await;
    let embedded = start(3, &[("NETQOE__PIPELINE__DERIVE_INTERVAL_MS", "0")]).await;
    let base = base_ms() + 5 * 60_000;
    let mut total = 0u64;
    for app in [&rabbit, &embedded] {
        let mut rng = Rng(7);
        for (pi, (probe, _)) in app.probes.iter().enumerate() {
            let token = &app.probes[pi].1;
            for b in 0..6 {
                let evs = events_for(&format!("probe-{pi}"), base, b * 50, 50, &mut rng);
                let r =
                    post(&app.client, &app.app.url("/v1/events"), Some(token), "application/json", batch(&evs)).await;
                assert_eq!(r.status, 202, "{probe}: {}", r.body);
            }
        }
        total = 3 * 300 * 3;
    }
    let (from, to) = (base, base + 600_000);
    for app in [&rabbit, &embedded] {
        let url = format!("http://{}", app.app.addr);
        eventually(60, "all samples aggregated", || async {
            (total_count(&app.client, &url, &app.query_token, "rtt", from, to).await == total).then_some(())
        })
        .await;
    }
    let a = rollup_map(&rabbit.client, &format!("http://{}", rabbit.app.addr), &rabbit.query_token, from, to).await;
    let b =
        rollup_map(&embedded.client, &format!("http://{}", embedded.app.addr), &embedded.query_token, from, to).await;
    assert!(!a.is_empty());
    assert_eq!(a.len(), b.len(), "same windows");
    for (k, v) in &a {
        assert_eq!(Some(v), b.get(k), "window {k} differs");
    }
    eprintln!("broker e2e: {} windows identical to the embedded run ({} samples)", a.len(), total);
    let client = rabbit.client.clone();
    rabbit.app.shutdown().await.unwrap();
    embedded.app.shutdown().await.unwrap();
    delete_prefix(&client, &prefix).await;
}

#[actix_rt::test]
async fn poison_messages_go_to_the_dlq_and_other_probes_are_unaffected() {
    let _g = BROKER.lock().await;
    let prefix = unique_prefix("dlq");
    let mut ov = rabbit_overrides(&prefix, 2);
    ov.push(("NETQOE__RABBITMQ__DELIVERY_LIMIT".into(), "3".into()));
    let t = start_with(2, &ov).await;
    let bus = RabbitBus::new(t.app.state.cfg.rabbitmq.clone());
    bus.publish_raw(0, b"this is not an envelope").await.unwrap();
    bus.publish_raw(1, br#"{"v":99,"batch_id":"x","probe":"p","received_ms":0,"duplicates":0,"events":[]}"#)
        .await
        .unwrap();
    let base = base_ms();
    let mut rng = Rng(3);
    for (i, (_, token)) in t.probes.iter().enumerate() {
        let evs = events_for(&format!("probe-{i}"), base, 0, 20, &mut rng);
        assert_eq!(
            post(&t.client, &t.app.url("/v1/events"), Some(token), "application/json", batch(&evs)).await.status,
            202
        );
    }
    let url = format!("http://{}", t.app.addr);
    eventually(60, "good batches aggregated", || async {
        (total_count(&t.client, &url, &t.query_token, "rtt", base, base + 60_000).await == 2 * 20 * 3).then_some(())
    })
    .await;
    let (dlq, shards) = eventually(60, "both poison messages dead-lettered", || async {
        let d = bus.depths().await.ok()?;
        (d.0 == 2).then_some(d)
    })
    .await;
    assert_eq!(shards.iter().sum::<u32>(), 0, "nothing left in the shard queues");
    // what an operator sees in the management UI (its statistics refresh every few seconds)
    eventually(30, "management API shows the dead letters", || async {
        let dead = mgmt_get(&t.client, &format!("/queues/%2F/{prefix}events.dlq")).await;
        (dead["messages"].as_u64() == Some(dlq as u64)).then_some(())
    })
    .await;
    // the DLQ depth is a metric (refreshed every 5 s by the consumer)
    eventually(30, "DLQ depth metric", || async {
        let m = get_text(&t.client, &t.app.url("/metrics")).await;
        (metric_value(&m, "netqoe_bus_dlq_depth") == Some(2.0)).then_some(())
    })
    .await;
    let m = get_text(&t.client, &t.app.url("/metrics")).await;
    assert!(metric_value(&m, "netqoe_bus_poison_messages_total").unwrap() >= 2.0);
    let client = t.client.clone();
    t.app.shutdown().await.unwrap();
    delete_prefix(&client, &prefix).await;
}

/// Restores the broker's memory watermark even if the test fails.
struct WatermarkGuard;
impl Drop for WatermarkGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl").args(["set_vm_memory_high_watermark", "0.4"]).output();
    }
}

#[actix_rt::test]
async fn memory_alarm_answers_503_within_the_publish_timeout_and_recovers() {
    let _g = BROKER.lock().await;
    let prefix = unique_prefix("alarm");
    let mut ov = rabbit_overrides(&prefix, 2);
    ov.push(("NETQOE__RABBITMQ__PUBLISH_TIMEOUT_MS".into(), "1500".into()));
    let t = start_with(1, &ov).await;
    let token = t.probes[0].1.clone();
    let base = base_ms();
    let mut rng = Rng(5);
    let evs = events_for("probe-0", base, 0, 10, &mut rng);
    assert_eq!(
        post(&t.client, &t.app.url("/v1/events"), Some(&token), "application/json", batch(&evs)).await.status,
        202
    );

    let guard = WatermarkGuard;
    let out =
        std::process::Command::new("rabbitmqctl").args(["set_vm_memory_high_watermark", "0.0001"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut seq = 10;
    let (status, took) = eventually(60, "ingest answers 503 under the alarm", || {
        seq += 10;
        let evs = events_for("probe-0", base, seq, 10, &mut rng);
        let (client, url, token) = (t.client.clone(), t.app.url("/v1/events"), token.clone());
        async move {
            let started = Instant::now();
            let r = post(&client, &url, Some(&token), "application/json", batch(&evs)).await;
            if r.status == 503 {
                assert!(r.headers.get("retry-after").is_some(), "503 carries Retry-After");
                Some((r.status, started.elapsed()))
            } else {
                assert_eq!(r.status, 202, "{}", r.body);
                None
            }
        }
    })
    .await;
    assert_eq!(status, 503);
    assert!(took <= Duration::from_millis(1500 + 1500), "503 came after {took:?}, not within the publish timeout");
    eprintln!("memory alarm: ingest answered 503 after {} ms", took.as_millis());
    drop(guard);
    let recovered = Instant::now();
    eventually(60, "ingest accepts again after the alarm clears", || {
        seq += 10;
        let evs = events_for("probe-0", base, seq, 10, &mut rng);
        let (client, url, token) = (t.client.clone(), t.app.url("/v1/events"), token.clone());
        async move { (post(&client, &url, Some(&token), "application/json", batch(&evs)).await.status == 202).then_some(()) }
    })
    .await;
    eprintln!("memory alarm: accepting again {} ms after the alarm cleared", recovered.elapsed().as_millis());
    let client = t.client.clone();
    t.app.shutdown().await.unwrap();
    delete_prefix(&client, &prefix).await;
}

#[actix_rt::test]
async fn incidents_are_published_to_the_diagnoses_exchange() {
    use futures_util::StreamExt;
    use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;
    let _g = BROKER.lock().await;
    let prefix = unique_prefix("diag");
    let t = start_with(1, &rabbit_overrides(&prefix, 1)).await;
    let bus = RabbitBus::new(t.app.state.cfg.rabbitmq.clone());
    use netqoe_actors::bus::EventBus;
    bus.ready().await.unwrap(); // declares the topology
    let conn = lapin::Connection::connect(&t.app.state.cfg.rabbitmq.uris[0], lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let q = ch
        .queue_declare(
            "",
            QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .unwrap();
    ch.queue_bind(
        q.name().as_str(),
        &format!("{prefix}diagnoses"),
        "incident.open.#",
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let mut consumer = ch
        .basic_consume(
            q.name().as_str(),
            "t",
            BasicConsumeOptions { no_ack: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let now = netqoe_actors::now_ms();
    let mut incident =
        sample_incident("inc-r", netqoe_domain::diagnosis::Scope::Group, &[("probe.resolver", "isp")], now);
    incident.metrics = ["dns".to_string()].into();
    bus.publish_incident(&incident).await.unwrap();
    let d = tokio::time::timeout(Duration::from_secs(10), consumer.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(d.routing_key.as_str(), "incident.open.group");
    let v: serde_json::Value = serde_json::from_slice(&d.data).unwrap();
    assert_eq!(v["event"], "incident.opened");
    assert_eq!(v["incident"]["subject"]["probe.resolver"], "isp");
    let _ = conn.close(0, "done").await;
    let client = t.client.clone();
    t.app.shutdown().await.unwrap();
    delete_prefix(&client, &prefix).await;
}
