//! Time-limited download links for code packages and layer contents: Lambda's
//! `Code.Location` (GetFunction) and `Content.Location` (layer versions).
//!
//! A link is signed like an S3 presigned URL, with the secret of the access key that asked
//! for it, so that any gateway can check it (every gateway can read access-key secrets)
//! and no gateway needs a key of its own. A key's owner could sign links itself, so the
//! signature alone proves nothing about what may be read: serving a link also checks that
//! the key's account can see a function, version or layer version with that content.
//!
//! A session (`ASIA…`, STS) has no stored secret to sign with: its links are signed with
//! the gateways' session key instead and name the session's account, which the link's
//! signature covers.

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use nimbus_types::{keys, Entity};
use sha2::Sha256;

use super::error::ApiError;
use super::Gateway;

/// How long a link works (Lambda's presigned code URLs last 10 minutes).
pub const VALID_FOR_S: u64 = 600;

/// The path links are served under (outside Signature V4: the link is its own proof).
pub const PATH: &str = "/nimbus/code";

/// The scheme a gateway's public listener speaks, set by whichever listener serves.
#[derive(Debug, Clone, Copy)]
pub struct PublicScheme(pub &'static str);

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn mac(secret: &str, sha256: &str, expires: u64, access_key_id: &str) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    m.update(format!("nimbus-code-download\n{sha256}\n{expires}\n{access_key_id}").as_bytes());
    m
}

fn url_safe(sha256: &str) -> String {
    sha256.replace('/', "_").replace('+', "-")
}

/// A link to the package with hash `sha256`, signed with the caller's key, under
/// `origin` (`scheme://host`, as the caller reached this gateway).
pub async fn location(
    gw: &Gateway,
    origin: &str,
    access_key_id: &str,
    account: Option<&str>,
    sha256: &str,
) -> Result<String, ApiError> {
    let expires = now_s() + VALID_FOR_S;
    if super::sessions::is_session_key(access_key_id) {
        let account =
            account.ok_or_else(|| ApiError::service("a session link needs its account"))?;
        let sig = hex::encode(
            session_mac(
                gw.session_key().await?,
                sha256,
                expires,
                access_key_id,
                account,
            )
            .finalize()
            .into_bytes(),
        );
        return Ok(format!(
            "{origin}{PATH}/{}?AccessKeyId={access_key_id}&Account={account}&Expires={expires}&Signature={sig}",
            url_safe(sha256)
        ));
    }
    let credential = gw
        .credentials()
        .get(gw.catalog(), gw.meta(), access_key_id)
        .await
        .map_err(|e| ApiError::service(format!("signing a download link: {e}")))?;
    let sig = hex::encode(
        mac(&credential.secret, sha256, expires, access_key_id)
            .finalize()
            .into_bytes(),
    );
    Ok(format!(
        "{origin}{PATH}/{}?AccessKeyId={access_key_id}&Expires={expires}&Signature={sig}",
        url_safe(sha256)
    ))
}

fn session_mac(
    key: &[u8],
    sha256: &str,
    expires: u64,
    access_key_id: &str,
    account: &str,
) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
    m.update(
        format!("nimbus-session-code-download\n{sha256}\n{expires}\n{access_key_id}\n{account}")
            .as_bytes(),
    );
    m
}

/// The link's error: the same for every failure, so a prober learns nothing about which
/// part was wrong, as S3 answers a bad presigned URL.
fn refused() -> ApiError {
    ApiError::new(
        403,
        "AccessDeniedException",
        "The download link is invalid or has expired.",
    )
}

/// Checks a link and returns the package's hash (standard base64).
pub async fn check(
    gw: &Gateway,
    url_sha256: &str,
    access_key_id: &str,
    account: Option<&str>,
    expires: &str,
    signature: &str,
) -> Result<String, ApiError> {
    let sha256 = url_sha256.replace('_', "/").replace('-', "+");
    let expires: u64 = expires.parse().map_err(|_| refused())?;
    if expires < now_s() || expires > now_s() + VALID_FOR_S + 60 {
        return Err(refused());
    }
    let sig: Vec<u8> = (0..signature.len())
        .step_by(2)
        .map(|i| {
            signature
                .get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<_>>()
        .ok_or_else(refused)?;
    let reader = if super::sessions::is_session_key(access_key_id) {
        let account = account.ok_or_else(refused)?;
        let key = gw.session_key().await.map_err(|_| refused())?;
        session_mac(key, &sha256, expires, access_key_id, account)
            .verify_slice(&sig)
            .map_err(|_| refused())?;
        account.to_string()
    } else {
        let credential = gw
            .credentials()
            .get(gw.catalog(), gw.meta(), access_key_id)
            .await
            .map_err(|_| refused())?;
        mac(&credential.secret, &sha256, expires, access_key_id)
            .verify_slice(&sig)
            .map_err(|_| refused())?;
        credential.account_id
    };
    if !readable_by(gw, &reader, &sha256) {
        return Err(refused());
    }
    Ok(sha256)
}

/// Whether `account` has a function, version or visible layer version with this content.
fn readable_by(gw: &Gateway, account: &str, sha256: &str) -> bool {
    let region = gw.region();
    let catalog = gw.catalog();
    let mine = |prefix: String| {
        catalog
            .list(&prefix, None, usize::MAX)
            .into_iter()
            .any(|(_, e)| match e {
                Entity::Function(f) => f.code.sha256 == sha256,
                Entity::Version(v) => v.code.sha256 == sha256,
                _ => false,
            })
    };
    mine(keys::functions_of(account, region))
        || mine(format!("{}{account}/{region}/", keys::VERSION))
        || catalog
            .list(keys::LAYER_VERSION, None, usize::MAX)
            .into_iter()
            .any(|(_, e)| match e {
                Entity::LayerVersion(v) => {
                    v.key.region == region && v.code.sha256 == sha256 && v.usable_by(account)
                }
                _ => false,
            })
}
