//! PublishVersion, ListVersionsByFunction.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::Response;
use bytes::Bytes;
use nimbus_types::{keys, Command, CommandOutput, Entity, Qualifier};
use serde::Deserialize;
use serde_json::json;

use super::shapes::{function_configuration, version_configuration};
use super::{body, json, max_items, query_map, write};
use crate::core::resolve;
use crate::core::ApiError;
use crate::core::Gateway;
use crate::http::extract::FunctionName;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PublishInput {
    code_sha256: Option<String>,
    #[serde(default)]
    description: String,
    revision_id: Option<String>,
}

pub async fn publish(
    State(gw): State<Arc<Gateway>>,
    FunctionName(named): FunctionName,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let input: PublishInput = body(&raw)?;
    if input.description.chars().count() > nimbus_types::limits::DESCRIPTION_MAX_CHARS {
        return Err(ApiError::validation(
            "Description must be at most 256 characters",
        ));
    }
    resolve::function(&gw, &named.key)?;
    let cmd = Command::PublishVersion {
        key: named.key,
        description: input.description,
        expected_code_sha256: input.code_sha256,
        expected_revision: input.revision_id,
        now_ms: super::now_ms(),
    };
    match write(&gw, cmd).await? {
        CommandOutput::Version(v) => Ok(json(201, version_configuration(&v))),
        _ => Err(ApiError::service("unexpected result of PublishVersion")),
    }
}

pub async fn list(
    State(gw): State<Arc<Gateway>>,
    FunctionName(named): FunctionName,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = query_map(q.as_deref());
    let limit = max_items(&q)?;
    let f = resolve::function(&gw, &named.key)?;
    // $LATEST first, then versions in order; the marker is the last version returned.
    let mut all = vec![(Qualifier::LATEST.to_string(), function_configuration(&f))];
    for (_, e) in gw
        .catalog()
        .list(&keys::versions_of(&named.key), None, usize::MAX)
    {
        if let Entity::Version(v) = e {
            all.push((v.number.to_string(), version_configuration(&v)));
        }
    }
    let start = match q.get("Marker") {
        Some(m) => all
            .iter()
            .position(|(v, _)| v == m)
            .map(|i| i + 1)
            .ok_or_else(|| ApiError::invalid(format!("Invalid marker {m}")))?,
        None => 0,
    };
    let page: Vec<_> = all.iter().skip(start).take(limit).collect();
    let mut out = json!({ "Versions": page.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>() });
    if start + limit < all.len() {
        if let Some((last, _)) = page.last() {
            out["NextMarker"] = json!(last);
        }
    }
    Ok(json(200, out))
}
