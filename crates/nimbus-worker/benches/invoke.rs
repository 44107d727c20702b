//! Lambda-level cold and warm starts through the whole engine (sandbox,
//! runtime, Runtime API), for three engines in the same run:
//!
//! * `shells`  — the default: environments made from pre-created shells;
//! * `scratch` — `shell_pool: 0`, every environment created from scratch;
//! * `fork+exec` — `insecure_no_isolation`: the same runtime started directly
//!   with fork+exec and served by the same Runtime API, no sandbox (baseline).
//!
//! Run as root: `cargo bench --workspace --bench invoke`
//!
//! Cold: `Init Duration` (no environment → the runtime's first `/next`, as in
//! REPORT) and invoke-to-response (wall time of `Engine::invoke` with no warm
//! environment: the response is complete, so its first byte is there too).
//! Warm: wall time of `Engine::invoke` on a warm environment.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use nimbus_worker::{Engine, EngineConfig, FunctionSpec, Invocation, InvokeStatus};

/// Cold starts per runtime and engine (`NIMBUS_BENCH_COLD` overrides).
const COLD: usize = 15;

/// A `provided` runtime in POSIX shell + curl, as in AWS's tutorial.
const BOOTSTRAP: &str = r#"#!/bin/sh
set -eu
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
while true; do
  HEADERS="$(mktemp)"
  EVENT=$(curl -sS -LD "$HEADERS" "$API/invocation/next")
  ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  curl -sS -o /dev/null -d '{"ok":true}' "$API/invocation/$ID/response"
  rm -f "$HEADERS"
done
"#;

fn stats(name: &str, mut v: Vec<Duration>) -> Duration {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = v[v.len() / 2];
    println!(
        "{name:<48} median {:>8.2} ms   p90 {:>8.2} ms   min {:>8.2} ms",
        ms(median),
        ms(v[(v.len() - 1) * 9 / 10]),
        ms(v[0])
    );
    median
}

fn engine(name: &str, tweak: impl FnOnce(&mut EngineConfig)) -> Engine {
    let mut config = EngineConfig {
        state_dir: std::env::temp_dir().join(format!("nimbus-worker-bench-{name}")),
        cgroup_parent: format!("nimbus-bench-{name}"),
        ..EngineConfig::default()
    };
    tweak(&mut config);
    Engine::new(config).expect("engine")
}

#[derive(Default)]
struct Samples {
    init: Vec<Duration>,
    cold: Vec<Duration>,
    warm: Vec<Duration>,
}

#[tokio::main]
async fn main() {
    if !nix_is_root() {
        eprintln!("invoke bench needs root; skipped");
        return;
    }
    let cold_starts = std::env::var("NIMBUS_BENCH_COLD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(COLD);
    let engines = [
        ("shells", engine("shells", |_| {})),
        ("scratch", engine("scratch", |c| c.shell_pool = 0)),
        (
            "fork+exec",
            engine("direct", |c| c.insecure_no_isolation = true),
        ),
    ];
    let code = std::env::temp_dir().join("nimbus-worker-bench-code");
    std::fs::create_dir_all(&code).unwrap();
    std::fs::set_permissions(&code, std::fs::Permissions::from_mode(0o755)).unwrap();
    for (file, body, mode) in [
        (
            "app.py",
            "def handler(e, c):\n    return {'ok': True}\n",
            0o644,
        ),
        (
            "index.js",
            "exports.handler = async () => ({ ok: true });\n",
            0o644,
        ),
        ("bootstrap", BOOTSTRAP, 0o755),
    ] {
        std::fs::write(code.join(file), body).unwrap();
        std::fs::set_permissions(code.join(file), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    // Let the pools fill.
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!(
        "{cold_starts} cold starts per runtime and engine (interleaved), 128 MB, hello world:"
    );
    for (runtime, handler) in [
        ("python3.11", "app.handler"),
        ("provided.al2023", "bootstrap.handler"),
        ("nodejs20.x", "index.handler"),
    ] {
        let mut samples: Vec<Samples> = engines.iter().map(|_| Samples::default()).collect();
        // Warm-up: page cache and code paths.
        for (n, (_, engine)) in engines.iter().enumerate() {
            let spec = spec(&code, runtime, handler, &format!("warmup-{n}"));
            let o = engine.invoke(&spec, Invocation::new("{}")).await.unwrap();
            assert_eq!(o.status, InvokeStatus::Ok, "{}", o.log);
        }
        for i in 0..cold_starts {
            for (n, (_, engine)) in engines.iter().enumerate() {
                // Between cold starts, as on a worker: the shell pool refills.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let spec = spec(&code, runtime, handler, &format!("{n}-{i}"));
                let t = Instant::now();
                let o = engine.invoke(&spec, Invocation::new("{}")).await.unwrap();
                samples[n].cold.push(t.elapsed());
                assert_eq!(o.status, InvokeStatus::Ok, "{}", o.log);
                samples[n].init.push(o.init_duration.expect("a cold start"));
                for _ in 0..3 {
                    let t = Instant::now();
                    let o = engine.invoke(&spec, Invocation::new("{}")).await.unwrap();
                    samples[n].warm.push(t.elapsed());
                    assert!(o.init_duration.is_none());
                }
            }
        }
        let mut init_medians = vec![];
        let mut cold_medians = vec![];
        for ((name, _), s) in engines.iter().zip(samples) {
            init_medians.push(stats(&format!("{runtime} {name}: Init Duration"), s.init));
            cold_medians.push(stats(
                &format!("{runtime} {name}: invoke-to-response"),
                s.cold,
            ));
            stats(&format!("{runtime} {name}: warm invoke"), s.warm);
        }
        let ratio = |v: &[Duration], a: usize| v[a].as_secs_f64() / v[2].as_secs_f64();
        println!(
            "{runtime}: median Init Duration / fork+exec: shells {:.2}x, scratch {:.2}x; \
             invoke-to-response / fork+exec: shells {:.2}x, scratch {:.2}x",
            ratio(&init_medians, 0),
            ratio(&init_medians, 1),
            ratio(&cold_medians, 0),
            ratio(&cold_medians, 1),
        );
    }
    for (_, engine) in &engines {
        engine.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&code);
}

fn spec(code: &std::path::Path, runtime: &str, handler: &str, n: &str) -> FunctionSpec {
    FunctionSpec {
        account_id: "000000000000".into(),
        log_format: nimbus_worker::LogFormat::Text,
        function_name: format!("bench-{}-{n}", runtime.replace('.', "-")),
        version: nimbus_types::Qualifier::LATEST.into(),
        arn: "arn:aws:lambda:us-east-1:123456789012:function:bench".into(),
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

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}
