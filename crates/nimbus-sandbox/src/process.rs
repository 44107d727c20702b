//! The running environment: [`PreparedSandbox`] (paused before exec) and
//! [`Sandbox`] (running), plus everything to clean up when it ends.

use std::fmt;
use std::io::Read;
use std::net::TcpListener;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::cgroup::Cgroup;
use crate::child::{self, ChildPlan};
use crate::error::SandboxError;
use crate::filesystem::RootfsOp;
use crate::nat::NatLink;
use crate::scratch::ScratchDisk;
use crate::teardown::{Teardown, TeardownError};

/// How long dropping a running [`Sandbox`] tries to kill everything in it
/// before it just waits for the first process: a torn-down fork bomb is gone
/// in well under a second once its CPU quota is lifted.
const DROP_TEARDOWN_LIMIT: Duration = Duration::from_secs(10);

/// Host-side resources of one environment, released when it ends.
#[derive(Debug, Default)]
pub(crate) struct SandboxResources {
    pub pid: Option<Pid>,
    pub cgroup: Option<Cgroup>,
    pub scratch: Option<ScratchDisk>,
    pub root_dir: Option<PathBuf>,
    pub link: Option<NatLink>,
    /// The limits, for applying the CPU quota later.
    pub limits: Option<crate::cgroup::CgroupLimits>,
}

impl SandboxResources {
    /// Kills and reaps the process (if any), then frees everything else.
    pub(crate) fn cleanup(&mut self) {
        if let Some(pid) = self.pid.take() {
            // SIGKILL to the PID namespace's init kills every process in it.
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
        self.finish();
    }

    /// Frees resources once the process has been reaped.
    pub(crate) fn finish(&mut self) {
        if let Some(cg) = self.cgroup.take() {
            cg.remove();
        }
        if let Some(mut s) = self.scratch.take() {
            s.release();
        }
        if let Some(dir) = self.root_dir.take() {
            let _ = std::fs::remove_dir(dir);
        }
        if let Some(link) = self.link.take() {
            link.release();
        }
    }
}

/// How the environment's first process ended, worded as Lambda words it in
/// `Runtime exited with error: ...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Exited with this code.
    Exited(i32),
    /// Killed by this signal.
    Signaled(Signal),
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Exited(code) => write!(f, "exit status {code}"),
            ExitStatus::Signaled(sig) => {
                let name = match sig {
                    Signal::SIGKILL => "killed",
                    Signal::SIGSEGV => "segmentation fault",
                    Signal::SIGABRT => "aborted",
                    Signal::SIGTERM => "terminated",
                    Signal::SIGBUS => "bus error",
                    Signal::SIGILL => "illegal instruction",
                    Signal::SIGFPE => "floating point exception",
                    Signal::SIGPIPE => "broken pipe",
                    Signal::SIGINT => "interrupt",
                    other => other.as_str(),
                };
                write!(f, "signal: {name}")
            }
        }
    }
}

/// An environment whose first process is paused before exec.
pub struct PreparedSandbox {
    pid: Pid,
    pidfd: OwnedFd,
    go_write: Option<OwnedFd>,
    err_read: Option<OwnedFd>,
    /// Kept so error codes from the child can be described, and because its
    /// strings must outlive the clone in the parent.
    plan: Option<ChildPlan>,
    /// The function's root file system operations, when a pre-created shell
    /// runs them (to describe a failing one).
    shell_ops: Option<Vec<RootfsOp>>,
    /// The function for a zygote, sent by `start` on `go_write` instead of the go byte.
    handoff: Option<crate::zygote::Handoff>,
    /// A zygote's stdout and stderr (see [`PreparedSandbox::take_output`]).
    output: Option<OwnedFd>,
    resources: SandboxResources,
    listener: Option<TcpListener>,
    /// No isolation (developer mode): kill by process group.
    insecure: bool,
    /// Set by `start`; an unstarted child is killed and reaped on drop.
    started: bool,
}

// SAFETY (Send): ChildPlan holds raw pointers into its own CStrings, which
// are heap-allocated and owned by the same struct; the parent never
// dereferences them, so moving the plan across threads is sound.
#[allow(unsafe_code)]
// SAFETY: see the comment above.
unsafe impl Send for PreparedSandbox {}

impl fmt::Debug for PreparedSandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreparedSandbox")
            .field("pid", &self.pid)
            .finish()
    }
}

