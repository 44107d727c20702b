//! What a pre-created shell (`shell.rs`) does in its own process: every
//! function-independent isolation step ahead of time — namespaces, the root
//! file system with its `/tmp` disk mounted, `pivot_root` and the detach of
//! the host's tree (which waits for an RCU grace period) — then, once the
//! host has sent a function's spec, only: attach the function's detached
//! mounts (`move_mount`) at `/var/task`, `/var/runtime` and `/opt`, give
//! `/tmp` to the function's user, and the same last steps as the plain path
//! (`child::finish`).
//!
//! Same rules as `child.rs`: cloned from the multi-threaded worker, so no
//! heap allocation and no locks; everything it needs (buffers included) was
//! allocated by the host before the clone, and every failure is reported as
//! `(step, errno)` on the close-on-exec error pipe before `_exit`.

use std::ffi::CString;
use std::os::fd::RawFd;

use nix::errno::Errno;
use nix::sys::resource::Resource;
use nix::unistd::{Gid, Uid};

use crate::child::{self, code, step, Finish, SimpleStep, StepResult, ROOTFS_BASE};
use crate::filesystem::RootfsOp;
use crate::wire;

/// Sent by the shell once its function-independent setup is done.
pub(crate) const READY: u8 = b'R';

/// stdin, stdout, stderr and up to three mounts.
pub(crate) const MAX_FDS: usize = 6;

/// Where each mount bit of the message is attached, in descriptor order.
/// The index is also the failing step's number (`ROOTFS_BASE + index`).
pub(crate) const MOUNT_POINTS: [(u32, &std::ffi::CStr); 3] = [
    (wire::MOUNT_TASK, c"/var/task"),
    (wire::MOUNT_RUNTIME, c"/var/runtime"),
    (wire::MOUNT_OPT, c"/opt"),
];

/// Step number of giving `/tmp` to the function's user.
pub(crate) const CHOWN_TMP_STEP: u32 = 3;

const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

/// Everything a shell needs, prepared by the host before the clone.
pub(crate) struct ShellPlan {
    pub hostname: CString,
    /// Function-independent root file system operations (with `/tmp`'s mount).
    pub base: Vec<RootfsOp>,
    pub new_root: CString,
    pub put_old: CString,
    pub seccomp: Vec<seccompiler::BpfProgram>,
    /// The shell's end of the control socket (`SOCK_SEQPACKET`, close-on-exec).
    pub control: RawFd,
    /// The host's end, closed first thing in the shell.
    pub control_host: RawFd,
    /// Write end of the error pipe (close-on-exec).
    pub err_write: RawFd,
    /// Receive buffer for the spec ([`wire::MAX_MESSAGE`] bytes).
    pub buf: Vec<u8>,
    /// `argv` and `envp` pointer arrays, filled from `buf`.
    pub ptrs: Vec<*const libc::c_char>,
}

/// Runs in the shell. Never returns: execs the runtime or exits with 127.
pub(crate) fn run(plan: &mut ShellPlan) -> isize {
    let err_write = plan.err_write;
    let result = setup(plan);
    child::exit_with(err_write, result)
}

