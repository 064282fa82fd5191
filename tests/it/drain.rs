//! Before a rolling update an operator drains a node over the admin endpoint: only an admin token
//! may; from then on ingest answers 503 with Retry-After and /readyz fails (load balancers move
//! away), the pipeline commits its open windows, and `GET /admin/drain` reports `done`. Nothing
//! accepted before the drain is lost. Also: ingest and query over HTTPS (rustls) with a
//! certificate from the configuration, and clear errors for a bad certificate setting.

use std::time::Duration;

use crate::common::*;
use netqoe::config::{Config, QueryToken};

async fn admin_call(client: &awc::Client, method: &str, url: &str, token: Option<&str>) -> Resp {
    let mut r = if method == "POST" { client.post(url) } else { client.get(url) };
    if let Some(t) = token {
        r = r.insert_header(("Authorization", format!("Bearer {t}")));
    }
    let mut res = r.send().await.expect("admin endpoint answers");
    let status = res.status().as_u16();
    let body = res.body().await.unwrap();
    Resp { status, headers: res.headers().clone(), body: serde_json::from_slice(&body).unwrap_or_default() }
}

#[actix_rt::test]
async fn admin_drain_stops_ingest_commits_and_reports_done() {
    // Commits held back (60 s, 1000 batches): only the drain can have committed what is stored.
    let mut p =
        prepare(1, &[("NETQOE__PIPELINE__FLUSH_INTERVAL_MS", "60000"), ("NETQOE__PIPELINE__FLUSH_BATCHES", "1000")]);
    let (admin, digest) = netqoe::auth::mint(netqoe::auth::ADMIN_PREFIX);
    p.cfg.admin_tokens.push(QueryToken { name: "deployer".into(), token_sha256: digest.into(), revoked: false });
    let t = p.start().await;
    let (probe, token) = (&t.probes[0].0, &t.probes[0].1);
    let base = base_ms();
    let events = events_for(probe, base, 1, 30, &mut Rng(5));
    let ingest = t.app.url("/v1/events");
    assert_eq!(post(&t.client, &ingest, Some(token), "application/json", batch(&events)).await.status, 202);

    let drain = t.app.url("/admin/drain");
    assert_eq!(admin_call(&t.client, "POST", &drain, None).await.status, 401);
    assert_eq!(admin_call(&t.client, "POST", &drain, Some(&t.query_token)).await.status, 403);
    assert_eq!(admin_call(&t.client, "POST", &drain, Some(token)).await.status, 403);
    assert_eq!(admin_call(&t.client, "GET", &drain, Some("nqa_forged")).await.status, 401);
    let r = admin_call(&t.client, "POST", &drain, Some(&admin)).await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body["draining"], true);

    // stop accepting: 503 with Retry-After, nothing stored; not ready any more
    let more = events_for(probe, base, 31, 5, &mut Rng(6));
    let refused = post(&t.client, &ingest, Some(token), "application/json", batch(&more)).await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(refused.headers.get("Retry-After").is_some());
    let ready = t.client.get(t.app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 503);

    let status = eventually(20, "the drain reports done", || async {
        let s = admin_call(&t.client, "GET", &drain, Some(&admin)).await;
        (s.body["done"] == true).then_some(s.body)
    })
    .await;
    assert_eq!((status["pipeline"].as_str(), status["in_flight_requests"].as_u64()), (Some("drained"), Some(0)));
    assert_eq!(status["journal_backlog"], 0, "the pipeline caught up with the embedded journal before it stopped");
    // the drained pipeline committed every accepted event (as partial revisions of open windows)
    let stored = total_count(&t.client, &t.app.url(""), &t.query_token, "rtt", base, base + 3_600_000).await;
    assert_eq!(stored, 30 * 3, "30 events × 3 samples, none lost");
    // asking again changes nothing; the final shutdown drains (idempotently) once more
    assert_eq!(admin_call(&t.client, "POST", &drain, Some(&admin)).await.status, 202);
    t.app.shutdown().await.unwrap();
}

