//! [`BoundedBatchProcessor`]: finished spans go into a bounded queue and a tokio task
//! exports them in batches. Ending a span never waits: when the queue is full (the
//! collector is slow or down) the span is dropped and counted, so an invocation is never
//! slowed by its own tracing.
//!
//! Why not the SDK's `BatchSpanProcessor`: it exports from a dedicated thread with a
//! blocking executor, which the async HTTP client cannot run on, and it keeps its drop
//! count to itself; here the count is a Prometheus counter and both OTLP transports run
//! on the process's tokio runtime.
//!
//! The export task is woken only when a batch is full (or by its timer), not for every
//! span: with every trace exported, a wake-up per span was thousands of task wake-ups and
//! thread unparks a second (docs/benchmarks.md, "Where tracing's CPU goes").

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use opentelemetry_sdk::Resource;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::{mpsc, oneshot, Notify};

use crate::otlp::QueueConfig;

/// What the export task is asked to do besides exporting.
enum Control {
    /// Export everything queued, then answer.
    Flush(oneshot::Sender<()>),
    /// Export everything queued, shut the exporter down, answer and stop.
    Shutdown(oneshot::Sender<()>),
}

/// Counters a [`BoundedBatchProcessor`] keeps (shared with the metrics registry).
#[derive(Clone, Debug, Default)]
pub struct QueueCounters {
    /// Spans dropped because the queue was full.
    pub dropped: Counter,
    /// Spans handed to the exporter successfully.
    pub exported: Counter,
    /// Export requests that failed or timed out.
    pub failed_exports: Counter,
}

/// Flushes and stops a processor from async code (the SDK's own hooks are synchronous
/// and must not block a runtime thread).
#[derive(Clone, Debug)]
pub struct BatchHandle {
    control: mpsc::UnboundedSender<Control>,
}

impl BatchHandle {
    /// Exports everything queued so far; gives up after `timeout`.
    pub async fn flush(&self, timeout: Duration) -> bool {
        self.ask(Control::Flush, timeout).await
    }

    /// Exports what is queued and stops the export task; gives up after `timeout`.
    pub async fn shutdown(&self, timeout: Duration) -> bool {
        self.ask(Control::Shutdown, timeout).await
    }

    async fn ask(&self, make: fn(oneshot::Sender<()>) -> Control, timeout: Duration) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.control.send(make(tx)).is_err() {
            return false;
        }
        matches!(tokio::time::timeout(timeout, rx).await, Ok(Ok(())))
    }
}

/// Finished spans waiting for export, shared by the processor and the export task.
#[derive(Debug)]
struct Queue {
    spans: Mutex<Vec<SpanData>>,
    /// Told when the queue holds a full batch.
    batch_full: Notify,
    /// Spans held at most.
    capacity: usize,
    /// Spans per export.
    batch_size: usize,
}

impl Queue {
    /// Queues `span`; false when the queue is full.
    fn push(&self, span: SpanData) -> bool {
        let len = {
            let mut spans = self.spans.lock().unwrap_or_else(PoisonError::into_inner);
            if spans.len() >= self.capacity {
                return false;
            }
            spans.push(span);
            spans.len()
        };
        if len == self.batch_size {
            self.batch_full.notify_one();
        }
        true
    }

