//! Who is asking ([`Principal`]), and the `Principal` / `NotPrincipal` element that
//! resource and trust policies use to say whom a statement is about.
//!
//! A policy names principals more coarsely than requests carry them, and the mapping is
//! AWS's, not string equality:
//! - an account (`"123456789012"` or `arn:aws:iam::123456789012:root`) stands for *every*
//!   principal of that account — its root, its users and its role sessions — because
//!   granting to an account delegates the decision to that account's own IAM;
//! - a role ARN stands for the role's *sessions* (`assumed-role/Name/session`), since a
//!   role never calls anything itself; a session ARN names one session exactly;
//! - a user ARN names that user; a `Service` names a service principal (case-insensitive);
//! - `"*"` is everyone, and `Federated` / `CanonicalUser` principals are accepted but never
//!   match (Nimbus has no such callers).
//!
//! Values are validated and classified once, at parse time, so matching is a comparison.

use serde_json::Value;

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// `arn:aws:iam::123456789012:root`, `arn:aws:iam::123456789012:user/alice`,
    /// `arn:aws:sts::123456789012:assumed-role/RoleName/session`, or for a service
    /// principal its name (e.g. `s3.amazonaws.com`); never `*`.
    pub arn: String,
    /// The account of the principal (`""` for a service principal).
    pub account: String,
    pub kind: PrincipalKind,
}

/// What sort of principal a [`Principal`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalKind {
    /// The account itself (`arn:aws:iam::ACCOUNT:root`).
    Root,
    /// An IAM user.
    User,
    /// A session of a role; `role_arn` is the role's own ARN (`arn:aws:iam::A:role/Name`).
    AssumedRole { role_arn: String },
    /// An AWS service such as `lambda.amazonaws.com`.
    Service,
}

impl Principal {
    /// The root of `account`.
    pub fn root(account: &str) -> Self {
        Self {
            arn: format!("arn:aws:iam::{account}:root"),
            account: account.to_string(),
            kind: PrincipalKind::Root,
        }
    }

    /// The IAM user `name` (without path) of `account`.
    pub fn user(account: &str, name: &str) -> Self {
        Self {
            arn: format!("arn:aws:iam::{account}:user/{name}"),
            account: account.to_string(),
            kind: PrincipalKind::User,
        }
    }

    /// Session `session` of role `role` (without path) in `account`.
    pub fn assumed_role(account: &str, role: &str, session: &str) -> Self {
        Self {
            arn: format!("arn:aws:sts::{account}:assumed-role/{role}/{session}"),
            account: account.to_string(),
            kind: PrincipalKind::AssumedRole {
                role_arn: format!("arn:aws:iam::{account}:role/{role}"),
            },
        }
    }

    /// The service principal `name` (e.g. `lambda.amazonaws.com`).
    pub fn service(name: &str) -> Self {
        Self {
            arn: name.to_string(),
            account: String::new(),
            kind: PrincipalKind::Service,
        }
    }
}

/// One compiled entry of a `Principal` element.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    /// `"*"`: everyone.
    Everyone,
    /// Any principal of this account.
    Account(Box<str>),
    /// This IAM user (full ARN).
    User(Box<str>),
    /// Sessions of this role (full role ARN).
    Role(Box<str>),
    /// Exactly this principal ARN (a session, a federated user).
    Exact(Box<str>),
    /// This service, lower-cased.
    Service(Box<str>),
    /// `Federated` / `CanonicalUser`: valid, but no Nimbus principal is one.
    Never,
}

impl Entry {
    fn matches(&self, p: &Principal) -> bool {
        match self {
            Entry::Everyone => true,
            Entry::Account(account) => {
                !matches!(p.kind, PrincipalKind::Service) && p.account == **account
            }
            Entry::User(arn) => matches!(p.kind, PrincipalKind::User) && p.arn == **arn,
            Entry::Role(arn) => {
                matches!(&p.kind, PrincipalKind::AssumedRole { role_arn } if **role_arn == **arn)
            }
            Entry::Exact(arn) => !matches!(p.kind, PrincipalKind::Service) && p.arn == **arn,
            Entry::Service(name) => {
                matches!(p.kind, PrincipalKind::Service) && p.arn.eq_ignore_ascii_case(name)
            }
            Entry::Never => false,
        }
    }
}

/// A compiled `Principal` (or, negated, `NotPrincipal`) element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PrincipalSet {
    negated: bool,
    entries: Vec<Entry>,
}

