//! The writes the replicated state machine applies and the reads it answers.
//!
//! A command is validated before it is proposed (by [`crate::validate`]); the state
//! machine re-checks everything that depends on current state (existence, `RevisionId`,
//! limits across functions) deterministically at apply time. Anything time-dependent
//! (`now_ms`) is chosen by the proposer, never read from the clock during apply, so every
//! replica computes the same result.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::*;
use crate::MetaError;

/// One write. Each variant is one Lambda (or cluster) operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    PutAccount {
        account_id: String,
    },
    SetAccountLimits {
        account_id: String,
        region: String,
        limits: RegionLimits,
    },
    PutAccessKey {
        key: AccessKey,
    },
    DeleteAccessKey {
        access_key_id: String,
    },
    /// `UpdateAccessKey`: turns a key on or off.
    SetAccessKeyActive {
        access_key_id: String,
        active: bool,
    },

    CreateIamUser {
        user: crate::iam::IamUser,
    },
    /// Refused while the user has access keys or policies, as IAM does.
    DeleteIamUser {
        account_id: String,
        name: String,
    },
    CreateIamRole {
        role: crate::iam::IamRole,
    },
    DeleteIamRole {
        account_id: String,
        name: String,
    },
    /// `PutUserPolicy`/`PutRolePolicy`: adds or replaces an inline policy.
    PutInlinePolicy {
        account_id: String,
        principal: crate::iam::IamPrincipalRef,
        policy_name: String,
        document: String,
    },
    DeleteInlinePolicy {
        account_id: String,
        principal: crate::iam::IamPrincipalRef,
        policy_name: String,
    },
    CreateManagedPolicy {
        policy: crate::iam::ManagedPolicy,
    },
    DeleteManagedPolicy {
        account_id: String,
        name: String,
    },
    AttachPolicy {
        account_id: String,
        principal: crate::iam::IamPrincipalRef,
        policy_arn: String,
    },
    DetachPolicy {
        account_id: String,
        principal: crate::iam::IamPrincipalRef,
        policy_arn: String,
    },
    PutRegion {
        name: String,
    },
    PutEdgeLocation {
        region: String,
        location: String,
    },

    /// One chunk of a code package (already encrypted by the proposer), one Raft entry.
    PutCodeChunk {
        sha256: String,
        index: u32,
        ciphertext: Vec<u8>,
    },
    /// Seals a package once all chunks are in; fails if any is missing.
    CommitCode {
        package: CodePackage,
    },

    CreateFunction {
        key: FunctionKey,
        config: FunctionConfig,
        code: CodeRef,
        tags: BTreeMap<String, String>,
        publish: bool,
        now_ms: u64,
    },
    UpdateFunctionCode {
        key: FunctionKey,
        code: CodeRef,
        expected_revision: Option<String>,
        publish: bool,
        now_ms: u64,
    },
    UpdateFunctionConfiguration {
        key: FunctionKey,
        config: FunctionConfig,
        expected_revision: Option<String>,
        now_ms: u64,
    },
    /// Deletes the function (`qualifier` None) or one published version.
    DeleteFunction {
        key: FunctionKey,
        version: Option<u64>,
    },
    PublishVersion {
        key: FunctionKey,
        description: String,
        expected_code_sha256: Option<String>,
        expected_revision: Option<String>,
        now_ms: u64,
    },
    CreateAlias {
        key: FunctionKey,
        name: String,
        function_version: String,
        description: String,
        routing: Option<AliasRouting>,
    },
    UpdateAlias {
        key: FunctionKey,
        name: String,
        function_version: Option<String>,
        description: Option<String>,
        /// `Some(None)` removes routing; `None` leaves it as is.
        routing: Option<Option<AliasRouting>>,
        expected_revision: Option<String>,
    },
    DeleteAlias {
        key: FunctionKey,
        name: String,
    },
    PutFunctionConcurrency {
        key: FunctionKey,
        reserved: u32,
    },
    DeleteFunctionConcurrency {
        key: FunctionKey,
    },
    PutProvisionedConcurrency {
        key: FunctionKey,
        qualifier: String,
        requested: u32,
    },
    DeleteProvisionedConcurrency {
        key: FunctionKey,
        qualifier: String,
    },
    PutEventInvokeConfig {
        key: FunctionKey,
        qualifier: String,
        config: EventInvokeConfig,
    },
    DeleteEventInvokeConfig {
        key: FunctionKey,
        qualifier: String,
    },
    /// Creates (`create`) or replaces the URL config of `config.qualifier`.
    PutFunctionUrlConfig {
        key: FunctionKey,
        config: FunctionUrlConfig,
        create: bool,
    },
    DeleteFunctionUrlConfig {
        key: FunctionKey,
        qualifier: String,
    },
    /// `AddPermission`: one statement of the function's resource-based policy.
    AddFunctionPermission {
        key: FunctionKey,
        /// `""`: the unqualified function; else an alias or a version number.
        qualifier: String,
        statement_id: String,
        statement: String,
        expected_revision: Option<String>,
    },
    RemoveFunctionPermission {
        key: FunctionKey,
        qualifier: String,
        statement_id: String,
        expected_revision: Option<String>,
    },
    /// Deploys a published version, or an alias of one, to edge locations of the
    /// function's region (adding to where it is already).
    DeployToEdge {
        key: FunctionKey,
        qualifier: String,
        locations: Vec<String>,
    },
    /// Removes a qualifier from edge locations (all of them when `locations` is empty).
    RemoveFromEdge {
        key: FunctionKey,
        qualifier: String,
        locations: Vec<String>,
    },
    TagResource {
        key: FunctionKey,
        tags: BTreeMap<String, String>,
    },
    UntagResource {
        key: FunctionKey,
        tag_keys: Vec<String>,
    },

    /// Publishes the layer's next version (creating the layer on its first).
    PublishLayerVersion {
        key: LayerKey,
        description: String,
        compatible_runtimes: Vec<String>,
        compatible_architectures: Vec<String>,
        license_info: String,
        code: CodeRef,
        now_ms: u64,
    },
    /// Deletes one layer version. Functions configured with it keep its content.
    DeleteLayerVersion {
        key: LayerKey,
        version: u64,
    },
    AddLayerVersionPermission {
        key: LayerKey,
        version: u64,
        statement: LayerStatement,
        expected_revision: Option<String>,
    },
    RemoveLayerVersionPermission {
        key: LayerKey,
        version: u64,
        statement_id: String,
        expected_revision: Option<String>,
    },

    RegisterWorker {
        worker: Worker,
    },
    DeregisterWorker {
        id: String,
    },

    /// Recorded before a metadata node is removed, so its id is never used again.
    RetireNode {
        id: u64,
    },

    /// Accepts an `Event` invocation: durable once applied, before the caller gets 202.
    /// Applying it again with the same event id changes nothing.
    EnqueueEvent {
        event: AsyncEvent,
        payload: Vec<u8>,
    },
    /// Takes the lease on a ready event (`not_before_ms` passed, no live lease of another
    /// owner), or renews the caller's own lease.
    ClaimEvent {
        id: String,
        owner: String,
        now_ms: u64,
        lease_until_ms: u64,
    },
    /// Gives a claimed event back to run again at `not_before_ms`. `function_error` counts
    /// the attempt against `MaximumRetryAttempts`; otherwise it counts as a deferral.
    RetryEvent {
        id: String,
        owner: String,
        function_error: bool,
        not_before_ms: u64,
    },
    /// Removes an event that reached its final outcome and, in the same entry, queues the
    /// invocation record for its destination function (if it still exists). Completing an
    /// event that is gone does nothing, so a record is queued at most once.
    CompleteEvent {
        id: String,
        destination: Option<Box<QueuedEvent>>,
    },
    /// Records the cluster key's check value (a constant sealed under the key) once; a
    /// later one is ignored. Every node opens it at start and refuses to run if it cannot:
    /// its key is not the cluster's.
    SetClusterKeyCheck {
        sealed: Vec<u8>,
    },
    /// Sets an edge location's concurrency budget for an account (`slots` 0 removes it),
    /// checked against the account's limit like reserved concurrency. Added last:
    /// commands in the Raft log are encoded by variant position.
    PutEdgeBudget {
        budget: crate::model::EdgeBudget,
    },
    /// Writes the leader's metadata service gathered while an earlier entry was being
    /// appended, proposed as one log entry so they share one append and one fsync. Each
    /// is applied in order as if it were its own entry: its own request id (a retry is
    /// answered from the first time), its own result (one failing does not undo the
    /// others) and its own revision ids. Made only by the metadata nodes; a batch inside
    /// a batch is refused. Added last, like `PutEdgeBudget`.
    Batch {
        writes: Vec<BatchedWrite>,
    },
}

