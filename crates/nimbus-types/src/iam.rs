//! Identities and their policies: IAM users, roles and managed policies, as the metadata
//! cluster replicates them. IAM is global: these records carry an account, no region.
//!
//! Policy documents are kept as the JSON the caller sent (IAM returns them verbatim);
//! gateways parse and compile them (`nimbus-iam`) before anything is written and cache
//! the compiled form for evaluation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Who an inline policy or an attachment belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum IamPrincipalRef {
    User(String),
    Role(String),
}

impl IamPrincipalRef {
    pub fn name(&self) -> &str {
        match self {
            IamPrincipalRef::User(n) | IamPrincipalRef::Role(n) => n,
        }
    }
    /// IAM's word for it in messages (`user`, `role`).
    pub fn kind(&self) -> &'static str {
        match self {
            IamPrincipalRef::User(_) => "user",
            IamPrincipalRef::Role(_) => "role",
        }
    }
}

/// An IAM user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IamUser {
    pub account_id: String,
    pub name: String,
    /// `AIDA…`, unique and never reused.
    pub user_id: String,
    /// `/` or `/division/`.
    pub path: String,
    pub created_ms: u64,
    /// Inline policies: name → document.
    pub inline_policies: BTreeMap<String, String>,
    /// Attached managed policies' ARNs.
    pub attached: Vec<String>,
    /// The user's access key ids (at most [`ACCESS_KEYS_PER_USER`]).
    pub access_keys: Vec<String>,
}

impl IamUser {
    pub fn arn(&self) -> String {
        format!(
            "arn:aws:iam::{}:user{}{}",
            self.account_id, self.path, self.name
        )
    }
}

/// An IAM role that principals (and Lambda, for a function's execution role) assume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IamRole {
    pub account_id: String,
    pub name: String,
    /// `AROA…`.
    pub role_id: String,
    pub path: String,
    pub description: String,
    /// Who may assume it (`AssumeRolePolicyDocument`).
    pub trust_policy: String,
    pub max_session_secs: u32,
    pub created_ms: u64,
    pub inline_policies: BTreeMap<String, String>,
    pub attached: Vec<String>,
}

impl IamRole {
    pub fn arn(&self) -> String {
        role_arn(&self.account_id, &self.path, &self.name)
    }
}

pub fn role_arn(account_id: &str, path: &str, name: &str) -> String {
    format!("arn:aws:iam::{account_id}:role{path}{name}")
}

/// A customer managed policy (one version, `v1`, kept as the default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagedPolicy {
    pub account_id: String,
    pub name: String,
    /// `ANPA…`.
    pub policy_id: String,
    pub path: String,
    pub description: String,
    pub document: String,
    pub created_ms: u64,
    /// Users and roles it is attached to; it cannot be deleted while any remain.
    pub attachment_count: u32,
}

impl ManagedPolicy {
    pub fn arn(&self) -> String {
        format!(
            "arn:aws:iam::{}:policy{}{}",
            self.account_id, self.path, self.name
        )
    }
}

/// A policy shipped with Nimbus, like AWS's managed policies (account `aws`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuiltinPolicy {
    pub arn: &'static str,
    pub name: &'static str,
    pub path: &'static str,
    pub policy_id: &'static str,
    pub description: &'static str,
    pub document: &'static str,
}

/// Nimbus's counterparts of the two AWS managed policies Lambda users attach most.
pub const BUILTIN_POLICIES: &[BuiltinPolicy] = &[
    BuiltinPolicy {
        arn: "arn:aws:iam::aws:policy/AWSLambda_FullAccess",
        name: "AWSLambda_FullAccess",
        path: "/",
        policy_id: "ANPAZKAPJZG4LGAAAAAA1",
        description: "Grants full access to Lambda, its logs, and reading roles.",
        document: r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["lambda:*","logs:*","iam:GetRole","iam:GetPolicy","iam:ListRoles","iam:ListAttachedRolePolicies","iam:PassRole"],"Resource":"*"}]}"#,
    },
    BuiltinPolicy {
        arn: "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
        name: "AWSLambdaBasicExecutionRole",
        path: "/service-role/",
        policy_id: "ANPAJNCQGXC42545SKXIK",
        description: "Provides write permissions to CloudWatch Logs.",
        document: r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["logs:CreateLogGroup","logs:CreateLogStream","logs:PutLogEvents"],"Resource":"*"}]}"#,
    },
];

pub fn builtin_policy(arn: &str) -> Option<&'static BuiltinPolicy> {
    BUILTIN_POLICIES.iter().find(|p| p.arn == arn)
}

/// IAM's quota of access keys per user.
pub const ACCESS_KEYS_PER_USER: usize = 2;
/// IAM's quota of managed policies attached to one user or role.
pub const ATTACHED_POLICIES_MAX: usize = 20;
/// IAM's limits on inline policies, in characters (whitespace not counted), summed per
/// principal.
pub const USER_INLINE_POLICY_MAX: usize = 2048;
pub const ROLE_INLINE_POLICY_MAX: usize = 10240;
pub const MANAGED_POLICY_MAX: usize = 6144;
pub const TRUST_POLICY_MAX: usize = 2048;

/// A policy's size as IAM counts it: characters other than whitespace.
pub fn policy_size(doc: &str) -> usize {
    doc.chars().filter(|c| !c.is_whitespace()).count()
}

/// A function's resource-based policy statements, per qualifier (`""`: the unqualified
/// function; else an alias name or a version number), each as `(Sid, statement JSON)` in
/// the order they were added.
pub type ResourcePolicies = BTreeMap<String, Vec<(String, String)>>;

/// The principal of the function's service: a role Lambda assumes must trust it.
pub const LAMBDA_SERVICE: &str = "lambda.amazonaws.com";

/// Parses `arn:aws:iam::ACCOUNT:role/[path/]NAME` into (account, path, name).
pub fn parse_role_arn(arn: &str) -> Option<(&str, &str, &str)> {
    let rest = arn.strip_prefix("arn:aws:iam::")?;
    let (account, resource) = rest.split_once(':')?;
    let full = resource.strip_prefix("role")?;
    if !full.starts_with('/') || account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let cut = full.rfind('/')?;
    let (path, name) = (&full[..=cut], &full[cut + 1..]);
    (!name.is_empty()).then_some((account, path, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns_parse_with_and_without_paths() {
        assert_eq!(
            parse_role_arn("arn:aws:iam::123456789012:role/lambda-role"),
            Some(("123456789012", "/", "lambda-role"))
        );
        assert_eq!(
            parse_role_arn("arn:aws:iam::123456789012:role/service-role/x"),
            Some(("123456789012", "/service-role/", "x"))
        );
        assert_eq!(parse_role_arn("arn:aws:iam::12345:role/x"), None);
        assert_eq!(parse_role_arn("arn:aws:iam::123456789012:user/x"), None);
        assert_eq!(parse_role_arn("arn:aws:iam::123456789012:role/"), None);
    }

    #[test]
    fn policy_size_ignores_whitespace() {
        assert_eq!(policy_size("{ \"a\" :\n 1 }"), 7);
    }
}
