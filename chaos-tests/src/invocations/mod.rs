//! The invocation side of the cluster under faults: gateways (Compose services) and
//! workers, a function whose every invocation reports to the runner's [`Counter`], and
//! the scenarios that kill a worker mid-invocation, kill a gateway right after it
//! accepted async events, and restart every node under load.
//!
//! Workers are started with `docker run` and the capabilities the sandbox needs spelled
//! out, on the Compose project's `control` network: Docker Engines that themselves lack a
//! capability (nested engines, like this project's CI machines) refuse `privileged`, and
//! docker-compose 1.x cannot express `systempaths=unconfined` (docs/operations.md).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use nimbus_gateway::client::{Credentials, LambdaClientError, LambdaConnection, Reply};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::counter::Counter;
use crate::docker::{self, Compose, DockerError};
use crate::scenario::{MetaCluster, Pace, RECOVERY_BOUND};
use crate::summary::{longest_gap_ms, Summary};

/// The gateways' Compose services and where their Lambda API is published on the host.
pub const GATEWAYS: [(&str, &str); 2] = [
    ("gateway1", "172.28.1.21:9000"),
    ("gateway2", "172.28.1.22:9000"),
];
/// (container suffix, fixed address on `control`, zone) of each worker.
pub const WORKERS: [(&str, &str, &str); 2] = [
    ("worker-a1", "172.28.0.31", "us-east-1a"),
    ("worker-b1", "172.28.0.32", "us-east-1b"),
];
/// The host as the containers see it (the `control` network's gateway): the counter.
pub const HOST_IP: &str = "172.28.0.1";
pub const ACCOUNT: &str = "123456789012";
pub const ACCESS_KEY_ID: &str = "AKIANIMBUSCHAOS00001";
/// Passed to Compose's `bootstrap` service as NIMBUS_SECRET_ACCESS_KEY.
pub const SECRET_ACCESS_KEY: &str = "nimbus-chaos-secret-access-key-00000000";
/// The reserved concurrency of each scenario's function: the limit checked from inside.
pub const LIMIT: u32 = 4;
/// The rolling restart's limit: far above its load, so that a throttle there can only
/// come from the restart (a lease lost), not from cold starts pushing the load to it.
pub const ROLLING_LIMIT: u32 = 10;

/// The handler: holds a connection to the counter for as long as it runs.
const FUNCTION: &str = r#"import socket, time

def handler(event, context):
    s = socket.create_connection((event["host"], event["port"]), timeout=10)
    s.sendall(("B %s %s %.6f\n" % (event["scope"], event["id"], time.time())).encode())
    end = time.time() + event.get("sleep", 0.2)
    while time.time() < end:
        time.sleep(min(0.05, max(0.0, end - time.time())))
        s.sendall((". %.6f\n" % time.time()).encode())
    s.sendall(("E %.6f\n" % time.time()).encode())
    s.close()
    return {"id": event["id"]}
"#;

/// Gateways, workers and the counter the functions report to.
pub struct InvocationCluster {
    pub compose: Compose,
    pub image: String,
    pub meta_addrs: String,
    pub counter: Counter,
}

