//! The Postgres store's connection pool.
//!
//! sqlx's own pool pings every connection as it comes back (`SELECT`-less Sync and wait for
//! the server's answer), one extra round trip to the database for every statement. This pool
//! keeps a connection whose work ran to the end without that round trip, and throws away one
//! whose work was cut short (the request was dropped mid-statement, the connection failed), so
//! no connection in an unknown state is ever handed out again. A connection that sat idle for
//! [`PoolOptions::ping_idle_after`] is pinged before use, and replaced when the ping fails, so
//! connections left over from before a database restart do not fail requests.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::Connection;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::{timeout_at, Instant};

/// How the pool behaves.
#[derive(Debug, Clone)]
pub(crate) struct PoolOptions {
    /// The most connections open at once.
    pub max_connections: u32,
    /// How long [`Pool::acquire`] waits for a connection before it gives up.
    pub acquire_timeout: Duration,
    /// An idle connection is pinged before use once it has been idle this long.
    pub ping_idle_after: Duration,
    /// An idle connection is closed instead of used once it has been idle this long.
    pub idle_timeout: Duration,
}

/// A connection waiting for work, and since when.
#[derive(Debug)]
struct Idle {
    connection: PgConnection,
    since: Instant,
}

/// Connections to one database, at most [`PoolOptions::max_connections`] of them.
#[derive(Debug)]
pub(crate) struct Pool {
    connect: PgConnectOptions,
    options: PoolOptions,
    /// One permit per connection that may be in use; closed when the pool is.
    permits: Semaphore,
    /// Connections waiting for work, the most recently used last.
    idle: Mutex<Vec<Idle>>,
    /// Connections open, idle or in use.
    open: AtomicU32,
}

/// The pool's connections now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Status {
    pub open: u32,
    pub idle: u32,
    pub max: u32,
}

impl Pool {
    /// A pool for `connect`; nothing is connected until a connection is asked for.
    pub fn new(connect: PgConnectOptions, options: PoolOptions) -> Self {
        let permits = usize::try_from(options.max_connections.max(1)).unwrap_or(usize::MAX);
        Self {
            connect,
            permits: Semaphore::new(permits),
            idle: Mutex::new(Vec::new()),
            open: AtomicU32::new(0),
            options,
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        // The list holds plain values, valid whatever a panicking holder left.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A connection for one piece of work: an idle one (pinged first when it sat idle long
    /// enough), or a new one. Waits at most the acquire timeout in all
    /// (`sqlx::Error::PoolTimedOut`); `sqlx::Error::PoolClosed` once the pool is closed; the
    /// connection's own error when a new one cannot be opened.
    pub async fn acquire(&self) -> Result<Lease<'_>, sqlx::Error> {
        self.acquire_by(Instant::now).await
    }

    /// [`Pool::acquire`], reading the time from `clock` (tests set it).
    async fn acquire_by(&self, clock: impl Fn() -> Instant) -> Result<Lease<'_>, sqlx::Error> {
        let deadline = clock() + self.options.acquire_timeout;
        let permit = match timeout_at(deadline, self.permits.acquire()).await {
            Err(_) => return Err(sqlx::Error::PoolTimedOut),
            Ok(Err(_)) => return Err(sqlx::Error::PoolClosed),
            Ok(Ok(permit)) => permit,
        };
        loop {
            let Some(Idle {
                mut connection,
                since,
            }) = self.idle().pop()
            else {
                break;
            };
            let idle_for = clock().saturating_duration_since(since);
            if idle_for < self.options.ping_idle_after {
                return Ok(self.lease(connection, permit));
            }
            if idle_for < self.options.idle_timeout {
                if let Ok(Ok(())) = timeout_at(deadline, connection.ping()).await {
                    return Ok(self.lease(connection, permit));
                }
            }
            // Idle too long, dead, or too slow to answer: replaced.
            self.open.fetch_sub(1, Ordering::Relaxed);
        }
        let connection = match timeout_at(deadline, PgConnection::connect_with(&self.connect)).await
        {
            Err(_) => return Err(sqlx::Error::PoolTimedOut),
            Ok(connection) => connection?,
        };
        self.open.fetch_add(1, Ordering::Relaxed);
        Ok(self.lease(connection, permit))
    }

