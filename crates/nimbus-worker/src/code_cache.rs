//! The worker's code cache: each deployment package is fetched from the metadata cluster
//! by its SHA-256, verified (the client checks every chunk and the whole hash), unpacked
//! once into a read-only directory shared by every environment of that code, and evicted
//! when no environment can still be using it.
//!
//! Eviction is time-based so it never needs to know which environment mounts what: a
//! package's `last_used` is refreshed on every invocation that uses it, and an environment
//! outlives its last invocation by at most the idle timeout, while an invocation lasts at
//! most the 15-minute Lambda maximum. A package unused for longer than both together (plus
//! a margin for the reaper's tick) cannot be mounted by anything.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use nimbus_meta::MetaClient;

/// Longest a function may run (Lambda's maximum timeout).
const MAX_INVOCATION: Duration = Duration::from_secs(15 * 60);

/// Why a package could not be made available.
#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    /// The metadata cluster did not return the package (missing, corrupt, unreachable).
    #[error("fetching code package {sha256}: {message}")]
    Fetch { sha256: String, message: String },
    /// The package is not a valid zip or could not be written out.
    #[error("Lambda was unable to unzip the deployment package: {0}")]
    Unzip(String),
}

/// Unpacked packages under one directory.
pub struct CodeCache {
    root: PathBuf,
    meta: MetaClient,
    /// Serializes unpacking, so concurrent cold starts of one package unpack it once.
    unpack: tokio::sync::Mutex<()>,
    last_used: Mutex<HashMap<String, Instant>>,
}

impl CodeCache {
    /// Starts an empty cache in `root`. Whatever a previous process left there is
    /// removed: no environment survives a restart, so nothing can be using it.
    pub fn new(root: PathBuf, meta: MetaClient) -> std::io::Result<Self> {
        if root.exists() {
            std::fs::remove_dir_all(&root)?;
        }
        std::fs::create_dir_all(&root)?;
        Ok(Self {
            root,
            meta,
            unpack: tokio::sync::Mutex::new(()),
            last_used: Mutex::default(),
        })
    }

    fn dir_for(&self, sha256: &str) -> PathBuf {
        // Base64 may contain '/' and '+': make a safe file name.
        self.root.join(sha256.replace('/', "_").replace('+', "-"))
    }

    fn touch(&self, sha256: &str) {
        self.last_used
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(sha256.to_string(), Instant::now());
    }

    /// The unpacked package, fetched and verified on first use. `min_revision` is a
    /// metadata revision at which the package is known to exist.
    pub async fn get(&self, sha256: &str, min_revision: u64) -> Result<PathBuf, CodeError> {
        let dir = self.dir_for(sha256);
        // Every invocation asks: a package used before is known to be unpacked (its
        // entry goes before its directory does), which spares a `stat` per invocation.
        if let Some(t) = self
            .last_used
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(sha256)
        {
            *t = Instant::now();
            return Ok(dir);
        }
        if dir.exists() {
            self.touch(sha256);
            return Ok(dir);
        }
        let _guard = self.unpack.lock().await;
        if dir.exists() {
            self.touch(sha256);
            return Ok(dir);
        }
        let zip = self
            .meta
            .fetch_code(sha256, min_revision)
            .await
            .map_err(|e| CodeError::Fetch {
                sha256: sha256.to_string(),
                message: e.to_string(),
            })?;
        let tmp = self
            .root
            .join(format!(".unpack-{}", uuid::Uuid::new_v4().simple()));
        let (tmp2, dir2) = (tmp.clone(), dir.clone());
        let res = tokio::task::spawn_blocking(move || {
            unpack(&zip, &tmp2).and_then(|_| std::fs::rename(&tmp2, &dir2))
        })
        .await
        .map_err(|e| CodeError::Unzip(e.to_string()))?;
        if let Err(e) = res {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(CodeError::Unzip(e.to_string()));
        }
        self.touch(sha256);
        Ok(dir)
    }

    /// Removes packages no environment can still be using (see the module docs).
    /// Returns how many were removed.
    pub fn evict_unused(&self, idle_timeout: Duration) -> usize {
        let horizon = idle_timeout + MAX_INVOCATION + Duration::from_secs(60);
        let stale: Vec<String> = {
            let mut used = self
                .last_used
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let stale: Vec<String> = used
                .iter()
                .filter(|(_, t)| t.elapsed() > horizon)
                .map(|(k, _)| k.clone())
                .collect();
            for k in &stale {
                used.remove(k);
            }
            stale
        };
        let mut removed = 0;
        for sha in stale {
            let dir = self.dir_for(&sha);
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!("evicting {}: {e}", dir.display()),
            }
        }
        removed
    }

    /// Packages currently unpacked.
    pub fn len(&self) -> usize {
        self.last_used
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether nothing is unpacked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
