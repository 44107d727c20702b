//! The Nimbus gateway: where users and their tools meet Nimbus.
//!
//! It speaks the Lambda REST API (`/2015-03-31/...` and friends) so the AWS CLI, boto3
//! and the SDKs work with `--endpoint-url`. The gateway is stateless: it reads through a
//! watch-fed cache of the metadata and writes through the metadata cluster.
//!
//! Layout:
//! - [`server`]: the router, shared state, and Signature V4 authentication of every call.
//! - [`sigv4`]: Signature Version 4 verification.
//! - [`error`]: [`ApiError`] and its one mapping to Lambda's wire format.
//! - [`cache`]: the metadata cache kept exact by the watch stream.
//! - [`resolve`]: function names (name, partial ARN, ARN) and qualifiers.
//! - [`admission`]: concurrency limits: account-wide and reserved per function.
//! - [`invoker`]: the boundary to workers ([`Invoker`]), and what crosses it.
//! - [`async_events`]: `Event` invocations: durable queue, dispatcher, retries, destinations.
//! - [`placement`]: which worker runs an invocation (warm first, then free memory).
//! - [`provisioned`]: provisioned concurrency: environments kept initialised on workers.
//! - [`remote`]: the cluster's [`Invoker`]: worker discovery, channels, retries.
//! - [`api`]: one module per group of Lambda operations.
//! - [`logs`]: function logs for tools, as a CloudWatch Logs API subset, read from workers.
//! - [`client`]: a small signed Lambda client for Nimbus's own tools, tests and benchmarks.
#![forbid(unsafe_code)]

pub mod admission;
pub mod api;
pub mod async_events;
pub mod cache;
pub mod client;
pub mod error;
pub mod invoker;
pub mod logs;
pub mod placement;
pub mod provisioned;
pub mod remote;
pub mod resolve;
pub mod server;
pub mod sigv4;

pub use error::ApiError;
pub use invoker::{InvokeRequest, InvokeResult, InvokeTarget, Invoker};
pub use remote::{RemoteConfig, RemoteInvoker};
pub use server::{Gateway, GatewayConfig};