/// A fresh self-signed certificate and key for 127.0.0.1, written as PEM files.
fn self_signed(dir: &std::path::Path) -> (String, String) {
    let (cert_pem, key) = self_signed_cert("netqoe-test", 10);
    let (cert, keyf) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&cert, cert_pem.to_pem().unwrap()).unwrap();
    std::fs::write(&keyf, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    (cert.display().to_string(), keyf.display().to_string())
}

/// One HTTP/1.1 request over TLS (trusting the PEM file `ca`), run off the runtime: (status,
/// body). `token` goes in `Authorization: Bearer`; a non-empty `body` is sent as JSON.
async fn https(
    addr: std::net::SocketAddr,
    ca: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: String,
) -> (u16, String) {
    use std::io::{Read, Write};
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let json = if body.is_empty() { "" } else { "Content-Type: application/json\r\n" };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}{json}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let ca = ca.to_string();
    tokio::task::spawn_blocking(move || {
        let mut b = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls()).unwrap();
        b.set_ca_file(&ca).unwrap();
        let tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut s = b.build().connect("127.0.0.1", tcp).expect("the certificate verifies against its CA");
        s.write_all(request.as_bytes()).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out).to_string();
        let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        (status, body)
    })
    .await
    .unwrap()
}

#[actix_rt::test]
async fn ingest_and_query_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let t = start(1, &[("NETQOE__HTTP__TLS_CERT", &cert), ("NETQOE__HTTP__TLS_KEY", &key)]).await;
    assert!(t.app.url("/").starts_with("https://"));
    let (probe, token) = (&t.probes[0].0, &t.probes[0].1);
    let body = String::from_utf8(batch(&events_for(probe, base_ms(), 1, 3, &mut Rng(1)))).unwrap();
    let addr = t.app.addr;
    let (status, body) = https(addr, &cert, "POST", "/v1/events", Some(token), body).await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = https(addr, &cert, "GET", "/v1/probes", Some(&t.query_token), String::new()).await;
    assert_eq!(status, 200, "{body}");
    // plain HTTP on the TLS port gets no HTTP answer
    let plain = t.client.get(format!("http://{addr}/healthz")).send().await;
    assert!(plain.is_err() || plain.unwrap().status().as_u16() >= 400);
    t.app.shutdown().await.unwrap();
}

#[actix_rt::test]
async fn the_admin_listener_serves_https_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let overrides = [
        ("NETQOE__HTTP__TLS_CERT", cert.as_str()),
        ("NETQOE__HTTP__TLS_KEY", key.as_str()),
        ("NETQOE__HTTP__ADMIN_BIND", "127.0.0.1:0"),
        ("NETQOE__HTTP__ADMIN_TLS", "true"),
    ];
    let mut p = prepare(1, &overrides);
    let (admin, digest) = netqoe::auth::mint(netqoe::auth::ADMIN_PREFIX);
    p.cfg.admin_tokens.push(QueryToken { name: "deployer".into(), token_sha256: digest.into(), revoked: false });
    let t = p.start().await;
    let addr = t.app.admin_addr.expect("a separate admin listener");
    assert_ne!(addr, t.app.addr);
    let (status, _) = https(addr, &cert, "GET", "/healthz", None, String::new()).await;
    assert_eq!(status, 200, "health over HTTPS on the admin port");
    let (status, body) = https(addr, &cert, "GET", "/metrics", None, String::new()).await;
    assert_eq!(status, 200);
    assert!(body.contains("netqoe_"), "metrics over HTTPS");
    let (status, body) = https(addr, &cert, "POST", "/admin/drain", Some(&admin), String::new()).await;
    assert_eq!(status, 202, "{body}");
    // plain HTTP on the admin port gets no HTTP answer
    let plain = t.client.get(format!("http://{addr}/healthz")).send().await;
    assert!(plain.is_err() || plain.unwrap().status().as_u16() >= 400);
    t.app.shutdown().await.unwrap();
}

