//! The invocation side of the cluster: both gateways (Compose services), both workers
//! (plain `docker run`, see the parent module for why) and the function whose every
//! invocation reports to the runner's [`Counter`].

use std::time::{Duration, Instant};

use bytes::Bytes;
use nimbus_gateway::client::Credentials;

use super::api::{expect_status, Api, SyncOutcome};
use super::{
    ACCESS_KEY_ID, ACCOUNT, EDGE_GATEWAY, EDGE_LOCATION, EDGE_WORKER, GATEWAYS, HOST_IP,
    SECRET_ACCESS_KEY, WORKERS,
};
use crate::counter::Counter;
use crate::docker::{self, Compose, DockerError};
use crate::scenario::MetaCluster;

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
    /// Where each worker's TLS directory is (`TLS/<name>`).
    pub tls: std::path::PathBuf,
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
            tls: meta.tls.clone(),
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
        worker_container(&self.compose, i)
    }

    /// `docker run` of worker `i` with exactly what the sandbox needs.
    async fn run_worker(&self, i: usize) -> Result<(), DockerError> {
        let (name, ip, zone) = WORKERS[i];
        self.run_worker_at(name, ip, &["--zone", zone]).await
    }

    /// `docker run` of node `name` (not a Compose service) at `ip` on `control`, with
    /// `docker_options` and its own certificate only, running `nimbus ARGS`.
    async fn run_node(
        &self,
        name: &str,
        ip: &str,
        docker_options: &[&str],
        args: &[&str],
    ) -> Result<(), DockerError> {
        let container = node_container(&self.compose, name);
        let network = format!("{}_control", self.compose.project);
        // Its own certificate only (a worker's id starts with the certificate's name).
        let tls_mount = format!("{}:/etc/nimbus/tls:ro", self.tls.join(name).display());
        let mut all = vec![
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
        ];
        all.extend_from_slice(docker_options);
        all.extend_from_slice(&[
            "-e",
            "RUST_LOG=info",
            "-v",
            &tls_mount,
            "-e",
            "NIMBUS_TLS_DIR=/etc/nimbus/tls",
            &self.image,
        ]);
        all.extend_from_slice(args);
        docker_cli(&all).await
    }

    /// `docker run` of worker `name` at `ip`, in the site `site` (`--zone Z` or
    /// `--edge-location L`).
    async fn run_worker_at(&self, name: &str, ip: &str, site: &[&str]) -> Result<(), DockerError> {
        let advertise = format!("{ip}:18001");
        // The counter the functions report to listens on the Docker host, a private
        // address that the egress policy denies unless it is allowed.
        let counter_allow = format!("{HOST_IP}/32");
        let sandbox = [
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
        ];
        let args = [
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
            site[0],
            site[1],
            "--memory-mb",
            "2048",
            "--heartbeat-ms",
            "1000",
            "--egress-allow",
            &counter_allow,
        ];
        self.run_node(name, ip, &sandbox, &args).await
    }

    /// Starts the edge location of the edge scenario next to the region: the location,
    /// `budget` of the account's concurrency held by its gateway, its worker and its
    /// gateway (both `docker run`, on `control` with fixed addresses, so a partition can
    /// be drawn around them by address). Waits until its gateway listens.
    pub async fn start_edge(&self, meta: &MetaCluster, budget: u32) -> anyhow::Result<()> {
        let admin = meta.client()?;
        admin
            .write(nimbus_types::Command::PutEdgeLocation {
                region: "us-east-1".into(),
                location: EDGE_LOCATION.into(),
            })
            .await?;
        admin
            .write(nimbus_types::Command::PutEdgeBudget {
                budget: nimbus_types::EdgeBudget {
                    account_id: ACCOUNT.into(),
                    region: "us-east-1".into(),
                    location: EDGE_LOCATION.into(),
                    slots: budget,
                    gateways: vec![EDGE_GATEWAY.0.into()],
                },
            })
            .await?;
        let (name, ip) = EDGE_WORKER;
        self.run_worker_at(name, ip, &["--edge-location", EDGE_LOCATION])
            .await?;
        let (name, ip) = EDGE_GATEWAY;
        // The partition is drawn with iptables inside it.
        let net_admin = ["--cap-add", "NET_ADMIN"];
        let args = [
            "gateway",
            "--listen",
            "0.0.0.0:9000",
            "--meta",
            &self.meta_addrs,
            "--region",
            "us-east-1",
            "--edge-location",
            EDGE_LOCATION,
            "--id",
            name,
            "--create-missing-roles",
        ];
        self.run_node(name, ip, &net_admin, &args).await?;
        super::wait_port(&format!("{ip}:9000")).await
    }

    /// The edge location's gateway only.
    pub fn edge_api(&self) -> Api {
        Api {
            gateways: vec![format!("{}:9000", EDGE_GATEWAY.1)],
            ..self.api()
        }
    }

    /// Cuts the edge location's gateway and worker off from everything on `control`
    /// except each other and the host (the callers and the counter), or heals that.
    pub async fn partition_edge(&self, on: bool) -> Result<(), DockerError> {
        let subnet = "172.28.0.0/24";
        for (me, peer) in [
            (EDGE_GATEWAY.0, EDGE_WORKER.1),
            (EDGE_WORKER.0, EDGE_GATEWAY.1),
        ] {
            let container = node_container(&self.compose, me);
            let script = if on {
                format!(
                    "iptables -I INPUT -s {subnet} -j DROP && \
                     iptables -I INPUT -s {peer} -j ACCEPT && \
                     iptables -I INPUT -s {HOST_IP} -j ACCEPT"
                )
            } else {
                format!(
                    "iptables -D INPUT -s {HOST_IP} -j ACCEPT; \
                     iptables -D INPUT -s {peer} -j ACCEPT; \
                     iptables -D INPUT -s {subnet} -j DROP"
                )
            };
            docker_cli(&["exec", &container, "sh", "-c", &script]).await?;
        }
        Ok(())
    }

    pub async fn kill_worker(&self, i: usize) -> Result<(), DockerError> {
        docker_cli(&["kill", "-s", "KILL", &self.worker_container(i)]).await
    }

    pub async fn start_worker(&self, i: usize) -> Result<(), DockerError> {
        docker_cli(&["start", &self.worker_container(i)]).await
    }

    /// SIGTERM: the worker deregisters, refuses new work, finishes what it runs, exits.
    pub async fn stop_worker(&self, i: usize) -> Result<(), DockerError> {
        docker_cli(&["stop", "-t", "30", &self.worker_container(i)]).await
    }

    /// Removes the worker containers (Compose does not know them).
    pub async fn remove_workers(&self) {
        remove_workers(&self.compose).await;
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
        event(self.counter.port, scope, id, sleep_s)
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
        // 409: it exists already (a replayed seed on a kept cluster), with the same code.
        expect_status(&r, &[201, 409], &format!("CreateFunction {name}"))?;
        if let Some(n) = reserved {
            let path = format!("/2017-10-31/functions/{name}/concurrency");
            let body = serde_json::json!({"ReservedConcurrentExecutions": n}).to_string();
            let r = api.call("PUT", &path, body).await?;
            expect_status(&r, &[200], &format!("PutFunctionConcurrency {name}"))?;
        }
        Ok(name.to_string())
    }
}

