//! The store contract: every `RollupStore` backend must pass the same behaviours. Runs against the
//! in-memory reference store and SQLite always, and against ScyllaDB/Cassandra when
//! `NETQOE_SCYLLA_URI=host:9042` is set (those tests are `#[ignore]`d otherwise — shown as ignored,
//! never as passed; `scripts/test.sh` adds `--include-ignored` when the variable is set). Each
//! Scylla test runs in its own keyspace, dropped afterwards.

use std::sync::Arc;

use crate::common::scylla_store;

use netqoe_actors::memory::MemoryStore;
use netqoe_actors::store::{
    merge_fleet, FleetAnswer, FleetQuery, FleetRollup, ProbeMark, Retention, RollupQuery, RollupStore, WriteSet,
};
use netqoe_domain::event::Contribution;
use netqoe_domain::rollup::merge_children;
use netqoe_domain::{event_hash, EventSet, Metric, Rollup, SessionState, Tier, WindowAgg, WindowKey};

const DAY: i64 = 86_400_000;

fn key(probe: &str, target: &str, start_ms: i64) -> WindowKey {
    WindowKey { probe: probe.into(), target: target.into(), metric: Metric::Rtt, tier: Tier::M1, start_ms }
}

fn agg(values: &[f64]) -> WindowAgg {
    let mut a = WindowAgg::default();
    a.add(&Contribution {
        metric: Metric::Rtt,
        values,
        sent: values.len() as u64,
        received: values.len() as u64,
        jitter_estimate_ms: Some(1.0),
        error: None,
    });
    a
}

fn rollup(k: WindowKey, values: &[f64], revision: u64) -> Rollup {
    let mut applied = EventSet::default();
    for (i, _) in values.iter().enumerate() {
        applied.insert(event_hash(&format!("e{i}-{revision}")));
    }
    Rollup { key: k, agg: agg(values), applied, revision, closed: false }
}

fn ws(rollups: Vec<Rollup>) -> WriteSet {
    let derive = rollups.iter().map(|r| r.key.clone()).collect();
    WriteSet { rollups, derive, ..Default::default() }
}

fn q(tier: Tier, from_ms: i64, to_ms: i64) -> RollupQuery {
    RollupQuery { probe: None, target: None, metric: None, tier, from_ms, to_ms, limit: 10_000, after: None }
}

fn base() -> i64 {
    (netqoe_actors::now_ms() - 3 * DAY) / DAY * DAY
}

async fn upsert_is_idempotent(s: Arc<dyn RollupStore>) {
    let b = base();
    let w = ws(vec![rollup(key("p", "t", b), &[1.0, 2.0], 1)]);
    let r1 = s.commit(w.clone()).await.unwrap();
    assert_eq!(r1.written.get(&Tier::M1), Some(&1));
    assert_eq!(r1.written.get(&Tier::H1), Some(&1), "its hour derived once");
    assert_eq!(r1.written.get(&Tier::D1), Some(&1), "its day derived once");
    let r2 = s.commit(w).await.unwrap();
    assert_eq!(r2.written.get(&Tier::M1), None, "same revision again writes nothing");
    let rows = s.query(&q(Tier::M1, b, b + DAY)).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].agg.count, 2);
    let loaded = s.load_windows(&[key("p", "t", b)]).await.unwrap();
    assert_eq!(loaded[0].applied.len(), 2, "the window's event set is stored with it");
    assert!(loaded[0].applied.contains(event_hash("e0-1")));
    let h = s.query(&q(Tier::H1, b, b + DAY)).await.unwrap();
    assert!(h[0].applied.is_empty(), "derived tiers carry no event set");
}

