//! A gateway's view of the metadata: listed once, then kept exact by the watch stream,
//! so an invocation resolves its function, version and alias without a Raft round trip.
//!
//! Besides the records, the catalog keeps per account and region what admission and
//! `GetAccountSettings` need on every call (the sum of reserved concurrency, the function
//! count and code size), updated as changes arrive instead of recounted per request.
//! The task following the watch stream stops when the catalog is dropped.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use futures::StreamExt;
use nimbus_meta::{ClientError, MetaClient};
use nimbus_types::{keys, Change, Entity, RegionLimits};
use tokio::sync::watch;
use tokio::task::AbortHandle;

/// The cached state and the revision it reflects.
pub struct Catalog {
    state: Arc<State>,
    /// The watch follower; aborted on drop, so a dropped gateway leaves no task behind.
    follower: AbortHandle,
}

struct State {
    data: RwLock<Data>,
    revision: watch::Sender<u64>,
}

#[derive(Default)]
struct Data {
    entities: BTreeMap<String, Entity>,
    /// (account, region) → totals over its functions.
    totals: HashMap<(String, String), Totals>,
}

/// Totals over the functions of one account in one region.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Σ reserved concurrency, edge locations' budgets included.
    pub reserved: u32,
    pub functions: usize,
    pub code_bytes: u64,
}

/// An account's concurrency in one region: its limit and what is reserved of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountConcurrency {
    pub limits: RegionLimits,
    pub totals: Totals,
}

impl AccountConcurrency {
    /// The pool shared by functions without reserved concurrency.
    pub fn unreserved(&self) -> u32 {
        self.limits.unreserved(self.totals.reserved)
    }
}

impl Data {
    /// The entities whose keys start with `prefix`, in key order.
    fn under<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a String, &'a Entity)> {
        use std::ops::Bound;
        self.entities
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(prefix))
    }

    fn adjust(&mut self, entity: &Entity, sign: i64) {
        let step = |v: u64, by: u64| {
            if sign > 0 {
                v.saturating_add(by)
            } else {
                v.saturating_sub(by)
            }
        };
        let f = match entity {
            Entity::Function(f) => f,
            // Set aside like a reservation: the unreserved pool excludes it.
            Entity::EdgeBudget(b) => {
                let t = self
                    .totals
                    .entry((b.account_id.clone(), b.region.clone()))
                    .or_default();
                t.reserved = step(u64::from(t.reserved), u64::from(b.slots)) as u32;
                return;
            }
            _ => return,
        };
        let t = self
            .totals
            .entry((f.key.account_id.clone(), f.key.region.clone()))
            .or_default();
        t.reserved = step(
            u64::from(t.reserved),
            u64::from(f.reserved_concurrency.unwrap_or(0)),
        ) as u32;
        t.functions = step(t.functions as u64, 1) as usize;
        t.code_bytes = step(t.code_bytes, f.code.size);
    }

    fn put(&mut self, key: String, value: Option<Entity>) {
        let old = match value {
            Some(v) => {
                self.adjust(&v, 1);
                self.entities.insert(key, v)
            }
            None => self.entities.remove(&key),
        };
        if let Some(old) = old {
            self.adjust(&old, -1);
        }
    }
}

impl State {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Data> {
        // A panic while applying changes leaves whole entities in the map; reading on is
        // better than failing every request of the gateway.
        self.data.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Data> {
        self.data.write().unwrap_or_else(PoisonError::into_inner)
    }

    async fn relist(&self, client: &MetaClient) -> Result<(), ClientError> {
        let (rev, all) = client.list("", None, u32::MAX).await?;
        {
            let mut data = self.write();
            *data = Data::default();
            for (k, v) in all {
                data.put(k, Some(v));
            }
        }
        self.revision.send_replace(rev);
        Ok(())
    }

