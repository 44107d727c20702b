//! `nimbus-bench`: benchmarks that start real clusters on loopback and drive them.
//!
//! Layout:
//! - `processes`: child processes and their scratch directory, torn down on drop.
//! - `nimbus_cluster`, `etcd_cluster`: a 3-node cluster of each system, and its leader.
//! - `etcd_gateway`: one keep-alive HTTP/1.1 connection to etcd's v3 JSON gateway.
//! - `workload`: the timed write loop and its clients.
//! - `stats`, `report`: percentiles, medians across rounds, markdown tables.
//! - `invoke_tracing`: `nimbus dev` invocations with tracing off, on and sampled; the
//!   signed invoke loop and the endpoint type the invocation benchmarks share.
//! - `invoke_load`: the no-op function through `nimbus dev` and a cluster, against the
//!   same runtime reached directly.
//! - `edge`: a function version run at an edge location against the same version run in
//!   the home region across a delayed link, and how fast an alias move reaches the edge.
//! - `streaming`: time to first byte of streamed responses, and function URLs, against
//!   `Invoke`.
//! - `failover`: a metadata leader killed, to the next write acknowledged, with the
//!   default and a faster Raft timing.
//! - `liveness`: Raft entries per second that idle workers cost, before and after
//!   liveness moved off the Raft log, and how fast a gateway counts a killed worker dead.
//!
//! See `docs/benchmarks.md` for how to run it and what the figures mean.

mod cpu;
mod edge;
mod etcd_cluster;
mod etcd_gateway;
mod failover;
mod invoke_load;
mod invoke_tracing;
mod liveness;
mod nimbus_cluster;
mod processes;
mod report;
mod stats;
mod streaming;
mod workload;

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::etcd_cluster::EtcdCluster;
use crate::nimbus_cluster::NimbusCluster;
use crate::report::Row;
use crate::stats::{middle, percentile, Summary};
use crate::workload::Target;

#[derive(Parser, Debug)]
#[command(
    name = "nimbus-bench",
    about = "Nimbus benchmarks against real clusters"
)]
struct Cli {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Metadata write latency and throughput: 3-node Nimbus vs 3-node etcd on loopback.
    MetaWrites(MetaWritesArgs),
    /// Invocation throughput and p99 of `nimbus dev` with tracing off, on and 10% sampled.
    InvokeTracing(InvokeTracingArgs),
    /// Sync invocations/s and p50/p99 of a no-op function: the runtime reached directly,
    /// `nimbus dev`, and a cluster of separate processes, in one run.
    InvokeLoad(InvokeLoadArgs),
    /// Time to first byte of a streamed response (InvokeWithResponseStream and a
    /// RESPONSE_STREAM URL) and a function URL's overhead, against Invoke, in one run.
    Streaming(StreamingArgs),
    /// Time from SIGKILL of the metadata leader to the next acknowledged write, with the
    /// default Raft timing and with `--fast` timing, in one run.
    Failover(FailoverArgs),
    /// Raft entries per second that idle workers cost the metadata cluster (every
    /// heartbeat written, as before, against the registration policy now), and how long a
    /// gateway takes to count a killed worker dead.
    Liveness(LivenessArgs),
    /// Invoke latency at an edge location against the same version run in the home region
    /// across a link with added delay, and how long an alias move takes to reach the edge.
    Edge(EdgeArgs),
}

#[derive(Args, Debug)]
struct EdgeArgs {
    /// The `nimbus` binary. Default: next to this executable.
    #[arg(long)]
    nimbus_bin: Option<PathBuf>,
    /// Delay added to each direction of the edge-to-region link, in ms.
    #[arg(long, default_value_t = 10)]
    link_delay_ms: u64,
    /// Timed calls per round and site.
    #[arg(long, default_value_t = 200)]
    calls: usize,
    /// Alias moves timed per round.
    #[arg(long, default_value_t = 10)]
    moves: usize,
    /// Rounds, each on a fresh cluster.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Where the cluster's temporary data directories go (removed at the end).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    work_dir: PathBuf,
}

#[derive(Args, Debug)]
struct FailoverArgs {
    /// The `nimbus` binary. Default: next to this executable.
    #[arg(long)]
    nimbus_bin: Option<PathBuf>,
    /// Leader kills per timing.
    #[arg(long, default_value_t = 20)]
    kills: usize,
    /// The faster timing compared with the default, as `nimbus meta` flags.
    #[arg(
        long,
        allow_hyphen_values = true,
        default_value = "--heartbeat-ms=50 --election-timeout-ms=150"
    )]
    fast: String,
    /// Where the cluster's temporary data directories go (removed at the end).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    work_dir: PathBuf,
}

