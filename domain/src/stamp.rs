//! STAMP (Simple Two-way Active Measurement Protocol, RFC 8762) test packets, unauthenticated
//! mode: what the probe's session-sender sends and what `netqoe reflector` sends back. Pure:
//! encode/decode and NTP timestamps only; sockets live in the binary.
//!
//! Session-sender packet (44 bytes): sequence number (4), timestamp (8, NTP 32.32), error
//! estimate (2), MBZ (30). Reflector packet (44 bytes): sequence number (4), timestamp (8), error
//! estimate (2), MBZ (2), receive timestamp (8), session-sender sequence number (4), session-sender
//! timestamp (8), session-sender error estimate (2), MBZ (2), session-sender TTL (1), MBZ (3).

/// Both packets are 44 bytes in unauthenticated mode.
pub const PACKET_LEN: usize = 44;

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// Error estimate: S = 1 (synchronised), Z = 0 (NTP format), scale 0, multiplier 1.
pub const ERROR_ESTIMATE: u16 = 0x8001;

/// An NTP 32.32 timestamp from Unix nanoseconds (NTP era 0: until 2036-02-07).
pub fn ntp_from_unix_nanos(ns: u128) -> u64 {
    let secs = (ns / 1_000_000_000) as u64 + NTP_UNIX_OFFSET;
    let frac = ((ns % 1_000_000_000) << 32) / 1_000_000_000;
    (secs << 32) | frac as u64
}

/// Unix nanoseconds from an NTP 32.32 timestamp.
pub fn unix_nanos_from_ntp(ntp: u64) -> u128 {
    let secs = (ntp >> 32).saturating_sub(NTP_UNIX_OFFSET) as u128;
    let frac = ((ntp & 0xffff_ffff) as u128 * 1_000_000_000) >> 32;
    secs * 1_000_000_000 + frac
}

/// A session-sender test packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SenderPacket {
    pub seq: u32,
    pub timestamp: u64,
    pub error_estimate: u16,
}

impl SenderPacket {
    pub fn encode(&self) -> [u8; PACKET_LEN] {
        let mut b = [0u8; PACKET_LEN];
        b[0..4].copy_from_slice(&self.seq.to_be_bytes());
        b[4..12].copy_from_slice(&self.timestamp.to_be_bytes());
        b[12..14].copy_from_slice(&self.error_estimate.to_be_bytes());
        b
    }

    /// Decodes a sender packet (at least 44 bytes; longer packets carry padding).
    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() < PACKET_LEN {
            return None;
        }
        Some(Self {
            seq: u32::from_be_bytes(b[0..4].try_into().ok()?),
            timestamp: u64::from_be_bytes(b[4..12].try_into().ok()?),
            error_estimate: u16::from_be_bytes(b[12..14].try_into().ok()?),
        })
    }
}

/// A reflector test packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReflectorPacket {
    pub seq: u32,
    pub timestamp: u64,
    pub error_estimate: u16,
    pub receive_timestamp: u64,
    pub sender_seq: u32,
    pub sender_timestamp: u64,
    pub sender_error_estimate: u16,
    pub sender_ttl: u8,
}

impl ReflectorPacket {
    /// The reflection of `p`, received at `received` and sent at `sent` (NTP timestamps).
    pub fn reflect(p: &SenderPacket, seq: u32, received: u64, sent: u64, ttl: u8) -> Self {
        Self {
            seq,
            timestamp: sent,
            error_estimate: ERROR_ESTIMATE,
            receive_timestamp: received,
            sender_seq: p.seq,
            sender_timestamp: p.timestamp,
            sender_error_estimate: p.error_estimate,
            sender_ttl: ttl,
        }
    }

    pub fn encode(&self) -> [u8; PACKET_LEN] {
        let mut b = [0u8; PACKET_LEN];
        b[0..4].copy_from_slice(&self.seq.to_be_bytes());
        b[4..12].copy_from_slice(&self.timestamp.to_be_bytes());
        b[12..14].copy_from_slice(&self.error_estimate.to_be_bytes());
        b[16..24].copy_from_slice(&self.receive_timestamp.to_be_bytes());
        b[24..28].copy_from_slice(&self.sender_seq.to_be_bytes());
        b[28..36].copy_from_slice(&self.sender_timestamp.to_be_bytes());
        b[36..38].copy_from_slice(&self.sender_error_estimate.to_be_bytes());
        b[40] = self.sender_ttl;
        b
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() < PACKET_LEN {
            return None;
        }
        Some(Self {
            seq: u32::from_be_bytes(b[0..4].try_into().ok()?),
            timestamp: u64::from_be_bytes(b[4..12].try_into().ok()?),
            error_estimate: u16::from_be_bytes(b[12..14].try_into().ok()?),
            receive_timestamp: u64::from_be_bytes(b[16..24].try_into().ok()?),
            sender_seq: u32::from_be_bytes(b[24..28].try_into().ok()?),
            sender_timestamp: u64::from_be_bytes(b[28..36].try_into().ok()?),
            sender_error_estimate: u16::from_be_bytes(b[36..38].try_into().ok()?),
            sender_ttl: b[40],
        })
    }

