//! Backup and restore of the metadata store, black-box: `nimbus cluster snapshot` against
//! a real cluster, then `nimbus meta --restore-from` on fresh machines (data dirs) after
//! the whole cluster is gone.

mod common;

use std::process::{Child, Command as Proc, Stdio};
use std::time::{Duration, Instant};

use common::{free_ports, path_str, run_cli, Cluster, BIN};
use nimbus_meta::MetaClient;
use nimbus_types::{keys, Command, Entity, FunctionConfig, FunctionKey, Query, QueryOutput};

const SECS: Duration = Duration::from_secs(1);
const ACCOUNT: &str = "000000000000";

fn account(i: u64) -> String {
    format!("{:012}", 200_000 + i)
}

/// A `nimbus meta` process killed when dropped.
struct Proc1(Child);
impl Drop for Proc1 {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_meta(args: &[&str], log: &std::path::Path) -> Proc1 {
    let log = std::fs::File::create(log).unwrap();
    Proc1(
        Proc::new(BIN)
            .arg("--insecure-plaintext")
            .arg("meta")
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

async fn wait_leader_at(addr: &str, timeout: Duration) -> u64 {
    let start = Instant::now();
    loop {
        if let Ok(s) = MetaClient::node_status(addr, &nimbus_tls::Transport::Plaintext).await {
            if let Some(l) = s.leader {
                return l;
            }
        }
        assert!(start.elapsed() < timeout, "no leader at {addr}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn accounts(client: &MetaClient, linearizable: bool) -> Vec<String> {
    let q = Query::List {
        prefix: keys::ACCOUNT.into(),
        start_after: None,
        limit: 100_000,
    };
    match client.read(&q, linearizable).await.unwrap().1 {
        QueryOutput::Entities(v) => v
            .into_iter()
            .filter_map(|(_, e)| match e {
                Entity::Account(a) => Some(a.id),
                _ => None,
            })
            .collect(),
        other => panic!("unexpected {other:?}"),
    }
}

fn tiny_zip() -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut w = zip::ZipWriter::new(&mut buf);
        w.start_file("app.py", zip::write::SimpleFileOptions::default())
            .unwrap();
        std::io::Write::write_all(&mut w, b"def handler(e, c):\n    return 1\n").unwrap();
        w.finish().unwrap();
    }
    buf.into_inner()
}

#[tokio::test(flavor = "multi_thread")]
async fn t80_snapshot_then_restore_on_fresh_nodes_after_losing_the_whole_cluster() {
    let mut c = Cluster::start(3, &[]);
    let leader = c.wait_leader(10 * SECS).await;
    let client = c.client();
    client
        .write(Command::PutAccount {
            account_id: ACCOUNT.into(),
        })
        .await
        .unwrap();
    for i in 0..30 {
        client
            .write(Command::PutAccount {
                account_id: account(i),
            })
            .await
            .unwrap();
    }
    let zip = tiny_zip();
    let (_, code) = client.upload_code(&zip).await.unwrap();
    let fkey = FunctionKey::new(ACCOUNT, "us-east-1", "kept");
    client
        .write(Command::CreateFunction {
            key: fkey.clone(),
            config: FunctionConfig {
                runtime: "python3.11".into(),
                handler: "app.handler".into(),
                role: "arn:aws:iam::000000000000:role/r".into(),
                description: "before the backup".into(),
                ..Default::default()
            },
            code: code.clone(),
            tags: Default::default(),
            publish: false,
            now_ms: 1,
        })
        .await
        .unwrap();

    // Asked of a follower only, the CLI still finds the leader.
    let follower = (leader + 1) % 3;
    let backup = c.root.path().join("meta.backup");
    let (ok, out, err) = run_cli(&[
        "cluster",
        "snapshot",
        "--meta",
        &c.nodes[follower].addr,
        "--out",
        &path_str(&backup),
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("wrote"), "{out}");
    assert!(backup.metadata().unwrap().len() > 0);
    assert!(!backup.with_extension("partial").exists());

    // Written after the backup: must not come back.
    client
        .write(Command::PutAccount {
            account_id: account(999),
        })
        .await
        .unwrap();
    for i in 0..3 {
        c.kill(i);
    }

    // A fresh machine restores the backup as a one-member cluster.
    let ports = free_ports(2);
    let (a7, a8) = (
        format!("127.0.0.1:{}", ports[0]),
        format!("127.0.0.1:{}", ports[1]),
    );
    let root = c.root.path();
    let key = path_str(&c.key_file);
    let n7 = spawn_meta(
        &[
            "--id",
            "7",
            "--listen",
            &a7,
            "--data-dir",
            &path_str(&root.join("new7")),
            "--key-file",
            &key,
            "--restore-from",
            &path_str(&backup),
        ],
        &root.join("new7.log"),
    );
    assert_eq!(wait_leader_at(&a7, 20 * SECS).await, 7);
    let restored =
        MetaClient::new(std::slice::from_ref(&a7), &nimbus_tls::Transport::Plaintext).unwrap();
    let mut got = accounts(&restored, true).await;
    got.sort();
    let mut want: Vec<String> = (0..30).map(account).collect();
    want.push(ACCOUNT.into());
    want.sort();
    assert_eq!(got, want, "exactly the state at backup time");
    match restored.get(&keys::function(&fkey)).await.unwrap() {
        Some(Entity::Function(f)) => assert_eq!(f.config.description, "before the backup"),
        other => panic!("function not restored: {other:?}"),
    }
    // Code is encrypted with the cluster key; the restored node decrypts it.
    assert_eq!(restored.fetch_code(&code.sha256, 0).await.unwrap(), zip);
    // It takes writes.
    restored
        .write(Command::PutAccount {
            account_id: account(1000),
        })
        .await
        .unwrap();

    // Grow it back: a second fresh node joins and catches up.
    let _n8 = spawn_meta(
        &[
            "--id",
            "8",
            "--listen",
            &a8,
            "--data-dir",
            &path_str(&root.join("new8")),
            "--key-file",
            &key,
        ],
        &root.join("new8.log"),
    );
    let (ok, _, err) = run_cli(&[
        "cluster",
        "add-member",
        "--meta",
        &a7,
        "--id",
        "8",
        "--addr",
        &a8,
    ]);
    assert!(
        ok,
        "{err}\n{}",
        std::fs::read_to_string(root.join("new8.log")).unwrap_or_default()
    );
    let start = Instant::now();
    loop {
        let n = accounts(
            &MetaClient::new(std::slice::from_ref(&a8), &nimbus_tls::Transport::Plaintext).unwrap(),
            false,
        )
        .await
        .len();
        if n == 32 {
            break;
        }
        assert!(start.elapsed() < 20 * SECS, "joiner has {n} accounts");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(n7);
}

#[tokio::test(flavor = "multi_thread")]
async fn t81_restore_and_snapshot_refuse_bad_input() {
    let c = Cluster::start(1, &[]);
    c.wait_leader(10 * SECS).await;
    let root = c.root.path();
    let backup = root.join("b.tar");
    let (ok, _, err) = run_cli(&[
        "cluster",
        "snapshot",
        "--meta",
        &c.nodes[0].addr,
        "--out",
        &path_str(&backup),
    ]);
    assert!(ok, "{err}");
    let key = path_str(&c.key_file);
    let port = free_ports(1)[0];
    let listen = format!("127.0.0.1:{port}");
    let restore = |dir: &str, file: &str, key: &str| {
        run_cli(&[
            "meta",
            "--id",
            "5",
            "--listen",
            &listen,
            "--data-dir",
            &path_str(&root.join(dir)),
            "--key-file",
            key,
            "--restore-from",
            file,
        ])
    };
    // Into a data dir that already holds a node.
    let (ok, _, err) = restore("node1", &path_str(&backup), &key);
    assert!(!ok && err.contains("fresh --data-dir"), "{err}");
    // Without the cluster key.
    let (ok, _, err) = restore(
        "fresh-a",
        &path_str(&backup),
        &path_str(&root.join("nokey")),
    );
    assert!(!ok && err.contains("--key-file"), "{err}");
    // A file that is not a backup.
    let junk = root.join("junk");
    std::fs::write(&junk, b"definitely not a tar of a rocksdb checkpoint").unwrap();
    let (ok, _, err) = restore("fresh-b", &path_str(&junk), &key);
    assert!(!ok && err.contains("not a Nimbus metadata backup"), "{err}");
    let (ok, _, err) = restore("fresh-c", &path_str(&root.join("missing")), &key);
    assert!(!ok && err.contains("not found"), "{err}");
    // Snapshot with nobody answering.
    let dead = format!("127.0.0.1:{}", free_ports(1)[0]);
    let (ok, _, err) = run_cli(&[
        "cluster",
        "snapshot",
        "--meta",
        &dead,
        "--out",
        &path_str(&root.join("x")),
    ]);
    assert!(!ok && err.contains("no metadata leader"), "{err}");
    // Restore of a multi-member --initial-cluster is refused.
    let (ok, _, err) = run_cli(&[
        "meta",
        "--id",
        "5",
        "--listen",
        &listen,
        "--data-dir",
        &path_str(&root.join("fresh-d")),
        "--key-file",
        &key,
        "--initial-cluster",
        &format!("5={listen},6=127.0.0.1:1"),
        "--restore-from",
        &path_str(&backup),
    ]);
    assert!(!ok && err.contains("one-member"), "{err}");
}
