//! Cluster administration: a node's status, and membership changes (on the leader).
//!
//! A member joins as a learner, catches up, then becomes a voter; a removed member's id
//! is retired in the state machine first, so it is never reused even if the removal is
//! interrupted.
//!
//! Adding a member is resumable. The client sends an `AddMember` again, to whichever node
//! leads by then, when its first attempt got no answer; that attempt may have stopped
//! anywhere (an election between the learner's entry and the promotion, or after the
//! promotion but before the answer). So [`join_plan`] reads what the membership already
//! holds: the same id at the same address as a learner, or as a voter of only one half of
//! a joint configuration, is an add to finish; a voter of the whole configuration is an
//! add that is done; only the same id at another address is a conflict.

use std::collections::BTreeSet;

use nimbus_proto::meta as pb;
use nimbus_types::{keys, Command, Query, QueryOutput};
use openraft::{BasicNode, ChangeMembers, Membership, ServerState};
use tonic::{Request, Response, Status};

use super::forward::{Check, OnLeader};
use super::{internal, unavailable, NodeContext};
use crate::raft_types::{Node, NodeId};

pub(super) fn node_status(ctx: &NodeContext) -> Response<pb::NodeStatusResponse> {
    let m = ctx.raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let members = membership
        .nodes()
        .map(|(id, node)| {
            let role = if Some(*id) == m.current_leader {
                "leader"
            } else if voters.contains(id) {
                "follower"
            } else {
                "learner"
            };
            pb::Member {
                id: *id,
                addr: node.addr.clone(),
                role: role.into(),
            }
        })
        .collect();
    Response::new(pb::NodeStatusResponse {
        id: ctx.id,
        addr: ctx.addr.clone(),
        role: role_name(m.state).into(),
        term: m.current_term,
        leader: m.current_leader,
        applied: m.last_applied.map(|l| l.index).unwrap_or(0),
        committed: ctx.committed_index(),
        last_log: m.last_log_index.unwrap_or(0),
        snapshot_index: m.snapshot.map(|l| l.index),
        members,
        quorum_lost: m.state == ServerState::Leader
            && ctx
                .quorum
                .lost_quorum(m.current_term, std::time::Instant::now()),
    })
}

fn role_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Learner => "learner",
        ServerState::Candidate => "candidate",
        ServerState::Shutdown => "shutdown",
    }
}

pub(super) async fn add_member(
    ctx: &NodeContext,
    req: Request<pb::AddMemberRequest>,
) -> Result<Response<pb::AdminResponse>, Status> {
    let r = match ctx.on_leader(req, Check::Metrics).await? {
        OnLeader::Here(r) => r,
        OnLeader::Answered(a) => return Ok(a),
    };
    let _serial = ctx.admin_lock.lock().await;
    if r.id == 0 || !crate::node::is_node_addr(&r.addr) {
        return Err(Status::invalid_argument(
            "member needs a non-zero id and a HOST:PORT address",
        ));
    }
    if was_retired(ctx, r.id)? {
        return Err(Status::already_exists(format!(
            "node id {} was used by a removed member; ids are never reused",
            r.id
        )));
    }
    let done = match join_plan(&current_membership(ctx), r.id, &r.addr) {
        JoinPlan::Conflict(addr) => {
            return Err(Status::already_exists(format!(
                "node {} is already a member at {addr}, not {}",
                r.id, r.addr
            )));
        }
        JoinPlan::Done => {
            return Ok(Response::new(pb::AdminResponse {
                message: format!("node {} at {} is already a voting member", r.id, r.addr),
            }));
        }
        JoinPlan::Add => "",
        JoinPlan::Resume => " (an interrupted add was completed)",
    };
    // For a learner already there this adds nothing (openraft keeps the node as it is)
    // but still waits until it has caught up, so the promotion below finds it ready.
    let node = BasicNode {
        addr: r.addr.clone(),
    };
    ctx.raft
        .add_learner(r.id, node, true)
        .await
        .map_err(|e| unavailable(format!("adding learner {}: {e}", r.id)))?;
    // Relative to the latest configuration, so that a joint one left by an interrupted
    // promotion is completed rather than replaced.
    ctx.raft
        .change_membership(ChangeMembers::AddVoterIds([r.id].into()), false)
        .await
        .map_err(|e| unavailable(format!("promoting {}: {e}", r.id)))?;
    Ok(Response::new(pb::AdminResponse {
        message: format!("node {} at {} is now a voting member{done}", r.id, r.addr),
    }))
}

/// What an `AddMember` of `id` at `addr` has left to do, given the leader's membership.
#[derive(Debug, PartialEq, Eq)]
enum JoinPlan {
    /// Not a member: add it as a learner, then promote it.
    Add,
    /// An earlier add of this id at this address stopped part way (a learner, or a voter
    /// of only one half of a joint configuration): finish it.
    Resume,
    /// A voter of every configuration at this address: nothing left to do.
    Done,
    /// The id is a member at this other address.
    Conflict(String),
}

