//! The probe agent on loopback: it measures a `netqoe reflector` (UDP, STAMP) and a TCP port,
//! netqoe ingests, and the rollups show every measurement exactly once — also when ingest is
//! down for a while (the batches wait in the spool and drain in order) and when the probe is
//! restarted with batches still spooled.

use std::time::Duration;

use crate::common::*;
use netqoe::probe::{ProbeConfig, Spool, TargetConfig};

fn probe_cfg(state: &std::path::Path, ingest: &str, token: &str, reflector: &str, tcp: &str) -> ProbeConfig {
    let t = |id: &str, kind: &str, address: &str| TargetConfig {
        id: id.into(),
        kind: kind.into(),
        address: address.into(),
        interval_s: 1,
        packets: 10,
        timeout_ms: 500,
        name: "shop.test".into(),
        record: "A".into(),
        tls_verify: false,
    };
    ProbeConfig {
        batch_max_events: 4,
        batch_max_age_ms: 500,
        spool_max_batches: 1000,
        ..ProbeConfig::new(
            ingest,
            token,
            state,
            "probe-0",
            vec![t("reflector.test", "udp", reflector), t("tcp.test", "tcp", tcp)],
        )
    }
}

/// A DNS responder on loopback: NXDOMAIN for `nx.test`, SERVFAIL for `sf.test`, otherwise NOERROR
/// with one A record (127.0.0.1) — a well-formed message a real resolver library accepts.
async fn dns_responder() -> String {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else { return };
            let q = &buf[..n];
            // header + the question (labels, then type and class); any EDNS record is dropped
            let mut end = 12;
            while end < n && q[end] != 0 {
                end += 1 + q[end] as usize;
            }
            let end = (end + 5).min(n);
            let name = &q[12..end];
            let rcode = if name.windows(4).any(|w| w == b"\x02nx\x04") {
                3
            } else if name.windows(4).any(|w| w == b"\x02sf\x04") {
                2
            } else {
                0
            };
            let mut r = q[..end].to_vec();
            r[2] = 0x80 | (q[2] & 0x01); // QR, RD copied
            r[3] = 0x80 | rcode; // RA, rcode
            r[6..12].copy_from_slice(&[0, u8::from(rcode == 0), 0, 0, 0, 0]);
            if rcode == 0 {
                r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1]);
            }
            let _ = socket.send_to(&r, from).await;
        }
    });
    addr
}

/// An HTTPS server on loopback with a fresh self-signed certificate; answers 200 to anything.
fn tls_server() -> String {
    use openssl::ssl::{SslAcceptor, SslMethod};
    use std::io::{Read, Write};
    let (cert, key) = self_signed_cert("localhost", 30);
    let mut acc = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
    acc.set_private_key(&key).unwrap();
    acc.set_certificate(&cert).unwrap();
    let acc = std::sync::Arc::new(acc.build());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let acc = acc.clone();
            std::thread::spawn(move || {
                let Ok(mut s) = acc.accept(stream) else { return };
                let mut buf = [0u8; 2048];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
                let _ = s.shutdown();
            });
        }
    });
    format!("https://{addr}/")
}

async fn reflector() -> String {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap().to_string();
    tokio::spawn(netqoe::stamp::reflect(socket, 0.0, 1));
    addr
}

/// (RTT samples toward reflector.test, connect samples toward tcp.test) stored for probe-0.
/// Batches waiting in the spool of the probe whose state directory is `state` (read from the
/// directory itself: the depth gauge is process-wide and other tests move it concurrently).
fn spooled(state: &std::path::Path) -> usize {
    Spool::open(state, 1000).unwrap().depth()
}

/// Ingest (re)started on the port the probe was configured with while it was down.
async fn ingest_back_on(app: Prepared, port: u16) -> TestApp {
    app.start_on(std::net::TcpListener::bind(("127.0.0.1", port)).unwrap()).await
}

