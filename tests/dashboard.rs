//! The built-in `/dashboard` page: served by the binary, self-contained (no external asset), and
//! the endpoints it reads answer with the fields it renders; headless Chromium renders each view
//! of a netqoe fed with a faulted fleet and saves screenshots (fresh ones every run: old files are
//! removed first) under target/dashboard-*.png.

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
        "\"/v1/rollups?\"",
        "group_by=target",
        "getJSON(\"/v1/probes\")",
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
    for field in ["target", "p1", "p10", "p50", "p90", "p99", "loss_pct", "probes", "mos"] {
        assert!(!w[field].is_null(), "group_by=target windows carry {field}: {w}");
    }
    // `fields`: the overview's narrow answer carries the identity and just what it asked for
    let narrow = get(
        &t.client,
        &t.app.url(&format!(
            "/v1/rollups?tier=1m&from={}&to={}&limit=10000&fields=events,errors,p50,loss_pct,mos,min",
            now - 3_600_000,
            now + 60_000
        )),
        Some(&t.query_token),
    )
    .await;
    assert_eq!(narrow.status, 200, "{:?}", narrow.body);
    let w = &narrow.body["rollups"][0];
    let mut keys: Vec<&str> = w.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "closed",
            "errors",
            "events",
            "loss_pct",
            "metric",
            "min",
            "mos",
            "p50",
            "probe",
            "revision",
            "target",
            "tier",
            "window_end",
            "window_start"
        ],
        "{w}"
    );
    let bad = get(&t.client, &t.app.url("/v1/rollups?fields=p50,colour"), Some(&t.query_token)).await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body["field"], "fields", "{:?}", bad.body);
    assert!(bad.body["detail"].as_str().unwrap().contains("colour"), "{:?}", bad.body);
    let p = get(&t.client, &t.app.url("/v1/probes"), Some(&t.query_token)).await;
    let probe = &p.body["probes"][0];
    for field in
        ["probe", "status", "labels", "events", "late_dropped", "missing", "duplicates", "last_seen", "clock_skew_ms"]
    {
        assert!(!probe[field].is_null(), "probes carry {field}: {probe}");
    }
    let m = get_text(&t.client, &t.app.url("/metrics")).await;
    assert!(m.contains("netqoe_actor_messages_total{actor=\"aggregator\"}"));
    t.app.shutdown().await.unwrap();
}

/// A small fleet's last 20 minutes, as probes would have sent them: 3 probes (two regions) ×
/// voice.example (UDP), shop.example (TCP), dns.example (DNS), pay.example (TCP, refused every
/// time: a dead service) and a 253-character target name. The fault: probe-1 → voice.example
/// since 8 minutes ago, RTT 20 → 80 ms and 25 % loss.
const LONG_TARGET_PREFIX: &str = "very-long-target-name-";

fn long_target() -> String {
    let mut t = LONG_TARGET_PREFIX.to_string();
    while t.len() < 249 {
        t.push_str("abcdefghij");
    }
    t.truncate(249);
    t.push_str(".net");
    assert_eq!(t.len(), 253);
    t
}

