//! The worker's durable function logs, in CloudWatch Logs' model: one log group per
//! function (`/aws/lambda/NAME`), one log stream per execution environment
//! (`YYYY/MM/DD/[VERSION]<32 hex>`), events with a millisecond timestamp.
//!
//! Layout on disk, scoped by account so no query can reach another account's logs:
//!
//! ```text
//! ROOT/<account>/<function>/<YYYY>/<MM>/<DD>/[<VERSION>]<32 hex>.log
//! ```
//!
//! The stream name is the file's path below the function's directory. Each line of a
//! file is one event, `<timestamp ms>\t<ingestion ms>\t<message>\n`; messages never hold a
//! newline (captured output is split at newlines, and any other `\n` becomes `\r`, as
//! Lambda's Node runtime does).
//!
//! Writes: the engine appends an invocation's lines (START … REPORT, with Init output on a
//! cold start) in one `write` to the stream's file, opened with `O_APPEND`, before it
//! answers the invocation. That is a copy into the page cache (microseconds, done on a
//! blocking thread), so an acknowledged invocation's lines are readable by the very next
//! query, and they survive a crash of the worker process (not of the machine: there is
//! no fsync per invocation).
//!
//! * [`query`]     — FilterLogEvents / GetLogEvents (time range, pattern, paging cursor),
//!   DescribeLogStreams, DescribeLogGroups.
//! * [`pattern`]   — CloudWatch filter patterns (terms, phrases, `?`, `-`, `{ $.x = … }`).
//! * [`retention`] — age and total-size limits, enforced by a background sweep.
//! * [`rpc`]       — the worker protocol's log queries over this store.

pub mod pattern;
pub mod query;
pub mod retention;
pub mod rpc;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::logs::{now_ms, LogLine};

pub use pattern::{FilterPattern, PatternError};
pub use query::{Cursor, FilterPage, FilterQuery, GroupInfo, LogEvent, StreamInfo};
pub use retention::RetentionReport;

/// `/aws/lambda/` — the prefix of every function's log group.
pub const GROUP_PREFIX: &str = "/aws/lambda/";

/// Where logs live and how long they are kept (part of [`crate::EngineConfig`]).
#[derive(Debug, Clone)]
pub struct LogStoreConfig {
    /// Root directory; `None` means `<engine state dir>/logs`.
    pub dir: Option<PathBuf>,
    /// Events older than this are hidden from queries and their streams deleted once
    /// their last write is older too.
    pub max_age: Duration,
    /// Total bytes of log files kept; the least recently written streams go first.
    pub max_bytes: u64,
    /// How often the retention sweep runs.
    pub sweep_interval: Duration,
}

impl Default for LogStoreConfig {
    fn default() -> Self {
        LogStoreConfig {
            dir: None,
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_bytes: 1024 * 1024 * 1024,
            sweep_interval: Duration::from_secs(60),
        }
    }
}

