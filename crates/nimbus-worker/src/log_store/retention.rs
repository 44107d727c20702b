//! Retention: streams whose last write is older than `max_age` are deleted, then the
//! least recently written streams until the store is within `max_bytes`. Queries already
//! hide events older than `max_age` inside streams that are still being written.
//! [`LogStore::spawn_retention`] runs the sweep in the background.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use super::query::files_under;
use super::LogStore;

/// What one sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub removed_streams: usize,
    pub removed_bytes: u64,
    /// Bytes left in the store.
    pub kept_bytes: u64,
}

impl LogStore {
    /// Applies the limits as of `now_ms`.
    pub fn enforce_retention(&self, now_ms: u64) -> RetentionReport {
        let mut files = Vec::new();
        files_under(&self.root, &mut files);
        let mut files: Vec<(std::path::PathBuf, u64, u64)> = files
            .into_iter()
            .map(|(p, m)| {
                let mtime = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_millis() as u64);
                (p, m.len(), mtime)
            })
            .collect();
        // Oldest write first.
        files.sort_by_key(|f| f.2);
        let cutoff = now_ms.saturating_sub(self.max_age.as_millis() as u64);
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        let mut report = RetentionReport::default();
        for (path, len, mtime) in &files {
            if *mtime >= cutoff && total <= self.max_bytes {
                break;
            }
            if self.remove_stream_file(path).is_ok() {
                total -= len;
                report.removed_streams += 1;
                report.removed_bytes += len;
                remove_empty_parents(path, &self.root);
            }
        }
        report.kept_bytes = total;
        report
    }

    /// Runs [`enforce_retention`](Self::enforce_retention) every `interval` on a blocking
    /// thread, until the returned handle is aborted or the store is dropped.
    pub fn spawn_retention(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            loop {
                tick.tick().await;
                let Some(store) = weak.upgrade() else { break };
                let report = tokio::task::spawn_blocking(move || {
                    store.enforce_retention(crate::logs::now_ms())
                })
                .await
                .unwrap_or_default();
                if report.removed_streams > 0 {
                    tracing::info!(
                        streams = report.removed_streams,
                        bytes = report.removed_bytes,
                        kept = report.kept_bytes,
                        "log retention removed old streams"
                    );
                }
            }
        })
    }
}

/// Removes the now-empty day/month/year/function/account directories above `file`.
fn remove_empty_parents(file: &std::path::Path, root: &std::path::Path) {
    let mut dir = file.parent();
    while let Some(d) = dir {
        if d == root || !d.starts_with(root) || std::fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log_store::{FilterQuery, LogStoreConfig};
    use crate::logs::{now_ms, LogLine};

    const ACC: &str = "000000000000";

    fn set_mtime(store: &LogStore, function: &str, stream: &str, age: Duration) {
        let path = store.stream_path(ACC, function, stream).unwrap();
        let f = std::fs::File::options().append(true).open(path).unwrap();
        f.set_modified(std::time::SystemTime::now() - age).unwrap();
    }

    #[test]
    fn old_streams_are_removed_and_old_events_hidden() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogStoreConfig {
            max_age: Duration::from_secs(3600),
            ..Default::default()
        };
        let s = LogStore::open(dir.path().to_owned(), &cfg).unwrap();
        let old = crate::logs::log_stream_name("$LATEST");
        let live = crate::logs::log_stream_name("$LATEST");
        let two_hours_ago = now_ms() - 2 * 3600 * 1000;
        s.append(
            ACC,
            "f",
            &old,
            &[LogLine {
                timestamp_ms: two_hours_ago,
                message: "old".into(),
            }],
        )
        .unwrap();
        s.append(
            ACC,
            "g",
            &live,
            &[
                LogLine {
                    timestamp_ms: two_hours_ago,
                    message: "stale".into(),
                },
                LogLine::now("fresh"),
            ],
        )
        .unwrap();
        set_mtime(&s, "f", &old, Duration::from_secs(2 * 3600));
        let page = s.filter(ACC, "g", &FilterQuery::default()).unwrap();
        assert_eq!(page.events.len(), 1, "events beyond retention are hidden");
        assert_eq!(page.events[0].message, "fresh");
        let r = s.enforce_retention(now_ms());
        assert_eq!(r.removed_streams, 1);
        assert!(
            !s.group_exists(ACC, "f"),
            "empty directories are removed too"
        );
        assert!(s.group_exists(ACC, "g"));
        assert_eq!(
            r.kept_bytes,
            s.streams(ACC, "g", "").unwrap()[0].stored_bytes
        );
    }

    #[test]
    fn size_limit_removes_least_recently_written_first() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogStoreConfig {
            max_bytes: 1500,
            ..Default::default()
        };
        let s = LogStore::open(dir.path().to_owned(), &cfg).unwrap();
        let names: Vec<String> = (0..3).map(|_| crate::logs::log_stream_name("1")).collect();
        for (i, n) in names.iter().enumerate() {
            s.append(ACC, "f", n, &[LogLine::now("x".repeat(1000))])
                .unwrap();
            set_mtime(&s, "f", n, Duration::from_secs(100 - i as u64 * 10));
        }
        let r = s.enforce_retention(now_ms());
        assert_eq!(r.removed_streams, 2);
        assert!(r.kept_bytes <= 1500);
        let left: Vec<String> = s
            .streams(ACC, "f", "")
            .unwrap()
            .into_iter()
            .map(|x| x.name)
            .collect();
        assert_eq!(
            left,
            [names[2].clone()],
            "the most recently written stream stays"
        );
        assert_eq!(s.enforce_retention(now_ms()).removed_streams, 0);
    }

    /// Appends go to open files; a stream retention deleted is written afresh, not into
    /// the deleted file (whose lines nobody could read).
    #[test]
    fn a_stream_written_after_retention_removed_it_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogStoreConfig {
            max_bytes: 0,
            ..Default::default()
        };
        let s = LogStore::open(dir.path().to_owned(), &cfg).unwrap();
        let n = crate::logs::log_stream_name("1");
        s.append(ACC, "f", &n, &[LogLine::now("before")]).unwrap();
        s.append(ACC, "f", &n, &[LogLine::now("before, again")])
            .unwrap();
        assert_eq!(s.enforce_retention(now_ms()).removed_streams, 1);
        assert!(!s.group_exists(ACC, "f"));
        s.append(ACC, "f", &n, &[LogLine::now("after")]).unwrap();
        let page = s.filter(ACC, "f", &FilterQuery::default()).unwrap();
        let messages: Vec<&str> = page.events.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(messages, ["after"]);
    }

    #[tokio::test]
    async fn background_sweep_runs() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogStoreConfig {
            max_bytes: 0,
            ..Default::default()
        };
        let s = Arc::new(LogStore::open(dir.path().to_owned(), &cfg).unwrap());
        let n = crate::logs::log_stream_name("1");
        s.append(ACC, "f", &n, &[LogLine::now("x")]).unwrap();
        // The first sweep runs at once, then every interval.
        let task = s.spawn_retention(Duration::from_secs(60));
        for _ in 0..100 {
            if !s.group_exists(ACC, "f") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!s.group_exists(ACC, "f"));
        task.abort();
    }
}
