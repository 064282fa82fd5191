//! `http.admin_bind` moves `/metrics`, `/healthz` and `/readyz` to their own listener: they answer
//! there and no longer on the ingest/query port, which keeps serving the API. The test binds
//! the admin listener itself and passes it in (`app::Listeners`); `tests/it/drain.rs` covers
//! `http.admin_bind = "127.0.0.1:0"` bound by the app from the setting.

use crate::common::*;

#[actix_rt::test]
async fn metrics_and_health_move_to_the_admin_port() {
    // both listeners bound here, on port 0, and handed to the app (no port picked and dropped)
    let api = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let admin_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let bind = admin_listener.local_addr().unwrap().to_string();
    let listeners = netqoe::app::Listeners { api, admin: Some(admin_listener) };
    let t = prepare(1, &[]).start_with_clock(listeners, netqoe_actors::Clock::system()).await;
    assert_eq!(t.app.admin_addr.map(|a| a.to_string()), Some(bind.clone()));
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
