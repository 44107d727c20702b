//! The IAM operations Nimbus serves: users and their access keys, roles, inline and
//! managed policies. Every call is authorized like any other (`iam:<Action>` on the
//! user, role or policy ARN), documents are parsed before anything is written, and
//! secrets are generated here and sealed by the metadata cluster.

use base64::Engine;
use nimbus_iam::{Context, PolicyDocument};
use nimbus_types::iam::{self, IamPrincipalRef, IamRole, IamUser, ManagedPolicy};
use nimbus_types::{keys, AccessKey, Command, Entity};
use rand::RngCore;

use super::{iso_time, Params, QueryError, Xml};
use crate::core::access::{Caller, Identity, Operation};
use crate::core::async_events::now_ms;
use crate::core::sessions::random_id;
use crate::core::Gateway;

type Answer = Result<Option<Xml>, QueryError>;

/// Runs one IAM action for `caller`.
pub async fn run(gw: &Gateway, caller: &Caller, p: &Params) -> Answer {
    let account = caller.account_id.as_str();
    let action = p.action();
    if action.is_empty() {
        return Err(QueryError::new(400, "MissingAction", "Missing Action"));
    }
    let resource = resource_of(gw, caller, p);
    gw.authorize(
        caller,
        &Operation::new(&format!("iam:{action}"), resource),
        &Context::new(),
    )?;
    match action {
        "CreateUser" => {
            let name = name_param(p, "UserName", 64)?;
            let user = IamUser {
                account_id: account.into(),
                name: name.into(),
                user_id: random_id("AIDA", 17),
                path: path_param(p)?,
                created_ms: now_ms(),
                inline_policies: Default::default(),
                attached: vec![],
                access_keys: vec![],
            };
            write(gw, Command::CreateIamUser { user: user.clone() }).await?;
            let mut x = Xml::new();
            user_xml(x.open("User"), &user).close("User");
            Ok(Some(x))
        }
        "GetUser" => {
            let user = match p.get("UserName") {
                Some(n) => get_user(gw, account, n)?,
                None => match &caller.identity {
                    Identity::User { name } => get_user(gw, account, name)?,
                    Identity::Root => {
                        let mut x = Xml::new();
                        x.open("User")
                            .leaf("UserId", account)
                            .leaf("Arn", &caller.principal.arn)
                            .close("User");
                        return Ok(Some(x));
                    }
                    Identity::Role { .. } => {
                        return Err(QueryError::validation(
                            "Must specify userName when calling with non-User credentials",
                        ))
                    }
                },
            };
            let mut x = Xml::new();
            user_xml(x.open("User"), &user).close("User");
            Ok(Some(x))
        }
        "DeleteUser" => {
            let name = p.required("UserName")?;
            write(
                gw,
                Command::DeleteIamUser {
                    account_id: account.into(),
                    name: name.into(),
                },
            )
            .await?;
            Ok(None)
        }
        "ListUsers" => {
            let mut x = Xml::new();
            x.open("Users");
            for (_, e) in gw
                .catalog()
                .list(&keys::iam_users_of(account), None, usize::MAX)
            {
                if let Entity::IamUser(u) = e {
                    user_xml(x.open("member"), &u).close("member");
                }
            }
            x.close("Users").leaf("IsTruncated", "false");
            Ok(Some(x))
        }
        "CreateAccessKey" => {
            let user = target_user(caller, p)?;
            let mut secret = [0u8; 30];
            rand::thread_rng().fill_bytes(&mut secret);
            let secret = base64::engine::general_purpose::STANDARD.encode(secret);
            let key = AccessKey {
                access_key_id: random_id("AKIA", 16),
                account_id: account.into(),
                secret_ciphertext: secret.clone().into_bytes(),
                user_name: Some(user.to_string()),
                active: true,
                created_ms: now_ms(),
            };
            let id = key.access_key_id.clone();
            let created = key.created_ms;
            write(gw, Command::PutAccessKey { key }).await?;
            let mut x = Xml::new();
            x.open("AccessKey")
                .leaf("UserName", user)
                .leaf("AccessKeyId", &id)
                .leaf("Status", "Active")
                .leaf("SecretAccessKey", &secret)
                .leaf("CreateDate", &iso_time(created))
                .close("AccessKey");
            Ok(Some(x))
        }
        "DeleteAccessKey" | "UpdateAccessKey" => {
            let id = p.required("AccessKeyId")?;
            let owner = p
                .get("UserName")
                .map(str::to_string)
                .or(match &caller.identity {
                    Identity::User { name } => Some(name.clone()),
                    _ => None,
                });
            // The key must be the named user's (or the root's own) in this account.
            match gw.catalog().get(&keys::access_key(id)) {
                Some(Entity::AccessKey(k))
                    if k.account_id == account
                        && k.user_name.as_deref().map(str::to_lowercase)
                            == owner.as_deref().map(str::to_lowercase) => {}
                _ => {
                    return Err(QueryError::no_such_entity(format!(
                        "The Access Key with id {id} cannot be found."
                    )))
                }
            }
            let cmd = if action == "DeleteAccessKey" {
                Command::DeleteAccessKey {
                    access_key_id: id.into(),
                }
            } else {
                let active = match p.required("Status")? {
                    "Active" => true,
                    "Inactive" => false,
                    other => {
                        return Err(QueryError::validation(format!(
                            "1 validation error detected: Value '{other}' at 'status' failed to satisfy constraint: Member must satisfy enum value set: [Active, Inactive]"
                        )))
                    }
                };
                Command::SetAccessKeyActive {
                    access_key_id: id.into(),
                    active,
                }
            };
            write(gw, cmd).await?;
            Ok(None)
        }
        "ListAccessKeys" => {
            let user = p
                .get("UserName")
                .map(str::to_string)
                .or(match &caller.identity {
                    Identity::User { name } => Some(name.clone()),
                    _ => None,
                });
            if let Some(u) = &user {
                get_user(gw, account, u)?;
            }
            let mut x = Xml::new();
            x.open("AccessKeyMetadata");
            for (_, e) in gw.catalog().list(keys::ACCESS_KEY, None, usize::MAX) {
                let Entity::AccessKey(k) = e else { continue };
                if k.account_id != account
                    || k.user_name.as_deref().map(str::to_lowercase)
                        != user.as_deref().map(str::to_lowercase)
                {
                    continue;
                }
                x.open("member");
                if let Some(u) = &k.user_name {
                    x.leaf("UserName", u);
                }
                x.leaf("AccessKeyId", &k.access_key_id)
                    .leaf("Status", if k.active { "Active" } else { "Inactive" })
                    .leaf("CreateDate", &iso_time(k.created_ms))
                    .close("member");
            }
            x.close("AccessKeyMetadata").leaf("IsTruncated", "false");
            Ok(Some(x))
        }
        "CreateRole" => {
            let name = name_param(p, "RoleName", 64)?;
            let trust = p.required("AssumeRolePolicyDocument")?;
            parse_policy(trust)?;
            if iam::policy_size(trust) > iam::TRUST_POLICY_MAX {
                return Err(QueryError::new(
                    409,
                    "LimitExceeded",
                    format!(
                        "Cannot exceed quota for ACLSizePerRole: {}",
                        iam::TRUST_POLICY_MAX
                    ),
                ));
            }
            let max_session_secs = match p.get("MaxSessionDuration") {
                None => 3600,
                Some(s) => match s.parse::<u32>() {
                    Ok(n) if (3600..=43200).contains(&n) => n,
                    _ => {
                        return Err(QueryError::validation(format!(
                            "1 validation error detected: Value '{s}' at 'maxSessionDuration' failed to satisfy constraint: Member must have value between 3600 and 43200"
                        )))
                    }
                },
            };
            let role = IamRole {
                account_id: account.into(),
                name: name.into(),
                role_id: random_id("AROA", 17),
                path: path_param(p)?,
                description: p.get("Description").unwrap_or_default().into(),
                trust_policy: trust.into(),
                max_session_secs,
                created_ms: now_ms(),
                inline_policies: Default::default(),
                attached: vec![],
            };
            write(gw, Command::CreateIamRole { role: role.clone() }).await?;
            let mut x = Xml::new();
            role_xml(x.open("Role"), &role).close("Role");
            Ok(Some(x))
        }
        "GetRole" => {
            let role = get_role(gw, account, p.required("RoleName")?)?;
            let mut x = Xml::new();
            role_xml(x.open("Role"), &role).close("Role");
            Ok(Some(x))
        }
        "DeleteRole" => {
            let name = p.required("RoleName")?;
            write(
                gw,
                Command::DeleteIamRole {
                    account_id: account.into(),
                    name: name.into(),
                },
            )
            .await?;
            Ok(None)
        }
        "ListRoles" => {
            let mut x = Xml::new();
            x.open("Roles");
            for (_, e) in gw
                .catalog()
                .list(&keys::iam_roles_of(account), None, usize::MAX)
            {
                if let Entity::IamRole(r) = e {
                    role_xml(x.open("member"), &r).close("member");
                }
            }
            x.close("Roles").leaf("IsTruncated", "false");
            Ok(Some(x))
        }
        "PutUserPolicy" | "PutRolePolicy" => {
            let principal = principal_param(action, p)?;
            let policy_name = name_param(p, "PolicyName", 128)?;
            let document = p.required("PolicyDocument")?;
            parse_policy(document)?;
            write(
                gw,
                Command::PutInlinePolicy {
                    account_id: account.into(),
                    principal,
                    policy_name: policy_name.into(),
                    document: document.into(),
                },
            )
            .await?;
            Ok(None)
        }
        "GetUserPolicy" | "GetRolePolicy" => {
            let principal = principal_param(action, p)?;
            let policy_name = p.required("PolicyName")?;
            let inline = inline_policies(gw, account, &principal)?;
            let doc = inline.get(policy_name).ok_or_else(|| {
                QueryError::no_such_entity(format!(
                    "The {} policy with name {policy_name} cannot be found.",
                    principal.kind()
                ))
            })?;
            let mut x = Xml::new();
            match &principal {
                IamPrincipalRef::User(n) => x.leaf("UserName", n),
                IamPrincipalRef::Role(n) => x.leaf("RoleName", n),
            };
            x.leaf("PolicyName", policy_name)
                .policy("PolicyDocument", doc);
            Ok(Some(x))
        }
        "DeleteUserPolicy" | "DeleteRolePolicy" => {
            let principal = principal_param(action, p)?;
            let policy_name = p.required("PolicyName")?;
            write(
                gw,
                Command::DeleteInlinePolicy {
                    account_id: account.into(),
                    principal,
                    policy_name: policy_name.into(),
                },
            )
            .await?;
            Ok(None)
        }
        "ListUserPolicies" | "ListRolePolicies" => {
            let principal = principal_param(action, p)?;
            let inline = inline_policies(gw, account, &principal)?;
            let mut x = Xml::new();
            x.open("PolicyNames");
            for name in inline.keys() {
                x.leaf("member", name);
            }
            x.close("PolicyNames").leaf("IsTruncated", "false");
            Ok(Some(x))
        }
        "CreatePolicy" => {
            let name = name_param(p, "PolicyName", 128)?;
            let document = p.required("PolicyDocument")?;
            parse_policy(document)?;
            if iam::policy_size(document) > iam::MANAGED_POLICY_MAX {
                return Err(QueryError::new(
                    409,
                    "LimitExceeded",
                    format!(
                        "Cannot exceed quota for PolicySize: {}",
                        iam::MANAGED_POLICY_MAX
                    ),
                ));
            }
            let policy = ManagedPolicy {
                account_id: account.into(),
                name: name.into(),
                policy_id: random_id("ANPA", 17),
                path: path_param(p)?,
                description: p.get("Description").unwrap_or_default().into(),
                document: document.into(),
                created_ms: now_ms(),
                attachment_count: 0,
            };
            write(
                gw,
                Command::CreateManagedPolicy {
                    policy: policy.clone(),
                },
            )
            .await?;
            let mut x = Xml::new();
            policy_xml(x.open("Policy"), &policy).close("Policy");
            Ok(Some(x))
        }
        "GetPolicy" => {
            let arn = p.required("PolicyArn")?;
            let mut x = Xml::new();
            x.open("Policy");
            if let Some(b) = iam::builtin_policy(arn) {
                x.leaf("PolicyName", b.name)
                    .leaf("PolicyId", b.policy_id)
                    .leaf("Arn", b.arn)
                    .leaf("Path", b.path)
                    .leaf("DefaultVersionId", "v1")
                    .leaf("IsAttachable", "true")
                    .leaf("Description", b.description);
            } else {
                policy_xml(&mut x, &get_policy(gw, account, arn)?);
            }
            x.close("Policy");
            Ok(Some(x))
        }
        "GetPolicyVersion" => {
            let arn = p.required("PolicyArn")?;
            let doc = gw.managed_policy_document(account, arn).ok_or_else(|| {
                QueryError::no_such_entity(format!("Policy {arn} was not found."))
            })?;
            let mut x = Xml::new();
            x.open("PolicyVersion")
                .policy("Document", &doc)
                .leaf("VersionId", "v1")
                .leaf("IsDefaultVersion", "true")
                .close("PolicyVersion");
            Ok(Some(x))
        }
        "DeletePolicy" => {
            let arn = p.required("PolicyArn")?;
            let policy = get_policy(gw, account, arn)?;
            write(
                gw,
                Command::DeleteManagedPolicy {
                    account_id: account.into(),
                    name: policy.name,
                },
            )
            .await?;
            Ok(None)
        }
        "AttachUserPolicy" | "AttachRolePolicy" | "DetachUserPolicy" | "DetachRolePolicy" => {
            let principal = principal_param(action, p)?;
            let policy_arn = p.required("PolicyArn")?.to_string();
            let cmd = if action.starts_with("Attach") {
                Command::AttachPolicy {
                    account_id: account.into(),
                    principal,
                    policy_arn,
                }
            } else {
                Command::DetachPolicy {
                    account_id: account.into(),
                    principal,
                    policy_arn,
                }
            };
            write(gw, cmd).await?;
            Ok(None)
        }
        "ListAttachedUserPolicies" | "ListAttachedRolePolicies" => {
            let principal = principal_param(action, p)?;
            let attached = match &principal {
                IamPrincipalRef::User(n) => get_user(gw, account, n)?.attached,
                IamPrincipalRef::Role(n) => get_role(gw, account, n)?.attached,
            };
            let mut x = Xml::new();
            x.open("AttachedPolicies");
            for arn in &attached {
                let name = arn.rsplit('/').next().unwrap_or(arn);
                x.open("member")
                    .leaf("PolicyName", name)
                    .leaf("PolicyArn", arn)
                    .close("member");
            }
            x.close("AttachedPolicies").leaf("IsTruncated", "false");
            Ok(Some(x))
        }
        other => Err(QueryError::new(
            400,
            "InvalidAction",
            format!("Could not find operation {other} for version 2010-05-08"),
        )),
    }
}

