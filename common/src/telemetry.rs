//! Logs and OpenTelemetry traces.
//!
//! Every binary logs to stdout (`RUST_LOG`, default `info`). Traces are
//! off unless an OTLP/gRPC endpoint is configured; then each transaction
//! is one trace: the coordinator's `transaction` span, a span per protocol
//! phase under it, and each participant's span for the RPC it served,
//! joined through the W3C `traceparent` header in the gRPC metadata. A
//! client that sends `traceparent` with Begin or Submit gets the
//! transaction inside its own trace.
//!
//! Spans for traces use the target [`TARGET`] and go only to the exporter,
//! never to the log; while traces are off nobody listens to that target,
//! so the spans cost a branch each.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, span_processor_with_async_runtime::BatchSpanProcessor};
use tonic::metadata::{KeyRef, MetadataKey, MetadataMap, MetadataValue};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The tracing target of the spans that make up traces.
pub const TARGET: &str = "tandem::trace";

/// Whether traces are exported: the propagation helpers do nothing
/// otherwise.
static ON: AtomicBool = AtomicBool::new(false);

/// The trace settings every binary takes.
#[derive(Debug, Clone, clap::Args)]
pub struct TraceArgs {
    /// OTLP/gRPC endpoint of an OpenTelemetry collector, e.g.
    /// http://127.0.0.1:4317: export one trace per transaction. Spans
    /// carry ids and participant names, never statements or values
    /// [default: none, no traces].
    #[arg(long, env = "TANDEM_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Share of transactions traced, from 0 to 1. Participants follow the
    /// coordinator's choice for each transaction [default: 1].
    #[arg(long, env = "TANDEM_TRACE_SAMPLE_RATIO")]
    pub trace_sample_ratio: Option<f64>,
}

/// What [`init`] set up; [`Telemetry::shutdown`] sends the spans still
/// queued.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

/// Installs the log (stdout, `RUST_LOG`) and, with an endpoint, the trace
/// exporter for `service` (`tandem-coordinator`, `tandem-participant`).
/// Call it inside the tokio runtime: the exporter's batches run on it.
pub fn init(service: &'static str, args: &TraceArgs) -> Result<Telemetry, String> {
    // The trace spans never reach the log, whatever RUST_LOG says.
    let log_filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info"))
        .add_directive(format!("{TARGET}=off").parse().map_err(|e| format!("{e}"))?);
    let log = tracing_subscriber::fmt::layer().with_filter(log_filter);
    let Some(endpoint) = args.otlp_endpoint.as_deref().filter(|e| !e.is_empty()) else {
        tracing_subscriber::registry()
            .with(log)
            .try_init()
            .map_err(|e| e.to_string())?;
        return Ok(Telemetry { provider: None });
    };
    let ratio = args.trace_sample_ratio.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&ratio) {
        return Err(format!("--trace-sample-ratio must be between 0 and 1, not {ratio}"));
    }
    if !endpoint.starts_with("http://") {
        return Err(format!(
            "--otlp-endpoint {endpoint:?}: give an http:// URL of a collector on the host or its private network"
        ));
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| format!("OTLP exporter for {endpoint}: {e}"))?;
    let provider = SdkTracerProvider::builder()
        .with_span_processor(BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio).build())
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio))))
        .with_resource(Resource::builder().with_service_name(service).build())
        .build();
    let traces = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(service))
        .with_filter(Targets::new().with_target(TARGET, LevelFilter::INFO));
    tracing_subscriber::registry()
        .with(log)
        .with(traces)
        .try_init()
        .map_err(|e| e.to_string())?;
    ON.store(true, Ordering::Relaxed);
    tracing::info!(endpoint, service, ratio, "exporting traces (OTLP)");
    Ok(Telemetry {
        provider: Some(provider),
    })
}

impl Telemetry {
    /// Sends the spans still queued (bounded by the exporter's timeout).
    pub async fn shutdown(self) {
        if let Some(provider) = self.provider {
            // The provider's shutdown blocks until the batch task, which
            // runs on this runtime, has exported.
            let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        }
    }
}

/// Whether traces are exported.
pub fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Writes the current span's context into an outgoing request's metadata.
pub fn inject(metadata: &mut MetadataMap) {
    if !enabled() {
        return;
    }
    let context = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&context, &mut MetadataInjector(metadata));
}

/// The trace context of an incoming request, kept until the span it
/// parents exists (a transaction's span lives in its actor).
#[derive(Debug, Default, Clone)]
pub struct Parent(Option<opentelemetry::Context>);

impl Parent {
    pub fn of(metadata: &MetadataMap) -> Self {
        if !enabled() || metadata.get("traceparent").is_none() {
            return Self(None);
        }
        Self(Some(
            TraceContextPropagator::new().extract(&MetadataExtractor(metadata)),
        ))
    }

    /// Makes `span` a child of the trace context the request carried, if
    /// it carried one.
    pub fn adopt(&self, span: &tracing::Span) {
        if let Some(parent) = &self.0 {
            let _ = span.set_parent(parent.clone());
        }
    }
}

struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}

struct MetadataExtractor<'a>(&'a MetadataMap);

impl Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                KeyRef::Ascii(k) => Some(k.as_str()),
                KeyRef::Binary(_) => None,
            })
            .collect()
    }
}
