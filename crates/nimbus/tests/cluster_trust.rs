//! The cluster attacked from the network (issue 13): a metadata node and a worker run as
//! separate processes with mutual TLS, and callers holding no certificate, another CA's
//! certificate, or a certificate of the wrong role try what the attack that opened the
//! issue did (create an account, read secrets, speak Raft, invoke through a worker).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_ports, BIN};
use nimbus_meta::{ClientError, MetaClient};
use nimbus_proto::meta::raft_client::RaftClient;
use nimbus_proto::worker::worker_client::WorkerClient;
use nimbus_tls::{Role, Tls, Transport};
use nimbus_types::{keys, AccessKey, Command as Cmd, Query, Worker};

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn nimbus(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn cert_issue(ca: &Path, role: &str, name: &str, out: &Path) {
    let o = nimbus(&[
        "cert",
        "issue",
        "--ca",
        ca.to_str().unwrap(),
        "--role",
        role,
        "--name",
        name,
        "--san",
        "127.0.0.1,localhost",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn tls(dir: &Path, role: Role) -> Transport {
    Transport::Tls(Tls::load(dir, role).unwrap())
}

struct Setup {
    root: tempfile::TempDir,
    meta: String,
    worker: String,
    _procs: Vec<Proc>,
}

impl Setup {
    fn dir(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir(&format!("{name}.log"))).unwrap_or_default()
    }
}

async fn start() -> Setup {
    let root = tempfile::tempdir().unwrap();
    let p = |n: &str| root.path().join(n);
    let ca = p("ca");
    let o = nimbus(&["cert", "init-ca", "--out", ca.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for (role, name) in [
        ("meta", "meta1"),
        ("admin", "operator"),
        ("gateway", "gw1"),
        ("worker", "worker1"),
        ("worker", "worker2"),
    ] {
        cert_issue(&ca, role, name, &p(name));
    }
    // Another CA, as an attacker who runs `nimbus cert` on their own machine would have.
    let rogue = p("rogue-ca");
    assert!(
        nimbus(&["cert", "init-ca", "--out", rogue.to_str().unwrap()])
            .status
            .success()
    );
    cert_issue(&rogue, "admin", "operator", &p("rogue-admin"));

    let ports = free_ports(2);
    let meta = format!("127.0.0.1:{}", ports[0]);
    let worker = format!("127.0.0.1:{}", ports[1]);
    let spawn = |args: Vec<String>, log: &str| {
        Proc(
            Command::new(BIN)
                .args(&args)
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(p(&format!("{log}.log"))).unwrap())
                .spawn()
                .unwrap(),
        )
    };
    let s = |x: &str| x.to_string();
    let dir = |x: &str| p(x).to_str().unwrap().to_string();
    let meta_proc = spawn(
        vec![
            s("--tls-dir"),
            dir("meta1"),
            s("meta"),
            s("--id"),
            s("1"),
            s("--listen"),
            meta.clone(),
            s("--data-dir"),
            dir("meta-data"),
            s("--initial-cluster"),
            format!("1={meta}"),
        ],
        "meta",
    );
    let admin = MetaClient::new(&[&meta], &tls(&p("operator"), Role::Admin)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while MetaClient::node_status(&meta, &tls(&p("operator"), Role::Admin))
        .await
        .map(|s| s.leader.is_none())
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "metadata node did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    admin
        .write(Cmd::PutAccount {
            account_id: "111111111111".into(),
        })
        .await
        .expect("the admin certificate creates accounts");
    let worker_proc = spawn(
        vec![
            s("--tls-dir"),
            dir("worker1"),
            s("worker"),
            s("--listen"),
            worker.clone(),
            s("--meta"),
            meta.clone(),
            s("--data-dir"),
            dir("worker-data"),
            s("--network"),
            s("none"),
            s("--heartbeat-ms"),
            s("500"),
        ],
        "worker",
    );
    let setup = Setup {
        root,
        meta,
        worker,
        _procs: vec![meta_proc, worker_proc],
    };
    // The worker registers under its certificate's name.
    let gw = MetaClient::new(&[&setup.meta], &tls(&setup.dir("gw1"), Role::Gateway)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let registered = gw.list(&keys::worker("worker1+"), None, 10).await;
        if registered.is_ok_and(|(_, w)| w.len() == 1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "worker did not register:\n{}",
            setup.log("worker")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    setup
}

fn denied<T: std::fmt::Debug>(r: Result<T, ClientError>) -> String {
    match r {
        Err(ClientError::Denied(m)) => m,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_answers_only_certified_callers_and_only_within_their_role() {
    let s = start().await;
    let acct = || Cmd::PutAccount {
        account_id: "222222222222".into(),
    };

    // No certificate at all: the TLS handshake fails; nothing is answered.
    let mut plain = MetaClient::new(&[&s.meta], &Transport::Plaintext).unwrap();
    plain.deadline = Duration::from_secs(2);
    assert!(plain.write(acct()).await.is_err());
    assert!(MetaClient::node_status(&s.meta, &Transport::Plaintext)
        .await
        .is_err());

    // An admin certificate from another CA: refused at the handshake too.
    let mut rogue = MetaClient::new(&[&s.meta], &tls(&s.dir("rogue-admin"), Role::Admin)).unwrap();
    rogue.deadline = Duration::from_secs(2);
    assert!(matches!(
        rogue.write(acct()).await,
        Err(ClientError::Unavailable(_))
    ));

    // A worker's certificate (what a function escaping to the worker's files would hold).
    let worker = MetaClient::new(&[&s.meta], &tls(&s.dir("worker2"), Role::Worker)).unwrap();
    let m = denied(worker.write(acct()).await);
    assert!(m.contains("worker worker2 may not write PutAccount"), "{m}");
    denied(worker.access_key_secret("AKIDANY").await);
    denied(worker.list(keys::FUNCTION, None, 100).await);
    denied(worker.watch(1).await.map(|_| ()));
    // It may speak for itself only.
    let mut me = Worker {
        id: "worker1+forged".into(),
        addr: s.worker.clone(),
        region: "us-east-1".into(),
        placement: nimbus_types::Placement::Zone("us-east-1a".into()),
        memory_total_mb: 1,
        memory_used_mb: 0,
        environments_warm: 0,
        environments_busy: 0,
        last_heartbeat_ms: 0,
        runtimes: vec![],
    };
    denied(
        worker
            .write(Cmd::RegisterWorker { worker: me.clone() })
            .await,
    );
    denied(
        worker
            .write(Cmd::DeregisterWorker {
                id: "worker1+x".into(),
            })
            .await,
    );
    me.id = "worker2+x".into();
    worker
        .write(Cmd::RegisterWorker { worker: me })
        .await
        .expect("a worker registers under its own name");

    // A gateway's certificate: function metadata yes, accounts and keys no.
    let gw = MetaClient::new(&[&s.meta], &tls(&s.dir("gw1"), Role::Gateway)).unwrap();
    denied(gw.write(acct()).await);
    // Nor may it grow an edge location's budget (it may hold a share of one).
    let m = denied(
        gw.write(Cmd::PutEdgeBudget {
            budget: nimbus_types::EdgeBudget {
                account_id: "111111111111".into(),
                region: "us-east-1".into(),
                location: "fra1".into(),
                slots: 500,
                gateways: vec!["gw1".into()],
            },
        })
        .await,
    );
    assert!(m.contains("may not write PutEdgeBudget"), "{m}");
    denied(
        gw.write(Cmd::PutAccessKey {
            key: AccessKey {
                access_key_id: "AKIDSTOLEN".into(),
                account_id: "111111111111".into(),
                secret_ciphertext: b"chosen".to_vec(),
                user_name: None,
                active: true,
                created_ms: 0,
            },
        })
        .await,
    );
    // Raft is for metadata nodes only: a gateway cannot append entries.
    let ch = tls(&s.dir("gw1"), Role::Gateway)
        .channel(&s.meta, Role::Meta, |e| e)
        .unwrap();
    let err = RaftClient::new(ch)
        .append_entries(nimbus_proto::meta::RaftMessage { payload: vec![] })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");

    // The admin certificate: accounts yes, but decrypted secrets are for gateways only.
    let admin = MetaClient::new(&[&s.meta], &tls(&s.dir("operator"), Role::Admin)).unwrap();
    admin.write(acct()).await.expect("admin creates accounts");
    admin
        .write(Cmd::PutAccessKey {
            key: AccessKey {
                access_key_id: "AKIDTRUST".into(),
                account_id: "222222222222".into(),
                secret_ciphertext: b"s3cret".to_vec(),
                user_name: None,
                active: true,
                created_ms: 0,
            },
        })
        .await
        .unwrap();
    denied(admin.access_key_secret("AKIDTRUST").await);
    let k = gw.access_key_secret("AKIDTRUST").await.unwrap();
    assert_eq!(
        (k.account_id.as_str(), k.secret.as_slice()),
        ("222222222222", &b"s3cret"[..])
    );
    let q = Query::AccessKeySecret {
        access_key_id: "AKIDTRUST".into(),
    };
    denied(worker.read(&q, false).await);

    // Workers answer gateways only.
    let status = |t: Transport| {
        let addr = s.worker.clone();
        async move {
            let ch = t.channel(&addr, Role::Worker, |e| e).unwrap();
            WorkerClient::new(ch)
                .status(nimbus_proto::worker::StatusRequest {})
                .await
        }
    };
    let err = status(tls(&s.dir("worker2"), Role::Worker))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    let err = status(tls(&s.dir("operator"), Role::Admin))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert!(status(Transport::Plaintext).await.is_err());
    let load = status(tls(&s.dir("gw1"), Role::Gateway)).await.unwrap();
    assert!(load.into_inner().worker_id.starts_with("worker1+"));

    // A client checks the server's role too: the worker's port is not a metadata node.
    let mut confused = MetaClient::new(&[&s.worker], &tls(&s.dir("gw1"), Role::Gateway)).unwrap();
    confused.deadline = Duration::from_secs(2);
    let e = confused.get("acct/x").await.unwrap_err().to_string();
    assert!(
        e.contains("not a meta node") || e.contains("unavailable"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotate_without_a_restart() {
    let s = start().await;
    let admin_dir = s.dir("operator");
    // A new CA: the node still trusts only the old one, so the new admin is refused ...
    let ca2 = s.dir("ca2");
    assert!(nimbus(&["cert", "init-ca", "--out", ca2.to_str().unwrap()])
        .status
        .success());
    cert_issue(&ca2, "admin", "operator", &s.dir("admin2"));
    let mut fresh = MetaClient::new(&[&s.meta], &tls(&s.dir("admin2"), Role::Admin)).unwrap();
    fresh.deadline = Duration::from_secs(2);
    assert!(fresh.get("acct/111111111111").await.is_err());
    // ... until the node's own directory is re-issued by the new CA and it reloads
    // (SIGHUP here; a changed file does the same within seconds).
    cert_issue(&ca2, "meta", "meta1", &s.dir("meta1"));
    let pid = s._procs[0].0.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if fresh.get("acct/111111111111").await.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not reloaded:\n{}",
            s.log("meta")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(s.log("meta").contains("TLS certificates reloaded (SIGHUP)"));
    // The process kept running throughout, and the old CA's admin is now refused.
    let mut old = MetaClient::new(&[&s.meta], &tls(&admin_dir, Role::Admin)).unwrap();
    old.deadline = Duration::from_secs(2);
    assert!(old.get("acct/111111111111").await.is_err());
    // No signal at all: the node sees its files change and reloads within seconds.
    let ca3 = s.dir("ca3");
    assert!(nimbus(&["cert", "init-ca", "--out", ca3.to_str().unwrap()])
        .status
        .success());
    cert_issue(&ca3, "admin", "operator", &s.dir("admin3"));
    cert_issue(&ca3, "meta", "meta1", &s.dir("meta1"));
    let mut third = MetaClient::new(&[&s.meta], &tls(&s.dir("admin3"), Role::Admin)).unwrap();
    third.deadline = Duration::from_secs(2);
    let deadline = Instant::now() + Duration::from_secs(15);
    while third.get("acct/111111111111").await.is_err() {
        assert!(
            Instant::now() < deadline,
            "not reloaded:\n{}",
            s.log("meta")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(s
        .log("meta")
        .contains("TLS certificates reloaded (files changed)"));
}

#[tokio::test]
async fn a_node_without_tls_refuses_to_start_unless_told_and_then_warns() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports(1)[0];
    let args = |extra: &[&str]| {
        let mut a: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        a.extend(
            [
                "meta",
                "--id",
                "1",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        a.push(dir.path().join("d").to_str().unwrap().to_string());
        a
    };
    let o = Command::new(BIN).args(args(&[])).output().unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--tls-dir") && err.contains("--insecure-plaintext"),
        "{err}"
    );
    // A certificate of another role is refused at start, not by every peer later.
    let ca = dir.path().join("ca");
    assert!(nimbus(&["cert", "init-ca", "--out", ca.to_str().unwrap()])
        .status
        .success());
    cert_issue(&ca, "worker", "w", &dir.path().join("w"));
    let o = Command::new(BIN)
        .args(args(&["--tls-dir", dir.path().join("w").to_str().unwrap()]))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("role worker, not meta"), "{err}");
    // Told to run without TLS, it starts, and says so loudly.
    let log = dir.path().join("plain.log");
    let mut plain = Proc(
        Command::new(BIN)
            .args(args(&["--insecure-plaintext"]))
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("INSECURE: --insecure-plaintext")
    {
        assert!(plain.0.try_wait().unwrap().is_none(), "exited");
        assert!(Instant::now() < deadline, "no warning");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Keys are the owner's only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("w/key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "key.pem mode {mode:o}");
    let mode = std::fs::metadata(&ca).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "CA dir mode {mode:o}");
}

/// `nimbus dev` is no exception: its embedded metadata port takes only certificates of
/// its own CA, made on first start under DATA_DIR/tls (root only); the CLI gets in with
/// `--tls-dir DATA_DIR/tls`, an uncertified process does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nimbus_dev_guards_its_metadata_port_with_its_own_ca() {
    use std::os::unix::fs::PermissionsExt;
    let _one_at_a_time = common::dev::LOCK.lock().await;
    let dev = common::dev::Dev::start(&[]).await;
    let tls = dev.dir.path().join("data/tls");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&tls), 0o700);
    assert_eq!(mode(&tls.join("key.pem")), 0o600);
    assert_eq!(mode(&tls.join("ca/ca-key.pem")), 0o600);
    // The address is in the start log: "metadata node ADDR (nimbus --tls-dir DIR)".
    let log = dev.log();
    let addr = log
        .split("metadata node ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no metadata address in the log:\n{log}"))
        .to_string();
    let tls_dir = tls.to_str().unwrap();
    let status = |extra: &[&str]| {
        let mut args: Vec<&str> = extra.to_vec();
        args.extend(["cluster", "status", "--meta", &addr, "--output", "json"]);
        nimbus(&args)
    };
    let leader = |out: &std::process::Output| {
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|v| v["leader"].as_u64())
    };
    let plain = status(&["--insecure-plaintext"]);
    assert_eq!(
        leader(&plain),
        None,
        "an uncertified process read the status"
    );
    let admin = status(&["--tls-dir", tls_dir]);
    assert!(
        admin.status.success(),
        "{}",
        String::from_utf8_lossy(&admin.stderr)
    );
    assert_eq!(leader(&admin), Some(1));
    // The admin certificate creates accounts there; without it, nothing.
    let create = |extra: &[&str]| {
        let mut args: Vec<&str> = extra.to_vec();
        args.extend([
            "account",
            "create",
            "--meta",
            &addr,
            "--account-id",
            "333333333333",
        ]);
        args.extend(["--access-key-id", "AKIDDEVTLS", "--region", "us-east-1"]);
        Command::new(BIN)
            .args(&args)
            .env("NIMBUS_SECRET_ACCESS_KEY", "s")
            .output()
            .unwrap()
    };
    assert!(!create(&["--insecure-plaintext"]).status.success());
    let ok = create(&["--tls-dir", tls_dir]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}
