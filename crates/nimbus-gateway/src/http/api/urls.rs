//! CreateFunctionUrlConfig, GetFunctionUrlConfig, UpdateFunctionUrlConfig,
//! DeleteFunctionUrlConfig and ListFunctionUrlConfigs: a function URL per function
//! (`$LATEST`) or alias, with its auth type, CORS and invoke mode. The URL itself is
//! served by [`crate::http::urls`].

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use nimbus_types::{Command, FunctionUrlConfig, Qualifier, UrlCors};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{body, json, no_content, now_ms, query_map};
use crate::core::resolve::{self, Named};
use crate::core::{ApiError, Gateway};
use crate::http::extract::{PublicOrigin, QualifiedFunction};
use crate::http::query::iso_time;

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct CorsInput {
    allow_credentials: Option<bool>,
    allow_headers: Option<Vec<String>>,
    allow_methods: Option<Vec<String>>,
    allow_origins: Option<Vec<String>>,
    expose_headers: Option<Vec<String>>,
    max_age: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UrlInput {
    auth_type: Option<String>,
    cors: Option<CorsInput>,
    invoke_mode: Option<String>,
}

fn enum_error(field: &str, value: &str, set: &str) -> ApiError {
    ApiError::validation(format!(
        "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: Member must satisfy enum value set: [{set}]"
    ))
}

fn auth_type(v: &str) -> Result<String, ApiError> {
    match v {
        "NONE" | "AWS_IAM" => Ok(v.into()),
        other => Err(enum_error("authType", other, "AWS_IAM, NONE")),
    }
}

fn invoke_mode(v: Option<&str>) -> Result<String, ApiError> {
    match v.unwrap_or("BUFFERED") {
        m @ ("BUFFERED" | "RESPONSE_STREAM") => Ok(m.into()),
        other => Err(enum_error("invokeMode", other, "BUFFERED, RESPONSE_STREAM")),
    }
}

/// Lambda's limits on a URL's CORS settings.
fn cors(input: CorsInput) -> Result<UrlCors, ApiError> {
    let list = |field: &str, v: Option<Vec<String>>, max_items: usize, max_len: usize| {
        let v = v.unwrap_or_default();
        if v.len() > max_items {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value at 'cors.{field}' failed to satisfy constraint: Member must have length less than or equal to {max_items}"
            )));
        }
        if let Some(bad) = v.iter().find(|s| s.is_empty() || s.len() > max_len) {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value '{bad}' at 'cors.{field}' failed to satisfy constraint: Member must have length between 1 and {max_len}"
            )));
        }
        Ok(v)
    };
    let methods = list("allowMethods", input.allow_methods, 6, 6)?;
    if let Some(bad) = methods.iter().find(|m| {
        !["GET", "PUT", "HEAD", "POST", "PATCH", "DELETE", "*"].contains(&m.to_uppercase().as_str())
    }) {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value '{bad}' at 'cors.allowMethods' failed to satisfy constraint: Member must satisfy constraint: [Member must satisfy regular expression pattern: .*]"
        )));
    }
    let max_age = match input.max_age {
        None => None,
        Some(n) if (0..=86_400).contains(&n) => Some(n as u32),
        Some(n) => {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value '{n}' at 'cors.maxAge' failed to satisfy constraint: Member must have value less than or equal to 86400 and greater than or equal to 0"
            )))
        }
    };
    Ok(UrlCors {
        allow_credentials: input.allow_credentials.unwrap_or(false),
        allow_headers: list("allowHeaders", input.allow_headers, 100, 1024)?,
        allow_methods: methods,
        allow_origins: list("allowOrigins", input.allow_origins, 100, 253)?,
        expose_headers: list("exposeHeaders", input.expose_headers, 100, 1024)?,
        max_age,
    })
}

/// The qualifier a URL is kept under: `""` for `$LATEST` or none, else an alias name.
fn url_qualifier(named: &Named) -> Result<String, ApiError> {
    match named.qualifier.as_deref() {
        None | Some("$LATEST") => Ok(String::new()),
        Some(q) => match Qualifier::parse(q) {
            Qualifier::Alias(a) => Ok(a),
            _ => Err(ApiError::validation(format!(
                "1 validation error detected: Value '{q}' at 'qualifier' failed to satisfy constraint: Member must satisfy regular expression pattern: ((?!^\\d+$)^[0-9a-zA-Z-_]+$)"
            ))),
        },
    }
}

/// The URL a client can use, on the host and port the caller reached this gateway at.
pub fn function_url(gw: &Gateway, origin: &str, url_id: &str) -> String {
    let (scheme, host) = origin.split_once("://").unwrap_or(("http", origin));
    let port = host
        .rsplit_once(':')
        .filter(|(_, p)| p.chars().all(|c| c.is_ascii_digit()))
        .map(|(_, p)| format!(":{p}"))
        .unwrap_or_default();
    format!(
        "{scheme}://{url_id}.lambda-url.{}.{}{port}/",
        gw.region(),
        gw.url_domain()
    )
}

