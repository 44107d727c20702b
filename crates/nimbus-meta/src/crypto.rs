//! Encryption at rest for code chunks and access-key secrets.
//!
//! AES-256-GCM with a 256-bit cluster key held by the metadata nodes (a file outside the
//! repository, 0600). Every node of a cluster must hold the same key, since the
//! ciphertext is what Raft replicates. Each seal uses a fresh random 96-bit nonce,
//! prepended to the ciphertext; the associated data binds a ciphertext to its place
//! (e.g. `code/<sha>/<index>`), so a chunk moved to another slot fails to open.

use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;

use crate::error::NodeError;

const NONCE_LEN: usize = 12;
/// What the cluster key's check value seals, and where.
const KEY_CHECK_AAD: &[u8] = b"cluster/key-check";
const KEY_CHECK_PLAINTEXT: &[u8] = b"nimbus cluster key check v1";

/// The cluster's data key.
#[derive(Clone)]
pub struct ClusterKey {
    cipher: Aes256Gcm,
    /// Derives purpose-bound keys ([`Self::derive`]); never used to encrypt.
    kdf: hmac::Hmac<sha2::Sha256>,
}

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.write_str("ClusterKey(..)")
    }
}

/// Opening a ciphertext failed: it was altered, truncated, or sealed under another key.
#[derive(Debug, thiserror::Error)]
#[error("ciphertext failed authentication (corrupt, or sealed under another key)")]
pub struct OpenError;

impl ClusterKey {
    pub fn from_bytes(key: &[u8; 32]) -> Self {
        use hmac::Mac;
        Self {
            cipher: Aes256Gcm::new(key.into()),
            kdf: <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(key)
                .expect("HMAC takes any key length"),
        }
    }

    /// Loads the key file, or creates it (random, mode 0600) if `create` and it is absent.
    pub fn load_or_create(path: &Path, create: bool) -> Result<Self, NodeError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        match std::fs::read(path) {
            Ok(bytes) => {
                let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                    NodeError::Key(format!(
                        "{} must hold exactly 32 bytes, found {}",
                        path.display(),
                        bytes.len()
                    ))
                })?;
                Ok(Self::from_bytes(&key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                let mut key = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut key);
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| NodeError::io(dir, e))?;
                }
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|e| NodeError::io(path, e))?;
                f.write_all(&key)
                    .and_then(|_| f.sync_all())
                    .map_err(|e| NodeError::io(path, e))?;
                Ok(Self::from_bytes(&key))
            }
            Err(e) => Err(NodeError::io(path, e)),
        }
    }

    /// A key for one purpose (`label`), derived from the cluster key with HMAC-SHA256, so
    /// handing it out (the session-token key to gateways) reveals nothing of the cluster
    /// key or of keys for other purposes.
    pub fn derive(&self, label: &[u8]) -> [u8; 32] {
        use hmac::Mac;
        let mut mac = self.kdf.clone();
        mac.update(label);
        mac.finalize().into_bytes().into()
    }

    /// A fresh check value: a constant sealed under this key. Any node holding the
    /// same key can open it; one holding another key cannot.
    pub fn key_check(&self) -> Vec<u8> {
        self.seal(KEY_CHECK_AAD, KEY_CHECK_PLAINTEXT)
    }

    /// Whether `sealed` (a [`Self::key_check`] from some node) was made with this key.
    pub fn verifies(&self, sealed: &[u8]) -> bool {
        self.open(KEY_CHECK_AAD, sealed)
            .is_ok_and(|p| p == KEY_CHECK_PLAINTEXT)
    }

    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            // AES-GCM encryption only fails for plaintexts over 64 GiB.
            .expect("plaintext within AES-GCM limits");
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Decrypts and authenticates a value sealed by [`seal`](Self::seal) with the same `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        if sealed.len() < NONCE_LEN {
            return Err(OpenError);
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
            .map_err(|_| OpenError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper_detection() {
        let key = ClusterKey::from_bytes(&[7; 32]);
        let sealed = key.seal(b"code/abc/0", b"hello");
        assert_eq!(key.open(b"code/abc/0", &sealed).unwrap(), b"hello");
        assert!(
            key.open(b"code/abc/1", &sealed).is_err(),
            "aad binds the slot"
        );
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(
            key.open(b"code/abc/0", &flipped).is_err(),
            "a flipped bit is caught"
        );
        let other = ClusterKey::from_bytes(&[8; 32]);
        assert!(
            other.open(b"code/abc/0", &sealed).is_err(),
            "another key cannot open it"
        );
    }

    #[test]
    fn derived_keys_are_stable_and_bound_to_their_purpose() {
        let key = ClusterKey::from_bytes(&[7; 32]);
        assert_eq!(
            key.derive(b"a"),
            ClusterKey::from_bytes(&[7; 32]).derive(b"a")
        );
        assert_ne!(key.derive(b"a"), key.derive(b"b"));
        assert_ne!(
            key.derive(b"a"),
            ClusterKey::from_bytes(&[8; 32]).derive(b"a")
        );
    }

    #[test]
    fn a_key_check_opens_only_under_the_same_key() {
        let key = ClusterKey::from_bytes(&[7; 32]);
        let check = key.key_check();
        assert!(key.verifies(&check));
        assert!(
            ClusterKey::from_bytes(&[7; 32]).verifies(&check),
            "same bytes"
        );
        assert!(!ClusterKey::from_bytes(&[8; 32]).verifies(&check));
        assert!(!key.verifies(b"junk"));
        // Sealed under the same key for another purpose: not a check value.
        assert!(!key.verifies(&key.seal(b"code/abc/0", b"nimbus cluster key check v1")));
    }

    #[test]
    fn key_file_is_created_private_and_reloaded() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.key");
        let a = ClusterKey::load_or_create(&path, true).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = ClusterKey::load_or_create(&path, false).unwrap();
        assert_eq!(b.open(b"x", &a.seal(b"x", b"y")).unwrap(), b"y");
        std::fs::write(&path, b"short").unwrap();
        assert!(ClusterKey::load_or_create(&path, false).is_err());
    }
}
