//! The gRPC services of a metadata node: Raft (peer to peer) and Metadata (clients).
//!
//! Errors cross gRPC here and only here: a refused operation (a `MetaError`) travels in
//! the response body so the caller gets Lambda's error name; "try elsewhere" conditions
//! (no leader, no quorum) are `UNAVAILABLE` statuses that the client retries on another
//! node with the same request id.
//!
//! Layout:
//! - [`context`]: what every service of a node shares ([`NodeContext`]).
//! - [`forward`]: forwarding a call only the leader may answer, written once.
//! - [`raft`]: the Raft service, peers' RPCs handed to openraft.
//! - [`metadata`]: writes, reads and the watch stream.
//! - [`code`]: code packages streamed out and verified chunk by chunk.
//! - [`backup`]: a consistent backup streamed from the leader.
//! - [`leases`]: concurrency leases granted to gateways.
//! - [`admin`]: node status and membership changes.
//! - [`environment`]: functions' environment variables sealed on write, opened on the
//!   way out.
//! - [`authority`]: which role may call what (the table the transport enforces, and
//!   the per-command and per-query checks of `Write` and `Read`).
//!
//! The `Metadata` trait impl below only routes each RPC to its module.

mod admin;
pub mod authority;
mod backup;
mod code;
mod context;
mod environment;
mod forward;
mod leases;
mod metadata;
mod raft;

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use nimbus_proto::meta as pb;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

pub use code::hex;
pub use context::NodeContext;
pub use leases::LEASE;
pub use raft::RaftService;

/// A server stream of `T`s, as tonic's generated traits take it.
type ServerStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;
type EventStream = ServerStream<pb::WatchEvent>;
type ChunkStream = ServerStream<pb::CodeChunk>;
type BackupStream = ServerStream<pb::BackupChunk>;

/// "Try again, maybe on another node": the client retries these with the same request id.
fn unavailable(msg: impl Into<String>) -> Status {
    Status::unavailable(msg.into())
}

/// A failure of this node (storage, a task), not of the request.
fn internal(e: impl ToString) -> Status {
    Status::internal(e.to_string())
}

/// The response for a server stream fed by a task through `rx`.
fn stream<T: Send + 'static>(rx: mpsc::Receiver<Result<T, Status>>) -> Response<ServerStream<T>> {
    Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
}

/// The metadata API.
pub struct MetadataService(pub Arc<NodeContext>);

#[tonic::async_trait]
impl pb::metadata_server::Metadata for MetadataService {
    async fn write(
        &self,
        req: Request<pb::WriteRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        metadata::write(&self.0, req).await
    }

    async fn read(
        &self,
        req: Request<pb::ReadRequest>,
    ) -> Result<Response<pb::ReadResponse>, Status> {
        metadata::read(&self.0, req).await
    }

    type WatchStream = EventStream;

    async fn watch(
        &self,
        req: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        metadata::watch(&self.0, req).await
    }

    type FetchCodeStream = ChunkStream;

    async fn fetch_code(
        &self,
        req: Request<pb::FetchCodeRequest>,
    ) -> Result<Response<Self::FetchCodeStream>, Status> {
        code::fetch_code(&self.0, req).await
    }

    type BackupStream = BackupStream;

    async fn backup(
        &self,
        req: Request<pb::BackupRequest>,
    ) -> Result<Response<Self::BackupStream>, Status> {
        backup::backup(&self.0, req).await
    }

    async fn acquire_lease(
        &self,
        req: Request<pb::LeaseRequest>,
    ) -> Result<Response<pb::LeaseResponse>, Status> {
        leases::acquire_lease(&self.0, req).await
    }

    async fn node_status(
        &self,
        _req: Request<pb::NodeStatusRequest>,
    ) -> Result<Response<pb::NodeStatusResponse>, Status> {
        Ok(admin::node_status(&self.0))
    }

    async fn add_member(
        &self,
        req: Request<pb::AddMemberRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        admin::add_member(&self.0, req).await
    }

    async fn remove_member(
        &self,
        req: Request<pb::RemoveMemberRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        admin::remove_member(&self.0, req).await
    }
}
