//! ScyllaDB / Cassandra 4 support: the versioned CQL schema, `netqoe migrate`, and the
//! `RollupStore` adapter (`store`).
//!
//! Invariant: `migrate` applies a schema version at most once: it reads the recorded version
//! first and does nothing when it is current; every statement is idempotent anyway, so an
//! interrupted migration can simply be run again.

pub mod schema;
pub mod store;

use std::time::Duration;

use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

use crate::config::{Config, ScyllaConfig};

/// Opens a session (credentials, TLS and timeouts from the config; the password is never logged).
pub async fn connect(cfg: &ScyllaConfig) -> anyhow::Result<Session> {
    let mut policy = scylla::policies::load_balancing::DefaultPolicy::builder().token_aware(true);
    if !cfg.local_dc.is_empty() {
        policy = policy.prefer_datacenter(cfg.local_dc.clone()).permit_dc_failover(false);
    }
    let profile = scylla::client::execution_profile::ExecutionProfile::builder()
        .request_timeout(Some(Duration::from_millis(cfg.request_timeout_ms)))
        .load_balancing_policy(policy.build())
        .build();
    let mut b = SessionBuilder::new()
        .known_nodes(&cfg.contact_points)
        .connection_timeout(Duration::from_millis(cfg.request_timeout_ms))
        .default_execution_profile_handle(profile.into_handle());
    if !cfg.username.is_empty() {
        b = b.user(cfg.username.clone(), cfg.password.expose().to_string());
    }
    if cfg.tls {
        let mut ctx = openssl::ssl::SslContextBuilder::new(openssl::ssl::SslMethod::tls())?;
        if cfg.ca_file.is_empty() {
            ctx.set_default_verify_paths()?;
        } else {
            ctx.set_ca_file(&cfg.ca_file)?;
        }
        ctx.set_verify(openssl::ssl::SslVerifyMode::PEER);
        b = b.tls_context(Some(ctx.build()));
    }
    Ok(b.build().await?)
}

/// What `migrate` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Migration {
    Applied { from: Option<i32>, to: i32, statements: usize },
    AlreadyCurrent(i32),
}

/// The version recorded in the keyspace, if the keyspace and table exist.
async fn recorded_version(session: &Session, keyspace: &str) -> Option<i32> {
    let r =
        session.query_unpaged(format!("SELECT version FROM {keyspace}.schema_version WHERE id = 0"), ()).await.ok()?;
    let rows = r.into_rows_result().ok()?;
    rows.maybe_first_row::<(Option<i32>,)>().ok().flatten().and_then(|(v,)| v)
}

/// Applies the schema unless the recorded version is current.
pub async fn migrate(cfg: &Config) -> anyhow::Result<Migration> {
    let session = connect(&cfg.scylla).await?;
    let ks = &cfg.scylla.keyspace;
    let from = recorded_version(&session, ks).await;
    if let Some(v) = from {
        if v >= schema::SCHEMA_VERSION {
            return Ok(Migration::AlreadyCurrent(v));
        }
    }
    let mut statements = schema::statements(cfg);
    if let Some(v) = from {
        statements.extend(schema::upgrades(cfg, v));
    }
    for s in &statements {
        session.query_unpaged(s.as_str(), ()).await.map_err(|e| anyhow::anyhow!("{e}: {s}"))?;
    }
    session
        .query_unpaged(
            format!("INSERT INTO {ks}.schema_version (id, version, applied_at) VALUES (0, ?, toTimestamp(now()))"),
            (schema::SCHEMA_VERSION,),
        )
        .await?;
    Ok(Migration::Applied { from, to: schema::SCHEMA_VERSION, statements: statements.len() })
}
