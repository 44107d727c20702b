//! What IAM authorization costs per API request: [`Gateway::authorize`] over a fixed
//! catalog, next to the Signature V4 verification every request already pays, in the
//! same run.
//!
//! Cases (all in-memory; nothing is dialled and no worker is called):
//!
//! * `root`   — the account's root invokes `f:live`: no identity policies, so only the
//!   function's resource policy for `live` is read and evaluated;
//! * `user`   — IAM user `alice` (three inline policies and the built-in
//!   `AWSLambda_FullAccess` attached) invokes `f:live`: allowed;
//! * `denied` — `alice` deletes `f`: refused by an explicit Deny (`NotAction`), including
//!   the `AccessDeniedException` message the refusal builds;
//! * `role`   — a session of role `r` (one inline policy) invokes `f`, unqualified (the
//!   function has no resource policy for the unqualified function);
//! * `cross`  — another account's root invokes `f:live`, allowed by the resource policy.
//!
//! A call of `authorize` includes what the gateway does per request: catalog lookups
//! (which clone the user, role and function records), the compiled-policy cache lookup
//! by document text, evaluation, and on a refusal the error. It leaves out what the
//! request path does around it: deriving the operation from the method and path
//! (`http::access::lambda_operation`) and building the condition-key `Context`.
//!
//! Baseline: `sigv4::parse_authorization` + `sigv4::verify` of a typical `Invoke`
//! (`POST /2015-03-31/functions/f/invocations?Qualifier=live`, a 50-byte JSON payload,
//! `content-type;host;x-amz-date;x-amz-invocation-type` signed, a few unsigned headers
//! beside them, no `x-amz-content-sha256`, so the payload is hashed), signed here with the
//! gateway's own `sigv4::sign_request`, as its unit tests do. Every request pays that
//! verification, so `authorize / sigv4` says how much authorization adds to the
//! gateway's per-request CPU. The secret lookup is left out of the baseline; a larger
//! payload makes verification dearer (the hash), so this small one is the case least
//! favourable to authorization.
//!
//! Method: one untimed warm-up pass (which also fills the compiled-policy cache), then
//! `NIMBUS_BENCH_ROUNDS` rounds (default 31) in which each case, interleaved so all see
//! the same background load, makes `NIMBUS_BENCH_CALLS` calls (default 20000); the
//! per-call time of a round is its wall time over its calls. Reported per case: median,
//! p90 and min over rounds; then two lines for scripts:
//!
//! ```text
//! median_ns sigv4=… root=… user=… denied=… role=… cross=…
//! ratio authorize/sigv4 root=… user=… denied=… role=… cross=…
//! ```
//!
//! Run (optimised, the bench profile; these are the figures to quote):
//!
//! ```text
//! CARGO_TARGET_DIR=/var/tmp/nimbus-target cargo bench -p nimbus-gateway --bench authorize
//! ```
//!
//! Or build it and run the binary directly (no arguments needed):
//!
//! ```text
//! CARGO_TARGET_DIR=/var/tmp/nimbus-target cargo build -p nimbus-gateway --bench authorize
//! /var/tmp/nimbus-target/debug/deps/authorize-<hash>
//! ```
//!
//! That binary is a dev-profile build (this crate unoptimised, dependencies at
//! opt-level 1): its absolute figures are several times the optimised ones, and its
//! ratios are skewed too (the hashing in `sha2`/`hmac` is optimised, the policy
//! evaluation in this workspace's crates is less so). `cargo bench --no-run` prints the
//! path of the optimised binary (`…/release/deps/authorize-<hash>`) to run the same way.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use nimbus_gateway::core::access::{policy_document, Caller, Identity, Operation};
use nimbus_gateway::core::catalog::Catalog;
use nimbus_gateway::core::workers::{WorkerResult, WorkerView, Workers};
use nimbus_gateway::http::sigv4::{self, SignedRequest, SigningParams};
use nimbus_gateway::{Gateway, GatewayConfig};
use nimbus_iam::{Context, PolicyDocument, PolicyKind};
use nimbus_meta::MetaClient;
use nimbus_proto::worker as pb;
use nimbus_types::iam::{IamRole, IamUser, BUILTIN_POLICIES};
use nimbus_types::{
    keys, Account, CodeRef, Entity, Function, FunctionConfig, FunctionKey, FunctionState,
    LastUpdateStatus,
};

