//! A function's own settings, each a read-modify-write of its record: event-invoke
//! configs per qualifier, the function URL config, and tags.

use nimbus_types::command::{Command, CommandOutput};
use nimbus_types::MetaError;

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
        Command::PutFunctionUrlConfig { key, config } => {
            let mut f = get_function(tx, key)?;
            f.url_config = Some(config.clone());
            save(tx, &f);
        }
        Command::DeleteFunctionUrlConfig { key } => {
            let mut f = get_function(tx, key)?;
            if f.url_config.take().is_none() {
                return Err(MetaError::not_found(format!(
                    "The resource you requested does not exist: {} has no function URL",
                    key.arn()
                )));
            }
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