/// Why a `Principal` element was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PrincipalError {
    /// Not the element's JSON shape.
    Syntax,
    /// A value that names no valid principal (IAM's message).
    Invalid(String),
}

impl PrincipalSet {
    /// Parses a `Principal` (`negated == false`) or `NotPrincipal` element.
    pub(crate) fn parse(value: &Value, negated: bool) -> Result<Self, PrincipalError> {
        let entries = match value {
            Value::String(s) if s == "*" => vec![Entry::Everyone],
            Value::Object(map) => {
                // Check the whole shape first, so a syntax error wins over a bad value.
                let mut typed = Vec::with_capacity(map.len());
                for (kind, values) in map {
                    if !matches!(
                        kind.as_str(),
                        "AWS" | "Service" | "Federated" | "CanonicalUser"
                    ) {
                        return Err(PrincipalError::Syntax);
                    }
                    typed.push((kind.as_str(), string_list(values)?));
                }
                let mut entries = Vec::new();
                for (kind, values) in typed {
                    for v in values {
                        let entry = match kind {
                            "AWS" => parse_aws(v),
                            "Service" => parse_service(v),
                            _ => (!v.is_empty()).then_some(Entry::Never),
                        };
                        let entry = entry.ok_or_else(|| {
                            PrincipalError::Invalid(format!(
                                "Invalid principal in policy: {}:{}",
                                Value::String(kind.to_string()),
                                Value::String(v.to_string())
                            ))
                        })?;
                        entries.push(entry);
                    }
                }
                entries
            }
            _ => return Err(PrincipalError::Syntax),
        };
        Ok(Self { negated, entries })
    }

    /// Whether the element covers `principal` (for `NotPrincipal`: does not name it).
    pub(crate) fn matches(&self, principal: &Principal) -> bool {
        self.entries.iter().any(|e| e.matches(principal)) != self.negated
    }
}

