//! Clients that declare a large body, send a few bytes and stall: the server holds memory only
//! for what arrived, answers each 408 and closes it within `http.body_timeout_s`, refuses bodies
//! beyond `http.max_bodies_per_probe` at once with 429, and stays healthy meanwhile.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const STALLED: usize = 200;
const TIMEOUT_S: u64 = 3;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

async fn stall(port: u16, token: &str) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n\
         Content-Length: 1048576\r\n\r\n{{\"events\": [{{\"event_id\": \"a\", "
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s
}

/// Reads until the server closes the connection; returns what it sent.
async fn until_closed(mut s: TcpStream, within: Duration) -> String {
    let mut out = Vec::new();
    let read = tokio::time::timeout(within, s.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the server did not close a stalled connection within {within:?}");
    String::from_utf8_lossy(&out).into_owned()
}

#[actix_rt::test]
async fn stalled_bodies_cost_little_and_are_closed_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (config, probe_token, _) = write_config(
        dir.path(),
        &format!("[http]\nbind = \"127.0.0.1:0\"\nbody_timeout_s = {TIMEOUT_S}\nmax_bodies_per_probe = {STALLED}\n"),
    );
    let port = free_port();
    let child = ChildGuard(spawn_netqoe(&config, &["run"], port, &[]));
    let client = awc::Client::builder().timeout(Duration::from_secs(10)).finish();
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&client, &base).await;
    let before = rss_kib(child.id());

    let started = Instant::now();
    let mut conns = Vec::with_capacity(STALLED);
    for _ in 0..STALLED {
        conns.push(stall(port, &probe_token).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = rss_kib(child.id());
    eprintln!("RSS {before} KiB before, {during} KiB with {STALLED} stalled bodies");
    assert!(
        during.saturating_sub(before) < 64 * 1024,
        "{STALLED} stalled 1 MiB bodies grew RSS by {} KiB (from {before} KiB)",
        during - before
    );
    // healthy meanwhile, and one body more than the probe may send at once is refused outright
    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let extra = until_closed(stall(port, &probe_token).await, Duration::from_secs(5)).await;
    assert!(extra.starts_with("HTTP/1.1 429"), "{extra}");
    assert!(extra.to_ascii_lowercase().contains("retry-after: 1"), "{extra}");
    assert!(extra.contains("http.max_bodies_per_probe"), "{extra}");

    // every stalled one is answered 408 (a problem naming the setting) and closed
    let deadline = Duration::from_secs(TIMEOUT_S + 10);
    for c in conns {
        let left = deadline.saturating_sub(started.elapsed()).max(Duration::from_millis(1));
        let got = until_closed(c, left).await;
        assert!(got.starts_with("HTTP/1.1 408"), "{got}");
        assert!(got.contains("http.body_timeout_s"), "{got}");
    }
    let metrics = client.get(format!("{base}/metrics")).send().await.unwrap().body().await.unwrap();
    let metrics = String::from_utf8_lossy(&metrics).into_owned();
    assert_eq!(metric_value(&metrics, "netqoe_events_rejected_total{reason=\"body_timeout\"}"), Some(STALLED as f64));
    let too_large = metric_value(&metrics, "netqoe_events_rejected_total{reason=\"too_large\"}").unwrap_or(0.0);
    assert_eq!(too_large, 0.0, "a stalled body is not a large one");

    // the slots are free again: a normal batch goes through
    let ev = serde_json::json!({"event_id": "ok-1", "seq": 1, "ts": rfc3339(netqoe_actors::now_ms()), "target": "t", "kind": "icmp", "rtt_ms": 1.0});
    let r = post(&client, &format!("{base}/v1/events"), Some(&probe_token), "application/json", batch(&[ev])).await;
    assert_eq!(r.status, 202, "{}", r.body);
}