const ACCOUNT: &str = "111122223333";
/// The account granted `lambda:InvokeFunction` on `f:live` by its resource policy.
const OTHER_ACCOUNT: &str = "444455556666";
const REGION: &str = "us-east-1";

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
/// 2026-01-01T00:00:00Z: the signing time and the gateway's clock.
const NOW: i64 = 1_767_225_600;
const HOST: &str = "127.0.0.1:9000";
const INVOKE_PATH: &str = "/2015-03-31/functions/f/invocations";
/// The Lambda console's default test event.
const PAYLOAD: &[u8] = br#"{"key1":"value1","key2":"value2","key3":"value3"}"#;

/// Workers that are never called: authorization reads the catalog only.
struct NoWorkers;

impl Workers for NoWorkers {
    fn live(&self) -> Vec<WorkerView> {
        unreachable!("the authorize bench calls no worker")
    }
    fn invoke(
        &self,
        _: &str,
        _: pb::InvokeRequest,
        _: Duration,
    ) -> BoxFuture<'static, WorkerResult<pb::InvokeResponse>> {
        unreachable!("the authorize bench calls no worker")
    }
    fn prefetch(
        &self,
        _: &str,
        _: pb::PrefetchRequest,
    ) -> BoxFuture<'static, WorkerResult<pb::PrefetchResponse>> {
        unreachable!("the authorize bench calls no worker")
    }
    fn provision(
        &self,
        _: &str,
        _: pb::ProvisionRequest,
        _: Duration,
    ) -> BoxFuture<'static, WorkerResult<pb::ProvisionResponse>> {
        unreachable!("the authorize bench calls no worker")
    }
    fn filter_log_events(
        &self,
        _: &str,
        _: pb::FilterLogEventsRequest,
    ) -> BoxFuture<'static, WorkerResult<pb::FilterLogEventsResponse>> {
        unreachable!("the authorize bench calls no worker")
    }
    fn describe_log_streams(
        &self,
        _: &str,
        _: pb::DescribeLogStreamsRequest,
    ) -> BoxFuture<'static, WorkerResult<pb::DescribeLogStreamsResponse>> {
        unreachable!("the authorize bench calls no worker")
    }
    fn describe_log_groups(
        &self,
        _: &str,
        _: pb::DescribeLogGroupsRequest,
    ) -> BoxFuture<'static, WorkerResult<pb::DescribeLogGroupsResponse>> {
        unreachable!("the authorize bench calls no worker")
    }
}

fn function_arn(qualifier: Option<&str>) -> String {
    let arn = format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:f");
    match qualifier {
        Some(q) => format!("{arn}:{q}"),
        None => arn,
    }
}

/// Panics unless `doc` is a valid policy of `kind` (a document that does not parse
/// would grant nothing, and the bench would measure the wrong thing).
fn check(doc: &str, kind: PolicyKind) {
    if let Err(e) = PolicyDocument::parse_as(doc, kind) {
        panic!("invalid {kind:?} policy ({e}): {doc}");
    }
}

/// `alice`'s inline policies: an Allow on `f*`, a Deny of all but reading and invoking
/// functions (`NotAction`), and a Deny of requests not made over TLS.
fn alice_policies() -> BTreeMap<String, String> {
    let functions = format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:f*");
    let docs = [
        (
            "invoke-f",
            format!(
                r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"InvokeF","Effect":"Allow","Action":["lambda:Invoke*","lambda:GetFunction*"],"Resource":"{functions}"}}]}}"#
            ),
        ),
        (
            "read-and-invoke-only",
            format!(
                r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"NoChanges","Effect":"Deny","NotAction":["lambda:Invoke*","lambda:Get*","lambda:List*"],"Resource":"arn:aws:lambda:*:{ACCOUNT}:function:*"}}]}}"#
            ),
        ),
        (
            "tls-only",
            r#"{"Version":"2012-10-17","Statement":[{"Sid":"DenyPlainHttp","Effect":"Deny","Action":"*","Resource":"*","Condition":{"StringEquals":{"aws:SecureTransport":"false"}}}]}"#
                .to_string(),
        ),
    ];
    docs.into_iter()
        .map(|(name, doc)| (name.to_string(), doc))
        .collect()
}

