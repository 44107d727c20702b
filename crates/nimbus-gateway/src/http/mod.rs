//! The gateway's HTTP layer: the Lambda REST API and the CloudWatch Logs API as thin
//! adapters over [`crate::core`], with Signature V4 authentication of every call.
//!
//! Layout:
//! - this file: the router, authentication, and the request's [`Caller`].
//! - [`sigv4`]: Signature Version 4 verification.
//! - [`wire`]: the one mapping of [`ApiError`] to Lambda's wire format.
//! - [`extract`]: the function named by a request path and its `Qualifier`.
//! - [`api`]: one module per group of Lambda operations.
//! - [`logs`]: the CloudWatch Logs API subset.
//! - [`query`]: IAM and STS (AWS's Query protocol).
//! - [`access`]: the IAM action and resource of each Lambda and Logs request.
//! - [`urls`]: function URLs, served by host name before the Lambda API.
//! - [`eventstream`]: AWS's event-stream framing (response streaming).

pub mod access;
pub mod api;
pub mod eventstream;
pub mod extract;
pub mod https;
pub mod logs;
pub mod query;
pub mod sigv4;
pub mod urls;
pub mod wire;

use std::future::Future;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;

use self::logs::LogsError;
use axum::Extension;

use crate::core::credentials::CredentialError;
use crate::core::sessions;
use crate::core::{ApiError, Gateway};

/// Largest request body accepted: a 50 MB zip, base64-encoded inside JSON.
pub const MAX_BODY_BYTES: usize = nimbus_types::limits::API_BODY_MAX_BYTES;

pub use crate::core::access::Caller;
use crate::core::access::Identity;

