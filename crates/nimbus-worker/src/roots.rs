//! Runtime root file systems: the read-only roots built by `deploy/rootfs/build.sh`
//! from Debian's packages, each serving the runtime identifiers its manifest
//! (`etc/nimbus-runtime.json`) lists, with the interpreter versions measured inside it
//! when it was built.
//!
//! A worker given a roots directory runs every function in the root of its runtime:
//! `/usr`, `/etc`, ... come from that root instead of the host. An identifier is offered
//! only when the root's interpreter is exactly the version it names (`python3.13` needs
//! Python 3.13.x); nothing is ever mapped to another version.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::error::EngineError;

/// Where the manifest is inside a root.
pub const MANIFEST: &str = "etc/nimbus-runtime.json";

#[derive(Debug, Deserialize)]
struct Manifest {
    name: String,
    runtimes: Vec<String>,
    #[serde(default)]
    interpreters: BTreeMap<String, Interpreter>,
}

#[derive(Debug, Clone, Deserialize)]
struct Interpreter {
    /// Path inside the root.
    path: PathBuf,
    /// `3.13.5`, `20.19.2`, `21.0.8`, `3.3.8`.
    version: String,
}

/// One runtime identifier as a root serves it.
#[derive(Debug, Clone)]
pub struct Offer {
    /// The root's name (`trixie`) and the build it resolved to on the host.
    pub root_name: String,
    pub root: Arc<Path>,
    /// The language's interpreter inside the root (`None` for `provided*`).
    pub interpreter: Option<PathBuf>,
    /// The interpreter's full version, as measured when the root was built.
    pub version: Option<String>,
}

/// Every runtime the roots in one directory offer.
#[derive(Debug, Clone, Default)]
pub struct RuntimeRoots {
    pub dir: PathBuf,
    offers: BTreeMap<String, Offer>,
    /// Identifiers a root lists but cannot serve exactly, with why (for `nimbus runtimes`).
    refused: BTreeMap<String, String>,
}

/// A directory every function's `/usr` comes from must be root's alone: a user who could
/// write it could swap a root under the worker.
fn root_only(dir: &Path) -> Result<(), EngineError> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(dir)
        .map_err(|e| EngineError::Config(format!("runtime roots {}: {e}", dir.display())))?;
    if !m.is_dir() || m.uid() != 0 || m.mode() & 0o022 != 0 {
        return Err(EngineError::Config(format!(
            "runtime roots {}: must be a directory owned by root and writable by root only",
            dir.display()
        )));
    }
    Ok(())
}

/// The interpreter a runtime identifier runs on, and the version prefix it requires.
fn language_of(runtime: &str) -> Option<(&'static str, String)> {
    if runtime.starts_with("provided") {
        return None;
    }
    if let Some(v) = runtime.strip_prefix("python") {
        return Some(("python3", format!("{v}.")));
    }
    if let Some(v) = runtime
        .strip_prefix("nodejs")
        .and_then(|r| r.strip_suffix(".x"))
    {
        return Some(("node", format!("{v}.")));
    }
    if let Some(v) = runtime.strip_prefix("java") {
        return Some(("java", format!("{v}.")));
    }
    if let Some(v) = runtime.strip_prefix("ruby") {
        return Some(("ruby", format!("{v}.")));
    }
    Some(("unknown", String::new()))
}

