//! The sandbox's contract: each isolation property, tested by trying to break it.
mod common;
use common::*;
use nimbus_sandbox::{ExitStatus, Jail, JailConfig};

#[test]
fn t10_runs_as_unprivileged_user_in_own_namespaces() {
    let jail = jail();
    let (status, out) = run_sh(
        &jail,
        "id -u; id -g; hostname; echo $$; cat /var/task/hello.txt",
        |_| {},
    );
    assert_eq!(status, ExitStatus::Exited(0), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        ["993", "990", "sandbox", "1", "hello from code"],
        "{out}"
    );
}

#[test]
fn t11_sees_only_its_own_processes() {
    let jail = jail();
    // Host processes (e.g. this test runner) must be invisible.
    let (status, out) = run_sh(
        &jail,
        "ls /proc | grep -E '^[0-9]+$' | wc -l; test -e /proc/self/status && echo ok",
        |_| {},
    );
    assert_eq!(status, ExitStatus::Exited(0), "{out}");
    let n: u32 = out.lines().next().unwrap().trim().parse().unwrap();
    assert!(n <= 4, "sandbox sees {n} processes: {out}");
    let me = std::process::id();
    let (_, out) = run_sh(
        &jail,
        &format!("cat /proc/{me}/cmdline 2>&1 || echo hidden"),
        |_| {},
    );
    assert!(out.contains("hidden"), "{out}");
}

#[test]
fn t12_host_secrets_and_private_dirs_are_absent() {
    let jail = jail();
    let script = "for p in /etc/shadow /etc/gshadow; do printf '%s:' $p; wc -c < $p; done; \
                  for d in /root /home /work /var/lib /sys; do test -e $d && echo present $d; done; \
                  test -x /usr/bin/python3 && echo python-ok; cat /etc/passwd | head -1";
    let (status, out) = run_sh(&jail, script, |_| {});
    assert_eq!(status, ExitStatus::Exited(0), "{out}");
    assert!(out.contains("/etc/shadow:0"), "{out}");
    assert!(out.contains("/etc/gshadow:0"), "{out}");
    assert!(!out.contains("present"), "{out}");
    assert!(out.contains("python-ok"), "{out}");
    assert!(out.contains("root:x:0:0"), "{out}");
}

#[test]
fn t13_everything_but_tmp_is_read_only() {
    let jail = jail();
    let script = "for p in / /usr /etc /var/task /opt /var/runtime; do touch $p/x 2>/dev/null && echo WROTE $p; done; \
                  echo data > /tmp/x && cat /tmp/x; stat -c %u /tmp";
    let (status, out) = run_sh(&jail, script, |_| {});
    assert_eq!(status, ExitStatus::Exited(0), "{out}");
    assert!(!out.contains("WROTE"), "{out}");
    assert!(out.contains("data\n993"), "{out}");
}

#[test]
fn t14_tmp_is_exactly_the_configured_size_and_fills_up() {
    let jail = jail();
    let script = "df -k /tmp | tail -1 | awk '{print $2}'; \
                  dd if=/dev/zero of=/tmp/fill bs=1M count=100 2>&1 | grep -o 'No space left on device'";
    let (_, out) = run_sh(&jail, script, |s| s.ephemeral_mb = 32);
    let mut lines = out.lines();
    let total_kb: u64 = lines.next().unwrap().trim().parse().unwrap();
    // ext4 metadata takes a little; the file system is the configured size.
    assert!(
        (29 * 1024..=32 * 1024).contains(&total_kb),
        "df says {total_kb} KiB: {out}"
    );
    assert_eq!(lines.next(), Some("No space left on device"), "{out}");
}

#[test]
fn t15_environments_do_not_share_tmp() {
    let jail = jail();
    let (_, a) = run_sh(&jail, "echo secret > /tmp/mine; ls /tmp", |_| {});
    assert!(a.contains("mine"), "{a}");
    let (_, b) = run_sh(
        &jail,
        "ls -A /tmp; cat /tmp/mine 2>&1 || echo absent",
        |_| {},
    );
    assert!(b.contains("absent") && !b.contains("secret"), "{b}");
}

