//! The cluster CA and role certificates.
//!
//! A CA directory holds `ca.pem` and `ca-key.pem`; a node directory holds `ca.pem` (the
//! CA certificate, to verify peers), `cert.pem` and `key.pem`. Keys are ECDSA P-256 and
//! written readable by their owner only; every file is written to a temporary name and
//! renamed, so a node reloading its directory never reads half a file.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::material::{CA_CERT, CERT, KEY};
use crate::{Identity, Role, TlsError};

/// The CA's private key, in a CA directory only.
pub const CA_KEY: &str = "ca-key.pem";

/// How long a CA certificate is valid.
const CA_DAYS: i64 = 3650;

/// Creates a CA in `dir` (made if missing, mode 0700). Refuses to overwrite one.
pub fn init_ca(dir: &Path) -> Result<(), TlsError> {
    make_private_dir(dir)?;
    if dir.join(CA_KEY).exists() {
        return Err(TlsError::Invalid(format!(
            "{} already holds a CA; remove it first to make a new one (every certificate it issued stops working)",
            dir.display()
        )));
    }
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Nimbus cluster CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(CA_DAYS);
    let cert = params.self_signed(&key)?;
    write_private(&dir.join(CA_KEY), &key.serialize_pem())?;
    write_public(&dir.join(CA_CERT), &cert.pem())?;
    Ok(())
}

/// What to put in a node certificate.
#[derive(Debug, Clone)]
pub struct Request {
    pub role: Role,
    pub name: String,
    /// DNS names and IP addresses the node is also valid for (Nimbus's own clients verify
    /// the role's name, [`Role::server_name`], so these serve other tools). Empty: the
    /// name, `localhost`, `127.0.0.1` and `::1`.
    pub sans: Vec<String>,
    pub days: u32,
}

/// Issues a certificate for `req` signed by the CA in `ca_dir`, into `out` (made if
/// missing, mode 0700): `ca.pem`, `cert.pem`, `key.pem`. Overwrites an earlier
/// certificate there (that is how certificates are rotated).
pub fn issue(ca_dir: &Path, req: &Request, out: &Path) -> Result<Identity, TlsError> {
    let identity = Identity::new(req.role, req.name.clone())?;
    if !(1..=3650).contains(&req.days) {
        return Err(TlsError::Invalid("--days must be 1 to 3650".into()));
    }
    let ca_pem = read(&ca_dir.join(CA_CERT))?;
    let ca_key = KeyPair::from_pem(&read(&ca_dir.join(CA_KEY))?)?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, &ca_key)?;

    let mut sans: Vec<SanType> = Vec::new();
    let mut names = req.sans.clone();
    if names.is_empty() {
        names = vec![
            req.name.clone(),
            "localhost".into(),
            "127.0.0.1".into(),
            "::1".into(),
        ];
    }
    for n in names {
        let n = n.trim();
        if n.is_empty() {
            continue;
        }
        sans.push(match n.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(n.try_into().map_err(|_| {
                TlsError::Invalid(format!(
                    "--san {n:?} is neither an IP address nor a DNS name"
                ))
            })?),
        });
    }
    sans.push(SanType::DnsName(req.role.server_name().try_into()?));
    sans.push(SanType::URI(identity.uri().try_into()?));

    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, req.name.clone());
    dn.push(DnType::OrganizationalUnitName, req.role.as_str());
    params.distinguished_name = dn;
    params.subject_alt_names = sans;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // Every node both serves and dials (a gateway dials metadata nodes and workers; a
    // metadata node dials its peers), so every certificate is good for both ends.
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(i64::from(req.days));
    let cert = params.signed_by(&key, &issuer)?;

    make_private_dir(out)?;
    // A bundle that already holds this CA (both CAs, during a move to a new CA) stays.
    let bundle = out.join(CA_CERT);
    let kept = std::fs::read_to_string(&bundle).is_ok_and(|b| b.contains(ca_pem.trim()));
    if !kept {
        write_public(&bundle, &ca_pem)?;
    }
    write_private(&out.join(KEY), &key.serialize_pem())?;
    write_public(&out.join(CERT), &cert.pem())?;
    Ok(identity)
}

/// Makes `dir` (and parents) with mode 0700 if missing.
pub fn make_private_dir(dir: &Path) -> Result<(), TlsError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| TlsError::io(dir, e))
}

fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|e| TlsError::io(path, e))
}

fn write_public(path: &Path, text: &str) -> Result<(), TlsError> {
    write_atomic(path, text, 0o644)
}

fn write_private(path: &Path, text: &str) -> Result<(), TlsError> {
    write_atomic(path, text, 0o600)
}

fn write_atomic(path: &Path, text: &str, mode: u32) -> Result<(), TlsError> {
    let tmp = path.with_extension("pem.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| TlsError::io(&tmp, e))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| TlsError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| TlsError::io(path, e))
}