impl PreparedSandbox {
    pub(crate) fn new(
        pid: Pid,
        pidfd: OwnedFd,
        go_write: Option<OwnedFd>,
        err_read: OwnedFd,
        plan: ChildPlan,
        mut resources: SandboxResources,
        listener: Option<TcpListener>,
    ) -> Self {
        resources.pid = None; // owned by the sandbox handle from now on
        PreparedSandbox {
            pid,
            pidfd,
            go_write,
            err_read: Some(err_read),
            plan: Some(plan),
            shell_ops: None,
            handoff: None,
            output: None,
            resources,
            listener,
            insecure: false,
            started: false,
        }
    }

    /// An environment made from a pre-created shell that has been sent its
    /// function's spec (`ops` are the function's root file system operations).
    pub(crate) fn new_pooled(
        pid: Pid,
        pidfd: OwnedFd,
        control: OwnedFd,
        err_read: Option<OwnedFd>,
        ops: Vec<RootfsOp>,
        mut resources: SandboxResources,
        listener: Option<TcpListener>,
    ) -> Self {
        resources.pid = None;
        PreparedSandbox {
            pid,
            pidfd,
            go_write: Some(control),
            err_read,
            plan: None,
            shell_ops: Some(ops),
            handoff: None,
            output: None,
            resources,
            listener,
            insecure: false,
            started: false,
        }
    }

    /// An environment made from a shell running a zygote, with the function's mounts
    /// attached and limits written; `start` hands the zygote its function.
    pub(crate) fn new_zygote(
        pid: Pid,
        pidfd: OwnedFd,
        control: OwnedFd,
        (handoff, output): (crate::zygote::Handoff, OwnedFd),
        ops: Vec<RootfsOp>,
        resources: SandboxResources,
        listener: Option<TcpListener>,
    ) -> Self {
        let mut prepared = Self::new_pooled(
            pid, pidfd, control,
            // The zygote's error pipe closed at its exec; nothing more can come.
            None, ops, resources, listener,
        );
        prepared.handoff = Some(handoff);
        prepared.output = Some(output);
        prepared
    }

    /// Whether a zygote, already running, takes the function at `start`.
    pub fn zygote(&self) -> bool {
        self.handoff.is_some()
    }

    /// Where the workload's stdout and stderr go, when not to the spec's `stdout` and
    /// `stderr`: a zygote's own pipe, made when it was started (a started interpreter
    /// cannot always replace its stdio). Take it before [`start`](Self::start) and read
    /// the environment's output from it.
    pub fn take_output(&mut self) -> Option<OwnedFd> {
        self.output.take()
    }

    /// Whether this environment comes from the pool of pre-created shells.
    pub fn pooled(&self) -> bool {
        self.shell_ops.is_some()
    }

    /// Host pid of the environment's first process.
    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    pub(crate) fn new_insecure(pid: Pid, pidfd: OwnedFd, listener: Option<TcpListener>) -> Self {
        PreparedSandbox {
            pid,
            pidfd,
            go_write: None,
            err_read: None,
            plan: None,
            shell_ops: None,
            handoff: None,
            output: None,
            resources: SandboxResources::default(),
            listener,
            insecure: true,
            started: false,
        }
    }

    /// The listening socket for the service port (the Runtime API), bound
    /// inside the environment. Take it before [`start`](Self::start).
    pub fn take_service_listener(&mut self) -> Option<TcpListener> {
        self.listener.take()
    }

