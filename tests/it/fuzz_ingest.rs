//! Fuzzing what untrusted bytes reach: the ingest decoder (JSON and NDJSON body → validated
//! events, `netqoe::http::ingest::events_of`) and the binary codec (`netqoe_domain::codec`), from
//! a seed corpus of the hostile inputs in `tests/fuzz_corpus/` (malformed, deeply nested, huge and
//! non-finite numbers, unknown fields, wrong types, path traversal, odd Unicode and invalid UTF-8,
//! bad times, many errors, old status names, NDJSON with CRLF and blank lines), mutated at random,
//! plus arbitrary bytes and arbitrary JSON.
//!
//! Properties: never a panic; an error is a 400 (not JSON) or 422 (schema or rule) problem
//! naming a field; what is accepted is valid (each event passes `validate` again) and survives the
//! codec exactly; the codec refuses bytes it did not write, never panics, and re-encodes what it
//! accepts unchanged.
//!
//! Bounded for `.ci/run` (`NETQOE_FUZZ_CASES`, default 2000 per property, a few seconds); a longer
//! campaign: `NETQOE_FUZZ_CASES=1000000 cargo test --release --test it fuzz_ingest`.

use netqoe::http::ingest::events_of;
use netqoe_domain::codec::{decode_events, encode_events};
use netqoe_domain::EventLimits;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// The corpus's events are stamped 2026-12-02T12:00:00Z; judge them a minute later.
const NOW: i64 = 1_796_212_800_000 + 60_000;
const MAX_EVENTS: usize = 5000;

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_corpus");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    assert!(out.len() >= 15, "the seed corpus is in tests/fuzz_corpus");
    out
}

fn cases() -> u32 {
    std::env::var("NETQOE_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000)
}

/// The decoder's contract on one body, both formats.
fn check_body(body: &[u8]) -> Result<(), TestCaseError> {
    let limits = EventLimits::default();
    for ndjson in [false, true] {
        match events_of(body, ndjson, NOW, &limits, MAX_EVENTS) {
            Ok(events) => {
                prop_assert!(!events.is_empty() && events.len() <= MAX_EVENTS);
                let mut buf = Vec::new();
                encode_events(&events, &mut buf);
                prop_assert_eq!(decode_events(&buf).unwrap(), events.clone(), "the codec carries what ingest accepts");
                for e in &events {
                    prop_assert!(e.ts_ms <= NOW + limits.max_future_ms && e.ts_ms >= NOW - limits.max_past_ms);
                    prop_assert!(e.rtt_samples_ms.iter().all(|v| v.is_finite() && *v >= 0.0));
                }
            }
            Err(p) => {
                prop_assert!(p.status == 400 || p.status == 422, "status {} for {:?}", p.status, p.detail);
                prop_assert!(
                    p.field.as_deref().is_some_and(|f| !f.is_empty()),
                    "a problem names its field: {:?}",
                    p.detail
                );
            }
        }
    }
    Ok(())
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
    Duplicate(usize, usize),
    Splice(usize, &'static str),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let tokens = prop::sample::select(vec![
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "\"",
        "\\",
        "null",
        "-0",
        "1e309",
        "NaN",
        "\"events\"",
        "\"seq\": -1",
        "\u{0}",
        "\"kind\": \"icmp\"",
        "\"rtt_ms\": ",
        "\n",
        "\r\n",
        "\u{feff}",
        "\"status\": \"http_4xx\"",
    ]);
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 1usize..64).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
        (any::<usize>(), tokens).prop_map(|(i, t)| Mutation::Splice(i, t)),
    ]
}

fn apply(mut b: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % (len + 1) };
        match *m {
            Mutation::Flip(i, x) if !b.is_empty() => {
                let n = b.len();
                b[i % n] ^= x | 1;
            }
            Mutation::Insert(i, x) => b.insert(at(i, b.len()), x),
            Mutation::Delete(i) if !b.is_empty() => {
                let n = b.len();
                b.remove(i % n);
            }
            Mutation::Truncate(i) => b.truncate(at(i, b.len())),
            Mutation::Duplicate(i, n) if !b.is_empty() => {
                let s = i % b.len();
                let chunk: Vec<u8> = b[s..(s + n).min(b.len())].to_vec();
                let p = at(i / 7, b.len());
                b.splice(p..p, chunk);
            }
            Mutation::Splice(i, t) => {
                let p = at(i, b.len());
                b.splice(p..p, t.bytes());
            }
            _ => {}
        }
    }
    b
}

fn runner() -> TestRunner {
    TestRunner::new(Config { cases: cases(), failure_persistence: None, ..Config::default() })
}

#[test]
fn the_seed_corpus_itself_is_handled() {
    for (name, body) in corpus() {
        check_body(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // the valid seed is accepted whole, and the hostile ones are not
    let valid = &corpus().into_iter().find(|(n, _)| n == "valid.json").unwrap().1;
    assert_eq!(events_of(valid, false, NOW, &EventLimits::default(), MAX_EVENTS).unwrap().len(), 4);
}

#[test]
fn mutated_seeds_never_panic_and_get_a_clear_answer() {
    let seeds = corpus();
    let strategy = (0..seeds.len(), proptest::collection::vec(mutation(), 1..8));
    runner().run(&strategy, |(i, muts)| check_body(&apply(seeds[i].1.clone(), &muts))).unwrap();
}

#[test]
fn arbitrary_bytes_never_panic() {
    runner().run(&proptest::collection::vec(any::<u8>(), 0..2048), |b| check_body(&b)).unwrap();
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        any::<f64>().prop_map(|f| serde_json::json!(f)),
        "[a-z_0-9:./@-]{0,12}".prop_map(serde_json::Value::String),
        prop::sample::select(vec!["icmp", "udp", "http", "ok", "http_4xx", "2026-12-02T12:00:30Z"])
            .prop_map(|s| serde_json::Value::String(s.to_string())),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        let keys = prop::sample::select(vec![
            "event_id",
            "seq",
            "ts",
            "target",
            "kind",
            "rtt_ms",
            "rtt_samples_ms",
            "sent",
            "received",
            "jitter_ms",
            "dns_ms",
            "connect_ms",
            "tls_ms",
            "ttfb_ms",
            "total_ms",
            "cert_days",
            "status",
            "run_start",
            "extra",
        ]);
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map(keys, inner, 0..10)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

#[test]
fn arbitrary_json_batches_never_panic() {
    let strategy = proptest::collection::vec(json_value(), 0..6);
    runner()
        .run(&strategy, |events| {
            let body = serde_json::to_vec(&serde_json::json!({ "events": events })).unwrap();
            check_body(&body)?;
            let lines: Vec<String> = events.iter().map(|e| e.to_string()).collect();
            check_body(lines.join("\n").as_bytes())
        })
        .unwrap();
}

#[test]
fn the_codec_refuses_or_reproduces_mutated_encodings() {
    let valid = &corpus().into_iter().find(|(n, _)| n == "valid.json").unwrap().1;
    let events = events_of(valid, false, NOW, &EventLimits::default(), MAX_EVENTS).unwrap();
    let mut encoded = Vec::new();
    encode_events(&events, &mut encoded);
    let strategy = proptest::collection::vec(mutation(), 1..6);
    runner()
        .run(&strategy, |muts| {
            let bytes = apply(encoded.clone(), &muts);
            if let Ok(decoded) = decode_events(&bytes) {
                let mut again = Vec::new();
                encode_events(&decoded, &mut again);
                prop_assert_eq!(decode_events(&again).unwrap(), decoded);
            }
            Ok(())
        })
        .unwrap();
}
