//! A single in-process node: code storage integrity and the request-id contract.

use std::time::Duration;

use nimbus_meta::node::{MetaNode, NodeConfig};
use nimbus_meta::state_machine::chunk_key;
use nimbus_meta::MetaClient;

type SingleNode = (
    MetaNode,
    MetaClient,
    tempfile::TempDir,
    tokio::sync::oneshot::Sender<()>,
);

async fn single_node() -> SingleNode {
    single_node_with(|_| {}).await
}

async fn single_node_with(configure: impl FnOnce(&mut NodeConfig)) -> SingleNode {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut cfg = NodeConfig::new(1, dir.path().join("n1"), addr);
    cfg.initial_cluster = [(1, addr.to_string())].into();
    configure(&mut cfg);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let node = MetaNode::start(cfg, async move {
        let _ = rx.await;
    })
    .await
    .unwrap();
    let client = MetaClient::new(&[addr.to_string()], &nimbus_tls::Transport::Plaintext).unwrap();
    // Wait for the single node to elect itself.
    for _ in 0..100 {
        if node.ctx.raft.metrics().borrow().current_leader == Some(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (node, client, dir, tx)
}

fn zip_of(n: usize) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut w = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        w.start_file("f.bin", opts).unwrap();
        let data: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
        std::io::Write::write_all(&mut w, &data).unwrap();
        w.finish().unwrap();
    }
    buf.into_inner()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_code_chunk_is_detected_and_never_served() {
    let (node, client, _dir, _stop) = single_node().await;
    let zip = zip_of(2 * 1024 * 1024 + 5);
    let (rev, code) = client.upload_code(&zip).await.unwrap();
    assert_eq!(client.fetch_code(&code.sha256, rev).await.unwrap(), zip);

    // At rest the chunk is ciphertext: the plaintext does not appear in the database.
    let db = node.ctx.sm.db();
    let cf = db.cf_handle("code").unwrap();
    let sealed = db.get_cf(cf, chunk_key(&code.sha256, 1)).unwrap().unwrap();
    assert!(
        !sealed
            .windows(64)
            .any(|w| w == &zip[1024 * 1024..1024 * 1024 + 64]),
        "chunk must be encrypted at rest"
    );

    // Flip one byte of chunk 1 on disk: the read fails loudly instead of serving it.
    let mut bad = sealed.clone();
    bad[40] ^= 0xff;
    db.put_cf(cf, chunk_key(&code.sha256, 1), &bad).unwrap();
    drop(db);
    let err = client.fetch_code(&code.sha256, rev).await.unwrap_err();
    assert!(err.to_string().contains("corrupt"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_and_invalid_packages_are_refused_before_writing() {
    let (_node, client, _dir, _stop) = single_node().await;
    let err = client
        .upload_code(b"PK\x03\x04 but not really")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Could not unzip"), "{err}");
    let too_big = vec![0u8; 50 * 1024 * 1024 + 1];
    let err = client.upload_code(&too_big).await.unwrap_err();
    assert!(
        err.to_string().contains("RequestTooLargeException"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_client_can_write_the_cluster_key_check() {
    let (node, client, _dir, _stop) = single_node().await;
    let err = client
        .write(nimbus_types::Command::SetClusterKeyCheck {
            sealed: b"forged".to_vec(),
        })
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("recorded by the metadata nodes"),
        "{err}"
    );
    // The node records and verifies its own.
    let mut verified = false;
    for _ in 0..100 {
        if let Ok(nimbus_types::QueryOutput::Entity(Some(nimbus_types::Entity::ClusterKeyCheck(
            sealed,
        )))) = node.ctx.sm.query(&nimbus_types::Query::Get {
            key: nimbus_types::keys::CLUSTER_KEY_CHECK.into(),
        }) {
            verified = node.ctx.key.verifies(&sealed);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(verified, "the node's own check value is recorded");
}

/// Environment variables reach the log, snapshots and disk only as ciphertext, and every
/// answer (the write's result, reads, the watch) carries them opened.
#[tokio::test(flavor = "multi_thread")]
async fn environment_variables_are_sealed_at_rest() {
    use futures::StreamExt;
    use nimbus_types::{keys, Command, CommandOutput, Entity, FunctionConfig, FunctionKey};
    let (node, client, dir, _stop) = single_node().await;
    client
        .write(Command::PutAccount {
            account_id: "123456789012".into(),
        })
        .await
        .unwrap();
    let (_, code) = client.upload_code(&zip_of(100)).await.unwrap();
    let secret = "hunter2-8f3a1c0d9e";
    let mut config = FunctionConfig {
        runtime: "python3.11".into(),
        handler: "app.handler".into(),
        role: "arn:aws:iam::123456789012:role/r".into(),
        ..Default::default()
    };
    config
        .environment
        .insert("DB_PASSWORD".into(), secret.into());
    let key = FunctionKey {
        account_id: "123456789012".into(),
        region: "us-east-1".into(),
        name: "sealed".into(),
    };
    let (_, out) = client
        .write(Command::CreateFunction {
            key: key.clone(),
            config,
            code,
            tags: Default::default(),
            publish: true,
            now_ms: 1,
        })
        .await
        .unwrap();
    let CommandOutput::FunctionAndVersion(f, v) = out else {
        panic!("{out:?}")
    };
    assert_eq!(f.config.environment["DB_PASSWORD"], secret);
    assert_eq!(v.config.environment["DB_PASSWORD"], secret);
    let Some(Entity::Function(read)) = client.get(&keys::function(&key)).await.unwrap() else {
        panic!("not found")
    };
    assert_eq!(read.config.environment["DB_PASSWORD"], secret);
    let mut watch = client.watch(1).await.unwrap();
    let mut seen = false;
    while let Ok(Some(Ok((_, changes)))) =
        tokio::time::timeout(Duration::from_secs(2), watch.next()).await
    {
        for c in changes {
            if let Some(Entity::Function(f)) = c.value {
                assert_eq!(f.config.environment["DB_PASSWORD"], secret);
                seen = true;
            }
        }
        if seen {
            break;
        }
    }
    assert!(seen, "the watch never delivered the function");
    // Nowhere on disk in the clear: log, state machine, and a snapshot taken now.
    node.ctx.raft.trigger().snapshot().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut stack = vec![dir.path().to_path_buf()];
    let mut files = 0;
    while let Some(p) = stack.pop() {
        for entry in std::fs::read_dir(&p).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                files += 1;
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "{} holds the secret in the clear",
                    path.display()
                );
            }
        }
    }
    assert!(files > 3, "only {files} files looked at");
}

/// A batch is made by the leader from writes it checked one by one; one sent by a client
/// would carry its writes past those checks.
#[tokio::test(flavor = "multi_thread")]
async fn no_client_can_send_a_batch_of_writes() {
    let (node, client, _dir, _stop) = single_node().await;
    let account = "123456789012";
    let err = client
        .write(nimbus_types::Command::Batch {
            writes: vec![nimbus_types::BatchedWrite {
                request_id: "smuggled".into(),
                command: nimbus_types::Command::PutAccount {
                    account_id: account.into(),
                },
            }],
        })
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("made by the metadata leader"),
        "{err}"
    );
    let stored = node.ctx.sm.query(&nimbus_types::Query::Get {
        key: nimbus_types::keys::account(account),
    });
    assert!(
        matches!(stored, Ok(nimbus_types::QueryOutput::Entity(None))),
        "{stored:?}"
    );
}

/// Writes that arrive together share log entries (proposal batching), and each caller
/// still gets its own answer: its own result, a revision its write is visible at, and
/// the first answer again when it retries.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writes_share_log_entries_and_keep_their_own_answers() {
    let entries = concurrent_writes(1).await;
    assert!(
        entries < CONCURRENT_WRITES,
        "{CONCURRENT_WRITES} concurrent writes took {entries} log entries: none were batched"
    );
}

/// `--proposals-in-flight 0` turns batching off (for a rolling upgrade from a release
/// without it): every write is its own entry again.
#[tokio::test(flavor = "multi_thread")]
async fn with_batching_off_every_write_is_its_own_entry() {
    assert_eq!(concurrent_writes(0).await, CONCURRENT_WRITES);
}

const CONCURRENT_WRITES: usize = 200;

/// Sends [`CONCURRENT_WRITES`] writes at once to a node with `proposals_in_flight`, checks
/// every answer, and returns how many log entries they took.
async fn concurrent_writes(proposals_in_flight: usize) -> usize {
    let (node, client, _dir, _stop) =
        single_node_with(|cfg| cfg.proposals_in_flight = proposals_in_flight).await;
    let last_index = || node.ctx.raft.metrics().borrow().last_log_index.unwrap_or(0);
    // Let the node's own start-up write (its key check) land first.
    for _ in 0..100 {
        if let Ok(nimbus_types::QueryOutput::Entity(Some(_))) =
            node.ctx.sm.query(&nimbus_types::Query::Get {
                key: nimbus_types::keys::CLUSTER_KEY_CHECK.into(),
            })
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = last_index();
    const WRITES: usize = CONCURRENT_WRITES;
    let tasks: Vec<_> = (0..WRITES)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let command = nimbus_types::Command::PutAccount {
                    account_id: format!("{i:012}"),
                };
                let id = format!("batch-test-{i}");
                (
                    id.clone(),
                    command.clone(),
                    client.write_with_id(&id, &command).await,
                )
            })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        let (id, command, answer) = t.await.unwrap();
        let (revision, output) = answer.expect("every write is acknowledged");
        assert_eq!(output, nimbus_types::CommandOutput::Done);
        answers.push((id, command, revision));
    }
    let entries = (last_index() - before) as usize;
    // The metrics count what was proposed: every write, in as many proposals as entries.
    let counts = node.ctx.proposer.counts();
    assert_eq!(counts.writes.get() as usize, WRITES);
    assert_eq!(counts.proposals.get() as usize, entries);
    // Every write that queued left the queue: the backlog gauge is back to nothing.
    assert_eq!(counts.queued.get(), 0);
    let revisions: std::collections::BTreeSet<u64> = answers.iter().map(|a| a.2).collect();
    // Writes of one batch share its revision; nothing else is written meanwhile.
    assert_eq!(revisions.len(), entries);
    for (i, (id, command, revision)) in answers.iter().enumerate() {
        let stored = node.ctx.sm.query(&nimbus_types::Query::Get {
            key: nimbus_types::keys::account(&format!("{i:012}")),
        });
        assert!(
            matches!(stored, Ok(nimbus_types::QueryOutput::Entity(Some(_)))),
            "write {i} is not stored: {stored:?}"
        );
        if i % 50 == 0 {
            let again = client.write_with_id(id, command).await.unwrap();
            assert_eq!(
                again.0, *revision,
                "a retry answers with the first revision"
            );
        }
    }
    entries
}