async fn feed_fleet(t: &TestApp) -> i64 {
    let now = netqoe_actors::now_ms();
    let start = now - 20 * 60_000;
    let long = long_target();
    let mut rng = Rng(0x0da5_b0a2);
    for (pi, (probe, token)) in t.probes.iter().enumerate() {
        let mut events = Vec::new();
        let mut seq = 0;
        for m in 0..20 {
            let ts = start + m * 60_000 + 5_000;
            let faulted = pi == 1 && m >= 12;
            let rtt = |rng: &mut Rng, base: f64, n: usize| (0..n).map(|_| rng.rtt(base)).collect::<Vec<f64>>();
            let mut add = |target: &str, ev: serde_json::Value| {
                let mut ev = ev;
                ev["event_id"] = json!(format!("{probe}-{seq}"));
                ev["seq"] = json!(seq);
                ev["ts"] = json!(rfc3339(ts + seq % 5 * 1000));
                ev["target"] = json!(target);
                events.push(ev);
                seq += 1;
            };
            if faulted {
                add(
                    "voice.example",
                    json!({"kind": "udp", "rtt_samples_ms": rtt(&mut rng, 80.0, 6), "sent": 8, "received": 6}),
                );
            } else {
                add(
                    "voice.example",
                    json!({"kind": "udp", "rtt_samples_ms": rtt(&mut rng, 20.0, 10), "sent": 10, "received": 10}),
                );
            }
            add("shop.example", json!({"kind": "tcp", "connect_ms": 12.0 + pi as f64}));
            add("dns.example", json!({"kind": "dns", "dns_ms": 4.0 + (m % 3) as f64}));
            add("pay.example", json!({"kind": "tcp", "status": "refused"}));
            add(&long, json!({"kind": "udp", "rtt_samples_ms": rtt(&mut rng, 30.0, 10), "sent": 10, "received": 10}));
        }
        let r = post(&t.client, &t.app.url("/v1/events"), Some(token), "application/json", batch(&events)).await;
        assert_eq!(r.status, 202, "{probe}: {:?}", r.body);
    }
    let base = format!("http://{}", t.app.addr);
    // 3 probes × 20 minutes × (10 samples on the voice target, 6 under the fault, 10 on the long one)
    let want: u64 = 3 * 20 * 20 - 8 * 4;
    eventually(30, "the fleet aggregated", || async {
        (total_count(&t.client, &base, &t.query_token, "rtt", start - 60_000, now + 60_000).await == want).then_some(())
    })
    .await;
    now
}

/// One headless Chromium run over `url` at `width`×`height`: the DOM once the page settled, or a
/// screenshot (a fresh PNG of that size, checked) when `shot` is given.
fn chromium(url: &str, width: u32, height: u32, shot: Option<&std::path::Path>) -> String {
    let chromium = std::env::var("NETQOE_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let profile = tempfile::tempdir().unwrap();
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
        "--hide-scrollbars",
        "--virtual-time-budget=10000",
    ])
    .arg(format!("--window-size={width},{height}"))
    .arg(format!("--user-data-dir={}", profile.path().display()));
    match shot {
        Some(path) => {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => panic!("removing the old screenshot {}: {e}", path.display()),
            }
            c.arg(format!("--screenshot={}", path.display()));
        }
        None => {
            c.arg("--dump-dom");
        }
    }
    let out = c.arg(url).output().expect("chromium runs");
    assert!(out.status.success(), "chromium exited with {}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    if let Some(path) = shot {
        let png = std::fs::read(path).unwrap_or_else(|e| panic!("screenshot saved at {}: {e}", path.display()));
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "the screenshot is a PNG");
        // IHDR (bytes 16..24): the window size asked for, not an empty or error page's
        let dims =
            (u32::from_be_bytes(png[16..20].try_into().unwrap()), u32::from_be_bytes(png[20..24].try_into().unwrap()));
        assert_eq!(dims, (width, height), "screenshot dimensions");
        assert!(png.len() > 20_000, "a rendered page, not a blank one ({} bytes)", png.len());
        eprintln!("dashboard screenshot: {}", path.display());
    }
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The element whose opening tag holds every one of `attrs` (e.g. `data-probe="probe-1"`): its
/// opening tag, or None.
fn tag_with<'a>(dom: &'a str, attrs: &[&str]) -> Option<&'a str> {
    dom.split('<').find(|tag| attrs.iter().all(|a| tag.split('>').next().unwrap_or("").contains(a)))
}

