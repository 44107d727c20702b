//! Lambda runtime identifiers → what to exec inside the environment.
//!
//! * `provided.al2023` / `provided.al2` (and legacy `provided`): the
//!   package's `bootstrap`, looked up as Lambda does: `/var/task/bootstrap`,
//!   then `/opt/bootstrap`, then `/var/runtime/bootstrap`.
//! * `python3.x`: the host's python3 running Nimbus's `bootstrap.py`, only if it is
//!   exactly Python 3.x ([`Interpreters::check`]).
//! * `nodejsNN.x`: the host's node running Nimbus's `bootstrap.js`, only if it is
//!   exactly Node.js NN.
//!
//! The two bootstraps are compiled into this crate and written to the state
//! directory on startup, which is mounted read-only at `/var/runtime`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::config::EngineConfig;
use crate::error::EngineError;
use crate::function::FunctionSpec;

const PYTHON_BOOTSTRAP: &str = include_str!("../runtimes/python/bootstrap.py");
/// Started ahead of time in pre-created shells (`nimbus_sandbox::Zygote`), as `-c`.
const PYTHON_ZYGOTE: &str = include_str!("../runtimes/python/zygote.py");
/// Node's zygote, as `-e`.
const NODE_ZYGOTE: &str = include_str!("../runtimes/node/zygote.js");
const NODE_BOOTSTRAP: &str = include_str!("../runtimes/node/bootstrap.js");
const RUBY_BOOTSTRAP: &str = include_str!("../runtimes/ruby/bootstrap.rb");

/// Where a runtime root holds Nimbus's Java runtime (its jars and `bootstrap`), compiled
/// there by `deploy/rootfs/build.sh` from `runtimes/java` with the root's own JDK.
pub const JAVA_RUNTIME_IN_ROOT: &str = "/usr/lib/nimbus/java";

/// A supported runtime family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeKind {
    /// OS-only runtime: the function brings its `bootstrap`.
    Provided,
    /// Python 3 (any `python3.x` maps to the host's python3).
    Python,
    /// Node.js (any `nodejsNN.x` maps to the host's node).
    Node,
    /// Java (`java17`, `java21`): runtime roots only.
    Java,
    /// Ruby (`ruby3.3`): runtime roots only.
    Ruby,
}

impl RuntimeKind {
    /// Parses a Lambda `Runtime` value.
    pub fn parse(runtime: &str) -> Result<Self, EngineError> {
        match runtime {
            "provided" | "provided.al2" | "provided.al2023" => Ok(RuntimeKind::Provided),
            r if r.starts_with("python3.") => Ok(RuntimeKind::Python),
            r if r.starts_with("nodejs") && r.ends_with(".x") => Ok(RuntimeKind::Node),
            r if r.starts_with("java") => Ok(RuntimeKind::Java),
            r if r.starts_with("ruby") => Ok(RuntimeKind::Ruby),
            other => Err(EngineError::InvalidFunction(format!(
                "unsupported runtime {other:?}"
            ))),
        }
    }
}

/// The language version a runtime identifier names: `python3.11` → `3.11`,
/// `nodejs20.x` → `20`; `None` for `provided*`.
fn wanted_version(runtime: &str) -> Option<&str> {
    runtime
        .strip_prefix("python")
        .or_else(|| runtime.strip_prefix("nodejs")?.strip_suffix(".x"))
}

/// The version an interpreter's `--version` printed, in the identifiers' terms:
/// `Python 3.11.7` → `3.11`, `v20.20.2` → `20`.
fn reported_version(kind: &RuntimeKind, output: &str) -> Option<String> {
    let v = output.trim();
    match kind {
        RuntimeKind::Python => {
            let mut parts = v.strip_prefix("Python ")?.split('.');
            Some(format!("{}.{}", parts.next()?, parts.next()?))
        }
        RuntimeKind::Node => Some(v.strip_prefix('v')?.split('.').next()?.to_string()),
        RuntimeKind::Provided | RuntimeKind::Java | RuntimeKind::Ruby => None,
    }
}

