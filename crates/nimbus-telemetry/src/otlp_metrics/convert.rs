//! Mapping a registry snapshot onto OTLP's data model, following OpenTelemetry's
//! Prometheus compatibility rules (see the parent module's documentation): counter →
//! monotonic cumulative Sum, gauge → Gauge, histogram → explicit-bucket Histogram,
//! info → Gauge of 1. Pure functions of their input, apart from [`snapshot`]'s clock.

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::openmetrics::{self, Family, Kind, Sample};
use crate::registry::MetricsRegistry;

/// A resource's attributes in OTLP's form.
pub fn resource_attributes(resource: &opentelemetry_sdk::Resource) -> Vec<KeyValue> {
    use opentelemetry::Value;
    resource
        .iter()
        .map(|(k, v)| {
            let value = match v {
                Value::Bool(b) => any_value::Value::BoolValue(*b),
                Value::I64(i) => any_value::Value::IntValue(*i),
                Value::F64(f) => any_value::Value::DoubleValue(*f),
                other => any_value::Value::StringValue(other.to_string()),
            };
            KeyValue {
                key: k.to_string(),
                value: Some(AnyValue { value: Some(value) }),
                ..Default::default()
            }
        })
        .collect()
}

pub(super) fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// One export request holding every family in the registry now.
pub(super) fn snapshot(
    registry: &MetricsRegistry,
    resource: &[KeyValue],
    start_time: u64,
) -> ExportMetricsServiceRequest {
    let families = match openmetrics::parse(&registry.encode()) {
        Ok(f) => f,
        Err(e) => {
            // Only a bug can get here (the text is our own); export nothing rather than
            // something wrong.
            tracing::error!("cannot read the metrics registry back: {e}");
            Vec::new()
        }
    };
    to_request(
        &families,
        resource,
        start_time,
        unix_nanos(SystemTime::now()),
    )
}

/// Maps families onto one OTLP request (see the module documentation).
pub fn to_request(
    families: &[Family],
    resource: &[KeyValue],
    start_time: u64,
    now: u64,
) -> ExportMetricsServiceRequest {
    let metrics = families
        .iter()
        .filter_map(|f| to_metric(f, start_time, now))
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: resource.to_vec(),
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "nimbus".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn to_metric(f: &Family, start_time: u64, now: u64) -> Option<Metric> {
    let point = |s: &Sample| NumberDataPoint {
        attributes: attributes(&s.labels, None),
        start_time_unix_nano: start_time,
        time_unix_nano: now,
        value: Some(match s.int {
            Some(i) => number_data_point::Value::AsInt(i),
            None => number_data_point::Value::AsDouble(s.value),
        }),
        ..Default::default()
    };
    let points = |suffix: &str| -> Vec<NumberDataPoint> {
        f.samples
            .iter()
            .filter(|s| s.suffix == suffix)
            .map(point)
            .collect()
    };
    let data = match f.kind {
        Kind::Counter => metric::Data::Sum(Sum {
            data_points: points("_total"),
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        }),
        Kind::Gauge => metric::Data::Gauge(Gauge {
            data_points: points(""),
        }),
        Kind::Info => metric::Data::Gauge(Gauge {
            data_points: points("_info"),
        }),
        Kind::Histogram => metric::Data::Histogram(Histogram {
            data_points: histogram_points(f, start_time, now),
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        }),
        Kind::Other => return None,
    };
    Some(Metric {
        name: f.name.clone(),
        description: f.help.trim_end_matches('.').to_string(),
        unit: unit(f),
        data: Some(data),
        ..Default::default()
    })
}

/// OTLP wants UCUM units; Prometheus puts the unit at the end of the name.
fn unit(f: &Family) -> String {
    let u = if f.unit.is_empty() {
        f.name.rsplit('_').next().unwrap_or("")
    } else {
        f.unit.as_str()
    };
    match u {
        "seconds" => "s",
        "bytes" => "By",
        "milliseconds" => "ms",
        _ => "",
    }
    .to_string()
}

/// Labels as attributes, leaving out `skip` (a histogram's `le`).
fn attributes(labels: &[(String, String)], skip: Option<&str>) -> Vec<KeyValue> {
    labels
        .iter()
        .filter(|(k, _)| Some(k.as_str()) != skip)
        .map(|(k, v)| KeyValue {
            key: k.clone(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.clone())),
            }),
            ..Default::default()
        })
        .collect()
}