impl InvocationCluster {
    /// Starts the account bootstrap, both gateways and both workers next to the running
    /// metadata cluster, and waits until an invocation succeeds.
    pub async fn start(meta: &MetaCluster, image: &str) -> anyhow::Result<Self> {
        let cluster = Self {
            compose: meta.compose.clone(),
            image: image.to_string(),
            meta_addrs: meta.addrs().join(","),
            counter: Counter::start().await?,
        };
        cluster.remove_workers().await;
        cluster
            .compose
            .up(&["bootstrap", "gateway1", "gateway2"])
            .await?;
        for i in 0..WORKERS.len() {
            cluster.run_worker(i).await?;
        }
        let probe = cluster.create_function("chaos-probe", None).await?;
        let start = Instant::now();
        loop {
            let r = cluster
                .api()
                .invoke_sync(0, &probe, &cluster.event(&probe, "probe", 0.0))
                .await;
            if r == SyncOutcome::Ok {
                break;
            }
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(120),
                "no invocation succeeded through the cluster: {r:?}"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Ok(cluster)
    }

    pub fn worker_container(&self, i: usize) -> String {
        format!("{}_{}", self.compose.project, WORKERS[i].0)
    }

    /// `docker run` of worker `i` with exactly what the sandbox needs.
    async fn run_worker(&self, i: usize) -> Result<(), DockerError> {
        let (name, ip, zone) = WORKERS[i];
        let container = self.worker_container(i);
        let network = format!("{}_control", self.compose.project);
        let advertise = format!("{ip}:18001");
        let args = [
            "run",
            "-d",
            "--name",
            &container,
            "--hostname",
            name,
            "--network",
            &network,
            "--ip",
            ip,
            "--cap-add",
            "ALL",
            "--cap-drop",
            "SYS_RESOURCE",
            "--security-opt",
            "seccomp=unconfined",
            "--security-opt",
            "apparmor=unconfined",
            "--security-opt",
            "systempaths=unconfined",
            "-v",
            "/sys/fs/cgroup:/sys/fs/cgroup:rw",
            "-v",
            "/dev:/dev",
            "--device-cgroup-rule",
            "b 7:* rmw",
            "--device-cgroup-rule",
            "c 10:237 rmw",
            "-e",
            "RUST_LOG=info",
            &self.image,
            "worker",
            "--data-dir",
            "/var/lib/nimbus",
            "--listen",
            "0.0.0.0:18001",
            "--advertise",
            &advertise,
            "--meta",
            &self.meta_addrs,
            "--region",
            "us-east-1",
            "--zone",
            zone,
            "--memory-mb",
            "2048",
            "--heartbeat-ms",
            "1000",
        ];
        docker::run("docker", &args, &[]).await.map(drop)
    }

    pub async fn kill_worker(&self, i: usize) -> Result<(), DockerError> {
        docker::run(
            "docker",
            &["kill", "-s", "KILL", &self.worker_container(i)],
            &[],
        )
        .await
        .map(drop)
    }

    pub async fn start_worker(&self, i: usize) -> Result<(), DockerError> {
        docker::run("docker", &["start", &self.worker_container(i)], &[])
            .await
            .map(drop)
    }

    /// SIGTERM: the worker deregisters, refuses new work, finishes what it runs, exits.
    pub async fn stop_worker(&self, i: usize) -> Result<(), DockerError> {
        docker::run(
            "docker",
            &["stop", "-t", "30", &self.worker_container(i)],
            &[],
        )
        .await
        .map(drop)
    }

    /// Removes the worker containers (Compose does not know them).
    pub async fn remove_workers(&self) {
        for i in 0..WORKERS.len() {
            let _ = docker::run("docker", &["rm", "-f", &self.worker_container(i)], &[]).await;
        }
    }

    pub fn api(&self) -> Api {
        Api {
            gateways: GATEWAYS.iter().map(|g| g.1.to_string()).collect(),
            credentials: Credentials {
                access_key_id: ACCESS_KEY_ID.into(),
                secret_access_key: SECRET_ACCESS_KEY.into(),
                region: "us-east-1".into(),
            },
        }
    }

    /// The event a function invocation gets: where to report, under which id.
    pub fn event(&self, scope: &str, id: &str, sleep_s: f64) -> Bytes {
        Bytes::from(
            serde_json::json!({
                "host": HOST_IP, "port": self.counter.port, "scope": scope, "id": id,
                "sleep": sleep_s,
            })
            .to_string(),
        )
    }

    /// Creates the chaos function (its name is also the counter scope), with a reserved
    /// concurrency when given.
    pub async fn create_function(
        &self,
        name: &str,
        reserved: Option<u32>,
    ) -> anyhow::Result<String> {
        use base64::Engine;
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        zip.start_file("app.py", zip::write::SimpleFileOptions::default())?;
        std::io::Write::write_all(&mut zip, FUNCTION.as_bytes())?;
        let code = base64::engine::general_purpose::STANDARD.encode(zip.finish()?.into_inner());
        let api = self.api();
        let body = serde_json::json!({
            "FunctionName": name, "Runtime": "python3.11", "Handler": "app.handler",
            "Role": format!("arn:aws:iam::{ACCOUNT}:role/chaos"), "Timeout": 10,
            "MemorySize": 128, "Code": {"ZipFile": code},
        });
        let r = api
            .call("POST", "/2015-03-31/functions", body.to_string())
            .await?;
        anyhow::ensure!(
            r.status == 201 || r.status == 409,
            "CreateFunction {name}: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        if let Some(n) = reserved {
            let path = format!("/2017-10-31/functions/{name}/concurrency");
            let body = serde_json::json!({"ReservedConcurrentExecutions": n}).to_string();
            let r = api.call("PUT", &path, body).await?;
            anyhow::ensure!(
                r.status == 200,
                "PutFunctionConcurrency {name}: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
        }
        Ok(name.to_string())
    }
}

/// How a sync invocation ended, after the retries an AWS SDK makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncOutcome {
    Ok,
    /// Still throttled (429) after every retry: the limit held, nothing failed.
    Throttled,
    /// An error the caller sees: a 5xx, a function error, a cut or timed-out exchange.
    Failed(String),
}

/// A Lambda API client over both gateways that behaves like an AWS SDK in its standard
/// retry mode: a request that never reached a gateway (connection refused) and a 429
/// are retried with backoff, on the other gateway for connection failures. Anything else
/// is the caller's answer; in particular a 5xx is a failure here (stricter than the SDKs,
/// which retry those too).
#[derive(Clone)]
pub struct Api {
    pub gateways: Vec<String>,
    pub credentials: Credentials,
}

const ATTEMPTS: u32 = 8;

impl Api {
    /// A new connection; a gateway that does not accept within a second is treated as
    /// unreachable (a dead container's address answers nothing, not even a refusal).
    async fn connect(&self, addr: &str) -> Result<LambdaConnection, LambdaClientError> {
        match tokio::time::timeout(
            Duration::from_secs(1),
            LambdaConnection::connect(addr, self.credentials.clone()),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(LambdaClientError::Connect {
                addr: addr.into(),
                source: std::io::ErrorKind::TimedOut.into(),
            }),
        }
    }

