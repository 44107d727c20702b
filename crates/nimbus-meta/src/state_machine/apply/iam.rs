//! IAM: users, roles, their inline policies and attachments, customer managed policies,
//! and the state of access keys. The gateway validated names and parsed the documents;
//! here is what depends on current state: existence, uniqueness (names regardless of
//! case), quotas, and IAM's refusal to delete what still has things attached.

use nimbus_types::command::{Command, CommandOutput};
use nimbus_types::iam::{self, IamPrincipalRef, IamRole, IamUser};
use nimbus_types::{keys, Entity, ErrorKind, MetaError};

use super::lookup::require_account;
use super::misrouted;
use crate::state_machine::tx::EntryTx;

pub(super) fn apply(tx: &mut EntryTx<'_>, cmd: &Command) -> Result<CommandOutput, MetaError> {
    match cmd {
        Command::SetAccessKeyActive {
            access_key_id,
            active,
        } => {
            let key = keys::access_key(access_key_id);
            let Some(Entity::AccessKey(mut k)) = tx.get(&key)? else {
                return Err(no_such(format!(
                    "The Access Key with id {access_key_id} cannot be found."
                )));
            };
            k.active = *active;
            tx.put(key, Entity::AccessKey(k));
        }
        Command::CreateIamUser { user } => {
            require_account(tx, &user.account_id)?;
            let key = keys::iam_user(&user.account_id, &user.name);
            if tx.exists(&key)? {
                return Err(exists(format!(
                    "User with name {} already exists.",
                    user.name
                )));
            }
            tx.put(key, Entity::IamUser(user.clone()));
        }
        Command::DeleteIamUser { account_id, name } => {
            let user = get_user(tx, account_id, name)?;
            if !user.access_keys.is_empty() {
                return Err(conflict(
                    "Cannot delete entity, must delete access keys first.",
                ));
            }
            if !user.inline_policies.is_empty() {
                return Err(conflict(
                    "Cannot delete entity, must delete policies first.",
                ));
            }
            if !user.attached.is_empty() {
                return Err(conflict(
                    "Cannot delete entity, must detach all policies first.",
                ));
            }
            tx.delete(keys::iam_user(account_id, name));
        }
        Command::CreateIamRole { role } => {
            require_account(tx, &role.account_id)?;
            let key = keys::iam_role(&role.account_id, &role.name);
            if tx.exists(&key)? {
                return Err(exists(format!(
                    "Role with name {} already exists.",
                    role.name
                )));
            }
            tx.put(key, Entity::IamRole(role.clone()));
        }
        Command::DeleteIamRole { account_id, name } => {
            let role = get_role(tx, account_id, name)?;
            if !role.inline_policies.is_empty() {
                return Err(conflict(
                    "Cannot delete entity, must delete policies first.",
                ));
            }
            if !role.attached.is_empty() {
                return Err(conflict(
                    "Cannot delete entity, must detach all policies first.",
                ));
            }
            tx.delete(keys::iam_role(account_id, name));
        }
        Command::PutInlinePolicy {
            account_id,
            principal,
            policy_name,
            document,
        } => match principal {
            IamPrincipalRef::User(name) => {
                let mut user = get_user(tx, account_id, name)?;
                user.inline_policies
                    .insert(policy_name.clone(), document.clone());
                check_inline_size(
                    &user.inline_policies,
                    iam::USER_INLINE_POLICY_MAX,
                    principal,
                )?;
                tx.put(keys::iam_user(account_id, name), Entity::IamUser(user));
            }
            IamPrincipalRef::Role(name) => {
                let mut role = get_role(tx, account_id, name)?;
                role.inline_policies
                    .insert(policy_name.clone(), document.clone());
                check_inline_size(
                    &role.inline_policies,
                    iam::ROLE_INLINE_POLICY_MAX,
                    principal,
                )?;
                tx.put(keys::iam_role(account_id, name), Entity::IamRole(role));
            }
        },
        Command::DeleteInlinePolicy {
            account_id,
            principal,
            policy_name,
        } => {
            let missing = || {
                no_such(format!(
                    "The {} policy with name {policy_name} cannot be found.",
                    principal.kind()
                ))
            };
            match principal {
                IamPrincipalRef::User(name) => {
                    let mut user = get_user(tx, account_id, name)?;
                    user.inline_policies
                        .remove(policy_name)
                        .ok_or_else(missing)?;
                    tx.put(keys::iam_user(account_id, name), Entity::IamUser(user));
                }
                IamPrincipalRef::Role(name) => {
                    let mut role = get_role(tx, account_id, name)?;
                    role.inline_policies
                        .remove(policy_name)
                        .ok_or_else(missing)?;
                    tx.put(keys::iam_role(account_id, name), Entity::IamRole(role));
                }
            }
        }
        Command::CreateManagedPolicy { policy } => {
            require_account(tx, &policy.account_id)?;
            let key = keys::iam_policy(&policy.account_id, &policy.name);
            if tx.exists(&key)? {
                return Err(exists(format!(
                    "A policy called {} already exists. Duplicate names are not allowed.",
                    policy.name
                )));
            }
            tx.put(key, Entity::ManagedPolicy(policy.clone()));
        }
        Command::DeleteManagedPolicy { account_id, name } => {
            let key = keys::iam_policy(account_id, name);
            let Some(Entity::ManagedPolicy(p)) = tx.get(&key)? else {
                return Err(no_such(format!(
                    "Policy arn:aws:iam::{account_id}:policy/{name} was not found."
                )));
            };
            if p.attachment_count > 0 {
                return Err(conflict("Cannot delete a policy attached to entities."));
            }
            tx.delete(key);
        }
        Command::AttachPolicy {
            account_id,
            principal,
            policy_arn,
        } => {
            let managed = managed_policy_key(tx, account_id, policy_arn)?;
            let attached = attachments(tx, account_id, principal)?;
            if attached.contains(policy_arn) {
                return Ok(CommandOutput::Done);
            }
            if attached.len() >= iam::ATTACHED_POLICIES_MAX {
                return Err(MetaError::new(
                    ErrorKind::LimitExceeded,
                    format!(
                        "Cannot exceed quota for PoliciesPer{}: {}",
                        match principal {
                            IamPrincipalRef::User(_) => "User",
                            IamPrincipalRef::Role(_) => "Role",
                        },
                        iam::ATTACHED_POLICIES_MAX
                    ),
                ));
            }
            update_attachments(tx, account_id, principal, |a| a.push(policy_arn.clone()))?;
            count_attachment(tx, managed, 1)?;
        }
        Command::DetachPolicy {
            account_id,
            principal,
            policy_arn,
        } => {
            let attached = attachments(tx, account_id, principal)?;
            if !attached.contains(policy_arn) {
                return Err(no_such(format!("Policy {policy_arn} was not found.")));
            }
            update_attachments(tx, account_id, principal, |a| a.retain(|p| p != policy_arn))?;
            let managed = managed_policy_key(tx, account_id, policy_arn)
                .ok()
                .flatten();
            count_attachment(tx, managed, -1)?;
        }
        _ => return Err(misrouted("an IAM")),
    }
    Ok(CommandOutput::Done)
}

