//! The gRPC services of a metadata node: Raft (peer to peer) and Metadata (clients).
//!
//! Errors cross gRPC here and only here: a refused operation (a `MetaError`) travels in
//! the response body so the caller gets Lambda's error name; "try elsewhere" conditions
//! (no leader, no quorum) are `UNAVAILABLE` statuses that the client retries on another
//! node with the same request id.

use std::collections::{BTreeSet, HashMap};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use nimbus_proto::meta as pb;
use nimbus_proto::meta::metadata_client::MetadataClient;
use nimbus_types::{decode, encode, keys, Command, Entity, Query};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ServerState};
use sha2::Digest;
use tokio::sync::Mutex;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::crypto::ClusterKey;
use crate::raft_types::{NodeId, Raft};
use crate::state_machine::{chunk_key, StateMachineStore};

/// Header set on a write forwarded from a follower: the command is already sealed.
const FORWARDED: &str = "x-nimbus-forwarded";

/// How long a concurrency lease is valid; a crashed gateway's slots return after this.
// 5 s, renewed every second: a leader change (election plus the gateways' failover,
// 1–3 s) fits inside a lease renewed just before it, so the new leader's warm-up renews
// what gateways hold instead of throttling them (the chaos rolling restart showed 429s
// with 3 s). The cost: a crashed gateway's slots return after at most 5 s.
pub const LEASE: Duration = Duration::from_secs(5);

/// Everything the services of one node share.
pub struct NodeContext {
    pub id: NodeId,
    pub addr: String,
    pub raft: Raft,
    pub sm: StateMachineStore,
    pub key: ClusterKey,
    /// How long a write may wait to commit before the caller is told the cluster has no
    /// quorum (instead of hanging).
    pub write_timeout: Duration,
    /// Serializes membership changes on this node.
    admin_lock: Mutex<()>,
    /// Concurrency leases handed to gateways while this node leads.
    leases: std::sync::Mutex<crate::leases::Ledger>,
    /// The term this node leads and since when (the lease ledger's warm-up counts from it).
    leading_since: Arc<std::sync::Mutex<Option<(u64, std::time::Instant)>>>,
    peers: std::sync::Mutex<HashMap<String, Channel>>,
}

impl NodeContext {
    pub fn new(
        id: NodeId,
        addr: String,
        raft: Raft,
        sm: StateMachineStore,
        key: ClusterKey,
        write_timeout: Duration,
    ) -> Self {
        Self {
            id,
            addr,
            raft,
            sm,
            key,
            write_timeout,
            admin_lock: Mutex::new(()),
            leases: std::sync::Mutex::new(crate::leases::Ledger::new(LEASE)),
            leading_since: Arc::default(),
            peers: Default::default(),
        }
    }

