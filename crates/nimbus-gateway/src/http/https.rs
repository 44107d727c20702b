//! The Lambda API over HTTPS (`nimbus gateway --tls-cert --tls-key`): an axum listener
//! whose connections completed a TLS handshake (see `nimbus_tls::accept_public`).

use std::net::SocketAddr;
use std::sync::Arc;

use nimbus_tls::PublicStream;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

pub struct HttpsListener {
    accepted: mpsc::Receiver<(PublicStream, SocketAddr)>,
    local: SocketAddr,
}

impl HttpsListener {
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        Ok(Self {
            accepted: nimbus_tls::accept_public(listener, config),
            local,
        })
    }
}

impl axum::serve::Listener for HttpsListener {
    type Io = PublicStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (PublicStream, SocketAddr) {
        match self.accepted.recv().await {
            Some(c) => c,
            // The accept task ended (it never does while the listener lives).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// The peer address of an HTTPS connection, for handlers (a function URL event's
/// `sourceIp`); plain connections carry `ConnectInfo<SocketAddr>` instead.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, HttpsListener>>
    for PeerAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, HttpsListener>) -> Self {
        Self(*stream.remote_addr())
    }
}
