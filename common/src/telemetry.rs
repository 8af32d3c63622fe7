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

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
/// The sample ratio's bits (an `f64`), and how many roots were asked
/// about ([`sample`]).
static RATIO: AtomicU64 = AtomicU64::new(0);
static ROOTS: AtomicU64 = AtomicU64::new(0);

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
        // The ratio is applied before any span exists ([`sample`]): a
        // transaction not traced costs no span at all. What reaches the
        // SDK is traced, unless a caller's context says otherwise.
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
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
    RATIO.store(ratio.to_bits(), Ordering::Relaxed);
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

/// Whether to trace a transaction that no caller's context parents: true
/// for the configured share of them, spread evenly (a golden-ratio
/// sequence), false while traces are off.
pub fn sample() -> bool {
    if !enabled() {
        return false;
    }
    let ratio = f64::from_bits(RATIO.load(Ordering::Relaxed));
    sampled(ROOTS.fetch_add(1, Ordering::Relaxed), ratio)
}

/// Whether the `n`th root is in the sampled share `ratio`: the
/// fractional parts of `n` times the golden ratio cover [0, 1) evenly.
fn sampled(n: u64, ratio: f64) -> bool {
    let point = (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64 / (1u64 << 53) as f64;
    point < ratio
}

/// Writes the current span's context into an outgoing request's metadata.
pub fn inject(metadata: &mut MetadataMap) {
    inject_into(&mut MetadataInjector(metadata));
}

/// The current span's context for a message on a stream, whose calls
/// carry no metadata of their own; empty while traces are off.
pub fn inject_map(trace: &mut HashMap<String, String>) {
    inject_into(trace);
}

fn inject_into(carrier: &mut dyn Injector) {
    if !enabled() {
        return;
    }
    let context = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&context, carrier);
}

/// The trace context of an incoming request, kept until the span it
/// parents exists (a transaction's span lives in its actor).
#[derive(Debug, Default, Clone)]
pub struct Parent(Option<opentelemetry::Context>);

impl Parent {
    /// Whether the request carried a trace context.
    pub fn is_some(&self) -> bool {
        self.0.is_some()
    }

    pub fn of(metadata: &MetadataMap) -> Self {
        if !enabled() || metadata.get("traceparent").is_none() {
            return Self(None);
        }
        Self(Some(
            TraceContextPropagator::new().extract(&MetadataExtractor(metadata)),
        ))
    }

    /// The context a branch call on the stream carried (see [`inject_map`]).
    pub fn of_map(trace: &HashMap<String, String>) -> Self {
        if !enabled() || !trace.contains_key("traceparent") {
            return Self(None);
        }
        Self(Some(TraceContextPropagator::new().extract(trace)))
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

#[cfg(test)]
mod tests {
    use super::sampled;

    #[test]
    fn the_sampled_share_is_the_ratio_in_every_window() {
        for ratio in [0.0, 0.01, 0.1, 0.5, 1.0] {
            for start in [0, 12_345] {
                let hits = (start..start + 1000).filter(|&n| sampled(n, ratio)).count();
                let expected = ratio * 1000.0;
                assert!(
                    (hits as f64 - expected).abs() <= 2.0,
                    "ratio {ratio} from {start}: {hits} of 1000"
                );
            }
        }
    }
}
