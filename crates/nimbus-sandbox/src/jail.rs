//! [`Jail`]: creates execution environments, one isolation step per module,
//! in the order Firecracker's jailer uses: validate, resources (scratch disk,
//! cgroup), namespaces + file system (child), network, limits and identity,
//! seccomp, exec.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::resource::Resource;

use crate::cgroup::{Cgroup, CgroupLayout, CgroupLimits};
use crate::child::{self, ChildPlan};
use crate::config::{JailConfig, SandboxSpec};
use crate::error::SandboxError;
use crate::filesystem::{self, cstr, RootfsInputs};
use crate::nat::NatNetwork;
use crate::network::{self, NetworkMode};
use crate::process::{PreparedSandbox, SandboxResources};
use crate::scratch::ScratchFactory;
use crate::seccomp::SeccompPolicy;
use crate::shell::{DetachedMounts, ShellFactory, ShellPool, ShellShape};
use crate::zygote::ZygoteShape;

/// Namespaces every environment gets: its own PID, mount, IPC, UTS, network
/// and cgroup view. (No user namespace: the workload runs as a real
/// unprivileged uid, which keeps the kernel's user-namespace surface closed.)
pub(crate) const NAMESPACES: CloneFlags = CloneFlags::CLONE_NEWPID
    .union(CloneFlags::CLONE_NEWNS)
    .union(CloneFlags::CLONE_NEWIPC)
    .union(CloneFlags::CLONE_NEWUTS)
    .union(CloneFlags::CLONE_NEWNET)
    .union(CloneFlags::CLONE_NEWCGROUP);

/// Stack for the cloned child until it execs; it only makes system calls.
pub(crate) const CHILD_STACK_BYTES: usize = 256 * 1024;

/// Creates isolated execution environments on this host.
#[derive(Debug)]
pub struct Jail {
    config: JailConfig,
    /// `None` only in insecure mode.
    cgroups: Option<CgroupLayout>,
    seccomp: Option<SeccompPolicy>,
    scratch: std::sync::Arc<ScratchFactory>,
    nat: Option<std::sync::Arc<NatNetwork>>,
    /// Empty read-only file bound over masked secrets.
    empty_file: std::path::PathBuf,
    /// Pre-created environment shells (`JailConfig::shell_pool` > 0).
    shells: Option<std::sync::Arc<ShellPool>>,
}

impl Jail {
    /// Checks that every isolation mechanism is available and prepares the
    /// host (cgroup parent, state directory, firewall). Fails closed.
    pub fn new(config: JailConfig) -> Result<Self, SandboxError> {
        std::fs::create_dir_all(config.state_dir.join("roots"))
            .map_err(|e| SandboxError::io(format!("create {}", config.state_dir.display()), e))?;
        let prefill = if config.insecure_no_isolation {
            0
        } else {
            config.scratch_prefill
        };
        let scratch = ScratchFactory::new(config.state_dir.join("scratch"), prefill);
        let empty_file = config.state_dir.join("empty");
        std::fs::write(&empty_file, b"")
            .and_then(|()| {
                std::fs::set_permissions(
                    &empty_file,
                    std::os::unix::fs::PermissionsExt::from_mode(0o444),
                )
            })
            .map_err(|e| SandboxError::io("create the mask file", e))?;
        if config.insecure_no_isolation {
            tracing::warn!(
                "!!! nimbus-sandbox: insecure_no_isolation is ON — functions run as plain \
                 processes with full access to this host. Never use this in production. !!!"
            );
            return Ok(Jail {
                config,
                cgroups: None,
                seccomp: None,
                scratch,
                nat: None,
                empty_file,
                shells: None,
            });
        }
        let cgroups = CgroupLayout::detect(&config.cgroup_parent)?;
        // A fairness setting, not an isolation step: without it functions run, only
        // slower on a busy host, so a failure is logged rather than fatal.
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
        if let Err(e) = cgroups.set_parent_cpu_weight(cpus) {
            tracing::warn!(error = %e, "cannot weigh the environments' parent cgroup as {cpus} CPUs");
        }
        if let Some(max) = config.pids_max_total {
            // Fails closed like every other isolation step.
            cgroups.set_parent_pids_max(max)?;
        }
        if config.expedite_rcu {
            std::fs::write("/sys/kernel/rcu_expedited", "1")
                .map_err(|e| SandboxError::io("set /sys/kernel/rcu_expedited", e))?;
        }
        let seccomp = SeccompPolicy::compile()?;
        let nat = match &config.network {
            NetworkMode::Loopback => None,
            NetworkMode::Nat(nat) => Some(std::sync::Arc::new(NatNetwork::install(nat.clone())?)),
        };
        let shells = (config.shell_pool > 0).then(|| {
            ShellPool::new(
                ShellFactory {
                    config: config.clone(),
                    cgroups: cgroups.clone(),
                    seccomp: seccomp.clone(),
                    nat: nat.clone(),
                    empty_file: empty_file.clone(),
                },
                scratch.clone(),
                config.shell_pool,
            )
        });
        Ok(Jail {
            config,
            cgroups: Some(cgroups),
            seccomp: Some(seccomp),
            scratch,
            nat,
            empty_file,
            shells,
        })
    }

