//! A fork bomb that outlives its invocation, through the whole engine: the
//! timeout is answered at the deadline, not once the bomb has died, and nothing
//! of the environment is left after it (issue 13: a fork-bombed environment
//! with a 15 s timeout answered after up to 120 s).
mod common;
use common::*;

use std::time::{Duration, Instant};

const APP: &str = r#"
import os, signal, time

def handler(event, context):
    if event.get("bomb"):
        if os.fork() == 0:
            bomb()
        time.sleep(600)
    return "ready"

def bomb():
    # Every process forks for ever, retrying while the pids limit refuses. They
    # ask to be the OOM killer's first choice, so the memory limit trims the
    # bomb and never takes the runtime.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")
    except OSError:
        pass
    while True:
        try:
            os.fork()
        except OSError:
            time.sleep(0.01)
"#;

/// The unified hierarchy's directory of cgroup `parent`, else the v1 pids
/// hierarchy's (where `pids.current` is).
fn parent_dir(parent: &str) -> std::path::PathBuf {
    ["/sys/fs/cgroup", "/sys/fs/cgroup/pids"]
        .iter()
        .map(|root| std::path::Path::new(root).join(parent))
        .find(|dir| dir.join("pids.current").exists())
        .expect("the parent cgroup's pids.current")
}

/// Tasks in every environment under `dir` (its `pids.current`).
fn tasks(dir: &std::path::Path) -> u64 {
    std::fs::read_to_string(dir.join("pids.current"))
        .expect("pids.current")
        .trim()
        .parse()
        .expect("a count")
}

/// Environment cgroups still under `dir`.
fn environments(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .expect("the parent cgroup")
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn t32_a_fork_bomb_times_out_at_its_deadline_and_leaves_nothing_behind() {
    // A cgroup parent of its own and no pre-created shells: whatever runs
    // under that parent is this test's one environment.
    let parent = format!("nimbus-test-bomb-{}", std::process::id());
    let t = engine_with(|c| {
        c.cgroup_parent = parent.clone();
        c.shell_pool = 0;
    });
    let dir = parent_dir(&parent);
    let code = code(&[("app.py", APP)]);
    // 128 MB: 7 % of a CPU once Init is over.
    let mut s = spec("fork-bomb", "python3.11", "app.handler", code.path());
    s.timeout = Duration::from_secs(3);
    // Warm first, so that only the bomb's invocation is timed.
    let o = invoke(&t.engine, &s, "{}").await;
    assert_ok(&o);

    let started = Instant::now();
    let o = invoke(&t.engine, &s, r#"{"bomb": true}"#).await;
    let answered = started.elapsed();
    assert_error(&o, "Sandbox.Timedout");
    assert_eq!(
        json(&o)["errorMessage"],
        format!(
            "RequestId: {} Error: Task timed out after 3.00 seconds",
            o.request_id
        )
    );
    assert!(
        answered < s.timeout + Duration::from_secs(3),
        "answered after {answered:?}"
    );
    let m = t.engine.metrics();
    assert_eq!((m.warm, m.busy, m.reserved_mb), (0, 0, 0), "{m:?}");

    // The environment goes on dying in the background: promptly, and all of it.
    let dying = Instant::now();
    while tasks(&dir) > 0 || environments(&dir) > 0 {
        assert!(
            dying.elapsed() < Duration::from_secs(10),
            "{} tasks in {} environment cgroups under {} after {:?}",
            tasks(&dir),
            environments(&dir),
            dir.display(),
            dying.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
