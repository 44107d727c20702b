//! The records the metadata cluster replicates.
//!
//! These are the *resolved* forms the platform runs on (like Spin's locked app): what a
//! user sent is validated by [`crate::validate`] and turned into these before any write.
//! Every type serializes with postcard (no `skip_serializing_if`, no untagged enums), so
//! keep them plain data.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// An account: 12 digits, as on AWS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: String,
    /// Concurrency limits per region; a region without an entry uses the defaults.
    pub limits: BTreeMap<String, RegionLimits>,
}

/// Per-region, per-account concurrency limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionLimits {
    pub concurrent_executions: u32,
    pub unreserved_minimum: u32,
}

impl RegionLimits {
    /// The pool shared by functions without reserved concurrency: the account limit
    /// minus everything reserved (`UnreservedConcurrentExecutions`). The one place this
    /// rule is written; admission, the settings API and the metadata checks use it.
    pub fn unreserved(&self, reserved_total: u32) -> u32 {
        self.concurrent_executions.saturating_sub(reserved_total)
    }

    /// Whether taking `claimed` (reservations, and provisioned concurrency drawn from
    /// the unreserved pool) out of the limit still leaves the unreserved minimum.
    pub fn keeps_unreserved_minimum(&self, claimed: u64) -> bool {
        u64::from(self.unreserved(0)) >= claimed + u64::from(self.unreserved_minimum)
    }
}

impl Default for RegionLimits {
    fn default() -> Self {
        Self {
            concurrent_executions: crate::limits::ACCOUNT_CONCURRENCY_DEFAULT,
            unreserved_minimum: crate::limits::UNRESERVED_MIN_DEFAULT,
        }
    }
}

/// An access key for Signature V4. The secret is stored encrypted (AES-256-GCM under the
/// cluster key), never in the clear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessKey {
    pub access_key_id: String,
    pub account_id: String,
    pub secret_ciphertext: Vec<u8>,
    /// The IAM user it belongs to; `None`: the account's root.
    pub user_name: Option<String>,
    /// `UpdateAccessKey --status Inactive` turns it off without deleting it.
    pub active: bool,
    pub created_ms: u64,
}

/// A region and the edge locations attached to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Region {
    pub name: String,
    pub edge_locations: Vec<String>,
}

/// Concurrency of an account's region set aside for one of its edge locations, so the
/// location keeps serving while cut off from the metadata cluster without the region's
/// limit ever being exceeded in total. The region's gateways lease only what is left
/// (`limit − reserved − Σ budgets`); the listed gateways of the location admit its
/// deployed functions' calls against equal shares of `slots`, counted locally, whether or
/// not the core is reachable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeBudget {
    pub account_id: String,
    pub region: String,
    pub location: String,
    pub slots: u32,
    /// Stable ids (`nimbus gateway --id`) of the location's gateways that hold shares.
    pub gateways: Vec<String>,
}

impl EdgeBudget {
    /// The share of gateway `id`: `slots` split evenly over the listed gateways, the
    /// remainder going to the first ones. `None` when `id` holds no share.
    pub fn share_of(&self, id: &str) -> Option<u32> {
        let i = self.gateways.iter().position(|g| g == id)?;
        let n = self.gateways.len() as u32;
        Some(self.slots / n + u32::from((i as u32) < self.slots % n))
    }
}

/// Identifies a function: account, region and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FunctionKey {
    pub account_id: String,
    pub region: String,
    pub name: String,
}

impl FunctionKey {
    pub fn new(account_id: &str, region: &str, name: &str) -> Self {
        Self {
            account_id: account_id.into(),
            region: region.into(),
            name: name.into(),
        }
    }

    /// `arn:aws:lambda:REGION:ACCOUNT:function:NAME`
    pub fn arn(&self) -> String {
        format!(
            "arn:aws:lambda:{}:{}:function:{}",
            self.region, self.account_id, self.name
        )
    }
}