/// A user's access keys are listed on the user (quota and delete checks); called by the
/// access-key commands.
pub(super) fn add_user_key(
    tx: &mut EntryTx<'_>,
    account_id: &str,
    user_name: &str,
    access_key_id: &str,
) -> Result<(), MetaError> {
    let mut user = get_user(tx, account_id, user_name)?;
    if user.access_keys.len() >= iam::ACCESS_KEYS_PER_USER {
        return Err(MetaError::new(
            ErrorKind::LimitExceeded,
            format!(
                "Cannot exceed quota for AccessKeysPerUser: {}",
                iam::ACCESS_KEYS_PER_USER
            ),
        ));
    }
    user.access_keys.push(access_key_id.to_string());
    tx.put(keys::iam_user(account_id, user_name), Entity::IamUser(user));
    Ok(())
}

pub(super) fn remove_user_key(
    tx: &mut EntryTx<'_>,
    account_id: &str,
    user_name: &str,
    access_key_id: &str,
) -> Result<(), MetaError> {
    if let Ok(mut user) = get_user(tx, account_id, user_name) {
        user.access_keys.retain(|k| k != access_key_id);
        tx.put(keys::iam_user(account_id, user_name), Entity::IamUser(user));
    }
    Ok(())
}

fn get_user(tx: &EntryTx<'_>, account_id: &str, name: &str) -> Result<IamUser, MetaError> {
    match tx.get(&keys::iam_user(account_id, name))? {
        Some(Entity::IamUser(u)) => Ok(u),
        _ => Err(no_such(format!(
            "The user with name {name} cannot be found."
        ))),
    }
}

