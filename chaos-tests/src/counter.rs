//! What the functions themselves report: a TCP server in the runner that every invocation
//! of the chaos function connects to while it runs.
//!
//! Protocol (one connection per invocation): the function sends `B <scope> <id> <t>\n`
//! when it starts, `. <t>\n` every 50 ms while it works, `E <t>\n` just before it
//! returns, and closes; `<t>` is the function's own clock (`time.time()`, the host's
//! clock: every container shares it). Each invocation is the interval from its `B` to its
//! `E` in those times, or, for one that was killed, to the last line it sent (a container
//! killed with its network may never send the FIN, so a half-open connection must not
//! count as running). The functions' own times, not arrival times, because the runner's
//! tasks may be scheduled late on a loaded machine, which would stretch intervals and
//! show overlaps that never happened. The concurrency seen from inside the functions is
//! the largest number of overlapping intervals of a scope. Ids that sent `E` ran to the end.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;

#[derive(Debug, Default)]
struct Scope {
    running: u32,
    /// Running invocations by the address they came from (their worker, through NAT).
    running_from: HashMap<std::net::IpAddr, u32>,
    /// (start, end, id) of every finished or silent invocation, in the functions' clock
    /// (seconds since the epoch).
    intervals: Vec<(f64, f64, String)>,
    /// Ids whose invocation ran to its end (at least once).
    completed: HashSet<String>,
    /// Invocations that started but never finished (killed mid-way).
    cut_short: u64,
}

