//! Environments per GiB of memory: N warm, idle environments of a no-op
//! Python 3 function and of a `provided` bootstrap (shell + curl) at 128 MB
//! each, against the same runtime processes started directly with fork+exec
//! (`insecure_no_isolation`: no sandbox, same Runtime API) in the same run.
//! Python runs sandboxed twice: from the pool's zygotes (the default) and from
//! plain shells. The last line gives each setup's environments per GiB as a
//! ratio to fork+exec's.
//!
//! Run as root: `cargo bench --workspace --bench density`
//! (`NIMBUS_BENCH_ENVS=N` changes N, default 20).
//!
//! What "really used" means here: the bench first moves itself (the worker)
//! into a memory cgroup of its own, so that
//!
//!   cost of N environments = Δ(worker cgroup) + Σ (environment cgroups)
//!
//! measured from just before to just after the N environments are up (one
//! environment of the function is already warm before, so interpreter files
//! are in the page cache for both setups). The sandbox's share is the sum of
//! the environments' own cgroups (runtime, its `/tmp` metadata, kernel
//! objects charged to it); the worker's share — Runtime API servers, log
//! capture, pool bookkeeping — shows in the worker's cgroup. Without a sandbox
//! the runtimes are children in the worker's cgroup, so both shares are in Δ.
//! Both figures count page cache charged during the window, as the kernel does.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nimbus_worker::{Engine, EngineConfig, FunctionSpec, Invocation, InvokeStatus};

const BOOTSTRAP: &str = r#"#!/bin/sh
set -eu
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
while true; do
  HEADERS="$(mktemp)"
  EVENT=$(curl -sS -LD "$HEADERS" "$API/invocation/next")
  ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  curl -sS -o /dev/null -d '{}' "$API/invocation/$ID/response"
  rm -f "$HEADERS"
done
"#;

/// The memory controller's mount point (v1) or the unified hierarchy (v2).
fn memory_root() -> PathBuf {
    let v1 = Path::new("/sys/fs/cgroup/memory");
    if v1.join("memory.usage_in_bytes").exists() {
        v1.to_owned()
    } else {
        PathBuf::from("/sys/fs/cgroup")
    }
}

