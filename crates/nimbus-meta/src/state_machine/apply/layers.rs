//! Layers: publishing and deleting their versions, the permissions that share a version
//! with other accounts, and the check that a function may use the versions it names.

use nimbus_types::command::{Command, CommandOutput};
use nimbus_types::limits::CODE_UNZIPPED_MAX_BYTES;
use nimbus_types::{
    arn, keys, Entity, ErrorKind, FunctionKey, Layer, LayerKey, LayerRef, LayerVersion, MetaError,
};

use super::code::require_code;
use super::lookup::{check_revision, require_account};
use super::{misrouted, revision_id, Stamp};
use crate::state_machine::tx::EntryTx;

pub(super) fn apply(
    tx: &mut EntryTx<'_>,
    at: Stamp,
    cmd: &Command,
) -> Result<CommandOutput, MetaError> {
    match cmd {
        Command::PublishLayerVersion {
            key,
            description,
            compatible_runtimes,
            compatible_architectures,
            license_info,
            code,
            now_ms,
        } => {
            require_account(tx, &key.account_id)?;
            require_code(tx, &code.sha256)?;
            let mut layer = match tx.get(&keys::layer(key))? {
                Some(Entity::Layer(l)) => l,
                _ => Layer {
                    key: key.clone(),
                    next_version: 1,
                },
            };
            let number = layer.next_version;
            layer.next_version += 1;
            let vkey = keys::layer_version(key, number);
            let v = LayerVersion {
                key: key.clone(),
                number,
                description: description.clone(),
                compatible_runtimes: compatible_runtimes.clone(),
                compatible_architectures: compatible_architectures.clone(),
                license_info: license_info.clone(),
                code: code.clone(),
                created_ms: *now_ms,
                policy: Vec::new(),
                policy_revision: revision_id(at, &vkey),
            };
            tx.put(keys::layer(key), Entity::Layer(layer));
            tx.put(vkey, Entity::LayerVersion(v.clone()));
            Ok(CommandOutput::LayerVersion(Box::new(v)))
        }
        Command::DeleteLayerVersion { key, version } => {
            // Deleting what is not there succeeds, as on Lambda.
            tx.delete(keys::layer_version(key, *version));
            Ok(CommandOutput::Done)
        }
        Command::AddLayerVersionPermission {
            key,
            version,
            statement,
            expected_revision,
        } => {
            let mut v = get_layer_version(tx, key, *version)?;
            check_revision(&v.policy_revision, expected_revision)?;
            if v.policy
                .iter()
                .any(|s| s.statement_id == statement.statement_id)
            {
                return Err(MetaError::conflict(format!(
                    "The statement id ({}) provided already exists. Please provide a new statement id, or remove the existing statement.",
                    statement.statement_id
                )));
            }
            v.policy.push(statement.clone());
            // Lambda bounds a policy at 20 KB; counted over what the statements hold.
            let size: usize = v
                .policy
                .iter()
                .map(|s| {
                    s.statement_id.len()
                        + s.action.len()
                        + s.principal.len()
                        + s.organization_id.as_ref().map_or(0, String::len)
                        + 64
                })
                .sum();
            if size > nimbus_types::limits::POLICY_MAX_BYTES {
                return Err(MetaError::new(
                    ErrorKind::PolicyLengthExceeded,
                    "The final policy size is bigger than the limit.",
                ));
            }
            save(tx, at, &mut v);
            Ok(CommandOutput::LayerVersion(Box::new(v)))
        }
        Command::RemoveLayerVersionPermission {
            key,
            version,
            statement_id,
            expected_revision,
        } => {
            let mut v = get_layer_version(tx, key, *version)?;
            check_revision(&v.policy_revision, expected_revision)?;
            let before = v.policy.len();
            v.policy.retain(|s| s.statement_id != *statement_id);
            if v.policy.len() == before {
                return Err(MetaError::not_found(format!(
                    "Statement {statement_id} is not found in resource policy."
                )));
            }
            save(tx, at, &mut v);
            Ok(CommandOutput::LayerVersion(Box::new(v)))
        }
        _ => Err(misrouted("a layer")),
    }
}

fn save(tx: &mut EntryTx<'_>, at: Stamp, v: &mut LayerVersion) {
    let vkey = keys::layer_version(&v.key, v.number);
    v.policy_revision = revision_id(at, &vkey);
    tx.put(vkey, Entity::LayerVersion(v.clone()));
}

fn get_layer_version(tx: &EntryTx<'_>, key: &LayerKey, n: u64) -> Result<LayerVersion, MetaError> {
    match tx.get(&keys::layer_version(key, n))? {
        Some(Entity::LayerVersion(v)) => Ok(v),
        _ => Err(MetaError::not_found(format!(
            "Layer version {} does not exist.",
            key.version_arn(n)
        ))),
    }
}

/// Checks the layers a function is configured with: each one it did not have before
/// (`previous`) must exist in the function's region, be usable by its account, and be
/// the content the request resolved; and the code with every layer must fit Lambda's
/// unzipped limit. Layers the function already had stay valid after they are deleted.
pub(super) fn check_function_layers(
    tx: &EntryTx<'_>,
    function: &FunctionKey,
    code_sha256: &str,
    layers: &[LayerRef],
    previous: &[LayerRef],
) -> Result<(), MetaError> {
    let mut unzipped = require_code(tx, code_sha256)?.unzipped_size;
    for l in layers {
        if !previous.contains(l) {
            let missing = || MetaError::invalid(format!("Layer version {} does not exist.", l.arn));
            let (key, n) = arn::parse_layer_version_arn(&l.arn).ok_or_else(missing)?;
            if key.region != function.region {
                return Err(missing());
            }
            let denied = || {
                MetaError::new(
                    ErrorKind::AccessDenied,
                    format!(
                        "User: arn:aws:iam::{}:root is not authorized to perform: lambda:GetLayerVersion on resource: {} because no resource-based policy allows the lambda:GetLayerVersion action",
                        function.account_id, l.arn
                    ),
                )
            };
            // Another account's version: missing or not shared look the same.
            let v = match get_layer_version(tx, &key, n) {
                Ok(v) => v,
                Err(_) if key.account_id != function.account_id => return Err(denied()),
                Err(_) => return Err(missing()),
            };
            if !v.usable_by(&function.account_id) {
                return Err(denied());
            }
            if v.code != l.code {
                return Err(missing());
            }
        }
        unzipped = unzipped.saturating_add(require_code(tx, &l.code.sha256)?.unzipped_size);
    }
    if unzipped > CODE_UNZIPPED_MAX_BYTES {
        return Err(MetaError::invalid(format!(
            "Function code combined with layers exceeds the maximum allowed size of {CODE_UNZIPPED_MAX_BYTES} bytes. The actual size is {unzipped} bytes."
        )));
    }
    Ok(())
}
