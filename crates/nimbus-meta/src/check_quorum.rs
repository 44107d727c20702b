//! Check-quorum: a leader that no quorum answers stops leading in the one way it can.
//!
//! A leader cut off one way (it can send, not receive) keeps its followers from electing
//! anyone, since its heartbeats still reach them, while it cannot commit anything, since
//! their answers never reach it: without this, the cluster is unavailable for as long as
//! the fault lasts (docs/reliability.md). openraft 0.9 has no check-quorum, and no call
//! that makes a leader step down; its `millis_since_quorum_ack` metric is only reported
//! when something else changes, so it goes stale exactly when it matters.
//!
//! So Nimbus keeps its own account, in the transport ([`crate::network`]) that sees every
//! answer: when each peer last answered an `AppendEntries` or `InstallSnapshot`. A leader
//! that has not heard from a quorum of its voters (counting itself) for longer than the
//! upper election timeout has *lost its quorum* ([`quorum_heard`] is the rule):
//! - client calls that only a leader serves are refused at once, with the status a node
//!   without a leader gives, and those waiting on a quorum end then ([`CheckQuorum::until_lost`]),
//!   so clients move to another node instead of waiting out a write that cannot commit;
//! - the transport goes *silent*: it returns `Unreachable` without sending, so the
//!   followers stop hearing heartbeats, time out and elect a new leader.
//!
//! Silence only withholds messages, which Raft tolerates from any network, so it cannot
//! cost safety. It ends when the term changes (the node hears of a higher term after the
//! heal, or wins a new election), or when a quorum answers again: while silent, the
//! transport asks each peer for its status (`NodeStatus`, a call outside Raft, so it
//! renews no follower's view of the leader) and counts an answer as hearing from it. A
//! leader cut off one way gets no answers and stays silent; once the fault heals, it talks
//! again at once, which matters when the followers could not elect in the meantime (they
//! may still be receiving what the leader sent before it went silent, held up in TCP
//! while no acknowledgement came back), and where nobody else can be elected at all, e.g.
//! a one-node cluster growing to two whose new voter was down: the joint configuration
//! needs that voter, which has no log to stand with until the leader sends it one.
//!
//! Not flapping a healthy but slow leader: the bound is the *upper* election timeout, and
//! the moment a node became leader counts as an answer from every voter, so it never
//! loses its quorum in its first timeout.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use openraft::metrics::RaftServerMetrics;
use openraft::ServerState;

use crate::raft_types::{Node, NodeId};
use crate::sync::lock;

/// One node's check-quorum state, shared by its transport and its services.
pub struct CheckQuorum {
    me: NodeId,
    /// How long a leader may go without a quorum's answer: the upper election timeout.
    timeout: Duration,
    state: std::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The term this node leads, from its metrics; `None` while it does not lead.
    leading: Option<Leading>,
    /// When each peer last answered a replication call or a status probe, in any term.
    answered: HashMap<NodeId, Instant>,
    /// The term in which this node, as leader, went silent.
    silent_in: Option<u64>,
}

struct Leading {
    term: u64,
    /// When this node was first seen leading `term`.
    since: Instant,
    /// Its voter sets (two during a joint configuration; a quorum of each is needed).
    voters: Vec<BTreeSet<NodeId>>,
}

impl CheckQuorum {
    /// `timeout` is the upper bound of the election timeout.
    pub fn new(me: NodeId, timeout: Duration) -> Self {
        Self {
            me,
            timeout,
            state: Default::default(),
        }
    }

    /// How long a leader may go without a quorum's answer.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Takes in this node's server metrics: whether it leads, in which term, with which
    /// voters. Called on every change of them (not of the log's progress, which moves
    /// with every write).
    pub fn observe(&self, m: &RaftServerMetrics<NodeId, Node>) {
        let now = Instant::now();
        let term = m.vote.leader_id().get_term();
        let mut s = lock(&self.state);
        if m.state == ServerState::Leader && m.current_leader == Some(self.me) {
            let since = match &s.leading {
                Some(l) if l.term == term => l.since,
                _ => now,
            };
            s.leading = Some(Leading {
                term,
                since,
                voters: m.membership_config.membership().get_joint_config().clone(),
            });
        } else {
            s.leading = None;
        }
        if s.silent_in.is_some_and(|t| t != term) {
            tracing::info!(
                term,
                "check-quorum: the term moved on; this node talks to its peers again"
            );
            s.silent_in = None;
        }
    }

    /// `peer` answered a replication call or a status probe at `at`.
    pub fn answered(&self, peer: NodeId, at: Instant) {
        let mut s = lock(&self.state);
        let last = s.answered.entry(peer).or_insert(at);
        *last = (*last).max(at);
    }

    /// Has this node, leading in `term`, lost its quorum at `now`? Never when it does not
    /// lead `term` (by its metrics).
    pub fn lost_quorum(&self, term: u64, now: Instant) -> bool {
        lost(&lock(&self.state), self.me, term, now, self.timeout)
    }

