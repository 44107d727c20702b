//! The containers of the Compose cluster and the faults done to them, through the
//! `docker` and `docker-compose` command lines (what an operator would type).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("`{cmd}` failed: {stderr}")]
    Failed { cmd: String, stderr: String },
    #[error("cannot run `{cmd}`: {source}")]
    Spawn { cmd: String, source: std::io::Error },
}

/// One Compose project: its file(s), its name, and the address plan of the chaos override.
#[derive(Debug, Clone)]
pub struct Compose {
    pub project: String,
    pub files: Vec<PathBuf>,
    /// Environment for docker-compose (variables the files interpolate).
    pub env: Vec<(String, String)>,
}

/// Runs a command; its stdout on success.
pub async fn run(
    program: &str,
    args: &[&str],
    env: &[(String, String)],
) -> Result<String, DockerError> {
    let cmd = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|source| DockerError::Spawn {
            cmd: cmd.clone(),
            source,
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(DockerError::Failed {
            cmd,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

impl Compose {
    /// `docker-compose -p P -f F... ARGS`.
    pub async fn compose(&self, args: &[&str]) -> Result<String, DockerError> {
        let mut all: Vec<&str> = vec!["-p", &self.project];
        for f in &self.files {
            all.push("-f");
            all.push(f.to_str().unwrap_or_default());
        }
        all.extend_from_slice(args);
        run("docker-compose", &all, &self.env).await
    }

    /// The container name of a service (Compose v1 naming: PROJECT_SERVICE_1).
    pub fn container(&self, service: &str) -> String {
        format!("{}_{}_1", self.project, service)
    }

    pub async fn up(&self, services: &[&str]) -> Result<(), DockerError> {
        let mut args = vec!["up", "-d", "--no-recreate"];
        args.extend_from_slice(services);
        self.compose(&args).await.map(drop)
    }

    pub async fn down(&self) -> Result<(), DockerError> {
        self.compose(&["down", "-v", "--remove-orphans", "-t", "5"])
            .await
            .map(drop)
    }

    /// `docker kill -s SIGNAL` on the container (SIGKILL ends it like kill -9 on a host).
    pub async fn kill(&self, service: &str) -> Result<(), DockerError> {
        docker(&["kill", "-s", "KILL", &self.container(service)]).await
    }

    pub async fn start(&self, service: &str) -> Result<(), DockerError> {
        docker(&["start", &self.container(service)]).await
    }

    /// A clean stop (SIGTERM, then SIGKILL after the grace period), as in an upgrade.
    pub async fn stop(&self, service: &str) -> Result<(), DockerError> {
        docker(&["stop", "-t", "10", &self.container(service)]).await
    }

    /// SIGSTOP (`cont` false) or SIGCONT to the nimbus process inside the container.
    pub async fn signal_nimbus(&self, service: &str, cont: bool) -> Result<(), DockerError> {
        let sig = if cont { "-CONT" } else { "-STOP" };
        self.exec(service, &["pkill", sig, "-x", "nimbus"])
            .await
            .map(drop)
    }

    pub async fn exec(&self, service: &str, cmd: &[&str]) -> Result<String, DockerError> {
        let c = self.container(service);
        let mut args = vec!["exec", c.as_str()];
        args.extend_from_slice(cmd);
        run("docker", &args, &[]).await
    }

    /// Cuts the container off the network entirely (both directions).
    pub async fn disconnect(&self, network: &str, service: &str) -> Result<(), DockerError> {
        let net = format!("{}_{network}", self.project);
        docker(&["network", "disconnect", &net, &self.container(service)]).await
    }

    /// Reconnects with its fixed address (so peers' and clients' addresses stay valid).
    pub async fn connect(
        &self,
        network: &str,
        service: &str,
        ip: &str,
        alias: &str,
    ) -> Result<(), DockerError> {
        let net = format!("{}_{network}", self.project);
        docker(&[
            "network",
            "connect",
            "--ip",
            ip,
            "--alias",
            alias,
            &net,
            &self.container(service),
        ])
        .await
    }

    /// Drops packets arriving at `service` from `from_ip` (a one-way partition).
    pub async fn drop_from(
        &self,
        service: &str,
        from_ip: &str,
        on: bool,
    ) -> Result<(), DockerError> {
        let op = if on { "-I" } else { "-D" };
        self.exec(
            service,
            &["iptables", op, "INPUT", "-s", from_ip, "-j", "DROP"],
        )
        .await
        .map(drop)
    }

    /// Degrades the container's network: `tc netem` delay, jitter and loss where the
    /// kernel has netem; otherwise (some VM kernels lack sch_netem) a slow token-bucket
    /// link that queues packets (delay under load) plus random loss through iptables.
    /// Every interface but lo (a container reconnected after a partition gets a new
    /// interface name). Returns what was applied; `on` false heals either kind.
    pub async fn degrade_network(&self, service: &str, on: bool) -> Result<String, DockerError> {
        const LOSS: &str = "INPUT -m statistic --mode random --probability 0.05 -j DROP";
        const IFACES: &str = "for i in $(ls /sys/class/net); do [ $i = lo ] || echo $i; done";
        let script = if on {
            format!(
                "set -e; for i in $({IFACES}); do \
                   if tc qdisc replace dev $i root netem delay 50ms 30ms loss 5% 2>/dev/null; then \
                     echo \"$i: netem delay 50ms+-30ms loss 5%\"; \
                   else \
                     tc qdisc replace dev $i root tbf rate 512kbit burst 16kb latency 300ms; \
                     echo \"$i: tbf 512kbit (queueing delay) + iptables loss 5% (no netem in this kernel)\"; \
                     iptables -C {LOSS} 2>/dev/null || iptables -I {LOSS}; \
                   fi; done"
            )
        } else {
            format!(
                "for i in $({IFACES}); do tc qdisc del dev $i root 2>/dev/null; done; \
                 while iptables -D {LOSS} 2>/dev/null; do :; done; echo healed"
            )
        };
        self.exec(service, &["sh", "-c", &script])
            .await
            .map(|s| s.trim().replace('\n', "; "))
    }
}

async fn docker(args: &[&str]) -> Result<(), DockerError> {
    run("docker", args, &[]).await.map(drop)
}

/// Is a Docker Engine reachable, with docker-compose installed?
pub async fn available() -> bool {
    run("docker", &["info", "--format", "{{.ServerVersion}}"], &[])
        .await
        .is_ok()
        && run("docker-compose", &["version", "--short"], &[])
            .await
            .is_ok()
}

/// An ext4 image loop-mounted at `dir` (so that filling the disk fills this small file
/// system, not the host's). Idempotent.
pub async fn small_filesystem(dir: &Path, size_mb: u32) -> Result<(), DockerError> {
    let d = dir.display().to_string();
    if run("mountpoint", &["-q", &d], &[]).await.is_ok() {
        return Ok(());
    }
    let img = format!("{d}.img");
    let script = format!(
        "set -e; mkdir -p {d}; rm -f {img}; truncate -s {size_mb}M {img}; \
         mkfs.ext4 -q -F {img}; mount -o loop {img} {d}"
    );
    run("sh", &["-c", &script], &[]).await.map(drop)
}

/// Fills the file system at `dir` (on the host) to the last byte, or frees it again.
pub async fn fill_disk(dir: &Path, on: bool) -> Result<(), DockerError> {
    let file = dir.join("chaos-fill").display().to_string();
    if on {
        // dd stops with ENOSPC, which is the point; its exit status is ignored.
        let script = format!(
            "dd if=/dev/zero of={file} bs=64k 2>/dev/null; sync; df --output=avail -k {} | tail -1",
            dir.display()
        );
        let avail = run("sh", &["-c", &script], &[]).await?;
        eprintln!("  {} filled: {} KiB left", dir.display(), avail.trim());
        Ok(())
    } else {
        let _ = std::fs::remove_file(&file);
        Ok(())
    }
}

/// Unmounts and removes a file system made by [`small_filesystem`].
pub async fn remove_small_filesystem(dir: &Path) {
    let d = dir.display().to_string();
    let _ = run("umount", &[&d], &[]).await;
    let _ = std::fs::remove_file(format!("{d}.img"));
    let _ = std::fs::remove_dir(dir);
}
