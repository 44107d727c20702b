//! Pre-created environment shells (`JailConfig::shell_pool`): an environment
//! made from a shell is held to exactly the same limits as one made from
//! scratch — the function's limits are written after the shell was attached
//! to its cgroups — and a broken shell is never used.
mod common;
use common::*;

use std::io::Read;
use std::time::Duration;

use nimbus_sandbox::{ExitStatus, Jail, JailConfig, SandboxSpec};

fn pooled_jail() -> Jail {
    let jail = Jail::new(JailConfig {
        state_dir: state_dir(),
        cgroup_parent: "nimbus-test".into(),
        shell_pool: 1,
        ..JailConfig::default()
    })
    .expect("jail");
    jail.keep_shells_ready(None, EPHEMERAL_MB);
    jail
}

/// `/tmp` size of `common::spec`.
const EPHEMERAL_MB: u64 = 64;

fn wait_ready(jail: &Jail) {
    wait_ready_for(jail, EPHEMERAL_MB);
}

fn wait_ready_for(jail: &Jail, ephemeral_mb: u64) {
    jail.keep_shells_ready(None, ephemeral_mb);
    assert!(
        jail.wait_for_shells(None, ephemeral_mb, 1, Duration::from_secs(20)),
        "no shell became ready"
    );
}

/// Runs `script` in an environment that must come from a shell.
fn run_pooled(
    jail: &Jail,
    script: &str,
    tweak: impl FnOnce(&mut SandboxSpec),
) -> (ExitStatus, String) {
    let code = code_dir(&[("hello.txt", "hello from code\n")]);
    let (r, w) = nix::unistd::pipe().unwrap();
    let mut s = spec(&unique_id("pool"), code.path(), script, w);
    tweak(&mut s);
    wait_ready_for(jail, s.ephemeral_mb);
    let prepared = jail.prepare(s).expect("prepare");
    assert!(
        prepared.pooled(),
        "the environment did not come from a shell"
    );
    let mut sandbox = prepared.start().expect("start");
    assert!(sandbox.pooled());
    let mut out = String::new();
    std::fs::File::from(r).read_to_string(&mut out).unwrap();
    let status = sandbox.wait().unwrap();
    (status, out)
}

#[test]
fn t40_a_pooled_environment_is_isolated_like_a_fresh_one() {
    let jail = pooled_jail();
    let script = "id -u; id -g; hostname; echo $$; cat /var/task/hello.txt; \
                  ls /proc | grep -cE '^[0-9]+$'; wc -c < /etc/shadow; \
                  for d in /root /home /work /var/lib /sys; do test -e $d && echo present $d; done; \
                  for p in / /usr /etc /var/task /opt /var/runtime; do touch $p/x 2>/dev/null && echo WROTE $p; done; \
                  echo data > /tmp/x && cat /tmp/x; stat -c %u /tmp; ls -A /tmp | tr '\\n' ' '; echo";
    let (status, out) = run_pooled(&jail, script, |_| {});
    assert_eq!(status, ExitStatus::Exited(0), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        &lines[..5],
        ["993", "990", "sandbox", "1", "hello from code"],
        "{out}"
    );
    let procs: u32 = lines[5].trim().parse().unwrap();
    assert!(procs <= 4, "sees {procs} processes: {out}");
    assert_eq!(lines[6].trim(), "0", "/etc/shadow not masked: {out}");
    assert!(!out.contains("present") && !out.contains("WROTE"), "{out}");
    assert!(out.contains("data\n993\n"), "{out}");
    // A fresh /tmp: nothing from the shell's or another environment's past.
    assert_eq!(lines.last().unwrap().trim(), "lost+found x", "{out}");
}

#[test]
fn t41_the_functions_memory_limit_applies_after_attach() {
    let jail = pooled_jail();
    let alloc = "exec /usr/bin/python3 -c 'x = bytearray(300 * 1024 * 1024); print(\"allocated\")'";
    // 128 MB: killed. The shell had no limit before the function's was written.
    let (status, out) = run_pooled(&jail, alloc, |s| s.memory_mb = 128);
    assert!(!out.contains("allocated"), "{out}");
    assert_eq!(status.to_string(), "signal: killed", "{out}");
    // 512 MB: the same program fits, so the limit is the function's, not a fixed one.
    let (status, out) = run_pooled(&jail, alloc, |s| s.memory_mb = 512);
    assert_eq!(status, ExitStatus::Exited(0), "{out}");
    assert!(out.contains("allocated"), "{out}");
}