/// A string or an array of strings.
fn string_list(value: &Value) -> Result<Vec<&str>, PrincipalError> {
    match value {
        Value::String(s) => Ok(vec![s]),
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().ok_or(PrincipalError::Syntax))
            .collect(),
        _ => Err(PrincipalError::Syntax),
    }
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Classifies an `AWS` principal value.
fn parse_aws(value: &str) -> Option<Entry> {
    if value == "*" {
        return Some(Entry::Everyone);
    }
    if is_account_id(value) {
        return Some(Entry::Account(value.into()));
    }
    if value.contains('*') {
        return None; // no partial wildcards in principals
    }
    let mut parts = value.splitn(6, ':');
    let (arn, partition, service, region, account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if arn != "arn" || partition.is_empty() || !region.is_empty() || !is_account_id(account) {
        return None;
    }
    let named = |prefix: &str| {
        resource
            .strip_prefix(prefix)
            .is_some_and(|rest| !rest.is_empty() && !rest.ends_with('/'))
    };
    match service {
        "iam" if resource == "root" => Some(Entry::Account(account.into())),
        "iam" if named("user/") => Some(Entry::User(value.into())),
        "iam" if named("role/") => Some(Entry::Role(value.into())),
        "sts" if named("assumed-role/") || named("federated-user/") => {
            Some(Entry::Exact(value.into()))
        }
        _ => None,
    }
}

/// Classifies a `Service` principal value.
fn parse_service(value: &str) -> Option<Entry> {
    let valid = !value.is_empty() && !value.contains(char::is_whitespace) && !value.contains('*');
    valid.then(|| Entry::Service(value.to_ascii_lowercase().into_boxed_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ACCT: &str = "123456789012";
    const OTHER: &str = "210987654321";

    fn set(v: Value) -> PrincipalSet {
        PrincipalSet::parse(&v, false).unwrap()
    }

    #[test]
    fn star_matches_everyone() {
        for p in [json!("*"), json!({"AWS": "*"})] {
            let s = set(p);
            assert!(s.matches(&Principal::root(ACCT)));
            assert!(s.matches(&Principal::user(OTHER, "bob")));
            assert!(s.matches(&Principal::service("s3.amazonaws.com")));
        }
    }

    #[test]
    fn account_matches_every_principal_of_that_account() {
        for p in [
            json!({"AWS": ACCT}),
            json!({"AWS": format!("arn:aws:iam::{ACCT}:root")}),
        ] {
            let s = set(p);
            assert!(s.matches(&Principal::root(ACCT)));
            assert!(s.matches(&Principal::user(ACCT, "alice")));
            assert!(s.matches(&Principal::assumed_role(ACCT, "R", "s")));
            assert!(!s.matches(&Principal::root(OTHER)));
            assert!(!s.matches(&Principal::user(OTHER, "alice")));
            assert!(!s.matches(&Principal::service("s3.amazonaws.com")));
        }
    }

    #[test]
    fn user_arn_matches_that_user_only() {
        let s = set(json!({"AWS": format!("arn:aws:iam::{ACCT}:user/alice")}));
        assert!(s.matches(&Principal::user(ACCT, "alice")));
        assert!(!s.matches(&Principal::user(ACCT, "bob")));
        assert!(!s.matches(&Principal::root(ACCT)));
        assert!(!s.matches(&Principal::user(OTHER, "alice")));
    }

    #[test]
    fn role_arn_matches_its_sessions() {
        let s = set(json!({"AWS": [format!("arn:aws:iam::{ACCT}:role/Deployer")]}));
        assert!(s.matches(&Principal::assumed_role(ACCT, "Deployer", "any-session")));
        assert!(!s.matches(&Principal::assumed_role(ACCT, "Other", "any-session")));
        assert!(!s.matches(&Principal::root(ACCT)));
        // A role with a path: sessions carry the full role ARN.
        let s = set(json!({"AWS": format!("arn:aws:iam::{ACCT}:role/service-role/Exec")}));
        let session = Principal {
            arn: format!("arn:aws:sts::{ACCT}:assumed-role/Exec/s"),
            account: ACCT.into(),
            kind: PrincipalKind::AssumedRole {
                role_arn: format!("arn:aws:iam::{ACCT}:role/service-role/Exec"),
            },
        };
        assert!(s.matches(&session));
    }

    #[test]
    fn session_arn_matches_exactly() {
        let s = set(json!({"AWS": format!("arn:aws:sts::{ACCT}:assumed-role/R/s1")}));
        assert!(s.matches(&Principal::assumed_role(ACCT, "R", "s1")));
        assert!(!s.matches(&Principal::assumed_role(ACCT, "R", "s2")));
    }

    #[test]
    fn service_matches_case_insensitively() {
        let s = set(json!({"Service": ["lambda.amazonaws.com", "S3.amazonaws.com"]}));
        assert!(s.matches(&Principal::service("lambda.amazonaws.com")));
        assert!(s.matches(&Principal::service("s3.AMAZONAWS.com")));
        assert!(!s.matches(&Principal::service("sns.amazonaws.com")));
        assert!(!s.matches(&Principal::root(ACCT)));
    }

    #[test]
    fn federated_never_matches() {
        let s = set(json!({"Federated": "cognito-identity.amazonaws.com"}));
        assert!(!s.matches(&Principal::root(ACCT)));
        assert!(!s.matches(&Principal::service("cognito-identity.amazonaws.com")));
    }

    #[test]
    fn not_principal_inverts() {
        let s = PrincipalSet::parse(&json!({"AWS": ACCT}), true).unwrap();
        assert!(!s.matches(&Principal::user(ACCT, "a")));
        assert!(s.matches(&Principal::user(OTHER, "a")));
        assert!(s.matches(&Principal::service("s3.amazonaws.com")));
    }

    #[test]
    fn invalid_principals() {
        for bad in [
            json!({"AWS": "alice"}),
            json!({"AWS": "12345"}),
            json!({"AWS": format!("arn:aws:iam::{ACCT}:group/devs")}),
            json!({"AWS": "arn:aws:iam::*:root"}),
            json!({"AWS": format!("arn:aws:iam::{ACCT}:user/")}),
            json!({"Service": ""}),
        ] {
            assert!(
                matches!(
                    PrincipalSet::parse(&bad, false),
                    Err(PrincipalError::Invalid(_))
                ),
                "{bad}"
            );
        }
        let err = PrincipalSet::parse(&json!({"AWS": "alice"}), false).unwrap_err();
        assert_eq!(
            err,
            PrincipalError::Invalid(r#"Invalid principal in policy: "AWS":"alice""#.into())
        );
        for bad in [
            json!("arn:aws:iam::123456789012:root"),
            json!({"Bogus": "x"}),
            json!({"AWS": 5}),
            json!({"AWS": [5]}),
            json!(["*"]),
        ] {
            assert_eq!(
                PrincipalSet::parse(&bad, false),
                Err(PrincipalError::Syntax),
                "{bad}"
            );
        }
    }
}
