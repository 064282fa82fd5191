//! The deployment material is checked, not just shipped.
//! - Always: every YAML file under deploy/ and k8s/ parses; every compose file (single host and
//!   per tier) runs real roles, mounts files that exist and takes its secrets from the
//!   environment; the netqoe configuration each compose service and each Kubernetes overlay would
//!   load passes the same validation as `netqoe config check` (with the documented secrets
//!   applied); the probe configs pass `netqoe probe --check`; the Dockerfile builds what CI builds
//!   and runs hardened; the Kubernetes workloads are probed, hardened and drained; the custom
//!   resources (KEDA, RabbitmqCluster, ScyllaCluster, ServiceMonitor) are structurally right and
//!   refer to things that exist; the overlays refer to files and resources that exist.
//! - With the validators (`scripts/ensure-validators.sh`, run by scripts/test.sh): the Kubernetes
//!   manifests pass the Kubernetes schemas (kubernetes-validate --strict), the compose files pass
//!   the Compose specification schema (check-jsonschema), haproxy.cfg passes `haproxy -c` — and
//!   each validator rejects a deliberately broken copy, so the check can fail.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml::Value;

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
    out.sort();
}

fn docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v| !v.is_null())
        .collect()
}

#[test]
fn every_yaml_file_parses() {
    let mut files = Vec::new();
    yaml_files(&root().join("deploy"), &mut files);
    yaml_files(&root().join("k8s"), &mut files);
    assert!(files.len() >= 20, "{files:?}");
    for f in files {
        docs(&f);
    }
}

/// The compose files: the single-host one and one per tier.
fn compose_files() -> Vec<PathBuf> {
    let mut v = vec![root().join("deploy/compose.yaml")];
    yaml_files(&root().join("deploy/tiers"), &mut v);
    v
}

/// Compose-style `${VAR}`, `${VAR:-default}`, `${VAR:?message}` interpolation with the given
/// values (unset ones take their default, or the empty string).
fn interpolate(s: &str, vars: &BTreeMap<&str, &str>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let end = rest[i..].find('}').expect("closed ${") + i;
        let inner = &rest[i + 2..end];
        let (name, default) = match inner.find([':', '-', '?']) {
            Some(k) => (&inner[..k], inner[k..].trim_start_matches(':')),
            None => (inner, ""),
        };
        let default = default.strip_prefix('-').unwrap_or(if default.starts_with('?') { "" } else { default });
        out.push_str(vars.get(name).copied().unwrap_or(default));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// A service's effective settings with YAML merge keys (`<<: *anchor`) applied.
fn merged(v: &Value) -> Value {
    match v {
        Value::Mapping(m) => {
            let mut out = serde_yaml::Mapping::new();
            if let Some(base) = m.get("<<") {
                if let Value::Mapping(b) = merged(base) {
                    out.extend(b);
                }
            }
            for (k, val) in m {
                if k != "<<" {
                    out.insert(k.clone(), merged(val));
                }
            }
            Value::Mapping(out)
        }
        Value::Sequence(s) => Value::Sequence(s.iter().map(merged).collect()),
        other => other.clone(),
    }
}

const ROLES: [&str; 9] = ["run", "ingest", "aggregate", "diagnose", "global", "probe", "reflector", "migrate", "eval"];

/// The secrets the docs tell an operator to export, with dummy values.
fn dummy_secrets() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([
        ("RABBITMQ_PASSWORD", "s3cret"),
        ("RABBITMQ_ADMIN_PASSWORD", "s3cret"),
        ("RABBITMQ_ERLANG_COOKIE", "cookie"),
        ("SCYLLA_PASSWORD", "s3cret"),
        ("GRAFANA_PASSWORD", "s3cret"),
        ("WEBHOOK_SECRET", "s3cret"),
        (
            "NETQOE_PROBES",
            "[{id=\"p1\",token_sha256=\"1111111111111111111111111111111111111111111111111111111111111111\"}]",
        ),
        (
            "NETQOE_QUERY_TOKENS",
            "[{name=\"grafana\",token_sha256=\"2222222222222222222222222222222222222222222222222222222222222222\"}]",
        ),
        (
            "NETQOE_ADMIN_TOKENS",
            "[{name=\"deployer\",token_sha256=\"3333333333333333333333333333333333333333333333333333333333333333\"}]",
        ),
    ])
}

