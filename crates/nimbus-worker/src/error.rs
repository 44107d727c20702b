//! Engine errors: the invocation could not be attempted (as opposed to a
//! *function* error, which is a successful [`crate::InvokeOutcome`]).

/// Why the engine could not run an invocation.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The configuration is invalid.
    #[error("invalid engine configuration: {0}")]
    Config(String),
    /// The function spec is invalid (unknown runtime, bad memory size, ...).
    #[error("invalid function: {0}")]
    InvalidFunction(String),
    /// The request payload exceeds 6 MB.
    #[error("request payload of {size} bytes exceeds the {limit}-byte limit")]
    PayloadTooLarge {
        /// Payload size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// No memory left on this worker for another environment (maps to 429 / retry elsewhere).
    #[error("worker has no capacity: {needed_mb} MB needed, {free_mb} MB free")]
    NoCapacity {
        /// Memory the new environment needs.
        needed_mb: u64,
        /// Memory not reserved by busy environments.
        free_mb: u64,
    },
    /// The account already holds its fair share of this worker's memory while another
    /// account waits for some (maps to a retry elsewhere, then a throttle).
    #[error(
        "account {account} holds its fair share of this worker's memory while other accounts wait"
    )]
    OverShare {
        /// The account refused.
        account: String,
    },
    /// The sandbox could not be created; the function was not run.
    #[error("cannot create the execution environment: {0}")]
    Sandbox(#[from] nimbus_sandbox::SandboxError),
    /// The engine is shutting down.
    #[error("the engine is shutting down")]
    ShuttingDown,
    /// Host I/O failed.
    #[error("{context}: {source}")]
    Io {
        /// What the engine was doing.
        context: String,
        /// Underlying error.
        source: std::io::Error,
    },
}

impl EngineError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        EngineError::Io {
            context: context.into(),
            source,
        }
    }
}
