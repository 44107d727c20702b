//! `nimbus dev`: one metadata node, one gateway and one worker in one process, ready for
//! `aws --endpoint-url http://127.0.0.1:9000 lambda …` with account 000000000000,
//! region us-east-1 and access key `test` / secret `test`.

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use nimbus_gateway::{Gateway, GatewayConfig};
use nimbus_meta::node::{MetaNode, NodeConfig};
use nimbus_meta::MetaClient;
use nimbus_telemetry::MetricsRegistry;

use crate::cli::{DevArgs, NetworkArg};
use crate::local_worker::LocalWorkers;
use crate::tls_cmd::DevTls;
use nimbus_tls::Role;
use nimbus_worker::{NatConfig, NetworkMode};

pub const DEV_ACCOUNT: &str = "000000000000";
pub const DEV_ACCESS_KEY: &str = "test";
pub const DEV_SECRET: &str = "test";

pub async fn run(args: DevArgs, metrics: MetricsRegistry) -> anyhow::Result<()> {
    if !args.listen.ip().is_loopback() && !args.allow_remote {
        anyhow::bail!(
            "--listen {} is not a loopback address; pass --allow-remote to expose nimbus dev",
            args.listen
        );
    }
    let data = std::path::absolute(&args.data_dir).context("data dir")?;
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let meta_addr = args.meta_listen;
    let mut cfg = NodeConfig::new(1, data.join("meta"), meta_addr);
    let listener_probe = std::net::TcpListener::bind(meta_addr)
        .with_context(|| format!("binding metadata address {meta_addr}"))?;
    let meta_addr = listener_probe.local_addr()?;
    drop(listener_probe);
    cfg.listen = meta_addr;
    cfg.initial_cluster = [(1, meta_addr.to_string())].into();
    // The embedded metadata port takes mutual TLS like any cluster's: without it, any
    // local user could mint keys for any account through it. The CLI reaches it with
    // `--tls-dir DATA_DIR/tls` (root only).
    let tls = DevTls::ensure(&data).context("making nimbus dev's certificates")?;
    cfg.transport = tls.transport(Role::Meta)?;
    let node = MetaNode::start(cfg, stopped(stop_rx.clone()))
        .await
        .context("starting the metadata node")?;
    let meta_addrs = [node.local_addr.to_string()];
    let admin = MetaClient::new(&meta_addrs, &tls.transport(Role::Admin)?)?;
    bootstrap(&admin, &args.region)
        .await
        .context("creating the dev account")?;
    let meta = MetaClient::new(&meta_addrs, &tls.transport(Role::Gateway)?)?;
    let worker_meta = MetaClient::new(&meta_addrs, &tls.transport(Role::Worker)?)?;

    // Everything host-wide this process owns is named after its data dir: two `nimbus
    // dev` on one host never reclaim each other's environments or share a NAT pool.
    let local = local_name(&data);
    // Functions reach this API through their Runtime API address (`AWS_ENDPOINT_URL`),
    // relayed here. The port is bound after the engine has started, which reclaims the
    // sandboxes a killed predecessor left (they may still hold its listening socket);
    // only an ephemeral port (0) must be bound first to be known.
    let early = if args.listen.port() == 0 {
        Some(
            tokio::net::TcpListener::bind(args.listen)
                .await
                .with_context(|| format!("binding {}", args.listen))?,
        )
    } else {
        None
    };
    let api_addr = match &early {
        Some(l) => l.local_addr()?,
        None => args.listen,
    };
    let mut engine_cfg = nimbus_worker::EngineConfig {
        state_dir: data.join("worker"),
        region: args.region.clone(),
        max_memory_mb: args.memory_mb,
        insecure_no_isolation: args.insecure_no_isolation,
        zygotes: !args.no_zygotes,
        runtime_roots: crate::load_roots(args.runtime_roots.as_deref())?,
        logs: args.log_retention.config(),
        aws_endpoint: Some(Arc::new(nimbus_worker::aws_proxy::AwsProxy::new(
            &format!("http://{}", reachable(api_addr)),
        )?)),
        cgroup_parent: format!("nimbus-dev-{local:016x}"),
        network: match args.network {
            NetworkArg::Nat => NetworkMode::Nat(NatConfig {
                dns_resolver: args.dns_resolver,
                // 100.64/10 is shared address space: 100.96 to 100.127 here.
                pool: args.nat_pool.unwrap_or([100, 96 + (local % 32) as u8]),
                egress_allow: args.egress_allow.clone(),
            }),
            NetworkArg::None => NetworkMode::Loopback,
        },
        ..Default::default()
    };
    engine_cfg.idle_timeout = Duration::from_secs(args.idle_timeout_secs);
    let engine = nimbus_worker::Engine::new(engine_cfg).context("starting the worker engine")?;
    let workers = LocalWorkers::new(engine, worker_meta, data.join("code"))
        .context("preparing the code cache")?;
    {
        // Unpacked code no environment can use any more is removed in the background.
        let workers = Arc::downgrade(&workers);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                let Some(w) = workers.upgrade() else { break };
                w.evict_unused_code();
            }
        });
    }

    let gateway = Gateway::start(
        meta,
        GatewayConfig {
            unverified_body_budget_mb: args.unverified_body_budget_mb,
            create_missing_roles: true,
            role_credentials_ttl: Duration::from_secs(args.role_credentials_ttl_secs),
            url_domain: args.url_domain.clone(),
            ..GatewayConfig::new(args.region.clone(), false)
        },
        workers.clone(),
    )
    .await
    .context("starting the gateway")?;
    let listener = match early {
        Some(l) => l,
        None => tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?,
    };
    tracing::info!(
        "nimbus dev ready: aws --endpoint-url http://{} lambda … (account {DEV_ACCOUNT}, region {}, key {DEV_ACCESS_KEY}/{DEV_SECRET}); metadata node {} (nimbus --tls-dir {})",
        listener.local_addr()?,
        args.region,
        node.local_addr,
        tls.root.display()
    );
    // One gateway, always the same id: after a restart it takes its own leases on
    // async events back at once instead of waiting for them to expire.
    let dispatcher = nimbus_gateway::core::async_events::spawn(
        gateway.clone(),
        nimbus_gateway::core::async_events::DispatchConfig {
            owner: "dev".into(),
            retry_delay: Duration::from_millis(args.async_retry_delay_ms),
            ..Default::default()
        },
        stopped(stop_rx.clone()),
    );
    let provisioner = nimbus_gateway::core::provisioned::spawn(
        gateway.clone(),
        nimbus_gateway::core::provisioned::DEFAULT_INTERVAL,
        stopped(stop_rx.clone()),
    );
    nimbus_meta::metrics::register(&node, &metrics);
    nimbus_worker::metrics::register(workers.engine(), &metrics);
    gateway.metrics().register(&metrics);
    // `/metrics` names tenants' functions: only on the admin address, never the API port.
    if let Some(addr) = args.admin_listen {
        crate::meta_cmd::serve_admin(metrics, addr).await?;
    }
    let serve = axum::serve(
        listener,
        gateway
            .router()
            .into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(stopped(stop_rx.clone()))
    .into_future();
    tokio::select! {
        r = serve => r.context("gateway stopped")?,
        _ = crate::meta_cmd::shutdown_signal() => {}
    }
    let _ = stop_tx.send(true);
    let _ = dispatcher.await;
    let _ = provisioner.await;
    workers.engine().shutdown().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), node.wait()).await;
    Ok(())
}

/// A number naming this data dir (the same on every start of one binary).
fn local_name(data: &std::path::Path) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(data)
}

/// The dev account, region and access key; idempotent.
async fn bootstrap(meta: &MetaClient, region: &str) -> anyhow::Result<()> {
    crate::account_cmd::create(meta, DEV_ACCOUNT, DEV_ACCESS_KEY, DEV_SECRET, region).await
}

/// An address this host can connect to for a listening address (`0.0.0.0` and `::` mean
/// every interface; loopback reaches them).
fn reachable(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    let mut a = addr;
    if a.ip().is_unspecified() {
        a.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    a
}
