//! Black-box tests of the metadata cluster: real `nimbus meta` processes over real sockets.
//! Numbered like openraft's ladder: t10 basics, t20 failover, t30 catch-up, t40 retries,
//! t50 unavailability, t60 membership, t70 watch and code.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{run_cli, Cluster};
use nimbus_meta::ClientError;
use nimbus_types::{keys, Command, CommandOutput, Entity, FunctionConfig, FunctionKey};

const SECS: Duration = Duration::from_secs(1);
const ACCOUNT: &str = "000000000000";

fn account(i: u64) -> String {
    format!("{:012}", 100_000 + i)
}

async fn count_accounts(client: &nimbus_meta::MetaClient, linearizable: bool) -> usize {
    let q = nimbus_types::Query::List {
        prefix: keys::ACCOUNT.into(),
        start_after: None,
        limit: 100_000,
    };
    match client.read(&q, linearizable).await.unwrap().1 {
        nimbus_types::QueryOutput::Entities(v) => v.len(),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn t10_cluster_elects_a_leader_and_reports_status() {
    let c = Cluster::start(3, &[]);
    let leader = c.wait_leader(10 * SECS).await;
    let (ok, out, err) = run_cli(&[
        "cluster",
        "status",
        "--meta",
        &c.addrs().join(","),
        "--output",
        "json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["leader"].as_u64(), Some(c.nodes[leader].id));
    assert!(v["term"].as_u64().unwrap() >= 1);
    let members = v["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    let roles: Vec<&str> = members
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles.iter().filter(|r| **r == "leader").count(), 1, "{out}");
    assert_eq!(
        roles.iter().filter(|r| **r == "follower").count(),
        2,
        "{out}"
    );
    for m in members {
        assert!(m["addr"].as_str().unwrap().starts_with("127.0.0.1:"));
        let applied = m["applied"].as_u64().expect("applied index");
        // Committed is the log's own index, never behind what the member applied.
        let committed = m["committed"].as_u64().expect("committed index");
        assert!(committed >= applied, "{out}");
    }
    // The text form names the leader too, once the node asked has heard from it (a
    // node that lost the first election learns the leader at its next heartbeat).
    let named = format!("leader: {}", c.nodes[leader].id);
    let deadline = Instant::now() + 10 * SECS;
    let out = loop {
        let (ok, out, _) = run_cli(&["cluster", "status", "--meta", &c.nodes[0].addr]);
        if (ok && out.contains(&named)) || Instant::now() > deadline {
            break out;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(out.contains(&named), "{out}");
    assert!(out.contains("COMMITTED"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn t20_leader_sigkill_writes_continue_and_restarted_node_catches_up() {
    let mut c = Cluster::start(3, &[]);
    let leader = c.wait_leader(10 * SECS).await;
    let client = c.client();
    for i in 0..20 {
        client
            .write(Command::PutAccount {
                account_id: account(i),
            })
            .await
            .unwrap();
    }
    c.kill(leader);
    // Every write after the kill still succeeds, through the new leader.
    for i in 20..40 {
        client
            .write(Command::PutAccount {
                account_id: account(i),
            })
            .await
            .unwrap();
    }
    let new_leader = c.wait_leader(10 * SECS).await;
    assert_ne!(new_leader, leader);
    assert_eq!(count_accounts(&client, true).await, 40);

    c.spawn(leader, true);
    let target = c.wait_applied(new_leader, 0, 5 * SECS).await.applied;
    c.wait_applied(leader, target, 20 * SECS).await;
    // The restarted node recovered its own data from disk and caught up: a local
    // (non-linearizable) read there sees every acknowledged write.
    assert_eq!(count_accounts(&c.client_for(leader), false).await, 40);
    assert!(
        c.log(leader).contains("recovered from"),
        "restart must recover from disk"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn t30_lagging_node_catches_up_through_a_snapshot() {
    let mut c = Cluster::start(3, &["--snapshot-every", "20", "--keep-after-snapshot", "5"]);
    let leader = c.wait_leader(10 * SECS).await;
    let lagging = (leader + 1) % 3;
    c.kill(lagging);
    let client = c.client();
    for i in 0..120 {
        client
            .write(Command::PutAccount {
                account_id: account(i),
            })
            .await
            .unwrap();
    }
    let target = c.wait_applied(leader, 0, 5 * SECS).await.applied;
    c.spawn(lagging, true);
    let status = c.wait_applied(lagging, target, 30 * SECS).await;
    assert!(
        status.snapshot_index.is_some(),
        "the lagging node must hold a snapshot"
    );
    assert!(
        c.log(lagging).contains("installed snapshot"),
        "catch-up must go through a snapshot:\n{}",
        c.log(lagging)
    );
    assert_eq!(count_accounts(&c.client_for(lagging), false).await, 120);
}

#[tokio::test(flavor = "multi_thread")]
async fn t40_a_retried_write_is_applied_once_even_across_a_leader_crash() {
    let mut c = Cluster::start(3, &[]);
    let leader = c.wait_leader(10 * SECS).await;
    let client = c.client();
    client
        .write(Command::PutAccount {
            account_id: ACCOUNT.into(),
        })
        .await
        .unwrap();
    let (_, code) = client.upload_code(&tiny_zip()).await.unwrap();
    let key = FunctionKey::new(ACCOUNT, "us-east-1", "retry-me");
    let create = Command::CreateFunction {
        key: key.clone(),
        config: config(128),
        code,
        tags: BTreeMap::new(),
        publish: false,
        now_ms: 1,
    };
    client.write(create).await.unwrap();

    let change = Command::UpdateFunctionConfiguration {
        key: key.clone(),
        config: config(256),
        expected_revision: None,
        now_ms: 2,
    };
    let publish = Command::PublishVersion {
        key: key.clone(),
        description: "v".into(),
        expected_code_sha256: None,
        expected_revision: None,
        now_ms: 3,
    };
    client.write(change).await.unwrap();
    let (rev1, first) = client
        .write_with_id("publish-once", &publish)
        .await
        .unwrap();
    c.kill(leader);
    // The client retries the same request id against the new leader.
    let (rev2, again) = client
        .write_with_id("publish-once", &publish)
        .await
        .unwrap();
    assert_eq!(
        (rev1, &first),
        (rev2, &again),
        "the retry must return the first result"
    );
    let CommandOutput::Version(v) = first else {
        panic!("expected a version")
    };
    assert_eq!(v.number, 1);
    // A second change then a new publish makes version 2, not 3: the retry published nothing.
    let change = Command::UpdateFunctionConfiguration {
        key: key.clone(),
        config: config(512),
        expected_revision: None,
        now_ms: 4,
    };
    client.write(change).await.unwrap();
    let (_, out) = client.write(publish).await.unwrap();
    let CommandOutput::Version(v2) = out else {
        panic!("expected a version")
    };
    assert_eq!(v2.number, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn t50_writes_fail_fast_and_clearly_without_a_quorum() {
    let mut c = Cluster::start(3, &["--write-timeout-ms", "2000"]);
    let leader = c.wait_leader(10 * SECS).await;
    let mut client = c.client();
    client
        .write(Command::PutAccount {
            account_id: account(1),
        })
        .await
        .unwrap();
    let survivor = leader;
    for i in 0..3 {
        if i != survivor {
            c.kill(i);
        }
    }
    client.deadline = Duration::from_secs(6);
    let start = Instant::now();
    let err = client
        .write(Command::PutAccount {
            account_id: account(2),
        })
        .await
        .unwrap_err();
    let took = start.elapsed();
    assert!(matches!(err, ClientError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("unavailable"), "{err}");
    assert!(took < Duration::from_secs(15), "failing took {took:?}");
}

/// `nimbus cluster add-member` of node `id` at `addr`: (succeeded, stdout, stderr).
fn add_member(meta: &str, id: u64, addr: &str) -> (bool, String, String) {
    let id = id.to_string();
    run_cli(&[
        "cluster",
        "add-member",
        "--meta",
        meta,
        "--id",
        &id,
        "--addr",
        addr,
    ])
}

#[tokio::test(flavor = "multi_thread")]
async fn t60_members_are_added_and_removed_and_ids_never_reused() {
    let mut c = Cluster::start(3, &[]);
    c.wait_leader(10 * SECS).await;
    let meta = c.addrs().join(",");
    let i4 = c.spawn_joiner(4);
    let addr4 = c.nodes[i4].addr.clone();
    let add_4_at = |addr: &str| add_member(&meta, 4, addr);
    let (ok, out, err) = add_4_at(&addr4);
    assert!(ok, "add-member failed: {out}{err}");
    let (_, status, _) = run_cli(&["cluster", "status", "--meta", &meta, "--output", "json"]);
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(v["members"].as_array().unwrap().len(), 4, "{status}");

    // Adding the same member again is done, not an error (the client sends it again when
    // an election hides the first answer); the same id at another address is refused.
    let (ok, out, err) = add_4_at(&addr4);
    assert!(ok && out.contains("already a voting member"), "{out}{err}");
    let (ok, _, err) = add_4_at("127.0.0.1:1");
    assert!(!ok && err.contains("already a member at"), "{err}");

    let (ok, _, err) = run_cli(&["cluster", "remove-member", "--meta", &meta, "--id", "4"]);
    assert!(ok, "{err}");
    let (_, status, _) = run_cli(&["cluster", "status", "--meta", &meta, "--output", "json"]);
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(v["members"].as_array().unwrap().len(), 3, "{status}");
    // The removed id is retired for good.
    let (ok, _, err) = add_4_at(&addr4);
    assert!(!ok && err.contains("never reused"), "{err}");
    // Removing a node that is not a member is a clear error.
    let (ok, _, err) = run_cli(&["cluster", "remove-member", "--meta", &meta, "--id", "9"]);
    assert!(!ok && err.contains("not a member"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn t70_watch_delivers_every_change_in_order_and_code_round_trips() {
    use futures::StreamExt;
    let c = Cluster::start(3, &[]);
    c.wait_leader(10 * SECS).await;
    let client = c.client();
    let (first_rev, _) = client
        .write(Command::PutAccount {
            account_id: account(0),
        })
        .await
        .unwrap();
    // Subscribe from the first write: history first, then live changes.
    let mut stream = Box::pin(c.client_for(2).watch(first_rev).await.unwrap());
    for i in 1..10 {
        client
            .write(Command::PutAccount {
                account_id: account(i),
            })
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut last = 0;
    while seen.len() < 10 {
        let (rev, changes) = tokio::time::timeout(10 * SECS, stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(rev > last, "revisions arrive in order");
        last = rev;
        for ch in changes {
            if let Some(Entity::Account(a)) = ch.value {
                seen.push(a.id);
            }
        }
    }
    assert_eq!(seen, (0..10).map(account).collect::<Vec<_>>());

    // Code: a multi-chunk package uploads, replicates and comes back verified from a follower.
    let zip = big_zip(3 * 1024 * 1024 + 17);
    let (rev, code) = client.upload_code(&zip).await.unwrap();
    assert_eq!(code.sha256, nimbus_types::validate::code_sha256(&zip));
    let fetched = c.client_for(1).fetch_code(&code.sha256, rev).await.unwrap();
    assert_eq!(fetched, zip);
    // Not a zip: refused before anything is written.
    let err = client.upload_code(b"not a zip").await.unwrap_err();
    assert!(
        err.to_string().contains("InvalidParameterValueException"),
        "{err}"
    );
    // Unknown package: not found.
    let err = client.fetch_code("bm9wZQ==", 0).await.unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
}

fn config(memory: u32) -> FunctionConfig {
    FunctionConfig {
        runtime: "python3.11".into(),
        handler: "app.handler".into(),
        role: "arn:aws:iam::000000000000:role/r".into(),
        memory_mb: memory,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn t65_a_node_with_another_cluster_key_refuses_to_run() {
    let mut c = Cluster::start(3, &[]);
    c.wait_leader(10 * SECS).await;
    let meta = c.addrs().join(",");
    // The founding nodes agree on one key: the check value is recorded and verified.
    let deadline = Instant::now() + 20 * SECS;
    while !(0..3).all(|i| c.log(i).contains("cluster key verified")) {
        assert!(Instant::now() < deadline, "{}", c.log(0));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A fourth node started with a key file of its own.
    let own_key = c.root.path().join("other.key");
    std::fs::write(&own_key, [7u8; 32]).unwrap();
    let shared_key = std::mem::replace(&mut c.key_file, own_key);
    let i4 = c.spawn_joiner(4);
    c.key_file = shared_key;
    let addr4 = c.nodes[i4].addr.clone();
    // Adding it may or may not return before the node stops; either way it must stop.
    let add = std::thread::spawn(move || add_member(&meta, 4, &addr4));
    let deadline = Instant::now() + 60 * SECS;
    let status = loop {
        if let Some(s) = c.nodes[i4].child.as_mut().unwrap().try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "node 4 kept running: {}",
            c.log(i4)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(!status.success(), "{status:?}");
    assert!(
        c.log(i4).contains("is not the key of the cluster"),
        "{}",
        c.log(i4)
    );
    let _ = add.join();
    // The cluster itself still serves writes.
    c.client()
        .write(Command::PutAccount {
            account_id: account(65),
        })
        .await
        .unwrap();
}

fn tiny_zip() -> Vec<u8> {
    big_zip(100)
}

/// A zip holding `n` bytes of incompressible data (so the zip is about `n` bytes too).
fn big_zip(n: usize) -> Vec<u8> {
    let mut data = Vec::with_capacity(n);
    let mut x: u64 = 0x9E3779B97F4A7C15;
    while data.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(n);
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut w = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        w.start_file("app.py", opts).unwrap();
        std::io::Write::write_all(&mut w, &data).unwrap();
        w.finish().unwrap();
    }
    buf.into_inner()
}

/// An election window the node cannot run with (upper bound not above the lower) stops it
/// at start with the rule named, before it binds or votes.
#[test]
fn an_election_window_out_of_order_is_refused_at_start() {
    let port = common::free_ports(1)[0];
    let dir = tempfile::tempdir().unwrap();
    let data_dir = common::path_str(dir.path());
    let listen = format!("127.0.0.1:{port}");
    let founding = format!("1=127.0.0.1:{port}");
    let (ok, _, err) = run_cli(&[
        "meta",
        "--id",
        "1",
        "--listen",
        &listen,
        "--data-dir",
        &data_dir,
        "--initial-cluster",
        &founding,
        "--election-timeout-ms",
        "300",
        "--election-timeout-max-ms",
        "200",
    ]);
    assert!(!ok, "the node started");
    assert!(err.contains("election timeouts"), "{err}");
}
