//! The cluster's own records: registered workers, retired metadata node ids, and the
//! cluster key's check value.

use nimbus_types::command::{Command, CommandOutput};
use nimbus_types::{keys, Entity, MetaError};

use super::misrouted;
use crate::state_machine::tx::EntryTx;

pub(super) fn apply(tx: &mut EntryTx<'_>, cmd: &Command) -> Result<CommandOutput, MetaError> {
    match cmd {
        Command::RegisterWorker { worker } => {
            tx.put(keys::worker(&worker.id), Entity::Worker(worker.clone()));
        }
        Command::DeregisterWorker { id } => {
            let key = keys::worker(id);
            if tx.exists(&key)? {
                tx.delete(key);
            }
        }
        // A retired id is never given to a new member (see `nimbus cluster remove-member`).
        Command::RetireNode { id } => {
            tx.put(keys::retired_node(*id), Entity::RetiredNode(*id));
        }
        // First one wins: every later node checks its key against this one.
        Command::SetClusterKeyCheck { sealed } => {
            if !tx.exists(keys::CLUSTER_KEY_CHECK)? {
                tx.put(
                    keys::CLUSTER_KEY_CHECK.to_string(),
                    Entity::ClusterKeyCheck(sealed.clone()),
                );
            }
        }
        _ => return Err(misrouted("a cluster")),
    }
    Ok(CommandOutput::Done)
}