    /// Round-trip time (ms) seen by the sender that got this packet back at `arrived` (NTP),
    /// minus the reflector's own turnaround (its send − receive timestamps).
    pub fn rtt_ms(&self, arrived: u64) -> f64 {
        let total = unix_nanos_from_ntp(arrived) as f64 - unix_nanos_from_ntp(self.sender_timestamp) as f64;
        let turnaround =
            unix_nanos_from_ntp(self.timestamp) as f64 - unix_nanos_from_ntp(self.receive_timestamp) as f64;
        ((total - turnaround.max(0.0)) / 1e6).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn packets_round_trip(seq in any::<u32>(), ts in any::<u64>(), rseq in any::<u32>(), r in any::<u64>(), s in any::<u64>(), ttl in any::<u8>()) {
            let p = SenderPacket { seq, timestamp: ts, error_estimate: ERROR_ESTIMATE };
            prop_assert_eq!(SenderPacket::decode(&p.encode()), Some(p));
            let q = ReflectorPacket::reflect(&p, rseq, r, s, ttl);
            prop_assert_eq!(ReflectorPacket::decode(&q.encode()), Some(q));
        }

        #[test]
        fn ntp_timestamps_keep_sub_microsecond_precision(ns in 0u128..2_000_000_000_000_000_000u128) {
            let back = unix_nanos_from_ntp(ntp_from_unix_nanos(ns));
            prop_assert!(back <= ns && ns - back <= 1, "{} -> {}", ns, back);
        }
    }

    #[test]
    fn short_packets_are_rejected_and_the_layout_is_rfc_8762() {
        assert_eq!(SenderPacket::decode(&[0; 43]), None);
        let p = SenderPacket { seq: 7, timestamp: 0x0102_0304_0506_0708, error_estimate: ERROR_ESTIMATE };
        let b = p.encode();
        assert_eq!(&b[0..4], &[0, 0, 0, 7]);
        assert_eq!(&b[4..12], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&b[12..14], &[0x80, 0x01]);
        assert!(b[14..].iter().all(|x| *x == 0), "MBZ");
        let q = ReflectorPacket::reflect(&p, 9, 100, 200, 64).encode();
        assert_eq!(&q[0..4], &[0, 0, 0, 9], "the reflector's own sequence number first");
        assert_eq!(&q[4..12], &200u64.to_be_bytes(), "its transmit timestamp");
        assert_eq!(&q[12..14], &[0x80, 0x01], "its error estimate");
        assert_eq!(&q[14..16], &[0, 0], "MBZ");
        assert_eq!(&q[16..24], &100u64.to_be_bytes(), "receive timestamp at offset 16");
        assert_eq!(&q[24..28], &[0, 0, 0, 7], "sender sequence number at offset 24");
        assert_eq!(&q[28..36], &b[4..12], "sender timestamp at offset 28");
        assert_eq!(&q[36..38], &[0x80, 0x01], "sender error estimate at offset 36");
        assert_eq!(&q[38..40], &[0, 0], "MBZ");
        assert_eq!(q[40], 64, "sender TTL at offset 40");
        assert!(q[41..].iter().all(|x| *x == 0), "MBZ");
    }

    #[test]
    fn rtt_excludes_the_reflector_turnaround() {
        let ms = |m: u128| ntp_from_unix_nanos(1_790_000_000_000_000_000 + m * 1_000_000);
        let p = SenderPacket { seq: 1, timestamp: ms(0), error_estimate: ERROR_ESTIMATE };
        // out 10 ms, reflector holds it 5 ms, back 10 ms: arrives at 25 ms, RTT 20 ms
        let q = ReflectorPacket::reflect(&p, 1, ms(10), ms(15), 64);
        assert!((q.rtt_ms(ms(25)) - 20.0).abs() < 1e-3, "{}", q.rtt_ms(ms(25)));
    }
}
