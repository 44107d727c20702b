//! Resource control: one cgroup per execution environment.
//!
//! * memory limit = the function's memory size (no swap);
//! * CPU quota proportional to memory, as in Lambda: 1,769 MB = 1 vCPU;
//! * a `pids` limit so a fork bomb stays inside its environment;
//! * the memory high-water mark feeds REPORT's `Max Memory Used`.
//!
//! cgroup v2 (one unified hierarchy) is preferred; hosts that still run the
//! v1 layout (one hierarchy per controller, as this project's CI machine
//! does) get the same limits through the v1 files.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// CPU period written to `cpu.max` / `cpu.cfs_period_us`, in microseconds.
const CPU_PERIOD_US: u64 = 100_000;
/// Lambda gives one full vCPU at this memory size; CPU scales linearly with memory.
pub const MB_PER_VCPU: u64 = 1769;
/// The CPU weight of one runnable thread outside any group: v1 `cpu.shares`' default.
const V1_SHARES_PER_CPU: u64 = 1024;
/// The same for v2 `cpu.weight` (its default), and the most it takes.
const V2_WEIGHT_PER_CPU: u64 = 100;
const V2_WEIGHT_MAX: u64 = 10_000;

/// Errors creating, limiting or reading a cgroup.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// No usable cgroup hierarchy was found on this host.
    #[error("no usable cgroup hierarchy: {0}")]
    Unavailable(String),
    /// Writing or reading a cgroup file failed.
    #[error("cgroup file {path}: {source}")]
    File {
        /// The cgroup file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Where the cgroup controllers live on this host.
#[derive(Debug, Clone)]
pub enum CgroupLayout {
    /// Unified hierarchy; the path is the parent cgroup of all environments.
    V2 {
        /// e.g. `/sys/fs/cgroup/nimbus`.
        parent: PathBuf,
    },
    /// One hierarchy per controller; each path is the parent cgroup in it.
    V1 {
        /// e.g. `/sys/fs/cgroup/memory/nimbus`.
        memory: PathBuf,
        /// e.g. `/sys/fs/cgroup/cpu/nimbus` (may be the joint `cpu,cpuacct`).
        cpu: PathBuf,
        /// e.g. `/sys/fs/cgroup/pids/nimbus`.
        pids: PathBuf,
    },
}

impl CgroupLayout {
    /// Finds the hierarchy and creates the `parent_name` cgroup under it.
    pub fn detect(parent_name: &str) -> Result<Self, CgroupError> {
        let root = Path::new("/sys/fs/cgroup");
        if root.join("cgroup.controllers").exists() {
            let parent = root.join(parent_name);
            mkdir(&parent)?;
            // Delegate the controllers we need to the parent and below it.
            write(&root.join("cgroup.subtree_control"), "+memory +cpu +pids")?;
            write(&parent.join("cgroup.subtree_control"), "+memory +cpu +pids")?;
            return Ok(CgroupLayout::V2 { parent });
        }
        let mounts =
            fs::read_to_string("/proc/self/mounts").map_err(|source| CgroupError::File {
                path: "/proc/self/mounts".into(),
                source,
            })?;
        let find = |controller: &str| -> Option<PathBuf> {
            mounts.lines().find_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                (f.len() >= 4 && f[2] == "cgroup" && f[3].split(',').any(|o| o == controller))
                    .then(|| PathBuf::from(f[1]).join(parent_name))
            })
        };
        match (find("memory"), find("cpu"), find("pids")) {
            (Some(memory), Some(cpu), Some(pids)) => {
                for dir in [&memory, &cpu, &pids] {
                    mkdir(dir)?;
                }
                Ok(CgroupLayout::V1 { memory, cpu, pids })
            }
            _ => Err(CgroupError::Unavailable(
                "neither cgroup v2 nor the v1 memory, cpu and pids controllers are mounted".into(),
            )),
        }
    }
}

impl CgroupLayout {
    /// Caps the processes of every environment together (`pids.max` of the parent).
    pub fn set_parent_pids_max(&self, max: u64) -> Result<(), CgroupError> {
        let parent = match self {
            CgroupLayout::V2 { parent } => parent,
            CgroupLayout::V1 { pids, .. } => pids,
        };
        write(&parent.join("pids.max"), &max.to_string())
    }

