//! Policy documents: AWS's JSON policy grammar, parsed, validated and compiled.
//!
//! One type serves identity policies, resource policies (Lambda function policies) and
//! role trust policies, because AWS uses one grammar for all three; what differs is which
//! elements each kind requires or forbids, checked by [`PolicyDocument::parse_as`].
//!
//! Why compile: gateways evaluate policies on every request, while documents change
//! rarely. Parsing therefore does all the work that does not depend on the request —
//! validating with IAM's own `MalformedPolicyDocument` messages (so Nimbus's IAM API
//! rejects what AWS rejects, with the same words), compiling wildcards, resolving
//! condition operators, classifying principals — and a [`Statement`] keeps only the
//! compiled form.

mod parse;
#[cfg(test)]
mod tests;

use crate::condition::Condition;
use crate::context::Env;
use crate::matching::Pattern;
use crate::principal::{Principal, PrincipalSet};
use crate::variables::Template;

/// A document IAM would refuse, with IAM's message.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum PolicyError {
    /// IAM's `MalformedPolicyDocument`, e.g. "Syntax errors in policy.",
    /// "Policy statement must contain actions.".
    #[error("{0}")]
    Malformed(String),
}

/// The policy language version (`Version` element).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// `2008-10-17`, also assumed when `Version` is absent. No policy variables.
    V2008_10_17,
    /// `2012-10-17`: the current version; `${…}` policy variables are read.
    V2012_10_17,
}

impl Version {
    /// The `Version` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V2008_10_17 => "2008-10-17",
            Version::V2012_10_17 => "2012-10-17",
        }
    }
}

/// What a document is for, which decides the elements it must or must not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyKind {
    /// Attached to a user or role (IAM `CreatePolicy`, `PutRolePolicy`): version
    /// 2012-10-17, every statement has `Resource`/`NotResource`, no `Principal`.
    Identity,
    /// Attached to a resource (a Lambda function policy): every statement names a
    /// `Principal`/`NotPrincipal`.
    Resource,
    /// A role's trust policy (`AssumeRolePolicyDocument`): every statement names a
    /// `Principal`/`NotPrincipal`, and none has `Resource`/`NotResource`.
    Trust,
}

/// A parsed, validated policy document (identity policy, resource policy, or role trust
/// policy).
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyDocument {
    version: Version,
    id: Option<String>,
    statements: Vec<Statement>,
}

impl PolicyDocument {
    /// Parses AWS's JSON policy grammar. Errors are IAM's MalformedPolicyDocument
    /// messages. Checks only what holds for every kind of policy; see
    /// [`parse_as`](Self::parse_as) for a kind's own rules.
    pub fn parse(json: &str) -> Result<Self, PolicyError> {
        parse::parse(json, None)
    }

    /// Parses like [`parse`](Self::parse) and also enforces the rules of `kind`, in the
    /// order IAM reports them.
    pub fn parse_as(json: &str, kind: PolicyKind) -> Result<Self, PolicyError> {
        parse::parse(json, Some(kind))
    }

    /// The statements, in document order.
    pub fn statements(&self) -> &[Statement] {
        &self.statements
    }

    /// Statement ids present (for duplicate checks by callers). Empty `Sid`s are
    /// skipped, as IAM skips them when checking uniqueness.
    pub fn sids(&self) -> impl Iterator<Item = &str> {
        self.statements
            .iter()
            .filter_map(|s| s.sid.as_deref())
            .filter(|sid| !sid.is_empty())
    }

    /// The `Version` (2008-10-17 when absent).
    pub fn version(&self) -> Version {
        self.version
    }

    /// The optional `Id` element.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }
}

/// Whether a statement grants or refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Effect {
    Allow,
    Deny,
}

/// One statement of a document, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub sid: Option<String>,
    pub effect: Effect,
    actions: Patterns<Pattern>,
    /// `None`: no `Resource`/`NotResource` element (treated as matching everything).
    resources: Option<Patterns<Template>>,
    /// `None`: no `Principal`/`NotPrincipal` element.
    principals: Option<PrincipalSet>,
    condition: Condition,
}

/// An `Action`/`Resource` element (`negated`: the `Not…` form).
#[derive(Debug, Clone, PartialEq)]
struct Patterns<P> {
    negated: bool,
    patterns: Vec<P>,
}

impl Statement {
    /// Whether the statement's `Action` / `NotAction` covers `action` (case-insensitive).
    pub fn matches_action(&self, action: &str) -> bool {
        let hit = self.actions.patterns.iter().any(|p| p.matches(action));
        hit != self.actions.negated
    }

    /// Whether the statement has a `Principal` or `NotPrincipal` element.
    pub fn has_principal(&self) -> bool {
        self.principals.is_some()
    }

    /// Whether the statement has a `Resource` or `NotResource` element.
    pub fn has_resource(&self) -> bool {
        self.resources.is_some()
    }

    /// The compiled `Condition` element (empty when absent).
    pub fn condition(&self) -> &Condition {
        &self.condition
    }

    /// Whether the `Resource` / `NotResource` element covers `resource`; a statement
    /// without one covers everything.
    pub(crate) fn matches_resource(&self, resource: &str, env: &Env<'_>) -> bool {
        match &self.resources {
            None => true,
            Some(set) => set.patterns.iter().any(|t| t.matches(resource, env)) != set.negated,
        }
    }

    /// Whether the `Principal` / `NotPrincipal` element covers `principal`; a statement
    /// without one covers nobody.
    pub(crate) fn matches_principal(&self, principal: &Principal) -> bool {
        self.principals
            .as_ref()
            .is_some_and(|set| set.matches(principal))
    }
}
