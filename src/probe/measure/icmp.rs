//! ICMP echo (ping) for the probe, where the OS allows it: an unprivileged ICMP datagram socket
//! (Linux `net.ipv4.ping_group_range`) or, for root, a raw socket. `available()` says which at
//! start; a probe configured with ICMP targets refuses to start without either, rather than
//! silently skipping them. IPv4 (ICMP echo, type 8/0) and IPv6 (ICMPv6 echo, type 128/129; the
//! kernel fills in the ICMPv6 checksum). Blocking: run on a blocking thread.

use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

/// Which kind of ICMP socket this process may open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcmpSocket {
    Datagram,
    Raw,
}

fn open(kind: IcmpSocket, v6: bool) -> std::io::Result<Socket> {
    let ty = if kind == IcmpSocket::Datagram { Type::DGRAM } else { Type::RAW };
    if v6 {
        Socket::new(Domain::IPV6, ty, Some(Protocol::ICMPV6))
    } else {
        Socket::new(Domain::IPV4, ty, Some(Protocol::ICMPV4))
    }
}

/// The ICMP socket kind available, or why none is.
pub fn available() -> Result<IcmpSocket, String> {
    match open(IcmpSocket::Datagram, false) {
        Ok(_) => Ok(IcmpSocket::Datagram),
        Err(e1) => match open(IcmpSocket::Raw, false) {
            Ok(_) => Ok(IcmpSocket::Raw),
            Err(e2) => Err(format!(
                "ICMP sockets are not permitted here (unprivileged: {e1}; raw: {e2}); allow them with \
                 sysctl net.ipv4.ping_group_range or run the probe with CAP_NET_RAW"
            )),
        },
    }
}

fn checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in b.chunks(2) {
        let w = if c.len() == 2 { u16::from_be_bytes([c[0], c[1]]) } else { u16::from(c[0]) << 8 };
        sum += u32::from(w);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;

fn echo_request(id: u16, seq: u16, v6: bool) -> Vec<u8> {
    let mut p = vec![if v6 { ECHO_REQUEST_V6 } else { ECHO_REQUEST_V4 }, 0, 0, 0];
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(b"netqoe-probe-icmp-echo-payload!!");
    // ICMPv6's checksum covers a pseudo-header only the kernel knows: it computes it
    if !v6 {
        let c = checksum(&p);
        p[2..4].copy_from_slice(&c.to_be_bytes());
    }
    p
}

/// Sends `count` echo requests `spacing` apart and waits up to `timeout` after the last; returns
/// the RTT samples (ms, send order) of the replies and the number sent.
pub fn ping(
    kind: IcmpSocket,
    target: IpAddr,
    count: u16,
    spacing: Duration,
    timeout: Duration,
) -> std::io::Result<(Vec<f64>, u32)> {
    let v6 = target.is_ipv6();
    let socket = open(kind, v6)?;
    let to = SocketAddr::new(target, 0).into();
    let id = (std::process::id() & 0xffff) as u16;
    let mut sent_at: Vec<Option<Instant>> = vec![None; count as usize];
    let mut rtt: Vec<Option<f64>> = vec![None; count as usize];
    let mut buf = [MaybeUninit::<u8>::uninit(); 1500];
    let mut next = 0u16;
    let mut next_at = Instant::now();
    let mut deadline = Instant::now() + timeout;
    loop {
        let now = Instant::now();
        if next < count && now >= next_at {
            let _ = socket.send_to(&echo_request(id, next, v6), &to);
            sent_at[next as usize] = Some(Instant::now());
            next += 1;
            next_at += spacing;
            if next == count {
                deadline = Instant::now() + timeout;
            }
            continue;
        }
        if next >= count && (now >= deadline || rtt.iter().all(Option::is_some)) {
            break;
        }
        let wake = if next < count { next_at } else { deadline };
        socket.set_read_timeout(Some(wake.saturating_duration_since(now).max(Duration::from_millis(1))))?;
        let Ok((n, _from)) = socket.recv_from(&mut buf) else { continue };
        let arrived = Instant::now();
        // SAFETY: recv_from initialised the first n bytes.
        let data: Vec<u8> = buf[..n].iter().map(|b| unsafe { b.assume_init() }).collect();
        // raw IPv4 sockets deliver the IP header first (IPv6 ones never do)
        let icmp = if kind == IcmpSocket::Raw && !v6 {
            let ihl = usize::from(data.first().map_or(5, |b| b & 0x0f)) * 4;
            data.get(ihl..).unwrap_or(&[])
        } else {
            &data[..]
        };
        if icmp.len() < 8 || icmp[0] != if v6 { ECHO_REPLY_V6 } else { ECHO_REPLY_V4 } {
            continue; // not an echo reply
        }
        let rid = u16::from_be_bytes([icmp[4], icmp[5]]);
        let rseq = u16::from_be_bytes([icmp[6], icmp[7]]) as usize;
        // datagram sockets rewrite the identifier: the kernel only hands us our own replies
        if kind == IcmpSocket::Raw && rid != id {
            continue;
        }
        if let (Some(Some(t)), Some(slot)) = (sent_at.get(rseq), rtt.get_mut(rseq)) {
            if slot.is_none() {
                *slot = Some(arrived.duration_since(*t).as_secs_f64() * 1000.0);
            }
        }
    }
    Ok((rtt.into_iter().flatten().collect(), u32::from(count)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_requests_carry_a_valid_checksum() {
        let p = echo_request(0x1234, 7, false);
        assert_eq!(checksum(&p), 0, "a packet with its checksum sums to zero");
        assert_eq!(&p[..2], &[8, 0]);
        assert_eq!(&p[4..8], &[0x12, 0x34, 0, 7]);
        let p6 = echo_request(0x1234, 7, true);
        assert_eq!(&p6[..4], &[128, 0, 0, 0], "ICMPv6 echo request; the kernel fills the checksum");
        assert_eq!(&p6[4..], &p[4..]);
    }
}