fn usage(dir: &Path) -> u64 {
    ["memory.usage_in_bytes", "memory.current"]
        .iter()
        .find_map(|f| std::fs::read_to_string(dir.join(f)).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Anonymous memory (v1 `total_rss`, v2 `anon`).
fn anon(dir: &Path) -> u64 {
    let stat = std::fs::read_to_string(dir.join("memory.stat")).unwrap_or_default();
    stat.lines()
        .find_map(|l| {
            l.strip_prefix("total_rss ")
                .or_else(|| l.strip_prefix("anon "))
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// (usage, anon) of the worker's cgroup and the sum over the environments'.
#[derive(Debug, Clone, Copy, Default)]
struct Snapshot {
    worker: (u64, u64),
    envs: (u64, u64),
}

fn snapshot(worker: &Path, env_parent: &Path) -> Snapshot {
    let mut s = Snapshot {
        worker: (usage(worker), anon(worker)),
        envs: (0, 0),
    };
    for e in std::fs::read_dir(env_parent)
        .into_iter()
        .flatten()
        .flatten()
    {
        let p = e.path();
        // Environments made from pre-created shells keep the shell's cgroup
        // name; ready shells are there before and after (the pool refills).
        if p.is_dir() {
            s.envs.0 += usage(&p);
            s.envs.1 += anon(&p);
        }
    }
    s
}

fn spec(code: &Path, runtime: &str, handler: &str, name: &str) -> FunctionSpec {
    FunctionSpec {
        account_id: "000000000000".into(),
        log_format: nimbus_worker::LogFormat::Text,
        application_log_level: None,
        system_log_level: None,
        credentials: None,
        function_name: name.into(),
        version: nimbus_types::Qualifier::LATEST.into(),
        arn: format!("arn:aws:lambda:us-east-1:123456789012:function:{name}"),
        code_dir: code.to_owned(),
        layers: vec![],
        runtime: runtime.into(),
        handler: handler.into(),
        memory_mb: 128,
        timeout: Duration::from_secs(10),
        ephemeral_mb: 512,
        env: BTreeMap::new(),
        revision: String::new(),
    }
}

fn main() {
    if !std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    }) {
        eprintln!("density bench needs root; skipped");
        return;
    }
    let n: usize = std::env::var("NIMBUS_BENCH_ENVS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    // Into a cgroup of our own before the runtime's threads exist.
    let worker_cg = memory_root().join("nimbus-bench-density-worker");
    let _ = std::fs::create_dir(&worker_cg);
    std::fs::write(
        worker_cg.join("cgroup.procs"),
        std::process::id().to_string(),
    )
    .expect("move the bench into its own memory cgroup");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(run(n, &worker_cg));
    drop(rt);
    // Leave the cgroup so it can be removed.
    let _ = std::fs::write(
        memory_root().join("cgroup.procs"),
        std::process::id().to_string(),
    );
    let _ = std::fs::remove_dir(&worker_cg);
}

async fn run(n: usize, worker_cg: &Path) {
    let code = std::env::temp_dir().join("nimbus-worker-density-code");
    std::fs::create_dir_all(&code).unwrap();
    std::fs::set_permissions(&code, std::fs::Permissions::from_mode(0o755)).unwrap();
    for (file, body, mode) in [
        ("app.py", "def handler(e, c):\n    return None\n", 0o644),
        ("bootstrap", BOOTSTRAP, 0o755),
    ] {
        std::fs::write(code.join(file), body).unwrap();
        std::fs::set_permissions(code.join(file), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    println!("{n} warm idle environments per runtime, 128 MB each:");
    let gib = 1024.0 * 1024.0 * 1024.0;
    let mut ratios = Vec::new();
    for (runtime, handler) in [
        ("python3.11", "app.handler"),
        ("provided.al2023", "bootstrap.handler"),
    ] {
        // Sandboxed from a zygote (the default where the runtime has one), sandboxed from
        // a plain shell, and the baseline: fork+exec, no sandbox.
        let mut per_env = Vec::new();
        let modes: &[(&str, bool, bool)] = if runtime.starts_with("python") {
            &[
                ("zygote", false, true),
                ("shell", false, false),
                ("fork+exec", true, false),
            ]
        } else {
            &[("shell", false, false), ("fork+exec", true, false)]
        };
        for &(mode, insecure, zygotes) in modes {
            let parent = format!("nimbus-bench-density-{}", mode.replace('+', "-"));
            let state = tempfile_dir(&parent);
            let engine = Engine::new(EngineConfig {
                state_dir: state.clone(),
                cgroup_parent: parent.clone(),
                insecure_no_isolation: insecure,
                zygotes,
                ..EngineConfig::default()
            })
            .expect("engine");
            let env_parent = memory_root().join(&parent);
            // One warm environment first: interpreter files in the page cache.
            let warm = spec(&code, runtime, handler, &format!("density-warm-{mode}"));
            let o = engine.invoke(&warm, Invocation::new("{}")).await.unwrap();
            assert_eq!(o.status, InvokeStatus::Ok, "{}", o.log);
            tokio::time::sleep(Duration::from_secs(1)).await;
            let before = snapshot(worker_cg, &env_parent);
            let s = spec(&code, runtime, handler, &format!("density-{mode}"));
            if zygotes {
                // One at a time, each once a zygote is ready, so that every environment
                // measured comes from one (the pool refills in the background).
                for i in 0..n {
                    let ready = tokio::time::timeout(Duration::from_secs(10), async {
                        while engine.metrics().zygotes_ready == 0 {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    })
                    .await;
                    assert!(ready.is_ok(), "no zygote ready for environment {i}");
                    assert_eq!(engine.prewarm(&s, 1).await.expect("prewarm"), 1);
                }
            } else {
                let started = engine.prewarm(&s, n).await.expect("prewarm");
                assert_eq!(started, n);
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            let after = snapshot(worker_cg, &env_parent);
            let d = |a: u64, b: u64| a.saturating_sub(b) as f64 / n as f64;
            let worker_usage = d(after.worker.0, before.worker.0);
            let env_usage = d(after.envs.0, before.envs.0);
            let worker_anon = d(after.worker.1, before.worker.1);
            let env_anon = d(after.envs.1, before.envs.1);
            let total = worker_usage + env_usage;
            let mib = |b: f64| b / (1024.0 * 1024.0);
            println!(
                "{runtime:<16} {mode:<9}: {:>6.2} MiB/env (environment cgroups {:>6.2} + worker {:>5.2}; anon {:>5.2} + {:>5.2}) -> {:>6.1} environments per GiB",
                mib(total),
                mib(env_usage),
                mib(worker_usage),
                mib(env_anon),
                mib(worker_anon),
                gib / total
            );
            per_env.push((mode, total));
            engine.shutdown().await;
            drop(engine);
            tokio::time::sleep(Duration::from_millis(500)).await;
            let _ = std::fs::remove_dir_all(&state);
        }
        // Environments per GiB against fork+exec's: its bytes per environment over theirs.
        let (_, baseline) = per_env[per_env.len() - 1];
        for &(mode, total) in &per_env[..per_env.len() - 1] {
            ratios.push(format!("{runtime}_{mode}={:.2}", baseline / total));
        }
    }
    println!("ratio environments_per_gib/fork+exec {}", ratios.join(" "));
    let _ = std::fs::remove_dir_all(&code);
}

fn tempfile_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}
