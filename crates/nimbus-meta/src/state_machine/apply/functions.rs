//! Functions and their published versions: create, update code or configuration,
//! publish, delete.

use nimbus_types::command::{Command, CommandOutput};
use nimbus_types::{
    keys, Entity, Function, FunctionState, LastUpdateStatus, MetaError, Qualifier, Version,
};

use super::layers::check_function_layers;
use super::lookup::{check_revision, get_function, get_version, require_account};
use super::{misrouted, revision_id, save, Stamp};
use crate::state_machine::tx::EntryTx;

pub(super) fn apply(
    tx: &mut EntryTx<'_>,
    at: Stamp,
    cmd: &Command,
) -> Result<CommandOutput, MetaError> {
    match cmd {
        Command::CreateFunction {
            key,
            config,
            code,
            tags,
            publish,
            now_ms,
        } => {
            require_account(tx, &key.account_id)?;
            if tx.exists(&keys::function(key))? {
                return Err(MetaError::conflict(format!(
                    "Function already exist: {}",
                    key.name
                )));
            }
            check_function_layers(tx, key, &code.sha256, &config.layers, &[])?;
            let mut f = Function {
                key: key.clone(),
                config: config.clone(),
                code: code.clone(),
                tags: tags.clone(),
                state: FunctionState::Active,
                last_update_status: LastUpdateStatus::Successful,
                revision_id: String::new(),
                last_modified_ms: *now_ms,
                reserved_concurrency: None,
                event_invoke_configs: Default::default(),
                provisioned_concurrency: Default::default(),
                url_configs: Default::default(),
                resource_policy: Default::default(),
                edge_deployments: Default::default(),
                next_version: 1,
            };
            touch(&mut f, at, None);
            save_and_publish(tx, at, f, *publish, *now_ms)
        }
        Command::UpdateFunctionCode {
            key,
            code,
            expected_revision,
            publish,
            now_ms,
        } => {
            let mut f = get_function(tx, key)?;
            check_revision(&f.revision_id, expected_revision)?;
            check_function_layers(tx, key, &code.sha256, &f.config.layers, &f.config.layers)?;
            f.code = code.clone();
            touch(&mut f, at, Some(*now_ms));
            save_and_publish(tx, at, f, *publish, *now_ms)
        }
        Command::UpdateFunctionConfiguration {
            key,
            config,
            expected_revision,
            now_ms,
        } => {
            let mut f = get_function(tx, key)?;
            check_revision(&f.revision_id, expected_revision)?;
            check_function_layers(tx, key, &f.code.sha256, &config.layers, &f.config.layers)?;
            f.config = config.clone();
            touch(&mut f, at, Some(*now_ms));
            save(tx, &f);
            Ok(CommandOutput::Function(Box::new(f)))
        }
        Command::DeleteFunction { key, version: None } => {
            let f = get_function(tx, key)?;
            super::edge::check_not_deployed(&f, None)?;
            // Its URLs stop routing with it.
            for url in f.url_configs.values() {
                tx.delete(keys::url_route(&url.url_id));
            }
            for prefix in [keys::versions_of(key), keys::aliases_of(key)] {
                for (k, _) in tx.scan(&prefix)? {
                    tx.delete(k);
                }
            }
            tx.delete(keys::function(key));
            Ok(CommandOutput::Done)
        }
        Command::DeleteFunction {
            key,
            version: Some(n),
        } => {
            get_version(tx, key, *n)?;
            super::edge::check_not_deployed(&get_function(tx, key)?, Some(&n.to_string()))?;
            for (_, e) in tx.scan(&keys::aliases_of(key))? {
                if let Entity::Alias(a) = e {
                    let routed = a.routing.as_ref().map(|r| r.version) == Some(*n);
                    if a.function_version == n.to_string() || routed {
                        return Err(MetaError::conflict(format!(
                            "Unable to delete version because the following aliases reference it: [{}]",
                            a.name
                        )));
                    }
                }
            }
            tx.delete(keys::version(key, *n));
            // Its provisioned concurrency and its permissions go with it.
            let mut f = get_function(tx, key)?;
            let had_policy = f.resource_policy.remove(&n.to_string()).is_some();
            if had_policy {
                touch(&mut f, at, None);
            }
            if f.provisioned_concurrency.remove(&n.to_string()).is_some() || had_policy {
                save(tx, &f);
            }
            Ok(CommandOutput::Done)
        }
        Command::PublishVersion {
            key,
            description,
            expected_code_sha256,
            expected_revision,
            now_ms,
        } => {
            let mut f = get_function(tx, key)?;
            check_revision(&f.revision_id, expected_revision)?;
            if let Some(sha) = expected_code_sha256 {
                if *sha != f.code.sha256 {
                    let latest = Qualifier::LATEST;
                    return Err(MetaError::invalid(format!(
                        "CodeSHA256 ({sha}) is different from current CodeSHA256 in {latest} ({}). Please try again with the CodeSHA256 in {latest}.",
                        f.code.sha256
                    )));
                }
            }
            let before = f.next_version;
            let v = publish(tx, at, &mut f, description.clone(), *now_ms)?;
            if f.next_version != before {
                save(tx, &f);
            }
            Ok(CommandOutput::Version(Box::new(v)))
        }
        _ => Err(misrouted("a function")),
    }
}

/// Saves a created or updated function, publishing a version of it first if asked.
fn save_and_publish(
    tx: &mut EntryTx<'_>,
    at: Stamp,
    mut f: Function,
    publish_too: bool,
    now_ms: u64,
) -> Result<CommandOutput, MetaError> {
    if publish_too {
        let v = publish(tx, at, &mut f, String::new(), now_ms)?;
        save(tx, &f);
        return Ok(CommandOutput::FunctionAndVersion(Box::new(f), Box::new(v)));
    }
    save(tx, &f);
    Ok(CommandOutput::Function(Box::new(f)))
}

/// Publishes `$LATEST` as the next version, unless it has not changed since the last one
/// (then that version is the answer). The caller saves `f`.
fn publish(
    tx: &mut EntryTx<'_>,
    at: Stamp,
    f: &mut Function,
    description: String,
    now_ms: u64,
) -> Result<Version, MetaError> {
    if f.next_version > 1 {
        let last = get_version(tx, &f.key, f.next_version - 1)?;
        if last.code == f.code && last.config == f.config {
            return Ok(last);
        }
    }
    let number = f.next_version;
    let key = keys::version(&f.key, number);
    let v = Version {
        key: f.key.clone(),
        number,
        config: f.config.clone(),
        code: f.code.clone(),
        description,
        revision_id: revision_id(at, &key),
        last_modified_ms: now_ms,
    };
    tx.put(key, Entity::Version(v.clone()));
    f.next_version += 1;
    f.revision_id = revision_id(at, &keys::function(&f.key));
    Ok(v)
}

/// Marks `f` changed at `at`: a new revision id, and a new modification time if given.
fn touch(f: &mut Function, at: Stamp, now_ms: Option<u64>) {
    f.revision_id = revision_id(at, &keys::function(&f.key));
    if let Some(now) = now_ms {
        f.last_modified_ms = now;
    }
}
