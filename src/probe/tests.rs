//! Unit tests of the probe's config, URL parsing and seq counter.

use super::config::expand_with;
use super::seq::SEQ_BLOCK;
use super::*;

#[test]
fn http_urls_parse_with_ipv6_literals_ports_and_queries() {
    let u = parse_url("http://[::1]:8080/health?x=1#frag").unwrap();
    assert_eq!((u.tls, u.host.as_str(), u.port), (false, "::1", 8080));
    assert_eq!((u.path.as_str(), u.host_header.as_str()), ("/health?x=1", "[::1]:8080"));
    let u = parse_url("https://Example.COM").unwrap();
    assert_eq!((u.tls, u.host.as_str(), u.port, u.path.as_str()), (true, "example.com", 443, "/"));
    assert_eq!(u.host_header, "example.com", "the default port is not named");
    let u = parse_url("http://10.0.0.1:81/a/b").unwrap();
    assert_eq!((u.host.as_str(), u.host_header.as_str()), ("10.0.0.1", "10.0.0.1:81"));
    for bad in ["ftp://example.com/", "example.com", "http://", "http://[::1/", "http://h:99999/"] {
        assert!(parse_url(bad).is_err(), "{bad} refused");
    }
}

/// An HTTP target on an IPv6 literal is measured (the hand-split URL took `[::1]` apart at
/// its colons), and the request names the host and port as RFC 9110 asks.
#[test]
fn an_ipv6_http_target_is_measured_with_its_host_header() {
    use std::io::{Read, Write};
    let Ok(listener) = std::net::TcpListener::bind("[::1]:0") else {
        panic!("IPv6 loopback is needed for this test (::1)");
    };
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        let mut req = Vec::new();
        let mut buf = [0u8; 1024];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = c.read(&mut buf).unwrap();
            req.extend_from_slice(&buf[..n]);
        }
        c.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n").unwrap();
        String::from_utf8(req).unwrap()
    });
    let t = http_measure(&format!("http://[::1]:{port}/v6"), Duration::from_secs(5), true).expect("measured");
    assert_eq!(t.status, 204);
    let req = server.join().unwrap();
    assert!(req.starts_with("GET /v6 HTTP/1.1\r\n"), "{req}");
    assert!(req.contains(&format!("\r\nHost: [::1]:{port}\r\n")), "{req}");
}

#[test]
fn environment_references_expand_or_name_the_field() {
    let env = |name: &str| (name == "NETQOE_TEST_NODE").then(|| "node-7".to_string());
    let expand_env = |field: &str, value: &str| expand_with(field, value, env);
    assert_eq!(expand_env("probe_id", "probe-${NETQOE_TEST_NODE}").unwrap(), "probe-node-7");
    assert_eq!(expand_env("probe_id", "plain").unwrap(), "plain");
    let e = expand_env("token_file", "/t/${NETQOE_TEST_UNSET_VAR}").unwrap_err().to_string();
    assert!(e.contains("token_file") && e.contains("NETQOE_TEST_UNSET_VAR"), "{e}");
    assert!(expand_env("probe_id", "${OPEN").is_err());
}

/// A restarted probe never hands out a seq it handed out before (a reused seq means a reused
/// event id: ingest would drop the new measurement as a duplicate of the old one).
#[test]
fn seqs_are_never_reused_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut seen = std::collections::HashSet::new();
    let mut last = 0;
    // runs that stop right after opening, inside a block, at a block's end, across blocks
    for takes in [0, 1, 5, SEQ_BLOCK as usize - 1, 1, SEQ_BLOCK as usize + 3, 0, 2] {
        let mut c = SeqCounter::open(dir.path()).unwrap();
        for i in 0..takes {
            let s = c.take().unwrap();
            assert!(seen.insert(s), "seq {s} handed out twice");
            assert!(s > last, "seqs grow: {s} after {last}");
            assert_eq!(c.starts_run(s), i == 0, "only a run's first seq starts the run");
            last = s;
        }
    }
    assert_eq!(seen.len(), 2 * SEQ_BLOCK as usize + 11);
    // what is on disk is the reservation: at least one past everything handed out
    let on_disk: u64 = std::fs::read_to_string(dir.path().join("seq")).unwrap().trim().parse().unwrap();
    assert!(on_disk > last);
}

#[test]
fn a_corrupt_seq_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("seq"), "not a number").unwrap();
    let e = format!("{:#}", SeqCounter::open(dir.path()).err().expect("a corrupt counter must not restart at 1"));
    assert!(e.contains("seq") && e.contains("corrupt"), "{e}");
}
