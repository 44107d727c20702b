//! `nimbus meta`: run one metadata node until SIGINT or SIGTERM.

use std::time::Duration;

use anyhow::Context;
use nimbus_meta::node::{parse_initial_cluster, MetaNode, NodeConfig};

use nimbus_telemetry::MetricsRegistry;
use nimbus_tls::Transport;

use crate::cli::MetaArgs;

pub async fn run(
    args: MetaArgs,
    transport: Transport,
    metrics: MetricsRegistry,
) -> anyhow::Result<()> {
    let mut cfg = NodeConfig::new(args.id, args.data_dir.clone(), args.listen);
    cfg.transport = transport;
    cfg.initial_cluster = parse_initial_cluster(&args.initial_cluster)?;
    if let Some(k) = &args.key_file {
        cfg.key_file = k.clone();
    }
    if let Some(backup) = &args.restore_from {
        restore(&args, &mut cfg, backup).await?;
    }
    cfg.snapshot_every = args.snapshot_every;
    cfg.keep_after_snapshot = args.keep_after_snapshot;
    cfg.heartbeat_interval = Duration::from_millis(args.heartbeat_ms);
    cfg.election_timeout_min = Duration::from_millis(args.election_timeout_ms);
    cfg.election_timeout_max = Duration::from_millis(
        args.election_timeout_max_ms
            .unwrap_or(args.election_timeout_ms * 2),
    );
    cfg.write_timeout = Duration::from_millis(args.write_timeout_ms);
    cfg.proposals_in_flight = args.proposals_in_flight;
    let node = MetaNode::start(cfg, shutdown_signal())
        .await
        .context("starting the metadata node")?;
    tracing::info!(id = args.id, addr = %node.local_addr, "metadata node serving");
    if let Some(addr) = args.admin_listen {
        nimbus_meta::metrics::register(&node, &metrics);
        serve_admin(metrics, addr).await?;
    }
    // A fatal Raft error (its storage failed, e.g. a full disk) leaves openraft stopped
    // while the gRPC server would keep answering "unavailable" for ever, holding on to a
    // leadership it cannot use. Exit instead, so the supervisor restarts the node and it
    // recovers from its durable log once the fault is gone.
    // Looked at five times a second rather than on every change of the metrics, which
    // change several times per write (each change woke this task).
    let metrics_rx = node.ctx.raft.metrics();
    let fatal = async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
        loop {
            tick.tick().await;
            match &metrics_rx.borrow().running_state {
                // A normal shutdown (SIGTERM) is not a failure; node.wait() ends it.
                Err(openraft::error::Fatal::Stopped) | Ok(()) => {}
                Err(e) => return e.to_string(),
            }
            if metrics_rx.has_changed().is_err() {
                return std::future::pending().await;
            }
        }
    };
    // On SIGTERM Raft stops at once, but the gRPC server's graceful shutdown waits for
    // every stream to end, and watch streams never do: the process lingered until
    // SIGKILL (10 s under Docker) with its listener still completing TCP handshakes, so
    // clients hung on it instead of failing over, and gateways' concurrency leases ran
    // out during a rolling restart. One second after the signal the process exits, which
    // closes every connection at once.
    let linger = async {
        shutdown_signal().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    tokio::select! {
        r = node.wait() => r.context("metadata node stopped")?,
        e = fatal => anyhow::bail!("raft stopped on a fatal error: {e}"),
        _ = linger => tracing::info!("streams still open after 1 s are cut"),
    }
    tracing::info!("metadata node shut down");
    Ok(())
}

/// Prepares a fresh data directory from a backup; the node then starts as the only
/// member of a new cluster (see `nimbus_meta::state_machine::backup`).
async fn restore(
    args: &MetaArgs,
    cfg: &mut NodeConfig,
    backup: &std::path::Path,
) -> anyhow::Result<()> {
    if !cfg.key_file.is_file() {
        anyhow::bail!(
            "--restore-from needs the old cluster's key (code and secrets in the backup are \
             encrypted with it): pass --key-file, no key found at {}",
            cfg.key_file.display()
        );
    }
    let others: Vec<_> = cfg
        .initial_cluster
        .keys()
        .filter(|id| **id != args.id)
        .collect();
    if !others.is_empty() {
        anyhow::bail!(
            "--restore-from starts a one-member cluster: give --initial-cluster with this \
             node only, then add the others with `nimbus cluster add-member`"
        );
    }
    let addr = match cfg.initial_cluster.get(&args.id) {
        Some(a) => a.clone(),
        None if args.listen.ip().is_unspecified() || args.listen.port() == 0 => anyhow::bail!(
            "--listen {} is not an address peers can reach: give --initial-cluster {}=HOST:PORT",
            args.listen,
            args.id
        ),
        None => args.listen.to_string(),
    };
    let r = nimbus_meta::state_machine::backup::restore(&args.data_dir, backup, args.id, &addr)
        .await
        .with_context(|| format!("restoring {}", backup.display()))?;
    tracing::info!(
        applied = r.applied_index,
        term = r.term,
        "restored backup {}; this node is the only member",
        backup.display()
    );
    // Already initialized from the backup: nothing to form.
    cfg.initial_cluster.clear();
    Ok(())
}

/// Serves `/metrics` on `addr` in the background until SIGINT or SIGTERM.
pub async fn serve_admin(
    metrics: MetricsRegistry,
    addr: std::net::SocketAddr,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the admin address {addr}"))?;
    tracing::info!(addr = %listener.local_addr()?, "serving metrics on /metrics");
    tokio::spawn(async move {
        if let Err(e) = metrics.serve(listener, shutdown_signal()).await {
            tracing::error!(error = %e, "admin server stopped");
        }
    });
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}