/// The version the interpreter at `program` reports (`--version`), if it runs.
fn installed_version(kind: &RuntimeKind, program: &Path) -> Option<String> {
    let out = std::process::Command::new(program)
        .arg("--version")
        .output()
        .ok()?;
    // Python 3 prints its version on stdout (2 printed it on stderr).
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    reported_version(kind, &text)
}

/// A worker's interpreters and their versions, each asked once (on the first
/// invocation of its language, not at start-up) and kept for the engine's life.
#[derive(Debug)]
pub(crate) struct Interpreters {
    roots: Option<std::sync::Arc<crate::roots::RuntimeRoots>>,
    python: PathBuf,
    node: PathBuf,
    python_version: OnceLock<Option<String>>,
    node_version: OnceLock<Option<String>>,
}

impl Interpreters {
    pub(crate) fn new(config: &EngineConfig) -> Self {
        Self {
            roots: config.runtime_roots.clone(),
            python: config.python.clone(),
            node: config.node.clone(),
            python_version: OnceLock::new(),
            node_version: OnceLock::new(),
        }
    }

    /// A runtime identifier means exactly one language version: refuses `runtime` when
    /// this worker's interpreter for it is another version (or missing), rather than run
    /// it under a name that claims otherwise (`AWS_EXECUTION_ENV`).
    pub(crate) fn check(&self, runtime: &str) -> Result<(), EngineError> {
        let kind = RuntimeKind::parse(runtime)?;
        if let Some(roots) = &self.roots {
            return roots
                .offer(runtime)
                .map(drop)
                .map_err(EngineError::InvalidFunction);
        }
        let (program, version, language) = match kind {
            RuntimeKind::Provided => return Ok(()),
            RuntimeKind::Python => (&self.python, &self.python_version, "Python"),
            RuntimeKind::Node => (&self.node, &self.node_version, "Node.js"),
            RuntimeKind::Java | RuntimeKind::Ruby => {
                return Err(EngineError::InvalidFunction(format!(
                    "runtime {runtime} runs only in a runtime root (start the worker with \
                     --runtime-roots; deploy/rootfs/build.sh builds them)"
                )))
            }
        };
        let wanted = wanted_version(runtime).unwrap_or_default();
        match version.get_or_init(|| installed_version(&kind, program)) {
            Some(have) if have == wanted => Ok(()),
            Some(have) => Err(EngineError::InvalidFunction(format!(
                "runtime {runtime} needs {language} {wanted}; this worker has {language} {have} ({})",
                program.display()
            ))),
            None => Err(EngineError::InvalidFunction(format!(
                "runtime {runtime} needs {language} {wanted}; this worker has none at {}",
                program.display()
            ))),
        }
    }
}

/// Every runtime identifier the API accepts, with whether a worker configured with
/// `config` runs it exactly (`Err` says why not).
pub fn offered(config: &EngineConfig) -> Vec<(&'static str, Result<(), String>)> {
    let interpreters = Interpreters::new(config);
    nimbus_types::validate::RUNTIMES
        .iter()
        .map(|r| {
            let why = |e| match e {
                EngineError::InvalidFunction(m) => m,
                e => e.to_string(),
            };
            (*r, interpreters.check(r).map_err(why))
        })
        .collect()
}

/// The runtime identifiers a worker configured with `config` runs exactly.
pub fn available(config: &EngineConfig) -> Vec<String> {
    offered(config)
        .into_iter()
        .filter(|(_, ok)| ok.is_ok())
        .map(|(r, _)| r.to_string())
        .collect()
}

/// What the sandbox should exec for a function.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Host directory for `/var/runtime`.
    pub runtime_dir: Option<PathBuf>,
    /// The runtime's root file system (`None`: the host's system directories).
    pub system_root: Option<std::sync::Arc<Path>>,
    /// Extra variables the runtime family expects.
    pub env: Vec<(String, String)>,
    /// The runtime's zygote, if it has one: the same interpreter, started ahead.
    pub zygote: Option<std::sync::Arc<nimbus_sandbox::Zygote>>,
}