#[test]
fn t42_a_fork_bomb_is_bounded_by_the_functions_pids_limit() {
    let jail = pooled_jail();
    let (_, out) = run_pooled(&jail, FORK_BOMB, |s| s.pids_max = 32);
    let n = processes_seen(&out);
    // More than the shell's own bound (16): the function's limit was written.
    assert!(n > 16 && n <= 32, "{n} processes: {out}");
}

#[test]
fn t43_tmp_is_exactly_the_functions_size() {
    let jail = pooled_jail();
    let script = "df -k /tmp | tail -1 | awk '{print $2}'; \
                  dd if=/dev/zero of=/tmp/fill bs=1M count=100 2>&1 | grep -o 'No space left on device'";
    let (_, out) = run_pooled(&jail, script, |s| s.ephemeral_mb = 32);
    let mut lines = out.lines();
    let total_kb: u64 = lines.next().unwrap().trim().parse().unwrap();
    assert!((29 * 1024..=32 * 1024).contains(&total_kb), "{out}");
    assert_eq!(lines.next(), Some("No space left on device"), "{out}");
}

#[test]
fn t44_seccomp_is_installed() {
    let jail = pooled_jail();
    let script = r#"/usr/bin/python3 -c '
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
for name, nr, args in [("ptrace", 101, (16, 1, 0, 0)), ("mount", 165, (b"none", b"/tmp", b"tmpfs", 0, 0)),
                       ("bpf", 321, (0, 0, 0)), ("unshare", 272, (0x10000000,)), ("setns", 308, (0, 0))]:
    r = libc.syscall(nr, *args)
    print(name, r, errno.errorcode.get(ctypes.get_errno()))
'"#;
    let (status, out) = run_pooled(&jail, script, |_| {});
    assert_eq!(status, ExitStatus::Exited(0), "{out}");
    for name in ["ptrace", "mount", "bpf", "unshare", "setns"] {
        assert!(out.contains(&format!("{name} -1 EPERM")), "{name}: {out}");
    }
}

#[test]
fn t45_a_shell_is_used_at_most_once() {
    let jail = pooled_jail();
    let mut seen = Vec::new();
    for _ in 0..3 {
        wait_ready(&jail);
        let code = code_dir(&[]);
        let (_r, w) = nix::unistd::pipe().unwrap();
        let prepared = jail
            .prepare(spec(&unique_id("once"), code.path(), "true", w))
            .unwrap();
        assert!(prepared.pooled());
        let pid = prepared.pid();
        assert!(
            !jail.ready_shells(None, EPHEMERAL_MB).contains(&pid),
            "still offered"
        );
        assert!(!seen.contains(&pid), "shell {pid} handed out twice");
        seen.push(pid);
        let mut s = prepared.start().unwrap();
        assert_eq!(s.wait().unwrap(), ExitStatus::Exited(0));
    }
}

