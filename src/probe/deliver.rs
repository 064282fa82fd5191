//! Delivery: one POST of a batch to ingest and what its answer means (accepted, retry later,
//! some events refused: re-sent without them).

use super::*;

/// Outcome of one POST.
pub enum Posted {
    Accepted,
    /// Retry later (network error, 429, 5xx), after at least this long.
    Retry(Duration),
    /// The batch is invalid (4xx other than 429): it will never be accepted as sent. `refused`
    /// lists the events ingest named (`index`, `errors[].field`), which the probe drops while it
    /// re-sends the rest; empty when ingest named none (the whole batch is dropped).
    Rejected {
        why: String,
        refused: Vec<usize>,
    },
}

pub async fn post(client: &awc::Client, cfg: &ProbeConfig, body: Vec<u8>) -> Posted {
    let url = format!("{}/v1/events", cfg.ingest_url.trim_end_matches('/'));
    let res = client
        .post(url)
        .insert_header(("Authorization", format!("Bearer {}", cfg.token.expose())))
        .insert_header(("Content-Type", "application/json"))
        .send_body(body)
        .await;
    match res {
        Ok(mut r) if r.status().is_success() => {
            let _ = r.body().await;
            Posted::Accepted
        }
        Ok(mut r) => {
            let status = r.status().as_u16();
            let after = r
                .headers()
                .get("Retry-After")
                .and_then(|h| h.to_str().ok())
                .and_then(|s| s.parse::<u64>().ok())
                .map(Duration::from_secs);
            let text = String::from_utf8_lossy(&r.body().await.unwrap_or_default()).to_string();
            if status == 429 || status >= 500 {
                Posted::Retry(after.unwrap_or(Duration::from_secs(1)))
            } else {
                let refused = if status == 422 { refused_events(&text) } else { Vec::new() };
                Posted::Rejected { why: format!("HTTP {status}: {text}"), refused }
            }
        }
        Err(_) => Posted::Retry(Duration::from_millis(500)),
    }
}

/// The events a 422 problem body names (`index`, and each `errors[].field` as `events[N]…`),
/// sorted and without repeats.
pub fn refused_events(problem: &str) -> Vec<usize> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(problem) else { return Vec::new() };
    let mut out: Vec<usize> = v.get("index").and_then(|i| i.as_u64()).map(|i| i as usize).into_iter().collect();
    for e in v.get("errors").and_then(|e| e.as_array()).into_iter().flatten() {
        if let Some(i) = e.get("field").and_then(|f| f.as_str()).and_then(event_index) {
            out.push(i);
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// `events[12].rtt_ms` → Some(12).
pub(crate) fn event_index(field: &str) -> Option<usize> {
    let rest = field.strip_prefix("events[")?;
    rest[..rest.find(']')?].parse().ok()
}

/// The batch `body` without the events at `refused`, and how many went; None when nothing would
/// be left or be removed, or the body is not a batch (then the whole batch goes). The body is
/// handled as plain JSON: a refused event may be one the typed decoder cannot read.
pub(crate) fn without_refused(body: &[u8], refused: &[usize]) -> Option<(Vec<u8>, usize)> {
    let mut batch: serde_json::Value = serde_json::from_slice(body).ok()?;
    let events = batch.get_mut("events")?.as_array_mut()?;
    let before = events.len();
    let mut i = 0;
    events.retain(|_| {
        i += 1;
        refused.binary_search(&(i - 1)).is_err()
    });
    let dropped = before - events.len();
    if events.is_empty() || dropped == 0 {
        return None;
    }
    Some((serde_json::to_vec(&batch).ok()?, dropped))
}

/// Events in a batch body (0 when it is not one).
pub(crate) fn events_in(body: &[u8]) -> usize {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|b| b.get("events").and_then(|e| e.as_array()).map(Vec::len))
        .unwrap_or(0)
}
