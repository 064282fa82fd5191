//! Event schema v1: what a probe posts (`WireEvent`), the rules that accept or reject it, and the
//! validated `Event` the pipeline carries.
//!
//! Invariant: an `Event` only exists if every rule in `validate` held: finite non-negative values
//! under the absurdity caps, fields that apply to its kind, a timestamp within the accepted
//! horizon. Rejections name the field (`events[3].rtt_ms`) and say why.

use serde::{Deserialize, Serialize};

/// What kind of measurement an event reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    #[default]
    Icmp,
    Udp,
    Tcp,
    Dns,
    Http,
    Tls,
}

impl Kind {
    /// Every kind, in declaration order (the binary codec stores the position: append only).
    pub const ALL: [Kind; 6] = [Kind::Icmp, Kind::Udp, Kind::Tcp, Kind::Dns, Kind::Http, Kind::Tls];

    /// The metric an error status of this kind is counted against.
    pub fn primary_metric(self) -> Metric {
        match self {
            Kind::Icmp | Kind::Udp => Metric::Rtt,
            Kind::Tcp => Metric::Connect,
            Kind::Dns => Metric::Dns,
            Kind::Tls => Metric::Tls,
            Kind::Http => Metric::Ttfb,
        }
    }
}

/// Outcome of a measurement: `ok` or an error class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    #[default]
    Ok,
    Timeout,
    Refused,
    Unreachable,
    Reset,
    Nxdomain,
    Servfail,
    DnsError,
    TlsError,
    CertError,
    // `snake_case` would spell these `http4xx`: the wire name is `http_4xx` (docs/api.md), and the
    // old spelling is still read so nothing a probe sent before the fix is refused
    #[serde(rename = "http_4xx", alias = "http4xx")]
    Http4xx,
    #[serde(rename = "http_5xx", alias = "http5xx")]
    Http5xx,
    Error,
}

impl Status {
    /// Every status, in declaration order (the binary codec stores the position: append only).
    pub const ALL: [Status; 13] = [
        Status::Ok,
        Status::Timeout,
        Status::Refused,
        Status::Unreachable,
        Status::Reset,
        Status::Nxdomain,
        Status::Servfail,
        Status::DnsError,
        Status::TlsError,
        Status::CertError,
        Status::Http4xx,
        Status::Http5xx,
        Status::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Timeout => "timeout",
            Status::Refused => "refused",
            Status::Unreachable => "unreachable",
            Status::Reset => "reset",
            Status::Nxdomain => "nxdomain",
            Status::Servfail => "servfail",
            Status::DnsError => "dns_error",
            Status::TlsError => "tls_error",
            Status::CertError => "cert_error",
            Status::Http4xx => "http_4xx",
            Status::Http5xx => "http_5xx",
            Status::Error => "error",
        }
    }
}

/// A rolled-up quantity. Each metric of each (probe, target) gets its own windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    // Declared in name order so `Ord` agrees with the text ordering of every store.
    /// Days until the server certificate expires (`tls`, `https`): a window's min is the soonest.
    #[serde(rename = "cert_days")]
    CertDays,
    Connect,
    Dns,
    Jitter,
    Rtt,
    Tls,
    /// Whole HTTP exchange, request sent to the last body byte.
    Total,
    Ttfb,
}

impl Metric {
    pub const ALL: [Metric; 8] = [
        Metric::Rtt,
        Metric::Jitter,
        Metric::Dns,
        Metric::Connect,
        Metric::Tls,
        Metric::Ttfb,
        Metric::Total,
        Metric::CertDays,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Rtt => "rtt",
            Metric::Jitter => "jitter",
            Metric::Dns => "dns",
            Metric::Connect => "connect",
            Metric::Tls => "tls",
            Metric::Ttfb => "ttfb",
            Metric::Total => "total",
            Metric::CertDays => "cert_days",
        }
    }

    pub fn parse(s: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// A batch as posted in a JSON body.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WireBatch {
    pub events: Vec<WireEvent>,
}