    /// Keeps `JailConfig::shell_pool` pre-created shells ready for
    /// environments with this service port (the Runtime API's) and `/tmp`
    /// size, so that the first cold start already finds one. No-op without
    /// a pool.
    /// (Other shapes get shells once a first cold start asked for one.)
    pub fn keep_shells_ready(&self, service_port: Option<u16>, ephemeral_mb: u64) {
        self.keep_ready(ShellShape {
            service_port,
            ephemeral_mb,
            system_root: None,
            zygote: None,
        });
    }

    /// Keeps `JailConfig::shell_pool` pre-created shells of `shape` ready from now on
    /// (with its zygote started, if it names one and zygotes are on). No-op without a
    /// pool.
    pub fn keep_ready(&self, mut shape: ShellShape) {
        if !self.config.zygotes {
            shape.zygote = None;
        }
        if let Some(pool) = &self.shells {
            pool.register(shape);
        }
    }

    /// Stops keeping shells ready and frees the waiting ones (processes, cgroups, roots,
    /// links): for a worker shutting down. Later cold starts take the plain path.
    /// Returns how many were freed. Blocks while it frees them.
    pub fn close_shells(&self) -> usize {
        self.shells.as_ref().map_or(0, |pool| pool.close())
    }

    /// Host pids of the shells of `shape` ready right now.
    pub fn ready(&self, shape: ShellShape) -> Vec<i32> {
        self.shells
            .as_ref()
            .map(|p| p.ready_pids(shape))
            .unwrap_or_default()
    }

    /// Host pids of the shells ready for `service_port` and `ephemeral_mb`
    /// right now (for monitoring and tests).
    pub fn ready_shells(&self, service_port: Option<u16>, ephemeral_mb: u64) -> Vec<i32> {
        self.ready(ShellShape {
            service_port,
            ephemeral_mb,
            system_root: None,
            zygote: None,
        })
    }