/// `f`'s resource policy for `live`, as `AddPermission` writes it: another account's
/// root may invoke it, and EventBridge rules of this account.
fn resource_policy() -> Vec<(String, String)> {
    let live = function_arn(Some("live"));
    let statements = vec![
        (
            "cross-account".to_string(),
            format!(
                r#"{{"Sid":"cross-account","Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{OTHER_ACCOUNT}:root"}},"Action":"lambda:InvokeFunction","Resource":"{live}"}}"#
            ),
        ),
        (
            "events-rule".to_string(),
            format!(
                r#"{{"Sid":"events-rule","Effect":"Allow","Principal":{{"Service":"events.amazonaws.com"}},"Action":"lambda:InvokeFunction","Resource":"{live}","Condition":{{"ArnLike":{{"AWS:SourceArn":"arn:aws:events:{REGION}:{ACCOUNT}:rule/nightly-*"}}}}}}"#
            ),
        ),
    ];
    check(&policy_document(&statements), PolicyKind::Resource);
    statements
}

/// A gateway over a fixed catalog (as in `tests/t20_core.rs`): the account, function
/// `f` with its resource policy, user `alice` and role `r`.
fn gateway() -> Arc<Gateway> {
    let key = FunctionKey::new(ACCOUNT, REGION, "f");
    let f = Function {
        key: key.clone(),
        config: FunctionConfig {
            runtime: "python3.12".into(),
            handler: "app.handler".into(),
            role: format!("arn:aws:iam::{ACCOUNT}:role/r"),
            description: "Orders API".into(),
            environment: BTreeMap::from([
                ("TABLE".to_string(), "orders".to_string()),
                ("STAGE".to_string(), "prod".to_string()),
                ("LOG_LEVEL".to_string(), "info".to_string()),
            ]),
            ..Default::default()
        },
        code: CodeRef {
            sha256: "c29tZQ==".into(),
            size: 10,
        },
        tags: BTreeMap::new(),
        state: FunctionState::Active,
        last_update_status: LastUpdateStatus::Successful,
        revision_id: "rev-f".into(),
        last_modified_ms: 0,
        reserved_concurrency: None,
        event_invoke_configs: BTreeMap::new(),
        provisioned_concurrency: BTreeMap::new(),
        url_configs: Default::default(),
        resource_policy: BTreeMap::from([("live".to_string(), resource_policy())]),
        edge_deployments: BTreeMap::new(),
        next_version: 2,
    };
    let alice = IamUser {
        account_id: ACCOUNT.into(),
        name: "alice".into(),
        user_id: "AIDAEXAMPLEALICE00001".into(),
        path: "/".into(),
        created_ms: 0,
        inline_policies: alice_policies(),
        attached: vec![BUILTIN_POLICIES[0].arn.to_string()],
        access_keys: vec!["AKIAEXAMPLEALICE0001".into()],
    };
    let role = IamRole {
        account_id: ACCOUNT.into(),
        name: "r".into(),
        role_id: "AROAEXAMPLEROLER0001".into(),
        path: "/".into(),
        description: String::new(),
        trust_policy: r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#
            .into(),
        max_session_secs: 3600,
        created_ms: 0,
        inline_policies: BTreeMap::from([(
            "invoke-functions".to_string(),
            format!(
                r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"lambda:InvokeFunction","Resource":"arn:aws:lambda:{REGION}:{ACCOUNT}:function:*"}}]}}"#
            ),
        )]),
        attached: vec![],
    };
    check(&role.trust_policy, PolicyKind::Trust);
    for doc in alice
        .inline_policies
        .values()
        .chain(role.inline_policies.values())
    {
        check(doc, PolicyKind::Identity);
    }
    let account = Account {
        id: ACCOUNT.into(),
        limits: BTreeMap::new(),
    };
    let entities = vec![
        (keys::account(ACCOUNT), Entity::Account(account)),
        (keys::function(&key), Entity::Function(f)),
        (keys::iam_user(ACCOUNT, "alice"), Entity::IamUser(alice)),
        (keys::iam_role(ACCOUNT, "r"), Entity::IamRole(role)),
    ];
    let catalog = Arc::new(Catalog::fixed(entities, 1));
    // Never dialled: authorization reads the catalog only.
    let meta = MetaClient::new(&["127.0.0.1:9"], &nimbus_tls::Transport::Plaintext)
        .expect("a metadata client");
    Gateway::new(
        meta,
        catalog,
        GatewayConfig::new(REGION, false),
        Arc::new(NoWorkers),
    )
}

