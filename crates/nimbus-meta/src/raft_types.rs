//! The openraft type configuration of the metadata cluster.

use nimbus_types::{Command, CommandOutput, MetaError};
use serde::{Deserialize, Serialize};

/// What one log entry carries: a command and the id that makes its retries idempotent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub request_id: String,
    pub command: Command,
}

/// What applying an entry returns to the proposer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The log index the command was first applied at (for a retried request id, the
    /// original's), which is also the revision of its changes on the watch stream.
    pub revision: u64,
    pub result: Result<CommandOutput, MetaError>,
}

pub type NodeId = u64;
pub type Node = openraft::BasicNode;

openraft::declare_raft_types!(
    /// Nimbus's Raft types. Snapshots are files (a tar of a RocksDB checkpoint), which
    /// openraft streams to followers in chunks.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = Node,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type StoredMembership = openraft::StoredMembership<NodeId, Node>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Node>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;
