//! The metadata workload: clients that update and read function configurations (one
//! register per function: its description) and create accounts (writes whose loss is
//! checked at the end), against the metadata cluster, recording every operation.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nimbus_meta::MetaClient;
use nimbus_types::{keys, Command, Entity, FunctionConfig, FunctionKey, Query, QueryOutput};
use rand::{Rng, SeedableRng};

use crate::history::{History, Operation, RegisterOp};

/// An operation whose answer takes longer than this is recorded with an unknown outcome.
const OP_TIMEOUT: Duration = Duration::from_secs(15);
const ACCOUNT: &str = "000000000777";
const REGION: &str = "us-east-1";

/// What the workload observed, beyond the register history.
#[derive(Debug, Default)]
pub struct Observations {
    /// Account ids whose creation was acknowledged.
    pub acked_accounts: Mutex<Vec<String>>,
    /// Completion times (ns since the run began) of successful operations.
    pub successes: Mutex<Vec<u64>>,
    pub ops: AtomicU64,
    pub failures: AtomicU64,
}

/// A workload over `keys` functions, each a register.
pub struct MetaWorkload {
    /// Function writes and reads, as a gateway makes them (a gateway's certificate).
    pub client: MetaClient,
    /// Account creation, the operator's (the admin certificate).
    pub admin: MetaClient,
    pub history: Arc<History>,
    pub obs: Arc<Observations>,
    pub scenario: String,
    pub functions: Vec<FunctionKey>,
    configs: BTreeMap<String, FunctionConfig>,
}

fn config() -> FunctionConfig {
    FunctionConfig {
        runtime: "python3.11".into(),
        handler: "app.handler".into(),
        role: "arn:aws:iam::000000000777:role/chaos".into(),
        ..Default::default()
    }
}

/// A tiny valid zip holding one handler file.
fn code_zip() -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut w = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default();
        // Writing to an in-memory buffer cannot fail.
        w.start_file("app.py", opts).expect("zip entry");
        std::io::Write::write_all(&mut w, b"def handler(e, c):\n    return e\n").expect("zip");
        w.finish().expect("zip");
    }
    buf.into_inner()
}

impl MetaWorkload {
    /// Creates the account and `n` functions (each creation is the register's first write).
    pub async fn setup(
        client: MetaClient,
        admin: MetaClient,
        history: Arc<History>,
        scenario: &str,
        n: usize,
    ) -> anyhow::Result<Self> {
        admin
            .write(Command::PutAccount {
                account_id: ACCOUNT.into(),
            })
            .await?;
        let (_, code) = client.upload_code(&code_zip()).await?;
        let mut functions = Vec::new();
        let mut configs = BTreeMap::new();
        for i in 0..n {
            let key = FunctionKey::new(ACCOUNT, REGION, &format!("{scenario}-{i}"));
            let mut cfg = config();
            cfg.description = "init".into();
            let start = history.now();
            client
                .write(Command::CreateFunction {
                    key: key.clone(),
                    config: cfg.clone(),
                    code: code.clone(),
                    tags: BTreeMap::new(),
                    publish: false,
                    now_ms: 1,
                })
                .await?;
            history.record(Operation {
                client: usize::MAX,
                key: keys::function(&key),
                op: RegisterOp::Write("init".into()),
                start,
                end: Some(history.now()),
            });
            configs.insert(keys::function(&key), cfg);
            functions.push(key);
        }
        Ok(Self {
            client,
            admin,
            history,
            obs: Arc::default(),
            scenario: scenario.into(),
            functions,
            configs,
        })
    }

    /// Runs `clients` concurrent clients until `stop` is set. Each op is a linearizable
    /// read (45%), a configuration update (45%) or an account creation (10%).
    pub async fn run(self: Arc<Self>, clients: usize, seed: u64, stop: Arc<AtomicBool>) {
        let mut tasks = Vec::new();
        for c in 0..clients {
            let me = self.clone();
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ ((c as u64 + 1) * 0x9E37));
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let key = &me.functions[rng.gen_range(0..me.functions.len())];
                    match rng.gen_range(0..100) {
                        0..45 => me.read(c, key).await,
                        45..90 => me.update(c, key, format!("c{c}-{n}")).await,
                        _ => me.create_account(&mut rng).await,
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    }

    fn done(&self, ok: bool) {
        self.obs.ops.fetch_add(1, Ordering::Relaxed);
        if ok {
            let now = self.history.now();
            crate::lock(&self.obs.successes).push(now);
        } else {
            self.obs.failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A linearizable read of the function's description.
    pub async fn read(&self, client: usize, key: &FunctionKey) {
        let k = keys::function(key);
        let start = self.history.now();
        let q = Query::Get { key: k.clone() };
        let res = tokio::time::timeout(OP_TIMEOUT, self.client.read(&q, true)).await;
        let seen = match res {
            Ok(Ok((_, QueryOutput::Entity(Some(Entity::Function(f)))))) => {
                Some(Some(f.config.description))
            }
            Ok(Ok((_, QueryOutput::Entity(None)))) => Some(None),
            _ => None,
        };
        self.done(seen.is_some());
        if let Some(seen) = seen {
            self.history.record(Operation {
                client,
                key: k,
                op: RegisterOp::Read(seen),
                start,
                end: Some(self.history.now()),
            });
        }
    }

    /// Sets the function's description to `value`. A definite refusal is not recorded
    /// (it did not happen); a timeout or lost connection is recorded as pending.
    pub async fn update(&self, client: usize, key: &FunctionKey, value: String) {
        let k = keys::function(key);
        let mut cfg = self.configs[&k].clone();
        cfg.description = value.clone();
        let start = self.history.now();
        let cmd = Command::UpdateFunctionConfiguration {
            key: key.clone(),
            config: cfg,
            expected_revision: None,
            now_ms: 2,
        };
        let res = tokio::time::timeout(OP_TIMEOUT, self.client.write(cmd)).await;
        let end = match &res {
            Ok(Ok(_)) => Some(Some(self.history.now())),
            Ok(Err(nimbus_meta::ClientError::Meta(_))) => None,
            _ => Some(None),
        };
        self.done(matches!(res, Ok(Ok(_))));
        if let Some(end) = end {
            self.history.record(Operation {
                client,
                key: k,
                op: RegisterOp::Write(value),
                start,
                end,
            });
        }
    }

    async fn create_account(&self, rng: &mut rand::rngs::StdRng) {
        let id = format!("{:012}", rng.gen_range(100_000_000_000u64..999_999_999_999));
        let res = tokio::time::timeout(
            OP_TIMEOUT,
            self.admin.write(Command::PutAccount {
                account_id: id.clone(),
            }),
        )
        .await;
        let ok = matches!(res, Ok(Ok(_)));
        if ok {
            crate::lock(&self.obs.acked_accounts).push(id);
        }
        self.done(ok);
    }

    /// After the faults healed: a final read of every register (part of the history) and
    /// the number of acknowledged account creations that are missing.
    pub async fn final_check(&self) -> anyhow::Result<usize> {
        for key in &self.functions {
            self.read(usize::MAX - 1, key).await;
        }
        let acked = crate::lock(&self.obs.acked_accounts).clone();
        let mut lost = 0;
        for id in acked {
            let q = Query::Get {
                key: keys::account(&id),
            };
            match self.client.read(&q, true).await?.1 {
                QueryOutput::Entity(Some(_)) => {}
                _ => lost += 1,
            }
        }
        Ok(lost)
    }
}
