//! The Lambda operations, one module per group. Handlers turn REST calls into typed
//! commands for the metadata cluster (or a call into the core); status codes for errors
//! are mapped in one place, [`crate::http::wire`].

pub mod aliases;
pub mod download;
pub mod edge;
pub mod functions;
pub mod invoke;
pub mod layers;
pub mod permissions;
pub mod provisioned;
pub mod settings;
pub mod shapes;
pub mod urls;
pub mod versions;

use std::collections::HashMap;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nimbus_types::{Command, CommandOutput};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::core::ApiError;
use crate::core::Gateway;

/// Parses a JSON body (an empty body counts as `{}`).
pub(crate) fn body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_content(format!("Could not parse request body into json: {e}")))
}

/// A JSON response with a status.
pub(crate) fn json(status: u16, v: Value) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        axum::Json(v),
    )
        .into_response()
}

pub(crate) fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

pub(crate) use crate::core::async_events::now_ms;

/// Writes a command and waits until this gateway's catalog shows it.
pub(crate) async fn write(gw: &Gateway, cmd: Command) -> Result<CommandOutput, ApiError> {
    gw.write(cmd).await
}

/// The query parameters, with repeated keys kept (`tagKeys=a&tagKeys=b`).
pub fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.unwrap_or("")
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let dec = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (dec(k), dec(v))
        })
        .collect()
}

pub fn query_map(raw: Option<&str>) -> HashMap<String, String> {
    query_pairs(raw).into_iter().collect()
}

/// `MaxItems` as Lambda bounds it (1–10,000; default 50).
pub(crate) fn max_items(q: &HashMap<String, String>) -> Result<usize, ApiError> {
    match q.get("MaxItems") {
        None => Ok(50),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=10_000).contains(&n) => Ok(n),
            _ => Err(ApiError::validation(format!(
                "1 validation error detected: Value '{s}' at 'maxItems' failed to satisfy constraint: Member must have value between 1 and 10000"
            ))),
        },
    }
}
