//! OTLP trace export, configured only by OpenTelemetry's standard environment variables
//! (<https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/>).
//!
//! Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set
//! or `OTEL_TRACES_EXPORTER=otlp`; `OTEL_TRACES_EXPORTER=none` or `OTEL_SDK_DISABLED=true`
//! turn it off again. The exporter itself reads the endpoint, `OTEL_EXPORTER_OTLP_PROTOCOL`
//! (`grpc` or `http/protobuf`, the default), headers and timeout; the SDK's configuration
//! reads `OTEL_TRACES_SAMPLER(_ARG)` (applied by [`crate::sampling`]), `OTEL_SERVICE_NAME`
//! and `OTEL_RESOURCE_ATTRIBUTES`; the
//! queue in front of the exporter honours the `OTEL_BSP_*` variables.

use std::time::Duration;

use crate::setup::TelemetryError;

/// Whether traces are exported, decided from the environment.
pub fn traces_enabled(env: &dyn Fn(&str) -> Option<String>) -> Result<bool, TelemetryError> {
    let set = |k: &str| env(k).is_some_and(|v| !v.trim().is_empty());
    if env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Ok(false);
    }
    match env("OTEL_TRACES_EXPORTER").map(|v| v.trim().to_ascii_lowercase()) {
        Some(v) if v == "none" => Ok(false),
        Some(v) if v == "otlp" => Ok(true),
        Some(v) if !v.is_empty() => Err(TelemetryError::Config(format!(
            "OTEL_TRACES_EXPORTER={v} is not supported (use otlp or none)"
        ))),
        _ => Ok(set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")),
    }
}

/// The span queue's limits (`OTEL_BSP_*`, with the specification's defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// Spans held at most; more are dropped and counted.
    pub max_queue_size: usize,
    /// Spans per export request.
    pub max_export_batch_size: usize,
    /// How long a span may wait for a batch to fill.
    pub schedule_delay: Duration,
    /// How long one export may take before it is abandoned.
    pub export_timeout: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            max_queue_size: 2048,
            max_export_batch_size: 512,
            schedule_delay: Duration::from_millis(5000),
            export_timeout: Duration::from_millis(30000),
        }
    }
}

impl QueueConfig {
    /// Reads `OTEL_BSP_MAX_QUEUE_SIZE`, `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`,
    /// `OTEL_BSP_SCHEDULE_DELAY` and `OTEL_BSP_EXPORT_TIMEOUT` (milliseconds).
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, TelemetryError> {
        let d = QueueConfig::default();
        let num = |k: &str, default: u64| -> Result<u64, TelemetryError> {
            match env(k) {
                None => Ok(default),
                Some(v) => match v.trim().parse::<u64>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => Err(TelemetryError::Config(format!(
                        "{k}={v} should be a positive integer"
                    ))),
                },
            }
        };
        let c = QueueConfig {
            max_queue_size: num("OTEL_BSP_MAX_QUEUE_SIZE", d.max_queue_size as u64)? as usize,
            max_export_batch_size: num(
                "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
                d.max_export_batch_size as u64,
            )? as usize,
            schedule_delay: Duration::from_millis(num(
                "OTEL_BSP_SCHEDULE_DELAY",
                d.schedule_delay.as_millis() as u64,
            )?),
            export_timeout: Duration::from_millis(num(
                "OTEL_BSP_EXPORT_TIMEOUT",
                d.export_timeout.as_millis() as u64,
            )?),
        };
        // The specification: the batch size must not exceed the queue.
        Ok(QueueConfig {
            max_export_batch_size: c.max_export_batch_size.min(c.max_queue_size),
            ..c
        })
    }
}

/// Builds the OTLP span exporter the environment describes. Must run inside a tokio
/// runtime (the gRPC channel and the HTTP client spawn their connection tasks there).
pub fn span_exporter() -> Result<opentelemetry_otlp::SpanExporter, TelemetryError> {
    opentelemetry_otlp::SpanExporter::builder()
        .build()
        .map_err(|e| TelemetryError::Config(format!("OTLP exporter: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_env::env;

    #[test]
    fn off_unless_configured() {
        assert!(!traces_enabled(&env(&[])).unwrap());
        assert!(traces_enabled(&env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")])).unwrap());
        assert!(traces_enabled(&env(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://c:4318/v1/traces"
        )]))
        .unwrap());
        assert!(traces_enabled(&env(&[("OTEL_TRACES_EXPORTER", "otlp")])).unwrap());
        assert!(!traces_enabled(&env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_TRACES_EXPORTER", "none")
        ]))
        .unwrap());
        assert!(!traces_enabled(&env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_SDK_DISABLED", "true")
        ]))
        .unwrap());
    }

    #[test]
    fn unsupported_exporter_is_an_error() {
        let e = traces_enabled(&env(&[("OTEL_TRACES_EXPORTER", "jaeger")])).unwrap_err();
        assert!(e.to_string().contains("jaeger"), "{e}");
    }

    #[test]
    fn queue_limits_from_env() {
        assert_eq!(
            QueueConfig::from_env(&env(&[])).unwrap(),
            QueueConfig::default()
        );
        let c = QueueConfig::from_env(&env(&[
            ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "500"),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ]))
        .unwrap();
        assert_eq!(c.max_queue_size, 100);
        assert_eq!(c.max_export_batch_size, 100, "batch clamped to the queue");
        assert_eq!(c.schedule_delay, Duration::from_millis(200));
        let e = QueueConfig::from_env(&env(&[("OTEL_BSP_MAX_QUEUE_SIZE", "lots")])).unwrap_err();
        assert!(e.to_string().contains("OTEL_BSP_MAX_QUEUE_SIZE"), "{e}");
    }
}
