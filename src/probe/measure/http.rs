//! HTTP(S) targets: the URL (the `url` crate) and one GET with its timings.

use super::*;

use super::net::*;
use super::tls::tls_handshake;
/// An HTTP(S) target URL, parsed with the `url` crate (IPv6 literals, userinfo, query strings and
/// fragments as RFC 3986 has them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl {
    pub tls: bool,
    /// The host to resolve and to name in SNI: a domain, or an IP literal without brackets.
    pub host: String,
    pub port: u16,
    /// Path and query (never the fragment), as the request line carries them.
    pub path: String,
    /// The `Host` header: the host as written (IPv6 in brackets) and the port when not the
    /// scheme's default.
    pub host_header: String,
}

/// Parses an `http://` or `https://` URL; the error says what is wrong with it.
pub fn parse_url(text: &str) -> Result<HttpUrl, String> {
    let u = url::Url::parse(text).map_err(|e| e.to_string())?;
    let tls = match u.scheme() {
        "https" => true,
        "http" => false,
        other => return Err(format!("scheme {other}: only http and https are measured")),
    };
    let host = match u.host() {
        Some(url::Host::Domain(d)) if !d.is_empty() => d.to_string(),
        Some(url::Host::Ipv4(a)) => a.to_string(),
        Some(url::Host::Ipv6(a)) => a.to_string(),
        _ => return Err("no host".into()),
    };
    let port = u.port_or_known_default().ok_or("no port")?;
    let host_str = u.host_str().unwrap_or_default();
    let host_header = match u.port() {
        Some(p) => format!("{host_str}:{p}"),
        None => host_str.to_string(),
    };
    let path = u[url::Position::BeforePath..url::Position::AfterQuery].to_string();
    Ok(HttpUrl { tls, host, port, path, host_header })
}

/// Timings of one HTTP(S) GET.
#[derive(Clone, Debug)]
pub struct HttpTimings {
    pub dns_ms: f64,
    pub connect_ms: f64,
    pub tls_ms: Option<f64>,
    pub ttfb_ms: f64,
    /// Request written to the last body byte read (the whole exchange after the handshake).
    pub total_ms: f64,
    /// Days until the server certificate's notAfter (https only).
    pub cert_days: Option<f64>,
    pub status: u16,
}

/// Most body bytes an HTTP measurement reads; the total time stops there.
const MAX_BODY: usize = 8 << 20;

/// One HTTP(S) GET, blocking (run it on a blocking thread): name resolution, TCP connect, TLS
/// handshake (and certificate expiry), time to the first response byte, time to the last body
/// byte, status code. Errors are event status classes.
pub fn http_measure(url: &str, timeout: Duration, verify: bool) -> Result<HttpTimings, Status> {
    let HttpUrl { tls, host, port, path, host_header } = parse_url(url).map_err(|_| Status::Error)?;
    let (addr, dns_ms) = resolve_blocking(&host, port)?;
    let (tcp, connect_ms) = connect_blocking(addr, timeout)?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: netqoe-probe\r\nConnection: close\r\n\r\n");
    let exchange = |s: &mut dyn ReadWrite| -> Result<(f64, f64, u16), Status> {
        let t = Instant::now();
        s.write_all(request.as_bytes()).map_err(|_| Status::Error)?;
        let mut buf = vec![0u8; 16 << 10];
        let mut got = s.read(&mut buf).map_err(|_| Status::Timeout)?;
        let ttfb = t.elapsed().as_secs_f64() * 1000.0;
        let mut head: Vec<u8> = buf[..got].to_vec();
        // the status line and headers, then the body to its end (Content-Length or close)
        let head_end = loop {
            if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if got == 0 || head.len() > 64 << 10 {
                return Err(Status::Error);
            }
            got = s.read(&mut buf).map_err(|_| Status::Timeout)?;
            head.extend_from_slice(&buf[..got]);
        };
        let text = String::from_utf8_lossy(&head[..head_end]).to_string();
        let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or(Status::Error)?;
        let length = text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case("content-length").then(|| v.trim().parse::<usize>().ok()).flatten()
        });
        let want = length.unwrap_or(MAX_BODY).min(MAX_BODY);
        let mut body = head.len() - head_end;
        while body < want {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => body += n,
                Err(_) => return Err(Status::Timeout),
            }
        }
        Ok((ttfb, t.elapsed().as_secs_f64() * 1000.0, status))
    };
    if tls {
        let (mut s, tls_ms, cert_days) = tls_handshake(&host, tcp, verify)?;
        let (ttfb_ms, total_ms, status) = exchange(&mut s)?;
        Ok(HttpTimings { dns_ms, connect_ms, tls_ms: Some(tls_ms), ttfb_ms, total_ms, cert_days, status })
    } else {
        let mut s = tcp;
        let (ttfb_ms, total_ms, status) = exchange(&mut s)?;
        Ok(HttpTimings { dns_ms, connect_ms, tls_ms: None, ttfb_ms, total_ms, cert_days: None, status })
    }
}