/// The ARN an action acts on, for authorization.
fn resource_of(gw: &Gateway, caller: &Caller, p: &Params) -> String {
    let account = &caller.account_id;
    let path = p.get("Path").unwrap_or("/");
    let user = |name: &str| match gw.catalog().get(&keys::iam_user(account, name)) {
        Some(Entity::IamUser(u)) => u.arn(),
        _ => format!("arn:aws:iam::{account}:user{path}{name}"),
    };
    if let Some(arn) = p
        .get("PolicyArn")
        .filter(|_| !p.action().contains("User") && !p.action().contains("Role"))
    {
        return arn.to_string();
    }
    if let Some(n) = p.get("UserName") {
        return user(n);
    }
    if let Some(n) = p.get("RoleName") {
        return match gw.catalog().get(&keys::iam_role(account, n)) {
            Some(Entity::IamRole(r)) => r.arn(),
            _ => iam::role_arn(account, path, n),
        };
    }
    if p.action() == "CreatePolicy" {
        return format!(
            "arn:aws:iam::{account}:policy{path}{}",
            p.get("PolicyName").unwrap_or_default()
        );
    }
    match &caller.identity {
        Identity::User { name } if p.action().contains("AccessKey") => user(name),
        _ => "*".into(),
    }
}

async fn write(gw: &Gateway, cmd: Command) -> Result<(), QueryError> {
    let (rev, _) = gw.meta().write(cmd).await?;
    gw.observe(rev).await;
    Ok(())
}

