//! The async event queue in the state machine: leases, retries, completion with a
//! destination record, against a model (proptest), and across a snapshot.

use nimbus_types::{
    keys, AsyncEvent, Command, CommandOutput, Entity, ErrorKind, Query, QueryOutput, QueuedEvent,
};
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use proptest::prelude::*;

mod common;
use common::*;

fn event(id: &str, function: &str) -> AsyncEvent {
    AsyncEvent {
        id: id.into(),
        key: key(function),
        qualifier: None,
        client_context: None,
        trace_id: Some("Root=1-5759e988-bd862e3fe1be46a994272793".into()),
        enqueued_ms: 100,
        attempts: 0,
        deferrals: 0,
        not_before_ms: 0,
        lease: None,
    }
}

fn enqueue(id: &str, function: &str, payload: &[u8]) -> Command {
    Command::EnqueueEvent {
        event: event(id, function),
        payload: payload.to_vec(),
    }
}

fn claim(id: &str, owner: &str, now_ms: u64) -> Command {
    Command::ClaimEvent {
        id: id.into(),
        owner: owner.into(),
        now_ms,
        lease_until_ms: now_ms + 1_000,
    }
}

fn retry(id: &str, owner: &str, function_error: bool, not_before_ms: u64) -> Command {
    Command::RetryEvent {
        id: id.into(),
        owner: owner.into(),
        function_error,
        not_before_ms,
    }
}