#[test]
fn compose_files_run_real_roles_with_existing_files_and_secrets_from_the_environment() {
    let secrets = dummy_secrets();
    let mut netqoe_services = 0;
    for file in compose_files() {
        let dir = file.parent().unwrap().to_path_buf();
        let c = merged(&docs(&file)[0]);
        let services = c["services"].as_mapping().unwrap_or_else(|| panic!("{}: services", file.display()));
        for (name, s) in services {
            let name = name.as_str().unwrap();
            let at = format!("{} service {name}", file.display());
            // every bind-mounted relative path exists
            for v in s["volumes"].as_sequence().into_iter().flatten() {
                let host = v.as_str().unwrap().split(':').next().unwrap();
                if host.starts_with('.') {
                    assert!(dir.join(host).exists(), "{at}: {host} does not exist");
                }
            }
            // secrets only ever from the environment
            for (k, val) in s["environment"].as_mapping().into_iter().flatten() {
                let (k, val) = (k.as_str().unwrap(), val.as_str().unwrap_or_default());
                let secret = ["PASS", "SECRET", "COOKIE", "TOKENS", "PROBES", "URIS"].iter().any(|w| k.contains(w));
                if secret && !val.is_empty() {
                    assert!(val.contains("${"), "{at}: {k} must come from the environment, not {val:?}");
                }
            }
            if s["image"].as_str().is_some_and(|i| i.starts_with("netqoe")) {
                netqoe_services += 1;
                let role = s["command"][0].as_str().unwrap_or_else(|| panic!("{at}: command"));
                assert!(ROLES.contains(&role), "{at}: {role} is not a netqoe role");
                assert_eq!(s["read_only"], true, "{at}: read-only root filesystem");
                if ["ingest", "aggregate", "diagnose", "global", "run", "migrate"].contains(&role) {
                    server_config_is_valid(&at, &dir, s, &secrets);
                }
            }
        }
    }
    assert!(netqoe_services >= 10, "{netqoe_services} netqoe services");
}

/// What a netqoe service would load: the mounted config file, then its environment (compose
/// interpolation applied with the documented secrets). It must pass `config check`'s validation.
fn server_config_is_valid(at: &str, dir: &Path, s: &Value, secrets: &BTreeMap<&str, &str>) {
    let mount = s["volumes"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find(|v| v.contains(":/etc/netqoe/netqoe.toml"))
        .unwrap_or_else(|| panic!("{at}: mounts no /etc/netqoe/netqoe.toml"));
    let file = dir.join(mount.split(':').next().unwrap());
    let env: Vec<(String, String)> = s["environment"]
        .as_mapping()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            let k = k.as_str()?.to_string();
            let v = v.as_str().map(str::to_string).unwrap_or_else(|| serde_yaml::to_string(v).unwrap().trim().into());
            Some((k, interpolate(&v, secrets)))
        })
        .collect();
    if let Err(e) = netqoe::config::Config::load_from(Some(&file), env) {
        panic!("{at}: the configuration it would load is invalid:\n{e}");
    }
}

