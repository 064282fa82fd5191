//! The CQL schema, generated from configuration (keyspace, replication, per-tier retention).
//! Pure: no I/O. Only CQL that both ScyllaDB and Apache Cassandra 4 accept (native protocol v4).
//!
//! Invariant: every statement is idempotent (`IF NOT EXISTS`), so applying a version twice is
//! harmless; `SCHEMA_VERSION` changes whenever a statement here changes.

use crate::config::{Config, ReplicationStrategy};

/// 1: first schema. 2: `events_applied set<bigint>` (a window's event set, grown by each
/// revision's delta in the same row) and the series index tables. 3: `events_chunks map<bigint,
/// blob>`: each revision's delta as one packed cell instead of a cell per event (still read:
/// `events_applied` of rows written by version 2).
pub const SCHEMA_VERSION: i32 = 3;

/// Partition bucket widths (ms) per tier: a partition holds one series for one bucket, so it stays
/// bounded (1440 rows/day for 1m, ≤ 720 rows for 1h, ≤ 366 rows for 1d).
pub const BUCKET_1M_MS: i64 = 86_400_000; // a day
pub const BUCKET_1H_MS: i64 = 30 * 86_400_000; // 30 days
pub const BUCKET_1D_MS: i64 = 366 * 86_400_000; // a year

/// Columns of a window's mergeable state, shared by the per-probe and by-target tables.
const STATE_COLUMNS: &str = "revision bigint, closed boolean, events bigint, count bigint, min double, max double, \
sum double, sent bigint, received bigint, jitter_sum double, jitter_n bigint, errors map<text, bigint>, sketch blob, \
events_applied set<bigint>, events_chunks map<bigint, blob>";

fn replication(cfg: &Config) -> String {
    let s = &cfg.scylla;
    match s.replication {
        ReplicationStrategy::SimpleStrategy => {
            format!("{{'class': 'SimpleStrategy', 'replication_factor': {}}}", s.replication_factor)
        }
        ReplicationStrategy::NetworkTopologyStrategy => {
            let dcs: Vec<String> = s.datacenters.iter().map(|(dc, rf)| format!("'{dc}': {rf}")).collect();
            format!("{{'class': 'NetworkTopologyStrategy', {}}}", dcs.join(", "))
        }
    }
}

fn twcs(unit: &str, size: u32) -> String {
    format!(
        "{{'class': 'TimeWindowCompactionStrategy', 'compaction_window_unit': '{unit}', 'compaction_window_size': {size}}}"
    )
}

/// The schema, one statement per element, in the order to apply them.
pub fn statements(cfg: &Config) -> Vec<String> {
    let ks = &cfg.scylla.keyspace;
    let day = 86_400i64;
    let ttl = |days: i64| days * day;
    let r = &cfg.retention;
    let dedup_s = cfg.ingest.max_past_s + day;
    let mut v = vec![
        format!("CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {} AND durable_writes = true", replication(cfg)),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.schema_version (id int PRIMARY KEY, version int, applied_at timestamp)"
        ),
    ];
    // (tier, TWCS window, TTL seconds)
    for (tier, unit, size, ttl_s) in
        [("1m", "DAYS", 1, ttl(r.m1_days)), ("1h", "DAYS", 7, ttl(r.h1_days)), ("1d", "DAYS", 30, ttl(r.d1_days))]
    {
        v.push(format!(
            "CREATE TABLE IF NOT EXISTS {ks}.rollups_{tier} (probe text, target text, metric text, bucket bigint, \
             start_ms bigint, {STATE_COLUMNS}, PRIMARY KEY ((probe, target, metric, bucket), start_ms)) \
             WITH CLUSTERING ORDER BY (start_ms ASC) AND compaction = {} AND default_time_to_live = {ttl_s}",
            twcs(unit, size)
        ));
        v.push(format!(
            "CREATE TABLE IF NOT EXISTS {ks}.rollups_by_target_{tier} (target text, metric text, bucket bigint, \
             start_ms bigint, probe text, {STATE_COLUMNS}, PRIMARY KEY ((target, metric, bucket), start_ms, probe)) \
             WITH CLUSTERING ORDER BY (start_ms ASC, probe ASC) AND compaction = {} AND default_time_to_live = {ttl_s}",
            twcs(unit, size)
        ));
    }
    v.extend([
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.processed_batches (batch_id text PRIMARY KEY, at_ms bigint) \
             WITH default_time_to_live = {dedup_s}"
        ),
        // Which (probe, target, metric) series exist: queries list them instead of scanning rollups.
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.series (probe text, target text, metric text, \
             PRIMARY KEY ((probe), target, metric))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.series_by_target (target text, metric text, probe text, \
             PRIMARY KEY ((target), metric, probe))"
        ),
        // max_event_ms and max_seq are written USING TIMESTAMP <value>, so last-write-wins keeps the maximum.
        format!("CREATE TABLE IF NOT EXISTS {ks}.probe_marks (probe text PRIMARY KEY, max_event_ms bigint, max_seq bigint)"),
        format!("CREATE TABLE IF NOT EXISTS {ks}.probe_sessions (probe text PRIMARY KEY, state text, updated_ms bigint)"),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.incidents (id text PRIMARY KEY, state text, scope text, subject map<text, text>, \
             metrics set<text>, opened_ms bigint, updated_ms bigint, resolved_ms bigint, peak_severity double, \
             mos_impact double, evidence text)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {ks}.incidents_by_day (day bigint, opened_ms bigint, id text, state text, \
             PRIMARY KEY ((day), opened_ms, id)) WITH CLUSTERING ORDER BY (opened_ms DESC, id ASC) \
             AND default_time_to_live = {}",
            ttl(r.d1_days)
        ),
    ]);
    v
}

