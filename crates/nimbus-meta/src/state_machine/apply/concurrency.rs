//! Reserved and provisioned concurrency, checked against the account's limits.
//!
//! The account's concurrency limit in a region is shared: functions with a reservation
//! take it out of the pool; provisioned concurrency comes out of the function's
//! reservation if it has one, else out of the unreserved pool; and the unreserved pool
//! never drops below the account's unreserved minimum. Edge locations' budgets are set
//! aside like reservations (counted in [`reserved_total`]).

use nimbus_types::command::{Command, CommandOutput};
use nimbus_types::{keys, EdgeBudget, Entity, MetaError, Qualifier, RegionLimits};

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
        Command::PutEdgeBudget { budget } => put_edge_budget(tx, budget)?,
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

/// Sets (or with 0 slots removes) an edge location's budget: the location must exist in
/// the region, its gateways be named, and the account's unreserved pool keep its minimum
/// after every reservation, every other budget and unreserved provisioned concurrency.
fn put_edge_budget(tx: &mut EntryTx<'_>, b: &EdgeBudget) -> Result<(), MetaError> {
    let key = keys::edge_budget(&b.account_id, &b.region, &b.location);
    if b.slots == 0 {
        tx.delete(key);
        return Ok(());
    }
    match tx.get(&keys::region(&b.region))? {
        Some(Entity::Region(r)) if r.edge_locations.contains(&b.location) => {}
        _ => {
            return Err(MetaError::not_found(format!(
                "Edge location {} not found in region {}",
                b.location, b.region
            )))
        }
    }
    if b.gateways.is_empty() {
        return Err(MetaError::invalid(
            "An edge budget needs the ids of the location's gateways that hold it",
        ));
    }
    let mut ids: Vec<&String> = b.gateways.iter().collect();
    ids.sort();
    ids.dedup();
    if ids.len() != b.gateways.len() || ids.iter().any(|g| g.is_empty() || g.len() > 128) {
        return Err(MetaError::invalid(
            "Gateway ids of an edge budget must be distinct, non-empty and at most 128 characters",
        ));
    }
    if b.slots < b.gateways.len() as u32 {
        return Err(MetaError::invalid(format!(
            "An edge budget of {} cannot give each of its {} gateways a slot",
            b.slots,
            b.gateways.len()
        )));
    }
    let limits = account_limits(tx, &b.account_id, &b.region)?;
    let reserved = functions_reserved(tx, &b.account_id, &b.region, None)?;
    let others = budgets_total(tx, &b.account_id, &b.region, Some(&b.location))?;
    let provisioned = unreserved_provisioned_total(tx, &b.account_id, &b.region, "")?;
    if !limits.keeps_unreserved_minimum(reserved + others + provisioned + u64::from(b.slots)) {
        return Err(MetaError::invalid(format!(
            "An edge budget of {} decreases the account's UnreservedConcurrentExecution below its minimum value of [{}].",
            b.slots, limits.unreserved_minimum
        )));
    }
    tx.put(key, Entity::EdgeBudget(b.clone()));
    Ok(())
}

/// Concurrency set aside in a region: the account's functions' reservations (except
/// `skip`'s) and its edge locations' budgets.
pub(super) fn reserved_total(
    tx: &EntryTx<'_>,
    account_id: &str,
    region: &str,
    skip: Option<&str>,
) -> Result<u64, MetaError> {
    Ok(functions_reserved(tx, account_id, region, skip)?
        + budgets_total(tx, account_id, region, None)?)
}

/// The account's edge budgets in a region, except location `skip`'s.
fn budgets_total(
    tx: &EntryTx<'_>,
    account_id: &str,
    region: &str,
    skip: Option<&str>,
) -> Result<u64, MetaError> {
    total_under(
        tx,
        &keys::edge_budgets_of(account_id, region),
        |e| match e {
            Entity::EdgeBudget(b) if Some(b.location.as_str()) != skip => b.slots,
            _ => 0,
        },
    )
}

/// Sum of reserved concurrency of the account's functions in a region, except `skip`.
fn functions_reserved(
    tx: &EntryTx<'_>,
    account_id: &str,
    region: &str,
    skip: Option<&str>,
) -> Result<u64, MetaError> {
    total_under(tx, &keys::functions_of(account_id, region), |e| match e {
        Entity::Function(f) if Some(f.key.name.as_str()) != skip => {
            f.reserved_concurrency.unwrap_or(0)
        }
        _ => 0,
    })
}

/// Σ `count` over the records under `prefix`.
fn total_under(
    tx: &EntryTx<'_>,
    prefix: &str,
    count: impl Fn(&Entity) -> u32,
) -> Result<u64, MetaError> {
    Ok(tx
        .scan(prefix)?
        .iter()
        .map(|(_, e)| u64::from(count(e)))
        .sum())
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
