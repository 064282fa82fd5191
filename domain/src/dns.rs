//! Minimal DNS messages (RFC 1035) for the probe's resolution measurement: one question, recursion
//! desired; the answer's response code and answer count. Pure encode/decode.

/// Record types the probe can ask for.
pub fn record_type(name: &str) -> Option<u16> {
    Some(match name.to_ascii_uppercase().as_str() {
        "A" => 1,
        "NS" => 2,
        "CNAME" => 5,
        "MX" => 15,
        "TXT" => 16,
        "AAAA" => 28,
        _ => return None,
    })
}

/// A query for `name` of type `qtype` with transaction id `id`; None if the name is not a valid
/// host name (labels 1..63 bytes, total ≤ 253).
pub fn query(id: u16, name: &str, qtype: u16) -> Option<Vec<u8>> {
    let name = name.trim_end_matches('.');
    if name.is_empty() || name.len() > 253 {
        return None;
    }
    let mut out = Vec::with_capacity(18 + name.len());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[0x01, 0x00]); // RD
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // QD=1
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return None;
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&[0, 1]); // IN
    Some(out)
}

/// What a response says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response {
    pub id: u16,
    /// 0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN, …
    pub rcode: u8,
    pub answers: u16,
    pub truncated: bool,
}

/// Reads the header of a response (None: not a response).
pub fn response(b: &[u8]) -> Option<Response> {
    if b.len() < 12 || b[2] & 0x80 == 0 {
        return None;
    }
    Some(Response {
        id: u16::from_be_bytes([b[0], b[1]]),
        rcode: b[3] & 0x0f,
        answers: u16::from_be_bytes([b[6], b[7]]),
        truncated: b[2] & 0x02 != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_is_laid_out_as_rfc_1035_says() {
        let q = query(0x1234, "example.com", 1).unwrap();
        assert_eq!(&q[..12], &[0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&q[12..], b"\x07example\x03com\x00\x00\x01\x00\x01");
        assert_eq!(query(1, "example.com.", 28).unwrap().len(), q.len(), "a trailing dot is the same name");
        assert!(query(1, "", 1).is_none());
        assert!(query(1, "a..b", 1).is_none());
        assert!(query(1, &"x".repeat(64), 1).is_none());
        assert_eq!(record_type("aaaa"), Some(28));
        assert_eq!(record_type("SOA?"), None);
    }

    #[test]
    fn responses_are_read_and_queries_are_not_mistaken_for_them() {
        let mut r = query(7, "example.com", 1).unwrap();
        assert_eq!(response(&r), None, "a query is not a response");
        r[2] |= 0x80; // QR
        r[3] = 0x83; // RA, NXDOMAIN
        assert_eq!(response(&r), Some(Response { id: 7, rcode: 3, answers: 0, truncated: false }));
        assert_eq!(response(&[0; 5]), None);
    }
}
