//! Every shipped config file passes `netqoe config check`; a broken one fails with every error named.

use std::process::Command;

fn check(path: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_netqoe"))
        .args(["--config", path.to_str().unwrap(), "config", "check"])
        .output()
        .unwrap()
}

#[test]
fn shipped_config_files_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "toml") {
            let out = check(&p);
            assert!(out.status.success(), "{}: {}", p.display(), String::from_utf8_lossy(&out.stderr));
            n += 1;
        }
    }
    assert!(n >= 1, "no config files found under deploy/");
}

#[test]
fn a_broken_config_lists_every_error_and_exits_2() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("bad.toml");
    std::fs::write(&p, "[http]\nbind = \"nope\"\ncolour = 1\n[pipeline]\nshards = 0\n").unwrap();
    let out = check(&p);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in ["3 configuration error(s)", "http.colour: unknown key", "http.bind", "pipeline.shards"] {
        assert!(err.contains(needle), "{needle} missing from {err}");
    }
}

/// Type errors are reported all at once like the rest (not the first alone, not in another
/// format), and settings that would pass check and then misbehave are refused by it.
#[test]
fn type_errors_and_settings_that_misbehave_later_are_all_reported() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("bad.toml");
    std::fs::write(
        &p,
        "[http]\nbind = \"127.0.0.1:8080\"\nadmin_bind = \"127.0.0.1:8080\"\nmax_body_bytes = \"big\"\nworkers = \"many\"\n\
         [ingest]\nburst = \"x\"\n[log]\nlevel = \"verbose\"\n",
    )
    .unwrap();
    let out = check(&p);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "5 configuration error(s)",
        "  - http.max_body_bytes: invalid type: string \"big\"",
        "  - http.workers: invalid type",
        "  - ingest.burst: invalid type",
        "  - http.admin_bind: \"127.0.0.1:8080\" is http.bind too",
        "  - log.level: \"verbose\" must be one of",
    ] {
        assert!(err.contains(needle), "{needle} missing from {err}");
    }
}

fn run_briefly(config: &std::path::Path, env: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_netqoe"));
    c.args(["--config", config.to_str().unwrap(), "run"]);
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    // a start that fails ends by itself; bound the wait all the same
    for _ in 0..200 {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("netqoe run did not stop: {:?}", child.wait_with_output().unwrap());
}

/// A start that cannot happen (the admin port is taken, the data directory cannot be made) is a
/// clean error naming the setting, exit code 2 — never a panic.
#[test]
fn a_busy_admin_port_or_an_impossible_data_dir_is_a_clean_error() {
    let d = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().to_string();
    let p = d.path().join("c.toml");
    std::fs::write(
        &p,
        format!(
            "[http]\nbind = \"127.0.0.1:0\"\nadmin_bind = \"{busy}\"\n[storage]\ndata_dir = {:?}\n",
            d.path().join("data").display().to_string()
        ),
    )
    .unwrap();
    let out = run_briefly(&p, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("http.admin_bind {busy}")), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let file = d.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let under_a_file = file.join("data");
    let out = run_briefly(
        &p,
        &[("NETQOE__HTTP__ADMIN_BIND", ""), ("NETQOE__STORAGE__DATA_DIR", under_a_file.to_str().unwrap())],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("storage.data_dir {}", under_a_file.display())), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// `probe --check` names every problem of a probe file in one run, as its help says.
#[test]
fn probe_check_lists_every_error() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("probe.toml");
    std::fs::write(
        &p,
        "ingest_url = \"ftp://x\"\nstate_dir = \"/tmp/x\"\nprobe_id = \"p\"\nbatch_max_events = \"lots\"\ncolour = 1\n\
         [[targets]]\nid = \"a\"\nkind = \"udpx\"\naddress = \"x\"\ninterval_s = 0\n",
    )
    .unwrap();
    let out =
        Command::new(env!("CARGO_BIN_EXE_netqoe")).args(["probe", p.to_str().unwrap(), "--check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "6 error(s)",
        "batch_max_events: invalid type",
        "colour: unknown field",
        "ingest_url: \"ftp://x\"",
        "token: set token or token_file",
        "targets[0].kind: \"udpx\"",
        "targets[0].interval_s",
    ] {
        assert!(err.contains(needle), "{needle} missing from {err}");
    }
}