/// One write inside a [`Command::Batch`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchedWrite {
    pub request_id: String,
    pub command: Command,
}

/// What one write inside a [`Command::Batch`] returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchedOutput {
    /// The revision the write was first applied at: the batch's log index, or, for a
    /// retried request id, the original's.
    pub revision: u64,
    pub result: Result<CommandOutput, MetaError>,
}

/// An event with its payload, as queued for a destination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedEvent {
    pub event: AsyncEvent,
    pub payload: Vec<u8>,
}

/// What a successful write returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandOutput {
    Done,
    Function(Box<Function>),
    Version(Box<Version>),
    Alias(Alias),
    /// `CreateFunction`/`UpdateFunctionCode` with `publish`: the head and the new version.
    FunctionAndVersion(Box<Function>, Box<Version>),
    /// `ClaimEvent`: the event as leased.
    Event(Box<AsyncEvent>),
    /// `PublishLayerVersion` and the permission writes: the version as it is now.
    LayerVersion(Box<LayerVersion>),
    /// `Batch`: each write's outcome, in the batch's order. Seen only by the metadata
    /// node that proposed the batch, which answers each caller with its own.
    Batch(Vec<BatchedOutput>),
}

/// One read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Query {
    Get {
        key: String,
    },
    /// Keys under `prefix`, in order, after `start_after`, at most `limit`.
    List {
        prefix: String,
        start_after: Option<String>,
        limit: u32,
    },
    /// An access key's account and secret, decrypted by the metadata node that answers
    /// (gateways need the secret to verify Signature V4).
    AccessKeySecret {
        access_key_id: String,
    },
    /// The payload of a queued async event (`None` once it has completed).
    EventPayload {
        id: String,
    },
    /// The key gateways sign and verify session tokens (STS) with, derived from the
    /// cluster key by the metadata node that answers.
    SessionSigningKey,
}

/// What a read returns.
// Short-lived return values: boxing the single entity would cost an allocation per read
// to save stack space nobody holds on to.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueryOutput {
    Entity(Option<Entity>),
    Entities(Vec<(String, Entity)>),
    AccessKeySecret {
        account_id: String,
        secret: Vec<u8>,
        user_name: Option<String>,
        active: bool,
    },
    SessionSigningKey(Vec<u8>),
    EventPayload(Option<Vec<u8>>),
}

/// One key's change, as the watch stream delivers it. `None` means deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub key: String,
    pub value: Option<Entity>,
}
