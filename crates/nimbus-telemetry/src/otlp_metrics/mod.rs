//! Metrics over OTLP: the values `/metrics` serves, pushed to an OTLP collector (gRPC or
//! HTTP/protobuf) every `OTEL_METRIC_EXPORT_INTERVAL` when the standard variables ask for
//! it (<https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/>).
//!
//! Why a bridge and not the OpenTelemetry SDK's metrics pipeline: Nimbus's metrics live in
//! one `prometheus-client` registry, which Prometheus scrapes. The SDK exports only what
//! was recorded through its own instruments (its hook for outside producers and its data
//! types' constructors are crate-private), and recording every value twice would double
//! the metrics cost on the invocation path. So each export snapshots the registry
//! ([`crate::openmetrics`]) and maps it onto OTLP's data model the way OpenTelemetry's
//! Prometheus compatibility rules do: counter → monotonic cumulative Sum (without the
//! `_total` suffix), gauge → Gauge, histogram → explicit-bucket cumulative Histogram, info
//! → Gauge of 1. Exports run on a tokio task; a collector that is down costs a failed
//! export (counted), never an invocation's time.
//!
//! Layout: `config` reads the environment into an [`ExportConfig`]; `convert` maps
//! a registry snapshot onto an OTLP request; `export` runs the task that sends it.

mod config;
mod convert;
mod export;

pub use config::{config_from_env, ExportConfig, Protocol};
pub use convert::{resource_attributes, to_request};
pub use export::{start, ExportCounters, ExportHandle};
