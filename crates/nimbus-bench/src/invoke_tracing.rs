//! Invocation throughput and latency of `nimbus dev` with tracing off, on (every trace
//! exported) and sampled at 10%, in one run: the cost of observability.
//!
//! Each (round, configuration) starts a fresh `nimbus dev` (one at a time: each owns
//! the sandbox cgroup), exporting over OTLP/gRPC to a receiver in this process that only
//! counts spans, creates a Python function, warms one environment per client, then times
//! signed `Invoke` calls from concurrent clients, each on its own keep-alive connection.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine;
use nimbus_gateway::client::{Credentials, LambdaConnection};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tokio::sync::Barrier;

use crate::processes::{free_ports, ProcessGroup};
use crate::workload::RunStats;

/// One way of running `nimbus dev`.
pub struct Setting {
    pub name: &'static str,
    /// `OTEL_*` variables; empty: traces off.
    pub env: Vec<(&'static str, String)>,
}

/// Off, on, and parent-based 10% sampling, all exporting to `endpoint`.
pub fn settings(endpoint: &str) -> Vec<Setting> {
    let otlp = |extra: &[(&'static str, &str)]| {
        let mut env = vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.to_string()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_string()),
            // The endpoint would turn on the metrics push too (once a minute, to a
            // receiver that only counts spans): this measures tracing alone.
            ("OTEL_METRICS_EXPORTER", "none".to_string()),
        ];
        env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        env
    };
    vec![
        Setting {
            name: "tracing off",
            env: vec![],
        },
        Setting {
            name: "tracing on",
            env: otlp(&[]),
        },
        Setting {
            name: "sampled 10%",
            env: otlp(&[
                ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.1"),
            ]),
        },
        // Nothing exported: what the sampling machinery itself costs.
        Setting {
            name: "sampled 0%",
            env: otlp(&[
                ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0"),
            ]),
        },
    ]
}

/// Counts the spans it receives.
#[derive(Clone, Default)]
pub struct SpanCounter(pub Arc<AtomicU64>);

#[tonic::async_trait]
impl TraceService for SpanCounter {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let n: usize = request
            .get_ref()
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        self.0.fetch_add(n as u64, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// Starts the receiver; returns its endpoint URL.
pub async fn start_receiver(counter: SpanCounter) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(counter))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    Ok(format!("http://{addr}"))
}

/// The no-op handler every target runs (`app.py`, handler `app.handler`).
pub const FUNCTION: &str = "def handler(event, context):\n    return {\"ok\": True}\n";

/// A Lambda API endpoint and the credentials to sign requests to it with.
#[derive(Clone)]
pub struct Endpoint {
    pub addr: String,
    pub credentials: Credentials,
}

impl Endpoint {
    pub async fn connect(&self) -> anyhow::Result<LambdaConnection> {
        Ok(LambdaConnection::connect(&self.addr, self.credentials.clone()).await?)
    }

    /// Creates the benchmark's no-op Python function (1,769 MB: one vCPU).
    pub async fn create_function(&self, name: &str) -> anyhow::Result<()> {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        zip.start_file("app.py", zip::write::SimpleFileOptions::default())?;
        std::io::Write::write_all(&mut zip, FUNCTION.as_bytes())?;
        let bytes = zip.finish()?.into_inner();
        let reply = self
            .connect()
            .await?
            .create_function(&serde_json::json!({
                "FunctionName": name,
                "Runtime": "python3.11",
                "Role": "arn:aws:iam::000000000000:role/bench",
                "Handler": "app.handler",
                // One full vCPU (CPU is proportional to memory, as on Lambda): at 128 MB
                // the runtime's 7% CPU quota, not the platform, would set the tail.
                "MemorySize": 1769,
                "Code": {"ZipFile": base64::engine::general_purpose::STANDARD.encode(bytes)},
            }))
            .await?;
        anyhow::ensure!(
            reply.status == 201,
            "CreateFunction answered {}: {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
        Ok(())
    }
}

/// A running `nimbus dev`; dropping it stops the process and removes its data.
pub struct DevProcess {
    pub addr: String,
    processes: ProcessGroup,
}

impl DevProcess {
    pub async fn start(
        nimbus_bin: &Path,
        work_dir: &Path,
        env: &[(&'static str, String)],
    ) -> anyhow::Result<Self> {
        let mut processes = ProcessGroup::new(work_dir, "nimbus-bench-dev-")?;
        let addr = format!("127.0.0.1:{}", free_ports(1)?[0]);
        let mut cmd = Command::new(nimbus_bin);
        cmd.arg("--insecure-plaintext");
        // Room for 8 warm environments of the 1,769 MB function.
        cmd.args(["dev", "--listen", &addr, "--memory-mb", "16384"])
            .arg("--data-dir")
            .arg(processes.dir().join("data"))
            .env("RUST_LOG", "warn")
            .env("OTEL_BSP_SCHEDULE_DELAY", "1000");
        for (k, v) in env {
            cmd.env(k, v);
        }
        processes.spawn("nimbus dev", "dev", cmd)?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while tokio::net::TcpStream::connect(&addr).await.is_err() {
            processes.check_alive()?;
            anyhow::ensure!(Instant::now() < deadline, "nimbus dev did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self { addr, processes })
    }

    /// Where clients reach it, with the credentials `nimbus dev` accepts.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            addr: self.addr.clone(),
            credentials: Credentials {
                access_key_id: "test".into(),
                secret_access_key: "test".into(),
                region: "us-east-1".into(),
            },
        }
    }

    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        self.processes.check_alive()
    }

    /// Stops `nimbus dev` with SIGTERM, which exports its queued spans first.
    pub async fn stop(mut self) {
        self.processes.stop().await;
    }
}

/// Runs `invocations` timed invokes of `function` from `concurrency` clients, after one
/// untimed invoke per client (which also warms one environment per client).
pub async fn run(
    target: &Endpoint,
    function: &str,
    concurrency: usize,
    invocations: u64,
) -> anyhow::Result<RunStats> {
    let barrier = Arc::new(Barrier::new(concurrency + 1));
    let claimed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (barrier, claimed) = (barrier.clone(), claimed.clone());
        let client = target.connect().await;
        let function = function.to_string();
        tasks.push(tokio::spawn(async move {
            let ready = async {
                let mut c = client?;
                invoke(&mut c, &function).await?;
                anyhow::Ok(c)
            }
            .await;
            barrier.wait().await;
            let mut c = ready?;
            let mut latencies = Vec::new();
            while claimed.fetch_add(1, Ordering::Relaxed) < invocations {
                let start = Instant::now();
                invoke(&mut c, &function).await?;
                latencies.push(start.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    barrier.wait().await;
    let start = Instant::now();
    let mut stats = RunStats {
        latencies: Vec::with_capacity(usize::try_from(invocations)?),
        elapsed: Duration::ZERO,
        failures: 0,
        first_error: None,
    };
    for task in tasks {
        match task.await.context("a client task panicked")? {
            Ok(l) => stats.latencies.extend(l),
            Err(e) => {
                stats.failures += 1;
                stats.first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    stats.elapsed = start.elapsed();
    stats.latencies.sort_unstable();
    Ok(stats)
}

async fn invoke(c: &mut LambdaConnection, function: &str) -> anyhow::Result<()> {
    let r = c.invoke(function, b"{}", &[]).await?;
    anyhow::ensure!(
        r.status == 200 && r.header("x-amz-function-error").is_none(),
        "Invoke answered {}: {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    Ok(())
}