/// Prometheus histograms are series of cumulative `_bucket{le}` counts plus `_sum` and
/// `_count` per label set; OTLP wants one point per label set with per-bucket counts.
fn histogram_points(f: &Family, start_time: u64, now: u64) -> Vec<HistogramDataPoint> {
    let key = |s: &Sample| -> Vec<(String, String)> {
        s.labels
            .iter()
            .filter(|(k, _)| k != "le")
            .cloned()
            .collect()
    };
    let mut sets: Vec<Vec<(String, String)>> = Vec::new();
    for s in &f.samples {
        let k = key(s);
        if !sets.contains(&k) {
            sets.push(k);
        }
    }
    sets.into_iter()
        .map(|labels| {
            let mine: Vec<&Sample> = f.samples.iter().filter(|s| key(s) == labels).collect();
            let mut buckets: Vec<(f64, f64)> = mine
                .iter()
                .filter(|s| s.suffix == "_bucket")
                .filter_map(|s| {
                    let le = s.labels.iter().find(|(k, _)| k == "le")?.1.as_str();
                    let bound = match le {
                        "+Inf" => f64::INFINITY,
                        v => v.parse().ok()?,
                    };
                    Some((bound, s.value))
                })
                .collect();
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            let mut bucket_counts = Vec::with_capacity(buckets.len());
            let mut below = 0.0;
            for (_, cumulative) in &buckets {
                bucket_counts.push((cumulative - below).max(0.0) as u64);
                below = *cumulative;
            }
            let find = |suffix: &str| mine.iter().find(|s| s.suffix == suffix).map(|s| s.value);
            HistogramDataPoint {
                attributes: attributes(&labels, Some("le")),
                start_time_unix_nano: start_time,
                time_unix_nano: now,
                count: find("_count").unwrap_or(below) as u64,
                sum: find("_sum"),
                explicit_bounds: buckets
                    .iter()
                    .map(|(b, _)| *b)
                    .filter(|b| b.is_finite())
                    .collect(),
                bucket_counts,
                ..Default::default()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::EncodeLabelSet;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family as PcFamily;
    use prometheus_client::metrics::gauge::Gauge as PcGauge;
    use prometheus_client::metrics::histogram::Histogram as PcHistogram;

    use super::*;

    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct L {
        function: String,
    }

    #[test]
    fn maps_a_registry_onto_otlp() {
        let r = MetricsRegistry::new();
        let calls = PcFamily::<L, Counter>::default();
        r.register("lambda_invocations", "Invocations", calls.clone());
        let level = PcGauge::<f64, std::sync::atomic::AtomicU64>::default();
        r.register("pool_level", "Level", level.clone());
        let wait =
            PcFamily::<L, PcHistogram>::new_with_constructor(|| PcHistogram::new([0.5, 1.0]));
        r.register("lambda_duration_seconds", "Duration", wait.clone());
        let l = L {
            function: "f".into(),
        };
        calls.get_or_create(&l).inc_by(3);
        level.set(0.25);
        for v in [0.1, 0.2, 0.7, 9.0] {
            wait.get_or_create(&l).observe(v);
        }

        let fams = openmetrics::parse(&r.encode()).unwrap();
        let req = to_request(&fams, &[], 10, 20);
        let metrics = &req.resource_metrics[0].scope_metrics[0].metrics;
        let m = |n: &str| metrics.iter().find(|m| m.name == n).unwrap();

        let Some(metric::Data::Sum(sum)) = &m("lambda_invocations").data else {
            panic!("a counter is a Sum")
        };
        assert!(sum.is_monotonic);
        assert_eq!(
            sum.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        assert_eq!(
            sum.data_points[0].value,
            Some(number_data_point::Value::AsInt(3))
        );
        assert_eq!(sum.data_points[0].attributes[0].key, "function");
        assert_eq!(sum.data_points[0].start_time_unix_nano, 10);
        assert_eq!(sum.data_points[0].time_unix_nano, 20);

        let Some(metric::Data::Gauge(g)) = &m("pool_level").data else {
            panic!("a gauge is a Gauge")
        };
        assert_eq!(
            g.data_points[0].value,
            Some(number_data_point::Value::AsDouble(0.25))
        );

        let d = m("lambda_duration_seconds");
        assert_eq!(d.unit, "s");
        let Some(metric::Data::Histogram(h)) = &d.data else {
            panic!("a histogram is a Histogram")
        };
        let p = &h.data_points[0];
        assert_eq!(p.explicit_bounds, vec![0.5, 1.0]);
        assert_eq!(p.bucket_counts, vec![2, 1, 1], "per bucket, not cumulative");
        assert_eq!(p.count, 4);
        assert!((p.sum.unwrap() - 10.0).abs() < 1e-9);
        assert!(
            p.attributes.iter().all(|a| a.key != "le"),
            "le is not an attribute"
        );
    }
}
