//! Event generation: a scenario's probe rounds turned into the events a real probe would post,
//! deterministically from the seed (SplitMix64), faults applied to the pairs they match.

use std::collections::BTreeMap;

use netqoe_domain::{Kind, Status, WireEvent};

use super::*;

/// SplitMix64: small, fast, and the same sequence on every platform and version.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.unit().max(1e-12), self.unit());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
    fn exp(&mut self) -> f64 {
        -self.unit().max(1e-12).ln()
    }
}

pub(super) fn matches(m: &BTreeMap<String, String>, p: &Node, t: &Node) -> bool {
    m.iter().all(|(k, v)| match k.as_str() {
        "probe" => &p.id == v,
        "target" => &t.id == v,
        k => {
            if let Some(l) = k.strip_prefix("probe.") {
                p.labels.get(l) == Some(v)
            } else if let Some(l) = k.strip_prefix("target.") {
                t.labels.get(l) == Some(v)
            } else {
                false
            }
        }
    })
}

struct PathState {
    c: Conditions,
    dns_fail: f64,
    offline: bool,
}

fn conditions(s: &Scenario, p: &Node, t: &Node, at_s: i64, start_ms: i64) -> PathState {
    let mut c = s.baseline.default.clone();
    for o in &s.baseline.overrides {
        if matches(&o.matches, p, t) {
            c.overlay(&o.set);
        }
    }
    if let (Some(pct), Some(rtt)) = (c.diurnal_pct, c.rtt_ms) {
        // sine over 24 h with its peak at 20:00 UTC
        let ms = start_ms + at_s * 1000;
        let hour = (ms.rem_euclid(86_400_000)) as f64 / 3_600_000.0;
        let phase = (hour - 20.0) / 24.0 * std::f64::consts::TAU;
        c.rtt_ms = Some(rtt * (1.0 + pct / 100.0 * phase.cos()));
    }
    let mut st = PathState { c, dns_fail: 0.0, offline: false };
    for f in &s.faults {
        if at_s < f.from_s || at_s >= f.to_s || !matches(&f.matches, p, t) {
            continue;
        }
        let e = &f.effect;
        let add = |v: &mut Option<f64>, a: Option<f64>| {
            if let (Some(x), Some(a)) = (v.as_mut(), a) {
                *x += a;
            }
        };
        add(&mut st.c.rtt_ms, e.rtt_ms_add);
        add(&mut st.c.jitter_ms, e.jitter_ms_add);
        add(&mut st.c.dns_ms, e.dns_ms_add);
        add(&mut st.c.connect_ms, e.connect_ms_add);
        add(&mut st.c.tls_ms, e.tls_ms_add);
        add(&mut st.c.ttfb_ms, e.ttfb_ms_add);
        if let Some(l) = e.loss {
            st.c.loss = Some(l);
        }
        if let Some(d) = e.dns_fail {
            st.dns_fail = d;
        }
        if e.cert_days.is_some() {
            st.c.cert_days = e.cert_days;
        }
        if e.offline == Some(true) {
            st.offline = true;
        }
    }
    st
}

fn ms3(x: f64) -> f64 {
    (x.max(0.01) * 1000.0).round() / 1000.0
}

/// The events one probe sends for one round (all targets), as a probe would post them.
pub fn round_events(
    s: &Scenario,
    rng: &mut Rng,
    pi: usize,
    round: i64,
    start_ms: i64,
    seq: &mut u64,
) -> Vec<WireEvent> {
    let p = &s.probes[pi];
    let at_s = round * s.interval_s;
    let ts = netqoe_domain::event::rfc3339(start_ms + at_s * 1000).unwrap_or_default();
    let mut out = Vec::new();
    let push = |out: &mut Vec<WireEvent>, seq: &mut u64, target: &str, what: &str, w: WireEvent| {
        *seq += 1;
        out.push(WireEvent {
            event_id: format!("{}-{round}-{target}-{what}", p.id),
            seq: *seq,
            ts: ts.clone(),
            target: target.to_string(),
            ..w
        });
    };
    for t in &s.targets {
        let st = conditions(s, p, t, at_s, start_ms);
        if st.offline {
            continue;
        }
        let c = &st.c;
        let loss = c.loss.unwrap_or(0.0).clamp(0.0, 1.0);
        let rtt = c.rtt_ms.unwrap_or(30.0);
        // what this target is measured with (TargetKind): a packet train, and/or the service kinds
        let (train, service) = match t.kind {
            None => (true, (t.labels.get("kind").map(String::as_str) == Some("http")).then_some(TargetKind::Http)),
            Some(TargetKind::Udp) => (true, None),
            Some(k) => (false, Some(k)),
        };
        if train {
            let jitter = c.jitter_ms.unwrap_or(1.0);
            // packet train of 10: each packet lost with `loss`; delays = path + queueing (exponential)
            let mut samples = Vec::new();
            for _ in 0..10 {
                if rng.unit() >= loss {
                    samples.push(ms3(rtt * (1.0 + 0.02 * rng.normal()) + jitter * rng.exp()));
                }
            }
            let received = samples.len() as u32;
            let status = if received == 0 { Some(Status::Timeout) } else { None };
            let train = WireEvent {
                kind: Kind::Udp,
                rtt_samples_ms: (received > 0).then_some(samples),
                sent: Some(10),
                received: Some(received),
                status,
                ..Default::default()
            };
            push(&mut out, seq, &t.id, "udp", train);
        }
        let Some(service) = service else { continue };
        let lognormal = |rng: &mut Rng, median: f64| ms3(median * (0.08 * rng.normal()).exp());
        if service != TargetKind::Tcp {
            // a lookup: the whole of a dns target, the first step of an http one
            if rng.unit() < st.dns_fail {
                push(
                    &mut out,
                    seq,
                    &t.id,
                    "dns",
                    WireEvent { kind: Kind::Dns, status: Some(Status::Servfail), ..Default::default() },
                );
                continue;
            }
            let dns = lognormal(rng, c.dns_ms.unwrap_or(15.0));
            push(&mut out, seq, &t.id, "dns", WireEvent { kind: Kind::Dns, dns_ms: Some(dns), ..Default::default() });
            if service == TargetKind::Dns {
                continue;
            }
        }
        if rng.unit() < loss {
            push(
                &mut out,
                seq,
                &t.id,
                "tcp",
                WireEvent { kind: Kind::Tcp, status: Some(Status::Timeout), ..Default::default() },
            );
            continue;
        }
        let connect = lognormal(rng, c.connect_ms.unwrap_or(rtt));
        push(
            &mut out,
            seq,
            &t.id,
            "tcp",
            WireEvent { kind: Kind::Tcp, connect_ms: Some(connect), ..Default::default() },
        );
        if service == TargetKind::Tcp {
            continue;
        }
        let tls = lognormal(rng, c.tls_ms.unwrap_or(rtt));
        // the certificate's days to expiry, as the handshake reads them (counting down in time)
        let cert_days = c.cert_days.map(|d| ms3((d - at_s as f64 / 86_400.0).max(0.0)));
        push(
            &mut out,
            seq,
            &t.id,
            "tls",
            WireEvent { kind: Kind::Tls, tls_ms: Some(tls), cert_days, ..Default::default() },
        );
        let ttfb = lognormal(rng, c.ttfb_ms.unwrap_or(3.0 * rtt));
        push(&mut out, seq, &t.id, "http", WireEvent { kind: Kind::Http, ttfb_ms: Some(ttfb), ..Default::default() });
    }
    out
}
