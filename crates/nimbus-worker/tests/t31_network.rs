//! The engine in NAT network mode: the Runtime API still works (it lives on
//! the environment's loopback), outbound TCP reaches "the internet" (a
//! network namespace this test creates), the node's own ports do not.
mod common;
use common::*;

use std::process::Command;

struct Outside(String);

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", "ntout1"]).status();
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

const APP: &str = r#"
import socket
def tcp(addr, port):
    s = socket.socket(); s.settimeout(1.5)
    try:
        s.connect((addr, port)); return "open:" + s.recv(64).decode().strip()
    except OSError:
        return "blocked"
    finally:
        s.close()
def handler(event, context):
    gw = open("/proc/net/route").read().split("\n")[1].split()[2]
    gw = ".".join(str(int(gw[i:i + 2], 16)) for i in (6, 4, 2, 0))
    return {"internet": tcp("198.51.100.2", 8081), "node": tcp(gw, event["node_port"]),
            "resolv": open("/etc/resolv.conf").read().strip()}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn t31_nat_mode_through_the_engine() {
    let name = format!("nimbus-test-out1-{}", std::process::id());
    let outside = Outside(name.clone());
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ip link del ntout1 2>/dev/null; ip netns add {name} && \
             ip link add ntout1 type veth peer name eth0 netns {name} && \
             ip addr add 198.51.100.1/30 dev ntout1 && ip link set ntout1 up && \
             ip -n {name} addr add 198.51.100.2/30 dev eth0 && ip -n {name} link set eth0 up"
        ))
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let mut server = Command::new("ip")
        .args(["netns", "exec", &name, "/usr/bin/python3", "-c"])
        .arg("import socket\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('0.0.0.0', 8081)); s.listen(); print('ready', flush=True)\nwhile True:\n  c,_=s.accept(); c.sendall(b'internet\\n'); c.close()")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");

    let node = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let node_port = node.local_addr().unwrap().port();
    let t = engine_with(|c| {
        c.network = nimbus_worker::NetworkMode::Nat(nimbus_worker::NatConfig {
            pool: [100, 97],
            dns_resolver: "198.51.100.2".parse().unwrap(),
            egress_allow: vec![],
        })
    });
    let code = code(&[("app.py", APP)]);
    let o = invoke(
        &t.engine,
        &spec("nat", "python3.11", "app.handler", code.path()),
        &format!(r#"{{"node_port":{node_port}}}"#),
    )
    .await;
    let _ = server.kill();
    let _ = server.wait();
    drop(outside);
    assert_ok(&o);
    let v = json(&o);
    assert_eq!(v["internet"], "open:internet", "{v}");
    assert_eq!(v["node"], "blocked", "{v}");
    assert_eq!(v["resolv"], "nameserver 198.51.100.2", "{v}");
}
