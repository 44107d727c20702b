//! The replicated state machine, stored in RocksDB.
//!
//! Column families:
//! - `kv`: every entity (functions, versions, aliases, accounts, …) by [`nimbus_types::keys`].
//! - `code`: sealed code chunks (`code/<sha>/<index>`), kept apart so listing stays cheap.
//! - `event_payload`: async event payloads by event id, written once and kept out of the
//!   watch stream (the event's record in `kv` carries everything else).
//! - `meta`: last applied log id and membership, written in the same batch as the data,
//!   so the two can never disagree after a crash.
//! - `dedup` / `dedup_age`: request id → first response, so a retried write applies once.
//! - `changes`: revision → the changes of that log entry; the watch stream replays these.
//!
//! The database lives in a generation folder (`sm/gen-N`, named by `sm/CURRENT`) so an
//! installed snapshot can replace it atomically: unpack into a new generation, switch the
//! pointer, drop the old one.

mod apply;
pub mod backup;
pub mod snapshot;
mod tx;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use nimbus_types::{
    decode, encode, BatchedOutput, Change, Command, CommandOutput, ErrorKind, MetaError, Query,
    QueryOutput,
};
use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, OptionalSend, RaftLogId};
use rocksdb::{ColumnFamilyDescriptor, Options, DB};
use tokio::sync::broadcast;

use crate::error::NodeError;
use crate::raft_types::{
    Entry, LogId, Response, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
pub use apply::chunk_key;
use apply::Stamp;

/// Column family names.
pub(crate) mod cf {
    pub const KV: &str = "kv";
    pub const CODE: &str = "code";
    pub const META: &str = "meta";
    pub const DEDUP: &str = "dedup";
    pub const DEDUP_AGE: &str = "dedup_age";
    pub const CHANGES: &str = "changes";
    pub const EVENT_PAYLOAD: &str = "event_payload";
    pub const ALL: [&str; 7] = [KV, CODE, META, DEDUP, DEDUP_AGE, CHANGES, EVENT_PAYLOAD];
}

const KEY_APPLIED: &[u8] = b"last_applied";
const KEY_MEMBERSHIP: &[u8] = b"membership";
/// Revisions of change history kept for watchers that reconnect.
pub const CHANGE_RETENTION: u64 = 100_000;
/// Revisions for which a request id is remembered (far longer than any client retries).
pub const DEDUP_RETENTION: u64 = 100_000;
/// How often (in log indexes) old history is pruned.
const PRUNE_EVERY: u64 = 1_000;

/// One applied log entry's changes, as published to watchers.
#[derive(Debug, Clone)]
pub struct WatchBatch {
    pub revision: u64,
    pub changes: Arc<Vec<Change>>,
}

/// Shared state of the state machine: the database and the watch channel.
pub struct SmShared {
    dir: PathBuf,
    snapshot_dir: PathBuf,
    db: RwLock<Arc<DB>>,
    generation: RwLock<u64>,
    watch_tx: broadcast::Sender<WatchBatch>,
    applied_tx: tokio::sync::watch::Sender<u64>,
}

/// The state machine handle given to openraft; clones share everything.
#[derive(Clone)]
pub struct StateMachineStore {
    pub(crate) shared: Arc<SmShared>,
}

fn sm_err(verb: openraft::ErrorVerb, e: impl ToString) -> StorageError {
    StorageError::from_io_error(
        openraft::ErrorSubject::StateMachine,
        verb,
        std::io::Error::other(e.to_string()),
    )
}

pub(crate) fn open_sm_db(path: &Path) -> Result<DB, rocksdb::Error> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    let cfs = cf::ALL.map(|n| ColumnFamilyDescriptor::new(n, Options::default()));
    DB::open_cf_descriptors(&opts, path, cfs)
}