impl Gateway {
    /// The Lambda API routes, every one behind Signature V4.
    pub fn router(self: &Arc<Self>) -> Router {
        let functions = "/2015-03-31/functions";
        Router::new()
            // CloudWatch Logs (JSON 1.1, the operation in `X-Amz-Target`), and IAM and
            // STS (Query protocol, the service in the signature).
            .route("/", post(root))
            .route(
                functions,
                post(api::functions::create).get(api::functions::list),
            )
            .route(&format!("{functions}/"), get(api::functions::list))
            .route(
                &format!("{functions}/{{name}}"),
                get(api::functions::get).delete(api::functions::delete),
            )
            .route(
                &format!("{functions}/{{name}}/configuration"),
                get(api::functions::get_configuration).put(api::functions::update_configuration),
            )
            .route(
                &format!("{functions}/{{name}}/code"),
                put(api::functions::update_code),
            )
            .route(
                &format!("{functions}/{{name}}/invocations"),
                post(api::invoke::invoke),
            )
            .route(
                &format!("{functions}/{{name}}/versions"),
                post(api::versions::publish).get(api::versions::list),
            )
            .route(
                "/nimbus/2026-12-01/functions/{name}/edge-deployments/{qualifier}",
                put(api::edge::deploy).delete(api::edge::remove),
            )
            .route(
                "/nimbus/2026-12-01/functions/{name}/edge-deployments",
                get(api::edge::of_function),
            )
            .route(
                "/nimbus/2026-12-01/edge-deployments",
                get(api::edge::of_account),
            )
            .route(
                "/2021-11-15/functions/{name}/response-streaming-invocations",
                post(api::invoke::invoke_stream),
            )
            .route(
                "/2021-10-31/functions/{name}/url",
                post(api::urls::create)
                    .get(api::urls::get)
                    .put(api::urls::update)
                    .delete(api::urls::delete),
            )
            .route("/2021-10-31/functions/{name}/urls", get(api::urls::list))
            .route(
                &format!("{functions}/{{name}}/policy"),
                post(api::permissions::add).get(api::permissions::get),
            )
            .route(
                &format!("{functions}/{{name}}/policy/{{sid}}"),
                axum::routing::delete(api::permissions::remove),
            )
            .route(
                &format!("{functions}/{{name}}/aliases"),
                post(api::aliases::create).get(api::aliases::list),
            )
            .route(
                &format!("{functions}/{{name}}/aliases/{{alias}}"),
                get(api::aliases::get)
                    .put(api::aliases::update)
                    .delete(api::aliases::delete),
            )
            .route(
                "/2017-10-31/functions/{name}/concurrency",
                put(api::settings::put_concurrency).delete(api::settings::delete_concurrency),
            )
            .route(
                "/2019-09-30/functions/{name}/concurrency",
                get(api::settings::get_concurrency),
            )
            .route(
                "/2016-08-19/account-settings",
                get(api::settings::account_settings),
            )
            .route(
                "/2016-08-19/account-settings/",
                get(api::settings::account_settings),
            )
            .route(
                "/2019-09-30/functions/{name}/provisioned-concurrency",
                put(api::provisioned::put)
                    .get(api::provisioned::get)
                    .delete(api::provisioned::delete),
            )
            .route(
                "/2019-09-25/functions/{name}/event-invoke-config",
                put(api::settings::put_event_invoke_config)
                    .post(api::settings::update_event_invoke_config)
                    .get(api::settings::get_event_invoke_config)
                    .delete(api::settings::delete_event_invoke_config),
            )
            .route("/2018-10-31/layers", get(api::layers::list_layers))
            .route(
                "/2018-10-31/layers/{layer}/versions",
                post(api::layers::publish).get(api::layers::list_versions),
            )
            .route(
                "/2018-10-31/layers/{layer}/versions/{version}",
                get(api::layers::get_version).delete(api::layers::delete_version),
            )
            .route(
                "/2018-10-31/layers/{layer}/versions/{version}/policy",
                post(api::layers::add_permission).get(api::layers::get_policy),
            )
            .route(
                "/2018-10-31/layers/{layer}/versions/{version}/policy/{sid}",
                axum::routing::delete(api::layers::remove_permission),
            )
            .route(
                "/2017-03-31/tags/{arn}",
                get(api::settings::list_tags)
                    .post(api::settings::tag)
                    .delete(api::settings::untag),
            )
            .fallback(unknown_operation)
            // A known path with a method it does not take is an unknown operation too,
            // answered in Lambda's format rather than as a bare 405.
            .method_not_allowed_fallback(unknown_operation)
            // The authentication layer already bounds bodies (MAX_BODY_BYTES); axum's own
            // 2 MB default would turn larger uploads into untyped 413s.
            .layer(axum::extract::DefaultBodyLimit::disable())
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                authenticate,
            ))
            // Download links carry their own signature (see `core::download`).
            .route(
                &format!("{}/{{sha}}", crate::core::download::PATH),
                get(api::download::serve),
            )
            .with_state(self.clone())
            // Function URLs are told apart by host name, before any Lambda API routing.
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                urls::front,
            ))
    }

    /// Serves on `listener` until `shutdown` resolves.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        // The peer's address is a function URL event's `sourceIp`.
        axum::serve(
            listener,
            self.router()
                .into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
    }

    /// Serves HTTPS on `listener` with `tls` (the public certificate) until `shutdown`.
    pub async fn serve_https(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        tls: Arc<rustls::ServerConfig>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let listener = https::HttpsListener::new(listener, tls)?;
        let router = self
            .router()
            .layer(axum::Extension(crate::core::download::PublicScheme(
                "https",
            )));
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<https::PeerAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
    }
}

