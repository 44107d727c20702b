//! Backup and restore of the whole metadata store.
//!
//! A backup is the state machine alone: a RocksDB checkpoint packed as a tar (the same
//! format as a Raft snapshot), which records the last applied log id and membership.
//! Restoring builds a fresh data directory that holds that state machine with the
//! membership replaced by the one restored node, and a vote at the backup's term (so its
//! first own term is later than every entry it holds). Raft's log is empty: on start
//! openraft sees the applied id ahead of the log, purges up to it and builds a snapshot,
//! and the node leads a one-member cluster that `nimbus cluster add-member` grows again.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use nimbus_types::encode;
use openraft::storage::RaftLogStorage;
use openraft::Membership;

use super::{cf, open_sm_db, read_applied_from, StateMachineStore, KEY_MEMBERSHIP};
use crate::error::NodeError;
use crate::log_store::LogStore;
use crate::raft_types::{Node, NodeId, StoredMembership, Vote};

/// What a restore put in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// The log index the restored state holds everything up to.
    pub applied_index: u64,
    /// The term of that index (the restored node's vote starts there).
    pub term: u64,
}

impl StateMachineStore {
    /// Packs a consistent point-in-time copy of the state machine into `out`; returns the
    /// log index it holds. Blocking (call from `spawn_blocking`).
    pub fn write_backup(&self, out: &Path) -> Result<u64, NodeError> {
        let db = self.db();
        let ckpt = self
            .shared
            .snapshot_dir
            .join(format!("backup-{}", uuid::Uuid::new_v4().simple()));
        rocksdb::checkpoint::Checkpoint::new(&db)?.create_checkpoint(&ckpt)?;
        drop(db);
        let result = (|| {
            let applied = {
                let ckdb = open_sm_db(&ckpt)?;
                read_applied_from(&ckdb)
                    .map_err(|e| NodeError::Raft(e.to_string()))?
                    .0
            };
            super::snapshot::pack(&ckpt, out).map_err(|e| NodeError::io(out, e))?;
            Ok(applied.map(|l| l.index).unwrap_or(0))
        })();
        let _ = std::fs::remove_dir_all(&ckpt);
        result
    }
}

/// Makes `data_dir` (which must not hold a node yet) a one-member cluster of node `id` at
/// `addr`, holding the state in the backup file.
pub async fn restore(
    data_dir: &Path,
    backup: &Path,
    id: NodeId,
    addr: &str,
) -> Result<Restored, NodeError> {
    for sub in ["raft", "sm"] {
        let p = data_dir.join(sub);
        if p.exists() {
            return Err(NodeError::Config(format!(
                "{} already holds a metadata node; restore needs a fresh --data-dir",
                data_dir.display()
            )));
        }
    }
    if !backup.is_file() {
        return Err(NodeError::Config(format!(
            "backup file {} not found",
            backup.display()
        )));
    }
    let gen0 = data_dir.join("sm").join("gen-0");
    let staged = data_dir.join("sm.restoring");
    let _ = std::fs::remove_dir_all(&staged);
    let (backup_owned, staged_gen) = (backup.to_path_buf(), staged.join("gen-0"));
    let addr = addr.to_string();
    let applied = tokio::task::spawn_blocking(move || {
        super::snapshot::unpack(&backup_owned, &staged_gen)
            .map_err(|e| NodeError::Config(format!("not a Nimbus metadata backup: {e}")))?;
        let db = open_sm_db(&staged_gen)
            .map_err(|e| NodeError::Config(format!("not a Nimbus metadata backup: {e}")))?;
        let (applied, old) = read_applied_from(&db).map_err(|e| NodeError::Raft(e.to_string()))?;
        let Some(applied) = applied else {
            return Err(NodeError::Config(
                "the backup holds no applied state (not a Nimbus metadata backup?)".into(),
            ));
        };
        tracing::info!(
            applied = applied.index,
            old_members = ?old.membership().nodes().map(|(i, n)| (*i, n.addr.clone())).collect::<Vec<_>>(),
            "restoring backup; membership replaced by this node alone"
        );
        let members = Membership::new(
            vec![BTreeSet::from([id])],
            BTreeMap::from([(id, Node { addr })]),
        );
        let stored = StoredMembership::new(Some(applied), members);
        let handle = db.cf_handle(cf::META).expect("column family exists");
        db.put_cf(handle, KEY_MEMBERSHIP, encode(&stored))?;
        db.flush_cf(handle)?;
        Ok(applied)
    })
    .await
    .map_err(|e| NodeError::Raft(format!("restore task: {e}")))??;

    let mut log = LogStore::open(&data_dir.join("raft"))?;
    log.save_vote(&Vote::new(applied.leader_id.term, id))
        .await
        .map_err(|e| NodeError::Raft(e.to_string()))?;
    drop(log);
    // Only now does the node's state machine appear under its real name, so a restore
    // that failed half-way leaves no half-restored node behind.
    std::fs::create_dir_all(data_dir.join("sm")).map_err(|e| NodeError::io(data_dir, e))?;
    std::fs::rename(staged.join("gen-0"), &gen0).map_err(|e| NodeError::io(&gen0, e))?;
    let _ = std::fs::remove_dir_all(&staged);
    Ok(Restored {
        applied_index: applied.index,
        term: applied.leader_id.term,
    })
}
