//! JSON → [`PolicyDocument`], checking in IAM's order so that a document with several
//! faults gets the message IAM would give: shape ("Syntax errors in policy."), then the
//! version (identity policies), then IAM's "legacy parsing" checks, then Sid uniqueness,
//! actions present, resources present (identity policies), resource ARN format, action
//! vendor prefixes, and finally principals and the rules of the policy's kind.
//!
//! The first pass reads the JSON into [`Raw`] statements, failing only on shape; errors
//! IAM reports later are carried along and raised in their turn.

use serde_json::{Map, Value};

use super::{Effect, Patterns, PolicyDocument, PolicyError, PolicyKind, Statement, Version};
use crate::condition::{Condition, ConditionError};
use crate::matching::{Case, Pattern};
use crate::principal::{PrincipalError, PrincipalSet};
use crate::variables::{Syntax, Template};

const SYNTAX: &str = "Syntax errors in policy.";
const LEGACY: &str = "The policy failed legacy parsing";
const OLD_VERSION: &str = "Policy document must be version 2012-10-17 or greater.";
const DUPLICATE_SID: &str = "Statement IDs (SID) in a single policy must be unique.";
const NO_ACTIONS: &str = "Policy statement must contain actions.";
const NO_RESOURCES: &str = "Policy statement must contain resources.";
const NO_VENDOR: &str =
    "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc.";
const TWO_COLONS: &str = "Actions/Condition can contain only one colon.";
const UNQUALIFIED_VENDOR: &str =
    "Resource vendor must be fully qualified and cannot contain regexes.";
const PRINCIPAL_FORBIDDEN: &str = "Policy document should not specify a principal.";
const PRINCIPAL_MISSING: &str = "Missing required field Principal";

const STATEMENT_KEYS: &[&str] = &[
    "Sid",
    "Effect",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Principal",
    "NotPrincipal",
    "Condition",
];

fn malformed(message: impl Into<String>) -> PolicyError {
    PolicyError::Malformed(message.into())
}

fn syntax() -> PolicyError {
    malformed(SYNTAX)
}

/// A statement after the shape check, before the later checks.
struct Raw<'a> {
    sid: Option<&'a str>,
    /// `Effect` as written (IAM's legacy parser wants exact case).
    effect: &'a str,
    actions: Option<List<'a>>,
    resources: Option<List<'a>>,
    /// `Err`: IAM's message for an invalid principal value.
    principals: Option<Result<PrincipalSet, String>>,
    /// `None`: a value IAM's legacy parser rejects.
    condition: Option<Condition>,
}

/// An `Action`/`NotAction` or `Resource`/`NotResource` element.
struct List<'a> {
    /// The element's name, for messages.
    name: &'static str,
    negated: bool,
    items: Vec<&'a str>,
}

pub(super) fn parse(json: &str, kind: Option<PolicyKind>) -> Result<PolicyDocument, PolicyError> {
    let value: Value = serde_json::from_str(json).map_err(|_| syntax())?;
    let top = value.as_object().ok_or_else(syntax)?;

    let mut version = Version::V2008_10_17;
    let mut id = None;
    let mut statements = None;
    for (key, value) in top {
        match key.as_str() {
            "Version" => {
                version = match value.as_str() {
                    Some("2012-10-17") => Version::V2012_10_17,
                    Some("2008-10-17") => Version::V2008_10_17,
                    _ => return Err(syntax()),
                }
            }
            "Id" => id = Some(value.as_str().ok_or_else(syntax)?.to_string()),
            "Statement" => statements = Some(value),
            _ => return Err(syntax()),
        }
    }
    let objects: Vec<&Map<String, Value>> = match statements {
        Some(Value::Object(one)) => vec![one],
        Some(Value::Array(many)) if !many.is_empty() => many
            .iter()
            .map(|s| s.as_object().ok_or_else(syntax))
            .collect::<Result<_, _>>()?,
        _ => return Err(syntax()),
    };
    let raws = objects
        .into_iter()
        .map(|s| read_statement(s, version))
        .collect::<Result<Vec<_>, _>>()?;

    if kind == Some(PolicyKind::Identity) && version != Version::V2012_10_17 {
        return Err(malformed(OLD_VERSION));
    }
    let resource_error = legacy_checks(&raws)?;
    check_sids(&raws)?;
    if raws
        .iter()
        .any(|r| r.actions.as_ref().is_none_or(|a| a.items.is_empty()))
    {
        return Err(malformed(NO_ACTIONS));
    }
    if kind == Some(PolicyKind::Identity)
        && raws
            .iter()
            .any(|r| r.resources.as_ref().is_none_or(|l| l.items.is_empty()))
    {
        return Err(malformed(NO_RESOURCES));
    }
    if let Some(message) = resource_error {
        return Err(malformed(message));
    }
    for raw in &raws {
        for action in raw.actions.iter().flat_map(|a| &a.items) {
            check_action(action)?;
        }
    }
    for raw in &raws {
        if let Some(Err(message)) = &raw.principals {
            return Err(malformed(message.clone()));
        }
    }
    if let Some(kind) = kind {
        check_kind(&raws, kind)?;
    }

    let variables = version == Version::V2012_10_17;
    Ok(PolicyDocument {
        version,
        id,
        statements: raws.into_iter().map(|r| compile(r, variables)).collect(),
    })
}

