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
