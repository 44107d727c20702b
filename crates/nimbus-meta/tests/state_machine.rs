//! The state machine against a simple model (proptest), retries, and snapshot round trips.

use std::collections::{BTreeMap, BTreeSet};

use nimbus_meta::raft_types::Response;
use nimbus_types::{
    keys, BatchedOutput, BatchedWrite, CodeRef, Command, CommandOutput, Entity, ErrorKind,
    Qualifier,
};
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use proptest::prelude::*;

mod common;
use common::*;

/// The operations the model covers.
#[derive(Debug, Clone)]
enum Op {
    Create(u8),
    Configure(u8, u32),
    Publish(u8),
    Delete(u8),
    CreateAlias(u8, u8, bool),
    DeleteAlias(u8, u8),
    /// Re-send the request id of an earlier operation (by position).
    Retry(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..3).prop_map(Op::Create),
        (0u8..3, 128u32..140).prop_map(|(f, m)| Op::Configure(f, m)),
        (0u8..3).prop_map(Op::Publish),
        (0u8..3).prop_map(Op::Delete),
        (0u8..3, 0u8..2, any::<bool>()).prop_map(|(f, a, l)| Op::CreateAlias(f, a, l)),
        (0u8..3, 0u8..2).prop_map(|(f, a)| Op::DeleteAlias(f, a)),
        (0usize..40).prop_map(Op::Retry),
    ]
}

/// The model: per function, its memory, published versions (memory of each), aliases.
#[derive(Default, Debug)]
struct ModelFn {
    memory: u32,
    versions: Vec<u32>,
    aliases: BTreeSet<u8>,
}

fn to_command(op: &Op) -> Command {
    match op {
        Op::Create(f) => Command::CreateFunction {
            key: key(&format!("f{f}")),
            config: config(128),
            code: code(),
            tags: BTreeMap::new(),
            publish: false,
            now_ms: 1,
        },
        Op::Configure(f, m) => Command::UpdateFunctionConfiguration {
            key: key(&format!("f{f}")),
            config: config(*m),
            expected_revision: None,
            now_ms: 2,
        },
        Op::Publish(f) => Command::PublishVersion {
            key: key(&format!("f{f}")),
            description: String::new(),
            expected_code_sha256: None,
            expected_revision: None,
            now_ms: 3,
        },
        Op::Delete(f) => Command::DeleteFunction {
            key: key(&format!("f{f}")),
            version: None,
        },
        Op::CreateAlias(f, a, latest) => Command::CreateAlias {
            key: key(&format!("f{f}")),
            name: format!("a{a}"),
            function_version: if *latest {
                Qualifier::Latest
            } else {
                Qualifier::Version(1)
            }
            .to_string(),
            description: String::new(),
            routing: None,
        },
        Op::DeleteAlias(f, a) => Command::DeleteAlias {
            key: key(&format!("f{f}")),
            name: format!("a{a}"),
        },
        Op::Retry(_) => unreachable!("retries re-send an earlier command"),
    }
}

/// Applies an op to the model; returns whether it should succeed.
fn model_apply(model: &mut BTreeMap<u8, ModelFn>, op: &Op) -> bool {
    match op {
        Op::Create(f) => {
            if model.contains_key(f) {
                return false;
            }
            model.insert(
                *f,
                ModelFn {
                    memory: 128,
                    ..Default::default()
                },
            );
            true
        }
        Op::Configure(f, m) => match model.get_mut(f) {
            Some(mf) => {
                mf.memory = *m;
                true
            }
            None => false,
        },
        Op::Publish(f) => match model.get_mut(f) {
            Some(mf) => {
                if mf.versions.last() != Some(&mf.memory) {
                    mf.versions.push(mf.memory);
                }
                true
            }
            None => false,
        },
        Op::Delete(f) => model.remove(f).is_some(),
        Op::CreateAlias(f, a, latest) => match model.get_mut(f) {
            Some(mf) if !mf.aliases.contains(a) && (*latest || !mf.versions.is_empty()) => {
                mf.aliases.insert(*a);
                true
            }
            _ => false,
        },
        Op::DeleteAlias(f, a) => match model.get_mut(f) {
            Some(mf) => mf.aliases.remove(a),
            None => false,
        },
        Op::Retry(_) => unreachable!(),
    }
}