fn complete(id: &str, destination: Option<(&str, &str)>) -> Command {
    Command::CompleteEvent {
        id: id.into(),
        destination: destination.map(|(dest_id, function)| {
            Box::new(QueuedEvent {
                event: event(dest_id, function),
                payload: format!(r#"{{"requestContext":{{"requestId":"{id}"}}}}"#).into_bytes(),
            })
        }),
    }
}

fn payload(h: &Harness, id: &str) -> Option<Vec<u8>> {
    match h.sm.query(&Query::EventPayload { id: id.into() }).unwrap() {
        QueryOutput::EventPayload(p) => p,
        other => panic!("unexpected {other:?}"),
    }
}

fn queued(h: &Harness) -> Vec<AsyncEvent> {
    h.list(keys::EVENT)
        .into_iter()
        .filter_map(|(_, e)| match e {
            Entity::AsyncEvent(e) => Some(e),
            _ => None,
        })
        .collect()
}

async fn err_kind(h: &mut Harness, cmd: Command) -> ErrorKind {
    let r = h.apply(cmd).await;
    r.result.expect_err("should fail").kind
}

#[tokio::test]
async fn an_event_is_leased_retried_and_completed_with_its_record() {
    let mut h = Harness::new();
    h.setup().await;
    h.create_function("f").await;
    h.create_function("dest").await;

    let first = h.apply(enqueue("e1", "f", br#"{"n":1}"#)).await;
    assert!(first.result.is_ok());
    // Accepting the same event again (a write retried under a new request id) keeps one.
    assert!(h
        .apply(enqueue("e1", "f", br#"{"n":1}"#))
        .await
        .result
        .is_ok());
    assert_eq!(queued(&h).len(), 1);
    assert_eq!(payload(&h, "e1").as_deref(), Some(&br#"{"n":1}"#[..]));
    // The payload is kept out of the record every gateway watches.
    let history = h.sm.changes_since(first.revision, 1).unwrap().unwrap();
    let enqueued = &history[0].changes;
    assert_eq!(enqueued.len(), 1);
    assert_eq!(enqueued[0].key, keys::event("e1"));

    let Ok(CommandOutput::Event(leased)) = h.apply(claim("e1", "gw-a", 200)).await.result else {
        panic!("claim failed")
    };
    assert_eq!(leased.lease.as_ref().unwrap().owner, "gw-a");
    assert_eq!(leased.lease.as_ref().unwrap().until_ms, 1_200);
    // Another gateway waits for the lease to run out; the holder may renew it.
    assert_eq!(
        err_kind(&mut h, claim("e1", "gw-b", 1_199)).await,
        ErrorKind::ResourceConflict
    );
    assert!(h.apply(claim("e1", "gw-a", 1_100)).await.result.is_ok());
    assert_eq!(
        err_kind(&mut h, claim("e1", "gw-b", 2_099)).await,
        ErrorKind::ResourceConflict
    );
    // gw-a crashed: its lease expires and gw-b takes the event over.
    assert!(h.apply(claim("e1", "gw-b", 2_100)).await.result.is_ok());
    assert_eq!(
        err_kind(&mut h, retry("e1", "gw-a", true, 0)).await,
        ErrorKind::ResourceConflict,
        "a gateway that lost its lease cannot put the event back"
    );
    assert!(h
        .apply(retry("e1", "gw-b", true, 5_000))
        .await
        .result
        .is_ok());
    let e = &queued(&h)[0];
    assert_eq!((e.attempts, e.deferrals, e.lease.clone()), (1, 0, None));
    assert_eq!(
        err_kind(&mut h, claim("e1", "gw-a", 4_999)).await,
        ErrorKind::ResourceConflict,
        "not due before its backoff ends"
    );
    assert!(h.apply(claim("e1", "gw-a", 5_000)).await.result.is_ok());
    assert!(h
        .apply(retry("e1", "gw-a", false, 6_000))
        .await
        .result
        .is_ok());
    let e = &queued(&h)[0];
    assert_eq!(
        (e.attempts, e.deferrals),
        (1, 1),
        "a deferral is no attempt"
    );

    assert!(h.apply(claim("e1", "gw-a", 6_000)).await.result.is_ok());
    assert!(h
        .apply(complete("e1", Some(("d1", "dest"))))
        .await
        .result
        .is_ok());
    assert_eq!(payload(&h, "e1"), None);
    let left = queued(&h);
    assert_eq!(left.len(), 1);
    assert_eq!(
        (left[0].id.as_str(), left[0].key.name.as_str()),
        ("d1", "dest")
    );
    assert_eq!(left[0].trace_id, event("e1", "f").trace_id);
    assert!(payload(&h, "d1").is_some());
    // Completing again (another gateway ran it too) queues no second record.
    assert!(h
        .apply(complete("e1", Some(("d2", "dest"))))
        .await
        .result
        .is_ok());
    assert_eq!(queued(&h).len(), 1);
    assert_eq!(
        err_kind(&mut h, claim("e1", "gw-a", 7_000)).await,
        ErrorKind::ResourceNotFound
    );
}

#[tokio::test]
async fn enqueue_errors_carry_lambda_names() {
    let mut h = Harness::new();
    h.setup().await;
    h.create_function("f").await;
    assert_eq!(
        err_kind(&mut h, enqueue("e", "missing", b"{}")).await,
        ErrorKind::ResourceNotFound
    );
    let too_big = vec![b' '; nimbus_types::limits::ASYNC_PAYLOAD_MAX_BYTES + 1];
    assert_eq!(
        err_kind(&mut h, enqueue("e", "f", &too_big)).await,
        ErrorKind::RequestTooLarge
    );
    let just_fits = vec![b' '; nimbus_types::limits::ASYNC_PAYLOAD_MAX_BYTES];
    assert!(h.apply(enqueue("e", "f", &just_fits)).await.result.is_ok());
    assert_eq!(
        err_kind(&mut h, retry("e", "gw", true, 0)).await,
        ErrorKind::ResourceConflict,
        "only a leased event can be put back"
    );
    // A destination deleted since it was configured: the event completes, no record.
    assert!(h
        .apply(complete("e", Some(("d", "deleted-dest"))))
        .await
        .result
        .is_ok());
    assert!(queued(&h).is_empty());
}

#[tokio::test]
async fn queued_events_and_payloads_survive_a_snapshot() {
    let mut a = Harness::new();
    a.setup().await;
    a.create_function("f").await;
    assert!(a.apply(enqueue("e1", "f", b"[1,2,3]")).await.result.is_ok());
    assert!(a.apply(claim("e1", "gw", 10)).await.result.is_ok());
    let snap = a.sm.build_snapshot().await.unwrap();
    let mut b = Harness::new();
    b.index = a.index;
    b.sm.install_snapshot(&snap.meta, snap.snapshot)
        .await
        .unwrap();
    assert_eq!(queued(&a), queued(&b));
    assert_eq!(payload(&b, "e1").as_deref(), Some(&b"[1,2,3]"[..]));
}

/// One step of several gateways working on one event.
#[derive(Debug, Clone)]
enum Op {
    /// Time passes.
    Wait(u64),
    Claim(u8),
    Retry(u8, bool, u64),
    Complete,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u64..1_500).prop_map(Op::Wait),
        (0u8..3).prop_map(Op::Claim),
        (0u8..3, any::<bool>(), 0u64..2_000).prop_map(|(o, f, d)| Op::Retry(o, f, d)),
        Just(Op::Complete),
    ]
}

/// What the event should look like.
#[derive(Debug, Default)]
struct Model {
    done: bool,
    lease: Option<(u8, u64)>,
    not_before: u64,
    attempts: u32,
    deferrals: u32,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// A lease is never held by two gateways at once, attempts are counted exactly, and
    /// the destination gets one record however many gateways complete the event.
    #[test]
    fn leases_are_exclusive_and_records_unique(ops in proptest::collection::vec(op(), 1..60)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let mut h = Harness::new();
            h.setup().await;
            h.create_function("f").await;
            h.create_function("dest").await;
            let accepted = h.apply(enqueue("e", "f", b"{}")).await;
            prop_assert!(accepted.result.is_ok());
            let mut m = Model::default();
            let mut now = 0u64;
            for (i, op) in ops.iter().enumerate() {
                let (cmd, expect_ok) = match op {
                    Op::Wait(dt) => { now += dt; continue; }
                    Op::Claim(o) => {
                        let free = match m.lease {
                            Some((holder, until)) => holder == *o || until <= now,
                            None => m.not_before <= now,
                        };
                        let ok = !m.done && free;
                        if ok { m.lease = Some((*o, now + 1_000)); }
                        (claim("e", &format!("gw-{o}"), now), ok)
                    }
                    Op::Retry(o, fe, delay) => {
                        let ok = !m.done && matches!(m.lease, Some((holder, _)) if holder == *o);
                        if ok {
                            m.lease = None;
                            m.not_before = now + delay;
                            if *fe { m.attempts += 1 } else { m.deferrals += 1 }
                        }
                        (retry("e", &format!("gw-{o}"), *fe, now + delay), ok)
                    }
                    Op::Complete => {
                        m.done = true;
                        (complete("e", Some((&format!("d{i}"), "dest"))), true)
                    }
                };
                let r = h.apply(cmd).await;
                prop_assert_eq!(r.result.is_ok(), expect_ok, "{:?} at {}: {:?}", op, now, r.result);
            }
            let events = queued(&h);
            let source: Vec<_> = events.iter().filter(|e| e.id == "e").collect();
            let records = events.iter().filter(|e| e.key.name == "dest").count();
            if m.done {
                prop_assert!(source.is_empty());
                prop_assert_eq!(records, 1);
                prop_assert_eq!(payload(&h, "e"), None);
            } else {
                prop_assert_eq!(records, 0);
                let e = source[0];
                prop_assert_eq!((e.attempts, e.deferrals, e.not_before_ms), (m.attempts, m.deferrals, m.not_before));
                prop_assert_eq!(
                    e.lease.as_ref().map(|l| (l.owner.clone(), l.until_ms)),
                    m.lease.map(|(o, u)| (format!("gw-{o}"), u))
                );
            }
            Ok(())
        })?;
    }
}
