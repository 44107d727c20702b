//! The Nimbus metadata cluster.
//!
//! Three or five `nimbus meta` nodes replicate every function, version, alias, code package
//! and concurrency limit with Raft (openraft 0.9, pinned; see docs/design/0001). Each node
//! serves Raft and the metadata API on one tonic listen address.
//!
//! Layout:
//! - [`raft_types`]: the openraft type configuration: what a log entry carries and returns.
//! - [`log_store`]: the Raft log, vote and committed id in RocksDB, fsync'd before acking.
//! - [`state_machine`]: applies [`nimbus_types::Command`]s to a RocksDB state machine;
//!   snapshots are RocksDB checkpoints streamed as a file in chunks; keeps the change log
//!   the watch stream serves and the request-id table that makes retries idempotent.
//! - [`crypto`]: AES-256-GCM sealing of code chunks and access-key secrets.
//! - [`network`]: the Raft transport (openraft's RPCs over tonic).
//! - [`check_quorum`]: a leader that no quorum answers goes silent for its term, so the
//!   others elect a new one (openraft 0.9 has no check-quorum).
//! - [`service`]: the gRPC services (Raft and Metadata), one module per concern
//!   (raft, metadata, code, backup, leases, admin), and leader forwarding written once.
//! - [`leases`]: the leader's concurrency-lease policy (pure, clock passed in).
//! - [`node`]: starting a node: open storage, create Raft, serve, form the initial cluster.
//! - [`metrics`]: Raft's state as Prometheus metrics (term, leader, indexes, snapshots).
//! - [`client`]: the client that gateways, workers and the CLI use.
//! - [`error`]: this crate's error types.
//! - `sync`: taking locks whose holder panicked (one rule for the whole crate).
#![forbid(unsafe_code)]
// openraft's trait methods fix the error types (StorageError, RPCError); they are large by
// design and only travel on error paths.
#![allow(clippy::result_large_err)]

pub mod check_quorum;
pub mod client;
pub mod crypto;
pub mod error;
pub mod leases;
pub mod log_store;
pub mod metrics;
pub mod network;
pub mod node;
pub mod proposals;
pub mod raft_types;
pub mod service;
pub mod state_machine;
mod sync;

pub use client::{KeySecret, MetaClient};
pub use error::{ClientError, NodeError};
pub use node::{MetaNode, NodeConfig};