/// Applies `ops` in entries of `sizes` writes each (1: one write per entry, as a
/// `Command` of its own; more: a `Command::Batch`), checking every result and the final
/// state against the model, and that a retried request id returns its first response.
async fn check_against_model(ops: &[Op], sizes: &[usize]) -> Result<(), TestCaseError> {
    let mut h = Harness::new();
    h.setup().await;
    let mut model: BTreeMap<u8, ModelFn> = BTreeMap::new();
    // (request id, command, response) of every operation so far, for retries.
    let mut sent: Vec<(String, Command, Response)> = Vec::new();
    let mut next = 0;
    for (n, size) in sizes.iter().cycle().enumerate() {
        if next >= ops.len() {
            break;
        }
        let chunk: Vec<(usize, &Op)> = ops.iter().enumerate().skip(next).take(*size).collect();
        next += chunk.len();
        // Each write of this entry: its id, command, and the answer it must get (a retry's
        // is its first response; a new write's is decided by the model, in order).
        let mut writes = Vec::new();
        let mut expect: Vec<Result<Response, bool>> = Vec::new();
        for (i, op) in &chunk {
            if let Op::Retry(j) = op {
                if sent.is_empty() {
                    continue;
                }
                let (id, cmd, first) = sent[*j % sent.len()].clone();
                writes.push((id, cmd));
                expect.push(Ok(first));
                continue;
            }
            writes.push((format!("op-{i}"), to_command(op)));
            expect.push(Err(model_apply(&mut model, op)));
        }
        if writes.is_empty() {
            continue;
        }
        let answers: Vec<Response> = if *size == 1 || writes.len() == 1 && n % 2 == 0 {
            let (id, cmd) = writes[0].clone();
            vec![h.apply_with_id(&id, cmd).await]
        } else {
            let (revision, outputs) = h.apply_batch(writes.clone()).await;
            prop_assert_eq!(outputs.len(), writes.len());
            for o in &outputs {
                // A write applied now is at the batch's revision; a retry keeps its own.
                prop_assert!(o.revision <= revision);
            }
            outputs
                .into_iter()
                .map(|o| Response {
                    revision: o.revision,
                    result: o.result,
                })
                .collect()
        };
        for ((write, expected), answer) in writes.into_iter().zip(expect).zip(answers) {
            match expected {
                Ok(first) => prop_assert_eq!(
                    &answer,
                    &first,
                    "a retried request id must return the first response"
                ),
                Err(ok) => {
                    prop_assert_eq!(
                        answer.result.is_ok(),
                        ok,
                        "{:?} gave {:?}",
                        write.1,
                        answer.result
                    );
                    sent.push((write.0, write.1, answer));
                }
            }
        }
    }
    // Final state equals the model.
    let functions: BTreeMap<String, u32> = h
        .list(keys::FUNCTION)
        .into_iter()
        .filter_map(|(_, e)| match e {
            Entity::Function(f) => Some((f.key.name, f.config.memory_mb)),
            _ => None,
        })
        .collect();
    let expected: BTreeMap<String, u32> = model
        .iter()
        .map(|(f, m)| (format!("f{f}"), m.memory))
        .collect();
    prop_assert_eq!(functions, expected);
    for (f, mf) in &model {
        let versions: Vec<u32> = h
            .list(&keys::versions_of(&key(&format!("f{f}"))))
            .into_iter()
            .filter_map(|(_, e)| match e {
                Entity::Version(v) => Some(v.config.memory_mb),
                _ => None,
            })
            .collect();
        prop_assert_eq!(&versions, &mf.versions);
        let aliases: BTreeSet<String> = h
            .list(&keys::aliases_of(&key(&format!("f{f}"))))
            .into_iter()
            .map(|(k, _)| k.rsplit('/').next().unwrap().to_string())
            .collect();
        let expected: BTreeSet<String> = mf.aliases.iter().map(|a| format!("a{a}")).collect();
        prop_assert_eq!(aliases, expected);
    }
    Ok(())
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn apply_matches_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        block_on(check_against_model(&ops, &[1]))?;
    }

    /// The leader batches writes that arrive together (`nimbus_meta::proposals`): applied
    /// as batch entries of any sizes, the same writes give the same results and state.
    #[test]
    fn batched_apply_matches_the_model(
        ops in proptest::collection::vec(op(), 1..40),
        sizes in proptest::collection::vec(1usize..6, 1..8),
    ) {
        block_on(check_against_model(&ops, &sizes))?;
    }
}

