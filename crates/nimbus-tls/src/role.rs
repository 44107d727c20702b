//! Who a certificate speaks for: a role and a name, carried as a SPIFFE-style URI in the
//! certificate's subject alternative names (`spiffe://nimbus/<role>/<name>`).
//!
//! A URI SAN rather than the common name: it is the standard place for a workload
//! identity (SPIFFE X.509-SVIDs put it there), it cannot be confused with the DNS names
//! and addresses the same certificate is valid for, and the CA signs it like every SAN.

use std::fmt;
use std::str::FromStr;

use x509_parser::extensions::GeneralName;

use crate::TlsError;

/// The URI prefix of a Nimbus identity.
const SCHEME: &str = "spiffe://nimbus/";

/// What a node (or the CLI) is allowed to do in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// A metadata node: Raft peer and server of the metadata API.
    Meta,
    /// A gateway: reads and writes function metadata, leases, calls workers.
    Gateway,
    /// A worker: registers itself, fetches code it is asked to run.
    Worker,
    /// The operator's CLI: accounts, keys, membership, backups.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Meta, Role::Gateway, Role::Worker, Role::Admin];

    /// The DNS name every certificate of this role carries and every client verifies
    /// instead of the address it dialled: nodes are known by role, not by host (a
    /// worker's address is whatever its pod or container got), as with SPIFFE IDs.
    pub fn server_name(self) -> &'static str {
        match self {
            Role::Meta => "meta.nimbus.internal",
            Role::Gateway => "gateway.nimbus.internal",
            Role::Worker => "worker.nimbus.internal",
            Role::Admin => "admin.nimbus.internal",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Meta => "meta",
            Role::Gateway => "gateway",
            Role::Worker => "worker",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = TlsError;

    fn from_str(s: &str) -> Result<Self, TlsError> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                TlsError::Invalid(format!(
                    "unknown role {s:?}: meta, gateway, worker or admin"
                ))
            })
    }
}

/// A verified peer: the role and name its certificate names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub role: Role,
    pub name: String,
}

impl Identity {
    pub fn new(role: Role, name: impl Into<String>) -> Result<Self, TlsError> {
        let name = name.into();
        if !valid_name(&name) {
            return Err(TlsError::Invalid(format!(
                "name {name:?}: 1 to 64 letters, digits, '.', '-' or '_'"
            )));
        }
        Ok(Self { role, name })
    }

    /// The URI this identity is written as in a certificate.
    pub fn uri(&self) -> String {
        format!("{SCHEME}{}/{}", self.role, self.name)
    }

    fn from_uri(uri: &str) -> Option<Self> {
        let rest = uri.strip_prefix(SCHEME)?;
        let (role, name) = rest.split_once('/')?;
        Identity::new(role.parse().ok()?, name).ok()
    }

    /// The identity of the other end of a completed TLS handshake: its first
    /// certificate's, which the handshake already verified against the cluster CA.
    pub fn of_peer(conn: &rustls::CommonState) -> Result<Self, TlsError> {
        let cert = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .ok_or_else(|| TlsError::Invalid("presented no certificate".into()))?;
        Self::from_cert_der(cert)
    }

    /// The identity in a DER certificate (one that a TLS handshake already verified
    /// against the cluster CA). A certificate naming none, or two, is refused.
    pub fn from_cert_der(der: &[u8]) -> Result<Self, TlsError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| TlsError::Invalid(format!("certificate: {e}")))?;
        let sans = cert
            .subject_alternative_name()
            .map_err(|e| TlsError::Invalid(format!("certificate SANs: {e}")))?;
        let mut found: Vec<Identity> = sans
            .map(|ext| ext.value.general_names.iter())
            .into_iter()
            .flatten()
            .filter_map(|n| match n {
                GeneralName::URI(u) => Identity::from_uri(u),
                _ => None,
            })
            .collect();
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(TlsError::Invalid(
                "certificate names no Nimbus role (spiffe://nimbus/<role>/<name>)".into(),
            )),
            _ => Err(TlsError::Invalid(
                "certificate names more than one Nimbus role".into(),
            )),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.role, self.name)
    }
}

/// The id a worker with this certificate registers under: `NAME+LOCAL`, where `LOCAL`
/// is the worker's own id (kept in its data directory). `+` cannot occur in a name, so
/// no certificate's name is a prefix of another's ids.
pub fn worker_id(cert: &Identity, local: &str) -> String {
    format!("{}+{local}", cert.name)
}

/// May the worker holding `cert` speak for worker `id`?
pub fn speaks_for_worker(cert: &Identity, id: &str) -> bool {
    cert.role == Role::Worker
        && id
            .strip_prefix(cert.name.as_str())
            .is_some_and(|rest| rest.starts_with('+'))
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_round_trips_and_rejects_strangers() {
        let id = Identity::new(Role::Gateway, "gw-1").unwrap();
        assert_eq!(id.uri(), "spiffe://nimbus/gateway/gw-1");
        assert_eq!(Identity::from_uri(&id.uri()), Some(id));
        assert_eq!(Identity::from_uri("spiffe://nimbus/root/x"), None);
        assert_eq!(Identity::from_uri("spiffe://other/meta/x"), None);
        assert_eq!(Identity::from_uri("spiffe://nimbus/meta/a/b"), None);
        assert!(Identity::new(Role::Meta, "").is_err());
        assert!("superuser".parse::<Role>().is_err());
        let w1 = Identity::new(Role::Worker, "w1").unwrap();
        assert!(speaks_for_worker(&w1, &worker_id(&w1, "a")));
        assert!(!speaks_for_worker(&w1, "w1"));
        assert!(!speaks_for_worker(&w1, "w10+a"));
        assert!(!speaks_for_worker(
            &Identity::new(Role::Gateway, "w1").unwrap(),
            "w1+a"
        ));
    }
}