/// A write set carries each window's events added since its previous revision; loading gives
/// the union of the deltas of the revisions the store accepted, never of a rejected one.
async fn event_sets_accumulate_deltas(s: Arc<dyn RollupStore>) {
    let b = base();
    let k = key("p", "t", b);
    let with = |ids: &[&str], values: &[f64], revision: u64| {
        let mut r = rollup(k.clone(), values, revision);
        r.applied = ids.iter().map(|i| event_hash(i)).collect();
        r
    };
    s.commit(ws(vec![with(&["a", "b"], &[1.0, 2.0], 1)])).await.unwrap();
    s.commit(ws(vec![with(&["c"], &[1.0, 2.0, 3.0], 2)])).await.unwrap();
    // a stale revision (lower than stored) is rejected with its delta
    s.commit(ws(vec![with(&["stale"], &[9.0], 1)])).await.unwrap();
    s.commit(ws(vec![with(&[], &[1.0, 2.0, 3.0], 3)])).await.unwrap();
    let got = s.load_windows(std::slice::from_ref(&k)).await.unwrap();
    assert_eq!((got[0].revision, got[0].agg.count), (3, 3));
    let mut ids: Vec<u64> = got[0].applied.iter().collect();
    ids.sort_unstable();
    let mut want: Vec<u64> = ["a", "b", "c"].iter().map(|i| event_hash(i)).collect();
    want.sort_unstable();
    assert_eq!(ids, want);
    let rows = s.query(&q(Tier::M1, b, b + DAY)).await.unwrap();
    assert!(rows[0].applied.is_empty(), "queries do not carry event sets");
}

async fn lower_revision_never_overwrites(s: Arc<dyn RollupStore>) {
    let b = base();
    s.commit(ws(vec![rollup(key("p", "t", b), &[1.0, 2.0, 3.0], 5)])).await.unwrap();
    s.commit(ws(vec![rollup(key("p", "t", b), &[9.0], 4)])).await.unwrap();
    let got = s.load_windows(&[key("p", "t", b)]).await.unwrap();
    assert_eq!((got[0].revision, got[0].agg.count), (5, 3));
    s.commit(ws(vec![rollup(key("p", "t", b), &[9.0], 6)])).await.unwrap();
    let got = s.load_windows(&[key("p", "t", b)]).await.unwrap();
    assert_eq!((got[0].revision, got[0].agg.count), (6, 1));
}

async fn coarse_tiers_are_merges_of_finer_ones(s: Arc<dyn RollupStore>) {
    let b = base();
    let mut rs = Vec::new();
    // two hours, three windows each
    for (h, m) in [(0, 0), (0, 7), (0, 59), (1, 3), (1, 30), (1, 31)] {
        let start = b + h * 3_600_000 + m * 60_000;
        rs.push(rollup(key("p", "t", start), &[m as f64 + 1.0, 2.0 * (h as f64 + 1.0)], 1));
    }
    s.commit(ws(rs.clone())).await.unwrap();
    let h1 = s.query(&q(Tier::H1, b, b + DAY)).await.unwrap();
    assert_eq!(h1.len(), 2);
    for (i, h) in h1.iter().enumerate() {
        let want = merge_children(rs[i * 3..i * 3 + 3].iter().map(|r| &r.agg));
        assert_eq!(h.agg.count, want.count);
        assert_eq!(h.agg.sketch, want.sketch);
        assert_eq!(h.agg.min, want.min);
        assert_eq!(h.agg.max, want.max);
    }
    let d1 = s.query(&q(Tier::D1, b, b + DAY)).await.unwrap();
    assert_eq!(d1.len(), 1);
    assert_eq!(d1[0].agg.count, 12);
    assert_eq!(d1[0].agg.sketch, merge_children(h1.iter().map(|h| &h.agg)).sketch);
    // a new revision of one minute re-derives its hour and day
    s.commit(ws(vec![rollup(rs[0].key.clone(), &[100.0], 2)])).await.unwrap();
    let h1b = s.query(&q(Tier::H1, b, b + 3_600_000)).await.unwrap();
    assert_eq!(h1b[0].agg.count, 5);
    assert_eq!(h1b[0].agg.max, Some(100.0));
    assert!(h1b[0].revision > h1[0].revision);
    let d1b = s.query(&q(Tier::D1, b, b + DAY)).await.unwrap();
    assert_eq!(d1b[0].agg.count, 11);
}