/// Variables every runtime process starts with, whatever the function (Lambda's values).
pub(crate) const PROCESS_ENV: [(&str, &str); 4] = [
    ("TZ", ":UTC"),
    ("LANG", "en_US.UTF-8"),
    ("PATH", "/usr/local/bin:/usr/bin/:/bin:/opt/bin"),
    (
        "LD_LIBRARY_PATH",
        "/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib",
    ),
];

/// Whether a variable shapes how an interpreter starts (so a zygote, started before its
/// function was known, could not honour a function's own value of it).
fn shapes_start_up(name: &str) -> bool {
    [
        "PYTHON", "NODE_", "UV_", "LD_", "LC_", "LANG", "MALLOC_", "GLIBC_",
    ]
    .iter()
    .any(|p| name.starts_with(p))
        || name == "TZ"
}

impl Launch {
    /// The zygote for a function whose complete environment is `env`: only if every
    /// start-up variable in it is exactly what the zygote started with.
    pub(crate) fn zygote_for(
        &self,
        env: &[(String, String)],
    ) -> Option<std::sync::Arc<nimbus_sandbox::Zygote>> {
        let zygote = self.zygote.as_ref()?;
        let start_up = |vars: &[(String, String)]| {
            let mut v: Vec<&(String, String)> =
                vars.iter().filter(|(k, _)| shapes_start_up(k)).collect();
            v.sort();
            v.into_iter().cloned().collect::<Vec<_>>()
        };
        (start_up(env) == start_up(&zygote.env)).then(|| zygote.clone())
    }
}