impl StateMachineStore {
    /// Opens (or creates) the state machine under `dir` (`DATA/sm`).
    pub fn open(dir: &Path, snapshot_dir: &Path) -> Result<Self, NodeError> {
        std::fs::create_dir_all(dir).map_err(|e| NodeError::io(dir, e))?;
        std::fs::create_dir_all(snapshot_dir).map_err(|e| NodeError::io(snapshot_dir, e))?;
        let generation = match std::fs::read_to_string(dir.join("CURRENT")) {
            Ok(s) => s
                .trim()
                .parse::<u64>()
                .map_err(|_| NodeError::Config(format!("bad {}/CURRENT", dir.display())))?,
            Err(_) => 0,
        };
        // Leftover generations from an interrupted snapshot install are garbage.
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("gen-") && name != format!("gen-{generation}") {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let db = open_sm_db(&dir.join(format!("gen-{generation}")))?;
        let (watch_tx, _) = broadcast::channel(4096);
        let sm = Self {
            shared: Arc::new(SmShared {
                dir: dir.to_path_buf(),
                snapshot_dir: snapshot_dir.to_path_buf(),
                db: RwLock::new(Arc::new(db)),
                generation: RwLock::new(generation),
                watch_tx,
                applied_tx: tokio::sync::watch::channel(0).0,
            }),
        };
        let applied = sm
            .read_applied()
            .map_err(|e| NodeError::Raft(e.to_string()))?
            .0;
        sm.shared
            .applied_tx
            .send_replace(applied.map(|l| l.index).unwrap_or(0));
        Ok(sm)
    }

    /// Where snapshots (and backups being streamed) are written.
    pub fn snapshot_dir(&self) -> &Path {
        &self.shared.snapshot_dir
    }

    /// The current database (a snapshot install may replace it; hold the Arc briefly).
    pub fn db(&self) -> Arc<DB> {
        crate::sync::read(&self.shared.db).clone()
    }

    /// Subscribes to applied changes.
    pub fn subscribe(&self) -> broadcast::Receiver<WatchBatch> {
        self.shared.watch_tx.subscribe()
    }

    /// The last applied log index, observable.
    pub fn applied_index(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.applied_tx.subscribe()
    }

    fn read_applied(&self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        read_applied_from(&self.db())
    }

    /// Answers a read against the local state.
    pub fn query(&self, q: &Query) -> Result<QueryOutput, MetaError> {
        let db = self.db();
        match q {
            Query::Get { key } => {
                let handle = db.cf_handle(cf::KV).expect("column family exists");
                let value = db
                    .get_cf(handle, key.as_bytes())
                    .map_err(|e| MetaError::new(ErrorKind::Service, e.to_string()))?;
                Ok(QueryOutput::Entity(value.map(|b| decode(&b)).transpose()?))
            }
            Query::List {
                prefix,
                start_after,
                limit,
            } => {
                let mut out = Vec::new();
                for (k, v) in tx::scan_db(&db, cf::KV, prefix.as_bytes())? {
                    let key = String::from_utf8_lossy(&k).into_owned();
                    if start_after
                        .as_ref()
                        .is_some_and(|s| key.as_str() <= s.as_str())
                    {
                        continue;
                    }
                    out.push((key, decode(&v)?));
                    if out.len() as u32 >= *limit {
                        break;
                    }
                }
                Ok(QueryOutput::Entities(out))
            }
            Query::EventPayload { id } => {
                let handle = db
                    .cf_handle(cf::EVENT_PAYLOAD)
                    .expect("column family exists");
                let value = db
                    .get_cf(handle, id.as_bytes())
                    .map_err(|e| MetaError::new(ErrorKind::Service, e.to_string()))?;
                Ok(QueryOutput::EventPayload(value))
            }
            Query::AccessKeySecret { .. } | Query::SessionSigningKey => Err(MetaError::new(
                ErrorKind::Service,
                "secrets are opened by the node service, not the state machine",
            )),
        }
    }

    /// A sealed code chunk.
    pub fn code_chunk(&self, sha256: &str, index: u32) -> Result<Option<Vec<u8>>, MetaError> {
        let db = self.db();
        let handle = db.cf_handle(cf::CODE).expect("column family exists");
        db.get_cf(handle, chunk_key(sha256, index))
            .map_err(|e| MetaError::new(ErrorKind::Service, e.to_string()))
    }

    /// Changes recorded at revisions `>= from`, in order; `Err(oldest)` if `from` is older
    /// than the retained history.
    pub fn changes_since(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<Result<Vec<WatchBatch>, u64>, MetaError> {
        let db = self.db();
        let handle = db.cf_handle(cf::CHANGES).expect("column family exists");
        let applied = *self.shared.applied_tx.borrow();
        let mut it = db.iterator_cf(handle, rocksdb::IteratorMode::Start);
        let oldest = match it.next() {
            Some(Ok((k, _))) => be_u64(&k),
            _ => applied + 1,
        };
        // History older than the retention window (or replaced by a snapshot) is gone.
        if from < oldest && from + CHANGE_RETENTION <= applied {
            return Ok(Err(oldest));
        }
        let mut out = Vec::new();
        let it = db.iterator_cf(
            handle,
            rocksdb::IteratorMode::From(&from.to_be_bytes(), rocksdb::Direction::Forward),
        );
        for item in it {
            let (k, v) = item.map_err(|e| MetaError::new(ErrorKind::Service, e.to_string()))?;
            out.push(WatchBatch {
                revision: be_u64(&k),
                changes: Arc::new(decode(&v)?),
            });
            if out.len() >= limit {
                break;
            }
        }
        Ok(Ok(out))
    }

    fn apply_entries(
        &self,
        entries: Vec<Entry>,
    ) -> Result<(Vec<Response>, Vec<WatchBatch>), StorageError> {
        use openraft::ErrorVerb::Write;
        let db = self.db();
        let mut batch = tx::BatchTx::default();
        let mut responses = Vec::with_capacity(entries.len());
        let mut published = Vec::new();
        let mut last_applied = None;
        let mut membership = None;
        for entry in entries {
            let log_id = *entry.get_log_id();
            let index = log_id.index;
            last_applied = Some(log_id);
            let response = match entry.payload {
                EntryPayload::Blank => Response {
                    revision: index,
                    result: Ok(CommandOutput::Done),
                },
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(log_id), m));
                    Response {
                        revision: index,
                        result: Ok(CommandOutput::Done),
                    }
                }
                EntryPayload::Normal(req) => match req.command {
                    Command::Batch { writes } => {
                        let mut outputs = Vec::with_capacity(writes.len());
                        let mut changes = Vec::new();
                        let mut any_applied = false;
                        for (position, w) in writes.iter().enumerate() {
                            let at = Stamp {
                                index,
                                position: Some(position as u32),
                            };
                            let (response, applied) =
                                apply_write(&db, &mut batch, at, &w.request_id, &w.command)?;
                            if let Some(c) = applied {
                                any_applied = true;
                                changes.extend(c);
                            }
                            outputs.push(BatchedOutput {
                                revision: response.revision,
                                result: response.result,
                            });
                        }
                        if any_applied {
                            record_changes(&mut batch, &mut published, index, changes);
                        }
                        Response {
                            revision: index,
                            result: Ok(CommandOutput::Batch(outputs)),
                        }
                    }
                    command => {
                        let (response, applied) = apply_write(
                            &db,
                            &mut batch,
                            Stamp::entry(index),
                            &req.request_id,
                            &command,
                        )?;
                        if let Some(changes) = applied {
                            record_changes(&mut batch, &mut published, index, changes);
                        }
                        response
                    }
                },
            };
            if index % PRUNE_EVERY == 0 {
                prune(&db, &mut batch, index).map_err(|e| sm_err(Write, e))?;
            }
            responses.push(response);
        }
        if let Some(l) = last_applied {
            batch.put(cf::META, KEY_APPLIED.to_vec(), encode(&l));
        }
        if let Some(m) = membership {
            batch.put(cf::META, KEY_MEMBERSHIP.to_vec(), encode(&m));
        }
        let wb = batch.into_write_batch(&db);
        // Not fsync'd: the Raft log is, and after a crash openraft re-applies from the
        // durable log anything past the last applied id recorded here.
        db.write(wb).map_err(|e| sm_err(Write, e))?;
        if let Some(l) = last_applied {
            self.shared.applied_tx.send_replace(l.index);
        }
        Ok((responses, published))
    }
}

