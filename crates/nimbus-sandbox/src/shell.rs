//! Pre-created environment shells: the slow, function-independent part of a
//! cold start done ahead of time.
//!
//! A shell is a process already cloned into its own PID, mount, IPC, UTS,
//! network and cgroup namespaces, already moved into its own (still
//! unlimited) cgroups — the step that waits for an RCU grace period on
//! cgroup v1 — with its root file system built (system directories, masks,
//! `/proc`, `/dev`, its `/tmp` disk of the shape's size), already
//! `pivot_root`ed with the host's tree detached (another grace period), its
//! veth pair wired (NAT mode) and the Runtime API socket bound inside its
//! network namespace. It waits on a `SOCK_SEQPACKET` socket.
//!
//! At a cold start the host clones the function's code, runtime and layer
//! directories as detached read-only mounts (`open_tree(OPEN_TREE_CLONE)` +
//! `mount_setattr`), takes a shell, sends it the function's spec (`wire.rs`)
//! with its stdio and those mount descriptors, and writes the function's
//! limits into the shell's cgroups (memory = the function's memory, CPU in
//! proportion, pids) while the shell attaches the mounts (`move_mount`) and
//! gives `/tmp` to the function's user; then it lets the shell drop
//! privileges, install seccomp and exec — the last steps of the plain path.
//!
//! Fail closed: a shell is used at most once (it is consumed by `take`), a
//! shell that died or left its cgroups is discarded, any host-side failure
//! before the go-ahead kills the shell and the caller falls back to the
//! plain path, and the go-ahead is only sent once the limits are written.
//! A background thread keeps `JailConfig::shell_pool` shells ready per shape.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::io::Read;
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::unistd::Pid;

use crate::cgroup::{Cgroup, CgroupLayout, CgroupLimits};
use crate::config::{JailConfig, SandboxSpec};
use crate::error::SandboxError;
use crate::filesystem::{self, cstr, BaseInputs, FunctionInputs};
use crate::nat::NatNetwork;
use crate::network;
use crate::process::{PreparedSandbox, SandboxResources};
use crate::scratch::ScratchFactory;
use crate::seccomp::SeccompPolicy;
use crate::shell_child::{self, ShellPlan};
use crate::wire;
use crate::zygote::{self, Handoff, ZygoteShape};

/// Numbers shells uniquely within this process (their cgroup names).
static NEXT_SHELL: AtomicU64 = AtomicU64::new(0);

/// How long the host waits for a new shell's function-independent set-up.
const READY_TIMEOUT_MS: u16 = 5_000;

/// `pids.max` of a shell until its function's limit is written (it runs one
/// process of Nimbus's own code until then).
const SHELL_PIDS_MAX: u64 = 16;

/// What a shell is prepared for; everything else is written at use. A pool keeps
/// `JailConfig::shell_pool` shells ready per registered shape
/// ([`crate::Jail::keep_ready`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ShellShape {
    /// Port of the service socket bound inside (the Runtime API), if any.
    pub service_port: Option<u16>,
    /// Size of its `/tmp`, in MiB (mounted ahead of time).
    pub ephemeral_mb: u64,
    /// The runtime root file system its system directories come from (`None`: the
    /// host's).
    pub system_root: Option<std::sync::Arc<std::path::Path>>,
    /// The runtime's zygote the shell runs while it waits (see `zygote.rs`), if any.
    pub zygote: Option<ZygoteShape>,
}

/// A function's code, runtime and layer directories as detached, read-only
/// mount trees, ready to be attached in a shell (see the module docs).
pub(crate) struct DetachedMounts {
    /// `wire::MOUNT_*` bits of the descriptors in `fds`, in order.
    mask: u32,
    fds: Vec<OwnedFd>,
    /// What each shell step does, to describe a failing one.
    describe: Vec<filesystem::RootfsOp>,
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;

/// `struct mount_attr` from `<linux/mount.h>`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

impl DetachedMounts {
    pub(crate) fn mask(&self) -> u32 {
        self.mask
    }

    pub(crate) fn fds(&self) -> &[OwnedFd] {
        &self.fds
    }

    pub(crate) fn describe(&self) -> &[filesystem::RootfsOp] {
        &self.describe
    }

