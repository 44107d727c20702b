//! What the host allows ([`JailConfig`], once per worker) and what one
//! environment asks for ([`SandboxSpec`]).

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use crate::network::NetworkMode;

/// Host-wide sandbox settings. `Default` gives the production layout.
#[derive(Debug, Clone)]
pub struct JailConfig {
    /// Scratch-disk templates and (empty) per-environment root mount points.
    pub state_dir: PathBuf,
    /// Name of the cgroup, under each hierarchy's root, that parents all environments.
    pub cgroup_parent: String,
    /// Host paths exposed read-only at the same place (directories are bound,
    /// symlinks such as Debian's `/bin -> usr/bin` recreated).
    pub host_ro_paths: Vec<PathBuf>,
    /// Paths inside `host_ro_paths` that are hidden (secrets).
    pub masked_paths: Vec<PathBuf>,
    /// Network given to environments.
    pub network: NetworkMode,
    /// Scratch disks kept attached and ready per `/tmp` size in use, so a
    /// cold start skips the copy and loop setup (0 disables the refill thread).
    pub scratch_prefill: usize,
    /// Pre-created environment shells kept ready per shape (namespaces,
    /// cgroups attached, base root file system, network; see `shell.rs`),
    /// refilled in the background. 0 creates every environment from scratch.
    pub shell_pool: usize,
    /// Start a [`SandboxSpec::zygote`] ahead of time in each pre-created shell of its
    /// shape, so a cold start finds the runtime already loaded (see `zygote.rs`). Only
    /// with `shell_pool` > 0; `false` ignores `zygote` and execs `program` at use.
    pub zygotes: bool,
    /// Host tuning: set `/sys/kernel/rcu_expedited` to 1 at start-up. Moving
    /// a process into a cgroup waits for an RCU grace period (several ms on
    /// cgroup v1); expedited grace periods cut cold starts roughly in half at
    /// the price of IPIs host-wide. Off by default: it changes the whole host.
    pub expedite_rcu: bool,
    /// DEVELOPER ONLY: run the workload as a plain child process with no
    /// isolation at all. Logs a loud warning every time it is used.
    pub insecure_no_isolation: bool,
    /// Processes of all environments together (`pids.max` of the parent cgroup), so
    /// tenants' fork bombs, each within its own environment's limit, cannot together
    /// exhaust the host's pid space. `None` leaves the parent unlimited.
    pub pids_max_total: Option<u64>,
}

/// Default for [`JailConfig::pids_max_total`]: room for hundreds of environments at
/// their usual few processes each, far below the kernel's pid space (4 Mi on 64-bit).
pub const PIDS_MAX_TOTAL_DEFAULT: u64 = 16_384;

impl Default for JailConfig {
    fn default() -> Self {
        JailConfig {
            state_dir: PathBuf::from("/var/lib/nimbus/sandbox"),
            cgroup_parent: "nimbus".into(),
            host_ro_paths: ["/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc"]
                .into_iter()
                .map(PathBuf::from)
                .collect(),
            masked_paths: [
                "/etc/shadow",
                "/etc/shadow-",
                "/etc/gshadow",
                "/etc/gshadow-",
                "/etc/sudoers",
                "/etc/sudoers.d",
                "/etc/ssh",
                "/etc/ssl/private",
                "/etc/machine-id",
                "/etc/nimbus",
            ]
            .into_iter()
            .map(PathBuf::from)
            .collect(),
            network: NetworkMode::Loopback,
            scratch_prefill: 2,
            shell_pool: 0,
            zygotes: true,
            expedite_rcu: false,
            insecure_no_isolation: false,
            pids_max_total: Some(PIDS_MAX_TOTAL_DEFAULT),
        }
    }
}

/// The unprivileged identity the workload runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SandboxUser {
    /// User id (never 0).
    pub uid: u32,
    /// Group id (never 0).
    pub gid: u32,
}

impl Default for SandboxUser {
    /// Lambda's `sbx_user1051` is uid/gid 993.
    fn default() -> Self {
        SandboxUser { uid: 993, gid: 990 }
    }
}