/// One event exactly as a probe posts it (schema v1). Unknown fields are rejected.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct WireEvent {
    pub event_id: String,
    pub seq: u64,
    pub ts: String,
    pub target: String,
    pub kind: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_samples_ms: Option<Vec<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttfb_ms: Option<f64>,
    /// `http`: request sent to the last byte of the response body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_ms: Option<f64>,
    /// `tls`, `http` (https): days until the server certificate's notAfter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_days: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// The first event of a probe run: sequence numbers below `seq` that this probe has not
    /// delivered yet never will be (reserved by a run that ended), so they are not missing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub run_start: bool,
}

/// A validated event as the pipeline carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub event_id: String,
    pub seq: u64,
    /// Event time, ms since the Unix epoch (UTC).
    pub ts_ms: i64,
    pub target: String,
    pub kind: Kind,
    /// RTT samples in measurement order (`rtt_ms` becomes a single sample).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rtt_samples_ms: Vec<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttfb_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_days: Option<f64>,
    #[serde(default)]
    pub status: Status,
    /// See `WireEvent::run_start`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub run_start: bool,
}

/// Limits that decide what is absurd; from configuration.
#[derive(Debug, Clone, Copy)]
pub struct EventLimits {
    /// How far ahead of the receiver's clock an event time may be.
    pub max_future_ms: i64,
    /// How far behind the receiver's clock an event time may be.
    pub max_past_ms: i64,
    /// Largest plausible duration for any timing field (ms).
    pub max_duration_ms: f64,
    /// Largest packet train (`sent`).
    pub max_packets: u32,
    /// Most RTT samples in one event.
    pub max_samples: usize,
}

impl Default for EventLimits {
    fn default() -> Self {
        Self {
            max_future_ms: 5 * 60_000,
            max_past_ms: 7 * 86_400_000,
            max_duration_ms: 120_000.0,
            max_packets: 10_000,
            max_samples: 10_000,
        }
    }
}

/// A rejected field: `field` is a path such as `events[3].rtt_ms`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { field: field.into(), reason: reason.into() }
    }
}

const MAX_ID_LEN: usize = 128;
const MAX_TARGET_LEN: usize = 253;
/// A certificate valid for more than a century is not a real one.
const MAX_CERT_DAYS: f64 = 36_525.0;

fn check_duration(
    field: &str,
    v: Option<f64>,
    limits: &EventLimits,
    at: &dyn Fn(&str) -> String,
) -> Result<(), FieldError> {
    if let Some(v) = v {
        if !v.is_finite() {
            return Err(FieldError::new(at(field), "must be a finite number"));
        }
        if v < 0.0 {
            return Err(FieldError::new(at(field), "must not be negative"));
        }
        if v > limits.max_duration_ms {
            return Err(FieldError::new(at(field), format!("{v} ms exceeds the {} ms limit", limits.max_duration_ms)));
        }
    }
    Ok(())
}

fn valid_name(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:/@[]".contains(&b))
}