#[test]
fn probe_configs_pass_the_probe_check() {
    let example = root().join("deploy/probe/probe.example.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_netqoe"))
        .args(["probe", example.to_str().unwrap(), "--check"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // the DaemonSet's probe.toml, with the node name it gets from the downward API
    let ds = docs(&root().join("k8s/base/probe-daemonset.yaml"));
    let cm = ds.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("probe.toml");
    std::fs::write(&f, cm["data"]["probe.toml"].as_str().unwrap()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_netqoe"))
        .args(["probe", f.to_str().unwrap(), "--check"])
        .env("NODE_NAME", "node-a")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_netqoe"))
        .args(["probe", f.to_str().unwrap(), "--check"])
        .env_remove("NODE_NAME")
        .output()
        .unwrap();
    assert!(!out.status.success(), "without NODE_NAME the check fails");
    assert!(String::from_utf8_lossy(&out.stderr).contains("NODE_NAME"));
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

/// Every document of the base kustomization.
fn base_docs() -> Vec<Value> {
    let base = root().join("k8s/base");
    let k = &docs(&base.join("kustomization.yaml"))[0];
    let mut out = Vec::new();
    for r in k["resources"].as_sequence().unwrap() {
        let f = base.join(r.as_str().unwrap());
        assert!(f.exists(), "kustomization lists {}", f.display());
        out.extend(docs(&f));
    }
    let mut listed: Vec<PathBuf> = Vec::new();
    yaml_files(&base, &mut listed);
    for f in listed {
        let name = f.file_name().unwrap().to_str().unwrap();
        assert!(
            name == "kustomization.yaml" || k["resources"].as_sequence().unwrap().iter().any(|r| r == name),
            "{name} is in k8s/base but not in its kustomization"
        );
    }
    out
}

/// Env-file lines (`KEY=VALUE`, comments skipped).
fn env_file(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && l.contains('='))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn kubernetes_workloads_are_probed_hardened_and_drained() {
    let docs = base_docs();
    let mut roles = Vec::new();
    for d in &docs {
        assert!(d["apiVersion"].is_string() && d["kind"].is_string() && d["metadata"]["name"].is_string(), "{d:?}");
        if d["kind"] != "Namespace" {
            assert_eq!(d["metadata"]["namespace"], "netqoe", "{:?}", d["metadata"]["name"]);
        }
        if !(d["kind"] == "Deployment" || d["kind"] == "DaemonSet") {
            continue;
        }
        let name = d["metadata"]["name"].as_str().unwrap();
        let spec = &d["spec"]["template"]["spec"];
        assert_eq!(spec["automountServiceAccountToken"], false, "{name}");
        let c = &spec["containers"][0];
        let sc = &c["securityContext"];
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(sc["capabilities"]["drop"][0], "ALL", "{name}");
        assert!(spec["securityContext"]["runAsNonRoot"] == true || sc["runAsNonRoot"] == true, "{name}: non-root");
        let role = c["args"][0].as_str().unwrap();
        assert!(ROLES.contains(&role), "{name}: {role}");
        roles.push(role.to_string());
        if d["kind"] == "Deployment" {
            assert!(spec["terminationGracePeriodSeconds"].as_u64().unwrap() >= 40, "{name}: room for the drain");
            assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz", "{name}");
            assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz", "{name}");
            // the probes' named port is declared
            let port = c["readinessProbe"]["httpGet"]["port"].as_str().unwrap();
            assert!(c["ports"].as_sequence().unwrap().iter().any(|p| p["name"] == port), "{name}: port {port}");
            assert_eq!(c["envFrom"][0]["secretRef"]["name"], "netqoe-secrets", "{name}: secrets from the Secret");
        }
    }
    roles.sort();
    assert_eq!(roles, ["aggregate", "diagnose", "ingest", "probe"]);
    // the ConfigMap's netqoe.toml with the Secret's documented keys is a valid configuration
    let cm = docs.iter().find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "netqoe-config").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("netqoe.toml");
    std::fs::write(&f, cm["data"]["netqoe.toml"].as_str().unwrap()).unwrap();
    let env = env_file(&root().join("k8s/overlays/secrets.env.example"));
    assert!(env.iter().any(|(k, _)| k == "NETQOE__PROBES"));
    let netqoe_env: Vec<(String, String)> = env.into_iter().filter(|(k, _)| k.starts_with("NETQOE__")).collect();
    if let Err(e) = netqoe::config::Config::load_from(Some(&f), netqoe_env) {
        panic!("ConfigMap + secrets.env.example: {e}");
    }
}

/// The federation's global tier overlay (docs/federation.md): a hardened, probed `netqoe global`
/// whose configuration, with the documented secrets, is valid; its config map and secret exist.
#[test]
fn the_global_overlay_runs_a_hardened_global_role_with_a_valid_configuration() {
    let dir = root().join("k8s/overlays/global");
    let k = &docs(&dir.join("kustomization.yaml"))[0];
    let mut all = Vec::new();
    for r in k["resources"].as_sequence().unwrap() {
        all.extend(docs(&dir.join(r.as_str().unwrap())));
    }
    let d = all.iter().find(|d| d["kind"] == "Deployment").expect("a Deployment");
    let spec = &d["spec"]["template"]["spec"];
    let c = &spec["containers"][0];
    assert_eq!(c["args"][0], "global");
    assert_eq!(spec["automountServiceAccountToken"], false);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert!(spec["terminationGracePeriodSeconds"].as_u64().unwrap() >= 40);
    let secret = c["envFrom"][0]["secretRef"]["name"].as_str().unwrap();
    assert!(k["secretGenerator"].as_sequence().unwrap().iter().any(|g| g["name"] == secret));
    let cm_name = spec["volumes"][0]["configMap"]["name"].as_str().unwrap();
    let cm = all.iter().find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == cm_name).expect("its ConfigMap");
    let plugins = all.iter().find(|d| d["kind"] == "RabbitmqCluster").unwrap()["spec"]["rabbitmq"]["additionalPlugins"]
        .as_sequence()
        .unwrap()
        .clone();
    assert!(plugins.iter().any(|p| p == "rabbitmq_shovel"), "the regions' shovels need the plugin: {plugins:?}");
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("netqoe.toml");
    std::fs::write(&f, cm["data"]["netqoe.toml"].as_str().unwrap()).unwrap();
    let env = env_file(&root().join("k8s/overlays/secrets.env.example"));
    let env: Vec<(String, String)> = env.into_iter().filter(|(k, _)| k.starts_with("NETQOE__")).collect();
    let cfg = netqoe::config::Config::load_from(Some(&f), env).unwrap_or_else(|e| panic!("global overlay config: {e}"));
    assert!(cfg.validate_for(netqoe::app::Roles::GLOBAL).is_empty());
}

#[test]
fn custom_resources_are_well_formed_and_refer_to_what_exists() {
    let docs = base_docs();
    let find = |kind: &str, name: &str| docs.iter().find(|d| d["kind"] == kind && d["metadata"]["name"] == name);
    // KEDA: scales the aggregate Deployment on every shard queue, authenticated via the Secret
    let so = docs.iter().find(|d| d["kind"] == "ScaledObject").expect("ScaledObject");
    assert_eq!(so["apiVersion"], "keda.sh/v1alpha1");
    let target = so["spec"]["scaleTargetRef"]["name"].as_str().unwrap();
    assert!(find("Deployment", target).is_some(), "ScaledObject targets {target}");
    let triggers = so["spec"]["triggers"].as_sequence().unwrap();
    let queues: Vec<&str> = triggers.iter().map(|t| t["metadata"]["queueName"].as_str().unwrap()).collect();
    let shards = 8; // k8s/base/configmap.yaml: rabbitmq.shards
    let expected: Vec<String> = (0..shards).map(|i| format!("netqoe.events.shard.{i:03}")).collect();
    assert_eq!(queues, expected, "one trigger per shard queue (the names netqoe declares)");
    assert!(so["spec"]["maxReplicaCount"].as_u64().unwrap() <= shards, "no more aggregators than shards");
    for t in triggers {
        assert_eq!(t["type"], "rabbitmq");
        let auth = t["authenticationRef"]["name"].as_str().unwrap();
        assert!(find("TriggerAuthentication", auth).is_some(), "{auth}");
    }
    let cm = find("ConfigMap", "netqoe-config").unwrap();
    assert!(cm["data"]["netqoe.toml"].as_str().unwrap().contains(&format!("shards = {shards}")));
    // the Secret keys the manifests read are documented in secrets.env.example
    let env: Vec<String> =
        env_file(&root().join("k8s/overlays/secrets.env.example")).into_iter().map(|(k, _)| k).collect();
    for ta in docs.iter().filter(|d| d["kind"] == "TriggerAuthentication") {
        for r in ta["spec"]["secretTargetRef"].as_sequence().unwrap() {
            let key = r["key"].as_str().unwrap();
            assert!(env.iter().any(|k| k == key), "secret key {key} documented");
        }
    }
    // the operators' clusters: quorum needs 3 brokers; RF 3 needs 3 Scylla members
    let rmq = docs.iter().find(|d| d["kind"] == "RabbitmqCluster").expect("RabbitmqCluster");
    assert_eq!(rmq["apiVersion"], "rabbitmq.com/v1beta1");
    assert_eq!(rmq["spec"]["replicas"], 3);
    let cfg = cm["data"]["netqoe.toml"].as_str().unwrap();
    assert!(
        cfg.contains(&format!("{}.netqoe.svc:5672", rmq["metadata"]["name"].as_str().unwrap())),
        "config points at the broker Service"
    );
    let sc = docs.iter().find(|d| d["kind"] == "ScyllaCluster").expect("ScyllaCluster");
    assert_eq!(sc["apiVersion"], "scylla.scylladb.com/v1");
    let dc = &sc["spec"]["datacenter"];
    assert_eq!(dc["racks"][0]["members"], 3);
    assert!(cfg.contains(&format!("local_dc = \"{}\"", dc["name"].as_str().unwrap())), "local DC matches");
    assert!(cfg.contains(&format!("{}-client.netqoe.svc:9042", sc["metadata"]["name"].as_str().unwrap())));
    // ServiceMonitor: its selector matches Services whose `admin` port it scrapes
    let sm = docs.iter().find(|d| d["kind"] == "ServiceMonitor").expect("ServiceMonitor");
    let sel = sm["spec"]["selector"]["matchLabels"].as_mapping().unwrap();
    let port = sm["spec"]["endpoints"][0]["port"].as_str().unwrap();
    let services: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == "Service")
        .filter(|d| sel.iter().all(|(k, v)| d["metadata"]["labels"][k.as_str().unwrap()] == *v))
        .collect();
    assert!(services.len() >= 3, "ingest, aggregate and diagnose Services selected");
    for s in services {
        assert!(
            s["spec"]["ports"].as_sequence().unwrap().iter().any(|p| p["name"] == port),
            "{:?}",
            s["metadata"]["name"]
        );
    }
    // the Ingress serves TLS and routes to a Service port that exists
    let ing = docs.iter().find(|d| d["kind"] == "Ingress").expect("Ingress");
    assert!(ing["spec"]["tls"][0]["secretName"].is_string(), "TLS");
    let backend = &ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"];
    let svc = find("Service", backend["name"].as_str().unwrap()).expect("backend Service");
    assert!(svc["spec"]["ports"].as_sequence().unwrap().iter().any(|p| p["name"] == backend["port"]["name"]));
    // NetworkPolicies: default deny plus the allowed ingress paths
    let np: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "NetworkPolicy").collect();
    assert!(np.iter().any(|p| p["spec"]["podSelector"].as_mapping().is_some_and(|m| m.is_empty())), "default deny");
    assert!(np.len() >= 4);
}