fn shape(
    gw: &Gateway,
    origin: &str,
    named: &Named,
    c: &FunctionUrlConfig,
    with_modified: bool,
) -> Value {
    let arn = if c.qualifier.is_empty() {
        named.key.arn()
    } else {
        format!("{}:{}", named.key.arn(), c.qualifier)
    };
    let mut v = json!({
        "FunctionUrl": function_url(gw, origin, &c.url_id),
        "FunctionArn": arn,
        "AuthType": c.auth_type,
        "CreationTime": iso_time(c.created_ms),
        "InvokeMode": c.invoke_mode,
    });
    if with_modified {
        v["LastModifiedTime"] = json!(iso_time(c.last_modified_ms));
    }
    if let Some(cors) = &c.cors {
        let mut o = json!({
            "AllowCredentials": cors.allow_credentials,
            "AllowHeaders": cors.allow_headers,
            "AllowMethods": cors.allow_methods,
            "AllowOrigins": cors.allow_origins,
            "ExposeHeaders": cors.expose_headers,
        });
        if let Some(m) = cors.max_age {
            o["MaxAge"] = json!(m);
        }
        v["Cors"] = o;
    }
    v
}

/// A new URL id: 32 characters of `[a-z0-9]`, as Lambda's.
fn new_url_id() -> String {
    crate::core::sessions::random_chars(b"abcdefghijklmnopqrstuvwxyz0123456789", 32)
}

/// `POST /2021-10-31/functions/{name}/url`.
pub async fn create(
    State(gw): State<Arc<Gateway>>,
    QualifiedFunction(named): QualifiedFunction,
    PublicOrigin(origin): PublicOrigin,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let input: UrlInput = body(&raw)?;
    let auth = auth_type(input.auth_type.as_deref().ok_or_else(|| {
        ApiError::validation(
            "1 validation error detected: Value null at 'authType' failed to satisfy constraint: Member must not be null",
        )
    })?)?;
    resolve::function(&gw, &named.key)?;
    let now = now_ms();
    let config = FunctionUrlConfig {
        auth_type: auth,
        url_id: new_url_id(),
        qualifier: url_qualifier(&named)?,
        cors: input.cors.map(cors).transpose()?,
        invoke_mode: invoke_mode(input.invoke_mode.as_deref())?,
        created_ms: now,
        last_modified_ms: now,
    };
    gw.write(Command::PutFunctionUrlConfig {
        key: named.key.clone(),
        config: config.clone(),
        create: true,
    })
    .await?;
    Ok(json(201, shape(&gw, &origin, &named, &config, false)))
}

fn existing(gw: &Gateway, named: &Named) -> Result<FunctionUrlConfig, ApiError> {
    let f = resolve::function(gw, &named.key)?;
    let q = url_qualifier(named)?;
    f.url_configs
        .get(&q)
        .cloned()
        .ok_or_else(|| ApiError::not_found("The resource you requested does not exist."))
}

/// `GET /2021-10-31/functions/{name}/url`.
pub async fn get(
    State(gw): State<Arc<Gateway>>,
    QualifiedFunction(named): QualifiedFunction,
    PublicOrigin(origin): PublicOrigin,
) -> Result<Response, ApiError> {
    let c = existing(&gw, &named)?;
    Ok(json(200, shape(&gw, &origin, &named, &c, true)))
}

/// `PUT /2021-10-31/functions/{name}/url`: what is given replaces what was.
pub async fn update(
    State(gw): State<Arc<Gateway>>,
    QualifiedFunction(named): QualifiedFunction,
    PublicOrigin(origin): PublicOrigin,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let input: UrlInput = body(&raw)?;
    let mut c = existing(&gw, &named)?;
    if let Some(a) = input.auth_type.as_deref() {
        c.auth_type = auth_type(a)?;
    }
    if let Some(x) = input.cors {
        c.cors = Some(cors(x)?);
    }
    if input.invoke_mode.is_some() {
        c.invoke_mode = invoke_mode(input.invoke_mode.as_deref())?;
    }
    c.last_modified_ms = now_ms();
    gw.write(Command::PutFunctionUrlConfig {
        key: named.key.clone(),
        config: c.clone(),
        create: false,
    })
    .await?;
    Ok(json(200, shape(&gw, &origin, &named, &c, true)))
}

/// `DELETE /2021-10-31/functions/{name}/url`.
pub async fn delete(
    State(gw): State<Arc<Gateway>>,
    QualifiedFunction(named): QualifiedFunction,
) -> Result<Response, ApiError> {
    let c = existing(&gw, &named)?;
    gw.write(Command::DeleteFunctionUrlConfig {
        key: named.key,
        qualifier: c.qualifier,
    })
    .await?;
    Ok(no_content())
}

/// `GET /2021-10-31/functions/{name}/urls`.
pub async fn list(
    State(gw): State<Arc<Gateway>>,
    QualifiedFunction(named): QualifiedFunction,
    PublicOrigin(origin): PublicOrigin,
    uri: axum::http::Uri,
) -> Result<Response, ApiError> {
    let q = query_map(uri.query());
    let max = super::max_items(&q)?.min(50);
    let f = resolve::function(&gw, &named.key)?;
    let marker = q.get("Marker").cloned().unwrap_or_default();
    let configs: Vec<&FunctionUrlConfig> = f
        .url_configs
        .values()
        .filter(|c| marker.is_empty() || c.url_id > marker)
        .collect();
    let page: Vec<Value> = configs
        .iter()
        .take(max)
        .map(|c| shape(&gw, &origin, &named, c, true))
        .collect();
    let mut out = json!({ "FunctionUrlConfigs": page });
    if configs.len() > max {
        out["NextMarker"] = json!(configs[max - 1].url_id);
    }
    Ok(json(200, out))
}