#[derive(Args, Debug)]
struct LivenessArgs {
    /// The `nimbus` binary. Default: next to this executable.
    #[arg(long)]
    nimbus_bin: Option<PathBuf>,
    /// Simulated idle workers.
    #[arg(long, default_value_t = 1000)]
    workers: usize,
    /// Seconds of idle measured per policy and round.
    #[arg(long, default_value_t = 20)]
    idle_secs: u64,
    /// Rounds, each on a fresh cluster.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Where the cluster's temporary data directories go (removed at the end).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    work_dir: PathBuf,
}

#[derive(Args, Debug)]
struct StreamingArgs {
    /// The `nimbus` binary. Default: next to this executable.
    #[arg(long)]
    nimbus_bin: Option<PathBuf>,
    /// Timed calls per round and way of calling.
    #[arg(long, default_value_t = 200)]
    calls: usize,
    /// Rounds, each with a fresh `nimbus dev`.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Where `nimbus dev`'s temporary data directories go (removed at the end).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    work_dir: PathBuf,
}

#[derive(Args, Debug)]
struct InvokeLoadArgs {
    /// The `nimbus` binary. Default: next to this executable.
    #[arg(long)]
    nimbus_bin: Option<PathBuf>,
    /// The Python interpreter the direct target runs the bootstrap with (the worker's
    /// default for python3.x functions).
    #[arg(long, default_value = "/usr/bin/python3")]
    python: PathBuf,
    /// Client counts, comma-separated; each client has its own keep-alive connection and,
    /// after one untimed call, its own warm execution environment.
    #[arg(long, value_delimiter = ',', default_value = "1,4")]
    concurrency: Vec<usize>,
    /// Timed invocations per round, target and client count.
    #[arg(long, default_value_t = 2000)]
    invocations: u64,
    /// Rounds; each runs every target, rotating which goes first.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Targets to run, comma-separated, the first being the baseline.
    #[arg(long, value_delimiter = ',', default_value = "direct,dev,cluster")]
    targets: Vec<LoadTarget>,
    /// Where the temporary data directories go (removed at the end).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    work_dir: PathBuf,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LoadTarget {
    Direct,
    Dev,
    /// The cluster with --insecure-plaintext between its nodes.
    Cluster,
    /// The same cluster with mutual TLS between its nodes, as deployed.
    ClusterTls,
}

impl LoadTarget {
    fn name(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Dev => "nimbus dev",
            Self::Cluster => "cluster",
            Self::ClusterTls => "cluster mTLS",
        }
    }
}

#[derive(Args, Debug)]
struct InvokeTracingArgs {
    /// The `nimbus` binary. Default: next to this executable.
    #[arg(long)]
    nimbus_bin: Option<PathBuf>,
    /// Concurrent clients (each warms its own execution environment).
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Timed invocations per round and setting.
    #[arg(long, default_value_t = 2000)]
    invocations: u64,
    /// Rounds; each runs every setting, rotating which goes first.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Where `nimbus dev`'s temporary data directories go (removed at the end).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    work_dir: PathBuf,
}

#[derive(Args, Debug)]
struct MetaWritesArgs {
    /// The `nimbus` binary. Default: next to this executable.
    #[arg(long)]
    nimbus_bin: Option<PathBuf>,
    /// The `etcd` binary (v3.4; Debian package etcd-server).
    #[arg(long, default_value = "etcd")]
    etcd_bin: PathBuf,
    /// Client counts to run, comma-separated; each pairs with the same position in --writes.
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    concurrency: Vec<usize>,
    /// Timed writes per round at each client count, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "2000,20000")]
    writes: Vec<u64>,
    /// Size of each written value: the encoded Nimbus command, and the etcd value.
    #[arg(long, default_value_t = 100)]
    value_bytes: usize,
    /// Rounds; each runs every client count on both systems, alternating which goes first.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Untimed writes per system before the first round.
    #[arg(long, default_value_t = 500)]
    warmup: u64,
    /// Where the clusters' temporary data directories go (removed at the end).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    work_dir: PathBuf,
    /// A flag for every `nimbus meta`, repeatable (e.g.
    /// `--meta-flag=--proposals-in-flight=0` to measure without proposal batching).
    #[arg(long, allow_hyphen_values = true)]
    meta_flag: Vec<String>,
}

impl MetaWritesArgs {
    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.concurrency.len() == self.writes.len(),
            "--concurrency and --writes need the same number of entries"
        );
        anyhow::ensure!(
            self.concurrency.iter().all(|c| (1..=1024).contains(c)),
            "--concurrency entries must be 1 to 1024"
        );
        anyhow::ensure!(
            self.writes.iter().all(|w| *w >= 1),
            "--writes entries must be at least 1"
        );
        anyhow::ensure!(
            (1..=100).contains(&self.rounds),
            "--rounds must be 1 to 100"
        );
        Ok(())
    }
}