#[tokio::test]
async fn writes_in_one_batch_are_applied_as_their_own_entries() {
    let mut h = Harness::new();
    let mut rx = h.sm.subscribe();
    h.setup().await;
    h.create_function("f").await;
    let before = h.index;
    while rx.try_recv().is_ok() {}
    let configure = |memory, expected_revision| Command::UpdateFunctionConfiguration {
        key: key("f"),
        config: config(memory),
        expected_revision,
        now_ms: 2,
    };
    let (revision, outputs) = h
        .apply_batch(vec![
            ("a".into(), configure(256, None)),
            ("b".into(), configure(512, None)),
            // Stale once `a` and `b` are applied: refused, and undoes neither.
            ("c".into(), configure(1024, Some("stale".into()))),
            (
                "d".into(),
                Command::DeleteFunction {
                    key: key("missing"),
                    version: None,
                },
            ),
        ])
        .await;
    assert_eq!(revision, before + 1);
    let revision_of = |o: &BatchedOutput| match &o.result {
        Ok(CommandOutput::Function(f)) => f.revision_id.clone(),
        other => panic!("expected a function, got {other:?}"),
    };
    let (a, b) = (revision_of(&outputs[0]), revision_of(&outputs[1]));
    // Two writes to one record in one entry still get distinct RevisionIds, so a caller
    // holding the first cannot overwrite the second.
    assert_ne!(a, b);
    assert_eq!(
        outputs[2].result.as_ref().unwrap_err().kind,
        ErrorKind::PreconditionFailed
    );
    assert_eq!(
        outputs[3].result.as_ref().unwrap_err().kind,
        ErrorKind::ResourceNotFound
    );
    assert!(outputs.iter().all(|o| o.revision == revision));
    let stored = match h.get(&keys::function(&key("f"))) {
        Some(Entity::Function(f)) => f,
        other => panic!("{other:?}"),
    };
    assert_eq!(stored.config.memory_mb, 512);
    assert_eq!(stored.revision_id, b);
    // A conditional update against the first write's RevisionId is stale.
    assert_eq!(
        h.apply(configure(128, Some(a)))
            .await
            .result
            .unwrap_err()
            .kind,
        ErrorKind::PreconditionFailed
    );

    // Watchers see the batch's changes once, under its revision, in order.
    let published = rx.recv().await.unwrap();
    assert_eq!(published.revision, revision);
    assert_eq!(published.changes.len(), 2);
    let history = h.sm.changes_since(revision, 1).unwrap().unwrap();
    assert_eq!(history[0].revision, revision);
    assert_eq!(history[0].changes.len(), 2);

    // Retried ids, alone or batched again, get their first answers.
    let again = h.apply_with_id("b", configure(2048, None)).await;
    assert_eq!(again.revision, revision);
    assert_eq!(again.result, outputs[1].result);
    let (_, again) = h
        .apply_batch(vec![
            ("c".into(), configure(2048, None)),
            ("e".into(), configure(2048, None)),
            // The same new id twice in one batch applies once.
            ("e".into(), configure(4096, None)),
        ])
        .await;
    assert_eq!(again[0].result, outputs[2].result);
    assert_eq!(again[1].result, again[2].result);
    let stored = match h.get(&keys::function(&key("f"))) {
        Some(Entity::Function(f)) => f,
        other => panic!("{other:?}"),
    };
    assert_eq!(stored.config.memory_mb, 2048);
}

#[tokio::test]
async fn a_batch_inside_a_batch_is_refused_alone() {
    let mut h = Harness::new();
    h.setup().await;
    let inner = Command::Batch {
        writes: vec![BatchedWrite {
            request_id: "inner".into(),
            command: Command::PutAccount {
                account_id: "111111111111".into(),
            },
        }],
    };
    let (_, outputs) = h
        .apply_batch(vec![
            ("outer".into(), inner),
            (
                "next".into(),
                Command::PutAccount {
                    account_id: "222222222222".into(),
                },
            ),
        ])
        .await;
    assert_eq!(
        outputs[0].result.as_ref().unwrap_err().kind,
        ErrorKind::InvalidParameterValue
    );
    assert!(outputs[1].result.is_ok());
    assert!(h.get(&keys::account("111111111111")).is_none());
    assert!(h.get(&keys::account("222222222222")).is_some());
}