async fn counts(t: &TestApp) -> (u64, u64) {
    let now = netqoe_actors::now_ms();
    let url = |m: &str| {
        let target = if m == "rtt" { "reflector.test" } else { "tcp.test" };
        t.app.url(&format!(
            "/v1/rollups?probe=probe-0&target={target}&metric={m}&tier=1m&from={}&to={}",
            now - 3_600_000,
            now + 60_000
        ))
    };
    let sum = |v: &serde_json::Value| {
        v["rollups"].as_array().map_or(0, |a| a.iter().map(|w| w["count"].as_u64().unwrap_or(0)).sum())
    };
    let rtt = get(&t.client, &url("rtt"), Some(&t.query_token)).await;
    let con = get(&t.client, &url("connect"), Some(&t.query_token)).await;
    (sum(&rtt.body), sum(&con.body))
}

#[actix_rt::test]
async fn measurements_arrive_with_plausible_values() {
    let t = start(1, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = probe_cfg(
        dir.path(),
        &format!("http://{}", t.app.addr),
        &t.probes[0].1,
        &reflector().await,
        &t.app.addr.to_string(),
    );
    let dns = dns_responder().await;
    let mut d = cfg.targets[0].clone();
    (d.id, d.kind, d.address) = ("resolver.test".into(), "dns".into(), dns.clone());
    cfg.targets.push(d.clone());
    d.id = "nx.resolver.test".into();
    d.name = "nx.test".into();
    cfg.targets.push(d.clone());
    (d.id, d.kind, d.address) = ("web.test".into(), "http".into(), format!("http://{}/healthz", t.app.addr));
    cfg.targets.push(d.clone());
    d.name = "sf.test".into();
    (d.id, d.kind, d.address) = ("sf.resolver.test".into(), "dns".into(), dns.clone());
    cfg.targets.push(d.clone());
    d.kind = "http".into();
    let https = tls_server();
    (d.id, d.address) = ("tls.test".into(), https.clone());
    cfg.targets.push(d.clone());
    // the same server measured as a TLS endpoint: handshake and certificate expiry (30 days)
    let hostport = https.trim_start_matches("https://").trim_end_matches('/').to_string();
    (d.id, d.kind, d.address) = ("handshake.test".into(), "tls".into(), hostport);
    cfg.targets.push(d);
    tokio::time::timeout(Duration::from_secs(30), netqoe::probe::run(cfg, Some(3))).await.unwrap().unwrap();
    // every target's 3 events reach its primary metric's window (they travel in several batches)
    let primary = [
        ("resolver.test", "dns"),
        ("nx.resolver.test", "dns"),
        ("sf.resolver.test", "dns"),
        ("web.test", "ttfb"),
        ("tls.test", "ttfb"),
        ("handshake.test", "tls"),
    ];
    eventually(20, "every target's 3 rounds aggregated", || async {
        let now = netqoe_actors::now_ms();
        for (target, metric) in primary {
            let url = t.app.url(&format!(
                "/v1/rollups?probe=probe-0&target={target}&metric={metric}&tier=1m&from={}&to={}",
                now - 3_600_000,
                now + 60_000
            ));
            let r = get(&t.client, &url, Some(&t.query_token)).await;
            let events: u64 = r.body["rollups"].as_array()?.iter().map(|w| w["events"].as_u64().unwrap_or(0)).sum();
            if events < 3 {
                return None;
            }
        }
        Some(())
    })
    .await;
    let c = eventually(20, "3 rounds aggregated", || async {
        let c = counts(&t).await;
        (c == (30, 3)).then_some(c)
    })
    .await;
    assert_eq!(c, (30, 3), "3 × 10 RTT samples and 3 connects, each once");
    let dns = |target: &str| {
        let now = netqoe_actors::now_ms();
        t.app.url(&format!(
            "/v1/rollups?probe=probe-0&target={target}&metric=dns&tier=1m&from={}&to={}",
            now - 3_600_000,
            now + 60_000
        ))
    };
    let ok = get(&t.client, &dns("resolver.test"), Some(&t.query_token)).await;
    let samples: u64 = ok.body["rollups"].as_array().unwrap().iter().map(|w| w["count"].as_u64().unwrap()).sum();
    assert_eq!(samples, 3, "three resolutions timed: {}", ok.body);
    let nx = get(&t.client, &dns("nx.resolver.test"), Some(&t.query_token)).await;
    let errors: u64 =
        nx.body["rollups"].as_array().unwrap().iter().map(|w| w["errors"]["nxdomain"].as_u64().unwrap_or(0)).sum();
    assert_eq!(errors, 3, "NXDOMAIN counted as such: {}", nx.body);
    let sf = get(&t.client, &dns("sf.resolver.test"), Some(&t.query_token)).await;
    let errors: u64 =
        sf.body["rollups"].as_array().unwrap().iter().map(|w| w["errors"]["servfail"].as_u64().unwrap_or(0)).sum();
    assert_eq!(errors, 3, "SERVFAIL counted as such: {}", sf.body);
    let window = |target: &str, metric: &str| {
        let now = netqoe_actors::now_ms();
        t.app.url(&format!(
            "/v1/rollups?probe=probe-0&target={target}&metric={metric}&tier=1m&from={}&to={}",
            now - 3_600_000,
            now + 60_000
        ))
    };
    for (target, metric) in [
        ("web.test", "ttfb"),
        ("web.test", "connect"),
        ("web.test", "total"),
        ("tls.test", "tls"),
        ("tls.test", "ttfb"),
        ("tls.test", "total"),
        ("handshake.test", "connect"),
        ("handshake.test", "tls"),
    ] {
        let r = get(&t.client, &window(target, metric), Some(&t.query_token)).await;
        let rows = r.body["rollups"].as_array().unwrap();
        let n: u64 = rows.iter().map(|w| w["count"].as_u64().unwrap()).sum();
        assert_eq!(n, 3, "{target} {metric}: {}", r.body);
        assert!(rows.iter().all(|w| w["errors"].as_object().unwrap().is_empty()), "{}", r.body);
        assert!(rows.iter().all(|w| w["max"].as_f64().unwrap() < 1000.0), "loopback timings: {}", r.body);
    }
    // the self-signed certificate expires 30 days after it was made, a few seconds ago
    for target in ["tls.test", "handshake.test"] {
        let r = get(&t.client, &window(target, "cert_days"), Some(&t.query_token)).await;
        let rows = r.body["rollups"].as_array().unwrap();
        assert_eq!(rows.iter().map(|w| w["count"].as_u64().unwrap()).sum::<u64>(), 3, "{target}: {}", r.body);
        for w in rows {
            let (min, max) = (w["min"].as_f64().unwrap(), w["max"].as_f64().unwrap());
            assert!(min > 29.9 && max <= 30.0, "{target}: days to expiry {min}..{max}");
        }
    }
    let now = netqoe_actors::now_ms();
    let r = get(
        &t.client,
        &t.app.url(&format!(
            "/v1/rollups?probe=probe-0&metric=rtt&tier=1m&from={}&to={}",
            now - 3_600_000,
            now + 60_000
        )),
        Some(&t.query_token),
    )
    .await;
    for w in r.body["rollups"].as_array().unwrap() {
        assert!(w["p50"].as_f64().unwrap() < 5.0, "loopback RTT: {w}");
        assert_eq!(w["loss_pct"].as_f64().unwrap(), 0.0);
    }
    t.app.shutdown().await.unwrap();
}

#[actix_rt::test]
async fn a_probe_restarted_mid_spool_delivers_everything_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let app = prepare(1, &[]);
    let port = free_port();
    let ingest = format!("http://127.0.0.1:{port}");
    let refl = reflector().await;
    // the TCP target is a port nobody listens on over TCP: refused connects (error events)
    let pcfg = probe_cfg(dir.path(), &ingest, &app.probes[0].1, &refl, &refl);
    // ingest is down: two rounds measured, spooled; then the probe is stopped mid-spool
    let _ = tokio::time::timeout(Duration::from_millis(2500), netqoe::probe::run(pcfg.clone(), Some(2))).await;
    let waiting = spooled(dir.path());
    assert!(waiting > 0, "batches wait in the spool while ingest is away");
    // a restarted probe with ingest back: the spool drains in order, nothing lost or doubled; and
    // the new run measures one more round, whose seqs must be new (a reused seq would be dropped
    // as a duplicate of a spooled event)
    let t = ingest_back_on(app, port).await;
    tokio::time::timeout(Duration::from_secs(30), netqoe::probe::run(pcfg, Some(1))).await.unwrap().unwrap();
    assert_eq!(spooled(dir.path()), 0, "the spool drained");
    eventually(20, "3 rounds aggregated exactly once", || async { (counts(&t).await.0 == 30).then_some(()) }).await;
    t.app.shutdown().await.unwrap();
}