/// Verifies Signature V4 and attaches the [`Caller`]. Everything that can be checked
/// without the body is checked first (a declared size over the limit, the key, the scope,
/// the date, and the signature itself when `x-amz-content-sha256` declares the payload's
/// hash), so an unauthenticated caller costs no body read. The body is then read
/// (bounded) and its hash must match what was signed; it is handed on unchanged.
async fn authenticate(State(gw): State<Arc<Gateway>>, req: Request, next: Next) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let (mut parts, body) = req.into_parts();
    // CloudWatch Logs calls are signed for service `logs` and answered in its error
    // format; other calls to `/` are IAM or STS, answered in XML.
    let is_logs = logs::api::is_logs_request(&parts.method, parts.uri.path(), &parts.headers);
    let query_service = (!is_logs && parts.uri.path() == "/")
        .then(|| signed_service(&parts.headers))
        .flatten()
        .and_then(|s| query::Service::from_scope(&s));
    let refuse = |e: ApiError, parts: &axum::http::request::Parts| {
        tracing::info!(request_id, error = %e, path = parts.uri.path(), "request refused");
        let resp = if is_logs {
            LogsError::from(e).into_response()
        } else if let Some(s) = query_service {
            query::refusal(s, e, &request_id)
        } else {
            e.into_response()
        };
        with_request_id(resp, &request_id)
    };
    let too_large = || ApiError::too_large("Request must be smaller than 70 MB");
    let declared_len = parts
        .headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared_len.is_some_and(|n| n > MAX_BODY_BYTES) {
        return refuse(too_large(), &parts);
    }
    let headers = header_pairs(&parts.headers);
    let service = match query_service {
        _ if is_logs => "logs",
        Some(query::Service::Iam) => "iam",
        Some(query::Service::Sts) => "sts",
        None => "lambda",
    };
    let signer = match Signer::check(&gw, &parts, &headers, service).await {
        Ok(s) => s,
        Err(e) => return refuse(e, &parts),
    };
    // With the payload's hash declared, the signature is checked before the body is read.
    if let Err(e) = signer.verify_declared(&parts, &headers) {
        return refuse(e, &parts);
    }
    // Without it, the body must be read to be verified: such bodies share a bounded
    // budget, so a known key id without its secret buys no more than that much memory.
    // No Content-Length and no Transfer-Encoding: HTTP/1.1 says there is no body.
    let expected = match declared_len {
        Some(n) => n,
        None if parts
            .headers
            .contains_key(axum::http::header::TRANSFER_ENCODING) =>
        {
            MAX_BODY_BYTES
        }
        None => 0,
    };
    let unverified = if signer.declared.is_none() && expected > 0 {
        let mb = expected.div_ceil(1 << 20);
        match budget(&gw, mb).await {
            Some(permit) => Some(permit),
            None => {
                let e = ApiError::throttled(
                    UNVERIFIED_BODY_REASON,
                    "Too many request bodies are awaiting signature verification; retry, or \
                     declare the payload's hash in x-amz-content-sha256.",
                );
                return refuse(e, &parts);
            }
        }
    } else {
        None
    };
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => return refuse(too_large(), &parts),
    };
    if let Err(e) = signer.verify_body(&parts, &headers, &body) {
        return refuse(e, &parts);
    }
    drop(unverified);
    let mut caller = signer.caller;
    tracing::debug!(request_id, account = caller.account_id, method = %parts.method, path = parts.uri.path(), "request");
    // Authorization of Lambda and Logs calls (IAM and STS check their own actions).
    let operation = if is_logs {
        let target = parts
            .headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        Ok(Some(access::logs_operation(
            gw.region(),
            &caller,
            target,
            &body,
        )))
    } else if query_service.is_some() {
        Ok(None)
    } else {
        access::lambda_operation(
            gw.region(),
            &caller,
            &parts.method,
            parts.uri.path(),
            parts.uri.query(),
            &body,
        )
    };
    let context = nimbus_iam::Context::new().with(
        "aws:SecureTransport",
        if parts
            .extensions
            .get::<crate::core::download::PublicScheme>()
            .is_some()
        {
            "true"
        } else {
            "false"
        },
    );
    match operation {
        Ok(Some(op)) => {
            if let Err(e) = gw.authorize(&caller, &op, &context) {
                return refuse(e, &parts);
            }
            if let Some(owner) = crate::core::access::resource_account(&op.resource) {
                if owner != caller.account_id {
                    caller.granted_account = Some(owner.to_string());
                }
            }
        }
        Ok(None) => {}
        Err(e) => return refuse(e, &parts),
    }
    if let Some(s) = query_service {
        parts.extensions.insert(s);
    }
    parts.extensions.insert(caller);
    parts.extensions.insert(RequestId(request_id.clone()));
    let resp = next.run(Request::from_parts(parts, Body::from(body))).await;
    with_request_id(resp, &request_id)
}

