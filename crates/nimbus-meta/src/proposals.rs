//! Proposal batching: the writes that arrive while earlier ones are being appended are
//! proposed together as one log entry ([`Command::Batch`]).
//!
//! openraft 0.9's leader appends each `client_write` as its own entry, and the next
//! append waits for the previous one's flush, so under load the leader paid one device
//! flush per write (docs/benchmarks.md, "Where a metadata write goes"). Here at most
//! `in_flight` proposals are outstanding at once; writes that come in meanwhile queue,
//! and the next proposal takes everything queued (up to [`MAX_WRITES`] writes and
//! [`MAX_BYTES`] of commands). One waiting write is proposed as itself, exactly as
//! before batching, so a lone client sees no change in its log entries or latency.
//!
//! Each caller gets its own outcome: the state machine applies a batch's writes as if
//! each were its own entry and returns one [`BatchedOutput`] per write. If the proposal
//! fails (not the leader, shutting down), every write in it gets that error and its
//! caller handles it as it would its own (forwarding to the leader, retrying with the
//! same request id, which makes a write that did commit apply once).

use std::sync::Arc;

use nimbus_telemetry::prometheus_client::metrics::counter::Counter;
use nimbus_telemetry::prometheus_client::metrics::gauge::Gauge;
use nimbus_types::{
    encoded_len, BatchedOutput, BatchedWrite, Command, CommandOutput, ErrorKind, MetaError,
};
use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::raft_types::{Node, NodeId, Raft, Request, Response};

/// Most writes in one batch entry.
pub const MAX_WRITES: usize = 512;
/// Most bytes of encoded commands in one batch entry; a larger write is proposed alone.
pub const MAX_BYTES: usize = 1 << 20;
/// Writes that may wait for a proposal slot before callers are held back.
const QUEUE: usize = 4096;

/// What a proposal fails with: openraft's error for `client_write`.
pub type ProposeError = RaftError<NodeId, ClientWriteError<NodeId, Node>>;

/// One write waiting to be proposed.
struct Waiting {
    request: Request,
    /// The encoded command's size, counted against [`MAX_BYTES`].
    bytes: usize,
    reply: oneshot::Sender<Result<Response, ProposeError>>,
}

/// The handle writes are proposed through; clones share one queue.
#[derive(Clone)]
pub struct Proposer {
    /// `None`: batching is off, and each write is proposed as itself at once.
    queue: Option<mpsc::Sender<Waiting>>,
    /// The proposals that may be outstanding at once (shared with the task).
    slots: Arc<Semaphore>,
    raft: Raft,
    counts: Counts,
}

/// What this node proposed: writes per proposal is the mean batch size.
#[derive(Clone, Default)]
pub struct Counts {
    /// Proposals made (log entries of client writes), whether or not they committed.
    pub proposals: Counter<u64>,
    /// Client writes in those proposals.
    pub writes: Counter<u64>,
    /// Client writes waiting for a proposal slot now: the leader's write backlog.
    pub queued: Gauge<i64>,
}

impl Counts {
    fn proposed(&self, writes: usize) {
        self.proposals.inc();
        self.writes.inc_by(writes as u64);
    }
}

impl Proposer {
    /// Starts the task that proposes queued writes to `raft`, with at most `in_flight`
    /// proposals outstanding. It ends when every handle is dropped. `in_flight` 0 turns
    /// batching off: every write becomes its own entry, with no limit, as before batching
    /// existed (for a rolling upgrade from such a release, whose nodes cannot read a
    /// batch entry).
    pub fn start(raft: Raft, in_flight: usize) -> Self {
        let counts = Counts::default();
        let slots = Arc::new(Semaphore::new(in_flight));
        let queue = (in_flight > 0).then(|| {
            let (queue, rx) = mpsc::channel(QUEUE);
            tokio::spawn(run(raft.clone(), rx, slots.clone(), counts.clone()));
            queue
        });
        Self {
            queue,
            slots,
            raft,
            counts,
        }
    }