/// The acceptance scenario: ingest stopped for 60 s while the probe keeps measuring, then
/// restarted: every measurement is in the rollups exactly once, and the spool rose and drained.
/// The allowed lateness is 0, so the spool must drain in order: a batch delivered after a newer
/// one from a later minute would be dropped as late and the count would come up short.
/// The spool's depth is read from this probe's own spool directory: the depth gauge is
/// process-wide, and the other probe tests in this binary move it concurrently.
#[actix_rt::test]
async fn ingest_stopped_for_a_minute_then_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let prepared = prepare(1, &[("NETQOE__PIPELINE__ALLOWED_LATENESS_S", "0")]);
    let port = free_port();
    let app = netqoe::app::start(prepared.cfg.clone(), std::net::TcpListener::bind(("127.0.0.1", port)).unwrap())
        .await
        .unwrap();
    let refl = reflector().await;
    let metrics_port = free_port();
    let mut pcfg = probe_cfg(dir.path(), &format!("http://127.0.0.1:{port}"), &prepared.probes[0].1, &refl, &refl);
    pcfg.targets.truncate(1); // the STAMP target only
    pcfg.metrics_bind = format!("127.0.0.1:{metrics_port}");
    let rounds = 70;
    let probe = actix_rt::spawn(netqoe::probe::run(pcfg, Some(rounds)));
    tokio::time::sleep(Duration::from_secs(3)).await;
    app.shutdown().await.unwrap();
    let mut peak = 0;
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_secs(5)).await;
        peak = peak.max(spooled(dir.path()));
    }
    assert!(peak >= 5, "the spool grew while ingest was away (peak {peak})");
    let client = awc::Client::builder().timeout(Duration::from_secs(10)).finish();
    let text = get_text(&client, &format!("http://127.0.0.1:{metrics_port}/metrics")).await;
    assert!(metric_value(&text, "netqoe_probe_spool_depth").is_some(), "the probe exports its spool depth");
    let t = ingest_back_on(prepared, port).await;
    tokio::time::timeout(Duration::from_secs(60), probe).await.unwrap().unwrap().unwrap();
    assert_eq!(spooled(dir.path()), 0, "the spool drained");
    let c = eventually(30, "every round aggregated exactly once", || async {
        let c = counts(&t).await.0;
        (c >= rounds * 10).then_some(c)
    })
    .await;
    assert_eq!(c, rounds * 10, "{rounds} rounds × 10 samples, none lost (none dropped as late), none twice");
    t.app.shutdown().await.unwrap();
}

