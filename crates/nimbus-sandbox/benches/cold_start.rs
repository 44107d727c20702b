//! Cold start of one isolated environment — from scratch and from a
//! pre-created shell (`JailConfig::shell_pool`) — versus a plain fork+exec of
//! the same program, in the same run. Run as root:
//!
//!     cargo bench --workspace --bench cold_start
//!
//! "exec'd" = from "no environment" until execve of the runtime has
//! succeeded (what `PreparedSandbox::start` returns after); "exited" also
//! waits for `/bin/true` to finish; "teardown" is kill + reap + cleanup.
//! With shells, "no environment" means no environment for this function:
//! a shell (namespaces, cgroups, base root, socket) is waiting, as it is in
//! the worker between cold starts.

use std::time::{Duration, Instant};

use nimbus_sandbox::{Jail, JailConfig, SandboxSpec, SandboxUser};

const ITERATIONS: usize = 200;

fn spec(id: String, code: &std::path::Path) -> SandboxSpec {
    let devnull = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .unwrap();
    SandboxSpec {
        id,
        program: "/bin/true".into(),
        args: vec![],
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        cwd: "/var/task".into(),
        code_dir: code.to_owned(),
        runtime_dir: None,
        system_root: None,
        layers: vec![],
        memory_mb: 128,
        ephemeral_mb: 512,
        pids_max: 1024,
        nofile: 1024,
        user: SandboxUser::default(),
        stdout: devnull.try_clone().unwrap().into(),
        stderr: devnull.into(),
        service_port: Some(9001),
        unrestricted_cpu_at_start: false,
        service_addr_env: "AWS_LAMBDA_RUNTIME_API".into(),
        zygote: None,
    }
}

fn stats(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p) as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name:<40} median {:>7.3} ms   p90 {:>7.3} ms   min {:>7.3} ms",
        ms(pct(0.5)),
        ms(pct(0.9)),
        ms(samples[0])
    );
}

/// One cold start through `jail`; returns (prepared, started, exited, teardown, pooled).
fn cold_start(
    jail: &Jail,
    id: String,
    code: &std::path::Path,
) -> (Duration, Duration, Duration, Duration, bool) {
    let t0 = Instant::now();
    let mut prepared = jail.prepare(spec(id, code)).unwrap();
    let t_prepared = t0.elapsed();
    let pooled = prepared.pooled();
    let _listener = prepared.take_service_listener();
    let mut sandbox = prepared.start().unwrap();
    let started = t0.elapsed();
    sandbox.wait().unwrap();
    let exited = t0.elapsed();
    let t1 = Instant::now();
    drop(sandbox);
    (t_prepared, started, exited, t1.elapsed(), pooled)
}

fn main() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("cold_start bench needs root (namespaces, cgroups, loop devices); skipped");
        return;
    }
    let state = std::env::temp_dir().join("nimbus-sandbox-bench");
    let config = |shell_pool| JailConfig {
        state_dir: state.clone(),
        cgroup_parent: "nimbus-bench".into(),
        // NIMBUS_BENCH_EXPEDITE_RCU=1 measures with the host tuning on.
        expedite_rcu: std::env::var_os("NIMBUS_BENCH_EXPEDITE_RCU").is_some(),
        shell_pool,
        ..JailConfig::default()
    };
    let jail = Jail::new(config(0)).expect("jail");
    let pooled_jail = Jail::new(config(2)).expect("jail with shells");
    pooled_jail.keep_shells_ready(Some(9001), 512);
    let code = std::env::temp_dir().join("nimbus-sandbox-bench-code");
    std::fs::create_dir_all(&code).unwrap();

    // Warm-up: formats the /tmp template once and faults in the code paths.
    for i in 0..5 {
        cold_start(&jail, format!("bench-warm-{i}"), &code);
        assert!(pooled_jail.wait_for_shells(Some(9001), 512, 2, Duration::from_secs(10)));
        cold_start(&pooled_jail, format!("bench-pwarm-{i}"), &code);
    }

    // Interleaved, so all three see the same background load.
    let (mut prepared, mut started, mut exited, mut teardown) = (vec![], vec![], vec![], vec![]);
    let (mut p_prepared, mut p_started, mut p_exited, mut p_teardown) =
        (vec![], vec![], vec![], vec![]);
    let mut refill = vec![];
    let (mut fork_started, mut fork_exited) = (vec![], vec![]);
    for i in 0..ITERATIONS {
        let t0 = Instant::now();
        let mut child = std::process::Command::new("/bin/true")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        fork_started.push(t0.elapsed()); // std returns once exec has succeeded
        child.wait().unwrap();
        fork_exited.push(t0.elapsed());
        // Let the scratch-disk refill thread keep up (as between real cold starts).
        #[allow(clippy::disallowed_methods)] // no async runtime here
        std::thread::sleep(Duration::from_millis(5));
        let (p, s, e, t, _) = cold_start(&jail, format!("bench-{i}"), &code);
        prepared.push(p);
        started.push(s);
        exited.push(e);
        teardown.push(t);
        // A cold start finds a ready shell (the pool refills between cold starts).
        let t_wait = Instant::now();
        assert!(pooled_jail.wait_for_shells(Some(9001), 512, 2, Duration::from_secs(10)));
        refill.push(t_wait.elapsed());
        #[allow(clippy::disallowed_methods)] // no async runtime here
        std::thread::sleep(Duration::from_millis(5));
        let (p, s, e, t, pooled) = cold_start(&pooled_jail, format!("bench-p{i}"), &code);
        assert!(pooled, "no shell was ready");
        p_prepared.push(p);
        p_started.push(s);
        p_exited.push(e);
        p_teardown.push(t);
    }

    println!("{ITERATIONS} iterations, /bin/true, 128 MB, 512 MB /tmp, Runtime API socket bound:");
    stats("sandbox, from scratch: prepare()", prepared);
    stats("sandbox, pre-created shell: prepare()", p_prepared);
    stats("sandbox, from scratch: -> exec'd", started);
    stats("sandbox, pre-created shell: -> exec'd", p_started);
    stats("plain fork+exec: -> exec'd", fork_started);
    stats("sandbox, from scratch: -> exited", exited);
    stats("sandbox, pre-created shell: -> exited", p_exited);
    stats("plain fork+exec: -> exited", fork_exited);
    stats("sandbox, from scratch: teardown", teardown);
    stats("sandbox, pre-created shell: teardown", p_teardown);
    stats("shell pool: wait for refill (off path)", refill);
    let _ = std::fs::remove_dir_all(&code);
}