    /// Blocks until at least `n` shells are ready for `service_port` and
    /// `ephemeral_mb`, or `timeout` passes; returns whether they are. For
    /// benchmarks and tests.
    pub fn wait_for_shells(
        &self,
        service_port: Option<u16>,
        ephemeral_mb: u64,
        n: usize,
        timeout: std::time::Duration,
    ) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if self.ready_shells(service_port, ephemeral_mb).len() >= n {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            #[allow(clippy::disallowed_methods)] // documented as blocking
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    /// The shells `spec` can be made from: with its runtime's zygote running, if it has
    /// one and zygotes are on.
    fn shape_of(&self, spec: &SandboxSpec) -> ShellShape {
        ShellShape {
            service_port: spec.service_port,
            ephemeral_mb: spec.ephemeral_mb,
            system_root: spec.system_root.clone(),
            zygote: self.config.zygotes.then(|| ZygoteShape::of(spec)).flatten(),
        }
    }

    /// Host pids of the shells ready for environments like `spec` right now (with its
    /// runtime's zygote, if it has one); registers that shape, so the pool keeps
    /// `JailConfig::shell_pool` of them from now on. For prewarming, benchmarks and
    /// tests.
    pub fn ready_for(&self, spec: &SandboxSpec) -> Vec<i32> {
        let shape = self.shape_of(spec);
        self.keep_ready(shape.clone());
        self.ready(shape)
    }

    /// Sets the addresses of the cluster's nodes that environments may never reach
    /// (NAT mode; with no network there is nothing to do).
    pub fn set_cluster_nodes(&self, addrs: &[std::net::Ipv4Addr]) -> Result<(), SandboxError> {
        match &self.nat {
            Some(nat) => Ok(nat.set_cluster_nodes(addrs)?),
            None => Ok(()),
        }
    }

    /// Kills and removes environments left behind by a previous worker
    /// process (see [`CgroupLayout::reclaim_orphans`]). Call once at start-up,
    /// only if no other live `Jail` uses the same cgroup parent.
    pub fn reclaim_orphans(&self) -> usize {
        let n = self
            .cgroups
            .as_ref()
            .map_or(0, CgroupLayout::reclaim_orphans);
        if n > 0 {
            tracing::warn!(
                environments = n,
                "reclaimed environments left by a previous worker"
            );
        }
        n
    }

    /// The host-wide configuration.
    pub fn config(&self) -> &JailConfig {
        &self.config
    }

    /// Creates the environment and leaves its first process paused right
    /// before dropping privileges; [`PreparedSandbox::start`] lets it exec.
    /// Blocking: call it from a blocking thread.
    pub fn prepare(&self, spec: SandboxSpec) -> Result<PreparedSandbox, SandboxError> {
        spec.validate()?;
        if self.config.insecure_no_isolation {
            return crate::insecure::spawn(spec);
        }
        if let Some(pool) = &self.shells {
            if let Some(shell) = pool.take(self.shape_of(&spec)) {
                // A directory that cannot be cloned (a missing layer, say) is
                // reported by the plain path, in its words; several layers
                // (overlayfs) are the plain path's too. The shell was not
                // used, so it goes back. (Cloned after taking a shell: a
                // detached mount dropped unused waits for an RCU grace period.)
                let mounts = match DetachedMounts::for_spec(&spec) {
                    Ok(Some(m)) => Some((m, shell)),
                    Ok(None) => {
                        pool.put_back(shell);
                        None
                    }
                    Err(e) => {
                        tracing::debug!(id = %spec.id, error = %e, "no detached mounts; plain path");
                        pool.put_back(shell);
                        None
                    }
                };
                if let Some((mounts, shell)) = mounts {
                    match pool.prepare(&spec, mounts, shell) {
                        Ok(prepared) => return Ok(prepared),
                        // Nothing ran and the shell is gone: the plain path decides.
                        Err(e) => tracing::warn!(
                            id = %spec.id,
                            error = %e,
                            "pre-created shell unusable; creating the environment from scratch"
                        ),
                    }
                }
            }
        }
        let mut res = SandboxResources::default();
        match self.prepare_isolated(spec, &mut res) {
            Ok(p) => Ok(p),
            Err(e) => {
                res.cleanup();
                Err(e)
            }
        }
    }

    fn prepare_isolated(
        &self,
        spec: SandboxSpec,
        res: &mut SandboxResources,
    ) -> Result<PreparedSandbox, SandboxError> {
        let (Some(cgroups), Some(seccomp)) = (&self.cgroups, &self.seccomp) else {
            return Err(SandboxError::InvalidSpec("jail not initialised".into()));
        };
        let t0 = std::time::Instant::now();
        // 1. Resources that outlive the child's setup: scratch disk, cgroup, network link.
        let scratch = self.scratch.take(spec.ephemeral_mb)?;
        let t_scratch = t0.elapsed();
        let device = scratch.device.clone();
        res.scratch = Some(scratch);
        res.limits = Some(CgroupLimits {
            memory_mb: spec.memory_mb,
            pids_max: spec.pids_max,
            unrestricted_cpu_at_start: false,
        });
        res.cgroup = Some(Cgroup::create(
            cgroups,
            &spec.id,
            CgroupLimits {
                memory_mb: spec.memory_mb,
                pids_max: spec.pids_max,
                unrestricted_cpu_at_start: spec.unrestricted_cpu_at_start,
            },
        )?);
        let t_cgroup = t0.elapsed();
        let link = match &self.nat {
            Some(nat) => Some(nat.allocate(&spec.id, &self.config.state_dir)?),
            None => None,
        };
        let resolv_conf = link.as_ref().map(|l| l.resolv_conf.clone());
        res.link = link;
        let root = self.config.state_dir.join("roots").join(&spec.id);
        std::fs::create_dir_all(&root)
            .map_err(|e| SandboxError::io(format!("create {}", root.display()), e))?;
        res.root_dir = Some(root.clone());

        // 2. The child's plan: file system, identity, limits, seccomp, exec.
        let rootfs = filesystem::plan(&RootfsInputs {
            root: &root,
            system_root: spec.system_root.as_deref().unwrap_or(Path::new("/")),
            host_ro_paths: &self.config.host_ro_paths,
            masked_paths: &self.config.masked_paths,
            code_dir: &spec.code_dir,
            runtime_dir: spec.runtime_dir.as_deref(),
            layers: &spec.layers,
            scratch_device: Some(&device),
            uid: spec.user.uid,
            gid: spec.user.gid,
            resolv_conf: resolv_conf.as_deref(),
            empty_file: &self.empty_file,
        })?;
        let mut env = spec.env.clone();
        if let Some(port) = spec.service_port {
            env.push((spec.service_addr_env.clone(), format!("127.0.0.1:{port}")));
        }
        let (go_read, go_write) = pipe()?;
        let (err_read, err_write) = pipe()?;
        let stdin = File::open("/dev/null").map_err(|e| SandboxError::io("open /dev/null", e))?;
        let exec = ExecStrings::new(&spec.program, &spec.args, &env)?;
        let mut plan = ChildPlan {
            hostname: CString::new("sandbox").expect("no NUL"),
            rootfs,
            new_root: cstr(&root)?,
            put_old: cstr(&root.join(".old-root"))?,
            cwd: cstr(&spec.cwd)?,
            uid: spec.user.uid,
            gid: spec.user.gid,
            rlimits: vec![
                (Resource::RLIMIT_NOFILE, spec.nofile),
                (Resource::RLIMIT_CORE, 0),
            ],
            seccomp: seccomp.programs.clone(),
            stdin: stdin.as_raw_fd(),
            stdout: spec.stdout.as_raw_fd(),
            stderr: spec.stderr.as_raw_fd(),
            go_read: go_read.as_raw_fd(),
            go_write: go_write.as_raw_fd(),
            err_write: err_write.as_raw_fd(),
            program: exec.program,
            _strings: exec.strings,
            argv: exec.argv,
            envp: exec.envp,
        };

        // 3. Clone into the new namespaces.
        let mut stack = vec![0u8; CHILD_STACK_BYTES];
        let plan_ref = &mut plan;
        // SAFETY: the child gets a copy-on-write copy of this process (no
        // CLONE_VM) and runs `child::run`, which only makes system calls on
        // data prepared above (no allocation, no locks) and ends in execve or
        // _exit. The stack buffer outlives the call in the parent and is the
        // child's own copy in the child.
        let pid = unsafe {
            nix::sched::clone(
                Box::new(|| child::run(plan_ref)),
                &mut stack,
                NAMESPACES,
                Some(libc::SIGCHLD),
            )
        }
        .map_err(SandboxError::Clone)?;
        let t_clone = t0.elapsed();
        res.pid = Some(pid);
        drop(go_read);
        drop(err_write);
        drop(stdin);
        drop(spec.stdout);
        drop(spec.stderr);

        // 4. Host side while the child builds its root: cgroup, network, Runtime API socket.
        let host_side = || -> Result<Option<std::net::TcpListener>, SandboxError> {
            if let Some(cg) = &res.cgroup {
                cg.attach(pid.as_raw())?;
            }
            let netns = File::open(format!("/proc/{pid}/ns/net"))
                .map_err(|e| SandboxError::io("open the child's network namespace", e))?;
            if let (Some(nat), Some(link)) = (&self.nat, &res.link) {
                nat.connect(link, pid.as_raw())?;
            }
            match spec.service_port {
                Some(port) => Ok(Some(network::bind_in_netns(&netns, port)?)),
                None => Ok(None),
            }
        };
        let listener = match host_side() {
            Ok(l) => l,
            // If the child already failed, its error is the real cause.
            Err(e) => {
                return Err(crate::process::child_report(&err_read, &plan.rootfs).unwrap_or(e))
            }
        };
        let pidfd = crate::process::pidfd_open(pid.as_raw())?;
        tracing::debug!(
            id = %spec.id,
            scratch_us = t_scratch.as_micros() as u64,
            cgroup_us = t_cgroup.as_micros() as u64,
            clone_us = t_clone.as_micros() as u64,
            host_side_us = t0.elapsed().as_micros() as u64,
            "sandbox prepared"
        );

        Ok(PreparedSandbox::new(
            pid,
            pidfd,
            Some(go_write),
            err_read,
            plan,
            std::mem::take(res),
            listener,
        ))
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), SandboxError> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| SandboxError::io("pipe", e))
}

