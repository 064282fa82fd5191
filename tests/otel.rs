//! With the `otel` feature and `OTEL_EXPORTER_OTLP_ENDPOINT` set, the per-batch spans reach an
//! OTLP/HTTP collector: a loopback collector receives `POST /v1/traces` carrying the
//! `ingest.batch` span with the batch id the 202 answered. Run by scripts/test.sh as
//! `cargo test --features otel --test otel`.
#![cfg(feature = "otel")]

mod common;

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

use common::*;

/// (path, body) of every request the collector received.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// Accepts HTTP requests on loopback and keeps (path, body) of each.
fn collector() -> (String, Received) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let keep = got.clone();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            let (head_end, length) = loop {
                let Ok(n) = s.read(&mut chunk) else { break (0, 0) };
                if n == 0 {
                    break (0, 0);
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                        .unwrap_or(0);
                    break (i + 4, len);
                }
            };
            while buf.len() < head_end + length {
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
            let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
            keep.lock().unwrap().push((path, buf[head_end..].to_vec()));
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n");
        }
    });
    (addr, got)
}

#[actix_rt::test]
async fn batch_spans_are_exported_over_otlp() {
    let (endpoint, got) = collector();
    std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint);
    netqoe::init_logging("plain", "info");
    let t = start(1, &[]).await;
    let (probe, token) = (&t.probes[0].0, &t.probes[0].1);
    let events = events_for(probe, base_ms(), 1, 4, &mut Rng(3));
    let r = post(&t.client, &t.app.url("/v1/events"), Some(token), "application/json", batch(&events)).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.body["batch_id"].as_str().unwrap().to_string();
    // the 202 means durable, not aggregated: wait for the batch's commit (a shutdown before it
    // leaves the batch in the journal for the next start, and no commit span)
    let metrics = t.app.url("/metrics");
    eventually(30, "the batch is aggregated and committed", || async {
        let text = get_text(&t.client, &metrics).await;
        metric_value(&text, "netqoe_batches_aggregated_total").filter(|v| *v >= 1.0)
    })
    .await;
    t.app.shutdown().await.unwrap();
    // flushes the batch span processor: the export happens now or never
    tokio::task::spawn_blocking(netqoe::shutdown_tracing).await.unwrap();
    let got = got.lock().unwrap().clone();
    let traces: Vec<&Vec<u8>> = got.iter().filter(|(p, _)| p == "/v1/traces").map(|(_, b)| b).collect();
    assert!(
        !traces.is_empty(),
        "no POST /v1/traces reached the collector: {:?}",
        got.iter().map(|g| &g.0).collect::<Vec<_>>()
    );
    let has = |needle: &[u8]| traces.iter().any(|b| b.windows(needle.len()).any(|w| w == needle));
    assert!(has(b"ingest.batch"), "the ingest span was exported");
    assert!(has(id.as_bytes()), "with its batch id {id}");
    assert!(has(b"store.commit"), "the commit span was exported");
}
