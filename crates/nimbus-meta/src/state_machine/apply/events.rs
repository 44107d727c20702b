//! The async event queue: accepted `Event` invocations, leased to one gateway at a time
//! while they run, retried, and finally removed with their destination record queued in
//! the same entry. Deterministic like the rest of `apply`: every time comes in the command.

use nimbus_types::command::{Command, CommandOutput, QueuedEvent};
use nimbus_types::limits::ASYNC_PAYLOAD_MAX_BYTES;
use nimbus_types::{keys, AsyncEvent, Entity, ErrorKind, EventLease, MetaError};

use crate::state_machine::cf;
use crate::state_machine::tx::EntryTx;

fn get_event(tx: &EntryTx<'_>, id: &str) -> Result<Option<AsyncEvent>, MetaError> {
    match tx.get(&keys::event(id))? {
        Some(Entity::AsyncEvent(e)) => Ok(Some(e)),
        _ => Ok(None),
    }
}

fn require_event(tx: &EntryTx<'_>, id: &str) -> Result<AsyncEvent, MetaError> {
    get_event(tx, id)?.ok_or_else(|| MetaError::not_found(format!("Event {id} is not queued")))
}

fn enqueue(tx: &mut EntryTx<'_>, event: &AsyncEvent, payload: &[u8]) -> Result<(), MetaError> {
    if payload.len() > ASYNC_PAYLOAD_MAX_BYTES {
        return Err(MetaError::new(
            ErrorKind::RequestTooLarge,
            format!(
                "{} byte payload is too large for the Event invocation type (limit {ASYNC_PAYLOAD_MAX_BYTES} bytes)",
                payload.len()
            ),
        ));
    }
    if !tx.exists(&keys::function(&event.key))? {
        return Err(MetaError::not_found(format!(
            "Function not found: {}",
            event.key.arn()
        )));
    }
    let key = keys::event(&event.id);
    // The same event accepted twice (a retried write under another request id) stays one.
    if tx.exists(&key)? {
        return Ok(());
    }
    let event = AsyncEvent {
        lease: None,
        ..event.clone()
    };
    tx.put_raw(
        cf::EVENT_PAYLOAD,
        event.id.clone().into_bytes(),
        payload.to_vec(),
    );
    tx.put(key, Entity::AsyncEvent(event));
    Ok(())
}

/// Applies one of the event commands.
pub(crate) fn apply(tx: &mut EntryTx<'_>, cmd: &Command) -> Result<CommandOutput, MetaError> {
    match cmd {
        Command::EnqueueEvent { event, payload } => {
            enqueue(tx, event, payload).map(|_| CommandOutput::Done)
        }
        Command::ClaimEvent {
            id,
            owner,
            now_ms,
            lease_until_ms,
        } => claim(tx, id, owner, *now_ms, *lease_until_ms),
        Command::RetryEvent {
            id,
            owner,
            function_error,
            not_before_ms,
        } => retry(tx, id, owner, *function_error, *not_before_ms),
        Command::CompleteEvent { id, destination } => complete(tx, id, destination.as_deref()),
        _ => Err(super::misrouted("an async event")),
    }
}

fn retry(
    tx: &mut EntryTx<'_>,
    id: &str,
    owner: &str,
    function_error: bool,
    not_before_ms: u64,
) -> Result<CommandOutput, MetaError> {
    let mut e = require_event(tx, id)?;
    check_owner(&e, owner)?;
    if function_error {
        e.attempts += 1;
    } else {
        e.deferrals += 1;
    }
    e.not_before_ms = not_before_ms;
    e.lease = None;
    tx.put(keys::event(id), Entity::AsyncEvent(e));
    Ok(CommandOutput::Done)
}

fn complete(
    tx: &mut EntryTx<'_>,
    id: &str,
    destination: Option<&QueuedEvent>,
) -> Result<CommandOutput, MetaError> {
    if get_event(tx, id)?.is_none() {
        return Ok(CommandOutput::Done);
    }
    tx.delete(keys::event(id));
    tx.delete_raw(cf::EVENT_PAYLOAD, id.as_bytes().to_vec());
    if let Some(d) = destination {
        // A destination deleted since it was configured: the record has nowhere to go,
        // as on Lambda. The event is complete all the same.
        if tx.exists(&keys::function(&d.event.key))? {
            enqueue(tx, &d.event, &d.payload)?;
        }
    }
    Ok(CommandOutput::Done)
}

fn check_owner(e: &AsyncEvent, owner: &str) -> Result<(), MetaError> {
    match &e.lease {
        Some(l) if l.owner == owner => Ok(()),
        Some(l) => Err(MetaError::conflict(format!(
            "Event {} is leased to {}",
            e.id, l.owner
        ))),
        None => Err(MetaError::conflict(format!("Event {} is not leased", e.id))),
    }
}

fn claim(
    tx: &mut EntryTx<'_>,
    id: &str,
    owner: &str,
    now_ms: u64,
    lease_until_ms: u64,
) -> Result<CommandOutput, MetaError> {
    let mut e = require_event(tx, id)?;
    match &e.lease {
        // Renewal (or a restarted gateway taking its own lease back).
        Some(l) if l.owner == owner => {}
        Some(l) if l.until_ms > now_ms => {
            return Err(MetaError::conflict(format!(
                "Event {id} is leased to {} until {}",
                l.owner, l.until_ms
            )))
        }
        _ if e.not_before_ms > now_ms => {
            return Err(MetaError::conflict(format!(
                "Event {id} is not due before {}",
                e.not_before_ms
            )))
        }
        _ => {}
    }
    e.lease = Some(EventLease {
        owner: owner.to_string(),
        until_ms: lease_until_ms,
    });
    tx.put(keys::event(id), Entity::AsyncEvent(e.clone()));
    Ok(CommandOutput::Event(Box::new(e)))
}
