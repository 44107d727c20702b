//! Log capture and Lambda's platform log lines.
//!
//! The runtime's stdout and stderr share one pipe (Lambda has one log stream
//! per environment). A task reads it into [`LogBuffer`]; at the end of an
//! invocation the engine asks the reader to drain whatever the runtime wrote
//! *before* posting its response (so no line lands in the wrong invocation),
//! then frames the lines with START / END / REPORT.

use std::fmt::Write as _;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::unix::pipe;

/// `X-Amz-Log-Result` carries the last 4 KB of the log.
pub const LOG_TAIL_BYTES: usize = nimbus_types::limits::LOG_TAIL_MAX_BYTES;
/// Lines kept per invocation; later ones are counted and dropped.
const MAX_LINES: usize = 10_000;
/// Bytes kept per invocation, so a chatty function cannot exhaust the worker.
const MAX_BYTES: usize = 4 * 1024 * 1024;
/// A line longer than this is split (CloudWatch's event limit is 256 KB).
const MAX_LINE_BYTES: usize = nimbus_types::limits::LOG_LINE_MAX_BYTES;

/// One captured or platform log line with the time it was written (ms since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When the line was captured (milliseconds since the Unix epoch).
    pub timestamp_ms: u64,
    /// The line, without its newline.
    pub message: String,
}

impl LogLine {
    /// A line stamped now.
    pub fn now(message: impl Into<String>) -> Self {
        LogLine {
            timestamp_ms: now_ms(),
            message: message.into(),
        }
    }
}

/// The lines' text, one per line with a final newline (the invocation's log).
pub fn text(lines: &[LogLine]) -> String {
    let mut text = String::new();
    for l in lines {
        text.push_str(&l.message);
        text.push('\n');
    }
    text
}

#[derive(Debug, Default)]
struct LogBuffer {
    lines: Vec<LogLine>,
    bytes: usize,
    partial: Vec<u8>,
    dropped: usize,
}

impl LogBuffer {
    fn push_bytes(&mut self, env_id: &str, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                let line = String::from_utf8_lossy(&self.partial).into_owned();
                self.partial.clear();
                self.push_line(env_id, line);
            } else {
                self.partial.push(b);
                if self.partial.len() >= MAX_LINE_BYTES {
                    let line = String::from_utf8_lossy(&self.partial).into_owned();
                    self.partial.clear();
                    self.push_line(env_id, line);
                }
            }
        }
    }

    fn push_line(&mut self, env_id: &str, line: String) {
        tracing::debug!(target: "nimbus::function_log", env = env_id, "{line}");
        if self.lines.len() >= MAX_LINES || self.bytes + line.len() > MAX_BYTES {
            self.dropped += 1;
        } else {
            self.bytes += line.len();
            self.lines.push(LogLine::now(line));
        }
    }

    fn take(&mut self, env_id: &str) -> Vec<LogLine> {
        if !self.partial.is_empty() {
            let line = String::from_utf8_lossy(&self.partial).into_owned();
            self.partial.clear();
            self.push_line(env_id, line);
        }
        if self.dropped > 0 {
            let n = std::mem::take(&mut self.dropped);
            self.lines
                .push(LogLine::now(format!("[nimbus: {n} log lines dropped]")));
        }
        self.bytes = 0;
        std::mem::take(&mut self.lines)
    }
}

