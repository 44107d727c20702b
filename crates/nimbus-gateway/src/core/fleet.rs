//! What this gateway has learned about each worker beyond what the transport reports:
//! the load a worker sent with its last answer, whether it refused a moment ago, and how
//! many of this gateway's invocations it is running. [`Fleet::plan`] turns that into a
//! placement order with [`placement::order`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use nimbus_proto::worker as pb;
use tokio::time::{Duration, Instant};

use super::placement::{self, Candidate};
use super::workers::WorkerView;

#[derive(Default)]
struct Local {
    /// The load it reported with its last answer, and when.
    load: Option<(Instant, pb::WorkerLoad)>,
    suspect_until: Option<Instant>,
    in_flight: Arc<AtomicUsize>,
    /// This gateway's invocations in flight on it, per revision: an environment the
    /// worker last reported idle is taken while one of them runs.
    by_revision: ByRevision,
}

/// Invocations in flight per revision on one worker.
type ByRevision = Arc<Mutex<HashMap<String, usize>>>;

/// Per-worker knowledge of one gateway.
#[derive(Default)]
pub struct Fleet {
    workers: Mutex<HashMap<String, Local>>,
}

/// Counts one invocation in flight on a worker (and of its revision) for as long as it
/// lives.
pub struct InFlight(Arc<AtomicUsize>, Option<(ByRevision, String)>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
        if let Some((map, revision)) = &self.1 {
            let mut m = map.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(n) = m.get_mut(revision) {
                *n -= 1;
                if *n == 0 {
                    m.remove(revision);
                }
            }
        }
    }
}

impl Fleet {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Local>> {
        // Entries are plain values updated in single steps: a panic elsewhere cannot
        // leave one half-written.
        self.workers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The order in which to try `live` workers for `revision_id`: by placement policy,
    /// except that workers which failed a moment ago come last (not skipped: when every
    /// worker restarted recently they are the only choice). A worker's own report on a
    /// recent answer is fresher than its heartbeat, so it counts when younger than
    /// `fresh_for`.
    pub fn plan(
        &self,
        live: Vec<WorkerView>,
        revision_id: &str,
        fresh_for: Duration,
    ) -> Vec<String> {
        self.plan_from(live, revision_id, fresh_for, None)
    }

    /// [`Self::plan`] for a gateway in `home_zone`.
    pub fn plan_from(
        &self,
        live: Vec<WorkerView>,
        revision_id: &str,
        fresh_for: Duration,
        home_zone: Option<&str>,
    ) -> Vec<String> {
        let mut locals = self.lock();
        let now = Instant::now();
        let (mut candidates, mut suspects) = (Vec::new(), Vec::new());
        let mut holding: HashMap<Option<String>, usize> = HashMap::new();
        for w in live {
            let local = locals.entry(w.id.clone()).or_default();
            let running_here = local
                .by_revision
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains_key(revision_id);
            let (free_mb, reported) = match &local.load {
                Some((at, load)) if now.duration_since(*at) < fresh_for => (
                    load.memory_total_mb.saturating_sub(load.memory_reserved_mb),
                    load.warm_revisions.iter().any(|r| r == revision_id),
                ),
                _ => (w.free_mb, false),
            };
            // Environments of the function on this worker, idle or running ours.
            if reported || running_here {
                *holding.entry(w.zone.clone()).or_default() += 1;
            }
            let warm = reported && !running_here;
            let c = Candidate {
                id: w.id,
                free_mb,
                warm,
                in_flight: local.in_flight.load(Ordering::SeqCst),
                zone: w.zone,
                zone_warm: 0,
            };
            if local.suspect_until.is_some_and(|t| t > now) {
                suspects.push(c);
            } else {
                candidates.push(c);
            }
        }
        // How many workers of each zone hold environments of the revision.
        for c in candidates.iter_mut().chain(suspects.iter_mut()) {
            c.zone_warm = holding.get(&c.zone).copied().unwrap_or(0);
        }
        placement::order(candidates, home_zone)
            .into_iter()
            .chain(placement::order(suspects, home_zone))
            .map(|c| c.id)
            .collect()
    }

    /// Counts an invocation in flight on `worker` until the guard drops.
    pub fn start(&self, worker: &str) -> InFlight {
        let mut locals = self.lock();
        let local = locals.entry(worker.to_string()).or_default();
        local.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(local.in_flight.clone(), None)
    }

