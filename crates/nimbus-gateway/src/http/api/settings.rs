//! Concurrency, account settings, event invoke config, and tags.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Extension, RawQuery, State};
use axum::response::Response;
use bytes::Bytes;
use nimbus_types::{limits, validate, Command, EventInvokeConfig, Qualifier};
use serde::Deserialize;
use serde_json::json;

use super::{body, json, no_content, query_pairs, write};
use crate::core::resolve::{self, Named};
use crate::core::{ApiError, Gateway};
use crate::http::extract::{FunctionName, PathParams, QualifiedFunction};

use crate::http::Caller;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ConcurrencyInput {
    reserved_concurrent_executions: Option<i64>,
}

pub async fn put_concurrency(
    State(gw): State<Arc<Gateway>>,
    FunctionName(named): FunctionName,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let input: ConcurrencyInput = body(&raw)?;
    let n = input
        .reserved_concurrent_executions
        .ok_or_else(|| ApiError::validation("ReservedConcurrentExecutions is required"))?;
    let reserved = u32::try_from(n).map_err(|_| {
        ApiError::validation(format!("1 validation error detected: Value '{n}' at 'reservedConcurrentExecutions' failed to satisfy constraint: Member must have value greater than or equal to 0"))
    })?;
    resolve::function(&gw, &named.key)?;
    write(
        &gw,
        Command::PutFunctionConcurrency {
            key: named.key,
            reserved,
        },
    )
    .await?;
    Ok(json(
        200,
        json!({ "ReservedConcurrentExecutions": reserved }),
    ))
}

pub async fn get_concurrency(
    State(gw): State<Arc<Gateway>>,
    FunctionName(named): FunctionName,
) -> Result<Response, ApiError> {
    let f = resolve::function(&gw, &named.key)?;
    Ok(json(
        200,
        match f.reserved_concurrency {
            Some(r) => json!({ "ReservedConcurrentExecutions": r }),
            None => json!({}),
        },
    ))
}

pub async fn delete_concurrency(
    State(gw): State<Arc<Gateway>>,
    FunctionName(named): FunctionName,
) -> Result<Response, ApiError> {
    resolve::function(&gw, &named.key)?;
    write(&gw, Command::DeleteFunctionConcurrency { key: named.key }).await?;
    Ok(no_content())
}