    /// Lets the child drop privileges, install seccomp and exec. Returns once
    /// exec has succeeded, or the step that failed (the child is then reaped
    /// and everything released).
    pub fn start(mut self) -> Result<Sandbox, SandboxError> {
        // A child that failed a step before the go (a mount, say) has exited already and
        // said why on the error pipe: EPIPE here only means that report is waiting.
        let mut gone = None;
        if let (Some(control), Some(handoff)) = (&self.go_write, &self.handoff) {
            // On failure `started` stays false: drop kills the zygote and cleans up.
            handoff.send(control)?;
            self.go_write = None;
        }
        if let Some(go) = self.go_write.take() {
            match nix::unistd::write(&go, &[1u8]) {
                Ok(_) => {}
                Err(e @ nix::errno::Errno::EPIPE) => gone = Some(e),
                // On failure `started` stays false: drop reaps and cleans up.
                Err(e) => return Err(SandboxError::io("start child", e)),
            }
        }
        let mut report = Vec::with_capacity(8);
        if let Some(err) = self.err_read.take() {
            let mut f = std::fs::File::from(err);
            f.read_to_end(&mut report)
                .map_err(|e| SandboxError::io("read child status", e))?;
        }
        if let (Some(e), true) = (gone, report.is_empty()) {
            return Err(SandboxError::io("start child", e));
        }
        self.started = true;
        let pidfd = self
            .pidfd
            .try_clone()
            .map_err(|e| SandboxError::io("dup pidfd", e))?;
        let mut sandbox = Sandbox {
            pid: self.pid,
            pidfd,
            resources: std::mem::take(&mut self.resources),
            status: None,
            insecure: self.insecure,
            pooled: self.shell_ops.is_some(),
        };
        // The child has mounted /tmp (or died): the mount holds the loop device now.
        if let Some(s) = sandbox.resources.scratch.as_mut() {
            s.release();
        }
        let ops = match (&self.plan, &self.shell_ops) {
            (Some(plan), _) => Some(&plan.rootfs[..]),
            (None, Some(ops)) => Some(&ops[..]),
            (None, None) => None,
        };
        if let Some(err) = decode_report(&report, ops) {
            sandbox.kill();
            let _ = sandbox.wait();
            return Err(err);
        }
        Ok(sandbox)
    }
}

impl Drop for PreparedSandbox {
    fn drop(&mut self) {
        // Not started: closing go_write makes the child abort; reap it.
        self.go_write = None;
        if !self.started {
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = waitpid(self.pid, None);
            self.resources.finish();
        }
    }
}

/// A running execution environment. Dropping it kills everything in it and
/// releases its resources.
#[derive(Debug)]
pub struct Sandbox {
    pid: Pid,
    pidfd: OwnedFd,
    resources: SandboxResources,
    status: Option<ExitStatus>,
    insecure: bool,
    pooled: bool,
}

impl Sandbox {
    /// Whether this environment was made from a pre-created shell.
    pub fn pooled(&self) -> bool {
        self.pooled
    }

    /// Memory the environment uses right now (its cgroup's usage), in bytes.
    pub fn memory_current_bytes(&self) -> Option<u64> {
        self.resources.cgroup.as_ref()?.memory_current_bytes().ok()
    }

    /// Host pid of the environment's first process (its PID namespace's init).
    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    /// A pidfd that becomes readable when the first process exits; poll it
    /// (e.g. tokio `AsyncFd`) and then call [`try_wait`](Self::try_wait).
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// Kills every process in the environment (SIGKILL to the namespace's init).
    pub fn kill(&self) {
        if self.status.is_none() {
            if self.insecure {
                // No PID namespace: kill the process group we created.
                let _ = kill(Pid::from_raw(-self.pid.as_raw()), Signal::SIGKILL);
            }
            let _ = kill(self.pid, Signal::SIGKILL);
        }
    }

    /// A handle that kills every process left in the environment and waits,
    /// bounded, for its cgroup to empty ([`Teardown::run`]); it works without
    /// this handle, so it can run on a thread of its own while this one is
    /// locked, reaped or dropped. `None` once the first process has been reaped
    /// (the kernel reaps a PID namespace's init only after everything else in
    /// it is gone) and without a cgroup (no isolation).
    pub fn teardown(&self) -> Option<Teardown> {
        if self.status.is_some() {
            return None;
        }
        self.resources.cgroup.clone().map(Teardown::new)
    }

    /// Kills every process in the environment and waits, at most `limit`,
    /// until none is left (see [`Teardown`]): prompt even for a fork bomb at a
    /// small CPU share. Blocking. The first process still has to be reaped
    /// ([`wait`](Self::wait)).
    pub fn terminate(&self, limit: Duration) -> Result<(), TeardownError> {
        self.kill();
        match self.teardown() {
            Some(teardown) => teardown.run(limit),
            None => Ok(()),
        }
    }

