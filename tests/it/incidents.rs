//! Diagnosis in a running process: the diagnosis actor judges the committed windows and stores
//! incidents; `GET /v1/incidents` lists them with filters and rejects bad parameters.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use actix::Supervisor;
use netqoe_actors::diagnoser::{DiagnoserActor, DiagnoserConfig};
use netqoe_actors::memory::MemoryStore;
use netqoe_actors::store::{IncidentQuery, RollupStore, WriteSet};
use netqoe_domain::diagnosis::{Incident, IncidentState, Scope};
use netqoe_domain::event::Contribution;
use netqoe_domain::{EventSet, Metric, Rollup, Tier, WindowAgg, WindowKey};

fn rtt_window(probe: &str, target: &str, start_ms: i64, rtt: f64) -> Rollup {
    let mut agg = WindowAgg::default();
    let values: Vec<f64> = (0..30).map(|i| rtt + (i % 5) as f64 * 0.2).collect();
    agg.add(&Contribution {
        metric: Metric::Rtt,
        values: &values,
        sent: 30,
        received: 30,
        jitter_estimate_ms: Some(1.0),
        error: None,
    });
    Rollup {
        key: WindowKey { probe: probe.into(), target: target.into(), metric: Metric::Rtt, tier: Tier::M1, start_ms },
        agg,
        applied: EventSet::default(),
        revision: 1,
        closed: true,
    }
}

/// Runs a diagnosis actor over `store` (judging finished windows at once, replaying `warmup`
/// windows) until it has stored incidents opened since `from_ms`; returns them.
async fn first_incidents(store: &Arc<dyn RollupStore>, warmup: i64, from_ms: i64) -> Vec<Incident> {
    let cfg = DiagnoserConfig {
        tick: Duration::from_millis(50),
        settle_ms: 0,
        warmup_windows: warmup,
        max_per_tick: 100,
        ..Default::default()
    };
    let s = store.clone();
    let _actor = Supervisor::start(move |_| DiagnoserActor::new(s, cfg, netqoe_actors::Clock::system()));
    let all = IncidentQuery { state: None, from_ms, to_ms: netqoe_actors::now_ms() + 60_000, limit: 10 };
    eventually(20, "an incident is stored", || async {
        let l = store.list_incidents(&all).await.unwrap();
        (!l.is_empty()).then_some(l)
    })
    .await
}

#[actix_rt::test]
async fn the_diagnosis_actor_opens_an_incident_from_stored_windows() {
    let store: Arc<dyn RollupStore> = Arc::new(MemoryStore::new());
    let now = netqoe_actors::now_ms();
    let first = (now / 60_000 - 30) * 60_000;
    let mut rollups = Vec::new();
    for m in 0..29 {
        let start = first + m * 60_000;
        for p in ["p1", "p2", "p3", "p4"] {
            for t in ["x", "y"] {
                // the last 6 minutes: everyone is 10× slower toward x
                let rtt = if t == "x" && m >= 23 { 300.0 } else { 30.0 };
                rollups.push(rtt_window(p, t, start, rtt));
            }
        }
    }
    store.commit(WriteSet { rollups, ..Default::default() }).await.unwrap();
    let list = first_incidents(&store, 31, first).await;
    assert_eq!(list.len(), 1, "{list:?}");
    let i = &list[0];
    assert_eq!((i.scope, i.state), (Scope::Target, IncidentState::Open));
    assert_eq!(i.subject, BTreeMap::from([("target".to_string(), "x".to_string())]));
    assert!(i.metrics.contains("rtt"));
    assert_eq!(i.affected_probes.len(), 4);
    assert!(i.evidence["rtt"].observed > 250.0 && i.evidence["rtt"].baseline < 35.0);
}

