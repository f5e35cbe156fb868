//! The Postgres idempotent create when a concurrent call records the key between its look and
//! its insert: the one interleaving the conformance suite's race may or may not produce, made
//! to happen here with a transaction held open.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use sqlx::PgPool;
use visitor_domain::{BodyFingerprint, Name, NewVisitor};
use visitor_store::{IdempotencyKey, IdempotencyPolicy, IdempotencyStore, Idempotent, PgStore};

/// Sessions of this database waiting for a lock.
async fn waiting_for_a_lock(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrations = false)]
async fn a_key_recorded_first_by_a_concurrent_call_is_in_use(pool: PgPool) {
    let store = Arc::new(PgStore::from_pool(&pool));
    store.migrate().await.unwrap();
    let Value::Object(body) = json!({"name": "Once"}) else {
        unreachable!()
    };
    let fingerprint = BodyFingerprint::of(&body);

    // The first call's transaction stays open: its record is written and not yet visible, so
    // the second call's look finds nothing and its insert waits on the first's row.
    let mut first = pool.begin().await.unwrap();
    let claimed: bool = sqlx::query_scalar(
        "SELECT claimed FROM create_visitor_idempotent(
             'owner', 'race', $1, 86400, 'Once', NULL, NULL, NULL, NULL, false, now())",
    )
    .bind(fingerprint.as_bytes().as_slice())
    .fetch_one(&mut *first)
    .await
    .unwrap();
    assert!(claimed);

    let second = tokio::spawn({
        let store = Arc::clone(&store);
        async move {
            let key = IdempotencyKey {
                owner: "owner".to_owned(),
                key: "race".to_owned(),
            };
            let new = NewVisitor {
                name: Some(Name::parse("Once").unwrap()),
                ..NewVisitor::default()
            };
            store
                .create_idempotent(&key, &fingerprint, &IdempotencyPolicy::default(), new)
                .await
        }
    });
    // A state to reach, not a race to hide: the second call is blocked until the commit below.
    let mut polls = 0;
    while waiting_for_a_lock(&pool).await == 0 {
        polls += 1;
        assert!(
            polls < 1000,
            "the second call never waited for the first's record"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.commit().await.unwrap();

    let outcome = second.await.unwrap();
    assert!(matches!(outcome, Ok(Idempotent::InUse)), "{outcome:?}");
    // Nothing of the second call is kept: one visitor, the first's.
    let visitors: i64 = sqlx::query_scalar("SELECT count(*) FROM visitors")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(visitors, 1);
}