/// The event that makes the chaos function report to the counter on `counter_port`
/// under `scope` and `id`, and run for `sleep_s` seconds.
pub(super) fn event(counter_port: u16, scope: &str, id: &str, sleep_s: f64) -> Bytes {
    Bytes::from(
        serde_json::json!({
            "host": HOST_IP, "port": counter_port, "scope": scope, "id": id,
            "sleep": sleep_s,
        })
        .to_string(),
    )
}

/// Worker `i`'s container name in the Compose project (it is not a Compose service).
fn worker_container(compose: &Compose, i: usize) -> String {
    node_container(compose, WORKERS[i].0)
}

/// The container name of node `name` started with `docker run` (not a Compose service)
/// in the Compose project.
fn node_container(compose: &Compose, name: &str) -> String {
    format!("{}_{name}", compose.project)
}

/// Removes the worker containers of `compose`'s project, whether or not they run (also
/// the leftovers of an interrupted run, which hold the network and fixed addresses).
pub async fn remove_workers(compose: &Compose) {
    for i in 0..WORKERS.len() {
        let _ = docker_cli(&["rm", "-f", &worker_container(compose, i)]).await;
    }
    for name in [EDGE_GATEWAY.0, EDGE_WORKER.0] {
        let _ = docker_cli(&["rm", "-f", &node_container(compose, name)]).await;
    }
}

/// One `docker` command whose output nobody needs.
async fn docker_cli(args: &[&str]) -> Result<(), DockerError> {
    docker::run("docker", args, &[]).await.map(drop)
}