/// ICMP echo to loopback where this machine allows ICMP sockets; otherwise the probe must refuse
/// the target at start with the reason (checked either way, never silently skipped).
#[actix_rt::test]
async fn icmp_echo_or_a_clear_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = probe_cfg(dir.path(), "http://127.0.0.1:9", "t", "127.0.0.1:9", "127.0.0.1:9");
    cfg.targets.truncate(1);
    (cfg.targets[0].kind, cfg.targets[0].address, cfg.targets[0].id) = ("icmp".into(), "127.0.0.1".into(), "lo".into());
    match netqoe::probe::measure::icmp::available() {
        Ok(kind) => {
            cfg.validate().unwrap();
            let e = serde_json::to_value(netqoe::probe::measure(&cfg.targets[0], "p", 1).await).unwrap();
            eprintln!("ICMP via a {kind:?} socket: {e}");
            assert_eq!(e["kind"], "icmp");
            assert_eq!((e["sent"].as_u64(), e["received"].as_u64()), (Some(10), Some(10)), "{e}");
            let rtts = e["rtt_samples_ms"].as_array().unwrap();
            assert!(rtts.iter().all(|x| x.as_f64().unwrap() < 5.0), "loopback: {e}");
            // and over IPv6, where this machine has ::1
            if std::net::UdpSocket::bind("[::1]:0").is_ok() {
                cfg.targets[0].address = "::1".into();
                let e = serde_json::to_value(netqoe::probe::measure(&cfg.targets[0], "p", 2).await).unwrap();
                eprintln!("ICMPv6 to ::1: {e}");
                assert_eq!((e["sent"].as_u64(), e["received"].as_u64()), (Some(10), Some(10)), "{e}");
            } else {
                eprintln!("no IPv6 loopback here: ICMPv6 not checked");
            }
        }
        Err(why) => {
            eprintln!("ICMP not permitted here ({why}): checking the refusal");
            let e = cfg.validate().unwrap_err().to_string();
            assert!(e.contains("targets[0].kind") && e.contains("unavailable"), "{e}");
        }
    }
}

