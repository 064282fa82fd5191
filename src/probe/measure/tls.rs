//! TLS targets: TCP connect and handshake, certificate days left.

use super::*;

use super::net::*;
/// A finished TLS handshake: the stream, the handshake time (ms) and the days until the server
/// certificate expires.
pub(crate) type Handshake = (openssl::ssl::SslStream<std::net::TcpStream>, f64, Option<f64>);

/// TLS handshake over `tcp` with SNI `host`, verifying the chain and the name against the system
/// roots unless `verify` is off.
pub(crate) fn tls_handshake(host: &str, tcp: std::net::TcpStream, verify: bool) -> Result<Handshake, Status> {
    let mut b = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls()).map_err(|_| Status::TlsError)?;
    if !verify {
        b.set_verify(openssl::ssl::SslVerifyMode::NONE);
    }
    let mut conf = b.build().configure().map_err(|_| Status::TlsError)?;
    conf.set_verify_hostname(verify);
    let t2 = Instant::now();
    let s = conf.connect(host, tcp).map_err(|e| match e {
        // the handshake failed because the chain or the name did not verify
        openssl::ssl::HandshakeError::Failure(mid)
            if mid.ssl().verify_result() != openssl::x509::X509VerifyResult::OK =>
        {
            Status::CertError
        }
        _ => Status::TlsError,
    })?;
    let tls_ms = t2.elapsed().as_secs_f64() * 1000.0;
    let cert_days = s.ssl().peer_certificate().and_then(|c| {
        let now = openssl::asn1::Asn1Time::days_from_now(0).ok()?;
        let d = now.diff(c.not_after()).ok()?;
        Some((f64::from(d.days) + f64::from(d.secs) / 86_400.0).max(0.0))
    });
    Ok((s, tls_ms, cert_days))
}

/// Timings of one TLS handshake toward `host:port`.
#[derive(Clone, Debug)]
pub struct TlsTimings {
    pub connect_ms: f64,
    pub tls_ms: f64,
    pub cert_days: Option<f64>,
}

/// TCP connect and TLS handshake toward `address` (`host:port`, SNI = host), blocking.
pub fn tls_measure(address: &str, timeout: Duration, verify: bool) -> Result<TlsTimings, Status> {
    let (host, port) = address.rsplit_once(':').ok_or(Status::Error)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let (addr, _) = resolve_blocking(host, port.parse().map_err(|_| Status::Error)?)?;
    let (tcp, connect_ms) = connect_blocking(addr, timeout)?;
    let (mut s, tls_ms, cert_days) = tls_handshake(host, tcp, verify)?;
    let _ = s.shutdown();
    Ok(TlsTimings { connect_ms, tls_ms, cert_days })
}