#[test]
fn overlays_refer_to_files_and_resources_that_exist() {
    let base = base_docs();
    for env in ["dev", "prod"] {
        let dir = root().join("k8s/overlays").join(env);
        let k = &docs(&dir.join("kustomization.yaml"))[0];
        assert_eq!(k["resources"][0], "../../base", "{env}");
        for p in k["patches"].as_sequence().unwrap() {
            if let Some(path) = p["path"].as_str() {
                for d in docs(&dir.join(path)) {
                    let (kind, name) = (&d["kind"], &d["metadata"]["name"]);
                    assert!(
                        base.iter().any(|b| b["kind"] == *kind && b["metadata"]["name"] == *name),
                        "{env}: {path} patches {kind:?} {name:?}"
                    );
                }
            } else {
                let t = &p["target"];
                assert!(
                    base.iter().any(|b| b["kind"] == t["kind"] && b["metadata"]["name"] == t["name"]),
                    "{env}: patch target {:?}",
                    t
                );
            }
        }
        // generated secrets come from files an operator creates from the shipped example
        for g in k["secretGenerator"].as_sequence().unwrap() {
            assert!(["netqoe-secrets", "netqoe-probe-tokens"].contains(&g["name"].as_str().unwrap()));
        }
        let gitignore = std::fs::read_to_string(root().join(".gitignore")).unwrap();
        assert!(gitignore.contains("k8s/overlays/*/secrets.env"), "secrets never committed");
        // the dev overlay's netqoe.toml is valid too
        if env == "dev" {
            let patch =
                k["patches"].as_sequence().unwrap().iter().find(|p| p["target"]["kind"] == "ConfigMap").unwrap();
            let ops: Vec<Value> = serde_yaml::from_str(patch["patch"].as_str().unwrap()).unwrap();
            let dir = tempfile::tempdir().unwrap();
            let f = dir.path().join("netqoe.toml");
            std::fs::write(&f, ops[0]["value"].as_str().unwrap()).unwrap();
            netqoe::config::Config::load_from(Some(&f), Vec::new()).unwrap_or_else(|e| panic!("dev netqoe.toml: {e}"));
        }
    }
}

