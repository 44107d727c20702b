//! Condition keys of a request, and the keys evaluation supplies itself.
//!
//! AWS treats condition-key names case-insensitively (`aws:SourceArn` is `aws:sourcearn`),
//! so a [`Context`] stores names lower-cased and policies lower-case their keys when they
//! are parsed: a lookup is then a plain map search, with no case folding per request.
//!
//! Some keys describe the caller rather than the call (`aws:PrincipalArn`,
//! `aws:PrincipalAccount`, …). AWS fills those in for every request, so evaluation does
//! too — from the [`Principal`] — whenever the caller's [`Context`] lacks them. That
//! keeps gateways from having to repeat the principal in every context, and keeps the
//! values consistent with the principal actually being authorized.

use std::collections::BTreeMap;

use crate::principal::{Principal, PrincipalKind};

/// Condition keys of a request: names case-insensitive (stored lower-cased); each key has
/// one or more string values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    keys: BTreeMap<String, Vec<String>>,
}

impl Context {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a value for `key` (a key may have several values) and returns the context.
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.insert(key, value);
        self
    }

    /// Adds a value for `key` (a key may have several values).
    pub fn insert(&mut self, key: &str, value: impl Into<String>) {
        self.keys
            .entry(key.to_ascii_lowercase())
            .or_default()
            .push(value.into());
    }

    /// The values of `key` (any letter case), if the request has it.
    pub fn get(&self, key: &str) -> Option<&[String]> {
        if key.bytes().any(|b| b.is_ascii_uppercase()) {
            self.get_lower(&key.to_ascii_lowercase())
        } else {
            self.get_lower(key)
        }
    }

    /// The values of an already lower-cased key.
    pub(crate) fn get_lower(&self, key: &str) -> Option<&[String]> {
        self.keys.get(key).map(Vec::as_slice)
    }

    /// Whether the context has no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys present (lower-cased) with their values.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.keys.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }
}

/// The values a request has for one key: borrowed from the [`Context`], or one value
/// derived from the principal. Never empty.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Values<'a> {
    List(&'a [String]),
    One(&'a str),
}

impl<'a> Values<'a> {
    pub(crate) fn any(self, mut f: impl FnMut(&'a str) -> bool) -> bool {
        match self {
            Values::List(list) => list.iter().any(|v| f(v)),
            Values::One(v) => f(v),
        }
    }

    pub(crate) fn all(self, mut f: impl FnMut(&'a str) -> bool) -> bool {
        match self {
            Values::List(list) => list.iter().all(|v| f(v)),
            Values::One(v) => f(v),
        }
    }

    /// The value, if there is exactly one (policy variables need a single value).
    pub(crate) fn single(self) -> Option<&'a str> {
        match self {
            Values::List([v]) => Some(v),
            Values::List(_) => None,
            Values::One(v) => Some(v),
        }
    }
}

/// Where condition keys and policy variables are looked up during one evaluation: the
/// request's context first, then keys derived from the principal.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Env<'a> {
    context: &'a Context,
    principal: Option<&'a Principal>,
}

impl<'a> Env<'a> {
    pub(crate) fn new(context: &'a Context, principal: Option<&'a Principal>) -> Self {
        Self { context, principal }
    }

    /// The values of a lower-cased key.
    pub(crate) fn values(&self, key: &str) -> Option<Values<'a>> {
        if let Some(list) = self.context.get_lower(key) {
            if !list.is_empty() {
                return Some(Values::List(list));
            }
        }
        self.principal
            .and_then(|p| principal_key(p, key))
            .map(Values::One)
    }

    /// The single value of a lower-cased key (for policy variables).
    pub(crate) fn single(&self, key: &str) -> Option<&'a str> {
        self.values(key).and_then(Values::single)
    }
}