#[tokio::test]
async fn errors_carry_lambda_names() {
    let mut h = Harness::new();
    h.setup().await;
    let create = Command::CreateFunction {
        key: key("f"),
        config: config(128),
        code: code(),
        tags: BTreeMap::new(),
        publish: false,
        now_ms: 1,
    };
    let first = h.apply(create.clone()).await;
    let Ok(CommandOutput::Function(f)) = first.result else {
        panic!("create failed: {first:?}")
    };
    assert_eq!(
        h.apply(create).await.result.unwrap_err().kind,
        ErrorKind::ResourceConflict
    );

    let stale = Command::UpdateFunctionConfiguration {
        key: key("f"),
        config: config(256),
        expected_revision: Some("stale".into()),
        now_ms: 2,
    };
    assert_eq!(
        h.apply(stale).await.result.unwrap_err().kind,
        ErrorKind::PreconditionFailed
    );
    let fresh = Command::UpdateFunctionConfiguration {
        key: key("f"),
        config: config(256),
        expected_revision: Some(f.revision_id.clone()),
        now_ms: 2,
    };
    assert!(h.apply(fresh).await.result.is_ok());

    let missing = Command::DeleteFunction {
        key: key("nope"),
        version: None,
    };
    assert_eq!(
        h.apply(missing).await.result.unwrap_err().kind,
        ErrorKind::ResourceNotFound
    );

    let no_code = Command::CreateFunction {
        key: key("g"),
        config: config(128),
        code: CodeRef {
            sha256: "bm90LXVwbG9hZGVk".into(),
            size: 1,
        },
        tags: BTreeMap::new(),
        publish: false,
        now_ms: 1,
    };
    assert_eq!(
        h.apply(no_code).await.result.unwrap_err().kind,
        ErrorKind::InvalidParameterValue
    );

    // Reserved concurrency may not eat into the unreserved minimum (1000 - 100).
    let too_much = Command::PutFunctionConcurrency {
        key: key("f"),
        reserved: 901,
    };
    assert_eq!(
        h.apply(too_much).await.result.unwrap_err().kind,
        ErrorKind::InvalidParameterValue
    );
    assert!(h
        .apply(Command::PutFunctionConcurrency {
            key: key("f"),
            reserved: 900
        })
        .await
        .result
        .is_ok());

    // A version referenced by an alias cannot be deleted.
    let publish = Command::PublishVersion {
        key: key("f"),
        description: String::new(),
        expected_code_sha256: None,
        expected_revision: None,
        now_ms: 3,
    };
    assert!(h.apply(publish).await.result.is_ok());
    let alias = Command::CreateAlias {
        key: key("f"),
        name: "live".into(),
        function_version: "1".into(),
        description: String::new(),
        routing: None,
    };
    assert!(h.apply(alias).await.result.is_ok());
    let del_v1 = Command::DeleteFunction {
        key: key("f"),
        version: Some(1),
    };
    assert_eq!(
        h.apply(del_v1).await.result.unwrap_err().kind,
        ErrorKind::ResourceConflict
    );
}