fn parse_policy(doc: &str) -> Result<PolicyDocument, QueryError> {
    PolicyDocument::parse(doc).map_err(|e| QueryError::malformed_policy(e.to_string()))
}

/// A user, role or policy name: IAM's characters and length.
fn name_param<'a>(p: &'a Params, param: &str, max: usize) -> Result<&'a str, QueryError> {
    let v = p.required(param)?;
    let ok = v.len() <= max
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c));
    if ok {
        Ok(v)
    } else {
        Err(QueryError::validation(format!(
            "1 validation error detected: Value '{v}' at '{}' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]+ and have length less than or equal to {max}",
            super::lower_first(param)
        )))
    }
}

fn path_param(p: &Params) -> Result<String, QueryError> {
    let path = p.get("Path").unwrap_or("/");
    let ok = path.starts_with('/')
        && path.ends_with('/')
        && path.len() <= 512
        && path.chars().all(|c| ('!'..='~').contains(&c));
    if ok {
        Ok(path.into())
    } else {
        Err(QueryError::validation(format!(
            "The specified value for path is invalid. It must begin and end with / and contain only alphanumeric characters and/or / characters: {path}"
        )))
    }
}

fn principal_param(action: &str, p: &Params) -> Result<IamPrincipalRef, QueryError> {
    if action.contains("User") {
        Ok(IamPrincipalRef::User(p.required("UserName")?.into()))
    } else {
        Ok(IamPrincipalRef::Role(p.required("RoleName")?.into()))
    }
}