#[test]
fn a_bad_probe_config_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("probe.toml");
    std::fs::write(&p, "ingest_url = \"http://x\"\ntoken = \"t\"\nstate_dir = \"/tmp/s\"\nprobe_id = \"p\"\n[[targets]]\nid = \"a\"\nkind = \"udp\"\naddress = \"127.0.0.1:862\"\ncolour = \"red\"\n").unwrap();
    let e = ProbeConfig::load(&p).unwrap_err().to_string();
    assert!(e.contains("targets[0]") && e.contains("colour"), "{e}");
    std::fs::write(&p, "ingest_url = \"ftp://x\"\ntoken = \"t\"\nstate_dir = \"/tmp/s\"\nprobe_id = \"p\"\n[[targets]]\nid = \"a\"\nkind = \"udp\"\naddress = \"127.0.0.1:862\"\n").unwrap();
    let e = ProbeConfig::load(&p).unwrap_err().to_string();
    assert!(e.contains("ingest_url"), "{e}");
    let head =
        "ingest_url = \"http://x\"\ntoken = \"t\"\nstate_dir = \"/tmp/s\"\nprobe_id = \"p\"\n[[targets]]\nid = \"a\"\n";
    for (target, field) in [
        ("kind = \"tls\"\naddress = \"example.net\"\n", "targets[0].address"),
        ("kind = \"dns\"\naddress = \"system\"\nname = \"a..b\"\n", "targets[0].name"),
        ("kind = \"dns\"\naddress = \"system\"\nname = \"a.b\"\nrecord = \"XX\"\n", "targets[0].record"),
        ("kind = \"dns\"\naddress = \"resolver\"\nname = \"a.b\"\n", "targets[0].address"),
        ("kind = \"smtp\"\naddress = \"a:25\"\n", "targets[0].kind"),
    ] {
        std::fs::write(&p, format!("{head}{target}")).unwrap();
        let e = ProbeConfig::load(&p).unwrap_err().to_string();
        assert!(e.contains(field), "{field}: {e}");
    }
}

