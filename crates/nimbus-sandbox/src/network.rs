//! The environment's network namespace.
//!
//! Every environment gets its own network namespace, so it never shares a
//! socket space with the host or another environment. Two modes:
//!
//! * [`NetworkMode::Loopback`] — only `lo`. The function has no network at
//!   all; the host still serves the Runtime API to it, from a listening
//!   socket it creates *inside* the namespace (see [`bind_in_netns`]), so
//!   each environment can reach its own Runtime API and nothing else.
//! * [`NetworkMode::Nat`] — additionally a veth pair to the host with a /30
//!   per environment and nftables rules (installed once per host, see
//!   `nat.rs`): outbound TCP is masqueraded, inbound connections, UDP other
//!   than DNS to the configured resolver, TCP port 25, every address of the
//!   host itself (node control ports), and every private, shared, link-local
//!   (instance metadata), loopback, multicast and reserved destination (so
//!   every other cluster node) are dropped, except destinations the operator
//!   allows (`NatConfig::egress_allow`). The cluster's node addresses, wherever
//!   they are, are dropped first (`Jail::set_cluster_nodes`).

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::fd::AsRawFd;

use nix::errno::Errno;
use nix::sched::CloneFlags;

/// Errors wiring the network namespace.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// Opening or entering the namespace failed.
    #[error("cannot enter the environment's network namespace: {0}")]
    Setns(Errno),
    /// Bringing `lo` up failed.
    #[error("cannot bring up loopback in the environment: {0}")]
    Loopback(Errno),
    /// Binding the service socket failed.
    #[error("cannot bind {addr} inside the environment: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A command (`ip`, `nft`) failed.
    #[error("`{command}` failed: {detail}")]
    Command {
        /// The command line.
        command: String,
        /// Its stderr or spawn error.
        detail: String,
    },
    /// No free address in the configured pool.
    #[error("no free address left in the environment network pool")]
    PoolExhausted,
}

/// How much network an environment gets.
#[derive(Debug, Clone, Default)]
pub enum NetworkMode {
    /// Loopback only: no way out, no way in.
    #[default]
    Loopback,
    /// veth + NAT with the egress policy described in the module docs.
    Nat(crate::nat::NatConfig),
}

/// Creates a listening TCP socket on `127.0.0.1:port` *inside* the network
/// namespace `netns` (bringing `lo` up first). The host keeps the socket and
/// accepts on it; only processes in that namespace can connect.
pub fn bind_in_netns(netns: &File, port: u16) -> Result<TcpListener, NetworkError> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // A throw-away thread: setns(CLONE_NEWNET) changes only the
                // calling thread, and this one ends right after binding.
                nix::sched::setns(netns, CloneFlags::CLONE_NEWNET).map_err(NetworkError::Setns)?;
                loopback_up()?;
                let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
                TcpListener::bind(addr).map_err(|source| NetworkError::Bind { addr, source })
            })
            .join()
            .unwrap_or(Err(NetworkError::Setns(Errno::EIO)))
    })
}

/// `ip link set lo up` for the calling thread's network namespace.
fn loopback_up() -> Result<(), NetworkError> {
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(NetworkError::Loopback)?;
    // SAFETY: ifreq is plain old data; all-zero is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the flags into `req`, a valid ifreq naming "lo".
    Errno::result(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) })
        .map_err(NetworkError::Loopback)?;
    // SAFETY: the union member written by SIOCGIFFLAGS is ifru_flags.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads `req`, which is valid and names "lo".
    Errno::result(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) })
        .map_err(NetworkError::Loopback)?;
    Ok(())
}