/// Reads one environment's output pipe.
///
/// A task reads whatever the runtime writes as it arrives; [`LogCapture::drain`] reads
/// what is left in the pipe itself, from the invoking task, instead of asking the reader
/// task and waiting for its answer: that round trip was two task wake-ups on every
/// invocation (docs/benchmarks.md, "Where an invocation's CPU goes"). Both read with the
/// buffer locked, so lines keep the order the runtime wrote them in.
#[derive(Debug)]
pub(crate) struct LogCapture {
    env_id: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
struct Shared {
    rx: pipe::Receiver,
    /// Read into under this lock, by either reader.
    buffer: Mutex<Reader>,
}

#[derive(Debug)]
struct Reader {
    lines: LogBuffer,
    chunk: Vec<u8>,
    /// False once the pipe is closed (the runtime and everything it started are gone).
    open: bool,
}

impl Shared {
    /// The buffer, locked: whoever holds it may read the pipe.
    fn lock(&self) -> std::sync::MutexGuard<'_, Reader> {
        self.buffer.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Reader {
    /// Non-blocking reads of `rx` until it is empty; false once it is closed.
    fn read_available(&mut self, rx: &pipe::Receiver, env_id: &str) -> bool {
        while self.open {
            match rx.try_read(&mut self.chunk) {
                Ok(0) => self.open = false,
                Ok(n) => self.lines.push_bytes(env_id, &self.chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => self.open = false,
            }
        }
        self.open
    }
}

impl LogCapture {
    /// Starts reading `read_end`.
    pub(crate) fn start(env_id: String, read_end: OwnedFd) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            rx: pipe::Receiver::from_owned_fd(read_end)?,
            buffer: Mutex::new(Reader {
                lines: LogBuffer::default(),
                chunk: vec![0u8; 16 * 1024],
                open: true,
            }),
        });
        let reader = shared.clone();
        let id = env_id.clone();
        let task = tokio::spawn(async move {
            while reader.rx.readable().await.is_ok()
                && reader.lock().read_available(&reader.rx, &id)
            {}
        });
        Ok(LogCapture {
            env_id,
            shared,
            task,
        })
    }

    /// Reads everything already in the pipe, then returns the lines so far.
    pub(crate) fn drain(&self) -> Vec<LogLine> {
        let mut reader = self.shared.lock();
        reader.read_available(&self.shared.rx, &self.env_id);
        reader.lines.take(&self.env_id)
    }
}

impl Drop for LogCapture {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `START RequestId: <id> Version: <version>`
pub fn start_line(request_id: &str, version: &str) -> String {
    format!("START RequestId: {request_id} Version: {version}")
}

/// `END RequestId: <id>`
pub fn end_line(request_id: &str) -> String {
    format!("END RequestId: {request_id}")
}

/// The REPORT line, tab-separated; `Init Duration` only on a cold start.
pub fn report_line(
    request_id: &str,
    duration: Duration,
    memory_mb: u64,
    max_memory_mb: u64,
    init_duration: Option<Duration>,
) -> String {
    let mut line = format!(
        "REPORT RequestId: {request_id}\tDuration: {:.2} ms\tBilled Duration: {} ms\tMemory Size: {memory_mb} MB\tMax Memory Used: {max_memory_mb} MB",
        ms(duration),
        billed_ms(duration),
    );
    if let Some(init) = init_duration {
        let _ = write!(line, "\tInit Duration: {:.2} ms", ms(init));
    }
    line
}

/// How the platform's lines are written (`LoggingConfig.LogFormat`).
pub use nimbus_types::vocabulary::LogFormat;

/// What the REPORT line (or `platform.report` record) says about one invocation.
#[derive(Debug, Clone)]
pub struct Report<'a> {
    pub request_id: &'a str,
    pub duration: Duration,
    pub memory_mb: u64,
    pub max_memory_mb: u64,
    /// Cold starts only.
    pub init_duration: Option<Duration>,
    /// `None` on success; the function's `errorType` otherwise.
    pub error_type: Option<&'a str>,
}

fn platform_record(kind: &str, record: serde_json::Value) -> LogLine {
    let at = now_ms();
    let line = serde_json::json!({ "time": iso8601(at), "type": kind, "record": record });
    LogLine {
        timestamp_ms: at,
        message: line.to_string(),
    }
}

/// JSON only: `platform.initStart`, written before the Init output of a new environment.
pub fn platform_init_start(
    format: LogFormat,
    function_name: &str,
    version: &str,
    initialization_type: &str,
) -> Option<LogLine> {
    (format == LogFormat::Json).then(|| {
        platform_record(
            "platform.initStart",
            serde_json::json!({
                "initializationType": initialization_type,
                "phase": "init",
                "functionName": function_name,
                "functionVersion": version,
            }),
        )
    })
}

/// START line or `platform.start` record.
pub fn platform_start(format: LogFormat, request_id: &str, version: &str) -> LogLine {
    match format {
        LogFormat::Text => LogLine::now(start_line(request_id, version)),
        LogFormat::Json => platform_record(
            "platform.start",
            serde_json::json!({ "requestId": request_id, "version": version }),
        ),
    }
}

