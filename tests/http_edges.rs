//! The HTTP surface's edges: a wrong method gets 405 with `Allow` and a problem body, an unknown
//! path 404 with one; requests the server cannot parse are counted, not logged at error level
//! (an unauthenticated log flood); a body that ends mid-upload is counted as aborted, not large.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;

#[actix_rt::test]
async fn wrong_methods_and_unknown_paths_get_problem_bodies() {
    let t = start(1, &[]).await;
    for (method, path, allow) in [
        ("DELETE", "/v1/rollups", "GET"),
        ("POST", "/v1/probes", "GET"),
        ("PUT", "/v1/incidents", "GET"),
        ("GET", "/v1/events", "POST"),
        ("POST", "/healthz", "GET"),
        ("POST", "/metrics", "GET"),
        ("DELETE", "/admin/drain", "GET, POST"),
    ] {
        let m = actix_web::http::Method::from_bytes(method.as_bytes()).unwrap();
        let mut r = t.client.request(m, t.app.url(path)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 405, "{method} {path}");
        assert_eq!(r.headers().get("allow").and_then(|v| v.to_str().ok()), Some(allow), "{method} {path}");
        assert_eq!(r.headers().get("content-type").unwrap(), "application/problem+json");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["status"], 405, "{body}");
        assert!(body["detail"].as_str().unwrap().contains(allow), "{body}");
    }
    let mut r = t.client.get(t.app.url("/v1/nothing")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!((body["status"].as_u64(), body["title"].as_str()), (Some(404), Some("Not found")));
    t.app.shutdown().await.unwrap();
}

fn raw(port: u16, bytes: &[u8], read: bool) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(bytes).unwrap();
    if read {
        let mut buf = [0u8; 512];
        let _ = s.read(&mut buf);
    }
}

#[actix_rt::test]
async fn malformed_requests_are_counted_not_logged_and_aborted_bodies_are_not_too_large() {
    let dir = tempfile::tempdir().unwrap();
    let (config, probe_token, _) = write_config(dir.path(), "[http]\nbind = \"127.0.0.1:0\"\n");
    let port = free_port();
    let stderr_path = dir.path().join("stderr.log");
    let stderr = std::fs::File::create(&stderr_path).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_netqoe"))
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env("NETQOE__HTTP__BIND", format!("127.0.0.1:{port}"))
        .env("NETQOE__LOG__LEVEL", "info")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let _guard = ChildGuard(child);
    let client = awc::Client::builder().timeout(Duration::from_secs(10)).finish();
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&client, &base).await;
    let garbage: [&[u8]; 4] = [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\x00\x00\x00\x00",
    ];
    for _ in 0..5 {
        for g in garbage {
            raw(port, g, true);
        }
    }
    // an authenticated upload that stops half-way (the client goes away)
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {probe_token}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"events\": ["
    );
    raw(port, head.as_bytes(), false);
    let metrics = eventually(10, "malformed requests counted", || async {
        let text = get_text(&client, &format!("{base}/metrics")).await;
        let n = metric_value(&text, "netqoe_http_malformed_requests_total").unwrap_or(0.0);
        let aborted = metric_value(&text, "netqoe_events_rejected_total{reason=\"aborted\"}").unwrap_or(0.0);
        (n >= 20.0 && aborted >= 1.0).then_some(text)
    })
    .await;
    assert_eq!(metric_value(&metrics, "netqoe_events_rejected_total{reason=\"too_large\"}"), Some(0.0));
    let log = std::fs::read_to_string(&stderr_path).unwrap();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert!(errors.is_empty(), "no error lines for bad clients at info level: {errors:?}");
}
