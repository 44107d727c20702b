//! CreateAlias, GetAlias, UpdateAlias, DeleteAlias, ListAliases.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::Response;
use bytes::Bytes;
use nimbus_types::{keys, validate, AliasRouting, Command, CommandOutput, Entity};
use serde::Deserialize;
use serde_json::json;

use super::shapes::alias_configuration;
use super::{body, json, max_items, no_content, query_map, write};
use crate::core::resolve;
use crate::core::ApiError;
use crate::core::Gateway;
use crate::http::extract::{FunctionName, PathParams};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RoutingConfig {
    #[serde(default)]
    additional_version_weights: BTreeMap<String, f64>,
}

/// Lambda routes to at most one additional version.
fn routing(r: Option<RoutingConfig>) -> Result<Option<Option<AliasRouting>>, ApiError> {
    let Some(r) = r else { return Ok(None) };
    let mut weights = r.additional_version_weights.into_iter();
    let routing = match (weights.next(), weights.next()) {
        (None, _) => None,
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "Number of items in AdditionalVersionWeights cannot be greater than 1",
            ))
        }
        (Some((v, w)), None) => {
            let version = v.parse::<u64>().map_err(|_| {
                ApiError::invalid(format!("Invalid version {v} in AdditionalVersionWeights"))
            })?;
            let r = AliasRouting { version, weight: w };
            validate::alias_routing(&r)?;
            Some(r)
        }
    };
    Ok(Some(routing))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateInput {
    name: Option<String>,
    function_version: Option<String>,
    #[serde(default)]
    description: String,
    routing_config: Option<RoutingConfig>,
}

pub async fn create(
    State(gw): State<Arc<Gateway>>,
    FunctionName(named): FunctionName,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let input: CreateInput = body(&raw)?;
    let alias = input
        .name
        .ok_or_else(|| ApiError::validation("Name is required"))?;
    validate::alias_name(&alias)?;
    let function_version = input
        .function_version
        .ok_or_else(|| ApiError::validation("FunctionVersion is required"))?;
    resolve::function(&gw, &named.key)?;
    let routing = routing(input.routing_config)?.flatten();
    let cmd = Command::CreateAlias {
        key: named.key,
        name: alias,
        function_version,
        description: input.description,
        routing,
    };
    match write(&gw, cmd).await? {
        CommandOutput::Alias(a) => Ok(json(201, alias_configuration(&a))),
        _ => Err(ApiError::service("unexpected result of CreateAlias")),
    }
}

pub async fn get(
    State(gw): State<Arc<Gateway>>,
    FunctionName(named): FunctionName,
    PathParams((_, alias)): PathParams<(String, String)>,
) -> Result<Response, ApiError> {
    resolve::function(&gw, &named.key)?;
    let a = resolve::alias(&gw, &named.key, &alias).map_err(|_| {
        ApiError::not_found(format!("Alias not found: {}:{alias}", named.key.arn()))
    })?;
    Ok(json(200, alias_configuration(&a)))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateInput {
    function_version: Option<String>,
    description: Option<String>,
    routing_config: Option<RoutingConfig>,
    revision_id: Option<String>,
}

pub async fn update(
    State(gw): State<Arc<Gateway>>,
    FunctionName(named): FunctionName,
    PathParams((_, alias)): PathParams<(String, String)>,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let input: UpdateInput = body(&raw)?;
    let cmd = Command::UpdateAlias {
        key: named.key,
        name: alias,
        function_version: input.function_version,
        description: input.description,
        routing: routing(input.routing_config)?,
        expected_revision: input.revision_id,
    };
    match write(&gw, cmd).await? {
        CommandOutput::Alias(a) => Ok(json(200, alias_configuration(&a))),
        _ => Err(ApiError::service("unexpected result of UpdateAlias")),
    }
}

pub async fn delete(
    State(gw): State<Arc<Gateway>>,
    FunctionName(named): FunctionName,
    PathParams((_, alias)): PathParams<(String, String)>,
) -> Result<Response, ApiError> {
    write(
        &gw,
        Command::DeleteAlias {
            key: named.key,
            name: alias,
        },
    )
    .await?;
    Ok(no_content())
}

pub async fn list(
    State(gw): State<Arc<Gateway>>,
    FunctionName(named): FunctionName,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = query_map(q.as_deref());
    let limit = max_items(&q)?;
    resolve::function(&gw, &named.key)?;
    let prefix = keys::aliases_of(&named.key);
    let after = q.get("Marker").map(|m| format!("{prefix}{m}"));
    let version = q.get("FunctionVersion");
    let page: Vec<_> = gw
        .catalog()
        .list(&prefix, after.as_deref(), usize::MAX)
        .into_iter()
        .filter_map(|(k, e)| match e {
            Entity::Alias(a) if version.is_none_or(|v| *v == a.function_version) => Some((k, a)),
            _ => None,
        })
        .collect();
    let mut out = json!({ "Aliases": page.iter().take(limit).map(|(_, a)| alias_configuration(a)).collect::<Vec<_>>() });
    if page.len() > limit {
        out["NextMarker"] = json!(page[limit - 1].1.name);
    }
    Ok(json(200, out))
}
