//! Provisioned concurrency: keeps the environments that `PutProvisionedConcurrencyConfig`
//! asked for initialised on the workers, and reports how many are.
//!
//! The configs live in the metadata (per function, per version or alias). Every gateway
//! runs [`spawn`]'s loop: each round it resolves every config of its region to function
//! versions (an alias with weighted routing splits its count by the weights) and asks the
//! workers, through [`Gateway::provision`], to hold that many
//! environments for a few rounds. Holds are set, not added, and shares are computed the
//! same way on every gateway, so several gateways renewing the same config agree; a hold
//! nobody renews (its config deleted, every gateway gone) ends by itself on the worker.
//! A change of config wakes the loop at once.
//!
//! What a round achieved is kept per config ([`Allocation`]) for the API's `Status` and
//! `AllocatedProvisionedConcurrentExecutions`, and for the ProvisionedConcurrency metrics.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nimbus_types::{keys, Entity, FunctionKey};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::core::resolve::{self, Resolved};
use crate::core::ApiError;
use crate::core::Gateway;
use crate::core::InvokeTarget;

/// What the last round achieved for one config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub requested: u32,
    /// Environments initialised and held now.
    pub allocated: u32,
    /// Why the last round fell short, if it did.
    pub error: Option<String>,
}

/// The configs' state on this gateway.
#[derive(Debug, Default)]
pub struct Provisioned {
    state: Mutex<State>,
    wake: Notify,
}

#[derive(Debug, Default)]
struct State {
    by_config: HashMap<(FunctionKey, String), Allocation>,
    /// The function versions held after the last round (to release those that drop out).
    held: Vec<InvokeTarget>,
}

impl Provisioned {
    /// The last round's result for `qualifier` of `key`, if a round has run for it.
    pub fn allocation(&self, key: &FunctionKey, qualifier: &str) -> Option<Allocation> {
        self.lock()
            .by_config
            .get(&(key.clone(), qualifier.to_string()))
            .cloned()
    }

    /// Runs a round now (after a config changed).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// How often holds are renewed; a hold lasts [`HOLD_ROUNDS`] rounds.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Rounds a hold survives without renewal (a slow round or a short metadata outage
/// must not drop environments).
pub const HOLD_ROUNDS: u32 = 4;

/// Starts the provisioning loop of `gw`; it ends when `shutdown` resolves (the holds then
/// run out on the workers unless another gateway renews them).
pub fn spawn(
    gw: Arc<Gateway>,
    interval: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        tokio::pin!(shutdown);
        loop {
            round(&gw, interval * HOLD_ROUNDS).await;
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(interval) => {}
                _ = gw.provisioned().wake.notified() => {}
            }
        }
    })
}