    /// [`Self::start`] for an invocation of `revision_id`: until the guard drops, the
    /// worker's reported idle environment of it counts as taken.
    pub fn start_revision(&self, worker: &str, revision_id: &str) -> InFlight {
        let mut locals = self.lock();
        let local = locals.entry(worker.to_string()).or_default();
        local.in_flight.fetch_add(1, Ordering::SeqCst);
        *local
            .by_revision
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(revision_id.to_string())
            .or_default() += 1;
        InFlight(
            local.in_flight.clone(),
            Some((local.by_revision.clone(), revision_id.to_string())),
        )
    }

    /// Records the load a worker reported with an answer.
    pub fn record_load(&self, worker: &str, load: Option<pb::WorkerLoad>) {
        if let Some(load) = load {
            self.lock().entry(worker.to_string()).or_default().load = Some((Instant::now(), load));
        }
    }

    /// Puts `worker` last in placement order for `period` (it refused or was unreachable).
    pub fn suspect(&self, worker: &str, period: Duration) {
        let mut locals = self.lock();
        let local = locals.entry(worker.to_string()).or_default();
        local.suspect_until = Some(Instant::now() + period);
        local.load = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(id: &str, free_mb: u64) -> WorkerView {
        WorkerView {
            id: id.into(),
            free_mb,
            runtimes: vec![],
            zone: None,
            edge_location: None,
        }
    }

    fn load(warm: &[&str], free: u64) -> pb::WorkerLoad {
        pb::WorkerLoad {
            memory_total_mb: free,
            warm_revisions: warm.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_warm_report_is_taken_while_this_gateway_runs_that_revision_there() {
        let fleet = Fleet::default();
        let fresh = Duration::from_secs(10);
        // b reported an idle environment of r, a did not; a has more free memory.
        fleet.record_load("a", Some(load(&[], 900)));
        fleet.record_load("b", Some(load(&["r"], 100)));
        let live = || vec![view("a", 900), view("b", 100)];
        assert_eq!(fleet.plan(live(), "r", fresh), ["b", "a"]);
        let running = fleet.start_revision("b", "r");
        assert_eq!(
            fleet.plan(live(), "r", fresh),
            ["a", "b"],
            "b's idle one is busy now"
        );
        assert_eq!(fleet.plan(live(), "s", fresh), ["a", "b"]);
        drop(running);
        assert_eq!(fleet.plan(live(), "r", fresh), ["b", "a"]);
    }

    #[tokio::test(start_paused = true)]
    async fn suspects_go_last_until_their_period_ends() {
        let fleet = Fleet::default();
        let live = || vec![view("a", 900), view("b", 100)];
        let fresh = Duration::from_secs(10);
        assert_eq!(fleet.plan(live(), "r", fresh), ["a", "b"]);
        fleet.suspect("a", Duration::from_secs(3));
        assert_eq!(fleet.plan(live(), "r", fresh), ["b", "a"]);
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(fleet.plan(live(), "r", fresh), ["a", "b"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reported_warm_environment_wins_until_the_report_is_stale() {
        let fleet = Fleet::default();
        let live = || vec![view("a", 900), view("b", 100)];
        let fresh = Duration::from_secs(10);
        fleet.record_load("b", Some(load(&["r"], 100)));
        assert_eq!(fleet.plan(live(), "r", fresh), ["b", "a"]);
        // Another revision is not warm on b.
        assert_eq!(fleet.plan(live(), "other", fresh), ["a", "b"]);
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(fleet.plan(live(), "r", fresh), ["a", "b"]);
    }

    #[tokio::test(start_paused = true)]
    async fn in_flight_counts_until_the_guard_drops() {
        let fleet = Fleet::default();
        let fresh = Duration::from_secs(10);
        fleet.record_load("a", Some(load(&["r"], 500)));
        fleet.record_load("b", Some(load(&["r"], 500)));
        let guard = fleet.start("a");
        // Both warm: the less busy one first.
        assert_eq!(
            fleet.plan(vec![view("a", 0), view("b", 0)], "r", fresh),
            ["b", "a"]
        );
        drop(guard);
        assert_eq!(
            fleet.plan(vec![view("a", 0), view("b", 0)], "r", fresh),
            ["a", "b"]
        );
    }
}
