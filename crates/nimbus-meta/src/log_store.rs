//! The Raft log in RocksDB.
//!
//! Column families: `log` (index, big-endian, → postcard entry) and `meta` (vote, committed,
//! last purged id). Every append and vote is written with `sync = true`, so an entry is on
//! disk before openraft counts it toward a quorum, and therefore before any client hears
//! that its write succeeded.
//!
//! **Group commit.** `append` does not write: it puts the entries where readers see them
//! at once (`pending`) and queues them for the writer thread, which drains everything
//! queued into one batch, syncs it once, and only then reports each append flushed. So
//! while one sync runs, the appends that arrive behind it share the next one, instead of
//! each waiting for a sync of its own (issue 18). Truncation and purges go through the
//! same queue, so they land in order with the appends before them, and wait for it.
//! The committed index is written without a sync: losing its last update in a crash
//! only means re-applying from an earlier point, which openraft allows.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

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
    /// Appended entries not yet on disk, by index: readers see them at once.
    pending: Arc<Mutex<BTreeMap<u64, Entry>>>,
    writer: Arc<Writer>,
}

/// What the writer thread is asked to do, in order.
enum Op {
    Append {
        entries: Vec<(u64, LogId, Vec<u8>)>,
        done: LogFlushed<TypeConfig>,
    },
    /// Remove `[from, ∞)`.
    Truncate {
        from: u64,
        done: tokio::sync::oneshot::Sender<Result<(), String>>,
    },
    /// Remove `[0, upto]` and record `id` as the purge point.
    Purge {
        id: LogId,
        done: tokio::sync::oneshot::Sender<Result<(), String>>,
    },
}