    /// The oldest spans, at most a batch of them; with `only_full`, none unless a
    /// whole batch is queued.
    fn take(&self, only_full: bool) -> Vec<SpanData> {
        let mut spans = self.spans.lock().unwrap_or_else(PoisonError::into_inner);
        if spans.len() <= self.batch_size {
            if only_full && spans.len() < self.batch_size {
                return Vec::new();
            }
            return std::mem::take(&mut *spans);
        }
        spans.drain(..self.batch_size).collect()
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct BoundedBatchProcessor {
    queue: Arc<Queue>,
    control: mpsc::UnboundedSender<Control>,
    counters: QueueCounters,
}

impl BoundedBatchProcessor {
    /// Starts the export task on the current tokio runtime.
    pub fn start<E: SpanExporter + 'static>(
        exporter: E,
        config: QueueConfig,
        counters: QueueCounters,
    ) -> (Self, BatchHandle) {
        let queue = Arc::new(Queue {
            spans: Mutex::new(Vec::new()),
            batch_full: Notify::new(),
            capacity: config.max_queue_size.max(1),
            batch_size: config.max_export_batch_size.max(1),
        });
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        tokio::spawn(export_loop(
            exporter,
            config,
            queue.clone(),
            control_rx,
            counters.clone(),
        ));
        (
            BoundedBatchProcessor {
                queue,
                control: control_tx.clone(),
                counters,
            },
            BatchHandle {
                control: control_tx,
            },
        )
    }
}

impl SpanProcessor for BoundedBatchProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if !self.queue.push(span) {
            self.counters.dropped.inc();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        // Asked for, not awaited: this hook is synchronous. `BatchHandle::flush` waits.
        let (tx, _rx) = oneshot::channel();
        self.control
            .send(Control::Flush(tx))
            .map_err(|_| OTelSdkError::AlreadyShutdown)
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        let (tx, _rx) = oneshot::channel();
        self.control
            .send(Control::Shutdown(tx))
            .map_err(|_| OTelSdkError::AlreadyShutdown)
    }

    fn set_resource(&mut self, _resource: &Resource) {}
}

/// Exports full batches as they fill, everything queued on each tick of
/// `OTEL_BSP_SCHEDULE_DELAY`, and everything on a flush or at shutdown. Ends when the
/// processor and its handle are gone, or at shutdown.
async fn export_loop<E: SpanExporter>(
    exporter: E,
    config: QueueConfig,
    queue: Arc<Queue>,
    mut control: mpsc::UnboundedReceiver<Control>,
    counters: QueueCounters,
) {
    // The first tick one delay from now, not at once.
    let first = tokio::time::Instant::now() + config.schedule_delay;
    let mut tick = tokio::time::interval_at(first, config.schedule_delay);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            msg = control.recv() => {
                let Some(msg) = msg else { break };
                export_all(&queue, &exporter, &config, &counters).await;
                match msg {
                    Control::Flush(done) => {
                        let _ = done.send(());
                    }
                    Control::Shutdown(done) => {
                        let _ = exporter.shutdown();
                        let _ = done.send(());
                        break;
                    }
                }
            }
            _ = queue.batch_full.notified() => loop {
                let batch = queue.take(true);
                if batch.is_empty() {
                    break;
                }
                export(&exporter, batch, &config, &counters).await;
            },
            _ = tick.tick() => export_all(&queue, &exporter, &config, &counters).await,
        }
    }
}

/// Exports everything queued, a batch at a time.
async fn export_all<E: SpanExporter>(
    queue: &Queue,
    exporter: &E,
    config: &QueueConfig,
    counters: &QueueCounters,
) {
    loop {
        let batch = queue.take(false);
        if batch.is_empty() {
            break;
        }
        export(exporter, batch, config, counters).await;
    }
}

