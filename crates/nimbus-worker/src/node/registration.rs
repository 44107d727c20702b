//! When a worker writes its registration to the metadata cluster: when what gateways
//! place work by changed (address, site, memory, runtimes), and otherwise only every
//! `refresh` (minutes), so a worker that died without deregistering drops out of the
//! registry. Its moment-to-moment load and liveness go to the gateways directly (they
//! probe it), so an idle worker costs no Raft entry per heartbeat (issue 18).

use std::time::{Duration, Instant};

use nimbus_types::Worker;

/// The last registration written and when.
#[derive(Debug, Clone)]
pub struct Registration {
    written: Worker,
    at: Instant,
    refresh: Duration,
}

impl Registration {
    /// `worker` was just written.
    pub fn written(worker: &Worker, refresh: Duration) -> Self {
        Self {
            written: essentials(worker),
            at: Instant::now(),
            refresh,
        }
    }

    /// Whether `worker` (the record as it would be written now) must be written.
    pub fn due(&self, worker: &Worker) -> bool {
        self.at.elapsed() >= self.refresh || essentials(worker) != self.written
    }

    /// Records that `worker` was written now.
    pub fn wrote(&mut self, worker: &Worker) {
        *self = Self::written(worker, self.refresh);
    }
}

/// What a registration says apart from the load of the moment.
fn essentials(w: &Worker) -> Worker {
    Worker {
        memory_used_mb: 0,
        environments_warm: 0,
        environments_busy: 0,
        last_heartbeat_ms: 0,
        ..w.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(used: u64, runtimes: &[&str]) -> Worker {
        Worker {
            id: "w1".into(),
            addr: "10.0.0.1:18001".into(),
            region: "us-east-1".into(),
            placement: nimbus_types::Placement::Zone("us-east-1a".into()),
            memory_total_mb: 4096,
            memory_used_mb: used,
            environments_warm: 0,
            environments_busy: 0,
            last_heartbeat_ms: used,
            runtimes: runtimes.iter().map(|r| r.to_string()).collect(),
        }
    }

    #[test]
    fn only_a_changed_registration_or_a_refresh_is_written() {
        let first = worker(0, &["python3.11"]);
        let mut r = Registration::written(&first, Duration::from_secs(300));
        assert!(
            !r.due(&worker(512, &["python3.11"])),
            "load is not replicated"
        );
        let more = worker(512, &["python3.11", "nodejs20.x"]);
        assert!(r.due(&more), "a new runtime is");
        r.wrote(&more);
        assert!(!r.due(&worker(0, &["python3.11", "nodejs20.x"])));
        let stale = Registration::written(&first, Duration::ZERO);
        assert!(stale.due(&first), "refreshed once its period is over");
    }
}