/// The configs of this gateway's region in the metadata now.
fn wanted(gw: &Gateway) -> Vec<(FunctionKey, String, u32)> {
    gw.catalog()
        .list(keys::FUNCTION, None, usize::MAX)
        .into_iter()
        .filter_map(|(_, e)| match e {
            Entity::Function(f) if f.key.region == gw.region() => Some(f),
            _ => None,
        })
        .flat_map(|f| {
            f.provisioned_concurrency
                .iter()
                .map(|(q, n)| (f.key.clone(), q.clone(), *n))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The function versions a config holds environments of, with their shares.
pub fn targets(
    gw: &Gateway,
    key: &FunctionKey,
    qualifier: &str,
    count: u32,
) -> Result<Vec<(InvokeTarget, u32)>, ApiError> {
    let arn = format!("{}:{qualifier}", key.arn());
    let version_target = |n: u64| -> Result<InvokeTarget, ApiError> {
        Ok(Resolved::Version(resolve::version(gw, key, n)?).into_target(gw, arn.clone()))
    };
    let parse = |v: &str| -> Result<u64, ApiError> {
        v.parse().map_err(|_| {
            ApiError::invalid(format!(
                "Provisioned Concurrency Configs cannot be applied to unpublished function versions ({arn} points to {v})."
            ))
        })
    };
    if qualifier.chars().all(|c| c.is_ascii_digit()) {
        return Ok(vec![(version_target(parse(qualifier)?)?, count)]);
    }
    let alias = resolve::alias(gw, key, qualifier)?;
    let main = parse(&alias.function_version)?;
    match alias.routing {
        Some(r) if r.weight > 0.0 => {
            let extra = ((f64::from(count) * r.weight).round() as u32).min(count);
            let mut out = Vec::new();
            if count - extra > 0 {
                out.push((version_target(main)?, count - extra));
            }
            if extra > 0 {
                out.push((version_target(r.version)?, extra));
            }
            Ok(out)
        }
        _ => Ok(vec![(version_target(main)?, count)]),
    }
}

/// One round: every config renewed, and versions no config holds any more released.
/// Configs that resolve to the same function version (an alias and the version it points
/// to) share one hold of their summed counts.
async fn round(gw: &Arc<Gateway>, hold: Duration) {
    let mut held: Vec<(InvokeTarget, u32)> = Vec::new();
    let mut configs = Vec::new();
    for (key, qualifier, count) in wanted(gw) {
        let shares = match targets(gw, &key, &qualifier, count) {
            Ok(targets) => Ok(targets
                .into_iter()
                .map(|(t, share)| {
                    let i = match held.iter().position(|(h, _)| h.same_revision(&t)) {
                        Some(i) => i,
                        None => {
                            held.push((t, 0));
                            held.len() - 1
                        }
                    };
                    held[i].1 += share;
                    (i, share)
                })
                .collect::<Vec<_>>()),
            Err(e) => Err(e.message),
        };
        configs.push((key, qualifier, count, shares));
    }
    let mut results: Vec<Result<u32, String>> = Vec::with_capacity(held.len());
    for (target, total) in &held {
        results.push(
            gw.provision(target, *total, hold)
                .await
                .map(|n| n.min(*total))
                .map_err(|e| e.message),
        );
    }
    // Each version's environments go to its configs in turn.
    let mut left: Vec<u32> = results.iter().map(|r| *r.as_ref().unwrap_or(&0)).collect();
    let mut by_config = HashMap::new();
    for (key, qualifier, count, shares) in configs {
        let allocation = match shares {
            Ok(shares) => {
                let mut allocated = 0;
                let mut error = None;
                for (i, share) in shares {
                    let n = share.min(left[i]);
                    left[i] -= n;
                    allocated += n;
                    if let Err(e) = &results[i] {
                        error.get_or_insert_with(|| e.clone());
                    }
                }
                if allocated < count && error.is_none() {
                    error = Some(format!(
                        "Only {allocated} of {count} environments could be initialised (not enough worker capacity)."
                    ));
                }
                Allocation {
                    requested: count,
                    allocated,
                    error,
                }
            }
            Err(message) => Allocation {
                requested: count,
                allocated: 0,
                error: Some(message),
            },
        };
        gw.metrics()
            .set_provisioned(&labels(&key, &qualifier), allocation.allocated);
        by_config.insert((key, qualifier), allocation);
    }
    let released = {
        let mut state = gw.provisioned().lock();
        for (key, qualifier) in state.by_config.keys() {
            if !by_config.contains_key(&(key.clone(), qualifier.clone())) {
                gw.metrics().clear_provisioned(&labels(key, qualifier));
            }
        }
        let now: Vec<InvokeTarget> = held.into_iter().map(|(t, _)| t).collect();
        let released: Vec<InvokeTarget> = state
            .held
            .iter()
            .filter(|t| !now.iter().any(|n| n.same_revision(t)))
            .cloned()
            .collect();
        state.by_config = by_config;
        state.held = now;
        released
    };
    for t in released {
        if let Err(e) = gw.provision(&t, 0, hold).await {
            tracing::debug!("releasing provisioned environments: {}", e.message);
        }
    }
}

fn labels(key: &FunctionKey, qualifier: &str) -> nimbus_telemetry::FunctionLabels {
    nimbus_telemetry::FunctionLabels::new(&key.account_id, &key.region, &key.name, Some(qualifier))
}
