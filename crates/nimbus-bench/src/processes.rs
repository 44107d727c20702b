//! The processes a benchmark starts, and the scratch directory they live in.
//!
//! Everything is torn down when the [`ProcessGroup`] drops: on success, on an error that
//! unwinds through `?`, on a panic, and when Ctrl-C drops the benchmark future. Children
//! are killed before the directory holding their data is removed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::Context;

/// One started process and where its output goes.
struct Started {
    /// Shown in errors: "nimbus meta 2", "etcd m3".
    name: String,
    child: Child,
    log: PathBuf,
}

/// Child processes plus the temporary directory their data directories are under.
pub struct ProcessGroup {
    started: Vec<Started>,
    /// Removed on drop, after every child has been killed and reaped.
    dir: tempfile::TempDir,
}

impl ProcessGroup {
    /// A new group with a fresh scratch directory under `parent`.
    pub fn new(parent: &Path, prefix: &str) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(parent)
            .with_context(|| format!("creating a scratch directory in {}", parent.display()))?;
        Ok(Self {
            started: Vec::new(),
            dir,
        })
    }

    /// The scratch directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts `cmd` with stdout and stderr appended to `<dir>/<file_stem>.log`.
    pub fn spawn(&mut self, name: &str, file_stem: &str, mut cmd: Command) -> anyhow::Result<()> {
        let log = self.dir.path().join(format!("{file_stem}.log"));
        let out =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone().context("duplicating a log file handle")?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {name} ({:?})", cmd.get_program()))?;
        self.started.push(Started {
            name: name.to_string(),
            child,
            log,
        });
        Ok(())
    }

    /// Fails, with the end of its log, if any process has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        for s in &mut self.started {
            if let Some(status) = s.child.try_wait().context("polling a child process")? {
                anyhow::bail!(
                    "{} exited ({status}); end of its log:\n{}",
                    s.name,
                    tail(&s.log, 20)
                );
            }
        }
        Ok(())
    }

    /// Kills the process started as `name` at once (SIGKILL): a crash, with no goodbye.
    /// It leaves the group (so it may be started again under the same name).
    pub fn kill(&mut self, name: &str) -> anyhow::Result<()> {
        let i = self
            .started
            .iter()
            .position(|s| s.name == name)
            .with_context(|| format!("no process {name}"))?;
        let mut s = self.started.remove(i);
        s.child.kill().context("killing a child process")?;
        s.child.wait().context("reaping a killed child process")?;
        Ok(())
    }

    /// Asks every process to stop (SIGTERM) so it can flush what it holds; true once all
    /// have exited. Those still running are killed on drop.
    pub fn terminate(&mut self) -> bool {
        let mut all = true;
        for s in &mut self.started {
            if matches!(s.child.try_wait(), Ok(Some(_))) {
                continue;
            }
            all = false;
            let _ = Command::new("kill").arg(s.child.id().to_string()).status();
        }
        all
    }

    /// Stops every process with SIGTERM and waits up to 20 s for them to exit (those
    /// still running are killed on drop).
    pub async fn stop(&mut self) {
        self.terminate();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !self.all_exited() && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Waits until something listens on each of `addrs`, failing if a process of this
    /// group (or `also`) exits first or `timeout` passes.
    pub async fn wait_listening(
        &mut self,
        addrs: &[&str],
        mut also: impl FnMut() -> anyhow::Result<()>,
        timeout: std::time::Duration,
    ) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + timeout;
        for addr in addrs {
            while tokio::net::TcpStream::connect(addr).await.is_err() {
                self.check_alive()?;
                also()?;
                anyhow::ensure!(
                    std::time::Instant::now() < deadline,
                    "the processes did not start listening\n{}",
                    self.log_tails(20)
                );
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// True when every process has exited.
    pub fn all_exited(&mut self) -> bool {
        self.started
            .iter_mut()
            .all(|s| matches!(s.child.try_wait(), Ok(Some(_))))
    }

    /// The last lines of every log, for an error message.
    pub fn log_tails(&self, lines: usize) -> String {
        self.started
            .iter()
            .map(|s| format!("--- {} ---\n{}", s.name, tail(&s.log, lines)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        for s in &mut self.started {
            // Errors here mean the child is already gone; nothing is left to stop.
            let _ = s.child.kill();
            let _ = s.child.wait();
        }
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Free loopback ports: bound, then released. Another process could take one in between,
/// which on a benchmark machine shows up as a start-up failure, not a wrong result.
pub fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .context("finding free loopback ports")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}