/// The size of each cluster, for both systems.
const CLUSTER_SIZE: usize = 3;
const LEADER_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        BenchCommand::MetaWrites(args) => {
            // Dropping the benchmark future on Ctrl-C drops the clusters, which stops them.
            tokio::select! {
                r = meta_writes(args) => r,
                _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; clusters stopped"),
            }
        }
        BenchCommand::InvokeLoad(args) => {
            tokio::select! {
                r = invoke_load_bench(args) => r,
                _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; processes stopped"),
            }
        }
        BenchCommand::Edge(args) => {
            tokio::select! {
                r = edge_bench(args) => r,
                _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; processes stopped"),
            }
        }
        BenchCommand::Failover(args) => {
            tokio::select! {
                r = failover_bench(args) => r,
                _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; processes stopped"),
            }
        }
        BenchCommand::Liveness(args) => {
            tokio::select! {
                r = liveness_bench(args) => r,
                _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; processes stopped"),
            }
        }
        BenchCommand::Streaming(args) => {
            tokio::select! {
                r = streaming_bench(args) => r,
                _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; nimbus dev stopped"),
            }
        }
        BenchCommand::InvokeTracing(args) => {
            tokio::select! {
                r = invoke_tracing_bench(args) => r,
                _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; nimbus dev stopped"),
            }
        }
    }
}

/// `--nimbus-bin`, or `nimbus` next to this executable.
fn nimbus_binary(given: &Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let nimbus_bin = match given {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .context("locating this executable")?
            .with_file_name("nimbus"),
    };
    anyhow::ensure!(
        nimbus_bin.is_file(),
        "{} not found; build it (cargo build --release -p nimbus) or pass --nimbus-bin",
        nimbus_bin.display()
    );
    Ok(nimbus_bin)
}

async fn failover_bench(args: FailoverArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=1000).contains(&args.kills),
        "--kills must be 1 to 1000"
    );
    let nimbus_bin = nimbus_binary(&args.nimbus_bin)?;
    let fast: Vec<String> = args.fast.split_whitespace().map(String::from).collect();
    let mut runs = Vec::new();
    for (name, flags) in [("default", Vec::new()), ("fast", fast.clone())] {
        eprintln!("{name} timing {flags:?}:");
        let mut ms = failover::run(&nimbus_bin, &args.work_dir, args.kills, &flags).await?;
        ms.sort_by(f64::total_cmp);
        runs.push((name, flags, ms));
    }
    println!(
        "3-node cluster on loopback, fsync on, one writer; {} leader kills per timing.\n",
        args.kills
    );
    println!("| timing | p50 ms | p90 ms | max ms |");
    println!("|---|---:|---:|---:|");
    for (name, flags, ms) in &runs {
        println!(
            "| {name} ({}) | {:.0} | {:.0} | {:.0} |",
            if flags.is_empty() {
                "--heartbeat-ms 100 --election-timeout-ms 600".to_string()
            } else {
                flags.join(" ")
            },
            percentile(ms, 50.0),
            percentile(ms, 90.0),
            percentile(ms, 100.0)
        );
    }
    let (d, f) = (percentile(&runs[0].2, 50.0), percentile(&runs[1].2, 50.0));
    println!(
        "\nratio fast/default p50={:.2} failover_p50_s default={:.3} fast={:.3}",
        f / d,
        d / 1e3,
        f / 1e3
    );
    Ok(())
}

async fn liveness_bench(args: LivenessArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=100_000).contains(&args.workers) && args.idle_secs >= 1,
        "--workers must be 1 to 100000 and --idle-secs at least 1"
    );
    anyhow::ensure!(
        (1..=100).contains(&args.rounds),
        "--rounds must be 1 to 100"
    );
    let nimbus_bin = nimbus_binary(&args.nimbus_bin)?;
    let idle = Duration::from_secs(args.idle_secs);
    let mut rounds = Vec::new();
    for r in 0..args.rounds {
        let round = liveness::round(&nimbus_bin, &args.work_dir, args.workers, idle).await?;
        eprintln!(
            "round {}: {:.1} entries/s with every heartbeat written, {:.2} with registrations; dead worker counted after {:.0} ms",
            r + 1,
            round.every_heartbeat,
            round.registration,
            round.dead_after_ms
        );
        rounds.push(round);
    }
    let median = |f: &dyn Fn(&liveness::LivenessRound) -> f64| middle(rounds.iter().map(f));
    let (before, now) = (median(&|r| r.every_heartbeat), median(&|r| r.registration));
    let dead = median(&|r| r.dead_after_ms);
    println!(
        "{} idle workers, {} s per policy, medians of {} round(s).\n",
        args.workers, args.idle_secs, args.rounds
    );
    println!("| idle workers' registrations | Raft entries/s |");
    println!("|---|---:|");
    println!("| every heartbeat written (before) | {before:.1} |");
    println!("| written when changed, refreshed every 5 min (now) | {now:.2} |");
    println!("\nA killed worker counted dead by the gateway after {dead:.0} ms (median).");
    println!(
        "ratio now/before entries_per_s={:.4} dead_worker_s={:.2}",
        now / before.max(f64::MIN_POSITIVE),
        dead / 1e3
    );
    Ok(())
}

