//! Access-key secrets for Signature V4, cached in memory and never logged.
//!
//! A cached secret is used only while the catalog still holds the same sealed record
//! for its key: a deleted key stops working, and a rotated one is fetched again, as soon
//! as the watch stream delivers the change. A key the catalog has not seen yet (created
//! a moment ago) is looked up in the metadata cluster, which has the last word.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use nimbus_meta::{ClientError, MetaClient};
use nimbus_types::{keys, Entity, ErrorKind};

use super::catalog::Catalog;
use super::error::ApiError;

/// A key's account, owner and secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub account_id: String,
    pub secret: String,
    /// The IAM user it belongs to; `None`: the account's root.
    pub user_name: Option<String>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret never reaches a log line, even through `{:?}`.
        f.debug_struct("Credential")
            .field("account_id", &self.account_id)
            .finish_non_exhaustive()
    }
}

/// Why a key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("unknown access key")]
    UnknownKey,
    #[error(transparent)]
    Lookup(#[from] ApiError),
}

#[derive(Default)]
pub struct Credentials {
    /// access key id → (the sealed record it was read for, the credential).
    cache: Mutex<HashMap<String, (Vec<u8>, Credential)>>,
}

impl Credentials {
    /// The credential of `access_key_id`, as of the catalog's view of the key.
    pub async fn get(
        &self,
        catalog: &Catalog,
        meta: &MetaClient,
        access_key_id: &str,
    ) -> Result<Credential, CredentialError> {
        let record = match catalog.get(&keys::access_key(access_key_id)) {
            Some(Entity::AccessKey(k)) => Some(k),
            _ => None,
        };
        // A deactivated key (`UpdateAccessKey --status Inactive`) is refused like an
        // unknown one, as on AWS, as soon as the catalog shows it.
        if record.as_ref().is_some_and(|k| !k.active) {
            return Err(CredentialError::UnknownKey);
        }
        let sealed = record.map(|k| k.secret_ciphertext);
        {
            let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            match (&sealed, cache.get(access_key_id)) {
                (Some(s), Some((cached, c))) if s == cached => return Ok(c.clone()),
                // Deleted or rotated since it was cached.
                (_, Some(_)) => {
                    cache.remove(access_key_id);
                }
                _ => {}
            }
        }
        let found = match meta.access_key_secret(access_key_id).await {
            Ok(v) => v,
            Err(ClientError::Meta(e)) if e.kind == ErrorKind::ResourceNotFound => {
                return Err(CredentialError::UnknownKey);
            }
            Err(e) => return Err(ApiError::from(e).into()),
        };
        if !found.active {
            return Err(CredentialError::UnknownKey);
        }
        let secret = String::from_utf8(found.secret)
            .map_err(|_| ApiError::service("stored secret is not UTF-8"))?;
        let credential = Credential {
            account_id: found.account_id,
            secret,
            user_name: found.user_name,
        };
        // Only a key the catalog has seen is cached: its record is what keeps the entry
        // honest.
        if let Some(sealed) = sealed {
            self.cache
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(access_key_id.to_string(), (sealed, credential.clone()));
        }
        Ok(credential)
    }
}
