//! Lambda-level cold and warm starts through the whole engine (sandbox,
//! runtime, Runtime API), for three engines in the same run:
//!
//! * `shells`  — environments made from pre-created shells that exec the runtime;
//! * `zygotes` — the default: the same shells, with the runtime's zygote (Python)
//!   started in them ahead and handed the function (`nimbus_sandbox::Zygote`);
//! * `scratch` — `shell_pool: 0`, every environment created from scratch;
//! * `fork+exec` — `insecure_no_isolation`: the same runtime started directly
//!   with fork+exec and served by the same Runtime API, no sandbox (baseline);
//! * `roots` — shells, with the runtime root file systems of
//!   `deploy/rootfs/build.sh` (`NIMBUS_RUNTIME_ROOTS`, default
//!   `/var/tmp/nimbus-rootfs`; left out when there are none): every runtime the
//!   roots serve, including those the host has no interpreter for.
//!
//! Run as root: `cargo bench --workspace --bench invoke`
//!
//! Cold: `Init Duration` (no environment → the runtime's first `/next`, as in
//! REPORT) and invoke-to-response (wall time of `Engine::invoke` with no warm
//! environment: the response is complete, so its first byte is there too).
//! Warm: wall time of `Engine::invoke` on a warm environment.
//!
//! Baseline for zygotes (issue 18): a bare start of the same host interpreter loading
//! the bootstrap's modules (`python3 -c 'import …'`, `node -e 'require(…)'`, fork+exec,
//! no sandbox), interleaved with the cold starts. The last line compares a zygote's
//! cold start (invoke-to-response minus a warm invoke) with it:
//! `ratio zygote/bare python3.11_cold=… nodejs20.x_cold=…`.

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
    let mut engines = vec![
        ("shells", engine("shells", |c| c.zygotes = false)),
        ("zygotes", engine("zygotes", |_| {})),
        ("scratch", engine("scratch", |c| c.shell_pool = 0)),
        (
            "fork+exec",
            engine("direct", |c| c.insecure_no_isolation = true),
        ),
    ];
    let roots_dir =
        std::env::var("NIMBUS_RUNTIME_ROOTS").unwrap_or_else(|_| "/var/tmp/nimbus-rootfs".into());
    match nimbus_worker::roots::RuntimeRoots::load(std::path::Path::new(&roots_dir)) {
        Ok(roots) => {
            let roots = std::sync::Arc::new(roots);
            engines.push(("roots", engine("roots", |c| c.runtime_roots = Some(roots))));
        }
        Err(e) => println!("no runtime roots ({e}); the roots engine is left out"),
    }
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
        (
            "hello.rb",
            "def handler(event:, context:)\n  { ok: true }\nend\n",
            0o644,
        ),
    ] {
        std::fs::write(code.join(file), body).unwrap();
        std::fs::set_permissions(code.join(file), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    // Let the pools fill.
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!(
        "{cold_starts} cold starts per runtime and engine (interleaved), 128 MB, hello world:"
    );
    if engines.len() > 4 {
        compile_java(&code, &roots_dir);
    }
    let mut ratios = Vec::new();
    for (runtime, handler) in [
        ("python3.11", "app.handler"),
        ("provided.al2023", "bootstrap.handler"),
        ("nodejs20.x", "index.handler"),
        ("python3.13", "app.handler"),
        ("nodejs18.x", "index.handler"),
        ("ruby3.3", "hello.handler"),
        ("java17", "example.Hello::handleRequest"),
        ("java21", "example.Hello::handleRequest"),
    ] {
        // The engines that run this runtime exactly.
        let engines: Vec<_> = engines
            .iter()
            .filter(|(_, e)| {
                nimbus_worker::runtimes::available(e.config()).contains(&runtime.to_string())
            })
            .collect();
        if engines.is_empty() {
            println!("{runtime}: no engine runs it here; skipped");
            continue;
        }
        let mut samples: Vec<Samples> = engines.iter().map(|_| Samples::default()).collect();
        let mut bare = Vec::new();
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
            // The zygotes' baseline, interleaved with the engines' cold starts.
            bare.extend(bare_start(runtime));
        }
        let bare = (!bare.is_empty())
            .then(|| stats(&format!("{runtime} bare start (fork+exec, imports)"), bare));
        let mut init_medians = vec![];
        let mut cold_medians = vec![];
        let mut warm_medians = vec![];
        for ((name, _), s) in engines.iter().zip(samples) {
            init_medians.push(stats(&format!("{runtime} {name}: Init Duration"), s.init));
            cold_medians.push(stats(
                &format!("{runtime} {name}: invoke-to-response"),
                s.cold,
            ));
            warm_medians.push(stats(&format!("{runtime} {name}: warm invoke"), s.warm));
        }
        // Ratios against the first engine of the run (host shells where the host runs it).
        let base = engines[0].0;
        for (n, (name, _)) in engines.iter().enumerate().skip(1) {
            println!(
                "{runtime}: {name} / {base}: Init Duration {:.2}x, invoke-to-response {:.2}x",
                init_medians[n].as_secs_f64() / init_medians[0].as_secs_f64(),
                cold_medians[n].as_secs_f64() / cold_medians[0].as_secs_f64(),
            );
        }
        // A zygote's cold start against a bare start of the same interpreter.
        if let (Some(z), Some(bare)) = (
            engines.iter().position(|(name, _)| *name == "zygotes"),
            bare,
        ) {
            let cold = cold_medians[z].saturating_sub(warm_medians[z]);
            let ratio = cold.as_secs_f64() / bare.as_secs_f64();
            println!(
                "{runtime}: zygote cold start (invoke-to-response - warm) {:.2} ms / bare start {:.2} ms = {ratio:.2}",
                cold.as_secs_f64() * 1000.0,
                bare.as_secs_f64() * 1000.0,
            );
            ratios.push(format!("{runtime}_cold={ratio:.2}"));
        }
    }
    if !ratios.is_empty() {
        println!("ratio zygote/bare {}", ratios.join(" "));
    }
    for (_, engine) in &engines {
        engine.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&code);
}

