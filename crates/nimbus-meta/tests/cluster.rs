//! In-process clusters on loopback:
//! - membership changes that an election interrupted: `AddMember` sent again (as the
//!   client does after a failover) finishes the add instead of refusing it;
//! - check-quorum: a leader that hears from no quorum refuses calls at once.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use nimbus_meta::node::{MetaNode, NodeConfig};
use nimbus_meta::{ClientError, MetaClient};
use nimbus_types::Command;
use openraft::{BasicNode, ChangeMembers};
use tokio::sync::oneshot;

/// A short election timeout, so that check-quorum's bound is short: a leader whose
/// joint configuration waits for a voter that was down loses its quorum and is silent
/// until its next probe (see t61).
const FAST: bool = true;

/// A free loopback address (the listener is dropped; the node binds it again).
fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Starts node `id` at `addr`, founding a cluster of `founders` with the others there, or
/// waiting to be added when that is empty, with the default Raft timing or [`FAST`].
/// Every node shares one key file, as a cluster's members must. Dropping the sender
/// stops the node.
async fn start(
    id: u64,
    addr: SocketAddr,
    founders: &[(u64, SocketAddr)],
    dir: &Path,
    fast: bool,
) -> (MetaNode, oneshot::Sender<()>) {
    let mut cfg = NodeConfig::new(id, dir.join(format!("n{id}")), addr);
    cfg.key_file = dir.join("cluster.key");
    if fast {
        cfg.heartbeat_interval = Duration::from_millis(50);
        cfg.election_timeout_min = Duration::from_millis(150);
        cfg.election_timeout_max = Duration::from_millis(300);
    }
    cfg.initial_cluster = founders.iter().map(|(i, a)| (*i, a.to_string())).collect();
    let (tx, rx) = oneshot::channel();
    let node = MetaNode::start(cfg, async move {
        let _ = rx.await;
    })
    .await
    .unwrap();
    (node, tx)
}

/// The voter sets of `node`'s membership (two while a change is half done).
fn configs(node: &MetaNode) -> Vec<BTreeSet<u64>> {
    node.ctx
        .raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .get_joint_config()
        .clone()
}

