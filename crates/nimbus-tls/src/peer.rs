//! An accepted connection and who is on the other end.
//!
//! The identity is read from the client certificate once, when the handshake completes,
//! and tonic copies [`PeerInfo`] into every request's extensions (the `Connected` trait),
//! so checking a call costs a lookup, not a certificate parse.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::Identity;

/// What a request knows about the connection it came on.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub remote: Option<SocketAddr>,
    /// The verified certificate's identity; `None` on a plaintext connection.
    pub identity: Option<Identity>,
}

/// A connection accepted by [`crate::Transport::incoming`].
pub enum PeerStream {
    Tls(Box<TlsStream<TcpStream>>, PeerInfo),
    Plain(TcpStream, PeerInfo),
}

impl tonic::transport::server::Connected for PeerStream {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        match self {
            PeerStream::Tls(_, p) | PeerStream::Plain(_, p) => p.clone(),
        }
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PeerStream::Tls(s, _) => Pin::new(s.as_mut()).poll_read(cx, buf),
            PeerStream::Plain(s, _) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            PeerStream::Tls(s, _) => Pin::new(s.as_mut()).poll_write(cx, buf),
            PeerStream::Plain(s, _) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PeerStream::Tls(s, _) => Pin::new(s.as_mut()).poll_flush(cx),
            PeerStream::Plain(s, _) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PeerStream::Tls(s, _) => Pin::new(s.as_mut()).poll_shutdown(cx),
            PeerStream::Plain(s, _) => Pin::new(s).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            PeerStream::Tls(s, _) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
            PeerStream::Plain(s, _) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            PeerStream::Tls(s, _) => s.is_write_vectored(),
            PeerStream::Plain(s, _) => s.is_write_vectored(),
        }
    }
}
