//! Edge locations: the same function version called through an edge location's gateway,
//! run there (deployed) or in the home region over a link with added delay, in one run;
//! and how long moving a deployed alias takes to reach the edge.
//!
//! The cluster is separate processes on loopback: 3 metadata nodes, a region worker, and
//! the edge location `fra1` with its own gateway and worker. The link between the edge
//! and the region is a delay proxy in this process (the kernel here has no netem): the
//! region worker advertises the proxy's address, so every call the edge gateway sends to
//! the region crosses it, each direction delayed by `--link-delay-ms`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use nimbus_gateway::client::LambdaConnection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::invoke_load::{ACCESS_KEY_ID, ACCOUNT, SECRET_ACCESS_KEY};
use crate::invoke_tracing::Endpoint;
use crate::nimbus_cluster::{gateway_command, worker_command, BenchCerts, NimbusCluster};
use crate::processes::{free_ports, ProcessGroup};
use crate::stats::percentile;

const LOCATION: &str = "fra1";

/// Forwards one direction of a connection, each read delivered `delay` after it came.
async fn delayed_pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((at, data)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&data).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buf = vec![0; 64 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0
            || tx
                .send((tokio::time::Instant::now() + delay, buf[..n].to_vec()))
                .is_err()
        {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// A TCP proxy to `upstream` adding `delay` each way; returns its address.
async fn delay_proxy(upstream: String, delay: Duration) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::join!(delayed_pump(cr, sw, delay), delayed_pump(sr, cw, delay));
            });
        }
    });
    Ok(addr)
}

/// The cluster with its edge location.
pub struct EdgeCluster {
    pub gateway_addr: String,
    meta: NimbusCluster,
    processes: ProcessGroup,
}

impl EdgeCluster {
    pub async fn start(
        nimbus_bin: &Path,
        work_dir: &Path,
        delay: Duration,
    ) -> anyhow::Result<Self> {
        let mut meta = NimbusCluster::start(nimbus_bin, work_dir, 3, None)?;
        meta.wait_leader(Duration::from_secs(30)).await?;
        let metas = meta.addrs.join(",");
        let admin = |args: &[&str]| -> anyhow::Result<()> {
            let status = Command::new(nimbus_bin)
                .args(BenchCerts::flags(None, "admin"))
                .args(args)
                .args(["--meta", &metas])
                .env("NIMBUS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
                .env("RUST_LOG", "warn")
                .status()
                .with_context(|| format!("running nimbus {}", args.join(" ")))?;
            anyhow::ensure!(
                status.success(),
                "nimbus {} failed: {status}",
                args.join(" ")
            );
            Ok(())
        };
        admin(&[
            "account",
            "create",
            "--account-id",
            ACCOUNT,
            "--access-key-id",
            ACCESS_KEY_ID,
            "--region",
            "us-east-1",
        ])?;
        admin(&[
            "cluster",
            "add-edge-location",
            "--region",
            "us-east-1",
            "--location",
            LOCATION,
        ])?;

        let mut processes = ProcessGroup::new(work_dir, "nimbus-bench-edge-")?;
        let ports = free_ports(3)?;
        let addr = |i: usize| format!("127.0.0.1:{}", ports[i]);
        let (gateway_addr, region_worker, edge_worker) = (addr(0), addr(1), addr(2));
        let link = delay_proxy(region_worker.clone(), delay).await?;
        for (name, listen, advertise, site, pool) in [
            (
                "region-worker",
                &region_worker,
                &link,
                ["--zone", "us-east-1a"],
                "100.90",
            ),
            (
                "edge-worker",
                &edge_worker,
                &edge_worker,
                ["--edge-location", LOCATION],
                "100.91",
            ),
        ] {
            let mut worker = worker_command(
                nimbus_bin,
                None,
                &processes.dir().join(name),
                listen,
                &metas,
            );
            worker.args(["--advertise", advertise]).args(site).args([
                "--memory-mb",
                "4096",
                "--heartbeat-ms",
                "1000",
                "--nat-pool",
                pool,
            ]);
            processes.spawn(name, name, worker)?;
        }
        let mut gateway = gateway_command(nimbus_bin, None, &gateway_addr, &metas);
        gateway
            .args(["--edge-location", LOCATION])
            .arg("--create-missing-roles");
        processes.spawn("edge gateway", "gateway", gateway)?;
        processes
            .wait_listening(
                &[&gateway_addr, &region_worker, &edge_worker],
                || meta.check_alive(),
                Duration::from_secs(120),
            )
            .await?;
        Ok(Self {
            gateway_addr,
            meta,
            processes,
        })
    }

    pub fn endpoint(&self) -> Endpoint {
        crate::invoke_load::bench_endpoint(&self.gateway_addr)
    }

    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        self.meta.check_alive()?;
        self.processes.check_alive()
    }

    pub async fn stop(mut self) {
        self.processes.stop().await;
    }
}

