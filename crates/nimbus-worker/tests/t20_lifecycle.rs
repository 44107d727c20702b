//! Environment lifecycle: warm reuse per version, concurrency, idle expiry,
//! LRU eviction under memory pressure, prewarm.
mod common;
use common::*;
use std::time::Duration;

const APP: &str = r#"
import os, time
def handler(event, context):
    if event.get("sleep"):
        time.sleep(event["sleep"])
    return {"pid_ns_init": os.getpid(), "init_type": os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"],
            "stream": context.log_stream_name}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn t20_concurrent_invocations_get_separate_environments() {
    let t = engine();
    let code = code(&[("app.py", APP)]);
    let s = spec("conc", "python3.11", "app.handler", code.path());
    let (a, b) = tokio::join!(
        invoke(&t.engine, &s, r#"{"sleep":0.5}"#),
        invoke(&t.engine, &s, r#"{"sleep":0.5}"#)
    );
    assert_ok(&a);
    assert_ok(&b);
    assert_ne!(
        json(&a)["stream"],
        json(&b)["stream"],
        "one environment ran two invocations at once"
    );
    let m = t.engine.metrics();
    assert_eq!(
        (m.warm, m.busy, m.cold_starts, m.reserved_mb),
        (2, 0, 2, 256),
        "{m:?}"
    );
    // Versions do not share environments.
    let mut v1 = s.clone();
    v1.version = "1".into();
    let o = invoke(&t.engine, &v1, "{}").await;
    assert!(o.init_duration.is_some());
    assert_eq!(o.executed_version, "1");
    assert!(o.log.contains("Version: 1"));
    assert_eq!(t.engine.metrics().cold_starts, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn t21_idle_environments_are_shut_down() {
    let t = engine_with(|c| {
        c.idle_timeout = Duration::from_millis(500);
        c.reap_interval = Duration::from_millis(100);
    });
    let code = code(&[("app.py", APP)]);
    let s = spec("idle", "python3.11", "app.handler", code.path());
    assert_ok(&invoke(&t.engine, &s, "{}").await);
    assert_eq!(t.engine.metrics().warm, 1);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let m = t.engine.metrics();
    assert_eq!((m.warm, m.reserved_mb), (0, 0), "{m:?}");
    assert!(invoke(&t.engine, &s, "{}").await.init_duration.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn t22_memory_pressure_evicts_least_recently_used() {
    let t = engine_with(|c| c.max_memory_mb = 256);
    let code = code(&[("app.py", APP)]);
    let a = spec("lru-a", "python3.11", "app.handler", code.path());
    let b = spec("lru-b", "python3.11", "app.handler", code.path());
    let c = spec("lru-c", "python3.11", "app.handler", code.path());
    assert_ok(&invoke(&t.engine, &a, "{}").await);
    assert_ok(&invoke(&t.engine, &b, "{}").await);
    assert_ok(&invoke(&t.engine, &a, "{}").await); // a is now more recent than b
    assert_ok(&invoke(&t.engine, &c, "{}").await); // evicts b
    assert_eq!(t.engine.metrics().reserved_mb, 256);
    assert!(
        invoke(&t.engine, &a, "{}").await.init_duration.is_none(),
        "a should still be warm"
    );
    assert!(
        invoke(&t.engine, &b, "{}").await.init_duration.is_some(),
        "b should have been evicted"
    );

    // A function bigger than the whole budget cannot run here.
    let mut huge = spec("huge", "python3.11", "app.handler", code.path());
    huge.memory_mb = 512;
    let err = t
        .engine
        .invoke(&huge, nimbus_worker::Invocation::new("{}"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, nimbus_worker::EngineError::NoCapacity { .. }),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn t23_prewarm_creates_provisioned_environments() {
    let t = engine();
    let code = code(&[("app.py", APP)]);
    let s = spec("pre", "python3.11", "app.handler", code.path());
    assert_eq!(t.engine.prewarm(&s, 2).await.unwrap(), 2);
    let m = t.engine.metrics();
    assert_eq!((m.warm, m.reserved_mb), (2, 256));
    let o = invoke(&t.engine, &s, "{}").await;
    assert_ok(&o);
    assert_eq!(json(&o)["init_type"], "provisioned-concurrency");
    // Init happened ahead of time: like Lambda, no Init Duration on the invocation.
    assert!(!o.log.contains("Init Duration"), "{}", o.log);
    assert!(o.init_duration.is_none());
    t.engine.shutdown().await;
    assert_eq!(t.engine.metrics().warm, 0);
    assert!(matches!(
        t.engine
            .invoke(&s, nimbus_worker::Invocation::new("{}"))
            .await,
        Err(nimbus_worker::EngineError::ShuttingDown)
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn t27_provisioned_environments_outlive_the_idle_timeout_until_released() {
    let t = engine_with(|c| {
        c.idle_timeout = Duration::from_millis(300);
        c.reap_interval = Duration::from_millis(100);
        c.max_memory_mb = 384;
    });
    let code = code(&[("app.py", APP)]);
    let s = spec("held", "python3.11", "app.handler", code.path());
    let hold = Duration::from_secs(30);
    assert_eq!(t.engine.provision(&s, 2, hold).await.unwrap(), 2);
    // Renewing does not add environments: the count is set, not added.
    assert_eq!(t.engine.provision(&s, 2, hold).await.unwrap(), 2);
    let m = t.engine.metrics();
    assert_eq!((m.warm, m.provisioned, m.cold_starts), (2, 2, 2), "{m:?}");
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(
        t.engine.metrics().warm,
        2,
        "held environments are not reaped"
    );

    // Held environments are not evicted for another function: with 128 MB left, a
    // second on-demand environment of it does not fit.
    let other = spec("other", "python3.11", "app.handler", code.path());
    let (a, b) = tokio::join!(
        invoke(&t.engine, &other, r#"{"sleep":0.5}"#),
        t.engine
            .invoke(&other, nimbus_worker::Invocation::new(r#"{"sleep":0.5}"#))
    );
    assert_ok(&a);
    assert!(
        matches!(b, Err(nimbus_worker::EngineError::NoCapacity { .. })),
        "{b:?}"
    );
    assert_eq!(t.engine.metrics().warm, 3);

    // Invocations use the held environments, initialised ahead of time.
    let o = invoke(&t.engine, &s, "{}").await;
    assert_eq!(json(&o)["init_type"], "provisioned-concurrency");
    assert!(o.init_duration.is_none());

    // Released: the idle timeout applies again.
    assert_eq!(t.engine.provision(&s, 0, hold).await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(900)).await;
    let m = t.engine.metrics();
    assert_eq!((m.warm, m.provisioned), (0, 0), "{m:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn t28_a_hold_that_is_not_renewed_ends() {
    let t = engine_with(|c| {
        c.idle_timeout = Duration::from_millis(300);
        c.reap_interval = Duration::from_millis(100);
    });
    let code = code(&[("app.py", APP)]);
    let s = spec("lapsed", "python3.11", "app.handler", code.path());
    assert_eq!(
        t.engine
            .provision(&s, 1, Duration::from_millis(2000))
            .await
            .unwrap(),
        1
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(t.engine.metrics().warm, 1, "still held");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let m = t.engine.metrics();
    assert_eq!((m.warm, m.provisioned), (0, 0), "{m:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn t24_insecure_mode_runs_without_isolation() {
    // Developer mode only: no namespaces, the function runs as root on the host.
    let t = engine_with(|c| c.insecure_no_isolation = true);
    let code = code(&[(
        "app.py",
        "import os\ndef handler(e, c):\n    return {'uid': os.getuid(), 'root': os.environ['LAMBDA_TASK_ROOT']}\n",
    )]);
    let s = spec("insecure", "python3.11", "app.handler", code.path());
    let o = invoke(&t.engine, &s, "{}").await;
    assert_ok(&o);
    let v = json(&o);
    assert_eq!(v["uid"], 0);
    assert_eq!(v["root"], code.path().display().to_string());
    assert!(invoke(&t.engine, &s, "{}").await.init_duration.is_none());
}

const LIMITS: &str = r#"
import os, resource
def handler(event, context):
    if event.get("hog"):
        x = bytearray(300 * 1024 * 1024)
    return {"uid": os.getuid(), "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
            "tmp_owner": os.stat("/tmp").st_uid, "tmp": sorted(os.listdir("/tmp"))}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn t25_cold_starts_use_pre_created_shells_with_the_functions_limits() {
    let t = engine(); // the default: a pool of shells
    let code = code(&[("app.py", LIMITS)]);
    let s = spec("shell-limits", "python3.11", "app.handler", code.path());
    let o = invoke(&t.engine, &s, "{}").await;
    assert_ok(&o);
    assert!(o.init_duration.is_some());
    assert_eq!(t.engine.metrics().cold_starts_from_shells, 1);
    let v = json(&o);
    assert_eq!(v["uid"], 993, "{v}");
    assert_eq!(v["nofile"], 1024, "{v}");
    assert_eq!(v["tmp_owner"], 993, "{v}");
    assert_eq!(v["tmp"], serde_json::json!(["lost+found"]), "{v}");
    // The 128 MB limit was written into the shell's cgroup before Init.
    let mut hog = spec("shell-hog", "python3.11", "app.handler", code.path());
    // On a busy host, reaching the limit at 128 MB's CPU share can outlast 10 s.
    hog.timeout = std::time::Duration::from_secs(60);
    let o = invoke(&t.engine, &hog, r#"{"hog": true}"#).await;
    assert_error(&o, "Runtime.OutOfMemory");
    assert_eq!(t.engine.metrics().cold_starts_from_shells, 2);
    assert!(o.max_memory_mb <= 128, "{}", o.log);
}

#[tokio::test(flavor = "multi_thread")]
async fn t26_without_a_pool_every_environment_is_made_from_scratch() {
    let t = engine_with(|c| c.shell_pool = 0);
    let code = code(&[("app.py", LIMITS)]);
    let s = spec("scratch", "python3.11", "app.handler", code.path());
    let o = invoke(&t.engine, &s, "{}").await;
    assert_ok(&o);
    let m = t.engine.metrics();
    assert_eq!(
        (m.cold_starts, m.cold_starts_from_shells, m.shells_ready),
        (1, 0, 0)
    );
    assert_eq!(json(&o)["uid"], 993);
}