/// END line; JSON mode has no counterpart (the report closes the invocation).
pub fn platform_end(format: LogFormat, request_id: &str) -> Option<LogLine> {
    (format == LogFormat::Text).then(|| LogLine::now(end_line(request_id)))
}

/// REPORT line or `platform.report` record with its metrics.
pub fn platform_report(format: LogFormat, r: &Report<'_>) -> LogLine {
    match format {
        LogFormat::Text => LogLine::now(report_line(
            r.request_id,
            r.duration,
            r.memory_mb,
            r.max_memory_mb,
            r.init_duration,
        )),
        LogFormat::Json => {
            let round2 = |d: Duration| (ms(d) * 100.0).round() / 100.0;
            let mut metrics = serde_json::json!({
                "durationMs": round2(r.duration),
                "billedDurationMs": billed_ms(r.duration),
                "memorySizeMB": r.memory_mb,
                "maxMemoryUsedMB": r.max_memory_mb,
            });
            if let Some(init) = r.init_duration {
                metrics["initDurationMs"] = round2(init).into();
            }
            let mut record = serde_json::json!({ "requestId": r.request_id, "metrics": metrics });
            match r.error_type {
                None => record["status"] = "success".into(),
                Some("Sandbox.Timedout") => record["status"] = "timeout".into(),
                Some(t) => {
                    record["status"] = "error".into();
                    record["errorType"] = t.into();
                }
            }
            platform_record("platform.report", record)
        }
    }
}

/// `<timestamp> <id> Task timed out after N.NN seconds`
pub fn timeout_line(request_id: &str, timeout: Duration) -> String {
    format!(
        "{} {request_id} Task timed out after {:.2} seconds",
        iso8601_now(),
        timeout.as_secs_f64()
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Billing is per millisecond, rounded up (at least 1 ms).
pub fn billed_ms(d: Duration) -> u64 {
    (d.as_micros().div_ceil(1000) as u64).max(1)
}

/// The last `LOG_TAIL_BYTES` of `log`, cut at a character boundary.
pub fn tail(log: &str) -> String {
    if log.len() <= LOG_TAIL_BYTES {
        return log.to_owned();
    }
    let mut start = log.len() - LOG_TAIL_BYTES;
    while !log.is_char_boundary(start) {
        start += 1;
    }
    log[start..].to_owned()
}

/// (year, month, day) for days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    now().as_millis() as u64
}

/// `2026-11-27T03:04:05.678Z`
pub fn iso8601_now() -> String {
    iso8601(now_ms())
}

/// `2026-11-27T03:04:05.678Z` for milliseconds since the epoch.
pub fn iso8601(ms: u64) -> String {
    let t = Duration::from_millis(ms);
    let secs = t.as_secs() as i64;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        (s / 60) % 60,
        s % 60,
        t.subsec_millis()
    )
}

/// `YYYY/MM/DD/[VERSION]<32 hex>`
pub fn log_stream_name(version: &str) -> String {
    let (y, m, d) = civil_from_days(now().as_secs() as i64 / 86_400);
    format!(
        "{y:04}/{m:02}/{d:02}/[{version}]{}",
        uuid::Uuid::new_v4().simple()
    )
}

/// Hides the platform's own JSON records (`platform.start`, `platform.report`, ...; all
/// INFO) when `LoggingConfig.SystemLogLevel` is above INFO, recomputing the text and tail.
pub(crate) fn apply_system_level(level: Option<&str>, outcome: &mut crate::InvokeOutcome) {
    if level != Some("WARN") {
        return;
    }
    outcome.log_lines.retain(|l| !is_platform_record(l));
    outcome.log = text(&outcome.log_lines);
    outcome.log_tail = tail(&outcome.log);
}

