//! The code that runs in the cloned child, between `clone(2)` and `execve(2)`.
//!
//! The worker is multi-threaded, so the child may only do what is safe after
//! `fork` in such a process: no heap allocation, no locks. Everything it needs
//! (C strings, pointer arrays, the compiled BPF programs) is prepared by the
//! parent in a [`ChildPlan`]; the child only makes system calls. Any failure
//! is reported as `(step, errno)` over a close-on-exec pipe and the child
//! exits without running the workload — the sandbox fails closed.

use std::ffi::{CStr, CString};
use std::fmt;
use std::os::fd::RawFd;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sys::resource::Resource;
use nix::sys::signal::{SigSet, SigmaskHow};
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Uid};

use crate::filesystem::RootfsOp;

/// Which isolation step failed inside the child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildStep {
    /// Closing the parent's end of the start pipe.
    Setup,
    /// `sethostname` in the new UTS namespace.
    Hostname,
    /// Making every mount private so nothing propagates back to the host.
    MakeMountsPrivate,
    /// One root file system operation (see `filesystem.rs`), described.
    Rootfs(String),
    /// `pivot_root` into the new root and detaching the old one.
    PivotRoot,
    /// Remounting the new root read-only.
    ReadOnlyRoot,
    /// Waiting for the parent's go-ahead (cgroup and network ready).
    WaitForParent,
    /// Pre-created shell: closing the descriptors inherited from the worker.
    CloseInheritedFds,
    /// Pre-created shell: receiving or parsing the function's spec.
    ReceiveSpec,
    /// Setting resource limits.
    Rlimits,
    /// Dropping to the unprivileged user.
    DropPrivileges,
    /// Wiring stdin/stdout/stderr.
    Stdio,
    /// Changing to the working directory.
    Chdir,
    /// Installing the seccomp filters.
    Seccomp,
    /// `execve` of the runtime itself.
    Exec,
}

impl fmt::Display for ChildStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChildStep::Rootfs(what) => write!(f, "rootfs: {what}"),
            other => write!(f, "{other:?}"),
        }
    }
}

/// Step codes on the wire; rootfs operation `i` is `ROOTFS_BASE + i`.
pub(crate) const ROOTFS_BASE: u32 = 1000;

pub(crate) fn code(step: &SimpleStep) -> u32 {
    *step as u32
}

#[derive(Debug, Clone, Copy)]
#[repr(u32)]
pub(crate) enum SimpleStep {
    Setup = 1,
    Hostname,
    MakeMountsPrivate,
    PivotRoot,
    ReadOnlyRoot,
    WaitForParent,
    Rlimits,
    DropPrivileges,
    Stdio,
    Chdir,
    Seccomp,
    Exec,
    CloseInheritedFds,
    ReceiveSpec,
}

/// Decodes a step code sent by the child; `rootfs` are the root file system
/// operations of the phase that reported it.
pub(crate) fn decode_step(code: u32, rootfs: &[RootfsOp]) -> ChildStep {
    if code >= ROOTFS_BASE {
        let i = (code - ROOTFS_BASE) as usize;
        return ChildStep::Rootfs(
            rootfs
                .get(i)
                .map(RootfsOp::describe)
                .unwrap_or_else(|| format!("op #{i}")),
        );
    }
    use SimpleStep as S;
    let all = [
        S::Setup,
        S::Hostname,
        S::MakeMountsPrivate,
        S::PivotRoot,
        S::ReadOnlyRoot,
        S::WaitForParent,
        S::Rlimits,
        S::DropPrivileges,
        S::Stdio,
        S::Chdir,
        S::Seccomp,
        S::Exec,
        S::CloseInheritedFds,
        S::ReceiveSpec,
    ];
    match all.into_iter().find(|s| *s as u32 == code) {
        Some(S::Setup) | None => ChildStep::Setup,
        Some(S::Hostname) => ChildStep::Hostname,
        Some(S::MakeMountsPrivate) => ChildStep::MakeMountsPrivate,
        Some(S::PivotRoot) => ChildStep::PivotRoot,
        Some(S::ReadOnlyRoot) => ChildStep::ReadOnlyRoot,
        Some(S::WaitForParent) => ChildStep::WaitForParent,
        Some(S::Rlimits) => ChildStep::Rlimits,
        Some(S::DropPrivileges) => ChildStep::DropPrivileges,
        Some(S::Stdio) => ChildStep::Stdio,
        Some(S::Chdir) => ChildStep::Chdir,
        Some(S::Seccomp) => ChildStep::Seccomp,
        Some(S::Exec) => ChildStep::Exec,
        Some(S::CloseInheritedFds) => ChildStep::CloseInheritedFds,
        Some(S::ReceiveSpec) => ChildStep::ReceiveSpec,
    }
}

