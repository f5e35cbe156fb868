//! The conformance suite: one set of cases that every [`VisitorStore`] must pass.
//!
//! Each case takes a fresh, empty store and panics when the store breaks the contract. Backends
//! run the whole list through [`conformance_tests!`](crate::conformance_tests), which writes one
//! test per case.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::sync::Arc;

use futures::future::join_all;
use serde_json::{json, Value};
use visitor_domain::{
    Created, ErrorCode, NewVisitor, ValidationErrors, Visitor, VisitorId, VisitorPatch,
};

use crate::{SharedStore, StoreError};

/// Writes one test per conformance case for a backend.
///
/// `$attr` is the test attribute, `$store` a function from the test's arguments to a
/// [`SharedStore`](crate::SharedStore), and `$args` those arguments.
#[macro_export]
macro_rules! conformance_tests {
    (#[$attr:meta] async fn $params:tt => $store:expr) => {
        $crate::conformance_tests!(@cases #[$attr] $params $store;
            create_assigns_distinct_positive_ids,
            create_then_get_returns_the_same_visitor,
            create_defaults_banned_and_created,
            create_keeps_values_exactly_at_their_limits,
            create_keeps_created_to_the_microsecond,
            get_of_a_missing_id_is_not_found,
            duplicate_external_id_is_a_conflict_and_stores_nothing,
            external_id_uniqueness_is_exact_and_ignores_null,
            update_merges_only_the_keys_sent,
            update_clears_name_email_and_phone_with_null,
            update_of_a_missing_id_is_not_found,
            update_refuses_changed_read_only_keys_and_changes_nothing,
            update_accepts_the_object_it_read,
            empty_update_changes_nothing,
            ping_answers,
            concurrent_updates_of_different_keys_all_persist,
            concurrent_creates_with_one_external_id_give_one_success,
            concurrent_creates_give_distinct_ids,
        );
    };
    (@cases #[$attr:meta] $params:tt $store:expr; $($case:ident),* $(,)?) => {
        $(
            #[$attr]
            async fn $case $params {
                let store: $crate::SharedStore = $store;
                $crate::conformance::$case(store).await;
            }
        )*
    };
}

fn new_visitor(body: Value) -> NewVisitor {
    NewVisitor::from_json(body.as_object().expect("an object")).expect("a valid create")
}

fn patch(body: Value) -> VisitorPatch {
    VisitorPatch::from_json(body.as_object().expect("an object")).expect("a valid patch")
}

fn seed() -> NewVisitor {
    new_visitor(json!({
        "name": "Visitor 1",
        "email": "visitor1@example.com",
        "notes": "This visitor is really cool.",
        "phone": "+65 12345678",
        "external_id": "john_extid"
    }))
}

