//! Evaluation: does a set of policies allow one request?
//!
//! Within a set of documents AWS's rule is "explicit deny beats allow beats the default
//! deny": any applicable `Deny` statement refuses, else any applicable `Allow` grants,
//! else the request is implicitly denied. A statement applies when its action, resource
//! (identity and resource policies), principal (resource and trust policies) and
//! condition all match. The scan stops at the first matching `Deny`, and once something
//! allows, only `Deny` statements are still examined.
//!
//! [`authorize`] then combines a caller's identity policies with the target's resource
//! policy the way AWS does for one account versus across accounts: within an account
//! either kind of policy may grant; across accounts both sides must (the target account
//! through its resource policy, the caller's account through the caller's identity
//! policies), because each account controls its own side of the exchange.

use crate::context::{Context, Env};
use crate::document::{Effect, PolicyDocument, Statement};
use crate::principal::{Principal, PrincipalKind};

/// One request to authorize.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub principal: &'a Principal,
    /// e.g. `lambda:InvokeFunction`.
    pub action: &'a str,
    /// An ARN, or `*` for actions without a resource.
    pub resource: &'a str,
    /// Condition keys.
    pub context: &'a Context,
}

/// The outcome of evaluating policies for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Some statement allows the request and none denies it.
    Allow,
    /// A `Deny` statement applies.
    ExplicitDeny,
    /// Nothing allows the request.
    ImplicitDeny,
}

impl Decision {
    /// Whether the request may proceed.
    pub fn is_allowed(self) -> bool {
        self == Decision::Allow
    }
}

/// Which elements decide whether a statement applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Identity policy: `Principal` is not consulted.
    Identity,
    /// Resource policy: the statement must name the caller.
    Resource,
    /// Trust policy: the statement must name the caller; `Resource` is ignored.
    Trust,
}

/// Evaluates identity-based policies (Principal elements are not allowed in them and are
/// not consulted).
pub fn evaluate_identity<'p>(
    policies: impl IntoIterator<Item = &'p PolicyDocument>,
    req: &Request<'_>,
) -> Decision {
    let env = Env::new(req.context, Some(req.principal));
    let mut allowed = false;
    for policy in policies {
        match evaluate_document(policy, req, &env, Mode::Identity, allowed) {
            Decision::ExplicitDeny => return Decision::ExplicitDeny,
            Decision::Allow => allowed = true,
            Decision::ImplicitDeny => {}
        }
    }
    if allowed {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    }
}

/// Evaluates a resource-based policy: a statement applies only when its Principal /
/// NotPrincipal matches `req.principal`.
pub fn evaluate_resource(policy: &PolicyDocument, req: &Request<'_>) -> Decision {
    let env = Env::new(req.context, Some(req.principal));
    evaluate_document(policy, req, &env, Mode::Resource, false)
}

/// AWS's combination for one request.
///
/// - `identity`: the caller's identity policies, or `None` for an account root (a root may
///   do anything in its own account, but is still subject to explicit Denies in the
///   resource policy and needs the resource policy across accounts). A principal counts
///   as a root by its [`PrincipalKind::Root`]; `None` for any other principal means "no
///   identity policies".
/// - `resource_policy`: the target's resource policy, if any; `resource_account`: the
///   account that owns the target resource (`""` or the principal's own for account-less
///   actions).
///
/// Any explicit Deny (identity or resource) gives `ExplicitDeny`. Within one account the
/// request is allowed if the identity policies or the resource policy allow it; across
/// accounts only if the resource policy allows it and the identity policies do too (or
/// the caller is a root). Service principals (which have no account and no identity
/// policies) are always treated as same-account: the resource policy alone can grant.
/// Anything else is `ImplicitDeny`.
// The named lifetime is part of the published signature (it mirrors `evaluate_identity`).
#[allow(clippy::needless_lifetimes)]
pub fn authorize<'p>(
    identity: Option<&[&'p PolicyDocument]>,
    resource_policy: Option<&PolicyDocument>,
    resource_account: &str,
    req: &Request<'_>,
) -> Decision {
    let identity_decision = match identity {
        Some(policies) => evaluate_identity(policies.iter().copied(), req),
        None => Decision::ImplicitDeny,
    };
    let resource_decision = match resource_policy {
        Some(policy) => evaluate_resource(policy, req),
        None => Decision::ImplicitDeny,
    };
    if identity_decision == Decision::ExplicitDeny || resource_decision == Decision::ExplicitDeny {
        return Decision::ExplicitDeny;
    }
    let principal = req.principal;
    let identity_allows =
        identity_decision.is_allowed() || matches!(principal.kind, PrincipalKind::Root);
    let resource_allows = resource_decision.is_allowed();
    let same_account = resource_account.is_empty()
        || resource_account == principal.account
        || matches!(principal.kind, PrincipalKind::Service);
    let allowed = if same_account {
        identity_allows || resource_allows
    } else {
        identity_allows && resource_allows
    };
    if allowed {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    }
}

/// For role trust policies (`sts:AssumeRole`, or Lambda checking that a role trusts
/// `lambda.amazonaws.com`): whether the document allows `action` for `principal`
/// (principal matching as in resource policies; Resource elements are ignored).
pub fn trust_allows(
    trust: &PolicyDocument,
    principal: &Principal,
    action: &str,
    context: &Context,
) -> bool {
    let req = Request {
        principal,
        action,
        resource: "*",
        context,
    };
    let env = Env::new(context, Some(principal));
    evaluate_document(trust, &req, &env, Mode::Trust, false).is_allowed()
}

/// One document's verdict. `already_allowed`: an earlier document allowed the request,
/// so only `Deny` statements can still change the outcome.
fn evaluate_document(
    policy: &PolicyDocument,
    req: &Request<'_>,
    env: &Env<'_>,
    mode: Mode,
    already_allowed: bool,
) -> Decision {
    let mut allowed = already_allowed;
    for statement in policy.statements() {
        if allowed && statement.effect == Effect::Allow {
            continue;
        }
        if applies(statement, req, env, mode) {
            match statement.effect {
                Effect::Deny => return Decision::ExplicitDeny,
                Effect::Allow => allowed = true,
            }
        }
    }
    if allowed {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    }
}

/// Whether a statement applies to the request, cheapest test first.
fn applies(statement: &Statement, req: &Request<'_>, env: &Env<'_>, mode: Mode) -> bool {
    statement.matches_action(req.action)
        && (mode == Mode::Identity || statement.matches_principal(req.principal))
        && (mode == Mode::Trust || statement.matches_resource(req.resource, env))
        && statement.condition().evaluate(env)
}

#[cfg(test)]
mod tests;