    /// Reaps the first process if it has exited.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, SandboxError> {
        self.reap(Some(WaitPidFlag::WNOHANG))
    }

    /// Blocks until the first process has exited and reaps it.
    pub fn wait(&mut self) -> Result<ExitStatus, SandboxError> {
        self.reap(None).map(|s| s.unwrap_or(ExitStatus::Exited(-1)))
    }

    fn reap(&mut self, flags: Option<WaitPidFlag>) -> Result<Option<ExitStatus>, SandboxError> {
        if let Some(s) = self.status {
            return Ok(Some(s));
        }
        let status = match waitpid(self.pid, flags) {
            Ok(WaitStatus::Exited(_, code)) => ExitStatus::Exited(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => ExitStatus::Signaled(sig),
            Ok(_) => return Ok(None),
            Err(Errno::ECHILD) => ExitStatus::Exited(-1),
            Err(e) => return Err(SandboxError::io("waitpid", e)),
        };
        self.status = Some(status);
        self.resources.finish();
        Ok(Some(status))
    }

    /// Memory high-water mark of the whole environment, in bytes.
    pub fn memory_peak_bytes(&self) -> Option<u64> {
        self.resources.cgroup.as_ref()?.memory_peak_bytes().ok()
    }

    /// Applies the memory-proportional CPU quota (after an unrestricted Init).
    pub fn apply_cpu_quota(&self) -> Result<(), SandboxError> {
        if let (Some(cg), Some(limits)) = (&self.resources.cgroup, self.resources.limits) {
            cg.apply_cpu_quota(limits)?;
        }
        Ok(())
    }

    /// Number of OOM kills in the environment so far.
    pub fn oom_kills(&self) -> u64 {
        self.resources
            .cgroup
            .as_ref()
            .and_then(|c| c.oom_kills().ok())
            .unwrap_or(0)
    }

    /// The environment's address on the NAT network, if it has one.
    pub fn network_address(&self) -> Option<std::net::Ipv4Addr> {
        self.resources.link.as_ref().map(|l| l.env_addr)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if self.status.is_none() {
            // Without this, reaping init would wait for every process of the
            // namespace to die at the function's CPU share.
            if let Err(e) = self.terminate(DROP_TEARDOWN_LIMIT) {
                tracing::warn!(pid = self.pid.as_raw(), error = %e, "environment not torn down in time; waiting for it");
            }
            let _ = self.wait();
        }
        self.resources.finish();
    }
}

pub(crate) fn decode_report(report: &[u8], rootfs: Option<&[RootfsOp]>) -> Option<SandboxError> {
    if report.len() < 8 {
        return None;
    }
    let code = u32::from_le_bytes([report[0], report[1], report[2], report[3]]);
    let errno = i32::from_le_bytes([report[4], report[5], report[6], report[7]]);
    let step = match rootfs {
        Some(ops) => child::decode_step(code, ops),
        None => child::ChildStep::Exec,
    };
    Some(SandboxError::ChildStep {
        step,
        errno: Errno::from_raw(errno),
    })
}

/// The child's error report, if it has already written one (non-blocking).
pub(crate) fn child_report(err_read: &OwnedFd, rootfs: &[RootfsOp]) -> Option<SandboxError> {
    let mut fds = [nix::poll::PollFd::new(
        err_read.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    // Give a child that is failing right now a moment to say why.
    // Nothing to read yet means the child is still alive and silent (it may be waiting
    // for the go signal): reading now would block forever.
    if nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(50u16)).ok()? == 0 {
        return None;
    }
    let mut buf = [0u8; 8];
    let n = nix::unistd::read(err_read, &mut buf).ok()?;
    decode_report(&buf[..n], Some(rootfs))
}

/// `pidfd_open(2)`.
pub(crate) fn pidfd_open(pid: i32) -> Result<OwnedFd, SandboxError> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(SandboxError::io("pidfd_open", Errno::last()));
    }
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Async notification that an environment's first process has exited
/// (its pidfd became readable). Requires the `tokio` feature.
#[cfg(feature = "tokio")]
#[derive(Debug)]
pub struct ExitWatch(tokio::io::unix::AsyncFd<OwnedFd>);

#[cfg(feature = "tokio")]
impl ExitWatch {
    /// Watches `sandbox`'s pidfd (a duplicate is registered with the reactor).
    pub fn new(sandbox: &Sandbox) -> std::io::Result<Self> {
        let fd = sandbox.pidfd().try_clone_to_owned()?;
        // SAFETY: the AsyncFd owns this OwnedFd, which nobody else can close
        // or replace while it is registered (the I/O-safety requirement).
        let watch = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
        }?;
        Ok(ExitWatch(watch))
    }

    /// Resolves once the process has exited (it can then be reaped without blocking).
    pub async fn exited(&self) {
        let _ = self.0.readable().await;
    }
}
