//! Which metrics export the standard `OTEL_*` variables ask for: on or off, protocol,
//! endpoint, headers, interval and timeout
//! (<https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/>).

use std::time::Duration;

use crate::setup::TelemetryError;

/// How metrics reach the collector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
}

/// The export's settings, read from the environment by [`config_from_env`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportConfig {
    pub protocol: Protocol,
    /// For gRPC the collector's base URL; for HTTP the full URL (`…/v1/metrics`).
    pub endpoint: String,
    pub headers: Vec<(String, String)>,
    pub interval: Duration,
    pub timeout: Duration,
}

/// Decides from the environment whether metrics are pushed, and where.
///
/// On when `OTEL_METRICS_EXPORTER` includes `otlp`, or when it is unset and an OTLP
/// endpoint is (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`).
/// `none` and `prometheus` (always served on `/metrics` anyway) leave it off, as does
/// `OTEL_SDK_DISABLED=true`.
pub fn config_from_env(
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<ExportConfig>, TelemetryError> {
    let get = |k: &str| {
        env(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    if get("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    let on = match get("OTEL_METRICS_EXPORTER") {
        Some(list) => {
            let mut on = false;
            for e in list.split(',').map(|e| e.trim().to_ascii_lowercase()) {
                match e.as_str() {
                    "otlp" => on = true,
                    "none" | "prometheus" | "" => {}
                    other => {
                        return Err(TelemetryError::Config(format!(
                            "OTEL_METRICS_EXPORTER={other} is not supported (use otlp, prometheus or none)"
                        )))
                    }
                }
            }
            on
        }
        None => {
            get("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
                || get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT").is_some()
        }
    };
    if !on {
        return Ok(None);
    }
    let protocol = match get("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL")
        .or_else(|| get("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .as_deref()
    {
        None | Some("http/protobuf") => Protocol::HttpProtobuf,
        Some("grpc") => Protocol::Grpc,
        Some(other) => {
            return Err(TelemetryError::Config(format!(
                "OTLP protocol {other} is not supported for metrics (use grpc or http/protobuf)"
            )))
        }
    };
    // The signal-specific endpoint is used as given; the general one is a base URL to
    // which HTTP appends the signal's path.
    let endpoint = match (get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"), protocol) {
        (Some(e), _) => e,
        (None, Protocol::Grpc) => {
            get("OTEL_EXPORTER_OTLP_ENDPOINT").unwrap_or_else(|| "http://localhost:4317".into())
        }
        (None, Protocol::HttpProtobuf) => format!(
            "{}/v1/metrics",
            get("OTEL_EXPORTER_OTLP_ENDPOINT")
                .unwrap_or_else(|| "http://localhost:4318".into())
                .trim_end_matches('/')
        ),
    };
    if !endpoint.starts_with("http://") {
        return Err(TelemetryError::Config(format!(
            "OTLP metrics endpoint {endpoint}: only http:// is supported (this build has no TLS; \
             run a collector next to the node)"
        )));
    }
    let mut headers = parse_headers(get("OTEL_EXPORTER_OTLP_HEADERS").as_deref())?;
    headers.extend(parse_headers(
        get("OTEL_EXPORTER_OTLP_METRICS_HEADERS").as_deref(),
    )?);
    let millis = |k: &str, default: u64| -> Result<Duration, TelemetryError> {
        match get(k) {
            None => Ok(Duration::from_millis(default)),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if n > 0 => Ok(Duration::from_millis(n)),
                _ => Err(TelemetryError::Config(format!(
                    "{k}={v} should be a positive number of milliseconds"
                ))),
            },
        }
    };
    let timeout = match get("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT") {
        Some(_) => millis("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", 10_000)?,
        None => millis("OTEL_EXPORTER_OTLP_TIMEOUT", 10_000)?,
    };
    if let Some(t) = get("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE") {
        if !t.eq_ignore_ascii_case("cumulative") {
            return Err(TelemetryError::Config(format!(
                "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE={t}: Nimbus exports cumulative \
                 values only (as Prometheus does)"
            )));
        }
    }
    Ok(Some(ExportConfig {
        protocol,
        endpoint,
        headers,
        interval: millis("OTEL_METRIC_EXPORT_INTERVAL", 60_000)?,
        timeout: timeout.min(millis("OTEL_METRIC_EXPORT_TIMEOUT", 30_000)?),
    }))
}

/// `k1=v1,k2=v2` with percent-encoded values, as the specification writes headers.
fn parse_headers(v: Option<&str>) -> Result<Vec<(String, String)>, TelemetryError> {
    let Some(v) = v else { return Ok(Vec::new()) };
    v.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (k, val) = p.split_once('=').ok_or_else(|| {
                // Never echo the value: headers usually carry credentials.
                TelemetryError::Config(
                    "OTEL_EXPORTER_OTLP_HEADERS: expected key=value pairs".into(),
                )
            })?;
            let val = percent_encoding::percent_decode_str(val.trim())
                .decode_utf8()
                .map_err(|_| {
                    TelemetryError::Config(
                        "OTEL_EXPORTER_OTLP_HEADERS: a value is not UTF-8".into(),
                    )
                })?;
            Ok((k.trim().to_ascii_lowercase(), val.into_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_env::env;

    #[test]
    fn off_unless_configured() {
        assert_eq!(config_from_env(&env(&[])).unwrap(), None);
        assert_eq!(
            config_from_env(&env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_METRICS_EXPORTER", "none")
            ]))
            .unwrap(),
            None
        );
        assert_eq!(
            config_from_env(&env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_SDK_DISABLED", "true")
            ]))
            .unwrap(),
            None
        );
        assert_eq!(
            config_from_env(&env(&[("OTEL_METRICS_EXPORTER", "prometheus")])).unwrap(),
            None
        );
    }

    #[test]
    fn endpoints_protocols_and_limits() {
        let c = config_from_env(&env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")]))
            .unwrap()
            .unwrap();
        assert_eq!(c.protocol, Protocol::HttpProtobuf);
        assert_eq!(c.endpoint, "http://c:4318/v1/metrics");
        assert_eq!(c.interval, Duration::from_secs(60));

        let c = config_from_env(&env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "500"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "Authorization=Bearer%20s3cret,x-a=b",
            ),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(c.protocol, Protocol::Grpc);
        assert_eq!(c.endpoint, "http://c:4317");
        assert_eq!(c.interval, Duration::from_millis(500));
        assert_eq!(
            c.headers,
            vec![
                ("authorization".into(), "Bearer s3cret".into()),
                ("x-a".into(), "b".into())
            ]
        );

        let c = config_from_env(&env(&[
            ("OTEL_METRICS_EXPORTER", "otlp"),
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://m:9/custom"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(c.endpoint, "http://m:9/custom", "used as given");
    }

    #[test]
    fn bad_settings_are_errors_that_name_the_variable() {
        for (pairs, needle) in [
            (vec![("OTEL_METRICS_EXPORTER", "statsd")], "statsd"),
            (
                vec![
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
                ],
                "http/json",
            ),
            (
                vec![
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                    ("OTEL_METRIC_EXPORT_INTERVAL", "soon"),
                ],
                "OTEL_METRIC_EXPORT_INTERVAL",
            ),
            (
                vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4318")],
                "only http://",
            ),
            (
                vec![
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                    ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta"),
                ],
                "cumulative",
            ),
        ] {
            let e = config_from_env(&env(&pairs)).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
        let e = config_from_env(&env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "token"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(e.contains("key=value"), "{e}");
    }
}