/// The throttle `Reason` when the unverified-body budget is spent.
pub const UNVERIFIED_BODY_REASON: &str = "UnverifiedRequestBodyBudgetExceeded";

/// How long a request waits for room in the unverified-body budget before a throttle.
const BUDGET_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// `mb` of the gateway's budget for bodies read before verification (a body larger than
/// the whole budget takes all of it), waiting briefly for room.
async fn budget(gw: &Gateway, mb: usize) -> Option<tokio::sync::OwnedSemaphorePermit> {
    let (sem, total) = gw.unverified_bodies();
    let want = (mb.min(total as usize) as u32).max(1);
    tokio::time::timeout(BUDGET_WAIT, sem.clone().acquire_many_owned(want))
        .await
        .ok()
        .and_then(Result::ok)
}

/// The caller of a fully read request signed with Signature V4 for service `lambda` (a
/// function URL with `AuthType AWS_IAM`).
pub(crate) async fn verify_signed(
    gw: &Gateway,
    parts: &axum::http::request::Parts,
    body: &[u8],
) -> Result<Caller, ApiError> {
    let headers = header_pairs(&parts.headers);
    let signer = Signer::check(gw, parts, &headers, "lambda").await?;
    signer.verify_declared(parts, &headers)?;
    signer.verify_body(parts, &headers, body)?;
    Ok(signer.caller)
}

/// The caller of a request signed with session credentials: the token must be genuine,
/// unexpired and issued for the key that signed.
async fn session_caller(
    gw: &Gateway,
    parts: &axum::http::request::Parts,
    access_key_id: &str,
) -> Result<(Caller, String), ApiError> {
    let token = parts
        .headers
        .get("x-amz-security-token")
        .and_then(|v| v.to_str().ok())
        .ok_or(sigv4::SigError::UnknownKey)?;
    let key = gw.session_key().await?;
    let now = crate::core::async_events::now_ms();
    let (claims, secret) =
        sessions::verify(key, token, access_key_id, now).map_err(|e| match e {
            sessions::SessionError::Invalid => ApiError::from(sigv4::SigError::UnknownKey),
            sessions::SessionError::Expired => {
                ApiError::new(403, "ExpiredTokenException", e.to_string())
            }
        })?;
    let path = nimbus_types::iam::parse_role_arn(&claims.role_arn)
        .map_or("/", |(_, p, _)| p)
        .to_string();
    let caller = Caller::new(
        &claims.account_id,
        access_key_id,
        Identity::Role {
            name: claims.role_name,
            session: claims.session_name,
        },
        &path,
    );
    Ok((caller, secret))
}

