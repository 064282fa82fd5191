//! Measurements: one target measured once, by kind, into the typed wire event the probe posts.
//! The kinds live beside this file; `net` holds the socket helpers they share.

use super::*;

pub mod dns;
pub mod http;
pub mod icmp;
mod net;
pub mod tcp;
pub mod tls;
pub mod udp;

pub use http::*;
pub use tls::*;

/// Measures one target once; returns the event as a probe posts it.
pub async fn measure(t: &TargetConfig, probe: &str, seq: u64) -> WireEvent {
    let ts = netqoe_actors::now_ms();
    to_event(t, probe, seq, ts, measured(t).await)
}

/// What one measurement found, before it becomes an event.
#[derive(Clone, Debug)]
pub enum Measured {
    /// A packet train (udp, icmp): the RTTs of the packets that came back.
    Train {
        samples: Vec<f64>,
        sent: u32,
        received: u32,
    },
    /// A packet train that could not be sent at all (no route, no name).
    Unsent {
        sent: u32,
    },
    /// `tcp`: the connect time, ms.
    Connect(f64),
    /// `dns`: the resolution time, ms.
    Resolved(f64),
    Tls(TlsTimings),
    Http(HttpTimings),
    /// The measurement failed with this status (never `ok`).
    Failed(Status),
}

/// The event kind of a target (the config allows only these names).
pub fn kind_of(t: &TargetConfig) -> Kind {
    match t.kind.as_str() {
        "udp" => Kind::Udp,
        "dns" => Kind::Dns,
        "http" => Kind::Http,
        "tls" => Kind::Tls,
        "icmp" => Kind::Icmp,
        _ => Kind::Tcp,
    }
}

/// A duration in ms, to the microsecond.
fn ms3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The typed wire event for one measurement of `t`: the only way the probe makes an event, so
/// what it sends is what ingest decodes (the same `WireEvent`, serialised by serde).
pub fn to_event(t: &TargetConfig, probe: &str, seq: u64, ts_ms: i64, m: Measured) -> WireEvent {
    let mut e = WireEvent {
        event_id: format!("{probe}-{seq}"),
        seq,
        ts: netqoe_domain::event::rfc3339(ts_ms).unwrap_or_default(),
        target: t.id.clone(),
        kind: kind_of(t),
        ..Default::default()
    };
    match m {
        Measured::Train { samples, sent, received } if received > 0 => {
            e.rtt_samples_ms = Some(samples.iter().map(|x| ms3(*x)).collect());
            (e.sent, e.received) = (Some(sent), Some(received));
        }
        Measured::Train { sent, .. } => {
            (e.sent, e.received, e.status) = (Some(sent), Some(0), Some(Status::Timeout));
        }
        Measured::Unsent { sent } => {
            (e.sent, e.received, e.status) = (Some(sent), Some(0), Some(Status::Unreachable));
        }
        Measured::Connect(ms) => e.connect_ms = Some(ms3(ms)),
        Measured::Resolved(ms) => e.dns_ms = Some(ms3(ms)),
        Measured::Tls(h) => {
            (e.connect_ms, e.tls_ms, e.cert_days) =
                (Some(ms3(h.connect_ms)), Some(ms3(h.tls_ms)), h.cert_days.map(ms3));
        }
        Measured::Http(h) => {
            e.dns_ms = Some(ms3(h.dns_ms));
            e.connect_ms = Some(ms3(h.connect_ms));
            e.tls_ms = h.tls_ms.map(ms3);
            e.ttfb_ms = Some(ms3(h.ttfb_ms));
            e.total_ms = Some(ms3(h.total_ms.max(h.ttfb_ms)));
            e.cert_days = h.cert_days.map(ms3);
            e.status = match h.status {
                500.. => Some(Status::Http5xx),
                400..=499 => Some(Status::Http4xx),
                _ => None,
            };
        }
        Measured::Failed(s) => {
            e.status = Some(s);
            if matches!(e.kind, Kind::Udp | Kind::Icmp) {
                // a train that failed as a whole: every packet counts as lost
                (e.sent, e.received) = (Some(t.packets), Some(0));
            }
        }
    }
    e
}

/// Runs a blocking measurement (OpenSSL handshakes) off the runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, Status> + Send + 'static) -> Result<T, Status> {
    tokio::task::spawn_blocking(f).await.unwrap_or(Err(Status::Error))
}

/// Measures `t` once.
async fn measured(t: &TargetConfig) -> Measured {
    let timeout = Duration::from_millis(t.timeout_ms);
    let (address, verify) = (t.address.clone(), t.tls_verify);
    let or_failed = |r: Result<Measured, Status>| r.unwrap_or_else(Measured::Failed);
    match kind_of(t) {
        Kind::Http => or_failed(blocking(move || http_measure(&address, timeout, verify)).await.map(Measured::Http)),
        Kind::Tls => or_failed(blocking(move || tls_measure(&address, timeout, verify)).await.map(Measured::Tls)),
        Kind::Icmp => {
            let name = t.address.trim_start_matches('[').trim_end_matches(']');
            let host = tokio::net::lookup_host((name, 0)).await.ok().and_then(|mut a| a.next());
            let (count, spacing) = (t.packets.min(u32::from(u16::MAX)) as u16, Duration::from_millis(20));
            let r = match (host, icmp::available()) {
                (Some(a), Ok(kind)) => {
                    tokio::task::spawn_blocking(move || icmp::ping(kind, a.ip(), count, spacing, timeout)).await.ok()
                }
                _ => None,
            };
            match r {
                Some(Ok((samples, sent))) => {
                    let received = samples.len() as u32;
                    Measured::Train { samples, sent, received }
                }
                _ => Measured::Unsent { sent: t.packets },
            }
        }
        Kind::Dns => or_failed(dns::dns_lookup(&t.address, &t.name, &t.record, timeout).await.map(Measured::Resolved)),
        kind => match (kind, tokio::net::lookup_host(&t.address).await.ok().and_then(|mut a| a.next())) {
            (Kind::Udp, Some(addr)) => udp::train(addr, t.packets, timeout).await,
            (Kind::Udp, None) => Measured::Unsent { sent: t.packets },
            (_, Some(addr)) => tcp::connect(addr, timeout).await,
            (_, None) => Measured::Failed(Status::Error),
        },
    }
}
