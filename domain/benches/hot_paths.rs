//! Micro-benchmarks of the hot paths: decode + validate per event, window assignment, sketch
//! insert and merge, batch (envelope) encode and decode. `cargo bench -p netqoe-domain`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use netqoe_domain::event::validate;
use netqoe_domain::{DdSketch, Event, EventLimits, Tier, WindowAgg, WireBatch};

const NOW: i64 = 1_800_000_000_000;

fn batch_json(n: usize) -> Vec<u8> {
    let events: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            serde_json::json!({"event_id": format!("probe-1-{i}"), "seq": i, "ts": "2027-01-15T08:00:00.000Z",
                               "target": format!("target-{:03}.example", i % 4), "kind": "udp",
                               "rtt_samples_ms": [10.1, 11.4, 9.8, 12.0, 10.9, 10.2, 11.1, 10.7, 13.2, 10.4],
                               "sent": 10, "received": 10})
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "events": events })).unwrap()
}

fn decode_validate(c: &mut Criterion) {
    let body = batch_json(100);
    let limits = EventLimits { max_past_ms: i64::MAX / 4, ..Default::default() };
    let mut g = c.benchmark_group("ingest");
    g.throughput(Throughput::Elements(100));
    g.bench_function("decode+validate 100-event batch", |b| {
        b.iter(|| {
            let batch: WireBatch = serde_json::from_slice(black_box(&body)).unwrap();
            let events: Vec<Event> =
                batch.events.into_iter().enumerate().map(|(i, w)| validate(w, i, NOW, &limits).unwrap()).collect();
            black_box(events)
        })
    });
    g.finish();
}

fn windows(c: &mut Criterion) {
    let body = batch_json(100);
    let limits = EventLimits { max_past_ms: i64::MAX / 4, ..Default::default() };
    let batch: WireBatch = serde_json::from_slice(&body).unwrap();
    let events: Vec<Event> =
        batch.events.into_iter().enumerate().map(|(i, w)| validate(w, i, NOW, &limits).unwrap()).collect();
    let mut g = c.benchmark_group("windows");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("assign 1m window + aggregate (per event)", |b| {
        let mut agg = WindowAgg::default();
        b.iter(|| {
            for e in &events {
                let start = Tier::M1.bin_start(black_box(e.ts_ms));
                for contribution in e.contributions() {
                    agg.add(&contribution);
                }
                black_box(start);
            }
        })
    });
    g.finish();
}

fn sketches(c: &mut Criterion) {
    let mut g = c.benchmark_group("sketch");
    let values: Vec<f64> = (0..10_000).map(|i| 1.0 + (i as f64 * 0.7919).sin().abs() * 200.0).collect();
    g.throughput(Throughput::Elements(values.len() as u64));
    g.bench_function("insert", |b| {
        b.iter(|| {
            let mut s = DdSketch::new();
            for &v in &values {
                s.insert(black_box(v));
            }
            black_box(s)
        })
    });
    let mut a = DdSketch::new();
    let mut b2 = DdSketch::new();
    for (i, &v) in values.iter().enumerate() {
        if i % 2 == 0 {
            a.insert(v)
        } else {
            b2.insert(v * 1.3)
        }
    }
    g.throughput(Throughput::Elements(1));
    g.bench_function("merge", |b| {
        b.iter(|| {
            let mut m = a.clone();
            m.merge(black_box(&b2));
            black_box(m)
        })
    });
    g.bench_function("encode+decode", |b| b.iter(|| DdSketch::decode(&black_box(&a).encode()).unwrap()));
    g.finish();
}

fn envelope(c: &mut Criterion) {
    let body = batch_json(100);
    let limits = EventLimits { max_past_ms: i64::MAX / 4, ..Default::default() };
    let batch: WireBatch = serde_json::from_slice(&body).unwrap();
    let events: Vec<Event> =
        batch.events.into_iter().enumerate().map(|(i, w)| validate(w, i, NOW, &limits).unwrap()).collect();
    let encoded = serde_json::to_vec(&events).unwrap();
    let mut g = c.benchmark_group("envelope");
    g.throughput(Throughput::Elements(100));
    g.bench_function("JSON encode 100 events", |b| b.iter(|| serde_json::to_vec(black_box(&events)).unwrap()));
    g.bench_function("JSON decode 100 events", |b| {
        b.iter(|| serde_json::from_slice::<Vec<Event>>(black_box(&encoded)).unwrap())
    });
    let mut binary = Vec::new();
    netqoe_domain::codec::encode_events(&events, &mut binary);
    g.bench_function("binary encode 100 events", |b| {
        b.iter(|| {
            let mut out = Vec::new();
            netqoe_domain::codec::encode_events(black_box(&events), &mut out);
            out
        })
    });
    g.bench_function("binary decode 100 events", |b| {
        b.iter(|| netqoe_domain::codec::decode_events(black_box(&binary)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, decode_validate, windows, sketches, envelope);
criterion_main!(benches);