/// A time in ms since the epoch as the wire and the API write it: RFC 3339, UTC (`Z`), to the
/// millisecond; the one formatter of the workspace. `None` outside chrono's range.
pub fn rfc3339(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms).map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// Validates one wire event. `index` is the event's position in its batch (for error paths) and
/// `now_ms` the receiver's clock.
pub fn validate(w: WireEvent, index: usize, now_ms: i64, limits: &EventLimits) -> Result<Event, FieldError> {
    let at = |f: &str| format!("events[{index}].{f}");
    if !valid_name(&w.event_id, MAX_ID_LEN) {
        return Err(FieldError::new(at("event_id"), format!("must be 1-{MAX_ID_LEN} characters of [A-Za-z0-9-_.:/@]")));
    }
    if !valid_name(&w.target, MAX_TARGET_LEN) {
        return Err(FieldError::new(
            at("target"),
            format!("must be 1-{MAX_TARGET_LEN} characters of [A-Za-z0-9-_.:/@[]]"),
        ));
    }
    let ts = chrono::DateTime::parse_from_rfc3339(&w.ts)
        .map_err(|e| FieldError::new(at("ts"), format!("not an RFC 3339 timestamp: {e}")))?;
    let ts_ms = ts.timestamp_millis();
    if ts_ms > now_ms + limits.max_future_ms {
        return Err(FieldError::new(
            at("ts"),
            format!("{} s in the future (limit {} s)", (ts_ms - now_ms) / 1000, limits.max_future_ms / 1000),
        ));
    }
    if ts_ms < now_ms - limits.max_past_ms {
        return Err(FieldError::new(
            at("ts"),
            format!("{} s in the past (limit {} s)", (now_ms - ts_ms) / 1000, limits.max_past_ms / 1000),
        ));
    }

    let packet = matches!(w.kind, Kind::Icmp | Kind::Udp);
    let allowed = |field: &str, present: bool| -> Result<(), FieldError> {
        let ok = match field {
            "rtt_ms" | "rtt_samples_ms" | "jitter_ms" | "sent" | "received" => packet,
            "dns_ms" => matches!(w.kind, Kind::Dns | Kind::Http),
            "connect_ms" => matches!(w.kind, Kind::Tcp | Kind::Tls | Kind::Http),
            "tls_ms" => matches!(w.kind, Kind::Tls | Kind::Http),
            "ttfb_ms" | "total_ms" => w.kind == Kind::Http,
            "cert_days" => matches!(w.kind, Kind::Tls | Kind::Http),
            _ => true,
        };
        if present && !ok {
            return Err(FieldError::new(
                at(field),
                format!("does not apply to kind {}", serde_json::to_string(&w.kind).unwrap_or_default()),
            ));
        }
        Ok(())
    };
    allowed("rtt_ms", w.rtt_ms.is_some())?;
    allowed("rtt_samples_ms", w.rtt_samples_ms.is_some())?;
    allowed("jitter_ms", w.jitter_ms.is_some())?;
    allowed("sent", w.sent.is_some())?;
    allowed("received", w.received.is_some())?;
    allowed("dns_ms", w.dns_ms.is_some())?;
    allowed("connect_ms", w.connect_ms.is_some())?;
    allowed("tls_ms", w.tls_ms.is_some())?;
    allowed("ttfb_ms", w.ttfb_ms.is_some())?;
    allowed("total_ms", w.total_ms.is_some())?;
    allowed("cert_days", w.cert_days.is_some())?;

    check_duration("rtt_ms", w.rtt_ms, limits, &at)?;
    check_duration("jitter_ms", w.jitter_ms, limits, &at)?;
    check_duration("dns_ms", w.dns_ms, limits, &at)?;
    check_duration("connect_ms", w.connect_ms, limits, &at)?;
    check_duration("tls_ms", w.tls_ms, limits, &at)?;
    check_duration("ttfb_ms", w.ttfb_ms, limits, &at)?;
    check_duration("total_ms", w.total_ms, limits, &at)?;
    if let (Some(t), Some(f)) = (w.total_ms, w.ttfb_ms) {
        if t < f {
            return Err(FieldError::new(at("total_ms"), format!("{t} ms is less than ttfb_ms {f} ms")));
        }
    }
    if let Some(d) = w.cert_days {
        if !(d.is_finite() && (0.0..=MAX_CERT_DAYS).contains(&d)) {
            return Err(FieldError::new(at("cert_days"), format!("must be a number of days in 0..={MAX_CERT_DAYS}")));
        }
    }

    let rtt_samples_ms = match (w.rtt_ms, w.rtt_samples_ms) {
        (Some(_), Some(_)) => {
            return Err(FieldError::new(at("rtt_samples_ms"), "give either rtt_ms or rtt_samples_ms, not both"))
        }
        (Some(v), None) => vec![v],
        (None, Some(s)) => {
            if s.len() > limits.max_samples {
                return Err(FieldError::new(
                    at("rtt_samples_ms"),
                    format!("{} samples exceed the limit of {}", s.len(), limits.max_samples),
                ));
            }
            for (i, &v) in s.iter().enumerate() {
                // The field name is only built for a failing sample.
                if !(v.is_finite() && (0.0..=limits.max_duration_ms).contains(&v)) {
                    check_duration(&format!("rtt_samples_ms[{i}]"), Some(v), limits, &at)?;
                }
            }
            s
        }
        (None, None) => Vec::new(),
    };

    match (w.sent, w.received) {
        (Some(s), Some(r)) => {
            if s > limits.max_packets {
                return Err(FieldError::new(at("sent"), format!("{s} exceeds the limit of {}", limits.max_packets)));
            }
            if r > s {
                return Err(FieldError::new(at("received"), format!("{r} received exceeds {s} sent")));
            }
            if rtt_samples_ms.len() > r as usize {
                return Err(FieldError::new(
                    at("rtt_samples_ms"),
                    format!("{} samples but only {r} packets received", rtt_samples_ms.len()),
                ));
            }
        }
        (Some(_), None) => return Err(FieldError::new(at("received"), "required when sent is given")),
        (None, Some(_)) => return Err(FieldError::new(at("sent"), "required when received is given")),
        (None, None) => {}
    }

    let status = w.status.unwrap_or_default();
    let has_value = !rtt_samples_ms.is_empty()
        || w.sent.is_some()
        || w.jitter_ms.is_some()
        || w.dns_ms.is_some()
        || w.connect_ms.is_some()
        || w.tls_ms.is_some()
        || w.ttfb_ms.is_some()
        || w.total_ms.is_some()
        || w.cert_days.is_some();
    if status == Status::Ok && !has_value {
        return Err(FieldError::new(at("status"), "an ok event must carry at least one measured value"));
    }

    Ok(Event {
        event_id: w.event_id,
        seq: w.seq,
        ts_ms,
        target: w.target,
        kind: w.kind,
        rtt_samples_ms,
        jitter_ms: w.jitter_ms,
        sent: w.sent,
        received: w.received,
        dns_ms: w.dns_ms,
        connect_ms: w.connect_ms,
        tls_ms: w.tls_ms,
        ttfb_ms: w.ttfb_ms,
        total_ms: w.total_ms,
        cert_days: w.cert_days,
        status,
        run_start: w.run_start,
    })
}

