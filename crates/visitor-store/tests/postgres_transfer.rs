//! Export and restore (contract §9.3) on PostgreSQL: the export is every visitor as Show writes
//! it, in id order; a restore keeps every key, says what each line did, and moves the id
//! sequence past what it stored.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use sqlx::PgPool;
use visitor_domain::{NewVisitor, Visitor};
use visitor_store::{IfMatch, PgStore, Restored, VisitorStore};

fn visitor(value: serde_json::Value) -> Visitor {
    serde_json::from_value(value).unwrap()
}

fn new_visitor(value: serde_json::Value) -> NewVisitor {
    NewVisitor::from_json(value.as_object().unwrap()).unwrap()
}

/// Exports the store: the bytes, and every count `progress` was called with.
async fn export(store: &PgStore) -> (Vec<u8>, Vec<u64>) {
    let mut out = Vec::new();
    let mut calls = Vec::new();
    let written = store
        .export(&mut out, &mut |n| calls.push(n))
        .await
        .unwrap();
    assert_eq!(calls.last(), Some(&written));
    (out, calls)
}

#[sqlx::test(migrations = false)]
async fn the_export_is_every_visitor_as_show_writes_it_in_id_order(pool: PgPool) {
    let store = PgStore::from_pool(&pool);
    let (empty, calls) = export(&store).await;
    assert!(empty.is_empty());
    assert_eq!(calls, [0]);
    let awkward = [
        json!({"name": "tab\tnewline\nback\\slash \\N", "notes": "", "banned": true,
               "created": "2014-09-01T10:29:59.25Z", "external_id": "e1"}),
        json!({}),
        json!({"name": "Zoë 名前 🎉", "email": "zoe@example.com", "phone": "+1 (555) 010.2",
               "created": "1999-12-31T23:59:59.000001Z"}),
    ];
    let mut made = Vec::new();
    for body in awkward {
        made.push(store.create(new_visitor(body)).await.unwrap());
    }
    store.delete(made[1].id, &IfMatch::Any).await.unwrap();
    let (bytes, calls) = export(&store).await;
    assert_eq!(
        calls,
        [2],
        "progress is told every 10,000 visitors and at the end"
    );
    let expected: String = [&made[0], &made[2]]
        .iter()
        .map(|stored| serde_json::to_string(&stored.visitor).unwrap() + "\n")
        .collect();
    assert_eq!(String::from_utf8(bytes).unwrap(), expected);
}

#[sqlx::test(migrations = false)]
async fn a_restore_keeps_ids_and_every_key_and_a_second_run_skips(pool: PgPool) {
    let store = PgStore::from_pool(&pool);
    let lines = vec![
        (
            1,
            visitor(
                json!({"banned": true, "created": "2014-09-01T10:29:59.250Z",
            "email": "a@example.com", "external_id": "e-7", "id": 7, "name": "tab\there",
            "notes": "back\\slash \\N", "phone": "+65 1234"}),
            ),
        ),
        (
            3,
            visitor(
                json!({"banned": false, "created": "2020-01-01T00:00:00Z", "email": null,
            "external_id": null, "id": 3, "name": null, "notes": "", "phone": null}),
            ),
        ),
    ];
    let outcomes = store.restore(&lines).await.unwrap();
    assert_eq!(outcomes, [(1, Restored::Created), (3, Restored::Created)]);
    for (_, visitor) in &lines {
        assert_eq!(&store.get(visitor.id).await.unwrap().visitor, visitor);
    }
    let next = store.create(NewVisitor::default()).await.unwrap();
    assert_eq!(
        next.id.get(),
        8,
        "ids continue above the highest restored id"
    );
    let again = store.restore(&lines).await.unwrap();
    assert_eq!(again, [(1, Restored::Skipped), (3, Restored::Skipped)]);
    assert!(store.restore(&[]).await.unwrap().is_empty());
}

#[sqlx::test(migrations = false)]
async fn a_restore_says_why_each_refused_line_failed_and_stores_the_others(pool: PgPool) {
    let store = PgStore::from_pool(&pool);
    let existing = store
        .create(new_visitor(json!({"external_id": "taken", "name": "Kept"})))
        .await
        .unwrap();
    let id = existing.id.get();
    let shown = |changes: serde_json::Value| {
        let mut value = serde_json::to_value(&existing.visitor).unwrap();
        for (key, item) in changes.as_object().unwrap() {
            value[key] = item.clone();
        }
        visitor(value)
    };
    let lines = vec![
        (1, shown(json!({}))),
        (2, shown(json!({"name": "Other"}))),
        (4, shown(json!({"id": id + 10}))),
        (5, shown(json!({"id": id + 20, "external_id": "fresh"}))),
        (6, shown(json!({"id": id + 20, "external_id": "fresh"}))),
        (
            7,
            shown(json!({"id": id + 20, "external_id": "fresh", "name": "Twice"})),
        ),
    ];
    let outcomes = store.restore(&lines).await.unwrap();
    assert_eq!(
        outcomes,
        [
            (1, Restored::Skipped),
            (
                2,
                Restored::Failed(format!("visitor {id} exists with other content"))
            ),
            (
                4,
                Restored::Failed(format!("external_id \"taken\" belongs to visitor {id}"))
            ),
            (5, Restored::Created),
            (6, Restored::Skipped),
            (
                7,
                Restored::Failed(format!("visitor {} exists with other content", id + 20))
            ),
        ]
    );
    assert_eq!(store.get(existing.id).await.unwrap(), existing);
}