fn wait_dead(pid: i32) {
    for _ in 0..500 {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if state.is_empty() || state.contains(") Z ") {
            return;
        }
        #[allow(clippy::disallowed_methods)] // a plain test thread, no async runtime
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("shell {pid} did not die");
}

#[test]
fn t46_a_dead_shell_is_never_used() {
    let jail = pooled_jail();
    wait_ready(&jail);
    let pid = jail.ready_shells(None, EPHEMERAL_MB)[0];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_dead(pid);
    let code = code_dir(&[]);
    let (r, w) = nix::unistd::pipe().unwrap();
    let prepared = jail
        .prepare(spec(&unique_id("dead"), code.path(), "id -u", w))
        .unwrap();
    // Fell back to a fresh, fully isolated environment.
    assert!(!prepared.pooled());
    assert_ne!(prepared.pid(), pid);
    let mut s = prepared.start().unwrap();
    let mut out = String::new();
    std::fs::File::from(r).read_to_string(&mut out).unwrap();
    assert_eq!(s.wait().unwrap(), ExitStatus::Exited(0));
    assert_eq!(out.trim(), "993");
}

#[test]
fn t47_a_shell_outside_its_cgroups_is_never_used() {
    let jail = pooled_jail();
    wait_ready(&jail);
    let pid = jail.ready_shells(None, EPHEMERAL_MB)[0];
    // Something moved it out of its memory cgroup: it must not run a function.
    let memory_root = std::path::Path::new("/sys/fs/cgroup/memory");
    let parent = if memory_root.exists() {
        memory_root.join("nimbus-test")
    } else {
        std::path::Path::new("/sys/fs/cgroup/nimbus-test").to_owned()
    };
    std::fs::write(parent.join("cgroup.procs"), pid.to_string()).unwrap();
    let code = code_dir(&[]);
    let (r, w) = nix::unistd::pipe().unwrap();
    let prepared = jail
        .prepare(spec(&unique_id("moved"), code.path(), "id -u", w))
        .unwrap();
    assert!(!prepared.pooled());
    let mut s = prepared.start().unwrap();
    let mut out = String::new();
    std::fs::File::from(r).read_to_string(&mut out).unwrap();
    assert_eq!(s.wait().unwrap(), ExitStatus::Exited(0));
    assert_eq!(out.trim(), "993");
    // The discarded shell is gone.
    wait_dead(pid);
}

#[test]
fn t48_a_failing_step_in_a_shell_never_runs_the_workload() {
    let jail = pooled_jail();
    let code = code_dir(&[]);
    let marker = code.path().join("ran");
    let script = format!("touch {}", marker.display());
    // The program is missing: the shell fails at exec, after its mounts.
    wait_ready(&jail);
    let (_r, w) = nix::unistd::pipe().unwrap();
    let mut s = spec(&unique_id("fail"), code.path(), &script, w);
    s.program = "/var/task/does-not-exist".into();
    let prepared = jail.prepare(s).unwrap();
    assert!(prepared.pooled());
    let err = prepared.start().unwrap_err();
    assert!(err.to_string().contains("Exec"), "{err}");
    // A layer is missing: no shell is spent; the error names the mount.
    wait_ready(&jail);
    let before = jail.ready_shells(None, EPHEMERAL_MB);
    let (_r, w) = nix::unistd::pipe().unwrap();
    let mut s = spec(&unique_id("fail"), code.path(), &script, w);
    s.layers = vec!["/nonexistent-layer".into()];
    let err = jail.prepare(s).and_then(|p| p.start()).unwrap_err();
    assert!(
        err.to_string().contains("rootfs: bind /nonexistent-layer"),
        "{err}"
    );
    let after = jail.ready_shells(None, EPHEMERAL_MB);
    assert!(
        before.iter().all(|p| after.contains(p)),
        "{before:?} -> {after:?}"
    );
    assert!(!marker.exists());
}

#[test]
fn t48b_a_function_with_several_layers_gets_a_fresh_environment() {
    let jail = pooled_jail();
    wait_ready(&jail);
    let (a, b) = (
        code_dir(&[("x", "from a\n")]),
        code_dir(&[("x", "from b\n"), ("y", "only b\n")]),
    );
    let code = code_dir(&[]);
    let (r, w) = nix::unistd::pipe().unwrap();
    let mut s = spec(&unique_id("layers"), code.path(), "cat /opt/x /opt/y", w);
    s.layers = vec![b.path().to_owned(), a.path().to_owned()];
    let prepared = jail.prepare(s).unwrap();
    assert!(!prepared.pooled(), "overlayfs layers are the plain path's");
    let mut sandbox = prepared.start().unwrap();
    let mut out = String::new();
    std::fs::File::from(r).read_to_string(&mut out).unwrap();
    assert_eq!(sandbox.wait().unwrap(), ExitStatus::Exited(0), "{out}");
    assert_eq!(out, "from a\nonly b\n");
}

#[test]
fn t49_an_unstarted_pooled_environment_is_killed_on_drop() {
    let jail = pooled_jail();
    wait_ready(&jail);
    let code = code_dir(&[]);
    let (_r, w) = nix::unistd::pipe().unwrap();
    let prepared = jail
        .prepare(spec(&unique_id("drop"), code.path(), "sleep 60", w))
        .unwrap();
    assert!(prepared.pooled());
    let pid = prepared.pid();
    drop(prepared);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "shell {pid} survived"
    );
}

#[test]
fn t49b_a_shell_killed_after_its_spec_fails_the_start_and_is_reaped() {
    let jail = pooled_jail();
    wait_ready(&jail);
    let code = code_dir(&[]);
    let marker = code.path().join("ran");
    let (_r, w) = nix::unistd::pipe().unwrap();
    let prepared = jail
        .prepare(spec(
            &unique_id("killed"),
            code.path(),
            &format!("touch {}", marker.display()),
            w,
        ))
        .unwrap();
    assert!(prepared.pooled());
    let pid = prepared.pid();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_dead(pid);
    // Either the go-ahead cannot be sent or the child never reaches exec:
    // nothing ran, and nothing is left behind.
    match prepared.start() {
        Err(e) => assert!(e.to_string().contains("start child"), "{e}"),
        Ok(mut s) => assert_eq!(s.wait().unwrap().to_string(), "signal: killed"),
    }
    assert!(!marker.exists());
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}
