//! Socket helpers the blocking measurements share: name resolution and TCP connect with timings.

use super::*;

/// Resolves `host:port` with the system resolver (blocking): the address and how long it took.
pub(crate) fn resolve_blocking(host: &str, port: u16) -> Result<(std::net::SocketAddr, f64), Status> {
    use std::net::ToSocketAddrs;
    let t0 = Instant::now();
    let addr = (host, port).to_socket_addrs().map_err(|_| Status::DnsError)?.next().ok_or(Status::Nxdomain)?;
    Ok((addr, t0.elapsed().as_secs_f64() * 1000.0))
}

/// TCP connect with a timeout (blocking): the stream and the connect time in ms.
pub(crate) fn connect_blocking(
    addr: std::net::SocketAddr,
    timeout: Duration,
) -> Result<(std::net::TcpStream, f64), Status> {
    let t1 = Instant::now();
    let tcp = std::net::TcpStream::connect_timeout(&addr, timeout).map_err(|e| match e.kind() {
        std::io::ErrorKind::ConnectionRefused => Status::Refused,
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => Status::Timeout,
        _ => Status::Unreachable,
    })?;
    let ms = t1.elapsed().as_secs_f64() * 1000.0;
    tcp.set_read_timeout(Some(timeout)).map_err(|_| Status::Error)?;
    tcp.set_write_timeout(Some(timeout)).map_err(|_| Status::Error)?;
    Ok((tcp, ms))
}

pub(crate) trait ReadWrite: std::io::Read + std::io::Write {}
impl<T: std::io::Read + std::io::Write> ReadWrite for T {}
