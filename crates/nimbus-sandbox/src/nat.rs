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

pub use ipnet::Ipv4Net;

use crate::network::NetworkError;

/// Host interfaces of environments are named `nmb<N>`; the firewall matches the prefix.
pub const HOST_IFACE_PREFIX: &str = "nmb";
/// The host-side interface of link `index` in the pool whose second octet is `b`.
fn iface_name(b: u8, index: u32) -> String {
    format!("{HOST_IFACE_PREFIX}{b}x{index}")
}

/// Largest link index: a /16 holds 16,384 /30 links.
const MAX_LINKS: u32 = 16_383;

/// Destinations no environment may reach unless the operator allows them: private
/// (RFC 1918), shared (RFC 6598, which also holds the environments' own links),
/// link-local (with the clouds' instance-metadata address 169.254.169.254), loopback,
/// "this network", multicast and reserved. Cluster nodes normally sit in these ranges;
/// whatever the network layout, a function cannot open a connection to them.
pub const DENIED_IPV4: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "224.0.0.0/4",
    "240.0.0.0/4",
];
/// The same for IPv6: unique-local, link-local, loopback and IPv4-mapped.
pub const DENIED_IPV6: &[&str] = &["fc00::/7", "fe80::/10", "::1/128", "::ffff:0:0/96"];

/// The nftables set of the cluster's node addresses (every metadata node, gateway and
/// worker the worker knows of), dropped before anything else is allowed: nodes on
/// public addresses are denied too, and no allow-list entry opens them.
const CLUSTER_SET: &str = "cluster_nodes";

/// Host-wide settings for [`crate::NetworkMode::Nat`].
#[derive(Debug, Clone)]
pub struct NatConfig {
    /// First two octets of the /16 the per-environment /30 links come from
    /// (default 100.96.0.0/16, in the RFC 6598 shared address space).
    pub pool: [u8; 2],
    /// The one DNS resolver environments may send port-53 traffic to.
    pub dns_resolver: Ipv4Addr,
    /// Destinations in [`DENIED_IPV4`] that environments may reach over TCP anyway (a
    /// database a function must use). Empty by default.
    pub egress_allow: Vec<Ipv4Net>,
}

impl Default for NatConfig {
    fn default() -> Self {
        NatConfig {
            pool: [100, 96],
            dns_resolver: Ipv4Addr::new(1, 1, 1, 1),
            egress_allow: Vec::new(),
        }
    }
}

/// The nftables rules of the egress policy, in order (see [`NatNetwork::install`]).
fn egress_rules(p: &str, config: &NatConfig) -> String {
    let dns = config.dns_resolver;
    let mut rules = format!(
        r#"    # The cluster's own nodes, wherever they are (kept current by the worker).
    iifname "{p}*" ip daddr @{CLUSTER_SET} drop
    # DNS only to the configured resolver (wherever it is).
    iifname "{p}*" ip daddr {dns} udp dport 53 accept
    iifname "{p}*" ip daddr {dns} tcp dport 53 accept
    iifname "{p}*" meta l4proto udp drop
    # No spam.
    iifname "{p}*" tcp dport 25 drop
"#
    );
    if !config.egress_allow.is_empty() {
        let allow: Vec<String> = config.egress_allow.iter().map(|n| n.to_string()).collect();
        rules.push_str(&format!(
            "    # The operator's allow-list.\n    iifname \"{p}*\" ip daddr {{ {} }} meta l4proto tcp accept\n",
            allow.join(", ")
        ));
    }
    rules.push_str(&format!(
        "    # Private, shared, link-local, loopback, multicast and reserved destinations:\n    # the cluster's nodes, other workers, instance metadata.\n    iifname \"{p}*\" ip daddr {{ {} }} drop\n    iifname \"{p}*\" ip6 daddr {{ {} }} drop\n",
        DENIED_IPV4.join(", "),
        DENIED_IPV6.join(", ")
    ));
    rules.push_str(&format!(
        "    iifname \"{p}*\" meta l4proto tcp accept\n    iifname \"{p}*\" drop\n"
    ));
    rules
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
        let p = HOST_IFACE_PREFIX;
        let egress = egress_rules(p, &config);
        // Our chains run before iptables' (priority -10 < 0) and drop what
        // the policy forbids; a drop is final in netfilter.
        let ruleset = format!(
            r#"table inet nimbus
delete table inet nimbus
table inet nimbus {{
  set {CLUSTER_SET} {{ type ipv4_addr; }}
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
{egress}  }}
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

    /// Replaces the addresses of the cluster's nodes that environments may not reach.
    pub fn set_cluster_nodes(&self, addrs: &[Ipv4Addr]) -> Result<(), NetworkError> {
        let mut script = format!("flush set inet nimbus {CLUSTER_SET}\n");
        if !addrs.is_empty() {
            let list: Vec<String> = addrs.iter().map(Ipv4Addr::to_string).collect();
            script.push_str(&format!(
                "add element inet nimbus {CLUSTER_SET} {{ {} }}\n",
                list.join(", ")
            ));
        }
        run("nft", &["-f", "-"], Some(&script))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allow_list_comes_before_the_denied_ranges_and_dns_before_both() {
        let mut config = NatConfig::default();
        let rules = egress_rules("nmb", &config);
        assert!(!rules.contains("allow-list"), "{rules}");
        config.egress_allow = vec!["10.1.2.3/32".parse().unwrap()];
        let rules = egress_rules("nmb", &config);
        let at = |needle: &str| {
            rules
                .find(needle)
                .unwrap_or_else(|| panic!("{needle} in {rules}"))
        };
        assert!(at("dport 53 accept") < at("10.1.2.3/32"));
        assert!(at("10.1.2.3/32") < at("169.254.0.0/16"));
        assert!(at("169.254.0.0/16") < at("meta l4proto tcp accept\n    iifname \"nmb*\" drop"));
        for range in DENIED_IPV4.iter().chain(DENIED_IPV6) {
            assert!(rules.contains(range), "{range}");
        }
    }
}