    /// Gives all environments together the CPU weight of `cpus` runnable threads (the
    /// parent's `cpu.shares` / `cpu.weight`). The scheduler weighs a cgroup as one
    /// entity against the threads beside it: left at its default, the parent of every
    /// environment weighed as much as *one* of the worker's threads, so on a busy host
    /// the runtimes waited in the run queue behind the worker and its callers, which the
    /// same runtimes started as plain processes never did (docs/benchmarks.md, "Run-queue
    /// waits, the environments' CPU weight"). Each environment's own share is still capped
    /// by its quota.
    pub fn set_parent_cpu_weight(&self, cpus: u64) -> Result<(), CgroupError> {
        let cpus = cpus.max(1);
        match self {
            CgroupLayout::V2 { parent } => write(
                &parent.join("cpu.weight"),
                &(V2_WEIGHT_PER_CPU * cpus).min(V2_WEIGHT_MAX).to_string(),
            ),
            CgroupLayout::V1 { cpu, .. } => write(
                &cpu.join("cpu.shares"),
                &(V1_SHARES_PER_CPU * cpus).to_string(),
            ),
        }
    }

    /// Kills every process left in environment cgroups under the parent (by
    /// a previous worker that crashed) and removes those cgroups. Returns how
    /// many environments were reclaimed. Only call it when this process owns
    /// the parent cgroup exclusively.
    pub fn reclaim_orphans(&self) -> usize {
        let parents: Vec<&Path> = match self {
            CgroupLayout::V2 { parent } => vec![parent],
            CgroupLayout::V1 { memory, cpu, pids } => vec![memory, cpu, pids],
        };
        let mut reclaimed = std::collections::BTreeSet::new();
        for parent in parents {
            let Ok(entries) = fs::read_dir(parent) else {
                continue;
            };
            for entry in entries.flatten() {
                let dir = entry.path();
                if !dir.is_dir() {
                    continue;
                }
                for _ in 0..100 {
                    let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                    let pids: Vec<i32> = procs
                        .lines()
                        .filter_map(|l| l.trim().parse().ok())
                        .collect();
                    if pids.is_empty() {
                        break;
                    }
                    for pid in pids {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                    #[allow(clippy::disallowed_methods)] // start-up, blocking context
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                if fs::remove_dir(&dir).is_ok() {
                    reclaimed.insert(entry.file_name());
                }
            }
        }
        reclaimed.len()
    }
}

/// Limits applied to one environment's cgroup.
#[derive(Debug, Clone, Copy)]
pub struct CgroupLimits {
    /// Hard memory limit in MiB (the function's MemorySize).
    pub memory_mb: u64,
    /// Maximum number of tasks (processes and threads).
    pub pids_max: u64,
    /// Start without a CPU quota (Init gets the whole machine, as Lambda's
    /// Init does); [`Cgroup::apply_cpu_quota`] then applies the proportional one.
    pub unrestricted_cpu_at_start: bool,
}

impl CgroupLimits {
    /// CPU quota per [`CPU_PERIOD_US`]: proportional to memory, at least 1 %.
    pub fn cpu_quota_us(&self) -> u64 {
        (CPU_PERIOD_US * self.memory_mb / MB_PER_VCPU).max(CPU_PERIOD_US / 100)
    }
}

/// One environment's cgroup (v2) or cgroups (v1). Clone only names the same
/// directories again (a [`Teardown`](crate::Teardown) works on its own copy); the
/// sandbox's resources alone remove them.
#[derive(Debug, Clone)]
pub struct Cgroup {
    layout: CgroupLayoutKind,
    /// The memory high-water mark's file, opened once and re-read in place: every
    /// invocation's REPORT reads it, and opening it by path each time (a path walk
    /// through the cgroup file system, and a close) was a few percent of an
    /// invocation's CPU (docs/benchmarks.md, "Where an invocation's CPU goes").
    /// On cgroup v2 a reset through this same descriptor also scopes the peak to it.
    peak: Arc<OnceLock<Option<fs::File>>>,
}

#[derive(Debug, Clone)]
enum CgroupLayoutKind {
    V2(PathBuf),
    V1 {
        memory: PathBuf,
        cpu: PathBuf,
        pids: PathBuf,
    },
}

impl Cgroup {
    /// Creates the cgroup `id` under `layout` and applies `limits`.
    pub(crate) fn create(
        layout: &CgroupLayout,
        id: &str,
        limits: CgroupLimits,
    ) -> Result<Self, CgroupError> {
        let cgroup = Self::create_empty(layout, id)?;
        if let Err(e) = cgroup.apply_limits(limits) {
            cgroup.remove();
            return Err(e);
        }
        Ok(cgroup)
    }

    /// Creates the cgroup `id` under `layout` without limits (a pre-created
    /// shell's; its function's limits are written by [`apply_limits`](Self::apply_limits)
    /// before the function runs).
    pub(crate) fn create_empty(layout: &CgroupLayout, id: &str) -> Result<Self, CgroupError> {
        let cgroup = match layout {
            CgroupLayout::V2 { parent } => {
                let dir = parent.join(id);
                mkdir(&dir)?;
                Cgroup {
                    layout: CgroupLayoutKind::V2(dir),
                    peak: Arc::default(),
                }
            }
            CgroupLayout::V1 { memory, cpu, pids } => {
                let (memory, cpu, pids) = (memory.join(id), cpu.join(id), pids.join(id));
                for d in [&memory, &cpu, &pids] {
                    mkdir(d)?;
                }
                Cgroup {
                    layout: CgroupLayoutKind::V1 { memory, cpu, pids },
                    peak: Arc::default(),
                }
            }
        };
        if let CgroupLayoutKind::V1 { cpu, .. } = &cgroup.layout {
            if let Err(e) = write(&cpu.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string()) {
                cgroup.remove();
                return Err(e);
            }
        }
        Ok(cgroup)
    }

    /// Writes the memory (no swap), pids and — unless Init starts
    /// unrestricted — CPU limits. Limits may be written while a process is
    /// already inside: that is how a pre-created shell gets its function's.
    pub(crate) fn apply_limits(&self, limits: CgroupLimits) -> Result<(), CgroupError> {
        let bytes = (limits.memory_mb * 1024 * 1024).to_string();
        match &self.layout {
            CgroupLayoutKind::V2(dir) => {
                write(&dir.join("memory.max"), &bytes)?;
                // Best effort: absent when the host has no swap accounting.
                let _ = write(&dir.join("memory.swap.max"), "0");
                write(&dir.join("pids.max"), &limits.pids_max.to_string())?;
            }
            CgroupLayoutKind::V1 { memory, pids, .. } => {
                // memory.limit <= memsw.limit must hold after each write: from
                // "unlimited" (a fresh cgroup), limit first, then memsw.
                write(&memory.join("memory.limit_in_bytes"), &bytes)?;
                let memsw = memory.join("memory.memsw.limit_in_bytes");
                if memsw.exists() {
                    write(&memsw, &bytes)?;
                }
                write(&pids.join("pids.max"), &limits.pids_max.to_string())?;
            }
        }
        if !limits.unrestricted_cpu_at_start {
            self.apply_cpu_quota(limits)?;
        }
        Ok(())
    }

    /// Writes only the pids limit.
    pub(crate) fn set_pids_max(&self, pids_max: u64) -> Result<(), CgroupError> {
        let dir = match &self.layout {
            CgroupLayoutKind::V2(dir) => dir,
            CgroupLayoutKind::V1 { pids, .. } => pids,
        };
        write(&dir.join("pids.max"), &pids_max.to_string())
    }

    /// Starts the memory high-water mark afresh (best effort: v1's
    /// `max_usage_in_bytes`, v2's `memory.peak` on kernels that allow it),
    /// so a shell's own set-up is not reported as the function's.
    pub(crate) fn reset_peak(&self) {
        match self.peak_file() {
            Some(mut f) => {
                let _ = f.write_all(b"0");
            }
            None => {
                let _ = write(&self.peak_path(), "0");
            }
        }
    }

    fn peak_path(&self) -> PathBuf {
        match &self.layout {
            CgroupLayoutKind::V2(dir) => dir.join("memory.peak"),
            CgroupLayoutKind::V1 { memory, .. } => memory.join("memory.max_usage_in_bytes"),
        }
    }

    /// The high-water mark's file, open for reading and (where the kernel lets it be
    /// reset) writing; `None` if it cannot be opened.
    fn peak_file(&self) -> Option<&fs::File> {
        self.peak
            .get_or_init(|| {
                let path = self.peak_path();
                fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .or_else(|_| fs::File::open(&path))
                    .ok()
            })
            .as_ref()
    }

    /// Whether process `pid` is in this cgroup (in every hierarchy, on v1).
    pub(crate) fn contains(&self, pid: i32) -> bool {
        let pid = pid.to_string();
        self.dirs().iter().all(|dir| {
            fs::read_to_string(dir.join("cgroup.procs"))
                .is_ok_and(|procs| procs.lines().any(|l| l.trim() == pid))
        })
    }

    /// Memory in use right now, in bytes (`memory.current` / `memory.usage_in_bytes`).
    pub fn memory_current_bytes(&self) -> Result<u64, CgroupError> {
        let path = match &self.layout {
            CgroupLayoutKind::V2(dir) => dir.join("memory.current"),
            CgroupLayoutKind::V1 { memory, .. } => memory.join("memory.usage_in_bytes"),
        };
        Ok(read(&path)?.trim().parse().unwrap_or(0))
    }

    /// Applies the CPU quota proportional to memory.
    pub fn apply_cpu_quota(&self, limits: CgroupLimits) -> Result<(), CgroupError> {
        match &self.layout {
            CgroupLayoutKind::V2(dir) => write(
                &dir.join("cpu.max"),
                &format!("{} {CPU_PERIOD_US}", limits.cpu_quota_us()),
            ),
            CgroupLayoutKind::V1 { cpu, .. } => write(
                &cpu.join("cpu.cfs_quota_us"),
                &limits.cpu_quota_us().to_string(),
            ),
        }
    }

    /// Moves `pid` (the paused child) into the cgroup(s).
    pub(crate) fn attach(&self, pid: i32) -> Result<(), CgroupError> {
        let pid = pid.to_string();
        for dir in self.dirs() {
            write(&dir.join("cgroup.procs"), &pid)?;
        }
        Ok(())
    }

    /// The environment's memory high-water mark in bytes (`memory.peak` /
    /// `memory.max_usage_in_bytes`).
    pub fn memory_peak_bytes(&self) -> Result<u64, CgroupError> {
        let mut buf = [0u8; 32];
        let text = match self.peak_file() {
            // A cgroup file is produced afresh by each read from offset 0.
            Some(f) => {
                let n = f.read_at(&mut buf, 0).map_err(|source| CgroupError::File {
                    path: self.peak_path(),
                    source,
                })?;
                String::from_utf8_lossy(&buf[..n])
            }
            None => read(&self.peak_path())?.into(),
        };
        Ok(text.trim().parse().unwrap_or(0))
    }

    /// How many times the kernel's OOM killer fired inside this environment.
    pub fn oom_kills(&self) -> Result<u64, CgroupError> {
        let path = match &self.layout {
            CgroupLayoutKind::V2(dir) => dir.join("memory.events"),
            CgroupLayoutKind::V1 { memory, .. } => memory.join("memory.oom_control"),
        };
        let text = read(&path)?;
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0))
    }

