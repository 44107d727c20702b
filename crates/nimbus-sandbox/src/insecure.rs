//! DEVELOPER ONLY: `insecure_no_isolation`. Runs the workload as a plain
//! child process — no namespaces, no cgroup, no seccomp, no private /tmp.
//! Sandbox paths (`/var/task`, `/var/runtime`, `/opt`) in the program,
//! arguments and working directory are rewritten to the host directories.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::unistd::Pid;

use crate::config::SandboxSpec;
use crate::error::SandboxError;
use crate::process::{pidfd_open, PreparedSandbox};

pub(crate) fn spawn(spec: SandboxSpec) -> Result<PreparedSandbox, SandboxError> {
    tracing::warn!(
        id = %spec.id,
        "!!! INSECURE: starting environment WITHOUT ANY ISOLATION (insecure_no_isolation) !!!"
    );
    let map = |p: &str| -> String {
        let rewrite = |prefix: &str, host: Option<&Path>| {
            let host = host?;
            let rest = p.strip_prefix(prefix)?;
            Some(format!("{}{}", host.display(), rest))
        };
        rewrite("/var/task", Some(&spec.code_dir))
            .or_else(|| rewrite("/var/runtime", spec.runtime_dir.as_deref()))
            .or_else(|| rewrite("/opt", spec.layers.last().map(PathBuf::as_path)))
            .unwrap_or_else(|| p.to_owned())
    };
    let listener = match spec.service_port {
        Some(_) => {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
            Some(TcpListener::bind(addr).map_err(|e| SandboxError::io("bind service port", e))?)
        }
        None => None,
    };
    let mut cmd = Command::new(map(&spec.program.to_string_lossy()));
    cmd.args(spec.args.iter().map(|a| map(a)))
        .env_clear()
        // LAMBDA_TASK_ROOT and friends must point at the host directories.
        .envs(spec.env.iter().map(|(k, v)| (k, map(v))))
        .current_dir(map(&spec.cwd.to_string_lossy()))
        .stdin(Stdio::null())
        .stdout(Stdio::from(spec.stdout))
        .stderr(Stdio::from(spec.stderr))
        .process_group(0);
    if let Some(l) = &listener {
        let addr = l
            .local_addr()
            .map_err(|e| SandboxError::io("local_addr", e))?;
        cmd.env(&spec.service_addr_env, addr.to_string());
    }
    let child = cmd
        .spawn()
        .map_err(|e| SandboxError::io("spawn (insecure)", e))?;
    let pid = child.id() as i32;
    // std's Child does not reap on drop; the Sandbox handle does.
    drop(child);
    let pidfd = pidfd_open(pid)?;
    Ok(PreparedSandbox::new_insecure(
        Pid::from_raw(pid),
        pidfd,
        listener,
    ))
}
