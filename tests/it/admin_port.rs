//! `http.admin_bind` moves `/metrics`, `/healthz` and `/readyz` to their own listener: they answer
//! there and no longer on the ingest/query port, which keeps serving the API.

use crate::common::*;

#[actix_rt::test]
async fn metrics_and_health_move_to_the_admin_port() {
    let admin_port = free_port();
    let bind = format!("127.0.0.1:{admin_port}");
    let t = start(1, &[("NETQOE__HTTP__ADMIN_BIND", bind.as_str())]).await;
    assert_eq!(t.app.admin_addr.map(|a| a.port()), Some(admin_port));
    let admin = format!("http://{bind}");
    for path in ["/metrics", "/healthz", "/readyz"] {
        let r = t.client.get(format!("{admin}{path}")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path} on the admin port");
        let r = t.client.get(t.app.url(path)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 404, "{path} is not on the API port");
    }
    let r = get(&t.client, &t.app.url("/v1/probes"), Some(&t.query_token)).await;
    assert_eq!(r.status, 200, "the API stays on its port");
    assert!(get_text(&t.client, &format!("{admin}/metrics")).await.contains("netqoe_events_accepted_total"));
    t.app.shutdown().await.unwrap();
}