#[actix_rt::test]
async fn a_certificate_close_to_expiry_is_an_incident_about_its_target() {
    let store: Arc<dyn RollupStore> = Arc::new(MemoryStore::new());
    let now = netqoe_actors::now_ms();
    let first = (now / 60_000 - 20) * 60_000;
    let mut rollups = Vec::new();
    for m in 0..19 {
        let start = first + m * 60_000;
        for p in ["p1", "p2"] {
            rollups.push(rtt_window(p, "shop", start, 30.0));
            // TLS every 5 minutes: shop's certificate has 6 days left, api's 80
            if m % 5 == 0 {
                for (t, days) in [("shop", 6.0), ("api", 80.0)] {
                    let mut agg = WindowAgg::default();
                    agg.add(&Contribution {
                        metric: Metric::CertDays,
                        values: &[days],
                        sent: 0,
                        received: 0,
                        jitter_estimate_ms: None,
                        error: None,
                    });
                    let key = WindowKey {
                        probe: p.into(),
                        target: t.into(),
                        metric: Metric::CertDays,
                        tier: Tier::M1,
                        start_ms: start,
                    };
                    rollups.push(Rollup { key, agg, applied: EventSet::default(), revision: 1, closed: true });
                }
            }
        }
    }
    store.commit(WriteSet { rollups, ..Default::default() }).await.unwrap();
    let list = first_incidents(&store, 21, first).await;
    assert_eq!(list.len(), 1, "{list:?}");
    let i = &list[0];
    assert_eq!((i.scope, i.state), (Scope::Certificate, IncidentState::Open));
    assert_eq!(i.subject, BTreeMap::from([("target".to_string(), "shop".to_string())]));
    assert_eq!(i.affected_probes.len(), 2);
    let ev = &i.evidence["cert_days"];
    assert_eq!(ev.baseline, 14.0, "the threshold");
    assert!(ev.observed <= 6.0 && ev.observed > 5.9, "days left: {}", ev.observed);
}

#[actix_rt::test]
async fn incidents_are_listed_over_http_with_filters() {
    let t = start(1, &[]).await;
    let now = netqoe_actors::now_ms();
    let mut a = sample_incident("inc-a", Scope::Group, &[("probe.asn", "3320"), ("target", "video")], now - 600_000);
    a.metrics = ["rtt".to_string(), "jitter".to_string()].into();
    let mut b = a.clone();
    b.id = "inc-b".into();
    b.state = IncidentState::Resolved;
    b.opened_ms = now - 3_600_000;
    b.resolved_ms = Some(now - 3_000_000);
    t.app.state.store.save_incidents(&[a.clone(), b]).await.unwrap();
    let url = |q: &str| t.app.url(&format!("/v1/incidents{q}"));
    let r = get(&t.client, &url(""), Some(&t.query_token)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let ids: Vec<&str> = r.body["incidents"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["inc-a", "inc-b"], "newest first");
    assert_eq!(r.body["incidents"][0]["scope"], "group");
    assert_eq!(r.body["incidents"][0]["subject"]["probe.asn"], "3320");
    assert!(r.body["incidents"][0]["opened"].as_str().unwrap().ends_with('Z'));
    let r = get(&t.client, &url("?state=open"), Some(&t.query_token)).await;
    assert_eq!(r.body["incidents"].as_array().unwrap().len(), 1);
    let from = now - 1_800_000;
    let r = get(&t.client, &url(&format!("?from={from}")), Some(&t.query_token)).await;
    assert_eq!(r.body["incidents"][0]["id"], "inc-a");
    assert_eq!(r.body["incidents"].as_array().unwrap().len(), 1);
    let r = get(&t.client, &url("?state=closed"), Some(&t.query_token)).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["field"], "state", "{}", r.body);
    let r = get(&t.client, &url("?colour=red"), Some(&t.query_token)).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = get(&t.client, &url(""), Some(&t.probes[0].1)).await;
    assert_eq!(r.status, 403, "probe tokens cannot read");
    // an update of the same id replaces it
    a.state = IncidentState::Resolved;
    a.resolved_ms = Some(now);
    t.app.state.store.save_incidents(&[a]).await.unwrap();
    let r = get(&t.client, &url("?state=open"), Some(&t.query_token)).await;
    assert!(r.body["incidents"].as_array().unwrap().is_empty());
    t.app.shutdown().await.unwrap();
}

