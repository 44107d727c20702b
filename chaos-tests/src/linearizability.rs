//! A linearizability checker for histories of read/write registers: the Wing–Gong search
//! with Lowe's memoization, run on each key separately (a history is linearizable iff
//! each key's sub-history is, because registers are independent objects; this is the
//! partitioning Knossos and porcupine do, and it keeps each search small).
//!
//! The search walks a linked list of call and return events in time order. At a call it
//! tries to linearize that operation now (if the model allows it and the pair (set of
//! linearized ops, register state) was not already explored); at a return whose call is
//! not yet linearized it backtracks. Operations with an unknown outcome have their return
//! at infinity: a pending write may take effect at any point after its call, or never
//! (linearizing it last is the same as never, since nothing observes it afterwards).

use std::collections::{BTreeMap, HashSet};

use crate::history::{Operation, RegisterOp};

/// The outcome of checking a whole history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No linearization exists for this key's operations.
    Violation {
        key: String,
    },
    /// The search for this key exceeded the step budget (reported, never assumed fine).
    Inconclusive {
        key: String,
    },
}

impl Verdict {
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }
}

/// Search steps allowed per key before giving up as inconclusive.
const STEP_BUDGET: u64 = 50_000_000;

/// Checks every key's sub-history; the first failing key decides the verdict.
pub fn check(history: &[Operation]) -> Verdict {
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in history {
        // A read whose answer never arrived constrains nothing.
        if op.end.is_none() && matches!(op.op, RegisterOp::Read(_)) {
            continue;
        }
        by_key.entry(&op.key).or_default().push(op);
    }
    for (key, ops) in by_key {
        match check_register(&ops) {
            Some(true) => {}
            Some(false) => return Verdict::Violation { key: key.into() },
            None => return Verdict::Inconclusive { key: key.into() },
        }
    }
    Verdict::Linearizable
}

/// One event of the linked list: the call or the return of operation `op`.
#[derive(Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
    /// For a call, the index of its return event.
    partner: usize,
    prev: usize,
    next: usize,
}

/// Wing–Gong–Lowe on one register that starts empty. `None` when over budget.
fn check_register(ops: &[&Operation]) -> Option<bool> {
    let n = ops.len();
    // Sort events by time; at equal times calls come first, so touching operations count
    // as concurrent (the permissive reading of equal timestamps).
    let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
    for (i, o) in ops.iter().enumerate() {
        order.push((o.start, true, i));
        order.push((o.end.unwrap_or(u64::MAX), false, i));
    }
    order.sort_by_key(|&(t, is_call, i)| (t, !is_call, i));
    // Index 0 is the list head sentinel; events are 1..=2n.
    let mut ev = vec![
        Event {
            op: usize::MAX,
            is_call: false,
            partner: 0,
            prev: 0,
            next: 1,
        };
        2 * n + 2
    ];
    let mut ret_pos = vec![0usize; n];
    for (pos, &(_, is_call, i)) in order.iter().enumerate() {
        let idx = pos + 1;
        ev[idx] = Event {
            op: i,
            is_call,
            partner: 0,
            prev: idx - 1,
            next: if idx == 2 * n { 0 } else { idx + 1 },
        };
        if !is_call {
            ret_pos[i] = idx;
        }
    }
    if n == 0 {
        return Some(true);
    }
    ev[0].next = 1;
    for idx in 1..=2 * n {
        if ev[idx].is_call {
            ev[idx].partner = ret_pos[ev[idx].op];
        }
    }

    let words = n.div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut state: Option<&str> = None;
    let mut cache: HashSet<(Vec<u64>, Option<String>)> = HashSet::new();
    let mut stack: Vec<(usize, Option<&str>)> = Vec::new();
    let mut entry = ev[0].next;
    let mut steps = 0u64;
    while ev[0].next != 0 {
        steps += 1;
        if steps > STEP_BUDGET {
            return None;
        }
        let e = ev[entry];
        if e.is_call {
            let op = ops[e.op];
            let next_state = match &op.op {
                RegisterOp::Write(v) => Some(Some(v.as_str())),
                RegisterOp::Read(seen) if seen.as_deref() == state => Some(state),
                RegisterOp::Read(_) => None,
            };
            if let Some(next_state) = next_state {
                let mut set = linearized.clone();
                set[e.op / 64] |= 1 << (e.op % 64);
                if cache.insert((set.clone(), next_state.map(str::to_owned))) {
                    stack.push((entry, state));
                    state = next_state;
                    linearized = set;
                    lift(&mut ev, entry);
                    entry = ev[0].next;
                    continue;
                }
            }
            entry = e.next;
        } else {
            // A return whose call is still in the list: that operation had to take effect
            // before now, and under the current choices it cannot. Undo the last choice.
            let Some((call, prev_state)) = stack.pop() else {
                return Some(false);
            };
            state = prev_state;
            let op = ev[call].op;
            linearized[op / 64] &= !(1 << (op % 64));
            unlift(&mut ev, call);
            entry = ev[call].next;
        }
    }
    Some(true)
}

