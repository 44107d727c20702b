//! An in-process worker for `nimbus dev`: the gateway's [`Invoker`] backed directly by a
//! `nimbus_worker::Engine`, with code packages fetched from the metadata store, verified,
//! and unpacked once into a shared read-only cache.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use nimbus_gateway::{ApiError, InvokeRequest, InvokeResult, InvokeTarget, Invoker};
use nimbus_meta::MetaClient;
use nimbus_worker::{Engine, FunctionSpec, Invocation, InvokeStatus};
use tokio::sync::Mutex;

/// Runs invocations on this process's execution environments.
pub struct LocalInvoker {
    pub engine: Engine,
    meta: MetaClient,
    code_root: PathBuf,
    /// Serializes unpacking so two cold starts of one package unpack it once.
    unpack_lock: Mutex<()>,
}

impl LocalInvoker {
    pub fn new(engine: Engine, meta: MetaClient, code_root: PathBuf) -> Arc<Self> {
        Arc::new(Self {
            engine,
            meta,
            code_root,
            unpack_lock: Mutex::new(()),
        })
    }

    /// The unpacked package, fetched and verified on first use.
    async fn code_dir(&self, sha256: &str, revision: u64) -> Result<PathBuf, ApiError> {
        let dir = self
            .code_root
            .join(sha256.replace('/', "_").replace('+', "-"));
        if dir.exists() {
            return Ok(dir);
        }
        let _guard = self.unpack_lock.lock().await;
        if dir.exists() {
            return Ok(dir);
        }
        let zip = self
            .meta
            .fetch_code(sha256, revision)
            .await
            .map_err(|e| ApiError::service(format!("fetching code: {e}")))?;
        let tmp = self
            .code_root
            .join(format!(".unpack-{}", uuid::Uuid::new_v4().simple()));
        let (tmp2, dir2) = (tmp.clone(), dir.clone());
        tokio::task::spawn_blocking(move || {
            unpack(&zip, &tmp2).and_then(|_| std::fs::rename(&tmp2, &dir2))
        })
        .await
        .map_err(|e| ApiError::service(e.to_string()))?
        .map_err(|e| {
            let _ = std::fs::remove_dir_all(&tmp);
            ApiError::new(
                502,
                "InvalidZipFileException",
                format!("Lambda was unable to unzip the deployment package: {e}"),
            )
        })?;
        Ok(dir)
    }
}

/// Unzips into `dir` (the zip crate refuses entries that escape it) and makes everything
/// readable by the sandbox's unprivileged user, keeping execute bits.
fn unpack(zip: &[u8], dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut archive =
        zip::ZipArchive::new(std::io::Cursor::new(zip)).map_err(std::io::Error::other)?;
    archive.extract(dir).map_err(std::io::Error::other)?;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p)?;
        if meta.is_dir() {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
            for e in std::fs::read_dir(&p)? {
                stack.push(e?.path());
            }
        } else if meta.is_file() {
            let exec = meta.permissions().mode() & 0o111 != 0;
            std::fs::set_permissions(
                &p,
                std::fs::Permissions::from_mode(if exec { 0o755 } else { 0o644 }),
            )?;
        }
    }
    Ok(())
}

impl Invoker for LocalInvoker {
    fn invoke<'a>(
        &'a self,
        target: &'a InvokeTarget,
        request: InvokeRequest,
    ) -> BoxFuture<'a, Result<InvokeResult, ApiError>> {
        Box::pin(async move {
            let code_dir = self
                .code_dir(&target.code.sha256, target.code_revision)
                .await?;
            let c = &target.config;
            let spec = FunctionSpec {
                function_name: target.key.name.clone(),
                version: target.version.clone(),
                arn: target.invoked_arn.clone(),
                code_dir,
                layers: vec![],
                runtime: c.runtime.clone(),
                handler: c.handler.clone(),
                memory_mb: u64::from(c.memory_mb),
                timeout: Duration::from_secs(u64::from(c.timeout_s)),
                ephemeral_mb: u64::from(c.ephemeral_storage_mb),
                env: c.environment.clone(),
                revision: target.revision_id.clone(),
            };
            let inv = Invocation {
                request_id: request.request_id,
                payload: request.payload,
                client_context: request.client_context,
                cognito_identity: None,
                trace_id: request.trace_id,
            };
            let out = self
                .engine
                .invoke(&spec, inv)
                .await
                .map_err(|e| ApiError::service(format!("invocation failed: {e}")))?;
            let function_error = match out.status {
                InvokeStatus::Ok => None,
                InvokeStatus::FunctionError { error_type } => Some(error_type),
            };
            Ok(InvokeResult {
                function_error,
                payload: out.payload,
                log_tail: out.log_tail,
            })
        })
    }
}
