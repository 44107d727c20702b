//! A real `nimbus dev` process on loopback, and a signed client for it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use nimbus_gateway::client::{Credentials, LambdaConnection};

use super::{free_ports, BIN};

/// Held while a test runs `nimbus dev`: one at a time, since each owns the sandbox
/// cgroup (and reclaims environments it finds there on start).
pub static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `nimbus dev`, killed on drop.
pub struct Dev {
    pub addr: String,
    /// Where `/metrics` is served (`--admin-listen`).
    pub admin: String,
    pub dir: tempfile::TempDir,
    child: Child,
}

impl Dev {
    /// Starts `nimbus dev` with extra environment variables and waits for its API port.
    pub async fn start(env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ports = free_ports(2);
        let addr = format!("127.0.0.1:{}", ports[0]);
        let admin = format!("127.0.0.1:{}", ports[1]);
        let log = std::fs::File::create(dir.path().join("nimbus.log")).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args(["dev", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen", &addr, "--idle-timeout-secs", "120"])
            .args(["--admin-listen", &admin])
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let mut dev = Dev {
            addr,
            admin,
            dir,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(&dev.addr).is_err() {
            if let Ok(Some(status)) = dev.child.try_wait() {
                panic!("nimbus dev exited with {status}:\n{}", dev.log());
            }
            assert!(
                Instant::now() < deadline,
                "nimbus dev did not start:\n{}",
                dev.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        dev
    }

    /// Wraps an already started process serving the Lambda API on `addr` (a cluster
    /// gateway whose account has the dev key), for the same client helpers.
    pub fn attach(addr: String, dir: tempfile::TempDir, child: Child) -> Self {
        Dev {
            admin: addr.clone(),
            addr,
            dir,
            child,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("nimbus.log")
    }

    /// A connection with the dev account's key.
    pub async fn client(&self) -> LambdaConnection {
        LambdaConnection::connect(
            &self.addr,
            Credentials {
                access_key_id: "test".into(),
                secret_access_key: "test".into(),
                region: "us-east-1".into(),
            },
        )
        .await
        .unwrap()
    }

    /// Creates a Python 3 function whose `app.py` is `code` (handler `app.handler`).
    pub async fn create_python_function(&self, name: &str, code: &str) {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        zip.start_file("app.py", zip::write::SimpleFileOptions::default())
            .unwrap();
        std::io::Write::write_all(&mut zip, code.as_bytes()).unwrap();
        let bytes = zip.finish().unwrap().into_inner();
        let req = serde_json::json!({
            "FunctionName": name,
            "Runtime": "python3.11",
            "Role": "arn:aws:iam::000000000000:role/lambda-role",
            "Handler": "app.handler",
            "Code": {"ZipFile": base64::engine::general_purpose::STANDARD.encode(bytes)},
        });
        let reply = self.client().await.create_function(&req).await.unwrap();
        assert_eq!(
            reply.status,
            201,
            "CreateFunction: {}",
            String::from_utf8_lossy(&reply.body)
        );
    }

    /// `GET /metrics` on the admin address (unauthenticated).
    pub async fn scrape(&self) -> String {
        scrape(&self.admin).await
    }
}

/// `GET /metrics` from `addr`; the whole HTTP response.
pub async fn scrape(addr: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    resp
}

/// The value of an unlabelled sample in a scrape.
pub fn sample(scrape: &str, name: &str) -> Option<f64> {
    scrape.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

impl Drop for Dev {
    // Drop cannot await; the wait is bounded (20 s) and only at the end of a test.
    #[allow(clippy::disallowed_methods)]
    fn drop(&mut self) {
        // SIGTERM first so the process flushes its spans and stops its environments.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
