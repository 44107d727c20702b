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

/// A network namespace of the test's own with a TCP server in it, reached from the host
/// over a veth pair (198.51.100.0/24, TEST-NET-2: nothing else here uses it).
struct FarHost {
    server: std::process::Child,
}

const FAR_NS: &str = "nmdevfar";
const FAR_IP: &str = "198.51.100.2";

impl FarHost {
    async fn start() -> Self {
        let sh = |cmd: &str| {
            let ok = std::process::Command::new("sh")
                .args(["-c", cmd])
                .status()
                .unwrap()
                .success();
            assert!(ok, "{cmd}");
        };
        sh(&format!(
            "ip netns del {FAR_NS} 2>/dev/null; ip link del nmdevfar0 2>/dev/null; \
             ip netns add {FAR_NS} && \
             ip link add nmdevfar0 type veth peer name eth0 netns {FAR_NS} && \
             ip addr add 198.51.100.1/24 dev nmdevfar0 && ip link set nmdevfar0 up && \
             ip -n {FAR_NS} addr add {FAR_IP}/24 dev eth0 && \
             ip -n {FAR_NS} link set eth0 up && ip -n {FAR_NS} link set lo up && \
             ip -n {FAR_NS} route add default via 198.51.100.1"
        ));
        // Answers every connection with a line naming where it runs.
        let server = std::process::Command::new("ip")
            .args(["netns", "exec", FAR_NS, "/usr/bin/python3", "-c"])
            .arg(format!(
                "import socket\n\
                 s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
                 s.bind(('{FAR_IP}', 7077)); s.listen()\n\
                 while True:\n    c, _ = s.accept(); c.sendall(b'far-host\\n'); c.close()\n"
            ))
            .spawn()
            .unwrap();
        // Ready once the host reaches it (through the veth, as the NAT will).
        for _ in 0..100 {
            if tokio::net::TcpStream::connect((FAR_IP, 7077)).await.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Self { server }
    }
}

impl Drop for FarHost {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = std::process::Command::new("sh")
            .args([
                "-c",
                &format!("ip netns del {FAR_NS}; ip link del nmdevfar0 2>/dev/null"),
            ])
            .status();
    }
}

const FETCH: &str = r#"
import socket
def handler(event, context):
    host, port = event["connect"]
    with socket.create_connection((host, port), timeout=5) as c:
        return {"got": c.recv(64).decode().strip()}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_under_dev_reaches_a_tcp_server_in_another_namespace() {
    let _one_at_a_time = LOCK.lock().await;
    let _far = FarHost::start().await;
    let dev = Dev::start(&[]).await;
    dev.create_python_function("pid", FETCH).await;
    let out = invoke(&dev, &format!(r#"{{"connect": ["{FAR_IP}", 7077]}}"#)).await;
    assert_eq!(out["got"], "far-host", "{out}\n{}", dev.log());
}
