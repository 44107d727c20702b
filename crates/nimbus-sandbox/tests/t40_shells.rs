//! Pre-created environment shells (`JailConfig::shell_pool`): an environment
//! made from a shell is held to exactly the same limits as one made from
//! scratch — the function's limits are written after the shell was attached
//! to its cgroups — and a broken shell is never used. Each isolation test runs
//! through both kinds of shell: one that execs the function's program, and one
//! whose runtime zygote was started ahead and is handed the function (`zygote.rs`).
mod common;
use common::*;

use std::io::Read;
use std::time::Duration;

use nimbus_sandbox::{ExitStatus, Jail, JailConfig, SandboxSpec};

fn pooled_jail() -> Jail {
    pooled_jail_of(1)
}

/// A jail keeping `shells` shells ready for `common::spec`'s shape.
fn pooled_jail_of(shells: usize) -> Jail {
    let jail = Jail::new(JailConfig {
        state_dir: state_dir(),
        cgroup_parent: "nimbus-test".into(),
        shell_pool: shells,
        ..JailConfig::default()
    })
    .expect("jail");
    jail.keep_shells_ready(None, EPHEMERAL_MB);
    jail
}

/// `/tmp` size of `common::spec`.
const EPHEMERAL_MB: u64 = 64;

/// How an environment is made from a shell.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Path {
    /// The shell execs the function's program.
    Shell,
    /// A zygote running in the shell is handed the function.
    Zygote,
}

const PATHS: [Path; 2] = [Path::Shell, Path::Zygote];

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

/// Waits until a shell (with a zygote, if `spec` names one) is ready for `spec`.
fn wait_ready_like(jail: &Jail, spec: &SandboxSpec) -> Vec<i32> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ready = jail.ready_for(spec);
        if !ready.is_empty() {
            return ready;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no shell became ready"
        );
        #[allow(clippy::disallowed_methods)] // a plain test thread, no async runtime
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `script` in an environment that must come from a shell, by `path`.
fn run_via(
    jail: &Jail,
    path: Path,
    script: &str,
    tweak: impl FnOnce(&mut SandboxSpec),
) -> (ExitStatus, String) {
    let code = code_dir(&[("hello.txt", "hello from code\n")]);
    let (r, w) = nix::unistd::pipe().unwrap();
    let mut s = spec(&unique_id("pool"), code.path(), script, w);
    if path == Path::Zygote {
        s.zygote = Some(exec_zygote());
    }
    tweak(&mut s);
    wait_ready_like(jail, &s);
    let mut prepared = jail.prepare(s).expect("prepare");
    assert!(
        prepared.pooled(),
        "the environment did not come from a shell"
    );
    assert_eq!(prepared.zygote(), path == Path::Zygote, "{path:?}");
    // A zygote's output is its own pipe; the spec's is unused.
    let r = prepared.take_output().unwrap_or(r);
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
    for path in PATHS {
        let (status, out) = run_via(&jail, path, script, |_| {});
        isolated_like_a_fresh_one(status, &out);
    }
}

fn isolated_like_a_fresh_one(status: ExitStatus, out: &str) {
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
    for path in PATHS {
        let (status, out) = run_via(&jail, path, alloc, |s| s.memory_mb = 128);
        assert!(!out.contains("allocated"), "{path:?}: {out}");
        assert_eq!(status.to_string(), "signal: killed", "{path:?}: {out}");
        // 512 MB: the same program fits, so the limit is the function's, not a fixed one.
        let (status, out) = run_via(&jail, path, alloc, |s| s.memory_mb = 512);
        assert_eq!(status, ExitStatus::Exited(0), "{path:?}: {out}");
        assert!(out.contains("allocated"), "{path:?}: {out}");
    }
}