/// Errors of the log store.
#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    /// Disk I/O failed.
    #[error("log store {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// A name that cannot be a Lambda log group, stream or account.
    #[error("{0}")]
    InvalidName(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LogStoreError + '_ {
    move |source| LogStoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Stream files kept open for appending; past this many, all are closed and reopened
/// as they are written again.
const OPEN_STREAMS: usize = 256;

/// One worker's log store. Cheap to share behind an `Arc`. Queries and retention block
/// on disk I/O (call them from a blocking thread); [`append`](Self::append) is one small
/// write to an open file.
#[derive(Debug)]
pub struct LogStore {
    root: PathBuf,
    max_age: Duration,
    max_bytes: u64,
    /// The streams being written, open: an append is then one `write`, not an open, a
    /// write and a close (the open's path walk was most of an append's cost; an
    /// environment appends to its stream on every invocation). Retention takes a file
    /// out of here, under this lock, as it deletes it, so no append lands in a deleted
    /// file.
    open_streams: std::sync::Mutex<HashMap<PathBuf, std::fs::File>>,
}

impl LogStore {
    /// Opens (creating) the store at `root`.
    pub fn open(root: PathBuf, config: &LogStoreConfig) -> Result<Self, LogStoreError> {
        std::fs::create_dir_all(&root).map_err(io(&root))?;
        Ok(LogStore {
            root,
            max_age: config.max_age,
            max_bytes: config.max_bytes,
            open_streams: Default::default(),
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Appends `lines` to `stream` of `function`'s log group in one write.
    pub fn append(
        &self,
        account: &str,
        function: &str,
        stream: &str,
        lines: &[LogLine],
    ) -> Result<(), LogStoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        let path = self.stream_path(account, function, stream)?;
        let ingested = now_ms();
        let mut buf = String::with_capacity(lines.iter().map(|l| l.message.len() + 32).sum());
        for l in lines {
            let _ = write!(
                buf,
                "{}\t{}\t",
                l.timestamp_ms,
                ingested.max(l.timestamp_ms)
            );
            for (i, part) in l.message.split('\n').enumerate() {
                if i > 0 {
                    buf.push('\r');
                }
                buf.push_str(part);
            }
            buf.push('\n');
        }
        let mut open = self.open_streams();
        if !open.contains_key(&path) {
            let file = Self::open_for_append(&path)?;
            if open.len() >= OPEN_STREAMS {
                open.clear();
            }
            open.insert(path.clone(), file);
        }
        let file = open.get_mut(&path).expect("inserted above");
        let written = file.write_all(buf.as_bytes());
        if written.is_err() {
            // Reopened next time (the error may have been the file's, not the disk's).
            open.remove(&path);
        }
        written.map_err(io(&path))
    }

    fn open_streams(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, std::fs::File>> {
        self.open_streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn open_for_append(path: &Path) -> Result<std::fs::File, LogStoreError> {
        let open = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
        };
        // The stream's directory exists after its first append (until retention removes
        // it): try the file first, which saves a stream's later openings a mkdir.
        match open() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(io(dir))?;
                }
                open()
            }
            other => other,
        }
        .map_err(io(path))
    }

    /// Deletes a stream's file (retention), closing it first if it is open for appends.
    fn remove_stream_file(&self, path: &Path) -> std::io::Result<()> {
        let mut open = self.open_streams();
        open.remove(path);
        std::fs::remove_file(path)
    }

    /// Whether `function`'s log group exists (something was ever logged and kept).
    pub fn group_exists(&self, account: &str, function: &str) -> bool {
        self.group_dir(account, function).is_ok_and(|d| d.is_dir())
    }

    fn account_dir(&self, account: &str) -> Result<PathBuf, LogStoreError> {
        if account.is_empty() || account.len() > 32 || !account.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(LogStoreError::InvalidName(format!(
                "invalid account {account:?}"
            )));
        }
        Ok(self.root.join(account))
    }

    fn group_dir(&self, account: &str, function: &str) -> Result<PathBuf, LogStoreError> {
        if !valid_function(function) {
            return Err(LogStoreError::InvalidName(format!(
                "invalid function name {function:?}"
            )));
        }
        Ok(self.account_dir(account)?.join(function))
    }

    fn stream_path(
        &self,
        account: &str,
        function: &str,
        stream: &str,
    ) -> Result<PathBuf, LogStoreError> {
        if !valid_stream(stream) {
            return Err(LogStoreError::InvalidName(format!(
                "invalid log stream {stream:?}"
            )));
        }
        Ok(self
            .group_dir(account, function)?
            .join(format!("{stream}.log")))
    }
}

/// `/aws/lambda/NAME` for a function.
pub fn group_name(function: &str) -> String {
    format!("{GROUP_PREFIX}{function}")
}

/// The function whose log group `group` is, if it names one.
pub fn function_of_group(group: &str) -> Option<&str> {
    group
        .strip_prefix(GROUP_PREFIX)
        .filter(|f| valid_function(f))
}

/// A function's name, or `<region>.<name>` for what ran at an edge location (as
/// Lambda@Edge names its groups): never a path.
fn valid_function(name: &str) -> bool {
    nimbus_types::validate::log_group_function(name)
}

