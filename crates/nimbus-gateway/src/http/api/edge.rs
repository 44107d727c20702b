//! Edge deployments, Nimbus's own API beside Lambda's (`nimbus edge` uses it):
//!
//! - `PUT    /nimbus/2026-12-01/functions/{name}/edge-deployments/{qualifier}`
//!   `{"Locations": ["fra1"]}` deploys a published version or an alias of one (adding
//!   to the locations it already has); `lambda:EnableReplication` on the qualified ARN.
//! - `DELETE` on the same path, `{"Locations": [...]}` or no body for all of them;
//!   `lambda:DisableReplication`.
//! - `GET    /nimbus/2026-12-01/functions/{name}/edge-deployments`: the function's;
//!   `lambda:GetFunction`.
//! - `GET    /nimbus/2026-12-01/edge-deployments`: the account's in this region;
//!   `lambda:ListFunctions`.
//!
//! An answer names each deployment's `FunctionName`, `FunctionArn`, `Qualifier`, the
//! `Version` it resolves to now (an alias moves its deployments with it), and
//! `Locations`.

use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::response::Response;
use bytes::Bytes;
use nimbus_types::{keys, Command, Entity, Function, Qualifier};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{body, json, no_content};
use crate::core::{resolve, ApiError, Gateway};
use crate::http::extract::{FunctionName, PathParams};
use crate::http::Caller;

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct LocationsInput {
    #[serde(default)]
    locations: Vec<String>,
}

#[derive(Deserialize)]
pub struct QualifierPath {
    qualifier: String,
}

fn shape(gw: &Gateway, f: &Function, qualifier: &str, locations: &[String]) -> Value {
    let version = match Qualifier::parse(qualifier) {
        Qualifier::Alias(a) => match gw.catalog().get(&keys::alias(&f.key, &a)) {
            Some(Entity::Alias(alias)) => alias.function_version,
            _ => String::new(),
        },
        _ => qualifier.to_string(),
    };
    json!({
        "FunctionName": f.key.name,
        "FunctionArn": format!("{}:{qualifier}", f.key.arn()),
        "Qualifier": qualifier,
        "Version": version,
        "Locations": locations,
    })
}

/// `PUT …/functions/{name}/edge-deployments/{qualifier}`.
pub async fn deploy(
    State(gw): State<Arc<Gateway>>,
    FunctionName(named): FunctionName,
    PathParams(QualifierPath { qualifier }): PathParams<QualifierPath>,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let input: LocationsInput = body(&raw)?;
    if input.locations.is_empty() {
        return Err(ApiError::validation(
            "1 validation error detected: Value null at 'locations' failed to satisfy constraint: Member must not be empty",
        ));
    }
    resolve::function(&gw, &named.key)?;
    gw.write(Command::DeployToEdge {
        key: named.key.clone(),
        qualifier: qualifier.clone(),
        locations: input.locations,
    })
    .await?;
    let f = resolve::function(&gw, &named.key)?;
    let locations = f
        .edge_deployments
        .get(&qualifier)
        .cloned()
        .unwrap_or_default();
    Ok(json(200, shape(&gw, &f, &qualifier, &locations)))
}

/// `DELETE …/functions/{name}/edge-deployments/{qualifier}`.
pub async fn remove(
    State(gw): State<Arc<Gateway>>,
    FunctionName(named): FunctionName,
    PathParams(QualifierPath { qualifier }): PathParams<QualifierPath>,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let input: LocationsInput = body(&raw)?;
    gw.write(Command::RemoveFromEdge {
        key: named.key,
        qualifier,
        locations: input.locations,
    })
    .await?;
    Ok(no_content())
}

/// `GET …/functions/{name}/edge-deployments`.
pub async fn of_function(
    State(gw): State<Arc<Gateway>>,
    FunctionName(named): FunctionName,
) -> Result<Response, ApiError> {
    let f = resolve::function(&gw, &named.key)?;
    let list: Vec<Value> = f
        .edge_deployments
        .iter()
        .map(|(q, l)| shape(&gw, &f, q, l))
        .collect();
    Ok(json(200, json!({ "EdgeDeployments": list })))
}

/// `GET /nimbus/2026-12-01/edge-deployments`.
pub async fn of_account(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let prefix = keys::functions_of(&caller.account_id, gw.region());
    let mut list = Vec::new();
    for (_, e) in gw.catalog().list(&prefix, None, usize::MAX) {
        if let Entity::Function(f) = e {
            for (q, l) in &f.edge_deployments {
                list.push(shape(&gw, &f, q, l));
            }
        }
    }
    Ok(json(200, json!({ "EdgeDeployments": list })))
}
