//! `nimbus`: every node role and the client commands, in one binary.
//!
//! Layout: [`cli`] declares the commands and flags; [`meta_cmd`] runs a metadata node;
//! [`dev_cmd`] runs meta + gateway + worker in one process, with [`local_worker`]
//! connecting the gateway to an in-process worker engine; [`cluster_cmd`] is the cluster
//! administration client; [`logging`] sets up `tracing`.

mod cli;
mod cluster_cmd;
mod dev_cmd;
mod local_worker;
mod logging;
mod meta_cmd;

use clap::Parser;

/// Exit codes: 0 success, 1 runtime failure, 2 bad usage or configuration (clap's own).
fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    logging::init(&cli.log_format);
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
    let result = rt.block_on(async move {
        match cli.command {
            cli::Command::Meta(args) => meta_cmd::run(args).await,
            cli::Command::Dev(args) => dev_cmd::run(args).await,
            cli::Command::Cluster(cmd) => cluster_cmd::run(cmd).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
