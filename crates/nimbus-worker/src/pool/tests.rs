//! The pool's policy and guards, driven with plain structs in place of sandboxes, on
//! paused tokio time: every duration below is advanced, never slept.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{now, Acquire, Busy, Pool, Pooled, Starting};
use crate::function::FunctionKey;

/// An environment as the pool sees it.
#[derive(Debug)]
struct FakeEnv {
    /// Which one it is, to tell reuse from a new start.
    id: u32,
    key: FunctionKey,
    memory_mb: u64,
    last_used: Instant,
    /// Shared with the test, which can "kill" the runtime while the pool holds it.
    alive: Arc<AtomicBool>,
    from_shell: bool,
}

impl FakeEnv {
    fn new(id: u32, key: &FunctionKey, memory_mb: u64) -> Self {
        FakeEnv {
            id,
            key: key.clone(),
            memory_mb,
            last_used: now(),
            alive: Arc::new(AtomicBool::new(true)),
            from_shell: false,
        }
    }

    /// What `ExecutionEnvironment::invoke` does at its end.
    fn finish_invocation(&mut self) {
        self.last_used = now();
    }
}

impl Pooled for FakeEnv {
    fn key(&self) -> &FunctionKey {
        &self.key
    }
    fn memory_mb(&self) -> u64 {
        self.memory_mb
    }
    fn last_used(&self) -> Instant {
        self.last_used
    }
    fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }
    fn made_from_shell(&self) -> bool {
        self.from_shell
    }
}

fn key(name: &str, revision: &str) -> FunctionKey {
    account_key("111111111111", name, revision)
}

fn account_key(account: &str, name: &str, revision: &str) -> FunctionKey {
    FunctionKey {
        account_id: account.into(),
        function_name: name.into(),
        version: "$LATEST".into(),
        revision: revision.into(),
    }
}

const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// The reservation a cold acquire returns; fails the test on anything else.
fn cold<'a>(pool: &'a Pool<FakeEnv>, key: &FunctionKey, mb: u64) -> Starting<'a, FakeEnv> {
    match pool.acquire(key, mb, true) {
        Acquire::Cold { slot, evicted } => {
            assert!(evicted.is_empty(), "unexpected eviction: {evicted:?}");
            slot
        }
        Acquire::Warm(env) => panic!("expected a cold start, got warm {}", env.id),
        Acquire::NoCapacity { free_mb } => {
            panic!("expected a cold start, no capacity ({free_mb} MB free)")
        }
        Acquire::OverShare { .. } => panic!("expected a cold start, over its share"),
    }
}

/// The warm environment an acquire returns; fails the test on anything else.
fn warm<'a>(pool: &'a Pool<FakeEnv>, key: &FunctionKey, mb: u64) -> Busy<'a, FakeEnv> {
    match pool.acquire(key, mb, true) {
        Acquire::Warm(env) => env,
        Acquire::Cold { .. } => panic!("expected a warm environment, got a cold start"),
        Acquire::NoCapacity { free_mb } => panic!("expected warm, no capacity ({free_mb} MB free)"),
        Acquire::OverShare { .. } => panic!("expected warm, over its share"),
    }
}

/// Starts one environment of `key` per id, all at once (so each is a cold start), and
/// finishes an invocation on each in that order: the last id is the most recently used.
fn start_idle(pool: &Pool<FakeEnv>, key: &FunctionKey, mb: u64, ids: &[u32]) {
    let busy: Vec<Busy<'_, FakeEnv>> = ids
        .iter()
        .map(|&id| cold(pool, key, mb).into_busy(FakeEnv::new(id, key, mb)))
        .collect();
    for mut env in busy {
        env.finish_invocation();
        env.release();
    }
}