    /// Resolves once this node, leading `term`, has lost its quorum (looked at every
    /// quarter timeout), so that a call waiting on a quorum can end then; never while it
    /// keeps its quorum or does not lead `term`, so race it with the call.
    pub async fn until_lost(&self, term: u64) {
        while !self.lost_quorum(term, Instant::now()) {
            tokio::time::sleep(self.timeout / 4).await;
        }
    }

    /// Must this node, leading in `term`, stay silent at `now`? A leader that lost its
    /// quorum goes silent here; a silent one talks again once a quorum answers (its
    /// status probes) or the term changes.
    pub fn silenced(&self, term: u64, now: Instant) -> bool {
        let mut s = lock(&self.state);
        let lost = lost(&s, self.me, term, now, self.timeout);
        match (s.silent_in == Some(term), lost) {
            (true, true) => true,
            (false, false) => false,
            (true, false) => {
                tracing::info!(
                    term,
                    "check-quorum: a quorum answers again; replicating again"
                );
                s.silent_in = None;
                false
            }
            (false, true) => {
                tracing::warn!(
                    term,
                    timeout_ms = self.timeout.as_millis() as u64,
                    "check-quorum: no quorum of voters answered within the timeout; this \
                     leader stops replicating until one does, so that the others elect a \
                     new one"
                );
                s.silent_in = Some(term);
                true
            }
        }
    }

    /// Since when this node has been seen leading `term`, if it leads it (the lease
    /// ledger's warm-up counts from this moment).
    pub fn leading_since(&self, term: u64) -> Option<Instant> {
        match &lock(&self.state).leading {
            Some(l) if l.term == term => Some(l.since),
            _ => None,
        }
    }

    /// Is this node silent as leader of `term`?
    pub fn is_silent(&self, term: u64) -> bool {
        lock(&self.state).silent_in == Some(term)
    }
}

fn lost(s: &State, me: NodeId, term: u64, now: Instant, timeout: Duration) -> bool {
    s.leading
        .as_ref()
        .filter(|l| l.term == term)
        .is_some_and(|l| !quorum_heard(&l.voters, me, l.since, &s.answered, now, timeout))
}

