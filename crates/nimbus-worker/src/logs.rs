//! Log capture and Lambda's platform log lines.
//!
//! The runtime's stdout and stderr share one pipe (Lambda has one log stream
//! per environment). A task reads it into [`LogBuffer`]; at the end of an
//! invocation the engine asks the reader to drain whatever the runtime wrote
//! *before* posting its response (so no line lands in the wrong invocation),
//! then frames the lines with START / END / REPORT.

use std::fmt::Write as _;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::unix::pipe;
use tokio::sync::{mpsc, oneshot};

/// `X-Amz-Log-Result` carries the last 4 KB of the log.
pub const LOG_TAIL_BYTES: usize = 4096;
/// Lines kept per invocation; later ones are counted and dropped.
const MAX_LINES: usize = 10_000;
/// Bytes kept per invocation, so a chatty function cannot exhaust the worker.
const MAX_BYTES: usize = 4 * 1024 * 1024;
/// A line longer than this is split (CloudWatch's event limit is 256 KB).
const MAX_LINE_BYTES: usize = 256 * 1024;

#[derive(Debug, Default)]
struct LogBuffer {
    lines: Vec<String>,
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
            self.lines.push(line);
        }
    }

    fn take(&mut self, env_id: &str) -> Vec<String> {
        if !self.partial.is_empty() {
            let line = String::from_utf8_lossy(&self.partial).into_owned();
            self.partial.clear();
            self.push_line(env_id, line);
        }
        if self.dropped > 0 {
            let n = std::mem::take(&mut self.dropped);
            self.lines.push(format!("[nimbus: {n} log lines dropped]"));
        }
        self.bytes = 0;
        std::mem::take(&mut self.lines)
    }
}

/// Reads one environment's output pipe.
#[derive(Debug)]
pub(crate) struct LogCapture {
    env_id: String,
    buffer: Arc<Mutex<LogBuffer>>,
    drain_tx: mpsc::Sender<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl LogCapture {
    /// Starts reading `read_end`.
    pub(crate) fn start(env_id: String, read_end: OwnedFd) -> std::io::Result<Self> {
        let rx = pipe::Receiver::from_owned_fd(read_end)?;
        let buffer = Arc::new(Mutex::new(LogBuffer::default()));
        let (drain_tx, mut drain_rx) = mpsc::channel::<oneshot::Sender<()>>(4);
        let buf = buffer.clone();
        let id = env_id.clone();
        let task = tokio::spawn(async move {
            let mut chunk = vec![0u8; 16 * 1024];
            let mut open = true;
            loop {
                tokio::select! {
                    ready = rx.readable(), if open => {
                        if ready.is_err() { open = false; continue; }
                        open = read_available(&rx, &mut chunk, &buf, &id);
                    }
                    req = drain_rx.recv() => {
                        let Some(ack) = req else { break };
                        if open {
                            open = read_available(&rx, &mut chunk, &buf, &id);
                        }
                        let _ = ack.send(());
                    }
                }
            }
        });
        Ok(LogCapture {
            env_id,
            buffer,
            drain_tx,
            task,
        })
    }

    /// Reads everything already in the pipe, then returns the lines so far.
    pub(crate) async fn drain(&self) -> Vec<String> {
        let (tx, rx) = oneshot::channel();
        if self.drain_tx.send(tx).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_millis(200), rx).await;
        }
        self.buffer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(&self.env_id)
    }
}

impl Drop for LogCapture {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Non-blocking reads until the pipe is empty; false once it is closed.
fn read_available(rx: &pipe::Receiver, chunk: &mut [u8], buf: &Mutex<LogBuffer>, id: &str) -> bool {
    loop {
        match rx.try_read(chunk) {
            Ok(0) => return false,
            Ok(n) => buf
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push_bytes(id, &chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
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

/// `2026-11-27T03:04:05.678Z`
pub fn iso8601_now() -> String {
    let t = now();
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
        assert!(lines.iter().map(String::len).sum::<usize>() <= MAX_BYTES + 100);
        assert!(lines.iter().all(|l| l.len() <= MAX_LINE_BYTES));
        assert!(
            lines.last().unwrap().contains("log lines dropped"),
            "{:?}",
            lines.last()
        );
        b.push_bytes("e", b"fresh\n");
        assert_eq!(b.take("e"), vec!["fresh".to_owned()]);
    }

    #[test]
    fn tail_is_bounded() {
        let long = "é".repeat(5000);
        let t = tail(&long);
        assert!(t.len() <= LOG_TAIL_BYTES);
        assert!(long.ends_with(&t));
    }
}
