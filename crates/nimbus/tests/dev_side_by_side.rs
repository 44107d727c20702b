//! Two `nimbus dev` on one host never touch each other's environments (issue 14): each
//! names its cgroup parent and NAT pool after its data dir, so the second one's start
//! (which reclaims environments its own predecessor left) finds none of the first's.
//! Functions under `nimbus dev` have the worker's NAT network, as on Lambda.

mod common;

use common::dev::{Dev, LOCK};

const PID: &str = r#"
import os, socket
# Drawn once per environment (a pid could repeat: each one has its own pid namespace).
TOKEN = os.urandom(8).hex()
def handler(event, context):
    out = {"pid": TOKEN}
    if "connect" in event:
        host, port = event["connect"]
        try:
            socket.create_connection((host, port), timeout=3).close()
            out["reached"] = True
        except OSError as e:
            out["reached"] = str(e)
    return out
"#;

async fn invoke(dev: &Dev, payload: &str) -> serde_json::Value {
    let reply = dev
        .client()
        .await
        .invoke("pid", payload.as_bytes(), &[])
        .await
        .unwrap();
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert!(
        reply.header("x-amz-function-error").is_none(),
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    serde_json::from_slice(&reply.body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_dev_processes_keep_their_environments_apart() {
    let _one_at_a_time = LOCK.lock().await;
    let first = Dev::start(&[]).await;
    first.create_python_function("pid", PID).await;
    let warm = invoke(&first, "{}").await["pid"].clone();

    // A second one on the same host, started while the first has a warm environment.
    let second = Dev::start(&[]).await;
    second.create_python_function("pid", PID).await;
    let other = invoke(&second, "{}").await["pid"].clone();

    // The first's environment survived the second's start: the same process answers.
    assert_eq!(invoke(&first, "{}").await["pid"], warm, "{}", first.log());
    assert_eq!(invoke(&second, "{}").await["pid"], other);

    // Outbound network through NAT: a public address (TEST-NET-3, which nothing serves)
    // is attempted and times out, where a loopback-only environment has no route at all.
    let out = invoke(&first, r#"{"connect": ["203.0.113.1", 9]}"#).await;
    let reached = out["reached"].as_str().unwrap_or_default().to_string();
    assert!(
        !reached.contains("Network is unreachable"),
        "no route out of the environment: {out}"
    );
}
