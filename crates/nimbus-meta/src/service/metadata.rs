//! Metadata reads, writes and the watch stream.
//!
//! Writes go through Raft on the leader (a follower forwards them); secrets in a write
//! are sealed by the first node that receives it, so they reach the log only as
//! ciphertext. Reads are served from the local state machine, after a read-index round
//! on the leader when the caller asks for a linearizable read.

use std::time::Duration;

use nimbus_proto::meta as pb;
use nimbus_types::{
    decode, encode, keys, Command, Entity, ErrorKind, MetaError, Query, QueryOutput,
};
use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::broadcast::error::RecvError;
use tonic::{Request, Response, Status};

use super::authority::{may_query, may_write};
use super::environment;
use super::forward::{is_forwarded, Check, OnLeader};
use super::{internal, stream, unavailable, EventStream, NodeContext};
use crate::state_machine::chunk_key;

/// Most bytes a request id may have (it is stored with the first answer, for retries).
const MAX_REQUEST_ID: usize = 128;

pub(super) async fn write(
    ctx: &NodeContext,
    req: Request<pb::WriteRequest>,
) -> Result<Response<pb::WriteResponse>, Status> {
    let forwarded = is_forwarded(&req);
    let caller = nimbus_tls::caller(&req).cloned();
    let req = req.into_inner();
    if req.request_id.is_empty() || req.request_id.len() > MAX_REQUEST_ID {
        return Err(Status::invalid_argument(
            "request_id must be 1 to 128 bytes",
        ));
    }
    let mut command: Command =
        decode(&req.command).map_err(|e| Status::invalid_argument(e.to_string()))?;
    // Only a leader records the key check, through Raft directly (`node::key_check`): a
    // client that wrote one first would make every node refuse to run.
    if matches!(command, Command::SetClusterKeyCheck { .. }) {
        return Err(Status::permission_denied(
            "the cluster key check is recorded by the metadata nodes themselves",
        ));
    }
    // Batches are made by the leader from writes it checked one by one; one sent in would
    // carry writes past `may_write`.
    if matches!(command, Command::Batch { .. }) {
        return Err(Status::invalid_argument(
            "a batch of writes is made by the metadata leader, not sent to it",
        ));
    }
    may_write(caller.as_ref(), &command).map_err(Status::permission_denied)?;
    if !forwarded {
        ctx.seal(&mut command);
    }
    let entry = crate::raft_types::Request {
        request_id: req.request_id,
        command,
    };
    ctx.ensure_quorum_heard()?;
    let result = tokio::select! {
        r = tokio::time::timeout(ctx.write_timeout, ctx.proposer.propose(entry.clone())) => r,
        // The client retries elsewhere with the same request id, so this write is
        // applied once even if it still commits.
        refusal = ctx.quorum_lost() => return Err(refusal),
    };
    match result {
        Err(_) => Err(unavailable(format!(
            "write not committed within {:?}: no quorum of metadata nodes reachable; retry with the same request id",
            ctx.write_timeout
        ))),
        Ok(Ok(resp)) => {
            let mut result = resp.result;
            if let Ok(out) = result.as_mut() {
                environment::open_output(&ctx.key, out);
            }
            Ok(Response::new(pb::WriteResponse {
                revision: resp.revision,
                result: encode(&result),
            }))
        }
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
            let leader = ctx.forward_target(&f, forwarded)?;
            // The sealed command goes on, so the leader does not seal it again.
            let sealed = pb::WriteRequest {
                request_id: entry.request_id,
                command: encode(&entry.command),
            };
            let deadline = ctx.write_timeout + Duration::from_secs(1);
            ctx.forward(&leader, sealed, Some(deadline)).await
        }
        Ok(Err(e)) => Err(unavailable(format!("raft: {e}"))),
    }
}

pub(super) async fn read(
    ctx: &NodeContext,
    req: Request<pb::ReadRequest>,
) -> Result<Response<pb::ReadResponse>, Status> {
    // Checked before a forward: the leader trusts what a follower forwards.
    let query: Query =
        decode(&req.get_ref().query).map_err(|e| Status::invalid_argument(e.to_string()))?;
    may_query(nimbus_tls::caller(&req), &query).map_err(Status::permission_denied)?;
    // Served here once the leader is confirmed (the query decoded above is the one to run).
    if req.get_ref().linearizable {
        if let OnLeader::Answered(a) = ctx
            .on_leader(req, Check::Quorum("linearizable read"))
            .await?
        {
            return Ok(a);
        }
    }
    let revision = *ctx.sm.applied_index().borrow();
    let mut result = match &query {
        Query::AccessKeySecret { access_key_id } => ctx.open_access_key(access_key_id),
        Query::SessionSigningKey => Ok(QueryOutput::SessionSigningKey(
            ctx.key.derive(SESSION_KEY_LABEL).to_vec(),
        )),
        q => ctx.sm.query(q),
    };
    if let Ok(out) = result.as_mut() {
        environment::open_query(&ctx.key, out);
    }
    Ok(Response::new(pb::ReadResponse {
        revision,
        result: encode(&result),
    }))
}

