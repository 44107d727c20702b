//! Snapshots: a RocksDB checkpoint of the state machine, packed into one tar file.
//!
//! The file is openraft's snapshot data: the leader streams it to a lagging or new
//! follower in chunks (`snapshot_max_chunk_size`), and the follower writes the chunks to
//! a file of its own, so a snapshot is never held in memory as one blob. Installing
//! unpacks the tar into a fresh database generation and switches over atomically.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::RaftSnapshotBuilder;
use openraft::ErrorVerb::{Read, Write};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncSeekExt;

use super::{open_sm_db, read_applied_from, sm_err, StateMachineStore};
use crate::raft_types::{Snapshot, SnapshotMeta, StorageError, TypeConfig};

const CURRENT: &str = "current.json";

/// The record of the latest snapshot, beside its tar file.
#[derive(Serialize, Deserialize)]
struct CurrentSnapshot {
    meta: SnapshotMeta,
    file: String,
}

fn blocking_err(e: tokio::task::JoinError) -> StorageError {
    sm_err(Write, e)
}

/// Packs a directory into a tar file and fsyncs it.
pub(super) fn pack(dir: &Path, out: &Path) -> std::io::Result<()> {
    let f = std::fs::File::create(out)?;
    let mut builder = tar::Builder::new(f);
    builder.append_dir_all(".", dir)?;
    let f = builder.into_inner()?;
    f.sync_all()
}

pub(super) fn unpack(tar_path: &Path, into: &Path) -> std::io::Result<()> {
    let f = std::fs::File::open(tar_path)?;
    std::fs::create_dir_all(into)?;
    tar::Archive::new(f).unpack(into)
}

/// Writes `current.json` atomically (temp file, fsync, rename).
fn write_current(dir: &Path, current: &CurrentSnapshot) -> std::io::Result<()> {
    let tmp = dir.join(format!("{CURRENT}.tmp"));
    let bytes = serde_json::to_vec(current).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, bytes)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, dir.join(CURRENT))?;
    remove_other_snapshots(dir, &current.file);
    Ok(())
}

/// Records `file` (in `dir`) as the latest snapshot, described by `meta`.
fn record_current(dir: &Path, meta: &SnapshotMeta, file: String) -> Result<(), StorageError> {
    let current = CurrentSnapshot {
        meta: meta.clone(),
        file,
    };
    write_current(dir, &current).map_err(|e| sm_err(Write, e))
}

fn remove_other_snapshots(dir: &Path, keep: &str) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("snap-") && name != keep {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let db = self.db();
        let snap_dir = self.shared.snapshot_dir.clone();
        let (meta, file) = tokio::task::spawn_blocking(
            move || -> Result<(SnapshotMeta, PathBuf), StorageError> {
                let ckpt = snap_dir.join(format!("ckpt-{}", uuid::Uuid::new_v4()));
                // A checkpoint is a consistent point-in-time copy (hard links, after a flush).
                rocksdb::checkpoint::Checkpoint::new(&db)
                    .and_then(|c| c.create_checkpoint(&ckpt))
                    .map_err(|e| sm_err(Write, e))?;
                drop(db);
                // Read the applied id from the checkpoint itself, so meta and data match.
                let (last_applied, membership) = {
                    let ckdb = open_sm_db(&ckpt).map_err(|e| sm_err(Read, e))?;
                    read_applied_from(&ckdb)?
                };
                let snapshot_id = match last_applied {
                    Some(l) => format!(
                        "{}-{}-{}",
                        l.leader_id.term,
                        l.index,
                        uuid::Uuid::new_v4().simple()
                    ),
                    None => format!("0-0-{}", uuid::Uuid::new_v4().simple()),
                };
                let name = format!("snap-{snapshot_id}.tar");
                let file = snap_dir.join(&name);
                pack(&ckpt, &file).map_err(|e| sm_err(Write, e))?;
                let _ = std::fs::remove_dir_all(&ckpt);
                let meta = SnapshotMeta {
                    last_log_id: last_applied,
                    last_membership: membership,
                    snapshot_id,
                };
                record_current(&snap_dir, &meta, name)?;
                Ok((meta, file))
            },
        )
        .await
        .map_err(blocking_err)??;
        tracing::info!(snapshot = %meta.snapshot_id, "built snapshot");
        let f = tokio::fs::File::open(&file)
            .await
            .map_err(|e| sm_err(Read, e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(f),
        })
    }
}

