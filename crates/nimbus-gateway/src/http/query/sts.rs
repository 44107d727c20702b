//! STS: `GetCallerIdentity` (always allowed, as on AWS) and `AssumeRole`, which needs
//! both the role's trust policy to name the caller and, for anyone but the account's
//! root, an identity policy allowing `sts:AssumeRole` on the role.

use nimbus_iam::{Context, PolicyDocument};
use nimbus_types::{iam, keys, Entity};

use super::{iso_time, Params, QueryError, Xml};
use crate::core::access::{Caller, Identity, Operation};
use crate::core::async_events::now_ms;
use crate::core::sessions::{self, SessionClaims};
use crate::core::Gateway;

/// The shortest session `AssumeRole` grants, in seconds (AWS: 900).
const MIN_SESSION_SECS: u64 = 900;

pub async fn run(gw: &Gateway, caller: &Caller, p: &Params) -> Result<Option<Xml>, QueryError> {
    match p.action() {
        "GetCallerIdentity" => {
            let user_id = match &caller.identity {
                Identity::Root => caller.account_id.clone(),
                Identity::User { name } => {
                    match gw.catalog().get(&keys::iam_user(&caller.account_id, name)) {
                        Some(Entity::IamUser(u)) => u.user_id,
                        _ => caller.access_key_id.clone(),
                    }
                }
                Identity::Role { name, session } => {
                    match gw.catalog().get(&keys::iam_role(&caller.account_id, name)) {
                        Some(Entity::IamRole(r)) => format!("{}:{session}", r.role_id),
                        _ => format!("{}:{session}", caller.access_key_id),
                    }
                }
            };
            let mut x = Xml::new();
            x.leaf("UserId", &user_id)
                .leaf("Account", &caller.account_id)
                .leaf("Arn", &caller.principal.arn);
            Ok(Some(x))
        }
        "AssumeRole" => assume_role(gw, caller, p).await.map(Some),
        "" => Err(QueryError::new(400, "MissingAction", "Missing Action")),
        other => Err(QueryError::new(
            400,
            "InvalidAction",
            format!("Could not find operation {other} for version 2011-06-15"),
        )),
    }
}

async fn assume_role(gw: &Gateway, caller: &Caller, p: &Params) -> Result<Xml, QueryError> {
    let role_arn = p.required("RoleArn")?;
    let session_name = p.required("RoleSessionName")?;
    if !(2..=64).contains(&session_name.len())
        || !session_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
    {
        return Err(QueryError::validation(format!(
            "1 validation error detected: Value '{session_name}' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]* and have length between 2 and 64"
        )));
    }
    let denied = || {
        QueryError::new(
            403,
            "AccessDenied",
            format!(
                "User: {} is not authorized to perform: sts:AssumeRole on resource: {role_arn}",
                caller.principal.arn
            ),
        )
    };
    let (account, _, name) = iam::parse_role_arn(role_arn)
        .ok_or_else(|| QueryError::validation(format!("{role_arn} is not a valid role ARN")))?;
    let role = match gw.catalog().get(&keys::iam_role(account, name)) {
        Some(Entity::IamRole(r)) if r.arn() == role_arn => r,
        _ => return Err(denied()),
    };
    // The role's trust policy is its resource policy: it must name the caller.
    let trusted = PolicyDocument::parse(&role.trust_policy).is_ok_and(|t| {
        nimbus_iam::trust_allows(&t, &caller.principal, "sts:AssumeRole", &Context::new())
    });
    if !trusted {
        return Err(denied());
    }
    // And the caller's own policies must allow it (an account's root needs none in its
    // own account).
    if !(matches!(caller.identity, Identity::Root) && account == caller.account_id) {
        gw.authorize(
            caller,
            &Operation::new("sts:AssumeRole", role_arn),
            &Context::new(),
        )
        .map_err(|_| denied())?;
    }
    let max = u64::from(role.max_session_secs);
    let secs = match p.get("DurationSeconds") {
        None => 3600.min(max),
        Some(s) => match s.parse::<u64>() {
            Ok(n) if (MIN_SESSION_SECS..=max).contains(&n) => n,
            _ => {
                return Err(QueryError::validation(format!(
                    "The requested DurationSeconds exceeds the MaxSessionDuration set for this role, or is under {MIN_SESSION_SECS}: {s}"
                )))
            }
        },
    };
    let key = gw.session_key().await?;
    let claims = SessionClaims {
        access_key_id: String::new(),
        account_id: account.into(),
        role_name: role.name.clone(),
        role_arn: role.arn(),
        session_name: session_name.into(),
        expires_ms: now_ms() + secs * 1000,
    };
    let assumed_arn = claims.assumed_role_arn();
    let creds = sessions::mint(key, claims);
    let mut x = Xml::new();
    x.open("Credentials")
        .leaf("AccessKeyId", &creds.access_key_id)
        .leaf("SecretAccessKey", &creds.secret_access_key)
        .leaf("SessionToken", &creds.session_token)
        .leaf("Expiration", &iso_time(creds.expires_ms))
        .close("Credentials")
        .open("AssumedRoleUser")
        .leaf("AssumedRoleId", &format!("{}:{session_name}", role.role_id))
        .leaf("Arn", &assumed_arn)
        .close("AssumedRoleUser");
    Ok(x)
}