async fn export<E: SpanExporter>(
    exporter: &E,
    spans: Vec<SpanData>,
    config: &QueueConfig,
    counters: &QueueCounters,
) {
    let n = spans.len() as u64;
    match tokio::time::timeout(config.export_timeout, exporter.export(spans)).await {
        Ok(Ok(())) => {
            counters.exported.inc_by(n);
        }
        Ok(Err(e)) => {
            counters.failed_exports.inc();
            counters.dropped.inc_by(n);
            tracing::debug!(target: "nimbus_telemetry", error = %e, spans = n, "span export failed");
        }
        Err(_) => {
            counters.failed_exports.inc();
            counters.dropped.inc_by(n);
            tracing::debug!(target: "nimbus_telemetry", spans = n, "span export timed out");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::{Tracer, TracerProvider};
    use opentelemetry_sdk::trace::SdkTracerProvider;

    use super::*;

    /// An exporter that keeps what it gets, or hangs forever like a blackholed collector.
    #[derive(Debug, Clone, Default)]
    struct Collect {
        got: Arc<Mutex<Vec<String>>>,
        hang: bool,
    }

    impl SpanExporter for Collect {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            if self.hang {
                std::future::pending::<()>().await;
            }
            let mut got = self.got.lock().unwrap();
            got.extend(batch.into_iter().map(|s| s.name.to_string()));
            Ok(())
        }
    }

    fn config(queue: usize) -> QueueConfig {
        QueueConfig {
            max_queue_size: queue,
            max_export_batch_size: 8,
            schedule_delay: Duration::from_secs(3600),
            export_timeout: Duration::from_secs(3600),
        }
    }

    /// A processor (queue of 100, batches of 8) under a provider, exporting to `Collect`.
    fn started() -> (SdkTracerProvider, Collect, QueueCounters, BatchHandle) {
        let exporter = Collect::default();
        let counters = QueueCounters::default();
        let (p, handle) =
            BoundedBatchProcessor::start(exporter.clone(), config(100), counters.clone());
        let provider = SdkTracerProvider::builder().with_span_processor(p).build();
        (provider, exporter, counters, handle)
    }

    #[tokio::test]
    async fn spans_are_exported_on_flush() {
        let (provider, exporter, counters, handle) = started();
        let tracer = provider.tracer("t");
        for i in 0..20 {
            tracer.in_span(format!("s{i}"), |_| {});
        }
        assert!(handle.flush(Duration::from_secs(5)).await);
        assert_eq!(exporter.got.lock().unwrap().len(), 20);
        assert_eq!(counters.exported.get(), 20);
        assert_eq!(counters.dropped.get(), 0);
        assert!(handle.shutdown(Duration::from_secs(5)).await);
    }

    #[tokio::test]
    async fn a_full_batch_is_exported_without_waiting_for_the_timer() {
        let (provider, exporter, _, _handle) = started();
        let tracer = provider.tracer("t");
        // 8 spans make a batch; the timer is an hour away.
        for i in 0..19 {
            tracer.in_span(format!("s{i}"), |_| {});
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while exporter.got.lock().unwrap().len() < 16 {
            assert!(
                std::time::Instant::now() < deadline,
                "full batches not exported"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let got = exporter.got.lock().unwrap().clone();
        assert_eq!(got.len(), 16, "the last 3 wait for a batch or the timer");
        assert_eq!(got[0], "s0", "oldest first");
    }

    #[tokio::test]
    async fn a_hung_collector_never_blocks_and_drops_are_counted() {
        let exporter = Collect {
            hang: true,
            ..Collect::default()
        };
        let counters = QueueCounters::default();
        let (p, _handle) = BoundedBatchProcessor::start(exporter, config(16), counters.clone());
        let provider = SdkTracerProvider::builder().with_span_processor(p).build();
        let tracer = provider.tracer("t");
        let started = std::time::Instant::now();
        for i in 0..10_000 {
            tracer.in_span(format!("s{i}"), |_| {});
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "ending spans waited for the collector: {:?}",
            started.elapsed()
        );
        // At most the queue plus one batch in the hung export can be held back.
        assert!(
            counters.dropped.get() >= 10_000 - 16 - 8,
            "dropped {}",
            counters.dropped.get()
        );
    }

    #[tokio::test]
    async fn unsampled_spans_are_not_queued() {
        let exporter = Collect::default();
        let counters = QueueCounters::default();
        let (p, handle) =
            BoundedBatchProcessor::start(exporter.clone(), config(100), counters.clone());
        let provider = SdkTracerProvider::builder()
            .with_sampler(opentelemetry_sdk::trace::Sampler::AlwaysOff)
            .with_span_processor(p)
            .build();
        provider.tracer("t").in_span("s", |_| {});
        assert!(handle.flush(Duration::from_secs(5)).await);
        assert!(exporter.got.lock().unwrap().is_empty());
    }
}
