//! Who is calling and what they may do: the authenticated [`Caller`] of a request and the
//! one policy decision for every operation ([`Gateway::authorize`]).
//!
//! The decision is made in memory from the watch-fed catalog: the caller's identity
//! policies (a user's or a role's inline and attached policies; none for an account's
//! root, which may do anything in its own account) and, for a function, its
//! resource-based policy for the qualifier named. Documents are compiled once
//! (`nimbus-iam`) and kept by their text, so a request pays for lookups and matching
//! only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use nimbus_iam::{Context, Decision, PolicyDocument, Principal, PrincipalKind, Request};
use nimbus_types::iam::{builtin_policy, IamRole, IamUser};
use nimbus_types::{keys, Entity, FunctionKey};

use super::error::ApiError;
use super::Gateway;

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub account_id: String,
    pub access_key_id: String,
    pub identity: Identity,
    pub principal: Arc<Principal>,
    /// Another account whose function this request was allowed to act on by that
    /// function's resource policy (set by the authorization of the request).
    pub granted_account: Option<String>,
}

/// What kind of identity signed the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Root,
    User {
        name: String,
    },
    /// A session of a role (`AssumeRole`, or a function's execution role).
    Role {
        name: String,
        session: String,
    },
}

impl Caller {
    pub fn new(account_id: &str, access_key_id: &str, identity: Identity, path: &str) -> Self {
        let (arn, kind) = match &identity {
            Identity::Root => (
                format!("arn:aws:iam::{account_id}:root"),
                PrincipalKind::Root,
            ),
            Identity::User { name } => (
                format!("arn:aws:iam::{account_id}:user{path}{name}"),
                PrincipalKind::User,
            ),
            Identity::Role { name, session } => (
                format!("arn:aws:sts::{account_id}:assumed-role/{name}/{session}"),
                PrincipalKind::AssumedRole {
                    role_arn: nimbus_types::iam::role_arn(account_id, path, name),
                },
            ),
        };
        Self {
            account_id: account_id.into(),
            access_key_id: access_key_id.into(),
            identity,
            principal: Arc::new(Principal {
                arn,
                account: account_id.into(),
                kind,
            }),
            granted_account: None,
        }
    }

    /// The account the request acts in for a resource of `owner`: the caller's own, or
    /// another that granted it.
    pub fn acts_in(&self, owner: &str) -> bool {
        owner == self.account_id || self.granted_account.as_deref() == Some(owner)
    }
}

/// Compiled policy documents, by their text.
#[derive(Default)]
pub struct Policies {
    compiled: Mutex<HashMap<String, Option<Arc<PolicyDocument>>>>,
    /// Functions' resource policies, compiled, by function key and qualifier, with the
    /// statements they were compiled from: a hit costs a comparison, not rebuilding and
    /// hashing the document.
    resource: Mutex<HashMap<String, ResourcePolicy>>,
    /// Users' and roles' inline policies, compiled, by the record's key, with the texts
    /// they were compiled from (attached managed policies are looked up each time: their
    /// documents change without the user's record changing).
    inline: Mutex<HashMap<String, InlinePolicies>>,
}

/// One user's or role's inline policies as last compiled.
struct InlinePolicies {
    texts: std::collections::BTreeMap<String, String>,
    compiled: Vec<Arc<PolicyDocument>>,
}

/// One function qualifier's resource policy as last compiled.
struct ResourcePolicy {
    statements: Vec<(String, String)>,
    compiled: Option<Arc<PolicyDocument>>,
}

/// The built-in managed policies, compiled once.
fn builtin_compiled(arn: &str) -> Option<Arc<PolicyDocument>> {
    static COMPILED: std::sync::OnceLock<HashMap<&'static str, Arc<PolicyDocument>>> =
        std::sync::OnceLock::new();
    COMPILED
        .get_or_init(|| {
            nimbus_types::iam::BUILTIN_POLICIES
                .iter()
                .filter_map(|b| Some((b.arn, Arc::new(PolicyDocument::parse(b.document).ok()?))))
                .collect()
        })
        .get(arn)
        .cloned()
}

/// Past this many distinct documents the cache starts over (documents that changed
/// leave their old text behind).
const COMPILED_MAX: usize = 10_000;

