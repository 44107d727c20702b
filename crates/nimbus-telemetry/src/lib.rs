//! Nimbus's observability, shared by every role: its own logs and OpenTelemetry traces
//! through `tracing`, and Prometheus metrics.
//!
//! Layout:
//! - [`setup`]: the process-wide `tracing` subscriber: human-readable or JSON logs on
//!   stderr, plus an OpenTelemetry layer when the standard `OTEL_*` variables ask for one.
//! - [`otlp`]: reading those variables, and building the OTLP span exporter (gRPC or HTTP).
//! - [`batch`]: a bounded span queue in front of the exporter that drops (and counts)
//!   rather than ever making an invocation wait for a collector.
//! - [`propagation`]: trace context in (`traceparent`, `X-Amzn-Trace-Id`) and out (the
//!   `X-Amzn-Trace-Id` a function receives).
//! - [`decision`]: a request's sampling decision, made before its root span exists, so
//!   an unsampled request builds no span; [`sampling`]: the layer that keeps any other
//!   unsampled trace's spans from OpenTelemetry.
//! - [`registry`]: the Prometheus registry of a process and its `/metrics` endpoint.
//! - [`otlp_metrics`]: the same metrics pushed over OTLP when configured, read back from
//!   the registry by [`openmetrics`].
//! - [`lambda`]: Lambda's function metrics (Invocations, Errors, Throttles, Duration, …).
#![deny(unsafe_code)]

pub mod batch;
pub mod decision;
pub mod lambda;
pub mod openmetrics;
pub mod otlp;
pub mod otlp_metrics;
pub mod propagation;
pub mod registry;
pub mod sampling;
pub mod setup;

pub use lambda::{FunctionLabels, LambdaMetrics};

// Components define their metrics with the same version of the client library.
pub use prometheus_client;
pub use registry::MetricsRegistry;
pub use setup::{init, LogFormat, Telemetry, TelemetryError};

#[cfg(test)]
pub(crate) mod testing;

/// A fake environment for the configuration parsers' tests.
#[cfg(test)]
pub(crate) mod test_env {
    pub fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }
}