/// Everything the child needs, prepared by the parent.
pub(crate) struct ChildPlan {
    pub hostname: CString,
    pub rootfs: Vec<RootfsOp>,
    pub new_root: CString,
    /// `<new_root>/.old-root`, where `pivot_root` parks the host root.
    pub put_old: CString,
    pub cwd: CString,
    pub uid: u32,
    pub gid: u32,
    pub rlimits: Vec<(Resource, u64)>,
    pub seccomp: Vec<seccompiler::BpfProgram>,
    pub stdin: RawFd,
    pub stdout: RawFd,
    pub stderr: RawFd,
    /// Read end of the start pipe: one byte means "go", EOF means "abort".
    pub go_read: RawFd,
    /// Write end of the start pipe, closed first thing in the child.
    pub go_write: RawFd,
    /// Write end of the error pipe (close-on-exec).
    pub err_write: RawFd,
    pub program: CString,
    /// Keeps the argument and environment strings alive for the pointer arrays.
    pub _strings: Vec<CString>,
    /// NULL-terminated `argv`.
    pub argv: Vec<*const libc::c_char>,
    /// NULL-terminated `envp`.
    pub envp: Vec<*const libc::c_char>,
}

/// Runs in the child. Never returns: execs the runtime or exits with 127.
pub(crate) fn run(plan: &ChildPlan) -> isize {
    let result = setup(plan);
    exit_with(plan.err_write, result)
}

/// Reports a failed step (if any) on `err_write` and exits. `Ok` cannot
/// happen after a successful execve, so any return ends here.
pub(crate) fn exit_with(err_write: RawFd, result: StepResult) -> ! {
    if let Err((code, errno)) = result {
        let mut msg = [0u8; 8];
        msg[..4].copy_from_slice(&code.to_le_bytes());
        msg[4..].copy_from_slice(&(errno as i32).to_le_bytes());
        // SAFETY: err_write is a valid pipe fd owned by this process; msg is a
        // live 8-byte buffer. Only async-signal-safe calls are made here.
        unsafe {
            libc::write(err_write, msg.as_ptr().cast(), msg.len());
        }
    }
    // SAFETY: _exit is always safe to call.
    unsafe { libc::_exit(127) }
}

pub(crate) type StepResult = Result<(), (u32, Errno)>;

pub(crate) fn step(s: SimpleStep, r: nix::Result<()>) -> StepResult {
    r.map_err(|e| (code(&s), e))
}

/// The first isolation steps, shared by both paths: hostname, private
/// mounts, the root file system operations `ops`.
pub(crate) fn prepare_root<'a>(
    hostname: &CString,
    ops: impl Iterator<Item = crate::filesystem::OpRef<'a>>,
) -> StepResult {
    use SimpleStep as S;
    step(
        S::Hostname,
        nix::unistd::sethostname(hostname.to_str().unwrap_or("sandbox")),
    )?;
    step(
        S::MakeMountsPrivate,
        nix::mount::mount::<str, str, str, str>(
            None,
            "/",
            None,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None,
        ),
    )?;
    run_ops(ops)
}