pub async fn account_settings(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let account = gw
        .catalog()
        .account_concurrency(&caller.account_id, gw.region());
    Ok(json(
        200,
        json!({
            "AccountLimit": {
                "TotalCodeSize": limits::ACCOUNT_CODE_STORAGE_BYTES,
                "CodeSizeUnzipped": limits::CODE_UNZIPPED_MAX_BYTES,
                "CodeSizeZipped": limits::CODE_ZIPPED_MAX_BYTES,
                "ConcurrentExecutions": account.limits.concurrent_executions,
                "UnreservedConcurrentExecutions": account.unreserved(),
            },
            "AccountUsage": {
                "TotalCodeSize": account.totals.code_bytes,
                "FunctionCount": account.totals.functions,
            },
        }),
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Destination {
    destination: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct DestinationConfig {
    on_success: Option<Destination>,
    on_failure: Option<Destination>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EventConfigInput {
    maximum_retry_attempts: Option<u32>,
    maximum_event_age_in_seconds: Option<u32>,
    destination_config: Option<DestinationConfig>,
}

fn event_config_json(function_arn: &str, c: &EventInvokeConfig) -> serde_json::Value {
    let dest = |d: &Option<String>| match d {
        Some(a) => json!({ "Destination": a }),
        None => json!({}),
    };
    json!({
        "LastModified": c.last_modified_ms as f64 / 1000.0,
        "FunctionArn": function_arn,
        "MaximumRetryAttempts": c.maximum_retry_attempts,
        "MaximumEventAgeInSeconds": c.maximum_event_age_s,
        "DestinationConfig": { "OnSuccess": dest(&c.on_success), "OnFailure": dest(&c.on_failure) },
    })
}

fn check_destination(gw: &Gateway, caller: &Caller, d: &Option<String>) -> Result<(), ApiError> {
    match d {
        Some(arn) => {
            crate::core::async_events::destination::parse(arn, &caller.account_id, gw.region())
                .map(|_| ())
        }
        None => Ok(()),
    }
}

async fn put_or_update_event_config(
    gw: Arc<Gateway>,
    caller: Caller,
    named: Named,
    raw: Bytes,
    merge: bool,
) -> Result<Response, ApiError> {
    let input: EventConfigInput = body(&raw)?;
    let f = resolve::function(&gw, &named.key)?;
    let qualifier = named
        .qualifier
        .clone()
        .unwrap_or_else(|| Qualifier::LATEST.into());
    let base = match (merge, f.event_invoke_configs.get(&qualifier)) {
        (true, Some(c)) => c.clone(),
        (true, None) => {
            return Err(ApiError::not_found(format!(
                "The function {} doesn't have an EventInvokeConfig",
                named.key.arn()
            )))
        }
        (false, _) => EventInvokeConfig {
            maximum_retry_attempts: limits::ASYNC_RETRIES_DEFAULT,
            maximum_event_age_s: limits::ASYNC_EVENT_AGE_DEFAULT_S,
            ..Default::default()
        },
    };
    let dc = input.destination_config.unwrap_or_default();
    let config = EventInvokeConfig {
        maximum_retry_attempts: input
            .maximum_retry_attempts
            .unwrap_or(base.maximum_retry_attempts),
        maximum_event_age_s: input
            .maximum_event_age_in_seconds
            .unwrap_or(base.maximum_event_age_s),
        on_success: dc
            .on_success
            .map(|d| d.destination)
            .unwrap_or(base.on_success),
        on_failure: dc
            .on_failure
            .map(|d| d.destination)
            .unwrap_or(base.on_failure),
        last_modified_ms: super::now_ms(),
    };
    validate::event_invoke_config(&config)?;
    check_destination(&gw, &caller, &config.on_success)?;
    check_destination(&gw, &caller, &config.on_failure)?;
    let arn = format!("{}:{qualifier}", named.key.arn());
    write(
        &gw,
        Command::PutEventInvokeConfig {
            key: named.key,
            qualifier,
            config: config.clone(),
        },
    )
    .await?;
    Ok(json(200, event_config_json(&arn, &config)))
}

pub async fn put_event_invoke_config(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    QualifiedFunction(named): QualifiedFunction,
    raw: Bytes,
) -> Result<Response, ApiError> {
    put_or_update_event_config(gw, caller, named, raw, false).await
}

pub async fn update_event_invoke_config(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    QualifiedFunction(named): QualifiedFunction,
    raw: Bytes,
) -> Result<Response, ApiError> {
    put_or_update_event_config(gw, caller, named, raw, true).await
}

pub async fn get_event_invoke_config(
    State(gw): State<Arc<Gateway>>,
    QualifiedFunction(named): QualifiedFunction,
) -> Result<Response, ApiError> {
    let f = resolve::function(&gw, &named.key)?;
    let qualifier = named.qualifier.unwrap_or_else(|| Qualifier::LATEST.into());
    match f.event_invoke_configs.get(&qualifier) {
        Some(c) => Ok(json(
            200,
            event_config_json(&format!("{}:{qualifier}", named.key.arn()), c),
        )),
        None => Err(ApiError::not_found(format!(
            "The function {}:{qualifier} doesn't have an EventInvokeConfig",
            named.key.arn()
        ))),
    }
}

pub async fn delete_event_invoke_config(
    State(gw): State<Arc<Gateway>>,
    QualifiedFunction(named): QualifiedFunction,
) -> Result<Response, ApiError> {
    let qualifier = named.qualifier.unwrap_or_else(|| Qualifier::LATEST.into());
    write(
        &gw,
        Command::DeleteEventInvokeConfig {
            key: named.key,
            qualifier,
        },
    )
    .await?;
    Ok(no_content())
}

/// Tags address a function by its full ARN.
fn tagged(gw: &Gateway, caller: &Caller, arn: &str) -> Result<nimbus_types::FunctionKey, ApiError> {
    if !arn.starts_with("arn:") {
        return Err(ApiError::invalid(format!(
            "Resource ARN {arn} is not a valid function ARN"
        )));
    }
    let named = resolve::named(gw, &caller.account_id, arn, None)?;
    if named.qualifier.is_some() {
        return Err(ApiError::invalid(
            "Tags apply to a function, not to a version or alias",
        ));
    }
    resolve::function(gw, &named.key)?;
    Ok(named.key)
}

pub async fn list_tags(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    PathParams(arn): PathParams<String>,
) -> Result<Response, ApiError> {
    let key = tagged(&gw, &caller, &arn)?;
    let f = resolve::function(&gw, &key)?;
    Ok(json(200, json!({ "Tags": f.tags })))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagInput {
    tags: Option<BTreeMap<String, String>>,
}

pub async fn tag(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    PathParams(arn): PathParams<String>,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let input: TagInput = body(&raw)?;
    let tags = input
        .tags
        .ok_or_else(|| ApiError::validation("Tags is required"))?;
    validate::tags(&tags)?;
    let key = tagged(&gw, &caller, &arn)?;
    write(&gw, Command::TagResource { key, tags }).await?;
    Ok(no_content())
}

pub async fn untag(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    PathParams(arn): PathParams<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let tag_keys: Vec<String> = query_pairs(q.as_deref())
        .into_iter()
        .filter(|(k, _)| k == "tagKeys")
        .map(|(_, v)| v)
        .collect();
    if tag_keys.is_empty() {
        return Err(ApiError::validation("tagKeys is required"));
    }
    let key = tagged(&gw, &caller, &arn)?;
    write(&gw, Command::UntagResource { key, tag_keys }).await?;
    Ok(no_content())
}
