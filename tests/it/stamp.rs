//! STAMP on loopback: `netqoe reflector` answers the probe's session-sender; loopback RTT is
//! small and loss zero; told to drop a fraction, the measured loss matches it.

use std::time::Duration;

async fn reflector(drop: f64) -> (std::net::SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>) {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    (addr, tokio::spawn(netqoe::stamp::reflect(socket, drop, 42)))
}

#[actix_rt::test]
async fn loopback_round_trips_are_fast_and_lossless() {
    let (addr, task) = reflector(0.0).await;
    let r = netqoe::stamp::measure(addr, 50, Duration::from_millis(1), Duration::from_millis(500)).await.unwrap();
    assert_eq!((r.sent, r.received), (50, 50));
    assert_eq!(r.rtt_ms.len(), 50);
    let mut v = r.rtt_ms.clone();
    v.sort_by(f64::total_cmp);
    assert!(v[25] < 5.0, "loopback median RTT {} ms", v[25]);
    assert!(v.iter().all(|x| *x >= 0.0));
    task.abort();
}

#[actix_rt::test]
async fn measured_loss_matches_the_reflectors_drop_rate() {
    // 2000 packets at p = 0.2: standard deviation of the loss rate ≈ 0.009; tolerance ±0.04
    let (addr, task) = reflector(0.2).await;
    let r = netqoe::stamp::measure(addr, 2000, Duration::from_micros(200), Duration::from_millis(500)).await.unwrap();
    let loss = 1.0 - r.received as f64 / r.sent as f64;
    assert!((loss - 0.2).abs() < 0.04, "measured loss {loss}");
    task.abort();
}

#[actix_rt::test]
async fn nobody_answering_is_total_loss_not_an_error() {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    drop(socket); // nothing listens there now
    let r = netqoe::stamp::measure(addr, 5, Duration::from_millis(1), Duration::from_millis(200)).await.unwrap();
    assert_eq!((r.sent, r.received), (5, 0));
}