impl RuntimeRoots {
    /// Reads the roots in `dir`: every entry that is a symbolic link (`NAME -> NAME-HASH`,
    /// the current build of each root) to a root with a manifest. A directory with no
    /// usable root is an error: a worker told to use roots never falls back to the host.
    pub fn load(dir: &Path) -> Result<Self, EngineError> {
        let bad = |m: String| EngineError::Config(m);
        root_only(dir)?;
        let entries = std::fs::read_dir(dir)
            .map_err(|e| bad(format!("runtime roots {}: {e}", dir.display())))?;
        let mut names: Vec<(String, PathBuf)> = Vec::new();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let is_link = e.file_type().map(|t| t.is_symlink()).unwrap_or(false);
            if is_link && !name.starts_with('.') {
                names.push((name, e.path()));
            }
        }
        names.sort();
        let mut roots = RuntimeRoots {
            dir: dir.to_path_buf(),
            ..Default::default()
        };
        for (name, link) in names {
            let root = std::fs::canonicalize(&link)
                .map_err(|e| bad(format!("runtime root {}: {e}", link.display())))?;
            root_only(&root)?;
            let text = std::fs::read_to_string(root.join(MANIFEST))
                .map_err(|e| bad(format!("runtime root {}: {MANIFEST}: {e}", root.display())))?;
            let m: Manifest = serde_json::from_str(&text)
                .map_err(|e| bad(format!("runtime root {}: {MANIFEST}: {e}", root.display())))?;
            let root: Arc<Path> = Arc::from(root.as_path());
            for runtime in &m.runtimes {
                if roots.offers.contains_key(runtime) {
                    roots.refused.insert(
                        runtime.clone(),
                        format!("also listed by root {name}; the first root serves it"),
                    );
                    continue;
                }
                let offer = match language_of(runtime) {
                    None => Ok(Offer {
                        root_name: m.name.clone(),
                        root: root.clone(),
                        interpreter: None,
                        version: None,
                    }),
                    Some((language, prefix)) => match m.interpreters.get(language) {
                        Some(i) if i.version.starts_with(&prefix) => Ok(Offer {
                            root_name: m.name.clone(),
                            root: root.clone(),
                            interpreter: Some(i.path.clone()),
                            version: Some(i.version.clone()),
                        }),
                        Some(i) => Err(format!(
                            "root {} has {language} {}, not {}x",
                            m.name, i.version, prefix
                        )),
                        None => Err(format!("root {} has no {language}", m.name)),
                    },
                };
                match offer {
                    Ok(o) => {
                        roots.refused.remove(runtime);
                        roots.offers.insert(runtime.clone(), o);
                    }
                    Err(why) => {
                        roots.refused.insert(runtime.clone(), why);
                    }
                }
            }
        }
        if roots.offers.is_empty() {
            return Err(bad(format!(
                "runtime roots {}: no root there serves any runtime (build them with deploy/rootfs/build.sh)",
                dir.display()
            )));
        }
        Ok(roots)
    }

    /// The root that serves `runtime`, or why none does.
    pub fn offer(&self, runtime: &str) -> Result<&Offer, String> {
        self.offers.get(runtime).ok_or_else(|| match self.refused.get(runtime) {
            Some(why) => format!("runtime {runtime} is not offered by this worker: {why}"),
            None => format!(
                "runtime {runtime} is not offered by this worker (its runtime roots in {} serve: {})",
                self.dir.display(),
                self.offers.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        })
    }

    /// The identifiers offered.
    pub fn runtimes(&self) -> impl Iterator<Item = &str> {
        self.offers.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(dir: &Path, name: &str, manifest: &str) {
        let build = dir.join(format!("{name}-0123456789ab"));
        std::fs::create_dir_all(build.join("etc")).unwrap();
        std::fs::create_dir_all(build.join("usr")).unwrap();
        std::fs::write(build.join(MANIFEST), manifest).unwrap();
        std::os::unix::fs::symlink(&build, dir.join(name)).unwrap();
    }

    #[test]
    fn identifiers_are_offered_only_for_the_exact_version() {
        let dir = tempfile::tempdir().unwrap();
        root(
            dir.path(),
            "trixie",
            r#"{"name":"trixie","runtimes":["python3.13","nodejs20.x","java21","ruby3.3","python3.12"],
               "interpreters":{"python3":{"path":"/usr/bin/python3","version":"3.13.5"},
                               "node":{"path":"/usr/bin/node","version":"20.19.2"},
                               "java":{"path":"/usr/bin/java","version":"21.0.9"}}}"#,
        );
        root(
            dir.path(),
            "provided",
            r#"{"name":"provided","runtimes":["provided.al2023"],"interpreters":{}}"#,
        );
        // A stale build beside the current one is ignored (only the links count).
        std::fs::create_dir_all(dir.path().join("trixie-ffffffffffff/etc")).unwrap();
        let roots = RuntimeRoots::load(dir.path()).unwrap();
        let py = roots.offer("python3.13").unwrap();
        assert_eq!(
            py.interpreter.as_deref(),
            Some(Path::new("/usr/bin/python3"))
        );
        assert!(py.root.ends_with("trixie-0123456789ab"));
        assert!(roots
            .offer("provided.al2023")
            .unwrap()
            .interpreter
            .is_none());
        assert_eq!(
            roots.runtimes().collect::<Vec<_>>(),
            ["java21", "nodejs20.x", "provided.al2023", "python3.13"]
        );
        let wrong = roots.offer("python3.12").unwrap_err();
        assert!(wrong.contains("has python3 3.13.5, not 3.12.x"), "{wrong}");
        assert!(roots.offer("ruby3.3").unwrap_err().contains("has no ruby"));
        let absent = roots.offer("python3.11").unwrap_err();
        assert!(absent.contains("serve: java21, nodejs20.x"), "{absent}");
    }

    #[test]
    fn a_directory_without_roots_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(RuntimeRoots::load(dir.path()).is_err());
        // Writable by others: refused even with a good root in it.
        root(
            dir.path(),
            "provided",
            r#"{"name":"provided","runtimes":["provided.al2023"],"interpreters":{}}"#,
        );
        assert!(RuntimeRoots::load(dir.path()).is_ok());
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = RuntimeRoots::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("writable by root only"), "{e}");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::remove_file(dir.path().join("provided")).unwrap();
        assert!(RuntimeRoots::load(&dir.path().join("missing")).is_err());
        root(dir.path(), "broken", "not json");
        assert!(RuntimeRoots::load(dir.path()).is_err());
    }
}