/// Statements that bring a keyspace of version `from` to the current version (after `statements`,
/// which create what is missing).
pub fn upgrades(cfg: &Config, from: i32) -> Vec<String> {
    let ks = &cfg.scylla.keyspace;
    let mut v = Vec::new();
    if from < 2 {
        for tier in ["1m", "1h", "1d"] {
            v.push(format!("ALTER TABLE {ks}.rollups_{tier} ADD events_applied set<bigint>"));
            v.push(format!("ALTER TABLE {ks}.rollups_by_target_{tier} ADD events_applied set<bigint>"));
        }
    }
    if from < 3 {
        for tier in ["1m", "1h", "1d"] {
            v.push(format!("ALTER TABLE {ks}.rollups_{tier} ADD events_chunks map<bigint, blob>"));
            v.push(format!("ALTER TABLE {ks}.rollups_by_target_{tier} ADD events_chunks map<bigint, blob>"));
        }
    }
    v
}

/// The schema as a script (`netqoe migrate --print`).
pub fn script(cfg: &Config) -> String {
    let mut out = format!("-- netqoe CQL schema, version {SCHEMA_VERSION}\n");
    for s in statements(cfg) {
        out.push_str(&s);
        out.push_str(";\n");
    }
    out.push_str(&format!(
        "INSERT INTO {}.schema_version (id, version, applied_at) VALUES (0, {SCHEMA_VERSION}, toTimestamp(now()));\n",
        cfg.scylla.keyspace
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(env: &[(&str, &str)]) -> Config {
        Config::load_from(None, env.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap()
    }

    #[test]
    fn schema_has_every_table_with_twcs_and_retention_ttl() {
        let s = script(&cfg(&[]));
        for t in [
            "rollups_1m",
            "rollups_1h",
            "rollups_1d",
            "rollups_by_target_1m",
            "rollups_by_target_1h",
            "rollups_by_target_1d",
            "processed_batches",
            "series",
            "series_by_target",
            "probe_marks",
            "probe_sessions",
            "incidents",
            "incidents_by_day",
            "schema_version",
        ] {
            assert!(s.contains(&format!("netqoe.{t} (")), "{t} missing");
        }
        assert!(s.contains("'class': 'NetworkTopologyStrategy', 'dc1': 3"));
        assert!(s.contains("default_time_to_live = 604800"), "1m: 7 days");
        assert!(s.contains("default_time_to_live = 7776000"), "1h: 90 days");
        assert!(s.contains("default_time_to_live = 63072000"), "1d: 730 days");
        assert_eq!(s.matches("TimeWindowCompactionStrategy").count(), 6);
        assert!(statements(&cfg(&[])).iter().all(|st| st.contains("IF NOT EXISTS")), "idempotent");
        // no Scylla-only extensions
        for word in ["USING TIMEOUT", "BYPASS CACHE", "PER PARTITION LIMIT"] {
            assert!(!s.contains(word));
        }
    }

    #[test]
    fn replication_and_retention_follow_the_config() {
        let s = script(&cfg(&[
            ("NETQOE__SCYLLA__REPLICATION", "SimpleStrategy"),
            ("NETQOE__SCYLLA__KEYSPACE", "qoe_dev"),
            ("NETQOE__RETENTION__M1_DAYS", "3"),
            ("NETQOE__INGEST__MAX_PAST_S", "86400"),
        ]));
        assert!(s.contains("CREATE KEYSPACE IF NOT EXISTS qoe_dev WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}"));
        assert!(s.contains("default_time_to_live = 259200"));
    }
}
