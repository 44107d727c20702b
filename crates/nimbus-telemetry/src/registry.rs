//! [`MetricsRegistry`]: one Prometheus registry per process, and its `/metrics` endpoint.
//!
//! Metrics are `prometheus-client` types (typed label sets, no global registry, no
//! protobuf; the client library maintained under the Prometheus organisation). Values
//! that are a snapshot of some state (Raft's indexes, the worker's pool) are refreshed by
//! callbacks just before each scrape instead of by a timer.

use std::borrow::Cow;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::{Metric, Registry};

/// The OpenMetrics text format `prometheus-client` writes.
pub const CONTENT_TYPE_OPENMETRICS: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Refresh = Box<dyn Fn() + Send + Sync>;

/// A process's metrics. Cheap to clone; clones share one registry.
#[derive(Clone, Default)]
pub struct MetricsRegistry {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    registry: Mutex<Registry>,
    refreshers: Mutex<Vec<Refresh>>,
    /// Labels every metric registered from now on carries (e.g. an edge location).
    labels: Mutex<Vec<(String, String)>>,
}

impl std::fmt::Debug for MetricsRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsRegistry").finish_non_exhaustive()
    }
}

impl MetricsRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a metric (a clone of it: metrics share their values with their clones).
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        let labels = self
            .inner
            .labels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut registry = self
            .inner
            .registry
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if labels.is_empty() {
            registry.register(name, help, metric);
        } else {
            registry
                .sub_registry_with_labels(
                    labels
                        .into_iter()
                        .map(|(k, v)| (Cow::Owned(k), Cow::Owned(v))),
                )
                .register(name, help, metric);
        }
    }

    /// Gives every metric registered after this call the label `key="value"` (a node's
    /// place, such as its edge location, on all of its series).
    pub fn add_label(&self, key: &str, value: &str) {
        self.inner
            .labels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((key.to_string(), value.to_string()));
    }

    /// Runs `refresh` before every scrape, to copy a snapshot of some state into gauges.
    pub fn on_scrape(&self, refresh: impl Fn() + Send + Sync + 'static) {
        self.inner
            .refreshers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Box::new(refresh));
    }

    /// The current values in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        for refresh in self
            .inner
            .refreshers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            refresh();
        }
        let mut out = String::new();
        let registry = self
            .inner
            .registry
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }

    /// `GET /metrics`, unauthenticated (metrics carry names and counts, never payloads).
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        let me = self.clone();
        Router::new().route(
            "/metrics",
            get(move || {
                let me = me.clone();
                async move { ([(CONTENT_TYPE, CONTENT_TYPE_OPENMETRICS)], me.encode()).into_response() }
            }),
        )
    }

    /// Serves `/metrics` on an admin listener until `shutdown` resolves.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router::<()>())
            .with_graceful_shutdown(shutdown)
            .await
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::gauge::Gauge;

    use super::*;

    #[test]
    fn encodes_registered_metrics_after_refreshing() {
        let m = MetricsRegistry::new();
        let c = Counter::<u64>::default();
        m.register("things", "Things seen", c.clone());
        let g = Gauge::<i64>::default();
        m.register("level", "Current level", g.clone());
        let g2 = g.clone();
        m.on_scrape(move || {
            g2.set(42);
        });
        c.inc_by(3);
        let text = m.encode();
        assert!(text.contains("things_total 3"), "{text}");
        assert!(text.contains("level 42"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn a_node_label_reaches_every_metric_registered_after_it() {
        let m = MetricsRegistry::new();
        let before = Counter::<u64>::default();
        m.register("before", "Before", before.clone());
        m.add_label("edge_location", "fra1");
        let after = Counter::<u64>::default();
        m.register("after", "After", after.clone());
        after.inc();
        let text = m.encode();
        assert!(
            text.contains("after_total{edge_location=\"fra1\"} 1"),
            "{text}"
        );
        assert!(text.contains("before_total 0"), "{text}");
    }

    #[tokio::test]
    async fn serves_metrics_over_http() {
        let m = MetricsRegistry::new();
        let c = Counter::<u64>::default();
        m.register("served", "Served", c.clone());
        c.inc();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn({
            let m = m.clone();
            async move {
                m.serve(listener, async {
                    let _ = stopped.await;
                })
                .await
            }
        });
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).await.unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert!(resp.contains("application/openmetrics-text"), "{resp}");
        assert!(resp.contains("served_total 1"), "{resp}");
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }
}