/// `YYYY/MM/DD/[VERSION]<32 lowercase hex>`, VERSION `$LATEST` or digits.
pub fn valid_stream(name: &str) -> bool {
    let parts: Vec<&str> = name.split('/').collect();
    let [y, m, d, last] = *parts.as_slice() else {
        return false;
    };
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if !(digits(y, 4) && digits(m, 2) && digits(d, 2)) {
        return false;
    }
    let Some(rest) = last.strip_prefix('[') else {
        return false;
    };
    let Some((version, id)) = rest.split_once(']') else {
        return false;
    };
    let version_ok = version == nimbus_types::Qualifier::LATEST
        || (!version.is_empty()
            && version.len() <= 20
            && version.bytes().all(|b| b.is_ascii_digit()));
    version_ok && stream_id_ok(id)
}

fn stream_id_ok(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The 32-hex environment id at the end of a (valid) stream name.
pub(crate) fn stream_id(name: &str) -> &str {
    &name[name.len().saturating_sub(32)..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let s = crate::logs::log_stream_name("$LATEST");
        assert!(valid_stream(&s), "{s}");
        assert!(valid_stream(&crate::logs::log_stream_name("12")));
        for bad in [
            "2026/11/27/[$LATEST]../../../etc/passwd0000000000",
            "2026/11/27/[$LATEST]",
            "../11/27/[$LATEST]0123456789abcdef0123456789abcdef",
            "2026/11/27/[x/y]0123456789abcdef0123456789abcdef",
            "2026/11/27/0123456789abcdef0123456789abcdef",
        ] {
            assert!(!valid_stream(bad), "{bad}");
        }
        assert_eq!(function_of_group("/aws/lambda/my-fn_1"), Some("my-fn_1"));
        assert_eq!(function_of_group("/aws/lambda/../x"), None);
        assert_eq!(
            function_of_group("/aws/lambda/us-east-1.f"),
            Some("us-east-1.f")
        );
        assert_eq!(function_of_group("/aws/lambda/a.b"), None);
        assert_eq!(function_of_group("/aws/other/x"), None);
        assert_eq!(group_name("f"), "/aws/lambda/f");
    }

    /// What persisting one invocation's lines costs (run with `--ignored --nocapture`).
    #[test]
    #[ignore = "a measurement, not a check"]
    fn append_cost() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path().to_owned(), &LogStoreConfig::default()).unwrap();
        let s = crate::logs::log_stream_name("$LATEST");
        let lines: Vec<LogLine> = [
            "START RequestId: 8f5c2f4e-0000-4000-8000-000000000000 Version: $LATEST",
            "event {\"a\": 1}",
            "END RequestId: 8f5c2f4e-0000-4000-8000-000000000000",
            "REPORT RequestId: 8f5c2f4e-0000-4000-8000-000000000000\tDuration: 2.59 ms\tBilled Duration: 3 ms\tMemory Size: 128 MB\tMax Memory Used: 61 MB",
        ]
        .into_iter()
        .map(LogLine::now)
        .collect();
        let mut times: Vec<std::time::Duration> = (0..2000)
            .map(|_| {
                let t = std::time::Instant::now();
                store.append("000000000000", "f", &s, &lines).unwrap();
                t.elapsed()
            })
            .collect();
        times.sort();
        println!(
            "append of one invocation (4 lines): median {:?}, p99 {:?}",
            times[times.len() / 2],
            times[times.len() * 99 / 100]
        );
    }

    #[test]
    fn append_is_scoped_by_account_and_rejects_bad_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path().to_owned(), &LogStoreConfig::default()).unwrap();
        let s = crate::logs::log_stream_name("$LATEST");
        store
            .append("111111111111", "f", &s, &[LogLine::now("a\nb")])
            .unwrap();
        assert!(store.group_exists("111111111111", "f"));
        assert!(!store.group_exists("222222222222", "f"));
        assert!(store.append("../x", "f", &s, &[LogLine::now("a")]).is_err());
        assert!(store.append("1", "../f", &s, &[LogLine::now("a")]).is_err());
        let text = std::fs::read_to_string(
            dir.path()
                .join("111111111111")
                .join("f")
                .join(format!("{s}.log")),
        )
        .unwrap();
        assert!(text.ends_with("\ta\rb\n"), "{text:?}");
    }
}