impl Policies {
    /// The compiled form of `doc`; `None` for a document that does not parse (stored
    /// documents were checked before they were written, so that means corruption, and
    /// it grants nothing).
    pub fn compile(&self, doc: &str) -> Option<Arc<PolicyDocument>> {
        let mut c = self.compiled.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = c.get(doc) {
            return p.clone();
        }
        if c.len() >= COMPILED_MAX {
            c.clear();
        }
        let p = PolicyDocument::parse(doc).ok().map(Arc::new);
        c.insert(doc.to_string(), p.clone());
        p
    }
}

/// One operation to authorize: the IAM action and the resource ARN it acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub action: String,
    pub resource: String,
}

impl Operation {
    pub fn new(action: &str, resource: impl Into<String>) -> Self {
        Self {
            action: action.into(),
            resource: resource.into(),
        }
    }
}

impl Gateway {
    /// Whether `caller` may perform `op` (with the condition keys of `context`), as IAM
    /// decides: an explicit Deny anywhere refuses; within one account an Allow in an
    /// identity policy or the function's resource policy grants; across accounts the
    /// resource policy must allow too. Refusals are AWS's `AccessDeniedException`.
    pub fn authorize(
        &self,
        caller: &Caller,
        op: &Operation,
        context: &Context,
    ) -> Result<(), ApiError> {
        let identity = self.identity_policies(caller);
        let owner = resource_account(&op.resource).unwrap_or(&caller.account_id);
        let resource_policy = self.function_policy(&op.resource);
        let req = Request {
            principal: &caller.principal,
            action: &op.action,
            resource: &op.resource,
            context,
        };
        let identity_refs: Option<Vec<&PolicyDocument>> = identity
            .as_ref()
            .map(|v| v.iter().map(|p| p.as_ref()).collect());
        let decision = nimbus_iam::authorize(
            identity_refs.as_deref(),
            resource_policy.as_deref(),
            owner,
            &req,
        );
        match decision {
            Decision::Allow => Ok(()),
            Decision::ExplicitDeny => Err(denied(caller, op, "with an explicit deny in a policy")),
            Decision::ImplicitDeny if owner != caller.account_id => Err(denied(
                caller,
                op,
                &format!(
                    "because no resource-based policy allows the {} action",
                    op.action
                ),
            )),
            Decision::ImplicitDeny => Err(denied(
                caller,
                op,
                &format!(
                    "because no identity-based policy allows the {} action",
                    op.action
                ),
            )),
        }
    }

    /// The compiled policies of a caller's identity; `None` for an account's root.
    fn identity_policies(&self, caller: &Caller) -> Option<Vec<Arc<PolicyDocument>>> {
        let key = match &caller.identity {
            Identity::Root => return None,
            Identity::User { name } => keys::iam_user(&caller.account_id, name),
            Identity::Role { name, .. } => keys::iam_role(&caller.account_id, name),
        };
        let policies = self.policies();
        // The record is read in place; inline policies are copied out only when they
        // changed since they were compiled.
        let found = self.catalog().with(&key, |e| {
            let (inline, attached) = match e {
                Some(Entity::IamUser(IamUser {
                    inline_policies,
                    attached,
                    ..
                }))
                | Some(Entity::IamRole(IamRole {
                    inline_policies,
                    attached,
                    ..
                })) => (inline_policies, attached),
                _ => return None,
            };
            let cache = policies
                .inline
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let inline = match cache.get(&key) {
                Some(hit) if hit.texts == *inline => Ok(hit.compiled.clone()),
                _ => Err(inline.clone()),
            };
            Some((inline, attached.clone()))
        });
        // A deleted user's keys, or a deleted role's sessions, may do nothing.
        let Some((inline, attached)) = found else {
            return Some(vec![]);
        };
        let mut docs = match inline {
            Ok(compiled) => compiled,
            Err(texts) => {
                let compiled: Vec<_> = texts.values().filter_map(|d| policies.compile(d)).collect();
                let mut cache = policies
                    .inline
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if cache.len() >= COMPILED_MAX {
                    cache.clear();
                }
                cache.insert(
                    key,
                    InlinePolicies {
                        texts,
                        compiled: compiled.clone(),
                    },
                );
                compiled
            }
        };
        for arn in &attached {
            if let Some(builtin) = builtin_compiled(arn) {
                docs.push(builtin);
            } else if let Some(doc) = self.managed_policy_document(&caller.account_id, arn) {
                docs.extend(policies.compile(&doc));
            }
        }
        Some(docs)
    }