    /// Clones the directories `spec` needs. `Ok(None)`: the spec needs what
    /// a shell does not do (several layers, merged by overlayfs).
    pub(crate) fn for_spec(spec: &SandboxSpec) -> Result<Option<Self>, SandboxError> {
        if spec.layers.len() > 1 {
            return Ok(None);
        }
        let mut mounts = DetachedMounts {
            mask: 0,
            fds: Vec::with_capacity(3),
            describe: Vec::with_capacity(4),
        };
        let wanted = [
            (wire::MOUNT_TASK, Some(spec.code_dir.as_path())),
            (wire::MOUNT_RUNTIME, spec.runtime_dir.as_deref()),
            (wire::MOUNT_OPT, spec.layers.first().map(PathBuf::as_path)),
        ];
        for ((bit, src), (_, target)) in wanted.into_iter().zip(shell_child::MOUNT_POINTS) {
            let dst = CString::from(target);
            let Some(src) = src else {
                mounts.describe.push(filesystem::RootfsOp::MkDir(dst));
                continue;
            };
            let src_c = cstr(src)?;
            mounts.describe.push(filesystem::RootfsOp::BindReadOnly {
                src: src_c.clone(),
                dst,
            });
            let step = |errno| SandboxError::ChildStep {
                step: crate::ChildStep::Rootfs(
                    mounts
                        .describe
                        .last()
                        .map(|o| o.describe())
                        .unwrap_or_default(),
                ),
                errno,
            };
            mounts.fds.push(detached_read_only(&src_c).map_err(step)?);
            mounts.mask |= bit;
        }
        mounts.describe.push(filesystem::RootfsOp::Chown {
            path: CString::from(c"/tmp"),
            uid: spec.user.uid,
            gid: spec.user.gid,
        });
        Ok(Some(mounts))
    }
}

/// `open_tree(OPEN_TREE_CLONE | AT_RECURSIVE)` of `path`, made read-only,
/// nosuid, nodev and private (`mount_setattr`): a mount tree that belongs to
/// no namespace until a shell attaches it.
fn detached_read_only(path: &std::ffi::CStr) -> Result<OwnedFd, nix::errno::Errno> {
    use std::os::fd::FromRawFd;
    // SAFETY: path is NUL-terminated; open_tree returns a new fd or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            OPEN_TREE_CLONE | AT_RECURSIVE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    let fd = nix::errno::Errno::result(fd)? as i32;
    // SAFETY: the kernel just returned this fd to us.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        attr_clr: 0,
        propagation: libc::MS_PRIVATE,
        userns_fd: 0,
    };
    // SAFETY: `attr` is a valid struct mount_attr of the size passed; the
    // empty path with AT_EMPTY_PATH names the fd itself.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint | AT_RECURSIVE,
            &attr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    nix::errno::Errno::result(rc)?;
    Ok(fd)
}

/// One pre-created shell, waiting. Dropping it kills it and frees everything.
pub(crate) struct Shell {
    shape: ShellShape,
    pid: Pid,
    pidfd: Option<OwnedFd>,
    control: Option<OwnedFd>,
    err_read: Option<OwnedFd>,
    listener: Option<TcpListener>,
    /// A zygote's stdout and stderr (the read end of the pipe it was started with).
    output: Option<OwnedFd>,
    /// pid, cgroup, root dir, NAT link.
    resources: SandboxResources,
}

impl Drop for Shell {
    fn drop(&mut self) {
        // Closing the control socket first lets a shell blocked in recv exit by itself.
        self.control = None;
        self.resources.cleanup();
    }
}

/// What creating shells needs from the jail.
pub(crate) struct ShellFactory {
    pub config: JailConfig,
    pub cgroups: CgroupLayout,
    pub seccomp: SeccompPolicy,
    pub nat: Option<Arc<NatNetwork>>,
    pub empty_file: PathBuf,
}

/// The pool: ready shells per shape, refilled by a background thread.
pub(crate) struct ShellPool {
    factory: ShellFactory,
    /// `/tmp` disks for new shells.
    scratch: Arc<ScratchFactory>,
    ready: Mutex<HashMap<ShellShape, Vec<Shell>>>,
    refill: Condvar,
    target: usize,
    /// Set (under `ready`'s lock) by [`ShellPool::close`]: no shell is kept or made after.
    closed: std::sync::atomic::AtomicBool,
}

