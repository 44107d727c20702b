//! Backups of the whole state machine, streamed from the leader.
//!
//! Not forwarded: the operator asked a node by name, and a backup is a large stream, so a
//! follower says which node leads instead of relaying it.

use std::path::PathBuf;
use std::sync::Arc;

use nimbus_proto::meta as pb;
use tokio::io::AsyncReadExt;
use tonic::{Request, Response, Status};

use super::forward::ReadIndexError;
use super::{internal, stream, unavailable, BackupStream, NodeContext};

/// Bytes per streamed backup message.
const CHUNK: usize = 1 << 20;

pub(super) async fn backup(
    ctx: &Arc<NodeContext>,
    _req: Request<pb::BackupRequest>,
) -> Result<Response<BackupStream>, Status> {
    // A read barrier: only the leader passes it, and once it has, this node has applied
    // every write acknowledged before the call, so the backup holds them all.
    let elsewhere = ctx.read_index().await.map_err(|e| match e {
        ReadIndexError::NoQuorum => unavailable("no quorum: cannot take a consistent backup"),
        e => unavailable(e.to_string()),
    })?;
    if let Some(f) = elsewhere {
        let leader = match (f.leader_id, f.leader_node) {
            (Some(id), Some(n)) => format!("node {id} at {}", n.addr),
            _ => "not elected yet".to_string(),
        };
        return Err(Status::failed_precondition(format!(
            "node {} is not the leader (leader: {leader}); back up from the leader",
            ctx.id
        )));
    }
    let file = backup_file(ctx);
    let path = file.clone();
    let sm = ctx.sm.clone();
    let applied = tokio::task::spawn_blocking(move || sm.write_backup(&path))
        .await
        .map_err(internal)?
        .map_err(|e| Status::internal(format!("backup failed: {e}")))?;
    tracing::info!(applied, "streaming a backup");
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    tokio::spawn(async move {
        let sent = async {
            let mut f = tokio::fs::File::open(&file).await?;
            loop {
                let mut buf = vec![0u8; CHUNK];
                let n = f.read(&mut buf).await?;
                if n == 0 {
                    return Ok::<_, std::io::Error>(());
                }
                buf.truncate(n);
                let chunk = pb::BackupChunk {
                    applied_index: applied,
                    data: buf,
                };
                if tx.send(Ok(chunk)).await.is_err() {
                    return Ok(());
                }
            }
        }
        .await;
        if let Err(e) = sent {
            let _ = tx.send(Err(internal(e))).await;
        }
        let _ = tokio::fs::remove_file(&file).await;
    });
    Ok(stream(rx))
}

/// A fresh file name for a backup being streamed, beside the node's snapshots.
fn backup_file(ctx: &NodeContext) -> PathBuf {
    ctx.sm
        .snapshot_dir()
        .join(format!("backup-{}.tar", uuid::Uuid::new_v4().simple()))
}