/// Replays root file system operations; failure `i` is `ROOTFS_BASE + i`.
pub(crate) fn run_ops<'a>(ops: impl Iterator<Item = crate::filesystem::OpRef<'a>>) -> StepResult {
    for (i, op) in ops.enumerate() {
        rootfs_op(op).map_err(|e| (ROOTFS_BASE + i as u32, e))?;
    }
    Ok(())
}

/// `pivot_root` into `new_root` and remount it read-only.
pub(crate) fn enter_root(new_root: &CStr, put_old: &CStr) -> StepResult {
    use SimpleStep as S;
    step(S::PivotRoot, pivot(new_root, put_old))?;
    step(
        S::ReadOnlyRoot,
        nix::mount::mount::<str, str, str, str>(
            None,
            "/",
            None,
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            None,
        ),
    )
}

/// What the last steps need (borrowed from a [`ChildPlan`] or, in a
/// pre-created shell, from its receive buffer).
pub(crate) struct Finish<'a> {
    pub rlimits: &'a [(Resource, u64)],
    pub stdin: RawFd,
    pub stdout: RawFd,
    pub stderr: RawFd,
    pub uid: u32,
    pub gid: u32,
    pub cwd: &'a CStr,
    pub seccomp: &'a [seccompiler::BpfProgram],
    pub program: &'a CStr,
    /// NULL-terminated.
    pub argv: *const *const libc::c_char,
    /// NULL-terminated.
    pub envp: *const *const libc::c_char,
}

/// The last steps, shared by both paths: limits, stdio, identity, working
/// directory, signals, seccomp, exec. Returns only on failure.
pub(crate) fn finish(f: &Finish<'_>) -> StepResult {
    use SimpleStep as S;
    for (resource, limit) in f.rlimits {
        step(
            S::Rlimits,
            nix::sys::resource::setrlimit(*resource, *limit, *limit),
        )?;
    }
    step(S::Stdio, stdio(f.stdin, f.stdout, f.stderr))?;
    step(S::DropPrivileges, drop_privileges(f.uid, f.gid))?;
    step(S::Chdir, nix::unistd::chdir(f.cwd))?;
    // Reset what the worker changed for itself: Rust ignores SIGPIPE, and the
    // runtime thread may have signals blocked. Dispositions survive exec.
    // SAFETY: setting SIG_DFL installs no handler, so there is no handler code
    // that could run in an inconsistent state.
    let sigpipe = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        )
    };
    step(S::Setup, sigpipe.map(drop))?;
    step(
        S::Setup,
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None),
    )?;
    for program in f.seccomp {
        seccompiler::apply_filter(program).map_err(|_| (code(&S::Seccomp), Errno::last()))?;
    }
    // SAFETY: program is a NUL-terminated C string; argv and envp are
    // NULL-terminated arrays of C strings that the caller keeps alive.
    unsafe { libc::execve(f.program.as_ptr(), f.argv, f.envp) };
    Err((code(&S::Exec), Errno::last()))
}

fn setup(plan: &ChildPlan) -> StepResult {
    use SimpleStep as S;
    // SAFETY: closing our copy of the parent's end of the start pipe; the fd
    // number is valid and not used again in the child.
    let closed = unsafe { libc::close(plan.go_write) };
    step(S::Setup, Errno::result(closed).map(drop))?;
    prepare_root(&plan.hostname, plan.rootfs.iter().map(RootfsOp::as_op_ref))?;
    enter_root(&plan.new_root, &plan.put_old)?;

    // Wait until the parent has put us in the cgroup and wired the network.
    let mut byte = [0u8; 1];
    match nix::unistd::read(borrow(plan.go_read), &mut byte) {
        Ok(1) => {}
        Ok(_) => return Err((code(&S::WaitForParent), Errno::ECANCELED)),
        Err(e) => return Err((code(&S::WaitForParent), e)),
    }
    finish(&Finish {
        rlimits: &plan.rlimits,
        stdin: plan.stdin,
        stdout: plan.stdout,
        stderr: plan.stderr,
        uid: plan.uid,
        gid: plan.gid,
        cwd: &plan.cwd,
        seccomp: &plan.seccomp,
        program: &plan.program,
        argv: plan.argv.as_ptr(),
        envp: plan.envp.as_ptr(),
    })
}

