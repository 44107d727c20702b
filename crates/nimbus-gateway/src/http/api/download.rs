//! `GET /nimbus/code/{sha}`: a signed download link of GetFunction's `Code.Location` or a
//! layer version's `Content.Location`, answered with the exact zip.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::query_map;
use crate::core::{download, ApiError, Gateway};
use crate::http::extract::PathParams;

#[derive(serde::Deserialize)]
pub struct CodePath {
    sha: String,
}

pub async fn serve(
    State(gw): State<Arc<Gateway>>,
    PathParams(p): PathParams<CodePath>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = query_map(q.as_deref());
    let field = |k: &str| q.get(k).map(String::as_str).unwrap_or_default();
    let sha256 = download::check(
        &gw,
        &p.sha,
        field("AccessKeyId"),
        q.get("Account").map(String::as_str),
        field("Expires"),
        field("Signature"),
    )
    .await?;
    let zip = gw
        .meta()
        .fetch_code(&sha256, gw.catalog().revision())
        .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip"),
            (header::CACHE_CONTROL, "private, no-store"),
        ],
        zip,
    )
        .into_response())
}
