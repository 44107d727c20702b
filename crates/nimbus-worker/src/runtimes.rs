//! Lambda runtime identifiers → what to exec inside the environment.
//!
//! * `provided.al2023` / `provided.al2` (and legacy `provided`): the
//!   package's `bootstrap`, looked up as Lambda does: `/var/task/bootstrap`,
//!   then `/opt/bootstrap`, then `/var/runtime/bootstrap`.
//! * `python3.x`: the host's python3 running Nimbus's `bootstrap.py`.
//! * `nodejs*.x`: the host's node running Nimbus's `bootstrap.js`.
//!
//! The two bootstraps are compiled into this crate and written to the state
//! directory on startup, which is mounted read-only at `/var/runtime`.

use std::path::{Path, PathBuf};

use crate::config::EngineConfig;
use crate::error::EngineError;
use crate::function::FunctionSpec;

const PYTHON_BOOTSTRAP: &str = include_str!("../runtimes/python/bootstrap.py");
const NODE_BOOTSTRAP: &str = include_str!("../runtimes/node/bootstrap.js");

/// A supported runtime family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeKind {
    /// OS-only runtime: the function brings its `bootstrap`.
    Provided,
    /// Python 3 (any `python3.x` maps to the host's python3).
    Python,
    /// Node.js (any `nodejsNN.x` maps to the host's node).
    Node,
}

impl RuntimeKind {
    /// Parses a Lambda `Runtime` value.
    pub fn parse(runtime: &str) -> Result<Self, EngineError> {
        match runtime {
            "provided" | "provided.al2" | "provided.al2023" => Ok(RuntimeKind::Provided),
            r if r.starts_with("python3.") => Ok(RuntimeKind::Python),
            r if r.starts_with("nodejs") && r.ends_with(".x") => Ok(RuntimeKind::Node),
            other => Err(EngineError::InvalidFunction(format!(
                "unsupported runtime {other:?}"
            ))),
        }
    }
}

/// What the sandbox should exec for a function.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Host directory for `/var/runtime`.
    pub runtime_dir: Option<PathBuf>,
    /// Extra variables the runtime family expects.
    pub env: Vec<(String, String)>,
}

/// Writes the bundled bootstraps below `state_dir/runtimes`.
pub(crate) fn install(state_dir: &Path) -> Result<(), EngineError> {
    for (dir, file, body) in [
        ("python", "bootstrap.py", PYTHON_BOOTSTRAP),
        ("node", "bootstrap.js", NODE_BOOTSTRAP),
    ] {
        let dir = state_dir.join("runtimes").join(dir);
        std::fs::create_dir_all(&dir).map_err(|e| EngineError::io("create runtime dir", e))?;
        std::fs::write(dir.join(file), body).map_err(|e| EngineError::io("write bootstrap", e))?;
        use std::os::unix::fs::PermissionsExt;
        for p in [dir.clone(), dir.join(file)] {
            let mode = if p.is_dir() { 0o755 } else { 0o644 };
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
                .map_err(|e| EngineError::io("chmod runtime", e))?;
        }
    }
    // The state dir's ancestors must be traversable by the sandbox user only
    // for bind mounts made as root; nothing else needed.
    Ok(())
}

/// `Err(Some(msg))` → Lambda's `Runtime.InvalidEntrypoint` init error.
pub(crate) fn launch(config: &EngineConfig, spec: &FunctionSpec) -> Result<Launch, String> {
    let kind = RuntimeKind::parse(&spec.runtime).map_err(|e| e.to_string())?;
    let runtimes = config.state_dir.join("runtimes");
    match kind {
        RuntimeKind::Provided => {
            let candidates = [
                (spec.code_dir.join("bootstrap").exists(), "/var/task/bootstrap"),
                (
                    spec.layers.iter().any(|l| l.join("bootstrap").exists()),
                    "/opt/bootstrap",
                ),
            ];
            let program = candidates
                .iter()
                .find(|(found, _)| *found)
                .map(|(_, p)| PathBuf::from(p))
                .ok_or_else(|| "Couldn't find valid bootstrap(s): [/var/task/bootstrap /opt/bootstrap]".to_owned())?;
            Ok(Launch {
                program,
                args: vec![],
                runtime_dir: None,
                env: vec![],
            })
        }
        RuntimeKind::Python => Ok(Launch {
            program: config.python.clone(),
            args: vec!["/var/runtime/bootstrap.py".into()],
            runtime_dir: Some(runtimes.join("python")),
            env: vec![
                ("PYTHONUNBUFFERED".into(), "1".into()),
                ("PYTHONDONTWRITEBYTECODE".into(), "1".into()),
            ],
        }),
        RuntimeKind::Node => Ok(Launch {
            program: config.node.clone(),
            args: vec!["/var/runtime/bootstrap.js".into()],
            runtime_dir: Some(runtimes.join("node")),
            env: vec![(
                "NODE_PATH".into(),
                "/opt/nodejs/node20/node_modules:/opt/nodejs/node_modules:/var/runtime/node_modules:/var/task/node_modules".into(),
            )],
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_names() {
        assert_eq!(
            RuntimeKind::parse("provided.al2023").unwrap(),
            RuntimeKind::Provided
        );
        assert_eq!(
            RuntimeKind::parse("provided.al2").unwrap(),
            RuntimeKind::Provided
        );
        assert_eq!(
            RuntimeKind::parse("python3.12").unwrap(),
            RuntimeKind::Python
        );
        assert_eq!(RuntimeKind::parse("nodejs20.x").unwrap(), RuntimeKind::Node);
        assert!(RuntimeKind::parse("java21").is_err());
    }
}