/// Keys AWS derives from the caller. Service principals carry only the service keys, as
/// on AWS (they have no account and no ARN).
fn principal_key<'a>(p: &'a Principal, key: &str) -> Option<&'a str> {
    let service = matches!(p.kind, PrincipalKind::Service);
    match key {
        "aws:principalaccount" if !service && !p.account.is_empty() => Some(&p.account),
        "aws:principalarn" => match &p.kind {
            PrincipalKind::AssumedRole { role_arn } => Some(role_arn),
            PrincipalKind::Service => None,
            PrincipalKind::Root | PrincipalKind::User => Some(&p.arn),
        },
        "aws:principaltype" => match p.kind {
            PrincipalKind::Root => Some("Account"),
            PrincipalKind::User => Some("User"),
            PrincipalKind::AssumedRole { .. } => Some("AssumedRole"),
            PrincipalKind::Service => None,
        },
        "aws:principalisawsservice" => Some(if service { "true" } else { "false" }),
        "aws:principalservicename" if service => Some(&p.arn),
        "aws:username" if matches!(p.kind, PrincipalKind::User) => {
            p.arn.rsplit('/').next().filter(|name| !name.is_empty())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_case_insensitive_and_multi_valued() {
        let ctx = Context::new()
            .with("aws:SourceArn", "arn:a")
            .with("AWS:SOURCEARN", "arn:b")
            .with("aws:SecureTransport", "true");
        assert_eq!(
            ctx.get("aws:sourcearn").unwrap(),
            &["arn:a".to_string(), "arn:b".to_string()]
        );
        assert_eq!(
            ctx.get("Aws:SecureTransport").unwrap(),
            &["true".to_string()]
        );
        assert!(ctx.get("aws:missing").is_none());
        assert_eq!(ctx.iter().count(), 2);
    }

    #[test]
    fn context_equality_ignores_insertion_order_of_keys() {
        let a = Context::new().with("a:x", "1").with("a:y", "2");
        let b = Context::new().with("a:y", "2").with("A:X", "1");
        assert_eq!(a, b);
    }

    #[test]
    fn principal_keys_are_derived_unless_supplied() {
        let role = Principal::assumed_role("123456789012", "Deployer", "s1");
        let ctx = Context::new();
        let env = Env::new(&ctx, Some(&role));
        assert_eq!(env.single("aws:principalaccount"), Some("123456789012"));
        assert_eq!(
            env.single("aws:principalarn"),
            Some("arn:aws:iam::123456789012:role/Deployer")
        );
        assert_eq!(env.single("aws:principaltype"), Some("AssumedRole"));
        assert_eq!(env.single("aws:principalisawsservice"), Some("false"));
        assert_eq!(env.single("aws:username"), None);

        let ctx = Context::new().with("aws:PrincipalAccount", "999999999999");
        let env = Env::new(&ctx, Some(&role));
        assert_eq!(env.single("aws:principalaccount"), Some("999999999999"));
    }

    #[test]
    fn user_and_service_keys() {
        let user = Principal::user("123456789012", "alice");
        let ctx = Context::new();
        let env = Env::new(&ctx, Some(&user));
        assert_eq!(env.single("aws:username"), Some("alice"));
        assert_eq!(
            env.single("aws:principalarn"),
            Some("arn:aws:iam::123456789012:user/alice")
        );

        let s3 = Principal::service("s3.amazonaws.com");
        let env = Env::new(&ctx, Some(&s3));
        assert_eq!(env.single("aws:principalarn"), None);
        assert_eq!(env.single("aws:principalaccount"), None);
        assert_eq!(
            env.single("aws:principalservicename"),
            Some("s3.amazonaws.com")
        );
        assert_eq!(env.single("aws:principalisawsservice"), Some("true"));
    }

    #[test]
    fn multi_valued_keys_have_no_single_value() {
        let ctx = Context::new().with("a:k", "1").with("a:k", "2");
        let env = Env::new(&ctx, None);
        assert!(env.single("a:k").is_none());
        assert!(env.values("a:k").is_some());
    }
}
