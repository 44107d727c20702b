//! `nimbus worker`: a worker node. Registers with the metadata cluster, heartbeats its
//! capacity, and runs invocations for gateways in sandboxed execution environments.

use std::time::Duration;

use anyhow::Context;
use nimbus_meta::MetaClient;
use nimbus_telemetry::MetricsRegistry;
use nimbus_tls::Transport;
use nimbus_types::Placement;
use nimbus_worker::node::WorkerNodeConfig;
use nimbus_worker::{EngineConfig, NatConfig, NetworkMode};

use crate::cli::{NetworkArg, WorkerArgs};

/// The worker's identity, created on first start and kept in the data directory, so a
/// restarted worker replaces its own record instead of leaving a stale one behind.
fn worker_id(data: &std::path::Path) -> anyhow::Result<String> {
    let path = data.join("worker.id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_string()),
        _ => {
            let id = format!("w-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
            std::fs::write(&path, &id).with_context(|| format!("writing {}", path.display()))?;
            Ok(id)
        }
    }
}

pub async fn run(
    args: WorkerArgs,
    transport: Transport,
    metrics: MetricsRegistry,
) -> anyhow::Result<()> {
    let data = std::path::absolute(&args.data_dir).context("data dir")?;
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    // With TLS a worker's id starts with its certificate's name: the metadata cluster
    // accepts its registration only under that name (`NAME+LOCAL`, so workers that share
    // one certificate, like a Kubernetes DaemonSet's, still have ids of their own).
    let id = match &transport {
        Transport::Tls(tls) => nimbus_tls::worker_id(&tls.identity(), &worker_id(&data)?),
        Transport::Plaintext => worker_id(&data)?,
    };
    let meta = MetaClient::from_list(&args.meta, &transport).context("--meta")?;
    let placement = match (&args.zone, &args.edge_location) {
        (_, Some(edge)) => Placement::EdgeLocation(edge.clone()),
        (Some(zone), None) => Placement::Zone(zone.clone()),
        (None, None) => Placement::Zone(format!("{}a", args.region)),
    };
    let mut engine = EngineConfig {
        state_dir: data.join("engine"),
        region: args.region.clone(),
        max_memory_mb: args.memory_mb,
        account_weights: args.account_weight.iter().cloned().collect(),
        insecure_no_isolation: args.insecure_no_isolation,
        zygotes: !args.no_zygotes,
        runtime_roots: crate::load_roots(args.runtime_roots.as_deref())?,
        network: match args.network {
            NetworkArg::Nat => NetworkMode::Nat(NatConfig {
                dns_resolver: args.dns_resolver,
                pool: args.nat_pool,
                egress_allow: args.egress_allow.clone(),
            }),
            NetworkArg::None => NetworkMode::Loopback,
        },
        logs: args.log_retention.config(),
        aws_endpoint: args
            .aws_endpoint
            .as_deref()
            .map(nimbus_worker::aws_proxy::AwsProxy::new)
            .transpose()?
            .map(std::sync::Arc::new),
        edge_location: match &placement {
            Placement::EdgeLocation(l) => Some(l.clone()),
            Placement::Zone(_) => None,
        },
        ..Default::default()
    };
    engine.idle_timeout = Duration::from_secs(args.idle_timeout_secs);
    // Each worker on a machine owns its own cgroup subtree (several may share a host in
    // tests), and reclaims only what its own predecessor left.
    engine.cgroup_parent = format!("nimbus-{id}");
    let config = WorkerNodeConfig {
        advertise: args
            .advertise
            .clone()
            .unwrap_or_else(|| args.listen.to_string()),
        id,
        listen: args.listen,
        region: args.region,
        placement,
        code_dir: data.join("code"),
        engine,
        heartbeat: Duration::from_millis(args.heartbeat_ms),
        registration_refresh: Duration::from_secs(args.registration_refresh_secs),
        transport,
    };
    let registry = match args.admin_listen {
        Some(addr) => {
            if let Some(location) = &args.edge_location {
                metrics.add_label("edge_location", location);
            }
            crate::meta_cmd::serve_admin(metrics.clone(), addr).await?;
            Some(metrics)
        }
        None => None,
    };
    nimbus_worker::node::run(config, meta, registry, crate::meta_cmd::shutdown_signal())
        .await
        .context("worker node")?;
    Ok(())
}
