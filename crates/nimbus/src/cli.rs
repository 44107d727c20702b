//! Command-line interface, in the style of consul/nomad/vault: one binary, a subcommand
//! per role and per client action.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "nimbus",
    version,
    about = "Nimbus: an AWS-Lambda-compatible serverless platform that runs as a cluster"
)]
pub struct Cli {
    /// Format of Nimbus's own logs on stderr. Level via RUST_LOG (default: info).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "NIMBUS_LOG_FORMAT")]
    pub log_format: LogFormat,

    #[command(flatten)]
    pub tls: TlsArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// How this process talks to the cluster's nodes (every role and cluster command).
#[derive(Args, Debug, Clone)]
pub struct TlsArgs {
    /// TLS directory with ca.pem, cert.pem and key.pem (`nimbus cert issue`): mutual TLS
    /// with every node, and this process's role is the certificate's. For `nimbus dev`'s
    /// embedded node: DATA_DIR/tls.
    #[arg(long, global = true, env = "NIMBUS_TLS_DIR")]
    pub tls_dir: Option<PathBuf>,
    /// INSECURE: no TLS and no authentication between nodes (anyone who reaches a port can
    /// read and write the whole cluster). Logs a warning on every start.
    #[arg(long, global = true)]
    pub insecure_plaintext: bool,
}

#[derive(Subcommand, Debug)]
pub enum CertCommand {
    /// Create the cluster CA (ca.pem, ca-key.pem) in a new directory.
    InitCa {
        #[arg(long)]
        out: PathBuf,
    },
    /// Issue a certificate for one node or for the CLI, signed by the CA, into a TLS
    /// directory (ca.pem, cert.pem, key.pem). Issuing into the same directory again
    /// rotates it: nodes reload on SIGHUP or when the files change.
    Issue {
        /// The CA directory (from init-ca).
        #[arg(long)]
        ca: PathBuf,
        /// What the holder may do: meta, gateway, worker or admin (the CLI).
        #[arg(long, value_parser = parse_role)]
        role: nimbus_tls::Role,
        /// The holder's name (a worker's name is its worker id).
        #[arg(long)]
        name: String,
        /// DNS names and IP addresses peers dial this node by, comma-separated.
        /// Default: the name, localhost, 127.0.0.1 and ::1.
        #[arg(long, value_delimiter = ',')]
        san: Vec<String>,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
        #[arg(long)]
        out: PathBuf,
    },
}

fn parse_role(s: &str) -> Result<nimbus_tls::Role, String> {
    s.parse().map_err(|e: nimbus_tls::TlsError| e.to_string())
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl From<LogFormat> for nimbus_telemetry::LogFormat {
    fn from(f: LogFormat) -> Self {
        match f {
            LogFormat::Text => nimbus_telemetry::LogFormat::Text,
            LogFormat::Json => nimbus_telemetry::LogFormat::Json,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a metadata node (Raft-replicated store of functions, versions, aliases, code, limits).
    Meta(MetaArgs),
    /// Run a gateway: the Lambda API, admission and placement (stateless; run several).
    Gateway(GatewayArgs),
    /// Run a worker node: execution environments for the functions, served to gateways.
    Worker(WorkerArgs),
    /// Run a metadata node, a gateway and a worker in one process, for development.
    Dev(DevArgs),
    /// Manage accounts and their access keys.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Administer a metadata cluster: status, add or remove members.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Read functions' logs (log group /aws/lambda/NAME) through a gateway.
    #[command(subcommand)]
    Logs(LogsCommand),
    /// Deploy published versions and aliases to edge locations, through a gateway.
    #[command(subcommand)]
    Edge(EdgeCommand),
    /// Make the cluster CA and the certificates nodes and the CLI authenticate with.
    #[command(subcommand)]
    Cert(CertCommand),
    /// List the runtime identifiers and whether a worker on this machine runs each one
    /// exactly (its interpreters' versions, or those of its runtime roots).
    Runtimes {
        #[arg(long, env = "NIMBUS_RUNTIME_ROOTS")]
        runtime_roots: Option<PathBuf>,
    },
}

impl Command {
    /// OpenTelemetry's `service.name` for this role (unless `OTEL_SERVICE_NAME` says).
    pub fn service_name(&self) -> &'static str {
        match self {
            Command::Meta(_) => "nimbus-meta",
            Command::Gateway(_) => "nimbus-gateway",
            Command::Worker(_) => "nimbus-worker",
            Command::Dev(_) => "nimbus-dev",
            Command::Cluster(_)
            | Command::Account(_)
            | Command::Logs(_)
            | Command::Edge(_)
            | Command::Cert(_)
            | Command::Runtimes { .. } => "nimbus-cli",
        }
    }

    /// True for the roles that serve (and so have metrics to push).
    pub fn is_node(&self) -> bool {
        matches!(
            self,
            Command::Meta(_) | Command::Gateway(_) | Command::Worker(_) | Command::Dev(_)
        )
    }
}

#[derive(Args, Debug)]
pub struct MetaArgs {
    /// This node's id (1 or more). Never reuse the id of a removed member.
    #[arg(long)]
    pub id: u64,
    /// Where the Raft log, state machine, snapshots and (by default) the cluster key live.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Address for Raft and the metadata API (gRPC).
    #[arg(long, default_value = "127.0.0.1:17001")]
    pub listen: SocketAddr,
    /// Founding members, `ID=HOST:PORT,...`, used on the first start only; on restart the
    /// node recovers from --data-dir and ignores it. Omit to start a node that waits to be
    /// added with `nimbus cluster add-member`.
    #[arg(long, default_value = "")]
    pub initial_cluster: String,
    /// AES-256 key (32 raw bytes) that encrypts code and secrets at rest. Every member must
    /// hold the same key. Default: DATA_DIR/cluster.key, created if missing.
    #[arg(long, env = "NIMBUS_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// Disaster recovery: start a new one-member cluster from a backup made with
    /// `nimbus cluster snapshot`. Needs a fresh --data-dir and the old cluster's key
    /// (--key-file); the node's address comes from --initial-cluster (this node only) or
    /// --listen. Grow it again with `nimbus cluster add-member`.
    #[arg(long, value_name = "FILE")]
    pub restore_from: Option<PathBuf>,
    /// Build a snapshot after this many log entries since the last one.
    #[arg(long, default_value_t = 10_000)]
    pub snapshot_every: u64,
    /// Log entries kept behind a snapshot for followers that lag a little.
    #[arg(long, default_value_t = 1_000)]
    pub keep_after_snapshot: u64,
    /// Raft heartbeat interval in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub heartbeat_ms: u64,
    /// Lower bound of the randomized election timeout, in milliseconds.
    #[arg(long, default_value_t = 600)]
    pub election_timeout_ms: u64,
    /// Upper bound of the randomized election timeout, in milliseconds (default: twice
    /// the lower). openraft also takes it as the leader lease, during which followers
    /// refuse to vote, so failover takes about this plus the election timeout: a narrower
    /// range fails over faster, at more risk of split votes.
    #[arg(long)]
    pub election_timeout_max_ms: Option<u64>,
    /// How long a write waits for a quorum before failing as unavailable, in milliseconds.
    #[arg(long, default_value_t = 5_000)]
    pub write_timeout_ms: u64,
    /// Most write proposals outstanding at once while leading; writes that arrive
    /// meanwhile go into the next one as a batch (one log entry, one fsync). 0 turns
    /// batching off (each write its own entry): use it while rolling out this release
    /// over one without batching, whose nodes cannot read a batch entry.
    #[arg(long, default_value_t = nimbus_meta::node::DEFAULT_PROPOSALS_IN_FLIGHT,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=64))]
    pub proposals_in_flight: usize,
    /// Serve Prometheus metrics (`GET /metrics`) on this address. Off when omitted.
    #[arg(long)]
    pub admin_listen: Option<SocketAddr>,
}

#[derive(Args, Debug)]
pub struct GatewayArgs {
    /// The Lambda API address (`aws --endpoint-url http://ADDR`).
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub listen: SocketAddr,
    /// Metadata node addresses, comma-separated.
    #[arg(long, default_value = "127.0.0.1:17001")]
    pub meta: String,
    /// The region this gateway serves (its workers are the region's workers).
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// A worker that has not answered this gateway (its status probes, every second, or
    /// any call) for this many seconds is considered dead.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub worker_stale_secs: u64,
    /// A worker registration not refreshed for this many seconds is dropped (workers
    /// refresh theirs every `--registration-refresh-secs`, 300 by default).
    #[arg(long, default_value_t = 900)]
    pub worker_registration_ttl_secs: u64,
    /// Stable id of this gateway for async-event claims (a gateway restarted with the
    /// same id takes its claims back at once) and edge budgets (`nimbus account
    /// set-edge-budget --gateways`). Default: a new random id per start. Two live
    /// gateways must never share one.
    #[arg(long)]
    pub id: Option<String>,
    /// Wait before retrying an async (`Event`) invocation after a function error, in
    /// milliseconds; the second retry waits twice as long (Lambda: about one minute).
    #[arg(long, default_value_t = 60_000)]
    pub async_retry_delay_ms: u64,
    /// Longest wait before trying again an async event that could not run (throttled, no
    /// worker), in milliseconds; the wait doubles from 1 s up to this (Lambda: 5 minutes).
    #[arg(long, default_value_t = 300_000)]
    pub async_defer_max_ms: u64,
    /// Serve Prometheus metrics (`GET /metrics`: Lambda's function metrics) on this
    /// address. Off when omitted.
    #[arg(long)]
    pub admin_listen: Option<SocketAddr>,
    /// Serve the Lambda API over HTTPS with this certificate chain (PEM; a public CA's,
    /// not the cluster CA's). Needs --tls-key.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Most MB of request bodies held at once before their signature is verified (bodies
    /// without `x-amz-content-sha256`, which must be read to be checked); past it such
    /// requests get a 429 throttle. 0 refuses every body without that header.
    #[arg(long, default_value_t = 256)]
    pub unverified_body_budget_mb: u32,
    /// How long functions' execution-role credentials last, in seconds; environments are
    /// replaced before theirs expire (5 minutes before, or at once when shorter).
    #[arg(long, default_value_t = 43_200, value_parser = clap::value_parser!(u64).range(1..=43_200))]
    pub role_credentials_ttl_secs: u64,
    /// Function URLs are served as `<url-id>.lambda-url.<region>.<DOMAIN>` on this
    /// gateway's API address (point a wildcard DNS record at the gateways).
    #[arg(long, default_value = "localhost")]
    pub url_domain: String,
    /// A function's role that does not exist is created on first use, with full access,
    /// instead of refusing the function (`nimbus dev` always does this). For test and
    /// benchmark clusters only: it lets any caller mint a fully privileged role.
    #[arg(long)]
    pub create_missing_roles: bool,
    /// This gateway's availability zone: with warm capacity equal, invocations stay on
    /// workers of the same zone.
    #[arg(long, conflicts_with = "edge_location")]
    pub zone: Option<String>,
    /// The edge location this gateway serves (`nimbus cluster add-edge-location`):
    /// invocations of what is deployed there (`nimbus edge deploy`) run on that
    /// location's workers; everything else runs in the home region.
    #[arg(long)]
    pub edge_location: Option<String>,
    /// How often an edge gateway has its location's workers fetch the code deployed
    /// there, in milliseconds; after a change (an alias moved) it does so at the earliest
    /// a tenth of this later.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub edge_push_interval_ms: u64,
}

#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// Where code packages, runtimes, sandboxes and the worker's identity live.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Address gateways connect to (gRPC).
    #[arg(long, default_value = "127.0.0.1:18001")]
    pub listen: SocketAddr,
    /// Address gateways should dial, when it differs from --listen (e.g. behind NAT).
    #[arg(long)]
    pub advertise: Option<String>,
    /// Metadata node addresses, comma-separated.
    #[arg(long, default_value = "127.0.0.1:17001")]
    pub meta: String,
    /// The region this worker serves.
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// Availability zone of this worker.
    #[arg(long, conflicts_with = "edge_location")]
    pub zone: Option<String>,
    /// Edge location of this worker (for functions placed near their callers).
    #[arg(long)]
    pub edge_location: Option<String>,
    /// Memory that execution environments may reserve in total, in MB.
    #[arg(long, default_value_t = 4096)]
    pub memory_mb: u64,
    /// Shut down an execution environment after this many idle seconds.
    #[arg(long, default_value_t = 300)]
    pub idle_timeout_secs: u64,
    /// Refresh the view of the cluster's nodes and check the registration this often,
    /// in milliseconds (load and liveness go to the gateways directly, not through here).
    #[arg(long, default_value_t = 2000)]
    pub heartbeat_ms: u64,
    /// Write an unchanged registration again this often, in seconds: a worker that died
    /// without deregistering leaves the registry after three of these.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub registration_refresh_secs: u64,
    /// Network for environments: `nat` (outbound TCP through NAT, DNS to --dns-resolver
    /// only, nothing inbound) or `none` (loopback only).
    #[arg(long, value_enum, default_value_t = NetworkArg::Nat)]
    pub network: NetworkArg,
    /// The one DNS resolver environments may query (with --network nat).
    #[arg(long, default_value = "1.1.1.1")]
    pub dns_resolver: std::net::Ipv4Addr,
    /// First two octets of the /16 environments' links come from (with --network nat).
    /// Workers sharing one host must each use their own.
    #[arg(long, default_value = "100.96", value_parser = parse_pool)]
    pub nat_pool: [u8; 2],
    /// Private destinations (CIDRs, comma-separated) environments may reach over TCP
    /// anyway, such as a database. Every private, shared, link-local and loopback range,
    /// and so every cluster node, is unreachable from functions otherwise
    /// (docs/operations.md, "What functions can reach").
    #[arg(long, env = "NIMBUS_EGRESS_ALLOW", value_delimiter = ',')]
    pub egress_allow: Vec<ipnet::Ipv4Net>,
    /// Runtime root file systems built by deploy/rootfs/build.sh (e.g.
    /// /var/tmp/nimbus-rootfs): each function runs in the root of its runtime, and only
    /// the runtimes those roots serve exactly are offered. Unset: the host's system
    /// directories and interpreters.
    #[arg(long, env = "NIMBUS_RUNTIME_ROOTS")]
    pub runtime_roots: Option<PathBuf>,
    /// A gateway's API address (`http://HOST:PORT`) that functions reach with the AWS
    /// SDKs: environments get `AWS_ENDPOINT_URL` pointing at their own Runtime API
    /// address, which relays every other call there (functions cannot reach any private
    /// address themselves).
    #[arg(long, env = "NIMBUS_AWS_ENDPOINT")]
    pub aws_endpoint: Option<String>,
    /// DEVELOPER ONLY: run functions without any isolation. Logs a warning on every start.
    #[arg(long)]
    pub insecure_no_isolation: bool,
    /// Do not start runtimes' zygotes (Python, Node.js) ahead of time in the pre-created
    /// environment shells: every cold start then starts its interpreter.
    #[arg(long)]
    pub no_zygotes: bool,
    /// Weights of accounts' fair shares of this worker's memory while accounts wait for
    /// it, as ACCOUNT=WEIGHT, comma-separated (unlisted accounts weigh 1).
    #[arg(long, value_delimiter = ',', value_parser = parse_weight)]
    pub account_weight: Vec<(String, u32)>,
    /// Serve Prometheus metrics (environments, memory, cold starts) on `/metrics` here.
    #[arg(long)]
    pub admin_listen: Option<SocketAddr>,
    #[command(flatten)]
    pub log_retention: LogRetentionArgs,
}

/// How long a worker keeps function logs (under its data dir, in `logs/`).
#[derive(Args, Debug, Clone)]
pub struct LogRetentionArgs {
    /// Keep function log events this many hours.
    #[arg(long, default_value_t = 168)]
    pub log_retention_hours: u64,
    /// Keep at most this many MB of function logs; the least recently written streams are
    /// removed first.
    #[arg(long, default_value_t = 1024)]
    pub log_max_mb: u64,
}

impl LogRetentionArgs {
    /// The worker's log store settings.
    pub fn config(&self) -> nimbus_worker::LogStoreConfig {
        nimbus_worker::LogStoreConfig {
            max_age: std::time::Duration::from_secs(self.log_retention_hours.max(1) * 3600),
            max_bytes: self.log_max_mb * 1024 * 1024,
            ..Default::default()
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum LogsCommand {
    /// Print a function's log events (START/END/REPORT and its output), oldest first;
    /// with --follow, keep printing new ones until Ctrl-C.
    Tail(TailArgs),
}

#[derive(Args, Debug)]
pub struct TailArgs {
    /// The function's name or ARN.
    pub function: String,
    /// Keep polling and print new events as they arrive, until Ctrl-C.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// How far back to start: a number with s, m, h or d (e.g. 30s, 10m, 2h, 1d).
    #[arg(long, default_value = "10m", value_parser = parse_since)]
    pub since: std::time::Duration,
    /// Only events matching this CloudWatch filter pattern (e.g. ERROR, "exact phrase",
    /// ?ERROR ?WARN, -DEBUG, { $.level = "ERROR" }).
    #[arg(long)]
    pub filter: Option<String>,
    #[command(flatten)]
    pub api: ApiArgs,
}

/// `30s`, `10m`, `2h`, `1d` (a bare number is seconds).
pub fn parse_since(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 30s, 10m, 2h or 1d"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        "w" => n * 7 * 86_400,
        _ => return Err(format!("{s:?}: the unit must be s, m, h, d or w")),
    };
    Ok(std::time::Duration::from_secs(secs))
}

#[derive(Clone, Debug, ValueEnum)]
pub enum NetworkArg {
    Nat,
    None,
}

#[derive(Subcommand, Debug)]
pub enum AccountCommand {
    /// Create an account with an access key in a region (idempotent).
    Create {
        #[arg(long, default_value = "127.0.0.1:17001")]
        meta: String,
        /// The 12-digit account id.
        #[arg(long)]
        account_id: String,
        #[arg(long)]
        access_key_id: String,
        /// The secret; prefer the environment variable so it stays out of `ps`.
        #[arg(long, env = "NIMBUS_SECRET_ACCESS_KEY", hide_env_values = true)]
        secret_access_key: String,
        #[arg(long, default_value = "us-east-1")]
        region: String,
    },
    /// Set an account's concurrency limits in one region (`GetAccountSettings` shows
    /// them; every gateway of the region admits against them).
    SetLimits {
        #[arg(long, default_value = "127.0.0.1:17001")]
        meta: String,
        #[arg(long)]
        account_id: String,
        #[arg(long)]
        region: String,
        /// The account's concurrent executions in the region.
        #[arg(long)]
        concurrent_executions: u32,
        /// What reservations must leave for functions without one.
        #[arg(long, default_value_t = nimbus_types::limits::UNRESERVED_MIN_DEFAULT)]
        unreserved_minimum: u32,
    },
    /// Set aside an account's concurrency for an edge location, held in equal shares by
    /// the named gateways of the location (their `--id`s), so they keep admitting its
    /// deployed functions while cut off from the metadata cluster. The region leases only
    /// what budgets and reservations leave. `--concurrency 0` removes the budget.
    SetEdgeBudget {
        #[arg(long, default_value = "127.0.0.1:17001")]
        meta: String,
        #[arg(long)]
        account_id: String,
        #[arg(long)]
        region: String,
        /// The edge location (`nimbus cluster add-edge-location`).
        #[arg(long)]
        location: String,
        /// Concurrent executions set aside for the location.
        #[arg(long)]
        concurrency: u32,
        /// Ids of the location's gateways that hold the budget, comma-separated.
        #[arg(long, value_delimiter = ',')]
        gateways: Vec<String>,
    },
    /// Delete an access key: gateways refuse it within their watch delay.
    DeleteKey {
        #[arg(long, default_value = "127.0.0.1:17001")]
        meta: String,
        #[arg(long)]
        access_key_id: String,
    },
}

#[derive(Args, Debug)]
pub struct DevArgs {
    /// Where the embedded metadata store, code cache and sandboxes live.
    #[arg(long, default_value = ".nimbus-dev")]
    pub data_dir: PathBuf,
    /// The Lambda API address (`aws --endpoint-url http://ADDR`).
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub listen: SocketAddr,
    /// Serve Prometheus metrics (`GET /metrics`, unauthenticated: they name functions) on
    /// this address. Off when omitted; never on the API port.
    #[arg(long)]
    pub admin_listen: Option<SocketAddr>,
    /// Most MB of request bodies held at once before their signature is verified (bodies
    /// without `x-amz-content-sha256`, which must be read to be checked); past it such
    /// requests get a 429 throttle. 0 refuses every body without that header.
    #[arg(long, default_value_t = 256)]
    pub unverified_body_budget_mb: u32,
    /// How long functions' execution-role credentials last, in seconds; environments are
    /// replaced before theirs expire (5 minutes before, or at once when shorter).
    #[arg(long, default_value_t = 43_200, value_parser = clap::value_parser!(u64).range(1..=43_200))]
    pub role_credentials_ttl_secs: u64,
    /// Function URLs are served as `<url-id>.lambda-url.<region>.<DOMAIN>` on this
    /// gateway's API address (point a wildcard DNS record at the gateways).
    #[arg(long, default_value = "localhost")]
    pub url_domain: String,
    /// Allow --listen on a non-loopback address.
    #[arg(long)]
    pub allow_remote: bool,
    /// The embedded metadata node's gRPC address (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub meta_listen: SocketAddr,
    /// The region served.
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// Memory that execution environments may reserve in total, in MB.
    #[arg(long, default_value_t = 4096)]
    pub memory_mb: u64,
    /// Shut down an execution environment after this many idle seconds.
    #[arg(long, default_value_t = 300)]
    pub idle_timeout_secs: u64,
    /// Runtime root file systems built by deploy/rootfs/build.sh (e.g.
    /// /var/tmp/nimbus-rootfs): each function runs in the root of its runtime, and only
    /// the runtimes those roots serve exactly are offered. Unset: the host's system
    /// directories and interpreters.
    #[arg(long, env = "NIMBUS_RUNTIME_ROOTS")]
    pub runtime_roots: Option<PathBuf>,
    /// DEVELOPER ONLY: run functions without any isolation (for machines without root).
    /// Logs a warning on every start.
    #[arg(long)]
    pub insecure_no_isolation: bool,
    /// Do not start runtimes' zygotes (Python, Node.js) ahead of time in the pre-created
    /// environment shells: every cold start then starts its interpreter.
    #[arg(long)]
    pub no_zygotes: bool,
    /// Network for environments, as on a worker: `nat` (outbound TCP through NAT, DNS to
    /// --dns-resolver only, private ranges denied) or `none` (loopback only).
    #[arg(long, value_enum, default_value_t = NetworkArg::Nat)]
    pub network: NetworkArg,
    /// The one DNS resolver environments may query (with --network nat).
    #[arg(long, default_value = "1.1.1.1")]
    pub dns_resolver: std::net::Ipv4Addr,
    /// First two octets of the /16 environments' links come from (with --network nat).
    /// Default: derived from --data-dir, so two `nimbus dev` on one host do not collide.
    #[arg(long, value_parser = parse_pool)]
    pub nat_pool: Option<[u8; 2]>,
    /// Private destinations (CIDRs, comma-separated) functions may reach anyway.
    #[arg(long, env = "NIMBUS_EGRESS_ALLOW", value_delimiter = ',')]
    pub egress_allow: Vec<ipnet::Ipv4Net>,
    /// Wait before retrying an async (`Event`) invocation after a function error, in
    /// milliseconds; the second retry waits twice as long (Lambda: about one minute).
    #[arg(long, default_value_t = 60_000)]
    pub async_retry_delay_ms: u64,
    #[command(flatten)]
    pub log_retention: LogRetentionArgs,
}

#[derive(Subcommand, Debug)]
pub enum EdgeCommand {
    /// Deploy a published version, or an alias of one, to edge locations.
    Deploy {
        function: String,
        /// A version number or an alias name (`$LATEST` cannot be deployed).
        #[arg(long)]
        qualifier: String,
        /// Edge locations of the function's region, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        locations: Vec<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// List the account's edge deployments in the region.
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Remove a version or alias from edge locations (all of them without --locations).
    Remove {
        function: String,
        #[arg(long)]
        qualifier: String,
        #[arg(long, value_delimiter = ',')]
        locations: Vec<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// How the CLI reaches a gateway's API, signed as the AWS CLI signs.
#[derive(Args, Debug)]
pub struct ApiArgs {
    /// The gateway.
    #[arg(long, env = "NIMBUS_ENDPOINT", default_value = "http://127.0.0.1:9000")]
    pub endpoint: String,
    /// Region (else AWS_REGION, AWS_DEFAULT_REGION, or the profile's region in ~/.aws/config).
    #[arg(long)]
    pub region: Option<String>,
    /// Profile in ~/.aws/credentials and ~/.aws/config (else AWS_PROFILE, else `default`).
    #[arg(long)]
    pub profile: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Add an edge location to a region (the admin certificate).
    AddEdgeLocation {
        #[arg(long, default_value = "127.0.0.1:17001")]
        meta: String,
        #[arg(long)]
        region: String,
        #[arg(long)]
        location: String,
    },
    /// Show the leader, the term, and each member with its role and applied index.
    Status {
        /// Metadata node addresses, comma-separated.
        #[arg(long, default_value = "127.0.0.1:17001")]
        meta: String,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Add a voting member (it starts as a learner, catches up, then votes).
    AddMember {
        #[arg(long, default_value = "127.0.0.1:17001")]
        meta: String,
        /// The new member's id; must never have been used before.
        #[arg(long)]
        id: u64,
        /// The new member's --listen address.
        #[arg(long)]
        addr: String,
    },
    /// Back up the whole metadata store to a file (taken on the leader; holds every
    /// write acknowledged before the command started). Restore: `nimbus meta --restore-from`.
    Snapshot {
        /// Metadata node addresses, comma-separated (the leader is found among them).
        #[arg(long, default_value = "127.0.0.1:17001")]
        meta: String,
        /// Where to write the backup (a tar file).
        #[arg(long)]
        out: PathBuf,
    },
    /// Remove a member. Its id is retired and can never be used again.
    RemoveMember {
        #[arg(long, default_value = "127.0.0.1:17001")]
        meta: String,
        #[arg(long)]
        id: u64,
    },
}

#[derive(Clone, Debug, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// `ACCOUNT=WEIGHT`: a 12-digit account id and a weight of 1 to 1000.
fn parse_weight(s: &str) -> Result<(String, u32), String> {
    let (account, weight) = s
        .split_once('=')
        .ok_or_else(|| format!("expected ACCOUNT=WEIGHT, got {s:?}"))?;
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{account:?} is not a 12-digit account id"));
    }
    match weight.parse::<u32>() {
        Ok(w @ 1..=1000) => Ok((account.to_string(), w)),
        _ => Err(format!("weight {weight:?} must be 1 to 1000")),
    }
}

/// `A.B` → the first two octets of a /16.
fn parse_pool(s: &str) -> Result<[u8; 2], String> {
    let (a, b) = s
        .split_once('.')
        .ok_or_else(|| format!("expected A.B (e.g. 100.96), got {s:?}"))?;
    let octet = |x: &str| {
        x.parse::<u8>()
            .map_err(|_| format!("{x:?} is not an octet (0-255)"))
    };
    Ok([octet(a)?, octet(b)?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_durations() {
        assert_eq!(parse_since("10m").unwrap().as_secs(), 600);
        assert_eq!(parse_since("30s").unwrap().as_secs(), 30);
        assert_eq!(parse_since("2h").unwrap().as_secs(), 7200);
        assert_eq!(parse_since("1d").unwrap().as_secs(), 86_400);
        assert_eq!(parse_since("45").unwrap().as_secs(), 45);
        assert!(parse_since("ten").is_err());
        assert!(parse_since("5y").is_err());
    }
}