/// Applies one write at `at` unless its request id was applied before, in which case
/// the first answer is returned again. Returns the answer and, if the write was applied
/// now and succeeded, its changes (its ops are then part of `batch`).
fn apply_write(
    db: &DB,
    batch: &mut tx::BatchTx,
    at: Stamp,
    request_id: &str,
    command: &Command,
) -> Result<(Response, Option<Vec<Change>>), StorageError> {
    use openraft::ErrorVerb::Read;
    let id_key = request_id.as_bytes().to_vec();
    if let Some(prev) = batch
        .get(db, cf::DEDUP, &id_key)
        .map_err(|e| sm_err(Read, e))?
    {
        // A retry of a write that was already applied: answer as the first time.
        return Ok((
            decode::<Response>(&prev).map_err(|e| sm_err(Read, e))?,
            None,
        ));
    }
    let mut etx = tx::EntryTx::new(db, batch);
    let result = apply::apply(&mut etx, at, command);
    let (ops, changes) = etx.finish();
    let response = Response {
        revision: at.index,
        result,
    };
    let applied = if response.result.is_ok() {
        batch.commit_entry(ops);
        Some(changes)
    } else {
        None
    };
    batch.put(cf::DEDUP, id_key.clone(), encode(&response));
    let mut age_key = at.index.to_be_bytes().to_vec();
    age_key.extend_from_slice(&id_key);
    batch.put(cf::DEDUP_AGE, age_key, vec![]);
    Ok((response, applied))
}