pub(super) async fn begin_receiving(
    sm: &StateMachineStore,
) -> Result<Box<tokio::fs::File>, StorageError> {
    let path = sm
        .shared
        .snapshot_dir
        .join(format!("recv-{}.tar", uuid::Uuid::new_v4().simple()));
    let f = tokio::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .await
        .map_err(|e| sm_err(Write, e))?;
    // The handle keeps the data; the name is not needed once we copy it out on install.
    let _ = tokio::fs::remove_file(&path).await;
    Ok(Box::new(f))
}

pub(super) async fn install(
    sm: &StateMachineStore,
    meta: &SnapshotMeta,
    mut data: Box<tokio::fs::File>,
) -> Result<(), StorageError> {
    let snap_dir = sm.shared.snapshot_dir.clone();
    let name = format!("snap-{}.tar", meta.snapshot_id);
    let file = snap_dir.join(&name);
    // Stream the received file into place (never the whole snapshot in memory).
    data.seek(std::io::SeekFrom::Start(0))
        .await
        .map_err(|e| sm_err(Read, e))?;
    {
        let mut out = tokio::fs::File::create(&file)
            .await
            .map_err(|e| sm_err(Write, e))?;
        tokio::io::copy(&mut data, &mut out)
            .await
            .map_err(|e| sm_err(Write, e))?;
        out.sync_all().await.map_err(|e| sm_err(Write, e))?;
    }
    let next_gen = *crate::sync::read(&sm.shared.generation) + 1;
    let gen_dir = sm.shared.dir.join(format!("gen-{next_gen}"));
    let new_db = {
        let file = file.clone();
        let gen_dir = gen_dir.clone();
        tokio::task::spawn_blocking(move || -> Result<rocksdb::DB, StorageError> {
            let _ = std::fs::remove_dir_all(&gen_dir);
            unpack(&file, &gen_dir).map_err(|e| sm_err(Write, e))?;
            open_sm_db(&gen_dir).map_err(|e| sm_err(Read, e))
        })
        .await
        .map_err(blocking_err)??
    };
    let (applied, _) = read_applied_from(&new_db)?;
    if applied != meta.last_log_id {
        return Err(sm_err(
            Read,
            format!(
                "snapshot {} holds state at {applied:?}, meta says {:?}",
                meta.snapshot_id, meta.last_log_id
            ),
        ));
    }
    // Switch: pointer first (durable), then the in-memory handle.
    let dir = sm.shared.dir.clone();
    let tmp = dir.join("CURRENT.tmp");
    std::fs::write(&tmp, next_gen.to_string())
        .and_then(|_| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|_| std::fs::rename(&tmp, dir.join("CURRENT")))
        .map_err(|e| sm_err(Write, e))?;
    let old = {
        let mut guard = crate::sync::write(&sm.shared.db);
        std::mem::replace(&mut *guard, Arc::new(new_db))
    };
    let old_gen = std::mem::replace(&mut *crate::sync::write(&sm.shared.generation), next_gen);
    sm.shared
        .applied_tx
        .send_replace(applied.map(|l| l.index).unwrap_or(0));
    record_current(&snap_dir, meta, name)?;
    retire_old_generation(old, dir.join(format!("gen-{old_gen}")));
    tracing::info!(snapshot = %meta.snapshot_id, "installed snapshot");
    Ok(())
}

/// Closes the replaced database once readers let go of it, then deletes its folder.
fn retire_old_generation(old: Arc<rocksdb::DB>, path: PathBuf) {
    tokio::spawn(async move {
        let mut old = old;
        for _ in 0..600 {
            match Arc::try_unwrap(old) {
                Ok(db) => {
                    drop(db);
                    let _ = tokio::fs::remove_dir_all(&path).await;
                    return;
                }
                Err(still_shared) => {
                    old = still_shared;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
        tracing::warn!(path = %path.display(), "old state machine generation still in use; removed at next start");
    });
}

pub(super) async fn current(sm: &StateMachineStore) -> Result<Option<Snapshot>, StorageError> {
    let dir = &sm.shared.snapshot_dir;
    let bytes = match tokio::fs::read(dir.join(CURRENT)).await {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(sm_err(Read, e)),
    };
    let current: CurrentSnapshot = serde_json::from_slice(&bytes).map_err(|e| sm_err(Read, e))?;
    match tokio::fs::File::open(dir.join(&current.file)).await {
        Ok(f) => Ok(Some(Snapshot {
            meta: current.meta,
            snapshot: Box::new(f),
        })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(sm_err(Read, e)),
    }
}