#[test]
fn t42_a_fork_bomb_is_bounded_by_the_functions_pids_limit() {
    let jail = pooled_jail();
    for path in PATHS {
        let (_, out) = run_via(&jail, path, FORK_BOMB, |s| s.pids_max = 32);
        let n = processes_seen(&out);
        // More than the shell's own bound (16): the function's limit was written.
        assert!(n > 16 && n <= 32, "{path:?}: {n} processes: {out}");
    }
}

#[test]
fn t43_tmp_is_exactly_the_functions_size() {
    let jail = pooled_jail();
    let script = "df -k /tmp | tail -1 | awk '{print $2}'; \
                  dd if=/dev/zero of=/tmp/fill bs=1M count=100 2>&1 | grep -o 'No space left on device'";
    for path in PATHS {
        let (_, out) = run_via(&jail, path, script, |s| s.ephemeral_mb = 32);
        let mut lines = out.lines();
        let total_kb: u64 = lines.next().unwrap().trim().parse().unwrap();
        assert!(
            (29 * 1024..=32 * 1024).contains(&total_kb),
            "{path:?}: {out}"
        );
        assert_eq!(
            lines.next(),
            Some("No space left on device"),
            "{path:?}: {out}"
        );
    }
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
    for path in PATHS {
        let (status, out) = run_via(&jail, path, script, |_| {});
        assert_eq!(status, ExitStatus::Exited(0), "{path:?}: {out}");
        for name in ["ptrace", "mount", "bpf", "unshare", "setns"] {
            assert!(
                out.contains(&format!("{name} -1 EPERM")),
                "{path:?}: {name}: {out}"
            );
        }
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

/// Starts `prepared` (running `id -u`, its output on `r`): it ran, as the function's user.
fn runs_as_the_function(prepared: nimbus_sandbox::PreparedSandbox, r: std::os::fd::OwnedFd) {
    let mut sandbox = prepared.start().unwrap();
    let mut out = String::new();
    std::fs::File::from(r).read_to_string(&mut out).unwrap();
    assert_eq!(sandbox.wait().unwrap(), ExitStatus::Exited(0));
    assert_eq!(out.trim(), "993");
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
    runs_as_the_function(prepared, r);
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
    runs_as_the_function(prepared, r);
    // The discarded shell is gone.
    wait_dead(pid);
}

#[test]
fn t47b_closing_the_pool_frees_its_shells_and_their_cgroups() {
    let jail = pooled_jail_of(2);
    assert!(
        jail.wait_for_shells(None, EPHEMERAL_MB, 2, Duration::from_secs(20)),
        "no shells became ready"
    );
    let pids = jail.ready_shells(None, EPHEMERAL_MB);
    // Each shell's cgroup, found by the pid it holds.
    let cgroups: Vec<std::path::PathBuf> = pids
        .iter()
        .map(|pid| {
            let line = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
            let rel = line
                .lines()
                .find_map(|l| {
                    let (_, rest) = l.split_once(':')?;
                    let (controllers, path) = rest.split_once(':')?;
                    (controllers.is_empty() || controllers.split(',').any(|c| c == "pids"))
                        .then(|| path.trim_start_matches('/').to_string())
                })
                .expect("a pids or unified cgroup line");
            ["/sys/fs/cgroup/pids", "/sys/fs/cgroup"]
                .iter()
                .map(|root| std::path::Path::new(root).join(&rel))
                .find(|d| d.exists())
                .expect("the shell's cgroup directory")
        })
        .collect();
    assert!(cgroups
        .iter()
        .all(|d| d.to_string_lossy().contains("shell-")));

    assert_eq!(jail.close_shells(), pids.len());
    for pid in &pids {
        wait_dead(*pid);
    }
    for d in &cgroups {
        assert!(!d.exists(), "{} is still there", d.display());
    }
    // Nothing is kept or made after; a cold start takes the plain path.
    #[allow(clippy::disallowed_methods)] // a plain test thread, no async runtime
    std::thread::sleep(Duration::from_millis(1500));
    assert!(jail.ready_shells(None, EPHEMERAL_MB).is_empty());
    let code = code_dir(&[]);
    let (r, w) = nix::unistd::pipe().unwrap();
    let prepared = jail
        .prepare(spec(&unique_id("closed"), code.path(), "id -u", w))
        .unwrap();
    assert!(!prepared.pooled());
    runs_as_the_function(prepared, r);
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

#[test]
fn t4z1_a_zygote_runs_nothing_of_its_function_before_start_and_is_used_once() {
    let jail = pooled_jail();
    let mut seen = Vec::new();
    for _ in 0..2 {
        let code = code_dir(&[]);
        let (_unused, w) = nix::unistd::pipe().unwrap();
        let mut s = spec(&unique_id("zyg"), code.path(), "echo ran; id -u", w);
        s.zygote = Some(exec_zygote());
        let ready = wait_ready_like(&jail, &s);
        let mut prepared = jail.prepare(s).unwrap();
        assert!(prepared.zygote());
        let r = prepared.take_output().expect("a zygote's output");
        let pid = prepared.pid();
        assert!(ready.contains(&pid), "not one of the ready zygotes");
        assert!(!seen.contains(&pid), "zygote {pid} handed out twice");
        seen.push(pid);
        // Prepared but not started: the function has not run (no output yet).
        let mut fds = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(&r),
            nix::poll::PollFlags::POLLIN,
        )];
        let ready_to_read =
            nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(200u16)).unwrap();
        assert_eq!(ready_to_read, 0, "the function ran before start");
        let mut sandbox = prepared.start().unwrap();
        let mut out = String::new();
        std::fs::File::from(r).read_to_string(&mut out).unwrap();
        assert_eq!(sandbox.wait().unwrap(), ExitStatus::Exited(0), "{out}");
        assert_eq!(out, "ran\n993\n");
    }
}

