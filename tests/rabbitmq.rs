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
    let (windows, total) = same_rollups(&rabbit, &embedded, 7).await;
    eprintln!("broker e2e: {windows} windows identical to the embedded run ({total} samples)");
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
    let poison_before =
        metric_value(&get_text(&t.client, &t.app.url("/metrics")).await, "netqoe_bus_poison_messages_total");
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
    // each poison message was handed out (and returned) until its delivery limit, not
    // dead-lettered at the first failure: at least 2 × 3 poison deliveries
    let poison = metric_value(&m, "netqoe_bus_poison_messages_total").unwrap() - poison_before.unwrap_or(0.0);
    assert!(poison >= 6.0, "{poison} poison deliveries for 2 messages with delivery limit 3");
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

/// A consumer of `exchange` (bound with `binding`) on an exclusive queue, and its connection.
async fn diagnoses_listener(uri: &str, exchange: &str, binding: &str) -> (lapin::Connection, lapin::Consumer) {
    use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;
    let conn = lapin::Connection::connect(uri, lapin::ConnectionProperties::default()).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    let exclusive = QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() };
    let q = ch.queue_declare("", exclusive, FieldTable::default()).await.unwrap();
    ch.queue_bind(q.name().as_str(), exchange, binding, QueueBindOptions::default(), FieldTable::default())
        .await
        .unwrap();
    let no_ack = BasicConsumeOptions { no_ack: true, ..Default::default() };
    let consumer = ch.basic_consume(q.name().as_str(), "t", no_ack, FieldTable::default()).await.unwrap();
    (conn, consumer)
}

