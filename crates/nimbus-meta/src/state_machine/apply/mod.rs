//! What each command does to the state. Deterministic: the same entries applied in the
//! same order give the same state on every replica (no clocks, no randomness; revision
//! ids derive from the log index).
//!
//! One module per command group, each with its own `apply`:
//! - [`accounts`]: accounts, their limits, access keys, regions and edge locations.
//! - [`code`]: code chunks and the packages that commit them.
//! - [`functions`]: functions and their versions (create, update, publish, delete).
//! - [`layers`]: layer versions, their sharing, and the layers a function may use.
//! - [`aliases`]: aliases and their weighted routing.
//! - [`concurrency`]: reserved and provisioned concurrency against the account's limits.
//! - [`settings`]: a function's event-invoke configs, URL config and tags.
//! - [`cluster`]: workers and retired metadata node ids.
//! - [`events`]: the async event queue.
//! - [`iam`]: IAM users, roles, managed policies and access-key state.
//! - [`permissions`]: functions' resource-based policies (`AddPermission`).
//! - [`edge`]: which versions and aliases are deployed to which edge locations.
//! - [`lookup`]: reading and checking what a command refers to.

mod accounts;
mod aliases;
mod cluster;
mod code;
mod concurrency;
mod edge;
mod events;
mod functions;
mod iam;
mod layers;
mod lookup;
mod permissions;
mod settings;

use nimbus_types::command::{Command, CommandOutput};
use nimbus_types::{keys, Entity, Function, MetaError};
use sha2::Digest;

use super::tx::EntryTx;
pub use code::chunk_key;

/// Where a command sits in the log: its entry's index and, in a batch entry
/// ([`Command::Batch`]), its place in the batch. Revision ids derive from it, so two
/// writes of one batch to the same record still get different ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub index: u64,
    pub position: Option<u32>,
}

impl Stamp {
    /// A command that is its entry's only one.
    pub(crate) fn entry(index: u64) -> Self {
        Self {
            index,
            position: None,
        }
    }
}

/// Applies one command at `at`.
pub(crate) fn apply(
    tx: &mut EntryTx<'_>,
    at: Stamp,
    cmd: &Command,
) -> Result<CommandOutput, MetaError> {
    use Command::*;
    match cmd {
        PutAccount { .. }
        | SetAccountLimits { .. }
        | PutAccessKey { .. }
        | DeleteAccessKey { .. }
        | PutRegion { .. }
        | PutEdgeLocation { .. } => accounts::apply(tx, cmd),
        SetAccessKeyActive { .. }
        | CreateIamUser { .. }
        | DeleteIamUser { .. }
        | CreateIamRole { .. }
        | DeleteIamRole { .. }
        | PutInlinePolicy { .. }
        | DeleteInlinePolicy { .. }
        | CreateManagedPolicy { .. }
        | DeleteManagedPolicy { .. }
        | AttachPolicy { .. }
        | DetachPolicy { .. } => iam::apply(tx, cmd),
        DeployToEdge { .. } | RemoveFromEdge { .. } => edge::apply(tx, cmd),
        AddFunctionPermission { .. } | RemoveFunctionPermission { .. } => {
            permissions::apply(tx, at, cmd)
        }
        PutCodeChunk { .. } | CommitCode { .. } => code::apply(tx, cmd),
        CreateFunction { .. }
        | UpdateFunctionCode { .. }
        | UpdateFunctionConfiguration { .. }
        | DeleteFunction { .. }
        | PublishVersion { .. } => functions::apply(tx, at, cmd),
        CreateAlias { .. } | UpdateAlias { .. } | DeleteAlias { .. } => aliases::apply(tx, at, cmd),
        PutFunctionConcurrency { .. }
        | DeleteFunctionConcurrency { .. }
        | PutProvisionedConcurrency { .. }
        | DeleteProvisionedConcurrency { .. }
        | PutEdgeBudget { .. } => concurrency::apply(tx, cmd),
        PutEventInvokeConfig { .. }
        | DeleteEventInvokeConfig { .. }
        | PutFunctionUrlConfig { .. }
        | DeleteFunctionUrlConfig { .. }
        | TagResource { .. }
        | UntagResource { .. } => settings::apply(tx, cmd),
        PublishLayerVersion { .. }
        | DeleteLayerVersion { .. }
        | AddLayerVersionPermission { .. }
        | RemoveLayerVersionPermission { .. } => layers::apply(tx, at, cmd),
        RegisterWorker { .. }
        | DeregisterWorker { .. }
        | RetireNode { .. }
        | SetClusterKeyCheck { .. } => cluster::apply(tx, cmd),
        EnqueueEvent { .. } | ClaimEvent { .. } | RetryEvent { .. } | CompleteEvent { .. } => {
            events::apply(tx, cmd)
        }
        // The state machine opens a batch entry into its writes before they get here, so
        // a batch reaching `apply` was nested in another.
        Batch { .. } => Err(MetaError::new(
            nimbus_types::ErrorKind::InvalidParameterValue,
            "a batch of writes cannot contain another batch",
        )),
    }
}

/// The error of a group's `apply` handed a command of another group: a routing bug in
/// [`apply`], refused rather than applied wrongly.
fn misrouted(group: &str) -> MetaError {
    MetaError::new(
        nimbus_types::ErrorKind::Service,
        format!("not {group} command"),
    )
}

/// A revision id (Lambda's `RevisionId`, a UUID) derived from where the write sits in
/// the log and the key.
pub(crate) fn revision_id(at: Stamp, key: &str) -> String {
    let mut hasher = sha2::Sha256::new();
    hasher.update(at.index.to_be_bytes());
    if let Some(position) = at.position {
        // 0xFF never occurs in UTF-8, so no key can make an unbatched write's input equal
        // a batched one's; an unbatched write hashes exactly as before batching existed.
        hasher.update([0xFF]);
        hasher.update(position.to_be_bytes());
    }
    hasher.update(key.as_bytes());
    let digest = hasher.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    // Mark it as an RFC 4122 variant, version 4 layout, so clients that parse it accept it.
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    uuid::Uuid::from_bytes(b).to_string()
}

/// Writes a function record back.
fn save(tx: &mut EntryTx<'_>, f: &Function) {
    tx.put(keys::function(&f.key), Entity::Function(f.clone()));
}
