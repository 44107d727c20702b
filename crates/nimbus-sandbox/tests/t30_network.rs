//! NAT mode: outbound TCP works; inbound, UDP (except DNS to the resolver),
//! TCP port 25, the host's own ports and every private destination are blocked,
//! the last unless the operator's allow-list names it. The "internet" (on a
//! documentation address, which counts as public) and a "private host" (on an
//! RFC 1918 address, like a metadata node or a database) are network namespaces
//! this test creates, with real listeners in them.
mod common;
use common::*;

use std::net::Ipv4Addr;
use std::process::Command;

use nimbus_sandbox::{Jail, JailConfig, NatConfig, NetworkMode};

const OUTSIDE_HOST: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const OUTSIDE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
const PRIVATE_HOST: Ipv4Addr = Ipv4Addr::new(10, 254, 77, 1);
const PRIVATE: Ipv4Addr = Ipv4Addr::new(10, 254, 77, 2);

/// A network namespace standing in for the internet, with servers in it.
struct Outside {
    name: String,
    iface: String,
    servers: std::process::Child,
}

const SERVERS: &str = r#"
import socket, threading, sys
def tcp(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen()
    while True:
        c, _ = s.accept(); c.sendall(b"hello-%d\n" % port); c.close()
def udp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", port))
    while True:
        data, addr = s.recvfrom(512); s.sendto(b"echo:" + data, addr)
for f, p in [(tcp, 8080), (tcp, 25), (udp, 53), (udp, 5353)]:
    threading.Thread(target=f, args=(p,), daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"#;

fn sh(cmd: &str) {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .status()
        .unwrap()
        .success();
    assert!(ok, "{cmd}");
}

impl Outside {
    fn new() -> Self {
        Self::at("out", "ntout0", OUTSIDE_HOST, OUTSIDE)
    }

    fn private() -> Self {
        Self::at("priv", "ntpriv0", PRIVATE_HOST, PRIVATE)
    }

    fn at(tag: &str, iface: &str, host: Ipv4Addr, addr: Ipv4Addr) -> Self {
        let name = format!("nimbus-test-{tag}-{}", std::process::id());
        for args in [vec!["netns", "del", &name], vec!["link", "del", iface]] {
            let _ = Command::new("ip")
                .args(args)
                .stderr(std::process::Stdio::null())
                .status();
        }
        sh(&format!(
            "ip netns add {name} && ip link add {iface} type veth peer name eth0 netns {name} && \
             ip addr add {host}/30 dev {iface} && ip link set {iface} up && \
             ip -n {name} addr add {addr}/30 dev eth0 && ip -n {name} link set eth0 up && \
             ip -n {name} link set lo up"
        ));
        let mut servers = Command::new("ip")
            .args(["netns", "exec", &name, "/usr/bin/python3", "-c", SERVERS])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(servers.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
        Outside {
            name,
            iface: iface.to_string(),
            servers,
        }
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = self.servers.kill();
        let _ = self.servers.wait();
        let _ = Command::new("ip")
            .args(["link", "del", &self.iface])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

const PROBE: &str = r#"exec /usr/bin/python3 -c '
import socket, sys, os
OUT = sys.argv[1]; HOSTPORT = int(sys.argv[2]); GW = sys.argv[3]
def tcp(addr, port):
    s = socket.socket(); s.settimeout(1.5)
    try:
        s.connect((addr, port)); return "open:" + s.recv(64).decode().strip()
    except OSError as e:
        return "blocked"
    finally:
        s.close()
def udp(addr, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1.5)
    try:
        s.sendto(b"ping", (addr, port)); return "open:" + s.recvfrom(64)[0].decode()
    except OSError:
        return "blocked"
    finally:
        s.close()
print("tcp8080", tcp(OUT, 8080))
print("tcp25", tcp(OUT, 25))
print("udp5353", udp(OUT, 5353))
print("dns53", udp(OUT, 53))
print("hostport_gw", tcp(GW, HOSTPORT))
print("hostport_outside_ip", tcp(sys.argv[4], HOSTPORT))
print("private", tcp(sys.argv[5], 8080))
print("metadata_service", tcp("169.254.169.254", 80))
print("resolv", open("/etc/resolv.conf").read().strip())
# Serve one inbound connection attempt for the test to try.
srv = socket.socket(); srv.bind(("0.0.0.0", 7000)); srv.listen(); srv.settimeout(4)
print("listening", flush=True)
try:
    srv.accept(); print("inbound accepted")
except OSError:
    print("inbound none")
' "$@""#;

#[test]
fn t30_nat_egress_policy() {
    let outside = Outside::new();
    let private = Outside::private();
    // From scratch, then from a pre-created shell (its veth pair wired ahead); the
    // private host only when the operator allows it.
    for (shell_pool, allow_private) in [(0, false), (1, false), (0, true)] {
        nat_egress_policy(&outside, shell_pool, allow_private, false);
    }
    // The "internet" host made a cluster node: unreachable although its address is public.
    nat_egress_policy(&outside, 0, true, true);
    drop(outside);
    drop(private);
}

fn nat_egress_policy(outside: &Outside, shell_pool: usize, allow_private: bool, node: bool) {
    let jail = Jail::new(JailConfig {
        state_dir: state_dir(),
        cgroup_parent: "nimbus-test".into(),
        network: NetworkMode::Nat(NatConfig {
            pool: [100, 96],
            dns_resolver: OUTSIDE,
            egress_allow: if allow_private {
                vec![format!("{PRIVATE}/32").parse().unwrap()]
            } else {
                vec![]
            },
        }),
        shell_pool,
        ..JailConfig::default()
    })
    .expect("jail with NAT");
    jail.set_cluster_nodes(if node { &[OUTSIDE] } else { &[] })
        .expect("cluster nodes set");
    jail.keep_shells_ready(None, 64);
    assert!(jail.wait_for_shells(None, 64, shell_pool, std::time::Duration::from_secs(20)));
    // A node control port on the host.
    let control = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = control.local_addr().unwrap().port();

    let code = code_dir(&[]);
    let (r, w) = nix::unistd::pipe().unwrap();
    // The probe finds its gateway (the host end of its veth) in /proc/net/route.
    let script = format!(
        "GW=$(awk '$2 == \"00000000\" {{ printf \"%d.%d.%d.%d\", \"0x\" substr($3,7,2), \"0x\" substr($3,5,2), \"0x\" substr($3,3,2), \"0x\" substr($3,1,2) }}' /proc/net/route); \
         set -- {OUTSIDE} {port} $GW {OUTSIDE_HOST} {PRIVATE}; {PROBE}"
    );
    let s = spec(&unique_id("net"), code.path(), &script, w);
    let prepared = jail.prepare(s).unwrap();
    assert_eq!(prepared.pooled(), shell_pool > 0);
    let mut sandbox = prepared.start().unwrap();
    let env_addr = sandbox.network_address().expect("NAT address");

    use std::io::BufRead;
    let mut reader = std::io::BufReader::new(std::fs::File::from(r));
    let mut out = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        out.push_str(&line);
        if line.trim() == "listening" {
            // Inbound from "the internet" to the environment must not connect.
            let inbound = Command::new("ip")
                .args(["netns", "exec", &outside.name, "/usr/bin/python3", "-c"])
                .arg(format!(
                    "import socket; s=socket.socket(); s.settimeout(1.5)\ntry:\n  s.connect(('{env_addr}', 7000)); print('connected')\nexcept OSError: print('refused')"
                ))
                .output()
                .unwrap();
            out.push_str(&format!(
                "from_outside {}",
                String::from_utf8_lossy(&inbound.stdout)
            ));
        }
    }
    sandbox.wait().unwrap();
    println!("{out}");
    let has = |needle: &str| assert!(out.contains(needle), "expected {needle:?} in:\n{out}");
    if node {
        has("tcp8080 blocked");
        has("dns53 blocked");
    } else {
        has("tcp8080 open:hello-8080");
        has("dns53 open:echo:ping");
    }
    has("tcp25 blocked");
    has("udp5353 blocked");
    has("hostport_gw blocked");
    has("hostport_outside_ip blocked");
    has(&format!("resolv nameserver {OUTSIDE}"));
    has("from_outside refused");
    has("inbound none");
    // A private host (where cluster nodes and databases live) only when allowed; the
    // instance-metadata address never (nothing listens there in this test, so this
    // only shows the attempt fails, the rule itself is checked in `nat`'s unit test).
    if allow_private {
        has("private open:hello-8080");
    } else {
        has("private blocked");
    }
    has("metadata_service blocked");
}
