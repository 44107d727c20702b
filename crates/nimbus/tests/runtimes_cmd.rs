//! `nimbus runtimes`: which identifiers a worker on this machine runs exactly.

mod common;

#[test]
fn lists_exactly_what_this_machines_interpreters_are() {
    let out = std::process::Command::new(common::BIN)
        .arg("runtimes")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let py = std::process::Command::new("/usr/bin/python3")
        .arg("--version")
        .output()
        .unwrap();
    let version = String::from_utf8_lossy(&py.stdout);
    let minor = version
        .trim()
        .trim_start_matches("Python ")
        .rsplit_once('.')
        .unwrap()
        .0
        .to_string();
    let line = |r: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(r))
            .unwrap_or_else(|| panic!("no line for {r}:\n{text}"))
            .to_string()
    };
    assert!(
        line(&format!("python{minor}")).ends_with("available"),
        "{text}"
    );
    assert!(line("provided.al2023").ends_with("available"), "{text}");
    for other in ["python3.11", "python3.13"] {
        if other != format!("python{minor}") {
            assert!(
                line(other).contains(&format!("unavailable: runtime {other} needs Python")),
                "{text}"
            );
        }
    }
    assert!(
        !text.contains("python3.12"),
        "python3.12 is not offered at all:\n{text}"
    );
}