async fn batch_ids_and_watermarks_are_recorded(s: Arc<dyn RollupStore>) {
    let w = WriteSet {
        rollups: vec![],
        batches: vec!["b1".into(), "b2".into()],
        watermarks: vec![("p".into(), ProbeMark { max_event_ms: Some(500), max_seq: None })],
        derive: vec![],
    };
    s.commit(w).await.unwrap();
    let older = ProbeMark { max_event_ms: Some(300), max_seq: Some(42) };
    s.commit(WriteSet { watermarks: vec![("p".into(), older)], ..Default::default() }).await.unwrap();
    s.commit(WriteSet {
        watermarks: vec![("p".into(), ProbeMark { max_event_ms: None, max_seq: Some(7) })],
        ..Default::default()
    })
    .await
    .unwrap();
    let done = s.processed(&["b0".into(), "b1".into(), "b2".into(), "b3".into()]).await.unwrap();
    assert_eq!(done, vec!["b1".to_string(), "b2".to_string()]);
    assert_eq!(
        s.load_mark("p").await.unwrap(),
        Some(ProbeMark { max_event_ms: Some(500), max_seq: Some(42) }),
        "marks never go back, field by field"
    );
    assert_eq!(s.load_mark("other").await.unwrap(), None);
}

async fn sessions_round_trip(s: Arc<dyn RollupStore>) {
    let mut a = SessionState::new("a");
    a.events = 7;
    a.clock_skew_ms = Some(12.5);
    let b = SessionState::new("b");
    s.save_sessions(&[b.clone(), a.clone()]).await.unwrap();
    assert_eq!(s.load_session("a").await.unwrap(), Some(a.clone()));
    assert_eq!(s.load_session("zzz").await.unwrap(), None);
    let all = s.list_sessions().await.unwrap();
    assert_eq!(all.iter().map(|x| x.probe.as_str()).collect::<Vec<_>>(), vec!["a", "b"]);
    a.events = 8;
    s.save_sessions(&[a.clone()]).await.unwrap();
    assert_eq!(s.load_session("a").await.unwrap().unwrap().events, 8);
    // two snapshots of one probe in one call: the later one stands
    let mut older = a.clone();
    older.events = 9;
    a.events = 10;
    s.save_sessions(&[older, a.clone()]).await.unwrap();
    assert_eq!(s.load_session("a").await.unwrap().unwrap().events, 10);
    // session actors save concurrently: every save lands
    let saves = (0..40u64).map(|i| {
        let s = s.clone();
        async move {
            let mut x = SessionState::new(format!("c{i:02}"));
            x.events = i;
            s.save_sessions(&[x]).await
        }
    });
    for r in futures_util::future::join_all(saves).await {
        r.unwrap();
    }
    for i in 0..40u64 {
        assert_eq!(s.load_session(&format!("c{i:02}")).await.unwrap().unwrap().events, i);
    }
}

async fn queries_filter_order_and_limit(s: Arc<dyn RollupStore>) {
    let b = base();
    let mut rs = Vec::new();
    for p in ["p2", "p1"] {
        for t in ["tb", "ta"] {
            for m in [2, 0, 1] {
                rs.push(rollup(key(p, t, b + m * 60_000), &[1.0], 1));
            }
        }
    }
    let mut dns = rollup(key("p1", "ta", b), &[3.0], 1);
    dns.key.metric = Metric::Dns;
    rs.push(dns);
    s.commit(ws(rs)).await.unwrap();
    let all = s.query(&q(Tier::M1, b, b + 3 * 60_000)).await.unwrap();
    assert_eq!(all.len(), 13);
    let keys: Vec<_> = all
        .iter()
        .map(|r| (r.key.probe.clone(), r.key.target.clone(), r.key.metric.as_str(), r.key.start_ms))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "ordered by probe, target, metric, start");
    let mut f = q(Tier::M1, b + 60_000, b + 3 * 60_000);
    f.probe = Some("p1".into());
    f.target = Some("ta".into());
    f.metric = Some(Metric::Rtt);
    let got = s.query(&f).await.unwrap();
    assert_eq!(got.iter().map(|r| r.key.start_ms).collect::<Vec<_>>(), vec![b + 60_000, b + 120_000]);
    let mut lim = q(Tier::M1, b, b + DAY);
    lim.limit = 4;
    assert_eq!(s.query(&lim).await.unwrap().len(), 4);
}

