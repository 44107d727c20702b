//! The state machine on a temporary RocksDB, fed log entries directly (no Raft).
#![allow(dead_code)] // each test binary uses part of it

use nimbus_meta::raft_types::{Entry, Request, Response};
use nimbus_meta::state_machine::StateMachineStore;
use nimbus_types::{
    BatchedOutput, BatchedWrite, CodePackage, CodeRef, Command, CommandOutput, Entity,
    FunctionConfig, FunctionKey, Query, QueryOutput,
};
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, EntryPayload, LogId};

pub const ACCOUNT: &str = "000000000000";
pub const REGION: &str = "us-east-1";
pub const SHA: &str = "c2hhLW9mLWNvZGU=";

pub fn key(name: &str) -> FunctionKey {
    FunctionKey::new(ACCOUNT, REGION, name)
}

pub fn config(memory: u32) -> FunctionConfig {
    FunctionConfig {
        runtime: "python3.11".into(),
        handler: "app.handler".into(),
        role: "arn:aws:iam::000000000000:role/r".into(),
        memory_mb: memory,
        ..Default::default()
    }
}

pub struct Harness {
    pub sm: StateMachineStore,
    pub index: u64,
    _dir: tempfile::TempDir,
}

impl Harness {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sm = StateMachineStore::open(&dir.path().join("sm"), &dir.path().join("snap")).unwrap();
        Self {
            sm,
            index: 0,
            _dir: dir,
        }
    }

    pub async fn apply_with_id(&mut self, id: &str, command: Command) -> Response {
        self.index += 1;
        let entry = Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), self.index),
            payload: EntryPayload::Normal(Request {
                request_id: id.into(),
                command,
            }),
        };
        self.sm.apply(vec![entry]).await.unwrap().remove(0)
    }

    /// Applies `writes` (request id, command) as one batch entry; returns its index and
    /// the outputs, one per write.
    pub async fn apply_batch(
        &mut self,
        writes: Vec<(String, Command)>,
    ) -> (u64, Vec<BatchedOutput>) {
        let writes = writes
            .into_iter()
            .map(|(request_id, command)| BatchedWrite {
                request_id,
                command,
            })
            .collect();
        let resp = self.apply_with_id("", Command::Batch { writes }).await;
        match resp.result {
            Ok(CommandOutput::Batch(outputs)) => (resp.revision, outputs),
            other => panic!("a batch entry answered {other:?}"),
        }
    }

    pub async fn apply(&mut self, command: Command) -> Response {
        let id = format!("req-{}", self.index + 1);
        self.apply_with_id(&id, command).await
    }

    pub async fn setup(&mut self) {
        assert!(self
            .apply(Command::PutAccount {
                account_id: ACCOUNT.into()
            })
            .await
            .result
            .is_ok());
        let chunk = Command::PutCodeChunk {
            sha256: SHA.into(),
            index: 0,
            ciphertext: vec![1, 2, 3],
        };
        assert!(self.apply(chunk).await.result.is_ok());
        let package = CodePackage {
            sha256: SHA.into(),
            size: 3,
            unzipped_size: 3,
            chunks: 1,
            chunk_sha256: vec!["x".into()],
        };
        assert!(self
            .apply(Command::CommitCode { package })
            .await
            .result
            .is_ok());
    }

    pub fn get(&self, key: &str) -> Option<Entity> {
        match self.sm.query(&Query::Get { key: key.into() }).unwrap() {
            QueryOutput::Entity(e) => e,
            other => panic!("unexpected {other:?}"),
        }
    }

    pub fn list(&self, prefix: &str) -> Vec<(String, Entity)> {
        match self
            .sm
            .query(&Query::List {
                prefix: prefix.into(),
                start_after: None,
                limit: 10_000,
            })
            .unwrap()
        {
            QueryOutput::Entities(v) => v,
            other => panic!("unexpected {other:?}"),
        }
    }
}

pub fn code() -> CodeRef {
    CodeRef {
        sha256: SHA.into(),
        size: 3,
    }
}

impl Harness {
    /// Creates function `name` (after [`Harness::setup`]).
    pub async fn create_function(&mut self, name: &str) {
        let cmd = Command::CreateFunction {
            key: key(name),
            config: config(128),
            code: code(),
            tags: Default::default(),
            publish: false,
            now_ms: 1,
        };
        let r = self.apply(cmd).await;
        assert!(r.result.is_ok(), "{r:?}");
    }
}
