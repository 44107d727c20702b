//! Reading the log store: events of a group (FilterLogEvents, GetLogEvents), its streams
//! (DescribeLogStreams) and an account's groups (DescribeLogGroups).
//!
//! Paging across workers is stateless: every event has a [`Cursor`] (timestamp, stream id,
//! byte offset) that orders all events of a group totally, so a page token is just the
//! cursor of the last event returned, and the gateway merges the workers' pages by cursor.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use super::{io, stream_id, valid_stream, FilterPattern, LogStore, LogStoreError};
use crate::logs::now_ms;

/// A page holds at most this many message bytes (CloudWatch's 1 MB response limit).
pub const MAX_PAGE_BYTES: usize = 1024 * 1024;
/// At most this many events per page (CloudWatch's limit).
pub const MAX_PAGE_EVENTS: usize = 10_000;

/// How far a file's mtime (the kernel's coarse clock) may trail the timestamps of the
/// events in it (the precise clock).
const MTIME_SLACK_MS: u64 = 1000;

/// An event's position in the total order of a group's events.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor {
    pub timestamp_ms: u64,
    /// The stream's 32-hex environment id.
    pub stream_id: String,
    /// Byte offset of the event in its stream file.
    pub offset: u64,
}

impl std::fmt::Display for Cursor {
    /// Fixed-width, so that the text sorts like the cursor (used as `eventId`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:015}{}{:012}",
            self.timestamp_ms, self.stream_id, self.offset
        )
    }
}

impl Cursor {
    /// Parses the [`Display`](std::fmt::Display) form.
    pub fn parse(s: &str) -> Option<Cursor> {
        if s.len() < 15 + 32 + 1 || !s.is_ascii() {
            return None;
        }
        let (ts, rest) = s.split_at(15);
        let (id, offset) = rest.split_at(32);
        if !super::stream_id_ok(id) {
            return None;
        }
        Some(Cursor {
            timestamp_ms: ts.parse().ok()?,
            stream_id: id.to_owned(),
            offset: offset.parse().ok()?,
        })
    }
}

/// One stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    pub stream: String,
    pub timestamp_ms: u64,
    pub ingestion_ms: u64,
    pub message: String,
    pub cursor: Cursor,
}

impl PartialOrd for LogEvent {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for LogEvent {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.cursor.cmp(&other.cursor)
    }
}

/// Which events of a group to return.
#[derive(Debug, Clone, Default)]
pub struct FilterQuery {
    /// Only these streams (empty: all).
    pub stream_names: Vec<String>,
    /// Only streams whose name starts with this.
    pub stream_prefix: Option<String>,
    /// Inclusive bounds on the event timestamp.
    pub start_ms: Option<u64>,
    pub end_ms: Option<u64>,
    pub pattern: FilterPattern,
    /// Page size (capped at [`MAX_PAGE_EVENTS`]; 0 means the cap).
    pub limit: usize,
    /// Only events strictly after / before these cursors.
    pub after: Option<Cursor>,
    pub before: Option<Cursor>,
    /// Return the *last* `limit` matching events instead of the first (GetLogEvents
    /// without `startFromHead`).
    pub from_tail: bool,
}

/// Matching events in cursor order, and whether more matched than were returned.
#[derive(Debug, Clone, Default)]
pub struct FilterPage {
    pub events: Vec<LogEvent>,
    pub more: bool,
}

/// A stream, as DescribeLogStreams shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    pub name: String,
    pub creation_ms: u64,
    pub first_event_ms: u64,
    /// When the stream was last written (its last event is at or before this).
    pub last_event_ms: u64,
    pub stored_bytes: u64,
}

/// A log group, as DescribeLogGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    pub function: String,
    pub creation_ms: u64,
    pub stored_bytes: u64,
}

fn mtime_ms(meta: &std::fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

/// Parses `<ts>\t<ingest>\t<message>`.
fn parse_line(line: &str) -> Option<(u64, u64, &str)> {
    let (ts, rest) = line.split_once('\t')?;
    let (ing, msg) = rest.split_once('\t')?;
    Some((ts.parse().ok()?, ing.parse().ok()?, msg))
}

/// Every file under `dir`, recursively (a group has four levels: YYYY/MM/DD/stream).
pub(super) fn files_under(dir: &Path, out: &mut Vec<(PathBuf, std::fs::Metadata)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(meta) = e.metadata() else { continue };
        if meta.is_dir() {
            files_under(&e.path(), out);
        } else {
            out.push((e.path(), meta));
        }
    }
}