/// Headless Chromium (Debian's, installed by scripts/test.sh) renders every view of a netqoe fed
/// with a faulted fleet: the faulted pair's graph has percentile bands, a loss colour and the
/// incident's band; its matrix cell is degraded; the refused TCP target leads "worst now"; the
/// incident is listed with a link to its graphs; a 253-character target name truncates; no view
/// overflows horizontally at 1280 px, nor the overview at a phone's 390 px, where "worst now"
/// stacks its rows so the why is not hidden behind a scroll.
#[actix_rt::test]
#[ignore = "needs chromium: scripts/test.sh installs Debian's chromium and runs this test"]
async fn headless_chromium_shows_every_view_of_a_faulted_fleet() {
    let mut prepared = prepare(3, &[]);
    for (i, p) in prepared.cfg.probes.iter_mut().take(3).enumerate() {
        p.labels.insert("region".into(), if i < 2 { "eu-west" } else { "us-east" }.into());
    }
    let t = prepared.start().await;
    let now = feed_fleet(&t).await;
    // the incident the diagnosis would open for the fault, and a certificate incident
    use netqoe_domain::diagnosis::{MetricEvidence, Scope};
    let mut incident = sample_incident("inc-voice", Scope::Target, &[("target", "voice.example")], now - 8 * 60_000);
    incident.affected_probes = ["probe-1".to_string()].into();
    incident.affected_targets = ["voice.example".to_string()].into();
    incident.metrics = ["loss".to_string(), "rtt".to_string()].into();
    incident.evidence = [
        ("loss".to_string(), MetricEvidence { baseline: 0.0, observed: 25.0 }),
        ("rtt".to_string(), MetricEvidence { baseline: 20.0, observed: 80.0 }),
    ]
    .into();
    let mut cert = sample_incident("inc-cert", Scope::Certificate, &[("target", "pay.example")], now);
    cert.metrics = ["cert_days".to_string()].into();
    cert.mos_impact = None;
    cert.evidence = [("cert_days".to_string(), MetricEvidence { baseline: 14.0, observed: 6.5 })].into();
    t.app.state.store.save_incidents(&[incident, cert]).await.unwrap();

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    // (a build with CARGO_TARGET_DIR elsewhere has no target/ in the checkout)
    std::fs::create_dir_all(&dir).unwrap();
    let page = |frag: &str| format!("{}#token={}&{frag}", t.app.url("/dashboard"), t.query_token);
    let views = [
        ("overview", "view=overview&metric=rtt&group=region"),
        ("graph", "view=graph&probe=probe-1&target=voice.example&metric=rtt&range=3h"),
        ("incidents", "view=incidents"),
        ("probes", "view=probes"),
        ("actors", "view=actors"),
    ];
    // chromium blocks; run it off the actix thread so the server keeps answering
    let doms = tokio::task::spawn_blocking({
        let urls: Vec<(String, String)> = views.iter().map(|(n, f)| (n.to_string(), page(f))).collect();
        let dir = dir.clone();
        let phone = page("view=overview&metric=rtt");
        move || {
            let mut doms = std::collections::BTreeMap::new();
            for (name, url) in &urls {
                chromium(url, 1280, 900, Some(&dir.join(format!("dashboard-{name}.png"))));
                doms.insert(name.clone(), chromium(url, 1280, 900, None));
            }
            chromium(&phone, 390, 844, Some(&dir.join("dashboard-phone.png")));
            doms.insert("phone".to_string(), chromium(&phone, 390, 844, None));
            doms
        }
    })
    .await
    .unwrap();
    for (name, dom) in &doms {
        assert!(dom.contains("data-rendered="), "{name}: the view rendered:\n{dom}");
        assert!(dom.contains("<span id=\"error\"></span>"), "{name}: no error shown (the token was taken):\n{dom}");
        assert!(dom.contains("data-overflow=\"none\""), "{name}: no horizontal overflow:\n{dom}");
    }
    // on a phone "worst now" stacks each row (the why beneath it) instead of hiding the why
    // behind a horizontal scroll
    let clipped = doms["phone"].split("data-clipped=\"").nth(1).and_then(|s| s.split('"').next());
    assert!(
        clipped.is_some_and(|c| !c.split(' ').any(|id| id == "worst")),
        "worst now clipped on a phone: {clipped:?}"
    );

    // overview: the faulted pair's cell degraded, its healthy neighbours ok, the dead service first
    let o = &doms["overview"];
    let cell = |p: &str, tg: &str| {
        tag_with(o, &[&format!("data-probe=\"{p}\""), &format!("data-target=\"{tg}\""), "data-state="])
            .unwrap_or_else(|| panic!("matrix cell {p} × {tg}:\n{o}"))
    };
    assert!(
        cell("probe-1", "voice.example").contains("data-state=\"degraded\""),
        "{}",
        cell("probe-1", "voice.example")
    );
    assert!(cell("probe-0", "voice.example").contains("data-state=\"ok\""), "{}", cell("probe-0", "voice.example"));
    assert!(cell("probe-2", "voice.example").contains("data-state=\"ok\""));
    assert!(o.contains("region = ") && o.contains("eu-west") && o.contains("us-east"), "grouped by region");
    let worst = &o[o.find("id=\"worst\"").expect("worst table")..o.find("id=\"matrix\"").unwrap()];
    let first_row = worst.split("<tr data-probe=").nth(1).expect("a worst-now row");
    assert!(
        first_row.contains("pay.example") && first_row.contains("refused"),
        "the refused target ranks first: {first_row}"
    );
    let voice = worst.split("<tr data-probe=").find(|r| r.starts_with("\"probe-1\" data-target=\"voice.example\""));
    let voice = voice.unwrap_or_else(|| panic!("the faulted pair is in worst now: {worst}"));
    assert!(voice.contains("loss 25.0 %") && voice.contains("MOS"), "with why: {voice}");
    let long = long_target();
    assert!(o.contains(&format!("title=\"{long}\"")), "the long name keeps its full text as a tooltip");

    // the faulted pair's graph: both bands, the median in the ≥ 20 % loss colour, the incident band
    let g = &doms["graph"];
    for needle in [
        "class=\"band-smoke\"",
        "class=\"band-inner\"",
        "class=\"median loss-0\"",
        "class=\"median loss-5\"",
        "class=\"incident-band\"",
        "time (UTC)",
        "RTT (ms)",
    ] {
        assert!(g.contains(needle), "graph has {needle}:\n{g}");
    }
    assert!(g.contains("data-loss=\"25.0\""), "the faulted minutes carry their loss");

    // incidents: listed with a link to the affected pair's graph; the certificate's days left
    let i = &doms["incidents"];
    let row = i.split("<tr data-incident=\"inc-voice\"").nth(1).expect("incident listed");
    assert!(
        row.contains("class=\"graph-link\" href=\"#")
            && row.contains("view=graph")
            && row.contains("target=voice.example"),
        "{row}"
    );
    assert!(
        i.contains("certificate expires in 6.5 days (warning below 14)"),
        "a certificate incident says the days left"
    );
    assert!(i.contains("tl-bar"), "the timeline is drawn");

    // probes: online with labels, last seen and skew
    let p = &doms["probes"];
    assert!(
        p.contains("data-probe=\"probe-2\"") && p.contains("online") && p.contains("region=") && p.contains(" ago")
    );
    // actor health, on its own tab
    let a = &doms["actors"];
    for actor in ["aggregator", "session", "writer"] {
        assert!(a.contains(&format!("<td>{actor}</td>")), "actor row {actor} rendered:\n{a}");
    }
    t.app.shutdown().await.unwrap();
}

