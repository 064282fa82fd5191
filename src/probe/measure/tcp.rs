//! TCP targets: the time to an accepted connection; refused, unreachable and timed out told apart.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use netqoe_domain::Status;

use super::Measured;

/// Connects to `addr` once within `timeout`.
pub async fn connect(addr: SocketAddr, timeout: Duration) -> Measured {
    let started = Instant::now();
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Measured::Connect(started.elapsed().as_secs_f64() * 1000.0),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Measured::Failed(Status::Refused),
        Ok(Err(_)) => Measured::Failed(Status::Unreachable),
        Err(_) => Measured::Failed(Status::Timeout),
    }
}
