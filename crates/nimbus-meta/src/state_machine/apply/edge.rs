//! Edge deployments: a function's published version, or an alias of one, associated
//! with edge locations of its region, as on Lambda@Edge (where `$LATEST` can never be
//! replicated). The association is checked here against current state: the version or
//! alias exists, an alias points at a published version, and every location belongs to
//! the function's region.

use nimbus_types::command::{Command, CommandOutput};
use nimbus_types::{keys, Entity, MetaError, Qualifier};

use super::lookup::{get_alias, get_function, get_version};
use super::{misrouted, save};
use crate::state_machine::tx::EntryTx;

pub(super) fn apply(tx: &mut EntryTx<'_>, cmd: &Command) -> Result<CommandOutput, MetaError> {
    match cmd {
        Command::DeployToEdge {
            key,
            qualifier,
            locations,
        } => {
            let mut f = get_function(tx, key)?;
            match Qualifier::parse(qualifier) {
                Qualifier::Latest => return Err(latest()),
                Qualifier::Version(n) => {
                    get_version(tx, key, n)?;
                }
                Qualifier::Alias(a) => {
                    let alias = get_alias(tx, key, &a)?;
                    if Qualifier::parse(&alias.function_version).is_latest() {
                        return Err(MetaError::invalid(format!(
                            "Alias {a} points at $LATEST: only a published version, or an alias of one, can be deployed to an edge location"
                        )));
                    }
                }
            }
            let known = match tx.get(&keys::region(&key.region))? {
                Some(Entity::Region(r)) => r.edge_locations,
                _ => vec![],
            };
            if locations.is_empty() {
                return Err(MetaError::validation(
                    "At least one edge location is required",
                ));
            }
            if let Some(missing) = locations.iter().find(|l| !known.contains(l)) {
                return Err(MetaError::not_found(format!(
                    "Edge location {missing} is not in region {}",
                    key.region
                )));
            }
            let deployed = f.edge_deployments.entry(qualifier.clone()).or_default();
            for l in locations {
                if !deployed.contains(l) {
                    deployed.push(l.clone());
                }
            }
            deployed.sort();
            save(tx, &f);
            Ok(CommandOutput::Function(Box::new(f)))
        }
        Command::RemoveFromEdge {
            key,
            qualifier,
            locations,
        } => {
            let mut f = get_function(tx, key)?;
            let Some(deployed) = f.edge_deployments.get_mut(qualifier.as_str()) else {
                return Err(MetaError::not_found(format!(
                    "{}:{qualifier} is not deployed to any edge location",
                    key.arn()
                )));
            };
            if locations.is_empty() {
                deployed.clear();
            } else {
                deployed.retain(|l| !locations.contains(l));
            }
            if deployed.is_empty() {
                f.edge_deployments.remove(qualifier.as_str());
            }
            save(tx, &f);
            Ok(CommandOutput::Function(Box::new(f)))
        }
        _ => Err(misrouted("an edge")),
    }
}

fn latest() -> MetaError {
    MetaError::invalid(
        "$LATEST cannot be deployed to an edge location: publish a version, or use an alias of one",
    )
}

/// An alias deployed at the edge must keep pointing at a published version.
pub(super) fn check_alias_move(
    f: &nimbus_types::Function,
    alias: &str,
    function_version: &str,
) -> Result<(), MetaError> {
    if f.edge_deployments.contains_key(alias) && Qualifier::parse(function_version).is_latest() {
        return Err(MetaError::invalid(format!(
            "Alias {alias} is deployed to edge locations: it must point at a published version, not $LATEST"
        )));
    }
    Ok(())
}

/// As on Lambda@Edge, what is deployed to edge locations cannot be deleted until it is
/// removed from them: `qualifier` names a version or alias, `None` the whole function.
pub(super) fn check_not_deployed(
    f: &nimbus_types::Function,
    qualifier: Option<&str>,
) -> Result<(), MetaError> {
    let deployed: Vec<&String> = match qualifier {
        Some(q) => f
            .edge_deployments
            .keys()
            .filter(|k| k.as_str() == q)
            .collect(),
        None => f.edge_deployments.keys().collect(),
    };
    if deployed.is_empty() {
        return Ok(());
    }
    Err(MetaError::conflict(format!(
        "{} is deployed to edge locations ({}): remove it from them first (nimbus edge remove)",
        f.key.arn(),
        deployed
            .iter()
            .map(|q| q.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    )))
}