/// One metric's share of an event: the values it adds to the metric's window and, for the
/// kind's primary metric, the packet counts, jitter estimate and error status.
#[derive(Debug, Clone, PartialEq)]
pub struct Contribution<'a> {
    pub metric: Metric,
    pub values: &'a [f64],
    pub sent: u64,
    pub received: u64,
    /// RFC 3550 interarrival jitter over this event's RTT samples, if it has two or more.
    pub jitter_estimate_ms: Option<f64>,
    pub error: Option<Status>,
}

/// RFC 3550 §6.4.1 interarrival jitter over consecutive RTT samples of one packet train:
/// J += (|D| − J) / 16, with D the difference between consecutive samples.
pub fn rfc3550_jitter(samples: &[f64]) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let mut j = 0.0;
    for w in samples.windows(2) {
        let d = (w[1] - w[0]).abs();
        j += (d - j) / 16.0;
    }
    Some(j)
}

impl Event {
    /// An event with identity, time, target and kind and no measurement yet (status ok): set
    /// the measured fields with struct update syntax.
    pub fn new(event_id: impl Into<String>, seq: u64, ts_ms: i64, target: impl Into<String>, kind: Kind) -> Self {
        Event {
            event_id: event_id.into(),
            seq,
            ts_ms,
            target: target.into(),
            kind,
            rtt_samples_ms: Vec::new(),
            jitter_ms: None,
            sent: None,
            received: None,
            dns_ms: None,
            connect_ms: None,
            tls_ms: None,
            ttfb_ms: None,
            total_ms: None,
            cert_days: None,
            status: Status::Ok,
            run_start: false,
        }
    }

