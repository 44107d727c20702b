//! Accounts and their per-region limits, access keys, regions and edge locations.

use nimbus_types::command::{Command, CommandOutput};
use nimbus_types::{keys, Account, Entity, MetaError, Region};

use super::concurrency::reserved_total;
use super::lookup::require_account;
use super::misrouted;
use crate::state_machine::tx::EntryTx;

pub(super) fn apply(tx: &mut EntryTx<'_>, cmd: &Command) -> Result<CommandOutput, MetaError> {
    match cmd {
        Command::PutAccount { account_id } => {
            let key = keys::account(account_id);
            if !tx.exists(&key)? {
                let acct = Account {
                    id: account_id.clone(),
                    limits: Default::default(),
                };
                tx.put(key, Entity::Account(acct));
            }
        }
        Command::SetAccountLimits {
            account_id,
            region,
            limits,
        } => {
            let key = keys::account(account_id);
            let Some(Entity::Account(mut acct)) = tx.get(&key)? else {
                return Err(MetaError::not_found(format!(
                    "Account {account_id} not found"
                )));
            };
            let reserved = reserved_total(tx, account_id, region, None)?;
            if !limits.keeps_unreserved_minimum(reserved) {
                return Err(MetaError::invalid(format!(
                    "concurrent execution limit {} leaves less than the unreserved minimum {} after {reserved} reserved",
                    limits.concurrent_executions, limits.unreserved_minimum
                )));
            }
            acct.limits.insert(region.clone(), *limits);
            tx.put(key, Entity::Account(acct));
        }
        Command::PutAccessKey { key } => {
            require_account(tx, &key.account_id)?;
            // A root key may be put again (`nimbus account create` is idempotent); a key
            // that is or would be a user's is never replaced, so users' key lists stay true.
            if let Some(Entity::AccessKey(old)) = tx.get(&keys::access_key(&key.access_key_id))? {
                if old.user_name.is_some()
                    || key.user_name.is_some()
                    || old.account_id != key.account_id
                {
                    return Err(MetaError::conflict(format!(
                        "Access key {} already exists",
                        key.access_key_id
                    )));
                }
            }
            if let Some(user) = &key.user_name {
                super::iam::add_user_key(tx, &key.account_id, user, &key.access_key_id)?;
            }
            tx.put(
                keys::access_key(&key.access_key_id),
                Entity::AccessKey(key.clone()),
            );
        }
        Command::DeleteAccessKey { access_key_id } => {
            let key = keys::access_key(access_key_id);
            let Some(Entity::AccessKey(k)) = tx.get(&key)? else {
                return Err(MetaError::not_found(format!(
                    "Access key {access_key_id} not found"
                )));
            };
            if let Some(user) = &k.user_name {
                super::iam::remove_user_key(tx, &k.account_id, user, access_key_id)?;
            }
            tx.delete(key);
        }
        Command::PutRegion { name } => {
            let key = keys::region(name);
            if !tx.exists(&key)? {
                let region = Region {
                    name: name.clone(),
                    edge_locations: vec![],
                };
                tx.put(key, Entity::Region(region));
            }
        }
        Command::PutEdgeLocation { region, location } => {
            let key = keys::region(region);
            let Some(Entity::Region(mut r)) = tx.get(&key)? else {
                return Err(MetaError::not_found(format!("Region {region} not found")));
            };
            if !r.edge_locations.contains(location) {
                r.edge_locations.push(location.clone());
                r.edge_locations.sort();
                tx.put(key, Entity::Region(r));
            }
        }
        _ => return Err(misrouted("an account")),
    }
    Ok(CommandOutput::Done)
}