/// Removes a call and its return from the list (their links stay, for `unlift`).
fn lift(ev: &mut [Event], call: usize) {
    let ret = ev[call].partner;
    let (p, nx) = (ev[call].prev, ev[call].next);
    ev[p].next = nx;
    ev[nx].prev = p;
    let (p, nx) = (ev[ret].prev, ev[ret].next);
    ev[p].next = nx;
    ev[nx].prev = p;
}

/// Puts a lifted call and its return back, in the reverse order of `lift`.
fn unlift(ev: &mut [Event], call: usize) {
    let ret = ev[call].partner;
    let (p, nx) = (ev[ret].prev, ev[ret].next);
    ev[p].next = ret;
    ev[nx].prev = ret;
    let (p, nx) = (ev[call].prev, ev[call].next);
    ev[p].next = call;
    ev[nx].prev = call;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::RegisterOp::{Read, Write};

    fn op(key: &str, o: RegisterOp, start: u64, end: Option<u64>) -> Operation {
        Operation {
            client: 0,
            key: key.into(),
            op: o,
            start,
            end,
        }
    }
    fn w(v: &str, s: u64, e: u64) -> Operation {
        op("k", Write(v.into()), s, Some(e))
    }
    fn r(v: Option<&str>, s: u64, e: u64) -> Operation {
        op("k", Read(v.map(Into::into)), s, Some(e))
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let h = [
            r(None, 0, 1),
            w("a", 2, 3),
            r(Some("a"), 4, 5),
            w("b", 6, 7),
            r(Some("b"), 8, 9),
        ];
        assert_eq!(check(&h), Verdict::Linearizable);
    }

    #[test]
    fn concurrent_read_may_see_old_or_new_value() {
        for seen in [None, Some("a")] {
            let h = [w("a", 0, 10), r(seen, 5, 6)];
            assert!(check(&h).is_linearizable(), "{seen:?}");
        }
    }

    #[test]
    fn stale_read_after_acknowledged_write_is_rejected() {
        let h = [w("a", 0, 1), w("b", 2, 3), r(Some("a"), 4, 5)];
        assert_eq!(check(&h), Verdict::Violation { key: "k".into() });
    }

    #[test]
    fn read_of_a_value_never_written_is_rejected() {
        let h = [w("a", 0, 1), r(Some("z"), 2, 3)];
        assert!(!check(&h).is_linearizable());
    }

    #[test]
    fn lost_write_is_rejected() {
        // The write was acknowledged, then a later read finds the register empty.
        let h = [w("a", 0, 1), r(None, 2, 3)];
        assert!(!check(&h).is_linearizable());
    }

    #[test]
    fn values_must_not_flip_back_between_sequential_reads() {
        // Two concurrent writes; the readers see a, then b, then a again: no single
        // order of the two writes explains that.
        let h = [
            w("a", 0, 100),
            w("b", 0, 100),
            r(Some("a"), 10, 20),
            r(Some("b"), 30, 40),
            r(Some("a"), 50, 60),
        ];
        assert!(!check(&h).is_linearizable());
        // a then b alone is fine.
        assert!(check(&h[..4]).is_linearizable());
    }

    #[test]
    fn pending_write_may_or_may_not_take_effect() {
        let pending = op("k", Write("a".into()), 0, None);
        assert!(check(&[pending.clone(), r(None, 5, 6)]).is_linearizable());
        assert!(check(&[pending.clone(), r(Some("a"), 5, 6)]).is_linearizable());
        // ...but once seen it cannot be un-seen.
        assert!(!check(&[pending, r(Some("a"), 5, 6), r(None, 7, 8)]).is_linearizable());
    }

    #[test]
    fn pending_write_cannot_take_effect_before_its_call() {
        let h = [r(Some("a"), 0, 1), op("k", Write("a".into()), 2, None)];
        assert!(!check(&h).is_linearizable());
    }

    #[test]
    fn read_without_answer_is_ignored() {
        let h = [w("a", 0, 1), op("k", Read(Some("zz".into())), 2, None)];
        assert!(check(&h).is_linearizable());
    }

    #[test]
    fn keys_are_checked_independently_and_the_bad_one_is_named() {
        let mut h = vec![w("a", 0, 1), r(Some("a"), 2, 3)];
        h.push(op("other", Write("x".into()), 0, Some(1)));
        h.push(op("other", Read(Some("y".into())), 2, Some(3)));
        assert_eq!(
            check(&h),
            Verdict::Violation {
                key: "other".into()
            }
        );
    }

    #[test]
    fn equal_timestamps_count_as_concurrent() {
        // The read starts exactly when the write returns: either order is allowed.
        let h = [w("a", 0, 5), r(None, 5, 6)];
        assert!(check(&h).is_linearizable());
    }

    /// Histories built from a real register: each op takes effect at a distinct instant
    /// inside its own [start, end] interval, so the result must always be linearizable;
    /// corrupting one op into a read of a value nobody wrote must always be rejected.
    mod generated {
        use super::*;
        use proptest::prelude::*;

        fn history(spec: &[(bool, u8, u16, u16)]) -> Vec<Operation> {
            let mut reg: Option<String> = None;
            let mut out = Vec::new();
            for (i, &(is_write, val, before, after)) in spec.iter().enumerate() {
                // Op i takes effect at 1000*(i+1); its interval overlaps up to ~2
                // neighbours on either side.
                let point = 1000 * (i as u64 + 1);
                let start = point - u64::from(before % 2500).min(point);
                let end = point + u64::from(after % 2500);
                let o = if is_write {
                    let v = format!("v{val}");
                    reg = Some(v.clone());
                    Write(v)
                } else {
                    Read(reg.clone())
                };
                out.push(Operation {
                    client: i,
                    key: "k".into(),
                    op: o,
                    start,
                    end: Some(end),
                });
            }
            out
        }

        fn spec() -> impl Strategy<Value = Vec<(bool, u8, u16, u16)>> {
            proptest::collection::vec((any::<bool>(), 0u8..4, any::<u16>(), any::<u16>()), 1..40)
        }

        proptest! {
            #[test]
            fn histories_from_a_real_register_are_accepted(spec in spec()) {
                prop_assert!(check(&history(&spec)).is_linearizable());
            }

            #[test]
            fn a_read_of_a_never_written_value_is_always_rejected(spec in spec(), which in any::<usize>()) {
                let mut h = history(&spec);
                let i = which % h.len();
                h[i].op = Read(Some("never-written".into()));
                h[i].end = Some(h[i].end.unwrap_or(h[i].start + 1));
                prop_assert!(!check(&h).is_linearizable());
            }
        }
    }
}
