//! UDP targets: a packet train to a STAMP reflector (RFC 8762, `crate::stamp`), 20 ms apart.

use std::net::SocketAddr;
use std::time::Duration;

use super::Measured;

/// Sends `packets` test packets to `addr`; the RTTs of those that came back within `timeout`.
pub async fn train(addr: SocketAddr, packets: u32, timeout: Duration) -> Measured {
    match crate::stamp::measure(addr, packets, Duration::from_millis(20), timeout).await {
        Ok(r) => Measured::Train { samples: r.rtt_ms, sent: r.sent, received: r.received },
        Err(_) => Measured::Unsent { sent: packets },
    }
}
