//! The Nimbus gateway: where users and their tools meet Nimbus.
//!
//! It speaks the Lambda REST API (`/2015-03-31/...` and friends) so the AWS CLI, boto3
//! and the SDKs work with `--endpoint-url`. The gateway is stateless: it reads through a
//! watch-fed catalog of the metadata and writes through the metadata cluster.
//!
//! Two layers, and calls only go down:
//! - [`core`]: resolve, admission, placement, invocation, async events, provisioned
//!   concurrency and log queries, with typed results and errors and no HTTP types. Every
//!   front door (the REST API today, function URLs and streaming next) plugs in here.
//! - [`http`]: the Lambda REST API and the CloudWatch Logs API as thin adapters over
//!   the core, Signature V4, and the one mapping of errors to Lambda's wire format.
//!
//! Beside them:
//! - [`remote`]: the cluster's [`Workers`]: worker nodes over gRPC (transport only).
//! - [`client`]: a small signed Lambda client for Nimbus's own tools, tests and benchmarks.
#![forbid(unsafe_code)]

pub mod client;
pub mod core;
pub mod http;
pub mod remote;

pub use crate::core::{
    ApiError, Gateway, GatewayConfig, InvokeRequest, InvokeResult, InvokeTarget, PlacementConfig,
    WorkerError, WorkerView, Workers,
};
pub use remote::{RemoteConfig, RemoteWorkers};