/// The user an access-key call is about: named, or the calling user.
fn target_user<'a>(caller: &'a Caller, p: &'a Params) -> Result<&'a str, QueryError> {
    match (p.get("UserName"), &caller.identity) {
        (Some(n), _) => Ok(n),
        (None, Identity::User { name }) => Ok(name),
        _ => Err(QueryError::validation(
            "Must specify userName when calling with non-User credentials",
        )),
    }
}

fn get_user(gw: &Gateway, account: &str, name: &str) -> Result<IamUser, QueryError> {
    match gw.catalog().get(&keys::iam_user(account, name)) {
        Some(Entity::IamUser(u)) => Ok(u),
        _ => Err(QueryError::no_such_entity(format!(
            "The user with name {name} cannot be found."
        ))),
    }
}

fn get_role(gw: &Gateway, account: &str, name: &str) -> Result<IamRole, QueryError> {
    match gw.catalog().get(&keys::iam_role(account, name)) {
        Some(Entity::IamRole(r)) => Ok(r),
        _ => Err(QueryError::no_such_entity(format!(
            "The role with name {name} cannot be found."
        ))),
    }
}

fn get_policy(gw: &Gateway, account: &str, arn: &str) -> Result<ManagedPolicy, QueryError> {
    let missing = || QueryError::no_such_entity(format!("Policy {arn} was not found."));
    let name = arn
        .strip_prefix(&format!("arn:aws:iam::{account}:policy/"))
        .and_then(|r| r.rsplit('/').next())
        .ok_or_else(missing)?;
    match gw.catalog().get(&keys::iam_policy(account, name)) {
        Some(Entity::ManagedPolicy(p)) if p.arn() == arn => Ok(p),
        _ => Err(missing()),
    }
}

