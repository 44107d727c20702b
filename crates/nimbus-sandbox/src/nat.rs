//! veth + NAT networking (the policy is described in `network.rs`).
//!
//! Host-wide, once: IPv4 forwarding and one nftables table `inet nimbus`.
//! Per environment: a veth pair `nmb<N>` (host) / `eth0` (inside) on its own
//! /30 from the pool, and a `resolv.conf` naming the allowed resolver. The
//! pair disappears by itself when the environment's namespace dies.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};

use crate::network::NetworkError;

/// Host interfaces of environments are named `nmb<N>`; the firewall matches the prefix.
pub const HOST_IFACE_PREFIX: &str = "nmb";
/// The host-side interface of link `index` in the pool whose second octet is `b`.
fn iface_name(b: u8, index: u32) -> String {
    format!("{HOST_IFACE_PREFIX}{b}x{index}")
}

/// Largest link index: a /16 holds 16,384 /30 links.
const MAX_LINKS: u32 = 16_383;

/// Host-wide settings for [`crate::NetworkMode::Nat`].
#[derive(Debug, Clone)]
pub struct NatConfig {
    /// First two octets of the /16 the per-environment /30 links come from
    /// (default 100.96.0.0/16, in the RFC 6598 shared address space).
    pub pool: [u8; 2],
    /// The one DNS resolver environments may send port-53 traffic to.
    pub dns_resolver: Ipv4Addr,
}

impl Default for NatConfig {
    fn default() -> Self {
        NatConfig {
            pool: [100, 96],
            dns_resolver: Ipv4Addr::new(1, 1, 1, 1),
        }
    }
}

/// The host-wide NAT setup and the pool of links.
#[derive(Debug)]
pub struct NatNetwork {
    config: NatConfig,
    used: Arc<Mutex<BTreeSet<u32>>>,
}

/// One environment's link.
#[derive(Debug)]
pub struct NatLink {
    index: u32,
    /// Host-side interface, `nmb<B>x<N>` (B: the pool's second octet, so workers with
    /// different pools on one host never share a name).
    host_iface: String,
    /// Host end of the /30 (the environment's default gateway).
    pub host_addr: Ipv4Addr,
    /// The environment's own address.
    pub env_addr: Ipv4Addr,
    /// Generated `resolv.conf`, bound over `/etc/resolv.conf`.
    pub(crate) resolv_conf: PathBuf,
    used: Arc<Mutex<BTreeSet<u32>>>,
}

impl NatLink {
    pub(crate) fn release(self) {
        let _ = std::fs::remove_file(&self.resolv_conf);
        // The veth pair died with the namespace; make sure, then free the index.
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_iface])
            .stderr(Stdio::null())
            .status();
        self.used
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.index);
    }
}

fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<(), NetworkError> {
    let command = format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| NetworkError::Command {
            command: command.clone(),
            detail: e.to_string(),
        })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .map_err(|e| NetworkError::Command {
                command: command.clone(),
                detail: e.to_string(),
            })?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| NetworkError::Command {
            command: command.clone(),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(NetworkError::Command {
            command: format!("{command} <<< {}", stdin.unwrap_or("")),
            detail: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(())
}

impl NatNetwork {
    /// Enables forwarding and (re)installs the `inet nimbus` nftables table.
    pub fn install(config: NatConfig) -> Result<Self, NetworkError> {
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").map_err(|e| {
            NetworkError::Command {
                command: "sysctl net.ipv4.ip_forward=1".into(),
                detail: e.to_string(),
            }
        })?;
        let dns = config.dns_resolver;
        let p = HOST_IFACE_PREFIX;
        // Our chains run before iptables' (priority -10 < 0) and drop what
        // the policy forbids; a drop is final in netfilter.
        let ruleset = format!(
            r#"table inet nimbus
delete table inet nimbus
table inet nimbus {{
  chain input {{
    type filter hook input priority -10; policy accept;
    iifname "{p}*" ct state established,related accept
    # The host itself (control plane, metadata, node ports) is unreachable.
    iifname "{p}*" drop
  }}
  chain forward {{
    type filter hook forward priority -10; policy accept;
    oifname "{p}*" ct state established,related accept
    # No inbound connections, no environment-to-environment traffic.
    oifname "{p}*" drop
    # DNS only to the configured resolver.
    iifname "{p}*" ip daddr {dns} udp dport 53 accept
    iifname "{p}*" ip daddr {dns} tcp dport 53 accept
    iifname "{p}*" meta l4proto udp drop
    # No spam.
    iifname "{p}*" tcp dport 25 drop
    iifname "{p}*" meta l4proto tcp accept
    iifname "{p}*" drop
  }}
  chain postrouting {{
    type nat hook postrouting priority 100; policy accept;
    iifname "{p}*" oifname != "{p}*" masquerade
  }}
}}
"#
        );
        run("nft", &["-f", "-"], Some(&ruleset))?;
        // Hosts with Docker set iptables' FORWARD policy to DROP; let our
        // (already filtered) traffic through it. Idempotent: -C before -I.
        for rule in [
            vec!["FORWARD", "-i", "nmb+", "-j", "ACCEPT"],
            vec!["FORWARD", "-o", "nmb+", "-j", "ACCEPT"],
        ] {
            let mut check = vec!["-C"];
            check.extend(&rule);
            if run("iptables", &check, None).is_err() {
                let mut insert = vec!["-I"];
                insert.extend(&rule);
                let _ = run("iptables", &insert, None);
            }
        }
        Ok(NatNetwork {
            config,
            used: Arc::new(Mutex::new(BTreeSet::new())),
        })
    }

    /// Reserves a link for environment `id`.
    pub(crate) fn allocate(&self, id: &str, state_dir: &Path) -> Result<NatLink, NetworkError> {
        let [a, b] = self.config.pool;
        let index = {
            let mut used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
            // Skip links that exist on the host even if this pool did not
            // create them (another jail in the same process, a crashed worker).
            // Several workers on one host must use different pools (--nat-pool): names
            // and addresses derive from the pool, so theirs never collide.
            let index = (1..=MAX_LINKS)
                .find(|i| {
                    !used.contains(i)
                        && !Path::new(&format!("/sys/class/net/{}", iface_name(b, *i))).exists()
                })
                .ok_or(NetworkError::PoolExhausted)?;
            used.insert(index);
            index
        };

        let base = u32::from(Ipv4Addr::new(a, b, 0, 0)) + index * 4;
        let dir = state_dir.join("net");
        let _ = std::fs::create_dir_all(&dir);
        let resolv_conf = dir.join(format!("{id}.resolv.conf"));
        let link = NatLink {
            index,
            host_iface: iface_name(b, index),
            host_addr: Ipv4Addr::from(base + 1),
            env_addr: Ipv4Addr::from(base + 2),
            resolv_conf,
            used: self.used.clone(),
        };
        std::fs::write(
            &link.resolv_conf,
            format!("nameserver {}\n", self.config.dns_resolver),
        )
        .map_err(|e| NetworkError::Command {
            command: "write resolv.conf".into(),
            detail: e.to_string(),
        })?;
        Ok(link)
    }

    /// Creates the veth pair and moves one end into the namespace of `pid`.
    pub(crate) fn connect(&self, link: &NatLink, pid: i32) -> Result<(), NetworkError> {
        let host = link.host_iface.clone();
        // The peer lives in the host namespace only until it is moved and renamed eth0.
        let peer = format!("nmp{}", &host[HOST_IFACE_PREFIX.len()..]);
        let _ = Command::new("ip")
            .args(["link", "del", &host])
            .stderr(Stdio::null())
            .status();
        run(
            "ip",
            &["-batch", "-"],
            Some(&format!(
                "link add {host} type veth peer name {peer}\n\
                 link set {peer} netns {pid}\n\
                 addr add {}/30 dev {host}\n\
                 link set {host} up\n",
                link.host_addr
            )),
        )?;
        let pid = pid.to_string();
        run(
            "nsenter",
            &["-t", &pid, "-n", "ip", "-batch", "-"],
            Some(&format!(
                "link set {peer} name eth0\n\
                 addr add {}/30 dev eth0\n\
                 link set eth0 up\n\
                 link set lo up\n\
                 route add default via {}\n",
                link.env_addr, link.host_addr
            )),
        )
    }
}