#[test]
fn t4z2_a_dead_zygote_is_never_used() {
    let jail = pooled_jail();
    let code = code_dir(&[]);
    let (r, w) = nix::unistd::pipe().unwrap();
    let mut s = spec(&unique_id("zdead"), code.path(), "id -u", w);
    s.zygote = Some(exec_zygote());
    let pid = wait_ready_like(&jail, &s)[0];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_dead(pid);
    let prepared = jail.prepare(s).unwrap();
    // Fell back to a fresh, fully isolated environment that execs the program.
    assert!(!prepared.pooled() && !prepared.zygote());
    runs_as_the_function(prepared, r);
}

#[test]
fn t4z3_a_zygote_that_cannot_start_leaves_cold_starts_to_the_plain_path() {
    let jail = pooled_jail();
    let code = code_dir(&[]);
    let (r, w) = nix::unistd::pipe().unwrap();
    let mut s = spec(&unique_id("znone"), code.path(), "id -u", w);
    s.zygote = Some(std::sync::Arc::new(nimbus_sandbox::Zygote {
        program: "/nonexistent/python".into(),
        args: vec![],
        env: vec![],
    }));
    // The pool tries (and logs why it cannot); no such shell is ever offered.
    assert!(jail.ready_for(&s).is_empty());
    #[allow(clippy::disallowed_methods)] // a plain test thread, no async runtime
    std::thread::sleep(Duration::from_millis(300));
    assert!(jail.ready_for(&s).is_empty());
    let prepared = jail.prepare(s).unwrap();
    assert!(!prepared.pooled());
    runs_as_the_function(prepared, r);
}

#[test]
fn t4z4_an_unstarted_zygote_environment_is_killed_on_drop() {
    let jail = pooled_jail();
    let code = code_dir(&[]);
    let (_r, w) = nix::unistd::pipe().unwrap();
    let mut s = spec(&unique_id("zdrop"), code.path(), "sleep 60", w);
    s.zygote = Some(exec_zygote());
    wait_ready_like(&jail, &s);
    let prepared = jail.prepare(s).unwrap();
    assert!(prepared.zygote());
    let pid = prepared.pid();
    drop(prepared);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "zygote {pid} survived"
    );
}