/// One timed call of [`Gateway::authorize`].
struct Case {
    /// Its name in the summary lines.
    key: &'static str,
    label: &'static str,
    caller: Caller,
    op: Operation,
    /// Whether it is allowed (else refused by an explicit Deny).
    allowed: bool,
}

fn cases() -> Vec<Case> {
    let alice = Caller::new(
        ACCOUNT,
        "AKIAEXAMPLEALICE0001",
        Identity::User {
            name: "alice".into(),
        },
        "/",
    );
    let invoke_live = Operation::new("lambda:InvokeFunction", function_arn(Some("live")));
    vec![
        Case {
            key: "root",
            label: "authorize: root, InvokeFunction f:live",
            caller: Caller::new(ACCOUNT, "AKIAEXAMPLEROOT00001", Identity::Root, "/"),
            op: invoke_live.clone(),
            allowed: true,
        },
        Case {
            key: "user",
            label: "authorize: user alice, InvokeFunction f:live",
            caller: alice.clone(),
            op: invoke_live.clone(),
            allowed: true,
        },
        Case {
            key: "denied",
            label: "authorize: user alice, DeleteFunction f (deny)",
            caller: alice,
            op: Operation::new("lambda:DeleteFunction", function_arn(None)),
            allowed: false,
        },
        Case {
            key: "role",
            label: "authorize: role r session, InvokeFunction f",
            caller: Caller::new(
                ACCOUNT,
                "ASIAEXAMPLEROLER0001",
                Identity::Role {
                    name: "r".into(),
                    session: "deploy".into(),
                },
                "/",
            ),
            op: Operation::new("lambda:InvokeFunction", function_arn(None)),
            allowed: true,
        },
        Case {
            key: "cross",
            label: "authorize: other account's root, InvokeFunction f:live",
            caller: Caller::new(OTHER_ACCOUNT, "AKIAEXAMPLEOTHER0001", Identity::Root, "/"),
            op: invoke_live,
            allowed: true,
        },
    ]
}

