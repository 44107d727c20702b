//! AddPermission, GetPolicy and RemovePermission: a function's resource-based policy,
//! per qualifier, in Lambda's statement format. The statements are evaluated with the
//! caller's identity policies on every request (`core::access`), so a permission for
//! another account lets that account's principals do exactly what it names.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::Response;
use bytes::Bytes;
use nimbus_types::{Command, CommandOutput};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{body, json, no_content};
use crate::core::access::policy_document;
use crate::core::{resolve, ApiError, Gateway};
use crate::http::extract::{PathParams, QualifiedFunction};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AddInput {
    statement_id: Option<String>,
    action: Option<String>,
    principal: Option<String>,
    source_arn: Option<String>,
    source_account: Option<String>,
    #[serde(rename = "PrincipalOrgID")]
    principal_org_id: Option<String>,
    function_url_auth_type: Option<String>,
    revision_id: Option<String>,
    event_source_token: Option<String>,
}

fn required<'a>(v: &'a Option<String>, field: &str) -> Result<&'a str, ApiError> {
    v.as_deref().filter(|s| !s.is_empty()).ok_or_else(|| {
        ApiError::validation(format!(
            "1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"
        ))
    })
}

/// `StatementId`: Lambda's pattern and length.
fn check_sid(sid: &str) -> Result<(), ApiError> {
    let ok = (1..=100).contains(&sid.len())
        && sid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ApiError::validation(format!(
            "1 validation error detected: Value '{sid}' at 'statementId' failed to satisfy constraint: Member must satisfy regular expression pattern: ([a-zA-Z0-9-_.]+)"
        )))
    }
}

/// The statement Lambda writes for an AddPermission call.
fn statement(input: &AddInput, sid: &str, resource: &str) -> Result<Value, ApiError> {
    let action = required(&input.action, "action")?;
    let action_ok = action == "*"
        || action == "lambda:*"
        || action
            .strip_prefix("lambda:")
            .is_some_and(|a| !a.is_empty() && a.chars().all(|c| c.is_ascii_alphabetic()));
    if !action_ok {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value '{action}' at 'action' failed to satisfy constraint: Member must satisfy regular expression pattern: (lambda:[*]|lambda:[a-zA-Z]+|[*])"
        )));
    }
    let principal = required(&input.principal, "principal")?;
    let principal = if principal == "*" {
        json!("*")
    } else if principal.len() == 12 && principal.bytes().all(|b| b.is_ascii_digit()) {
        json!({ "AWS": format!("arn:aws:iam::{principal}:root") })
    } else if principal.starts_with("arn:aws:iam::") || principal.starts_with("arn:aws:sts::") {
        json!({ "AWS": principal })
    } else if principal.ends_with(".amazonaws.com") || principal.ends_with(".amazon.com") {
        json!({ "Service": principal })
    } else {
        return Err(ApiError::invalid(format!(
            "The provided principal was invalid. Please check the principal and try again: {principal}"
        )));
    };
    let mut conditions = Map::new();
    let mut add = |op: &str, key: &str, value: &str| {
        let entry = conditions
            .entry(op.to_string())
            .or_insert_with(|| json!({}));
        entry[key] = json!(value);
    };
    if let Some(a) = input.source_arn.as_deref() {
        add("ArnLike", "AWS:SourceArn", a);
    }
    if let Some(a) = input.source_account.as_deref() {
        add("StringEquals", "AWS:SourceAccount", a);
    }
    if let Some(o) = input.principal_org_id.as_deref() {
        add("StringEquals", "aws:PrincipalOrgID", o);
    }
    if let Some(t) = input.event_source_token.as_deref() {
        add("StringEquals", "lambda:EventSourceToken", t);
    }
    if let Some(t) = input.function_url_auth_type.as_deref() {
        if t != "NONE" && t != "AWS_IAM" {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value '{t}' at 'functionUrlAuthType' failed to satisfy constraint: Member must satisfy enum value set: [NONE, AWS_IAM]"
            )));
        }
        add("StringEquals", "lambda:FunctionUrlAuthType", t);
    }
    let mut s = json!({
        "Sid": sid,
        "Effect": "Allow",
        "Principal": principal,
        "Action": action,
        "Resource": resource,
    });
    if !conditions.is_empty() {
        s["Condition"] = Value::Object(conditions);
    }
    Ok(s)
}

/// The qualifier a permission is kept under, and the resource its statement names.
fn scope(named: &resolve::Named) -> (String, String) {
    // `$LATEST` is the unqualified function's policy.
    let q = named
        .qualifier
        .clone()
        .filter(|q| q != "$LATEST")
        .unwrap_or_default();
    let resource = if q.is_empty() {
        named.key.arn()
    } else {
        format!("{}:{q}", named.key.arn())
    };
    (q, resource)
}

/// `POST /2015-03-31/functions/{name}/policy`.
pub async fn add(
    State(gw): State<Arc<Gateway>>,
    QualifiedFunction(named): QualifiedFunction,
    raw: Bytes,
) -> Result<Response, ApiError> {
    let input: AddInput = body(&raw)?;
    let sid = required(&input.statement_id, "statementId")?.to_string();
    check_sid(&sid)?;
    resolve::function(&gw, &named.key)?;
    let (qualifier, resource) = scope(&named);
    let statement = statement(&input, &sid, &resource)?;
    let text = statement.to_string();
    // The statement must be one the evaluator understands.
    nimbus_iam::PolicyDocument::parse(&policy_document(&[(sid.clone(), text.clone())]))
        .map_err(|e| ApiError::invalid(format!("The policy statement is invalid: {e}")))?;
    let cmd = Command::AddFunctionPermission {
        key: named.key,
        qualifier,
        statement_id: sid,
        statement: text.clone(),
        expected_revision: input.revision_id,
    };
    match gw.write(cmd).await? {
        CommandOutput::Function(_) => Ok(json(201, json!({ "Statement": text }))),
        _ => Err(ApiError::service("unexpected answer to AddPermission")),
    }
}

/// `GET /2015-03-31/functions/{name}/policy`.
pub async fn get(
    State(gw): State<Arc<Gateway>>,
    QualifiedFunction(named): QualifiedFunction,
) -> Result<Response, ApiError> {
    let f = resolve::function(&gw, &named.key)?;
    let (qualifier, _) = scope(&named);
    match f.resource_policy.get(&qualifier) {
        Some(statements) if !statements.is_empty() => Ok(json(
            200,
            json!({ "Policy": policy_document(statements), "RevisionId": f.revision_id }),
        )),
        _ => Err(ApiError::not_found(
            "The resource you requested does not exist.",
        )),
    }
}

#[derive(Deserialize)]
pub struct RemoveQuery {
    #[serde(rename = "RevisionId")]
    revision_id: Option<String>,
}

#[derive(Deserialize)]
pub struct RemovePath {
    sid: String,
}

/// `DELETE /2015-03-31/functions/{name}/policy/{sid}`.
pub async fn remove(
    State(gw): State<Arc<Gateway>>,
    QualifiedFunction(named): QualifiedFunction,
    PathParams(RemovePath { sid }): PathParams<RemovePath>,
    Query(q): Query<RemoveQuery>,
) -> Result<Response, ApiError> {
    check_sid(&sid)?;
    resolve::function(&gw, &named.key)?;
    let (qualifier, _) = scope(&named);
    gw.write(Command::RemoveFunctionPermission {
        key: named.key,
        qualifier,
        statement_id: sid,
        expected_revision: q.revision_id.filter(|r| !r.is_empty()),
    })
    .await?;
    Ok(no_content())
}
