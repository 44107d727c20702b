//! A gateway's view of the metadata: listed once, then kept exact by the watch stream,
//! so an invocation resolves its function, version and alias without a Raft round trip.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use nimbus_meta::{ClientError, MetaClient};
use nimbus_types::{Change, Entity};
use tokio::sync::watch;

/// The cached state and the revision it reflects.
pub struct MetaCache {
    entities: RwLock<BTreeMap<String, Entity>>,
    revision: watch::Sender<u64>,
}

impl MetaCache {
    /// Lists everything, then follows the watch stream in the background.
    pub async fn start(client: MetaClient) -> Result<Arc<Self>, ClientError> {
        let cache = Arc::new(Self {
            entities: RwLock::new(BTreeMap::new()),
            revision: watch::channel(0).0,
        });
        cache.relist(&client).await?;
        let c = cache.clone();
        tokio::spawn(async move { c.follow(client).await });
        Ok(cache)
    }

    async fn relist(&self, client: &MetaClient) -> Result<(), ClientError> {
        let (rev, all) = client.list("", None, u32::MAX).await?;
        *self.entities.write().expect("lock not poisoned") = all.into_iter().collect();
        self.revision.send_replace(rev);
        Ok(())
    }

    /// Applies changes forever, resuming after errors from the last revision seen.
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
            let mut map = self.entities.write().expect("lock not poisoned");
            for ch in changes {
                match ch.value {
                    Some(v) => map.insert(ch.key, v),
                    None => map.remove(&ch.key),
                };
            }
        }
        self.revision.send_replace(rev);
    }

    pub fn get(&self, key: &str) -> Option<Entity> {
        self.entities
            .read()
            .expect("lock not poisoned")
            .get(key)
            .cloned()
    }

    /// Entities under `prefix` after `start_after`, at most `limit`.
    pub fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Vec<(String, Entity)> {
        let map = self.entities.read().expect("lock not poisoned");
        map.range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(k, _)| start_after.is_none_or(|s| k.as_str() > s))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    pub fn revision(&self) -> u64 {
        *self.revision.borrow()
    }

    /// Notified whenever the cache moves to a new revision.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.revision.subscribe()
    }

    /// Waits until the cache reflects `revision` (read-your-writes for this gateway's
    /// callers). Returns false on timeout.
    pub async fn wait_for(&self, revision: u64, timeout: Duration) -> bool {
        let mut rx = self.revision.subscribe();
        let reached = matches!(
            tokio::time::timeout(timeout, rx.wait_for(|r| *r >= revision)).await,
            Ok(Ok(_))
        );
        reached
    }
}