/// Whether `line` is a record made by [`platform_record`] (a function's own output is
/// never parsed as one unless it prints one; then it is its own line it loses).
fn is_platform_record(line: &LogLine) -> bool {
    serde_json::from_str::<serde_json::Value>(&line.message).is_ok_and(|v| {
        v.get("record").is_some()
            && v.get("time").is_some()
            && v.get("type")
                .and_then(|t| t.as_str())
                .is_some_and(|t| t.starts_with("platform."))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_line_matches_lambda() {
        let id = "8f5c2f4e-0000-4000-8000-000000000000";
        assert_eq!(
            report_line(id, Duration::from_micros(2590), 128, 61, Some(Duration::from_micros(145_510))),
            format!("REPORT RequestId: {id}\tDuration: 2.59 ms\tBilled Duration: 3 ms\tMemory Size: 128 MB\tMax Memory Used: 61 MB\tInit Duration: 145.51 ms")
        );
        assert_eq!(
            report_line(id, Duration::from_millis(2), 128, 61, None),
            format!("REPORT RequestId: {id}\tDuration: 2.00 ms\tBilled Duration: 2 ms\tMemory Size: 128 MB\tMax Memory Used: 61 MB")
        );
        assert_eq!(
            start_line(id, "$LATEST"),
            format!("START RequestId: {id} Version: $LATEST")
        );
        assert_eq!(end_line(id), format!("END RequestId: {id}"));
    }

    #[test]
    fn json_platform_records_match_lambda() {
        let start = platform_start(LogFormat::Json, "r1", "$LATEST");
        let v: serde_json::Value = serde_json::from_str(&start.message).unwrap();
        assert_eq!(v["type"], "platform.start");
        assert_eq!(v["record"]["requestId"], "r1");
        assert_eq!(v["record"]["version"], "$LATEST");
        assert_eq!(v["time"].as_str().unwrap().len(), 24, "{v}");
        assert!(platform_end(LogFormat::Json, "r1").is_none());
        let report = platform_report(
            LogFormat::Json,
            &Report {
                request_id: "r1",
                duration: Duration::from_micros(2590),
                memory_mb: 128,
                max_memory_mb: 61,
                init_duration: Some(Duration::from_micros(145_512)),
                error_type: None,
            },
        );
        let v: serde_json::Value = serde_json::from_str(&report.message).unwrap();
        assert_eq!(v["type"], "platform.report");
        assert_eq!(v["record"]["status"], "success");
        let m = &v["record"]["metrics"];
        assert_eq!(m["durationMs"], 2.59);
        assert_eq!(m["billedDurationMs"], 3);
        assert_eq!(m["memorySizeMB"], 128);
        assert_eq!(m["maxMemoryUsedMB"], 61);
        assert_eq!(m["initDurationMs"], 145.51);
        let timeout = platform_report(
            LogFormat::Json,
            &Report {
                request_id: "r1",
                duration: Duration::from_secs(3),
                memory_mb: 128,
                max_memory_mb: 61,
                init_duration: None,
                error_type: Some("Sandbox.Timedout"),
            },
        );
        assert!(
            timeout.message.contains(r#""status":"timeout""#),
            "{}",
            timeout.message
        );
        // Text mode is unchanged.
        assert_eq!(
            platform_start(LogFormat::Text, "r1", "1").message,
            "START RequestId: r1 Version: 1"
        );
        assert_eq!(LogFormat::parse("JSON"), LogFormat::Json);
        assert_eq!(LogFormat::parse("Text"), LogFormat::Text);
    }

    #[test]
    fn timeout_line_has_two_decimals() {
        let l = timeout_line("r", Duration::from_secs(3));
        assert!(l.ends_with(" r Task timed out after 3.00 seconds"), "{l}");
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(20_513), (2026, 3, 1));
    }

    #[test]
    fn log_buffer_is_bounded() {
        let mut b = LogBuffer::default();
        b.push_bytes("e", &vec![b'x'; MAX_LINE_BYTES * 30]);
        b.push_bytes("e", b"\nlast\n");
        let lines = b.take("e");
        assert!(lines.iter().map(|l| l.message.len()).sum::<usize>() <= MAX_BYTES + 100);
        assert!(lines.iter().all(|l| l.message.len() <= MAX_LINE_BYTES));
        assert!(
            lines.last().unwrap().message.contains("log lines dropped"),
            "{:?}",
            lines.last()
        );
        b.push_bytes("e", b"fresh\n");
        let fresh = b.take("e");
        assert_eq!(fresh.len(), 1);
        assert_eq!(fresh[0].message, "fresh");
        assert!(fresh[0].timestamp_ms > 1_700_000_000_000);
    }

    #[test]
    fn tail_is_bounded() {
        let long = "é".repeat(5000);
        let t = tail(&long);
        assert!(t.len() <= LOG_TAIL_BYTES);
        assert!(long.ends_with(&t));
    }
}
