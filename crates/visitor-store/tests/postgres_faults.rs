//! The Postgres adapter driven into each class of failure for real, and what it reports: a
//! server that is not there, a closed pool, connections the server terminated, an error that is
//! neither, and the readiness ping. (The unique violation → `Conflict` is the conformance
//! suite's own case.)
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::TcpListener;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnection, PgPoolOptions};
use sqlx::{Connection, PgPool};
use visitor_domain::{NewVisitor, VisitorId};
use visitor_store::{Operations, PgStore, PgStoreOptions, StoreError, VisitorStore};

fn unavailable<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "expected Unavailable, got {result:?}"
    );
}

/// A loopback port with nothing listening on it: the port of a stopped server.
fn stopped_server_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn a_server_that_is_not_there_is_unavailable_never_internal() {
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/visitors",
        stopped_server_port()
    );
    let options = PgStoreOptions {
        max_connections: 2,
        acquire_timeout: Duration::from_millis(200),
        ..PgStoreOptions::default()
    };
    let store = PgStore::connect_lazy(&url, &options).unwrap();
    unavailable(store.ping().await);
    unavailable(store.migrate().await);
    unavailable(store.get(VisitorId::new(1).unwrap()).await);
    unavailable(store.create(NewVisitor::default()).await);
}

/// `from_pool` takes the sqlx pool's size and acquire timeout: a server that takes the
/// connection and never answers is reported unavailable once the pool's 100 ms are up, not the
/// store's default 3 s.
#[tokio::test]
async fn a_store_from_a_pool_keeps_its_size_and_acquire_timeout() {
    // Listening, never accepting: the kernel completes the connection, nobody answers it.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/visitors",
        silent.local_addr().unwrap().port()
    );
    let pool = PgPoolOptions::new()
        .max_connections(3)
        .acquire_timeout(Duration::from_millis(100))
        .connect_lazy(&url)
        .unwrap();
    let store = PgStore::from_pool(&pool);
    assert_eq!(store.pool_status().map(|status| status.max), Some(3));
    let started = Instant::now();
    unavailable(store.ping().await);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(100) && waited < Duration::from_secs(3),
        "waited {waited:?}"
    );
}

#[tokio::test]
async fn a_url_that_cannot_be_read_is_refused_at_once() {
    let options = PgStoreOptions::default();
    assert!(matches!(
        PgStore::connect_lazy("postgres://[::1", &options),
        Err(StoreError::Internal(_))
    ));
}

#[sqlx::test(migrations = false)]
async fn a_closed_store_is_unavailable(pool: PgPool) {
    let store = PgStore::from_pool(&pool);
    store.ping().await.unwrap();
    let created = store.create(NewVisitor::default()).await.unwrap();
    store.close().await;
    unavailable(store.get(created.id).await);
    unavailable(store.ping().await);
}

/// Terminates every other session on the test's database, as a server restart would.
async fn terminate_other_sessions(pool: &PgPool) {
    let mut admin = PgConnection::connect_with(&pool.connect_options())
        .await
        .unwrap();
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .execute(&mut admin)
    .await
    .unwrap();
    admin.close().await.unwrap();
}

/// A session the server terminated (as a restart does) is reported as the storage being
/// unavailable, a 503 the client may retry, never a 500. The pool here never pings, so the
/// request meets the dead session whatever the timing.
#[sqlx::test(migrations = false)]
async fn a_terminated_session_is_unavailable(pool: PgPool) {
    let never_pinged = PgStoreOptions {
        max_connections: 1,
        ping_idle_after: Duration::MAX,
        ..PgStoreOptions::default()
    };
    let store = PgStore::with_options((*pool.connect_options()).clone(), &never_pinged);
    let created = store.create(NewVisitor::default()).await.unwrap();
    terminate_other_sessions(&pool).await;
    unavailable(store.get(created.id).await);
}

#[sqlx::test(migrations = false)]
async fn a_connection_killed_while_idle_is_replaced_before_use(pool: PgPool) {
    let store = PgStore::connect_lazy(&connect_url(&pool), &PgStoreOptions::default()).unwrap();
    let created = store.create(NewVisitor::default()).await.unwrap();
    terminate_other_sessions(&pool).await;
    // What is under test is the idle time itself: past the threshold, a pooled connection is
    // pinged before use, and a dead one replaced, so no request fails.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(store.get(created.id).await.unwrap(), created);
}

fn connect_url(pool: &PgPool) -> String {
    let options = pool.connect_options();
    format!(
        "postgres://{}@{}:{}/{}",
        options.get_username(),
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap()
    )
}

/// A database error that is neither a conflict nor the server being away is internal: here the
/// table was taken away under the store.
#[sqlx::test(migrations = false)]
async fn any_other_database_error_is_internal(pool: PgPool) {
    let store = PgStore::from_pool(&pool);
    let created = store.create(NewVisitor::default()).await.unwrap();
    sqlx::query("ALTER TABLE visitors RENAME TO visitors_gone")
        .execute(&pool)
        .await
        .unwrap();
    let result = store.get(created.id).await;
    assert!(matches!(result, Err(StoreError::Internal(_))), "{result:?}");
    let result = store.create(NewVisitor::default()).await;
    assert!(matches!(result, Err(StoreError::Internal(_))), "{result:?}");
}