/// Waits until `node`'s membership has these voter sets.
async fn wait_configs(node: &MetaNode, want: &[&[u64]]) {
    let want: Vec<BTreeSet<u64>> = want.iter().map(|c| c.iter().copied().collect()).collect();
    for _ in 0..100 {
        if configs(node) == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(configs(node), want);
}

/// Node 1 leading a one-node cluster (with [`FAST`] timing), in a fresh directory that the
/// nodes the test adds share.
async fn founder() -> (tempfile::TempDir, MetaNode, oneshot::Sender<()>) {
    let dir = tempfile::tempdir().unwrap();
    let a1 = free_addr();
    let (n1, stop) = start(1, a1, &[(1, a1)], dir.path(), FAST).await;
    assert_eq!(leader_of(&n1).await, 1);
    (dir, n1, stop)
}

fn client(addr: SocketAddr) -> MetaClient {
    MetaClient::new(&[addr.to_string()], &nimbus_tls::Transport::Plaintext).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn t60_an_add_stopped_after_the_learner_is_finished_and_a_repeat_is_done() {
    let (dir, n1, _stop1) = founder().await;
    let (a1, a2) = (n1.local_addr, free_addr());
    let (_n2, _stop2) = start(2, a2, &[], dir.path(), FAST).await;

    // The first attempt's learner step, with no promotion after it.
    let learner = BasicNode {
        addr: a2.to_string(),
    };
    n1.ctx.raft.add_learner(2, learner, true).await.unwrap();
    wait_configs(&n1, &[&[1]]).await;

    let c = client(a1);
    let msg = c.add_member(2, &a2.to_string()).await.unwrap();
    assert!(msg.contains("interrupted add was completed"), "{msg}");
    wait_configs(&n1, &[&[1, 2]]).await;

    // Sent again once more (its answer lost): done, nothing changes.
    let msg = c.add_member(2, &a2.to_string()).await.unwrap();
    assert!(msg.contains("already a voting member"), "{msg}");
    wait_configs(&n1, &[&[1, 2]]).await;

    // The same id at another address is a genuine conflict.
    let err = c
        .add_member(2, "127.0.0.1:1")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("AlreadyExists") && err.contains(&format!("already a member at {a2}")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn t61_an_add_stopped_in_the_joint_configuration_is_finished() {
    let (dir, n1, _stop1) = founder().await;
    let (a1, a2) = (n1.local_addr, free_addr());

    // Node 2 is not running yet, so the promotion's joint configuration {1} + {1,2} cannot
    // commit; the caller gives up and never proposes the final one, as a leader that
    // lost its term between the two steps would.
    let learner = BasicNode {
        addr: a2.to_string(),
    };
    n1.ctx.raft.add_learner(2, learner, false).await.unwrap();
    let promote = n1
        .ctx
        .raft
        .change_membership(ChangeMembers::AddVoterIds([2].into()), false);
    assert!(
        tokio::time::timeout(Duration::from_secs(1), promote)
            .await
            .is_err(),
        "the joint configuration cannot commit without node 2"
    );
    wait_configs(&n1, &[&[1], &[1, 2]]).await;

    let (_n2, _stop2) = start(2, a2, &[], dir.path(), FAST).await;
    let msg = client(a1).add_member(2, &a2.to_string()).await.unwrap();
    assert!(msg.contains("interrupted add was completed"), "{msg}");
    wait_configs(&n1, &[&[1, 2]]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn t62_a_repeated_removal_is_done_and_an_unknown_id_is_not_found() {
    let (dir, n1, _stop1) = founder().await;
    let (a1, a2) = (n1.local_addr, free_addr());
    let (_n2, _stop2) = start(2, a2, &[], dir.path(), FAST).await;
    let c = client(a1);
    c.add_member(2, &a2.to_string()).await.unwrap();

    let msg = c.remove_member(2).await.unwrap();
    assert!(msg.contains("removed"), "{msg}");
    wait_configs(&n1, &[&[1]]).await;
    // Sent again (its answer lost): done.
    let msg = c.remove_member(2).await.unwrap();
    assert!(msg.contains("already removed"), "{msg}");
    let err = c.remove_member(9).await.unwrap_err().to_string();
    assert!(err.contains("not a member"), "{err}");
}

/// The leader `node` knows of, once there is one.
async fn leader_of(node: &MetaNode) -> u64 {
    for _ in 0..200 {
        if let Some(l) = node.ctx.raft.metrics().borrow().current_leader {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no leader elected");
}

#[tokio::test(flavor = "multi_thread")]
async fn t70_a_leader_that_hears_no_quorum_refuses_calls_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let members: Vec<(u64, SocketAddr)> = (1..=3).map(|id| (id, free_addr())).collect();
    let mut nodes = Vec::new();
    for (id, addr) in &members {
        // The default timing: no election on a loaded machine moves the leader under
        // the test; check-quorum's bound is then 1.2 s.
        nodes.push(start(*id, *addr, &members, dir.path(), !FAST).await);
    }
    let leader = leader_of(&nodes[0].0).await;
    let at = members.iter().find(|(id, _)| *id == leader).unwrap().1;
    let mut c = client(at);
    let account = |n: u32| Command::PutAccount {
        account_id: format!("{n:012}"),
    };
    c.write(account(1)).await.unwrap();
    let status = || async {
        MetaClient::node_status(&at.to_string(), &nimbus_tls::Transport::Plaintext)
            .await
            .unwrap()
    };
    let s = status().await;
    assert!(
        s.leader == Some(leader) && !s.quorum_lost,
        "a leader with its quorum: {s:?}"
    );

    // Both followers stop; the leader, still leading by its own metrics, hears no one.
    let mut kept = Vec::new();
    for ((id, _), (node, stop)) in members.iter().zip(nodes) {
        if *id == leader {
            kept.push((node, stop));
        } else {
            drop(stop);
            let _ = tokio::time::timeout(Duration::from_secs(3), node.wait()).await;
        }
    }
    // One attempt each, so the leader's own answer comes back.
    c.deadline = Duration::ZERO;
    let start = Instant::now();
    let err = c.write(account(2)).await.unwrap_err();
    let took = start.elapsed();
    assert!(
        matches!(err, ClientError::Unavailable(_)) && err.to_string().contains("check-quorum"),
        "{err}"
    );
    // Without check-quorum the write would wait out its 5 s write timeout.
    assert!(took < Duration::from_secs(4), "refused after {took:?}");
    // A linearizable read's quorum round ends at once, too.
    let start = Instant::now();
    let err = c.get("account/000000000001").await.unwrap_err();
    assert!(matches!(err, ClientError::Unavailable(_)), "{err}");
    assert!(start.elapsed() < Duration::from_secs(4), "{err}");
    assert_eq!(
        kept[0].0.ctx.raft.metrics().borrow().current_leader,
        Some(leader),
        "it still leads by openraft's account: only its answers changed"
    );
    // Its status says so, for operators and `nimbus cluster status`.
    let s = status().await;
    assert!(
        s.leader == Some(leader) && s.role == "leader" && s.quorum_lost,
        "a leader that hears no quorum: {s:?}"
    );
}
