//! Tearing an environment down: prompt and complete even while a fork bomb
//! fills it at a small CPU share (issue 13: a fork-bombed environment took up
//! to minutes to die, because every dying process ran its exit under the
//! function's CPU quota).
mod common;
use common::*;

use std::time::{Duration, Instant};

/// Processes in environment `id`'s cgroup now (0 once the cgroup is gone).
fn processes(id: &str) -> usize {
    env_cgroup_file(id, "cgroup.procs").map_or(0, |procs| procs.lines().count())
}

#[test]
fn t50_a_fork_bomb_at_a_small_cpu_share_is_torn_down_promptly() {
    let jail = jail();
    let code = code_dir(&[]);
    // Kept open: the bomb's output has somewhere to go for as long as it runs.
    let (_out, w) = nix::unistd::pipe().unwrap();
    let id = unique_id("bomb");
    let mut s = spec(&id, code.path(), RELENTLESS_FORK_BOMB, w);
    // Lambda's smallest function: 7 % of a CPU, with the quota from the start.
    s.memory_mb = 128;
    s.pids_max = 512;
    let mut sandbox = jail.prepare(s).expect("prepare").start().expect("start");
    let growing = Instant::now();
    while processes(&id) < 200 {
        assert!(
            growing.elapsed() < Duration::from_secs(60),
            "the bomb stayed at {} processes",
            processes(&id)
        );
        #[allow(clippy::disallowed_methods)] // a plain test thread
        std::thread::sleep(Duration::from_millis(20));
    }

    let started = Instant::now();
    sandbox
        .terminate(Duration::from_secs(10))
        .expect("every process killed");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "teardown took {took:?}");
    assert_eq!(
        processes(&id),
        0,
        "processes left in the environment's cgroup"
    );
    // The namespace is empty, so its init is reaped at once.
    let status = sandbox.wait().expect("reaped");
    assert_eq!(status.to_string(), "signal: killed");
    let reaped = started.elapsed();
    assert!(reaped < Duration::from_secs(4), "reaped after {reaped:?}");
}
