//! Zygotes: a runtime's interpreter started ahead of time in a pre-created shell
//! (`shell.rs`), with its imports loaded, waiting for a function.
//!
//! A shell whose shape names a [`Zygote`] is sent the zygote's own spec as soon as it is
//! ready: the shell takes the last steps of the plain path (rlimits, stdio, the
//! function's user, seccomp) and execs the zygote, keeping only its control socket open
//! across the exec (`wire::KEEP_CONTROL`). So the zygote is isolated exactly as a
//! function's runtime is, before it runs anything: same namespaces, root, cgroups, user
//! and seccomp filter. It is trusted code until it runs the function, and it runs
//! nothing else.
//!
//! At a cold start the host needs no privilege from inside the environment any more:
//! a short-lived child of the host joins the zygote's mount namespace and attaches the
//! function's detached mounts (`/var/task`, `/var/runtime`, `/opt`) and gives `/tmp` to
//! the function's user ([`attach_mounts`]); the host writes the function's limits into
//! the cgroups; only then ([`Handoff::send`], from `PreparedSandbox::start`) does the
//! zygote receive the function's working directory, arguments and environment, in the
//! same wire format as a shell (no descriptors). What the zygote does with them is the
//! runtime's business (nimbus-worker's `runtimes/python/zygote.py`, `runtimes/node/zygote.js`).
//!
//! Output: a started interpreter cannot always replace its own stdout and stderr (Node
//! has no `dup2`), so a zygote writes from the start to a pipe the sandbox made when it
//! started it, and the environment's output is that pipe's read end
//! (`PreparedSandbox::take_output`), not the spec's `stdout`/`stderr`.
//!
//! Fail closed as the shells do: a zygote shell that died, left its cgroups or whose
//! mounts cannot be attached is killed, and the cold start takes the plain path.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use nix::sched::CloneFlags;
use nix::unistd::Pid;

use crate::child::{self, step, SimpleStep, StepResult};
use crate::config::{SandboxSpec, SandboxUser, Zygote};
use crate::error::SandboxError;
use crate::shell::DetachedMounts;
use crate::shell_child;
use crate::wire;

/// A zygote as part of a shell's shape: what it runs, as whom, with which open-files
/// limit (a function gets it only if its spec has the same three).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ZygoteShape {
    /// What it runs.
    pub zygote: Arc<Zygote>,
    /// As whom (the function's user).
    pub user: SandboxUser,
    /// Its `RLIMIT_NOFILE` (the function's).
    pub nofile: u64,
}

impl ZygoteShape {
    pub(crate) fn of(spec: &SandboxSpec) -> Option<Self> {
        spec.zygote.as_ref().map(|z| ZygoteShape {
            zygote: z.clone(),
            user: spec.user,
            nofile: spec.nofile,
        })
    }

    /// The zygote's own spec, sent to a new shell: it keeps `control` (the shell's end
    /// of the control socket, same number after the clone) across its exec.
    pub(crate) fn start_message(&self, control: RawFd) -> Result<Vec<u8>, SandboxError> {
        let z = &self.zygote;
        let mut env = z.env.clone();
        env.push(("NIMBUS_ZYGOTE_FD".into(), control.to_string()));
        crate::shell::Exec {
            user: self.user,
            nofile: self.nofile,
            mounts: wire::KEEP_CONTROL,
            cwd: std::path::Path::new("/"),
            program: &z.program,
            args: &z.args,
            env: &env,
        }
        .message()
    }
}

/// The function's spec, for a zygote that waits for it.
pub(crate) struct Handoff {
    message: Vec<u8>,
}

impl Handoff {
    pub(crate) fn new(message: Vec<u8>) -> Self {
        Handoff { message }
    }

    /// Sends it on the zygote's control socket: from here on the function runs.
    pub(crate) fn send(&self, control: &OwnedFd) -> Result<(), SandboxError> {
        let n = nix::sys::socket::send(
            control.as_raw_fd(),
            &self.message,
            nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
        )
        .map_err(|e| SandboxError::io("send the function to its zygote", e))?;
        if n != self.message.len() {
            return Err(SandboxError::InvalidSpec(
                "the function's spec did not fit one message".into(),
            ));
        }
        Ok(())
    }
}

/// Joins `pid`'s mount namespace in a short-lived child of this process, attaches
/// `mounts` there and gives `/tmp` to `user`: what a shell does itself before its exec,
/// done for a zygote, which is unprivileged by now.
pub(crate) fn attach_mounts(
    pid: Pid,
    mounts: &DetachedMounts,
    user: SandboxUser,
) -> Result<(), SandboxError> {
    let ns = File::open(format!("/proc/{pid}/ns/mnt"))
        .map_err(|e| SandboxError::io("open the zygote's mount namespace", e))?;
    let (err_read, err_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| SandboxError::io("pipe", e))?;
    let fds: Vec<RawFd> = mounts.fds().iter().map(AsRawFd::as_raw_fd).collect();
    let plan = AttachPlan {
        ns: ns.as_raw_fd(),
        mask: mounts.mask(),
        fds: &fds,
        user,
        err_write: err_write.as_raw_fd(),
    };
    let mut stack = vec![0u8; crate::jail::CHILD_STACK_BYTES];
    // SAFETY: as in `Jail::prepare`: the child is a copy-on-write copy of this process
    // (no CLONE_VM) that only makes system calls on memory allocated above and ends in
    // _exit.
    let child = unsafe {
        nix::sched::clone(
            Box::new(|| attach_child(&plan)),
            &mut stack,
            CloneFlags::empty(),
            Some(libc::SIGCHLD),
        )
    }
    .map_err(SandboxError::Clone)?;
    drop(err_write);
    let mut report = Vec::with_capacity(8);
    let read = File::from(err_read).read_to_end(&mut report);
    let waited = nix::sys::wait::waitpid(child, None);
    read.map_err(|e| SandboxError::io("read the mount helper's status", e))?;
    if let Some(e) = crate::process::decode_report(&report, Some(mounts.describe())) {
        return Err(e);
    }
    match waited {
        Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => Ok(()),
        other => Err(SandboxError::InvalidSpec(format!(
            "the zygote's mount helper ended with {other:?}"
        ))),
    }
}

struct AttachPlan<'a> {
    ns: RawFd,
    mask: u32,
    fds: &'a [RawFd],
    user: SandboxUser,
    err_write: RawFd,
}

fn attach_child(plan: &AttachPlan<'_>) -> isize {
    let result = attach_in_namespace(plan);
    if result.is_ok() {
        // SAFETY: _exit is always safe to call.
        unsafe { libc::_exit(0) }
    }
    child::exit_with(plan.err_write, result)
}

fn attach_in_namespace(plan: &AttachPlan<'_>) -> StepResult {
    // Joining a mount namespace also moves this process's root and working directory
    // to that namespace's root: the zygote's `/`, after its pivot_root.
    step(
        SimpleStep::Setup,
        nix::sched::setns(child::borrow(plan.ns), CloneFlags::CLONE_NEWNS),
    )?;
    shell_child::attach(plan.mask, plan.fds, plan.user.uid, plan.user.gid)
}