    /// Kills every process in the cgroup and its descendants at once
    /// (`cgroup.kill`, v2 on Linux 5.14+): the kernel signals them all and
    /// fails the forks that race with it. `Ok(false)`: not available here (the
    /// v1 layout, an older kernel, or the cgroup is already gone).
    pub(crate) fn kill_all(&self) -> Result<bool, CgroupError> {
        let CgroupLayoutKind::V2(dir) = &self.layout else {
            return Ok(false);
        };
        write_existing(&dir.join("cgroup.kill"), "1")
    }

    /// Freezes the cgroup (`cgroup.freeze`, v2): its processes stop running,
    /// so none of them can fork, and SIGKILL still ends them (v2's freezer
    /// lets fatal signals through). `Ok(false)`: no freezer here (the v1
    /// layout has no freezer hierarchy, or the cgroup is gone).
    pub(crate) fn freeze(&self) -> Result<bool, CgroupError> {
        let CgroupLayoutKind::V2(dir) = &self.layout else {
            return Ok(false);
        };
        write_existing(&dir.join("cgroup.freeze"), "1")
    }

    /// Removes the CPU quota. For a dying environment only: its processes run
    /// their exits in their own time slices, so under the function's quota a
    /// thousand of them take tens of seconds to die. `Ok(false)`: the cgroup
    /// is gone.
    pub(crate) fn lift_cpu_quota(&self) -> Result<bool, CgroupError> {
        match &self.layout {
            CgroupLayoutKind::V2(dir) => write_existing(&dir.join("cpu.max"), "max"),
            CgroupLayoutKind::V1 { cpu, .. } => write_existing(&cpu.join("cpu.cfs_quota_us"), "-1"),
        }
    }