    /// Confirms with a quorum (read-index round) that this node leads right now.
    /// `Ok(None)`: it does. `Ok(Some(addr))`: forward to the leader at `addr`.
    async fn confirm_leader(&self, forwarded: bool, what: &str) -> Result<Option<String>, Status> {
        match tokio::time::timeout(self.write_timeout, self.raft.ensure_linearizable()).await {
            Err(_) => Err(unavailable(format!(
                "{what} could not reach a quorum in time"
            ))),
            Ok(Ok(_)) => Ok(None),
            Ok(Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(
                f,
            )))) => {
                let (Some(leader), Some(node)) = (f.leader_id, f.leader_node) else {
                    return Err(unavailable("no metadata leader elected right now; retry"));
                };
                if forwarded || leader == self.id {
                    return Err(unavailable("leadership is changing; retry"));
                }
                Ok(Some(node.addr))
            }
            Ok(Err(e)) => Err(unavailable(format!("raft: {e}"))),
        }
    }

    /// Records when this node becomes leader of a term, from openraft's metrics.
    pub fn track_leadership(&self) {
        let mut rx = self.raft.metrics();
        let since = self.leading_since.clone();
        let id = self.id;
        tokio::spawn(async move {
            loop {
                {
                    let m = rx.borrow_and_update();
                    let mut s = since.lock().expect("lock not poisoned");
                    if m.current_leader == Some(id) {
                        if s.is_none_or(|(t, _)| t != m.current_term) {
                            *s = Some((m.current_term, std::time::Instant::now()));
                        }
                    } else {
                        *s = None;
                    }
                }
                if rx.changed().await.is_err() {
                    break;
                }
            }
        });
    }

    /// A concurrency pool's capacity, from this node's state machine: a function's
    /// reserved concurrency, or the account's limit minus everything reserved in the
    /// region.
    fn pool_capacity(&self, req: &pb::LeaseRequest) -> Result<u32, Status> {
        use nimbus_types::{keys, Entity, FunctionKey, QueryOutput};
        let get = |key: String| match self.sm.query(&Query::Get { key }) {
            Ok(QueryOutput::Entity(e)) => Ok(e),
            Ok(_) => Ok(None),
            Err(e) => Err(Status::internal(e.to_string())),
        };
        if !req.function_name.is_empty() {
            let key = FunctionKey {
                account_id: req.account_id.clone(),
                region: req.region.clone(),
                name: req.function_name.clone(),
            };
            return match get(keys::function(&key))? {
                Some(Entity::Function(f)) => Ok(f.reserved_concurrency.unwrap_or(0)),
                _ => Ok(0),
            };
        }
        let limit = match get(keys::account(&req.account_id))? {
            Some(Entity::Account(a)) => {
                a.limits
                    .get(&req.region)
                    .copied()
                    .unwrap_or_default()
                    .concurrent_executions
            }
            _ => return Ok(0),
        };
        let functions = match self.sm.query(&Query::List {
            prefix: keys::functions_of(&req.account_id, &req.region),
            start_after: None,
            limit: u32::MAX,
        }) {
            Ok(QueryOutput::Entities(v)) => v,
            Ok(_) => vec![],
            Err(e) => return Err(Status::internal(e.to_string())),
        };
        let reserved: u32 = functions
            .iter()
            .filter_map(|(_, e)| match e {
                Entity::Function(f) => f.reserved_concurrency,
                _ => None,
            })
            .sum();
        Ok(limit.saturating_sub(reserved))
    }

    fn peer(&self, addr: &str) -> Result<MetadataClient<Channel>, Status> {
        let mut peers = self.peers.lock().expect("lock not poisoned");
        let ch = match peers.get(addr) {
            Some(c) => c.clone(),
            None => {
                let c = crate::network::channel(addr)
                    .map_err(|e| Status::unavailable(e.to_string()))?;
                peers.insert(addr.to_string(), c.clone());
                c
            }
        };
        Ok(MetadataClient::new(ch)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20))
    }

    fn leader_addr(&self) -> Option<(NodeId, String)> {
        let m = self.raft.metrics().borrow().clone();
        let leader = m.current_leader?;
        let node = m.membership_config.membership().get_node(&leader)?.clone();
        Some((leader, node.addr))
    }

    /// Seals secrets in a command received from a client: code chunks and access-key
    /// secrets reach the Raft log, and disk, only as ciphertext.
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
            _ => {}
        }
    }
}

impl NodeContext {
    /// An access key's secret, opened with the cluster key.
    fn open_access_key(
        &self,
        access_key_id: &str,
    ) -> Result<nimbus_types::QueryOutput, nimbus_types::MetaError> {
        use nimbus_types::{MetaError, QueryOutput};
        let key = keys::access_key(access_key_id);
        match self.sm.query(&Query::Get { key: key.clone() })? {
            QueryOutput::Entity(Some(Entity::AccessKey(ak))) => {
                let secret = self
                    .key
                    .open(key.as_bytes(), &ak.secret_ciphertext)
                    .map_err(|e| {
                        MetaError::new(
                            nimbus_types::ErrorKind::Service,
                            format!("access key {access_key_id}: {e}"),
                        )
                    })?;
                Ok(QueryOutput::AccessKeySecret {
                    account_id: ak.account_id,
                    secret,
                })
            }
            _ => Err(MetaError::not_found(format!(
                "access key {access_key_id} not found"
            ))),
        }
    }
}

fn unavailable(msg: impl Into<String>) -> Status {
    Status::unavailable(msg.into())
}

