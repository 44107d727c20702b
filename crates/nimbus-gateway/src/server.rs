//! The gateway's HTTP server: routes, shared state, and authentication of every call.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use nimbus_meta::{ClientError, MetaClient};

use crate::admission::Admission;
use crate::api;
use crate::cache::MetaCache;
use crate::error::ApiError;
use crate::invoker::Invoker;
use crate::logs::{LogSource, LogsError};
use crate::sigv4;

/// Largest request body accepted: a 50 MB zip, base64-encoded inside JSON.
pub const MAX_BODY_BYTES: usize = 70 * 1024 * 1024;

/// How a gateway is configured.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The region this gateway serves.
    pub region: String,
    /// Admit against leases from the metadata leader (required when several gateways
    /// serve one cluster); otherwise this gateway counts alone.
    pub leased_admission: bool,
}

/// Shared state of one gateway.
pub struct Gateway {
    pub meta: MetaClient,
    pub cache: Arc<MetaCache>,
    pub region: String,
    pub invoker: Arc<dyn Invoker>,
    pub admission: Admission,
    /// Lambda's function metrics (Invocations, Errors, Throttles, …). The binary adds
    /// them to its registry; other engines (async events) record through the same handle.
    pub metrics: nimbus_telemetry::LambdaMetrics,
    /// Provisioned concurrency as the last round of [`crate::provisioned`] left it.
    pub provisioned: crate::provisioned::Provisioned,
    /// access key id → (account, secret). Secrets stay in memory only, never logged.
    secrets: Mutex<HashMap<String, (String, String)>>,
    /// Where function logs are read from (the CloudWatch Logs API); set once at start.
    log_source: OnceLock<Arc<dyn LogSource>>,
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub account_id: String,
    pub access_key_id: String,
}

impl Gateway {
    /// Connects to the metadata cluster and fills the cache.
    pub async fn new(
        meta: MetaClient,
        config: GatewayConfig,
        invoker: Arc<dyn Invoker>,
    ) -> Result<Arc<Self>, ClientError> {
        let cache = MetaCache::start(meta.clone()).await?;
        Ok(Self::with_cache(meta, cache, config, invoker))
    }

    /// A gateway over an already started cache (the cluster's invoker shares it).
    pub fn with_cache(
        meta: MetaClient,
        cache: Arc<MetaCache>,
        config: GatewayConfig,
        invoker: Arc<dyn Invoker>,
    ) -> Arc<Self> {
        let admission = if config.leased_admission {
            Admission::leased(meta.clone())
        } else {
            Admission::local()
        };
        Arc::new(Self {
            meta,
            cache,
            region: config.region,
            invoker,
            admission,
            metrics: nimbus_telemetry::LambdaMetrics::new(),
            provisioned: Default::default(),
            secrets: Mutex::default(),
            log_source: OnceLock::new(),
        })
    }

    /// Serves function logs from `source` (the workers of a cluster, or `nimbus dev`'s
    /// in-process worker). Only the first call has an effect.
    pub fn set_log_source(&self, source: Arc<dyn LogSource>) {
        let _ = self.log_source.set(source);
    }

    /// The function log source, once set.
    pub fn log_source(&self) -> Option<Arc<dyn LogSource>> {
        self.log_source.get().cloned()
    }

    /// The Lambda API routes, every one behind Signature V4.
    pub fn router(self: &Arc<Self>) -> Router {
        let functions = "/2015-03-31/functions";
        Router::new()
            // CloudWatch Logs (JSON 1.1): the operation is in `X-Amz-Target`.
            .route("/", post(crate::logs::api::dispatch))
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
            .route(
                "/2017-03-31/tags/{arn}",
                get(api::settings::list_tags)
                    .post(api::settings::tag)
                    .delete(api::settings::untag),
            )
            .fallback(|| async {
                ApiError::new(404, "UnknownOperationException", "Unknown operation")
            })
            // The authentication layer already bounds bodies (MAX_BODY_BYTES); axum's own
            // 2 MB default would turn larger uploads into untyped 413s.
            .layer(axum::extract::DefaultBodyLimit::disable())
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                authenticate,
            ))
            .with_state(self.clone())
    }

    /// Serves on `listener` until `shutdown` resolves.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }

    async fn secret(&self, access_key_id: &str) -> Result<(String, String), ApiError> {
        if let Some(s) = self
            .secrets
            .lock()
            .expect("lock not poisoned")
            .get(access_key_id)
        {
            return Ok(s.clone());
        }
        let (account, secret) = match self.meta.access_key_secret(access_key_id).await {
            Ok(v) => v,
            Err(ClientError::Meta(e)) if e.kind == nimbus_types::ErrorKind::ResourceNotFound => {
                return Err(sigv4::SigError::UnknownKey.into());
            }
            Err(e) => return Err(e.into()),
        };
        let secret = String::from_utf8(secret)
            .map_err(|_| ApiError::service("stored secret is not UTF-8"))?;
        self.secrets
            .lock()
            .expect("lock not poisoned")
            .insert(access_key_id.to_string(), (account.clone(), secret.clone()));
        Ok((account, secret))
    }

    /// Waits until this gateway's cache reflects a write, so the caller reads its own write.
    pub async fn observe(&self, revision: u64) {
        if !self.cache.wait_for(revision, Duration::from_secs(5)).await {
            tracing::warn!(revision, "cache did not catch up with a write within 5s");
        }
    }
}

/// Verifies Signature V4 and attaches the [`Caller`]. The body is read here (bounded),
/// since the signature covers its hash, and handed on unchanged.
async fn authenticate(State(gw): State<Arc<Gateway>>, req: Request, next: Next) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let (mut parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return with_request_id(
                ApiError::too_large("Request must be smaller than 70 MB").into_response(),
                &request_id,
            )
        }
    };
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    // CloudWatch Logs calls are signed for service `logs` and answered in its error format.
    let logs = crate::logs::api::is_logs_request(&parts.method, parts.uri.path(), &parts.headers);
    let service = if logs { "logs" } else { "lambda" };
    let caller = match check_signature(&gw, &parts, &headers, &body, service).await {
        Ok(c) => c,
        Err(e) => {
            tracing::info!(request_id, error = %e, path = parts.uri.path(), "request refused");
            let resp = if logs {
                LogsError::from(e).into_response()
            } else {
                e.into_response()
            };
            return with_request_id(resp, &request_id);
        }
    };
    tracing::debug!(request_id, account = caller.account_id, method = %parts.method, path = parts.uri.path(), "request");
    parts.extensions.insert(caller);
    parts.extensions.insert(RequestId(request_id.clone()));
    let resp = next.run(Request::from_parts(parts, Body::from(body))).await;
    with_request_id(resp, &request_id)
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

async fn check_signature(
    gw: &Gateway,
    parts: &axum::http::request::Parts,
    headers: &[(String, String)],
    body: &[u8],
    service: &str,
) -> Result<Caller, ApiError> {
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
    if auth.region != gw.region {
        return Err(sigv4::SigError::Scope(format!(
            "region '{}' should be '{}'",
            auth.region, gw.region
        ))
        .into());
    }
    let (account_id, secret) = gw.secret(&auth.access_key_id).await?;
    let req = sigv4::SignedRequest {
        method: parts.method.as_str(),
        raw_path: parts.uri.path(),
        raw_query: parts.uri.query().unwrap_or(""),
        headers,
        body,
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    sigv4::verify(&req, &auth, &secret, now)?;
    Ok(Caller {
        account_id,
        access_key_id: auth.access_key_id,
    })
}
