//! The pool's guards: what [`Pool::acquire`](super::Pool::acquire) hands out. Each one
//! holds a share of the pool (a memory reservation, a busy slot) and gives it back when
//! dropped unless it was consumed, so no path out of the engine (an error, a panic, the
//! invocation's future dropped because the caller went away) leaks capacity.

use std::ops::{Deref, DerefMut};

use super::{Pool, Pooled};

/// Memory reserved for an environment being started. Consume it with
/// [`into_busy`](Starting::into_busy) or [`into_idle`](Starting::into_idle) once the
/// environment exists; dropped instead (the start failed or was abandoned), it releases
/// the reservation.
#[must_use = "dropping the slot releases the reservation at once"]
pub(crate) struct Starting<'a, E: Pooled> {
    pool: &'a Pool<E>,
    account_id: String,
    memory_mb: u64,
}

impl<'a, E: Pooled> Starting<'a, E> {
    pub(super) fn new(pool: &'a Pool<E>, account_id: &str, memory_mb: u64) -> Self {
        Starting {
            pool,
            account_id: account_id.to_string(),
            memory_mb,
        }
    }

    /// The started environment runs its first invocation.
    pub(crate) fn into_busy(mut self, env: E) -> Busy<'a, E> {
        self.pool.state().started_busy(&env);
        let pool = self.pool;
        // Consumed: the reservation now belongs to the busy environment. Forgetting
        // skips only `drop`; the account's name is taken out first so nothing leaks.
        drop(std::mem::take(&mut self.account_id));
        std::mem::forget(self);
        Busy::new(pool, env)
    }

    /// The started environment waits idle (provisioned concurrency).
    pub(crate) fn into_idle(mut self, env: E) {
        self.pool.state().started_idle(env);
        drop(std::mem::take(&mut self.account_id));
        std::mem::forget(self);
    }
}

impl<E: Pooled> Drop for Starting<'_, E> {
    fn drop(&mut self) {
        self.pool
            .state()
            .start_failed(&self.account_id, self.memory_mb);
    }
}

/// An environment running an invocation; derefs to the environment. Consume it with
/// [`release`](Busy::release) (back to warm) or [`retire`](Busy::retire) (out of the
/// pool). Dropped instead, mid-invocation, it is retired and the environment dropped:
/// whatever state it was left in, it serves nobody else.
#[must_use = "dropping a busy environment destroys it"]
pub(crate) struct Busy<'a, E: Pooled> {
    pool: &'a Pool<E>,
    /// Boxed: environments are large, and this travels in `Acquire` next to small
    /// variants. `None` only once consumed.
    env: Option<Box<E>>,
}

impl<'a, E: Pooled> Busy<'a, E> {
    pub(super) fn new(pool: &'a Pool<E>, env: E) -> Self {
        Busy {
            pool,
            env: Some(Box::new(env)),
        }
    }

    /// The invocation finished and the environment is healthy: it waits warm.
    pub(crate) fn release(mut self) {
        if let Some(env) = self.env.take() {
            self.pool.state().release(*env);
        }
    }

    /// The environment leaves the pool (unhealthy, or the worker is shutting down); its
    /// memory is free now. The caller shuts it down.
    pub(crate) fn retire(mut self) -> E {
        let env = self
            .env
            .take()
            .expect("a Busy holds its environment until consumed");
        self.pool.state().discard(env.key(), env.memory_mb());
        *env
    }
}

impl<E: Pooled> Deref for Busy<'_, E> {
    type Target = E;
    fn deref(&self) -> &E {
        self.env
            .as_deref()
            .expect("a Busy holds its environment until consumed")
    }
}

impl<E: Pooled> DerefMut for Busy<'_, E> {
    fn deref_mut(&mut self) -> &mut E {
        self.env
            .as_deref_mut()
            .expect("a Busy holds its environment until consumed")
    }
}

impl<E: Pooled> Drop for Busy<'_, E> {
    fn drop(&mut self) {
        if let Some(env) = self.env.take() {
            self.pool.state().discard(env.key(), env.memory_mb());
            // Dropped after the lock is released: an environment's Drop kills its
            // sandbox.
            drop(env);
        }
    }
}
