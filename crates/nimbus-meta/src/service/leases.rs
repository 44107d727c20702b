//! Concurrency leases for gateways, granted by the leader (the policy is
//! [`crate::leases`]; this is its RPC and the pool capacities it reads).

use std::time::{Duration, Instant};

use nimbus_proto::meta as pb;
use nimbus_types::{keys, Entity, FunctionKey, Query, QueryOutput};
use tonic::{Request, Response, Status};

use super::forward::{Check, OnLeader};
use super::{internal, NodeContext};
use crate::leases::LeaseRequest;
use crate::sync::lock;

/// How long a concurrency lease is valid; a crashed gateway's slots return after this.
// 5 s, renewed every second: a leader change (election plus the gateways' failover,
// 1–3 s) fits inside a lease renewed just before it, so the new leader's warm-up renews
// what gateways hold instead of throttling them (the chaos rolling restart showed 429s
// with 3 s). The cost: a crashed gateway's slots return after at most 5 s.
pub const LEASE: Duration = Duration::from_secs(5);

pub(super) async fn acquire_lease(
    ctx: &NodeContext,
    req: Request<pb::LeaseRequest>,
) -> Result<Response<pb::LeaseResponse>, Status> {
    // Leadership is confirmed with a quorum before every grant, so a deposed leader
    // that has not noticed yet cannot hand out slots (see crate::leases).
    let req = match ctx.on_leader(req, Check::Quorum("lease")).await? {
        OnLeader::Here(r) => r,
        OnLeader::Answered(a) => return Ok(a),
    };
    let term = ctx.raft.metrics().borrow().current_term;
    // Not seen leading yet by the tracker: count from now, which is only later (safer).
    let since = ctx.quorum.leading_since(term).unwrap_or_else(Instant::now);
    let capacity = ctx.pool_capacity(&req)?;
    let pool = if req.function_name.is_empty() {
        format!("u/{}/{}", req.account_id, req.region)
    } else {
        format!("r/{}/{}/{}", req.account_id, req.region, req.function_name)
    };
    let now = Instant::now();
    let mut ledger = lock(&ctx.leases);
    ledger.observe_term(term, since);
    let granted = ledger.grant(
        now,
        &LeaseRequest {
            gateway: req.gateway_id,
            pool,
            capacity,
            want: req.want,
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

impl NodeContext {
    /// Keeps check-quorum told of this node's term, role and voters, from openraft's
    /// server metrics; it also records since when this node leads its term, which the
    /// lease ledger's warm-up counts from. (Server metrics change with the vote, role,
    /// leader and membership only; the full metrics change several times per write, and
    /// each change woke this task.)
    pub fn track_leadership(&self) {
        let mut rx = self.raft.server_metrics();
        let quorum = self.quorum.clone();
        tokio::spawn(async move {
            loop {
                quorum.observe(&rx.borrow_and_update());
                if rx.changed().await.is_err() {
                    break;
                }
            }
        });
    }

    /// A concurrency pool's capacity, from this node's state machine: a function's
    /// reserved concurrency, or the account's limit minus everything reserved and every
    /// edge budget in the region.
    fn pool_capacity(&self, req: &pb::LeaseRequest) -> Result<u32, Status> {
        let get = |key: String| match self.sm.query(&Query::Get { key }) {
            Ok(QueryOutput::Entity(e)) => Ok(e),
            Ok(_) => Ok(None),
            Err(e) => Err(internal(e)),
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
        let limits = match get(keys::account(&req.account_id))? {
            Some(Entity::Account(a)) => a.limits.get(&req.region).copied().unwrap_or_default(),
            _ => return Ok(0),
        };
        let functions = match self.sm.query(&Query::List {
            prefix: keys::functions_of(&req.account_id, &req.region),
            start_after: None,
            limit: u32::MAX,
        }) {
            Ok(QueryOutput::Entities(v)) => v,
            Ok(_) => vec![],
            Err(e) => return Err(internal(e)),
        };
        // Edge locations' budgets are set aside like reservations: their gateways admit
        // against them locally, so the region's leases never include them.
        let budgets = match self.sm.query(&Query::List {
            prefix: keys::edge_budgets_of(&req.account_id, &req.region),
            start_after: None,
            limit: u32::MAX,
        }) {
            Ok(QueryOutput::Entities(v)) => v,
            Ok(_) => vec![],
            Err(e) => return Err(internal(e)),
        };
        let reserved: u32 = functions
            .iter()
            .chain(&budgets)
            .filter_map(|(_, e)| match e {
                Entity::Function(f) => f.reserved_concurrency,
                Entity::EdgeBudget(b) => Some(b.slots),
                _ => None,
            })
            .fold(0u32, u32::saturating_add);
        Ok(limits.unreserved(reserved))
    }
}