#[tokio::test]
async fn changes_are_recorded_for_watchers() {
    let mut h = Harness::new();
    let mut rx = h.sm.subscribe();
    h.setup().await;
    let first = rx.recv().await.unwrap();
    assert_eq!(first.revision, 1);
    assert_eq!(first.changes[0].key, keys::account(ACCOUNT));
    let history = h.sm.changes_since(1, 100).unwrap().unwrap();
    // Every successful write has a revision on the stream (read-your-writes waits on it);
    // a code chunk (revision 2) changes no entity, so its batch is empty.
    assert_eq!(
        history.iter().map(|b| b.revision).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(history[1].changes.is_empty());
}

#[tokio::test]
async fn snapshot_round_trip_restores_the_same_state() {
    let mut a = Harness::new();
    a.setup().await;
    for i in 0..20 {
        let cmd = Command::CreateFunction {
            key: key(&format!("fn{i}")),
            config: config(128),
            code: code(),
            tags: BTreeMap::new(),
            publish: i % 2 == 0,
            now_ms: 1,
        };
        assert!(a.apply(cmd).await.result.is_ok());
    }
    let snap = a.sm.build_snapshot().await.unwrap();
    let mut b = Harness::new();
    b.index = a.index;
    b.sm.install_snapshot(&snap.meta, snap.snapshot)
        .await
        .unwrap();
    assert_eq!(a.list(""), b.list(""));
    let (applied, _) = b.sm.applied_state().await.unwrap();
    assert_eq!(applied.unwrap().index, a.index);
    // The installed state keeps working: a retried request id is still answered once.
    let retry = b
        .apply_with_id(
            "req-5",
            Command::PutAccount {
                account_id: "111111111111".into(),
            },
        )
        .await;
    assert_eq!(retry.revision, 5, "request ids survive a snapshot");
    // And the current snapshot is reported after install.
    assert!(b.sm.get_current_snapshot().await.unwrap().is_some());
}

/// An edge location's budget is set aside like reserved concurrency: it must fit beside
/// every reservation above the unreserved minimum, and reservations must fit beside it.
#[tokio::test]
async fn edge_budgets_are_checked_against_the_account_limit() {
    let mut h = Harness::new();
    h.setup().await;
    let budget = |location: &str, slots: u32, gateways: &[&str]| Command::PutEdgeBudget {
        budget: nimbus_types::EdgeBudget {
            account_id: ACCOUNT.into(),
            region: REGION.into(),
            location: location.into(),
            slots,
            gateways: gateways.iter().map(|g| g.to_string()).collect(),
        },
    };
    let kind = |r: &Response| r.result.as_ref().err().map(|e| e.kind);
    // The location must exist in the region.
    let r = h.apply(budget("fra1", 10, &["g1"])).await;
    assert_eq!(kind(&r), Some(ErrorKind::ResourceNotFound), "{r:?}");
    for cmd in [
        Command::PutRegion {
            name: REGION.into(),
        },
        Command::PutEdgeLocation {
            region: REGION.into(),
            location: "fra1".into(),
        },
        Command::PutEdgeLocation {
            region: REGION.into(),
            location: "sfo1".into(),
        },
    ] {
        assert!(h.apply(cmd).await.result.is_ok());
    }
    // Its holders must be named, distinct, and each get a slot.
    for bad in [
        budget("fra1", 10, &[]),
        budget("fra1", 10, &["g1", "g1"]),
        budget("fra1", 1, &["g1", "g2"]),
        budget("fra1", 10, &[""]),
    ] {
        let r = h.apply(bad).await;
        assert_eq!(kind(&r), Some(ErrorKind::InvalidParameterValue), "{r:?}");
    }
    // Limit 1000, minimum 100: 900 can be set aside in all.
    let r = h.apply(budget("fra1", 901, &["g1"])).await;
    assert_eq!(kind(&r), Some(ErrorKind::InvalidParameterValue), "{r:?}");
    assert!(h.apply(budget("fra1", 600, &["g1"])).await.result.is_ok());
    // Setting it again replaces it rather than adding to it.
    assert!(h
        .apply(budget("fra1", 500, &["g1", "g2"]))
        .await
        .result
        .is_ok());
    let r = h.apply(budget("sfo1", 401, &["g3"])).await;
    assert_eq!(kind(&r), Some(ErrorKind::InvalidParameterValue), "{r:?}");
    assert!(h.apply(budget("sfo1", 300, &["g3"])).await.result.is_ok());
    // Reservations now have 100 left, and the limit cannot drop below what is set aside.
    let create = Command::CreateFunction {
        key: key("f"),
        config: config(128),
        code: code(),
        tags: BTreeMap::new(),
        publish: false,
        now_ms: 1,
    };
    assert!(h.apply(create).await.result.is_ok());
    let reserve = |n| Command::PutFunctionConcurrency {
        key: key("f"),
        reserved: n,
    };
    let r = h.apply(reserve(101)).await;
    assert_eq!(kind(&r), Some(ErrorKind::InvalidParameterValue), "{r:?}");
    assert!(h.apply(reserve(100)).await.result.is_ok());
    let r = h
        .apply(Command::SetAccountLimits {
            account_id: ACCOUNT.into(),
            region: REGION.into(),
            limits: nimbus_types::RegionLimits {
                concurrent_executions: 999,
                unreserved_minimum: 100,
            },
        })
        .await;
    assert_eq!(kind(&r), Some(ErrorKind::InvalidParameterValue), "{r:?}");
    // 0 slots removes a budget, which frees its share for reservations.
    assert!(h.apply(budget("sfo1", 0, &[])).await.result.is_ok());
    assert!(h.apply(reserve(400)).await.result.is_ok());
    let stored: Vec<(String, u32)> = h
        .list(keys::EDGE_BUDGET)
        .into_iter()
        .filter_map(|(_, e)| match e {
            Entity::EdgeBudget(b) => Some((b.location, b.slots)),
            _ => None,
        })
        .collect();
    assert_eq!(stored, [("fra1".to_string(), 500)]);
}