// ---- the real validators (scripts/ensure-validators.sh; run by scripts/test.sh) ----

fn validators() -> PathBuf {
    PathBuf::from(
        std::env::var("NETQOE_VALIDATORS")
            .expect("NETQOE_VALIDATORS: the directory scripts/ensure-validators.sh prints"),
    )
}

fn run(tool: &str, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(validators().join(tool))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Writes `text` with `from` replaced by `to` (which must occur) to a temporary file.
fn broken_copy(dir: &Path, file: &Path, from: &str, to: &str) -> PathBuf {
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.contains(from), "{}: {from}", file.display());
    let p = dir.join(file.file_name().unwrap());
    std::fs::write(&p, text.replacen(from, to, 1)).unwrap();
    p
}

#[test]
#[ignore = "needs the validators: NETQOE_VALIDATORS from scripts/ensure-validators.sh (scripts/test.sh sets it)"]
fn validators_kubernetes_manifests_pass_the_kubernetes_schemas() {
    let mut files = Vec::new();
    yaml_files(&root().join("k8s/base"), &mut files);
    files.push(root().join("k8s/overlays/global/global.yaml"));
    let args: Vec<&str> = files.iter().map(|f| f.to_str().unwrap()).collect();
    let (ok, text) = run("kubernetes-validate", &[&["--strict"][..], &args].concat());
    eprintln!("{text}");
    assert!(ok, "kubernetes-validate --strict failed:\n{text}");
    let passed = text.lines().filter(|l| l.contains(" passed for resource ")).count();
    assert!(passed >= 20, "{passed} resources validated");
    // the check can fail: a Deployment with a mistyped field and a non-integer replica count
    let dir = tempfile::tempdir().unwrap();
    let bad = broken_copy(dir.path(), &root().join("k8s/base/workloads.yaml"), "replicas: 2", "replicas: two");
    let (ok, text) = run("kubernetes-validate", &["--strict", bad.to_str().unwrap()]);
    assert!(!ok, "a broken manifest must fail:\n{text}");
    let bad = broken_copy(
        dir.path(),
        &root().join("k8s/base/workloads.yaml"),
        "terminationGracePeriodSeconds",
        "terminationGracePeriod",
    );
    let (ok, text) = run("kubernetes-validate", &["--strict", bad.to_str().unwrap()]);
    assert!(!ok, "an unknown field must fail in strict mode:\n{text}");
}