#[test]
fn a_cold_start_reserves_memory_until_the_environment_leaves() {
    let pool = Pool::<FakeEnv>::new(1024);
    let f = key("f", "r1");
    let slot = cold(&pool, &f, 256);
    let m = pool.metrics();
    assert_eq!((m.reserved_mb, m.starting, m.cold_starts), (256, 1, 1));

    let busy = slot.into_busy(FakeEnv::new(1, &f, 256));
    let m = pool.metrics();
    assert_eq!((m.reserved_mb, m.starting, m.busy), (256, 0, 1));
    assert_eq!(pool.environments(&f), 1);

    // Healthy: back to warm, still reserved.
    busy.release();
    let m = pool.metrics();
    assert_eq!((m.reserved_mb, m.busy, m.warm), (256, 0, 1));

    // Unhealthy on its next invocation: retired, memory free.
    let env = warm(&pool, &f, 256).retire();
    assert_eq!(env.id, 1);
    let m = pool.metrics();
    assert_eq!((m.reserved_mb, m.busy, m.warm), (0, 0, 0));
    assert_eq!(pool.environments(&f), 0);
}

#[test]
fn warm_reuse_only_for_the_same_revision_most_recent_first() {
    let pool = Pool::<FakeEnv>::new(1024);
    let old = key("f", "r1");
    start_idle(&pool, &old, 128, &[1]);
    // The idle one is reused rather than a second started.
    let a = warm(&pool, &old, 128);
    assert_eq!(a.id, 1);
    // With it busy, a second invocation starts a second environment.
    let b = cold(&pool, &old, 128).into_busy(FakeEnv::new(2, &old, 128));
    a.release();
    b.release();
    assert_eq!(pool.warm_revisions(), vec!["r1".to_string()]);

    // `$LATEST` updated: same name and version, new revision. Never the old code.
    let new = key("f", "r2");
    let slot = cold(&pool, &new, 128);
    drop(slot);
    // Nor another function's environment.
    drop(cold(&pool, &key("g", "r1"), 128));

    let reused = warm(&pool, &old, 128);
    assert_eq!(reused.id, 2, "LIFO: the most recently released first");
    reused.release();
    let m = pool.metrics();
    assert_eq!((m.cold_starts, m.invocations, m.warm), (4, 6, 2));
}

#[test]
fn an_idle_environment_that_died_is_skipped_and_its_memory_released() {
    let pool = Pool::<FakeEnv>::new(1024);
    let f = key("f", "r1");
    start_idle(&pool, &f, 256, &[1, 2]);
    assert_eq!(pool.metrics().reserved_mb, 512);
    let env = warm(&pool, &f, 256);
    assert_eq!(env.id, 2);
    let alive = env.alive.clone();
    env.release();

    // The most recent (2) died while idle: the acquire moves on to 1.
    alive.store(false, Ordering::SeqCst);
    let env = warm(&pool, &f, 256);
    assert_eq!(env.id, 1);
    assert_eq!(pool.metrics().reserved_mb, 256);
    env.release();
}

#[tokio::test(start_paused = true)]
async fn idle_environments_are_reaped_after_the_idle_timeout() {
    let pool = Pool::<FakeEnv>::new(1024);
    let (f, g) = (key("f", "r1"), key("g", "r1"));
    start_idle(&pool, &f, 256, &[1]);
    tokio::time::advance(Duration::from_secs(300)).await;
    start_idle(&pool, &g, 128, &[2]);

    tokio::time::advance(IDLE_TIMEOUT - Duration::from_secs(301)).await;
    assert!(
        pool.expire(IDLE_TIMEOUT).is_empty(),
        "nothing idle long enough yet"
    );

    tokio::time::advance(Duration::from_secs(1)).await;
    let reaped: Vec<u32> = pool.expire(IDLE_TIMEOUT).iter().map(|e| e.id).collect();
    assert_eq!(reaped, vec![1]);
    let m = pool.metrics();
    assert_eq!((m.warm, m.reserved_mb), (1, 128));

    // A busy environment is never reaped, however long it runs.
    let busy = warm(&pool, &g, 128);
    tokio::time::advance(IDLE_TIMEOUT * 2).await;
    assert!(pool.expire(IDLE_TIMEOUT).is_empty());
    busy.release();
    assert_eq!(pool.metrics().warm, 1);
}

