//! Code pushed ahead to an edge location: a gateway serving an edge location tells its
//! location's live workers, every round, which packages are deployed there (the code and
//! layers of every version a deployed qualifier stands for: both versions of a weighted
//! alias). Workers fetch them by hash from the metadata cluster, as they would for an
//! invocation, so the first call at the edge never waits for a fetch from the core, and a
//! moved alias's version is there within a round.
//!
//! The gateway drives this, not the worker: a worker may read no function records (they
//! hold tenants' environment variables); it only ever learns hashes.
//!
//! Each round also makes sure the gateway itself holds what it needs to serve the
//! location while cut off from the metadata cluster: the secrets of the access keys of
//! every account with a deployment there (so a caller never seen here before is still
//! verified) and the session key that role credentials are minted with.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use nimbus_proto::worker as pb;
use nimbus_types::{keys, Entity};
use tokio::task::JoinHandle;

use super::resolve;
use super::Gateway;

/// How often deployed code is pushed (and kept fresh in the workers' caches).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);
/// A catalog change (an alias moved) starts a round early, at most this often: the
/// catalog changes with every async event too.
const EARLIEST_AFTER_CHANGE: Duration = Duration::from_millis(200);

/// The packages deployed to `location` in this gateway's region, from the catalog.
pub fn deployed_packages(gw: &Gateway, location: &str) -> BTreeSet<String> {
    deployed(gw, location).0
}

/// The packages deployed to `location`, and the accounts they belong to.
fn deployed(gw: &Gateway, location: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut packages = BTreeSet::new();
    let mut accounts = BTreeSet::new();
    for (_, entity) in gw.catalog().list(keys::FUNCTION, None, usize::MAX) {
        let Entity::Function(f) = entity else {
            continue;
        };
        if f.key.region != gw.region() {
            continue;
        }
        for (qualifier, locations) in &f.edge_deployments {
            if !locations.iter().any(|l| l == location) {
                continue;
            }
            accounts.insert(f.key.account_id.clone());
            let versions: Vec<u64> = match qualifier.parse() {
                Ok(n) => vec![n],
                Err(_) => match resolve::alias(gw, &f.key, qualifier) {
                    Ok(a) => a
                        .function_version
                        .parse()
                        .ok()
                        .into_iter()
                        .chain(a.routing.map(|r| r.version))
                        .collect(),
                    Err(_) => vec![],
                },
            };
            for n in versions {
                if let Ok(v) = resolve::version(gw, &f.key, n) {
                    packages.insert(v.code.sha256.clone());
                    packages.extend(v.config.layers.iter().map(|l| l.code.sha256.clone()));
                }
            }
        }
    }
    (packages, accounts)
}

/// The access keys of `accounts` the catalog holds, active ones only.
fn access_keys_of(gw: &Gateway, accounts: &BTreeSet<String>) -> Vec<String> {
    gw.catalog()
        .list(keys::ACCESS_KEY, None, usize::MAX)
        .into_iter()
        .filter_map(|(_, e)| match e {
            Entity::AccessKey(k) if k.active && accounts.contains(&k.account_id) => {
                Some(k.access_key_id)
            }
            _ => None,
        })
        .collect()
}

/// One round: every live worker of the location is asked to hold the deployed packages,
/// and this gateway holds the deploying accounts' key secrets and the session key.
async fn push(gw: &Gateway, location: &str) {
    let (packages, accounts) = deployed(gw, location);
    if packages.is_empty() {
        return;
    }
    // Cached after the first round; fetched again only for new or rotated keys.
    for key in access_keys_of(gw, &accounts) {
        if let Err(e) = gw.credentials().get(gw.catalog(), gw.meta(), &key).await {
            tracing::debug!("holding the secret of {key} for the edge: {e}");
        }
    }
    if let Err(e) = gw.session_key().await {
        tracing::debug!("holding the session key for the edge: {e}");
    }
    let request = pb::PrefetchRequest {
        code_sha256: packages.iter().cloned().collect(),
        code_revision: gw.catalog().revision(),
    };
    let workers = gw
        .workers
        .live()
        .into_iter()
        .filter(|w| w.edge_location.as_deref() == Some(location));
    let calls = workers.map(|w| {
        let call = gw.workers.prefetch(&w.id, request.clone());
        async move { (w.id, call.await) }
    });
    for (worker, result) in futures::future::join_all(calls).await {
        match result {
            Ok(r) if r.held as usize == packages.len() => {}
            Ok(r) => tracing::warn!(
                %worker,
                held = r.held,
                deployed = packages.len(),
                "an edge worker could not fetch all deployed code yet"
            ),
            Err(e) => tracing::debug!(%worker, "pushing deployed code: {e}"),
        }
    }
}

/// Starts pushing deployed code to this gateway's edge location, if it serves one; the
/// loop ends when `shutdown` resolves.
pub fn spawn(
    gw: Arc<Gateway>,
    interval: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Option<JoinHandle<()>> {
    let location = gw.placement.edge_location.clone()?;
    Some(tokio::spawn(async move {
        tokio::pin!(shutdown);
        let mut changes = gw.catalog().subscribe();
        loop {
            push(&gw, &location).await;
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(interval) => {}
                // A moved alias's code is pushed at once, not up to a round later: the
                // shorter the time a location serves a version it does not hold yet, the
                // smaller the chance a cut off location cannot serve it.
                Ok(()) = changes.changed() => {
                    tokio::time::sleep(EARLIEST_AFTER_CHANGE).await;
                    changes.borrow_and_update();
                }
            }
        }
    }))
}
