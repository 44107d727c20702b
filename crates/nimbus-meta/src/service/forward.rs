//! Forwarding to the leader, written once for every call only the leader may answer
//! (writes, linearizable reads, leases, membership changes).
//!
//! A follower learns who leads from openraft (a `ForwardToLeader` answer, or its metrics
//! for membership changes), sends the call on over the channel it keeps for that peer,
//! and marks it forwarded. A forwarded call is never forwarded again: two nodes that
//! each believe the other leads (a leader change under way) would bounce it between them,
//! so the second node answers `UNAVAILABLE` instead and the client retries.

use std::future::Future;
use std::time::Duration;

use nimbus_proto::meta as pb;
use nimbus_proto::meta::metadata_client::MetadataClient;
use openraft::error::{CheckIsLeaderError, ForwardToLeader, RaftError};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use super::{unavailable, NodeContext};
use crate::raft_types::{Node, NodeId};

/// Header set on a call forwarded by a follower. On a write it also means the command is
/// already sealed.
const FORWARDED: &str = "x-nimbus-forwarded";

/// Why a read-index round confirmed nothing (both mean "try again, maybe elsewhere").
#[derive(Debug, thiserror::Error)]
pub(super) enum ReadIndexError {
    #[error("no quorum answered in time")]
    NoQuorum,
    #[error("raft: {0}")]
    Raft(String),
}

/// Was this call forwarded by another node? Only a metadata node's word counts: a
/// gateway that set the header would otherwise have its writes skip sealing.
pub(super) fn is_forwarded<T>(req: &Request<T>) -> bool {
    req.metadata().contains_key(FORWARDED)
        && nimbus_tls::caller(req).is_none_or(|id| id.role == nimbus_tls::Role::Meta)
}

/// Where a call that only the leader may answer is served.
enum Route {
    /// This node leads: serve it here.
    Here,
    /// Forward it to the leader at this address.
    Leader(String),
}

/// How to learn whether this node leads.
pub(super) enum Check {
    /// A read-index round confirms it with a quorum (so a deposed leader that has not
    /// noticed yet never answers); the string names the call in errors.
    Quorum(&'static str),
    /// This node's metrics name the leader: enough where openraft itself refuses to act
    /// on a node that no longer leads (membership changes).
    Metrics,
}

/// A call only the leader may answer, once routed.
pub(super) enum OnLeader<R: LeaderCall> {
    /// This node leads: serve the request here.
    Here(R),
    /// It was forwarded: the leader's answer, to return as it is.
    Answered(Response<R::Reply>),
}

/// A Metadata call that can be forwarded: its request type names the client method.
pub(super) trait LeaderCall: Sized + Send + 'static {
    type Reply;
    fn send(
        client: MetadataClient<Channel>,
        req: Request<Self>,
    ) -> impl Future<Output = Result<Response<Self::Reply>, Status>> + Send;
}

macro_rules! leader_call {
    ($($req:ty => $reply:ty, $method:ident;)*) => {$(
        impl LeaderCall for $req {
            type Reply = $reply;
            fn send(
                mut client: MetadataClient<Channel>,
                req: Request<Self>,
            ) -> impl Future<Output = Result<Response<Self::Reply>, Status>> + Send {
                async move { client.$method(req).await }
            }
        }
    )*};
}

leader_call! {
    pb::WriteRequest => pb::WriteResponse, write;
    pb::ReadRequest => pb::ReadResponse, read;
    pb::LeaseRequest => pb::LeaseResponse, acquire_lease;
    pb::AddMemberRequest => pb::AdminResponse, add_member;
    pb::RemoveMemberRequest => pb::AdminResponse, remove_member;
}

impl NodeContext {
    /// Serves `req` here if this node leads, or forwards it to the leader.
    pub(super) async fn on_leader<R: LeaderCall>(
        &self,
        req: Request<R>,
        check: Check,
    ) -> Result<OnLeader<R>, Status> {
        let forwarded = is_forwarded(&req);
        let route = match check {
            Check::Quorum(what) => self.route_confirmed(forwarded, what).await?,
            Check::Metrics => self.route_known(forwarded)?,
        };
        match route {
            Route::Here => {
                self.ensure_quorum_heard()?;
                Ok(OnLeader::Here(req.into_inner()))
            }
            Route::Leader(leader) => {
                let answer = self.forward(&leader, req.into_inner(), None).await?;
                Ok(OnLeader::Answered(answer))
            }
        }
    }

