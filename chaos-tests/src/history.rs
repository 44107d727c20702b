//! A recorded history: every operation a client issued, with when it started, when it
//! ended and what it returned, as the linearizability checker and the loss checks read it.

use std::time::Instant;

/// What one operation did to a register (one key of the metadata store).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RegisterOp {
    /// Set the register to this value.
    Write(String),
    /// Read the register; `None` means the key had no value.
    Read(Option<String>),
}

/// One operation on one key, with its invocation and response times in nanoseconds since
/// the run began. `end` is `None` when the outcome is unknown (timed out, connection cut):
/// the operation may or may not have taken effect, at any time after `start`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub client: usize,
    pub key: String,
    pub op: RegisterOp,
    pub start: u64,
    pub end: Option<u64>,
}

/// The operations of one run, appended to by every workload client.
#[derive(Debug)]
pub struct History {
    origin: Instant,
    ops: std::sync::Mutex<Vec<Operation>>,
}

impl History {
    pub fn new() -> Self {
        History {
            origin: Instant::now(),
            ops: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Nanoseconds since the run began (the clock every operation is stamped with).
    pub fn now(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    pub fn record(&self, op: Operation) {
        // A poisoned lock means a client panicked; its ops are still worth checking.
        crate::lock(&self.ops).push(op);
    }

    pub fn operations(&self) -> Vec<Operation> {
        crate::lock(&self.ops).clone()
    }
}

impl Default for History {
    fn default() -> Self {
        Self::new()
    }
}
