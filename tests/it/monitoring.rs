//! Monitoring material stays true to the code: every metric the alert rules and the Grafana
//! dashboard refer to is a family documented in docs/metrics.md (which `tests/it/metrics_doc.rs`
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
    assert_eq!(
        rows,
        [
            "Actor health",
            "Pipeline",
            "Broker (RabbitMQ)",
            "Diagnosis and QoE",
            "QoE per target (fleet view, netqoe_target_*)"
        ]
    );
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

/// docs/operations.md names only alerts that exist, and each playbook's lab command is one the lab
/// has (a fault kind it knows, on one of its hosts).
#[test]
fn the_playbooks_name_real_alerts_and_real_lab_commands() {
    let ops = std::fs::read_to_string(root().join("docs/operations.md")).unwrap();
    let rules = std::fs::read_to_string(root().join("deploy/prometheus/alerts.yml")).unwrap();
    let alerts: BTreeSet<&str> = rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")).collect();
    let words = |text: &str| -> Vec<String> {
        text.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_string).collect()
    };
    let named: BTreeSet<String> =
        words(&ops).into_iter().filter(|w| w.starts_with("Netqoe") && w.len() > "Netqoe".len()).collect();
    assert!(named.len() >= 10, "alerts named in the playbooks were parsed: {named:?}");
    for a in &named {
        assert!(alerts.contains(a.as_str()), "docs/operations.md names {a}, which deploy/prometheus/alerts.yml lacks");
    }
    let lab = std::fs::read_to_string(root().join("deploy/lab/lab.py")).unwrap();
    let hosts_block = lab.split("HOSTS = {").nth(1).unwrap().split("\n}").next().unwrap();
    let hosts: BTreeSet<&str> =
        hosts_block.lines().filter_map(|l| l.trim().strip_prefix('"')?.split('"').next()).collect();
    assert!(hosts.contains("rabbit-1") && hosts.contains("probe-3"), "{hosts:?}");
    // the kinds the lab's `fault` accepts, from its own usage message
    let usage = lab.split("unknown fault {kind!r} (").nth(1).unwrap().split(')').next().unwrap();
    let kinds: Vec<&str> = usage.split(", ").collect();
    assert!(kinds.len() >= 9, "{kinds:?}");
    let mut commands = 0;
    for cmd in ops.split("lab.sh fault ").skip(1).chain(ops.split("`fault ").skip(1)) {
        let args: Vec<&str> = cmd.split('`').next().unwrap().split_whitespace().collect();
        let (kind, host) = (args[0], args[1]);
        assert!(kinds.contains(&kind), "docs/operations.md: `fault {kind}` is not a lab fault ({kinds:?})");
        assert!(hosts.contains(host), "docs/operations.md: `fault {kind} {host}`: {host} is not a lab host");
        commands += 1;
    }
    assert!(commands >= 8, "lab commands in the playbooks were parsed ({commands})");
}
