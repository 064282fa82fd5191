//! SIGHUP reloads probes without a restart: a probe added to the file can ingest, its labels
//! show in `/v1/probes`, a revoked token stops working, and an invalid file changes nothing.

use crate::common::*;

#[actix_rt::test]
async fn sighup_applies_new_probes_labels_and_revocations() {
    let dir = tempfile::tempdir().unwrap();
    let (path, p1_token, query) = write_config(dir.path(), "");
    let port = free_port();
    let _child = ChildGuard(spawn_netqoe(&path, &["run"], port, &[]));
    let base = format!("http://127.0.0.1:{port}");
    let client = awc::Client::builder().timeout(std::time::Duration::from_secs(10)).finish();
    wait_ready(&client, &base).await;
    let pid = _child.0.id();
    let hup = || {
        assert!(std::process::Command::new("kill").args(["-HUP", &pid.to_string()]).status().unwrap().success());
    };
    let ev = |id: &str| {
        let now = netqoe_actors::now_ms();
        batch(&[serde_json::json!({"event_id": id, "seq": 1, "ts": rfc3339(now), "target": "t.example",
            "kind": "icmp", "rtt_ms": 12.5})])
    };
    let (p2_token, p2_hash) = netqoe::auth::mint(netqoe::auth::PROBE_PREFIX);
    let r = post(&client, &format!("{base}/v1/events"), Some(&p2_token), "application/json", ev("a")).await;
    assert_eq!(r.status, 401, "p2 is not configured yet");
    // add p2 with labels, revoke p1
    let text = std::fs::read_to_string(&path).unwrap().replace("id = \"p1\"\n", "id = \"p1\"\nrevoked = true\n")
        + &format!(
        "\n[[probes]]\nid = \"p2\"\ntoken_sha256 = \"{p2_hash}\"\nlabels = {{ region = \"eu-west\", asn = \"3320\" }}\n"
    );
    std::fs::write(&path, text).unwrap();
    hup();
    eventually(10, "p2 accepted after SIGHUP", || async {
        let r = post(&client, &format!("{base}/v1/events"), Some(&p2_token), "application/json", ev("b")).await;
        (r.status == 202).then_some(())
    })
    .await;
    let r = post(&client, &format!("{base}/v1/events"), Some(&p1_token), "application/json", ev("c")).await;
    assert_eq!(r.status, 403, "p1 was revoked: {}", r.body);
    let r = get(&client, &format!("{base}/v1/probes"), Some(&query)).await;
    let p2 = r.body["probes"].as_array().unwrap().iter().find(|p| p["probe"] == "p2").cloned().unwrap();
    assert_eq!(p2["labels"]["asn"], "3320", "{}", r.body);
    let reloads = |result: &'static str| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let m = get_text(&client, &format!("{base}/metrics")).await;
            metric_value(&m, &format!("netqoe_config_reloads_total{{result=\"{result}\"}}")).unwrap_or(-1.0)
        }
    };
    assert_eq!(reloads("applied").await, 1.0);
    // an invalid file changes nothing (waited for by the process's own count of refused reloads)
    std::fs::write(&path, "[pipeline]\nshards = \"many\"\n").unwrap();
    hup();
    eventually(10, "the invalid reload is refused", || async { (reloads("rejected").await == 1.0).then_some(()) })
        .await;
    assert_eq!(reloads("applied").await, 1.0);
    let r = post(&client, &format!("{base}/v1/events"), Some(&p2_token), "application/json", ev("d")).await;
    assert_eq!(r.status, 202, "still configured after a bad reload: {}", r.body);
}