    /// One request to the first gateway that accepts a connection.
    pub async fn call(&self, method: &str, path: &str, body: String) -> anyhow::Result<Reply> {
        let mut last = None;
        for attempt in 0..ATTEMPTS {
            let addr = &self.gateways[attempt as usize % self.gateways.len()];
            match self.connect(addr).await {
                Ok(mut c) => return Ok(c.send(method, path, "", &[], Bytes::from(body)).await?),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
        Err(last.map_or_else(|| anyhow::anyhow!("no gateway"), Into::into))
    }

    pub async fn invoke_sync(&self, client: usize, function: &str, payload: &Bytes) -> SyncOutcome {
        let mut gw = client % self.gateways.len();
        let mut throttled = false;
        for attempt in 0..ATTEMPTS {
            let addr = &self.gateways[gw];
            let reply = match self.connect(addr).await {
                Ok(mut c) => c.invoke(function, payload, &[]).await,
                Err(e) => Err(e),
            };
            match reply {
                Ok(r) if r.status == 200 && r.header("x-amz-function-error").is_none() => {
                    return SyncOutcome::Ok
                }
                Ok(r) if r.status == 429 => throttled = true,
                Ok(r) => {
                    return SyncOutcome::Failed(format!(
                        "{} {} {}",
                        r.status,
                        r.header("x-amz-function-error").unwrap_or(""),
                        String::from_utf8_lossy(&r.body)
                    ))
                }
                // Never reached the gateway: safe to send again, elsewhere.
                Err(LambdaClientError::Connect { .. }) => {
                    gw = (gw + 1) % self.gateways.len();
                    throttled = false;
                }
                Err(e) => return SyncOutcome::Failed(e.to_string()),
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
        if throttled {
            SyncOutcome::Throttled
        } else {
            SyncOutcome::Failed("no gateway reachable".into())
        }
    }

    /// A GET (no body) to the first gateway that accepts a connection.
    pub async fn get(&self, path: &str, query: &str) -> anyhow::Result<Reply> {
        let mut last = None;
        for attempt in 0..ATTEMPTS {
            let addr = &self.gateways[attempt as usize % self.gateways.len()];
            match self.connect(addr).await {
                Ok(mut c) => return Ok(c.send("GET", path, query, &[], Bytes::new()).await?),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
        Err(last.map_or_else(|| anyhow::anyhow!("no gateway"), Into::into))
    }

    /// `Event` invocation through one gateway; true when it answered 202 (accepted).
    pub async fn invoke_async(&self, gateway: usize, function: &str, payload: &Bytes) -> bool {
        let addr = &self.gateways[gateway % self.gateways.len()];
        let Ok(mut c) = self.connect(addr).await else {
            return false;
        };
        matches!(
            c.invoke(function, payload, &[("x-amz-invocation-type", "Event")]).await,
            Ok(r) if r.status == 202
        )
    }
}

/// 50 ms, doubling, capped at 1.6 s (about 6 s over all attempts).
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(50u64 << attempt.min(5))
}

/// What the invocation clients saw.
#[derive(Debug, Default)]
pub struct InvokeObservations {
    pub ops: AtomicU64,
    pub ok: AtomicU64,
    pub throttled: AtomicU64,
    pub failed: AtomicU64,
    pub first_failure: Mutex<Option<String>>,
    /// Completion times (ns since `origin`) of successful sync invocations.
    pub successes: Mutex<Vec<u64>>,
    /// Ids of async events a gateway accepted with 202.
    pub accepted: Mutex<Vec<String>>,
    /// Versions whose PublishVersion was acknowledged (201).
    pub acked_versions: Mutex<Vec<u64>>,
    /// The version the last acknowledged UpdateAlias pointed `live` to.
    pub acked_alias: Mutex<Option<u64>>,
    /// Control-plane calls (update, publish, alias) that did not succeed.
    pub admin_failed: AtomicU64,
}

/// Sync clients and an async producer against one function, until `stop`.
pub struct InvokeWorkload {
    pub api: Api,
    pub function: String,
    pub obs: Arc<InvokeObservations>,
    pub origin: Instant,
    pub sync_sleep_s: f64,
    /// The counter's port (the functions report to it).
    pub counter_port: u16,
}

impl InvokeWorkload {
    pub fn now(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    fn payload(&self, id: &str, sleep_s: f64) -> Bytes {
        Bytes::from(
            serde_json::json!({
                "host": HOST_IP, "port": self.counter_port, "scope": self.function, "id": id,
                "sleep": sleep_s,
            })
            .to_string(),
        )
    }

    /// UpdateFunctionConfiguration (a new description, so the publish makes a new
    /// version), PublishVersion, UpdateAlias `live`; records what was acknowledged.
    async fn publish_and_move_alias(&self, n: u64) -> bool {
        let f = &self.function;
        let update = serde_json::json!({"Description": format!("rev {n}")}).to_string();
        let ok = |r: &anyhow::Result<Reply>, status| matches!(r, Ok(r) if r.status == status);
        let r = self
            .api
            .call(
                "PUT",
                &format!("/2015-03-31/functions/{f}/configuration"),
                update,
            )
            .await;
        if !ok(&r, 200) {
            return false;
        }
        let r = self
            .api
            .call(
                "POST",
                &format!("/2015-03-31/functions/{f}/versions"),
                "{}".into(),
            )
            .await;
        let version = match &r {
            Ok(r) if r.status == 201 => serde_json::from_slice::<serde_json::Value>(&r.body)
                .ok()
                .and_then(|v| v["Version"].as_str().and_then(|s| s.parse::<u64>().ok())),
            _ => None,
        };
        let Some(version) = version else {
            return false;
        };
        self.obs
            .acked_versions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(version);
        let body = serde_json::json!({"FunctionVersion": version.to_string()}).to_string();
        let r = self
            .api
            .call(
                "PUT",
                &format!("/2015-03-31/functions/{f}/aliases/live"),
                body,
            )
            .await;
        if !ok(&r, 200) {
            return false;
        }
        *self
            .obs
            .acked_alias
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(version);
        true
    }

    /// Acknowledged control-plane writes missing after the faults: versions that are not
    /// listed, plus one if `live` points below the last acknowledged UpdateAlias (a later
    /// update whose answer was lost may have moved it further; that is not a loss).
    pub async fn lost_writes(&self) -> anyhow::Result<(usize, String)> {
        let f = &self.function;
        let mut listed = std::collections::HashSet::new();
        let mut marker = String::new();
        loop {
            let path = format!("/2015-03-31/functions/{f}/versions");
            let query = if marker.is_empty() {
                "MaxItems=50".to_string()
            } else {
                format!("Marker={marker}&MaxItems=50")
            };
            let reply = self.api.get(&path, &query).await?;
            anyhow::ensure!(
                reply.status == 200,
                "ListVersionsByFunction: {}",
                reply.status
            );
            let v: serde_json::Value = serde_json::from_slice(&reply.body)?;
            for e in v["Versions"].as_array().into_iter().flatten() {
                if let Some(n) = e["Version"].as_str().and_then(|s| s.parse::<u64>().ok()) {
                    listed.insert(n);
                }
            }
            match v["NextMarker"].as_str() {
                Some(m) if !m.is_empty() => marker = m.to_string(),
                _ => break,
            }
        }
        let acked = self
            .obs
            .acked_versions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let missing: Vec<u64> = acked
            .iter()
            .copied()
            .filter(|v| !listed.contains(v))
            .collect();
        let mut lost = missing.len();
        let mut notes = if missing.is_empty() {
            String::new()
        } else {
            format!("acknowledged versions missing: {missing:?}")
        };
        let acked_alias = *self
            .obs
            .acked_alias
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(want) = acked_alias {
            let reply = self
                .api
                .get(&format!("/2015-03-31/functions/{f}/aliases/live"), "")
                .await?;
            let v: serde_json::Value = serde_json::from_slice(&reply.body)?;
            let now = v["FunctionVersion"]
                .as_str()
                .and_then(|s| s.parse::<u64>().ok());
            if now.is_none_or(|n| n < want) {
                lost += 1;
                notes = format!("{notes} alias live is at {now:?}, acknowledged {want}");
            }
        }
        Ok((lost, notes))
    }

    pub async fn run(
        self: Arc<Self>,
        sync_clients: usize,
        async_every: Option<Duration>,
        stop: Arc<AtomicBool>,
    ) {
        let mut tasks = Vec::new();
        for client in 0..sync_clients {
            let (w, stop) = (self.clone(), stop.clone());
            let mut n = 0u64;
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let payload = w.payload(&format!("s{client}-{n}"), w.sync_sleep_s);
                    w.obs.ops.fetch_add(1, Ordering::Relaxed);
                    let live = format!("{}:live", w.function);
                    match w.api.invoke_sync(client, &live, &payload).await {
                        SyncOutcome::Ok => {
                            w.obs.ok.fetch_add(1, Ordering::Relaxed);
                            let t = w.now();
                            w.obs
                                .successes
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push(t);
                        }
                        SyncOutcome::Throttled => {
                            w.obs.throttled.fetch_add(1, Ordering::Relaxed);
                            eprintln!(
                                "  [{:.1}s] a sync invocation is still throttled after retries",
                                w.now() as f64 / 1e9
                            );
                        }
                        SyncOutcome::Failed(e) => {
                            w.obs.failed.fetch_add(1, Ordering::Relaxed);
                            w.obs
                                .first_failure
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .get_or_insert(e);
                        }
                    }
                }
            }));
        }
        // The control plane at the same time: a configuration update, a publish and the
        // `live` alias moved to the new version, every second.
        {
            let (w, stop) = (self.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    w.obs.ops.fetch_add(1, Ordering::Relaxed);
                    if !w.publish_and_move_alias(n).await {
                        w.obs.admin_failed.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }));
        }
        if let Some(every) = async_every {
            let (w, stop) = (self.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let id = format!("ev-{n}");
                    let payload = w.payload(&id, 0.1);
                    w.obs.ops.fetch_add(1, Ordering::Relaxed);
                    if w.api.invoke_async(n as usize, &w.function, &payload).await {
                        w.obs
                            .accepted
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(id);
                    }
                    tokio::time::sleep(every).await;
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}

/// The invocation fault kinds, one scenario each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvocationFault {
    /// kill -9 of a worker's container while invocations run on it, restarted later.
    KillWorker,
    /// A burst of async events accepted by one gateway, which is killed right after.
    KillGatewayAfterAccept,
    /// Every node (metadata, gateways, workers) stopped cleanly and restarted, one at a
    /// time, under load: no sync invocation may fail.
    RollingRestart,
}

impl InvocationFault {
    pub const ALL: [InvocationFault; 3] = [
        InvocationFault::KillWorker,
        InvocationFault::KillGatewayAfterAccept,
        InvocationFault::RollingRestart,
    ];

    pub fn name(self) -> &'static str {
        match self {
            InvocationFault::KillWorker => "inv-kill-worker",
            InvocationFault::KillGatewayAfterAccept => "inv-kill-gateway-after-202",
            InvocationFault::RollingRestart => "inv-rolling-restart",
        }
    }
}

/// A new metadata leader's concurrency-lease warm-up (`nimbus_meta::service::LEASE`),
/// plus a second.
const LEASE_WARM_UP: Duration = Duration::from_secs(6);

/// How long accepted events may take to run after the faults healed.
const DRAIN_BOUND: Duration = Duration::from_secs(120);

/// Runs one invocation scenario on the running cluster.
pub async fn run(
    meta: &MetaCluster,
    cluster: &InvocationCluster,
    fault: InvocationFault,
    seed: u64,
    pace: Pace,
) -> anyhow::Result<Summary> {
    let mut rng = StdRng::seed_from_u64(seed ^ (0x100 + fault as u64));
    let name = fault.name();
    let limit = match fault {
        InvocationFault::RollingRestart => ROLLING_LIMIT,
        _ => LIMIT,
    };
    let function = cluster
        .create_function(&format!("{name}-{seed}"), Some(limit))
        .await?;
    let api = cluster.api();
    let r = api
        .call(
            "POST",
            &format!("/2015-03-31/functions/{function}/versions"),
            "{}".into(),
        )
        .await?;
    anyhow::ensure!(
        r.status == 201,
        "PublishVersion: {} {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    let body = serde_json::json!({"Name": "live", "FunctionVersion": "1"}).to_string();
    let r = api
        .call(
            "POST",
            &format!("/2015-03-31/functions/{function}/aliases"),
            body,
        )
        .await?;
    anyhow::ensure!(
        r.status == 201,
        "CreateAlias: {} {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    let workload = Arc::new(InvokeWorkload {
        api: cluster.api(),
        function: function.clone(),
        obs: Arc::default(),
        origin: Instant::now(),
        sync_sleep_s: 0.2,
        counter_port: cluster.counter.port,
    });
    // More sync clients than the limit (so it is pressed) except in the rolling restart,
    // where a throttle counts as a failure: there 2 sync clients and an event every
    // 500 ms stay far below its limit even while cold starts (each published version,
    // every environment after a worker restart) make invocations longer.
    let (sync_clients, async_every) = match fault {
        InvocationFault::RollingRestart => (2, Some(Duration::from_millis(500))),
        _ => (
            pace.clients.max(LIMIT as usize + 2),
            Some(Duration::from_millis(100)),
        ),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn(
        workload
            .clone()
            .run(sync_clients, async_every, stop.clone()),
    );
    let began = workload.now();
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut faults = 0u32;
    let mut unrecovered = 0;
    let hold = Duration::from_millis(rng.gen_range(1_000..=pace.max_hold.as_millis() as u64));
    match fault {
        InvocationFault::KillWorker => {
            // The worker running the most invocations (as the functions' source addresses
            // show), once some run, so the kill lands in the middle of them; the seed
            // breaks ties.
            let t = Instant::now();
            let mut i = rng.gen_range(0..WORKERS.len());
            while t.elapsed() < Duration::from_secs(10) {
                let from = cluster.counter.running_from(&function);
                let busiest = (0..WORKERS.len()).max_by_key(|&k| {
                    let ip: std::net::IpAddr = WORKERS[k].1.parse().expect("worker address");
                    (from.get(&ip).copied().unwrap_or(0), k == i)
                });
                if let Some(b) = busiest {
                    let ip: std::net::IpAddr = WORKERS[b].1.parse().expect("worker address");
                    if from.get(&ip).copied().unwrap_or(0) > 0 {
                        i = b;
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let ip: std::net::IpAddr = WORKERS[i].1.parse().expect("worker address");
            let running = cluster
                .counter
                .running_from(&function)
                .get(&ip)
                .copied()
                .unwrap_or(0);
            cluster.kill_worker(i).await?;
            faults += 1;
            eprintln!(
                "  killed {} with {running} invocation(s) running on it",
                WORKERS[i].0
            );
            tokio::time::sleep(hold).await;
            cluster.start_worker(i).await?;
        }
        InvocationFault::KillGatewayAfterAccept => {
            let g = rng.gen_range(0..GATEWAYS.len());
            let api = cluster.api();
            let mut burst = Vec::new();
            for n in 0..30 {
                let id = format!("burst-{n}");
                let payload = cluster.event(&function, &id, 0.1);
                if api.invoke_async(g, &function, &payload).await {
                    burst.push(id);
                }
            }
            // Right after the last 202: kill -9, before its dispatcher could run them all.
            meta.compose.kill(GATEWAYS[g].0).await?;
            faults += 1;
            eprintln!(
                "  {} accepted {} events, then was killed",
                GATEWAYS[g].0,
                burst.len()
            );
            workload
                .obs
                .accepted
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(burst);
            tokio::time::sleep(hold).await;
            meta.compose.start(GATEWAYS[g].0).await?;
        }
        InvocationFault::RollingRestart => {
            // The procedure in docs/operations.md: followers first, the leader last, each
            // serving again before the next; after the leader, wait out the new leader's
            // lease warm-up (it renews what gateways hold but grants nothing new for one
            // lease, docs/design/0005-admission.md) before restarting gateways, whose
            // clients then move to the other gateway and need more slots there.
            let leader = meta.leader(RECOVERY_BOUND).await?;
            let order: Vec<usize> = (0..meta.nodes.len())
                .filter(|&i| i != leader)
                .chain([leader])
                .collect();
            for i in order {
                let svc = &meta.nodes[i].0;
                eprintln!("  [{:.1}s] restarting {svc}", workload.now() as f64 / 1e9);
                meta.compose.stop(svc).await?;
                meta.compose.start(svc).await?;
                meta.wait_ready(i, RECOVERY_BOUND).await?;
                faults += 1;
            }
            tokio::time::sleep(LEASE_WARM_UP).await;
            for (svc, _) in GATEWAYS {
                eprintln!("  [{:.1}s] restarting {svc}", workload.now() as f64 / 1e9);
                meta.compose.stop(svc).await?;
                meta.compose.start(svc).await?;
                wait_port(GATEWAYS.iter().find(|g| g.0 == svc).map_or("", |g| g.1)).await?;
                faults += 1;
            }
            for (i, (name, ip, _)) in WORKERS.iter().enumerate() {
                eprintln!("  [{:.1}s] restarting {name}", workload.now() as f64 / 1e9);
                cluster.stop_worker(i).await?;
                cluster.start_worker(i).await?;
                // As an operator would: the next one goes once this one serves again (it
                // listens after registering) and gateways have seen a heartbeat.
                wait_port(&format!("{ip}:18001")).await?;
                tokio::time::sleep(Duration::from_secs(2)).await;
                faults += 1;
            }
        }
    }
    let healed = workload.now();
    if !recovered(&workload, healed).await {
        unrecovered += 1;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    running.await?;
    let ended = workload.now();

    // Every accepted event must run to its end (at least once) within the bound.
    let accepted: Vec<String> = workload
        .obs
        .accepted
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let t = Instant::now();
    let lost = loop {
        let (_, completed, _) = cluster.counter.observed(&function);
        let lost: Vec<&String> = accepted
            .iter()
            .filter(|id| !completed.contains(*id))
            .collect();
        if lost.is_empty() || t.elapsed() > DRAIN_BOUND {
            break lost.into_iter().cloned().collect::<Vec<_>>();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let (acked_writes_lost, lost_notes) = workload.lost_writes().await?;
    let (max, _, cut_short) = cluster.counter.observed(&function);
    let obs = &workload.obs;
    let failed = obs.failed.load(Ordering::Relaxed);
    let successes = obs
        .successes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mut notes = Vec::new();
    if acked_writes_lost > 0 {
        notes.push(lost_notes);
    }
    if max > limit {
        notes.push(format!(
            "{max} invocations overlapped (limit {limit}): {}",
            cluster.counter.witness(&function)
        ));
    }
    if !lost.is_empty() {
        notes.push(format!(
            "{} accepted event(s) never completed, e.g. {}",
            lost.len(),
            lost[0]
        ));
    }
    if unrecovered > 0 {
        notes.push(format!(
            "no successful invocation within {RECOVERY_BOUND:?} of healing"
        ));
    }
    // Killing a worker or a gateway fails the sync invocations running through it (they
    // may have run, so they are not retried); a clean restart must fail none.
    let failures_allowed = fault != InvocationFault::RollingRestart;
    // Below the limit (the rolling restart), a call still throttled after the SDK-style
    // retries is a failure too: nothing but the restart could have caused it.
    let throttled = obs.throttled.load(Ordering::Relaxed);
    if throttled > 0 && !failures_allowed {
        notes.push(format!(
            "{throttled} sync invocation(s) still throttled after retries"
        ));
    }
    if failed > 0 && !failures_allowed {
        notes.push(format!(
            "{failed} sync invocation(s) failed: {}",
            obs.first_failure
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .unwrap_or_default()
        ));
    }
    eprintln!(
        "  versions published={} (control-plane calls failed: {}); sync ok={} throttled={} failed={failed}; events accepted={} completed={}; cut short={cut_short}",
        obs.acked_versions.lock().unwrap_or_else(|e| e.into_inner()).len(),
        obs.admin_failed.load(Ordering::Relaxed),
        obs.ok.load(Ordering::Relaxed),
        obs.throttled.load(Ordering::Relaxed),
        accepted.len(),
        accepted.len() - lost.len(),
    );
    Ok(Summary {
        scenario: name.into(),
        seed,
        ops: obs.ops.load(Ordering::Relaxed),
        faults,
        acked_writes_lost,
        events_lost: lost.len(),
        max_concurrency: (max, limit),
        longest_unavailable_ms: longest_gap_ms(&successes, began, ended),
        // No register history in these scenarios: nothing to contradict.
        linearizable: true,
        recovered: unrecovered == 0 && (failures_allowed || failed + throttled == 0),
        notes: notes.join("; "),
    })
}

/// A successful sync invocation completed after `healed`, within the bound.
async fn recovered(w: &InvokeWorkload, healed: u64) -> bool {
    let t = Instant::now();
    while t.elapsed() < RECOVERY_BOUND {
        if w.obs
            .successes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|s| *s >= healed)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn wait_port(addr: &str) -> anyhow::Result<()> {
    let t = Instant::now();
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        anyhow::ensure!(
            t.elapsed() < RECOVERY_BOUND,
            "{addr} not listening within {RECOVERY_BOUND:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}
