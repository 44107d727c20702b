//! The gateway core: everything a front door (the Lambda REST API today; function URLs
//! and streaming next) needs to serve Lambda, with no HTTP in it.
//!
//! An invocation's path: [`resolve`] (name and qualifier → one [`InvokeTarget`]) →
//! [`admission`] (concurrency limits, from [`catalog`] totals) → [`fleet`] and
//! [`placement`] (which worker) → [`workers`] (the one boundary to the workers) → the
//! worker's engine. Nothing here calls back up into a front door.
//!
//! Layout:
//! - this file: [`Gateway`], the core's state, and its configuration.
//! - [`catalog`]: the metadata kept exact by the watch stream, with per-account totals.
//! - [`credentials`]: access-key secrets for Signature V4, invalidated by the catalog.
//! - [`sessions`]: STS session tokens any gateway verifies on its own.
//! - [`access`]: the caller's identity and the one policy decision per operation.
//! - [`resolve`]: function names and qualifiers → [`InvokeTarget`].
//! - [`admission`]: concurrency limits: account-wide and reserved per function.
//! - [`invoke`]: sync invocation, placement with retries, provisioning: typed results.
//! - [`fleet`], [`placement`]: per-worker knowledge and the placement policy.
//! - [`edge`]: code deployed to this gateway's edge location, pushed to its workers.
//! - [`workers`]: the [`Workers`] trait and the one mapping of worker rejections.
//! - [`logs`]: log queries fanned out over the workers.
//! - [`package`]: deployment packages checked at upload (zip-slip, links, size).
//! - [`async_events`]: `Event` invocations: durable queue, dispatcher, retries, destinations.
//! - [`provisioned`]: provisioned concurrency kept initialised on the workers.
//! - [`error`]: [`ApiError`], the core's error in Lambda's terms.

pub mod access;
pub mod admission;
pub mod async_events;
pub mod catalog;
pub mod credentials;
pub mod download;
pub mod edge;
pub mod error;
pub mod fleet;
pub mod invoke;
pub mod layers;
pub mod logs;
pub mod package;
pub mod placement;
pub mod provisioned;
pub mod resolve;
pub mod roles;
pub mod sessions;
pub mod workers;

use std::sync::Arc;
use std::time::Duration;

use nimbus_meta::MetaClient;
use nimbus_types::{Command, CommandOutput};

use self::admission::Admission;
use self::catalog::Catalog;
use self::credentials::Credentials;
pub use self::error::ApiError;
use self::fleet::Fleet;
pub use self::invoke::{
    InvokeRequest, InvokeResult, InvokeTarget, Invoked, PlacementConfig, StreamEvent,
    StreamedInvoke,
};
pub use self::workers::{WorkerError, WorkerView, Workers};

/// How a gateway is configured.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The region this gateway serves.
    pub region: String,
    /// Admit against leases from the metadata leader (required when several gateways
    /// serve one cluster); otherwise this gateway counts alone.
    pub leased_admission: bool,
    pub placement: PlacementConfig,
    /// Most MB of request bodies held at once before their signature is verified (those
    /// whose hash was not declared in `x-amz-content-sha256`, so the body must be read
    /// to check it): a caller who knows an access key id but not its secret can make the
    /// gateway hold no more than this.
    pub unverified_body_budget_mb: u32,
    /// `nimbus dev`: a function's role that does not exist is created on first use, with
    /// full access, so code written against Lambda runs with no IAM set-up.
    pub create_missing_roles: bool,
    /// How long a function's execution-role credentials are valid; environments are
    /// retired before theirs expire.
    pub role_credentials_ttl: Duration,
    /// Function URLs are `<url-id>.lambda-url.<region>.<url_domain>`.
    pub url_domain: String,
    /// This gateway's stable id (`nimbus gateway --id`): an edge budget naming it gives
    /// it a share.
    pub id: Option<String>,
}

impl GatewayConfig {
    pub fn new(region: impl Into<String>, leased_admission: bool) -> Self {
        Self {
            region: region.into(),
            leased_admission,
            placement: PlacementConfig::default(),
            unverified_body_budget_mb: 256,
            create_missing_roles: false,
            role_credentials_ttl: Duration::from_secs(12 * 3600),
            url_domain: "localhost".into(),
            id: None,
        }
    }
}

