//! Aliases: a name for a version, optionally routing a share of calls to a second one.

use nimbus_types::command::{Command, CommandOutput};
use nimbus_types::{keys, Alias, AliasRouting, Entity, FunctionKey, MetaError, Qualifier};

use super::lookup::{
    check_revision, get_alias, get_function, get_version, require_version_qualifier,
};
use super::{misrouted, revision_id, save, Stamp};
use crate::state_machine::tx::EntryTx;

pub(super) fn apply(
    tx: &mut EntryTx<'_>,
    at: Stamp,
    cmd: &Command,
) -> Result<CommandOutput, MetaError> {
    match cmd {
        Command::CreateAlias {
            key,
            name,
            function_version,
            description,
            routing,
        } => {
            get_function(tx, key)?;
            let akey = keys::alias(key, name);
            if tx.exists(&akey)? {
                return Err(MetaError::conflict(format!(
                    "Alias already exists: {}:{name}",
                    key.arn()
                )));
            }
            require_version_qualifier(tx, key, function_version)?;
            check_routing(tx, key, function_version, routing.as_ref())?;
            let alias = Alias {
                key: key.clone(),
                name: name.clone(),
                function_version: function_version.clone(),
                description: description.clone(),
                routing: routing.clone(),
                revision_id: revision_id(at, &akey),
            };
            tx.put(akey, Entity::Alias(alias.clone()));
            Ok(CommandOutput::Alias(alias))
        }
        Command::UpdateAlias {
            key,
            name,
            function_version,
            description,
            routing,
            expected_revision,
        } => {
            let mut alias = get_alias(tx, key, name)?;
            check_revision(&alias.revision_id, expected_revision)?;
            if let Some(v) = function_version {
                require_version_qualifier(tx, key, v)?;
                super::edge::check_alias_move(&get_function(tx, key)?, name, v)?;
                alias.function_version = v.clone();
            }
            if let Some(d) = description {
                alias.description = d.clone();
            }
            if let Some(r) = routing {
                alias.routing = r.clone();
            }
            check_routing(tx, key, &alias.function_version, alias.routing.as_ref())?;
            let akey = keys::alias(key, name);
            alias.revision_id = revision_id(at, &akey);
            tx.put(akey, Entity::Alias(alias.clone()));
            Ok(CommandOutput::Alias(alias))
        }
        Command::DeleteAlias { key, name } => {
            get_alias(tx, key, name)?;
            super::edge::check_not_deployed(&get_function(tx, key)?, Some(name))?;
            tx.delete(keys::alias(key, name));
            // Its provisioned concurrency, permissions and URL go with it; the last two
            // change the function (a new RevisionId).
            let mut f = get_function(tx, key)?;
            let mut changed = f.resource_policy.remove(name.as_str()).is_some();
            if let Some(url) = f.url_configs.remove(name.as_str()) {
                tx.delete(keys::url_route(&url.url_id));
                changed = true;
            }
            if changed {
                f.revision_id = revision_id(at, &keys::function(key));
            }
            if f.provisioned_concurrency.remove(name).is_some() || changed {
                save(tx, &f);
            }
            Ok(CommandOutput::Done)
        }
        _ => Err(misrouted("an alias")),
    }
}

/// Weighted routing must name another published version, and the alias's own version
/// must be a published one too (`$LATEST` cannot be split).
fn check_routing(
    tx: &EntryTx<'_>,
    key: &FunctionKey,
    function_version: &str,
    routing: Option<&AliasRouting>,
) -> Result<(), MetaError> {
    let Some(r) = routing else { return Ok(()) };
    nimbus_types::validate::alias_routing(r)?;
    if Qualifier::parse(function_version).is_latest() {
        return Err(MetaError::invalid(format!(
            "{} is not supported for an alias pointing to more than 1 version",
            Qualifier::LATEST
        )));
    }
    if function_version == r.version.to_string() {
        return Err(MetaError::invalid("Routing to the alias's own version is not allowed; choose a different additional version"));
    }
    get_version(tx, key, r.version).map(drop)
}
