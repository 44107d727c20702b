//! Cold start of one isolated environment versus a plain fork+exec of the
//! same program. Run as root:
//!
//!     CARGO_TARGET_DIR=/work/target-worker cargo bench --manifest-path crates/nimbus-sandbox/Cargo.toml
//!
//! "started" = from "no environment" until execve of the runtime has
//! succeeded (what `PreparedSandbox::start` returns after); "exited" also
//! waits for `/bin/true` to finish; "teardown" is kill + reap + cleanup.

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

fn main() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("cold_start bench needs root (namespaces, cgroups, loop devices); skipped");
        return;
    }
    let state = std::env::temp_dir().join("nimbus-sandbox-bench");
    let jail = Jail::new(JailConfig {
        state_dir: state.clone(),
        cgroup_parent: "nimbus-bench".into(),
        // NIMBUS_BENCH_EXPEDITE_RCU=1 measures with the host tuning on.
        expedite_rcu: std::env::var_os("NIMBUS_BENCH_EXPEDITE_RCU").is_some(),
        ..JailConfig::default()
    })
    .expect("jail");
    let code = std::env::temp_dir().join("nimbus-sandbox-bench-code");
    std::fs::create_dir_all(&code).unwrap();

    // Warm-up: formats the /tmp template once and faults in the code paths.
    for i in 0..5 {
        let mut s = jail
            .prepare(spec(format!("bench-warm-{i}"), &code))
            .unwrap()
            .start()
            .unwrap();
        s.wait().unwrap();
    }

    let (mut started, mut exited, mut teardown) = (vec![], vec![], vec![]);
    for i in 0..ITERATIONS {
        // Let the scratch-disk refill thread keep up (as between real cold starts).
        #[allow(clippy::disallowed_methods)] // no async runtime here
        std::thread::sleep(Duration::from_millis(5));
        let t0 = Instant::now();
        let mut prepared = jail.prepare(spec(format!("bench-{i}"), &code)).unwrap();
        let _listener = prepared.take_service_listener();
        let mut sandbox = prepared.start().unwrap();
        started.push(t0.elapsed());
        sandbox.wait().unwrap();
        exited.push(t0.elapsed());
        let t1 = Instant::now();
        drop(sandbox);
        teardown.push(t1.elapsed());
    }

    let (mut fork_started, mut fork_exited) = (vec![], vec![]);
    for _ in 0..ITERATIONS {
        let t0 = Instant::now();
        let mut child = std::process::Command::new("/bin/true")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        fork_started.push(t0.elapsed()); // std returns once exec has succeeded
        child.wait().unwrap();
        fork_exited.push(t0.elapsed());
    }

    println!("{ITERATIONS} iterations, /bin/true, 128 MB, 512 MB /tmp, Runtime API socket bound:");
    stats("sandbox: no environment -> exec'd", started);
    stats("plain fork+exec: -> exec'd", fork_started);
    stats("sandbox: no environment -> exited", exited);
    stats("plain fork+exec: -> exited", fork_exited);
    stats("sandbox: teardown (reap + cleanup)", teardown);
    let _ = std::fs::remove_dir_all(&code);
}
