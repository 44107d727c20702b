//! `nimbus-chaos` (run it through `chaos-tests/run`): starts the Compose cluster, runs
//! every scenario with a seed, prints one summary line per scenario, exits non-zero when
//! any check fails.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use chaos_tests::docker::{self, Compose};
use chaos_tests::invocations::{self, InvocationCluster, InvocationFault};
use chaos_tests::scenario::{self, Fault, MetaCluster, Pace};
use chaos_tests::summary::Summary;
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "nimbus-chaos",
    about = "Fault injection against a Nimbus cluster in Docker Compose"
)]
struct Args {
    /// A few minutes: every fault kind once.
    #[arg(long, conflicts_with = "long")]
    short: bool,
    /// On demand: every fault kind several times, held longer, under more load.
    #[arg(long)]
    long: bool,
    /// Replays a run (default: drawn from the clock and printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Run only the scenarios whose name contains this.
    #[arg(long)]
    only: Option<String>,
    /// The repository root (for deploy/compose and chaos-tests/compose.chaos.yml).
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// Scratch directory for node data file systems and the cluster key.
    #[arg(long, default_value = "/var/tmp/nimbus-chaos")]
    work_dir: PathBuf,
    /// Leave the cluster running afterwards (for inspection).
    #[arg(long)]
    keep: bool,
}

const META_IPS: [&str; 3] = ["172.28.0.11", "172.28.0.12", "172.28.0.13"];

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if !docker::available().await {
        println!("chaos-tests: SKIPPED: no Docker Engine (or no docker-compose) on this machine");
        return std::process::ExitCode::SUCCESS;
    }
    match run(args).await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("chaos-tests: error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<bool> {
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1)
    });
    let pace = if args.long {
        Pace {
            cycles: 5,
            max_hold: Duration::from_secs(8),
            clients: 8,
            keys: 16,
        }
    } else {
        Pace {
            cycles: 1,
            max_hold: Duration::from_secs(4),
            clients: 4,
            keys: 8,
        }
    };
    println!(
        "chaos-tests: seed={seed} mode={}",
        if args.long { "long" } else { "short" }
    );

    let repo = std::fs::canonicalize(&args.repo).context("--repo")?;
    std::fs::create_dir_all(&args.work_dir)?;
    let work = std::fs::canonicalize(&args.work_dir)?;
    let key = work.join("cluster.key");
    if !key.exists() {
        let bytes: [u8; 32] = rand::random();
        std::fs::write(&key, bytes)?;
    }
    let data_dirs: Vec<PathBuf> = (1..=3).map(|i| work.join(format!("meta{i}"))).collect();
    let tls = work.join("tls");
    make_certificates(&tls).context("making the cluster's certificates")?;
    let compose = Compose {
        project: "nimbuschaos".into(),
        files: vec![
            repo.join("deploy/compose/docker-compose.yml"),
            repo.join("chaos-tests/compose.chaos.yml"),
        ],
        env: vec![
            ("CHAOS_DIR".into(), work.display().to_string()),
            ("NIMBUS_TLS".into(), tls.display().to_string()),
            ("NIMBUS_IMAGE".into(), image()),
            ("NIMBUS_ACCOUNT_ID".into(), invocations::ACCOUNT.into()),
            (
                "NIMBUS_ACCESS_KEY_ID".into(),
                invocations::ACCESS_KEY_ID.into(),
            ),
            (
                "NIMBUS_SECRET_ACCESS_KEY".into(),
                invocations::SECRET_ACCESS_KEY.into(),
            ),
        ],
    };
    // Leftovers of an interrupted run would break the fixed addresses. Workers are not
    // Compose services (see `invocations`): remove them first, they hold the network.
    invocations::remove_workers(&compose).await;
    let _ = compose.down().await;
    for d in &data_dirs {
        docker::remove_small_filesystem(d).await;
        docker::small_filesystem(d, 256).await?;
    }
    let cluster = MetaCluster {
        compose: compose.clone(),
        nodes: (1..=3)
            .map(|i| (format!("meta{i}"), i as u64, META_IPS[i - 1].to_string()))
            .collect(),
        data_dirs: data_dirs.clone(),
        transport: nimbus_tls::Transport::Tls(nimbus_tls::Tls::load(
            tls.join("admin"),
            nimbus_tls::Role::Admin,
        )?),
        tls,
    };
    let result = run_scenarios(&cluster, &args, seed, pace).await;
    if !args.keep {
        invocations::remove_workers(&compose).await;
        let _ = compose.down().await;
        for d in &data_dirs {
            docker::remove_small_filesystem(d).await;
        }
    }
    result
}