#[test]
fn a_bad_certificate_setting_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let load = |env: Vec<(&str, &str)>| {
        let env: Vec<(String, String)> = env.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::load_from(None, env).unwrap_err().to_string()
    };
    let e = load(vec![("NETQOE__HTTP__TLS_CERT", &cert)]);
    assert!(e.contains("http.tls_key: required"), "{e}");
    let e = load(vec![("NETQOE__HTTP__TLS_CERT", &key), ("NETQOE__HTTP__TLS_KEY", &key)]);
    assert!(e.contains("http.tls_cert") && e.contains("CERTIFICATE"), "{e}");
    let e = load(vec![("NETQOE__HTTP__TLS_CERT", "/nonexistent.pem"), ("NETQOE__HTTP__TLS_KEY", &key)]);
    assert!(e.contains("http.tls_cert") && e.contains("/nonexistent.pem"), "{e}");
    let e = load(vec![("NETQOE__HTTP__ADMIN_TLS", "true"), ("NETQOE__HTTP__ADMIN_BIND", "127.0.0.1:0")]);
    assert!(e.contains("http.admin_tls: needs http.tls_cert"), "{e}");
    let e = load(vec![
        ("NETQOE__HTTP__ADMIN_TLS", "true"),
        ("NETQOE__HTTP__TLS_CERT", &cert),
        ("NETQOE__HTTP__TLS_KEY", &key),
    ]);
    assert!(e.contains("http.admin_tls: needs http.admin_bind"), "{e}");
}

/// An admin token may drain and nothing else: ingest and query refuse it (403 with a problem
/// body naming `Authorization`), and nothing it posts is stored.
#[actix_rt::test]
async fn an_admin_token_is_refused_on_ingest_and_query() {
    let mut p = prepare(1, &[]);
    let (admin, digest) = netqoe::auth::mint(netqoe::auth::ADMIN_PREFIX);
    p.cfg.admin_tokens.push(QueryToken { name: "deployer".into(), token_sha256: digest.into(), revoked: false });
    let t = p.start().await;
    let base = base_ms();
    let events = events_for(&t.probes[0].0, base, 1, 5, &mut Rng(2));
    let r = post(&t.client, &t.app.url("/v1/events"), Some(&admin), "application/json", batch(&events)).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.body["field"], "Authorization", "{}", r.body);
    for path in ["/v1/rollups?metric=rtt", "/v1/probes", "/v1/incidents"] {
        let r = get(&t.client, &t.app.url(path), Some(&admin)).await;
        assert_eq!(r.status, 403, "{path}: {}", r.body);
    }
    // the probe's own post still works, and only it is counted
    let r = post(&t.client, &t.app.url("/v1/events"), Some(&t.probes[0].1), "application/json", batch(&events)).await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body["accepted"], 5, "the admin token's copy was not accepted: {}", r.body);
    t.app.shutdown().await.unwrap();
}

/// With no admin token configured nobody can drain: every other token is refused and ingest
/// keeps accepting.
#[actix_rt::test]
async fn without_admin_tokens_nobody_can_drain() {
    let t = start(1, &[]).await;
    let drain = t.app.url("/admin/drain");
    assert_eq!(admin_call(&t.client, "POST", &drain, None).await.status, 401);
    assert_eq!(admin_call(&t.client, "POST", &drain, Some(&t.probes[0].1)).await.status, 403);
    assert_eq!(admin_call(&t.client, "POST", &drain, Some(&t.query_token)).await.status, 403);
    let (unknown, _) = netqoe::auth::mint(netqoe::auth::ADMIN_PREFIX);
    assert_eq!(admin_call(&t.client, "POST", &drain, Some(&unknown)).await.status, 401);
    assert_eq!(admin_call(&t.client, "GET", &drain, Some(&t.query_token)).await.status, 403);
    let events = events_for(&t.probes[0].0, base_ms(), 1, 3, &mut Rng(4));
    let r = post(&t.client, &t.app.url("/v1/events"), Some(&t.probes[0].1), "application/json", batch(&events)).await;
    assert_eq!(r.status, 202, "not draining: {}", r.body);
    let ready = t.client.get(t.app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    t.app.shutdown().await.unwrap();
}