/// The writer thread; stopped and joined when the last handle goes, so the database is
/// closed when the store is dropped.
struct Writer {
    tx: Option<mpsc::Sender<Op>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The writer thread's loop: everything queued while a sync ran goes into the next one.
fn write_loop(db: Arc<DB>, pending: Arc<Mutex<BTreeMap<u64, Entry>>>, rx: mpsc::Receiver<Op>) {
    while let Ok(first) = rx.recv() {
        let mut ops = vec![first];
        ops.extend(rx.try_iter());
        let cf = |name| db.cf_handle(name).expect("column family exists");
        let mut batch = WriteBatch::default();
        // The entry each index holds once the batch is on disk.
        let mut written: HashMap<u64, LogId> = HashMap::new();
        for op in &ops {
            match op {
                Op::Append { entries, .. } => {
                    for (index, id, bytes) in entries {
                        batch.put_cf(cf(CF_LOG), index.to_be_bytes(), bytes);
                        written.insert(*index, *id);
                    }
                }
                Op::Truncate { from, .. } => {
                    batch.delete_range_cf(cf(CF_LOG), from.to_be_bytes(), u64::MAX.to_be_bytes());
                    batch.delete_cf(cf(CF_LOG), u64::MAX.to_be_bytes());
                    written.retain(|i, _| i < from);
                }
                Op::Purge { id, .. } => {
                    // The purge point goes in the same batch as the deletion, so a crash
                    // never leaves a log whose start is unexplained.
                    match postcard::to_stdvec(id) {
                        Ok(bytes) => batch.put_cf(cf(CF_META), KEY_PURGED, bytes),
                        Err(e) => tracing::error!("encoding the purge point: {e}"),
                    }
                    batch.delete_range_cf(
                        cf(CF_LOG),
                        0u64.to_be_bytes(),
                        (id.index + 1).to_be_bytes(),
                    );
                    written.retain(|i, _| *i > id.index);
                }
            }
        }
        let result = db.write_opt(batch, &synced()).map_err(|e| e.to_string());
        if result.is_ok() {
            // On disk now: readers find them there. An index re-appended since (after a
            // truncation) stays pending with its newer entry.
            let mut pending = pending.lock().unwrap_or_else(PoisonError::into_inner);
            for (index, id) in written {
                if pending.get(&index).is_some_and(|e| *e.get_log_id() == id) {
                    pending.remove(&index);
                }
            }
        }
        for op in ops {
            match op {
                Op::Append { done, .. } => {
                    done.log_io_completed(result.clone().map_err(std::io::Error::other))
                }
                Op::Truncate { done, .. } | Op::Purge { done, .. } => {
                    let _ = done.send(result.clone());
                }
            }
        }
    }
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
        let db = Arc::new(DB::open_cf_descriptors(&opts, dir, cfs)?);
        let pending: Arc<Mutex<BTreeMap<u64, Entry>>> = Arc::default();
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn({
                let (db, pending) = (db.clone(), pending.clone());
                move || write_loop(db, pending, rx)
            })
            .map_err(|e| NodeError::Raft(format!("starting the log writer: {e}")))?;
        let store = Self {
            db,
            committed: Arc::default(),
            pending,
            writer: Arc::new(Writer {
                tx: Some(tx),
                thread: Some(thread),
            }),
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

    fn put_meta<T: serde::Serialize>(
        &self,
        key: &[u8],
        value: &T,
        options: &WriteOptions,
    ) -> Result<(), StorageError> {
        let bytes = postcard::to_stdvec(value).map_err(write_err)?;
        self.db
            .put_cf_opt(self.cf(CF_META), key, bytes, options)
            .map_err(write_err)
    }

    /// Queues `op` for the writer thread.
    fn queue(&self, op: Op) -> Result<(), Op> {
        match &self.writer.tx {
            Some(tx) => tx.send(op).map_err(|e| e.0),
            None => Err(op),
        }
    }

    /// Queues a truncation or purge and waits until it is on disk.
    async fn queue_and_wait(
        &self,
        op: impl FnOnce(tokio::sync::oneshot::Sender<Result<(), String>>) -> Op,
    ) -> Result<(), StorageError> {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.queue(op(done)).is_err() {
            return Err(write_err(std::io::Error::other("the log writer stopped")));
        }
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(write_err(std::io::Error::other(e))),
            Err(_) => Err(write_err(std::io::Error::other("the log writer stopped"))),
        }
    }

    /// The last entry's id, on disk or pending.
    fn last_log_id(&self) -> Result<Option<LogId>, StorageError> {
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .last_key_value()
            .map(|(_, e)| *e.get_log_id());
        let stored = self.last_entry_log_id()?;
        Ok(match (pending, stored) {
            (Some(p), Some(s)) => Some(if p.index >= s.index { p } else { s }),
            (p, s) => p.or(s),
        })
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
        // Pending entries first: one that reaches the disk meanwhile is then found there.
        let pending: Vec<(u64, Entry)> = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .range(start..)
            .take_while(|(i, _)| range.contains(*i))
            .map(|(i, e)| (*i, e.clone()))
            .collect();
        let mut out = BTreeMap::new();
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
            out.insert(index, postcard::from_bytes(&v).map_err(read_err)?);
        }
        out.extend(pending);
        // Contiguous from the start, as openraft expects: stop at the first gap.
        let mut entries = Vec::with_capacity(out.len());
        let mut next = None;
        for (index, entry) in out {
            if next.is_some_and(|n| n != index) {
                break;
            }
            next = Some(index + 1);
            entries.push(entry);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId> = self.get_meta(KEY_PURGED)?;
        let last = self.last_log_id()?.or(last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.put_meta(KEY_VOTE, vote, &synced())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.get_meta(KEY_VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not synced: a committed index lost in a crash is only re-learnt from the leader
        // (openraft re-applies from the last applied id), so it needs no sync per commit.
        self.put_meta(KEY_COMMITTED, &committed, &WriteOptions::default())?;
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
        let mut queued = Vec::new();
        {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            for entry in entries {
                let bytes = postcard::to_stdvec(&entry).map_err(write_err)?;
                let id = *entry.get_log_id();
                queued.push((id.index, id, bytes));
                pending.insert(id.index, entry);
            }
        }
        // Reported flushed by the writer thread once its batch is synced.
        if let Err(Op::Append { done, .. }) = self.queue(Op::Append {
            entries: queued,
            done: callback,
        }) {
            done.log_io_completed(Err(std::io::Error::other("the log writer stopped")));
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Remove [log_id.index, ∞): conflicting entries from an old leader. Readers stop
        // seeing pending ones at once; the writer removes them after what it holds.
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|i, _| *i < log_id.index);
        self.queue_and_wait(|done| Op::Truncate {
            from: log_id.index,
            done,
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|i, _| *i > log_id.index);
        self.queue_and_wait(|done| Op::Purge { id: log_id, done })
            .await
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
