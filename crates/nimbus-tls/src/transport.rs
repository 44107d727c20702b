//! How a node listens and dials.
//!
//! With TLS, the listener hands tonic only connections whose client certificate the
//! cluster CA signed (handshakes run in their own tasks, so a slow or silent client
//! cannot hold up the accept loop), and every dialled connection checks that the server
//! holds the role the caller expects (a gateway talks to workers only if they present a
//! worker's certificate). Each new connection uses the material loaded last, so
//! certificates rotate without a restart: `reload` on SIGHUP or when a file changes;
//! open connections keep the certificate they were made with.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use hyper_util::rt::TokioIo;
use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::client::TlsStream as ClientTlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::http::Uri;
use tonic::transport::{Channel, Endpoint};

use crate::material::{Material, TlsDir};
use crate::peer::{PeerInfo, PeerStream};
use crate::{Identity, Role, TlsError};

/// How long a client has to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the TLS files are checked for changes.
const RELOAD_POLL: Duration = Duration::from_secs(2);

/// A node's loaded TLS material, replaced whole on reload.
pub struct Tls {
    dir: TlsDir,
    role: Option<Role>,
    current: RwLock<Arc<Material>>,
}

impl Tls {
    /// Loads `dir` for a node of `role`.
    pub fn load(dir: impl Into<PathBuf>, role: Role) -> Result<Arc<Self>, TlsError> {
        Self::load_as(dir, Some(role))
    }

    /// Loads `dir` whatever role its certificate names: for calls every role may make
    /// (`nimbus cluster status` as a container's health check, with the node's own
    /// certificate).
    pub fn load_any(dir: impl Into<PathBuf>) -> Result<Arc<Self>, TlsError> {
        Self::load_as(dir, None)
    }

    fn load_as(dir: impl Into<PathBuf>, role: Option<Role>) -> Result<Arc<Self>, TlsError> {
        let dir = TlsDir::new(dir);
        let material = Material::load(&dir, role)?;
        Ok(Arc::new(Self {
            dir,
            role,
            current: RwLock::new(Arc::new(material)),
        }))
    }

    fn current(&self) -> Arc<Material> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn identity(&self) -> Identity {
        self.current().identity.clone()
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir.0
    }

    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.current().server.clone()
    }

    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.current().client.clone()
    }

    /// Loads the directory again; on failure the material in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let material = Material::load(&self.dir, self.role)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(material);
        Ok(())
    }

    /// Reloads on SIGHUP and whenever a file's modification time changes.
    pub fn spawn_reloader(self: &Arc<Self>) {
        let tls = Arc::downgrade(self);
        let files = self.dir.files();
        tokio::spawn(async move {
            let mut hup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            let mut seen = stamps(&files);
            let mut tick = tokio::time::interval(RELOAD_POLL);
            loop {
                let why = tokio::select! {
                    _ = tick.tick() => {
                        let now = stamps(&files);
                        if now == seen { continue; }
                        // Let a writer finish the other files of the set.
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        seen = stamps(&files);
                        "files changed"
                    }
                    Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => "SIGHUP",
                };
                let Some(tls) = tls.upgrade() else { return };
                match tls.reload() {
                    Ok(()) => tracing::info!(
                        dir = %tls.dir.0.display(),
                        identity = %tls.identity(),
                        "TLS certificates reloaded ({why})"
                    ),
                    Err(e) => tracing::warn!(
                        dir = %tls.dir.0.display(),
                        "TLS reload ({why}) failed, keeping the certificates in use: {e}"
                    ),
                }
            }
        });
    }
}

fn stamps(files: &[PathBuf; 3]) -> Vec<Option<SystemTime>> {
    files
        .iter()
        .map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
        .collect()
}

/// The next connection on `listener`, with Nagle off (small Raft and API messages would
/// otherwise wait ~40 ms); `None` once nobody takes connections from `tx` any more.
async fn next_tcp<T>(
    listener: &TcpListener,
    tx: &mpsc::Sender<T>,
) -> Option<(TcpStream, std::net::SocketAddr)> {
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((tcp, remote)) => {
                    let _ = tcp.set_nodelay(true);
                    return Some((tcp, remote));
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = tx.closed() => return None,
        }
    }
}

/// How a node talks to the rest of the cluster.
#[derive(Clone)]
pub enum Transport {
    /// Mutual TLS with the cluster CA.
    Tls(Arc<Tls>),
    /// No TLS, no authentication: only when an operator passed `--insecure-plaintext`.
    Plaintext,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Tls(t) => write!(f, "Tls({})", t.identity()),
            Transport::Plaintext => f.write_str("Plaintext"),
        }
    }
}

