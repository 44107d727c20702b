//! Function names as Lambda accepts them, and qualifiers resolved to a version.

use nimbus_types::arn::parse_function_ref;
use nimbus_types::{keys, Alias, Entity, Function, FunctionKey, Version};
use rand::Rng;

use crate::error::ApiError;
use crate::server::{Caller, Gateway};

/// A function named by the caller, with its qualifier, if any.
#[derive(Debug, Clone)]
pub struct Named {
    pub key: FunctionKey,
    pub qualifier: Option<String>,
}

/// Resolves `name` (name, `name:qualifier`, partial or full ARN) and the `Qualifier`
/// parameter for `caller` in this gateway's region.
pub fn named(
    gw: &Gateway,
    caller: &Caller,
    name: &str,
    qualifier: Option<&str>,
) -> Result<Named, ApiError> {
    let r = parse_function_ref(name)?;
    if let Some(a) = &r.account_id {
        if *a != caller.account_id {
            return Err(ApiError::new(
                403,
                "AccessDeniedException",
                format!("User is not authorized to access function {name} in account {a}"),
            ));
        }
    }
    if let Some(region) = &r.region {
        if *region != gw.region {
            return Err(ApiError::invalid(format!(
                "Function {name} is not in this endpoint's region {}",
                gw.region
            )));
        }
    }
    let qualifier = match (r.qualifier, qualifier.filter(|q| !q.is_empty())) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::invalid("The derived qualifier from the function name does not match the specified qualifier."));
        }
        (a, b) => a.or(b.map(str::to_string)),
    };
    Ok(Named {
        key: FunctionKey::new(&caller.account_id, &gw.region, &r.name),
        qualifier,
    })
}

pub fn function(gw: &Gateway, key: &FunctionKey) -> Result<Function, ApiError> {
    match gw.cache.get(&keys::function(key)) {
        Some(Entity::Function(f)) => Ok(f),
        _ => Err(ApiError::not_found(format!(
            "Function not found: {}",
            key.arn()
        ))),
    }
}

pub fn version(gw: &Gateway, key: &FunctionKey, n: u64) -> Result<Version, ApiError> {
    match gw.cache.get(&keys::version(key, n)) {
        Some(Entity::Version(v)) => Ok(v),
        _ => Err(ApiError::not_found(format!(
            "Function not found: {}:{n}",
            key.arn()
        ))),
    }
}

pub fn alias(gw: &Gateway, key: &FunctionKey, name: &str) -> Result<Alias, ApiError> {
    match gw.cache.get(&keys::alias(key, name)) {
        Some(Entity::Alias(a)) => Ok(a),
        _ => Err(ApiError::not_found(format!(
            "Function not found: {}:{name}",
            key.arn()
        ))),
    }
}

/// What a qualifier names once resolved.
pub enum Resolved {
    Latest(Function),
    Version(Version),
}

/// Resolves a qualifier to `$LATEST` or one published version. An alias with weighted
/// routing picks its additional version with the configured probability.
pub fn qualifier(gw: &Gateway, key: &FunctionKey, q: Option<&str>) -> Result<Resolved, ApiError> {
    let f = function(gw, key)?;
    let q = q.unwrap_or("$LATEST");
    let target = if q == "$LATEST" || q.chars().all(|c| c.is_ascii_digit()) {
        q.to_string()
    } else {
        let a = alias(gw, key, q)?;
        match &a.routing {
            Some(r) if rand::thread_rng().gen::<f64>() < r.weight => r.version.to_string(),
            _ => a.function_version,
        }
    };
    if target == "$LATEST" {
        return Ok(Resolved::Latest(f));
    }
    let n: u64 = target
        .parse()
        .map_err(|_| ApiError::not_found(format!("Function not found: {}:{target}", key.arn())))?;
    Ok(Resolved::Version(version(gw, key, n)?))
}
