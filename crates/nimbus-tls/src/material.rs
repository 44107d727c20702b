//! A node's TLS directory, loaded into rustls configurations for both ends of a
//! connection: the server requires a client certificate from the cluster CA; the client
//! presents its own and verifies the server's name against the address it dialled.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::{Identity, Role, TlsError};

pub const CA_CERT: &str = "ca.pem";
pub const CERT: &str = "cert.pem";
pub const KEY: &str = "key.pem";

/// A directory holding `ca.pem`, `cert.pem` and `key.pem`.
#[derive(Debug, Clone)]
pub struct TlsDir(pub PathBuf);

impl TlsDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self(dir.into())
    }

    pub fn files(&self) -> [PathBuf; 3] {
        [CA_CERT, CERT, KEY].map(|f| self.0.join(f))
    }
}

/// One load of a TLS directory.
pub struct Material {
    pub identity: Identity,
    pub server: Arc<ServerConfig>,
    pub client: Arc<ClientConfig>,
}

/// The ring provider: it builds in seconds with the C compiler every machine here has.
/// rustls 0.23.48 deprecates it because it has no post-quantum key exchange
/// (X25519MLKEM768); that needs aws-lc-rs, a much larger C build. Worth switching once
/// a harvest-now-decrypt-later adversary is in the threat model.
#[allow(deprecated)]
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Material {
    /// Loads `dir`; its certificate must name `role` when given (a metadata node started
    /// with a worker's certificate refuses to start rather than be refused by every peer).
    pub fn load(dir: &TlsDir, role: Option<Role>) -> Result<Self, TlsError> {
        let [ca_path, cert_path, key_path] = dir.files();
        let ca = certs(&ca_path)?;
        let chain = certs(&cert_path)?;
        let key = private_key(&key_path)?;
        let identity = Identity::from_cert_der(&chain[0])
            .map_err(|e| TlsError::Invalid(format!("{}: {e}", cert_path.display())))?;
        if let Some(role) = role.filter(|r| *r != identity.role) {
            return Err(TlsError::Invalid(format!(
                "{} is a certificate for role {}, not {role} (issue one with `nimbus cert issue --role {role}`)",
                cert_path.display(),
                identity.role
            )));
        }
        let mut roots = RootCertStore::empty();
        for c in ca {
            roots.add(c)?;
        }
        let roots = Arc::new(roots);
        let provider = provider();
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| TlsError::Invalid(format!("client verifier: {e}")))?;
        // TLS 1.3 only between nodes: every node runs this same code.
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())?;
        server.alpn_protocols = vec![b"h2".to_vec()];
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)?;
        client.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Self {
            identity,
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| TlsError::Invalid(format!("{}: {e}", path.display())))
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Invalid(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(TlsError::Invalid(format!(
            "{}: no certificate in the file",
            path.display()
        )));
    }
    Ok(certs)
}

/// The public listener's configuration (the gateway's HTTPS port): a certificate and key
/// from anywhere (a public CA's, typically), no client certificates, TLS 1.2 and 1.3.
pub fn public_server(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certs(cert)?;
    let key = private_key(key)?;
    let mut server = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    // The Lambda API is served over HTTP/1.1 (as AWS's endpoints are to the SDKs).
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(server))
}
