//! The state machine against a simple model (proptest), retries, and snapshot round trips.

use std::collections::{BTreeMap, BTreeSet};

use nimbus_meta::raft_types::Response;
use nimbus_types::{keys, CodeRef, Command, CommandOutput, Entity, ErrorKind, Qualifier};
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn apply_matches_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let mut h = Harness::new();
            h.setup().await;
            let mut model: BTreeMap<u8, ModelFn> = BTreeMap::new();
            // (request id, response) of every operation so far, for retries.
            let mut sent: Vec<(String, Command, Response)> = Vec::new();
            for (i, op) in ops.iter().enumerate() {
                if let Op::Retry(j) = op {
                    if sent.is_empty() { continue; }
                    let (id, cmd, first) = sent[*j % sent.len()].clone();
                    let again = h.apply_with_id(&id, cmd).await;
                    prop_assert_eq!(&again, &first, "a retried request id must return the first response");
                    continue;
                }
                let id = format!("op-{i}");
                let cmd = to_command(op);
                let resp = h.apply_with_id(&id, cmd.clone()).await;
                let expect_ok = model_apply(&mut model, op);
                prop_assert_eq!(resp.result.is_ok(), expect_ok, "op {:?} gave {:?}", op, resp.result);
                sent.push((id, cmd, resp));
            }
            // Final state equals the model.
            let functions: BTreeMap<String, u32> = h.list(keys::FUNCTION).into_iter().filter_map(|(_, e)| match e {
                Entity::Function(f) => Some((f.key.name, f.config.memory_mb)),
                _ => None,
            }).collect();
            let expected: BTreeMap<String, u32> = model.iter().map(|(f, m)| (format!("f{f}"), m.memory)).collect();
            prop_assert_eq!(functions, expected);
            for (f, mf) in &model {
                let versions: Vec<u32> = h.list(&keys::versions_of(&key(&format!("f{f}")))).into_iter().filter_map(|(_, e)| match e {
                    Entity::Version(v) => Some(v.config.memory_mb),
                    _ => None,
                }).collect();
                prop_assert_eq!(&versions, &mf.versions);
                let aliases: BTreeSet<String> = h.list(&keys::aliases_of(&key(&format!("f{f}")))).into_iter().map(|(k, _)| k.rsplit('/').next().unwrap().to_string()).collect();
                let expected: BTreeSet<String> = mf.aliases.iter().map(|a| format!("a{a}")).collect();
                prop_assert_eq!(aliases, expected);
            }
            Ok(())
        })?;
    }
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