async fn edge_bench(args: EdgeArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.calls >= 1 && args.moves >= 1,
        "--calls and --moves must be at least 1"
    );
    anyhow::ensure!(
        (1..=100).contains(&args.rounds),
        "--rounds must be 1 to 100"
    );
    let nimbus_bin = nimbus_binary(&args.nimbus_bin)?;
    let delay = Duration::from_millis(args.link_delay_ms);
    let mut rounds = Vec::new();
    for r in 0..args.rounds {
        let round = edge::round(&nimbus_bin, &args.work_dir, delay, args.calls, args.moves).await?;
        eprintln!(
            "round {}: edge p50 {:.2} ms p99 {:.2} ms; region p50 {:.2} ms p99 {:.2} ms; alias moves {:?} ms",
            r + 1,
            round.edge_ms.0,
            round.edge_ms.1,
            round.region_ms.0,
            round.region_ms.1,
            round.alias_moves_ms
        );
        rounds.push(round);
    }
    let median = |f: &dyn Fn(&edge::EdgeRound) -> f64| middle(rounds.iter().map(f));
    let moves: Vec<f64> = {
        let mut all: Vec<f64> = rounds
            .iter()
            .flat_map(|r| r.alias_moves_ms.clone())
            .collect();
        all.sort_by(f64::total_cmp);
        all
    };
    let pct = |p: f64| percentile(&moves, p);
    println!(
        "Link delay {} ms each way, {} calls per site and round, medians of {} round(s).\n",
        args.link_delay_ms, args.calls, args.rounds
    );
    println!("| invoked through fra1's gateway | p50 ms | p99 ms |\n|---|---:|---:|");
    println!(
        "| `near:live`, deployed to fra1: runs at the edge | {:.2} | {:.2} |",
        median(&|r| r.edge_ms.0),
        median(&|r| r.edge_ms.1)
    );
    println!(
        "| `near:1`, the same version not deployed: runs in the region | {:.2} | {:.2} |",
        median(&|r| r.region_ms.0),
        median(&|r| r.region_ms.1)
    );
    println!(
        "\nAlias move to the first call at the edge running the new version ({} moves): p50 {:.1} ms, max {:.1} ms",
        moves.len(),
        pct(50.0),
        pct(100.0)
    );
    println!(
        "\nratio edge/region p50={:.2} p99={:.2} alias_move_p50_ms={:.1}",
        median(&|r| r.edge_ms.0) / median(&|r| r.region_ms.0),
        median(&|r| r.edge_ms.1) / median(&|r| r.region_ms.1),
        pct(50.0)
    );
    Ok(())
}

async fn streaming_bench(args: StreamingArgs) -> anyhow::Result<()> {
    use streaming::{Call, CALLS};
    anyhow::ensure!(args.calls >= 1, "--calls must be at least 1");
    anyhow::ensure!(
        (1..=100).contains(&args.rounds),
        "--rounds must be 1 to 100"
    );
    let nimbus_bin = nimbus_binary(&args.nimbus_bin)?;
    let mut rounds = Vec::new();
    for r in 0..args.rounds {
        let timings = streaming::round(&nimbus_bin, &args.work_dir, args.calls).await?;
        for (call, t) in &timings {
            eprintln!(
                "round {} {:>42}: first byte p50 {:.2} ms, total p50 {:.2} ms, p99 {:.2} ms",
                r + 1,
                call.name(),
                t.first_byte_p50_ms,
                t.total_p50_ms,
                t.total_p99_ms
            );
        }
        rounds.push(timings);
    }
    let median = |call: Call, f: fn(&streaming::Timing) -> f64| {
        middle(
            rounds
                .iter()
                .flat_map(|r| r.iter().filter(|(c, _)| *c == call).map(|(_, t)| f(t))),
        )
    };
    println!(
        "{} timed sequential calls per round and way, medians of {} round(s).\n",
        args.calls, args.rounds
    );
    println!("| call | first byte p50 ms | total p50 ms | total p99 ms |\n|---|---:|---:|---:|");
    for call in CALLS {
        println!(
            "| {} | {:.2} | {:.2} | {:.2} |",
            call.name(),
            median(call, |t| t.first_byte_p50_ms),
            median(call, |t| t.total_p50_ms),
            median(call, |t| t.total_p99_ms)
        );
    }
    let invoke_noop = median(Call::InvokeNoop, |t| t.total_p50_ms);
    let invoke_streamer = median(Call::InvokeStreamer, |t| t.total_p50_ms);
    println!(
        "\nratio url/invoke p50={:.2} ttfb_stream/invoke p50={:.2} ttfb_url_stream/invoke p50={:.2}",
        median(Call::UrlNoop, |t| t.total_p50_ms) / invoke_noop,
        median(Call::StreamStreamer, |t| t.first_byte_p50_ms) / invoke_streamer,
        median(Call::UrlStreamer, |t| t.first_byte_p50_ms) / invoke_streamer,
    );
    Ok(())
}

