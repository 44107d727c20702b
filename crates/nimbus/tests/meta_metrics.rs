//! `--admin-listen`: Raft's state on a metadata node's `/metrics`, a gateway's admin port,
//! and a clear failure when the admin address cannot be bound.

mod common;

use std::time::{Duration, Instant};

use common::dev::{sample, scrape};
use common::{free_ports, Cluster};
use nimbus_types::Command;

#[tokio::test(flavor = "multi_thread")]
async fn raft_metrics_on_the_admin_port() {
    let admin = format!("127.0.0.1:{}", free_ports(1)[0]);
    let cluster = Cluster::start(1, &["--admin-listen", &admin, "--snapshot-every", "5"]);
    cluster.wait_leader(Duration::from_secs(30)).await;
    let client = cluster.client();
    for i in 0..12 {
        client
            .write(Command::PutAccount {
                account_id: format!("{:012}", 100 + i),
            })
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = scrape(&admin).await;
        let get = |n: &str| sample(&text, n).unwrap_or_else(|| panic!("no {n} in\n{text}"));
        let ok = get("nimbus_raft_is_leader") == 1.0
            && get("nimbus_raft_leader") == 1.0
            && get("nimbus_raft_term") >= 1.0
            && get("nimbus_raft_commit_index") >= 12.0
            && get("nimbus_raft_applied_index") == get("nimbus_raft_commit_index")
            && get("nimbus_raft_apply_lag") == 0.0
            && get("nimbus_raft_voters") == 1.0
            && get("nimbus_raft_snapshots_total") >= 1.0
            && get("nimbus_raft_snapshot_index") >= 5.0
            // One at a time, the 12 writes are 12 proposals of one write each.
            && get("nimbus_meta_write_proposals_total") == 12.0
            && get("nimbus_meta_proposed_writes_total") == 12.0
            // Nothing waits for a proposal once the writes are answered.
            && get("nimbus_meta_queued_writes") == 0.0;
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "unexpected metrics:\n{text}\n{}",
            cluster.log(0)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn an_admin_address_in_use_is_an_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let port = free_ports(1)[0];
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(common::BIN)
        .arg("--insecure-plaintext")
        .args([
            "meta",
            "--id",
            "1",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--initial-cluster", &format!("1=127.0.0.1:{port}")])
        .args(["--admin-listen", &addr])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("binding the admin address"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_admin_port_serves_lambda_metrics() {
    let cluster = Cluster::start(1, &[]);
    cluster.wait_leader(Duration::from_secs(30)).await;
    let [api, admin]: [u16; 2] = free_ports(2).try_into().unwrap();
    let admin = format!("127.0.0.1:{admin}");
    let mut gateway = std::process::Command::new(common::BIN)
        .arg("--insecure-plaintext")
        .args(["gateway", "--meta", &cluster.nodes[0].addr])
        .args(["--listen", &format!("127.0.0.1:{api}")])
        .args(["--admin-listen", &admin])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(&admin).await.is_err() {
        assert!(Instant::now() < deadline, "gateway admin port did not open");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = scrape(&admin).await;
    let _ = gateway.kill();
    let _ = gateway.wait();
    // Lambda's families appear with their first sample (the e2e suite checks those on
    // `nimbus dev`); an idle gateway still answers in OpenMetrics.
    assert!(text.contains("application/openmetrics-text"), "{text}");
    assert!(
        text.contains("# TYPE nimbus_otel_spans_dropped counter"),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
}