pub(crate) fn borrow(fd: RawFd) -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: the fds in the plan stay open for the child's whole life (until exec).
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
}

pub(crate) fn rootfs_op(op: crate::filesystem::OpRef<'_>) -> nix::Result<()> {
    use crate::filesystem::OpRef;
    let none: Option<&str> = None;
    match op {
        OpRef::MkDir(path) => match nix::unistd::mkdir(path, Mode::from_bits_truncate(0o755)) {
            Err(Errno::EEXIST) => Ok(()),
            other => other,
        },
        OpRef::MkFile(path) => {
            let fd = nix::fcntl::open(
                path,
                nix::fcntl::OFlag::O_CREAT
                    | nix::fcntl::OFlag::O_WRONLY
                    | nix::fcntl::OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o644),
            )?;
            drop(fd);
            Ok(())
        }
        OpRef::Symlink { target, link } => {
            nix::unistd::symlinkat(target, nix::fcntl::AT_FDCWD, link)
        }
        OpRef::BindReadOnly { src, dst } => {
            nix::mount::mount(
                Some(src),
                dst,
                none,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                none,
            )?;
            nix::mount::mount(
                none,
                dst,
                none,
                MsFlags::MS_BIND
                    | MsFlags::MS_REMOUNT
                    | MsFlags::MS_RDONLY
                    | MsFlags::MS_NOSUID
                    | MsFlags::MS_NODEV,
                none,
            )
        }
        OpRef::BindDevice { src, dst } => {
            nix::mount::mount(Some(src), dst, none, MsFlags::MS_BIND, none)
        }
        OpRef::Mount {
            source,
            target,
            fstype,
            flags,
            data,
        } => nix::mount::mount(Some(source), target, Some(fstype), flags, Some(data)),
        OpRef::Chown { path, uid, gid } => {
            nix::unistd::chown(path, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
        }
    }
}

fn pivot(new_root: &CStr, put_old: &CStr) -> nix::Result<()> {
    nix::unistd::pivot_root(new_root, put_old)?;
    nix::unistd::chdir("/")?;
    nix::mount::umount2("/.old-root", MntFlags::MNT_DETACH)?;
    // SAFETY: rmdir on a constant NUL-terminated path.
    Errno::result(unsafe { libc::rmdir(c"/.old-root".as_ptr()) }).map(drop)
}

fn stdio(stdin: RawFd, stdout: RawFd, stderr: RawFd) -> nix::Result<()> {
    for (from, to) in [(stdin, 0), (stdout, 1), (stderr, 2)] {
        // SAFETY: both fds are valid; dup2 onto 0/1/2 is what every spawner does.
        Errno::result(unsafe { libc::dup2(from, to) })?;
    }
    Ok(())
}

fn drop_privileges(uid: u32, gid: u32) -> nix::Result<()> {
    // Raw system calls on purpose: glibc's setgroups/setresuid/setresgid
    // broadcast the change to every thread glibc believes exists (SIGSETXID)
    // and wait for them on a futex. After clone(2) from a multi-threaded
    // worker those threads do not exist in the child, so glibc would wait
    // forever. The kernel calls change just this (only) thread.
    let groups = [gid as libc::gid_t];
    // SAFETY: `groups` is a live one-element array; the kernel only reads it.
    Errno::result(unsafe { libc::syscall(libc::SYS_setgroups, 1, groups.as_ptr()) })?;
    // SAFETY: plain integer arguments.
    Errno::result(unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) })?;
    // SAFETY: plain integer arguments.
    Errno::result(unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) })?;
    // Belt and braces: there must be no way back to root.
    // SAFETY: plain integer arguments.
    if unsafe { libc::syscall(libc::SYS_setuid, 0) } == 0 {
        return Err(Errno::EPERM);
    }
    Ok(())
}
