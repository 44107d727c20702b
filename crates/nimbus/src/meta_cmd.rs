//! `nimbus meta`: run one metadata node until SIGINT or SIGTERM.

use std::time::Duration;

use anyhow::Context;
use nimbus_meta::node::{parse_initial_cluster, MetaNode, NodeConfig};

use crate::cli::MetaArgs;

pub async fn run(args: MetaArgs) -> anyhow::Result<()> {
    let mut cfg = NodeConfig::new(args.id, args.data_dir.clone(), args.listen);
    cfg.initial_cluster = parse_initial_cluster(&args.initial_cluster)?;
    if let Some(k) = args.key_file {
        cfg.key_file = k;
    }
    cfg.snapshot_every = args.snapshot_every;
    cfg.keep_after_snapshot = args.keep_after_snapshot;
    cfg.heartbeat_interval = Duration::from_millis(args.heartbeat_ms);
    cfg.election_timeout_min = Duration::from_millis(args.election_timeout_ms);
    cfg.election_timeout_max = Duration::from_millis(args.election_timeout_ms * 2);
    cfg.write_timeout = Duration::from_millis(args.write_timeout_ms);
    let node = MetaNode::start(cfg, shutdown_signal())
        .await
        .context("starting the metadata node")?;
    tracing::info!(id = args.id, addr = %node.local_addr, "metadata node serving");
    node.wait().await.context("metadata node stopped")?;
    tracing::info!("metadata node shut down");
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
