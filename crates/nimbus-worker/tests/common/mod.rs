// Helpers shared by the worker's tests. They drive a real Engine: real
// sandboxes (namespaces, cgroups, loop devices), real interpreters. Root only.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nimbus_worker::{Engine, EngineConfig, FunctionSpec, Invocation, InvokeOutcome, InvokeStatus};

pub struct TestEngine {
    pub engine: Engine,
    _state: tempfile::TempDir,
}

pub fn engine() -> TestEngine {
    engine_with(|_| {})
}

pub fn engine_with(tweak: impl FnOnce(&mut EngineConfig)) -> TestEngine {
    let state = tempfile::Builder::new()
        .prefix("nimbus-worker-test")
        .tempdir()
        .unwrap();
    let mut config = EngineConfig {
        state_dir: state.path().to_owned(),
        cgroup_parent: "nimbus-test".into(),
        // Tests run engines in parallel under one cgroup parent.
        reclaim_orphans: false,
        ..EngineConfig::default()
    };
    tweak(&mut config);
    let pooled = config.shell_pool > 0 && !config.insecure_no_isolation;
    let target = config.shell_pool;
    let engine = Engine::new(config).expect("engine");
    // The first cold start of a test goes through a pre-created shell (the
    // engine default), not the fallback that runs while the pool fills.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    // Every pool full, zygotes included: a test's first cold starts (of Python and
    // Node functions too) find what a worker that has been up a while has ready.
    let ready = |m: nimbus_worker::PoolMetrics| {
        m.shells_ready >= target && m.zygotes_ready >= m.zygote_shapes * target
    };
    while pooled && !ready(engine.metrics()) {
        assert!(
            std::time::Instant::now() < deadline,
            "no shell became ready"
        );
        // Brief, once per engine; the shells are made by a plain thread.
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(Duration::from_millis(5));
    }
    TestEngine {
        engine,
        _state: state,
    }
}

/// A world-readable code directory with the given files (executable if they start with #!).
pub fn code(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("nimbus-fn")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for (name, body) in files {
        let p = dir.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::write(&p, body).unwrap();
        let mode = if body.starts_with("#!") { 0o755 } else { 0o644 };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    dir
}

pub fn spec(name: &str, runtime: &str, handler: &str, code_dir: &Path) -> FunctionSpec {
    FunctionSpec {
        account_id: "000000000000".into(),
        log_format: nimbus_worker::LogFormat::Text,
        application_log_level: None,
        system_log_level: None,
        credentials: None,
        function_name: name.into(),
        version: "$LATEST".into(),
        arn: format!("arn:aws:lambda:us-east-1:123456789012:function:{name}"),
        code_dir: code_dir.to_owned(),
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

pub async fn invoke(engine: &Engine, spec: &FunctionSpec, payload: &str) -> InvokeOutcome {
    engine
        .invoke(spec, Invocation::new(payload.to_owned()))
        .await
        .expect("invoke")
}

pub fn json(o: &InvokeOutcome) -> serde_json::Value {
    serde_json::from_slice(&o.payload).unwrap_or_else(|e| {
        panic!(
            "payload is not JSON ({e}): {:?}\nlog:\n{}",
            o.payload, o.log
        )
    })
}

pub fn assert_ok(o: &InvokeOutcome) {
    assert_eq!(
        o.status,
        InvokeStatus::Ok,
        "payload {:?}\nlog:\n{}",
        o.payload,
        o.log
    );
}

pub fn assert_error(o: &InvokeOutcome, error_type: &str) {
    assert_eq!(
        o.status,
        InvokeStatus::FunctionError {
            error_type: error_type.into()
        },
        "payload {:?}\nlog:\n{}",
        String::from_utf8_lossy(&o.payload),
        o.log
    );
}

/// The repo root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Invokes `spec` (whose handler reports how its interpreter started, `cmdline` being
/// its second argument) on an engine with zygotes and on one without; checks that the
/// first ran in a zygote (`zygote_arg`: `-c`, `-e`) and the second from `bootstrap`, and
/// that the function saw the same otherwise.
pub async fn same_from_a_zygote_as_fresh(spec: &FunctionSpec, zygote_arg: &str, bootstrap: &str) {
    let mut seen = Vec::new();
    for zygotes in [true, false] {
        let t = engine_with(|c| c.zygotes = zygotes);
        let o = invoke(&t.engine, spec, "{}").await;
        assert_ok(&o);
        assert!(o.init_duration.is_some());
        let mut v = json(&o);
        let want = if zygotes { zygote_arg } else { bootstrap };
        assert_eq!(v["cmdline"], want, "{v}");
        assert_eq!(v["mine"], "value", "{v}");
        v.as_object_mut().unwrap().remove("cmdline");
        seen.push(v);
        t.engine.shutdown().await;
    }
    assert_eq!(seen[0], seen[1], "zygote vs fresh start");
}