fn inline_policies(
    gw: &Gateway,
    account: &str,
    principal: &IamPrincipalRef,
) -> Result<std::collections::BTreeMap<String, String>, QueryError> {
    Ok(match principal {
        IamPrincipalRef::User(n) => get_user(gw, account, n)?.inline_policies,
        IamPrincipalRef::Role(n) => get_role(gw, account, n)?.inline_policies,
    })
}

fn user_xml<'x>(x: &'x mut Xml, u: &IamUser) -> &'x mut Xml {
    x.leaf("Path", &u.path)
        .leaf("UserName", &u.name)
        .leaf("UserId", &u.user_id)
        .leaf("Arn", &u.arn())
        .leaf("CreateDate", &iso_time(u.created_ms))
}

fn role_xml<'x>(x: &'x mut Xml, r: &IamRole) -> &'x mut Xml {
    x.leaf("Path", &r.path)
        .leaf("RoleName", &r.name)
        .leaf("RoleId", &r.role_id)
        .leaf("Arn", &r.arn())
        .leaf("CreateDate", &iso_time(r.created_ms))
        .policy("AssumeRolePolicyDocument", &r.trust_policy)
        .leaf("Description", &r.description)
        .leaf("MaxSessionDuration", &r.max_session_secs.to_string())
}

fn policy_xml<'x>(x: &'x mut Xml, p: &ManagedPolicy) -> &'x mut Xml {
    x.leaf("PolicyName", &p.name)
        .leaf("PolicyId", &p.policy_id)
        .leaf("Arn", &p.arn())
        .leaf("Path", &p.path)
        .leaf("DefaultVersionId", "v1")
        .leaf("AttachmentCount", &p.attachment_count.to_string())
        .leaf("IsAttachable", "true")
        .leaf("Description", &p.description)
        .leaf("CreateDate", &iso_time(p.created_ms))
        .leaf("UpdateDate", &iso_time(p.created_ms))
}
