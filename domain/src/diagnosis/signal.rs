//! What a window shows: the signals detection watches and a (probe, target) window's values.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::*;

/// The quantities detection watches, per (probe, target) and 1m window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// Median RTT of the packet trains (ms).
    Rtt,
    /// RFC 3550 jitter estimate (ms).
    Jitter,
    /// Packets lost (rate; a failure count).
    Loss,
    /// Median DNS resolution time (ms).
    Dns,
    /// DNS lookups failing (rate; a failure count).
    DnsFail,
    /// Median TCP connect time (ms).
    Connect,
    /// TCP connects failing (rate; a failure count).
    ConnectFail,
    /// Median TLS handshake time (ms).
    Tls,
    /// Median time to first byte (ms).
    Ttfb,
    /// Days until the server certificate expires (tls/http): judged against a fixed threshold
    /// (`cert_warn_days`), not a baseline — a certificate ageing is not a path degrading.
    CertDays,
}

impl Signal {
    /// The metric name an incident lists for this signal.
    pub fn metric(self) -> &'static str {
        match self {
            Signal::Rtt => "rtt",
            Signal::Jitter => "jitter",
            Signal::Loss | Signal::ConnectFail => "loss",
            Signal::Dns | Signal::DnsFail => "dns",
            Signal::Connect => "connect",
            Signal::Tls => "tls",
            Signal::Ttfb => "ttfb",
            Signal::CertDays => "cert_days",
        }
    }
}

/// One signal's value in one window: a level (ms), or failures out of attempts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    Level(f64),
    Failures { failed: u64, attempts: u64 },
}

/// Everything one (probe, target) pair showed in one window.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PairWindow {
    pub values: BTreeMap<Signal, Value>,
    /// Fewest days to certificate expiry seen in the window (tls/http measurements), if any.
    pub cert_days: Option<f64>,
}

impl PairWindow {
    /// MOS of the window (needs the RTT; jitter and loss default to 0).
    pub fn mos(&self) -> Option<f64> {
        let rtt = match (self.values.get(&Signal::Rtt), self.values.get(&Signal::Loss)) {
            (Some(Value::Level(v)), _) => *v,
            // nothing answered: the worst score
            (None, Some(Value::Failures { failed, attempts })) if *attempts > 0 && failed == attempts => {
                return Some(1.0)
            }
            _ => return None,
        };
        let jitter = match self.values.get(&Signal::Jitter) {
            Some(Value::Level(v)) => *v,
            _ => 0.0,
        };
        let loss = match self.values.get(&Signal::Loss) {
            Some(Value::Failures { failed, attempts }) if *attempts > 0 => *failed as f64 / *attempts as f64,
            _ => 0.0,
        };
        Some(mos(r_factor(rtt, jitter, loss)))
    }
}
