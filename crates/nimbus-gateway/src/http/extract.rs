//! The function a request names, as one extractor instead of an opening in every handler.
//!
//! Lambda paths carry the function as `{name}` (a name, a partial or full ARN, with an
//! optional `:qualifier`); some operations also take a `Qualifier` query parameter.
//! [`FunctionName`] reads the first, [`QualifiedFunction`] both, and each resolves them
//! for the authenticated caller in this gateway's region ([`resolve::named`]).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;

use super::api::query_map;
use super::Caller;
use crate::core::resolve::{self, Named};
use crate::core::{ApiError, Gateway};

/// The function of the path's `{name}`, ignoring any `Qualifier` query parameter
/// (operations that have none).
pub struct FunctionName(pub Named);

/// The function of the path's `{name}` with the `Qualifier` query parameter.
pub struct QualifiedFunction(pub Named);

/// Path parameters whose errors (bad percent-encoding, bad UTF-8) are answered in
/// Lambda's format rather than axum's plain text.
pub struct PathParams<T>(pub T);

impl<T> FromRequestParts<Arc<Gateway>> for PathParams<T>
where
    T: serde::de::DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, gw: &Arc<Gateway>) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, gw)
            .await
            .map(|Path(t)| Self(t))
            .map_err(|e| ApiError::validation(e.body_text()))
    }
}

fn caller(parts: &Parts) -> Result<&Caller, ApiError> {
    // Set by the authentication layer before any handler runs.
    parts
        .extensions
        .get::<Caller>()
        .ok_or_else(|| ApiError::service("request reached a handler unauthenticated"))
}

/// The account whose function `name` is: the caller's, or another account's named by a
/// full ARN when that function's resource policy granted this request.
fn acting_account<'a>(caller: &'a Caller, name: &str) -> &'a str {
    match nimbus_types::arn::parse_function_ref(name) {
        Ok(r) => match (r.account_id, &caller.granted_account) {
            (Some(a), Some(granted)) if &a == granted => granted,
            _ => &caller.account_id,
        },
        Err(_) => &caller.account_id,
    }
}

async fn path_name(parts: &mut Parts, gw: &Arc<Gateway>) -> Result<String, ApiError> {
    let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, gw)
        .await
        .map_err(|e| ApiError::validation(e.body_text()))?;
    params
        .get("name")
        .cloned()
        .ok_or_else(|| ApiError::service("route has no function name"))
}

impl FromRequestParts<Arc<Gateway>> for FunctionName {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, gw: &Arc<Gateway>) -> Result<Self, ApiError> {
        let name = path_name(parts, gw).await?;
        let caller = caller(parts)?;
        Ok(Self(resolve::named(
            gw,
            acting_account(caller, &name),
            &name,
            None,
        )?))
    }
}

impl FromRequestParts<Arc<Gateway>> for QualifiedFunction {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, gw: &Arc<Gateway>) -> Result<Self, ApiError> {
        let name = path_name(parts, gw).await?;
        let caller = caller(parts)?;
        let q = query_map(parts.uri.query());
        let qualifier = q.get("Qualifier").map(String::as_str);
        Ok(Self(resolve::named(
            gw,
            acting_account(caller, &name),
            &name,
            qualifier,
        )?))
    }
}

/// `scheme://host` as the caller reached this gateway (its `Host` header, and HTTPS when
/// the listener says so), for links the gateway hands out.
pub struct PublicOrigin(pub String);

impl FromRequestParts<Arc<Gateway>> for PublicOrigin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &Arc<Gateway>) -> Result<Self, ApiError> {
        let scheme = parts
            .extensions
            .get::<crate::core::download::PublicScheme>()
            .map_or("http", |s| s.0);
        // HTTP/1.1 names the host in `Host`; HTTP/2 in `:authority` (the URI's).
        let host = parts
            .headers
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .or_else(|| parts.uri.authority().map(|a| a.to_string()))
            .unwrap_or_else(|| "localhost".into());
        Ok(Self(format!("{scheme}://{host}")))
    }
}