fn setup(plan: &mut ShellPlan) -> StepResult {
    use SimpleStep as S;
    // SAFETY: closing our copy of the host's end of the control socket; the
    // fd number is valid and not used again here.
    let closed = unsafe { libc::close(plan.control_host) };
    step(S::Setup, Errno::result(closed).map(drop))?;
    // The shell may wait for minutes: it must not keep the worker's other
    // descriptors (client sockets, other environments' log pipes) open that
    // long. Keep stdio (replaced before exec), the control socket and the
    // error pipe.
    step(
        S::CloseInheritedFds,
        close_all_but(plan.control, plan.err_write),
    )?;
    child::prepare_root(&plan.hostname, plan.base.iter().map(RootfsOp::as_op_ref))?;
    child::enter_root(&plan.new_root, &plan.put_old)?;
    step(S::ReceiveSpec, send_byte(plan.control, READY))?;

    // The function's spec, its stdin, stdout, stderr and mounts.
    let mut fds = [-1 as RawFd; MAX_FDS];
    let rs = |e| (code(&S::ReceiveSpec), e);
    let (len, nfds) = receive(plan.control, &mut plan.buf, &mut fds).map_err(rs)?;
    let buf: &[u8] = &plan.buf[..len];
    let mut r = wire::Reader::new(buf);
    let h = r.header().map_err(rs)?;
    let mounts = h.mounts & wire::MOUNTS;
    if nfds != 3 + mounts.count_ones() as usize {
        return Err(rs(Errno::EPROTO));
    }
    attach(mounts, &fds[3..nfds], h.uid, h.gid)?;
    let cwd = r.cstr().map_err(rs)?;
    let program = r.cstr().map_err(rs)?;
    let (argc, envc) = (h.argc as usize, h.envc as usize);
    if argc == 0 || argc + envc + 2 > plan.ptrs.len() {
        return Err(rs(Errno::E2BIG));
    }
    for i in 0..argc {
        plan.ptrs[i] = r.cstr().map_err(rs)?.as_ptr();
    }
    plan.ptrs[argc] = std::ptr::null();
    for i in 0..envc {
        plan.ptrs[argc + 1 + i] = r.cstr().map_err(rs)?.as_ptr();
    }
    plan.ptrs[argc + 1 + envc] = std::ptr::null();

    // Wait for the go-ahead: the host writes the function's limits into our
    // cgroups meanwhile. EOF means the host gave up on us.
    let mut byte = [0u8; 1];
    match nix::unistd::read(child::borrow(plan.control), &mut byte) {
        Ok(1) => {}
        Ok(_) => return Err((code(&S::WaitForParent), Errno::ECANCELED)),
        Err(e) => return Err((code(&S::WaitForParent), e)),
    }
    if h.mounts & wire::KEEP_CONTROL != 0 {
        // A zygote: the control socket is how it receives its function.
        let flags = nix::fcntl::FdFlag::empty();
        step(
            S::Setup,
            nix::fcntl::fcntl(child::borrow(plan.control), nix::fcntl::F_SETFD(flags)).map(drop),
        )?;
    }
    let rlimits = [
        (Resource::RLIMIT_NOFILE, h.nofile),
        (Resource::RLIMIT_CORE, 0),
    ];
    child::finish(&Finish {
        rlimits: &rlimits,
        stdin: fds[0],
        stdout: fds[1],
        stderr: fds[2],
        uid: h.uid,
        gid: h.gid,
        cwd,
        seccomp: &plan.seccomp,
        program,
        argv: plan.ptrs.as_ptr(),
        envp: plan.ptrs[argc + 1..].as_ptr(),
    })
}

/// Attaches the detached mounts `fds` (one per bit of `mounts`, in
/// [`MOUNT_POINTS`] order) in the caller's mount namespace and gives `/tmp` to
/// `uid:gid`: in a shell before its exec, or in the host's short-lived helper that has
/// joined a zygote's mount namespace (`zygote.rs`).
pub(crate) fn attach(mounts: u32, fds: &[RawFd], uid: u32, gid: u32) -> StepResult {
    let mut next = fds.iter();
    for (i, (bit, target)) in MOUNT_POINTS.iter().enumerate() {
        if mounts & bit == 0 {
            continue;
        }
        let fd = *next.next().ok_or((ROOTFS_BASE + i as u32, Errno::EBADF))?;
        // SAFETY: fd is a mount descriptor we were given; target is a
        // NUL-terminated constant; the kernel only reads both.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                fd,
                c"".as_ptr(),
                libc::AT_FDCWD,
                target.as_ptr(),
                MOVE_MOUNT_F_EMPTY_PATH,
            )
        };
        Errno::result(rc).map_err(|e| (ROOTFS_BASE + i as u32, e))?;
    }
    nix::unistd::chown(c"/tmp", Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
        .map_err(|e| (ROOTFS_BASE + CHOWN_TMP_STEP, e))
}

/// `close_range` over everything above stderr except `a` and `b`.
fn close_all_but(a: RawFd, b: RawFd) -> nix::Result<()> {
    // Both are above stderr: the host opened them after its own stdio.
    let (lo, hi) = (a.min(b).max(3) as u32, a.max(b).max(3) as u32);
    let ranges = [(3, lo - 1), (lo + 1, hi - 1), (hi + 1, u32::MAX)];
    for (first, last) in ranges {
        if first > last {
            continue;
        }
        // SAFETY: close_range only closes descriptors; none in these ranges
        // is used by the shell afterwards.
        Errno::result(unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) })?;
    }
    Ok(())
}

