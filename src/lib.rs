//! netqoe: network Quality-of-Experience telemetry. This crate is the binary's library: CLI
//! wiring, configuration, HTTP handlers and the adapters (SQLite) behind the actor crate's ports.

pub mod app;
pub mod auth;
pub mod config;
pub mod drain;
pub mod eval;
pub mod http;
pub mod probe;
pub mod rabbit;
pub mod scylla;
pub mod sqlite;
pub mod stamp;
pub mod tls;
pub mod webhook;

/// Initialises tracing: plain or JSON lines, filtered by `level` (or `RUST_LOG` when set). Built
/// with the `otel` feature and given `OTEL_EXPORTER_OTLP_ENDPOINT` (or
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), the spans are also exported over OTLP/HTTP.
///
/// Requests the HTTP server cannot parse are logged by actix at error level, one line each: an
/// unauthenticated client could flood the log. They are counted
/// (`netqoe_http_malformed_requests_total`) and shown only at `debug` or `trace`.
pub fn init_logging(format: &str, level: &str) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer};
    let quiet_parse_errors = !matches!(level, "debug" | "trace");
    let filter = || {
        let f = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
        if quiet_parse_errors && std::env::var_os("RUST_LOG").is_none() {
            f.add_directive(format!("{MALFORMED_TARGET}=off").parse().expect("a valid directive"))
        } else {
            f
        }
    };
    // colour only on a terminal (a log file or journald gets plain text)
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    let fmt = if format == "json" { fmt.json().boxed() } else { fmt.boxed() };
    let malformed = tracing_subscriber::filter::Targets::new().with_target(MALFORMED_TARGET, tracing::Level::ERROR);
    let registry =
        tracing_subscriber::registry().with(fmt.with_filter(filter())).with(MalformedRequests.with_filter(malformed));
    #[cfg(feature = "otel")]
    let registry = registry.with(otel::layer().with_filter(filter()));
    let _ = registry.try_init();
}

/// Where actix's HTTP/1 connection handling logs a request it could not parse.
const MALFORMED_TARGET: &str = "actix_http::h1";

/// Counts actix's error-level events about connections it dropped (unparseable requests).
struct MalformedRequests;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for MalformedRequests {
    fn on_event(&self, _: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        http::metrics::MALFORMED_REQUESTS.inc();
    }
}

/// Flushes exported spans (a no-op without the `otel` feature or an endpoint).
pub fn shutdown_tracing() {
    #[cfg(feature = "otel")]
    otel::shutdown();
}

#[cfg(feature = "otel")]
mod otel {
    //! OTLP/HTTP export of the tracing spans, configured by the standard OpenTelemetry variables.

    use std::sync::OnceLock;

    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::registry::LookupSpan;

    static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

    pub fn layer<S>() -> Option<impl tracing_subscriber::Layer<S>>
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    {
        let configured = ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()));
        if !configured {
            return None;
        }
        let exporter = match opentelemetry_otlp::SpanExporter::builder().with_http().build() {
            Ok(e) => e,
            Err(error) => {
                eprintln!("netqoe: OTLP export disabled: {error}");
                return None;
            }
        };
        let mut resource = opentelemetry_sdk::Resource::builder();
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name("netqoe");
        }
        let provider =
            SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource.build()).build();
        let tracer = provider.tracer("netqoe");
        let _ = PROVIDER.set(provider);
        Some(tracing_opentelemetry::layer().with_tracer(tracer))
    }

    pub fn shutdown() {
        if let Some(p) = PROVIDER.get() {
            let _ = p.shutdown();
        }
    }
}
