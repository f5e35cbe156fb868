//! The change log's layout on PostgreSQL (migration `20261212000001`): a visitor's last change
//! is kept on its row, moved by the store's own statements and by any other writer's update
//! that changes something; the triggers writing the deliveries of creations and updates are on
//! only while a webhook is registered.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use sqlx::PgPool;
use visitor_domain::{NewVisitor, VisitorId, VisitorPatch};
use visitor_store::{NewWebhook, PgStore, VisitorStore, WebhookEvent, WebhookStore};

fn patch(body: Value) -> VisitorPatch {
    VisitorPatch::from_json(body.as_object().unwrap()).unwrap()
}

/// The sequence number of the visitor's last change.
async fn position(pool: &PgPool, id: VisitorId) -> i64 {
    sqlx::query_scalar("SELECT sequence FROM visitor_changes WHERE visitor_id = $1")
        .bind(id.get())
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn other_writer_sets_name(pool: &PgPool, id: VisitorId, name: &str) {
    sqlx::query("UPDATE visitors SET name = $2 WHERE id = $1")
        .bind(id.get())
        .bind(name)
        .execute(pool)
        .await
        .unwrap();
}

/// Whether each trigger writing deliveries of creations and updates is on.
async fn delivery_triggers_on(pool: &PgPool) -> Vec<(String, bool)> {
    sqlx::query_as(
        "SELECT tgname::text, tgenabled <> 'D' FROM pg_trigger
         WHERE tgrelid = 'visitors'::regclass AND tgname LIKE '%deliveries' ORDER BY tgname",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

fn webhook(url: &str) -> NewWebhook {
    NewWebhook {
        url: url.into(),
        events: WebhookEvent::ALL.to_vec(),
        description: None,
        secret: "whsec_c2VjcmV0".into(),
    }
}

#[sqlx::test(migrations = false)]
async fn an_update_moves_the_visitors_change_only_when_it_changes_something(pool: PgPool) {
    let store = PgStore::from_pool(&pool);
    store.migrate().await.unwrap();
    let id = store.create(NewVisitor::default()).await.unwrap().id;
    let created = position(&pool, id).await;

    store.update(id, patch(json!({"name": "A"}))).await.unwrap();
    let updated = position(&pool, id).await;
    assert!(updated > created, "the store's update moves it");
    store.update(id, patch(json!({"name": "A"}))).await.unwrap();
    assert_eq!(position(&pool, id).await, updated, "no change, no move");

    // A statement that knows nothing of the log (another tool, an operator's fix).
    other_writer_sets_name(&pool, id, "B").await;
    let by_another = position(&pool, id).await;
    assert!(by_another > updated, "another writer's update moves it too");
    other_writer_sets_name(&pool, id, "B").await;
    assert_eq!(position(&pool, id).await, by_another, "no change, no move");
}

#[sqlx::test(migrations = false)]
async fn deliveries_are_written_only_while_a_webhook_is_registered(pool: PgPool) {
    let store = PgStore::from_pool(&pool);
    store.migrate().await.unwrap();
    let off = [
        ("visitors_created_deliveries".to_owned(), false),
        ("visitors_updated_deliveries".to_owned(), false),
    ];
    let on = off.clone().map(|(name, _)| (name, true));
    assert_eq!(delivery_triggers_on(&pool).await, off);

    let first = store
        .create_webhook(webhook("http://127.0.0.1:9/a"))
        .await
        .unwrap();
    let second = store
        .create_webhook(webhook("http://127.0.0.1:9/b"))
        .await
        .unwrap();
    assert_eq!(delivery_triggers_on(&pool).await, on);
    store.delete_webhook(first.id).await.unwrap();
    assert_eq!(delivery_triggers_on(&pool).await, on, "one is left");
    let id = store.create(NewVisitor::default()).await.unwrap().id;
    store.update(id, patch(json!({"name": "A"}))).await.unwrap();
    assert_eq!(store.pending_deliveries().await.unwrap(), 2);

    store.delete_webhook(second.id).await.unwrap();
    assert_eq!(delivery_triggers_on(&pool).await, off);
    assert!(store.delete_webhook(second.id).await.is_err());
    assert_eq!(delivery_triggers_on(&pool).await, off);
    assert_eq!(store.pending_deliveries().await.unwrap(), 0);

    // Whoever registers or removes one: the version before during a rolling upgrade, an
    // operator's SQL.
    sqlx::query(
        "INSERT INTO webhooks (url, events, secret)
         VALUES ('http://127.0.0.1:9/c', '{visitor.created}', 'whsec_c2VjcmV0')",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(delivery_triggers_on(&pool).await, on);
    sqlx::query("DELETE FROM webhooks")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(delivery_triggers_on(&pool).await, off);
}
