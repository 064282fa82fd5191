//! Monitoring material stays true to the code: every metric the alert rules and the Grafana
//! dashboard refer to is a family documented in docs/metrics.md (which `tests/metrics_doc.rs`
//! checks against /metrics), the dashboard is well-formed, and promtool accepts the config and rules.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn documented_families() -> BTreeSet<String> {
    std::fs::read_to_string(root().join("docs/metrics.md"))
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|n| n.starts_with("netqoe_"))
        .map(str::to_string)
        .collect()
}

/// `netqoe_*` names in an expression, histogram suffixes folded into their family.
fn referenced(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while let Some(p) = expr[i..].find("netqoe_") {
        let start = i + p;
        let mut end = start;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
            end += 1;
        }
        let mut name = &expr[start..end];
        for suffix in ["_bucket", "_count", "_sum"] {
            if let Some(base) = name.strip_suffix(suffix) {
                if base.ends_with("_seconds") {
                    name = base;
                }
            }
        }
        out.push(name.to_string());
        i = end;
    }
    out
}

fn exprs_in_rules(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr: "))
        .map(str::to_string)
        .collect()
}

#[test]
fn alert_rules_refer_only_to_documented_metrics() {
    let known = documented_families();
    let exprs = exprs_in_rules(&root().join("deploy/prometheus/alerts.yml"));
    assert!(exprs.len() >= 8, "alert rules were parsed");
    // the series other exporters serve that rules may use: Prometheus's own `up` of a job scraped
    // by deploy/prometheus/prometheus.yml, and RabbitMQ's alarm gauges (rabbitmq_prometheus)
    let scrape = std::fs::read_to_string(root().join("deploy/prometheus/prometheus.yml")).unwrap();
    let external_ok = |e: &str| {
        // `up{job="a"}` or `up{job=~"prefix(a|b)"}`: every job it names is scraped
        let up_of_scraped_jobs = e.strip_prefix("up{job=").is_some_and(|rest| {
            let matcher = rest.trim_start_matches('~').trim_start_matches('"');
            let matcher = matcher.split('"').next().unwrap_or("");
            let jobs: Vec<String> = match matcher.split_once('(') {
                Some((prefix, alts)) => alts.trim_end_matches(')').split('|').map(|a| format!("{prefix}{a}")).collect(),
                None => vec![matcher.to_string()],
            };
            jobs.iter().all(|j| scrape.contains(&format!("job_name: {j}\n")))
        });
        up_of_scraped_jobs || (e.contains("rabbitmq_alarms_") && scrape.contains("job_name: rabbitmq\n"))
    };
    for e in &exprs {
        let names = referenced(e);
        assert!(!names.is_empty() || external_ok(e), "{e}: refers to no netqoe metric nor a known exporter's series");
        for n in names {
            assert!(known.contains(&n), "alerts.yml: {n} is not a documented metric family");
        }
    }
}

#[test]
fn dashboard_is_well_formed_and_refers_only_to_documented_metrics() {
    let known = documented_families();
    let d: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("deploy/grafana/netqoe.json")).unwrap()).unwrap();
    assert_eq!(d["uid"], "netqoe-overview");
    let vars = d["templating"]["list"].as_array().unwrap();
    assert!(vars.iter().any(|v| v["type"] == "datasource" && v["query"] == "prometheus"), "datasource templating");
    let panels = d["panels"].as_array().unwrap();
    let rows: Vec<&str> = panels.iter().filter(|p| p["type"] == "row").map(|p| p["title"].as_str().unwrap()).collect();
    assert_eq!(rows, ["Actor health", "Pipeline", "Broker (RabbitMQ)", "Diagnosis and QoE"]);
    let mut seen_ids = BTreeSet::new();
    let mut exprs = 0;
    for p in panels {
        assert!(seen_ids.insert(p["id"].as_u64().unwrap()), "panel ids are unique");
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${DS_PROMETHEUS}", "{}: templated datasource", p["title"]);
        for t in p["targets"].as_array().unwrap() {
            let e = t["expr"].as_str().unwrap();
            exprs += 1;
            for n in referenced(e) {
                assert!(known.contains(&n), "dashboard panel {}: {n} is not a documented metric family", p["title"]);
            }
        }
    }
    assert!(exprs >= 20);
}

#[test]
fn a_broken_reference_is_caught() {
    // the checker itself: an unknown family must not pass
    let known = documented_families();
    assert!(referenced("rate(netqoe_no_such_family_total[5m])").iter().any(|n| !known.contains(n)));
    assert_eq!(
        referenced("histogram_quantile(0.9, rate(netqoe_store_write_seconds_bucket[1m]))"),
        ["netqoe_store_write_seconds"]
    );
}

/// `promtool check config` and `check rules` (scripts/test.sh provides promtool and runs this).
#[test]
#[ignore = "needs promtool: scripts/test.sh extracts it from Debian's prometheus package and runs this test"]
fn promtool_accepts_the_config_and_the_rules() {
    let promtool = std::env::var("NETQOE_PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let dir = root().join("deploy/prometheus");
    for args in [vec!["check", "config", "prometheus.yml"], vec!["check", "rules", "alerts.yml"]] {
        let out = std::process::Command::new(&promtool).args(&args).current_dir(&dir).output().expect("promtool runs");
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