    fn lease<'a>(&'a self, connection: PgConnection, permit: SemaphorePermit<'a>) -> Lease<'a> {
        Lease {
            pool: self,
            connection: Some(connection),
            _permit: permit,
        }
    }

    /// Closes the pool: every later [`Pool::acquire`] fails with `PoolClosed`, idle connections
    /// are closed now, and those in use when they come back.
    pub async fn close(&self) {
        self.permits.close();
        let idle = std::mem::take(&mut *self.idle());
        for Idle { connection, .. } in idle {
            self.open.fetch_sub(1, Ordering::Relaxed);
            let _ = connection.close().await;
        }
    }

    pub fn status(&self) -> Status {
        let idle = u32::try_from(self.idle().len()).unwrap_or(u32::MAX);
        Status {
            open: self.open.load(Ordering::Relaxed).max(idle),
            idle,
            max: self.options.max_connections,
        }
    }
}

/// A connection lent out for one piece of work. [`Lease::settle`] gives it back to the pool
/// when the work ran to the end; dropped any other way, the connection is closed.
#[derive(Debug)]
pub(crate) struct Lease<'a> {
    pool: &'a Pool,
    connection: Option<PgConnection>,
    _permit: SemaphorePermit<'a>,
}

impl Lease<'_> {
    /// The connection, for the work.
    pub fn get(&mut self) -> &mut PgConnection {
        // Present from the lease's making until it is settled or dropped.
        self.connection
            .as_mut()
            .unwrap_or_else(|| unreachable!("a lease holds its connection until it ends"))
    }

    /// Ends the lease after the work returned `outcome`: the connection goes back to the pool
    /// when the work succeeded or the server refused it (the connection is in step with the
    /// server either way), and is closed when the connection itself failed.
    pub fn settle<T>(self, outcome: &Result<T, sqlx::Error>) {
        let reusable = match outcome {
            Ok(_) => true,
            Err(sqlx::Error::Database(error)) => !error
                .code()
                .is_some_and(|code| super::postgres::unreachable_state(&code)),
            Err(_) => false,
        };
        if reusable {
            self.keep();
        }
    }

    /// Ends the lease, giving the connection back to the pool (unless the pool is closed).
    pub fn keep(mut self) {
        if !self.pool.permits.is_closed() {
            if let Some(connection) = self.connection.take() {
                // Back in the list before the permit is returned, so the next caller finds it.
                self.pool.idle().push(Idle {
                    connection,
                    since: Instant::now(),
                });
            }
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if self.connection.take().is_some() {
            self.pool.open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use sqlx::PgPool;

    use super::*;

    fn pool_for(test_pool: &PgPool, max_connections: u32) -> Pool {
        pool_with(test_pool, max_connections, Duration::MAX, Duration::MAX)
    }

    fn pool_with(
        test_pool: &PgPool,
        max_connections: u32,
        ping_idle_after: Duration,
        idle_timeout: Duration,
    ) -> Pool {
        Pool::new(
            (*test_pool.connect_options()).clone(),
            PoolOptions {
                max_connections,
                acquire_timeout: Duration::from_millis(300),
                ping_idle_after,
                idle_timeout,
            },
        )
    }

    async fn terminate(test_pool: &PgPool, pid: i32) {
        let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1, 5000)")
            .bind(pid)
            .fetch_one(test_pool)
            .await
            .unwrap();
        assert!(terminated);
    }

    fn status(open: u32, idle: u32, max: u32) -> Status {
        Status { open, idle, max }
    }

    async fn backend_pid(lease: &mut Lease<'_>) -> i32 {
        sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(lease.get())
            .await
            .unwrap()
    }

    #[sqlx::test(migrations = false)]
    async fn a_settled_connection_is_reused_and_a_dropped_one_closed(test_pool: PgPool) {
        let pool = pool_for(&test_pool, 2);
        assert_eq!(pool.status(), status(0, 0, 2));
        let mut first = pool.acquire().await.unwrap();
        let mut second = pool.acquire().await.unwrap();
        assert_eq!(pool.status(), status(2, 0, 2));
        let kept = backend_pid(&mut first).await;
        let dropped = backend_pid(&mut second).await;
        first.settle(&Ok::<(), sqlx::Error>(()));
        assert_eq!(pool.status(), status(2, 1, 2));
        // Dropped without being settled, as when a request is cancelled mid-statement.
        drop(second);
        assert_eq!(pool.status(), status(1, 1, 2));
        let mut again = pool.acquire().await.unwrap();
        assert_eq!(
            backend_pid(&mut again).await,
            kept,
            "the idle connection is reused"
        );
        let mut fresh = pool.acquire().await.unwrap();
        let fresh_pid = backend_pid(&mut fresh).await;
        assert_ne!(
            fresh_pid, dropped,
            "the dropped connection is never handed out again"
        );
        assert_ne!(fresh_pid, kept);
    }

    #[sqlx::test(migrations = false)]
    async fn a_connection_that_failed_is_not_reused(test_pool: PgPool) {
        let pool = pool_for(&test_pool, 1);
        let lease = pool.acquire().await.unwrap();
        lease.settle(&Err::<(), _>(sqlx::Error::Io(std::io::Error::other(
            "broken",
        ))));
        assert_eq!(pool.status(), status(0, 0, 1));
        // A refusal by the server leaves the connection in step: it is kept.
        let mut lease = pool.acquire().await.unwrap();
        let refused = sqlx::query("SELECT * FROM no_such_table")
            .execute(lease.get())
            .await;
        assert!(matches!(refused, Err(sqlx::Error::Database(_))));
        lease.settle(&refused);
        assert_eq!(pool.status(), status(1, 1, 1));
        let mut lease = pool.acquire().await.unwrap();
        backend_pid(&mut lease).await;
    }

    /// Past `ping_idle_after` (zero here: always) a connection is pinged before use: kept when
    /// it answers, replaced when its session is gone; below it, handed out as it is.
    #[sqlx::test(migrations = false)]
    async fn an_idle_connection_is_pinged_and_a_dead_one_replaced(test_pool: PgPool) {
        let pool = pool_with(&test_pool, 1, Duration::ZERO, Duration::MAX);
        let mut lease = pool.acquire().await.unwrap();
        let first = backend_pid(&mut lease).await;
        lease.settle(&Ok::<(), sqlx::Error>(()));
        let mut lease = pool.acquire().await.unwrap();
        assert_eq!(backend_pid(&mut lease).await, first, "alive: kept");
        lease.settle(&Ok::<(), sqlx::Error>(()));
        terminate(&test_pool, first).await;
        let mut lease = pool.acquire().await.unwrap();
        let second = backend_pid(&mut lease).await;
        assert_ne!(second, first, "dead: replaced");
        assert_eq!(pool.status(), status(1, 0, 1));
        lease.settle(&Ok::<(), sqlx::Error>(()));

        // Never pinged: a dead session is handed out, and its failure drops it.
        let pool = pool_for(&test_pool, 1);
        let mut lease = pool.acquire().await.unwrap();
        let pid = backend_pid(&mut lease).await;
        lease.settle(&Ok::<(), sqlx::Error>(()));
        terminate(&test_pool, pid).await;
        let mut lease = pool.acquire().await.unwrap();
        let failed = sqlx::query("SELECT 1").execute(lease.get()).await;
        assert!(failed.is_err());
        lease.settle(&failed);
        assert_eq!(pool.status(), status(0, 0, 1));
    }

    /// When the connection has been idle exactly so long, according to the pool's clock.
    fn idle_since(pool: &Pool, plus: Duration) -> Instant {
        pool.idle().last().map(|idle| idle.since).unwrap() + plus
    }

    /// The thresholds hold from the instant they are reached: a connection idle exactly
    /// `ping_idle_after` is pinged, one idle exactly `idle_timeout` is replaced.
    #[sqlx::test(migrations = false)]
    async fn the_thresholds_hold_from_their_first_instant(test_pool: PgPool) {
        let ping_after = Duration::from_secs(1);
        let timeout = Duration::from_secs(60);
        let pool = pool_with(&test_pool, 1, ping_after, timeout);
        let mut lease = pool.acquire().await.unwrap();
        let first = backend_pid(&mut lease).await;
        lease.settle(&Ok::<(), sqlx::Error>(()));
        // Just short of the ping: handed out without one.
        let at = idle_since(&pool, ping_after - Duration::from_nanos(1));
        let mut lease = pool.acquire_by(|| at).await.unwrap();
        assert_eq!(backend_pid(&mut lease).await, first);
        lease.settle(&Ok::<(), sqlx::Error>(()));
        terminate(&test_pool, first).await;
        // Exactly at it: pinged, found dead, replaced.
        let at = idle_since(&pool, ping_after);
        let mut lease = pool.acquire_by(|| at).await.unwrap();
        let second = backend_pid(&mut lease).await;
        assert_ne!(second, first);
        lease.settle(&Ok::<(), sqlx::Error>(()));
        // Just short of the idle timeout: pinged and kept.
        let at = idle_since(&pool, timeout - Duration::from_nanos(1));
        let mut lease = pool.acquire_by(|| at).await.unwrap();
        assert_eq!(backend_pid(&mut lease).await, second);
        lease.settle(&Ok::<(), sqlx::Error>(()));
        // Exactly at it: replaced, alive as it is.
        let at = idle_since(&pool, timeout);
        let mut lease = pool.acquire_by(|| at).await.unwrap();
        assert_ne!(backend_pid(&mut lease).await, second);
    }

    /// Past `idle_timeout` (zero here: always) an idle connection is closed, not used.
    #[sqlx::test(migrations = false)]
    async fn a_connection_idle_too_long_is_replaced(test_pool: PgPool) {
        let pool = pool_with(&test_pool, 1, Duration::ZERO, Duration::ZERO);
        let mut lease = pool.acquire().await.unwrap();
        let first = backend_pid(&mut lease).await;
        lease.settle(&Ok::<(), sqlx::Error>(()));
        let mut lease = pool.acquire().await.unwrap();
        assert_ne!(backend_pid(&mut lease).await, first);
        assert_eq!(pool.status(), status(1, 0, 1));
    }

    #[sqlx::test(migrations = false)]
    async fn a_full_pool_times_out_and_a_closed_one_refuses(test_pool: PgPool) {
        let pool = pool_for(&test_pool, 1);
        let held = pool.acquire().await.unwrap();
        assert!(matches!(
            pool.acquire().await,
            Err(sqlx::Error::PoolTimedOut)
        ));
        held.settle(&Ok::<(), sqlx::Error>(()));
        pool.close().await;
        assert_eq!(pool.status(), status(0, 0, 1));
        assert!(matches!(pool.acquire().await, Err(sqlx::Error::PoolClosed)));
    }

    #[sqlx::test(migrations = false)]
    async fn a_lease_given_back_after_the_close_is_closed(test_pool: PgPool) {
        let pool = pool_for(&test_pool, 1);
        let lease = pool.acquire().await.unwrap();
        pool.close().await;
        lease.settle(&Ok::<(), sqlx::Error>(()));
        assert_eq!(pool.status(), status(0, 0, 1));
    }
}