/// The Raft service: hands peers' RPCs to openraft.
pub struct RaftService(pub Arc<NodeContext>);

fn decode_raft<T: serde::de::DeserializeOwned>(m: pb::RaftMessage) -> Result<T, Status> {
    postcard::from_bytes(&m.payload)
        .map_err(|e| Status::invalid_argument(format!("bad raft payload: {e}")))
}

fn encode_raft<T: serde::Serialize>(v: &T) -> Result<Response<pb::RaftMessage>, Status> {
    postcard::to_stdvec(v)
        .map(|payload| Response::new(pb::RaftMessage { payload }))
        .map_err(|e| Status::internal(e.to_string()))
}

#[tonic::async_trait]
impl pb::raft_server::Raft for RaftService {
    async fn append_entries(
        &self,
        req: Request<pb::RaftMessage>,
    ) -> Result<Response<pb::RaftMessage>, Status> {
        let rpc = decode_raft(req.into_inner())?;
        let resp = self
            .0
            .raft
            .append_entries(rpc)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        encode_raft(&resp)
    }

    async fn vote(
        &self,
        req: Request<pb::RaftMessage>,
    ) -> Result<Response<pb::RaftMessage>, Status> {
        let rpc = decode_raft(req.into_inner())?;
        let resp = self
            .0
            .raft
            .vote(rpc)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        encode_raft(&resp)
    }

    async fn install_snapshot(
        &self,
        req: Request<pb::RaftMessage>,
    ) -> Result<Response<pb::RaftMessage>, Status> {
        let rpc = decode_raft(req.into_inner())?;
        let resp = self
            .0
            .raft
            .install_snapshot(rpc)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        encode_raft(&resp)
    }
}

/// The metadata API.
pub struct MetadataService(pub Arc<NodeContext>);

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::WatchEvent, Status>> + Send>>;
type ChunkStream = Pin<Box<dyn Stream<Item = Result<pb::CodeChunk, Status>> + Send>>;
type BackupStream = Pin<Box<dyn Stream<Item = Result<pb::BackupChunk, Status>> + Send>>;

/// A fresh file name for a backup being streamed, beside the node's snapshots.
fn tempfile_in(ctx: &NodeContext) -> Result<std::path::PathBuf, Status> {
    Ok(ctx
        .sm
        .snapshot_dir()
        .join(format!("backup-{}.tar", uuid::Uuid::new_v4().simple())))
}

fn role_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Learner => "learner",
        ServerState::Candidate => "candidate",
        ServerState::Shutdown => "shutdown",
    }
}