async fn retention_prunes_per_tier(s: Arc<dyn RollupStore>) {
    let now = netqoe_actors::now_ms();
    let old = (now - 10 * DAY) / DAY * DAY;
    let recent = (now - DAY) / DAY * DAY;
    s.commit(ws(vec![rollup(key("p", "t", old), &[1.0], 1), rollup(key("p", "t", recent), &[1.0], 1)])).await.unwrap();
    s.commit(WriteSet { batches: vec!["x".into()], ..Default::default() }).await.unwrap();
    let retention = Retention { dedup_ms: DAY, ..Retention::default() };
    let ttl_backend = s.name() == "scylla"; // expires rows itself (TTL from the window's end)
    let n = s.prune(now, &retention).await.unwrap();
    // the expired 1m window, plus its event set where the backend keeps it in a table of its own
    let want = match s.name() {
        "sqlite" => 3, // and its fleet window
        "scylla" => 0,
        _ => 1,
    };
    assert_eq!(n, want, "rows pruned at the first pass");
    assert!(s.query(&q(Tier::M1, old, old + 60_000)).await.unwrap().is_empty(), "1m past 7 days is gone");
    assert_eq!(s.query(&q(Tier::M1, recent, recent + 60_000)).await.unwrap().len(), 1);
    // the 1m window was past its retention when written (a backend may not store it at all), yet
    // its event is in the coarse tiers, which keep it for 90 days and 2 years
    let h1 = s.query(&q(Tier::H1, old, old + 3_600_000)).await.unwrap();
    assert_eq!(h1.iter().map(|r| r.agg.count).collect::<Vec<_>>(), vec![1], "1h kept for 90 days");
    let d1 = s.query(&q(Tier::D1, old, old + DAY)).await.unwrap();
    assert_eq!(d1.iter().map(|r| r.agg.count).collect::<Vec<_>>(), vec![1]);
    assert_eq!(s.processed(&["x".into()]).await.unwrap().len(), 1, "fresh batch ids stay");
    if ttl_backend {
        return; // batch ids expire by the table's TTL; a test cannot move the server's clock
    }
    let n = s.prune(now + 2 * DAY, &retention).await.unwrap();
    assert_eq!(n, 1, "only the expired batch id is pruned two days later");
    assert!(s.processed(&["x".into()]).await.unwrap().is_empty(), "expired batch ids are forgotten");
}

/// A 1m window past its own retention is kept while its hour can still change (an event up to
/// `reopen_ms` old may still arrive), so re-deriving the hour never loses the windows before it.
async fn coarse_windows_never_shrink_as_children_age(s: Arc<dyn RollupStore>) {
    let now = netqoe_actors::now_ms();
    let retention = Retention { dedup_ms: DAY, ..Retention::default() };
    let counts = |rows: Vec<Rollup>| rows.iter().map(|r| r.agg.count).collect::<Vec<_>>();
    // an hour 7.5 days back: its 1m windows are past the 7 days, the hour within the 8 of reopen_ms
    let hour = Tier::H1.bin_start(now - 7 * DAY - DAY / 2);
    s.commit(ws(vec![rollup(key("p", "aging", hour), &[1.0, 2.0], 1)])).await.unwrap();
    s.prune(now, &retention).await.unwrap();
    s.commit(ws(vec![rollup(key("p", "aging", hour + 60_000), &[3.0], 1)])).await.unwrap();
    let mut f = q(Tier::H1, hour, hour + 3_600_000);
    f.target = Some("aging".into());
    assert_eq!(counts(s.query(&f).await.unwrap()), vec![3], "the hour holds both minutes");
    f.tier = Tier::M1;
    assert_eq!(s.query(&f).await.unwrap().len(), 2, "both minutes are kept while the hour can change");
    f.tier = Tier::D1;
    (f.from_ms, f.to_ms) = (Tier::D1.bin_start(hour), Tier::D1.bin_start(hour) + DAY);
    assert_eq!(counts(s.query(&f).await.unwrap()), vec![3]);
}

