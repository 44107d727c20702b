//! Layer versions as the catalog holds them: looked up for the layer API, and resolved
//! from the ARNs a function is configured with into the content it will mount.

use nimbus_types::{arn, keys, Entity, ErrorKind, LayerKey, LayerRef, LayerVersion};

use super::error::ApiError;
use super::Gateway;

/// The version, if it exists (whoever owns it).
pub fn find(gw: &Gateway, key: &LayerKey, n: u64) -> Option<LayerVersion> {
    match gw.catalog().get(&keys::layer_version(key, n)) {
        Some(Entity::LayerVersion(v)) => Some(v),
        _ => None,
    }
}

/// The version as `account` may see it: its own, or one shared with it. Another
/// account's version that is not shared is refused with 403, as on Lambda.
pub fn visible(
    gw: &Gateway,
    account: &str,
    key: &LayerKey,
    n: u64,
) -> Result<LayerVersion, ApiError> {
    match find(gw, key, n) {
        Some(v) if v.usable_by(account) => Ok(v),
        Some(_) => Err(denied(account, &key.version_arn(n))),
        // Another account's: missing or not shared look the same, so its layer names and
        // version counts cannot be probed.
        None if key.account_id != account => Err(denied(account, &key.version_arn(n))),
        None => Err(ApiError::new(
            404,
            "ResourceNotFoundException",
            "The resource you requested does not exist.",
        )),
    }
}

/// A version of the caller's own layer, for the writes only its owner may make.
pub fn owned(
    gw: &Gateway,
    account: &str,
    key: &LayerKey,
    n: u64,
) -> Result<LayerVersion, ApiError> {
    if key.account_id != account {
        return Err(denied(account, &key.version_arn(n)));
    }
    visible(gw, account, key, n)
}

fn denied(account: &str, arn: &str) -> ApiError {
    ApiError::new(
        ErrorKind::AccessDenied.http_status(),
        ErrorKind::AccessDenied.lambda_name(),
        format!(
            "User: arn:aws:iam::{account}:root is not authorized to perform: lambda:GetLayerVersion on resource: {arn}"
        ),
    )
}

/// Resolves the `Layers` of a function of `account` in this gateway's region, in order,
/// with Lambda's errors: a malformed ARN, a version that does not exist (or lives in
/// another region), one not shared with the account, two versions of one layer. The
/// metadata cluster checks existence and sharing again when it applies the write.
pub fn resolve(gw: &Gateway, account: &str, arns: &[String]) -> Result<Vec<LayerRef>, ApiError> {
    let mut out: Vec<LayerRef> = Vec::with_capacity(arns.len());
    let mut seen: Vec<LayerKey> = Vec::new();
    for a in arns {
        let Some((key, n)) = arn::parse_layer_version_arn(a) else {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value '[{a}]' at 'layers' failed to satisfy \
                 constraint: Member must satisfy constraint: [Member must have length less than \
                 or equal to 140, Member must satisfy regular expression pattern: \
                 arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\\d{{12}}:layer:[a-zA-Z0-9-_]+:[0-9]+]"
            )));
        };
        let missing = || ApiError::invalid(format!("Layer version {a} does not exist."));
        if key.region != gw.region() {
            return Err(missing());
        }
        let v = match find(gw, &key, n) {
            Some(v) => v,
            None if key.account_id != account => return Err(denied(account, a)),
            None => return Err(missing()),
        };
        if !v.usable_by(account) {
            return Err(denied(account, a));
        }
        if seen.contains(&key) {
            return Err(ApiError::invalid(
                "Two different versions of the same layer are not allowed to be referenced in the same function.",
            ));
        }
        seen.push(key);
        out.push(LayerRef {
            arn: a.clone(),
            code: v.code,
        });
    }
    Ok(out)
}