/// Has a quorum of every voter set been heard from within `timeout` before `now`? `me`
/// always counts as heard; a peer counts if it answered within the timeout, and becoming
/// leader (`since`) counts as an answer from everyone. No voters (membership not known
/// yet) is no reason to go silent.
pub fn quorum_heard(
    voters: &[BTreeSet<NodeId>],
    me: NodeId,
    since: Instant,
    answered: &HashMap<NodeId, Instant>,
    now: Instant,
    timeout: Duration,
) -> bool {
    let heard = |id: &NodeId| {
        *id == me || {
            let last = answered.get(id).map_or(since, |a| (*a).max(since));
            now.saturating_duration_since(last) <= timeout
        }
    };
    voters
        .iter()
        .all(|set| set.iter().filter(|id| heard(id)).count() * 2 > set.len())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use openraft::{Membership, StoredMembership, Vote};

    use super::*;

    const T: Duration = Duration::from_millis(1200);
    const MS: Duration = Duration::from_millis(1);

    fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    #[test]
    fn the_first_timeout_after_winning_is_never_lost() {
        let since = Instant::now();
        let three = [set(&[1, 2, 3])];
        // No answers at all: heard up to the timeout, not after it.
        assert!(quorum_heard(
            &three,
            1,
            since,
            &HashMap::new(),
            since + T,
            T
        ));
        assert!(!quorum_heard(
            &three,
            1,
            since,
            &HashMap::new(),
            since + T + MS,
            T
        ));
        // Answers from before the term count for no more than its start.
        let old = HashMap::from([(2, since - T), (3, since - T)]);
        assert!(quorum_heard(&three, 1, since, &old, since + T, T));
        assert!(!quorum_heard(&three, 1, since, &old, since + 2 * T, T));
    }

    #[test]
    fn one_peer_of_three_is_a_quorum_with_the_leader() {
        let since = Instant::now();
        let now = since + 10 * T;
        let three = [set(&[1, 2, 3])];
        let one = HashMap::from([(2, now - T)]);
        assert!(quorum_heard(&three, 1, since, &one, now, T));
        let stale = HashMap::from([(2, now - T - MS), (3, now - 5 * T)]);
        assert!(!quorum_heard(&three, 1, since, &stale, now, T));
        // Five voters need two peers.
        let five = [set(&[1, 2, 3, 4, 5])];
        assert!(!quorum_heard(&five, 1, since, &one, now, T));
        let two = HashMap::from([(2, now), (5, now - T)]);
        assert!(quorum_heard(&five, 1, since, &two, now, T));
        // Learners' answers (ids outside the voter sets) count for nothing.
        let learners = HashMap::from([(7, now), (8, now)]);
        assert!(!quorum_heard(&three, 1, since, &learners, now, T));
    }

    #[test]
    fn a_joint_configuration_needs_a_quorum_of_each_half() {
        let since = Instant::now();
        let now = since + 10 * T;
        // {1,2,3} → {1,4,5}: node 2 answering is a quorum of the old half only.
        let joint = [set(&[1, 2, 3]), set(&[1, 4, 5])];
        let old_half = HashMap::from([(2, now)]);
        assert!(!quorum_heard(&joint, 1, since, &old_half, now, T));
        let both = HashMap::from([(2, now), (4, now)]);
        assert!(quorum_heard(&joint, 1, since, &both, now, T));
        // A leader outside the new half counts only in the old one.
        let leaving = [set(&[1, 2, 3]), set(&[2, 3, 4])];
        let one = HashMap::from([(2, now)]);
        assert!(!quorum_heard(&leaving, 1, since, &one, now, T));
        let two = HashMap::from([(2, now), (3, now)]);
        assert!(quorum_heard(&leaving, 1, since, &two, now, T));
        // A single voter is its own quorum; no voters known is no reason either.
        assert!(quorum_heard(
            &[set(&[1])],
            1,
            since,
            &HashMap::new(),
            now,
            T
        ));
        assert!(quorum_heard(&[], 1, since, &HashMap::new(), now, T));
    }

    /// Metrics of node 1 in `term`, leading it with voters {1,2,3} or following.
    fn metrics(term: u64, leads: bool) -> RaftServerMetrics<NodeId, Node> {
        let leader = if leads { 1 } else { 2 };
        let nodes: BTreeMap<NodeId, Node> = (1..=3).map(|id| (id, Node::default())).collect();
        let voters = Membership::new(vec![set(&[1, 2, 3])], nodes);
        RaftServerMetrics {
            id: 1,
            vote: Vote::new_committed(term, leader),
            state: if leads {
                ServerState::Leader
            } else {
                ServerState::Follower
            },
            current_leader: Some(leader),
            membership_config: Arc::new(StoredMembership::new(None, voters)),
        }
    }

    /// Node 1's check-quorum, told it leads term 4, and a moment just after.
    fn leading_term_4() -> (CheckQuorum, Instant) {
        let cq = CheckQuorum::new(1, T);
        cq.observe(&metrics(4, true));
        (cq, Instant::now())
    }

    #[test]
    fn silence_comes_a_timeout_after_the_last_quorum_and_lasts_while_no_one_answers() {
        let (cq, won) = leading_term_4();
        assert!(!cq.lost_quorum(4, won) && !cq.silenced(4, won));
        // Node 2 answers; a timeout after its last answer the quorum is lost.
        cq.answered(2, won + T);
        assert!(!cq.silenced(4, won + 2 * T));
        let lost_at = won + 2 * T + 2 * MS;
        assert!(cq.lost_quorum(4, lost_at));
        assert!(!cq.lost_quorum(3, lost_at), "not the term it leads");
        assert!(!cq.is_silent(4));
        assert!(cq.silenced(4, lost_at) && cq.is_silent(4));
        // Nothing answers: silent however long it lasts.
        assert!(cq.silenced(4, lost_at + 100 * T));
    }

    #[test]
    fn a_quorum_answering_again_ends_the_silence() {
        let (cq, won) = leading_term_4();
        let lost_at = won + 2 * T;
        assert!(cq.silenced(4, lost_at));
        // Node 3 answers a status probe: with the leader, a quorum of three.
        cq.answered(3, lost_at + T);
        assert!(!cq.silenced(4, lost_at + T + MS) && !cq.is_silent(4));
        // And silent again a timeout after that answer if no other comes.
        assert!(cq.silenced(4, lost_at + 2 * T + 2 * MS));
    }

    #[test]
    fn a_new_term_ends_the_silence_whoever_leads_it() {
        let (cq, won) = leading_term_4();
        assert!(cq.silenced(4, won + 2 * T));
        // Told of term 5 by a new leader: following, nothing to decide or withhold.
        cq.observe(&metrics(5, false));
        assert!(!cq.silenced(4, won + 2 * T) && !cq.silenced(5, won + 2 * T));
        assert!(!cq.lost_quorum(5, won + 9 * T));
        // Leading term 6: a fresh start, heard for a timeout from when it was seen.
        let before = Instant::now();
        cq.observe(&metrics(6, true));
        let won6 = Instant::now();
        assert!(!cq.silenced(6, before + T));
        cq.observe(&metrics(6, true)); // a later update of the same term keeps the start
        assert!(cq.silenced(6, won6 + T + 2 * MS));
    }

    #[test]
    fn leading_since_is_when_the_term_was_first_seen_led() {
        let before = Instant::now();
        let (cq, won) = leading_term_4();
        let since = cq.leading_since(4).expect("leads term 4");
        assert!(before <= since && since <= won);
        cq.observe(&metrics(4, true));
        assert_eq!(
            cq.leading_since(4),
            Some(since),
            "the same term keeps its start"
        );
        assert_eq!(cq.leading_since(3), None, "not the term it leads");
        cq.observe(&metrics(5, false));
        assert_eq!(cq.leading_since(4), None, "following now");
        assert_eq!(cq.leading_since(5), None);
        cq.observe(&metrics(6, true));
        assert!(cq.leading_since(6).is_some_and(|s| s >= won));
    }
}
