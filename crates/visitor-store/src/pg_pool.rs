//! The Postgres store's connection pool: deadpool's (a maintained pool), with the store's rules.
//!
//! sqlx's own pool pings every connection as it comes back, one extra round trip to the
//! database for every statement. Here a connection whose work ran to its end goes back without
//! that round trip, and one whose work was cut short (the request was dropped mid-statement, the
//! connection failed) is taken out of the pool and closed, so no connection in an unknown state
//! is ever handed out again. A connection unused for [`PoolOptions::ping_idle_after`] is pinged
//! before use and replaced when the ping fails, so connections left over from before a database
//! restart do not fail requests; one unused for [`PoolOptions::idle_timeout`] is replaced.
//!
//! The store had a pool of its own until `make bench` priced deadpool's on Postgres Show: 1.002
//! of the own pool's throughput (median of 9 alternating rounds; docs/benchmarks.md), so the
//! maintained one came in.

use std::marker::PhantomData;
use std::time::Duration;

use deadpool::managed::{self, Metrics, Object, PoolError, QueueMode, RecycleError, RecycleResult};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::Connection;

use crate::sqlstate::spends_connection;

/// How the pool behaves.
#[derive(Debug, Clone)]
pub(crate) struct PoolOptions {
    /// The most connections open at once.
    pub max_connections: u32,
    /// How long [`Pool::acquire`] waits for a connection before it gives up.
    pub acquire_timeout: Duration,
    /// A connection is pinged before use once it has not been used for this long.
    pub ping_idle_after: Duration,
    /// A connection is replaced instead of used once it has not been used for this long.
    pub idle_timeout: Duration,
    /// A connection is replaced instead of used once it is this old (`--db-max-lifetime`).
    pub max_lifetime: Duration,
    /// Every statement of a connection is cancelled by the server after this long
    /// (`statement_timeout`; zero: never).
    pub statement_timeout: Duration,
}

/// Opens and checks connections for deadpool.
#[derive(Debug)]
struct Connector {
    connect: PgConnectOptions,
    ping_idle_after: Duration,
    idle_timeout: Duration,
    max_lifetime: Duration,
    /// The settings of a new connection, set once per session (not as startup parameters,
    /// which PgBouncer refuses): the statement timeout, and no JIT compilation — the store's
    /// statements are short, and a planner's over-estimate (the feed's one-row table of purges)
    /// had PostgreSQL compile a page's query for 300 ms that then ran in 7.
    set_session: String,
}

impl managed::Manager for Connector {
    type Type = PgConnection;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<PgConnection, sqlx::Error> {
        let mut connection = PgConnection::connect_with(&self.connect).await?;
        sqlx::query(&self.set_session)
            .execute(&mut connection)
            .await?;
        Ok(connection)
    }

    async fn recycle(
        &self,
        connection: &mut PgConnection,
        metrics: &Metrics,
    ) -> RecycleResult<sqlx::Error> {
        match self.check(metrics.last_used(), metrics.age()) {
            Check::Use => Ok(()),
            Check::Ping => connection.ping().await.map_err(RecycleError::Backend),
            Check::Replace => Err(RecycleError::message("idle too long")),
        }
    }
}

/// What a connection unused for some time needs before it is handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Use,
    Ping,
    Replace,
}

impl Connector {
    /// What a connection unused for `unused_for` and opened `age` ago needs. Each threshold
    /// holds from the instant it is reached.
    fn check(&self, unused_for: Duration, age: Duration) -> Check {
        if unused_for >= self.idle_timeout || age >= self.max_lifetime {
            Check::Replace
        } else if unused_for >= self.ping_idle_after {
            Check::Ping
        } else {
            Check::Use
        }
    }
}