/// One environment: what to run and within which limits.
#[derive(Debug)]
pub struct SandboxSpec {
    /// Unique id, `[A-Za-z0-9_-]{1,64}`: names the cgroup and scratch image.
    pub id: String,
    /// Program path *inside* the sandbox (e.g. `/var/task/bootstrap`).
    pub program: PathBuf,
    /// `argv[1..]`.
    pub args: Vec<String>,
    /// The complete environment of the workload (nothing is inherited).
    pub env: Vec<(String, String)>,
    /// Working directory inside the sandbox.
    pub cwd: PathBuf,
    /// Host directory mounted read-only at `/var/task`.
    pub code_dir: PathBuf,
    /// Host directory mounted read-only at `/var/runtime`.
    pub runtime_dir: Option<PathBuf>,
    /// A runtime's root file system: the system directories (`/usr`, `/etc`, ...) are
    /// bound read-only from it instead of from the host. `None`: the host's.
    pub system_root: Option<std::sync::Arc<std::path::Path>>,
    /// Host directories merged read-only at `/opt`, in order (last wins).
    pub layers: Vec<PathBuf>,
    /// Memory limit in MiB.
    pub memory_mb: u64,
    /// Size of `/tmp` in MiB.
    pub ephemeral_mb: u64,
    /// Maximum number of tasks in the environment.
    pub pids_max: u64,
    /// Maximum open files (Lambda: 1024).
    pub nofile: u64,
    /// Run without a CPU quota until [`crate::Sandbox::apply_cpu_quota`] is
    /// called (Lambda-style Init boost); the memory and pids limits apply
    /// from the start regardless.
    pub unrestricted_cpu_at_start: bool,
    /// Who the workload runs as.
    pub user: SandboxUser,
    /// Where the workload's stdout goes.
    pub stdout: OwnedFd,
    /// Where the workload's stderr goes.
    pub stderr: OwnedFd,
    /// If set, the host opens a TCP listener on `127.0.0.1:<port>` inside the
    /// environment (the Runtime API) and exports its address to the workload
    /// in the variable named by `service_addr_env`.
    pub service_port: Option<u16>,
    /// Name of the variable that receives the service address.
    pub service_addr_env: String,
    /// The runtime's zygote, when it has one: started in a pre-created shell before any
    /// function is known, it loads the interpreter and the runtime's imports and then
    /// waits for this spec's `cwd`, `args` and `env` (see `zygote.rs`). `program` and
    /// `args` are what it runs then, as the plain path would exec them. Its output is
    /// its own pipe (`PreparedSandbox::take_output`), not `stdout`/`stderr`.
    pub zygote: Option<std::sync::Arc<Zygote>>,
}

/// How to start a runtime's zygote: already isolated (the shell's namespaces, root,
/// cgroups, user and seccomp filter), with only function-independent inputs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Zygote {
    /// Program path inside the sandbox (the runtime's interpreter).
    pub program: PathBuf,
    /// `argv[1..]`.
    pub args: Vec<String>,
    /// Its environment until the function's arrives. The number of the descriptor it
    /// receives the function on is added as `NIMBUS_ZYGOTE_FD`.
    pub env: Vec<(String, String)>,
}

impl SandboxSpec {
    pub(crate) fn validate(&self) -> Result<(), crate::SandboxError> {
        let bad = |m: String| Err(crate::SandboxError::InvalidSpec(m));
        if self.id.is_empty()
            || self.id.len() > 64
            || !self
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return bad(format!("id {:?} must be [A-Za-z0-9_-]{{1,64}}", self.id));
        }
        if self.user.uid == 0 || self.user.gid == 0 {
            return bad("the workload must not run as root".into());
        }
        for p in [&self.program, &self.cwd, &self.code_dir] {
            if !p.is_absolute() {
                return bad(format!("{} must be absolute", p.display()));
            }
        }
        if let Some(root) = &self.system_root {
            if !root.is_absolute() || !root.join("usr").is_dir() {
                return bad(format!(
                    "runtime root {} is not a root file system (no usr/)",
                    root.display()
                ));
            }
        }
        if !self.code_dir.is_dir() {
            return bad(format!(
                "code dir {} is not a directory",
                self.code_dir.display()
            ));
        }
        if let Some(z) = &self.zygote {
            if !z.program.is_absolute() {
                return bad(format!("zygote {} must be absolute", z.program.display()));
            }
        }
        if self.memory_mb == 0 || self.ephemeral_mb == 0 || self.pids_max == 0 {
            return bad("memory, ephemeral storage and pids must be > 0".into());
        }
        Ok(())
    }
}
