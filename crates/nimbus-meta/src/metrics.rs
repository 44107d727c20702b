//! A metadata node's Raft state as Prometheus metrics, read from openraft's
//! `RaftMetrics` watch (and the log store's committed index, which `RaftMetrics` lacks).

use nimbus_telemetry::prometheus_client::metrics::counter::Counter;
use nimbus_telemetry::prometheus_client::metrics::gauge::Gauge;
use nimbus_telemetry::MetricsRegistry;
use openraft::ServerState;

use crate::node::MetaNode;

/// Registers this node's Raft metrics. Gauges are read at each scrape; snapshots are
/// counted by a task that follows the metrics watch until the node stops.
pub fn register(node: &MetaNode, registry: &MetricsRegistry) {
    let term = Gauge::<i64>::default();
    let leader = Gauge::<i64>::default();
    let is_leader = Gauge::<i64>::default();
    let last_log = Gauge::<i64>::default();
    let commit = Gauge::<i64>::default();
    let applied = Gauge::<i64>::default();
    let lag = Gauge::<i64>::default();
    let snapshot_index = Gauge::<i64>::default();
    let voters = Gauge::<i64>::default();
    let snapshots = Counter::<u64>::default();
    registry.register("nimbus_raft_term", "Current Raft term", term.clone());
    registry.register(
        "nimbus_raft_leader",
        "Node id of the current leader (-1: none known)",
        leader.clone(),
    );
    registry.register(
        "nimbus_raft_is_leader",
        "1 when this node is the leader",
        is_leader.clone(),
    );
    registry.register(
        "nimbus_raft_last_log_index",
        "Index of the last entry in this node's log",
        last_log.clone(),
    );
    registry.register(
        "nimbus_raft_commit_index",
        "Highest log index known to be committed",
        commit.clone(),
    );
    registry.register(
        "nimbus_raft_applied_index",
        "Highest log index applied to the state machine",
        applied.clone(),
    );
    registry.register(
        "nimbus_raft_apply_lag",
        "Committed entries not yet applied (commit index minus applied index)",
        lag.clone(),
    );
    registry.register(
        "nimbus_raft_snapshot_index",
        "Last log index covered by this node's latest snapshot",
        snapshot_index.clone(),
    );
    registry.register(
        "nimbus_raft_voters",
        "Voting members in the current membership",
        voters.clone(),
    );
    registry.register(
        "nimbus_raft_snapshots",
        "Snapshots built or installed since this node started",
        snapshots.clone(),
    );

    let proposed = node.ctx.proposer.counts();
    registry.register(
        "nimbus_meta_write_proposals",
        "Log entries of client writes this node proposed while leading (a batch is one)",
        proposed.proposals.clone(),
    );
    registry.register(
        "nimbus_meta_proposed_writes",
        "Client writes in those proposals; divided by the proposals, the mean batch size",
        proposed.writes.clone(),
    );
    registry.register(
        "nimbus_meta_queued_writes",
        "Client writes waiting on this leader for a proposal slot (its write backlog)",
        proposed.queued.clone(),
    );

    let ctx = node.ctx.clone();
    registry.on_scrape(move || {
        let m = ctx.raft.metrics().borrow().clone();
        let id = ctx.id;
        let idx = |v: Option<u64>| v.map_or(0, |i| i as i64);
        let applied_index = idx(m.last_applied.map(|l| l.index));
        let commit_index = (ctx.committed_index() as i64).max(applied_index);
        term.set(m.current_term as i64);
        leader.set(m.current_leader.map_or(-1, |l| l as i64));
        is_leader.set(i64::from(
            m.state == ServerState::Leader && m.current_leader == Some(id),
        ));
        last_log.set(idx(m.last_log_index));
        commit.set(commit_index);
        applied.set(applied_index);
        lag.set(commit_index - applied_index);
        snapshot_index.set(idx(m.snapshot.map(|l| l.index)));
        voters.set(m.membership_config.membership().voter_ids().count() as i64);
    });

    let mut watch = node.ctx.raft.metrics();
    tokio::spawn(async move {
        let mut last = watch.borrow().snapshot;
        while watch.changed().await.is_ok() {
            let now = watch.borrow().snapshot;
            if now != last && now.is_some() {
                snapshots.inc();
            }
            last = now;
        }
    });
}
