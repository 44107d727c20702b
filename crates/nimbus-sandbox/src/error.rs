//! The sandbox's top-level error. Each isolation step has its own error enum
//! in its module; they nest here with `#[from]`.

use nix::errno::Errno;

use crate::cgroup::CgroupError;
use crate::child::ChildStep;
use crate::network::NetworkError;
use crate::scratch::ScratchError;
use crate::seccomp::SeccompError;

/// Why an execution environment could not be created. Any of these means the
/// workload was *not* started: the sandbox fails closed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The spec asks for something the sandbox refuses (bad id, relative path, ...).
    #[error("invalid sandbox spec: {0}")]
    InvalidSpec(String),
    /// The disk-backed `/tmp` could not be created.
    #[error(transparent)]
    Scratch(#[from] ScratchError),
    /// The cgroup could not be created or limited.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// The seccomp policy could not be compiled.
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    /// The network namespace could not be wired.
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// `clone(2)` into the new namespaces failed.
    #[error("cannot create the namespaces (clone): {0}")]
    Clone(Errno),
    /// One isolation step inside the child failed; the child exited without exec.
    #[error("isolation step `{step}` failed inside the sandbox: {errno}")]
    ChildStep {
        /// Which step failed.
        step: ChildStep,
        /// The errno it failed with.
        errno: Errno,
    },
    /// A host-side system call failed.
    #[error("{context}: {source}")]
    Io {
        /// What the sandbox was doing.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl SandboxError {
    pub(crate) fn io(context: impl Into<String>, source: impl Into<std::io::Error>) -> Self {
        SandboxError::Io {
            context: context.into(),
            source: source.into(),
        }
    }
}