/// `execve`'s arguments, as C strings and NULL-terminated pointer arrays.
pub(crate) struct ExecStrings {
    pub program: CString,
    pub strings: Vec<CString>,
    pub argv: Vec<*const libc::c_char>,
    pub envp: Vec<*const libc::c_char>,
}

impl ExecStrings {
    pub(crate) fn new(
        program: &std::path::Path,
        args: &[String],
        env: &[(String, String)],
    ) -> Result<Self, SandboxError> {
        let nul = |what: &str| SandboxError::InvalidSpec(format!("{what} contains NUL"));
        let program = CString::new(program.as_os_str().as_bytes()).map_err(|_| nul("program"))?;
        let mut strings = vec![program.clone()];
        for a in args {
            strings.push(CString::new(a.as_bytes()).map_err(|_| nul("argument"))?);
        }
        let argc = strings.len();
        for (k, v) in env {
            if k.is_empty() || k.contains('=') {
                return Err(SandboxError::InvalidSpec(format!(
                    "bad variable name {k:?}"
                )));
            }
            strings.push(CString::new(format!("{k}={v}")).map_err(|_| nul("environment"))?);
        }
        // The CStrings' heap buffers do not move when `strings` moves.
        let ptrs: Vec<*const libc::c_char> = strings.iter().map(|s| s.as_ptr()).collect();
        let mut argv = ptrs[..argc].to_vec();
        argv.push(std::ptr::null());
        let mut envp = ptrs[argc..].to_vec();
        envp.push(std::ptr::null());
        Ok(ExecStrings {
            program,
            strings,
            argv,
            envp,
        })
    }
}