fn join_plan(membership: &Membership<NodeId, Node>, id: NodeId, addr: &str) -> JoinPlan {
    let Some(node) = membership.get_node(&id) else {
        return JoinPlan::Add;
    };
    if node.addr != addr {
        return JoinPlan::Conflict(node.addr.clone());
    }
    let configs = membership.get_joint_config();
    if configs.len() == 1 && configs[0].contains(&id) {
        JoinPlan::Done
    } else {
        JoinPlan::Resume
    }
}

pub(super) async fn remove_member(
    ctx: &NodeContext,
    req: Request<pb::RemoveMemberRequest>,
) -> Result<Response<pb::AdminResponse>, Status> {
    let r = match ctx.on_leader(req, Check::Metrics).await? {
        OnLeader::Here(r) => r,
        OnLeader::Answered(a) => return Ok(a),
    };
    let _serial = ctx.admin_lock.lock().await;
    let membership = current_membership(ctx);
    if membership.get_node(&r.id).is_none() {
        // A retry of a removal that completed (its answer was lost) is done; any other
        // id that is not a member is a mistake.
        if was_retired(ctx, r.id)? {
            return Ok(Response::new(pb::AdminResponse {
                message: format!("node {} was already removed; its id is retired", r.id),
            }));
        }
        return Err(Status::not_found(format!("node {} is not a member", r.id)));
    }
    let voters: BTreeSet<NodeId> = membership.voter_ids().filter(|v| *v != r.id).collect();
    if voters.is_empty() {
        return Err(Status::failed_precondition(
            "cannot remove the last voting member",
        ));
    }
    // Retire the id first: even if the removal is interrupted, the id is never reused.
    let retire = crate::raft_types::Request {
        request_id: uuid::Uuid::new_v4().to_string(),
        command: Command::RetireNode { id: r.id },
    };
    ctx.raft
        .client_write(retire)
        .await
        .map_err(|e| unavailable(format!("retiring id {}: {e}", r.id)))?;
    ctx.raft
        .change_membership(voters, false)
        .await
        .map_err(|e| unavailable(format!("removing {}: {e}", r.id)))?;
    Ok(Response::new(pb::AdminResponse {
        message: format!("node {} removed; its id is retired", r.id),
    }))
}

/// Was `id` retired by a removal?
fn was_retired(ctx: &NodeContext, id: NodeId) -> Result<bool, Status> {
    let retired = ctx.sm.query(&Query::Get {
        key: keys::retired_node(id),
    });
    match retired {
        Ok(QueryOutput::Entity(e)) => Ok(e.is_some()),
        Ok(_) => Err(internal(format!("reading retired id {id}: not an entity"))),
        Err(e) => Err(internal(e)),
    }
}

/// The membership this node knows (the leader's is the latest).
fn current_membership(ctx: &NodeContext) -> Membership<NodeId, Node> {
    ctx.raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .clone()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn membership(configs: &[&[NodeId]], learners: &[NodeId]) -> Membership<NodeId, Node> {
        let configs: Vec<BTreeSet<NodeId>> = configs
            .iter()
            .map(|c| c.iter().copied().collect())
            .collect();
        let nodes: BTreeMap<NodeId, Node> = configs
            .iter()
            .flatten()
            .chain(learners)
            .map(|id| (*id, BasicNode { addr: addr(*id) }))
            .collect();
        Membership::new(configs, nodes)
    }

    fn addr(id: NodeId) -> String {
        format!("10.0.0.{id}:17001")
    }

    #[test]
    fn a_new_id_is_added() {
        let m = membership(&[&[1, 2, 3]], &[]);
        assert_eq!(join_plan(&m, 4, &addr(4)), JoinPlan::Add);
    }

    #[test]
    fn an_interrupted_add_is_resumed() {
        // The learner was added, the promotion never started.
        let m = membership(&[&[1, 2, 3]], &[4]);
        assert_eq!(join_plan(&m, 4, &addr(4)), JoinPlan::Resume);
        // The promotion's joint configuration committed, the final one was never proposed.
        let m = membership(&[&[1, 2, 3], &[1, 2, 3, 4]], &[]);
        assert_eq!(join_plan(&m, 4, &addr(4)), JoinPlan::Resume);
    }

    #[test]
    fn a_completed_add_is_done_and_another_address_conflicts() {
        let m = membership(&[&[1, 2, 3, 4]], &[]);
        assert_eq!(join_plan(&m, 4, &addr(4)), JoinPlan::Done);
        for m in [m, membership(&[&[1, 2, 3]], &[4])] {
            assert_eq!(
                join_plan(&m, 4, "10.0.0.9:17001"),
                JoinPlan::Conflict(addr(4))
            );
        }
    }
}
