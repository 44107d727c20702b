//! The Raft service: peers' RPCs handed to openraft.
//!
//! Every RPC carries one postcard-encoded openraft message each way (see
//! `proto/nimbus/meta/v1/raft.proto`), so one relay serves all three.

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;

use nimbus_proto::meta as pb;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use super::NodeContext;

/// The Raft service of one node.
pub struct RaftService(pub Arc<NodeContext>);

/// Decodes the request, hands it to openraft with `call`, and encodes the answer.
async fn relay<Rpc, Reply, E, Fut>(
    req: Request<pb::RaftMessage>,
    call: impl FnOnce(Rpc) -> Fut,
) -> Result<Response<pb::RaftMessage>, Status>
where
    Rpc: DeserializeOwned,
    Reply: Serialize,
    E: Display,
    Fut: Future<Output = Result<Reply, E>>,
{
    let rpc = postcard::from_bytes(&req.into_inner().payload)
        .map_err(|e| Status::invalid_argument(format!("bad raft payload: {e}")))?;
    let reply = call(rpc)
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
    postcard::to_stdvec(&reply)
        .map(|payload| Response::new(pb::RaftMessage { payload }))
        .map_err(|e| Status::internal(e.to_string()))
}

#[tonic::async_trait]
impl pb::raft_server::Raft for RaftService {
    async fn append_entries(
        &self,
        req: Request<pb::RaftMessage>,
    ) -> Result<Response<pb::RaftMessage>, Status> {
        relay(req, |rpc| self.0.raft.append_entries(rpc)).await
    }

    async fn vote(
        &self,
        req: Request<pb::RaftMessage>,
    ) -> Result<Response<pb::RaftMessage>, Status> {
        relay(req, |rpc| self.0.raft.vote(rpc)).await
    }

    async fn install_snapshot(
        &self,
        req: Request<pb::RaftMessage>,
    ) -> Result<Response<pb::RaftMessage>, Status> {
        relay(req, |rpc| self.0.raft.install_snapshot(rpc)).await
    }
}