impl Transport {
    pub fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_))
    }

    /// Connections accepted on `listener`, as tonic's `serve_with_incoming` takes them.
    pub fn incoming(&self, listener: TcpListener) -> ReceiverStream<io::Result<PeerStream>> {
        let (tx, rx) = mpsc::channel(64);
        let transport = self.clone();
        tokio::spawn(async move {
            while let Some((tcp, remote)) = next_tcp(&listener, &tx).await {
                match &transport {
                    Transport::Plaintext => {
                        let info = PeerInfo {
                            remote: Some(remote),
                            identity: None,
                        };
                        if tx.send(Ok(PeerStream::Plain(tcp, info))).await.is_err() {
                            return;
                        }
                    }
                    Transport::Tls(tls) => {
                        let acceptor = TlsAcceptor::from(tls.server_config());
                        let tx = tx.clone();
                        tokio::spawn(async move {
                            let stream =
                                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
                                    .await
                                {
                                    Ok(Ok(s)) => s,
                                    Ok(Err(e)) => {
                                        tracing::info!(%remote, "TLS handshake refused: {e}");
                                        return;
                                    }
                                    Err(_) => {
                                        tracing::info!(%remote, "TLS handshake timed out");
                                        return;
                                    }
                                };
                            let identity = match Identity::of_peer(stream.get_ref().1) {
                                Ok(id) => id,
                                Err(e) => {
                                    tracing::info!(%remote, "peer certificate refused: {e}");
                                    return;
                                }
                            };
                            let info = PeerInfo {
                                remote: Some(remote),
                                identity: Some(identity),
                            };
                            let _ = tx.send(Ok(PeerStream::Tls(Box::new(stream), info))).await;
                        });
                    }
                }
            }
        });
        ReceiverStream::new(rx)
    }

    /// A lazily connecting channel to `addr` (`host:port`), which must be served by a
    /// node of role `server`. `tune` sets timeouts and keep-alives on the endpoint.
    pub fn channel(
        &self,
        addr: &str,
        server: Role,
        tune: impl FnOnce(Endpoint) -> Endpoint,
    ) -> Result<Channel, TlsError> {
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| TlsError::Invalid(format!("address {addr:?}: {e}")))?;
        let endpoint = tune(endpoint);
        Ok(match self {
            Transport::Plaintext => endpoint.connect_lazy(),
            Transport::Tls(tls) => endpoint.connect_with_connector_lazy(Connector {
                tls: tls.clone(),
                server,
            }),
        })
    }
}

/// Dials TCP, then TLS with the current client material, then checks the server's role.
#[derive(Clone)]
struct Connector {
    tls: Arc<Tls>,
    server: Role,
}

type Connecting =
    Pin<Box<dyn Future<Output = io::Result<TokioIo<ClientTlsStream<TcpStream>>>> + Send>>;

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<ClientTlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Connecting {
        let connector = TlsConnector::from(self.tls.client_config());
        let expect = self.server;
        Box::pin(async move {
            let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidInput, m);
            let host = uri
                .host()
                .ok_or_else(|| invalid(format!("{uri}: no host")))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri
                .port_u16()
                .ok_or_else(|| invalid(format!("{uri}: no port")))?;
            // The role's name, not the host dialled: see `Role::server_name`.
            let name = ServerName::try_from(expect.server_name())
                .map_err(|e| invalid(format!("{expect}: {e}")))?;
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            let _ = tcp.set_nodelay(true);
            let stream = connector.connect(name, tcp).await?;
            let peer = Identity::of_peer(stream.get_ref().1)
                .map_err(|e| invalid(format!("{host}:{port}: {e}")))?;
            if peer.role != expect {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("{host}:{port} is {peer}, not a {expect} node"),
                ));
            }
            Ok(TokioIo::new(stream))
        })
    }
}

/// A connection accepted on a public HTTPS listener.
pub type PublicStream = tokio_rustls::server::TlsStream<TcpStream>;

/// Accepts TLS connections on a public listener (the gateway's HTTPS port, no client
/// certificates) and hands over those whose handshake completed; handshakes run in their
/// own tasks, so a client that never finishes one holds up nobody else.
pub fn accept_public(
    listener: TcpListener,
    config: Arc<ServerConfig>,
) -> mpsc::Receiver<(PublicStream, std::net::SocketAddr)> {
    let (tx, rx) = mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        while let Some((tcp, remote)) = next_tcp(&listener, &tx).await {
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => {
                        let _ = tx.send((s, remote)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%remote, "TLS handshake failed: {e}"),
                    Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                }
            });
        }
    });
    rx
}