/// A fleet of two probes (regions eu and us) fed six minutes of a lossy voice target (probe 0
/// loses half its packets) and a refused TCP service, then `/metrics` of the diagnosing process
/// once it has exported the newest judged window. The app is restarted on its data so the
/// diagnoser's warm-up judges the minutes just posted at once instead of a minute later.
/// Returns the metrics text and the probe ids.
async fn faulted_fleet_metrics() -> (String, Vec<String>) {
    let mut prepared = prepare(2, &[]);
    for (p, region) in prepared.cfg.probes.iter_mut().zip(["eu", "us"]) {
        p.labels.insert("region".into(), region.into());
    }
    let cfg = prepared.cfg.clone();
    let t = prepared.start().await;
    let now = netqoe_actors::now_ms();
    let first = (now / 60_000 - 5) * 60_000;
    for (pi, (probe, token)) in t.probes.iter().enumerate() {
        let mut events = Vec::new();
        for m in 0..=5i64 {
            let ts = (first + m * 60_000 + 2_000).min(now);
            let seq = 2 * m as u64;
            events.push(json!({"event_id": format!("{probe}-v{m}"), "seq": seq, "ts": rfc3339(ts), "target": "grafana-voice",
                "kind": "udp", "rtt_samples_ms": [10.0 + 30.0 * pi as f64, 11.0 + 30.0 * pi as f64], "sent": 4, "received": 2 + 2 * pi as u32}));
            events.push(
                json!({"event_id": format!("{probe}-s{m}"), "seq": seq + 1, "ts": rfc3339(ts), "target": "grafana-shop",
                "kind": "tcp", "status": "refused"}),
            );
        }
        assert_eq!(
            post(&t.client, &t.app.url("/v1/events"), Some(token), "application/json", batch(&events)).await.status,
            202
        );
    }
    let base = format!("http://{}", t.app.addr);
    eventually(20, "events aggregated", || async {
        (total_count(&t.client, &base, &t.query_token, "rtt", first - 60_000, now + 60_000).await == 24).then_some(())
    })
    .await;
    let dir = t.dir;
    t.app.shutdown().await.unwrap();
    let app = netqoe::app::start(cfg, std::net::TcpListener::bind("127.0.0.1:0").unwrap()).await.unwrap();
    let probe1 = &t.probes[1].0;
    let metrics = eventually(20, "the per-target and per-pair gauges exported", || async {
        let text = get_text(&t.client, &app.url("/metrics")).await;
        let pairs =
            format!("netqoe_pair_state{{group=\"us\",metric=\"loss\",probe=\"{probe1}\",target=\"grafana-voice\"}}");
        (metric_value(&text, "netqoe_target_probes{target=\"grafana-voice\"}").is_some()
            && metric_value(&text, &pairs).is_some())
        .then_some(text)
    })
    .await;
    app.shutdown().await.unwrap();
    drop(dir);
    (metrics, t.probes.iter().map(|(p, _)| p.clone()).collect())
}

