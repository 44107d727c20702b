//! A function's resource-based policy (`AddPermission`/`RemovePermission`): statements
//! per qualifier, kept on the function's record so that one watch change carries the
//! whole policy to every gateway. Each change gives the function a new `RevisionId`,
//! which `GetPolicy` returns and the next change may be conditioned on.

use nimbus_types::command::{Command, CommandOutput};
use nimbus_types::{limits, ErrorKind, MetaError};

use super::lookup::{check_revision, get_function, require_qualifier};
use super::{misrouted, revision_id, save, Stamp};
use crate::state_machine::tx::EntryTx;

pub(super) fn apply(
    tx: &mut EntryTx<'_>,
    at: Stamp,
    cmd: &Command,
) -> Result<CommandOutput, MetaError> {
    let (key, qualifier, sid, expected) = match cmd {
        Command::AddFunctionPermission {
            key,
            qualifier,
            statement_id,
            expected_revision,
            ..
        }
        | Command::RemoveFunctionPermission {
            key,
            qualifier,
            statement_id,
            expected_revision,
        } => (key, qualifier, statement_id, expected_revision),
        _ => return Err(misrouted("a permission")),
    };
    let mut f = get_function(tx, key)?;
    check_revision(&f.revision_id, expected)?;
    if !qualifier.is_empty() {
        require_qualifier(tx, key, qualifier)?;
    }
    match cmd {
        Command::AddFunctionPermission { statement, .. } => {
            let statements = f.resource_policy.entry(qualifier.clone()).or_default();
            if statements.iter().any(|(s, _)| s == sid) {
                return Err(MetaError::conflict(
                    "The statement id (sid) provided already exists. Please specify a different statement id, or remove the existing statement.",
                ));
            }
            statements.push((sid.clone(), statement.clone()));
            // Lambda bounds the whole policy document of the function (or qualifier).
            let size: usize = statements.iter().map(|(_, s)| s.len() + 1).sum::<usize>() + 40;
            if size > limits::POLICY_MAX_BYTES {
                return Err(MetaError::new(
                    ErrorKind::PolicyLengthExceeded,
                    "The final policy size is bigger than the limit.",
                ));
            }
        }
        _ => {
            let statements = f.resource_policy.get_mut(qualifier.as_str());
            let Some(statements) = statements.filter(|s| s.iter().any(|(s, _)| s == sid)) else {
                return Err(MetaError::not_found(format!(
                    "Statement {sid} is not found in resource policy."
                )));
            };
            statements.retain(|(s, _)| s != sid);
            if statements.is_empty() {
                f.resource_policy.remove(qualifier.as_str());
            }
        }
    }
    f.revision_id = revision_id(at, &nimbus_types::keys::function(&f.key));
    save(tx, &f);
    Ok(CommandOutput::Function(Box::new(f)))
}
