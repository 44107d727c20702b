//! Reading what a command refers to, with Lambda's error when it is not there.

use nimbus_types::{
    keys, Alias, Entity, ErrorKind, Function, FunctionKey, MetaError, Qualifier, Version,
};

use crate::state_machine::tx::EntryTx;

/// The account a new record belongs to must exist.
pub(super) fn require_account(tx: &EntryTx<'_>, account_id: &str) -> Result<(), MetaError> {
    if tx.exists(&keys::account(account_id))? {
        Ok(())
    } else {
        Err(MetaError::not_found(format!(
            "Account {account_id} not found"
        )))
    }
}

pub(super) fn get_function(tx: &EntryTx<'_>, key: &FunctionKey) -> Result<Function, MetaError> {
    match tx.get(&keys::function(key))? {
        Some(Entity::Function(f)) => Ok(f),
        _ => Err(MetaError::not_found(format!(
            "Function not found: {}",
            key.arn()
        ))),
    }
}

pub(super) fn get_version(
    tx: &EntryTx<'_>,
    key: &FunctionKey,
    n: u64,
) -> Result<Version, MetaError> {
    match tx.get(&keys::version(key, n))? {
        Some(Entity::Version(v)) => Ok(v),
        _ => Err(MetaError::not_found(format!(
            "Function not found: {}:{n}",
            key.arn()
        ))),
    }
}

pub(super) fn get_alias(
    tx: &EntryTx<'_>,
    key: &FunctionKey,
    name: &str,
) -> Result<Alias, MetaError> {
    match tx.get(&keys::alias(key, name))? {
        Some(Entity::Alias(a)) => Ok(a),
        _ => Err(MetaError::not_found(format!(
            "Alias not found: {}:{name}",
            key.arn()
        ))),
    }
}

/// Optimistic concurrency: the caller's `RevisionId`, if given, must be the current one.
pub(super) fn check_revision(current: &str, expected: &Option<String>) -> Result<(), MetaError> {
    match expected {
        Some(e) if e != current => Err(MetaError::new(
            ErrorKind::PreconditionFailed,
            "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id",
        )),
        _ => Ok(()),
    }
}

/// A version qualifier (`$LATEST` or a number) that must exist.
pub(super) fn require_version_qualifier(
    tx: &EntryTx<'_>,
    key: &FunctionKey,
    v: &str,
) -> Result<(), MetaError> {
    let q = Qualifier::version(v)
        .ok_or_else(|| MetaError::invalid(format!("Invalid function version {v}")))?;
    require(tx, key, &q)
}

/// `$LATEST`, an existing version number or an existing alias.
pub(super) fn require_qualifier(
    tx: &EntryTx<'_>,
    key: &FunctionKey,
    q: &str,
) -> Result<(), MetaError> {
    require(tx, key, &Qualifier::parse(q))
}

fn require(tx: &EntryTx<'_>, key: &FunctionKey, q: &Qualifier) -> Result<(), MetaError> {
    match q {
        Qualifier::Latest => Ok(()),
        Qualifier::Version(n) => get_version(tx, key, *n).map(drop),
        Qualifier::Alias(name) => get_alias(tx, key, name).map(drop),
    }
}