async fn invoke_tracing_bench(args: InvokeTracingArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=8).contains(&args.concurrency),
        "--concurrency must be 1 to 8 (one 1,769 MB environment each)"
    );
    anyhow::ensure!(args.invocations >= 1, "--invocations must be at least 1");
    anyhow::ensure!(
        (1..=100).contains(&args.rounds),
        "--rounds must be 1 to 100"
    );
    let nimbus_bin = nimbus_binary(&args.nimbus_bin)?;
    let counter = invoke_tracing::SpanCounter::default();
    let endpoint = invoke_tracing::start_receiver(counter.clone()).await?;
    let settings = invoke_tracing::settings(&endpoint);
    let mut results: Vec<Vec<Summary>> = vec![Vec::new(); settings.len()];
    let mut spans: Vec<u64> = vec![0; settings.len()];
    // CPU per invocation, one per round: steadier than throughput on a machine whose
    // spare cycles come and go. `nimbus dev`'s; this process's (the clients, and the
    // span receiver, which a deployment would run elsewhere); every process's.
    let mut dev_cpu_us: Vec<Vec<f64>> = vec![Vec::new(); settings.len()];
    let mut bench_cpu_us: Vec<Vec<f64>> = vec![Vec::new(); settings.len()];
    let mut total_cpu_us: Vec<Vec<f64>> = vec![Vec::new(); settings.len()];
    for round in 0..args.rounds {
        for k in 0..settings.len() {
            // Rotate the order, so drift over time favours no setting.
            let si = (k + round) % settings.len();
            let setting = &settings[si];
            let mut dev =
                invoke_tracing::DevProcess::start(&nimbus_bin, &args.work_dir, &setting.env)
                    .await?;
            dev.endpoint().create_function("bench").await?;
            let before = counter.0.load(std::sync::atomic::Ordering::Relaxed);
            let cpu_before = cpu::Snapshot::take();
            let run =
                invoke_tracing::run(&dev.endpoint(), "bench", args.concurrency, args.invocations)
                    .await?;
            let spent = cpu::Snapshot::take().since(&cpu_before);
            let per_invocation = |d: Duration| d.as_secs_f64() * 1e6 / args.invocations as f64;
            let role = |r| spent.get(&r).copied().unwrap_or_default();
            dev_cpu_us[si].push(per_invocation(role(cpu::Role::Dev)));
            bench_cpu_us[si].push(per_invocation(role(cpu::Role::Client)));
            total_cpu_us[si].push(per_invocation(spent.values().sum()));
            dev.check_alive()?;
            if let Some(e) = &run.first_error {
                anyhow::bail!("{} round {}: {e}", setting.name, round + 1);
            }
            let s = Summary::of(&run);
            dev.stop().await;
            // Stopping flushed the queue: what arrived belongs to this setting.
            spans[si] += counter.0.load(std::sync::atomic::Ordering::Relaxed) - before;
            eprintln!(
                "round {} {:>12}: {} invocations in {:.2}s: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms",
                round + 1,
                setting.name,
                run.latencies.len(),
                run.elapsed.as_secs_f64(),
                s.writes_per_sec,
                s.p50_ms,
                s.p99_ms
            );
            results[si].push(s);
        }
    }
    let base = Summary::median(&results[0]);
    println!(
        "{} clients, {} timed invocations per round, medians of {} round(s).\n",
        args.concurrency, args.invocations, args.rounds
    );
    let base_cpu = middle(dev_cpu_us[0].iter().copied());
    let base_bench = middle(bench_cpu_us[0].iter().copied());
    let base_total = middle(total_cpu_us[0].iter().copied());
    println!("| setting | invocations/s | vs off | p50 ms | p99 ms | p99 vs off | nimbus dev CPU µs per invocation | vs off | bench process (clients + span receiver) µs | all processes µs | all but the receiver, vs off | spans exported per invocation |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut ratios = Vec::new();
    for (si, setting) in settings.iter().enumerate() {
        let s = Summary::median(&results[si]);
        let per_invocation = spans[si] as f64 / (args.invocations as f64 * args.rounds as f64);
        let cpu = middle(dev_cpu_us[si].iter().copied());
        let bench = middle(bench_cpu_us[si].iter().copied());
        let total = middle(total_cpu_us[si].iter().copied());
        // The receiver's share is what this process spent beyond its own with tracing
        // off (the clients do the same work in every setting).
        let without_receiver = total - (bench - base_bench).max(0.0);
        println!(
            "| {} | {:.0} | {:.3} | {:.2} | {:.2} | {:.3} | {:.0} | {:.3} | {:.0} | {:.0} | {:.3} | {:.2} |",
            setting.name,
            s.writes_per_sec,
            s.writes_per_sec / base.writes_per_sec,
            s.p50_ms,
            s.p99_ms,
            s.p99_ms / base.p99_ms,
            cpu,
            cpu / base_cpu,
            bench,
            total,
            without_receiver / base_total,
            per_invocation
        );
        if si > 0 {
            let name = setting.name.replace([' ', '%'], "_");
            ratios.push(format!(
                "{name}_throughput={:.3} {name}_cpu={:.3} {name}_all_but_receiver_cpu={:.3}",
                s.writes_per_sec / base.writes_per_sec,
                cpu / base_cpu,
                without_receiver / base_total
            ));
        }
    }
    println!("\nratio setting/off {}", ratios.join(" "));
    Ok(())
}