#[test]
fn t16_denied_syscalls_fail_with_eperm() {
    let jail = jail();
    // python's ctypes calls the raw syscalls; unshare(1) and mount(8) exercise more.
    let script = r#"/usr/bin/python3 -c '
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
for name, nr, args in [("ptrace", 101, (16, 1, 0, 0)), ("mount", 165, (b"none", b"/tmp", b"tmpfs", 0, 0)),
                       ("umount2", 166, (b"/tmp", 2)), ("reboot", 169, (0, 0, 0, 0)), ("bpf", 321, (0, 0, 0)),
                       ("kexec_load", 246, (0, 0, 0, 0)), ("init_module", 175, (0, 0, b"")), ("swapon", 167, (b"/tmp/x", 0)),
                       ("unshare", 272, (0x10000000,)), ("io_uring_setup", 425, (1, 0))]:
    r = libc.syscall(nr, *args)
    print(name, r, errno.errorcode.get(ctypes.get_errno()))
'"#;
    let (status, out) = run_sh(&jail, script, |_| {});
    assert_eq!(status, ExitStatus::Exited(0), "{out}");
    for name in [
        "ptrace",
        "mount",
        "umount2",
        "reboot",
        "bpf",
        "kexec_load",
        "init_module",
        "swapon",
        "unshare",
        "io_uring_setup",
    ] {
        assert!(
            out.contains(&format!("{name} -1 EPERM")),
            "{name} not denied: {out}"
        );
    }
}

#[test]
fn t17_memory_limit_kills_the_environment() {
    let jail = jail();
    let script =
        "exec /usr/bin/python3 -c 'x = bytearray(300 * 1024 * 1024); print(\"allocated\")'";
    let code = code_dir(&[]);
    let (r, w) = nix::unistd::pipe().unwrap();
    let mut s = spec(&unique_id("oom"), code.path(), script, w);
    s.memory_mb = 128;
    let mut sandbox = jail.prepare(s).unwrap().start().unwrap();
    let mut out = String::new();
    use std::io::Read;
    std::fs::File::from(r).read_to_string(&mut out).unwrap();
    let status = sandbox.wait().unwrap();
    assert!(!out.contains("allocated"), "{out}");
    assert_eq!(status.to_string(), "signal: killed", "{out}");
}

#[test]
fn t18_fork_bomb_is_bounded_by_pids_max() {
    let jail = jail();
    let (_, out) = run_sh(&jail, FORK_BOMB, |s| s.pids_max = 32);
    let n = processes_seen(&out);
    assert!(n > 0 && n <= 32, "{n} processes: {out}");
}

#[test]
fn t18b_all_environments_together_are_bounded_by_the_parent_pids_max() {
    // A parent cgroup of its own, capped far below the environment's own limit: the
    // parent's cap is what stops this fork bomb.
    let parent = format!("nimbus-test-total-{}", std::process::id());
    let jail = Jail::new(JailConfig {
        state_dir: state_dir(),
        cgroup_parent: parent.clone(),
        pids_max_total: Some(24),
        ..JailConfig::default()
    })
    .expect("jail");
    let cap = ["/sys/fs/cgroup", "/sys/fs/cgroup/pids"]
        .iter()
        .find_map(|root| std::fs::read_to_string(format!("{root}/{parent}/pids.max")).ok())
        .expect("the parent cgroup's pids.max");
    assert_eq!(cap.trim(), "24");
    let (_, out) = run_sh(&jail, FORK_BOMB, |s| s.pids_max = 1000);
    let n = processes_seen(&out);
    assert!(n > 0 && n <= 24, "{n} processes: {out}");
}

