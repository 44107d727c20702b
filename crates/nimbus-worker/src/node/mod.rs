//! A worker node (`nimbus worker`): the [`Engine`] plus everything that makes it part of
//! a cluster.
//!
//! * Registration: the node writes its [`nimbus_types::Worker`] record
//!   (address, region, zone or edge location, memory, runtimes) to the metadata cluster
//!   on start, again when any of that changes, and every `registration_refresh` (minutes)
//!   so a worker that died without deregistering drops out. Gateways learn about workers
//!   from their watch-fed caches; liveness and load they learn from the workers
//!   themselves (`Status` probes, and every answer), so an idle worker costs no Raft
//!   entry per heartbeat (issue 18).
//! * Serving: the gRPC service in [`service`], an adapter over
//!   [`WorkerContract`](crate::contract::WorkerContract); each gateway holds one long-lived HTTP/2
//!   channel to each worker and multiplexes its invocations over it.
//! * Code: [`CodeCache`] fetches, verifies, unpacks and evicts packages.

pub mod registration;
mod service;

use std::collections::BTreeSet;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nimbus_meta::MetaClient;
use nimbus_proto::worker::worker_server::WorkerServer;
use nimbus_tls::{AuthorityLayer, Role, Transport};
use nimbus_types::{Command, Placement, Worker};
use tokio_stream::StreamExt;
use tonic::transport::server::Connected;

use self::registration::Registration;
use crate::code_cache::CodeCache;
use crate::{Engine, EngineConfig, EngineError};

/// Longest a stopping worker waits for in-flight invocations (Lambda's maximum timeout
/// plus Init).
const DRAIN_LIMIT: Duration = Duration::from_secs(15 * 60 + 10);

/// Largest gRPC message: a 6 MB payload plus its envelope, with room to spare.
pub const MAX_MESSAGE_BYTES: usize = nimbus_types::limits::NODE_MESSAGE_MAX_BYTES;

/// How a worker node is configured.
#[derive(Debug, Clone)]
pub struct WorkerNodeConfig {
    /// Stable identity (kept in the data directory across restarts).
    pub id: String,
    /// Where to listen for gateways.
    pub listen: SocketAddr,
    /// The address gateways dial (defaults to `listen`).
    pub advertise: String,
    pub region: String,
    pub placement: Placement,
    /// Where unpacked code packages live.
    pub code_dir: PathBuf,
    pub engine: EngineConfig,
    /// How often the worker refreshes its view of the cluster's nodes, evicts unused
    /// code, and checks whether its registration changed.
    pub heartbeat: Duration,
    /// How often an unchanged registration is written again anyway, so a worker that
    /// died without deregistering drops out of the registry (`Worker::last_heartbeat_ms`
    /// is this refresh). Liveness and load travel to the gateways directly (they probe
    /// their workers), so this costs no Raft entry per heartbeat.
    pub registration_refresh: Duration,
    /// How gateways reach this worker: with TLS, only gateways may call it.
    pub transport: Transport,
}

/// Only gateways call a worker: invocations, provisioning, status and log queries all
/// come from the gateway that placed the work or serves the query.
fn policy(path: &str) -> &'static [Role] {
    if path.starts_with("/nimbus.worker.v1.Worker/") {
        &[Role::Gateway]
    } else {
        &[]
    }
}

/// Errors starting a worker node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("code cache: {0}")]
    Code(std::io::Error),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("registering with the metadata cluster: {0}")]
    Register(nimbus_meta::ClientError),
    #[error("serving gRPC: {0}")]
    Serve(tonic::transport::Error),
}

/// The addresses gateways have called this worker from. Gateways do not register, but
/// every one that places work here connects, and its certificate says it is a gateway.
type GatewaysSeen = Arc<std::sync::Mutex<BTreeSet<Ipv4Addr>>>;