/// Pages (`limit` + `after`) follow one order — probe, target, metric name, window start — so they
/// together return each window of the full answer once, whichever filters the query has.
async fn queries_page_in_one_order(s: Arc<dyn RollupStore>) {
    use netqoe_actors::store::QueryCursor;
    let b = base();
    let mut rs = Vec::new();
    for probe in ["pb", "pa"] {
        for target in ["tz", "ta"] {
            for (i, metric) in [Metric::Rtt, Metric::Dns, Metric::Connect].into_iter().enumerate() {
                for m in 0..3 {
                    let mut k = key(probe, target, b + m * 60_000);
                    k.metric = metric;
                    rs.push(rollup(k, &[1.0 + i as f64], 1));
                }
            }
        }
    }
    s.commit(ws(rs)).await.unwrap();
    let mut full = q(Tier::M1, b, b + DAY);
    let mut filtered = q(Tier::M1, b, b + DAY);
    filtered.target = Some("ta".into());
    filtered.metric = Some(Metric::Dns);
    for all in [full.clone(), filtered.clone()] {
        let want: Vec<QueryCursor> = s.query(&all).await.unwrap().iter().map(QueryCursor::of).collect();
        let mut sorted = want.clone();
        sorted.sort();
        assert_eq!(want, sorted, "the answer is in the query order");
        let mut got = Vec::new();
        let mut page = RollupQuery { limit: 4, ..all.clone() };
        loop {
            let rows = s.query(&page).await.unwrap();
            got.extend(rows.iter().map(QueryCursor::of));
            if rows.len() < 4 {
                break;
            }
            page.after = rows.last().map(QueryCursor::of);
        }
        assert_eq!(got, want);
    }
    full.probe = Some("pa".into());
    assert_eq!(s.query(&full).await.unwrap().len(), 18);
    filtered.probe = Some("pb".into());
    assert_eq!(s.query(&filtered).await.unwrap().len(), 3);
}

async fn fleet(s: &Arc<dyn RollupStore>, tier: Tier, from_ms: i64, to_ms: i64) -> Vec<FleetRollup> {
    let fq = FleetQuery { target: None, metric: None, tier, from_ms, to_ms, limit: 10_000, max_windows: 10_000 };
    match s.query_fleet(&fq).await.unwrap() {
        FleetAnswer::Windows(w) => w,
        FleetAnswer::TooWide => panic!("10,000 windows are not too wide"),
    }
}

/// The fleet windows equal the merge of the stored probe windows, field by field.
fn assert_fleet_is_merge(got: &[FleetRollup], rows: &[Rollup], what: &str) {
    let want = merge_fleet(rows);
    assert_eq!(got.len(), want.len(), "{what}: fleet windows");
    for (g, w) in got.iter().zip(&want) {
        let at = format!("{what}: {} {} {}", g.target, g.metric.as_str(), g.start_ms);
        assert_eq!((&g.target, g.metric, g.tier, g.start_ms), (&w.target, w.metric, w.tier, w.start_ms), "{at}");
        assert_eq!(g.probes, w.probes, "{at}: probes");
        assert_eq!(g.agg.events, w.agg.events, "{at}: events");
        assert_eq!(g.agg.count, w.agg.count, "{at}: count");
        assert_eq!(g.agg.sketch, w.agg.sketch, "{at}: sketch");
        assert_eq!((g.agg.min, g.agg.max), (w.agg.min, w.agg.max), "{at}: min/max");
        assert_eq!((g.agg.sent, g.agg.received, g.agg.jitter_n), (w.agg.sent, w.agg.received, w.agg.jitter_n), "{at}");
        assert_eq!(g.agg.errors, w.agg.errors, "{at}: errors");
        assert!((g.agg.sum - w.agg.sum).abs() <= 1e-9 * w.agg.sum.abs().max(1.0), "{at}: sum");
    }
}