/// Wall time of starting the host's interpreter for `runtime` with the modules its
/// bootstrap loads before its first `/next`, as a plain fork+exec (`None`: no zygote for
/// this runtime here).
fn bare_start(runtime: &str) -> Option<Duration> {
    let defaults = EngineConfig::default();
    let (program, args) = if runtime.starts_with("python3.") {
        (
            defaults.python,
            [
                "-c",
                "import http.client, importlib, json, logging, os, sys, time",
            ],
        )
    } else if runtime.starts_with("nodejs") {
        (
            defaults.node,
            [
                "-e",
                "for (const m of ['http', 'path', 'fs', 'stream', 'url', 'util']) require(m)",
            ],
        )
    } else {
        return None;
    };
    let t = Instant::now();
    let ok = std::process::Command::new(&program)
        .args(args)
        .env_clear()
        .envs([("PYTHONDONTWRITEBYTECODE", "1"), ("LANG", "en_US.UTF-8")])
        .status()
        .expect("interpreter")
        .success();
    assert!(ok, "the bare start failed");
    Some(t.elapsed())
}

/// A `RequestHandler` hello world for the Java runtimes, compiled with the bookworm
/// root's JDK (the host may have none) in a private mount namespace.
fn compile_java(code: &std::path::Path, roots: &str) {
    let src = code.join("src/example");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join("Hello.java"),
        "package example;\n\
         import com.amazonaws.services.lambda.runtime.*;\n\
         import java.util.Map;\n\
         public class Hello implements RequestHandler<Map<String, Object>, String> {\n\
         public String handleRequest(Map<String, Object> e, Context c) { return \"ok\"; }\n\
         }\n",
    )
    .unwrap();
    let root = format!("{roots}/bookworm");
    let script = format!(
        "mount --bind {code} {root}/mnt && mount -t proc proc {root}/proc && \
         chroot {root} /usr/bin/javac --release 17 \
         -cp /usr/lib/nimbus/java/nimbus-lambda-core.jar -d /mnt /mnt/src/example/Hello.java",
        code = code.display()
    );
    let done = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .status()
        .expect("unshare");
    assert!(done.success(), "compiling the Java hello world failed");
    for dir in [code.join("example"), code.to_path_buf()] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

fn spec(code: &std::path::Path, runtime: &str, handler: &str, n: &str) -> FunctionSpec {
    FunctionSpec {
        account_id: "000000000000".into(),
        log_format: nimbus_worker::LogFormat::Text,
        application_log_level: None,
        system_log_level: None,
        credentials: None,
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