/// A signed `Invoke` as the gateway receives it: every header (names lower-cased, as
/// the HTTP layer hands them over), signed or not, and the `Authorization` value.
fn signed_invoke() -> (Vec<(String, String)>, String) {
    let params = SigningParams {
        access_key_id: "AKIAEXAMPLEALICE0001",
        secret_access_key: SECRET,
        session_token: None,
        region: REGION,
        service: "lambda",
    };
    let signed = sigv4::sign_request(
        "POST",
        INVOKE_PATH,
        "Qualifier=live",
        HOST,
        &[
            ("Content-Type", "application/json"),
            ("X-Amz-Invocation-Type", "RequestResponse"),
        ],
        PAYLOAD,
        &params,
        NOW,
    );
    let length = PAYLOAD.len().to_string();
    let headers = [
        ("host", HOST),
        ("accept-encoding", "identity"),
        ("x-amz-invocation-type", "RequestResponse"),
        (
            "user-agent",
            "Boto3/1.34.0 md/Botocore#1.34.0 ua/2.0 os/linux#6.8 md/arch#x86_64 lang/python#3.12.3",
        ),
        ("x-amz-date", signed.amz_date.as_str()),
        ("content-type", "application/json"),
        ("authorization", signed.authorization.as_str()),
        ("content-length", length.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    (headers, signed.authorization)
}

/// The time per call, in ns, of `calls` calls of `f`; every call must return `expect`.
fn per_call_ns(calls: u32, expect: bool, mut f: impl FnMut() -> bool) -> f64 {
    let mut matched = 0u32;
    let t = Instant::now();
    for _ in 0..calls {
        matched += u32::from(f() == expect);
    }
    let ns = t.elapsed().as_secs_f64() * 1e9 / f64::from(calls);
    assert_eq!(matched, calls, "a call gave an unexpected outcome");
    ns
}

/// Prints median, p90 and min of per-call times over rounds; returns the median.
fn stats(label: &str, mut ns: Vec<f64>) -> f64 {
    ns.sort_by(f64::total_cmp);
    let median = ns[ns.len() / 2];
    println!(
        "{label:<56} median {median:>8.1} ns   p90 {:>8.1} ns   min {:>8.1} ns",
        ns[(ns.len() - 1) * 9 / 10],
        ns[0]
    );
    median
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// A runtime only to build the gateway: its catalog and metadata client spawn tasks that
// never run here. The timed calls are synchronous.
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let rounds = env_or("NIMBUS_BENCH_ROUNDS", 31usize).max(1);
    let calls = env_or("NIMBUS_BENCH_CALLS", 20_000u32).max(1);

    let gw = gateway();
    // What the gateway supplies for a request that came over TLS.
    let context = Context::new().with("aws:SecureTransport", "true");
    let cases = cases();
    for c in &cases {
        match gw.authorize(&c.caller, &c.op, &context) {
            Ok(()) => assert!(c.allowed, "{}: allowed, expected a refusal", c.label),
            Err(e) => assert!(
                !c.allowed
                    && e.status == 403
                    && e.error_type == "AccessDeniedException"
                    && e.message.contains("explicit deny"),
                "{}: {e}",
                c.label
            ),
        }
    }
    let authorize = |c: &Case| {
        black_box(gw.authorize(black_box(&c.caller), black_box(&c.op), black_box(&context))).is_ok()
    };

    let (headers, authorization) = signed_invoke();
    let request = SignedRequest {
        method: "POST",
        raw_path: INVOKE_PATH,
        raw_query: "Qualifier=live",
        headers: &headers,
        body: PAYLOAD,
    };
    let verify_invoke = || {
        black_box(
            sigv4::parse_authorization(black_box(&authorization))
                .and_then(|auth| sigv4::verify(black_box(&request), &auth, SECRET, NOW)),
        )
        .is_ok()
    };
    assert!(verify_invoke(), "the signed Invoke does not verify");

    // Warm-up: caches (the compiled policies among them), branch predictors, frequency.
    per_call_ns(calls, true, verify_invoke);
    for c in &cases {
        per_call_ns(calls, c.allowed, || authorize(c));
    }

    let mut sigv4_ns = Vec::with_capacity(rounds);
    let mut case_ns = vec![Vec::new(); cases.len()];
    for _ in 0..rounds {
        sigv4_ns.push(per_call_ns(calls, true, verify_invoke));
        for (c, ns) in cases.iter().zip(&mut case_ns) {
            ns.push(per_call_ns(calls, c.allowed, || authorize(c)));
        }
    }

    println!("{rounds} rounds of {calls} calls per case (interleaved), time per call:");
    let base = stats("sigv4: parse_authorization + verify, Invoke", sigv4_ns);
    let mut medians = vec![format!("sigv4={base:.1}")];
    let mut ratios = vec![];
    for (c, ns) in cases.iter().zip(case_ns) {
        let median = stats(c.label, ns);
        medians.push(format!("{}={median:.1}", c.key));
        ratios.push(format!("{}={:.2}", c.key, median / base));
    }
    println!("median_ns {}", medians.join(" "));
    println!("ratio authorize/sigv4 {}", ratios.join(" "));
}