/// One target running: what each round measures against.
enum LoadRunning {
    Direct(invoke_load::DirectRuntime),
    Dev(invoke_tracing::DevProcess),
    Cluster(invoke_load::Cluster),
}

impl LoadRunning {
    async fn start(
        target: LoadTarget,
        args: &InvokeLoadArgs,
        nimbus_bin: &std::path::Path,
    ) -> anyhow::Result<Self> {
        let max_c = args.concurrency.iter().copied().max().unwrap_or(1);
        Ok(match target {
            LoadTarget::Direct => {
                let d =
                    invoke_load::DirectRuntime::start(&args.python, &args.work_dir, max_c).await?;
                Self::Direct(d)
            }
            LoadTarget::Dev => {
                let d = invoke_tracing::DevProcess::start(nimbus_bin, &args.work_dir, &[]).await?;
                d.endpoint().create_function("bench").await?;
                Self::Dev(d)
            }
            LoadTarget::Cluster | LoadTarget::ClusterTls => {
                let tls = target == LoadTarget::ClusterTls;
                let c = invoke_load::Cluster::start(nimbus_bin, &args.work_dir, 16384, tls).await?;
                c.create_function("bench").await?;
                Self::Cluster(c)
            }
        })
    }

    fn endpoint(&self) -> invoke_tracing::Endpoint {
        match self {
            Self::Direct(d) => d.endpoint(),
            Self::Dev(d) => d.endpoint(),
            Self::Cluster(c) => c.endpoint(),
        }
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        match self {
            Self::Direct(d) => d.check_alive(),
            Self::Dev(d) => d.check_alive(),
            Self::Cluster(c) => c.check_alive(),
        }
    }

    async fn stop(self) {
        match self {
            Self::Direct(d) => drop(d),
            Self::Dev(d) => d.stop().await,
            Self::Cluster(c) => c.stop().await,
        }
    }
}