async fn call(
    c: &mut LambdaConnection,
    method: &str,
    path: &str,
    body: serde_json::Value,
    expect: u16,
) -> anyhow::Result<serde_json::Value> {
    let r = c
        .send(method, path, "", &[], Bytes::from(body.to_string()))
        .await?;
    anyhow::ensure!(
        r.status == expect,
        "{method} {path} answered {}: {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    Ok(serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null))
}

/// Publishes `near`; returns the new version's number.
async fn publish(c: &mut LambdaConnection) -> anyhow::Result<String> {
    let v = call(
        c,
        "POST",
        "/2015-03-31/functions/near/versions",
        serde_json::json!({}),
        201,
    )
    .await?;
    Ok(v["Version"].as_str().context("no Version")?.to_string())
}

/// Invokes `near:qualifier`; returns the version that ran.
async fn invoke(c: &mut LambdaConnection, qualifier: &str) -> anyhow::Result<String> {
    let r = c
        .send(
            "POST",
            "/2015-03-31/functions/near/invocations",
            &format!("Qualifier={qualifier}"),
            &[],
            Bytes::from_static(b"{}"),
        )
        .await?;
    anyhow::ensure!(
        r.status == 200 && r.header("x-amz-function-error").is_none(),
        "Invoke near:{qualifier} answered {}: {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    Ok(r.header("x-amz-executed-version")
        .unwrap_or_default()
        .to_string())
}

/// Results of one round.
pub struct EdgeRound {
    /// p50 and p99 of `near:live` (deployed to fra1: runs at the edge), in ms.
    pub edge_ms: (f64, f64),
    /// p50 and p99 of `near:1` (the same version, not deployed as `1`: runs in the
    /// region, across the delayed link), in ms.
    pub region_ms: (f64, f64),
    /// Each alias move's time from its acknowledgement to the first call through the
    /// edge gateway that ran the new version, in ms, sorted.
    pub alias_moves_ms: Vec<f64>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One round on a fresh cluster.
pub async fn round(
    nimbus_bin: &Path,
    work_dir: &Path,
    delay: Duration,
    calls: usize,
    moves: usize,
) -> anyhow::Result<EdgeRound> {
    let mut cluster = EdgeCluster::start(nimbus_bin, work_dir, delay).await?;
    let endpoint = cluster.endpoint();
    endpoint.create_function("near").await?;
    let mut c = endpoint.connect().await?;
    let v1 = publish(&mut c).await?;
    call(
        &mut c,
        "PUT",
        "/2015-03-31/functions/near/configuration",
        serde_json::json!({"Description": "second version"}),
        200,
    )
    .await?;
    // The update must have finished before it can be published.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let v2 = publish(&mut c).await?;
    call(
        &mut c,
        "POST",
        "/2015-03-31/functions/near/aliases",
        serde_json::json!({"Name": "live", "FunctionVersion": v1}),
        201,
    )
    .await?;
    call(
        &mut c,
        "PUT",
        "/nimbus/2026-12-01/functions/near/edge-deployments/live",
        serde_json::json!({"Locations": [LOCATION]}),
        200,
    )
    .await?;
    // Warm both: workers are learned from heartbeats a second or two after start.
    let deadline = Instant::now() + Duration::from_secs(60);
    for q in ["live", v1.as_str()] {
        while let Err(e) = invoke(&mut c, q).await {
            anyhow::ensure!(Instant::now() < deadline, "warming {q}: {e:#}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        for _ in 0..3 {
            invoke(&mut c, q).await?;
        }
    }
    let (mut edge, mut region) = (Vec::new(), Vec::new());
    for i in 0..calls * 2 {
        let (q, into) = if i % 2 == 0 {
            ("live", &mut edge)
        } else {
            (v1.as_str(), &mut region)
        };
        let started = Instant::now();
        invoke(&mut c, q).await?;
        into.push(started.elapsed());
    }
    edge.sort_unstable();
    region.sort_unstable();
    let mut alias_moves = Vec::new();
    for i in 0..moves {
        let target = if i % 2 == 0 { &v2 } else { &v1 };
        call(
            &mut c,
            "PUT",
            "/2015-03-31/functions/near/aliases/live",
            serde_json::json!({"FunctionVersion": target}),
            200,
        )
        .await?;
        let moved = Instant::now();
        let mut probe = endpoint.connect().await?;
        loop {
            if &invoke(&mut probe, "live").await? == target {
                break;
            }
            anyhow::ensure!(
                moved.elapsed() < Duration::from_secs(30),
                "the alias move never reached the edge"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        alias_moves.push(ms(moved.elapsed()));
    }
    alias_moves.sort_by(f64::total_cmp);
    cluster.check_alive()?;
    cluster.stop().await;
    Ok(EdgeRound {
        edge_ms: (ms(percentile(&edge, 50.0)), ms(percentile(&edge, 99.0))),
        region_ms: (ms(percentile(&region, 50.0)), ms(percentile(&region, 99.0))),
        alias_moves_ms: alias_moves,
    })
}
