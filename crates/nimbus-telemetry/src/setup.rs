//! The process-wide `tracing` subscriber: Nimbus's own logs on stderr (text by default,
//! JSON on request, level from `RUST_LOG`), and, when the `OTEL_*` variables ask for it,
//! an OpenTelemetry layer that exports Nimbus's spans over OTLP.

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanExporter as _};
use opentelemetry_sdk::Resource;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::batch::{BatchHandle, BoundedBatchProcessor, QueueCounters};
use crate::otlp::{self, QueueConfig};
use crate::otlp_metrics::{self, ExportCounters, ExportHandle};
use crate::registry::MetricsRegistry;
use crate::sampling::HeadSampled;

/// Format of Nimbus's own logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("telemetry configuration: {0}")]
    Config(String),
    #[error("a tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// What [`init`] set up; keep it for the life of the process and call
/// [`Telemetry::shutdown`] at the end so queued spans are exported.
#[derive(Debug)]
pub struct Telemetry {
    metrics: MetricsRegistry,
    provider: Option<SdkTracerProvider>,
    batch: Option<BatchHandle>,
    service_name: String,
    metrics_export: Option<ExportHandle>,
}

impl Telemetry {
    /// The process's metrics registry (already holding the span queue's counters).
    pub fn metrics(&self) -> &MetricsRegistry {
        &self.metrics
    }

    /// True when spans are exported over OTLP.
    pub fn traces_exported(&self) -> bool {
        self.provider.is_some()
    }

    /// Starts pushing this process's metrics over OTLP when the `OTEL_*` variables ask
    /// for it (see [`otlp_metrics::config_from_env`]); returns whether it did. Node roles
    /// call this; client commands have nothing to report. Must run inside a tokio runtime.
    pub fn start_metrics_export(&mut self) -> Result<bool, TelemetryError> {
        let env = |k: &str| std::env::var(k).ok();
        let Some(config) = otlp_metrics::config_from_env(&env)? else {
            return Ok(false);
        };
        let counters = ExportCounters::default();
        self.metrics.register(
            "nimbus_otel_metric_exports",
            "OTLP metric export requests the collector accepted",
            counters.exports.clone(),
        );
        self.metrics.register(
            "nimbus_otel_metric_export_failures",
            "OTLP metric export requests that failed or timed out",
            counters.failures.clone(),
        );
        tracing::info!(
            endpoint = %config.endpoint,
            interval_ms = config.interval.as_millis() as u64,
            "exporting metrics over OTLP"
        );
        let attributes = otlp_metrics::resource_attributes(&resource(&self.service_name));
        self.metrics_export = Some(otlp_metrics::start(
            self.metrics.clone(),
            config,
            attributes,
            counters,
        ));
        Ok(true)
    }

    /// Exports what is queued (for at most 5 seconds) and stops the exporter.
    pub async fn shutdown(self) {
        if let Some(export) = &self.metrics_export {
            if !export.shutdown(Duration::from_secs(5)).await {
                tracing::warn!("the last metrics were not exported within 5s");
            }
        }
        if let Some(batch) = &self.batch {
            if !batch.shutdown(Duration::from_secs(5)).await {
                tracing::warn!("spans still queued at exit were not exported within 5s");
            }
        }
        drop(self.provider);
    }
}

/// Installs the subscriber. `service_name` is `service.name` unless `OTEL_SERVICE_NAME`
/// or `OTEL_RESOURCE_ATTRIBUTES` names one. When traces are exported this must run
/// inside a tokio runtime: the export task and the OTLP client live there.
pub fn init(format: LogFormat, service_name: &str) -> Result<Telemetry, TelemetryError> {
    let env = |k: &str| std::env::var(k).ok();
    let metrics = MetricsRegistry::new();
    let counters = QueueCounters::default();
    metrics.register(
        "nimbus_otel_spans_dropped",
        "Spans dropped because the export queue was full or the export failed",
        counters.dropped.clone(),
    );
    metrics.register(
        "nimbus_otel_spans_exported",
        "Spans accepted by the OTLP collector",
        counters.exported.clone(),
    );
    metrics.register(
        "nimbus_otel_export_failures",
        "OTLP export requests that failed or timed out",
        counters.failed_exports.clone(),
    );

    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,openraft=warn"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt: Box<dyn Layer<Registry> + Send + Sync> = match format {
        LogFormat::Text => fmt.with_filter(filter).boxed(),
        LogFormat::Json => fmt.json().with_filter(filter).boxed(),
    };
    let mut layers = vec![fmt];

    let (provider, batch) = if otlp::traces_enabled(&env)? {
        let queue = QueueConfig::from_env(&env)?;
        let mut exporter = otlp::span_exporter()?;
        let resource = resource(service_name);
        exporter.set_resource(&resource);
        let (processor, batch) = BoundedBatchProcessor::start(exporter, queue, counters);
        // The sampler comes from OTEL_TRACES_SAMPLER(_ARG), read by the SDK's own
        // configuration. It decides once per trace, before spans are built
        // (`HeadSampled`); the provider keeps whatever it is then given.
        let sampler = opentelemetry_sdk::trace::Config::default().sampler;
        let provider = SdkTracerProvider::builder()
            .with_resource(resource)
            .with_sampler(Sampler::AlwaysOn)
            .with_span_processor(processor)
            .build();
        let tracer = provider.tracer("nimbus");
        let otel = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            // Activation attaches the span's OpenTelemetry context on every enter (every
            // poll of an instrumented future); only OpenTelemetry-native instrumentation
            // would read it, and Nimbus has none: parents come from `tracing`'s own.
            .with_context_activation(false);
        let layer = HeadSampled::new(otel, sampler)
            // Only Nimbus's own spans: not those of tonic, hyper or h2 underneath.
            .with_filter(Targets::new().with_target("nimbus", tracing::Level::INFO))
            .boxed();
        layers.push(layer);
        (Some(provider), Some(batch))
    } else {
        (None, None)
    };

    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    if provider.is_some() {
        tracing::info!("exporting traces over OTLP");
    }
    Ok(Telemetry {
        metrics,
        provider,
        batch,
        service_name: service_name.to_string(),
        metrics_export: None,
    })
}

/// The OpenTelemetry resource of this process: `OTEL_SERVICE_NAME` and
/// `OTEL_RESOURCE_ATTRIBUTES` when set, else `service_name`, plus the SDK's own attributes.
fn resource(service_name: &str) -> Resource {
    let env = |k: &str| std::env::var(k).ok();
    let mut resource = Resource::builder();
    let named = env("OTEL_SERVICE_NAME").is_some()
        || env("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|a| a.contains("service.name="));
    if !named {
        resource = resource.with_service_name(service_name.to_string());
    }
    resource.build()
}
