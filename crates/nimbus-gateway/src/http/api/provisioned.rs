//! Provisioned concurrency: Put/Get/Delete/ListProvisionedConcurrencyConfig(s)
//! (`/2019-09-30/functions/{name}/provisioned-concurrency`). The config is metadata; the
//! environments are kept by [`crate::provisioned`], whose last round gives the status.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::Response;
use bytes::Bytes;
use nimbus_types::{Command, FunctionKey, Qualifier};
use serde::Deserialize;
use serde_json::{json, Value};

use super::shapes::timestamp;
use super::{body, json, max_items, no_content, query_map, write};
use crate::core::resolve::{self, Named};
use crate::core::ApiError;
use crate::core::Gateway;
use crate::http::extract::QualifiedFunction;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutInput {
    provisioned_concurrent_executions: Option<i64>,
}

/// The qualifier the operation names: required, and never `$LATEST`.
fn qualifier(named: &resolve::Named) -> Result<String, ApiError> {
    match named.qualifier.as_deref() {
        None | Some("") => Err(ApiError::validation(
            "1 validation error detected: Value null at 'qualifier' failed to satisfy constraint: Member must not be null",
        )),
        Some(Qualifier::LATEST) => Err(ApiError::invalid(
            "Provisioned Concurrency Configs cannot be applied to unpublished function versions.",
        )),
        Some(q) => Ok(q.to_string()),
    }
}

/// A config as Lambda shows it, with this gateway's view of its allocation.
fn config_json(
    gw: &Gateway,
    key: &FunctionKey,
    qualifier: &str,
    requested: u32,
    modified_ms: u64,
) -> Value {
    let (allocated, status, reason) = match gw.provisioned().allocation(key, qualifier) {
        Some(a) if a.requested == requested && a.allocated >= requested => {
            (a.allocated, "READY", None)
        }
        Some(a) if a.requested == requested => (a.allocated, "FAILED", a.error),
        // Not yet through a round since it was set or changed.
        Some(a) => (a.allocated.min(requested), "IN_PROGRESS", None),
        None => (0, "IN_PROGRESS", None),
    };
    let mut v = json!({
        "RequestedProvisionedConcurrentExecutions": requested,
        "AvailableProvisionedConcurrentExecutions": allocated,
        "AllocatedProvisionedConcurrentExecutions": allocated,
        "Status": status,
        "LastModified": timestamp(modified_ms),
    });
    if let Some(r) = reason {
        v["StatusReason"] = json!(r);
    }
    v
}

pub async fn put(
    State(gw): State<Arc<Gateway>>,
    QualifiedFunction(named): QualifiedFunction,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let qualifier = qualifier(&named)?;
    let input: PutInput = body(&raw)?;
    let n = input
        .provisioned_concurrent_executions
        .ok_or_else(|| ApiError::validation("ProvisionedConcurrentExecutions is required"))?;
    let requested = u32::try_from(n).ok().filter(|n| *n >= 1).ok_or_else(|| {
        ApiError::validation(format!("1 validation error detected: Value '{n}' at 'provisionedConcurrentExecutions' failed to satisfy constraint: Member must have value greater than or equal to 1"))
    })?;
    resolve::function(&gw, &named.key)?;
    // The qualifier must name a published version (directly or through its alias).
    crate::core::provisioned::targets(&gw, &named.key, &qualifier, requested)?;
    write(
        &gw,
        Command::PutProvisionedConcurrency {
            key: named.key.clone(),
            qualifier: qualifier.clone(),
            requested,
        },
    )
    .await?;
    gw.provisioned().wake();
    let modified = resolve::function(&gw, &named.key)
        .map(|f| f.last_modified_ms)
        .unwrap_or_default();
    Ok(json(
        202,
        config_json(&gw, &named.key, &qualifier, requested, modified),
    ))
}

pub async fn get(
    State(gw): State<Arc<Gateway>>,
    QualifiedFunction(named): QualifiedFunction,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = query_map(q.as_deref());
    if q.get("List").map(String::as_str) == Some("ALL") {
        return list(&gw, &named, &q);
    }
    let qualifier = qualifier(&named)?;
    let f = resolve::function(&gw, &named.key)?;
    match f.provisioned_concurrency.get(&qualifier) {
        Some(n) => Ok(json(
            200,
            config_json(&gw, &named.key, &qualifier, *n, f.last_modified_ms),
        )),
        None => Err(ApiError::new(
            404,
            "ProvisionedConcurrencyConfigNotFoundException",
            format!(
                "No Provisioned Concurrency Config found for this function: {}:{qualifier}",
                named.key.arn()
            ),
        )),
    }
}

fn list(
    gw: &Gateway,
    named: &Named,
    q: &std::collections::HashMap<String, String>,
) -> Result<Response, ApiError> {
    let f = resolve::function(gw, &named.key)?;
    let max = max_items(q)?;
    let marker = q.get("Marker");
    let configs: Vec<(&String, &u32)> = f
        .provisioned_concurrency
        .iter()
        .filter(|(qualifier, _)| marker.is_none_or(|m| *qualifier > m))
        .collect();
    let page: Vec<Value> = configs
        .iter()
        .take(max)
        .map(|(qualifier, n)| {
            let mut v = config_json(gw, &named.key, qualifier, **n, f.last_modified_ms);
            v["FunctionArn"] = json!(format!("{}:{qualifier}", named.key.arn()));
            v
        })
        .collect();
    let mut out = json!({ "ProvisionedConcurrencyConfigs": page });
    if configs.len() > max {
        out["NextMarker"] = json!(configs[max - 1].0);
    }
    Ok(json(200, out))
}

pub async fn delete(
    State(gw): State<Arc<Gateway>>,
    QualifiedFunction(named): QualifiedFunction,
) -> Result<Response, ApiError> {
    let qualifier = qualifier(&named)?;
    write(
        &gw,
        Command::DeleteProvisionedConcurrency {
            key: named.key,
            qualifier,
        },
    )
    .await?;
    gw.provisioned().wake();
    Ok(no_content())
}