fn send_byte(fd: RawFd, byte: u8) -> nix::Result<()> {
    // SAFETY: `byte` is a live one-byte buffer; fd is our control socket.
    let n = unsafe { libc::send(fd, (&raw const byte).cast(), 1, libc::MSG_NOSIGNAL) };
    Errno::result(n).map(drop)
}

/// One `recvmsg` of the spec plus 3 to [`MAX_FDS`] descriptors
/// (close-on-exec); returns the message length and the descriptor count.
fn receive(fd: RawFd, buf: &mut [u8], fds: &mut [RawFd; MAX_FDS]) -> nix::Result<(usize, usize)> {
    // Room for one SCM_RIGHTS message of MAX_FDS ints, aligned for cmsghdr.
    #[repr(C, align(8))]
    struct Control([u8; 64]);
    let mut control = Control([0; 64]);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain old data; all-zero is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = control.0.len() as _;
    // SAFETY: msg points at live buffers of the stated sizes for the call.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    let n = Errno::result(n)? as usize;
    if n == 0 {
        return Err(Errno::ECANCELED); // the host dropped the shell
    }
    if msg.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
        return Err(Errno::EMSGSIZE);
    }
    // SAFETY: CMSG_FIRSTHDR reads msg's control fields, which the kernel set.
    let cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    if cmsg.is_null() {
        return Err(Errno::EPROTO);
    }
    // SAFETY: cmsg is non-null and points into `control`.
    let (level, kind, len) = unsafe { ((*cmsg).cmsg_level, (*cmsg).cmsg_type, (*cmsg).cmsg_len) };
    // SAFETY: CMSG_LEN is a pure size computation.
    let header = unsafe { libc::CMSG_LEN(0) } as usize;
    let count = len.saturating_sub(header) / std::mem::size_of::<RawFd>();
    if level != libc::SOL_SOCKET || kind != libc::SCM_RIGHTS || !(3..=MAX_FDS).contains(&count) {
        return Err(Errno::EPROTO);
    }
    // SAFETY: the kernel wrote `count` ints after the header (from its
    // length, bounded by MAX_FDS); read_unaligned because CMSG_DATA need not
    // be int-aligned in principle.
    unsafe {
        let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
        for (i, fd) in fds.iter_mut().take(count).enumerate() {
            *fd = data.add(i).read_unaligned();
        }
    }
    Ok((n, count))
}

/// The host's side of [`receive`]: the spec and its descriptors in one message.
pub(crate) fn send_spec(fd: RawFd, bytes: &[u8], fds: &[RawFd]) -> nix::Result<()> {
    if !(3..=MAX_FDS).contains(&fds.len()) {
        return Err(Errno::EINVAL);
    }
    #[repr(C, align(8))]
    struct Control([u8; 64]);
    let mut control = Control([0; 64]);
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr().cast_mut().cast(),
        iov_len: bytes.len(),
    };
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of_val(fds) as u32) } as usize;
    // SAFETY: msghdr is plain old data; all-zero is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: msg's control buffer is at least `space` bytes (checked by the
    // assertion below at compile-time sizes), so the first header fits.
    unsafe {
        assert!(space <= 64);
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of_val(fds) as u32) as _;
        let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
        for (i, fd) in fds.iter().enumerate() {
            data.add(i).write_unaligned(*fd);
        }
    }
    // SAFETY: msg points at live buffers for the duration of the call.
    let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) };
    let n = Errno::result(n)? as usize;
    if n != bytes.len() {
        return Err(Errno::EMSGSIZE);
    }
    Ok(())
}

/// Reads the shell's ready byte (the host side), waiting at most `timeout_ms`.
pub(crate) fn wait_ready(fd: RawFd, timeout_ms: u16) -> nix::Result<()> {
    let borrowed = child::borrow(fd);
    let mut fds = [nix::poll::PollFd::new(
        borrowed,
        nix::poll::PollFlags::POLLIN,
    )];
    if nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(timeout_ms))? == 0 {
        return Err(Errno::ETIMEDOUT);
    }
    let mut byte = [0u8; 1];
    match nix::unistd::read(borrowed, &mut byte)? {
        1 if byte[0] == READY => Ok(()),
        _ => Err(Errno::ECANCELED),
    }
}