/// A certificate the system roots do not vouch for is a `cert_error` when verification is on, and
/// the HTTP measurement times the whole body, not only its first byte.
#[actix_rt::test]
async fn certificate_errors_and_total_time() {
    let https = tls_server();
    let hostport = https.trim_start_matches("https://").trim_end_matches('/').to_string();
    let timeout = Duration::from_secs(2);
    let (u, h) = (https.clone(), hostport.clone());
    let (http, tls) = tokio::task::spawn_blocking(move || {
        (netqoe::probe::http_measure(&u, timeout, true), netqoe::probe::tls_measure(&h, timeout, true))
    })
    .await
    .unwrap();
    assert_eq!(http.unwrap_err(), netqoe_domain::Status::CertError);
    assert_eq!(tls.unwrap_err(), netqoe_domain::Status::CertError);
    let ok = tokio::task::spawn_blocking(move || netqoe::probe::http_measure(&https, timeout, false)).await.unwrap();
    let ok = ok.unwrap();
    assert_eq!(ok.status, 200);
    assert!(ok.total_ms >= ok.ttfb_ms, "{ok:?}");
    assert!(ok.cert_days.is_some_and(|d| d > 29.9 && d <= 30.0), "{ok:?}");

    // a slow body: the first byte at once, the last 300 ms later
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello");
        std::thread::sleep(Duration::from_millis(300));
        let _ = s.write_all(b"world");
    });
    let url = format!("http://{addr}/slow");
    let slow = tokio::task::spawn_blocking(move || netqoe::probe::http_measure(&url, timeout, true)).await.unwrap();
    let slow = slow.unwrap();
    assert!(slow.ttfb_ms < 250.0 && slow.total_ms >= 300.0, "{slow:?}");
}

/// A probe stopped (SIGTERM) before its batch was due writes what it measured to the spool, and
/// the next start delivers it: nothing measured is lost.
#[actix_rt::test]
async fn a_stopped_probe_spools_what_it_measured() {
    let dir = tempfile::tempdir().unwrap();
    let app = prepare(1, &[]);
    let port = free_port();
    let refl = reflector().await;
    let mut pcfg = probe_cfg(dir.path(), &format!("http://127.0.0.1:{port}"), &app.probes[0].1, &refl, &refl);
    pcfg.targets.truncate(1);
    // batches are due only after a minute or 1000 events: without the stop nothing would be spooled
    (pcfg.batch_max_age_ms, pcfg.batch_max_events) = (60_000, 1000);
    netqoe::probe::run_until(pcfg.clone(), None, tokio::time::sleep(Duration::from_millis(2500))).await.unwrap();
    let spool = Spool::open(dir.path(), 1000).unwrap();
    assert_eq!(spool.depth(), 1, "the unsent measurements became one spooled batch");
    let (_, body) = spool.front().unwrap();
    let measured =
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["events"].as_array().unwrap().len() as u64;
    assert!(measured >= 2, "{measured} measurements in 2.5 s at 1/s");
    let t = ingest_back_on(app, port).await;
    tokio::time::timeout(Duration::from_secs(30), netqoe::probe::run(pcfg, Some(0))).await.unwrap().unwrap();
    assert_eq!(spooled(dir.path()), 0);
    eventually(20, "the spooled measurements aggregated", || async {
        (counts(&t).await.0 == measured * 10).then_some(())
    })
    .await;
    t.app.shutdown().await.unwrap();
}

/// A probe reserves its sequence numbers in blocks; a restart abandons the rest of the block.
/// The new run's first event says so, and the session does not report those numbers as missing.
#[actix_rt::test]
async fn restarting_a_probe_does_not_fake_missing_events() {
    let dir = tempfile::tempdir().unwrap();
    let t = start(1, &[]).await;
    let refl = reflector().await;
    let pcfg = probe_cfg(dir.path(), &t.app.url(""), &t.probes[0].1, &refl, &refl);
    for _run in 0..3 {
        tokio::time::timeout(Duration::from_secs(30), netqoe::probe::run(pcfg.clone(), Some(2)))
            .await
            .unwrap()
            .unwrap();
    }
    let p = eventually(20, "3 runs × 2 rounds × 2 targets in the session", || async {
        let r = get(&t.client, &t.app.url("/v1/probes"), Some(&t.query_token)).await;
        let p = r.body["probes"].as_array()?.iter().find(|p| p["probe"] == t.probes[0].0.as_str())?.clone();
        (p["events"].as_u64() == Some(12)).then_some(p)
    })
    .await;
    assert_eq!(p["missing"], 0, "two restarts, nothing lost: {p}");
    t.app.shutdown().await.unwrap();
}
