//! CPU time by role, read from `/proc`: where an invocation's cycles go (this process as
//! the client, and each process it started, with its descendants: metadata nodes,
//! gateway, worker, `nimbus dev`, and the runtimes in their sandboxes).
//!
//! On a 2-core machine the load benchmarks saturate the CPU, so invocations per second is
//! roughly 2 cores divided by the CPU one invocation costs across all processes. This
//! splits that cost, which is the profile that explains a throughput ratio.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// Who a process works for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// This process: the load's clients (and the direct target's Runtime API).
    Client,
    Meta,
    Gateway,
    Worker,
    Dev,
    /// A function's runtime (the interpreter), sandboxed or not.
    Runtime,
    Other,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Meta => "meta",
            Role::Gateway => "gateway",
            Role::Worker => "worker",
            Role::Dev => "nimbus dev",
            Role::Runtime => "runtime",
            Role::Other => "other",
        }
    }

    pub const ALL: [Role; 7] = [
        Role::Client,
        Role::Meta,
        Role::Gateway,
        Role::Worker,
        Role::Dev,
        Role::Runtime,
        Role::Other,
    ];
}

/// CPU time (user + system) and run-queue wait per process of this process's tree, at
/// one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    by_pid: HashMap<u32, Usage>,
}

#[derive(Debug, Clone, Copy)]
struct Usage {
    role: Role,
    cpu: Duration,
    /// Time its threads spent runnable but waiting for a CPU (`schedstat`).
    waited: Duration,
}

struct Proc {
    ppid: u32,
    comm: String,
    cpu: Duration,
    argv: Vec<String>,
}

fn read_proc(pid: u32, tick: f64) -> Option<Proc> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_string();
    let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
    // After the command: state, ppid, ... utime is the 12th and stime the 13th.
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let argv = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|c| *c == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .unwrap_or_default();
    Some(Proc {
        ppid,
        comm,
        cpu: Duration::from_secs_f64((utime + stime) as f64 / tick),
        argv,
    })
}

/// The role of a process started by this one, from its command line.
fn child_role(argv: &[String]) -> Role {
    let program = argv
        .first()
        .and_then(|a| a.rsplit('/').next())
        .unwrap_or_default();
    if program.starts_with("python") || program.starts_with("node") {
        return Role::Runtime;
    }
    if program == "nimbus" {
        // The subcommand is the first argument that is not a flag or a flag's value;
        // the roles are distinctive enough to look for by name.
        for a in argv.iter().skip(1) {
            match a.as_str() {
                "meta" => return Role::Meta,
                "gateway" => return Role::Gateway,
                "worker" => return Role::Worker,
                "dev" => return Role::Dev,
                _ => {}
            }
        }
    }
    Role::Other
}

fn is_interpreter(comm: &str) -> bool {
    comm.starts_with("python") || comm.starts_with("node") || comm == "bootstrap"
}

impl Snapshot {
    /// Reads every process descended from this one.
    pub fn take() -> Snapshot {
        // The unit of these fields, USER_HZ, is 100 on Linux (std has no sysconf).
        let tick = 100.0;
        let me = std::process::id();
        let mut all = HashMap::new();
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for e in entries.flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                    continue;
                };
                if let Some(p) = read_proc(pid, tick) {
                    all.insert(pid, p);
                }
            }
        }
        let mut by_pid = HashMap::new();
        for (&pid, p) in &all {
            if pid == me {
                by_pid.insert(pid, usage(pid, Role::Client, p.cpu));
                continue;
            }
            // Walk up to the child of this process that the tree hangs from.
            let (mut cur, mut hops) = (pid, 0);
            let top = loop {
                let Some(q) = all.get(&cur) else { break None };
                if q.ppid == me {
                    break Some(cur);
                }
                if q.ppid <= 1 || hops > 64 {
                    break None;
                }
                cur = q.ppid;
                hops += 1;
            };
            let Some(top) = top else { continue };
            let role = if is_interpreter(&p.comm) {
                Role::Runtime
            } else {
                child_role(&all[&top].argv)
            };
            by_pid.insert(pid, usage(pid, role, p.cpu));
        }
        Snapshot { by_pid }
    }

    /// CPU spent by each role between `before` and this snapshot (processes that exited
    /// in between are not counted; those that started are counted from zero).
    pub fn since(&self, before: &Snapshot) -> BTreeMap<Role, Duration> {
        self.delta(before, |u| u.cpu)
    }

    /// Time each role's threads waited, runnable, for a CPU between `before` and this
    /// snapshot: on a saturated machine, where a request's tail latency goes.
    pub fn waited_since(&self, before: &Snapshot) -> BTreeMap<Role, Duration> {
        self.delta(before, |u| u.waited)
    }

    fn delta(
        &self,
        before: &Snapshot,
        of: impl Fn(&Usage) -> Duration,
    ) -> BTreeMap<Role, Duration> {
        let mut out = BTreeMap::new();
        for (pid, u) in &self.by_pid {
            let start = before.by_pid.get(pid).map_or(Duration::ZERO, &of);
            *out.entry(u.role).or_insert(Duration::ZERO) += of(u).saturating_sub(start);
        }
        out
    }
}

fn usage(pid: u32, role: Role, cpu: Duration) -> Usage {
    Usage {
        role,
        cpu,
        waited: run_queue_wait(pid),
    }
}

/// The run-queue wait of every thread of `pid`, from `/proc/PID/task/*/schedstat`
/// (its second field, nanoseconds); zero where the kernel keeps no schedstats.
fn run_queue_wait(pid: u32) -> Duration {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Duration::ZERO;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(Duration::from_nanos)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_come_from_the_command_line() {
        let argv = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<_>>();
        assert_eq!(
            child_role(&argv("/x/nimbus --insecure-plaintext gateway --listen a")),
            Role::Gateway
        );
        assert_eq!(child_role(&argv("/x/nimbus meta --id 1")), Role::Meta);
        assert_eq!(child_role(&argv("nimbus dev --data-dir d")), Role::Dev);
        assert_eq!(
            child_role(&argv("/usr/bin/python3 /tmp/bootstrap")),
            Role::Runtime
        );
        assert_eq!(child_role(&argv("/usr/bin/etcd --name a")), Role::Other);
    }

    #[test]
    // A plain test thread, no async runtime to block: it sleeps while the spinners run.
    #[allow(clippy::disallowed_methods)]
    fn run_queue_wait_is_read_for_every_thread() {
        if !std::path::Path::new("/proc/self/schedstat").exists() {
            eprintln!("this kernel keeps no schedstats; skipped");
            return;
        }
        // Two more busy threads than cores, alive until after the second snapshot: about
        // two threads' worth of that time is spent waiting for a CPU.
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let stop = std::sync::atomic::AtomicBool::new(false);
        let before = Snapshot::take();
        let waited = std::thread::scope(|s| {
            for _ in 0..cores + 2 {
                s.spawn(|| {
                    let mut x = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    }
                    std::hint::black_box(x);
                });
            }
            std::thread::sleep(Duration::from_millis(300));
            let waited = Snapshot::take().waited_since(&before);
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            waited
        });
        let client = waited.get(&Role::Client).copied().unwrap_or_default();
        assert!(client >= Duration::from_millis(50), "{waited:?}");
    }

    #[test]
    fn this_process_counts_as_the_client_and_its_cpu_grows() {
        let before = Snapshot::take();
        // Burn CPU here for several ticks.
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(60) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let after = Snapshot::take();
        let spent = after.since(&before);
        assert!(
            spent.get(&Role::Client).copied().unwrap_or_default() >= Duration::from_millis(20),
            "{spent:?}"
        );
    }
}