/// The shape check of one statement.
fn read_statement(s: &Map<String, Value>, version: Version) -> Result<Raw<'_>, PolicyError> {
    if s.keys().any(|k| !STATEMENT_KEYS.contains(&k.as_str())) {
        return Err(syntax());
    }
    let effect = s.get("Effect").and_then(Value::as_str).ok_or_else(syntax)?;
    if !effect.eq_ignore_ascii_case("Allow") && !effect.eq_ignore_ascii_case("Deny") {
        return Err(syntax());
    }
    let sid = match s.get("Sid") {
        None => None,
        Some(sid) => Some(sid.as_str().ok_or_else(syntax)?),
    };
    let actions = list(s, "Action", "NotAction")?;
    let resources = list(s, "Resource", "NotResource")?;
    let principals = match (s.get("Principal"), s.get("NotPrincipal")) {
        (Some(_), Some(_)) => return Err(syntax()),
        (None, None) => None,
        (Some(p), None) | (None, Some(p)) => {
            match PrincipalSet::parse(p, s.contains_key("NotPrincipal")) {
                Ok(set) => Some(Ok(set)),
                Err(PrincipalError::Invalid(message)) => Some(Err(message)),
                Err(PrincipalError::Syntax) => return Err(syntax()),
            }
        }
    };
    let condition = match s.get("Condition") {
        None => Some(Condition::default()),
        Some(c) => match Condition::parse(c, version == Version::V2012_10_17) {
            Ok(condition) => Some(condition),
            Err(ConditionError::Legacy) => None,
            Err(ConditionError::Syntax) => return Err(syntax()),
        },
    };
    Ok(Raw {
        sid,
        effect,
        actions,
        resources,
        principals,
        condition,
    })
}

/// Reads `name` or `not_name` (at most one): a string or an array of strings.
fn list<'a>(
    s: &'a Map<String, Value>,
    name: &'static str,
    not_name: &'static str,
) -> Result<Option<List<'a>>, PolicyError> {
    let (name, negated, value) = match (s.get(name), s.get(not_name)) {
        (Some(_), Some(_)) => return Err(syntax()),
        (None, None) => return Ok(None),
        (Some(v), None) => (name, false, v),
        (None, Some(v)) => (not_name, true, v),
    };
    let items = match value {
        Value::String(one) => vec![one.as_str()],
        Value::Array(many) => many
            .iter()
            .map(|v| v.as_str().ok_or_else(syntax))
            .collect::<Result<_, _>>()?,
        _ => return Err(syntax()),
    };
    Ok(Some(List {
        name,
        negated,
        items,
    }))
}