/// Tells the sandbox which addresses are the cluster's nodes (the metadata nodes this
/// worker was given, every registered worker, and every gateway that called it), so
/// environments can never reach them, also where they sit on public addresses. Runs at
/// start and with every heartbeat; a name that does not resolve now is tried again next
/// time.
async fn refresh_cluster_nodes(meta: &MetaClient, engine: &Engine, gateways: &GatewaysSeen) {
    let mut endpoints: Vec<String> = meta.addresses().map(str::to_string).collect();
    match meta.list(nimbus_types::keys::WORKER, None, u32::MAX).await {
        Ok((_, records)) => endpoints.extend(records.into_iter().filter_map(|(_, e)| match e {
            nimbus_types::Entity::Worker(w) => Some(w.addr),
            _ => None,
        })),
        Err(e) => tracing::debug!("listing workers for the egress policy: {e}"),
    }
    let mut addrs = gateways
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    for endpoint in endpoints {
        match tokio::net::lookup_host(endpoint.as_str()).await {
            Ok(resolved) => addrs.extend(resolved.filter_map(|a| match a.ip() {
                std::net::IpAddr::V4(ip) => Some(ip),
                std::net::IpAddr::V6(_) => None,
            })),
            Err(e) => tracing::debug!(%endpoint, "resolving a cluster node: {e}"),
        }
    }
    let addrs: Vec<_> = addrs.into_iter().collect();
    if let Err(e) = engine.set_cluster_nodes(&addrs) {
        tracing::warn!("updating the cluster nodes environments may not reach: {e}");
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Runs a worker node until `shutdown` completes, then deregisters and stops its
/// environments.
pub async fn run(
    config: WorkerNodeConfig,
    meta: MetaClient,
    metrics: Option<nimbus_telemetry::MetricsRegistry>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    let engine = Engine::new(config.engine.clone())?;
    if let Some(registry) = &metrics {
        crate::metrics::register(&engine, registry);
    }
    let code =
        Arc::new(CodeCache::new(config.code_dir.clone(), meta.clone()).map_err(NodeError::Code)?);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| NodeError::Bind {
            addr: config.listen,
            source,
        })?;
    let svc = Arc::new(service::WorkerService {
        contract: crate::contract::WorkerContract::new(
            config.id.clone(),
            engine.clone(),
            code.clone(),
        ),
        in_flight: Arc::default(),
    });

    // Register before serving so a gateway never learns of a worker that is not ready;
    // retry while the metadata cluster is still electing.
    let (id, addr, region, placement) = (
        config.id.clone(),
        config.advertise.clone(),
        config.region.clone(),
        config.placement.clone(),
    );
    // Asked once: an interpreter's version does not change while the worker runs.
    let runtimes = crate::runtimes::available(&config.engine);
    let record = move |svc: &service::WorkerService| {
        let load = svc.contract.load();
        Worker {
            id: id.clone(),
            addr: addr.clone(),
            region: region.clone(),
            placement: placement.clone(),
            memory_total_mb: load.memory_total_mb,
            memory_used_mb: load.memory_reserved_mb,
            environments_warm: load.environments_warm,
            environments_busy: load.environments_busy,
            last_heartbeat_ms: now_ms(),
            runtimes: runtimes.clone(),
        }
    };
    let mut attempt = 0;
    let mut registered = loop {
        let worker = record(&svc);
        match meta
            .write(Command::RegisterWorker {
                worker: worker.clone(),
            })
            .await
        {
            Ok(_) => break Registration::written(&worker, config.registration_refresh),
            Err(e) if attempt < 30 => {
                attempt += 1;
                tracing::warn!("registering worker: {e}; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(NodeError::Register(e)),
        }
    };
    tracing::info!(
        id = %config.id,
        addr = %config.advertise,
        region = %config.region,
        "worker registered; serving gateways on {}",
        config.listen
    );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let gateways = GatewaysSeen::default();
    // A gateway seen for the first time is denied at once, not at the next heartbeat.
    let new_gateway = Arc::new(tokio::sync::Notify::new());
    refresh_cluster_nodes(&meta, &engine, &gateways).await;
    let heartbeat = {
        let (svc, meta, mut stop) = (svc.clone(), meta.clone(), stop_rx.clone());
        let engine = engine.clone();
        let (interval, idle_timeout) = (config.heartbeat, config.engine.idle_timeout);
        let code = code.clone();
        let record = record.clone();
        let gateways = gateways.clone();
        let new_gateway = new_gateway.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            loop {
                let new_gateway_only = tokio::select! {
                    _ = tick.tick() => false,
                    _ = new_gateway.notified() => true,
                    _ = stop.wait_for(|s| *s) => break,
                };
                if new_gateway_only {
                    refresh_cluster_nodes(&meta, &engine, &gateways).await;
                    continue;
                }
                refresh_cluster_nodes(&meta, &engine, &gateways).await;
                let evicted = code.evict_unused(idle_timeout);
                if evicted > 0 {
                    tracing::info!(evicted, "removed unused code packages");
                }
                // Written only when what gateways place by changed, or to refresh it:
                // at idle a worker costs the metadata cluster ~nothing.
                let worker = record(&svc);
                if !registered.due(&worker) {
                    continue;
                }
                match meta
                    .write(Command::RegisterWorker {
                        worker: worker.clone(),
                    })
                    .await
                {
                    Ok(_) => registered.wrote(&worker),
                    Err(e) => tracing::warn!("refreshing the worker's registration: {e}"),
                }
            }
        })
    };

    // Each gateway's address joins the egress deny set at its first connection (and on
    // the next heartbeat's refresh): on a plaintext transport every caller is taken for
    // one, with TLS only a gateway's certificate counts.
    let incoming = {
        let gateways = gateways.clone();
        let new_gateway = new_gateway.clone();
        config.transport.incoming(listener).map(move |conn| {
            let Some(info) = conn.as_ref().ok().map(Connected::connect_info) else {
                return conn;
            };
            let is_gateway = info
                .identity
                .as_ref()
                .is_none_or(|i| i.role == Role::Gateway);
            if let (true, Some(std::net::SocketAddr::V4(addr))) = (is_gateway, info.remote) {
                let ip = *addr.ip();
                let mut seen = gateways
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if !ip.is_loopback() && seen.insert(ip) {
                    tracing::info!(%ip, "a gateway called: environments may not reach it");
                    new_gateway.notify_one();
                }
            }
            conn
        })
    };
    let authority = AuthorityLayer::new(&config.transport, policy);
    let server = WorkerServer::from_arc(svc.clone())
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let (serve_stop_tx, mut stop_serve) = tokio::sync::watch::channel(false);
    let serve = tonic::transport::Server::builder()
        .layer(authority)
        .add_service(server)
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = stop_serve.wait_for(|s| *s).await;
        });
    let serve = tokio::spawn(serve);
    shutdown.await;
    tracing::info!("worker shutting down: deregistering, draining environments");
    let _ = stop_tx.send(true);
    let _ = heartbeat.await;
    if let Err(e) = meta
        .write(Command::DeregisterWorker {
            id: config.id.clone(),
        })
        .await
    {
        tracing::warn!("deregistering: {e}");
    }
    // New invocations are refused from here on (as not started, so gateways retry them
    // elsewhere); in-flight ones finish. Gateways keep their HTTP/2 channels open, so the
    // server's own graceful shutdown would wait for them forever: wait for the
    // invocations instead, bounded by Lambda's longest timeout.
    engine.shutdown().await;
    let drain_deadline = tokio::time::Instant::now() + DRAIN_LIMIT;
    while svc.in_flight() > 0 && tokio::time::Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = serve_stop_tx.send(true);
    match tokio::time::timeout(Duration::from_secs(1), serve).await {
        Ok(Ok(r)) => r.map_err(NodeError::Serve),
        _ => Ok(()),
    }
}