#[test]
#[ignore = "needs the validators: NETQOE_VALIDATORS from scripts/ensure-validators.sh (scripts/test.sh sets it)"]
fn validators_compose_files_pass_the_compose_specification() {
    let files = compose_files();
    let args: Vec<&str> = files.iter().map(|f| f.to_str().unwrap()).collect();
    let (ok, text) = run("check-jsonschema", &[&["--builtin-schema", "vendor.compose-spec"][..], &args].concat());
    eprintln!("{text}");
    assert!(ok, "compose spec validation failed:\n{text}");
    let dir = tempfile::tempdir().unwrap();
    let bad = broken_copy(
        dir.path(),
        &root().join("deploy/tiers/ingest.yaml"),
        "restart: unless-stopped",
        "restart: [unless-stopped]",
    );
    let (ok, text) = run("check-jsonschema", &["--builtin-schema", "vendor.compose-spec", bad.to_str().unwrap()]);
    assert!(!ok, "a broken compose file must fail:\n{text}");
}

#[test]
#[ignore = "needs the validators: NETQOE_VALIDATORS from scripts/ensure-validators.sh (scripts/test.sh sets it)"]
fn validators_haproxy_config_passes_haproxy_check() {
    let cfg = root().join("deploy/haproxy/haproxy.cfg");
    let (ok, text) = run("haproxy", &["-c", "-f", cfg.to_str().unwrap()]);
    eprintln!("{text}");
    assert!(ok && text.contains("Configuration file is valid"), "haproxy -c:\n{text}");
    let dir = tempfile::tempdir().unwrap();
    let bad = broken_copy(dir.path(), &cfg, "balance leastconn", "balance fastest");
    let (ok, text) = run("haproxy", &["-c", "-f", bad.to_str().unwrap()]);
    assert!(!ok, "a broken haproxy.cfg must fail:\n{text}");
}