/// What Grafana's "QoE per target" row reads: events posted to ingest become the diagnosing
/// process's `netqoe_target_*` gauges on `/metrics` (the fleet window per target: probes merged,
/// loss, a refused service's failure ratio) and the matrix's `netqoe_pair_state` (the faulted
/// pair failing on loss, the healthy one ok, the refused service failing for both).
#[actix_rt::test]
async fn per_target_qoe_reaches_metrics_for_grafana() {
    let (metrics, probes) = faulted_fleet_metrics().await;
    let v = |series: &str| metric_value(&metrics, series).unwrap_or_else(|| panic!("{series} exported:\n{metrics}"));
    assert_eq!(v("netqoe_target_probes{target=\"grafana-voice\"}"), 2.0);
    assert_eq!(v("netqoe_target_loss_ratio{target=\"grafana-voice\"}"), 0.25, "2 of 8 packets lost over both probes");
    // the window's samples 10 11 40 41 (both probes merged as one sketch): p50 11, p95 40
    let p50 = v("netqoe_target_latency_ms{metric=\"rtt\",quantile=\"0.5\",target=\"grafana-voice\"}");
    assert!((p50 - 11.0).abs() / 11.0 <= 0.011, "the fleet median of both probes' samples: {p50}");
    let p95 = v("netqoe_target_latency_ms{metric=\"rtt\",quantile=\"0.95\",target=\"grafana-voice\"}");
    assert!((p95 - 40.0).abs() / 40.0 <= 0.011, "the fleet p95 spans both probes' samples: {p95}");
    assert_eq!(v("netqoe_target_failure_ratio{metric=\"connect\",target=\"grafana-shop\"}"), 1.0);
    assert!(metrics.contains("netqoe_target_mos{target=\"grafana-voice\"}"));
    let pair = |group: &str, probe: &str, target: &str, metric: &str| {
        v(&format!("netqoe_pair_state{{group=\"{group}\",metric=\"{metric}\",probe=\"{probe}\",target=\"{target}\"}}"))
    };
    assert_eq!(pair("eu", &probes[0], "grafana-voice", "loss"), 2.0, "half the packets lost: failing");
    assert_eq!(pair("us", &probes[1], "grafana-voice", "loss"), 0.0, "no loss: ok");
    assert_eq!(pair("eu", &probes[0], "grafana-shop", "connect"), 2.0, "refused: failing");
    assert_eq!(pair("us", &probes[1], "grafana-shop", "connect"), 2.0);
    assert_eq!(v("netqoe_pair_series_refused"), 0.0);
}

