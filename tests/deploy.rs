//! The deployment material is checked, not just shipped: every YAML file under deploy/ and k8s/
//! parses; the single-host compose file wires the real roles, mounts files that exist, takes its
//! secrets from the environment and health-checks the broker; the Dockerfile builds what CI builds
//! and runs as a non-root user with a health check on /healthz.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(p);
        }
    }
}

#[test]
fn every_yaml_file_parses() {
    let mut files = Vec::new();
    yaml_files(&root().join("deploy"), &mut files);
    yaml_files(&root().join("k8s"), &mut files);
    assert!(files.len() >= 3, "{files:?}");
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            serde_yaml::Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        }
    }
}

use serde::Deserialize;

#[test]
fn the_single_host_compose_file_is_wired_to_real_roles_and_files() {
    let dir = root().join("deploy");
    let c: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(dir.join("compose.yaml")).unwrap()).unwrap();
    let services = c["services"].as_mapping().unwrap();
    for name in ["rabbitmq", "ingest", "aggregate", "prometheus", "grafana"] {
        assert!(services.contains_key(name), "service {name}");
    }
    // netqoe services run a real role of the binary
    let roles = ["run", "ingest", "aggregate", "probe", "reflector", "migrate", "eval"];
    for name in ["ingest", "aggregate"] {
        let cmd = c["services"][name]["command"][0].as_str().unwrap();
        assert!(roles.contains(&cmd), "{name}: {cmd}");
    }
    // every bind-mounted host path exists (relative to the compose file)
    for (name, s) in services {
        for v in s["volumes"].as_sequence().into_iter().flatten() {
            let host = v.as_str().unwrap().split(':').next().unwrap();
            if host.starts_with('.') {
                assert!(dir.join(host).exists(), "{name:?}: {host} does not exist");
            }
        }
    }
    // secrets come from the environment, never literals
    let text = std::fs::read_to_string(dir.join("compose.yaml")).unwrap();
    for key in ["RABBITMQ_DEFAULT_PASS", "GF_SECURITY_ADMIN_PASSWORD"] {
        let line = text.lines().find(|l| l.contains(key)).unwrap();
        assert!(line.contains("${"), "{key} must come from the environment: {line}");
    }
    assert!(c["services"]["rabbitmq"]["healthcheck"]["test"].is_sequence(), "broker health check");
    assert_eq!(c["x-netqoe"]["environment"]["NETQOE__BUS__KIND"], "rabbitmq", "netqoe roles use the broker");
    assert_eq!(text.matches("<<: *netqoe").count(), 2, "ingest and aggregate share the netqoe settings");
}

#[test]
fn the_dockerfile_builds_what_ci_builds_and_runs_hardened() {
    let d = std::fs::read_to_string(root().join("deploy/Dockerfile")).unwrap();
    assert!(d.contains("cargo build --release --locked -p netqoe"), "the builder runs the locked release build");
    assert!(d.contains("USER 10001"), "non-root");
    assert!(d.contains("HEALTHCHECK") && d.contains("/healthz"), "health check on /healthz");
    assert!(d.contains("ENTRYPOINT [\"/usr/local/bin/netqoe\"]"), "one image, every role");
    assert!(d.lines().filter(|l| l.starts_with("FROM ")).count() >= 2, "multi-stage");
    // the config the image ships is valid
    let cfg = root().join("deploy/netqoe.example.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_netqoe"))
        .args(["--config", cfg.to_str().unwrap(), "config", "check"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn kubernetes_base_workloads_are_probed_hardened_and_drained() {
    let base = root().join("k8s/base");
    let k: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(base.join("kustomization.yaml")).unwrap()).unwrap();
    let mut docs = Vec::new();
    for r in k["resources"].as_sequence().unwrap() {
        let f = base.join(r.as_str().unwrap());
        assert!(f.exists(), "kustomization lists {}", f.display());
        let text = std::fs::read_to_string(&f).unwrap();
        for d in serde_yaml::Deserializer::from_str(&text) {
            docs.push(serde_yaml::Value::deserialize(d).unwrap());
        }
    }
    let mut deployments = 0;
    for d in &docs {
        assert!(d["apiVersion"].is_string() && d["kind"].is_string() && d["metadata"]["name"].is_string(), "{d:?}");
        if d["kind"] != "Deployment" {
            continue;
        }
        deployments += 1;
        let name = d["metadata"]["name"].as_str().unwrap();
        let spec = &d["spec"]["template"]["spec"];
        assert!(spec["terminationGracePeriodSeconds"].as_u64().unwrap() >= 40, "{name}: room for the drain");
        assert_eq!(spec["securityContext"]["runAsNonRoot"], true, "{name}");
        let c = &spec["containers"][0];
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true, "{name}");
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz", "{name}");
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz", "{name}");
        let role = c["args"][0].as_str().unwrap();
        assert!(["ingest", "aggregate", "run"].contains(&role), "{name}: {role}");
    }
    assert_eq!(deployments, 2);
    // the ConfigMap's netqoe.toml is a valid configuration
    let cm = docs.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("netqoe.toml");
    std::fs::write(&f, cm["data"]["netqoe.toml"].as_str().unwrap()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_netqoe"))
        .args(["--config", f.to_str().unwrap(), "config", "check"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
