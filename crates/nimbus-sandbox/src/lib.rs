//! # nimbus-sandbox
//!
//! Creates one isolated execution environment and execs a Lambda runtime in
//! it, in the style of Firecracker's jailer: one module per isolation step,
//! each failing closed with a typed error. If any step cannot be set up the
//! workload is never started — except under the explicit developer flag
//! [`JailConfig::insecure_no_isolation`], which warns loudly every time.
//!
//! ## Layout
//!
//! * [`config`]     — [`JailConfig`] (host-wide) and [`SandboxSpec`] (one environment).
//! * [`jail`]       — [`Jail`]: orchestrates the steps below and clones the child.
//! * `child`        — what the cloned child does before `execve` (syscalls only).
//! * `filesystem`   — the read-only root, `/var/task`, `/var/runtime`, `/opt`, masks.
//! * [`scratch`]    — the disk-backed, fixed-size `/tmp` (loop-mounted ext4).
//! * [`cgroup`]     — memory, CPU (proportional to memory) and pids limits; peak memory.
//! * [`seccomp`]    — the denied system calls, as data.
//! * [`network`]    — per-environment network namespace; Runtime API socket inside it.
//! * [`nat`]        — optional veth + NAT egress with nftables.
//! * [`process`]    — [`PreparedSandbox`] / [`Sandbox`] handles, exit status, cleanup.
//! * [`teardown`]   — [`Teardown`]: every process of an environment killed, promptly and bounded.
//! * `shell`        — pre-created environment shells (the cold-start pool).
//! * `shell_child`  — what a shell does in its own process; `wire` — the spec it receives.
//! * `zygote`       — a runtime's interpreter started ahead in a shell, handed its function.
//! * `insecure`     — the no-isolation developer mode.
//!
//! This is the only Nimbus crate that contains `unsafe`; every block carries a
//! `// SAFETY:` comment.

pub mod cgroup;
mod child;
pub mod config;
mod error;
mod filesystem;
mod insecure;
pub mod jail;
pub mod nat;
pub mod network;
pub mod process;
pub mod scratch;
pub mod seccomp;
mod shell;
mod shell_child;
pub mod teardown;
mod wire;
mod zygote;

pub use child::ChildStep;
pub use config::{JailConfig, SandboxSpec, SandboxUser, Zygote};
pub use error::SandboxError;
pub use jail::Jail;
pub use nat::NatConfig;
pub use network::NetworkMode;
#[cfg(feature = "tokio")]
pub use process::ExitWatch;
pub use process::{ExitStatus, PreparedSandbox, Sandbox};
pub use shell::ShellShape;
pub use teardown::{Teardown, TeardownError};
pub use zygote::ZygoteShape;