/// With no ingest node ready (all draining, or none reaching the broker) HAProxy itself answers:
/// 503 with Retry-After and a problem body, as netqoe's ingest would, so probes spool and back
/// off. The shipped config, on loopback ports, with both servers on closed ports.
#[test]
#[ignore = "needs the validators: NETQOE_VALIDATORS from scripts/ensure-validators.sh (scripts/test.sh sets it)"]
fn validators_haproxy_answers_503_with_retry_after_when_no_ingest_is_ready() {
    let text = std::fs::read_to_string(root().join("deploy/haproxy/haproxy.cfg")).unwrap();
    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (front, stats) = (free(), free());
    // no Docker resolver here: the servers are addresses
    let mut cfg = String::new();
    let mut in_resolvers = false;
    for line in text.lines() {
        in_resolvers = line.starts_with("resolvers docker") || (in_resolvers && !line.trim().is_empty());
        if !in_resolvers {
            cfg.push_str(&line.replace(" resolvers docker", ""));
            cfg.push('\n');
        }
    }
    let cfg = cfg
        .replace("bind :8080", &format!("bind 127.0.0.1:{front}"))
        .replace("bind :8404", &format!("bind 127.0.0.1:{stats}"))
        .replace("ingest-1:8080 check port 9090", "127.0.0.1:1 check port 1")
        .replace("ingest-2:8080 check port 9090", "127.0.0.1:2 check port 2");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap();
    let mut child = std::process::Command::new(validators().join("haproxy"))
        .args(["-db", "-n", "200", "-f", path.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // until the health checks have marked both servers down (fall 3 × inter 2 s), and at most 30 s
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let answer = loop {
        let got = std::net::TcpStream::connect(("127.0.0.1", front)).ok().and_then(|mut s| {
            use std::io::{Read, Write};
            s.set_read_timeout(Some(std::time::Duration::from_secs(5))).ok()?;
            s.write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
                .ok()?;
            let mut r = String::new();
            s.read_to_string(&mut r).ok()?;
            Some(r)
        });
        match got {
            Some(r) if r.contains("application/problem+json") => break r,
            _ if std::time::Instant::now() > deadline => {
                let _ = child.kill();
                panic!("no problem+json 503 from HAProxy within 30 s: {got:?}")
            }
            _ => std::thread::sleep(std::time::Duration::from_millis(500)),
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let lower = answer.to_ascii_lowercase();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(lower.contains("\r\nretry-after: 5\r\n"), "{answer}");
    let body: serde_json::Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["status"], 503, "{answer}");
}

/// The lab's firewalls are rendered from docs/deploy.md's iptables block: every section a lab host
/// needs exists, and the rendered rules are what the doc says (one source per rule, default drop).
#[test]
fn the_lab_renders_every_host_firewall_from_the_deploy_doc() {
    let script = root().join("deploy/lab/firewall.py");
    let check = std::process::Command::new("python3").arg(&script).arg("--check").output().expect("python3 runs");
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let out = std::process::Command::new("python3").arg(&script).arg("rabbit-2").output().unwrap();
    let rules = String::from_utf8(out.stdout).unwrap();
    assert!(rules.contains(":INPUT DROP [0:0]"), "{rules}");
    assert!(rules.contains("-A INPUT -p tcp --dport 5672 -s 10.77.20.0/24 -j ACCEPT"), "{rules}");
    assert!(rules.contains("-A INPUT -p tcp -m multiport --dports 4369,25672 -s 10.77.50.0/24 -j ACCEPT"), "{rules}");
    assert!(!rules.contains("--dport 9042"), "a broker host gets no storage rule: {rules}");
    for line in rules.lines().filter(|l| l.starts_with("-A INPUT")) {
        assert!(line.matches(" -s ").count() <= 1, "one source per rule: {line}");
    }
}
