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
//! A call at the edge runs a version whose code the location holds ([`ready`]): when an
//! alias has just moved and the new version's code is still on its way, the version it
//! stood for at the last complete push goes on running until the next one completes. So a
//! cut from the core right after a move never leaves the location with nothing it can
//! run, and the location never serves a mix: the switch happens once, when it holds the
//! new code.
//!
//! Each round also makes sure the gateway itself holds what it needs to serve the
//! location while cut off from the metadata cluster: the secrets of the access keys of
//! every account with a deployment there (so a caller never seen here before is still
//! verified) and the session key that role credentials are minted with.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nimbus_proto::worker as pb;
use nimbus_types::{keys, Entity, FunctionKey, Qualifier};
use tokio::task::JoinHandle;

use super::resolve::{self, Named};
use super::{Gateway, InvokeTarget};

/// What this gateway knows of its edge location's code: what the last complete push
/// round established (every live worker of the location held every deployed package).
#[derive(Default)]
pub struct EdgeState {
    held: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    /// The packages deployed at that round.
    packages: BTreeSet<String>,
    /// (function, qualifier as deployed) → the version it stood for at that round.
    versions: HashMap<(FunctionKey, String), u64>,
}

impl Held {
    fn holds(&self, target: &InvokeTarget) -> bool {
        self.packages.contains(&target.code.sha256)
            && target
                .config
                .layers
                .iter()
                .all(|l| self.packages.contains(&l.code.sha256))
    }
}

/// The target a call at the edge runs: `target` when the location holds its code, else
/// the version the same qualifier stood for at the last complete push (an alias moved a
/// moment ago), else `target` (its code is fetched as for any first call).
pub fn ready(gw: &Gateway, named: &Named, target: InvokeTarget) -> InvokeTarget {
    // One look at what the last complete round established. Reading the catalog under
    // this lock is safe: a round replaces the record without touching the catalog.
    let held = gw.edge.held.lock().unwrap_or_else(PoisonError::into_inner);
    if held.holds(&target) {
        return target;
    }
    let Some(qualifier) = &named.qualifier else {
        return target;
    };
    let earlier = held
        .versions
        .get(&(named.key.clone(), qualifier.clone()))
        .copied()
        .filter(|n| Qualifier::Version(*n) != target.version)
        .and_then(|n| resolve::version(gw, &named.key, n).ok())
        .map(|v| {
            let mut t = resolve::Resolved::Version(v).into_target(gw, target.invoked_arn.clone());
            t.edge_location = target.edge_location.clone();
            t
        });
    match earlier {
        Some(t) if held.holds(&t) => t,
        _ => target,
    }
}

/// The packages deployed to `location` in this gateway's region, from the catalog.
pub fn deployed_packages(gw: &Gateway, location: &str) -> BTreeSet<String> {
    deployed(gw, location).packages
}

/// What is deployed to one location, from the catalog.
#[derive(Default)]
struct Deployed {
    packages: BTreeSet<String>,
    /// The accounts deploying there.
    accounts: BTreeSet<String>,
    /// (function, qualifier) → the version it stands for now (an alias's main one).
    versions: HashMap<(FunctionKey, String), u64>,
}

fn deployed(gw: &Gateway, location: &str) -> Deployed {
    let mut out = Deployed::default();
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
            out.accounts.insert(f.key.account_id.clone());
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
            if let Some(main) = versions.first() {
                out.versions
                    .insert((f.key.clone(), qualifier.clone()), *main);
            }
            for n in versions {
                if let Ok(v) = resolve::version(gw, &f.key, n) {
                    out.packages.insert(v.code.sha256.clone());
                    out.packages
                        .extend(v.config.layers.iter().map(|l| l.code.sha256.clone()));
                }
            }
        }
    }
    out
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
    let Deployed {
        packages,
        accounts,
        versions,
    } = deployed(gw, location);
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
    let mut all_held = true;
    let mut asked = 0;
    for (worker, result) in futures::future::join_all(calls).await {
        asked += 1;
        all_held &= matches!(&result, Ok(r) if r.held as usize == packages.len());
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
    // What the location holds now: everything deployed, and each deployed qualifier's
    // version, when every live worker said so. Otherwise what it held before, unchanged:
    // the versions moved aliases stood for are what it can still run.
    if all_held && asked > 0 {
        *gw.edge.held.lock().unwrap_or_else(PoisonError::into_inner) = Held { packages, versions };
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
                // A moved alias's code is pushed soon, not up to a round later, so the
                // location switches to it soon; but at most every tenth of the interval,
                // since the catalog changes with every async event too.
                Ok(()) = changes.changed() => {
                    tokio::time::sleep(interval / 10).await;
                    changes.borrow_and_update();
                }
            }
        }
    }))
}