pub(super) async fn watch(
    ctx: &NodeContext,
    req: Request<pb::WatchRequest>,
) -> Result<Response<EventStream>, Status> {
    let sm = ctx.sm.clone();
    let key = ctx.key.clone();
    let from = req.into_inner().from_revision.max(1);
    // Subscribe before reading history so nothing falls between the two.
    let mut live = sm.subscribe();
    let generation = sm.generation();
    let history = match sm.changes_since(from, usize::MAX).map_err(internal)? {
        Ok(h) => h,
        Err(oldest) => {
            return Err(Status::out_of_range(format!(
                "revision {from} is compacted; oldest kept is {oldest}"
            )));
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    tokio::spawn(async move {
        let mut next = from;
        let mut history = history.into_iter();
        loop {
            // The retained history first, then live changes.
            let b = match history.next() {
                Some(b) => b,
                None => match live.recv().await {
                    Ok(b) => b,
                    Err(RecvError::Lagged(_)) => {
                        let _ = tx
                            .send(Err(Status::aborted(format!(
                                "watcher fell behind; resume from revision {next}"
                            ))))
                            .await;
                        return;
                    }
                    Err(RecvError::Closed) => return,
                },
            };
            if sm.generation() != generation {
                let _ = tx
                    .send(Err(Status::aborted(format!(
                        "state replaced by a snapshot; resume from revision {next}"
                    ))))
                    .await;
                return;
            }
            // Live changes the history already held.
            if b.revision < next {
                continue;
            }
            next = b.revision + 1;
            let changes = match environment::open_changes(&key, &b.changes) {
                Some(opened) => encode(&opened),
                None => encode(&*b.changes),
            };
            let ev = pb::WatchEvent {
                revision: b.revision,
                changes,
            };
            if tx.send(Ok(ev)).await.is_err() {
                return;
            }
        }
    });
    Ok(stream(rx))
}

/// What the session-token key is derived for; a new label would void every token.
const SESSION_KEY_LABEL: &[u8] = b"nimbus sts session tokens v1";

impl NodeContext {
    /// Seals secrets in a command received from a client: code chunks, access-key secrets
    /// and environment variables reach the Raft log, and disk, only as ciphertext.
    fn seal(&self, cmd: &mut Command) {
        match cmd {
            Command::PutCodeChunk {
                sha256,
                index,
                ciphertext,
            } => {
                let aad = chunk_key(sha256, *index);
                *ciphertext = self.key.seal(&aad, ciphertext);
            }
            Command::PutAccessKey { key } => {
                let aad = keys::access_key(&key.access_key_id);
                key.secret_ciphertext = self.key.seal(aad.as_bytes(), &key.secret_ciphertext);
            }
            Command::CreateFunction { config, .. }
            | Command::UpdateFunctionConfiguration { config, .. } => {
                environment::seal(&self.key, config);
            }
            _ => {}
        }
    }

    /// An access key's secret, opened with the cluster key.
    fn open_access_key(&self, access_key_id: &str) -> Result<QueryOutput, MetaError> {
        let key = keys::access_key(access_key_id);
        match self.sm.query(&Query::Get { key: key.clone() })? {
            QueryOutput::Entity(Some(Entity::AccessKey(ak))) => {
                let secret = self
                    .key
                    .open(key.as_bytes(), &ak.secret_ciphertext)
                    .map_err(|e| {
                        MetaError::new(
                            ErrorKind::Service,
                            format!("access key {access_key_id}: {e}"),
                        )
                    })?;
                Ok(QueryOutput::AccessKeySecret {
                    account_id: ak.account_id,
                    secret,
                    user_name: ak.user_name,
                    active: ak.active,
                })
            }
            _ => Err(MetaError::not_found(format!(
                "access key {access_key_id} not found"
            ))),
        }
    }
}