/// The counter server; stops when dropped.
pub struct Counter {
    pub port: u16,
    scopes: Arc<Mutex<HashMap<String, Scope>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Counter {
    /// Listens on every address (the functions reach it through their worker's NAT).
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("0.0.0.0:0").await?;
        let port = listener.local_addr()?.port();
        let scopes: Arc<Mutex<HashMap<String, Scope>>> = Arc::default();
        let shared = scopes.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, shared.clone()));
            }
        });
        Ok(Self { port, scopes, task })
    }

    /// (highest concurrency, ids completed, invocations cut short) of a scope, over the
    /// invocations that have ended.
    pub fn observed(&self, scope: &str) -> (u32, HashSet<String>, u64) {
        let scopes = crate::lock(&self.scopes);
        scopes
            .get(scope)
            .map(|s| {
                (
                    max_overlap(&s.intervals).0,
                    s.completed.clone(),
                    s.cut_short,
                )
            })
            .unwrap_or_default()
    }

    /// The highest concurrency of a scope within `[from, to]` (seconds since the epoch,
    /// the functions' clock), counting the part of each invocation inside the window.
    pub fn observed_during(&self, scope: &str, from: f64, to: f64) -> u32 {
        let scopes = crate::lock(&self.scopes);
        let Some(s) = scopes.get(scope) else {
            return 0;
        };
        let clipped: Vec<(f64, f64, String)> = s
            .intervals
            .iter()
            .filter(|(a, b, _)| *a < to && *b > from)
            .map(|(a, b, id)| (a.max(from), b.min(to), id.clone()))
            .collect();
        max_overlap(&clipped).0
    }

    /// The ids of a largest set of overlapping invocations, with their start and end
    /// relative to the first of them, in ms (to explain a limit exceeded).
    pub fn witness(&self, scope: &str) -> String {
        let scopes = crate::lock(&self.scopes);
        let Some(s) = scopes.get(scope) else {
            return String::new();
        };
        let (_, ids) = max_overlap(&s.intervals);
        let chosen: Vec<&(f64, f64, String)> = s
            .intervals
            .iter()
            .filter(|iv| ids.contains(&iv.2))
            .collect();
        let t0 = chosen.iter().map(|iv| iv.0).fold(f64::INFINITY, f64::min);
        chosen
            .iter()
            .map(|(a, b, id)| {
                let done = if s.completed.contains(id) {
                    ""
                } else {
                    " (cut short)"
                };
                format!("{id} {:.1}..{:.1} ms{done}", (a - t0) * 1e3, (b - t0) * 1e3)
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// How many invocations of the scope are running now from each address.
    pub fn running_from(&self, scope: &str) -> HashMap<std::net::IpAddr, u32> {
        let scopes = crate::lock(&self.scopes);
        scopes
            .get(scope)
            .map(|s| s.running_from.clone())
            .unwrap_or_default()
    }

    /// How many invocations of the scope are running now.
    pub fn running(&self, scope: &str) -> u32 {
        let scopes = crate::lock(&self.scopes);
        scopes.get(scope).map_or(0, |s| s.running)
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(stream: tokio::net::TcpStream, scopes: Arc<Mutex<HashMap<String, Scope>>>) {
    let Ok(peer) = stream.peer_addr().map(|a| a.ip()) else {
        return;
    };
    let mut lines = BufReader::new(stream).lines();
    let Ok(Some(first)) = lines.next_line().await else {
        return;
    };
    let mut parts = first.split_whitespace();
    let (Some("B"), Some(scope), Some(id), Some(Ok(start))) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next().map(str::parse::<f64>),
    ) else {
        return;
    };
    let (scope, id) = (scope.to_string(), id.to_string());
    {
        let mut scopes = crate::lock(&scopes);
        let s = scopes.entry(scope.clone()).or_default();
        s.running += 1;
        *s.running_from.entry(peer).or_default() += 1;
    }
    let (mut last_seen, mut finished) = (start, false);
    // Until `E`, a close, or silence: a live function writes every 50 ms.
    loop {
        let Ok(Ok(Some(line))) = tokio::time::timeout(SILENCE, lines.next_line()).await else {
            break;
        };
        let mut parts = line.split_whitespace();
        let (kind, t) = (
            parts.next(),
            parts.next().and_then(|t| t.parse::<f64>().ok()),
        );
        if let Some(t) = t {
            last_seen = last_seen.max(t);
        }
        if kind == Some("E") {
            finished = true;
            break;
        }
    }
    let mut scopes = crate::lock(&scopes);
    let s = scopes.entry(scope).or_default();
    s.running -= 1;
    if let Some(n) = s.running_from.get_mut(&peer) {
        *n -= 1;
    }
    // At least an instant long, so that its end never sorts before its own start.
    s.intervals
        .push((start, last_seen.max(start + 1e-6), id.clone()));
    if finished {
        s.completed.insert(id);
    } else {
        s.cut_short += 1;
    }
}

/// A function that sent nothing for this long is dead (it writes every 50 ms).
const SILENCE: Duration = Duration::from_secs(2);

/// The largest number of intervals that overlap at one instant, and the ids of one such
/// set. An interval ending exactly when another starts does not overlap it.
fn max_overlap(intervals: &[(f64, f64, String)]) -> (u32, Vec<String>) {
    // (time, +1 start / -1 end, index); ends sort before starts at the same instant.
    let mut edges: Vec<(f64, i32, usize)> = intervals
        .iter()
        .enumerate()
        .flat_map(|(i, (a, b, _))| [(*a, 1, i), (*b, -1, i)])
        .collect();
    edges.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
    let mut open = std::collections::BTreeSet::new();
    let mut best: (u32, Vec<String>) = (0, Vec::new());
    for (_, d, i) in edges {
        if d > 0 {
            open.insert(i);
        } else {
            open.remove(&i);
        }
        if open.len() as u32 > best.0 {
            best = (
                open.len() as u32,
                open.iter().map(|&j| intervals[j].2.clone()).collect(),
            );
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn overlap_of_intervals() {
        let iv = |a: f64, b: f64, id: &str| (a, b, id.to_string());
        assert_eq!(max_overlap(&[]).0, 0);
        assert_eq!(max_overlap(&[iv(0.0, 10.0, "a"), iv(10.0, 20.0, "b")]).0, 1);
        let (n, ids) = max_overlap(&[
            iv(0.0, 10.0, "a"),
            iv(5.0, 20.0, "b"),
            iv(6.0, 7.0, "c"),
            iv(15.0, 30.0, "d"),
        ]);
        assert_eq!((n, ids), (3, vec!["a".to_string(), "b".into(), "c".into()]));
    }

    #[tokio::test]
    async fn counts_overlap_completion_and_cut_short() {
        let c = Counter::start().await.unwrap();
        let addr = format!("127.0.0.1:{}", c.port);
        let mut a = tokio::net::TcpStream::connect(&addr).await.unwrap();
        a.write_all(b"B f id-a 100.0\n").await.unwrap();
        let mut b = tokio::net::TcpStream::connect(&addr).await.unwrap();
        b.write_all(b"B f id-b 100.5\n").await.unwrap();
        for _ in 0..100 {
            if c.running("f") == 2 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(c.running("f"), 2);
        a.write_all(b"E 101.0\n").await.unwrap();
        drop(a);
        drop(b); // no `E`: killed mid-way
        for _ in 0..100 {
            if c.running("f") == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let (max, completed, cut) = c.observed("f");
        assert_eq!(max, 2);
        assert_eq!(completed, HashSet::from(["id-a".to_string()]));
        assert_eq!(cut, 1);
        assert_eq!(c.observed("other").0, 0);
    }
}