#[test]
fn t18c_all_environments_together_weigh_as_many_threads_as_there_are_cpus() {
    let parent = format!("nimbus-test-weight-{}", std::process::id());
    let _jail = Jail::new(JailConfig {
        state_dir: state_dir(),
        cgroup_parent: parent.clone(),
        ..JailConfig::default()
    })
    .expect("jail");
    let cpus = std::thread::available_parallelism().unwrap().get() as u64;
    // v1: cpu.shares, 1024 a thread; v2: cpu.weight, 100 a thread (at most 10000).
    let (weight, per_cpu, max) = [
        ("/sys/fs/cgroup/cpu", "cpu.shares", 1024, u64::MAX),
        ("/sys/fs/cgroup", "cpu.weight", 100, 10_000),
    ]
    .iter()
    .find_map(|(root, file, per_cpu, max)| {
        let w = std::fs::read_to_string(format!("{root}/{parent}/{file}")).ok()?;
        Some((w.trim().parse::<u64>().unwrap(), *per_cpu, *max))
    })
    .expect("the parent cgroup's CPU weight");
    assert_eq!(weight, (per_cpu * cpus).min(max));
    assert!(
        weight > per_cpu || cpus == 1,
        "not the default of one thread: {weight}"
    );
}

#[test]
fn t19_failed_step_never_runs_the_workload() {
    let jail = jail();
    let code = code_dir(&[]);
    let (_r, w) = nix::unistd::pipe().unwrap();
    let mut s = spec(&unique_id("fail"), code.path(), "true", w);
    s.program = "/var/task/does-not-exist".into();
    let err = jail.prepare(s).unwrap().start().unwrap_err();
    assert!(err.to_string().contains("Exec"), "{err}");
    let mut s = spec(
        &unique_id("fail"),
        code.path(),
        "true",
        nix::unistd::pipe().unwrap().1,
    );
    s.layers = vec!["/nonexistent-layer".into()];
    let err = jail.prepare(s).and_then(|p| p.start()).unwrap_err();
    assert!(err.to_string().contains("rootfs"), "{err}");
}

#[test]
fn t20_spawning_from_a_busy_multithreaded_process_never_deadlocks() {
    // Regression: after clone(2) the child must not touch glibc state that
    // other (non-existent) threads may hold: malloc locks, setxid broadcast.
    let jail = std::sync::Arc::new(jail());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let v: Vec<Vec<u8>> = (0..64).map(|i| vec![0u8; 1 + i * 97]).collect();
                    std::hint::black_box(v);
                }
            })
        })
        .collect();
    let (tx, rx) = std::sync::mpsc::channel();
    let spawners: Vec<_> = (0..3)
        .map(|_| {
            let jail = jail.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                for _ in 0..5 {
                    let (status, out) = run_sh(&jail, "id -u", |_| {});
                    tx.send((status, out)).unwrap();
                }
            })
        })
        .collect();
    for _ in 0..15 {
        let (status, out) = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("a sandbox start hung");
        assert_eq!(status, ExitStatus::Exited(0), "{out}");
        assert_eq!(out.trim(), "993");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in spawners.into_iter().chain(churn) {
        t.join().unwrap();
    }
}

#[test]
fn t21_orphans_of_a_crashed_worker_are_reclaimed() {
    // A "previous worker" leaves a running environment behind (leaked handle).
    let state = state_dir().join("orphans");
    let config = || JailConfig {
        state_dir: state.clone(),
        cgroup_parent: format!("nimbus-test-orphans-{}", std::process::id()),
        ..JailConfig::default()
    };
    let old = Jail::new(config()).unwrap();
    let code = code_dir(&[]);
    let (_r, w) = nix::unistd::pipe().unwrap();
    let sandbox = old
        .prepare(spec(&unique_id("orphan"), code.path(), "sleep 60", w))
        .unwrap()
        .start()
        .unwrap();
    let pid = sandbox.pid();
    std::mem::forget(sandbox);
    let fresh = Jail::new(config()).unwrap();
    assert_eq!(fresh.reclaim_orphans(), 1);
    // Killed: only a zombie (our child) or nothing is left.
    let state_line = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("State:"))
        .unwrap_or("State: gone")
        .to_owned();
    assert!(
        state_line.contains('Z') || state_line.contains("gone"),
        "{state_line}"
    );
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    // Remove the test's parent cgroups.
    let name = format!("nimbus-test-orphans-{}", std::process::id());
    let _ = std::fs::remove_dir(std::path::Path::new("/sys/fs/cgroup").join(&name));
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let _ = std::fs::remove_dir(hierarchy.path().join(&name));
    }
}
