//! Lambda's function metrics, with Lambda's names and meanings (see Lambda's "Types of
//! metrics for Lambda functions"), written the Prometheus way: snake case under
//! `lambda_`, counters ending in `_total`, durations in seconds. Labels are Lambda's
//! dimensions: `function` (FunctionName), `resource` (Resource: `NAME` or
//! `NAME:QUALIFIER` as invoked) and `region`, plus `account` because one Nimbus serves
//! many accounts and function names repeat across them.
//!
//! | Lambda | Prometheus |
//! |---|---|
//! | Invocations | `lambda_invocations_total` (function errors included, throttles not) |
//! | Errors | `lambda_errors_total` (invocations that ended in a function error) |
//! | Throttles | `lambda_throttles_total` |
//! | Duration | `lambda_duration_seconds` (histogram) |
//! | ConcurrentExecutions | `lambda_concurrent_executions` |
//! | UnreservedConcurrentExecutions | `lambda_unreserved_concurrent_executions` (per account) |
//! | AsyncEventsReceived | `lambda_async_events_received_total` |
//! | AsyncEventAge | `lambda_async_event_age_seconds` (histogram) |
//! | AsyncEventsDropped | `lambda_async_events_dropped_total` |
//! | DestinationDeliveryFailures | `lambda_destination_delivery_failures_total` |
//! | DeadLetterErrors | `lambda_dead_letter_errors_total` (always 0: dead-letter queues are refused) |
//! | ProvisionedConcurrentExecutions | `lambda_provisioned_concurrent_executions` |
//! | ProvisionedConcurrencyUtilization | `lambda_provisioned_concurrency_utilization` (0 to 1) |

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

use crate::registry::MetricsRegistry;

/// Lambda's dimensions of one function (as invoked).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FunctionLabels {
    pub account: String,
    pub region: String,
    /// `FunctionName`.
    pub function: String,
    /// `Resource`: the function name, or `NAME:QUALIFIER` when invoked with a version or
    /// alias.
    pub resource: String,
}

impl FunctionLabels {
    pub fn new(account: &str, region: &str, function: &str, qualifier: Option<&str>) -> Self {
        FunctionLabels {
            account: account.into(),
            region: region.into(),
            function: function.into(),
            resource: match qualifier {
                Some(q) => format!("{function}:{q}"),
                None => function.into(),
            },
        }
    }
}

/// An account in a region (for the unreserved pool).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AccountLabels {
    pub account: String,
    pub region: String,
}

/// Lambda's function metrics. Cheap to clone; clones share values. Created unregistered
/// (so a gateway always has them), then added to a process's registry with
/// [`LambdaMetrics::register`].
#[derive(Clone, Debug)]
pub struct LambdaMetrics {
    invocations: Family<FunctionLabels, Counter>,
    errors: Family<FunctionLabels, Counter>,
    throttles: Family<FunctionLabels, Counter>,
    duration: Family<FunctionLabels, Histogram>,
    concurrent: Family<FunctionLabels, Gauge>,
    unreserved_concurrent: Family<AccountLabels, Gauge>,
    async_events_received: Family<FunctionLabels, Counter>,
    async_event_age: Family<FunctionLabels, Histogram>,
    async_events_dropped: Family<FunctionLabels, Counter>,
    destination_delivery_failures: Family<FunctionLabels, Counter>,
    dead_letter_errors: Family<FunctionLabels, Counter>,
    provisioned_executions: Family<FunctionLabels, Gauge>,
    provisioned_utilization: Family<FunctionLabels, Gauge<f64, AtomicU64>>,
    /// Provisioned environments allocated per version or alias (`resource`), set by the
    /// gateway's provisioning loop; the two families above are derived at each scrape.
    provisioned: Arc<Mutex<HashMap<FunctionLabels, u32>>>,
}

fn duration_histogram() -> Histogram {
    // 1 ms to ~9 minutes, doubling.
    Histogram::new(exponential_buckets(0.001, 2.0, 20))
}

fn age_histogram() -> Histogram {
    // 10 ms to ~6 hours (Lambda keeps async events up to 6 hours).
    Histogram::new(exponential_buckets(0.01, 2.0, 22))
}

impl Default for LambdaMetrics {
    fn default() -> Self {
        LambdaMetrics {
            invocations: Family::default(),
            errors: Family::default(),
            throttles: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            concurrent: Family::default(),
            unreserved_concurrent: Family::default(),
            async_events_received: Family::default(),
            async_event_age: Family::new_with_constructor(age_histogram),
            async_events_dropped: Family::default(),
            destination_delivery_failures: Family::default(),
            dead_letter_errors: Family::default(),
            provisioned_executions: Family::default(),
            provisioned_utilization: Family::default(),
            provisioned: Arc::default(),
        }
    }
}

