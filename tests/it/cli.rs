//! The command line as a user meets it: each command shows only the options it uses, the probe
//! takes its file either way, help says what is required, output for people is plain words (no
//! Rust Debug text), logs carry no colour codes when they do not go to a terminal, and the STAMP
//! reflector does not open itself to every interface unasked.

use std::process::Command;

fn netqoe(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_netqoe")).args(args).env_remove("NETQOE_CONFIG").output().unwrap()
}

fn text(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn each_command_shows_only_the_options_it_uses() {
    for cmd in [&["token", "mint", "--help"][..], &["reflector", "--help"], &["probe", "--help"]] {
        let help = text(&netqoe(cmd));
        assert!(!help.contains("--log-format"), "{cmd:?} ignores --log-format: {help}");
    }
    for cmd in [&["token", "mint", "--help"][..], &["reflector", "--help"]] {
        let help = text(&netqoe(cmd));
        assert!(!help.contains("--config"), "{cmd:?} reads no configuration: {help}");
    }
    for cmd in [&["run", "--help"][..], &["ingest", "--help"], &["aggregate", "--help"], &["diagnose", "--help"]] {
        let help = text(&netqoe(cmd));
        assert!(help.contains("--config") && help.contains("--log-format"), "{cmd:?}: {help}");
    }
    for cmd in [&["migrate", "--help"][..], &["eval", "--help"], &["config", "check", "--help"]] {
        let help = text(&netqoe(cmd));
        assert!(help.contains("--config") && !help.contains("--log-format"), "{cmd:?}: {help}");
    }
    // help says one of the three is needed, not that --probe is
    let mint = text(&netqoe(&["token", "mint", "--help"]));
    assert!(mint.contains("<--probe <PROBE>|--query <QUERY>|--admin <ADMIN>>"), "{mint}");
    let out = netqoe(&["token", "mint", "--query", "grafana"]);
    assert!(out.status.success(), "{}", text(&out));
    // the reflector answers on loopback unless told otherwise
    let refl = text(&netqoe(&["reflector", "--help"]));
    assert!(refl.contains("[default: 127.0.0.1:862]"), "{refl}");
}

#[test]
fn the_probe_takes_its_file_as_argument_or_as_config() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("probe.toml");
    std::fs::write(
        &p,
        "ingest_url = \"http://127.0.0.1:9\"\ntoken = \"t\"\nstate_dir = \"/tmp/x\"\nprobe_id = \"p\"\n\
         [[targets]]\nid = \"a\"\nkind = \"tcp\"\naddress = \"127.0.0.1:9\"\n",
    )
    .unwrap();
    let path = p.to_str().unwrap();
    for args in [
        &["probe", path, "--check"][..],
        &["probe", "--config", path, "--check"],
        &["--config", path, "config", "check"],
    ] {
        let out = netqoe(args);
        if args[0] == "probe" {
            assert!(out.status.success(), "{args:?}: {}", text(&out));
            assert!(text(&out).contains("valid (1 targets)"), "{}", text(&out));
        } else {
            // a probe file is not a server configuration: refused, naming the keys
            assert_eq!(out.status.code(), Some(2));
            assert!(text(&out).contains("ingest_url: unknown key"), "{}", text(&out));
        }
    }
    let out = netqoe(&["probe", "--check"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn people_get_plain_words_and_pipes_get_no_colour_codes() {
    let scenario =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("load-tests/scenarios/asn-path-degradation.json");
    let out = netqoe(&["eval", scenario.to_str().unwrap()]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    for debug in ["Some(", "None", "{\"", "[\""] {
        assert!(!t.contains(debug), "Rust Debug text {debug:?} in the eval table: {t}");
    }
    assert!(!t.contains('\u{1b}'), "no escape codes when stdout/stderr are pipes: {t:?}");
    // a server's log lines, piped, are plain too
    let d = tempfile::tempdir().unwrap();
    let c = d.path().join("c.toml");
    std::fs::write(
        &c,
        format!(
            "[http]\nbind = \"127.0.0.1:0\"\n[storage]\ndata_dir = {:?}\n",
            d.path().join("data").display().to_string()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_netqoe"))
        .args(["--config", c.to_str().unwrap(), "run"])
        .env("NETQOE__LOG__LEVEL", "info")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let mut seen = Vec::new();
    for line in lines.by_ref().take(50) {
        let line = line.unwrap();
        let done = line.contains("netqoe listening");
        seen.push(line);
        if done {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen.iter().any(|l| l.contains("netqoe listening")), "{seen:?}");
    assert!(seen.iter().all(|l| !l.contains('\u{1b}')), "no escape codes in piped logs: {seen:?}");
}

/// A role that runs apart from the others (`ingest`, `aggregate`, `diagnose`) on the embedded bus
/// is refused before anything starts, naming the key (`Config::validate_for(roles)`); `run` on
/// the same configuration is fine (checked by every embedded test).
#[test]
fn a_role_apart_on_the_embedded_bus_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    for role in ["ingest", "aggregate", "diagnose"] {
        let out = Command::new(env!("CARGO_BIN_EXE_netqoe"))
            .arg(role)
            .env_remove("NETQOE_CONFIG")
            .env("NETQOE__STORAGE__DATA_DIR", dir.path())
            .env("NETQOE__HTTP__BIND", "127.0.0.1:0")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{role}: {}", text(&out));
        assert!(text(&out).contains("bus.kind: the ingest, aggregate and diagnose roles run apart only over a broker"));
    }
}