    /// The document of a managed policy: built in, or the account's own.
    pub fn managed_policy_document(&self, account_id: &str, arn: &str) -> Option<String> {
        if let Some(b) = builtin_policy(arn) {
            return Some(b.document.to_string());
        }
        let name = arn
            .strip_prefix(&format!("arn:aws:iam::{account_id}:policy/"))?
            .rsplit('/')
            .next()?;
        match self.catalog().get(&keys::iam_policy(account_id, name)) {
            Some(Entity::ManagedPolicy(p)) if p.arn() == arn => Some(p.document),
            _ => None,
        }
    }

    /// The resource policy that applies to `resource` when it is a function of this
    /// region (its statements for the qualifier named, or for the unqualified function).
    fn function_policy(&self, resource: &str) -> Option<Arc<PolicyDocument>> {
        let rest = resource.strip_prefix("arn:aws:lambda:")?;
        let mut parts = rest.splitn(5, ':');
        let (region, account, kind, name) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if kind != "function" || region != self.region() {
            return None;
        }
        let qualifier = parts.next().filter(|q| *q != "$LATEST").unwrap_or("");
        let key = keys::function(&FunctionKey::new(account, region, name));
        let cache_key = format!("{key}\0{qualifier}");
        let policies = self.policies();
        // The record is read in place (a function's record is large); only a changed
        // policy's statements are copied out.
        let statements = self.catalog().with(&key, |e| {
            let Some(Entity::Function(f)) = e else {
                return Err(None);
            };
            let statements = f.resource_policy.get(qualifier).ok_or(None)?;
            let cache = policies
                .resource
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match cache.get(&cache_key) {
                Some(hit) if hit.statements == *statements => Err(hit.compiled.clone()),
                _ => Ok(statements.clone()),
            }
        });
        let statements = match statements {
            Ok(statements) => statements,
            Err(cached) => return cached,
        };
        let compiled = policies.compile(&policy_document(&statements));
        let mut cache = policies
            .resource
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= COMPILED_MAX {
            cache.clear();
        }
        cache.insert(
            cache_key,
            ResourcePolicy {
                statements,
                compiled: compiled.clone(),
            },
        );
        compiled
    }
}

/// A resource policy's document as `GetPolicy` returns it and evaluation reads it.
pub fn policy_document(statements: &[(String, String)]) -> String {
    let joined: Vec<&str> = statements.iter().map(|(_, s)| s.as_str()).collect();
    format!(
        "{{\"Version\":\"2012-10-17\",\"Id\":\"default\",\"Statement\":[{}]}}",
        joined.join(",")
    )
}

/// The account that owns a function ARN (`arn:aws:lambda:REGION:ACCOUNT:function:…`).
/// Only functions are shared across accounts through this path; other resources (layer
/// versions, whose own policies their handlers check) are always the caller's concern.
pub fn resource_account(arn: &str) -> Option<&str> {
    let rest = arn.strip_prefix("arn:aws:lambda:")?;
    let mut parts = rest.splitn(4, ':');
    let (_region, account, kind) = (parts.next()?, parts.next()?, parts.next()?);
    (kind == "function" && !account.is_empty()).then_some(account)
}

fn denied(caller: &Caller, op: &Operation, why: &str) -> ApiError {
    ApiError::new(
        403,
        "AccessDeniedException",
        format!(
            "User: {} is not authorized to perform: {} on resource: {} {why}",
            caller.principal.arn, op.action, op.resource
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn functions_owners_are_read_from_arns() {
        assert_eq!(
            resource_account("arn:aws:lambda:us-east-1:123456789012:function:f:live"),
            Some("123456789012")
        );
        assert_eq!(resource_account("arn:aws:iam::111111111111:user/a"), None);
        assert_eq!(
            resource_account("arn:aws:lambda:us-east-1:111111111111:layer:l:1"),
            None,
            "layer versions are shared by their own policies"
        );
        assert_eq!(resource_account("*"), None);
        assert_eq!(resource_account("arn:aws:s3:::bucket"), None);
    }

    #[test]
    fn callers_have_aws_shaped_principals() {
        let c = Caller::new("123456789012", "AKIA", Identity::Root, "/");
        assert_eq!(c.principal.arn, "arn:aws:iam::123456789012:root");
        let c = Caller::new(
            "123456789012",
            "ASIA",
            Identity::Role {
                name: "r".into(),
                session: "f".into(),
            },
            "/service-role/",
        );
        assert_eq!(
            c.principal.arn,
            "arn:aws:sts::123456789012:assumed-role/r/f"
        );
        assert_eq!(
            c.principal.kind,
            PrincipalKind::AssumedRole {
                role_arn: "arn:aws:iam::123456789012:role/service-role/r".into()
            }
        );
    }
}