    /// What this node has proposed so far (for metrics).
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Proposes `request` and waits until it is applied (or the proposal fails).
    pub async fn propose(&self, request: Request) -> Result<Response, ProposeError> {
        // Batching off, or nothing waiting and a slot free (a lone writer, or a quiet
        // moment): proposed from here as itself, as the task would, without the hops to
        // the task and back.
        let queue = match &self.queue {
            Some(queue) if queue.capacity() < queue.max_capacity() => queue,
            Some(queue) => match self.slots.clone().try_acquire_owned() {
                Ok(_slot) => return self.propose_alone(request).await,
                Err(_) => queue,
            },
            None => return self.propose_alone(request).await,
        };
        let bytes = encoded_len(&request.command);
        let (reply, answer) = oneshot::channel();
        let waiting = Waiting {
            request,
            bytes,
            reply,
        };
        self.counts.queued.inc();
        if queue.send(waiting).await.is_err() {
            self.counts.queued.dec();
            return Err(shut_down());
        }
        answer.await.unwrap_or_else(|_| Err(shut_down()))
    }

    /// Proposes `request` as its own log entry, from the caller's task.
    async fn propose_alone(&self, request: Request) -> Result<Response, ProposeError> {
        self.counts.proposed(1);
        self.raft.client_write(request).await.map(|r| r.data)
    }
}

/// The error a write gets when the proposer is gone (the node is stopping).
fn shut_down() -> ProposeError {
    RaftError::Fatal(openraft::error::Fatal::Stopped)
}

async fn run(raft: Raft, mut rx: mpsc::Receiver<Waiting>, slots: Arc<Semaphore>, counts: Counts) {
    // A write taken from the queue that did not fit in the previous batch.
    let mut carried: Option<Waiting> = None;
    loop {
        let first = match carried.take() {
            Some(w) => w,
            None => match rx.recv().await {
                Some(w) => w,
                None => return,
            },
        };
        // Then wait for a free slot: while every slot is busy, new writes queue up, and
        // the next proposal takes them all. (The slot is taken after a write, not before,
        // so that an idle task holds none and a lone writer proposes directly.)
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        // Counted as waiting until it goes into a proposal (a carried write included).
        counts.queued.dec();
        let mut bytes = first.bytes;
        let mut batch = vec![first];
        while batch.len() < MAX_WRITES {
            match rx.try_recv() {
                Ok(w) if bytes + w.bytes > MAX_BYTES => {
                    carried = Some(w);
                    break;
                }
                Ok(w) => {
                    counts.queued.dec();
                    bytes += w.bytes;
                    batch.push(w);
                }
                Err(_) => break,
            }
        }
        counts.proposed(batch.len());
        let raft = raft.clone();
        tokio::spawn(async move {
            propose(&raft, batch).await;
            drop(slot);
        });
    }
}

/// Proposes `batch` (one write as itself, several as a [`Command::Batch`]) and answers
/// each caller.
async fn propose(raft: &Raft, mut batch: Vec<Waiting>) {
    if batch.len() == 1 {
        let w = batch.pop().expect("one write");
        let result = raft.client_write(w.request).await.map(|r| r.data);
        // A caller that gave up (its timeout) no longer listens; the write still counts.
        let _ = w.reply.send(result);
        return;
    }
    let (writes, replies): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .map(|w| {
            let write = BatchedWrite {
                request_id: w.request.request_id,
                command: w.request.command,
            };
            (write, w.reply)
        })
        .unzip();
    let count = writes.len();
    let entry = Request {
        // Each write carries its own id; the batch's is never looked up.
        request_id: String::new(),
        command: Command::Batch { writes },
    };
    match raft.client_write(entry).await {
        Ok(r) => match r.data.result {
            Ok(CommandOutput::Batch(outputs)) if outputs.len() == count => {
                for (reply, BatchedOutput { revision, result }) in replies.into_iter().zip(outputs)
                {
                    let _ = reply.send(Ok(Response { revision, result }));
                }
            }
            // Cannot happen with this state machine; answered rather than left hanging.
            // (Not printed: outputs can hold a function's sealed environment.)
            _ => {
                let error = MetaError::new(
                    ErrorKind::Service,
                    format!("a batch of {count} writes was not answered write by write"),
                );
                for reply in replies {
                    let _ = reply.send(Ok(Response {
                        revision: r.data.revision,
                        result: Err(error.clone()),
                    }));
                }
            }
        },
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}