    /// Applies changes until aborted, resuming after errors from the last revision seen.
    async fn follow(self: Arc<Self>, client: MetaClient) {
        loop {
            let from = *self.revision.borrow() + 1;
            match client.watch(from).await {
                Ok(stream) => {
                    let mut stream = Box::pin(stream);
                    while let Some(item) = stream.next().await {
                        match item {
                            Ok((rev, changes)) => self.apply(rev, changes),
                            Err(e) => {
                                tracing::debug!("watch ended: {e}; resuming");
                                break;
                            }
                        }
                    }
                }
                Err(ClientError::Compacted { .. }) => {
                    if let Err(e) = self.relist(&client).await {
                        tracing::warn!("re-listing metadata failed: {e}");
                    }
                }
                Err(e) => tracing::warn!("watching metadata failed: {e}; retrying"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn apply(&self, rev: u64, changes: Vec<Change>) {
        {
            let mut data = self.write();
            for ch in changes {
                data.put(ch.key, ch.value);
            }
        }
        self.revision.send_replace(rev);
    }
}

impl Drop for Catalog {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

impl Catalog {
    /// Lists everything, then follows the watch stream in the background.
    pub async fn start(client: MetaClient) -> Result<Arc<Self>, ClientError> {
        let state = Arc::new(State {
            data: RwLock::default(),
            revision: watch::channel(0).0,
        });
        state.relist(&client).await?;
        let follower = tokio::spawn(state.clone().follow(client)).abort_handle();
        Ok(Arc::new(Self { state, follower }))
    }

    /// A catalog of fixed records that follows nothing (tests).
    pub fn fixed(entities: impl IntoIterator<Item = (String, Entity)>, revision: u64) -> Self {
        let state = State {
            data: RwLock::default(),
            revision: watch::channel(revision).0,
        };
        {
            let mut data = state.write();
            for (k, v) in entities {
                data.put(k, Some(v));
            }
        }
        Self {
            state: Arc::new(state),
            follower: tokio::spawn(async {}).abort_handle(),
        }
    }

    /// Reads the entity at `key` in place under the catalog's read lock, without copying
    /// the record (for hot paths that need a small part of a large record). `f` must
    /// not call back into the catalog.
    pub fn with<T>(&self, key: &str, f: impl FnOnce(Option<&Entity>) -> T) -> T {
        f(self.state.read().entities.get(key))
    }

    pub fn get(&self, key: &str) -> Option<Entity> {
        self.state.read().entities.get(key).cloned()
    }

    /// Calls `f` with each entity under `prefix`, in key order, in place under the read
    /// lock (no copies). `f` must not call back into the catalog.
    pub fn for_each(&self, prefix: &str, mut f: impl FnMut(&str, &Entity)) {
        let data = self.state.read();
        for (k, v) in data.under(prefix) {
            f(k, v);
        }
    }

    /// Entities under `prefix` after `start_after`, at most `limit`.
    pub fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Vec<(String, Entity)> {
        let data = self.state.read();
        data.under(prefix)
            .filter(|(k, _)| start_after.is_none_or(|s| k.as_str() > s))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The account's limits in `region` and the totals over its functions there.
    pub fn account_concurrency(&self, account: &str, region: &str) -> AccountConcurrency {
        let data = self.state.read();
        let limits = match data.entities.get(&keys::account(account)) {
            Some(Entity::Account(a)) => a.limits.get(region).copied().unwrap_or_default(),
            _ => RegionLimits::default(),
        };
        let totals = data
            .totals
            .get(&(account.to_string(), region.to_string()))
            .copied()
            .unwrap_or_default();
        AccountConcurrency { limits, totals }
    }

    pub fn revision(&self) -> u64 {
        *self.state.revision.borrow()
    }

    /// Notified whenever the catalog moves to a new revision.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.state.revision.subscribe()
    }

    /// Waits until the catalog reflects `revision` (read-your-writes for this gateway's
    /// callers). Returns false on timeout.
    pub async fn wait_for(&self, revision: u64, timeout: Duration) -> bool {
        let mut rx = self.state.revision.subscribe();
        let reached = matches!(
            tokio::time::timeout(timeout, rx.wait_for(|r| *r >= revision)).await,
            Ok(Ok(_))
        );
        reached
    }
}