fn invalid_keys(result: Result<Visitor, StoreError>) -> ValidationErrors {
    match result {
        Err(StoreError::Invalid(errors)) => errors,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn wire(visitor: &Visitor) -> Value {
    serde_json::to_value(visitor).expect("a visitor serialises")
}

pub async fn create_assigns_distinct_positive_ids(store: SharedStore) {
    let first = store.create(NewVisitor::default()).await.unwrap();
    let second = store.create(NewVisitor::default()).await.unwrap();
    assert!(first.id.get() > 0);
    assert!(
        second.id.get() > first.id.get(),
        "ids must grow and never be reused"
    );
}

pub async fn create_then_get_returns_the_same_visitor(store: SharedStore) {
    let created = store.create(seed()).await.unwrap();
    assert_eq!(created.name.as_ref().map(|n| n.as_str()), Some("Visitor 1"));
    assert_eq!(
        created.external_id.as_ref().map(|n| n.as_str()),
        Some("john_extid")
    );
    let fetched = store.get(created.id).await.unwrap();
    assert_eq!(fetched, created);
}

pub async fn create_defaults_banned_and_created(store: SharedStore) {
    let before = Created::now();
    let created = store.create(NewVisitor::default()).await.unwrap();
    let after = Created::now();
    assert!(!created.banned);
    assert!(created.created >= before && created.created <= after);
    assert_eq!(created.created.get().timestamp_subsec_nanos(), 0);
    let value = wire(&created);
    for key in ["name", "email", "phone", "notes", "external_id"] {
        assert!(value[key].is_null(), "{key} must be null");
    }
}

pub async fn create_keeps_values_exactly_at_their_limits(store: SharedStore) {
    let body = json!({
        "name": "é".repeat(255),
        "email": "Visitor.One+tag@Example.COM",
        "phone": "(+65) 1234-5678.9 ",
        "notes": "🦀".repeat(10_000),
        "external_id": format!("  {}  ", "x".repeat(251)),
        "banned": true,
        "created": "2014-09-01T12:29:59+02:00"
    });
    let created = store.create(new_visitor(body.clone())).await.unwrap();
    let fetched = wire(&store.get(created.id).await.unwrap());
    for key in ["name", "email", "phone", "notes", "external_id", "banned"] {
        assert_eq!(
            fetched[key], body[key],
            "{key} must be stored exactly as sent"
        );
    }
    assert_eq!(fetched["created"], "2014-09-01T10:29:59Z");
    let empty_notes = store
        .create(new_visitor(json!({"notes": ""})))
        .await
        .unwrap();
    assert_eq!(wire(&store.get(empty_notes.id).await.unwrap())["notes"], "");
}

pub async fn create_keeps_created_to_the_microsecond(store: SharedStore) {
    let created = store
        .create(new_visitor(
            json!({"created": "2014-09-01T10:29:59.123456Z"}),
        ))
        .await
        .unwrap();
    let fetched = store.get(created.id).await.unwrap();
    assert_eq!(fetched.created.to_rfc3339(), "2014-09-01T10:29:59.123456Z");
    let millis = store
        .create(new_visitor(json!({"created": "2014-09-01T10:29:59.250Z"})))
        .await
        .unwrap();
    assert_eq!(
        wire(&store.get(millis.id).await.unwrap())["created"],
        "2014-09-01T10:29:59.250Z"
    );
}

pub async fn get_of_a_missing_id_is_not_found(store: SharedStore) {
    let missing = VisitorId::new(i64::MAX).unwrap();
    assert!(matches!(
        store.get(missing).await,
        Err(StoreError::NotFound)
    ));
}

pub async fn duplicate_external_id_is_a_conflict_and_stores_nothing(store: SharedStore) {
    let first = store.create(seed()).await.unwrap();
    let again = store
        .create(new_visitor(
            json!({"external_id": "john_extid", "name": "Other"}),
        ))
        .await;
    assert!(matches!(again, Err(StoreError::Conflict)), "got {again:?}");
    let next = store.create(NewVisitor::default()).await.unwrap();
    // Whatever id the refused create may have consumed, no visitor holds it with its data.
    for id in first.id.get() + 1..next.id.get() {
        let id = VisitorId::new(id).unwrap();
        assert!(matches!(store.get(id).await, Err(StoreError::NotFound)));
    }
    assert_eq!(store.get(first.id).await.unwrap(), first);
}

pub async fn external_id_uniqueness_is_exact_and_ignores_null(store: SharedStore) {
    store
        .create(new_visitor(json!({"external_id": "abc"})))
        .await
        .unwrap();
    store
        .create(new_visitor(json!({"external_id": "ABC"})))
        .await
        .unwrap();
    store
        .create(new_visitor(json!({"external_id": "abc "})))
        .await
        .unwrap();
    store.create(NewVisitor::default()).await.unwrap();
    store
        .create(new_visitor(json!({"external_id": null})))
        .await
        .unwrap();
}

pub async fn update_merges_only_the_keys_sent(store: SharedStore) {
    let created = store.create(seed()).await.unwrap();
    let updated = store
        .update(
            created.id,
            patch(json!({"name": "John", "banned": true, "created": "2020-02-02T02:02:02Z"})),
        )
        .await
        .unwrap();
    let mut expected = created.clone();
    expected.name = Some(visitor_domain::Name::parse("John").unwrap());
    expected.banned = true;
    expected.created = Created::parse("2020-02-02T02:02:02Z").unwrap();
    assert_eq!(updated, expected);
    assert_eq!(store.get(created.id).await.unwrap(), expected);
}

pub async fn update_clears_name_email_and_phone_with_null(store: SharedStore) {
    let created = store.create(seed()).await.unwrap();
    let updated = store
        .update(
            created.id,
            patch(json!({"name": null, "email": null, "phone": null})),
        )
        .await
        .unwrap();
    assert_eq!(
        (updated.name, updated.email, updated.phone),
        (None, None, None)
    );
    let fetched = store.get(created.id).await.unwrap();
    assert_eq!(
        (fetched.name, fetched.email, fetched.phone),
        (None, None, None)
    );
    assert_eq!(fetched.notes, created.notes);
}

pub async fn update_of_a_missing_id_is_not_found(store: SharedStore) {
    let missing = VisitorId::new(i64::MAX).unwrap();
    for body in [
        json!({"name": "x"}),
        json!({}),
        json!({"id": 1}),
        json!({"notes": "x"}),
    ] {
        let result = store.update(missing, patch(body.clone())).await;
        assert!(
            matches!(result, Err(StoreError::NotFound)),
            "{body}: {result:?}"
        );
    }
}

pub async fn update_refuses_changed_read_only_keys_and_changes_nothing(store: SharedStore) {
    let created = store.create(seed()).await.unwrap();
    let other_id = created.id.get() + 1;
    let cases = [
        (
            json!({"external_id": "other", "name": "John"}),
            vec!["external_id"],
        ),
        (json!({"notes": "other", "banned": true}), vec!["notes"]),
        (json!({"notes": null}), vec!["notes"]),
        (json!({"external_id": null}), vec!["external_id"]),
        (json!({"id": other_id, "email": null}), vec!["id"]),
        (
            json!({"id": other_id, "notes": "x", "external_id": "y"}),
            vec!["external_id", "id", "notes"],
        ),
    ];
    for (body, keys) in cases {
        let errors = invalid_keys(store.update(created.id, patch(body.clone())).await);
        assert_eq!(errors.keys().collect::<Vec<_>>(), keys, "{body}");
        for key in keys {
            assert_eq!(errors.get(key).unwrap()[0].code, ErrorCode::ReadOnly);
        }
        assert_eq!(
            store.get(created.id).await.unwrap(),
            created,
            "{body} changed something"
        );
    }
}

pub async fn update_accepts_the_object_it_read(store: SharedStore) {
    let created = store.create(seed()).await.unwrap();
    let mut body = wire(&created);
    body["name"] = json!("John");
    let updated = store.update(created.id, patch(body)).await.unwrap();
    assert_eq!(updated.name.as_ref().map(|n| n.as_str()), Some("John"));
    assert_eq!(updated.external_id, created.external_id);
    assert_eq!(updated.notes, created.notes);
    let bare = store.create(NewVisitor::default()).await.unwrap();
    let echoed = store.update(bare.id, patch(wire(&bare))).await.unwrap();
    assert_eq!(echoed, bare);
}

pub async fn empty_update_changes_nothing(store: SharedStore) {
    let created = store.create(seed()).await.unwrap();
    assert_eq!(
        store.update(created.id, patch(json!({}))).await.unwrap(),
        created
    );
    assert_eq!(store.get(created.id).await.unwrap(), created);
}

pub async fn ping_answers(store: SharedStore) {
    store.ping().await.unwrap();
}

/// Four rounds of five simultaneous updates, each of a different key of one visitor: after
/// each round every key holds the value its update wrote.
pub async fn concurrent_updates_of_different_keys_all_persist(store: SharedStore) {
    let created = store.create(seed()).await.unwrap();
    for round in 0..4 {
        let bodies = [
            json!({"name": format!("Name {round}")}),
            json!({"email": format!("round{round}@example.com")}),
            json!({"phone": format!("+1 555 000 {round}")}),
            json!({"banned": round % 2 == 0}),
            json!({"created": format!("202{round}-01-01T00:00:00Z")}),
        ];
        let updates = bodies.into_iter().map(|body| {
            let store = Arc::clone(&store);
            let id = created.id;
            tokio::spawn(async move { store.update(id, patch(body)).await })
        });
        for outcome in join_all(updates).await {
            outcome
                .expect("the task ran")
                .expect("the update succeeded");
        }
        let value = wire(&store.get(created.id).await.unwrap());
        assert_eq!(value["name"], format!("Name {round}"));
        assert_eq!(value["email"], format!("round{round}@example.com"));
        assert_eq!(value["phone"], format!("+1 555 000 {round}"));
        assert_eq!(value["banned"], round % 2 == 0);
        assert_eq!(value["created"], format!("202{round}-01-01T00:00:00Z"));
        assert_eq!(value["notes"], "This visitor is really cool.");
    }
}

pub async fn concurrent_creates_with_one_external_id_give_one_success(store: SharedStore) {
    let creates = (0..10).map(|i| {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            store
                .create(new_visitor(
                    json!({"external_id": "shared", "name": format!("V{i}")}),
                ))
                .await
        })
    });
    let outcomes: Vec<_> = join_all(creates)
        .await
        .into_iter()
        .map(|outcome| outcome.expect("the task ran"))
        .collect();
    let successes: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
    let conflicts = outcomes
        .iter()
        .filter(|o| matches!(o, Err(StoreError::Conflict)))
        .count();
    assert_eq!(successes.len(), 1, "{outcomes:?}");
    assert_eq!(conflicts, 9, "{outcomes:?}");
    assert_eq!(&store.get(successes[0].id).await.unwrap(), successes[0]);
}

pub async fn concurrent_creates_give_distinct_ids(store: SharedStore) {
    let creates = (0..200).map(|i| {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            store
                .create(new_visitor(json!({"name": format!("Visitor {i}")})))
                .await
        })
    });
    let mut ids = HashSet::new();
    for outcome in join_all(creates).await {
        let visitor = outcome
            .expect("the task ran")
            .expect("the create succeeded");
        assert!(ids.insert(visitor.id), "id {} given twice", visitor.id);
        let stored = store.get(visitor.id).await.unwrap();
        assert_eq!(stored, visitor);
    }
    assert_eq!(ids.len(), 200);
}