    /// Sends `req` on to the leader at `leader`, marked forwarded, with an optional
    /// deadline, and returns the leader's answer as this node's.
    pub(super) async fn forward<R: LeaderCall>(
        &self,
        leader: &str,
        req: R,
        deadline: Option<Duration>,
    ) -> Result<Response<R::Reply>, Status> {
        let mut fwd = Request::new(req);
        fwd.metadata_mut()
            .insert(FORWARDED, MetadataValue::from_static("1"));
        if let Some(d) = deadline {
            fwd.set_timeout(d);
        }
        let peer = self.peer(leader)?;
        tokio::select! {
            answer = R::send(peer, fwd) => answer,
            () = self.leader_moved_from(leader) => Err(unavailable(
                "the metadata leader changed while the call was forwarded to it; retry",
            )),
        }
    }

    /// Resolves when this node's metrics name a leader other than the one at `addr`, or
    /// none: a call forwarded to a leader that is gone (cut off, or deposed by
    /// check-quorum) would otherwise wait for its deadline, or for ever without one.
    /// Only changes count, so a view that lags the `ForwardToLeader` the call was routed
    /// by does not end it at once.
    async fn leader_moved_from(&self, addr: &str) {
        let mut metrics = self.raft.metrics();
        while metrics.changed().await.is_ok() {
            let m = metrics.borrow_and_update();
            let leader = m
                .current_leader
                .and_then(|id| m.membership_config.membership().get_node(&id));
            if leader.is_none_or(|n| n.addr != addr) {
                return;
            }
        }
        // Raft stopped: nothing will answer through this node.
    }

    /// The address to forward to, from what openraft says about the leader.
    pub(super) fn forward_target(
        &self,
        leader: &ForwardToLeader<NodeId, Node>,
        forwarded: bool,
    ) -> Result<String, Status> {
        let (Some(id), Some(node)) = (leader.leader_id, leader.leader_node.as_ref()) else {
            return Err(unavailable("no metadata leader elected right now; retry"));
        };
        // Told to forward to itself: openraft's view is mid-change.
        if forwarded || id == self.id {
            return Err(unavailable("leadership is changing; retry"));
        }
        Ok(node.addr.clone())
    }

    /// A read-index round: `Ok(None)` when a quorum confirms that this node leads right
    /// now, `Ok(Some(leader))` when another node does (or none is known).
    pub(super) async fn read_index(
        &self,
    ) -> Result<Option<ForwardToLeader<NodeId, Node>>, ReadIndexError> {
        let confirmed = tokio::select! {
            r = tokio::time::timeout(self.write_timeout, self.raft.ensure_linearizable()) => r,
            _ = self.quorum_lost() => return Err(ReadIndexError::NoQuorum),
        };
        match confirmed {
            Err(_) => Err(ReadIndexError::NoQuorum),
            Ok(Ok(_)) => Ok(None),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => Ok(Some(f)),
            Ok(Err(e)) => Err(ReadIndexError::Raft(e.to_string())),
        }
    }

    /// Where to serve `what`, with leadership confirmed by a quorum first (so a deposed
    /// leader that has not noticed yet never answers).
    async fn route_confirmed(&self, forwarded: bool, what: &str) -> Result<Route, Status> {
        match self.read_index().await {
            Ok(None) => Ok(Route::Here),
            Ok(Some(f)) => Ok(Route::Leader(self.forward_target(&f, forwarded)?)),
            Err(ReadIndexError::NoQuorum) => Err(unavailable(format!(
                "{what} could not reach a quorum in time"
            ))),
            Err(e) => Err(unavailable(e.to_string())),
        }
    }

    /// Where to serve a membership change: the leader this node's metrics name. No
    /// quorum round: openraft itself refuses a change on a node that no longer leads.
    fn route_known(&self, forwarded: bool) -> Result<Route, Status> {
        let m = self.raft.metrics().borrow().clone();
        if m.current_leader == Some(self.id) {
            return Ok(Route::Here);
        }
        let leader = ForwardToLeader {
            leader_id: m.current_leader,
            leader_node: m
                .current_leader
                .and_then(|l| m.membership_config.membership().get_node(&l).cloned()),
        };
        Ok(Route::Leader(self.forward_target(&leader, forwarded)?))
    }
}
