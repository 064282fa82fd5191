//! netqoe: network Quality-of-Experience telemetry. This crate is the binary's library: CLI
//! wiring, configuration, HTTP handlers and the adapters (SQLite) behind the actor crate's ports.

pub mod app;
pub mod auth;
pub mod config;
pub mod eval;
pub mod http;
pub mod icmp;
pub mod probe;
pub mod rabbit;
pub mod scylla;
pub mod sqlite;
pub mod stamp;
pub mod webhook;

/// Initialises tracing: plain or JSON lines, filtered by `level` (or `RUST_LOG` when set).
pub fn init_logging(format: &str, level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if format == "json" { b.json().try_init() } else { b.try_init() };
}