async fn invoke_load_bench(args: InvokeLoadArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        !args.concurrency.is_empty() && args.concurrency.iter().all(|c| (1..=8).contains(c)),
        "--concurrency entries must be 1 to 8 (one 1,769 MB environment each)"
    );
    anyhow::ensure!(args.invocations >= 1, "--invocations must be at least 1");
    anyhow::ensure!(
        (1..=100).contains(&args.rounds),
        "--rounds must be 1 to 100"
    );
    anyhow::ensure!(
        !args.targets.is_empty(),
        "--targets must name at least one target"
    );
    let nimbus_bin = nimbus_binary(&args.nimbus_bin)?;
    // results[target][concurrency index] = one summary per round.
    let mut results = vec![vec![Vec::new(); args.concurrency.len()]; args.targets.len()];
    // The same, CPU per invocation by role, and time spent waiting for a CPU by role.
    let mut cpu = vec![vec![Vec::new(); args.concurrency.len()]; args.targets.len()];
    let mut waited = cpu.clone();
    for round in 0..args.rounds {
        for k in 0..args.targets.len() {
            // Rotate the order, so drift over time favours no target.
            let ti = (k + round) % args.targets.len();
            let target = args.targets[ti];
            let mut running = LoadRunning::start(target, &args, &nimbus_bin).await?;
            for (ci, &c) in args.concurrency.iter().enumerate() {
                let before = cpu::Snapshot::take();
                let run =
                    invoke_tracing::run(&running.endpoint(), "bench", c, args.invocations).await?;
                let after = cpu::Snapshot::take();
                cpu[ti][ci].push(after.since(&before));
                waited[ti][ci].push(after.waited_since(&before));
                running.check_alive()?;
                if let Some(e) = &run.first_error {
                    anyhow::bail!("{} c={c} round {}: {e}", target.name(), round + 1);
                }
                let s = Summary::of(&run);
                eprintln!(
                    "round {} {:>10} c={c:<2}: {} invocations in {:.2}s: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms",
                    round + 1,
                    target.name(),
                    run.latencies.len(),
                    run.elapsed.as_secs_f64(),
                    s.writes_per_sec,
                    s.p50_ms,
                    s.p99_ms
                );
                results[ti][ci].push(s);
            }
            running.stop().await;
        }
    }
    println!(
        "{} timed invocations per round, target and client count; medians of {} round(s); baseline: {}.\n",
        args.invocations,
        args.rounds,
        args.targets[0].name()
    );
    println!("| target | clients | invocations/s | vs baseline | p50 ms | p99 ms | p50 vs baseline | p99 vs baseline |\n|---|---:|---:|---:|---:|---:|---:|---:|");
    for (ci, &c) in args.concurrency.iter().enumerate() {
        let base = Summary::median(&results[0][ci]);
        for (ti, target) in args.targets.iter().enumerate() {
            let s = Summary::median(&results[ti][ci]);
            println!(
                "| {} | {c} | {:.0} | {:.3} | {:.2} | {:.2} | {:.2} | {:.2} |",
                target.name(),
                s.writes_per_sec,
                s.writes_per_sec / base.writes_per_sec,
                s.p50_ms,
                s.p99_ms,
                s.p50_ms / base.p50_ms,
                s.p99_ms / base.p99_ms
            );
        }
    }
    role_table(
        &args,
        &cpu,
        "CPU per invocation, microseconds (user + system, from /proc; medians of rounds)",
    );
    role_table(
        &args,
        &waited,
        "Time runnable but waiting for a CPU, per invocation, microseconds (all threads' \
         run-queue wait from /proc/*/task/*/schedstat; medians of rounds)",
    );
    // The last line, for scripts: each target's throughput against the baseline.
    let mut ratios = Vec::new();
    for (ci, &c) in args.concurrency.iter().enumerate() {
        let base = Summary::median(&results[0][ci]).writes_per_sec;
        for (ti, target) in args.targets.iter().enumerate().skip(1) {
            let s = Summary::median(&results[ti][ci]).writes_per_sec;
            ratios.push(format!(
                "{}_c{c}={:.2}",
                target.name().replace(' ', "_"),
                s / base
            ));
        }
    }
    println!(
        "\nratio target/{} invocations_per_s {}",
        args.targets[0].name(),
        ratios.join(" ")
    );
    Ok(())
}

/// A time per invocation by role (medians of rounds), under `title`: where each
/// target's cycles go, or how long its threads waited for one.
fn role_table(
    args: &InvokeLoadArgs,
    times: &[Vec<Vec<std::collections::BTreeMap<cpu::Role, Duration>>>],
    title: &str,
) {
    let per_invocation_us = |rounds: &[std::collections::BTreeMap<cpu::Role, Duration>],
                             role: Option<cpu::Role>| {
        middle(rounds.iter().map(|m| {
            let d: Duration = match role {
                Some(r) => m.get(&r).copied().unwrap_or_default(),
                None => m.values().sum(),
            };
            d.as_secs_f64() * 1e6 / args.invocations as f64
        }))
    };
    let roles: Vec<cpu::Role> = cpu::Role::ALL
        .into_iter()
        .filter(|r| {
            times
                .iter()
                .flatten()
                .flatten()
                .any(|m| m.get(r).is_some_and(|d| !d.is_zero()))
        })
        .collect();
    println!("\n{title}:\n");
    let header: Vec<&str> = roles.iter().map(|r| r.name()).collect();
    println!(
        "| target | clients | {} | total |\n|---|---:|{}---:|",
        header.join(" | "),
        "---:|".repeat(roles.len())
    );
    for (ci, &c) in args.concurrency.iter().enumerate() {
        for (ti, target) in args.targets.iter().enumerate() {
            let cells: Vec<String> = roles
                .iter()
                .map(|r| format!("{:.0}", per_invocation_us(&times[ti][ci], Some(*r))))
                .collect();
            println!(
                "| {} | {c} | {} | {:.0} |",
                target.name(),
                cells.join(" | "),
                per_invocation_us(&times[ti][ci], None)
            );
        }
    }
}