/// Connections to one database, at most [`PoolOptions::max_connections`] of them.
#[derive(Debug)]
pub(crate) struct Pool {
    inner: managed::Pool<Connector>,
    acquire_timeout: Duration,
    max: u32,
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
        let manager = Connector {
            connect,
            ping_idle_after: options.ping_idle_after,
            idle_timeout: options.idle_timeout,
            max_lifetime: options.max_lifetime,
            set_session: format!(
                "SELECT set_config('statement_timeout', '{}', false), set_config('jit', 'off', false)",
                options.statement_timeout.as_millis()
            ),
        };
        let size = usize::try_from(options.max_connections.max(1)).unwrap_or(usize::MAX);
        let inner = managed::Pool::builder(manager)
            .max_size(size)
            // The most recently used connection first, as the own pool does: under light load
            // the same few stay warm, and the rest reach the idle timeout.
            .queue_mode(QueueMode::Lifo)
            .build()
            .unwrap_or_else(|_| unreachable!("a pool without timeouts needs no runtime"));
        Self {
            inner,
            acquire_timeout: options.acquire_timeout,
            max: options.max_connections,
        }
    }

    /// A connection for one piece of work, within the acquire timeout
    /// (`sqlx::Error::PoolTimedOut`); `sqlx::Error::PoolClosed` once the pool is closed; the
    /// connection's own error when a new one cannot be opened.
    pub async fn acquire(&self) -> Result<Lease<'_>, sqlx::Error> {
        match tokio::time::timeout(self.acquire_timeout, self.inner.get()).await {
            Err(_) => Err(sqlx::Error::PoolTimedOut),
            Ok(Ok(object)) => Ok(Lease {
                object: Some(object),
                _pool: PhantomData,
            }),
            Ok(Err(PoolError::Backend(error))) => Err(error),
            Ok(Err(PoolError::Closed)) => Err(sqlx::Error::PoolClosed),
            Ok(Err(_)) => Err(sqlx::Error::PoolTimedOut),
        }
    }

    /// Closes the pool: every later [`Pool::acquire`] fails with `PoolClosed`.
    pub async fn close(&self) {
        self.inner.close();
    }

    pub fn status(&self) -> Status {
        let status = self.inner.status();
        Status {
            open: u32::try_from(status.size).unwrap_or(u32::MAX),
            idle: u32::try_from(status.available).unwrap_or(u32::MAX),
            max: self.max,
        }
    }
}

/// A connection lent out for one piece of work. [`Lease::settle`] gives it back to the pool
/// when the work ran to the end; dropped any other way, the connection is closed.
#[derive(Debug)]
pub(crate) struct Lease<'a> {
    object: Option<Object<Connector>>,
    _pool: PhantomData<&'a Pool>,
}

