//! The Raft log in RocksDB.
//!
//! Column families: `log` (index, big-endian, → postcard entry) and `meta` (vote, committed,
//! last purged id). Every append and vote is written with `sync = true`, so an entry is on
//! disk before openraft counts it toward a quorum, and therefore before any client hears
//! that its write succeeded. The committed id is not synced: saving it is optional in
//! openraft (after a crash it is learnt again from the leader; a saved one only spares
//! re-applying entries), and a synced one cost every node a second fsync per write, on
//! the leader between the commit and the answer.

use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, RaftLogId};
use rocksdb::{
    ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB,
};

use crate::error::NodeError;
use crate::raft_types::{Entry, LogId, StorageError, TypeConfig, Vote};

const CF_LOG: &str = "log";
const CF_META: &str = "meta";
const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_PURGED: &[u8] = b"last_purged";

/// The Raft log of one node. Cheap to clone: readers share the database.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
    /// The last committed index this node has been told of (for metrics: Raft does not
    /// report it in `RaftMetrics`).
    committed: Arc<AtomicU64>,
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageError::from_io_error(
        ErrorSubject::Logs,
        ErrorVerb::Read,
        std::io::Error::other(e.to_string()),
    )
}
fn write_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageError::from_io_error(
        ErrorSubject::Logs,
        ErrorVerb::Write,
        std::io::Error::other(e.to_string()),
    )
}

fn synced() -> WriteOptions {
    let mut w = WriteOptions::default();
    w.set_sync(true);
    w
}

impl LogStore {
    pub fn open(dir: &Path) -> Result<Self, NodeError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let cfs = [CF_LOG, CF_META].map(|n| ColumnFamilyDescriptor::new(n, Options::default()));
        let db = DB::open_cf_descriptors(&opts, dir, cfs)?;
        let store = Self {
            db: Arc::new(db),
            committed: Arc::default(),
        };
        // Start from the committed id saved before a restart, not 0, so status and
        // metrics are right before the first new commit.
        let saved = store
            .get_meta::<Option<LogId>>(KEY_COMMITTED)
            .map_err(|e| NodeError::Raft(e.to_string()))?
            .flatten();
        store
            .committed
            .store(saved.map_or(0, |c| c.index), Ordering::Relaxed);
        Ok(store)
    }

    /// The committed index, kept current by Raft through `save_committed` (0 before the
    /// first commit).
    pub fn committed_index(&self) -> Arc<AtomicU64> {
        self.committed.clone()
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        // Both families are created on open.
        self.db.cf_handle(name).expect("column family exists")
    }

    fn get_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
    ) -> Result<Option<T>, StorageError> {
        match self.db.get_cf(self.cf(CF_META), key).map_err(read_err)? {
            Some(bytes) => Ok(Some(postcard::from_bytes(&bytes).map_err(read_err)?)),
            None => Ok(None),
        }
    }

    fn put_meta<T: serde::Serialize>(&self, key: &[u8], value: &T) -> Result<(), StorageError> {
        self.put_meta_opt(key, value, &synced())
    }

    fn put_meta_opt<T: serde::Serialize>(
        &self,
        key: &[u8],
        value: &T,
        opts: &WriteOptions,
    ) -> Result<(), StorageError> {
        let bytes = postcard::to_stdvec(value).map_err(write_err)?;
        self.db
            .put_cf_opt(self.cf(CF_META), key, bytes, opts)
            .map_err(write_err)
    }

    fn last_entry_log_id(&self) -> Result<Option<LogId>, StorageError> {
        let mut it = self.db.iterator_cf(self.cf(CF_LOG), IteratorMode::End);
        match it.next() {
            Some(item) => {
                let (_, v) = item.map_err(read_err)?;
                let entry: Entry = postcard::from_bytes(&v).map_err(read_err)?;
                Ok(Some(*entry.get_log_id()))
            }
            None => Ok(None),
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        use std::ops::Bound;
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i + 1,
            Bound::Unbounded => 0,
        };
        let mut out = Vec::new();
        let it = self.db.iterator_cf(
            self.cf(CF_LOG),
            IteratorMode::From(&start.to_be_bytes(), Direction::Forward),
        );
        for item in it {
            let (k, v) = item.map_err(read_err)?;
            let index = u64::from_be_bytes(
                k.as_ref()
                    .try_into()
                    .map_err(|_| read_err(std::io::Error::other("log key is not 8 bytes")))?,
            );
            if !range.contains(&index) {
                break;
            }
            out.push(postcard::from_bytes(&v).map_err(read_err)?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId> = self.get_meta(KEY_PURGED)?;
        let last = self.last_entry_log_id()?.or(last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.put_meta(KEY_VOTE, vote)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.get_meta(KEY_VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not synced (see the module's doc).
        self.put_meta_opt(KEY_COMMITTED, &committed, &WriteOptions::default())?;
        self.committed
            .store(committed.map_or(0, |c| c.index), Ordering::Relaxed);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.get_meta::<Option<LogId>>(KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = WriteBatch::default();
        for entry in entries {
            let bytes = postcard::to_stdvec(&entry).map_err(write_err)?;
            batch.put_cf(
                self.cf(CF_LOG),
                entry.get_log_id().index.to_be_bytes(),
                bytes,
            );
        }
        // Synchronous write: the entries are on disk when the callback reports them flushed.
        let res = self.db.write_opt(batch, &synced());
        callback.log_io_completed(res.map_err(|e| std::io::Error::other(e.to_string())));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Remove [log_id.index, ∞): conflicting entries from an old leader.
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(
            self.cf(CF_LOG),
            log_id.index.to_be_bytes(),
            u64::MAX.to_be_bytes(),
        );
        batch.delete_cf(self.cf(CF_LOG), u64::MAX.to_be_bytes());
        self.db.write_opt(batch, &synced()).map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Record the purge point first, so a crash in between never leaves a log whose
        // start is unexplained.
        self.put_meta(KEY_PURGED, &log_id)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(
            self.cf(CF_LOG),
            0u64.to_be_bytes(),
            (log_id.index + 1).to_be_bytes(),
        );
        self.db.write_opt(batch, &synced()).map_err(write_err)
    }
}

#[cfg(test)]
mod tests {
    use openraft::CommittedLeaderId;

    use super::*;

    #[tokio::test]
    async fn committed_index_follows_save_committed_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LogStore::open(dir.path()).unwrap();
        let committed = store.committed_index();
        assert_eq!(committed.load(Ordering::Relaxed), 0);
        let id = LogId::new(CommittedLeaderId::new(3, 1), 7);
        store.save_committed(Some(id)).await.unwrap();
        assert_eq!(committed.load(Ordering::Relaxed), 7);
        drop(store);
        let mut store = LogStore::open(dir.path()).unwrap();
        assert_eq!(store.committed_index().load(Ordering::Relaxed), 7);
        assert_eq!(store.read_committed().await.unwrap(), Some(id));
    }
}