    /// Splits the event into the per-metric contributions it makes (in `Metric` order).
    pub fn contributions(&self) -> Vec<Contribution<'_>> {
        let primary = self.kind.primary_metric();
        let error = (self.status != Status::Ok).then_some(self.status);
        let mut out = Vec::with_capacity(4);
        for metric in Metric::ALL {
            let values: &[f64] = match metric {
                Metric::Rtt => &self.rtt_samples_ms,
                Metric::Jitter => self.jitter_ms.as_slice(),
                Metric::Dns => self.dns_ms.as_slice(),
                Metric::Connect => self.connect_ms.as_slice(),
                Metric::Tls => self.tls_ms.as_slice(),
                Metric::Ttfb => self.ttfb_ms.as_slice(),
                Metric::Total => self.total_ms.as_slice(),
                Metric::CertDays => self.cert_days.as_slice(),
            };
            let is_primary = metric == primary;
            let (sent, received) = if metric == Metric::Rtt {
                (u64::from(self.sent.unwrap_or(0)), u64::from(self.received.unwrap_or(0)))
            } else {
                (0, 0)
            };
            if values.is_empty() && sent == 0 && !(is_primary && error.is_some()) {
                continue;
            }
            out.push(Contribution {
                metric,
                values,
                sent,
                received,
                jitter_estimate_ms: if metric == Metric::Rtt { rfc3550_jitter(values) } else { None },
                error: if is_primary { error } else { None },
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn wire() -> WireEvent {
        WireEvent {
            event_id: "e1".into(),
            seq: 1,
            ts: "2023-11-14T22:13:20Z".into(),
            target: "example.net".into(),
            kind: Kind::Icmp,
            rtt_samples_ms: Some(vec![10.0, 12.0, 11.0]),
            sent: Some(3),
            received: Some(3),
            ..Default::default()
        }
    }

    fn err(w: WireEvent) -> FieldError {
        validate(w, 2, NOW, &EventLimits::default()).unwrap_err()
    }

    #[test]
    fn accepts_a_good_event() {
        let e = validate(wire(), 0, NOW, &EventLimits::default()).unwrap();
        assert_eq!(e.ts_ms, NOW);
        assert_eq!(e.rtt_samples_ms, vec![10.0, 12.0, 11.0]);
    }

    #[test]
    fn rejections_name_the_field() {
        assert_eq!(
            err(WireEvent { rtt_samples_ms: Some(vec![1.0, -2.0]), ..wire() }).field,
            "events[2].rtt_samples_ms[1]"
        );
        assert_eq!(
            err(WireEvent { rtt_samples_ms: Some(vec![f64::NAN]), ..wire() }).field,
            "events[2].rtt_samples_ms[0]"
        );
        assert_eq!(err(WireEvent { ts: "2030-01-01T00:00:00Z".into(), ..wire() }).field, "events[2].ts");
        assert_eq!(err(WireEvent { ts: "2001-01-01T00:00:00Z".into(), ..wire() }).field, "events[2].ts");
        assert_eq!(err(WireEvent { ts: "yesterday".into(), ..wire() }).field, "events[2].ts");
        assert_eq!(err(WireEvent { received: Some(4), ..wire() }).field, "events[2].received");
        assert_eq!(err(WireEvent { ttfb_ms: Some(3.0), ..wire() }).field, "events[2].ttfb_ms");
        assert_eq!(err(WireEvent { event_id: "".into(), ..wire() }).field, "events[2].event_id");
        assert_eq!(err(WireEvent { target: "a b".into(), ..wire() }).field, "events[2].target");
        assert_eq!(err(WireEvent { rtt_ms: Some(1e9), rtt_samples_ms: None, ..wire() }).field, "events[2].rtt_ms");
        let empty = WireEvent { rtt_samples_ms: None, sent: None, received: None, ..wire() };
        assert_eq!(err(empty).field, "events[2].status");
    }

    #[test]
    fn error_events_need_no_value() {
        let w = WireEvent {
            kind: Kind::Dns,
            rtt_samples_ms: None,
            sent: None,
            received: None,
            status: Some(Status::Nxdomain),
            ..wire()
        };
        let e = validate(w, 0, NOW, &EventLimits::default()).unwrap();
        let c = e.contributions();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].metric, Metric::Dns);
        assert_eq!(c[0].error, Some(Status::Nxdomain));
    }

    #[test]
    fn http_event_contributes_to_each_timing() {
        let w = WireEvent {
            kind: Kind::Http,
            rtt_samples_ms: None,
            sent: None,
            received: None,
            dns_ms: Some(3.0),
            connect_ms: Some(4.0),
            tls_ms: Some(5.0),
            ttfb_ms: Some(30.0),
            status: Some(Status::Http5xx),
            ..wire()
        };
        let e = validate(w, 0, NOW, &EventLimits::default()).unwrap();
        let metrics: Vec<_> = e.contributions().iter().map(|c| (c.metric, c.error)).collect();
        assert_eq!(
            metrics,
            vec![
                (Metric::Dns, None),
                (Metric::Connect, None),
                (Metric::Tls, None),
                (Metric::Ttfb, Some(Status::Http5xx))
            ]
        );
    }

    #[test]
    fn http_total_and_certificate_expiry() {
        let http = |total: Option<f64>, cert: Option<f64>| WireEvent {
            kind: Kind::Http,
            rtt_samples_ms: None,
            sent: None,
            received: None,
            ttfb_ms: Some(30.0),
            total_ms: total,
            cert_days: cert,
            ..wire()
        };
        let e = validate(http(Some(42.0), Some(89.5)), 0, NOW, &EventLimits::default()).unwrap();
        let c = e.contributions();
        let total = c.iter().find(|c| c.metric == Metric::Total).unwrap();
        assert_eq!(total.values, &[42.0]);
        let cert = c.iter().find(|c| c.metric == Metric::CertDays).unwrap();
        assert_eq!((cert.values, cert.error), (&[89.5][..], None));
        assert_eq!(err(http(Some(20.0), None)).field, "events[2].total_ms");
        assert_eq!(err(http(None, Some(-1.0))).field, "events[2].cert_days");
        assert_eq!(err(http(None, Some(f64::INFINITY))).field, "events[2].cert_days");
        assert_eq!(err(WireEvent { total_ms: Some(5.0), ..wire() }).field, "events[2].total_ms");
        assert_eq!(err(WireEvent { cert_days: Some(5.0), ..wire() }).field, "events[2].cert_days");
        // a tls event may carry the expiry alone
        let tls = WireEvent { kind: Kind::Tls, cert_days: Some(12.0), tls_ms: Some(3.0), ..http(None, None) };
        let tls = WireEvent { ttfb_ms: None, ..tls };
        assert!(validate(tls, 0, NOW, &EventLimits::default()).is_ok());
        assert_eq!(Metric::parse("cert_days"), Some(Metric::CertDays));
        assert_eq!(serde_json::to_string(&Metric::CertDays).unwrap(), "\"cert_days\"");
        let mut names: Vec<&str> = Metric::ALL.iter().map(|m| m.as_str()).collect();
        let mut by_ord = Metric::ALL;
        by_ord.sort();
        names.sort();
        assert_eq!(by_ord.map(|m| m.as_str()).to_vec(), names, "Ord follows the names");
    }

    #[test]
    fn wire_names_are_the_documented_names() {
        for s in Status::ALL {
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{}\"", s.as_str()), "{s:?}");
            let back: Status = serde_json::from_str(&format!("\"{}\"", s.as_str())).unwrap();
            assert_eq!(back, s);
        }
        // the spelling ingest accepted before the fix is still read
        assert_eq!(serde_json::from_str::<Status>("\"http4xx\"").unwrap(), Status::Http4xx);
        assert_eq!(serde_json::from_str::<Status>("\"http5xx\"").unwrap(), Status::Http5xx);
        for k in Kind::ALL {
            let name = serde_json::to_string(&k).unwrap();
            assert_eq!(serde_json::from_str::<Kind>(&name).unwrap(), k);
        }
    }

    #[test]
    fn rfc3550_jitter_smooths_differences() {
        assert_eq!(rfc3550_jitter(&[5.0]), None);
        let j = rfc3550_jitter(&[10.0, 26.0]).unwrap();
        assert!((j - 1.0).abs() < 1e-12);
    }
}