/// The cluster CA and a certificate per service, as `deploy/compose/up.sh` makes them,
/// plus the runner's admin certificate. Made once per work directory.
fn make_certificates(tls: &std::path::Path) -> anyhow::Result<()> {
    use nimbus_tls::issue::{init_ca, issue, Request, CA_KEY};
    use nimbus_tls::Role;
    let ca = tls.join("ca");
    if !ca.join(CA_KEY).exists() {
        init_ca(&ca)?;
    }
    let mut nodes: Vec<(Role, String)> =
        (1..=3).map(|i| (Role::Meta, format!("meta{i}"))).collect();
    nodes.extend((1..=2).map(|i| (Role::Gateway, format!("gateway{i}"))));
    nodes.extend(
        invocations::WORKERS
            .iter()
            .map(|(w, _, _)| (Role::Worker, w.to_string())),
    );
    nodes.push((Role::Gateway, invocations::EDGE_GATEWAY.0.into()));
    nodes.push((Role::Worker, invocations::EDGE_WORKER.0.into()));
    nodes.push((Role::Admin, "admin".into()));
    for (role, name) in nodes {
        let out = tls.join(&name);
        if !out.join("cert.pem").exists() {
            let sans = vec![name.clone(), "localhost".into(), "127.0.0.1".into()];
            issue(
                &ca,
                &Request {
                    role,
                    name,
                    sans,
                    days: 30,
                },
                &out,
            )?;
        }
    }
    Ok(())
}

async fn run_scenarios(
    cluster: &MetaCluster,
    args: &Args,
    seed: u64,
    pace: Pace,
) -> anyhow::Result<bool> {
    cluster.compose.up(&["meta1", "meta2", "meta3"]).await?;
    cluster
        .leader(Duration::from_secs(60))
        .await
        .context("the cluster never elected a leader")?;
    let mut tally = Tally::default();
    for fault in Fault::ALL {
        if args
            .only
            .as_deref()
            .is_some_and(|o| !fault.name().contains(o))
        {
            continue;
        }
        let started = std::time::Instant::now();
        let summary = scenario::run(cluster, fault, seed, pace)
            .await
            .with_context(|| format!("scenario {}", fault.name()))?;
        tally.record(&summary, started);
    }
    let selected: Vec<InvocationFault> = InvocationFault::ALL
        .into_iter()
        .filter(|f| args.only.as_deref().is_none_or(|o| f.name().contains(o)))
        .collect();
    let edge = args
        .only
        .as_deref()
        .is_none_or(|o| invocations::edge_partition::NAME.contains(o));
    if !selected.is_empty() || edge {
        let inv = InvocationCluster::start(cluster, &image())
            .await
            .context("starting gateways and workers")?;
        // The attack of issue 13 first: functions and uncertified processes against the
        // cluster's nodes.
        let started = std::time::Instant::now();
        let summary = invocations::attack::run(cluster, &inv, seed)
            .await
            .context("scenario attack-from-function-and-network")?;
        tally.record(&summary, started);
        for fault in selected {
            let started = std::time::Instant::now();
            let summary = invocations::run(cluster, &inv, fault, seed, pace)
                .await
                .with_context(|| format!("scenario {}", fault.name()))?;
            tally.record(&summary, started);
        }
        if edge {
            let started = std::time::Instant::now();
            let summary = invocations::edge_partition::run(cluster, &inv, seed)
                .await
                .with_context(|| format!("scenario {}", invocations::edge_partition::NAME))?;
            tally.record(&summary, started);
        }
    }
    // The plain closing line CI tools read.
    println!(
        "chaos-tests: {} passed, {} failed",
        tally.passed, tally.failed
    );
    Ok(tally.failed == 0)
}

/// Scenarios passed and failed so far.
#[derive(Default)]
struct Tally {
    passed: u32,
    failed: u32,
}

impl Tally {
    /// Prints a scenario's summary line (and why it failed) and counts it.
    fn record(&mut self, summary: &Summary, started: std::time::Instant) {
        println!("{summary}");
        if summary.passed() {
            self.passed += 1;
        } else {
            self.failed += 1;
            println!("  FAILED: {}", summary.notes);
        }
        eprintln!("  ({} took {:.0?})", summary.scenario, started.elapsed());
    }
}

/// The Nimbus image the cluster runs (built by `chaos-tests/run`).
fn image() -> String {
    std::env::var("NIMBUS_IMAGE").unwrap_or_else(|_| "nimbus:dev".into())
}
