//! The metadata client used by gateways, workers and the CLI.
//!
//! Any node can take any call (followers forward to the leader). The client keeps a
//! preferred node, moves on when one is unreachable or has no leader, and retries each
//! write with the same request id until its deadline, so a retry after a leader crash is
//! applied at most once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nimbus_proto::meta as pb;
use nimbus_proto::meta::metadata_client::MetadataClient;
use nimbus_tls::Transport;
use nimbus_types::limits::CODE_CHUNK_BYTES;
use nimbus_types::{
    decode, encode, validate, Change, CodePackage, CodeRef, Command, CommandOutput, Entity,
    MetaError, Query, QueryOutput,
};
use sha2::Digest;
use tonic::transport::Channel;

use crate::error::ClientError;

/// A connection to the metadata cluster.
#[derive(Clone)]
pub struct MetaClient {
    endpoints: Vec<(String, MetadataClient<Channel>)>,
    preferred: std::sync::Arc<AtomicUsize>,
    /// How long a call keeps trying other nodes before it gives up.
    pub deadline: Duration,
}

fn retryable(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        tonic::Code::Unavailable
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Unknown
            | tonic::Code::Cancelled
    )
}

impl MetaClient {
    /// A client for these node addresses (`host:port`), over `transport`. Connects
    /// lazily.
    pub fn new<S: AsRef<str>>(addrs: &[S], transport: &Transport) -> Result<Self, ClientError> {
        if addrs.is_empty() {
            return Err(ClientError::Protocol(
                "no metadata node addresses given".into(),
            ));
        }
        let mut endpoints = Vec::new();
        for a in addrs {
            let ch = crate::network::channel(a.as_ref(), transport)
                .map_err(|e| ClientError::Protocol(format!("{}: {e}", a.as_ref())))?;
            let c = MetadataClient::new(ch)
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20);
            endpoints.push((a.as_ref().to_string(), c));
        }
        Ok(Self {
            endpoints,
            preferred: Default::default(),
            deadline: Duration::from_secs(10),
        })
    }

    /// Parses a comma-separated address list.
    pub fn from_list(list: &str, transport: &Transport) -> Result<Self, ClientError> {
        let addrs: Vec<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        Self::new(&addrs, transport)
    }

    pub fn addresses(&self) -> impl Iterator<Item = &str> {
        self.endpoints.iter().map(|(a, _)| a.as_str())
    }

    /// Runs `call` against nodes in turn until one answers or the deadline passes.
    async fn with_failover<T, F, Fut>(&self, mut call: F) -> Result<T, ClientError>
    where
        F: FnMut(MetadataClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        let start = Instant::now();
        let mut attempt = 0usize;
        let mut last_err: String;
        loop {
            let i = (self.preferred.load(Ordering::Relaxed) + attempt) % self.endpoints.len();
            let (addr, client) = &self.endpoints[i];
            match call(client.clone()).await {
                Ok(v) => {
                    self.preferred.store(i, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(s) if retryable(&s) => {
                    last_err = format!("{addr}: {}", s.message());
                }
                Err(s) if s.code() == tonic::Code::NotFound => {
                    return Err(ClientError::Meta(MetaError::not_found(s.message())));
                }
                Err(s)
                    if matches!(
                        s.code(),
                        tonic::Code::PermissionDenied | tonic::Code::Unauthenticated
                    ) =>
                {
                    return Err(ClientError::Denied(format!("{addr}: {}", s.message())));
                }
                Err(s) if s.code() == tonic::Code::OutOfRange => {
                    return Err(ClientError::Compacted {
                        requested: 0,
                        oldest: 0,
                    });
                }
                Err(s) => {
                    return Err(ClientError::Protocol(format!(
                        "{addr}: {:?}: {}",
                        s.code(),
                        s.message()
                    )))
                }
            }
            attempt += 1;
            if start.elapsed() >= self.deadline {
                return Err(ClientError::Unavailable(last_err));
            }
            // Back off a little once every node has been tried.
            if attempt.is_multiple_of(self.endpoints.len()) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// Applies a command with a fresh request id.
    pub async fn write(&self, command: Command) -> Result<(u64, CommandOutput), ClientError> {
        self.write_with_id(&uuid::Uuid::new_v4().to_string(), &command)
            .await
    }

    /// Applies a command; calling again with the same id returns the first result.
    pub async fn write_with_id(
        &self,
        request_id: &str,
        command: &Command,
    ) -> Result<(u64, CommandOutput), ClientError> {
        let bytes = encode(command);
        let resp = self
            .with_failover(|mut c| {
                let req = pb::WriteRequest {
                    request_id: request_id.to_string(),
                    command: bytes.clone(),
                };
                async move { c.write(req).await.map(|r| r.into_inner()) }
            })
            .await?;
        let result: Result<CommandOutput, MetaError> = decode(&resp.result)?;
        Ok((resp.revision, result?))
    }

    /// Runs a query; `linearizable` reads reflect every write acknowledged before the call.
    pub async fn read(
        &self,
        query: &Query,
        linearizable: bool,
    ) -> Result<(u64, QueryOutput), ClientError> {
        let bytes = encode(query);
        let resp = self
            .with_failover(|mut c| {
                let req = pb::ReadRequest {
                    query: bytes.clone(),
                    linearizable,
                };
                async move { c.read(req).await.map(|r| r.into_inner()) }
            })
            .await?;
        let result: Result<QueryOutput, MetaError> = decode(&resp.result)?;
        Ok((resp.revision, result?))
    }

    /// One entity, read linearizably.
    pub async fn get(&self, key: &str) -> Result<Option<Entity>, ClientError> {
        match self
            .read(
                &Query::Get {
                    key: key.to_string(),
                },
                true,
            )
            .await?
            .1
        {
            QueryOutput::Entity(e) => Ok(e),
            _ => Err(ClientError::Protocol("expected one entity".into())),
        }
    }

    /// Entities under a prefix, read linearizably, with the revision they reflect.
    pub async fn list(
        &self,
        prefix: &str,
        start_after: Option<String>,
        limit: u32,
    ) -> Result<(u64, Vec<(String, Entity)>), ClientError> {
        let q = Query::List {
            prefix: prefix.to_string(),
            start_after,
            limit,
        };
        match self.read(&q, true).await? {
            (rev, QueryOutput::Entities(v)) => Ok((rev, v)),
            _ => Err(ClientError::Protocol("expected a list".into())),
        }
    }

    /// An access key's account, owner, state and secret (linearizable).
    pub async fn access_key_secret(&self, access_key_id: &str) -> Result<KeySecret, ClientError> {
        let q = Query::AccessKeySecret {
            access_key_id: access_key_id.to_string(),
        };
        match self.read(&q, true).await?.1 {
            QueryOutput::AccessKeySecret {
                account_id,
                secret,
                user_name,
                active,
            } => Ok(KeySecret {
                account_id,
                secret,
                user_name,
                active,
            }),
            _ => Err(ClientError::Protocol("expected an access key".into())),
        }
    }

    /// The key gateways sign session tokens with (gateways only).
    pub async fn session_signing_key(&self) -> Result<Vec<u8>, ClientError> {
        match self.read(&Query::SessionSigningKey, false).await?.1 {
            QueryOutput::SessionSigningKey(k) => Ok(k),
            _ => Err(ClientError::Protocol("expected the session key".into())),
        }
    }

    /// The status of one node (no failover: the caller asked about that node).
    pub async fn node_status(
        addr: &str,
        transport: &Transport,
    ) -> Result<pb::NodeStatusResponse, ClientError> {
        let ch = crate::network::channel(addr, transport)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let mut c = MetadataClient::new(ch);
        let mut req = tonic::Request::new(pb::NodeStatusRequest {});
        req.set_timeout(Duration::from_secs(2));
        c.node_status(req)
            .await
            .map(|r| r.into_inner())
            .map_err(|s| ClientError::Unavailable(format!("{addr}: {}", s.message())))
    }

    /// Streams a backup of the whole store from the node at `addr` (it must be the
    /// leader) into `out` (written to `out.partial`, renamed once complete). Returns the
    /// log index the backup holds state up to.
    pub async fn backup(
        addr: &str,
        out: &std::path::Path,
        transport: &Transport,
    ) -> Result<u64, ClientError> {
        use tokio::io::AsyncWriteExt;
        let ch = crate::network::channel(addr, transport)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let mut c = MetadataClient::new(ch).max_decoding_message_size(64 << 20);
        let status_err = |s: tonic::Status| match s.code() {
            tonic::Code::FailedPrecondition => ClientError::Protocol(s.message().to_string()),
            tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => {
                ClientError::Denied(s.message().to_string())
            }
            _ => ClientError::Unavailable(format!("{addr}: {}", s.message())),
        };
        let mut stream = c
            .backup(pb::BackupRequest {})
            .await
            .map_err(status_err)?
            .into_inner();
        let partial = out.with_extension("partial");
        let io = |e: std::io::Error| ClientError::Protocol(format!("{}: {e}", partial.display()));
        let mut f = tokio::fs::File::create(&partial).await.map_err(io)?;
        let mut applied = 0;
        while let Some(chunk) = stream.message().await.map_err(status_err)? {
            applied = chunk.applied_index;
            f.write_all(&chunk.data).await.map_err(io)?;
        }
        f.sync_all().await.map_err(io)?;
        drop(f);
        tokio::fs::rename(&partial, out).await.map_err(io)?;
        Ok(applied)
    }

    pub async fn add_member(&self, id: u64, addr: &str) -> Result<String, ClientError> {
        self.with_failover(|mut c| {
            let req = pb::AddMemberRequest {
                id,
                addr: addr.to_string(),
            };
            async move { c.add_member(req).await.map(|r| r.into_inner().message) }
        })
        .await
    }

    /// Asks the leader for concurrency slots (see [`crate::leases`]).
    pub async fn acquire_lease(
        &self,
        req: pb::LeaseRequest,
    ) -> Result<pb::LeaseResponse, ClientError> {
        self.with_failover(|mut c| {
            let req = req.clone();
            async move { c.acquire_lease(req).await.map(|r| r.into_inner()) }
        })
        .await
    }

    pub async fn remove_member(&self, id: u64) -> Result<String, ClientError> {
        self.with_failover(|mut c| async move {
            c.remove_member(pb::RemoveMemberRequest { id })
                .await
                .map(|r| r.into_inner().message)
        })
        .await
    }

    /// Every change from `from_revision` on, in order, then live ones. The stream ends
    /// with an error when the node goes away or the watcher falls behind; call again
    /// from the last revision seen + 1.
    pub async fn watch(
        &self,
        from_revision: u64,
    ) -> Result<impl futures::Stream<Item = Result<(u64, Vec<Change>), ClientError>>, ClientError>
    {
        use futures::StreamExt;
        let stream = self
            .with_failover(|mut c| async move {
                c.watch(pb::WatchRequest { from_revision })
                    .await
                    .map(|r| r.into_inner())
            })
            .await
            .map_err(|e| match e {
                ClientError::Compacted { .. } => ClientError::Compacted {
                    requested: from_revision,
                    oldest: 0,
                },
                e => e,
            })?;
        Ok(stream.map(|item| match item {
            Ok(ev) => Ok((ev.revision, decode::<Vec<Change>>(&ev.changes)?)),
            Err(s) => Err(ClientError::Unavailable(s.message().to_string())),
        }))
    }

    /// Validates a zip, uploads it chunk by chunk (one Raft entry each), and seals it.
    /// Uploading a package that is already stored is a no-op. Returns the package and a
    /// revision at which it is known to be stored (for [`fetch_code`](Self::fetch_code)).
    pub async fn upload_code(&self, zip: &[u8]) -> Result<(u64, CodeRef), ClientError> {
        let unzipped_size = validate::code_zip(zip)?;
        let sha256 = validate::code_sha256(zip);
        let code = CodeRef {
            sha256: sha256.clone(),
            size: zip.len() as u64,
        };
        let existing = Query::Get {
            key: nimbus_types::keys::code(&sha256),
        };
        if let (rev, QueryOutput::Entity(Some(Entity::CodePackage(_)))) =
            self.read(&existing, true).await?
        {
            return Ok((rev, code));
        }
        let mut chunk_sha256 = Vec::new();
        for (i, chunk) in zip.chunks(CODE_CHUNK_BYTES).enumerate() {
            chunk_sha256.push(crate::service::hex(&sha2::Sha256::digest(chunk)));
            let cmd = Command::PutCodeChunk {
                sha256: sha256.clone(),
                index: i as u32,
                ciphertext: chunk.to_vec(),
            };
            self.write(cmd).await?;
        }
        let package = CodePackage {
            sha256,
            size: zip.len() as u64,
            unzipped_size,
            chunks: chunk_sha256.len() as u32,
            chunk_sha256,
        };
        let (rev, _) = self.write(Command::CommitCode { package }).await?;
        Ok((rev, code))
    }

    /// Downloads a code package, verifying every chunk and the whole against its hash.
    /// `min_revision`: a revision at which the package is known to exist (0 if unknown).
    pub async fn fetch_code(
        &self,
        sha256: &str,
        min_revision: u64,
    ) -> Result<Vec<u8>, ClientError> {
        use futures::StreamExt;
        let mut stream = self
            .with_failover(|mut c| {
                let req = pb::FetchCodeRequest {
                    code_sha256: sha256.to_string(),
                    min_revision,
                };
                async move { c.fetch_code(req).await.map(|r| r.into_inner()) }
            })
            .await?;
        let mut out = Vec::new();
        while let Some(item) = stream.next().await {
            let chunk = item.map_err(|s| match s.code() {
                tonic::Code::NotFound => ClientError::Meta(MetaError::not_found(s.message())),
                _ => ClientError::Meta(MetaError::new(
                    nimbus_types::ErrorKind::Service,
                    s.message(),
                )),
            })?;
            out.extend_from_slice(&chunk.data);
        }
        if validate::code_sha256(&out) != sha256 {
            return Err(ClientError::Meta(MetaError::new(
                nimbus_types::ErrorKind::Service,
                format!("code package {sha256} failed verification"),
            )));
        }
        Ok(out)
    }
}

/// An access key as a gateway needs it to verify a signature.
#[derive(Clone)]
pub struct KeySecret {
    pub account_id: String,
    pub secret: Vec<u8>,
    /// `None`: the account's root.
    pub user_name: Option<String>,
    pub active: bool,
}

impl std::fmt::Debug for KeySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret never reaches a log line.
        f.debug_struct("KeySecret")
            .field("account_id", &self.account_id)
            .field("user_name", &self.user_name)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}
