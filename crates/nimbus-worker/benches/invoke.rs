//! Lambda-level cold and warm starts through the whole engine (sandbox,
//! runtime, Runtime API). Run as root:
//!
//!     CARGO_TARGET_DIR=/work/target-worker cargo bench --manifest-path crates/nimbus-worker/Cargo.toml
//!
//! Cold = `Init Duration` (no environment → runtime's first `/next`);
//! warm = wall time of `Engine::invoke` on a warm environment.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use nimbus_worker::{Engine, EngineConfig, FunctionSpec, Invocation, InvokeStatus};

fn stats(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name:<34} median {:>8.2} ms   p90 {:>8.2} ms   min {:>8.2} ms",
        ms(v[v.len() / 2]),
        ms(v[(v.len() - 1) * 9 / 10]),
        ms(v[0])
    );
}

#[tokio::main]
async fn main() {
    if !nix_is_root() {
        eprintln!("invoke bench needs root; skipped");
        return;
    }
    let state = std::env::temp_dir().join("nimbus-worker-bench");
    let engine = Engine::new(EngineConfig {
        state_dir: state.clone(),
        cgroup_parent: "nimbus-bench".into(),
        ..EngineConfig::default()
    })
    .expect("engine");
    let code = std::env::temp_dir().join("nimbus-worker-bench-code");
    std::fs::create_dir_all(&code).unwrap();
    std::fs::set_permissions(&code, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        code.join("app.py"),
        "def handler(e, c):\n    return {'ok': True}\n",
    )
    .unwrap();
    std::fs::write(
        code.join("index.js"),
        "exports.handler = async () => ({ ok: true });\n",
    )
    .unwrap();
    for f in ["app.py", "index.js"] {
        std::fs::set_permissions(code.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    for (runtime, handler) in [
        ("python3.11", "app.handler"),
        ("nodejs20.x", "index.handler"),
    ] {
        let mut cold = Vec::new();
        let mut warm = Vec::new();
        for i in 0..10 {
            let spec = FunctionSpec {
                account_id: "000000000000".into(),
                log_format: nimbus_worker::LogFormat::Text,
                function_name: format!("bench-{}-{i}", runtime.replace('.', "-")),
                version: "$LATEST".into(),
                arn: "arn:aws:lambda:us-east-1:123456789012:function:bench".into(),
                code_dir: code.clone(),
                layers: vec![],
                runtime: runtime.into(),
                handler: handler.into(),
                memory_mb: 128,
                timeout: Duration::from_secs(10),
                ephemeral_mb: 512,
                env: BTreeMap::new(),
                revision: String::new(),
            };
            let o = engine.invoke(&spec, Invocation::new("{}")).await.unwrap();
            assert_eq!(o.status, InvokeStatus::Ok, "{}", o.log);
            cold.push(o.init_duration.unwrap());
            for _ in 0..5 {
                let t = Instant::now();
                let o = engine.invoke(&spec, Invocation::new("{}")).await.unwrap();
                warm.push(t.elapsed());
                assert!(o.init_duration.is_none());
            }
        }
        stats(&format!("{runtime} cold (Init Duration)"), cold);
        stats(&format!("{runtime} warm invoke (wall)"), warm);
    }
    engine.shutdown().await;
    let _ = std::fs::remove_dir_all(&code);
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}