/// Records an entry's changes under its revision for the watch stream. Recorded even
/// when empty, so a watcher sees the revision of every successful write
/// (read-your-writes waits on it).
fn record_changes(
    batch: &mut tx::BatchTx,
    published: &mut Vec<WatchBatch>,
    index: u64,
    changes: Vec<Change>,
) {
    batch.put(cf::CHANGES, index.to_be_bytes().to_vec(), encode(&changes));
    published.push(WatchBatch {
        revision: index,
        changes: Arc::new(changes),
    });
}

fn be_u64(k: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&k[..8]);
    u64::from_be_bytes(b)
}

/// Drops change history and request ids older than their retention windows.
fn prune(db: &DB, batch: &mut tx::BatchTx, index: u64) -> Result<(), MetaError> {
    let change_floor = index.saturating_sub(CHANGE_RETENTION);
    for (k, _) in tx::scan_db(db, cf::CHANGES, &[])? {
        if be_u64(&k) >= change_floor {
            break;
        }
        batch.delete(cf::CHANGES, k);
    }
    let dedup_floor = index.saturating_sub(DEDUP_RETENTION);
    for (k, _) in tx::scan_db(db, cf::DEDUP_AGE, &[])? {
        if be_u64(&k) >= dedup_floor {
            break;
        }
        batch.delete(cf::DEDUP, k[8..].to_vec());
        batch.delete(cf::DEDUP_AGE, k);
    }
    Ok(())
}

pub(crate) fn read_applied_from(
    db: &DB,
) -> Result<(Option<LogId>, StoredMembership), StorageError> {
    use openraft::ErrorVerb::Read;
    let handle = db.cf_handle(cf::META).expect("column family exists");
    let applied = match db
        .get_cf(handle, KEY_APPLIED)
        .map_err(|e| sm_err(Read, e))?
    {
        Some(b) => Some(decode(&b).map_err(|e| sm_err(Read, e))?),
        None => None,
    };
    let membership = match db
        .get_cf(handle, KEY_MEMBERSHIP)
        .map_err(|e| sm_err(Read, e))?
    {
        Some(b) => decode(&b).map_err(|e| sm_err(Read, e))?,
        None => StoredMembership::default(),
    };
    Ok((applied, membership))
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        self.read_applied()
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let this = self.clone();
        let (responses, published) =
            tokio::task::spawn_blocking(move || this.apply_entries(entries))
                .await
                .map_err(|e| sm_err(openraft::ErrorVerb::Write, e))??;
        for batch in published {
            // No receivers is fine: nobody is watching.
            let _ = self.shared.watch_tx.send(batch);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        snapshot::begin_receiving(self).await
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        snapshot::install(self, meta, snapshot).await
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<crate::raft_types::Snapshot>, StorageError> {
        snapshot::current(self).await
    }
}

impl StateMachineStore {
    /// Bumped each time an installed snapshot replaces the database; watch streams end
    /// when it changes, so watchers resume from history instead of missing entries.
    pub fn generation(&self) -> u64 {
        *crate::sync::read(&self.shared.generation)
    }
}
