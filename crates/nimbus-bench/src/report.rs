//! The markdown tables the benchmark prints.

use std::fmt::Write;

use crate::stats::Summary;

/// One row: a system at one concurrency, medians across rounds.
pub struct Row {
    pub system: &'static str,
    pub concurrency: usize,
    pub writes: u64,
    pub summary: Summary,
}

/// The results table, for each concurrency the Nimbus/etcd ratios, and a last line for
/// scripts: `ratio nimbus/etcd writes_1=… p50_1=… writes_64=… p50_64=…`.
pub fn markdown(rows: &[Row], rounds: usize) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "| system | clients | writes per round | writes/s | p50 ms | p99 ms |\n|---|---:|---:|---:|---:|---:|"
    );
    for r in rows {
        let s = r.summary;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {:.2} | {:.2} |",
            r.system, r.concurrency, r.writes, s.writes_per_sec, s.p50_ms, s.p99_ms
        );
    }
    let _ = writeln!(out, "\nMedians of {rounds} round(s).\n");
    let _ = writeln!(
        out,
        "| clients | throughput Nimbus/etcd | p50 Nimbus/etcd | p99 Nimbus/etcd |\n|---:|---:|---:|---:|"
    );
    let find = |system: &str, c: usize| {
        rows.iter()
            .find(|r| r.system == system && r.concurrency == c)
    };
    let mut seen = Vec::new();
    let mut last_line = String::from("ratio nimbus/etcd");
    for r in rows {
        if seen.contains(&r.concurrency) {
            continue;
        }
        seen.push(r.concurrency);
        if let (Some(n), Some(e)) = (find("nimbus", r.concurrency), find("etcd", r.concurrency)) {
            let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
            let (n, e) = (n.summary, e.summary);
            let _ = writeln!(
                out,
                "| {} | {:.2} | {:.2} | {:.2} |",
                r.concurrency,
                ratio(n.writes_per_sec, e.writes_per_sec),
                ratio(n.p50_ms, e.p50_ms),
                ratio(n.p99_ms, e.p99_ms)
            );
            let _ = write!(
                last_line,
                " writes_{c}={:.2} p50_{c}={:.2}",
                ratio(n.writes_per_sec, e.writes_per_sec),
                ratio(n.p50_ms, e.p50_ms),
                c = r.concurrency
            );
        }
    }
    let _ = writeln!(out, "\n{last_line}");
    out
}
