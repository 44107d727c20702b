//! The Raft transport: openraft's RPCs over tonic, one lazily connected channel per peer.

use std::time::Duration;

use nimbus_proto::meta::raft_client::RaftClient;
use nimbus_proto::meta::RaftMessage;
use nimbus_tls::{Role, Transport};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use tonic::transport::Channel;

use crate::raft_types::{Node, NodeId, TypeConfig};

/// Builds connections to peers.
#[derive(Clone)]
pub struct Network(pub Transport);

/// A connection to one peer.
pub struct PeerConnection {
    client: Result<RaftClient<Channel>, String>,
}

/// Opens a lazily-connecting channel to a metadata node's address (`host:port`): the
/// server must hold a metadata node's certificate when `transport` is TLS.
pub fn channel(addr: &str, transport: &Transport) -> Result<Channel, nimbus_tls::TlsError> {
    transport.channel(addr, Role::Meta, |e| {
        e.connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5))
    })
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerConnection;

    async fn new_client(&mut self, _target: NodeId, node: &Node) -> PeerConnection {
        let client = channel(&node.addr, &self.0)
            .map(|c| {
                RaftClient::new(c)
                    .max_decoding_message_size(64 * 1024 * 1024)
                    .max_encoding_message_size(64 * 1024 * 1024)
            })
            .map_err(|e| e.to_string());
        PeerConnection { client }
    }
}

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, Node, RaftError<NodeId, E>>;

fn encode<T: serde::Serialize, E: std::error::Error>(
    v: &T,
) -> Result<RaftMessage, RPCError<NodeId, Node, E>> {
    postcard::to_stdvec(v)
        .map(|payload| RaftMessage { payload })
        .map_err(|e| RPCError::Network(NetworkError::new(&e)))
}

fn decode<T: serde::de::DeserializeOwned, E: std::error::Error>(
    m: RaftMessage,
) -> Result<T, RPCError<NodeId, Node, E>> {
    postcard::from_bytes(&m.payload).map_err(|e| RPCError::Network(NetworkError::new(&e)))
}

/// A transport failure. The peer's own Raft errors come back as gRPC statuses too; either
/// way openraft backs off and retries, which is what both need.
fn status_err<E: std::error::Error>(s: tonic::Status) -> RPCError<NodeId, Node, E> {
    match s.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => {
            RPCError::Unreachable(Unreachable::new(&s))
        }
        _ => RPCError::Network(NetworkError::new(&s)),
    }
}

impl PeerConnection {
    fn client<E: std::error::Error>(
        &self,
    ) -> Result<RaftClient<Channel>, RPCError<NodeId, Node, E>> {
        self.client
            .clone()
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&std::io::Error::other(e))))
    }
}

fn with_timeout<T>(msg: T, option: &RPCOption) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.set_timeout(option.hard_ttl());
    req
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        let msg = encode(&rpc)?;
        let resp = self
            .client()?
            .append_entries(with_timeout(msg, &option))
            .await
            .map_err(status_err)?;
        decode(resp.into_inner())
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        let msg = encode(&rpc)?;
        let resp = self
            .client()?
            .install_snapshot(with_timeout(msg, &option))
            .await
            .map_err(status_err)?;
        decode(resp.into_inner())
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr> {
        let msg = encode(&rpc)?;
        let resp = self
            .client()?
            .vote(with_timeout(msg, &option))
            .await
            .map_err(status_err)?;
        decode(resp.into_inner())
    }
}