#[tonic::async_trait]
impl pb::metadata_server::Metadata for MetadataService {
    async fn write(
        &self,
        req: Request<pb::WriteRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let ctx = &self.0;
        let forwarded = req.metadata().contains_key(FORWARDED);
        let req = req.into_inner();
        if req.request_id.is_empty() || req.request_id.len() > 128 {
            return Err(Status::invalid_argument(
                "request_id must be 1 to 128 bytes",
            ));
        }
        let mut command: Command =
            decode(&req.command).map_err(|e| Status::invalid_argument(e.to_string()))?;
        if !forwarded {
            ctx.seal(&mut command);
        }
        let entry = crate::raft_types::Request {
            request_id: req.request_id.clone(),
            command,
        };
        let result =
            tokio::time::timeout(ctx.write_timeout, ctx.raft.client_write(entry.clone())).await;
        match result {
            Err(_) => Err(unavailable(format!(
                "write not committed within {:?}: no quorum of metadata nodes reachable; retry with the same request id",
                ctx.write_timeout
            ))),
            Ok(Ok(resp)) => {
                let data = resp.data;
                Ok(Response::new(pb::WriteResponse { revision: data.revision, result: encode(&data.result) }))
            }
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                let (Some(leader), Some(node)) = (f.leader_id, f.leader_node) else {
                    return Err(unavailable("no metadata leader elected right now; retry"));
                };
                if forwarded || leader == ctx.id {
                    return Err(unavailable("leadership is changing; retry"));
                }
                let mut fwd = Request::new(pb::WriteRequest { request_id: entry.request_id, command: encode(&entry.command) });
                fwd.metadata_mut().insert(FORWARDED, "1".parse().expect("static header value"));
                fwd.set_timeout(ctx.write_timeout + Duration::from_secs(1));
                ctx.peer(&node.addr)?.write(fwd).await
            }
            Ok(Err(e)) => Err(unavailable(format!("raft: {e}"))),
        }
    }

    async fn read(
        &self,
        req: Request<pb::ReadRequest>,
    ) -> Result<Response<pb::ReadResponse>, Status> {
        let ctx = &self.0;
        let forwarded = req.metadata().contains_key(FORWARDED);
        let req = req.into_inner();
        let query: Query =
            decode(&req.query).map_err(|e| Status::invalid_argument(e.to_string()))?;
        if req.linearizable {
            if let Some(leader) = ctx.confirm_leader(forwarded, "linearizable read").await? {
                let mut fwd = Request::new(req);
                fwd.metadata_mut()
                    .insert(FORWARDED, "1".parse().expect("static header value"));
                return ctx.peer(&leader)?.read(fwd).await;
            }
        }
        let revision = *ctx.sm.applied_index().borrow();
        let result = match &query {
            Query::AccessKeySecret { access_key_id } => ctx.open_access_key(access_key_id),
            q => ctx.sm.query(q),
        };
        Ok(Response::new(pb::ReadResponse {
            revision,
            result: encode(&result),
        }))
    }

    type WatchStream = EventStream;

    async fn watch(
        &self,
        req: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let sm = self.0.sm.clone();
        let from = req.into_inner().from_revision.max(1);
        // Subscribe before reading history so nothing falls between the two.
        let mut live = sm.subscribe();
        let generation = sm.generation();
        let history = match sm
            .changes_since(from, usize::MAX)
            .map_err(|e| Status::internal(e.to_string()))?
        {
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
            for b in history {
                next = b.revision + 1;
                let ev = pb::WatchEvent {
                    revision: b.revision,
                    changes: encode(&*b.changes),
                };
                if tx.send(Ok(ev)).await.is_err() {
                    return;
                }
            }
            loop {
                let b = match live.recv().await {
                    Ok(b) => b,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        let _ = tx
                            .send(Err(Status::aborted(format!(
                                "watcher fell behind; resume from revision {next}"
                            ))))
                            .await;
                        return;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                if sm.generation() != generation {
                    let _ = tx
                        .send(Err(Status::aborted(format!(
                            "state replaced by a snapshot; resume from revision {next}"
                        ))))
                        .await;
                    return;
                }
                if b.revision < next {
                    continue;
                }
                next = b.revision + 1;
                let ev = pb::WatchEvent {
                    revision: b.revision,
                    changes: encode(&*b.changes),
                };
                if tx.send(Ok(ev)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    type FetchCodeStream = ChunkStream;

    async fn fetch_code(
        &self,
        req: Request<pb::FetchCodeRequest>,
    ) -> Result<Response<Self::FetchCodeStream>, Status> {
        let ctx = self.0.clone();
        let req = req.into_inner();
        let sha = req.code_sha256;
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
            Ok(nimbus_types::QueryOutput::Entity(Some(Entity::CodePackage(p)))) => p,
            Ok(_) => return Err(Status::not_found(format!("code package {sha} not found"))),
            Err(e) => return Err(Status::internal(e.to_string())),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        tokio::spawn(async move {
            let mut whole = sha2::Sha256::new();
            for i in 0..package.chunks {
                let chunk = read_chunk(&ctx, &package, i);
                let chunk = match chunk {
                    Ok(c) => c,
                    Err(s) => {
                        tracing::error!(code = %sha, chunk = i, "{}", s.message());
                        let _ = tx.send(Err(s)).await;
                        return;
                    }
                };
                whole.update(&chunk);
                if i + 1 == package.chunks {
                    use base64::Engine;
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
                if tx
                    .send(Ok(pb::CodeChunk {
                        index: i,
                        total: package.chunks,
                        data: chunk,
                    }))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    type BackupStream = BackupStream;

    async fn backup(
        &self,
        _req: Request<pb::BackupRequest>,
    ) -> Result<Response<Self::BackupStream>, Status> {
        let ctx = self.0.clone();
        // A read barrier: only the leader passes it, and once it has, this node has
        // applied every write acknowledged before the call, so the backup holds them all.
        match tokio::time::timeout(ctx.write_timeout, ctx.raft.ensure_linearizable()).await {
            Err(_) => return Err(unavailable("no quorum: cannot take a consistent backup")),
            Ok(Ok(_)) => {}
            Ok(Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(
                f,
            )))) => {
                let leader = match (f.leader_id, f.leader_node) {
                    (Some(id), Some(n)) => format!("node {id} at {}", n.addr),
                    _ => "not elected yet".to_string(),
                };
                return Err(Status::failed_precondition(format!(
                    "node {} is not the leader (leader: {leader}); back up from the leader",
                    ctx.id
                )));
            }
            Ok(Err(e)) => return Err(unavailable(format!("raft: {e}"))),
        }
        let file = tempfile_in(&ctx)?;
        let path = file.clone();
        let sm = ctx.sm.clone();
        let applied = tokio::task::spawn_blocking(move || sm.write_backup(&path))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(format!("backup failed: {e}")))?;
        tracing::info!(applied, "streaming a backup");
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let sent = async {
                let mut f = tokio::fs::File::open(&file).await?;
                loop {
                    let mut buf = vec![0u8; 1 << 20];
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
                let _ = tx.send(Err(Status::internal(e.to_string()))).await;
            }
            let _ = tokio::fs::remove_file(&file).await;
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn acquire_lease(
        &self,
        req: Request<pb::LeaseRequest>,
    ) -> Result<Response<pb::LeaseResponse>, Status> {
        let ctx = &self.0;
        let forwarded = req.metadata().contains_key(FORWARDED);
        let req = req.into_inner();
        // Leadership is confirmed with a quorum before every grant, so a deposed leader
        // that has not noticed yet cannot hand out slots (see crate::leases).
        if let Some(leader) = ctx.confirm_leader(forwarded, "lease").await? {
            let mut fwd = Request::new(req);
            fwd.metadata_mut()
                .insert(FORWARDED, "1".parse().expect("static header value"));
            return ctx.peer(&leader)?.acquire_lease(fwd).await;
        }
        let term = ctx.raft.metrics().borrow().current_term;
        let since = match *ctx.leading_since.lock().expect("lock not poisoned") {
            Some((t, since)) if t == term => since,
            // Not seen yet by the tracker: count from now, which is only later (safer).
            _ => std::time::Instant::now(),
        };
        let capacity = ctx.pool_capacity(&req)?;
        let (pool, want) = if req.function_name.is_empty() {
            (format!("u/{}/{}", req.account_id, req.region), req.want)
        } else {
            (
                format!("r/{}/{}/{}", req.account_id, req.region, req.function_name),
                req.want,
            )
        };
        let now = std::time::Instant::now();
        let mut ledger = ctx.leases.lock().expect("lock not poisoned");
        ledger.observe_term(term, since);
        let granted = ledger.grant(
            now,
            &crate::leases::LeaseRequest {
                gateway: req.gateway_id,
                pool,
                capacity,
                want,
                in_use: req.in_use,
                held: req.held,
                release: req.release,
            },
        );
        Ok(Response::new(pb::LeaseResponse {
            granted,
            lease_ms: ledger.lease().as_millis() as u64,
            capacity,
        }))
    }

    async fn node_status(
        &self,
        _req: Request<pb::NodeStatusRequest>,
    ) -> Result<Response<pb::NodeStatusResponse>, Status> {
        let ctx = &self.0;
        let m = ctx.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, node)| {
                let role = if Some(*id) == m.current_leader {
                    "leader"
                } else if voters.contains(id) {
                    "follower"
                } else {
                    "learner"
                };
                pb::Member {
                    id: *id,
                    addr: node.addr.clone(),
                    role: role.into(),
                }
            })
            .collect();
        Ok(Response::new(pb::NodeStatusResponse {
            id: ctx.id,
            addr: ctx.addr.clone(),
            role: role_name(m.state).into(),
            term: m.current_term,
            leader: m.current_leader,
            applied: m.last_applied.map(|l| l.index).unwrap_or(0),
            committed: m.last_applied.map(|l| l.index).unwrap_or(0),
            last_log: m.last_log_index.unwrap_or(0),
            snapshot_index: m.snapshot.map(|l| l.index),
            members,
        }))
    }

    async fn add_member(
        &self,
        req: Request<pb::AddMemberRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        let ctx = &self.0;
        let r = req.into_inner();
        if let Some(fwd) = self.leader_elsewhere()? {
            return ctx.peer(&fwd)?.add_member(r).await;
        }
        let _serial = ctx.admin_lock.lock().await;
        if r.id == 0 || !crate::node::is_node_addr(&r.addr) {
            return Err(Status::invalid_argument(
                "member needs a non-zero id and a HOST:PORT address",
            ));
        }
        if ctx
            .sm
            .query(&Query::Get {
                key: keys::retired_node(r.id),
            })
            .ok()
            != Some(nimbus_types::QueryOutput::Entity(None))
        {
            return Err(Status::already_exists(format!(
                "node id {} was used by a removed member; ids are never reused",
                r.id
            )));
        }
        let membership = ctx
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .clone();
        if membership.get_node(&r.id).is_some() {
            return Err(Status::already_exists(format!(
                "node {} is already a member",
                r.id
            )));
        }
        ctx.raft
            .add_learner(
                r.id,
                BasicNode {
                    addr: r.addr.clone(),
                },
                true,
            )
            .await
            .map_err(|e| unavailable(format!("adding learner {}: {e}", r.id)))?;
        let mut voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        voters.insert(r.id);
        ctx.raft
            .change_membership(voters, false)
            .await
            .map_err(|e| unavailable(format!("promoting {}: {e}", r.id)))?;
        Ok(Response::new(pb::AdminResponse {
            message: format!("node {} at {} is now a voting member", r.id, r.addr),
        }))
    }

    async fn remove_member(
        &self,
        req: Request<pb::RemoveMemberRequest>,
    ) -> Result<Response<pb::AdminResponse>, Status> {
        let ctx = &self.0;
        let r = req.into_inner();
        if let Some(fwd) = self.leader_elsewhere()? {
            return ctx.peer(&fwd)?.remove_member(r).await;
        }
        let _serial = ctx.admin_lock.lock().await;
        let membership = ctx
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .clone();
        if membership.get_node(&r.id).is_none() {
            return Err(Status::not_found(format!("node {} is not a member", r.id)));
        }
        let voters: BTreeSet<NodeId> = membership.voter_ids().filter(|v| *v != r.id).collect();
        if voters.is_empty() {
            return Err(Status::failed_precondition(
                "cannot remove the last voting member",
            ));
        }
        // Retire the id first: even if the removal is interrupted, the id is never reused.
        let retire = crate::raft_types::Request {
            request_id: uuid::Uuid::new_v4().to_string(),
            command: Command::RetireNode { id: r.id },
        };
        ctx.raft
            .client_write(retire)
            .await
            .map_err(|e| unavailable(format!("retiring id {}: {e}", r.id)))?;
        ctx.raft
            .change_membership(voters, false)
            .await
            .map_err(|e| unavailable(format!("removing {}: {e}", r.id)))?;
        Ok(Response::new(pb::AdminResponse {
            message: format!("node {} removed; its id is retired", r.id),
        }))
    }
}

impl MetadataService {
    /// The leader's address if it is another node; an error if there is none.
    fn leader_elsewhere(&self) -> Result<Option<String>, Status> {
        match self.0.leader_addr() {
            Some((id, _)) if id == self.0.id => Ok(None),
            Some((_, addr)) => Ok(Some(addr)),
            None => Err(unavailable("no metadata leader elected right now; retry")),
        }
    }
}

/// Reads, opens and verifies one chunk. A chunk that fails either check is never served.
fn read_chunk(
    ctx: &NodeContext,
    package: &nimbus_types::CodePackage,
    i: u32,
) -> Result<Vec<u8>, Status> {
    let sealed = ctx
        .sm
        .code_chunk(&package.sha256, i)
        .map_err(|e| Status::internal(e.to_string()))?
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

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