/// The headers as name/value text, as Signature V4 reads them.
fn header_pairs(headers: &axum::http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// The service named in the `Authorization` header's credential scope.
fn signed_service(headers: &axum::http::HeaderMap) -> Option<String> {
    let h = headers.get("authorization")?.to_str().ok()?;
    sigv4::parse_authorization(h).ok().map(|a| a.service)
}

/// `POST /`: CloudWatch Logs, or IAM and STS.
async fn root(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    service: Option<Extension<query::Service>>,
    Extension(request_id): Extension<RequestId>,
    headers: axum::http::HeaderMap,
    body: bytes::Bytes,
) -> Response {
    match service {
        Some(Extension(s)) => {
            query::dispatch(
                State(gw),
                Extension(caller),
                Extension(s),
                Extension(request_id),
                body,
            )
            .await
        }
        None => logs::api::dispatch(State(gw), Extension(caller), headers, body).await,
    }
}

async fn unknown_operation() -> ApiError {
    ApiError::new(404, "UnknownOperationException", "Unknown operation")
}

/// The request id of the call being served (`x-amzn-RequestId`).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

fn with_request_id(mut resp: Response, id: &str) -> Response {
    if let Ok(v) = id.parse() {
        resp.headers_mut().insert("x-amzn-RequestId", v);
    }
    resp
}

/// A request whose key, scope and date are good, with what is left to verify.
struct Signer {
    auth: sigv4::Authorization,
    secret: String,
    caller: Caller,
    /// `x-amz-content-sha256`, when the client declared the payload's hash.
    declared: Option<String>,
    now: i64,
}

impl Signer {
    /// Everything but the signature: the header, the scope, the key.
    async fn check(
        gw: &Gateway,
        parts: &axum::http::request::Parts,
        headers: &[(String, String)],
        service: &str,
    ) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .ok_or(sigv4::SigError::Missing)?;
        let auth = sigv4::parse_authorization(header)?;
        if auth.service != service {
            return Err(sigv4::SigError::Scope(format!(
                "service '{}' should be '{service}'",
                auth.service
            ))
            .into());
        }
        // IAM is global and signed for us-east-1; STS's global endpoint is too.
        let global = matches!(service, "iam" | "sts") && auth.region == "us-east-1";
        if auth.region != gw.region() && !global {
            return Err(sigv4::SigError::Scope(format!(
                "region '{}' should be '{}'",
                auth.region,
                gw.region()
            ))
            .into());
        }
        let declared = sigv4::declared_payload_hash(headers)?.map(str::to_string);
        let (caller, secret) = if sessions::is_session_key(&auth.access_key_id) {
            session_caller(gw, parts, &auth.access_key_id).await?
        } else {
            let credential = gw
                .credentials()
                .get(gw.catalog(), gw.meta(), &auth.access_key_id)
                .await
                .map_err(|e| match e {
                    CredentialError::UnknownKey => sigv4::SigError::UnknownKey.into(),
                    CredentialError::Lookup(e) => e,
                })?;
            let (identity, path) = match &credential.user_name {
                None => (Identity::Root, "/".to_string()),
                Some(name) => {
                    let path = match gw
                        .catalog()
                        .get(&nimbus_types::keys::iam_user(&credential.account_id, name))
                    {
                        Some(nimbus_types::Entity::IamUser(u)) => u.path,
                        _ => "/".into(),
                    };
                    (Identity::User { name: name.clone() }, path)
                }
            };
            let caller = Caller::new(&credential.account_id, &auth.access_key_id, identity, &path);
            (caller, credential.secret)
        };
        Ok(Self {
            caller,
            auth,
            secret,
            declared,
            now: time::OffsetDateTime::now_utc().unix_timestamp(),
        })
    }

    fn verify(
        &self,
        parts: &axum::http::request::Parts,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), ApiError> {
        let req = sigv4::SignedRequest {
            method: parts.method.as_str(),
            raw_path: parts.uri.path(),
            raw_query: parts.uri.query().unwrap_or(""),
            headers,
            body,
        };
        Ok(sigv4::verify(&req, &self.auth, &self.secret, self.now)?)
    }

    /// The signature, before the body is read, when its hash is declared.
    fn verify_declared(
        &self,
        parts: &axum::http::request::Parts,
        headers: &[(String, String)],
    ) -> Result<(), ApiError> {
        match self.declared {
            // The canonical request uses the declared hash; the body is not needed.
            Some(_) => self.verify(parts, headers, b""),
            None => Ok(()),
        }
    }

    /// The body against the declared hash, or the signature over the body's own hash.
    fn verify_body(
        &self,
        parts: &axum::http::request::Parts,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(), ApiError> {
        match &self.declared {
            Some(declared) => Ok(sigv4::check_payload(body, declared)?),
            None => self.verify(parts, headers, body),
        }
    }
}
