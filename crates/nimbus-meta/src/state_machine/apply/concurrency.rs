//! Reserved and provisioned concurrency, checked against the account's limits.
//!
//! The account's concurrency limit in a region is shared: functions with a reservation
//! take it out of the pool; provisioned concurrency comes out of the function's
//! reservation if it has one, else out of the unreserved pool; and the unreserved pool
//! never drops below the account's unreserved minimum.

use nimbus_types::command::{Command, CommandOutput};
use nimbus_types::{keys, Entity, MetaError, Qualifier, RegionLimits};

use super::lookup::{get_function, require_qualifier};
use super::{misrouted, save};
use crate::state_machine::tx::EntryTx;

pub(super) fn apply(tx: &mut EntryTx<'_>, cmd: &Command) -> Result<CommandOutput, MetaError> {
    match cmd {
        Command::PutFunctionConcurrency { key, reserved } => {
            let mut f = get_function(tx, key)?;
            let limits = account_limits(tx, &key.account_id, &key.region)?;
            let others = reserved_total(tx, &key.account_id, &key.region, Some(&key.name))?;
            // The function's provisioned concurrency must fit in its reservation.
            let provisioned: u64 = f
                .provisioned_concurrency
                .values()
                .map(|n| u64::from(*n))
                .sum();
            if provisioned > u64::from(*reserved) {
                return Err(MetaError::invalid(format!(
                    "Specified ReservedConcurrentExecutions for function ({reserved}) is less than its provisioned concurrency ({provisioned})."
                )));
            }
            // Other functions' provisioned concurrency without a reservation comes out of
            // the unreserved pool too.
            let unreserved_provisioned =
                unreserved_provisioned_total(tx, &key.account_id, &key.region, &key.name)?;
            if !limits
                .keeps_unreserved_minimum(others + unreserved_provisioned + u64::from(*reserved))
            {
                return Err(MetaError::invalid(format!(
                    "Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [{}].",
                    limits.unreserved_minimum
                )));
            }
            f.reserved_concurrency = Some(*reserved);
            save(tx, &f);
        }
        Command::DeleteFunctionConcurrency { key } => {
            let mut f = get_function(tx, key)?;
            f.reserved_concurrency = None;
            save(tx, &f);
        }
        Command::PutProvisionedConcurrency {
            key,
            qualifier,
            requested,
        } => {
            let mut f = get_function(tx, key)?;
            if Qualifier::parse(qualifier).is_latest() {
                return Err(MetaError::invalid("Provisioned Concurrency Configs cannot be applied to unpublished function versions."));
            }
            require_qualifier(tx, key, qualifier)?;
            if *requested == 0 {
                return Err(MetaError::invalid(format!("1 validation error detected: Value '{requested}' at 'provisionedConcurrentExecutions' failed to satisfy constraint: Member must have value greater than or equal to 1")));
            }
            let others: u64 = f
                .provisioned_concurrency
                .iter()
                .filter(|(q, _)| *q != qualifier)
                .map(|(_, n)| u64::from(*n))
                .sum();
            let wanted = others + u64::from(*requested);
            match f.reserved_concurrency {
                // Within the function's reservation.
                Some(reserved) if wanted > u64::from(reserved) => {
                    return Err(MetaError::invalid(format!("Requested Provisioned Concurrency should not be greater than the reservedConcurrentExecution for function ({reserved}).")));
                }
                Some(_) => {}
                // Out of the account's unreserved pool, which keeps its minimum.
                None => {
                    let limits = account_limits(tx, &key.account_id, &key.region)?;
                    let reserved = reserved_total(tx, &key.account_id, &key.region, None)?;
                    let provisioned =
                        unreserved_provisioned_total(tx, &key.account_id, &key.region, &key.name)?;
                    if !limits.keeps_unreserved_minimum(reserved + provisioned + wanted) {
                        return Err(MetaError::invalid(format!(
                            "Requested Provisioned Concurrency decreases account's UnreservedConcurrentExecution below its minimum value of [{}].",
                            limits.unreserved_minimum
                        )));
                    }
                }
            }
            f.provisioned_concurrency
                .insert(qualifier.clone(), *requested);
            save(tx, &f);
        }
        Command::DeleteProvisionedConcurrency { key, qualifier } => {
            let mut f = get_function(tx, key)?;
            if f.provisioned_concurrency.remove(qualifier).is_none() {
                return Err(MetaError::not_found(format!(
                    "No Provisioned Concurrency Config found for this function: {}:{qualifier}",
                    key.arn()
                )));
            }
            save(tx, &f);
        }
        _ => return Err(misrouted("a concurrency")),
    }
    Ok(CommandOutput::Done)
}

fn account_limits(
    tx: &EntryTx<'_>,
    account_id: &str,
    region: &str,
) -> Result<RegionLimits, MetaError> {
    match tx.get(&keys::account(account_id))? {
        Some(Entity::Account(a)) => Ok(a.limits.get(region).copied().unwrap_or_default()),
        _ => Err(MetaError::not_found(format!(
            "Account {account_id} not found"
        ))),
    }
}

/// Sum of reserved concurrency of the account's functions in a region, except `skip`.
pub(super) fn reserved_total(
    tx: &EntryTx<'_>,
    account_id: &str,
    region: &str,
    skip: Option<&str>,
) -> Result<u64, MetaError> {
    let mut total = 0u64;
    for (_, e) in tx.scan(&keys::functions_of(account_id, region))? {
        if let Entity::Function(f) = e {
            if Some(f.key.name.as_str()) != skip {
                total += u64::from(f.reserved_concurrency.unwrap_or(0));
            }
        }
    }
    Ok(total)
}

/// Provisioned concurrency of the account's functions without a reservation (it comes
/// out of the unreserved pool), except function `skip`.
fn unreserved_provisioned_total(
    tx: &EntryTx<'_>,
    account_id: &str,
    region: &str,
    skip: &str,
) -> Result<u64, MetaError> {
    let mut total = 0u64;
    for (_, e) in tx.scan(&keys::functions_of(account_id, region))? {
        if let Entity::Function(f) = e {
            if f.key.name != skip && f.reserved_concurrency.is_none() {
                total += f
                    .provisioned_concurrency
                    .values()
                    .map(|n| u64::from(*n))
                    .sum::<u64>();
            }
        }
    }
    Ok(total)
}