/// Fleet windows (`query_fleet`) answer as the merge of the probes' stored windows of each tier,
/// through new windows, new revisions, replays, stale revisions and re-derived hours and days.
async fn fleet_windows_are_merges_of_probe_windows(s: Arc<dyn RollupStore>) {
    let b = base();
    let check = |label: &'static str| {
        let s = s.clone();
        async move {
            for tier in Tier::ALL {
                let rows = s.query(&q(tier, b, b + DAY)).await.unwrap();
                assert!(!rows.is_empty(), "{label}: {} windows", tier.as_str());
                assert_fleet_is_merge(&fleet(&s, tier, b, b + DAY).await, &rows, &format!("{label} {}", tier.as_str()));
            }
        }
    };
    // 3 probes × 2 targets × 3 minutes over two hours, two metrics
    let mut first = Vec::new();
    for (i, p) in ["p1", "p2", "p3"].iter().enumerate() {
        for t in ["t1", "t2"] {
            for m in [0, 7, 65] {
                let v = [1.0 + i as f64, 10.0 * (m + 1) as f64, 3.5];
                first.push(rollup(key(p, t, b + m * 60_000), &v, 1));
            }
            let mut loss = rollup(key(p, t, b), &[], 1);
            loss.key.metric = Metric::Dns;
            loss.agg.add(&Contribution {
                metric: Metric::Dns,
                values: &[],
                sent: 0,
                received: 0,
                jitter_estimate_ms: None,
                error: Some(netqoe_domain::event::Status::Timeout),
            });
            first.push(loss);
        }
    }
    s.commit(ws(first.clone())).await.unwrap();
    check("first commit").await;
    // new revisions that grow some windows (the rows carry the whole state, as an aggregator's do)
    let mut grown = Vec::new();
    for r in first.iter().filter(|r| r.key.probe != "p3" && r.key.metric == Metric::Rtt) {
        let mut g = r.clone();
        g.revision = 2;
        g.agg.add(&Contribution {
            metric: Metric::Rtt,
            values: &[500.0, 0.25],
            sent: 2,
            received: 2,
            jitter_estimate_ms: Some(4.0),
            error: None,
        });
        g.applied = EventSet::default();
        g.applied.insert(event_hash(&format!("grow-{}", r.key.start_ms)));
        grown.push(g);
    }
    s.commit(ws(grown.clone())).await.unwrap();
    check("grown").await;
    // a replay of that commit, and a stale revision, change nothing
    s.commit(ws(grown.clone())).await.unwrap();
    let mut stale = first[0].clone();
    stale.agg.add(&Contribution {
        metric: Metric::Rtt,
        values: &[9999.0],
        sent: 1,
        received: 1,
        jitter_estimate_ms: None,
        error: None,
    });
    s.commit(ws(vec![stale])).await.unwrap();
    check("replayed and stale").await;
    let m1 = fleet(&s, Tier::M1, b, b + 60_000).await;
    let t1 = m1.iter().find(|f| f.target == "t1" && f.metric == Metric::Rtt).expect("t1's first minute");
    assert_eq!((t1.probes, t1.agg.count), (3, 3 * 3 + 2 * 2), "three probes, two of them grown");
    assert_eq!(t1.agg.max, Some(500.0));
    // a new probe joins one minute
    s.commit(ws(vec![rollup(key("p4", "t2", b + 7 * 60_000), &[42.0], 1)])).await.unwrap();
    check("a new probe").await;
    // filters and limits: one target, one metric, ordered by (target, metric, start)
    let fq = FleetQuery {
        target: Some("t2".into()),
        metric: Some(Metric::Rtt),
        tier: Tier::M1,
        from_ms: b,
        to_ms: b + DAY,
        limit: 2,
        max_windows: 10_000,
    };
    let FleetAnswer::Windows(two) = s.query_fleet(&fq).await.unwrap() else { panic!("too wide") };
    assert_eq!(
        two.iter().map(|f| (f.target.as_str(), f.start_ms, f.probes)).collect::<Vec<_>>(),
        vec![("t2", b, 3), ("t2", b + 7 * 60_000, 4)]
    );
}