/// The configuration a function version runs with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionConfig {
    pub runtime: String,
    pub handler: String,
    pub role: String,
    pub description: String,
    pub memory_mb: u32,
    pub timeout_s: u32,
    pub ephemeral_storage_mb: u32,
    pub environment: BTreeMap<String, String>,
    /// Layer versions, in the order they are extracted into `/opt` (later ones win).
    pub layers: Vec<LayerRef>,
    /// Lambda's `LoggingConfig.LogFormat`: `Text` or `JSON`.
    pub log_format: String,
    /// `LoggingConfig.ApplicationLogLevel` (JSON only; empty: unset, INFO).
    pub application_log_level: String,
    /// `LoggingConfig.SystemLogLevel` (JSON only; empty: unset, INFO).
    pub system_log_level: String,
}

impl Default for FunctionConfig {
    fn default() -> Self {
        use crate::limits::*;
        Self {
            runtime: String::new(),
            handler: String::new(),
            role: String::new(),
            description: String::new(),
            memory_mb: MEMORY_DEFAULT_MB,
            timeout_s: TIMEOUT_DEFAULT_S,
            ephemeral_storage_mb: EPHEMERAL_DEFAULT_MB,
            environment: BTreeMap::new(),
            layers: Vec::new(),
            log_format: "Text".into(),
            application_log_level: String::new(),
            system_log_level: String::new(),
        }
    }
}

/// A code package as a function refers to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeRef {
    /// Base64 of the SHA-256 of the zip (Lambda's `CodeSha256`).
    pub sha256: String,
    pub size: u64,
}

/// A stored code package: its chunks are kept apart, each encrypted at rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodePackage {
    pub sha256: String,
    pub size: u64,
    pub unzipped_size: u64,
    pub chunks: u32,
    /// Hex SHA-256 of each chunk's plaintext, so a corrupt chunk is named precisely.
    pub chunk_sha256: Vec<String>,
}

/// Identifies a layer: account, region and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LayerKey {
    pub account_id: String,
    pub region: String,
    pub name: String,
}

impl LayerKey {
    pub fn new(account_id: &str, region: &str, name: &str) -> Self {
        Self {
            account_id: account_id.into(),
            region: region.into(),
            name: name.into(),
        }
    }

    /// `arn:aws:lambda:REGION:ACCOUNT:layer:NAME` (Lambda's `LayerArn`).
    pub fn arn(&self) -> String {
        format!(
            "arn:aws:lambda:{}:{}:layer:{}",
            self.region, self.account_id, self.name
        )
    }

    /// `LayerArn:VERSION` (Lambda's `LayerVersionArn`).
    pub fn version_arn(&self, number: u64) -> String {
        format!("{}:{number}", self.arn())
    }
}

/// A function's use of one layer version, resolved when the function is configured. The
/// content is named by its hash, so a function keeps running with the layer it was given
/// even after that layer version is deleted, as on Lambda.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRef {
    /// The layer version's ARN, as the function's configuration reports it.
    pub arn: String,
    pub code: CodeRef,
}

/// A layer: the numbering of its versions outlives them (Lambda never reuses a number).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    pub key: LayerKey,
    /// The number the next published version gets.
    pub next_version: u64,
}

/// One statement of a layer version's resource policy: who else may use it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerStatement {
    pub statement_id: String,
    /// Always `lambda:GetLayerVersion` (the only action Lambda allows on a layer).
    pub action: String,
    /// `*` (every account) or a 12-digit account id.
    pub principal: String,
    /// With principal `*`: only accounts of this organization (`o-…`).
    pub organization_id: Option<String>,
}

/// A published, immutable layer version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerVersion {
    pub key: LayerKey,
    pub number: u64,
    pub description: String,
    pub compatible_runtimes: Vec<String>,
    pub compatible_architectures: Vec<String>,
    pub license_info: String,
    pub code: CodeRef,
    pub created_ms: u64,
    pub policy: Vec<LayerStatement>,
    /// Changes on every policy write; `RevisionId` checks compare against it.
    pub policy_revision: String,
}

impl LayerVersion {
    pub fn arn(&self) -> String {
        self.key.version_arn(self.number)
    }

