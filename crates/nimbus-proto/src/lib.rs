//! Generated gRPC types and services for traffic between Nimbus nodes.
//!
//! The `.proto` sources live in the repository's top-level `proto/` folder.
#![allow(clippy::all, missing_docs)]

/// `nimbus.meta.v1`: Raft transport and the metadata API.
pub mod meta {
    tonic::include_proto!("nimbus.meta.v1");
}

/// `nimbus.worker.v1`: gateways invoking functions on workers.
pub mod worker {
    tonic::include_proto!("nimbus.worker.v1");
}