impl ShellPool {
    /// Starts the refill thread; `target` shells are kept per registered shape.
    pub(crate) fn new(
        factory: ShellFactory,
        scratch: Arc<ScratchFactory>,
        target: usize,
    ) -> Arc<Self> {
        let pool = Arc::new(ShellPool {
            factory,
            scratch,
            ready: Mutex::new(HashMap::new()),
            refill: Condvar::new(),
            target,
            closed: std::sync::atomic::AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&pool);
        let _ = std::thread::Builder::new()
            .name("nimbus-shells".into())
            .spawn(move || refill_loop(weak));
        pool
    }

    /// Keeps shells of `shape` ready from now on.
    pub(crate) fn register(&self, shape: ShellShape) {
        self.lock().entry(shape).or_default();
        self.refill.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ShellShape, Vec<Shell>>> {
        self.ready.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a ready shell of `shape` (it is never handed out again), if any.
    /// Registers the shape so later cold starts find one.
    pub(crate) fn take(&self, shape: ShellShape) -> Option<Shell> {
        let shell = self.lock().entry(shape).or_default().pop();
        self.refill.notify_one();
        shell
    }

    /// Returns a shell that was taken but never sent anything (dropped, freeing it, once
    /// the pool is closed).
    pub(crate) fn put_back(&self, shell: Shell) {
        let _ = self.keep(shell);
    }

    /// Puts `shell` among the ready ones unless the pool is closed; then hands it back,
    /// to be dropped outside the lock.
    fn keep(&self, shell: Shell) -> Option<Shell> {
        let mut ready = self.lock();
        if self.is_closed() {
            return Some(shell);
        }
        ready.entry(shell.shape.clone()).or_default().push(shell);
        None
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Stops keeping shells and frees the ready ones (their processes, cgroups, roots
    /// and links), as a worker shutting down must: a process that exits with shells
    /// waiting leaves their cgroups behind. Cold starts take the plain path after.
    /// Returns how many shells were freed. Blocks while it frees them.
    pub(crate) fn close(&self) -> usize {
        let shells: Vec<Shell> = {
            let mut ready = self.lock();
            self.closed.store(true, Ordering::SeqCst);
            ready.drain().flat_map(|(_, shells)| shells).collect()
        };
        self.refill.notify_all();
        let freed = shells.len();
        drop(shells);
        freed
    }

    /// Host pids of the ready shells of `shape`.
    pub(crate) fn ready_pids(&self, shape: ShellShape) -> Vec<i32> {
        self.lock()
            .get(&shape)
            .map(|v| v.iter().map(|s| s.pid.as_raw()).collect())
            .unwrap_or_default()
    }

    /// Creates one shell now (blocking: clone, cgroup attach, network).
    pub(crate) fn create(
        &self,
        scratch: &ScratchFactory,
        shape: ShellShape,
    ) -> Result<Shell, SandboxError> {
        let id = format!(
            "shell-{}-{}",
            std::process::id(),
            NEXT_SHELL.fetch_add(1, Ordering::Relaxed)
        );
        let mut res = SandboxResources::default();
        match self.create_into(scratch, shape, &id, &mut res) {
            Ok(shell) => Ok(shell),
            Err(e) => {
                res.cleanup();
                Err(e)
            }
        }
    }

    fn create_into(
        &self,
        scratch: &ScratchFactory,
        shape: ShellShape,
        id: &str,
        res: &mut SandboxResources,
    ) -> Result<Shell, SandboxError> {
        let f = &self.factory;
        let t0 = Instant::now();
        let cgroup = Cgroup::create_empty(&f.cgroups, id)?;
        res.cgroup = Some(cgroup);
        // A bound on the shell itself until its function's limits are written.
        if let Some(cg) = &res.cgroup {
            cg.set_pids_max(SHELL_PIDS_MAX)?;
        }
        res.link = match &f.nat {
            Some(nat) => Some(nat.allocate(id, &f.config.state_dir)?),
            None => None,
        };
        let root = f.config.state_dir.join("roots").join(id);
        std::fs::create_dir_all(&root)
            .map_err(|e| SandboxError::io(format!("create {}", root.display()), e))?;
        res.root_dir = Some(root.clone());
        let resolv_conf = res.link.as_ref().map(|l| l.resolv_conf.clone());
        let disk = scratch.take(shape.ephemeral_mb)?;
        let device = disk.device.clone();
        res.scratch = Some(disk);
        let mut base = filesystem::plan_base(&BaseInputs {
            root: &root,
            system_root: shape
                .system_root
                .as_deref()
                .unwrap_or(std::path::Path::new("/")),
            host_ro_paths: &f.config.host_ro_paths,
            masked_paths: &f.config.masked_paths,
            resolv_conf: resolv_conf.as_deref(),
            empty_file: &f.empty_file,
        })?;
        // /tmp's disk, mounted now; it is given to the function's user at use.
        base.extend(
            filesystem::plan_function(&FunctionInputs {
                root: &root,
                code_dir: std::path::Path::new("/"),
                runtime_dir: None,
                layers: &[],
                scratch_device: Some(&device),
                uid: 0,
                gid: 0,
            })?
            .into_iter()
            .filter(|op| matches!(op, filesystem::RootfsOp::Mount { .. })),
        );
        let (host_end, shell_end) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| SandboxError::io("socketpair", e))?;
        let (err_read, err_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| SandboxError::io("pipe", e))?;
        let mut plan = ShellPlan {
            hostname: CString::new("sandbox").expect("no NUL"),
            base,
            new_root: cstr(&root)?,
            put_old: cstr(&root.join(".old-root"))?,
            seccomp: f.seccomp.programs.clone(),
            control: shell_end.as_raw_fd(),
            control_host: host_end.as_raw_fd(),
            err_write: err_write.as_raw_fd(),
            buf: vec![0u8; wire::MAX_MESSAGE],
            ptrs: vec![std::ptr::null(); wire::MAX_STRINGS + 2],
        };
        let mut stack = vec![0u8; crate::jail::CHILD_STACK_BYTES];
        let plan_ref = &mut plan;
        // SAFETY: as in `Jail::prepare`: the shell gets a copy-on-write copy
        // of this process (no CLONE_VM) and runs `shell_child::run`, which
        // only makes system calls on buffers allocated above and ends in
        // execve or _exit.
        let pid = unsafe {
            nix::sched::clone(
                Box::new(|| shell_child::run(plan_ref)),
                &mut stack,
                crate::jail::NAMESPACES,
                Some(libc::SIGCHLD),
            )
        }
        .map_err(SandboxError::Clone)?;
        res.pid = Some(pid);
        drop(shell_end);
        drop(err_write);
        let t_clone = t0.elapsed();

        // The slow part, off the invocation path: cgroup attach, network.
        let host_side = || -> Result<Option<TcpListener>, SandboxError> {
            if let Some(cg) = &res.cgroup {
                cg.attach(pid.as_raw())?;
            }
            if let (Some(nat), Some(link)) = (&f.nat, &res.link) {
                nat.connect(link, pid.as_raw())?;
            }
            match shape.service_port {
                Some(port) => {
                    let netns = File::open(format!("/proc/{pid}/ns/net"))
                        .map_err(|e| SandboxError::io("open the shell's network namespace", e))?;
                    Ok(Some(network::bind_in_netns(&netns, port)?))
                }
                None => Ok(None),
            }
        };
        let described =
            |e: SandboxError| crate::process::child_report(&err_read, &plan.base).unwrap_or(e);
        let listener = host_side().map_err(described)?;
        shell_child::wait_ready(host_end.as_raw_fd(), READY_TIMEOUT_MS)
            .map_err(|e| described(SandboxError::io("pre-created shell set-up", e)))?;
        // The shell's mount holds the loop device now.
        if let Some(disk) = res.scratch.as_mut() {
            disk.release();
        }
        let pidfd = crate::process::pidfd_open(pid.as_raw())?;
        let (err_read, output) = match &shape.zygote {
            Some(z) => {
                let output = start_zygote(z, &host_end, err_read, plan.control, &plan.base)?;
                (None, Some(output))
            }
            None => (Some(err_read), None),
        };
        tracing::debug!(
            clone_us = t_clone.as_micros() as u64,
            ready_us = t0.elapsed().as_micros() as u64,
            zygote = shape.zygote.is_some(),
            "environment shell ready"
        );
        Ok(Shell {
            shape,
            pid,
            pidfd: Some(pidfd),
            control: Some(host_end),
            err_read,
            listener,
            output,
            resources: std::mem::take(res),
        })
    }

    /// Turns `shell` into `spec`'s environment, paused before dropping
    /// privileges (like [`crate::Jail::prepare`]). `Err` means nothing was
    /// started and the shell is gone: the caller falls back to the plain path.
    pub(crate) fn prepare(
        &self,
        spec: &SandboxSpec,
        mounts: DetachedMounts,
        mut shell: Shell,
    ) -> Result<PreparedSandbox, SandboxError> {
        let t0 = Instant::now();
        let fail = |m: &str| SandboxError::InvalidSpec(format!("pre-created shell {m}"));
        // Used at most once, and only if it is still whole: alive and in its cgroups.
        let pidfd = shell.pidfd.take().ok_or_else(|| fail("has no pidfd"))?;
        let mut poll = [nix::poll::PollFd::new(
            pidfd.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        if nix::poll::poll(&mut poll, nix::poll::PollTimeout::ZERO)
            .map_err(|e| SandboxError::io("poll", e))?
            != 0
        {
            return Err(fail("has exited"));
        }
        let cgroup = shell
            .resources
            .cgroup
            .as_ref()
            .ok_or_else(|| fail("has no cgroup"))?;
        if !cgroup.contains(shell.pid.as_raw()) {
            return Err(fail("is not in its cgroups"));
        }
        let mut res = std::mem::take(&mut shell.resources);
        // From here on `res` owns the process: a failure kills it.
        let sent = match shell.shape.zygote {
            Some(_) => prepare_zygote(spec, &mounts, &mut shell, &mut res).map(Some),
            None => send_spec(spec, &mounts, &mut shell, &mut res).map(|()| None),
        };
        match sent {
            Ok(handoff) => {
                let control = shell.control.take().ok_or_else(|| fail("has no socket"))?;
                tracing::debug!(
                    id = %spec.id,
                    pid = shell.pid.as_raw(),
                    prepare_us = t0.elapsed().as_micros() as u64,
                    zygote = handoff.is_some(),
                    "sandbox prepared from a pre-created shell"
                );
                if let Some(handoff) = handoff {
                    let output = shell.output.take().ok_or_else(|| fail("has no output"))?;
                    return Ok(PreparedSandbox::new_zygote(
                        shell.pid,
                        pidfd,
                        control,
                        (handoff, output),
                        mounts.describe,
                        res,
                        shell.listener.take(),
                    ));
                }
                let err_read = shell.err_read.take().ok_or_else(|| fail("has no pipe"))?;
                Ok(PreparedSandbox::new_pooled(
                    shell.pid,
                    pidfd,
                    control,
                    Some(err_read),
                    mounts.describe,
                    res,
                    shell.listener.take(),
                ))
            }
            Err(e) => {
                res.cleanup();
                Err(e)
            }
        }
    }
}

/// What a shell is to exec, and as whom: a function's spec, or a zygote's.
pub(crate) struct Exec<'a> {
    pub user: crate::SandboxUser,
    pub nofile: u64,
    /// `wire`'s `mounts` field (mount bits, `KEEP_CONTROL`).
    pub mounts: u32,
    pub cwd: &'a std::path::Path,
    pub program: &'a std::path::Path,
    pub args: &'a [String],
    pub env: &'a [(String, String)],
}

impl Exec<'_> {
    /// Encoded as a shell (or a zygote) reads it.
    pub(crate) fn message(&self) -> Result<Vec<u8>, SandboxError> {
        let exec = crate::jail::ExecStrings::new(self.program, self.args, self.env)?;
        let argc = self.args.len() + 1;
        wire::encode(&wire::Message {
            uid: self.user.uid,
            gid: self.user.gid,
            nofile: self.nofile,
            mounts: self.mounts,
            cwd: &cstr(self.cwd)?,
            program: &exec.program,
            argv: &exec.strings[..argc],
            env: &exec.strings[argc..],
        })
        .ok_or_else(|| SandboxError::InvalidSpec("spec too large for a pre-created shell".into()))
    }
}

/// The function's spec as a shell (or a zygote, with no mounts) reads it.
fn function_message(spec: &SandboxSpec, mounts: u32) -> Result<Vec<u8>, SandboxError> {
    let mut env = spec.env.clone();
    if let Some(port) = spec.service_port {
        env.push((spec.service_addr_env.clone(), format!("127.0.0.1:{port}")));
    }
    Exec {
        user: spec.user,
        nofile: spec.nofile,
        mounts,
        cwd: &spec.cwd,
        program: &spec.program,
        args: &spec.args,
        env: &env,
    }
    .message()
}

/// The function's limits into the shell's cgroups, before any of its code can run.
fn write_limits(spec: &SandboxSpec, res: &mut SandboxResources) -> Result<(), SandboxError> {
    let limits = CgroupLimits {
        memory_mb: spec.memory_mb,
        pids_max: spec.pids_max,
        unrestricted_cpu_at_start: false,
    };
    res.limits = Some(limits);
    let cgroup = res
        .cgroup
        .as_ref()
        .ok_or_else(|| SandboxError::InvalidSpec("pre-created shell has no cgroup".into()))?;
    cgroup.apply_limits(CgroupLimits {
        unrestricted_cpu_at_start: spec.unrestricted_cpu_at_start,
        ..limits
    })?;
    cgroup.reset_peak();
    Ok(())
}

/// Sends a new shell its zygote and waits until the zygote is exec'd (the error pipe,
/// close-on-exec, reaches EOF) or the shell reports the step that failed. Returns the
/// read end of the zygote's stdout and stderr.
fn start_zygote(
    zygote: &ZygoteShape,
    control: &OwnedFd,
    err_read: OwnedFd,
    shell_control: std::os::fd::RawFd,
    base: &[filesystem::RootfsOp],
) -> Result<OwnedFd, SandboxError> {
    let message = zygote.start_message(shell_control)?;
    let null = File::open("/dev/null").map_err(|e| SandboxError::io("open /dev/null", e))?;
    let (output, output_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| SandboxError::io("pipe", e))?;
    let fds = [
        null.as_raw_fd(),
        output_write.as_raw_fd(),
        output_write.as_raw_fd(),
    ];
    shell_child::send_spec(control.as_raw_fd(), &message, &fds)
        .map_err(|e| SandboxError::io("send a shell its zygote", e))?;
    nix::unistd::write(control, &[1u8]).map_err(|e| SandboxError::io("start a zygote", e))?;
    let mut report = Vec::with_capacity(8);
    File::from(err_read)
        .read_to_end(&mut report)
        .map_err(|e| SandboxError::io("read a zygote's start", e))?;
    match crate::process::decode_report(&report, Some(base)) {
        Some(e) => Err(e),
        None => Ok(output),
    }
}

/// Attaches the function's mounts in a zygote's namespace and writes its limits; the
/// function itself is sent at `PreparedSandbox::start`.
fn prepare_zygote(
    spec: &SandboxSpec,
    mounts: &DetachedMounts,
    shell: &mut Shell,
    res: &mut SandboxResources,
) -> Result<Handoff, SandboxError> {
    let handoff = Handoff::new(function_message(spec, 0)?);
    zygote::attach_mounts(shell.pid, mounts, spec.user)?;
    write_limits(spec, res)?;
    Ok(handoff)
}

fn send_spec(
    spec: &SandboxSpec,
    mounts: &DetachedMounts,
    shell: &mut Shell,
    res: &mut SandboxResources,
) -> Result<(), SandboxError> {
    let message = function_message(spec, mounts.mask)?;
    let stdin = File::open("/dev/null").map_err(|e| SandboxError::io("open /dev/null", e))?;
    let control = shell
        .control
        .as_ref()
        .ok_or_else(|| SandboxError::InvalidSpec("pre-created shell has no socket".into()))?;
    let mut fds = vec![
        stdin.as_raw_fd(),
        spec.stdout.as_raw_fd(),
        spec.stderr.as_raw_fd(),
    ];
    fds.extend(mounts.fds.iter().map(AsRawFd::as_raw_fd));
    shell_child::send_spec(control.as_raw_fd(), &message, &fds)
        .map_err(|e| SandboxError::io("send the spec to a pre-created shell", e))?;
    // While the shell attaches the mounts: the function's limits, before any
    // of its code can run (the shell waits for the go-ahead).
    write_limits(spec, res)
}

/// Keeps `target` shells per registered shape until the pool is dropped.
fn refill_loop(pool: Weak<ShellPool>) {
    loop {
        let Some(p) = pool.upgrade() else { return };
        if p.is_closed() {
            return;
        }
        let missing: Vec<ShellShape> = {
            let ready = p.lock();
            let missing: Vec<ShellShape> = ready
                .iter()
                .filter(|(_, shells)| shells.len() < p.target)
                .map(|(shape, _)| shape.clone())
                .collect();
            if missing.is_empty() {
                let _ = p
                    .refill
                    .wait_timeout(ready, Duration::from_secs(1))
                    .unwrap_or_else(|e| e.into_inner());
                continue;
            }
            missing
        };
        for shape in missing {
            match p.create(&p.scratch, shape.clone()) {
                Ok(shell) => {
                    // Closed while this one was being made: freed here, not kept.
                    if p.keep(shell).is_some() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot pre-create an environment shell");
                    drop(p);
                    #[allow(clippy::disallowed_methods)] // dedicated thread, not async
                    std::thread::sleep(Duration::from_secs(1));
                    break;
                }
            }
        }
    }
}

impl std::fmt::Debug for ShellPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShellPool")
            .field("target", &self.target)
            .finish()
    }
}

impl std::fmt::Debug for Shell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shell")
            .field("pid", &self.pid)
            .field("shape", &self.shape)
            .finish()
    }
}
