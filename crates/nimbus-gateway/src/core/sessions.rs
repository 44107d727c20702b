//! Temporary credentials (STS): session tokens that any gateway verifies on its own.
//!
//! A token carries its claims (account, role, session name, expiry, access key id) and
//! an HMAC-SHA256 over them under the session key, which every gateway gets from the
//! metadata cluster (derived from the cluster key, `Query::SessionSigningKey`). The
//! session's secret access key is itself derived from the claims under that key, so a
//! gateway recomputes it instead of storing it: verifying a request signed with session
//! credentials costs no metadata round trip and no state. Tokens cannot be revoked
//! one by one; they expire, and what a session may do is always read from its role's
//! current policies (a deleted role's sessions can do nothing).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Token prefix and version; a new format gets a new prefix.
const PREFIX: &str = "NMB1.";

/// What a session is: who assumed which role, until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionClaims {
    #[serde(rename = "k")]
    pub access_key_id: String,
    #[serde(rename = "a")]
    pub account_id: String,
    /// The role's name (its key in the catalog) and its ARN (with its path).
    #[serde(rename = "r")]
    pub role_name: String,
    #[serde(rename = "ra")]
    pub role_arn: String,
    #[serde(rename = "s")]
    pub session_name: String,
    #[serde(rename = "e")]
    pub expires_ms: u64,
}

impl SessionClaims {
    /// `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`.
    pub fn assumed_role_arn(&self) -> String {
        format!(
            "arn:aws:sts::{}:assumed-role/{}/{}",
            self.account_id, self.role_name, self.session_name
        )
    }
}

/// Credentials handed to a caller of `AssumeRole`, or to a function's environment.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    pub expires_ms: u64,
}

impl std::fmt::Debug for SessionCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Neither the secret nor the token (a bearer of the secret) is ever logged.
        f.debug_struct("SessionCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("expires_ms", &self.expires_ms)
            .finish_non_exhaustive()
    }
}

/// Why a session token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("The security token included in the request is invalid.")]
    Invalid,
    #[error("The security token included in the request is expired")]
    Expired,
}

/// A fresh session for `claims` (its access key id is chosen here).
pub fn mint(key: &[u8], mut claims: SessionClaims) -> SessionCredentials {
    claims.access_key_id = new_access_key_id();
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("plain data"));
    let tag = URL_SAFE_NO_PAD.encode(mac(key, b"token", payload.as_bytes()));
    SessionCredentials {
        secret_access_key: secret_of(key, &payload),
        session_token: format!("{PREFIX}{payload}.{tag}"),
        access_key_id: claims.access_key_id,
        expires_ms: claims.expires_ms,
    }
}

/// The claims and secret of `token`, if it is genuine, belongs to `access_key_id`, and
/// has not expired at `now_ms`.
pub fn verify(
    key: &[u8],
    token: &str,
    access_key_id: &str,
    now_ms: u64,
) -> Result<(SessionClaims, String), SessionError> {
    let rest = token.strip_prefix(PREFIX).ok_or(SessionError::Invalid)?;
    let (payload, tag) = rest.split_once('.').ok_or(SessionError::Invalid)?;
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| SessionError::Invalid)?;
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    m.update(b"token");
    m.update(payload.as_bytes());
    // Constant-time comparison.
    m.verify_slice(&tag).map_err(|_| SessionError::Invalid)?;
    let claims: SessionClaims = URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(SessionError::Invalid)?;
    if claims.access_key_id != access_key_id {
        return Err(SessionError::Invalid);
    }
    if claims.expires_ms <= now_ms {
        return Err(SessionError::Expired);
    }
    let secret = secret_of(key, payload);
    Ok((claims, secret))
}

/// Whether an access key id is a session's (`ASIA…`, as on AWS).
pub fn is_session_key(access_key_id: &str) -> bool {
    access_key_id.starts_with("ASIA")
}

fn secret_of(key: &[u8], payload: &str) -> String {
    let mut s = URL_SAFE_NO_PAD.encode(mac(key, b"secret", payload.as_bytes()));
    s.truncate(40);
    s
}

fn mac(key: &[u8], purpose: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    m.update(purpose);
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// `ASIA` and 16 characters of IAM's key-id alphabet.
fn new_access_key_id() -> String {
    random_id("ASIA", 16)
}

/// An IAM-style identifier: `prefix` and `n` characters from `A-Z2-7`.
pub fn random_id(prefix: &str, n: usize) -> String {
    format!(
        "{prefix}{}",
        random_chars(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", n)
    )
}

/// `n` characters drawn at random from `alphabet` (ASCII).
pub fn random_chars(alphabet: &[u8], n: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(expires_ms: u64) -> SessionClaims {
        SessionClaims {
            access_key_id: String::new(),
            account_id: "123456789012".into(),
            role_name: "r".into(),
            role_arn: "arn:aws:iam::123456789012:role/r".into(),
            session_name: "s".into(),
            expires_ms,
        }
    }

    #[test]
    fn a_token_verifies_with_its_own_key_id_until_it_expires() {
        let c = mint(b"k1", claims(1_000));
        assert!(c.access_key_id.starts_with("ASIA") && c.access_key_id.len() == 20);
        let (got, secret) = verify(b"k1", &c.session_token, &c.access_key_id, 999).unwrap();
        assert_eq!(secret, c.secret_access_key);
        assert_eq!(got.role_name, "r");
        assert_eq!(
            verify(b"k1", &c.session_token, &c.access_key_id, 1_000),
            Err(SessionError::Expired)
        );
        assert_eq!(
            verify(b"k1", &c.session_token, "ASIAOTHER", 1),
            Err(SessionError::Invalid)
        );
        assert_eq!(
            verify(b"k2", &c.session_token, &c.access_key_id, 1),
            Err(SessionError::Invalid),
            "another cluster's key"
        );
    }

    #[test]
    fn a_tampered_token_is_refused() {
        let c = mint(b"k1", claims(u64::MAX));
        // Re-encode the claims with another account, keeping the old tag.
        let rest = c.session_token.strip_prefix(PREFIX).unwrap();
        let (payload, tag) = rest.split_once('.').unwrap();
        let mut cl: SessionClaims =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        cl.account_id = "999999999999".into();
        let forged = format!(
            "{PREFIX}{}.{tag}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&cl).unwrap())
        );
        assert_eq!(
            verify(b"k1", &forged, &c.access_key_id, 1),
            Err(SessionError::Invalid)
        );
        assert_eq!(
            verify(b"k1", "garbage", &c.access_key_id, 1),
            Err(SessionError::Invalid)
        );
    }
}
