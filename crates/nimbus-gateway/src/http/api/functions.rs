//! CreateFunction, GetFunction, GetFunctionConfiguration, UpdateFunctionCode,
//! UpdateFunctionConfiguration, DeleteFunction, ListFunctions.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Extension, RawQuery, State};
use axum::response::Response;
use base64::Engine;
use bytes::Bytes;
use nimbus_types::{
    keys, validate, Command, CommandOutput, Entity, FunctionConfig, FunctionKey, Qualifier,
};
use serde::Deserialize;
use serde_json::json;

use super::shapes::{function_configuration, version_configuration};
use super::{body, json, max_items, no_content, now_ms, query_map, write};
use crate::core::resolve::{self, Named, Resolved};
use crate::core::ApiError;
use crate::core::{download, layers, package, Gateway};
use crate::http::extract::{FunctionName, PublicOrigin, QualifiedFunction};
use crate::http::Caller;

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Environment {
    #[serde(default)]
    variables: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Size {
    size: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct LoggingConfig {
    log_format: Option<String>,
    application_log_level: Option<String>,
    system_log_level: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DeadLetterConfig {
    target_arn: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct Code {
    zip_file: Option<String>,
    #[serde(rename = "S3Bucket")]
    s3_bucket: Option<String>,
    image_uri: Option<String>,
}

/// The configuration fields shared by CreateFunction and UpdateFunctionConfiguration.
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ConfigInput {
    runtime: Option<String>,
    handler: Option<String>,
    role: Option<String>,
    description: Option<String>,
    memory_size: Option<u32>,
    timeout: Option<u32>,
    environment: Option<Environment>,
    layers: Option<Vec<String>>,
    ephemeral_storage: Option<Size>,
    logging_config: Option<LoggingConfig>,
    dead_letter_config: Option<DeadLetterConfig>,
    revision_id: Option<String>,
    // Settings Nimbus does not honour: refused, never silently dropped (see `refuse_unhonoured`).
    vpc_config: Option<serde_json::Value>,
    #[serde(rename = "KMSKeyArn")]
    kms_key_arn: Option<String>,
    architectures: Option<Vec<String>>,
    snap_start: Option<serde_json::Value>,
    image_config: Option<serde_json::Value>,
}

/// Refuses a setting Nimbus would otherwise ignore, saying what it supports instead. The
/// empty forms SDKs and deploy tools send for "none" (an empty VpcConfig, an empty key
/// ARN, `x86_64`, SnapStart `None`) are accepted.
fn refuse_unhonoured(input: &ConfigInput) -> Result<(), ApiError> {
    let empty = |v: &serde_json::Value| match v {
        serde_json::Value::Null => true,
        serde_json::Value::Object(m) => m.values().all(|x| match x {
            serde_json::Value::Array(a) => a.is_empty(),
            serde_json::Value::String(s) => s.is_empty() || s == "None",
            serde_json::Value::Null | serde_json::Value::Bool(false) => true,
            _ => false,
        }),
        _ => false,
    };
    if input.vpc_config.as_ref().is_some_and(|v| !empty(v)) {
        return Err(ApiError::invalid(
            "VpcConfig is not supported: functions reach the network through their worker's \
             NAT; private destinations are opened per worker with --egress-allow.",
        ));
    }
    if input.kms_key_arn.as_deref().is_some_and(|k| !k.is_empty()) {
        return Err(ApiError::invalid(
            "KMSKeyArn is not supported: environment variables are always sealed at rest with \
             the cluster's own key.",
        ));
    }
    if let Some(archs) = &input.architectures {
        if archs.len() != 1 || archs[0] != "x86_64" {
            return Err(ApiError::invalid(format!(
                "Architectures {archs:?} is not supported: Nimbus runs x86_64 only."
            )));
        }
    }
    if input.snap_start.as_ref().is_some_and(|v| !empty(v)) {
        return Err(ApiError::invalid(
            "SnapStart is not supported: use provisioned concurrency to keep environments \
             initialised.",
        ));
    }
    if input.image_config.as_ref().is_some_and(|v| !empty(v)) {
        return Err(ApiError::invalid(
            "ImageConfig is not supported: Nimbus runs zip packages only.",
        ));
    }
    Ok(())
}

impl ConfigInput {
    /// Applies the given fields over `base` (a function of `account`), resolving layer
    /// ARNs to their content, then validates the result.
    fn merge(
        self,
        gw: &Gateway,
        account: &str,
        mut c: FunctionConfig,
    ) -> Result<FunctionConfig, ApiError> {
        refuse_unhonoured(&self)?;
        // Lambda's dead-letter queues are SQS queues and SNS topics, which Nimbus does not
        // have; accepting the setting would lose the events it was meant to keep. An empty
        // TargetArn (how Lambda removes a queue) has nothing to refuse.
        if let Some(DeadLetterConfig {
            target_arn: Some(arn),
        }) = &self.dead_letter_config
        {
            if !arn.is_empty() {
                return Err(ApiError::invalid(format!(
                    "The dead-letter queue {arn} is not supported: Nimbus has no SQS queues or \
                     SNS topics. Configure an OnFailure destination function with \
                     PutFunctionEventInvokeConfig instead."
                )));
            }
        }
        if let Some(v) = self.runtime {
            c.runtime = v;
        }
        if let Some(v) = self.handler {
            c.handler = v;
        }
        if let Some(v) = self.role {
            c.role = v;
        }
        if let Some(v) = self.description {
            c.description = v;
        }
        if let Some(v) = self.memory_size {
            c.memory_mb = v;
        }
        if let Some(v) = self.timeout {
            c.timeout_s = v;
        }
        if let Some(v) = self.environment {
            c.environment = v.variables;
        }
        if let Some(arns) = self.layers {
            if arns.len() > nimbus_types::limits::LAYERS_MAX {
                return Err(ApiError::invalid(format!(
                    "Cannot reference more than {} layers.",
                    nimbus_types::limits::LAYERS_MAX
                )));
            }
            c.layers = layers::resolve(gw, account, &arns)?;
        }
        if let Some(v) = self.ephemeral_storage {
            c.ephemeral_storage_mb = v.size;
        }
        if let Some(l) = self.logging_config {
            if let Some(f) = l.log_format {
                // Levels belong to JSON: switching to Text drops them, as on Lambda.
                if f == "Text" {
                    c.application_log_level.clear();
                    c.system_log_level.clear();
                }
                c.log_format = f;
            }
            if let Some(v) = l.application_log_level {
                c.application_log_level = v;
            }
            if let Some(v) = l.system_log_level {
                c.system_log_level = v;
            }
        }
        validate::function_config(&c)?;
        Ok(c)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateInput {
    function_name: Option<String>,
    code: Option<Code>,
    #[serde(default)]
    publish: bool,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    package_type: Option<String>,
    #[serde(flatten)]
    config: ConfigInput,
}

/// Decodes, validates and uploads a base64 zip; returns the code ref and its revision.
async fn upload(gw: &Gateway, zip_b64: &str) -> Result<(u64, nimbus_types::CodeRef), ApiError> {
    let zip = base64::engine::general_purpose::STANDARD
        .decode(zip_b64.trim())
        .map_err(|_| ApiError::invalid(package::NOT_A_ZIP))?;
    package::check(&zip)?;
    Ok(gw.meta().upload_code(&zip).await?)
}

fn code_of(c: Option<Code>) -> Result<String, ApiError> {
    let c = c.ok_or_else(|| ApiError::invalid("Code is required: provide Code.ZipFile"))?;
    if c.s3_bucket.is_some() || c.image_uri.is_some() {
        return Err(ApiError::invalid(
            "Nimbus accepts code as Code.ZipFile only (S3 and container images are not supported)",
        ));
    }
    c.zip_file
        .ok_or_else(|| ApiError::invalid("Code.ZipFile is required"))
}

pub async fn create(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let input: CreateInput = body(&raw)?;
    let name = input.function_name.ok_or_else(|| ApiError::validation("1 validation error detected: Value null at 'functionName' failed to satisfy constraint: Member must not be null"))?;
    validate::function_name(&name)?;
    if input.package_type.as_deref().is_some_and(|p| p != "Zip") {
        return Err(ApiError::invalid("Nimbus supports PackageType Zip only"));
    }
    if input.config.runtime.is_none()
        || input.config.handler.is_none()
        || input.config.role.is_none()
    {
        return Err(ApiError::invalid(
            "Runtime, Handler and Role are required for a Zip function",
        ));
    }
    validate::tags(&input.tags)?;
    let config = input
        .config
        .merge(&gw, &caller.account_id, FunctionConfig::default())?;
    gw.check_execution_role(&caller.account_id, &config.role)
        .await?;
    let key = FunctionKey::new(&caller.account_id, gw.region(), &name);
    if gw.catalog().get(&keys::function(&key)).is_some() {
        return Err(ApiError::new(
            409,
            "ResourceConflictException",
            format!("Function already exist: {name}"),
        ));
    }
    let zip = code_of(input.code)?;
    let (_, code) = upload(&gw, &zip).await?;
    let cmd = Command::CreateFunction {
        key,
        config,
        code,
        tags: input.tags,
        publish: input.publish,
        now_ms: now_ms(),
    };
    match write(&gw, cmd).await? {
        CommandOutput::Function(f) => Ok(json(201, function_configuration(&f))),
        CommandOutput::FunctionAndVersion(_, v) => Ok(json(201, version_configuration(&v))),
        _ => Err(ApiError::service("unexpected result of CreateFunction")),
    }
}

fn configuration_of(
    gw: &Gateway,
    named: &Named,
) -> Result<(serde_json::Value, nimbus_types::Function), ApiError> {
    let f = resolve::function(gw, &named.key)?;
    let q = Qualifier::parse(named.qualifier_or_latest());
    let cfg = match &q {
        Qualifier::Latest => function_configuration(&f),
        Qualifier::Version(n) => version_configuration(&resolve::version(gw, &named.key, *n)?),
        Qualifier::Alias(alias) => {
            let a = resolve::alias(gw, &named.key, alias)?;
            match resolve::qualifier(gw, &named.key, Some(&a.function_version))? {
                Resolved::Latest(f) => function_configuration(&f),
                Resolved::Version(v) => version_configuration(&v),
            }
        }
    };
    Ok((cfg, f))
}

pub async fn get(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    PublicOrigin(origin): PublicOrigin,
    QualifiedFunction(named): QualifiedFunction,
) -> Result<Response, ApiError> {
    let (cfg, f) = configuration_of(&gw, &named)?;
    let sha256 = cfg["CodeSha256"].as_str().unwrap_or_default();
    let location = download::location(
        &gw,
        &origin,
        &caller.access_key_id,
        Some(&caller.account_id),
        sha256,
    )
    .await?;
    let mut out = json!({
        "Configuration": cfg,
        "Code": { "RepositoryType": "S3", "Location": location },
        "Tags": f.tags,
    });
    if let Some(r) = f.reserved_concurrency {
        out["Concurrency"] = json!({ "ReservedConcurrentExecutions": r });
    }
    Ok(json(200, out))
}

pub async fn get_configuration(
    State(gw): State<Arc<Gateway>>,
    QualifiedFunction(named): QualifiedFunction,
) -> Result<Response, ApiError> {
    let (cfg, _) = configuration_of(&gw, &named)?;
    Ok(json(200, cfg))
}

pub async fn update_configuration(
    State(gw): State<Arc<Gateway>>,
    FunctionName(named): FunctionName,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let input: ConfigInput = body(&raw)?;
    if named.qualifier.is_some() {
        return Err(ApiError::invalid(
            "Only $LATEST can be updated; remove the qualifier",
        ));
    }
    let f = resolve::function(&gw, &named.key)?;
    let expected_revision = input.revision_id.clone();
    let role_changed = input.role.as_ref().is_some_and(|r| *r != f.config.role);
    let config = input.merge(&gw, &named.key.account_id, f.config.clone())?;
    if role_changed {
        gw.check_execution_role(&named.key.account_id, &config.role)
            .await?;
    }
    let cmd = Command::UpdateFunctionConfiguration {
        key: named.key,
        config,
        expected_revision,
        now_ms: now_ms(),
    };
    match write(&gw, cmd).await? {
        CommandOutput::Function(f) => Ok(json(200, function_configuration(&f))),
        _ => Err(ApiError::service(
            "unexpected result of UpdateFunctionConfiguration",
        )),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateCodeInput {
    zip_file: Option<String>,
    #[serde(rename = "S3Bucket")]
    s3_bucket: Option<String>,
    image_uri: Option<String>,
    #[serde(default)]
    publish: bool,
    revision_id: Option<String>,
    #[serde(default)]
    dry_run: bool,
}

pub async fn update_code(
    State(gw): State<Arc<Gateway>>,
    FunctionName(named): FunctionName,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let input: UpdateCodeInput = body(&raw)?;
    let f = resolve::function(&gw, &named.key)?;
    let zip = code_of(Some(Code {
        zip_file: input.zip_file,
        s3_bucket: input.s3_bucket,
        image_uri: input.image_uri,
    }))?;
    if input.dry_run {
        return Ok(json(200, function_configuration(&f)));
    }
    let (_, code) = upload(&gw, &zip).await?;
    let cmd = Command::UpdateFunctionCode {
        key: named.key,
        code,
        expected_revision: input.revision_id,
        publish: input.publish,
        now_ms: now_ms(),
    };
    match write(&gw, cmd).await? {
        CommandOutput::Function(f) => Ok(json(200, function_configuration(&f))),
        CommandOutput::FunctionAndVersion(_, v) => Ok(json(200, version_configuration(&v))),
        _ => Err(ApiError::service("unexpected result of UpdateFunctionCode")),
    }
}

pub async fn delete(
    State(gw): State<Arc<Gateway>>,
    QualifiedFunction(named): QualifiedFunction,
) -> Result<Response, ApiError> {
    let version = match named.qualifier.as_deref() {
        None => None,
        Some(Qualifier::LATEST) => {
            return Err(ApiError::invalid(
                "$LATEST version cannot be deleted without deleting the function.",
            ))
        }
        Some(v) => Some(v.parse::<u64>().map_err(|_| {
            ApiError::invalid(
                "Deletion of aliases is not supported by DeleteFunction; use DeleteAlias",
            )
        })?),
    };
    write(
        &gw,
        Command::DeleteFunction {
            key: named.key,
            version,
        },
    )
    .await?;
    Ok(no_content())
}

pub async fn list(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = query_map(q.as_deref());
    let limit = max_items(&q)?;
    let prefix = keys::functions_of(&caller.account_id, gw.region());
    let after = q.get("Marker").map(|m| format!("{prefix}{m}"));
    let page = gw.catalog().list(&prefix, after.as_deref(), limit + 1);
    let mut functions: Vec<serde_json::Value> = page
        .iter()
        .take(limit)
        .filter_map(|(_, e)| match e {
            Entity::Function(f) => Some(function_configuration(f)),
            _ => None,
        })
        .collect();
    let mut out = json!({});
    if page.len() > limit {
        if let Some(last) = page.get(limit - 1) {
            out["NextMarker"] = json!(last.0.trim_start_matches(&prefix));
        }
    }
    out["Functions"] = serde_json::Value::Array(std::mem::take(&mut functions));
    Ok(json(200, out))
}