#[tokio::test(start_paused = true)]
async fn a_held_environment_outlives_the_idle_timeout_until_its_hold_lapses() {
    let pool = Pool::<FakeEnv>::new(1024);
    let f = key("f", "r1");
    start_idle(&pool, &f, 256, &[1, 2]);
    assert_eq!(pool.hold(&f, 1, Duration::from_secs(900)), 2);
    assert_eq!(pool.metrics().provisioned, 1);

    tokio::time::advance(IDLE_TIMEOUT).await;
    // One is held; the other (the older, 1) goes.
    let reaped: Vec<u32> = pool.expire(IDLE_TIMEOUT).iter().map(|e| e.id).collect();
    assert_eq!(reaped, vec![1]);

    // Not renewed: at the hold's end it is an ordinary idle environment again.
    tokio::time::advance(Duration::from_secs(300)).await;
    let reaped: Vec<u32> = pool.expire(IDLE_TIMEOUT).iter().map(|e| e.id).collect();
    assert_eq!(reaped, vec![2]);
    let m = pool.metrics();
    assert_eq!((m.provisioned, m.reserved_mb), (0, 0));
}

#[test]
fn no_capacity_when_even_evicting_every_idle_environment_is_not_enough() {
    let pool = Pool::<FakeEnv>::new(512);
    let f = key("f", "r1");
    let a = cold(&pool, &f, 256).into_busy(FakeEnv::new(1, &f, 256));
    let b = cold(&pool, &f, 128).into_busy(FakeEnv::new(2, &f, 128));
    match pool.acquire(&f, 256, true) {
        Acquire::NoCapacity { free_mb } => assert_eq!(free_mb, 128),
        _ => panic!("256 MB cannot fit in 128 MB free with nothing idle"),
    }
    // Refused acquires reserve nothing.
    assert_eq!(pool.metrics().reserved_mb, 384);
    assert_eq!(pool.metrics().starting, 0);

    // One idle environment of 128 MB plus 128 MB free: now it fits, by evicting it.
    b.release();
    match pool.acquire(&key("g", "r1"), 256, true) {
        Acquire::Cold { slot, evicted } => {
            let ids: Vec<u32> = evicted.iter().map(|e| e.id).collect();
            assert_eq!(ids, vec![2]);
            assert_eq!(pool.metrics().reserved_mb, 512);
            drop(slot);
        }
        _ => panic!("evicting the idle environment makes room"),
    }
    assert_eq!(pool.metrics().reserved_mb, 256);
    a.release();
}

#[tokio::test(start_paused = true)]
async fn pressure_evicts_least_recently_used_first_and_never_held_ones() {
    let pool = Pool::<FakeEnv>::new(512);
    let (f, g, h) = (key("f", "r1"), key("g", "r1"), key("h", "r1"));
    start_idle(&pool, &f, 256, &[1]);
    tokio::time::advance(Duration::from_secs(1)).await;
    start_idle(&pool, &g, 256, &[2]);

    // Full: the new environment takes the least recently used one's place.
    match pool.acquire(&h, 256, true) {
        Acquire::Cold { slot, evicted } => {
            let ids: Vec<u32> = evicted.iter().map(|e| e.id).collect();
            assert_eq!(ids, vec![1], "f was used longest ago");
            slot.into_busy(FakeEnv::new(3, &h, 256)).release();
        }
        _ => panic!("evicting makes room"),
    }

    // Both idle environments are held: nothing may be evicted for another function.
    pool.hold(&g, 1, Duration::from_secs(60));
    pool.hold(&h, 1, Duration::from_secs(60));
    match pool.acquire(&f, 128, true) {
        Acquire::NoCapacity { free_mb } => assert_eq!(free_mb, 0),
        _ => panic!("held environments are not evictable"),
    }
    assert_eq!(pool.metrics().warm, 2);
}

#[test]
fn drain_takes_every_idle_environment_and_busy_ones_leave_with_their_guard() {
    let pool = Pool::<FakeEnv>::new(1024);
    let (f, g, h) = (key("f", "r1"), key("g", "r1"), key("h", "r1"));
    start_idle(&pool, &f, 256, &[1]);
    start_idle(&pool, &g, 128, &[2]);
    let busy = cold(&pool, &h, 256).into_busy(FakeEnv::new(3, &h, 256));

    let mut drained: Vec<u32> = pool.drain_idle().iter().map(|e| e.id).collect();
    drained.sort();
    assert_eq!(drained, vec![1, 2]);
    let m = pool.metrics();
    assert_eq!((m.warm, m.busy, m.reserved_mb), (0, 1, 256));
    assert!(pool.warm_revisions().is_empty());

    // Shutting down, the engine retires rather than releases what finishes.
    assert_eq!(busy.retire().id, 3);
    let m = pool.metrics();
    assert_eq!((m.busy, m.reserved_mb), (0, 0));
}

