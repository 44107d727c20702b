//! Cluster identity for Nimbus (issue 13): every node-to-node connection is mutual TLS,
//! and every RPC is checked against the role in the caller's certificate.
//!
//! - [`role`]: the roles (`meta`, `gateway`, `worker`, `admin`) and how a certificate
//!   names one.
//! - [`issue`]: the cluster CA and role certificates, minted by the `nimbus` binary
//!   itself (`nimbus cert init-ca` / `nimbus cert issue`).
//! - [`material`]: a TLS directory (`ca.pem`, `cert.pem`, `key.pem`) loaded into rustls
//!   server and client configurations.
//! - [`transport`]: how a node listens and dials, TLS or (only when the operator says
//!   so) plaintext, with certificates reloaded on SIGHUP or when the files change.
//! - [`peer`]: the accepted connection and the verified identity tonic hands to each
//!   request.
//! - [`authority`]: a tower layer that refuses any RPC the caller's role may not make.

pub mod authority;
pub mod issue;
pub mod material;
pub mod peer;
pub mod role;
pub mod transport;

pub use authority::{caller, AuthorityLayer, Policy};
pub use material::TlsDir;
pub use peer::{PeerInfo, PeerStream};
pub use role::{speaks_for_worker, worker_id, Identity, Role};
pub use transport::{accept_public, PublicStream, Tls, Transport};

/// Why TLS material could not be made, loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

impl TlsError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        TlsError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
