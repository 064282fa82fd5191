//! One batch is traceable end to end: the `ingest.batch` span (with the `bus.publish` span inside
//! it), the aggregator's `aggregate.apply` span and the `store.commit` span all carry the batch id
//! that the 202 answered. A capturing subscriber records every closed span with its fields.

mod common;

use std::collections::BTreeMap;
use std::sync::Mutex;

use common::*;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

#[derive(Clone, Debug)]
struct Closed {
    name: String,
    parent: Option<String>,
    fields: BTreeMap<String, String>,
}

static CLOSED: Mutex<Vec<Closed>> = Mutex::new(Vec::new());

struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_string(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
}

struct Capture;

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut f = Fields(BTreeMap::new());
        attrs.record(&mut f);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(f);
        }
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(f) = span.extensions_mut().get_mut::<Fields>() {
                values.record(f);
            }
        }
    }
    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(&id) {
            let fields = span.extensions().get::<Fields>().map(|f| f.0.clone()).unwrap_or_default();
            let parent = span.parent().map(|p| p.name().to_string());
            CLOSED.lock().unwrap().push(Closed { name: span.name().to_string(), parent, fields });
        }
    }
}

fn closed(name: &str) -> Vec<Closed> {
    CLOSED.lock().unwrap().iter().filter(|c| c.name == name).cloned().collect()
}

#[actix_rt::test]
async fn one_batch_is_traced_from_ingest_to_the_store() {
    tracing_subscriber::registry().with(Capture).init();
    let t = start(1, &[]).await;
    let (probe, token) = (&t.probes[0].0, &t.probes[0].1);
    let base = base_ms();
    let events = events_for(probe, base, 1, 6, &mut Rng(7));
    let r = post(&t.client, &t.app.url("/v1/events"), Some(token), "application/json", batch(&events)).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.body["batch_id"].as_str().unwrap().to_string();

    let ingest = closed("ingest.batch");
    let span = ingest.iter().find(|c| c.fields.get("batch_id") == Some(&id)).expect("ingest span with the batch id");
    assert_eq!(span.fields.get("events").map(String::as_str), Some("6"));
    assert_eq!(span.fields.get("probe"), Some(probe));
    let publish = closed("bus.publish");
    assert!(
        publish.iter().any(|c| c.parent.as_deref() == Some("ingest.batch") && c.fields["backend"] == "sqlite"),
        "bus.publish inside ingest.batch: {publish:?}"
    );

    eventually(20, "the batch applied and committed", || async {
        let applied = closed("aggregate.apply").iter().any(|c| c.fields.get("batch_id") == Some(&id));
        let committed = closed("store.commit")
            .iter()
            .any(|c| c.fields.get("batch_ids").is_some_and(|ids| ids.split(',').any(|b| b == id)));
        (applied && committed).then_some(())
    })
    .await;
    t.app.shutdown().await.unwrap();
}
