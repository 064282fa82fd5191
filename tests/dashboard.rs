//! The built-in `/dashboard` page: served by the binary, self-contained (no external asset), and
//! the endpoints it reads answer with the fields it renders; headless Chromium renders it and
//! saves a screenshot (a fresh one every run: an old file is removed first).

mod common;

use common::*;
use serde_json::json;

/// Posts `n` UDP events over the last minutes (alternating two targets) and waits until aggregated.
async fn feed(t: &TestApp, n: i64) -> i64 {
    let now = netqoe_actors::now_ms();
    let events: Vec<_> = (0..n)
        .map(|i| {
            json!({"event_id": format!("c{i}"), "seq": i, "ts": rfc3339(now - 600_000 + i * 20_000),
                        "target": if i % 2 == 0 { "cdn.example" } else { "dns.example" },
                        "kind": "udp", "rtt_samples_ms": [10.0 + (i % 7) as f64, 12.0], "sent": 3, "received": 2})
        })
        .collect();
    assert_eq!(
        post(&t.client, &t.app.url("/v1/events"), Some(&t.probes[0].1), "application/json", batch(&events))
            .await
            .status,
        202
    );
    let base = format!("http://{}", t.app.addr);
    eventually(20, "events aggregated", || async {
        (total_count(&t.client, &base, &t.query_token, "rtt", now - 3_600_000, now + 60_000).await == 2 * n as u64)
            .then_some(())
    })
    .await;
    now
}

#[actix_rt::test]
async fn the_dashboard_is_self_contained_and_its_data_is_there() {
    let t = start(1, &[]).await;
    let mut res = t.client.get(t.app.url("/dashboard")).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert!(res.headers().get("content-type").unwrap().to_str().unwrap().starts_with("text/html"));
    assert!(res.headers().get("content-security-policy").unwrap().to_str().unwrap().contains("default-src 'self'"));
    let html = String::from_utf8(res.body().limit(1 << 20).await.unwrap().to_vec()).unwrap();
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("//cdn"), "no external assets");
    for needle in [
        "fetch(\"/metrics\")",
        "/v1/rollups?metric=rtt&tier=1m&group_by=target",
        "fetch(\"/v1/probes\"",
        "/v1/incidents?state=open",
        "<svg",
    ] {
        assert!(html.contains(needle), "page reads/draws {needle}");
    }

    // feed events, then check the fields the page renders exist
    let now = feed(&t, 12).await;
    let r = get(
        &t.client,
        &t.app.url(&format!(
            "/v1/rollups?metric=rtt&tier=1m&group_by=target&from={}&to={}&limit=10000",
            now - 3_600_000,
            now + 60_000
        )),
        Some(&t.query_token),
    )
    .await;
    let w = &r.body["rollups"][0];
    for field in ["target", "p95", "loss_pct", "probes"] {
        assert!(!w[field].is_null(), "group_by=target windows carry {field}: {w}");
    }
    let p = get(&t.client, &t.app.url("/v1/probes"), Some(&t.query_token)).await;
    let probe = &p.body["probes"][0];
    for field in ["probe", "status", "events", "late_dropped", "missing", "last_seen"] {
        assert!(!probe[field].is_null(), "probes carry {field}: {probe}");
    }
    let m = get_text(&t.client, &t.app.url("/metrics")).await;
    assert!(m.contains("netqoe_actor_messages_total{actor=\"aggregator\"}"));
    t.app.shutdown().await.unwrap();
}

/// Headless Chromium renders the page after events were fed: actor rows and at least one chart are
/// in the DOM, and a screenshot is saved as target/dashboard.png. scripts/test.sh installs
/// Debian's chromium and runs this test.
#[actix_rt::test]
#[ignore = "needs chromium: scripts/test.sh installs Debian's chromium and runs this test"]
async fn headless_chromium_shows_actor_rows_and_a_chart() {
    let chromium = std::env::var("NETQOE_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let t = start(1, &[]).await;
    feed(&t, 30).await;
    // an open incident for the page to explain
    let now = netqoe_actors::now_ms();
    let incident = sample_incident(
        "inc-dash",
        netqoe_domain::diagnosis::Scope::Target,
        &[("target", "shop.example")],
        now - 120_000,
    );
    let mut cert = sample_incident(
        "inc-cert",
        netqoe_domain::diagnosis::Scope::Certificate,
        &[("target", "pay.example")],
        now - 60_000,
    );
    cert.metrics = ["cert_days".to_string()].into();
    cert.mos_impact = None;
    cert.evidence =
        [("cert_days".to_string(), netqoe_domain::diagnosis::MetricEvidence { baseline: 14.0, observed: 6.5 })].into();
    t.app.state.store.save_incidents(&[incident, cert]).await.unwrap();
    let url = format!("{}#token={}", t.app.url("/dashboard"), t.query_token);
    let profile = tempfile::tempdir().unwrap();
    let shot = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/dashboard.png");
    // (a build with CARGO_TARGET_DIR elsewhere has no target/ in the checkout)
    std::fs::create_dir_all(shot.parent().unwrap()).unwrap();
    // a screenshot left by an earlier run must not pass for this one
    match std::fs::remove_file(&shot) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("removing the old screenshot {}: {e}", shot.display()),
    }
    let flags = |extra: &str| {
        let mut c = std::process::Command::new(&chromium);
        c.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1300,900",
            "--virtual-time-budget=8000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(extra)
        .arg(&url);
        c
    };
    // chromium blocks; run it off the actix thread so the server keeps answering
    let (dom, shot_status) = tokio::task::spawn_blocking({
        let mut dump = flags("--dump-dom");
        let mut screenshot = flags(&format!("--screenshot={}", shot.display()));
        move || (dump.output().expect("chromium runs"), screenshot.output().expect("chromium runs").status)
    })
    .await
    .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout).to_string();
    for actor in ["aggregator", "session", "writer"] {
        assert!(dom.contains(&format!("<td>{actor}</td>")), "actor row {actor} rendered:\n{dom}");
    }
    assert!(dom.contains("<polyline"), "at least one chart rendered:\n{dom}");
    assert!(dom.contains("cdn.example") && dom.contains("online"), "targets and probes rendered");
    assert!(
        dom.contains("target=shop.example") && dom.contains("loss 0.00 → 1.00"),
        "the open incident explained:\n{dom}"
    );
    assert!(
        dom.contains("target=pay.example") && dom.contains("certificate expires in 6.5 days (warning below 14)"),
        "a certificate incident says the days left:\n{dom}"
    );
    assert!(shot_status.success(), "chromium --screenshot exited with {shot_status}");
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("screenshot saved at {}: {e}", shot.display()));
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "the screenshot is a PNG");
    // IHDR (bytes 16..24): the window size asked for, not an empty or error page's
    let (w, h) =
        (u32::from_be_bytes(png[16..20].try_into().unwrap()), u32::from_be_bytes(png[20..24].try_into().unwrap()));
    assert_eq!((w, h), (1300, 900), "screenshot dimensions");
    assert!(png.len() > 20_000, "a rendered page, not a blank one ({} bytes)", png.len());
    eprintln!("dashboard screenshot: {}", shot.display());
    t.app.shutdown().await.unwrap();
}