/// The state of one gateway, shared by every front door and background loop.
pub struct Gateway {
    meta: MetaClient,
    catalog: Arc<Catalog>,
    region: String,
    /// The workers of the region: the only way work leaves the gateway.
    workers: Arc<dyn Workers>,
    fleet: Fleet,
    placement: PlacementConfig,
    admission: Admission,
    /// Lambda's function metrics (Invocations, Errors, Throttles, …). The binary adds
    /// them to its registry.
    metrics: nimbus_telemetry::LambdaMetrics,
    /// Provisioned concurrency as the last round of [`provisioned`] left it.
    provisioned: provisioned::Provisioned,
    credentials: Credentials,
    /// MB of request bodies being read before their signature is known to be good, out
    /// of `unverified_budget_mb`.
    unverified_bodies: Arc<tokio::sync::Semaphore>,
    unverified_budget_mb: u32,
    /// Compiled IAM policy documents.
    policies: access::Policies,
    /// The session-token key, fetched from the metadata cluster once.
    session_key: tokio::sync::OnceCell<Vec<u8>>,
    create_missing_roles: bool,
    role_credentials_ttl: Duration,
    url_domain: String,
    /// This gateway's stable id, if it was given one.
    id: Option<String>,
    /// What its edge location holds (an edge gateway only).
    edge: edge::EdgeState,
    /// Execution-role credentials per (account, role, function), re-minted when half
    /// their life has passed.
    role_sessions: std::sync::Mutex<
        std::collections::HashMap<(String, String, String), sessions::SessionCredentials>,
    >,
}

impl Gateway {
    /// Connects to the metadata cluster, fills the catalog, and serves over `workers`.
    pub async fn start(
        meta: MetaClient,
        config: GatewayConfig,
        workers: Arc<dyn Workers>,
    ) -> Result<Arc<Self>, nimbus_meta::ClientError> {
        let catalog = Catalog::start(meta.clone()).await?;
        Ok(Self::new(meta, catalog, config, workers))
    }

    /// A gateway over an already started catalog (the cluster's workers share it).
    pub fn new(
        meta: MetaClient,
        catalog: Arc<Catalog>,
        config: GatewayConfig,
        workers: Arc<dyn Workers>,
    ) -> Arc<Self> {
        let admission = if config.leased_admission {
            Admission::leased(meta.clone())
        } else {
            Admission::local()
        };
        Arc::new(Self {
            meta,
            catalog,
            region: config.region,
            workers,
            fleet: Fleet::default(),
            placement: config.placement,
            admission,
            metrics: nimbus_telemetry::LambdaMetrics::new(),
            provisioned: Default::default(),
            credentials: Credentials::default(),
            unverified_bodies: Arc::new(tokio::sync::Semaphore::new(
                config.unverified_body_budget_mb as usize,
            )),
            unverified_budget_mb: config.unverified_body_budget_mb,
            policies: Default::default(),
            session_key: tokio::sync::OnceCell::new(),
            create_missing_roles: config.create_missing_roles,
            role_credentials_ttl: config.role_credentials_ttl,
            url_domain: config.url_domain.to_ascii_lowercase(),
            id: config.id,
            edge: Default::default(),
            role_sessions: Default::default(),
        })
    }

    /// The budget of request bodies read before their signature is verified, in MB: what
    /// is free now, and the whole.
    pub fn unverified_bodies(&self) -> (&Arc<tokio::sync::Semaphore>, u32) {
        (&self.unverified_bodies, self.unverified_budget_mb)
    }

    pub fn meta(&self) -> &MetaClient {
        &self.meta
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// The region's workers (log queries call them per worker, through
    /// [`Gateway::query_logs`]).
    pub fn workers(&self) -> &Arc<dyn Workers> {
        &self.workers
    }

    pub fn admission(&self) -> &Admission {
        &self.admission
    }

    pub fn metrics(&self) -> &nimbus_telemetry::LambdaMetrics {
        &self.metrics
    }

    pub fn provisioned(&self) -> &provisioned::Provisioned {
        &self.provisioned
    }

    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    pub fn policies(&self) -> &access::Policies {
        &self.policies
    }

    /// The domain function URLs live under.
    pub fn url_domain(&self) -> &str {
        &self.url_domain
    }

    pub fn creates_missing_roles(&self) -> bool {
        self.create_missing_roles
    }

    /// The key session tokens are signed with (fetched once from the metadata cluster).
    pub async fn session_key(&self) -> Result<&[u8], ApiError> {
        self.session_key
            .get_or_try_init(|| async {
                self.meta
                    .session_signing_key()
                    .await
                    .map_err(ApiError::from)
            })
            .await
            .map(Vec::as_slice)
    }

    /// Waits until this gateway's catalog reflects a write, so the caller reads its own
    /// write.
    pub async fn observe(&self, revision: u64) {
        if !self
            .catalog
            .wait_for(revision, Duration::from_secs(5))
            .await
        {
            tracing::warn!(revision, "catalog did not catch up with a write within 5s");
        }
    }

    /// Writes a command and waits until this gateway's catalog shows it.
    pub async fn write(&self, cmd: Command) -> Result<CommandOutput, ApiError> {
        let (rev, out) = self.meta.write(cmd).await?;
        self.observe(rev).await;
        Ok(out)
    }
}
