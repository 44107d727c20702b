//! Code packages streamed out chunk by chunk.
//!
//! Every chunk is opened with the cluster key and checked against its own hash before it
//! is sent, and the whole package against the package hash before the last chunk goes:
//! a corrupt or missing chunk ends the stream with `DATA_LOSS`, never with bad code.

use std::sync::Arc;

use base64::Engine;
use nimbus_proto::meta as pb;
use nimbus_types::{keys, CodePackage, Entity, Query, QueryOutput};
use sha2::Digest;
use tonic::{Request, Response, Status};

use super::{internal, stream, unavailable, ChunkStream, NodeContext};
use crate::state_machine::chunk_key;

pub(super) async fn fetch_code(
    ctx: &Arc<NodeContext>,
    req: Request<pb::FetchCodeRequest>,
) -> Result<Response<ChunkStream>, Status> {
    let ctx = ctx.clone();
    let req = req.into_inner();
    let sha = req.code_sha256;
    // The caller saw the package at `min_revision`; this node may not have applied it yet.
    let mut applied = ctx.sm.applied_index();
    let caught_up = tokio::time::timeout(
        ctx.write_timeout,
        applied.wait_for(|a| *a >= req.min_revision),
    )
    .await;
    if !matches!(caught_up, Ok(Ok(_))) {
        return Err(unavailable(format!(
            "this node has not applied revision {} yet",
            req.min_revision
        )));
    }
    let package = match ctx.sm.query(&Query::Get {
        key: keys::code(&sha),
    }) {
        Ok(QueryOutput::Entity(Some(Entity::CodePackage(p)))) => p,
        Ok(_) => return Err(Status::not_found(format!("code package {sha} not found"))),
        Err(e) => return Err(internal(e)),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    tokio::spawn(async move {
        let mut whole = sha2::Sha256::new();
        for i in 0..package.chunks {
            let chunk = match read_chunk(&ctx, &package, i) {
                Ok(c) => c,
                Err(s) => {
                    tracing::error!(code = %sha, chunk = i, "{}", s.message());
                    let _ = tx.send(Err(s)).await;
                    return;
                }
            };
            whole.update(&chunk);
            if i + 1 == package.chunks {
                let got =
                    base64::engine::general_purpose::STANDARD.encode(whole.clone().finalize());
                if got != package.sha256 {
                    let _ = tx
                        .send(Err(Status::data_loss(format!(
                            "code package {sha} does not match its hash"
                        ))))
                        .await;
                    return;
                }
            }
            let chunk = pb::CodeChunk {
                index: i,
                total: package.chunks,
                data: chunk,
            };
            if tx.send(Ok(chunk)).await.is_err() {
                return;
            }
        }
    });
    Ok(stream(rx))
}

/// Reads, opens and verifies one chunk. A chunk that fails either check is never served.
fn read_chunk(ctx: &NodeContext, package: &CodePackage, i: u32) -> Result<Vec<u8>, Status> {
    let sealed = ctx
        .sm
        .code_chunk(&package.sha256, i)
        .map_err(internal)?
        .ok_or_else(|| {
            Status::data_loss(format!("code chunk {i} of {} is missing", package.sha256))
        })?;
    let plain = ctx
        .key
        .open(&chunk_key(&package.sha256, i), &sealed)
        .map_err(|e| {
            Status::data_loss(format!(
                "code chunk {i} of {} is corrupt: {e}",
                package.sha256
            ))
        })?;
    let digest = hex(&sha2::Sha256::digest(&plain));
    if package.chunk_sha256.get(i as usize) != Some(&digest) {
        return Err(Status::data_loss(format!(
            "code chunk {i} of {} does not match its hash",
            package.sha256
        )));
    }
    Ok(plain)
}

/// Lower-case hex of bytes (how a chunk's SHA-256 is recorded in its package).
pub fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}