/// One invocation counted in ConcurrentExecutions (and UnreservedConcurrentExecutions)
/// until dropped.
#[derive(Debug)]
pub struct Running {
    gauges: Vec<Gauge>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for g in &self.gauges {
            g.dec();
        }
    }
}

impl LambdaMetrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds every family to `registry`.
    pub fn register(&self, registry: &MetricsRegistry) {
        let r = registry;
        r.register("lambda_invocations", "Invocations: function code runs, including those that ended in a function error; throttled requests are not counted", self.invocations.clone());
        r.register("lambda_errors", "Errors: invocations that ended in a function error (exception, timeout, runtime crash)", self.errors.clone());
        r.register(
            "lambda_throttles",
            "Throttles: invocation requests refused for lack of concurrency",
            self.throttles.clone(),
        );
        r.register(
            "lambda_duration_seconds",
            "Duration: time from the request reaching a worker to the function's response",
            self.duration.clone(),
        );
        r.register(
            "lambda_concurrent_executions",
            "ConcurrentExecutions: invocations running now",
            self.concurrent.clone(),
        );
        r.register("lambda_unreserved_concurrent_executions", "UnreservedConcurrentExecutions: invocations running now in the account's unreserved pool", self.unreserved_concurrent.clone());
        r.register(
            "lambda_async_events_received",
            "AsyncEventsReceived: events queued for asynchronous invocation",
            self.async_events_received.clone(),
        );
        r.register(
            "lambda_async_event_age_seconds",
            "AsyncEventAge: time from queueing an event to invoking the function with it",
            self.async_event_age.clone(),
        );
        r.register(
            "lambda_async_events_dropped",
            "AsyncEventsDropped: events dropped without running the function successfully",
            self.async_events_dropped.clone(),
        );
        r.register("lambda_destination_delivery_failures", "DestinationDeliveryFailures: failed deliveries to an on-success or on-failure destination", self.destination_delivery_failures.clone());
        r.register(
            "lambda_dead_letter_errors",
            "DeadLetterErrors: failed deliveries to the dead-letter queue (always 0: Nimbus refuses dead-letter queues and delivers failures to OnFailure destinations)",
            self.dead_letter_errors.clone(),
        );
        r.register(
            "lambda_provisioned_concurrent_executions",
            "ProvisionedConcurrentExecutions: invocations running now on provisioned concurrency",
            self.provisioned_executions.clone(),
        );
        r.register(
            "lambda_provisioned_concurrency_utilization",
            "ProvisionedConcurrencyUtilization: ProvisionedConcurrentExecutions over the provisioned concurrency allocated",
            self.provisioned_utilization.clone(),
        );
        let me = self.clone();
        r.on_scrape(move || me.refresh_provisioned());
    }

    /// `allocated` provisioned environments serve `labels` (a version or alias).
    pub fn set_provisioned(&self, labels: &FunctionLabels, allocated: u32) {
        self.provisioned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(labels.clone(), allocated);
    }

    /// `labels` has no provisioned concurrency any more.
    pub fn clear_provisioned(&self, labels: &FunctionLabels) {
        self.provisioned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(labels);
        self.provisioned_executions.remove(labels);
        self.provisioned_utilization.remove(labels);
    }

    /// Invocations beyond the allocated environments spill over to on-demand ones, so
    /// they are not provisioned executions.
    fn refresh_provisioned(&self) {
        let provisioned = self
            .provisioned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for (labels, allocated) in provisioned {
            let running = self.concurrent.get_or_create(&labels).get().max(0);
            let on_provisioned = running.min(i64::from(allocated));
            self.provisioned_executions
                .get_or_create(&labels)
                .set(on_provisioned);
            let utilization = if allocated == 0 {
                0.0
            } else {
                on_provisioned as f64 / f64::from(allocated)
            };
            self.provisioned_utilization
                .get_or_create(&labels)
                .set(utilization);
        }
    }

    /// An invocation starts running (after admission). `unreserved` when it counts
    /// against the account's unreserved pool.
    pub fn running(&self, labels: &FunctionLabels, unreserved: bool) -> Running {
        let mut gauges = vec![self.concurrent.get_or_create(labels).clone()];
        if unreserved {
            gauges.push(
                self.unreserved_concurrent
                    .get_or_create(&AccountLabels {
                        account: labels.account.clone(),
                        region: labels.region.clone(),
                    })
                    .clone(),
            );
        }
        for g in &gauges {
            g.inc();
        }
        Running { gauges }
    }

    /// An invocation ran: counted in Invocations, Duration, and Errors when the function
    /// failed.
    pub fn invoked(&self, labels: &FunctionLabels, duration: Duration, function_error: bool) {
        self.invocations.get_or_create(labels).inc();
        self.duration
            .get_or_create(labels)
            .observe(duration.as_secs_f64());
        if function_error {
            self.errors.get_or_create(labels).inc();
        }
    }

    /// An invocation was refused for lack of concurrency.
    pub fn throttled(&self, labels: &FunctionLabels) {
        self.throttles.get_or_create(labels).inc();
    }

    /// An event was accepted for asynchronous invocation.
    pub fn async_event_received(&self, labels: &FunctionLabels) {
        self.async_events_received.get_or_create(labels).inc();
    }

    /// An event waited `age` in the queue before its invocation.
    pub fn async_event_age(&self, labels: &FunctionLabels, age: Duration) {
        self.async_event_age
            .get_or_create(labels)
            .observe(age.as_secs_f64());
    }

    /// An event was dropped (too old, retries exhausted, …).
    pub fn async_event_dropped(&self, labels: &FunctionLabels) {
        self.async_events_dropped.get_or_create(labels).inc();
    }

    /// A destination could not be reached.
    pub fn destination_delivery_failed(&self, labels: &FunctionLabels) {
        self.destination_delivery_failures
            .get_or_create(labels)
            .inc();
    }

    /// The dead-letter queue could not be reached.
    pub fn dead_letter_error(&self, labels: &FunctionLabels) {
        self.dead_letter_errors.get_or_create(labels).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_with_lambda_dimensions() {
        let registry = MetricsRegistry::new();
        let m = LambdaMetrics::new();
        m.register(&registry);
        let f = FunctionLabels::new("000000000000", "us-east-1", "echo", Some("live"));
        {
            let _r = m.running(&f, true);
            let text = registry.encode();
            assert!(text.contains(r#"lambda_concurrent_executions{account="000000000000",region="us-east-1",function="echo",resource="echo:live"} 1"#), "{text}");
            assert!(text.contains(r#"lambda_unreserved_concurrent_executions{account="000000000000",region="us-east-1"} 1"#), "{text}");
        }
        m.invoked(&f, Duration::from_millis(3), false);
        m.invoked(&f, Duration::from_millis(5), true);
        m.throttled(&f);
        m.async_event_received(&f);
        m.async_event_age(&f, Duration::from_secs(1));
        let text = registry.encode();
        for line in [
            r#"lambda_invocations_total{account="000000000000",region="us-east-1",function="echo",resource="echo:live"} 2"#,
            r#"lambda_errors_total{account="000000000000",region="us-east-1",function="echo",resource="echo:live"} 1"#,
            r#"lambda_throttles_total{account="000000000000",region="us-east-1",function="echo",resource="echo:live"} 1"#,
            r#"lambda_duration_seconds_count{account="000000000000",region="us-east-1",function="echo",resource="echo:live"} 2"#,
            r#"lambda_concurrent_executions{account="000000000000",region="us-east-1",function="echo",resource="echo:live"} 0"#,
            r#"lambda_async_events_received_total{account="000000000000",region="us-east-1",function="echo",resource="echo:live"} 1"#,
            r#"lambda_async_event_age_seconds_count{account="000000000000",region="us-east-1",function="echo",resource="echo:live"} 1"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }

    #[test]
    fn provisioned_utilization_follows_running_invocations() {
        let registry = MetricsRegistry::new();
        let m = LambdaMetrics::new();
        m.register(&registry);
        let f = FunctionLabels::new("000000000000", "us-east-1", "pc", Some("live"));
        let labels =
            r#"{account="000000000000",region="us-east-1",function="pc",resource="pc:live"}"#;
        m.set_provisioned(&f, 4);
        let text = registry.encode();
        assert!(
            text.contains(&format!(
                "lambda_provisioned_concurrency_utilization{labels} 0.0"
            )),
            "{text}"
        );
        let running: Vec<_> = (0..3).map(|_| m.running(&f, false)).collect();
        let text = registry.encode();
        assert!(
            text.contains(&format!(
                "lambda_provisioned_concurrent_executions{labels} 3"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "lambda_provisioned_concurrency_utilization{labels} 0.75"
            )),
            "{text}"
        );
        // Beyond the allocation, invocations spill over to on-demand environments.
        let more: Vec<_> = (0..3).map(|_| m.running(&f, false)).collect();
        let text = registry.encode();
        assert!(
            text.contains(&format!(
                "lambda_provisioned_concurrent_executions{labels} 4"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "lambda_provisioned_concurrency_utilization{labels} 1.0"
            )),
            "{text}"
        );
        drop((running, more));
        m.clear_provisioned(&f);
        let text = registry.encode();
        assert!(!text.contains("resource=\"pc:live\"} 1.0"), "{text}");
        assert!(
            !text.contains("lambda_provisioned_concurrency_utilization{"),
            "{text}"
        );
    }

    #[test]
    fn resource_is_the_name_when_unqualified() {
        assert_eq!(FunctionLabels::new("a", "r", "f", None).resource, "f");
        assert_eq!(
            FunctionLabels::new("a", "r", "f", Some("3")).resource,
            "f:3"
        );
    }
}
