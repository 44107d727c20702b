//! Function names as Lambda accepts them, and qualifiers resolved to the one version an
//! invocation runs: [`target`] is the only place an [`InvokeTarget`] is built, for sync
//! invocations, async events and provisioned concurrency alike.

use nimbus_types::arn::parse_function_ref;
use nimbus_types::{keys, Alias, Entity, Function, FunctionKey, Qualifier, Version};
use rand::Rng;

use super::error::ApiError;
use super::invoke::InvokeTarget;
use super::Gateway;

/// A function named by the caller, with its qualifier, if any (as Lambda spells it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub key: FunctionKey,
    pub qualifier: Option<String>,
}

impl Named {
    /// The ARN as invoked: with the qualifier, if one was given.
    pub fn invoked_arn(&self) -> String {
        match &self.qualifier {
            Some(q) => format!("{}:{q}", self.key.arn()),
            None => self.key.arn(),
        }
    }

    /// The qualifier, `$LATEST` when none was given.
    pub fn qualifier_or_latest(&self) -> &str {
        self.qualifier.as_deref().unwrap_or(Qualifier::LATEST)
    }
}

/// Resolves `name` (name, `name:qualifier`, partial or full ARN) and the `Qualifier`
/// parameter for `account` in this gateway's region.
pub fn named(
    gw: &Gateway,
    account: &str,
    name: &str,
    qualifier: Option<&str>,
) -> Result<Named, ApiError> {
    let r = parse_function_ref(name)?;
    if let Some(a) = &r.account_id {
        if a != account {
            return Err(ApiError::new(
                403,
                "AccessDeniedException",
                format!("User is not authorized to access function {name} in account {a}"),
            ));
        }
    }
    if let Some(region) = &r.region {
        if region != gw.region() {
            return Err(ApiError::invalid(format!(
                "Function {name} is not in this endpoint's region {}",
                gw.region()
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
        key: FunctionKey::new(account, gw.region(), &r.name),
        qualifier,
    })
}

pub fn function(gw: &Gateway, key: &FunctionKey) -> Result<Function, ApiError> {
    match gw.catalog().get(&keys::function(key)) {
        Some(Entity::Function(f)) => Ok(f),
        _ => Err(ApiError::not_found(format!(
            "Function not found: {}",
            key.arn()
        ))),
    }
}

pub fn version(gw: &Gateway, key: &FunctionKey, n: u64) -> Result<Version, ApiError> {
    match gw.catalog().get(&keys::version(key, n)) {
        Some(Entity::Version(v)) => Ok(v),
        _ => Err(ApiError::not_found(format!(
            "Function not found: {}:{n}",
            key.arn()
        ))),
    }
}

pub fn alias(gw: &Gateway, key: &FunctionKey, name: &str) -> Result<Alias, ApiError> {
    match gw.catalog().get(&keys::alias(key, name)) {
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

impl Resolved {
    /// The invocation target for this version, invoked as `invoked_arn`.
    pub fn into_target(self, gw: &Gateway, invoked_arn: String) -> InvokeTarget {
        let (key, version, config, code, revision_id) = match self {
            Resolved::Latest(f) => (f.key, Qualifier::Latest, f.config, f.code, f.revision_id),
            Resolved::Version(v) => (
                v.key,
                Qualifier::Version(v.number),
                v.config,
                v.code,
                v.revision_id,
            ),
        };
        InvokeTarget {
            key,
            version,
            config,
            code,
            invoked_arn,
            code_revision: gw.catalog().revision(),
            revision_id,
            edge_location: None,
        }
    }
}

/// Resolves a qualifier to `$LATEST` or one published version. An alias with weighted
/// routing picks its additional version with the configured probability.
pub fn qualifier(gw: &Gateway, key: &FunctionKey, q: Option<&str>) -> Result<Resolved, ApiError> {
    qualifier_of(gw, &function(gw, key)?, q)
}

/// [`qualifier`] for the function record `f`, already read (copied again only when it is
/// `$LATEST` that runs).
fn qualifier_of(gw: &Gateway, f: &Function, q: Option<&str>) -> Result<Resolved, ApiError> {
    let key = &f.key;
    let mut q = Qualifier::parse(q.unwrap_or(Qualifier::LATEST));
    if let Qualifier::Alias(name) = &q {
        let a = alias(gw, key, name)?;
        q = match &a.routing {
            Some(r) if rand::thread_rng().gen::<f64>() < r.weight => Qualifier::Version(r.version),
            _ => Qualifier::parse(&a.function_version),
        };
    }
    match q {
        Qualifier::Latest => Ok(Resolved::Latest(f.clone())),
        Qualifier::Version(n) => Ok(Resolved::Version(version(gw, key, n)?)),
        Qualifier::Alias(target) => Err(ApiError::not_found(format!(
            "Function not found: {}:{target}",
            key.arn()
        ))),
    }
}

/// The function version `named` runs on now, and the function's record (for its
/// reserved concurrency). The one builder of [`InvokeTarget`]s from a name.
pub fn target(gw: &Gateway, named: &Named) -> Result<(Function, InvokeTarget), ApiError> {
    let function = function(gw, &named.key)?;
    // One read of the record serves both.
    let target = qualifier_of(gw, &function, named.qualifier.as_deref())?
        .into_target(gw, named.invoked_arn());
    Ok((function, target))
}