/// Stands for `ExecutionEnvironment::start` failing.
#[derive(Debug, thiserror::Error)]
#[error("the sandbox could not be created")]
struct StartFailed;

/// The engine's cold path in miniature: evicted ones shut down, a start that fails.
fn start_with(
    pool: &Pool<FakeEnv>,
    f: &FunctionKey,
    start: Result<FakeEnv, StartFailed>,
) -> Result<u32, StartFailed> {
    let Acquire::Cold { slot, .. } = pool.acquire(f, 256, true) else {
        panic!("expected a cold start");
    };
    let env = start?;
    let busy = slot.into_busy(env);
    let id = busy.id;
    busy.release();
    Ok(id)
}

#[test]
fn a_failed_start_returning_early_gives_the_reservation_back() {
    let pool = Pool::<FakeEnv>::new(1024);
    let f = key("f", "r1");
    assert!(start_with(&pool, &f, Err(StartFailed)).is_err());
    let m = pool.metrics();
    assert_eq!((m.starting, m.reserved_mb, m.busy, m.warm), (0, 0, 0, 0));

    assert_eq!(
        start_with(&pool, &f, Ok(FakeEnv::new(7, &f, 256))).unwrap(),
        7
    );
    let m = pool.metrics();
    assert_eq!((m.starting, m.reserved_mb, m.warm), (0, 256, 1));
}