fn incident(id: &str, opened_ms: i64, open: bool) -> netqoe_domain::diagnosis::Incident {
    use netqoe_domain::diagnosis::{Incident, IncidentState, MetricEvidence, Scope};
    Incident {
        id: id.into(),
        state: if open { IncidentState::Open } else { IncidentState::Resolved },
        scope: Scope::Target,
        subject: [("target".to_string(), "shop".to_string())].into(),
        metrics: ["loss".to_string()].into(),
        opened_ms,
        first_seen_ms: opened_ms - 180_000,
        updated_ms: opened_ms,
        resolved_ms: (!open).then_some(opened_ms + 600_000),
        peak_severity: 12.5,
        mos_impact: Some(3.4),
        affected_probes: ["p1".to_string(), "p2".to_string()].into(),
        affected_targets: ["shop".to_string()].into(),
        evidence: [("loss".to_string(), MetricEvidence { baseline: 0.002, observed: 1.0 })].into(),
        confidence: 1.0,
        p_value: Some(3.5e-12),
        runner_up: Some(netqoe_domain::diagnosis::RunnerUp {
            scope: netqoe_domain::diagnosis::Scope::Target,
            subject: [("target".to_string(), "t".to_string())].into(),
            p_value: 0.4,
        }),
    }
}

async fn incidents_are_upserted_and_listed(s: Arc<dyn RollupStore>) {
    use netqoe_actors::store::IncidentQuery;
    use netqoe_domain::diagnosis::IncidentState;
    let b = base();
    s.save_incidents(&[incident("i1", b, true), incident("i2", b + 60_000, true)]).await.unwrap();
    // i1 resolves: same id, new state
    s.save_incidents(&[incident("i1", b, false)]).await.unwrap();
    let all = IncidentQuery { state: None, from_ms: b, to_ms: b + DAY, limit: 100 };
    let got = s.list_incidents(&all).await.unwrap();
    assert_eq!(got.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), vec!["i2", "i1"], "newest first");
    assert_eq!(got[1], incident("i1", b, false), "stored whole, latest state");
    let open = s.list_incidents(&IncidentQuery { state: Some(IncidentState::Open), ..all.clone() }).await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].id, "i2");
    let later = s.list_incidents(&IncidentQuery { from_ms: b + 1, ..all.clone() }).await.unwrap();
    assert_eq!(later.len(), 1, "opened_ms in [from, to)");
    assert_eq!(s.list_incidents(&IncidentQuery { limit: 1, ..all }).await.unwrap().len(), 1);

    // over several days (the CQL store reads them a day partition at a time): every incident of
    // the range once, newest first across the days, the limit cutting the oldest
    let days: Vec<netqoe_domain::diagnosis::Incident> =
        (0..5).map(|d| incident(&format!("d{d}"), b - (d + 1) * DAY + d * 3_600_000, d % 2 == 0)).collect();
    s.save_incidents(&days).await.unwrap();
    let span = IncidentQuery { state: None, from_ms: b - 5 * DAY, to_ms: b + DAY, limit: 100 };
    let got: Vec<String> = s.list_incidents(&span).await.unwrap().into_iter().map(|i| i.id).collect();
    assert_eq!(got, vec!["i2", "i1", "d0", "d1", "d2", "d3", "d4"], "newest first across days");
    let got: Vec<String> = s
        .list_incidents(&IncidentQuery { limit: 4, ..span.clone() })
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(got, vec!["i2", "i1", "d0", "d1"]);
    let open = s.list_incidents(&IncidentQuery { state: Some(IncidentState::Open), ..span }).await.unwrap();
    assert_eq!(open.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), vec!["i2", "d0", "d2", "d4"]);
}

