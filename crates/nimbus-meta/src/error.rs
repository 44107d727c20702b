//! Errors of the metadata crate.
//!
//! Following openraft's split: [`NodeError`] is fatal to a node (storage broken, cannot
//! bind), [`ClientError`] is what a caller of the metadata API can get and act on.

use nimbus_types::MetaError;

/// A node cannot start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("storage: {0}")]
    Storage(#[from] rocksdb::Error),
    #[error("I/O on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("raft: {0}")]
    Raft(String),
    #[error("serving gRPC: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("cluster key: {0}")]
    Key(String),
}

impl NodeError {
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        NodeError::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

/// What a metadata API call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The operation was refused by the metadata layer (not found, conflict, invalid …).
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// No node could serve the call before the deadline.
    #[error("metadata cluster unavailable: {0}")]
    Unavailable(String),
    /// The caller's certificate does not allow the call (or there was none).
    #[error("refused by the metadata cluster: {0}")]
    Denied(String),
    /// The watch stream's starting revision was compacted away; re-list and watch again.
    #[error("watch revision {requested} is compacted (oldest kept is {oldest})")]
    Compacted { requested: u64, oldest: u64 },
    #[error("protocol: {0}")]
    Protocol(String),
}