    /// The processes in the cgroup right now (on v1, in any of its
    /// hierarchies), as host pids. A cgroup that is gone has none. A pid this
    /// process cannot see reads as 0 and is left out: `kill(0)` would signal
    /// the worker's own process group.
    pub(crate) fn procs(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        for dir in self.dirs() {
            if let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) {
                pids.extend(
                    text.lines()
                        .filter_map(|l| l.trim().parse::<i32>().ok())
                        .filter(|&pid| pid > 0),
                );
            }
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Whether any process is left in the cgroup: v2's `populated` in
    /// `cgroup.events` (descendants included), v1's `cgroup.procs`. A cgroup
    /// that is gone is empty.
    pub(crate) fn populated(&self) -> bool {
        match &self.layout {
            CgroupLayoutKind::V2(dir) => fs::read_to_string(dir.join("cgroup.events"))
                .is_ok_and(|events| events.lines().any(|l| l.trim() == "populated 1")),
            CgroupLayoutKind::V1 { .. } => !self.procs().is_empty(),
        }
    }

    /// Removes the cgroup(s). Only succeeds once every task has exited, which
    /// is the case after the namespace's init has been reaped.
    pub(crate) fn remove(&self) {
        for dir in self.dirs() {
            for attempt in 0..50 {
                match fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(e) if attempt == 49 => {
                        tracing::warn!(cgroup = %dir.display(), error = %e, "cannot remove cgroup");
                    }
                    Err(_) => {
                        #[allow(clippy::disallowed_methods)] // cleanup runs on a blocking thread
                        std::thread::sleep(std::time::Duration::from_millis(2));
                    }
                }
            }
        }
    }

