//! Interleavings the conformance suite's races may or may not produce, made to happen here with
//! a transaction held open: the Postgres idempotent create when a concurrent call records the
//! key between its look and its insert, and an import whose new `external_id` a concurrent
//! writer inserts between the import's look and its insert; the change log's trap (a
//! transaction that drew an earlier position committing after a later one was read); and a
//! webhook registered while a write is in flight.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use sqlx::PgPool;
use visitor_domain::{BodyFingerprint, Name, NewVisitor, VisitorUpsert};
use visitor_store::{
    ChangeCursor, ChangeLog, ChangePage, ChangeStart, IdempotencyKey, IdempotencyPolicy,
    IdempotencyStore, Idempotent, ImportLine, NewWebhook, PgStore, Upserted, VisitorStore,
    WebhookEvent, WebhookStore,
};

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

/// Waits until a session of this database is blocked on a lock, which the caller's open
/// transaction holds: a state to reach, not a race to hide.
async fn until_one_waits(pool: &PgPool, what: &str) {
    let mut polls = 0;
    while waiting_for_a_lock(pool).await == 0 {
        polls += 1;
        assert!(polls < 1000, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
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
    // The second call is blocked until the commit below.
    until_one_waits(&pool, "the second call never waited for the first's record").await;
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

#[sqlx::test(migrations = false)]
async fn an_import_whose_new_external_id_a_concurrent_writer_takes_updates_that_visitor(
    pool: PgPool,
) {
    let store = Arc::new(PgStore::from_pool(&pool));
    store.migrate().await.unwrap();

    // The writer's visitor is inserted and not yet visible: the import finds no visitor with
    // `taken`, inserts it with the new ones in one statement, and waits on the writer's row.
    let mut writer = pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO visitors (external_id, notes, created) VALUES ('taken', 'Writer', now())",
    )
    .execute(&mut *writer)
    .await
    .unwrap();
    let import = tokio::spawn({
        let store = Arc::clone(&store);
        async move {
            let lines = ["new-1", "taken", "new-2"]
                .iter()
                .map(|external_id| {
                    let body = json!({"external_id": external_id, "name": "Imported"});
                    ImportLine::Upsert(VisitorUpsert::from_json(body.as_object().unwrap()).unwrap())
                })
                .collect();
            store.import(lines).await
        }
    });
    until_one_waits(&pool, "the import never waited for the writer's row").await;
    writer.commit().await.unwrap();

    // The batch's insert failed on the writer's key; the lines, applied again one by one,
    // create the new ones and update the writer's visitor.
    let outcomes = import.await.unwrap().expect("no store error");
    let kinds: Vec<&str> = outcomes
        .iter()
        .map(|outcome| match outcome {
            Ok(Upserted::Created(_)) => "created",
            Ok(Upserted::Updated(_)) => "updated",
            Ok(Upserted::Unchanged(_)) => "unchanged",
            Err(_) => "failed",
        })
        .collect();
    assert_eq!(kinds, ["created", "updated", "created"], "{outcomes:?}");
    let stored: Vec<(String, Option<String>, Option<String>)> =
        sqlx::query_as("SELECT external_id, name, notes FROM visitors ORDER BY external_id")
            .fetch_all(&pool)
            .await
            .unwrap();
    let imported = Some("Imported".to_owned());
    assert_eq!(
        stored,
        [
            ("new-1".to_owned(), imported.clone(), None),
            ("new-2".to_owned(), imported.clone(), None),
            ("taken".to_owned(), imported, Some("Writer".to_owned())),
        ]
    );
}

/// Reads the change log from `cursor` to the newest change it may hand out, as a feed reader
/// does: the visitors in order, and where to read on. While changes are held back by another
/// test's transaction (the horizon is the cluster's), it asks again.
async fn read_on(store: &PgStore, mut cursor: ChangeCursor) -> (Vec<i64>, ChangeCursor) {
    let mut read = Vec::new();
    let mut polls = 0;
    loop {
        let ChangePage::Changes {
            changes,
            next,
            held_back,
        } = store
            .changes(ChangeStart::After(cursor), 100)
            .await
            .unwrap()
        else {
            panic!("expired")
        };
        read.extend(changes.iter().map(|change| change.visitor_id.get()));
        cursor = next;
        if changes.is_empty() && !held_back {
            return (read, cursor);
        }
        polls += usize::from(changes.is_empty());
        assert!(polls < 1000, "changes held back for 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn transaction_id(transaction: &mut sqlx::PgConnection) -> i64 {
    sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
        .fetch_one(transaction)
        .await
        .unwrap()
}

async fn insert_visitor(transaction: &mut sqlx::PgConnection, name: &str) -> (i64, i64) {
    let id: i64 =
        sqlx::query_scalar("INSERT INTO visitors (name, created) VALUES ($1, now()) RETURNING id")
            .bind(name)
            .fetch_one(&mut *transaction)
            .await
            .unwrap();
    let sequence: i64 =
        sqlx::query_scalar("SELECT sequence FROM visitor_changes WHERE visitor_id = $1")
            .bind(id)
            .fetch_one(transaction)
            .await
            .unwrap();
    (id, sequence)
}

/// The trap: `held` draws the earlier sequence number, `early` commits a later one first, and a
/// reader reads it. A reader ordered by sequence alone would now stand past `held`'s change and
/// skip it for ever; this one gets it once `held` commits.
#[sqlx::test(migrations = false)]
async fn a_change_committed_after_a_later_one_was_read_is_not_skipped(pool: PgPool) {
    let store = PgStore::from_pool(&pool);
    store.migrate().await.unwrap();
    // `early` takes its transaction id first, so its entry is older than the horizon while
    // `held` is in flight; `held` then writes first.
    let mut early = pool.begin().await.unwrap();
    let early_transaction = transaction_id(&mut early).await;
    let mut held = pool.begin().await.unwrap();
    let (held_visitor, held_sequence) = insert_visitor(&mut held, "Held").await;
    let (early_visitor, early_sequence) = insert_visitor(&mut early, "Early").await;
    assert!(held_sequence < early_sequence);
    assert!(early_transaction < transaction_id(&mut held).await);
    early.commit().await.unwrap();

    let (read, cursor) = read_on(&store, ChangeCursor::default()).await;
    assert_eq!(
        read,
        [early_visitor],
        "the committed change is read, the held one is not there"
    );
    // The reader stands past `early`'s change, whose sequence number is above `held`'s.
    assert!(cursor.position.transaction >= early_transaction as u64);

    held.commit().await.unwrap();
    let (read, _) = read_on(&store, cursor).await;
    assert_eq!(
        read,
        [held_visitor],
        "the change committed last is read after the cursor"
    );
}

/// The other order: `held` is older and still in flight, so a change committed after it waits
/// behind it (the page says changes are held back) and both come once it commits.
#[sqlx::test(migrations = false)]
async fn a_change_waits_behind_an_older_transaction_still_in_flight(pool: PgPool) {
    let store = PgStore::from_pool(&pool);
    store.migrate().await.unwrap();
    let mut held = pool.begin().await.unwrap();
    let (held_visitor, _) = insert_visitor(&mut held, "Held").await;
    let later = store.create(NewVisitor::default()).await.unwrap().id.get();

    let ChangePage::Changes {
        changes, held_back, ..
    } = store
        .changes(ChangeStart::After(ChangeCursor::default()), 100)
        .await
        .unwrap()
    else {
        panic!("expired")
    };
    assert!(changes.is_empty(), "{changes:?}");
    assert!(held_back, "the later change is there, waiting");

    held.commit().await.unwrap();
    let (read, _) = read_on(&store, ChangeCursor::default()).await;
    assert_eq!(read, [held_visitor, later]);
}

/// Registering a webhook waits for the writes in flight: a write either ended before the
/// registration (it is not for the webhook) or comes after it and is delivered.
#[sqlx::test(migrations = false)]
async fn a_webhook_registered_while_a_write_is_in_flight_waits_for_it(pool: PgPool) {
    let store = Arc::new(PgStore::from_pool(&pool));
    store.migrate().await.unwrap();
    let mut writer = pool.begin().await.unwrap();
    insert_visitor(&mut writer, "Before").await;
    let registering = tokio::spawn({
        let store = Arc::clone(&store);
        async move {
            store
                .create_webhook(NewWebhook {
                    url: "http://127.0.0.1:9/".into(),
                    events: WebhookEvent::ALL.to_vec(),
                    description: None,
                    secret: "whsec_c2VjcmV0".into(),
                })
                .await
                .unwrap()
        }
    });
    until_one_waits(&pool, "the registration never waited for the write").await;
    assert!(!registering.is_finished());
    writer.commit().await.unwrap();
    registering.await.unwrap();
    assert_eq!(store.pending_deliveries().await.unwrap(), 0);
    store.create(NewVisitor::default()).await.unwrap();
    assert_eq!(store.pending_deliveries().await.unwrap(), 1);
}