impl LogStore {
    /// Streams of `function`'s group: (name, path, metadata).
    fn stream_files(
        &self,
        account: &str,
        function: &str,
    ) -> Result<Vec<(String, PathBuf, std::fs::Metadata)>, LogStoreError> {
        let dir = self.group_dir(account, function)?;
        let mut files = Vec::new();
        files_under(&dir, &mut files);
        Ok(files
            .into_iter()
            .filter_map(|(path, meta)| {
                let rel = path.strip_prefix(&dir).ok()?.to_str()?;
                let name = rel.strip_suffix(".log")?;
                valid_stream(name).then(|| (name.to_owned(), path.clone(), meta))
            })
            .collect())
    }

    /// The oldest timestamp retention still shows.
    fn visible_from(&self) -> u64 {
        now_ms().saturating_sub(self.max_age.as_millis() as u64)
    }

    /// FilterLogEvents / GetLogEvents on this worker.
    pub fn filter(
        &self,
        account: &str,
        function: &str,
        q: &FilterQuery,
    ) -> Result<FilterPage, LogStoreError> {
        let limit = match q.limit {
            0 => MAX_PAGE_EVENTS,
            n => n.min(MAX_PAGE_EVENTS),
        };
        let start = q.start_ms.unwrap_or(0).max(self.visible_from());
        // Keep only the best `limit + 1` events: the first ones (a max-heap whose top is
        // dropped) or, from the tail, the last ones (a min-heap).
        let mut head: BinaryHeap<LogEvent> = BinaryHeap::new();
        let mut tail: BinaryHeap<Reverse<LogEvent>> = BinaryHeap::new();
        for (name, path, meta) in self.stream_files(account, function)? {
            if !q.stream_names.is_empty() && !q.stream_names.contains(&name) {
                continue;
            }
            if q.stream_prefix
                .as_ref()
                .is_some_and(|p| !name.starts_with(p.as_str()))
            {
                continue;
            }
            // Every event of the file was written by its mtime, give or take the kernel's
            // coarse clock: mtime comes from it and can trail the precise clock the
            // events' timestamps come from by a tick (a CI run skipped a file whose last
            // event was stamped 1 ms after the file's mtime). A second of slack covers it.
            if mtime_ms(&meta) + MTIME_SLACK_MS < start {
                continue;
            }
            let id = stream_id(&name).to_owned();
            let file = std::fs::File::open(&path).map_err(io(&path))?;
            let mut reader = BufReader::new(file);
            let mut offset = 0u64;
            let mut line = String::new();
            loop {
                line.clear();
                let n = reader.read_line(&mut line).map_err(io(&path))?;
                if n == 0 {
                    break;
                }
                let at = offset;
                offset += n as u64;
                let Some((ts, ingested, msg)) = parse_line(line.trim_end_matches('\n')) else {
                    continue;
                };
                if ts < start || q.end_ms.is_some_and(|e| ts > e) {
                    continue;
                }
                let cursor = Cursor {
                    timestamp_ms: ts,
                    stream_id: id.clone(),
                    offset: at,
                };
                if q.after.as_ref().is_some_and(|a| cursor <= *a)
                    || q.before.as_ref().is_some_and(|b| cursor >= *b)
                    || !q.pattern.matches(msg)
                {
                    continue;
                }
                let ev = LogEvent {
                    stream: name.clone(),
                    timestamp_ms: ts,
                    ingestion_ms: ingested,
                    message: msg.to_owned(),
                    cursor,
                };
                if q.from_tail {
                    tail.push(Reverse(ev));
                    if tail.len() > limit + 1 {
                        tail.pop();
                    }
                } else {
                    head.push(ev);
                    if head.len() > limit + 1 {
                        head.pop();
                    }
                }
            }
        }
        let mut events: Vec<LogEvent> = if q.from_tail {
            tail.into_iter().map(|Reverse(e)| e).collect()
        } else {
            head.into_vec()
        };
        events.sort();
        let mut more = events.len() > limit;
        if more {
            if q.from_tail {
                events.remove(0);
            } else {
                events.pop();
            }
        }
        // Byte budget: whole events, counted from the end that pages continue from, and
        // always at least one so that paging moves on.
        let mut bytes = 0;
        let mut within = |e: &&LogEvent| {
            bytes += e.message.len();
            bytes <= MAX_PAGE_BYTES
        };
        let fitting = if q.from_tail {
            events.iter().rev().take_while(&mut within).count()
        } else {
            events.iter().take_while(&mut within).count()
        };
        let keep = if events.is_empty() { 0 } else { fitting.max(1) };
        if keep < events.len() {
            more = true;
            if q.from_tail {
                events.drain(..events.len() - keep);
            } else {
                events.truncate(keep);
            }
        }
        Ok(FilterPage { events, more })
    }