#[actix_rt::test]
async fn incidents_are_published_to_the_diagnoses_exchange() {
    use futures_util::StreamExt;
    let _g = BROKER.lock().await;
    let prefix = unique_prefix("diag");
    let t = start_with(1, &rabbit_overrides(&prefix, 1)).await;
    let bus = RabbitBus::new(t.app.state.cfg.rabbitmq.clone());
    use netqoe_actors::bus::EventBus;
    bus.ready().await.unwrap(); // declares the topology
    let (conn, mut consumer) =
        diagnoses_listener(&t.app.state.cfg.rabbitmq.uris[0], &format!("{prefix}diagnoses"), "incident.open.#").await;
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

/// Over a broker, ingest cannot know a batch was accepted before (it keeps no event-id table):
/// both copies get a 202 and are published; the aggregator's per-window event sets count each
/// event once, and the probe's session reports the second copy as duplicates — also for a copy
/// re-sent after the first was committed.
#[actix_rt::test]
async fn a_batch_posted_twice_over_the_broker_counts_once() {
    let _g = BROKER.lock().await;
    let prefix = unique_prefix("resend");
    let t = start_with(1, &rabbit_overrides(&prefix, 2)).await;
    let (probe, token) = (&t.probes[0].0, &t.probes[0].1);
    let base = base_ms() + 5 * 60_000;
    let evs = events_for(probe, base, 0, 40, &mut Rng(11));
    let url = t.app.url("/v1/events");
    for copy in 0..2 {
        let r = post(&t.client, &url, Some(token), "application/json", batch(&evs)).await;
        assert_eq!(r.status, 202, "copy {copy}: {}", r.body);
    }
    let root = t.app.url("");
    let (from, to) = (base, base + 3_600_000);
    let duplicates = |want: u64| {
        let (client, q, url) = (t.client.clone(), t.query_token.clone(), t.app.url("/v1/probes"));
        async move {
            let r = get(&client, &url, Some(&q)).await;
            let p = r.body["probes"].as_array()?.iter().find(|p| p["probe"] == "probe-0")?.clone();
            (p["duplicates"].as_u64() == Some(want)).then_some(p)
        }
    };
    let p = eventually(30, "the second copy reported as 40 duplicates", || duplicates(40)).await;
    assert_eq!(p["events"], 40, "{p}");
    assert_eq!(total_count(&t.client, &root, &t.query_token, "rtt", from, to).await, 40 * 3);
    // a third copy, after the first two were committed (sessions hear of a batch only then)
    let r = post(&t.client, &url, Some(token), "application/json", batch(&evs)).await;
    assert_eq!(r.status, 202, "{}", r.body);
    eventually(30, "the third copy reported as duplicates too", || duplicates(80)).await;
    assert_eq!(total_count(&t.client, &root, &t.query_token, "rtt", from, to).await, 40 * 3, "still one copy");
    let client = t.client.clone();
    t.app.shutdown().await.unwrap();
    delete_prefix(&client, &prefix).await;
}

/// A signature computed without the code under test: OpenSSL's HMAC-SHA256.
fn openssl_hmac(secret: &str, body: &[u8]) -> String {
    let key = openssl::pkey::PKey::hmac(secret.as_bytes()).unwrap();
    let mut signer = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &key).unwrap();
    signer.update(body).unwrap();
    let mac = signer.sign_to_vec().unwrap();
    format!("sha256={}", mac.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// Guarantee 6, wired as `netqoe run` wires it: a probe reports a certificate six days from
/// expiry; the running app's diagnoser opens an incident, and the same incident reaches the
/// configured webhook (signed, checked with an independent HMAC) and the broker's diagnoses
/// exchange — nothing here calls `webhook::start` or `publish_incident` itself.
#[actix_rt::test]
async fn an_incident_from_posted_events_reaches_the_webhook_and_the_diagnoses_exchange() {
    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
    use futures_util::StreamExt;
    use std::sync::{Arc, Mutex};
    let _g = BROKER.lock().await;
    let prefix = unique_prefix("wired");

    type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;
    let got: Received = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let server = HttpServer::new(move || {
        let g = g.clone();
        App::new().route(
            "/hook",
            web::post().to(move |req: HttpRequest, body: web::Bytes| {
                let g = g.clone();
                async move {
                    let sig = req.headers().get("X-Netqoe-Signature").map(|v| v.to_str().unwrap().to_string());
                    g.lock().unwrap().push((sig.unwrap_or_default(), body.to_vec()));
                    HttpResponse::NoContent().finish()
                }
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .bind("127.0.0.1:0")
    .unwrap();
    let hook = format!("http://{}/hook", server.addrs()[0]);
    let server = server.run();
    let stop = server.handle();
    actix_rt::spawn(server);

    let ov = rabbit_overrides(&prefix, 1);
    let borrowed: Vec<(&str, &str)> = ov.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut p = prepare(1, &borrowed);
    p.cfg.webhooks.urls = vec![hook];
    p.cfg.webhooks.secret = "wired-secret".into();
    let t = p.start().await;
    // the app declared its topology at start; the incident is published at the earliest 10 s later
    let (conn, mut consumer) =
        diagnoses_listener(&t.app.state.cfg.rabbitmq.uris[0], &format!("{prefix}diagnoses"), "incident.#").await;
    // one TLS measurement 20 minutes ago: the diagnoser's second pass (10 s after start) judges it
    let now = netqoe_actors::now_ms();
    let ts = (now / 60_000 - 20) * 60_000 + 5_000;
    let ev = serde_json::json!({"event_id": "tls-1", "seq": 1, "ts": rfc3339(ts), "target": "shop.example",
        "kind": "tls", "connect_ms": 2.0, "tls_ms": 5.0, "cert_days": 6.0});
    let r = post(&t.client, &t.app.url("/v1/events"), Some(&t.probes[0].1), "application/json", batch(&[ev])).await;
    assert_eq!(r.status, 202, "{}", r.body);

    let (sig, body) =
        eventually(60, "the webhook receives the incident", || async { got.lock().unwrap().first().cloned() }).await;
    assert_eq!(sig, openssl_hmac("wired-secret", &body), "signed over the exact body (independent HMAC)");
    let hooked: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(hooked["event"], "incident.opened", "{hooked}");
    assert_eq!(hooked["incident"]["scope"], "certificate", "{hooked}");
    assert_eq!(hooked["incident"]["subject"]["target"], "shop.example");

    let d = tokio::time::timeout(Duration::from_secs(30), consumer.next())
        .await
        .expect("the incident is published to the diagnoses exchange")
        .unwrap()
        .unwrap();
    assert_eq!(d.routing_key.as_str(), "incident.open.certificate");
    let published: serde_json::Value = serde_json::from_slice(&d.data).unwrap();
    assert_eq!(published["incident"]["id"], hooked["incident"]["id"], "the same incident on both sinks");
    // and it is stored and listed (saved right after the notifications are queued)
    let id = hooked["incident"]["id"].as_str().unwrap().to_string();
    eventually(20, "the incident is listed", || async {
        let list = get(&t.client, &t.app.url("/v1/incidents"), Some(&t.query_token)).await;
        list.body.to_string().contains(&id).then_some(())
    })
    .await;

    let _ = conn.close(0, "done").await;
    stop.stop(false).await;
    let client = t.client.clone();
    t.app.shutdown().await.unwrap();
    delete_prefix(&client, &prefix).await;
}

/// With no broker reachable, netqoe still starts and says so: `/readyz` answers 503 naming the
/// bus, and ingest answers 503 with Retry-After (never a 202 it cannot keep).
#[actix_rt::test]
async fn an_unreachable_broker_makes_readyz_and_ingest_answer_503() {
    let port = free_port(); // nothing listens there
    let prefix = unique_prefix("nobroker");
    let mut ov = rabbit_overrides(&prefix, 1);
    ov.push(("NETQOE__RABBITMQ__URIS".into(), format!("[\"amqp://guest:guest@127.0.0.1:{port}/%2f\"]")));
    ov.push(("NETQOE__RABBITMQ__CONNECT_TIMEOUT_MS".into(), "500".into()));
    ov.push(("NETQOE__RABBITMQ__PUBLISH_TIMEOUT_MS".into(), "1000".into()));
    let t = start_with(1, &ov).await;
    let r = get(&t.client, &t.app.url("/readyz"), None).await;
    assert_eq!(r.status, 503, "{}", r.body);
    let bus = r.body["components"].as_array().unwrap().iter().find(|c| c["component"] == "bus:rabbitmq").cloned();
    assert_eq!(bus.as_ref().map(|b| b["ready"].clone()), Some(serde_json::json!(false)), "{}", r.body);
    let store = r.body["components"].as_array().unwrap().iter().find(|c| c["component"] == "store:sqlite").cloned();
    assert_eq!(store.map(|s| s["ready"].clone()), Some(serde_json::json!(true)), "only the bus is named: {}", r.body);
    let evs = events_for(&t.probes[0].0, base_ms(), 0, 3, &mut Rng(1));
    let r = post(&t.client, &t.app.url("/v1/events"), Some(&t.probes[0].1), "application/json", batch(&evs)).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.headers.get("Retry-After").is_some());
    t.app.shutdown().await.unwrap();
}

/// A batch the broker returns as unroutable (an operator deleted a binding) is a 503 with
/// Retry-After, never a 202; netqoe declares its topology again, and the probe's retry lands.
#[actix_rt::test]
async fn an_unroutable_batch_is_a_503_and_the_topology_is_declared_again() {
    let _g = BROKER.lock().await;
    let prefix = unique_prefix("unroutable");
    let t = start_with(1, &rabbit_overrides(&prefix, 1)).await;
    let (probe, token) = (&t.probes[0].0, &t.probes[0].1);
    let url = t.app.url("/v1/events");
    let base = base_ms() + 5 * 60_000;
    let first = events_for(probe, base, 0, 10, &mut Rng(5));
    assert_eq!(post(&t.client, &url, Some(token), "application/json", batch(&first)).await.status, 202);
    // remove the exchange → shard queue binding (the queue and its consumer stay)
    let binding = format!("{MGMT}/bindings/%2F/e/{prefix}events/q/{prefix}events.shard.000/0");
    let r = t.client.delete(&binding).basic_auth("guest", "guest").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 204, "binding deleted");
    let second = events_for(probe, base, 10, 10, &mut Rng(6));
    let r = post(&t.client, &url, Some(token), "application/json", batch(&second)).await;
    assert_eq!(r.status, 503, "an unroutable batch is not accepted: {}", r.body);
    assert!(r.headers.get("Retry-After").is_some());
    // the retry goes through the re-declared binding
    let r = post(&t.client, &url, Some(token), "application/json", batch(&second)).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let root = t.app.url("");
    eventually(30, "both accepted batches counted", || async {
        (total_count(&t.client, &root, &t.query_token, "rtt", base, base + 3_600_000).await == 20 * 3).then_some(())
    })
    .await;
    let m = get_text(&t.client, &t.app.url("/metrics")).await;
    assert!(metric_value(&m, "netqoe_bus_publish_failures_total{reason=\"returned\"}").unwrap_or(0.0) >= 1.0, "{m}");
    let client = t.client.clone();
    t.app.shutdown().await.unwrap();
    delete_prefix(&client, &prefix).await;
}

/// A batch the broker nacks (the shard queue is full under an operator's `reject-publish`
/// length limit) is a 503 with Retry-After, never a 202: once the limit is lifted the probe's
/// retry lands, and exactly the accepted batches are counted (a nack taken for a confirm would
/// show as a 202 whose events never arrive).
#[actix_rt::test]
async fn a_nacked_batch_is_a_503_and_every_accepted_batch_is_counted() {
    let _g = BROKER.lock().await;
    let prefix = unique_prefix("nack");
    let mut overrides = rabbit_overrides(&prefix, 1);
    // one delivery in flight, held until the commit 3 s later: the next ones wait as ready
    // messages, which is what a length limit counts
    overrides.extend([
        ("NETQOE__PIPELINE__PREFETCH".to_string(), "1".to_string()),
        ("NETQOE__PIPELINE__FLUSH_INTERVAL_MS".to_string(), "3000".to_string()),
        ("NETQOE__PIPELINE__FLUSH_BATCHES".to_string(), "1000".to_string()),
    ]);
    let t = start_with(1, &overrides).await;
    let (probe, token) = (&t.probes[0].0, &t.probes[0].1);
    let url = t.app.url("/v1/events");
    let base = base_ms() + 5 * 60_000;
    let queue = format!("{prefix}events.shard.000");
    let policy = format!("{MGMT}/policies/%2F/{prefix}full");
    let r = t
        .client
        .put(&policy)
        .basic_auth("guest", "guest")
        .send_json(&serde_json::json!({
            "pattern": format!("^{}$", queue.replace('.', "\\.")),
            "definition": {"max-length": 1, "overflow": "reject-publish"},
            "apply-to": "queues",
            "priority": 99
        }))
        .await
        .unwrap();
    assert!(r.status().is_success(), "policy set: {}", r.status());
    eventually(20, "the length limit applies to the shard queue", || async {
        let q = mgmt_get(&t.client, &format!("/queues/%2F/{queue}")).await;
        (q["effective_policy_definition"]["overflow"] == "reject-publish").then_some(())
    })
    .await;
    // post 10-event batches until the broker refuses one (bounded)
    let mut accepted = 0;
    let mut refused = None;
    for i in 0..40 {
        let events = events_for(probe, base, i * 10, 10, &mut Rng(100 + i as u64));
        let r = post(&t.client, &url, Some(token), "application/json", batch(&events)).await;
        match r.status {
            202 => accepted += 1,
            503 => {
                assert!(r.headers.get("Retry-After").is_some(), "a 503 says when to retry");
                refused = Some(events);
                break;
            }
            s => panic!("unexpected {s}: {}", r.body),
        }
    }
    let refused = refused.expect("a full queue under reject-publish refuses a batch within 40 posts");
    let m = get_text(&t.client, &t.app.url("/metrics")).await;
    assert!(metric_value(&m, "netqoe_bus_publish_failures_total{reason=\"nack\"}").unwrap_or(0.0) >= 1.0, "{m}");
    // the operator lifts the limit; the probe's retry of the refused batch is accepted
    let r = t.client.delete(&policy).basic_auth("guest", "guest").send().await.unwrap();
    assert!(r.status().is_success(), "policy deleted: {}", r.status());
    eventually(30, "the refused batch is accepted on retry", || async {
        let r = post(&t.client, &url, Some(token), "application/json", batch(&refused)).await;
        (r.status == 202).then_some(())
    })
    .await;
    accepted += 1;
    let root = t.app.url("");
    let want = accepted * 10 * 3;
    let got = eventually(30, "every accepted batch counted", || async {
        let c = total_count(&t.client, &root, &t.query_token, "rtt", base, base + 3_600_000).await;
        (c >= want).then_some(c)
    })
    .await;
    assert_eq!(got, want, "{accepted} accepted batches × 10 events × 3 samples, none lost, none twice");
    let client = t.client.clone();
    t.app.shutdown().await.unwrap();
    delete_prefix(&client, &prefix).await;
}