    fn dirs(&self) -> Vec<&Path> {
        match &self.layout {
            CgroupLayoutKind::V2(dir) => vec![dir.as_path()],
            CgroupLayoutKind::V1 { memory, cpu, pids } => {
                vec![memory.as_path(), cpu.as_path(), pids.as_path()]
            }
        }
    }
}

fn mkdir(dir: &Path) -> Result<(), CgroupError> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(CgroupError::File {
            path: dir.to_owned(),
            source,
        }),
    }
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(|source| CgroupError::File {
        path: path.to_owned(),
        source,
    })
}

/// Writes a control file that may be missing (a newer kernel's feature, or a
/// cgroup already removed): `Ok(false)` then. Opened without `O_CREAT`, so a
/// missing file is `NotFound` (cgroupfs refuses to create one with `EACCES`,
/// which would read as a real failure).
fn write_existing(path: &Path, value: &str) -> Result<bool, CgroupError> {
    let written = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut file| std::io::Write::write_all(&mut file, value.as_bytes()));
    match written {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(CgroupError::File {
            path: path.to_owned(),
            source,
        }),
    }
}

fn read(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|source| CgroupError::File {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_proportional_to_memory() {
        let l = |memory_mb| CgroupLimits {
            memory_mb,
            pids_max: 1,
            unrestricted_cpu_at_start: false,
        };
        assert_eq!(l(1769).cpu_quota_us(), 100_000);
        assert_eq!(l(3538).cpu_quota_us(), 200_000);
        assert_eq!(l(128).cpu_quota_us(), 7_235);
        assert_eq!(l(1).cpu_quota_us(), 1_000);
    }
}