#[test]
fn a_panic_mid_invocation_discards_the_environment_and_frees_its_memory() {
    let pool = Pool::<FakeEnv>::new(1024);
    let f = key("f", "r1");
    start_idle(&pool, &f, 256, &[1]);
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _env = warm(&pool, &f, 256);
        panic!("the invocation blew up");
    }));
    assert!(panicked.is_err());
    let m = pool.metrics();
    assert_eq!((m.busy, m.warm, m.reserved_mb), (0, 0, 0));
    assert_eq!(pool.environments(&f), 0);

    // Likewise while starting.
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _slot = cold(&pool, &f, 256);
        panic!("Init blew up");
    }));
    assert!(panicked.is_err());
    let m = pool.metrics();
    assert_eq!((m.starting, m.reserved_mb), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_dropped_invocation_future_gives_everything_back() {
    let pool = Pool::<FakeEnv>::new(1024);
    let f = key("f", "r1");
    start_idle(&pool, &f, 256, &[1]);

    // A caller that goes away (its gateway died) mid-start and mid-invocation: the
    // futures are dropped at their await points, as the engine's would be.
    let starting = async {
        let _slot = cold(&pool, &key("g", "r1"), 512);
        tokio::time::sleep(Duration::from_secs(3600)).await;
    };
    let invoking = async {
        let _env = warm(&pool, &f, 256);
        tokio::time::sleep(Duration::from_secs(3600)).await;
    };
    let mut caller = Box::pin(async { tokio::join!(starting, invoking) });
    let gave_up = tokio::time::timeout(Duration::from_secs(5), &mut caller).await;
    assert!(gave_up.is_err(), "the invocation cannot finish first");
    // Both are suspended holding their guards right now.
    let m = pool.metrics();
    assert_eq!((m.starting, m.busy, m.reserved_mb), (1, 1, 768));
    drop(caller);
    let m = pool.metrics();
    assert_eq!((m.starting, m.busy, m.warm, m.reserved_mb), (0, 0, 0, 0));
}

#[test]
fn cold_starts_from_shells_are_counted_when_they_start() {
    let pool = Pool::<FakeEnv>::new(1024);
    let f = key("f", "r1");
    let mut shell = FakeEnv::new(1, &f, 128);
    shell.from_shell = true;
    cold(&pool, &f, 128).into_busy(shell).release();
    // A prewarm (provisioned concurrency) never takes a warm one, and starts idle.
    let Acquire::Cold { slot, .. } = pool.acquire(&f, 128, false) else {
        panic!("a prewarm always starts a new environment");
    };
    let mut shell = FakeEnv::new(2, &f, 128);
    shell.from_shell = true;
    slot.into_idle(shell);
    let m = pool.metrics();
    assert_eq!(
        (
            m.cold_starts,
            m.cold_starts_from_shells,
            m.invocations,
            m.warm
        ),
        (2, 2, 1, 2)
    );
}

/// One account floods a worker; a second is refused for want of memory and so waits.
/// From then on the flooding account, at or over its half, is refused even a warm
/// environment, and its idle ones are evicted for the waiting account, which then fits.
/// Once nobody has waited for a while, the first account may use the whole worker again.
#[tokio::test(start_paused = true)]
async fn an_account_over_its_fair_share_yields_to_one_that_waits() {
    let pool = Pool::<FakeEnv>::new(512);
    let a = account_key("111111111111", "flood", "r1");
    let b = account_key("222222222222", "quiet", "r1");
    // A takes the whole worker: two busy, two idle.
    let busy: Vec<_> = (1..=4)
        .map(|i| cold(&pool, &a, 128).into_busy(FakeEnv::new(i, &a, 128)))
        .collect();
    let mut busy = busy.into_iter();
    let (b1, b2) = (busy.next().unwrap(), busy.next().unwrap());
    for env in busy {
        let mut env = env;
        env.finish_invocation();
        env.release();
    }
    // Nobody waits: A reuses its idle environments as usual.
    warm(&pool, &a, 128).release();
    // B needs memory. The idle ones are A's, so B evicts one (no one was waiting yet) ...
    match pool.acquire(&b, 256, true) {
        Acquire::Cold { slot, evicted } => {
            assert_eq!(evicted.len(), 2, "two idle 128 MB environments make 256 MB");
            drop(slot);
        }
        _ => panic!("B should fit by evicting A's idle environments"),
    }
    // ... and with A's two busy (256 MB) and a second B start refused, B waits.
    let b_slot = cold(&pool, &b, 256);
    match pool.acquire(&b, 128, true) {
        Acquire::NoCapacity { .. } => {}
        _ => panic!("the worker is full"),
    }
    drop(b_slot);
    // Now A holds 256 of 512 MB, its share with B waiting: refused, even warm.
    let mut e1 = b1;
    e1.finish_invocation();
    e1.release();
    match pool.acquire(&a, 128, true) {
        Acquire::OverShare { evicted } => assert_eq!(evicted.len(), 1, "A's idle one is evicted"),
        _ => panic!("A is at its share while B waits"),
    }
    assert_eq!(
        pool.metrics().reserved_mb,
        128,
        "only A's busy environment is left"
    );
    // B's retry fits now.
    let _b = cold(&pool, &b, 256).into_busy(FakeEnv::new(9, &b, 256));
    // After the wait window with nobody refused, A may grow again.
    tokio::time::advance(super::WAIT_WINDOW + Duration::from_millis(1)).await;
    let _a = cold(&pool, &a, 128);
    drop(b2);
}

/// With the operator's weights, a heavier account's share is larger: at 3:1 on 512 MB,
/// the light account is over its share at 128 MB while the heavy one waits, and the
/// heavy one is not over its share at 256 MB while the light one waits.
#[tokio::test(start_paused = true)]
async fn weights_set_the_shares() {
    let heavy = account_key("333333333333", "h", "r1");
    let light = account_key("444444444444", "l", "r1");
    let weights = [("333333333333".to_string(), 3)].into_iter().collect();
    let pool = Pool::<FakeEnv>::new(512).with_weights(weights);
    let _l = cold(&pool, &light, 128).into_busy(FakeEnv::new(1, &light, 128));
    let _h = cold(&pool, &heavy, 256).into_busy(FakeEnv::new(2, &heavy, 256));
    // The heavy one asks for 256 more: 128 free, so it waits.
    match pool.acquire(&heavy, 256, true) {
        Acquire::NoCapacity { .. } => {}
        _ => panic!("256 MB do not fit in 128"),
    }
    // The light one holds 128 = its quarter: refused while the heavy one waits.
    assert!(matches!(
        pool.acquire(&light, 128, true),
        Acquire::OverShare { .. }
    ));
    // The light one now waits too; the heavy one, at 256 of its 384, is not refused.
    match pool.acquire(&light, 256, true) {
        Acquire::OverShare { .. } | Acquire::NoCapacity { .. } => {}
        _ => panic!("no room for the light one"),
    }
    let _h2 = cold(&pool, &heavy, 128);
}