    /// Whether `account_id` may use this version: its owner, or an account a statement
    /// names. Nimbus has no organizations, so a statement limited to one shares with
    /// nobody rather than with everybody.
    pub fn usable_by(&self, account_id: &str) -> bool {
        self.key.account_id == account_id
            || self.policy.iter().any(|s| {
                s.organization_id.is_none() && (s.principal == "*" || s.principal == account_id)
            })
    }
}

/// Lambda's `State`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FunctionState {
    Pending,
    Active,
    Inactive,
    Failed,
}

/// Lambda's `LastUpdateStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LastUpdateStatus {
    InProgress,
    Successful,
    Failed,
}

/// Where async results go (`DestinationConfig`): an ARN, usually another function.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventInvokeConfig {
    pub maximum_retry_attempts: u32,
    pub maximum_event_age_s: u32,
    pub on_success: Option<String>,
    pub on_failure: Option<String>,
    pub last_modified_ms: u64,
}

/// A function URL's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionUrlConfig {
    /// `NONE` or `AWS_IAM`.
    pub auth_type: String,
    /// The URL's stable random id: the first label of its host name.
    pub url_id: String,
    /// `""` for the unqualified function (`$LATEST`), else an alias name.
    pub qualifier: String,
    pub cors: Option<UrlCors>,
    /// `BUFFERED` or `RESPONSE_STREAM`.
    pub invoke_mode: String,
    pub created_ms: u64,
    pub last_modified_ms: u64,
}

/// A function URL's CORS settings, as Lambda's API names them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UrlCors {
    pub allow_credentials: bool,
    pub allow_headers: Vec<String>,
    pub allow_methods: Vec<String>,
    pub allow_origins: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age: Option<u32>,
}

/// Where a URL id leads: every gateway routes a URL request by this record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UrlRoute {
    pub key: FunctionKey,
    pub qualifier: String,
}

/// `$LATEST`: the mutable head of a function, with everything attached to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Function {
    pub key: FunctionKey,
    pub config: FunctionConfig,
    pub code: CodeRef,
    pub tags: BTreeMap<String, String>,
    pub state: FunctionState,
    pub last_update_status: LastUpdateStatus,
    /// Changes on every write to the function; `RevisionId` checks compare against it.
    pub revision_id: String,
    pub last_modified_ms: u64,
    /// Reserved concurrency (`PutFunctionConcurrency`); `None` draws on the unreserved pool.
    pub reserved_concurrency: Option<u32>,
    /// Per qualifier (`$LATEST`, a version number or an alias name).
    pub event_invoke_configs: BTreeMap<String, EventInvokeConfig>,
    /// Provisioned concurrency requested per qualifier (version number or alias name).
    pub provisioned_concurrency: BTreeMap<String, u32>,
    /// Function URLs, per qualifier (`""`: unqualified).
    pub url_configs: BTreeMap<String, FunctionUrlConfig>,
    /// Resource-based policy statements (`AddPermission`), per qualifier.
    pub resource_policy: crate::iam::ResourcePolicies,
    /// Edge locations each qualifier (a version number or an alias of one) is deployed
    /// to (`nimbus edge deploy`).
    pub edge_deployments: BTreeMap<String, Vec<String>>,
    /// The number the next published version gets.
    pub next_version: u64,
}

/// A published, immutable version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub key: FunctionKey,
    pub number: u64,
    pub config: FunctionConfig,
    pub code: CodeRef,
    pub description: String,
    pub revision_id: String,
    pub last_modified_ms: u64,
}

/// Weighted routing to one additional version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AliasRouting {
    pub version: u64,
    /// In [0.0, 1.0]: the share of invocations routed to `version`.
    pub weight: f64,
}

// Weights are validated to be finite, so equality is total in practice.
impl Eq for AliasRouting {}

/// A named pointer at a version, with optional weighted routing to a second one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alias {
    pub key: FunctionKey,
    pub name: String,
    /// A version number as a string (`"1"`), or `$LATEST`.
    pub function_version: String,
    pub description: String,
    pub routing: Option<AliasRouting>,
    pub revision_id: String,
}

/// Where a worker sits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Placement {
    Zone(String),
    EdgeLocation(String),
}