async fn missing_windows_are_absent(s: Arc<dyn RollupStore>) {
    assert!(s.load_windows(&[key("nobody", "t", 0)]).await.unwrap().is_empty());
    s.ready().await.unwrap();
}

macro_rules! contract {
    ($backend:ident, $make:expr) => {
        contract!($backend, $make, );
    };
    ($backend:ident, $make:expr, $(#[$attr:meta])*) => {
        mod $backend {
            use super::*;
            #[allow(clippy::redundant_closure_call)]
            async fn store() -> (Arc<dyn RollupStore>, Option<Box<dyn std::any::Any>>) {
                ($make)().await
            }
            #[actix_rt::test]
            $(#[$attr])*
            async fn upsert_is_idempotent() {
                let (s, _d) = store().await;
                super::upsert_is_idempotent(s).await
            }
            #[actix_rt::test]
            $(#[$attr])*
            async fn event_sets_accumulate_deltas() {
                let (s, _d) = store().await;
                super::event_sets_accumulate_deltas(s).await
            }
            #[actix_rt::test]
            $(#[$attr])*
            async fn incidents_are_upserted_and_listed() {
                let (s, _d) = store().await;
                super::incidents_are_upserted_and_listed(s).await
            }
            #[actix_rt::test]
            $(#[$attr])*
            async fn lower_revision_never_overwrites() {
                let (s, _d) = store().await;
                super::lower_revision_never_overwrites(s).await
            }
            #[actix_rt::test]
            $(#[$attr])*
            async fn coarse_tiers_are_merges_of_finer_ones() {
                let (s, _d) = store().await;
                super::coarse_tiers_are_merges_of_finer_ones(s).await
            }
            #[actix_rt::test]
            $(#[$attr])*
            async fn coarse_windows_never_shrink_as_children_age() {
                let (s, _d) = store().await;
                super::coarse_windows_never_shrink_as_children_age(s).await
            }
            #[actix_rt::test]
            $(#[$attr])*
            async fn queries_page_in_one_order() {
                let (s, _d) = store().await;
                super::queries_page_in_one_order(s).await
            }
            #[actix_rt::test]
            $(#[$attr])*
            async fn batch_ids_and_watermarks_are_recorded() {
                let (s, _d) = store().await;
                super::batch_ids_and_watermarks_are_recorded(s).await
            }
            #[actix_rt::test]
            $(#[$attr])*
            async fn sessions_round_trip() {
                let (s, _d) = store().await;
                super::sessions_round_trip(s).await
            }
            #[actix_rt::test]
            $(#[$attr])*
            async fn queries_filter_order_and_limit() {
                let (s, _d) = store().await;
                super::queries_filter_order_and_limit(s).await
            }
            #[actix_rt::test]
            $(#[$attr])*
            async fn retention_prunes_per_tier() {
                let (s, _d) = store().await;
                super::retention_prunes_per_tier(s).await
            }
            #[actix_rt::test]
            $(#[$attr])*
            async fn fleet_windows_are_merges_of_probe_windows() {
                let (s, _d) = store().await;
                super::fleet_windows_are_merges_of_probe_windows(s).await
            }
            #[actix_rt::test]
            $(#[$attr])*
            async fn missing_windows_are_absent() {
                let (s, _d) = store().await;
                super::missing_windows_are_absent(s).await
            }
        }
    };
}

contract!(memory, || async { (Arc::new(MemoryStore::new()) as Arc<dyn RollupStore>, None) });
contract!(sqlite, || async {
    let d = tempfile::tempdir().unwrap();
    let s = netqoe::sqlite::Sqlite::open(d.path()).unwrap();
    (Arc::new(s) as Arc<dyn RollupStore>, Some(Box::new(d) as Box<dyn std::any::Any>))
});

contract!(
    scylla,
    || async {
        let (s, ks) = scylla_store().await;
        (s, Some(Box::new(ks) as Box<dyn std::any::Any>))
    },
    #[ignore = "needs a CQL server: set NETQOE_SCYLLA_URI=host:9042 (scripts/test.sh then runs it)"]
);