    /// DescribeLogStreams on this worker: every stream of the group with `prefix`.
    pub fn streams(
        &self,
        account: &str,
        function: &str,
        prefix: &str,
    ) -> Result<Vec<StreamInfo>, LogStoreError> {
        let mut out = Vec::new();
        for (name, path, meta) in self.stream_files(account, function)? {
            if !name.starts_with(prefix) {
                continue;
            }
            let first = std::fs::File::open(&path)
                .ok()
                .and_then(|f| BufReader::new(f).lines().next()?.ok())
                .and_then(|l| parse_line(&l).map(|(ts, _, _)| ts));
            // The file's mtime comes from the kernel's coarse clock and may trail the
            // (precise) timestamp of the first event; never report last before first.
            let mtime = mtime_ms(&meta);
            let first = first.unwrap_or(mtime);
            let last = mtime.max(first);
            out.push(StreamInfo {
                name,
                creation_ms: first,
                first_event_ms: first,
                last_event_ms: last,
                stored_bytes: meta.len(),
            });
        }
        Ok(out)
    }

    /// DescribeLogGroups on this worker: the account's groups whose name starts with
    /// `prefix` (a full group-name prefix such as `/aws/lambda/my`).
    pub fn groups(&self, account: &str, prefix: &str) -> Result<Vec<GroupInfo>, LogStoreError> {
        let dir = self.account_dir(account)?;
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(vec![]);
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let Some(function) = e.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !super::group_name(&function).starts_with(prefix) {
                continue;
            }
            let mut files = Vec::new();
            files_under(&e.path(), &mut files);
            let creation = e
                .metadata()
                .ok()
                .and_then(|m| m.created().or_else(|_| m.modified()).ok())
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_millis() as u64);
            out.push(GroupInfo {
                function,
                creation_ms: creation,
                stored_bytes: files.iter().map(|(_, m)| m.len()).sum(),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log_store::LogStoreConfig;
    use crate::logs::LogLine;

    const ACC: &str = "000000000000";

    fn store() -> (tempfile::TempDir, LogStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = LogStore::open(dir.path().to_owned(), &LogStoreConfig::default()).unwrap();
        (dir, s)
    }

    fn line(ts: u64, m: &str) -> LogLine {
        LogLine {
            timestamp_ms: ts,
            message: m.into(),
        }
    }

    /// Two streams with interleaved timestamps.
    fn two_streams(s: &LogStore) -> (String, String) {
        let now = now_ms();
        let a = crate::logs::log_stream_name("$LATEST");
        let b = crate::logs::log_stream_name("1");
        s.append(
            ACC,
            "f",
            &a,
            &[line(now - 50, "a1 hello"), line(now - 30, "a2 ERROR x")],
        )
        .unwrap();
        s.append(
            ACC,
            "f",
            &b,
            &[line(now - 40, "b1 hello"), line(now - 20, "b2 WARN")],
        )
        .unwrap();
        (a, b)
    }

    fn messages(p: &FilterPage) -> Vec<&str> {
        p.events.iter().map(|e| &e.message[..2]).collect()
    }

    #[test]
    fn filter_merges_streams_by_time_and_pattern() {
        let (_d, s) = store();
        let (a, _) = two_streams(&s);
        let all = s.filter(ACC, "f", &FilterQuery::default()).unwrap();
        assert_eq!(messages(&all), ["a1", "b1", "a2", "b2"]);
        assert!(!all.more);
        let q = FilterQuery {
            pattern: FilterPattern::parse("hello").unwrap(),
            ..Default::default()
        };
        assert_eq!(messages(&s.filter(ACC, "f", &q).unwrap()), ["a1", "b1"]);
        let q = FilterQuery {
            stream_names: vec![a.clone()],
            ..Default::default()
        };
        assert_eq!(messages(&s.filter(ACC, "f", &q).unwrap()), ["a1", "a2"]);
        let q = FilterQuery {
            start_ms: Some(all.events[1].timestamp_ms),
            end_ms: Some(all.events[2].timestamp_ms),
            ..Default::default()
        };
        assert_eq!(messages(&s.filter(ACC, "f", &q).unwrap()), ["b1", "a2"]);
        // Another account sees nothing.
        assert!(s
            .filter("111111111111", "f", &FilterQuery::default())
            .unwrap()
            .events
            .is_empty());
        assert!(!s.group_exists("111111111111", "f"));
    }

    #[test]
    fn paging_by_cursor_returns_every_event_once() {
        let (_d, s) = store();
        two_streams(&s);
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = s
                .filter(
                    ACC,
                    "f",
                    &FilterQuery {
                        limit: 1,
                        after: after.clone(),
                        ..Default::default()
                    },
                )
                .unwrap();
            seen.extend(page.events.iter().map(|e| e.message[..2].to_owned()));
            if !page.more {
                break;
            }
            after = page.events.last().map(|e| e.cursor.clone());
        }
        assert_eq!(seen, ["a1", "b1", "a2", "b2"]);
        // From the tail: the last two, then the two before them.
        let last = s
            .filter(
                ACC,
                "f",
                &FilterQuery {
                    limit: 2,
                    from_tail: true,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(messages(&last), ["a2", "b2"]);
        assert!(last.more);
        let before = s
            .filter(
                ACC,
                "f",
                &FilterQuery {
                    limit: 2,
                    from_tail: true,
                    before: Some(last.events[0].cursor.clone()),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(messages(&before), ["a1", "b1"]);
        assert!(!before.more);
        // Cursors round-trip through their text form and sort like it.
        let c = &last.events[0].cursor;
        assert_eq!(Cursor::parse(&c.to_string()).as_ref(), Some(c));
        assert!(last.events[0].cursor.to_string() < last.events[1].cursor.to_string());
        assert_eq!(Cursor::parse("garbage"), None);
    }

    #[test]
    fn streams_and_groups() {
        let (_d, s) = store();
        let (a, b) = two_streams(&s);
        s.append(ACC, "other", &a, &[line(now_ms(), "x")]).unwrap();
        let mut streams = s.streams(ACC, "f", "").unwrap();
        streams.sort_by(|x, y| x.name.cmp(&y.name));
        let mut names = vec![a.clone(), b.clone()];
        names.sort();
        assert_eq!(
            streams.iter().map(|x| x.name.clone()).collect::<Vec<_>>(),
            names
        );
        assert!(streams
            .iter()
            .all(|x| x.stored_bytes > 0 && x.first_event_ms <= x.last_event_ms));
        let prefix = &a[..a.find(']').unwrap()];
        assert_eq!(s.streams(ACC, "f", prefix).unwrap().len(), 1);
        let mut groups: Vec<String> = s
            .groups(ACC, "/aws/lambda/")
            .unwrap()
            .into_iter()
            .map(|g| g.function)
            .collect();
        groups.sort();
        assert_eq!(groups, ["f", "other"]);
        assert_eq!(s.groups(ACC, "/aws/lambda/o").unwrap().len(), 1);
        assert!(s.groups("111111111111", "").unwrap().is_empty());
    }

    #[test]
    fn page_is_bounded_in_bytes() {
        let (_d, s) = store();
        let st = crate::logs::log_stream_name("$LATEST");
        let big = "x".repeat(200 * 1024);
        let now = now_ms();
        let lines: Vec<LogLine> = (0..8).map(|i| line(now - 100 + i, &big)).collect();
        s.append(ACC, "f", &st, &lines).unwrap();
        let page = s.filter(ACC, "f", &FilterQuery::default()).unwrap();
        assert_eq!(page.events.len(), 5);
        assert!(page.more);
    }
}