fn get_role(tx: &EntryTx<'_>, account_id: &str, name: &str) -> Result<IamRole, MetaError> {
    match tx.get(&keys::iam_role(account_id, name))? {
        Some(Entity::IamRole(r)) => Ok(r),
        _ => Err(no_such(format!(
            "The role with name {name} cannot be found."
        ))),
    }
}

fn attachments(
    tx: &EntryTx<'_>,
    account_id: &str,
    principal: &IamPrincipalRef,
) -> Result<Vec<String>, MetaError> {
    Ok(match principal {
        IamPrincipalRef::User(n) => get_user(tx, account_id, n)?.attached,
        IamPrincipalRef::Role(n) => get_role(tx, account_id, n)?.attached,
    })
}

fn update_attachments(
    tx: &mut EntryTx<'_>,
    account_id: &str,
    principal: &IamPrincipalRef,
    f: impl FnOnce(&mut Vec<String>),
) -> Result<(), MetaError> {
    match principal {
        IamPrincipalRef::User(n) => {
            let mut u = get_user(tx, account_id, n)?;
            f(&mut u.attached);
            tx.put(keys::iam_user(account_id, n), Entity::IamUser(u));
        }
        IamPrincipalRef::Role(n) => {
            let mut r = get_role(tx, account_id, n)?;
            f(&mut r.attached);
            tx.put(keys::iam_role(account_id, n), Entity::IamRole(r));
        }
    }
    Ok(())
}

/// The state key of a customer managed policy of `account_id` named by `arn`, `None` for
/// a built-in one; an error when it names neither.
fn managed_policy_key(
    tx: &EntryTx<'_>,
    account_id: &str,
    arn: &str,
) -> Result<Option<String>, MetaError> {
    if iam::builtin_policy(arn).is_some() {
        return Ok(None);
    }
    let missing = || no_such(format!("Policy {arn} does not exist or is not attachable."));
    let prefix = format!("arn:aws:iam::{account_id}:policy/");
    let name = arn
        .strip_prefix(&prefix)
        .and_then(|rest| rest.rsplit('/').next())
        .ok_or_else(missing)?;
    let key = keys::iam_policy(account_id, name);
    match tx.get(&key)? {
        Some(Entity::ManagedPolicy(p)) if p.arn() == arn => Ok(Some(key)),
        _ => Err(missing()),
    }
}

fn count_attachment(
    tx: &mut EntryTx<'_>,
    key: Option<String>,
    delta: i64,
) -> Result<(), MetaError> {
    let Some(key) = key else { return Ok(()) };
    if let Some(Entity::ManagedPolicy(mut p)) = tx.get(&key)? {
        p.attachment_count = (i64::from(p.attachment_count) + delta).max(0) as u32;
        tx.put(key, Entity::ManagedPolicy(p));
    }
    Ok(())
}

fn check_inline_size(
    policies: &std::collections::BTreeMap<String, String>,
    max: usize,
    principal: &IamPrincipalRef,
) -> Result<(), MetaError> {
    let total: usize = policies.values().map(|d| iam::policy_size(d)).sum();
    if total > max {
        return Err(MetaError::new(
            ErrorKind::LimitExceeded,
            format!(
                "Maximum policy size of {max} bytes exceeded for {} {}",
                principal.kind(),
                principal.name()
            ),
        ));
    }
    Ok(())
}

fn no_such(message: String) -> MetaError {
    MetaError::not_found(message)
}

fn exists(message: String) -> MetaError {
    MetaError::conflict(message)
}

fn conflict(message: &str) -> MetaError {
    MetaError::new(ErrorKind::DeleteConflict, message)
}