/// The Grafana matrix panel's own queries (read from deploy/grafana/netqoe.json, the variables
/// substituted as Grafana does) evaluated by Prometheus's engine (`promtool test rules`) over the
/// `netqoe_pair_state` series a faulted fleet's netqoe exported: a cell per pair, the faulted
/// pair failing, the healthy one ok, and the history panel's rows carry the group.
#[actix_rt::test]
#[ignore = "needs promtool (Debian's prometheus package); scripts/test.sh provides it"]
async fn promtool_evaluates_the_grafana_matrix_queries_on_a_faulted_fleet() {
    let (metrics, probes) = faulted_fleet_metrics().await;
    let d: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/netqoe.json"))
            .unwrap(),
    )
    .unwrap();
    let expr_of = |id: u64| {
        let p = d["panels"].as_array().unwrap().iter().find(|p| p["id"] == id).expect("panel");
        let e = p["targets"][0]["expr"].as_str().unwrap();
        // Grafana's substitution: one metric; "All" of a multi-value variable is (a|b|…)
        e.replace("$cell", "loss").replace("$group", "(eu|us)").replace("$target", "(grafana-shop|grafana-voice)")
    };
    assert_eq!(d["panels"].as_array().unwrap().iter().find(|p| p["id"] == 30).unwrap()["type"], "table");
    // the exported pair series, as promtool input
    let series: Vec<String> = metrics
        .lines()
        .filter(|l| l.starts_with("netqoe_pair_state{"))
        .map(|l| {
            let (s, v) = l.rsplit_once(' ').unwrap();
            format!("      - series: '{s}'\n        values: '{v}'\n")
        })
        .collect();
    assert!(series.len() >= 8, "pair series exported:\n{metrics}");
    let (p0, p1) = (&probes[0], &probes[1]);
    let test = format!(
        "rule_files: [empty.yml]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n{}    promql_expr_test:\n\
         \x20     - expr: '{}'\n        eval_time: 0m\n        exp_samples:\n\
         \x20         - labels: '{{probe=\"{p0}\",target=\"grafana-voice\"}}'\n            value: 2\n\
         \x20         - labels: '{{probe=\"{p1}\",target=\"grafana-voice\"}}'\n            value: 0\n\
         \x20     - expr: '{}'\n        eval_time: 0m\n        exp_samples:\n\
         \x20         - labels: '{{group=\"eu\",probe=\"{p0}\",target=\"grafana-voice\"}}'\n            value: 2\n\
         \x20         - labels: '{{group=\"us\",probe=\"{p1}\",target=\"grafana-voice\"}}'\n            value: 0\n",
        series.concat(),
        expr_of(30),
        expr_of(31),
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.yml"), "groups: []\n").unwrap();
    std::fs::write(dir.path().join("matrix_test.yml"), &test).unwrap();
    let promtool = std::env::var("NETQOE_PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let out = std::process::Command::new(&promtool)
        .args(["test", "rules", "matrix_test.yml"])
        .current_dir(dir.path())
        .output()
        .expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool test rules:\n{test}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