/// Writes the bundled bootstraps below `state_dir/runtimes`.
pub(crate) fn install(state_dir: &Path) -> Result<(), EngineError> {
    for (dir, file, body) in [
        ("python", "bootstrap.py", PYTHON_BOOTSTRAP),
        ("node", "bootstrap.js", NODE_BOOTSTRAP),
        ("ruby", "bootstrap.rb", RUBY_BOOTSTRAP),
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
    launch_of(config, &spec.runtime, &spec.code_dir, &spec.layers)
}

/// [`launch`] from the parts of a function it reads: `code_dir` and `layers` matter to
/// `provided` only (where its `bootstrap` is).
fn launch_of(
    config: &EngineConfig,
    runtime: &str,
    code_dir: &Path,
    layers: &[PathBuf],
) -> Result<Launch, String> {
    let kind = RuntimeKind::parse(runtime).map_err(|e| e.to_string())?;
    let runtimes = config.state_dir.join("runtimes");
    // With runtime roots, the function's root and the interpreter inside it.
    let offer = match &config.runtime_roots {
        Some(roots) => Some(roots.offer(runtime)?),
        None => None,
    };
    let system_root = offer.map(|o| o.root.clone());
    let interpreter = |host: &PathBuf| {
        offer
            .and_then(|o| o.interpreter.clone())
            .unwrap_or_else(|| host.clone())
    };
    match kind {
        RuntimeKind::Provided => {
            let candidates = [
                (code_dir.join("bootstrap").exists(), "/var/task/bootstrap"),
                (
                    layers.iter().any(|l| l.join("bootstrap").exists()),
                    "/opt/bootstrap",
                ),
            ];
            let program = candidates
                .iter()
                .find(|(found, _)| *found)
                .map(|(_, p)| PathBuf::from(p))
                .ok_or_else(|| {
                    "Couldn't find valid bootstrap(s): [/var/task/bootstrap /opt/bootstrap]"
                        .to_owned()
                })?;
            Ok(Launch {
                program,
                args: vec![],
                runtime_dir: None,
                system_root,
                env: vec![],
                zygote: None,
            })
        }
        RuntimeKind::Python => Ok(python(interpreter(&config.python), &runtimes, system_root)),
        RuntimeKind::Node => Ok(node(
            interpreter(&config.node),
            &runtimes,
            system_root,
            runtime,
        )),
        RuntimeKind::Ruby => {
            let ruby = offer
                .and_then(|o| o.interpreter.clone())
                .ok_or_else(|| format!("runtime {runtime} needs a runtime root"))?;
            Ok(Launch {
                program: ruby,
                args: vec!["/var/runtime/bootstrap.rb".into()],
                runtime_dir: Some(runtimes.join("ruby")),
                system_root,
                env: vec![],
                zygote: None,
            })
        }
        RuntimeKind::Java => {
            if offer.is_none() {
                return Err(format!("runtime {runtime} needs a runtime root"));
            }
            // The root's JVM through its own `java` link; the launcher sizes the heap from
            // AWS_LAMBDA_FUNCTION_MEMORY_SIZE as Lambda does.
            Ok(Launch {
                program: PathBuf::from(JAVA_RUNTIME_IN_ROOT).join("bootstrap"),
                args: vec![],
                runtime_dir: None,
                system_root,
                env: vec![],
                zygote: None,
            })
        }
    }
}

/// Python's launch: Nimbus's bootstrap on `program`, and the same interpreter as a
/// zygote that loads the bootstrap's imports ahead (`runtimes/python/zygote.py`).
fn python(program: PathBuf, runtimes: &Path, system_root: Option<std::sync::Arc<Path>>) -> Launch {
    let env = vec![
        ("PYTHONUNBUFFERED".into(), "1".into()),
        ("PYTHONDONTWRITEBYTECODE".into(), "1".into()),
    ];
    Launch {
        zygote: Some(zygote(&program, "-c", PYTHON_ZYGOTE, &env)),
        program,
        args: vec!["/var/runtime/bootstrap.py".into()],
        runtime_dir: Some(runtimes.join("python")),
        system_root,
        env,
    }
}

/// Node's launch: Nimbus's bootstrap on `program` with Lambda's `NODE_PATH` for the
/// runtime's major version, and the same interpreter as a zygote
/// (`runtimes/node/zygote.js`).
fn node(
    program: PathBuf,
    runtimes: &Path,
    system_root: Option<std::sync::Arc<Path>>,
    runtime: &str,
) -> Launch {
    // Lambda's NODE_PATH: a layer's modules for this major version, then any version's.
    let env = vec![(
        "NODE_PATH".into(),
        format!(
            "/opt/nodejs/node{}/node_modules:/opt/nodejs/node_modules:/var/runtime/node_modules:/var/task/node_modules",
            wanted_version(runtime).unwrap_or_default()
        ),
    )];
    Launch {
        zygote: Some(zygote(&program, "-e", NODE_ZYGOTE, &env)),
        program,
        args: vec!["/var/runtime/bootstrap.js".into()],
        runtime_dir: Some(runtimes.join("node")),
        system_root,
        env,
    }
}

/// `program` running `source` (given with `flag`), started with what every runtime
/// process starts with and the runtime family's own `env`.
fn zygote(
    program: &Path,
    flag: &str,
    source: &str,
    env: &[(String, String)],
) -> std::sync::Arc<nimbus_sandbox::Zygote> {
    std::sync::Arc::new(nimbus_sandbox::Zygote {
        program: program.to_owned(),
        args: vec![flag.into(), source.into()],
        env: PROCESS_ENV
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .chain(env.iter().cloned())
            .collect(),
    })
}

/// The zygotes of the runtimes this engine offers (`interpreters` says which), each with
/// the root it runs in (`None`: the host's), without duplicates: kept ready from the
/// engine's start, so a first cold start finds one.
pub(crate) fn zygotes(
    config: &EngineConfig,
    interpreters: &Interpreters,
) -> Vec<(
    Option<std::sync::Arc<Path>>,
    std::sync::Arc<nimbus_sandbox::Zygote>,
)> {
    let mut out = Vec::new();
    for runtime in nimbus_types::validate::RUNTIMES {
        if interpreters.check(runtime).is_err() {
            continue;
        }
        // No code: only `provided` looks at it, and it has no zygote.
        let Ok(launch) = launch_of(config, runtime, Path::new("/nonexistent"), &[]) else {
            continue;
        };
        if let Some(z) = launch.zygote {
            let entry = (launch.system_root, z);
            if !out.contains(&entry) {
                out.push(entry);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zygote_serves_only_functions_that_start_as_it_did() {
        let launch = python(
            "/usr/bin/python3".into(),
            Path::new("/state/runtimes"),
            None,
        );
        let zygote = launch.zygote.clone().expect("python has a zygote");
        // The zygote's own environment, plus variables that do not shape start-up.
        let mut env = zygote.env.clone();
        env.extend([
            ("_HANDLER".to_owned(), "app.handler".to_owned()),
            ("AWS_REGION".to_owned(), "eu-west-1".to_owned()),
            ("MY_SETTING".to_owned(), "x".to_owned()),
        ]);
        env.reverse(); // order does not matter
        assert_eq!(launch.zygote_for(&env), Some(zygote.clone()));
        for (name, value) in [
            ("PYTHONPATH", "/var/task/extra"),
            ("PYTHONHASHSEED", "0"),
            ("LD_PRELOAD", "/var/task/x.so"),
            ("LC_ALL", "C"),
            ("LANGUAGE", "de"),
            ("MALLOC_ARENA_MAX", "2"),
        ] {
            let mut with = env.clone();
            with.push((name.to_owned(), value.to_owned()));
            assert_eq!(
                launch.zygote_for(&with),
                None,
                "{name} must not get a zygote"
            );
        }
        // A start-up variable with another value than the zygote's, or missing.
        let mut other = env.clone();
        for (k, v) in other.iter_mut() {
            if k == "TZ" {
                *v = "Europe/Paris".into();
            }
        }
        assert_eq!(launch.zygote_for(&other), None);
        let without: Vec<_> = env.iter().filter(|(k, _)| k != "LANG").cloned().collect();
        assert_eq!(launch.zygote_for(&without), None);
    }

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
        assert_eq!(RuntimeKind::parse("java21").unwrap(), RuntimeKind::Java);
        assert_eq!(RuntimeKind::parse("ruby3.3").unwrap(), RuntimeKind::Ruby);
        assert!(RuntimeKind::parse("go1.x").is_err());
    }

    #[test]
    fn versions_are_compared_exactly() {
        assert_eq!(wanted_version("python3.13"), Some("3.13"));
        assert_eq!(wanted_version("nodejs18.x"), Some("18"));
        assert_eq!(wanted_version("provided.al2023"), None);
        let py = RuntimeKind::Python;
        assert_eq!(
            reported_version(&py, "Python 3.11.7\n").as_deref(),
            Some("3.11")
        );
        assert_eq!(reported_version(&py, "v20.1.0"), None);
        let node = RuntimeKind::Node;
        assert_eq!(reported_version(&node, "v20.20.2\n").as_deref(), Some("20"));
        assert_eq!(reported_version(&node, "garbage"), None);
        // This machine's python3 (whatever it is) runs its own identifier only.
        let config = EngineConfig::default();
        let have = installed_version(&py, &config.python).expect("python3 is installed");
        let interpreters = Interpreters::new(&config);
        assert!(interpreters.check(&format!("python{have}")).is_ok());
        let err = interpreters.check("python3.99").unwrap_err().to_string();
        assert!(
            err.contains(&format!("needs Python 3.99; this worker has Python {have}")),
            "{err}"
        );
        let missing = EngineConfig {
            node: "/nonexistent/node".into(),
            ..EngineConfig::default()
        };
        assert!(Interpreters::new(&missing)
            .check("nodejs20.x")
            .unwrap_err()
            .to_string()
            .contains("has none"));
    }
}
