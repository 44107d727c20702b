//! A function's own settings, each a read-modify-write of its record: event-invoke
//! configs per qualifier, the function URL config, and tags.

use nimbus_types::command::{Command, CommandOutput};
use nimbus_types::{keys, Entity, MetaError, UrlRoute};

use super::lookup::{get_function, require_qualifier};
use super::{misrouted, save};
use crate::state_machine::tx::EntryTx;

pub(super) fn apply(tx: &mut EntryTx<'_>, cmd: &Command) -> Result<CommandOutput, MetaError> {
    match cmd {
        Command::PutEventInvokeConfig {
            key,
            qualifier,
            config,
        } => {
            let mut f = get_function(tx, key)?;
            require_qualifier(tx, key, qualifier)?;
            f.event_invoke_configs
                .insert(qualifier.clone(), config.clone());
            save(tx, &f);
        }
        Command::DeleteEventInvokeConfig { key, qualifier } => {
            let mut f = get_function(tx, key)?;
            if f.event_invoke_configs.remove(qualifier).is_none() {
                return Err(MetaError::not_found(format!(
                    "The function {}:{qualifier} doesn't have an EventInvokeConfig",
                    key.arn()
                )));
            }
            save(tx, &f);
        }
        Command::PutFunctionUrlConfig {
            key,
            config,
            create,
        } => {
            let mut f = get_function(tx, key)?;
            let q = &config.qualifier;
            if !q.is_empty() {
                // Lambda: a URL belongs to the function or one of its aliases.
                require_qualifier(tx, key, q)?;
                if !matches!(
                    nimbus_types::Qualifier::parse(q),
                    nimbus_types::Qualifier::Alias(_)
                ) {
                    return Err(MetaError::invalid(
                        "Function URLs can only be created for $LATEST or an alias",
                    ));
                }
            }
            let scoped = if q.is_empty() {
                key.arn()
            } else {
                format!("{}:{q}", key.arn())
            };
            match (f.url_configs.get(q), create) {
                (Some(_), true) => {
                    return Err(MetaError::conflict(format!(
                        "Failed to create function url config for [functionArn = {scoped}]. Error message:  FunctionUrlConfig exists for this Lambda function"
                    )))
                }
                (None, false) => {
                    return Err(MetaError::not_found(format!(
                        "The resource you requested does not exist: {scoped} has no function URL"
                    )))
                }
                (Some(old), false) if old.url_id != config.url_id => {
                    return Err(MetaError::invalid("A function URL's id cannot change"));
                }
                _ => {}
            }
            let route = keys::url_route(&config.url_id);
            if *create && tx.exists(&route)? {
                return Err(MetaError::conflict("URL id already in use"));
            }
            tx.put(
                route,
                Entity::UrlRoute(UrlRoute {
                    key: key.clone(),
                    qualifier: q.clone(),
                }),
            );
            f.url_configs.insert(q.clone(), config.clone());
            save(tx, &f);
        }
        Command::DeleteFunctionUrlConfig { key, qualifier } => {
            let mut f = get_function(tx, key)?;
            let Some(old) = f.url_configs.remove(qualifier) else {
                return Err(MetaError::not_found(format!(
                    "The resource you requested does not exist: {} has no function URL",
                    key.arn()
                )));
            };
            tx.delete(keys::url_route(&old.url_id));
            save(tx, &f);
        }
        Command::TagResource { key, tags } => {
            let mut f = get_function(tx, key)?;
            f.tags.extend(tags.clone());
            nimbus_types::validate::tags(&f.tags)?;
            save(tx, &f);
        }
        Command::UntagResource { key, tag_keys } => {
            let mut f = get_function(tx, key)?;
            for k in tag_keys {
                f.tags.remove(k);
            }
            save(tx, &f);
        }
        _ => return Err(misrouted("a function settings")),
    }
    Ok(CommandOutput::Done)
}
