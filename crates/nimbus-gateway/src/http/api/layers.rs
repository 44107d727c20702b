//! PublishLayerVersion, GetLayerVersion, GetLayerVersionByArn, ListLayers,
//! ListLayerVersions, DeleteLayerVersion, and the layer version policy operations
//! (AddLayerVersionPermission, GetLayerVersionPolicy, RemoveLayerVersionPermission).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Extension, RawQuery, State};
use axum::response::Response;
use base64::Engine;
use bytes::Bytes;
use nimbus_types::{
    arn, keys, validate, Command, CommandOutput, Entity, LayerKey, LayerStatement, LayerVersion,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::shapes::timestamp;
use super::{body, json, max_items, no_content, now_ms, query_map, write};
use crate::core::{download, layers, package, ApiError, Gateway};
use crate::http::extract::{PathParams, PublicOrigin};
use crate::http::Caller;

#[derive(Deserialize)]
pub struct LayerPath {
    layer: String,
}

#[derive(Deserialize)]
pub struct VersionPath {
    layer: String,
    version: String,
}

#[derive(Deserialize)]
pub struct StatementPath {
    layer: String,
    version: String,
    sid: String,
}

/// The layer a path names, in this gateway's region (a layer ARN of another region names
/// nothing here).
fn layer_key(gw: &Gateway, caller: &Caller, name: &str) -> Result<LayerKey, ApiError> {
    let key = arn::parse_layer_name(name, &caller.account_id, gw.region())?;
    if key.region != gw.region() {
        return Err(ApiError::new(
            404,
            "ResourceNotFoundException",
            "The resource you requested does not exist.",
        ));
    }
    Ok(key)
}

fn version_number(v: &str) -> Result<u64, ApiError> {
    v.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
        ApiError::validation(format!(
            "1 validation error detected: Value '{v}' at 'versionNumber' failed to satisfy constraint: Member must have value greater than or equal to 1"
        ))
    })
}

/// `LayerVersionsListItem`: what every shape of a version shares.
fn list_item(v: &LayerVersion) -> Value {
    json!({
        "LayerVersionArn": v.arn(),
        "Version": v.number,
        "Description": v.description,
        "CreatedDate": timestamp(v.created_ms),
        "CompatibleRuntimes": v.compatible_runtimes,
        "CompatibleArchitectures": v.compatible_architectures,
        "LicenseInfo": v.license_info,
    })
}

