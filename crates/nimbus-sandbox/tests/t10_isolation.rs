//! The sandbox's contract: each isolation property, tested by trying to break it.
mod common;
use common::*;
use nimbus_sandbox::ExitStatus;

#[test]
fn t10_runs_as_unprivileged_user_in_own_namespaces() {
    let jail = jail();
    let (status, out) = run_sh(&jail, "id -u; id -g; hostname; echo $$; cat /var/task/hello.txt", |_| {});
    assert_eq!(status, ExitStatus::Exited(0), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, ["993", "990", "sandbox", "1", "hello from code"], "{out}");
}
