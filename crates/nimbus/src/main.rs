//! `nimbus`: every node role and the client commands, in one binary.
//!
//! Layout: [`cli`] declares the commands and flags; [`meta_cmd`] runs a metadata node;
//! [`gateway_cmd`] a gateway; [`worker_cmd`] a worker node; [`account_cmd`] manages
//! accounts and access keys;
//! [`dev_cmd`] runs meta + gateway + worker in one process, with [`local_worker`]
//! connecting the gateway to an in-process worker engine; [`cluster_cmd`] is the cluster
//! administration client; [`logs_cmd`] reads functions' logs through a gateway, with
//! credentials found by [`aws_config`]; [`tls_cmd`] makes certificates and the transport
//! (mutual TLS or, when asked, plaintext) every role dials and listens with. Logs,
//! traces and metrics are set up by `nimbus-telemetry`.

/// mimalloc rather than glibc's malloc: per-thread heaps without arena locks, and less
/// time in the allocator on the invoke path (docs/benchmarks.md, "The allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod account_cmd;
mod api_client;
mod aws_config;
mod cli;
mod cluster_cmd;
mod dev_cmd;
mod edge_cmd;
mod gateway_cmd;
mod local_worker;
mod logs_cmd;
mod meta_cmd;
mod tls_cmd;
mod worker_cmd;

use clap::Parser;

/// Exit codes: 0 success, 1 runtime failure, 2 bad usage or configuration (clap's own).
fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // Inside the runtime: the OTLP exporter's connection and export task live there.
    let node = cli.command.is_node();
    let telemetry = match rt.block_on(async {
        let mut t = nimbus_telemetry::init(cli.log_format.into(), cli.command.service_name())?;
        if node {
            t.start_metrics_export()?;
        }
        Ok::<_, nimbus_telemetry::TelemetryError>(t)
    }) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let metrics = telemetry.metrics().clone();
    let tls = cli.tls;
    let result = rt.block_on(async move {
        use nimbus_tls::Role;
        let transport = |role| tls_cmd::transport(&tls, Some(role));
        match cli.command {
            cli::Command::Meta(args) => meta_cmd::run(args, transport(Role::Meta)?, metrics).await,
            cli::Command::Gateway(args) => {
                gateway_cmd::run(args, transport(Role::Gateway)?, metrics).await
            }
            cli::Command::Worker(args) => {
                worker_cmd::run(args, transport(Role::Worker)?, metrics).await
            }
            cli::Command::Dev(args) => dev_cmd::run(args, metrics).await,
            cli::Command::Account(cmd) => account_cmd::run(cmd, transport(Role::Admin)?).await,
            // Status is open to every role (a node's health check uses its own certificate).
            cli::Command::Cluster(cmd @ cli::ClusterCommand::Status { .. }) => {
                cluster_cmd::run(cmd, tls_cmd::transport(&tls, None)?).await
            }
            cli::Command::Cluster(cmd) => cluster_cmd::run(cmd, transport(Role::Admin)?).await,
            cli::Command::Logs(cmd) => logs_cmd::run(cmd).await,
            cli::Command::Edge(cmd) => edge_cmd::run(cmd).await,
            cli::Command::Cert(cmd) => tls_cmd::run(cmd),
            cli::Command::Runtimes { runtime_roots } => {
                // What `nimbus worker` (and `nimbus dev`) would offer on this machine.
                let config = nimbus_worker::EngineConfig {
                    runtime_roots: load_roots(runtime_roots.as_deref())?,
                    ..Default::default()
                };
                for (runtime, offered) in nimbus_worker::runtimes::offered(&config) {
                    match offered {
                        Ok(()) => println!("{runtime:<16} available"),
                        Err(why) => println!("{runtime:<16} unavailable: {why}"),
                    }
                }
                Ok(())
            }
        }
    });
    rt.block_on(telemetry.shutdown());
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Loads `--runtime-roots`, failing the start when they cannot serve anything (a worker
/// told to use roots never falls back to the host's interpreters).
pub(crate) fn load_roots(
    dir: Option<&std::path::Path>,
) -> anyhow::Result<Option<std::sync::Arc<nimbus_worker::roots::RuntimeRoots>>> {
    let Some(dir) = dir else { return Ok(None) };
    let roots = nimbus_worker::roots::RuntimeRoots::load(dir)?;
    tracing::info!(
        dir = %dir.display(),
        runtimes = %roots.runtimes().collect::<Vec<_>>().join(","),
        "runtime roots"
    );
    Ok(Some(std::sync::Arc::new(roots)))
}