async fn meta_writes(args: MetaWritesArgs) -> anyhow::Result<()> {
    args.validate()?;
    let nimbus_bin = nimbus_binary(&args.nimbus_bin)?;
    let etcd_version = std::process::Command::new(&args.etcd_bin)
        .arg("--version")
        .output()
        .with_context(|| {
            format!(
                "running {} --version (apt-get install -y etcd-server)",
                args.etcd_bin.display()
            )
        })?;
    let etcd_version = String::from_utf8_lossy(&etcd_version.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    eprintln!(
        "nimbus: {} (meta flags {:?}); {etcd_version}",
        nimbus_bin.display(),
        args.meta_flag
    );

    // Plaintext, like the etcd it is compared with.
    let mut nimbus = NimbusCluster::start_with(
        &nimbus_bin,
        &args.work_dir,
        CLUSTER_SIZE,
        None,
        &args.meta_flag,
    )?;
    let mut etcd = EtcdCluster::start(&args.etcd_bin, &args.work_dir, CLUSTER_SIZE)?;
    let nimbus_leader = nimbus.wait_leader(LEADER_TIMEOUT).await?;
    let etcd_leader = etcd.wait_leader(LEADER_TIMEOUT).await?;
    eprintln!("leaders: nimbus {nimbus_leader}, etcd {etcd_leader}");

    // Clients talk to the leader, so neither system pays a forwarding hop.
    let mut nimbus_addrs = vec![nimbus_leader.clone()];
    nimbus_addrs.extend(
        nimbus
            .addrs
            .iter()
            .filter(|a| **a != nimbus_leader)
            .cloned(),
    );
    let systems = [
        (
            "nimbus",
            Target::Nimbus {
                addrs: nimbus_addrs,
            },
        ),
        ("etcd", Target::Etcd { addr: etcd_leader }),
    ];
    let next_seq: Vec<Arc<AtomicU64>> = systems.iter().map(|_| Default::default()).collect();

    let max_c = args.concurrency.iter().copied().max().unwrap_or(1);
    for (i, (name, target)) in systems.iter().enumerate() {
        let w = workload::run(target, max_c, args.warmup, args.value_bytes, &next_seq[i]).await?;
        anyhow::ensure!(
            w.failures == 0,
            "{name} warm-up failed: {}",
            w.first_error.unwrap_or_default()
        );
    }

    // results[system][concurrency index] = one summary per round.
    let mut results = vec![vec![Vec::new(); args.concurrency.len()]; systems.len()];
    let mut failures = Vec::new();
    for round in 0..args.rounds {
        for (ci, (&c, &n)) in args.concurrency.iter().zip(&args.writes).enumerate() {
            // Alternate which system goes first, so drift over time favours neither.
            let order: Vec<usize> = if round % 2 == 0 {
                vec![0, 1]
            } else {
                vec![1, 0]
            };
            for si in order {
                let (name, target) = &systems[si];
                let run = workload::run(target, c, n, args.value_bytes, &next_seq[si]).await?;
                let s = Summary::of(&run);
                eprintln!(
                    "round {} {name:>6} c={c:<3} {} writes in {:.2}s: {:.0} writes/s, p50 {:.2} ms, p99 {:.2} ms, failed clients {}",
                    round + 1,
                    run.latencies.len(),
                    run.elapsed.as_secs_f64(),
                    s.writes_per_sec,
                    s.p50_ms,
                    s.p99_ms,
                    run.failures
                );
                if let Some(e) = run.first_error {
                    failures.push(format!("{name} c={c} round {}: {e}", round + 1));
                }
                results[si][ci].push(s);
                nimbus.check_alive()?;
                etcd.check_alive()?;
            }
        }
    }

    let mut rows = Vec::new();
    for (ci, (&c, &n)) in args.concurrency.iter().zip(&args.writes).enumerate() {
        for (si, (name, _)) in systems.iter().enumerate() {
            rows.push(Row {
                system: name,
                concurrency: c,
                writes: n,
                summary: Summary::median(&results[si][ci]),
            });
        }
    }
    println!(
        "Value size {} bytes; 3-node clusters on loopback; Nimbus over gRPC, etcd over its v3 JSON gateway.\n",
        args.value_bytes
    );
    print!("{}", report::markdown(&rows, args.rounds));
    anyhow::ensure!(
        failures.is_empty(),
        "{} run(s) had failed writes:\n{}",
        failures.len(),
        failures.join("\n")
    );
    Ok(())
}
