//! `nimbus gateway`: the Lambda API in front of a metadata cluster and the region's
//! worker nodes. Stateless: run as many as needed behind a load balancer.

use std::time::Duration;

use anyhow::Context;
use nimbus_gateway::{Gateway, GatewayConfig, RemoteConfig, RemoteWorkers};
use nimbus_meta::MetaClient;
use nimbus_telemetry::MetricsRegistry;
use nimbus_tls::Transport;

use crate::cli::GatewayArgs;

pub async fn run(
    args: GatewayArgs,
    transport: Transport,
    metrics: MetricsRegistry,
) -> anyhow::Result<()> {
    let meta = MetaClient::from_list(&args.meta, &transport).context("--meta")?;
    // The gateway needs the metadata cache before it can serve; wait for a cluster that
    // is still electing rather than failing the start.
    let cache = {
        let mut attempt = 0;
        loop {
            match nimbus_gateway::core::catalog::Catalog::start(meta.clone()).await {
                Ok(c) => break c,
                Err(e) if attempt < 60 => {
                    attempt += 1;
                    tracing::warn!("metadata cluster not ready: {e}; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(e).context("loading metadata"),
            }
        }
    };
    if let Some(location) = &args.edge_location {
        let known = match cache.get(&nimbus_types::keys::region(&args.region)) {
            Some(nimbus_types::Entity::Region(r)) => r.edge_locations.contains(location),
            _ => false,
        };
        anyhow::ensure!(
            known,
            "edge location {location} is not in region {}: add it first with `nimbus cluster add-edge-location --region {} --location {location}`",
            args.region,
            args.region
        );
    }
    let mut remote = RemoteConfig::new(args.region.clone(), transport);
    remote.stale_after = Duration::from_secs(args.worker_stale_secs);
    remote.registration_ttl = Duration::from_secs(args.worker_registration_ttl_secs);
    // Invocations, provisioning and function logs all go to the region's live workers.
    let workers = RemoteWorkers::new(cache.clone(), remote);
    // Workers this gateway places work on stay live while they answer it directly, so
    // an edge location cut off from the metadata cluster (no heartbeats reach the
    // catalog) still sees its own.
    workers.probe_loop(Duration::from_secs(1));
    if args.create_missing_roles {
        tracing::warn!("--create-missing-roles: functions' missing roles are created with full access; never use this in production");
    }
    let gateway = Gateway::new(
        meta,
        cache,
        GatewayConfig {
            unverified_body_budget_mb: args.unverified_body_budget_mb,
            create_missing_roles: args.create_missing_roles,
            role_credentials_ttl: Duration::from_secs(args.role_credentials_ttl_secs),
            url_domain: args.url_domain.clone(),
            id: args.id.clone(),
            placement: nimbus_gateway::PlacementConfig {
                home_zone: args.zone.clone(),
                edge_location: args.edge_location.clone(),
                ..Default::default()
            },
            ..GatewayConfig::new(args.region.clone(), true)
        },
        workers.clone(),
    );
    if let Some(addr) = args.admin_listen {
        // How many workers this gateway may place work on: how fast it notices a dead
        // one shows here (nimbus-bench liveness).
        let live = nimbus_telemetry::prometheus_client::metrics::gauge::Gauge::<i64>::default();
        metrics.register(
            "nimbus_gateway_live_workers",
            "Workers of this gateway's region it considers live (answered its probes, or registered, within --worker-stale-secs)",
            live.clone(),
        );
        let workers = workers.clone();
        metrics.on_scrape(move || {
            live.set(workers.live_records().len() as i64);
        });
        // An edge location's series say so (Lambda's metrics of what ran there).
        if let Some(location) = &args.edge_location {
            metrics.add_label("edge_location", location);
        }
        gateway.metrics().register(&metrics);
        crate::meta_cmd::serve_admin(metrics, addr).await?;
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let https = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            Some(nimbus_tls::material::public_server(cert, key).context("--tls-cert/--tls-key")?)
        }
        _ => None,
    };
    tracing::info!(
        "gateway ready on {}://{} (region {})",
        if https.is_some() { "https" } else { "http" },
        listener.local_addr()?,
        args.region
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    // Every gateway also runs queued async events (claimed through the metadata cluster,
    // so each runs on one gateway at a time).
    let dispatcher = nimbus_gateway::core::async_events::spawn(
        gateway.clone(),
        nimbus_gateway::core::async_events::DispatchConfig {
            owner: args
                .id
                .clone()
                .unwrap_or_else(|| format!("gw-{}", uuid::Uuid::new_v4().simple())),
            retry_delay: Duration::from_millis(args.async_retry_delay_ms),
            defer_max: Duration::from_millis(args.async_defer_max_ms),
            ..Default::default()
        },
        stopped(stop_rx.clone()),
    );
    // Every gateway renews provisioned concurrency (holds are set, not added: they agree).
    let provisioner = nimbus_gateway::core::provisioned::spawn(
        gateway.clone(),
        nimbus_gateway::core::provisioned::DEFAULT_INTERVAL,
        stopped(stop_rx.clone()),
    );
    // An edge location's gateways push the code deployed there to its workers.
    let edge_push = nimbus_gateway::core::edge::spawn(
        gateway.clone(),
        Duration::from_millis(args.edge_push_interval_ms),
        stopped(stop_rx.clone()),
    );
    // On SIGTERM the server stops accepting, closes idle connections and lets requests in
    // flight finish (a rolling restart must not fail a sync invocation); dropping the
    // serve future instead would cut them off mid-response.
    let mut serve = match https {
        Some(tls) => tokio::spawn(gateway.clone().serve_https(
            listener,
            tls,
            stopped(stop_rx.clone()),
        )),
        None => tokio::spawn(gateway.clone().serve(listener, stopped(stop_rx.clone()))),
    };
    let served = tokio::select! {
        r = &mut serve => r,
        _ = crate::meta_cmd::shutdown_signal() => {
            tracing::info!("shutting down: finishing requests in flight");
            let _ = stop_tx.send(true);
            serve.await
        }
    };
    let _ = stop_tx.send(true);
    let _ = dispatcher.await;
    let _ = provisioner.await;
    if let Some(edge_push) = edge_push {
        let _ = edge_push.await;
    }
    // Nothing is admitted or running any more: hand the leased slots back now rather
    // than leave them counted for a lease.
    gateway.admission().release().await;
    served
        .context("gateway server task")?
        .context("gateway stopped")?;
    Ok(())
}