#[actix_rt::test]
async fn rtt_windows_carry_r_factor_and_mos() {
    let t = start(1, &[]).await;
    let base = base_ms();
    let mut rng = Rng(5);
    let evs = events_for("probe-0", base, 0, 20, &mut rng);
    let r = post(&t.client, &t.app.url("/v1/events"), Some(&t.probes[0].1), "application/json", batch(&evs)).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let url = t.app.url(&format!("/v1/rollups?metric=rtt&tier=1m&from={base}&to={}", base + 60_000));
    let w = eventually(30, "the window is stored", || async {
        let r = get(&t.client, &url, Some(&t.query_token)).await;
        r.body["rollups"].as_array().and_then(|a| a.first().cloned())
    })
    .await;
    let f = |k: &str| w[k].as_f64().unwrap();
    let r = netqoe_domain::diagnosis::r_factor(f("p50"), f("jitter_ms"), f("loss_pct") / 100.0);
    assert!((f("r_factor") - r).abs() < 0.01, "{w}");
    assert!((f("mos") - netqoe_domain::diagnosis::mos(r)).abs() < 0.001, "{w}");
    assert!((1.0..=4.5).contains(&f("mos")));
    t.app.shutdown().await.unwrap();
}

#[actix_rt::test]
async fn webhooks_are_signed_and_retried() {
    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
    use std::sync::Mutex;
    type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;
    let got: Received = Arc::new(Mutex::new(Vec::new()));
    let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let (g, c) = (got.clone(), calls.clone());
    let server = HttpServer::new(move || {
        let (g, c) = (g.clone(), c.clone());
        App::new().route(
            "/hook",
            web::post().to(move |req: HttpRequest, body: web::Bytes| {
                let (g, c) = (g.clone(), c.clone());
                async move {
                    // the first attempt fails: the sender must retry
                    if c.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                        return HttpResponse::InternalServerError().finish();
                    }
                    let sig = req.headers().get("X-Netqoe-Signature").unwrap().to_str().unwrap().to_string();
                    g.lock().unwrap().push((sig, body.to_vec()));
                    HttpResponse::NoContent().finish()
                }
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .bind("127.0.0.1:0")
    .unwrap();
    let addr = server.addrs()[0];
    let handle = server.run();
    let stop = handle.handle();
    actix_rt::spawn(handle);
    let cfg = netqoe::config::WebhookConfig {
        urls: vec![format!("http://{addr}/hook")],
        secret: "s3cret".into(),
        backoff_ms: 20,
        ..Default::default()
    };
    let sink = netqoe::webhook::start(cfg);
    let now = netqoe_actors::now_ms();
    let incident = sample_incident("inc-w", Scope::Target, &[("target", "shop")], now);
    sink.send(incident).await.unwrap();
    let (sig, body) =
        eventually(20, "the webhook is delivered", || async { got.lock().unwrap().first().cloned() }).await;
    assert_eq!(sig, netqoe::webhook::signature("s3cret", &body), "signed over the exact body");
    assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["event"], "incident.opened");
    assert_eq!(v["incident"]["id"], "inc-w");
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2, "one failure, one retry");
    stop.stop(false).await;
}

/// Diagnosis runs in exactly one place: `run` (all roles) and `diagnose` have the diagnoser,
/// `aggregate` (several per deployment) does not, `diagnose` serves no API, only health and metrics.
#[actix_rt::test]
async fn only_the_diagnose_role_and_run_diagnose() {
    use netqoe::app::Roles;
    for (roles, diagnoses, aggregates) in
        [(Roles::ALL, true, true), (Roles::AGGREGATE, false, true), (Roles::DIAGNOSE, true, false)]
    {
        let dir = tempfile::tempdir().unwrap();
        let (cfg, probes, _, _) = test_config(dir.path(), 1, &[]);
        let app =
            netqoe::app::start_roles(cfg, std::net::TcpListener::bind("127.0.0.1:0").unwrap(), roles).await.unwrap();
        assert_eq!(app.diagnoser.is_some(), diagnoses, "{roles:?}");
        assert_eq!(app.pipeline.is_some(), aggregates, "{roles:?}");
        if let Some(p) = &app.pipeline {
            assert_eq!(p.diagnoser.is_some(), diagnoses, "{roles:?}: the pipeline's own diagnoser");
        }
        let client = awc::Client::builder().timeout(Duration::from_secs(10)).finish();
        let ready = client.get(app.url("/readyz")).send().await.unwrap();
        assert_eq!(ready.status().as_u16(), 200, "{roles:?}");
        if roles == Roles::DIAGNOSE {
            let r = post(&client, &app.url("/v1/events"), Some(&probes[0].1), "application/json", b"{}".to_vec()).await;
            assert_eq!(r.status, 404, "no ingest in the diagnose role");
        }
        app.shutdown().await.unwrap();
    }
}

/// Windows of two regions (3 probes each, targets x and y) as the global tier stores them: through
/// the federation message and `to_global` (series `region~probe`). `rtt(region, target, minute)`.
async fn global_fleet(rtt: impl Fn(&str, &str, i64) -> f64) -> (Arc<dyn RollupStore>, i64) {
    let store: Arc<dyn RollupStore> = Arc::new(MemoryStore::new());
    let now = netqoe_actors::now_ms();
    let first = (now / 60_000 - 30) * 60_000;
    for region in ["eu", "us"] {
        let mut windows = Vec::new();
        for m in 0..29 {
            for p in ["p1", "p2", "p3"] {
                for t in ["x", "y"] {
                    let w = rtt_window(p, t, first + m * 60_000, rtt(region, t, m));
                    windows.push(netqoe_domain::federation::WindowRevision {
                        key: w.key,
                        revision: 1,
                        closed: true,
                        agg: w.agg,
                    });
                }
            }
        }
        let msg = netqoe_domain::federation::UplinkBatch { region: region.into(), committed_ms: now, windows };
        let decoded = netqoe_domain::federation::UplinkBatch::decode(&msg.encode()).unwrap();
        let rollups = netqoe::rabbit::federation::to_global(decoded).unwrap();
        store.commit(WriteSet { rollups, ..Default::default() }).await.unwrap();
    }
    (store, first)
}

#[actix_rt::test]
async fn the_global_tier_blames_a_target_degraded_from_every_region() {
    // a CDN origin slow everywhere: x from both regions' probes
    let (store, first) = global_fleet(|_, t, m| if t == "x" && m >= 23 { 300.0 } else { 30.0 }).await;
    let list = first_incidents(&store, 31, first).await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0].scope, Scope::Target);
    assert_eq!(list[0].subject, BTreeMap::from([("target".to_string(), "x".to_string())]));
    assert_eq!(list[0].affected_probes.len(), 6, "{:?}", list[0].affected_probes);
}

#[actix_rt::test]
async fn the_global_tier_blames_a_region_whose_probes_alone_degrade() {
    // one region's transit: every target slow from eu's probes only
    let (store, first) = global_fleet(|r, _, m| if r == "eu" && m >= 23 { 300.0 } else { 30.0 }).await;
    let list = first_incidents(&store, 31, first).await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0].scope, Scope::Group);
    assert_eq!(list[0].subject, BTreeMap::from([("probe.region".to_string(), "eu".to_string())]));
    assert!(list[0].affected_probes.iter().all(|p| p.starts_with("eu~")), "{:?}", list[0].affected_probes);
}
