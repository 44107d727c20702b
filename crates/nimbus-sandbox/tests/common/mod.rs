// Shared helpers for the sandbox's contract tests (real namespaces, cgroups,
// loop devices: they need root, like the worker itself).
#![allow(dead_code)]

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nimbus_sandbox::{ExitStatus, Jail, JailConfig, SandboxSpec, SandboxUser};

pub fn state_dir() -> PathBuf {
    let d = std::env::temp_dir().join("nimbus-sandbox-tests");
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn jail() -> Jail {
    Jail::new(JailConfig {
        state_dir: state_dir(),
        cgroup_parent: "nimbus-test".into(),
        ..JailConfig::default()
    })
    .expect("jail")
}

pub fn unique_id(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "t-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn code_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("nimbus-code")
        .tempdir()
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for (name, body) in files {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

pub fn spec(id: &str, code: &Path, script: &str, out: OwnedFd) -> SandboxSpec {
    let err = out.try_clone().unwrap();
    SandboxSpec {
        id: id.to_owned(),
        program: "/bin/sh".into(),
        args: vec!["-c".into(), script.into()],
        env: vec![("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into())],
        cwd: "/var/task".into(),
        code_dir: code.to_owned(),
        runtime_dir: None,
        system_root: None,
        layers: vec![],
        memory_mb: 128,
        ephemeral_mb: 64,
        pids_max: 64,
        nofile: 1024,
        user: SandboxUser::default(),
        stdout: out,
        stderr: err,
        service_port: None,
        unrestricted_cpu_at_start: false,
        service_addr_env: "SERVICE".into(),
        zygote: None,
    }
}

/// Runs `script` with `/bin/sh -c` in a fresh sandbox; returns (status, output).
pub fn run_sh(
    jail: &Jail,
    script: &str,
    tweak: impl FnOnce(&mut SandboxSpec),
) -> (ExitStatus, String) {
    let code = code_dir(&[("hello.txt", "hello from code\n")]);
    let (r, w) = nix::unistd::pipe().unwrap();
    let mut s = spec(&unique_id("sh"), code.path(), script, w);
    tweak(&mut s);
    let prepared = jail.prepare(s).expect("prepare");
    let mut sandbox = prepared.start().expect("start");
    let mut out = String::new();
    std::fs::File::from(r).read_to_string(&mut out).unwrap();
    let status = sandbox.wait().unwrap();
    (status, out)
}

/// A fork bomb: forks sleeping children until the kernel refuses, then prints how many
/// processes its PID namespace holds (read back with [`processes_seen`]).
pub const FORK_BOMB: &str = r#"exec /usr/bin/python3 -c '
import os, time
for _ in range(200):
    try:
        if os.fork() == 0:
            time.sleep(3); os._exit(0)
    except OSError:
        break
print(len([p for p in os.listdir("/proc") if p.isdigit()]), flush=True)
os._exit(0)
'"#;

/// A fork bomb that never lets up: every process forks for ever, retrying
/// while the pids limit refuses, and reaps nothing it need not (`SIGCHLD`
/// ignored). Its processes ask to be the OOM killer's first choice, so the
/// memory limit trims the bomb and never takes init, which only waits.
pub const RELENTLESS_FORK_BOMB: &str = r#"exec /usr/bin/python3 -c '
import os, signal, time
if os.fork() == 0:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")
    except OSError:
        pass
    while True:
        try:
            os.fork()
        except OSError:
            time.sleep(0.01)
while True:
    try:
        os.wait()
    except ChildProcessError:
        time.sleep(1)
'"#;

/// A file of environment `id`'s cgroup under the tests' parent (`nimbus-test`):
/// the unified hierarchy's, else the v1 pids hierarchy's. `None` once the
/// cgroup is gone.
pub fn env_cgroup_file(id: &str, name: &str) -> Option<String> {
    ["/sys/fs/cgroup", "/sys/fs/cgroup/pids"]
        .iter()
        .find_map(|root| std::fs::read_to_string(format!("{root}/nimbus-test/{id}/{name}")).ok())
}

/// The process count [`FORK_BOMB`] printed last (0 if it printed none).
pub fn processes_seen(out: &str) -> u32 {
    out.lines()
        .last()
        .unwrap_or("0")
        .trim()
        .parse()
        .unwrap_or(0)
}

/// A zygote for tests (`SandboxSpec::zygote`): the host's python3, started ahead in a
/// shell, that takes its function's spec from the control socket as a runtime's zygote
/// does and then execs the function's program (its output is the zygote's own pipe,
/// `PreparedSandbox::take_output`).
pub fn exec_zygote() -> std::sync::Arc<nimbus_sandbox::Zygote> {
    const SOURCE: &str = r#"
import os, socket, struct
sock = socket.socket(fileno=int(os.environ.pop("NIMBUS_ZYGOTE_FD")))
msg = sock.recv(131072)
sock.close()
if not msg:
    os._exit(0)
header = struct.Struct("<IIIQIII")
magic, uid, gid, nofile, mounts, argc, envc = header.unpack_from(msg)
s = msg[header.size:].split(b"\0")
os.chdir(s[0])
os.execve(s[1], s[2:2 + argc], dict(e.split(b"=", 1) for e in s[2 + argc:2 + argc + envc]))
"#;
    std::sync::Arc::new(nimbus_sandbox::Zygote {
        program: "/usr/bin/python3".into(),
        args: vec!["-c".into(), SOURCE.into()],
        env: vec![],
    })
}
