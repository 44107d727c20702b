//! [`Teardown`]: ending every process of an environment promptly, whatever
//! those processes are doing.
//!
//! SIGKILL to the environment's first process (its PID namespace's init) makes
//! the kernel kill the rest of the namespace, but each dying process still runs
//! its own exit, in its own time slices, charged to the environment's CPU
//! quota, and the kernel reaps init only once the whole namespace is gone. A
//! fork-bombed environment with a 15 s timeout was answered only after up to
//! 120 s that way (issue 13). So a teardown:
//!
//! 1. kills the whole cgroup at once with `cgroup.kill` (cgroup v2, Linux
//!    5.14+): the kernel signals every process in it and fails the forks that
//!    race with it. Where that file is missing (an older kernel, the v1 layout)
//!    it fails closed onto the slower way: freeze the cgroup where it can
//!    (`cgroup.freeze`, v2: a frozen process cannot fork, and SIGKILL still
//!    ends it) and SIGKILL every pid in `cgroup.procs`, again and again until
//!    none is left;
//! 2. then lifts the CPU quota, so the dying processes exit at the machine's
//!    speed rather than the function's (after the kill, so that what gets the
//!    CPU is processes on their way out);
//! 3. waits, bounded, until the cgroup is empty (`populated 0` in
//!    `cgroup.events`; v1: an empty `cgroup.procs`).
//!
//! The v1 layout has no freezer hierarchy here: a fourth hierarchy would cost
//! every cold start one more `cgroup.procs` write (an RCU grace period on v1).
//! The PID namespace stands in for it: once its killed init begins to exit
//! ([`Sandbox::kill`](crate::Sandbox::kill) comes first), the kernel refuses
//! every further fork in the namespace.
//!
//! A pid read from `cgroup.procs` may have exited and been reaped before it is
//! signalled; it can only name another process if the host's pid counter went
//! all the way round in between (pids are handed out cyclically), the window
//! every cgroup-walking killer (systemd's too) accepts. `cgroup.kill` has none.
//!
//! A [`Teardown`] holds its own copy of the cgroup's paths, not the
//! [`Sandbox`](crate::Sandbox): it runs on a blocking thread while the sandbox
//! handle is locked, reaped or dropped elsewhere. A cgroup that disappears
//! meanwhile (the reaped sandbox removed it) is an empty one.

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::cgroup::Cgroup;

/// How often a teardown looks at the cgroup again (and, without `cgroup.kill`,
/// signals what it finds there).
const POLL: Duration = Duration::from_millis(2);

/// Why a teardown gave up.
#[derive(Debug, thiserror::Error)]
pub enum TeardownError {
    /// Processes were still in the environment's cgroup when the time allowed
    /// ran out.
    #[error("{left} processes still in the environment after {waited:?}")]
    Survivors {
        /// How many were left (`cgroup.procs`).
        left: usize,
        /// How long the teardown tried.
        waited: Duration,
    },
}

/// How the processes are being killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kill {
    /// By the kernel, all at once (`cgroup.kill`).
    AtOnce,
    /// One SIGKILL per pid in `cgroup.procs`, repeated until none is left.
    OneByOne,
}

/// Kills every process of one environment and waits until none is left (see
/// the module documentation). Made by [`Sandbox::teardown`](crate::Sandbox::teardown).
#[derive(Debug)]
pub struct Teardown {
    cgroup: Cgroup,
}

impl Teardown {
    pub(crate) fn new(cgroup: Cgroup) -> Self {
        Teardown { cgroup }
    }

    /// Kills every process in the environment and waits, at most `limit`,
    /// until its cgroup is empty. Blocking: call it from a blocking thread. It
    /// may run more than once, and while the sandbox is being reaped.
    pub fn run(&self, limit: Duration) -> Result<(), TeardownError> {
        let started = Instant::now();
        let how = match self.cgroup.kill_all() {
            Ok(true) => Kill::AtOnce,
            Ok(false) => Kill::OneByOne,
            Err(e) => {
                tracing::warn!(error = %e, "cgroup.kill failed; killing the environment's processes one by one");
                Kill::OneByOne
            }
        };
        if how == Kill::OneByOne {
            // Best effort: without a freezer the loop below still catches
            // every fork, only later.
            if let Err(e) = self.cgroup.freeze() {
                tracing::debug!(error = %e, "cannot freeze a dying environment");
            }
            self.signal_each();
        }
        // Best effort: the processes die either way, only more slowly.
        if let Err(e) = self.cgroup.lift_cpu_quota() {
            tracing::debug!(error = %e, "cannot lift the CPU quota of a dying environment");
        }
        loop {
            if !self.cgroup.populated() {
                tracing::debug!(
                    ?how,
                    teardown_us = started.elapsed().as_micros() as u64,
                    "environment torn down"
                );
                return Ok(());
            }
            let waited = started.elapsed();
            if waited >= limit {
                return Err(TeardownError::Survivors {
                    left: self.cgroup.procs().len(),
                    waited,
                });
            }
            if how == Kill::OneByOne {
                self.signal_each();
            }
            #[allow(clippy::disallowed_methods)] // documented as blocking
            std::thread::sleep(POLL);
        }
    }

    /// SIGKILL to every process in the cgroup now.
    fn signal_each(&self) {
        for pid in self.cgroup.procs() {
            // ESRCH (it has just exited) is the outcome we want anyway.
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}