/// IAM's legacy-parser checks (effect case, condition values, malformed ARNs). Returns
/// the first resource format error, which IAM reports only after later checks.
fn legacy_checks(raws: &[Raw<'_>]) -> Result<Option<String>, PolicyError> {
    for raw in raws {
        if !matches!(raw.effect, "Allow" | "Deny") || raw.condition.is_none() {
            return Err(malformed(LEGACY));
        }
    }
    let mut first_error = None;
    for resources in raws.iter().filter_map(|r| r.resources.as_ref()) {
        for resource in &resources.items {
            if first_error.is_none() {
                first_error = resource_format_error(resource);
            }
        }
        // IAM's legacy parse of a statement's resources runs only while no format error
        // has been seen.
        if first_error.is_none() && resources.items.iter().any(|r| fails_legacy(r)) {
            return Err(malformed(LEGACY));
        }
    }
    Ok(first_error)
}

/// IAM's check that a resource is `*` or looks like `arn:partition:vendor:…`.
fn resource_format_error(resource: &str) -> Option<String> {
    if resource == "*" {
        return None;
    }
    let Some((_, rest)) = resource.split_once(':') else {
        return Some(format!(
            r#"Resource {resource} must be in ARN format or "*"."#
        ));
    };
    let (partition, after) = match rest.split_once(':') {
        Some((partition, after)) => (partition, Some(after)),
        None => (rest, None),
    };
    if partition != "aws" && !partition.starts_with("aws-") {
        // IAM echoes the resource as an ARN, padding missing segments with `*`.
        let segments: Vec<&str> = after.unwrap_or("").split(':').collect();
        let first = if !segments[0].is_empty() || segments.len() > 1 {
            segments[0]
        } else {
            "*"
        };
        let nth = |i: usize| segments.get(i).copied().unwrap_or("*");
        let tail = if segments.len() > 3 {
            segments[3..].join(":")
        } else {
            "*".to_string()
        };
        return Some(format!(
            r#"Partition "{partition}" is not valid for resource "arn:{partition}:{first}:{}:{}:{tail}"."#,
            nth(1),
            nth(2),
        ));
    }
    if after.is_none() {
        return Some(UNQUALIFIED_VENDOR.to_string());
    }
    None
}

/// IAM's legacy parser refuses a short ARN with an empty segment (`arn:aws:s3::bucket`)
/// and an empty vendor (`arn:aws::x`).
fn fails_legacy(resource: &str) -> bool {
    if resource == "*" {
        return false;
    }
    let colons = resource.matches(':').count();
    (colons < 5 && resource.contains("::")) || resource.split(':').nth(2).is_none_or(str::is_empty)
}

/// Non-empty `Sid`s must be unique.
fn check_sids(raws: &[Raw<'_>]) -> Result<(), PolicyError> {
    let mut seen: Vec<&str> = Vec::with_capacity(raws.len());
    for sid in raws.iter().filter_map(|r| r.sid).filter(|s| !s.is_empty()) {
        if seen.contains(&sid) {
            return Err(malformed(DUPLICATE_SID));
        }
        seen.push(sid);
    }
    Ok(())
}

/// An action is `*` or `vendor:pattern` with a plain vendor name.
fn check_action(action: &str) -> Result<(), PolicyError> {
    let mut parts = action.split(':');
    let vendor = parts.next().unwrap_or_default();
    match (parts.next(), parts.next()) {
        (None, _) if action != "*" => return Err(malformed(NO_VENDOR)),
        (Some(_), Some(_)) => return Err(malformed(TWO_COLONS)),
        _ => {}
    }
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
    if vendor != "*" && !vendor.chars().all(plain) {
        return Err(malformed(format!("Vendor {vendor} is not valid")));
    }
    Ok(())
}

/// The elements a kind of policy requires or forbids.
fn check_kind(raws: &[Raw<'_>], kind: PolicyKind) -> Result<(), PolicyError> {
    for raw in raws {
        match kind {
            PolicyKind::Identity if raw.principals.is_some() => {
                return Err(malformed(PRINCIPAL_FORBIDDEN));
            }
            PolicyKind::Resource | PolicyKind::Trust if raw.principals.is_none() => {
                return Err(malformed(PRINCIPAL_MISSING));
            }
            _ => {}
        }
        if let (PolicyKind::Trust, Some(resources)) = (kind, &raw.resources) {
            return Err(malformed(format!(
                "Has prohibited field {}",
                resources.name
            )));
        }
    }
    Ok(())
}

/// The compiled statement (all checks passed).
fn compile(raw: Raw<'_>, variables: bool) -> Statement {
    let effect = if raw.effect == "Deny" {
        Effect::Deny
    } else {
        Effect::Allow
    };
    let actions = raw.actions.map_or_else(
        || Patterns {
            negated: false,
            patterns: Vec::new(),
        },
        |list| Patterns {
            negated: list.negated,
            patterns: list
                .items
                .iter()
                .map(|a| Pattern::glob(a, Case::Insensitive))
                .collect(),
        },
    );
    let syntax = Syntax {
        wildcards: true,
        variables,
    };
    let resources = raw.resources.map(|list| Patterns {
        negated: list.negated,
        patterns: list
            .items
            .iter()
            .map(|r| Template::compile(r, syntax, Case::Sensitive))
            .collect(),
    });
    Statement {
        sid: raw.sid.map(str::to_string),
        effect,
        actions,
        resources,
        principals: raw.principals.and_then(Result::ok),
        condition: raw.condition.unwrap_or_default(),
    }
}
