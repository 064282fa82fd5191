//! STAMP over UDP: `netqoe reflector` (a stateless session-reflector, RFC 8762 unauthenticated
//! mode) and the probe's session-sender measurement (N packets, RTT samples, loss, jitter).
//!
//! Invariants: the reflector keeps no per-sender state beyond its own sequence counter; it can be
//! told to drop a fraction of test packets (test mode, seeded and deterministic). The sender
//! matches replies by the echoed sender sequence number, ignores duplicates and strangers, and
//! reports every packet not answered within the timeout as lost.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use netqoe_domain::stamp::{ntp_from_unix_nanos, ReflectorPacket, SenderPacket, ERROR_ESTIMATE, PACKET_LEN};
use tokio::net::UdpSocket;

fn ntp_now() -> u64 {
    let ns = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    ntp_from_unix_nanos(ns)
}

/// Runs a reflector on `socket` until the task is dropped. `drop` (0..1) is the fraction of test
/// packets deliberately not answered.
pub async fn reflect(socket: UdpSocket, drop: f64, seed: u64) -> std::io::Result<()> {
    let mut buf = [0u8; 1500];
    let mut seq: u32 = 0;
    let mut rng = seed | 1;
    loop {
        let (n, from) = socket.recv_from(&mut buf).await?;
        let received = ntp_now();
        let Some(p) = SenderPacket::decode(&buf[..n]) else { continue };
        // xorshift64: deterministic drops for a given seed
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        if (rng >> 11) as f64 / (1u64 << 53) as f64 >= drop {
            let r = ReflectorPacket::reflect(&p, seq, received, ntp_now(), 64);
            seq = seq.wrapping_add(1);
            // a reply that cannot be sent is the sender's loss to measure
            let _ = socket.send_to(&r.encode(), from).await;
        }
    }
}

/// What one STAMP measurement saw.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StampResult {
    /// RTT samples (ms) in send order, of the packets answered.
    pub rtt_ms: Vec<f64>,
    pub sent: u32,
    pub received: u32,
}

/// Sends `count` test packets to `target`, `spacing` apart, and waits up to `timeout` after the
/// last for the replies.
pub async fn measure(
    target: SocketAddr,
    count: u32,
    spacing: Duration,
    timeout: Duration,
) -> std::io::Result<StampResult> {
    let bind: SocketAddr = if target.is_ipv4() { "0.0.0.0:0".parse() } else { "[::]:0".parse() }
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{e}")))?;
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(target).await?;
    let mut rtt: Vec<Option<f64>> = vec![None; count as usize];
    let mut buf = [0u8; 1500];
    let mut next = 0u32;
    let mut next_at = Instant::now();
    let mut deadline = Instant::now() + timeout;
    loop {
        if next < count && Instant::now() >= next_at {
            let p = SenderPacket { seq: next, timestamp: ntp_now(), error_estimate: ERROR_ESTIMATE };
            // a send error (e.g. ICMP port unreachable reported on a connected socket) is a loss
            let _ = socket.send(&p.encode()).await;
            next += 1;
            next_at += spacing;
            if next == count {
                deadline = Instant::now() + timeout;
            }
            continue;
        }
        let wake = if next < count { next_at } else { deadline };
        if next >= count && Instant::now() >= deadline {
            break;
        }
        match tokio::time::timeout(wake.saturating_duration_since(Instant::now()), socket.recv(&mut buf)).await {
            Ok(Ok(n)) if n >= PACKET_LEN => {
                let arrived = ntp_now();
                if let Some(r) = ReflectorPacket::decode(&buf[..n]) {
                    if let Some(slot) = rtt.get_mut(r.sender_seq as usize) {
                        if slot.is_none() && r.sender_seq < next {
                            *slot = Some(r.rtt_ms(arrived));
                        }
                    }
                }
                if next >= count && rtt.iter().all(Option::is_some) {
                    break;
                }
            }
            Ok(_) => {}
            Err(_) => {}
        }
    }
    let samples: Vec<f64> = rtt.iter().flatten().copied().collect();
    Ok(StampResult { received: samples.len() as u32, rtt_ms: samples, sent: count })
}