/// `GetLayerVersionResponse` (also PublishLayerVersion's), with a download link signed
/// for the caller.
fn version_json(v: &LayerVersion, location: String) -> Value {
    let mut out = list_item(v);
    out["LayerArn"] = json!(v.key.arn());
    out["Content"] = json!({
        "Location": location,
        "CodeSha256": v.code.sha256,
        "CodeSize": v.code.size,
    });
    out
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Content {
    zip_file: Option<String>,
    #[serde(rename = "S3Bucket")]
    s3_bucket: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PublishInput {
    content: Option<Content>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    compatible_runtimes: Vec<String>,
    #[serde(default)]
    compatible_architectures: Vec<String>,
    #[serde(default)]
    license_info: String,
}

pub async fn publish(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    PublicOrigin(origin): PublicOrigin,
    PathParams(p): PathParams<LayerPath>,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let key = layer_key(&gw, &caller, &p.layer)?;
    if key.account_id != caller.account_id {
        return Err(ApiError::new(
            403,
            "AccessDeniedException",
            format!(
                "User: arn:aws:iam::{}:root is not authorized to perform: lambda:PublishLayerVersion on resource: {}",
                caller.account_id,
                key.arn()
            ),
        ));
    }
    let input: PublishInput = body(&raw)?;
    validate::layer_version(
        &input.description,
        &input.compatible_runtimes,
        &input.compatible_architectures,
        &input.license_info,
    )?;
    let content = input.content.ok_or_else(|| {
        ApiError::validation(
            "1 validation error detected: Value null at 'content' failed to satisfy constraint: Member must not be null",
        )
    })?;
    if content.s3_bucket.is_some() {
        return Err(ApiError::invalid(
            "Nimbus accepts layer content as Content.ZipFile only (S3 is not supported)",
        ));
    }
    let zip_b64 = content
        .zip_file
        .ok_or_else(|| ApiError::invalid("Content.ZipFile is required"))?;
    let zip = base64::engine::general_purpose::STANDARD
        .decode(zip_b64.trim())
        .map_err(|_| ApiError::invalid(package::NOT_A_ZIP))?;
    package::check(&zip)?;
    let (_, code) = gw.meta().upload_code(&zip).await?;
    let cmd = Command::PublishLayerVersion {
        key,
        description: input.description,
        compatible_runtimes: input.compatible_runtimes,
        compatible_architectures: input.compatible_architectures,
        license_info: input.license_info,
        code,
        now_ms: now_ms(),
    };
    match write(&gw, cmd).await? {
        CommandOutput::LayerVersion(v) => {
            let location = download::location(
                &gw,
                &origin,
                &caller.access_key_id,
                Some(&caller.account_id),
                &v.code.sha256,
            )
            .await?;
            Ok(json(201, version_json(&v, location)))
        }
        _ => Err(ApiError::service(
            "unexpected result of PublishLayerVersion",
        )),
    }
}

pub async fn get_version(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    PublicOrigin(origin): PublicOrigin,
    PathParams(p): PathParams<VersionPath>,
) -> Result<Response, ApiError> {
    let key = layer_key(&gw, &caller, &p.layer)?;
    let v = layers::visible(&gw, &caller.account_id, &key, version_number(&p.version)?)?;
    let location = download::location(
        &gw,
        &origin,
        &caller.access_key_id,
        Some(&caller.account_id),
        &v.code.sha256,
    )
    .await?;
    Ok(json(200, version_json(&v, location)))
}

/// `GET /2018-10-31/layers`: ListLayers, or GetLayerVersionByArn with `find=LayerVersion`.
pub async fn list_layers(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    PublicOrigin(origin): PublicOrigin,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = query_map(q.as_deref());
    if q.get("find").map(String::as_str) == Some("LayerVersion") {
        let a = q.get("Arn").map(String::as_str).unwrap_or_default();
        let (key, n) = arn::parse_layer_version_arn(a).ok_or_else(|| {
            ApiError::validation(format!(
                "1 validation error detected: Value '{a}' at 'arn' failed to satisfy constraint: Member must satisfy regular expression pattern: arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\\d{{12}}:layer:[a-zA-Z0-9-_]+:[0-9]+"
            ))
        })?;
        let v = layers::visible(&gw, &caller.account_id, &key, n)?;
        let location = download::location(
            &gw,
            &origin,
            &caller.access_key_id,
            Some(&caller.account_id),
            &v.code.sha256,
        )
        .await?;
        return Ok(json(200, version_json(&v, location)));
    }
    let limit = max_items(&q)?;
    let filter = Filter::of(&q)?;
    let prefix = keys::layers_of(&caller.account_id, gw.region());
    let mut out = Vec::new();
    let mut next = None;
    let after = q.get("Marker").map(|m| format!("{prefix}{m}"));
    for (k, e) in gw.catalog().list(&prefix, after.as_deref(), usize::MAX) {
        let Entity::Layer(layer) = e else { continue };
        // The newest version that matches the filters; a layer with none is not listed.
        let latest = versions(&gw, &layer.key)
            .into_iter()
            .rev()
            .find(|v| filter.matches(v));
        let Some(latest) = latest else { continue };
        if out.len() == limit {
            next = Some(k.trim_start_matches(&prefix).to_string());
            break;
        }
        out.push(json!({
            "LayerName": layer.key.name,
            "LayerArn": layer.key.arn(),
            "LatestMatchingVersion": list_item(&latest),
        }));
    }
    // The marker is the last listed layer: listing resumes after it.
    let mut body = json!({ "Layers": out });
    if next.is_some() {
        if let Some(last) = body["Layers"].as_array().and_then(|a| a.last()) {
            body["NextMarker"] = last["LayerName"].clone();
        }
    }
    Ok(json(200, body))
}

/// `CompatibleRuntime` and `CompatibleArchitecture`, as both list operations filter.
struct Filter {
    runtime: Option<String>,
    architecture: Option<String>,
}

impl Filter {
    fn of(q: &HashMap<String, String>) -> Result<Self, ApiError> {
        let runtime = q.get("CompatibleRuntime").cloned();
        let architecture = q.get("CompatibleArchitecture").cloned();
        validate::layer_version("", runtime.as_slice(), architecture.as_slice(), "")?;
        Ok(Self {
            runtime,
            architecture,
        })
    }

    fn matches(&self, v: &LayerVersion) -> bool {
        self.runtime
            .as_ref()
            .is_none_or(|r| v.compatible_runtimes.contains(r))
            && self
                .architecture
                .as_ref()
                .is_none_or(|a| v.compatible_architectures.contains(a))
    }
}

/// A layer's versions, oldest first.
fn versions(gw: &Gateway, key: &LayerKey) -> Vec<LayerVersion> {
    gw.catalog()
        .list(&keys::layer_versions_of(key), None, usize::MAX)
        .into_iter()
        .filter_map(|(_, e)| match e {
            Entity::LayerVersion(v) => Some(v),
            _ => None,
        })
        .collect()
}

pub async fn list_versions(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    PathParams(p): PathParams<LayerPath>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = query_map(q.as_deref());
    let limit = max_items(&q)?;
    let filter = Filter::of(&q)?;
    let key = layer_key(&gw, &caller, &p.layer)?;
    let marker: Option<u64> = q.get("Marker").and_then(|m| m.parse().ok());
    // Newest first, as Lambda lists them; another account sees only what is shared.
    let all: Vec<LayerVersion> = versions(&gw, &key)
        .into_iter()
        .rev()
        .filter(|v| v.usable_by(&caller.account_id) && filter.matches(v))
        .filter(|v| marker.is_none_or(|m| v.number < m))
        .collect();
    let mut body = json!({
        "LayerVersions": all.iter().take(limit).map(list_item).collect::<Vec<_>>(),
    });
    if all.len() > limit {
        body["NextMarker"] = json!(all[limit - 1].number.to_string());
    }
    Ok(json(200, body))
}

pub async fn delete_version(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    PathParams(p): PathParams<VersionPath>,
) -> Result<Response, ApiError> {
    let key = layer_key(&gw, &caller, &p.layer)?;
    let n = version_number(&p.version)?;
    if key.account_id != caller.account_id {
        layers::owned(&gw, &caller.account_id, &key, n)?;
    }
    write(&gw, Command::DeleteLayerVersion { key, version: n }).await?;
    Ok(no_content())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PermissionInput {
    statement_id: Option<String>,
    action: Option<String>,
    principal: Option<String>,
    organization_id: Option<String>,
}

/// The policy document Lambda returns for a layer version.
fn statement_json(key: &LayerKey, n: u64, s: &LayerStatement) -> Value {
    let principal = if s.principal == "*" {
        json!("*")
    } else {
        json!({ "AWS": format!("arn:aws:iam::{}:root", s.principal) })
    };
    let mut st = json!({
        "Sid": s.statement_id,
        "Effect": "Allow",
        "Principal": principal,
        "Action": s.action,
        "Resource": key.version_arn(n),
    });
    if let Some(org) = &s.organization_id {
        st["Condition"] = json!({ "StringEquals": { "aws:PrincipalOrgID": org } });
    }
    st
}

pub async fn add_permission(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    PathParams(p): PathParams<VersionPath>,
    RawQuery(q): RawQuery,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let key = layer_key(&gw, &caller, &p.layer)?;
    let n = version_number(&p.version)?;
    let input: PermissionInput = body(&raw)?;
    let required = |v: Option<String>, field: &str| {
        v.ok_or_else(|| {
            ApiError::validation(format!(
                "1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"
            ))
        })
    };
    let sid = required(input.statement_id, "statementId")?;
    let action = required(input.action, "action")?;
    let principal = required(input.principal, "principal")?;
    let principal =
        validate::layer_statement(&sid, &action, &principal, input.organization_id.as_deref())?;
    layers::owned(&gw, &caller.account_id, &key, n)?;
    let statement = LayerStatement {
        statement_id: sid,
        action,
        principal,
        organization_id: input.organization_id,
    };
    let q = query_map(q.as_deref());
    let cmd = Command::AddLayerVersionPermission {
        key: key.clone(),
        version: n,
        statement: statement.clone(),
        expected_revision: q.get("RevisionId").cloned(),
    };
    match write(&gw, cmd).await? {
        CommandOutput::LayerVersion(v) => Ok(json(
            201,
            json!({
                "Statement": statement_json(&key, n, &statement).to_string(),
                "RevisionId": v.policy_revision,
            }),
        )),
        _ => Err(ApiError::service(
            "unexpected result of AddLayerVersionPermission",
        )),
    }
}

pub async fn get_policy(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    PathParams(p): PathParams<VersionPath>,
) -> Result<Response, ApiError> {
    let key = layer_key(&gw, &caller, &p.layer)?;
    let n = version_number(&p.version)?;
    let v = layers::owned(&gw, &caller.account_id, &key, n)?;
    if v.policy.is_empty() {
        return Err(ApiError::new(
            404,
            "ResourceNotFoundException",
            "No policy is associated with the given resource.",
        ));
    }
    let policy = json!({
        "Version": "2012-10-17",
        "Id": "default",
        "Statement": v.policy.iter().map(|s| statement_json(&key, n, s)).collect::<Vec<_>>(),
    });
    Ok(json(
        200,
        json!({ "Policy": policy.to_string(), "RevisionId": v.policy_revision }),
    ))
}

pub async fn remove_permission(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    PathParams(p): PathParams<StatementPath>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let key = layer_key(&gw, &caller, &p.layer)?;
    let n = version_number(&p.version)?;
    layers::owned(&gw, &caller.account_id, &key, n)?;
    let q = query_map(q.as_deref());
    write(
        &gw,
        Command::RemoveLayerVersionPermission {
            key,
            version: n,
            statement_id: p.sid,
            expected_revision: q.get("RevisionId").cloned(),
        },
    )
    .await?;
    Ok(no_content())
}
