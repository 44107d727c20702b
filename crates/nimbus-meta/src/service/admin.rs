//! Cluster administration: a node's status, and membership changes (on the leader).
//!
//! A member joins as a learner, catches up, then becomes a voter; a removed member's id
//! is retired in the state machine first, so it is never reused even if the removal is
//! interrupted.

use std::collections::BTreeSet;

use nimbus_proto::meta as pb;
use nimbus_types::{keys, Command, Query, QueryOutput};
use openraft::{BasicNode, ServerState};
use tonic::{Request, Response, Status};

use super::forward::{Check, OnLeader};
use super::{unavailable, NodeContext};
use crate::raft_types::NodeId;

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
    let retired = ctx.sm.query(&Query::Get {
        key: keys::retired_node(r.id),
    });
    if retired.ok() != Some(QueryOutput::Entity(None)) {
        return Err(Status::already_exists(format!(
            "node id {} was used by a removed member; ids are never reused",
            r.id
        )));
    }
    let membership = current_membership(ctx);
    if membership.get_node(&r.id).is_some() {
        return Err(Status::already_exists(format!(
            "node {} is already a member",
            r.id
        )));
    }
    let node = BasicNode {
        addr: r.addr.clone(),
    };
    ctx.raft
        .add_learner(r.id, node, true)
        .await
        .map_err(|e| unavailable(format!("adding learner {}: {e}", r.id)))?;
    let mut voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    voters.insert(r.id);
    ctx.raft
        .change_membership(voters, false)
        .await
        .map_err(|e| unavailable(format!("promoting {}: {e}", r.id)))?;
    Ok(Response::new(pb::AdminResponse {
        message: format!("node {} at {} is now a voting member", r.id, r.addr),
    }))
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

/// The membership this node knows (the leader's is the latest).
fn current_membership(ctx: &NodeContext) -> openraft::Membership<NodeId, crate::raft_types::Node> {
    ctx.raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .clone()
}