/// A registered worker node and its last reported capacity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Worker {
    pub id: String,
    pub addr: String,
    pub region: String,
    pub placement: Placement,
    pub memory_total_mb: u64,
    pub memory_used_mb: u64,
    pub environments_warm: u32,
    pub environments_busy: u32,
    pub last_heartbeat_ms: u64,
    /// The runtime identifiers it runs exactly; it is never chosen for any other.
    pub runtimes: Vec<String>,
}

/// An accepted asynchronous (`Event`) invocation, queued until it has run to a final
/// outcome. Its payload (up to 1 MB) is stored apart, written once, so that claims and
/// retries, which rewrite this record and reach every gateway through the watch stream,
/// stay small.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AsyncEvent {
    /// The request id answered with the 202; the function sees it as its request id on
    /// every attempt, as on Lambda.
    pub id: String,
    pub key: FunctionKey,
    /// The qualifier as invoked (`None`: unqualified). Resolved when the event runs, so an
    /// alias moved in the meantime is followed.
    pub qualifier: Option<String>,
    /// Decoded `X-Amz-Client-Context`.
    pub client_context: Option<String>,
    /// `X-Amzn-Trace-Id` of the accepting request, so the trace continues across the queue.
    pub trace_id: Option<String>,
    /// When the 202 was answered; `MaximumEventAgeInSeconds` counts from here.
    pub enqueued_ms: u64,
    /// Attempts that ended in a function error (they use up `MaximumRetryAttempts`).
    pub attempts: u32,
    /// Times the event was put back without running: throttled, or no worker took it.
    /// These do not use up attempts, as on Lambda; they only drive the backoff.
    pub deferrals: u32,
    /// The event is not claimed before this time (the backoff between tries).
    pub not_before_ms: u64,
    /// The gateway running it, until when. Expired leases can be taken by any gateway.
    pub lease: Option<EventLease>,
}

/// A gateway's claim on an event while it runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventLease {
    /// The claiming gateway's stable id: after a restart it takes its own leases back at
    /// once instead of waiting for them to expire.
    pub owner: String,
    pub until_ms: u64,
}

/// Every record type the state machine stores under a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Entity {
    Account(Account),
    AccessKey(AccessKey),
    Region(Region),
    Function(Function),
    Version(Version),
    Alias(Alias),
    CodePackage(CodePackage),
    Worker(Worker),
    /// A metadata node id that was removed; ids are never reused.
    RetiredNode(u64),
    /// An accepted `Event` invocation that has not finished yet.
    AsyncEvent(AsyncEvent),
    /// The cluster key's check value (see `Command::SetClusterKeyCheck`).
    ClusterKeyCheck(Vec<u8>),
    Layer(Layer),
    LayerVersion(LayerVersion),
    UrlRoute(UrlRoute),
    IamUser(crate::iam::IamUser),
    IamRole(crate::iam::IamRole),
    ManagedPolicy(crate::iam::ManagedPolicy),
    /// Concurrency set aside for an edge location (added last: records are encoded by
    /// variant position).
    EdgeBudget(EdgeBudget),
}

#[cfg(test)]
mod tests {
    use super::RegionLimits;

    #[test]
    fn unreserved_pool_and_its_minimum() {
        let l = RegionLimits {
            concurrent_executions: 1000,
            unreserved_minimum: 100,
        };
        assert_eq!(l.unreserved(0), 1000);
        assert_eq!(l.unreserved(250), 750);
        assert_eq!(l.unreserved(5000), 0, "never negative");
        assert!(l.keeps_unreserved_minimum(900));
        assert!(!l.keeps_unreserved_minimum(901));
    }

    #[test]
    fn edge_budget_shares_add_up_to_the_budget() {
        let b = super::EdgeBudget {
            account_id: "a".into(),
            region: "r".into(),
            location: "fra1".into(),
            slots: 7,
            gateways: vec!["g1".into(), "g2".into(), "g3".into()],
        };
        let shares: Vec<u32> = ["g1", "g2", "g3"]
            .iter()
            .map(|g| b.share_of(g).unwrap())
            .collect();
        assert_eq!(shares, [3, 2, 2]);
        assert_eq!(b.share_of("g4"), None, "an unlisted gateway holds nothing");
    }
}