impl Lease<'_> {
    /// The connection, for the work.
    pub fn get(&mut self) -> &mut PgConnection {
        self.object
            .as_mut()
            .unwrap_or_else(|| unreachable!("a lease holds its connection until it ends"))
    }

    /// Ends the lease after the work returned `outcome`: back to the pool when the work
    /// succeeded or the server refused it, closed when the connection itself failed.
    pub fn settle<T>(self, outcome: &Result<T, sqlx::Error>) {
        let reusable = match outcome {
            Ok(_) => true,
            Err(sqlx::Error::Database(error)) => {
                !error.code().is_some_and(|code| spends_connection(&code))
            }
            Err(_) => false,
        };
        if reusable {
            self.keep();
        }
    }

    /// Ends the lease, giving the connection back to the pool.
    pub fn keep(mut self) {
        drop(self.object.take());
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        // Not given back: taken out of the pool and closed.
        if let Some(object) = self.object.take() {
            drop(Object::take(object));
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

    fn options(
        max_connections: u32,
        ping_idle_after: Duration,
        idle_timeout: Duration,
    ) -> PoolOptions {
        PoolOptions {
            max_connections,
            acquire_timeout: Duration::from_millis(300),
            ping_idle_after,
            idle_timeout,
            max_lifetime: Duration::MAX,
            statement_timeout: Duration::ZERO,
        }
    }

    fn pool_with(
        test_pool: &PgPool,
        max_connections: u32,
        ping_idle_after: Duration,
        idle_timeout: Duration,
    ) -> Pool {
        Pool::new(
            (*test_pool.connect_options()).clone(),
            options(max_connections, ping_idle_after, idle_timeout),
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

    /// The thresholds hold from the instant they are reached: a connection unused exactly
    /// `ping_idle_after` is pinged, one unused exactly `idle_timeout` is replaced.
    #[test]
    fn the_thresholds_hold_from_their_first_instant() {
        let ping_after = Duration::from_secs(1);
        let timeout = Duration::from_secs(60);
        let lifetime = Duration::from_secs(1800);
        let connector = Connector {
            connect: PgConnectOptions::new(),
            ping_idle_after: ping_after,
            idle_timeout: timeout,
            max_lifetime: lifetime,
            set_session: String::new(),
        };
        let nano = Duration::from_nanos(1);
        let young = Duration::ZERO;
        assert_eq!(connector.check(Duration::ZERO, young), Check::Use);
        assert_eq!(connector.check(ping_after - nano, young), Check::Use);
        assert_eq!(connector.check(ping_after, young), Check::Ping);
        assert_eq!(connector.check(timeout - nano, young), Check::Ping);
        assert_eq!(connector.check(timeout, young), Check::Replace);
        // However recently used: replaced from the instant it reaches its lifetime.
        assert_eq!(connector.check(Duration::ZERO, lifetime - nano), Check::Use);
        assert_eq!(connector.check(Duration::ZERO, lifetime), Check::Replace);
    }

    /// Every connection runs with the statement timeout and without JIT compilation; a
    /// statement past the timeout is cancelled by the server, and the connection that ran it
    /// is not used again.
    #[sqlx::test(migrations = false)]
    async fn statements_are_bounded_and_a_cancelled_one_spends_its_connection(test_pool: PgPool) {
        let mut options = options(1, Duration::MAX, Duration::MAX);
        options.statement_timeout = Duration::from_millis(200);
        let pool = Pool::new((*test_pool.connect_options()).clone(), options);
        let mut lease = pool.acquire().await.unwrap();
        let bound: String = sqlx::query_scalar("SHOW statement_timeout")
            .fetch_one(lease.get())
            .await
            .unwrap();
        assert_eq!(bound, "200ms");
        let jit: String = sqlx::query_scalar("SHOW jit")
            .fetch_one(lease.get())
            .await
            .unwrap();
        assert_eq!(jit, "off");
        let first = backend_pid(&mut lease).await;
        let slow = sqlx::query("SELECT pg_sleep(5)").execute(lease.get()).await;
        let code = match &slow {
            Err(sqlx::Error::Database(error)) => error.code().map(|c| c.into_owned()),
            other => panic!("expected the server to cancel the statement, got {other:?}"),
        };
        assert_eq!(code.as_deref(), Some("57014"));
        lease.settle(&slow);
        assert_eq!(pool.status(), status(0, 0, 1));
        let mut lease = pool.acquire().await.unwrap();
        assert_ne!(backend_pid(&mut lease).await, first, "a new connection");
    }

    /// Past `max_lifetime` (zero here: always) a connection is replaced, however recently used.
    #[sqlx::test(migrations = false)]
    async fn a_connection_past_its_lifetime_is_replaced(test_pool: PgPool) {
        let mut options = options(1, Duration::MAX, Duration::MAX);
        options.max_lifetime = Duration::ZERO;
        let pool = Pool::new((*test_pool.connect_options()).clone(), options);
        let mut lease = pool.acquire().await.unwrap();
        let first = backend_pid(&mut lease).await;
        lease.settle(&Ok::<(), sqlx::Error>(()));
        let mut lease = pool.acquire().await.unwrap();
        assert_ne!(backend_pid(&mut lease).await, first);
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
