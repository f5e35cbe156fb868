//! The conformance suite: one set of cases that every [`VisitorStore`] must pass.
//!
//! Each case takes a fresh, empty store and panics when the store breaks the contract. The cases
//! are declared inside one `cases!` invocation, which also writes the
//! `visitor_store::conformance_tests!` macro from the same list: a backend runs every case by
//! invoking it once (see `tests/conformance.rs`), and a case cannot be added without running.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::sync::Arc;

use futures::future::join_all;
use serde_json::{json, Value};
use visitor_domain::{
    BodyFingerprint, Created, ErrorCode, NewVisitor, ValidationErrors, Visitor, VisitorFilter,
    VisitorId, VisitorPatch, VisitorUpsert,
};

use crate::{
    AttemptResult, Change, ChangeCursor, ChangePage, ChangeStart, Delivery, DeliveryOutcome, Ended,
    IdempotencyKey, IdempotencyPolicy, Idempotent, IfMatch, ImportLine, ListQuery, NewWebhook,
    Order, SharedStorage as SharedStore, StoreError, StoredVisitor, UpsertCondition, Upserted,
    Version, WebhookEvent,
};

fn new_visitor(body: Value) -> NewVisitor {
    NewVisitor::from_json(body.as_object().expect("an object")).expect("a valid create")
}

fn patch(body: Value) -> VisitorPatch {
    VisitorPatch::from_json(body.as_object().expect("an object")).expect("a valid patch")
}

fn upsert(body: Value) -> VisitorUpsert {
    VisitorUpsert::from_json(body.as_object().expect("an object")).expect("a valid upsert")
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

fn invalid_keys<T: std::fmt::Debug>(result: Result<T, StoreError>) -> ValidationErrors {
    match result {
        Err(StoreError::Invalid(errors)) => errors,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn wire(visitor: &Visitor) -> Value {
    serde_json::to_value(visitor).expect("a visitor serialises")
}

fn ids(page: &[StoredVisitor]) -> Vec<i64> {
    page.iter().map(|stored| stored.id.get()).collect()
}

fn query(filter: VisitorFilter, order: Order, after: Option<VisitorId>, limit: usize) -> ListQuery {
    ListQuery {
        filter,
        order,
        after,
        limit,
    }
}

fn filter(pairs: &[(&str, &str)]) -> VisitorFilter {
    VisitorFilter::parse(pairs.iter().copied()).expect("a valid filter")
}

fn key(owner: &str, key: &str) -> IdempotencyKey {
    IdempotencyKey {
        owner: owner.to_owned(),
        key: key.to_owned(),
    }
}

fn fingerprint(body: &Value) -> BodyFingerprint {
    BodyFingerprint::of(body.as_object().expect("an object"))
}

fn created(outcome: Idempotent) -> StoredVisitor {
    match outcome {
        Idempotent::Created(stored) => stored,
        other => panic!("expected Created, got {other:?}"),
    }
}

/// Declares the cases and, from the same list, the [`conformance_tests!`] macro that writes one
/// test per case: a case cannot exist without running on every backend that uses the macro.
/// `$d` is a `$` token, so that the inner macro can have metavariables of its own.
/// The whole log from `start`, read `limit` at a time as a feed reader reads it: every change in
/// order (a visitor's id, and whether it is gone), and the position to read on from. Read to
/// the newest change: while changes are held back by a transaction still in flight (on
/// PostgreSQL, any of the cluster, such as another test's), the reader asks again, as a feed
/// reader does when `end_of_stream` is false.
async fn read_log(
    store: &SharedStore,
    start: ChangeStart,
    limit: usize,
) -> (Vec<(i64, bool)>, ChangeCursor) {
    let mut start = start;
    let mut read = Vec::new();
    let mut held = 0;
    loop {
        let ChangePage::Changes {
            changes,
            next,
            held_back,
        } = store.changes(start, limit).await.unwrap()
        else {
            panic!("the log expired at {start:?}");
        };
        assert!(changes.len() <= limit);
        for change in &changes {
            assert!(
                change.position <= next.position,
                "{change:?} lies beyond {next:?}"
            );
            assert_eq!(
                change.visitor.as_ref().map(|v| v.id),
                change.visitor.is_some().then_some(change.visitor_id)
            );
        }
        let positions: Vec<_> = changes.iter().map(|c| c.position).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
        if let ChangeStart::After(after) = start {
            assert!(
                positions.iter().all(|p| *p > after.position),
                "{positions:?} after {after:?}"
            );
            assert!(next.position >= after.position);
        }
        read.extend(
            changes
                .iter()
                .map(|c: &Change| (c.visitor_id.get(), c.visitor.is_none())),
        );
        if changes.len() < limit {
            if !held_back {
                return (read, next);
            }
            held += 1;
            assert!(held < 1000, "changes held back for 10 s");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        start = ChangeStart::After(next);
    }
}

fn everything() -> ChangeStart {
    ChangeStart::After(ChangeCursor::default())
}

fn new_webhook(url: &str, events: &[WebhookEvent]) -> NewWebhook {
    NewWebhook {
        url: url.to_owned(),
        events: events.to_vec(),
        description: Some(format!("to {url}")),
        secret: "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0".to_owned(),
    }
}

const LONG_LEASE: std::time::Duration = std::time::Duration::from_secs(3600);

/// What a claim gave: (webhook, event, visitor, attempt) per delivery, by webhook then visitor.
fn claimed(deliveries: &[Delivery]) -> Vec<(i64, WebhookEvent, i64, u32)> {
    let mut got: Vec<_> = deliveries
        .iter()
        .map(|d| (d.webhook_id, d.event, d.visitor_id.get(), d.attempt))
        .collect();
    got.sort_by_key(|(webhook, _, visitor, _)| (*webhook, *visitor));
    got
}

fn sent(status: u16) -> Option<AttemptResult> {
    Some(AttemptResult {
        status: Some(status),
        error: None,
    })
}

macro_rules! cases {
    ($d:tt $($(#[$meta:meta])* pub async fn $case:ident($store:ident: SharedStore $(,)?) $body:block)*) => {
        $($(#[$meta])* pub async fn $case($store: SharedStore) $body)*

        /// Every case's name, in the order declared.
        pub const CASES: &[&str] = &[$(stringify!($case)),*];

        /// Writes one test per conformance case for a backend.
        ///
        /// `$attr` is the test attribute, `$store` an expression of the test's arguments
        /// giving a [`SharedStorage`](crate::SharedStorage), and `$params` those arguments.
        #[macro_export]
        macro_rules! conformance_tests {
            (#[$d attr:meta] async fn $d params:tt => $d store:expr) => {
                $(
                    #[$d attr]
                    async fn $case $d params {
                        let store: $d crate::SharedStorage = $d store;
                        $d crate::conformance::$case(store).await;
                    }
                )*
            };
        }
    };
}

cases! { $

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
    let mut expected = created.visitor.clone();
    expected.name = Some(visitor_domain::Name::parse("John").unwrap());
    expected.banned = true;
    expected.created = Created::parse("2020-02-02T02:02:02Z").unwrap();
    assert_eq!(updated.visitor, expected);
    assert_eq!(store.get(created.id).await.unwrap().visitor, expected);
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
        (&updated.name, &updated.email, &updated.phone),
        (&None, &None, &None)
    );
    let fetched = store.get(created.id).await.unwrap();
    assert_eq!(
        (&fetched.name, &fetched.email, &fetched.phone),
        (&None, &None, &None)
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

pub async fn versions_start_at_one_and_grow_only_with_a_change(store: SharedStore) {
    let created = store.create(seed()).await.unwrap();
    assert_eq!(created.version, Version::FIRST);
    let changed = store
        .update(created.id, patch(json!({"name": "John"})))
        .await
        .unwrap();
    assert_eq!(changed.version, Version::FIRST.next());
    // The same values again, an empty patch, and the object read back: nothing changes.
    for body in [json!({"name": "John"}), json!({}), wire(&changed)] {
        let same = store.update(created.id, patch(body.clone())).await.unwrap();
        assert_eq!(same.version, changed.version, "{body}");
    }
    let cleared = store
        .update(created.id, patch(json!({"email": null, "banned": true})))
        .await
        .unwrap();
    assert_eq!(cleared.version, changed.version.next());
    assert_eq!(store.get(created.id).await.unwrap(), cleared);
}

pub async fn conditional_update_checks_the_version_first(store: SharedStore) {
    let created = store.create(seed()).await.unwrap();
    let current = IfMatch::OneOf(vec![Version::new(7), created.version]);
    let updated = store
        .update_if(created.id, patch(json!({"name": "A"})), &current)
        .await
        .unwrap();
    // The version the client read is stale now: refused, before the read-only check.
    for (body, condition) in [
        (json!({"name": "B"}), current.clone()),
        (json!({"name": "B", "notes": "changed"}), current.clone()),
        (json!({}), current.clone()),
        (json!({"name": "B"}), IfMatch::OneOf(vec![])),
    ] {
        let refused = store
            .update_if(created.id, patch(body.clone()), &condition)
            .await;
        assert!(
            matches!(refused, Err(StoreError::PreconditionFailed)),
            "{body}: {refused:?}"
        );
    }
    assert_eq!(store.get(created.id).await.unwrap(), updated);
    let fresh = IfMatch::OneOf(vec![updated.version]);
    let invalid = store
        .update_if(created.id, patch(json!({"notes": "changed"})), &fresh)
        .await;
    assert_eq!(invalid_keys(invalid).keys().collect::<Vec<_>>(), ["notes"]);
    let missing = VisitorId::new(i64::MAX).unwrap();
    assert!(matches!(
        store
            .update_if(missing, patch(json!({"name": "x"})), &fresh)
            .await,
        Err(StoreError::NotFound)
    ));
    let any = store
        .update_if(created.id, patch(json!({"name": "C"})), &IfMatch::Any)
        .await
        .unwrap();
    assert_eq!(any.version, updated.version.next());
}

/// Five updates at once, all expecting the version the visitor has: exactly one succeeds.
pub async fn concurrent_updates_expecting_one_version_give_one_success(store: SharedStore) {
    for round in 0..4 {
        let created = store.create(NewVisitor::default()).await.unwrap();
        let condition = IfMatch::OneOf(vec![created.version]);
        let id = created.id;
        let updates = (0..5).map(|i| {
            let store = Arc::clone(&store);
            let condition = condition.clone();
            tokio::spawn(async move {
                let body = patch(json!({"name": format!("Writer {i}")}));
                store.update_if(id, body, &condition).await
            })
        });
        let outcomes: Vec<_> = join_all(updates)
            .await
            .into_iter()
            .map(|outcome| outcome.expect("the task ran"))
            .collect();
        let winners: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
        let refused = outcomes
            .iter()
            .filter(|o| matches!(o, Err(StoreError::PreconditionFailed)))
            .count();
        assert_eq!(
            (winners.len(), refused),
            (1, 4),
            "round {round}: {outcomes:?}"
        );
        assert_eq!(&store.get(created.id).await.unwrap(), winners[0]);
    }
}

pub async fn delete_erases_for_good_and_frees_the_external_id(store: SharedStore) {
    let created = store.create(seed()).await.unwrap();
    let other = store.create(NewVisitor::default()).await.unwrap();
    store.delete(created.id, &IfMatch::Any).await.unwrap();
    assert!(matches!(
        store.get(created.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.update(created.id, patch(json!({"name": "x"}))).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.delete(created.id, &IfMatch::Any).await,
        Err(StoreError::NotFound)
    ));
    let listed = store
        .list(&query(VisitorFilter::default(), Order::Ascending, None, 10))
        .await
        .unwrap();
    assert_eq!(ids(&listed), [other.id.get()]);
    let again = store.create(seed()).await.unwrap();
    assert!(
        again.id > other.id,
        "an erased visitor's id is never reused"
    );
    assert_eq!(again.external_id, created.external_id);
    assert_eq!(store.get(other.id).await.unwrap(), other);
}

pub async fn conditional_delete_checks_the_version(store: SharedStore) {
    let created = store.create(seed()).await.unwrap();
    let updated = store
        .update(created.id, patch(json!({"name": "John"})))
        .await
        .unwrap();
    for stale in [
        IfMatch::OneOf(vec![created.version]),
        IfMatch::OneOf(vec![]),
    ] {
        assert!(matches!(
            store.delete(created.id, &stale).await,
            Err(StoreError::PreconditionFailed)
        ));
    }
    assert_eq!(store.get(created.id).await.unwrap(), updated);
    store
        .delete(created.id, &IfMatch::OneOf(vec![updated.version]))
        .await
        .unwrap();
    assert!(matches!(
        store
            .delete(created.id, &IfMatch::OneOf(vec![updated.version]))
            .await,
        Err(StoreError::NotFound)
    ));
}

pub async fn list_pages_by_id_in_both_orders(store: SharedStore) {
    let mut all = Vec::new();
    for _ in 0..7 {
        all.push(store.create(NewVisitor::default()).await.unwrap().id.get());
    }
    let everyone = VisitorFilter::default();
    let first = store
        .list(&query(everyone.clone(), Order::Ascending, None, 3))
        .await
        .unwrap();
    assert_eq!(ids(&first), all[..3]);
    let second = store
        .list(&query(
            everyone.clone(),
            Order::Ascending,
            Some(first[2].id),
            3,
        ))
        .await
        .unwrap();
    assert_eq!(ids(&second), all[3..6]);
    let last = store
        .list(&query(
            everyone.clone(),
            Order::Ascending,
            Some(second[2].id),
            3,
        ))
        .await
        .unwrap();
    assert_eq!(ids(&last), all[6..]);
    let beyond = store
        .list(&query(
            everyone.clone(),
            Order::Ascending,
            Some(last[0].id),
            3,
        ))
        .await
        .unwrap();
    assert!(beyond.is_empty());
    let newest = store
        .list(&query(everyone.clone(), Order::Descending, None, 4))
        .await
        .unwrap();
    let mut reversed = all.clone();
    reversed.reverse();
    assert_eq!(ids(&newest), reversed[..4]);
    let older = store
        .list(&query(
            everyone.clone(),
            Order::Descending,
            Some(newest[3].id),
            10,
        ))
        .await
        .unwrap();
    assert_eq!(ids(&older), reversed[4..]);
    let before_third = store
        .list(&query(
            everyone.clone(),
            Order::Descending,
            Some(first[2].id),
            10,
        ))
        .await
        .unwrap();
    assert_eq!(ids(&before_third), [all[1], all[0]]);
    let far = VisitorId::new(i64::MAX).unwrap();
    let from_far = store
        .list(&query(everyone, Order::Descending, Some(far), 2))
        .await
        .unwrap();
    assert_eq!(ids(&from_far), reversed[..2]);
    assert_eq!(from_far[0], store.get(from_far[0].id).await.unwrap());
}

pub async fn list_filters_by_external_id_email_and_banned(store: SharedStore) {
    let a = store
        .create(new_visitor(
            json!({"email": "Ann@Example.com", "external_id": "ext-a"}),
        ))
        .await
        .unwrap();
    let b = store
        .create(new_visitor(
            json!({"email": "ann@example.COM", "banned": true}),
        ))
        .await
        .unwrap();
    let c = store
        .create(new_visitor(
            json!({"email": "bob@example.com", "banned": true, "external_id": "EXT-A"}),
        ))
        .await
        .unwrap();
    let d = store.create(NewVisitor::default()).await.unwrap();
    type Case<'a> = (Vec<(&'a str, &'a str)>, Vec<i64>);
    let cases: Vec<Case> = vec![
        (vec![("external_id", "ext-a")], vec![a.id.get()]),
        (vec![("external_id", "EXT-A")], vec![c.id.get()]),
        (vec![("external_id", "none")], vec![]),
        (
            vec![("email", "ANN@example.com")],
            vec![a.id.get(), b.id.get()],
        ),
        (vec![("email", "bob@example.com")], vec![c.id.get()]),
        (vec![("banned", "true")], vec![b.id.get(), c.id.get()]),
        (vec![("banned", "false")], vec![a.id.get(), d.id.get()]),
        (
            vec![("banned", "true"), ("email", "ann@EXAMPLE.com")],
            vec![b.id.get()],
        ),
        (vec![("banned", "false"), ("external_id", "EXT-A")], vec![]),
    ];
    for (pairs, expected) in cases {
        let found = store
            .list(&query(filter(&pairs), Order::Ascending, None, 10))
            .await
            .unwrap();
        assert_eq!(ids(&found), expected, "{pairs:?}");
    }
    // Filters combine with the keyset bound and the order.
    let after_a = store
        .list(&query(
            filter(&[("email", "ann@example.com")]),
            Order::Ascending,
            Some(a.id),
            10,
        ))
        .await
        .unwrap();
    assert_eq!(ids(&after_a), [b.id.get()]);
    let before_c = store
        .list(&query(
            filter(&[("external_id", "ext-a")]),
            Order::Descending,
            Some(c.id),
            10,
        ))
        .await
        .unwrap();
    assert_eq!(ids(&before_c), [a.id.get()]);
    let past_a = store
        .list(&query(
            filter(&[("external_id", "ext-a")]),
            Order::Ascending,
            Some(a.id),
            10,
        ))
        .await
        .unwrap();
    assert!(past_a.is_empty());
    // The keyset bound holds on the external-id path too, strictly, in both orders.
    let ext_c = || filter(&[("external_id", "EXT-A")]);
    for (order, after, expected) in [
        (Order::Ascending, a.id, vec![c.id.get()]),
        (Order::Ascending, c.id, vec![]),
        (Order::Descending, c.id, vec![]),
        (Order::Descending, d.id, vec![c.id.get()]),
    ] {
        let found = store
            .list(&query(ext_c(), order, Some(after), 10))
            .await
            .unwrap();
        assert_eq!(ids(&found), expected, "{order:?} after {after}");
    }
    let one = store
        .list(&query(
            filter(&[("banned", "true")]),
            Order::Descending,
            None,
            1,
        ))
        .await
        .unwrap();
    assert_eq!(ids(&one), [c.id.get()]);
}

/// A walk page by page while another task creates visitors and erases others: every visitor
/// that exists throughout the walk is seen exactly once, in order.
pub async fn list_walk_sees_every_lasting_visitor_once_while_others_come_and_go(
    store: SharedStore,
) {
    let mut lasting = Vec::new();
    let mut doomed = Vec::new();
    for i in 0..240 {
        let id = store.create(NewVisitor::default()).await.unwrap().id;
        if i % 3 == 0 {
            doomed.push(id);
        } else {
            lasting.push(id.get());
        }
    }
    let churn = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            for (n, id) in doomed.into_iter().enumerate() {
                store.delete(id, &IfMatch::Any).await.unwrap();
                let new = store.create(NewVisitor::default()).await.unwrap();
                if n % 2 == 0 {
                    store.delete(new.id, &IfMatch::Any).await.unwrap();
                }
                tokio::task::yield_now().await;
            }
        })
    };
    for order in [Order::Ascending, Order::Descending] {
        let mut seen = Vec::new();
        let mut after = None;
        // 240 visitors and as many newcomers, 7 a page: a walk that takes more pages than that
        // is not advancing.
        for pages in 0.. {
            assert!(
                pages < 2 * 480 / 7 + 2,
                "the walk does not advance: {seen:?}"
            );
            let page = store
                .list(&query(VisitorFilter::default(), order, after, 7))
                .await
                .unwrap();
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            seen.extend(ids(&page));
            tokio::task::yield_now().await;
        }
        let mut sorted = seen.clone();
        sorted.sort_unstable();
        if order == Order::Descending {
            sorted.reverse();
        }
        assert_eq!(seen, sorted, "pages come in order");
        sorted.dedup();
        assert_eq!(sorted.len(), seen.len(), "no visitor is seen twice");
        let seen: HashSet<i64> = seen.into_iter().collect();
        for id in &lasting {
            assert!(
                seen.contains(id),
                "visitor {id} existed throughout but was not seen"
            );
        }
    }
    churn.await.expect("the churn task ran");
}

/// The one-step create records, replays the answer as it was created (whatever happened to the
/// visitor since), and refuses another body; none of it creates a second visitor.
pub async fn idempotent_create_records_and_replays_its_answer(store: SharedStore) {
    let policy = IdempotencyPolicy::default();
    let body = json!({"name": "Once", "email": "once@example.com", "external_id": "once",
                      "created": "2014-09-01T10:29:59.123456Z"});
    let k = key("a", "one-step");
    let first = created(
        store
            .create_idempotent(&k, &fingerprint(&body), &policy, new_visitor(body.clone()))
            .await
            .unwrap(),
    );
    assert_eq!(store.get(first.id).await.unwrap(), first);
    assert_eq!(wire(&first)["created"], "2014-09-01T10:29:59.123456Z");
    store
        .update(first.id, patch(json!({"name": "Changed"})))
        .await
        .unwrap();
    for _ in 0..2 {
        let again = store
            .create_idempotent(&k, &fingerprint(&body), &policy, new_visitor(body.clone()))
            .await
            .unwrap();
        assert_eq!(again, Idempotent::Replay(first.clone()));
    }
    let other = json!({"name": "Another"});
    assert_eq!(
        store
            .create_idempotent(&k, &fingerprint(&other), &policy, new_visitor(other))
            .await
            .unwrap(),
        Idempotent::Mismatch
    );
    let all = store
        .list(&query(VisitorFilter::default(), Order::Ascending, None, 10))
        .await
        .unwrap();
    assert_eq!(ids(&all), [first.id.get()]);
}

/// Two owners with the same key each get a visitor of their own, and each its own replay.
pub async fn idempotency_keys_belong_to_their_owner(store: SharedStore) {
    let policy = IdempotencyPolicy::default();
    let body = json!({"name": "Shared key"});
    let mine = created(
        store
            .create_idempotent(&key("a", "k"), &fingerprint(&body), &policy, new_visitor(body.clone()))
            .await
            .unwrap(),
    );
    let theirs = created(
        store
            .create_idempotent(&key("b", "k"), &fingerprint(&body), &policy, new_visitor(body.clone()))
            .await
            .unwrap(),
    );
    assert_ne!(mine.id, theirs.id);
    for (owner, answer) in [("a", mine), ("b", theirs)] {
        assert_eq!(
            store
                .create_idempotent(&key(owner, "k"), &fingerprint(&body), &policy, new_visitor(body.clone()))
                .await
                .unwrap(),
            Idempotent::Replay(answer)
        );
    }
}

/// The earliest and latest dates a visitor may have come back from a record as they went in.
pub async fn idempotent_answers_keep_created_at_its_limits(store: SharedStore) {
    let policy = IdempotencyPolicy::default();
    for (n, date) in ["0000-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z"]
        .into_iter()
        .enumerate()
    {
        let body = json!({ "created": date });
        let k = key("a", &format!("limit-{n}"));
        let first = created(
            store
                .create_idempotent(&k, &fingerprint(&body), &policy, new_visitor(body.clone()))
                .await
                .unwrap(),
        );
        assert_eq!(wire(&first)["created"], date);
        let replay = store
            .create_idempotent(&k, &fingerprint(&body), &policy, new_visitor(body))
            .await
            .unwrap();
        assert_eq!(replay, Idempotent::Replay(first));
    }
}

/// A create that fails (here on a used `external_id`) records nothing: the key runs again, even
/// with another body.
pub async fn a_failed_idempotent_create_records_nothing(store: SharedStore) {
    let policy = IdempotencyPolicy::default();
    store.create(seed()).await.unwrap();
    let taken = json!({"external_id": "john_extid"});
    let k = key("a", "fails");
    for _ in 0..2 {
        assert!(matches!(
            store
                .create_idempotent(&k, &fingerprint(&taken), &policy, new_visitor(taken.clone()))
                .await,
            Err(StoreError::Conflict)
        ));
    }
    let free = json!({"external_id": "free"});
    let made = created(
        store
            .create_idempotent(&k, &fingerprint(&free), &policy, new_visitor(free.clone()))
            .await
            .unwrap(),
    );
    assert_eq!(
        store
            .create_idempotent(&k, &fingerprint(&free), &policy, new_visitor(free))
            .await
            .unwrap(),
        Idempotent::Replay(made)
    );
}

/// An expired record gives its key up (and is purged); a live one is kept by a purge.
pub async fn expired_records_give_the_key_up_and_are_purged(store: SharedStore) {
    let body = json!({"name": "Short-lived"});
    let expiring = IdempotencyPolicy::with_ttl(std::time::Duration::ZERO);
    let policy = IdempotencyPolicy::default();
    let k = key("a", "expiring");
    let first = created(
        store
            .create_idempotent(&k, &fingerprint(&body), &expiring, new_visitor(body.clone()))
            .await
            .unwrap(),
    );
    let second = created(
        store
            .create_idempotent(&k, &fingerprint(&body), &policy, new_visitor(body.clone()))
            .await
            .unwrap(),
    );
    assert_ne!(first.id, second.id, "an expired record is no longer replayed");
    created(
        store
            .create_idempotent(&key("a", "expires-too"), &fingerprint(&body), &expiring, new_visitor(body.clone()))
            .await
            .unwrap(),
    );
    assert_eq!(store.purge_expired().await.unwrap(), 1);
    assert_eq!(store.purge_expired().await.unwrap(), 0);
    assert_eq!(
        store
            .create_idempotent(&k, &fingerprint(&body), &policy, new_visitor(body))
            .await
            .unwrap(),
        Idempotent::Replay(second),
        "a live record survives a purge"
    );
}

/// Erasing a visitor removes the record that holds its data, and nothing else: its key runs anew,
/// another key's record still replays, and erasing an older visitor of a key taken over since
/// leaves the newer record alone.
pub async fn erasing_a_visitor_removes_its_idempotency_records(store: SharedStore) {
    let policy = IdempotencyPolicy::default();
    let body = json!({"name": "Forget me", "email": "forget@example.com"});
    let k = key("a", "erase");
    let erased = created(
        store
            .create_idempotent(&k, &fingerprint(&body), &policy, new_visitor(body.clone()))
            .await
            .unwrap(),
    );
    let kept = created(
        store
            .create_idempotent(&key("a", "keep"), &fingerprint(&body), &policy, new_visitor(body.clone()))
            .await
            .unwrap(),
    );
    store.delete(erased.id, &IfMatch::Any).await.unwrap();
    let anew = created(
        store
            .create_idempotent(&k, &fingerprint(&body), &policy, new_visitor(body.clone()))
            .await
            .unwrap(),
    );
    assert!(anew.id > erased.id);
    assert_eq!(
        store
            .create_idempotent(&key("a", "keep"), &fingerprint(&body), &policy, new_visitor(body.clone()))
            .await
            .unwrap(),
        Idempotent::Replay(kept)
    );

    let expiring = IdempotencyPolicy::with_ttl(std::time::Duration::ZERO);
    let k = key("a", "taken-over");
    let older = created(
        store
            .create_idempotent(&k, &fingerprint(&body), &expiring, new_visitor(body.clone()))
            .await
            .unwrap(),
    );
    let newer = created(
        store
            .create_idempotent(&k, &fingerprint(&body), &policy, new_visitor(body.clone()))
            .await
            .unwrap(),
    );
    store.delete(older.id, &IfMatch::Any).await.unwrap();
    assert_eq!(
        store
            .create_idempotent(&k, &fingerprint(&body), &policy, new_visitor(body))
            .await
            .unwrap(),
        Idempotent::Replay(newer)
    );
}

/// Ten one-step creates with one key at once: exactly one creates; the others replay its answer
/// or find the key in use.
pub async fn concurrent_idempotent_creates_of_one_key_create_one_visitor(store: SharedStore) {
    let body = json!({"name": "Once"});
    let requests = (0..10).map(|_| {
        let store = Arc::clone(&store);
        let body = body.clone();
        tokio::spawn(async move {
            let policy = IdempotencyPolicy::default();
            store
                .create_idempotent(&key("a", "race"), &fingerprint(&body), &policy, new_visitor(body))
                .await
        })
    });
    let mut made = Vec::new();
    let mut replayed = Vec::new();
    for outcome in join_all(requests).await {
        match outcome.expect("the task ran").expect("no store error") {
            Idempotent::Created(stored) => made.push(stored),
            Idempotent::Replay(stored) => replayed.push(stored),
            Idempotent::InUse => {}
            Idempotent::Mismatch => panic!("one body, no mismatch"),
        }
    }
    assert_eq!(made.len(), 1, "{made:?}");
    assert!(replayed.iter().all(|answer| *answer == made[0]));
    let all = store
        .list(&query(VisitorFilter::default(), Order::Ascending, None, 20))
        .await
        .unwrap();
    assert_eq!(ids(&all), [made[0].id.get()]);
}


/// Create-or-update creates when no visitor has the external id (201's case), changes the one
/// that has it as Update does, and keeps the version when nothing changes.
pub async fn create_or_update_creates_then_updates_by_external_id(store: SharedStore) {
    let made = store
        .create_or_update(upsert(json!({"external_id": "crm-1", "name": "A", "notes": "n"})), &UpsertCondition::None)
        .await
        .unwrap();
    let Upserted::Created(made) = made else { panic!("expected Created, got {made:?}") };
    assert_eq!(made.version, Version::FIRST);
    assert_eq!(made.notes.as_ref().map(|n| n.as_str()), Some("n"));
    let changed = store
        .create_or_update(upsert(json!({"external_id": "crm-1", "email": "a@example.com"})), &UpsertCondition::None)
        .await
        .unwrap();
    let Upserted::Updated(changed) = changed else { panic!("expected Updated, got {changed:?}") };
    assert_eq!(changed.id, made.id);
    assert_eq!(changed.version, made.version.next());
    assert_eq!(changed.name, made.name, "a key left out keeps its value");
    assert_eq!(store.get(made.id).await.unwrap(), changed);
    let same = store
        .create_or_update(upsert(json!({"external_id": "crm-1", "name": "A", "notes": "n"})), &UpsertCondition::None)
        .await
        .unwrap();
    assert_eq!(same, Upserted::Unchanged(changed.clone()));
    let cleared = store
        .create_or_update(upsert(json!({"external_id": "crm-1", "name": null})), &UpsertCondition::None)
        .await
        .unwrap();
    assert_eq!(cleared.visitor().name, None);
    let other = store
        .create_or_update(upsert(json!({"external_id": "CRM-1"})), &UpsertCondition::None)
        .await
        .unwrap();
    assert!(matches!(other, Upserted::Created(_)), "matching is exact: {other:?}");
}

/// Create-or-update keeps the read-only rule of Update: other notes are refused, and nothing
/// changes.
pub async fn create_or_update_refuses_other_notes(store: SharedStore) {
    let made = store
        .create_or_update(upsert(json!({"external_id": "crm-2", "notes": "kept"})), &UpsertCondition::None)
        .await
        .unwrap()
        .into_visitor();
    let refused = store
        .create_or_update(upsert(json!({"external_id": "crm-2", "notes": "other", "name": "B"})), &UpsertCondition::None)
        .await;
    assert_eq!(invalid_keys(refused).keys().collect::<Vec<_>>(), ["notes"]);
    assert_eq!(store.get(made.id).await.unwrap(), made);
}

/// With If-Match, create-or-update changes only a visitor at an accepted version, and creates
/// nothing when none has the external id.
pub async fn create_or_update_honours_if_match(store: SharedStore) {
    let absent = store
        .create_or_update(upsert(json!({"external_id": "crm-3"})), &UpsertCondition::Exists)
        .await;
    assert!(matches!(absent, Err(StoreError::PreconditionFailed)), "{absent:?}");
    assert!(store
        .list(&query(VisitorFilter::default(), Order::Ascending, None, 10))
        .await
        .unwrap()
        .is_empty());
    let made = store
        .create_or_update(upsert(json!({"external_id": "crm-3"})), &UpsertCondition::None)
        .await
        .unwrap()
        .into_visitor();
    let stale = UpsertCondition::OneOf(vec![(made.id, made.version.next())]);
    let refused = store
        .create_or_update(upsert(json!({"external_id": "crm-3", "name": "X"})), &stale)
        .await;
    assert!(matches!(refused, Err(StoreError::PreconditionFailed)), "{refused:?}");
    assert_eq!(store.get(made.id).await.unwrap(), made);
    let elsewhere = VisitorId::new(made.id.get() + 1).unwrap();
    let other_visitor = UpsertCondition::OneOf(vec![(elsewhere, made.version)]);
    let refused = store
        .create_or_update(upsert(json!({"external_id": "crm-3", "name": "X"})), &other_visitor)
        .await;
    assert!(matches!(refused, Err(StoreError::PreconditionFailed)), "{refused:?}");
    let current = UpsertCondition::OneOf(vec![(elsewhere, made.version), (made.id, made.version)]);
    let changed = store
        .create_or_update(upsert(json!({"external_id": "crm-3", "name": "X"})), &current)
        .await
        .unwrap();
    assert!(matches!(changed, Upserted::Updated(_)), "{changed:?}");
}

/// Twenty create-or-updates at once with one new external id: one creates, the others update
/// (or find nothing to change); none fails.
pub async fn concurrent_create_or_updates_of_one_new_external_id_create_once(store: SharedStore) {
    let calls = (0..20).map(|n| {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let body = json!({"external_id": "race", "name": format!("Caller {}", n % 2)});
            store.create_or_update(upsert(body), &UpsertCondition::None).await
        })
    });
    let mut created = Vec::new();
    for outcome in join_all(calls).await {
        match outcome.expect("the task ran").expect("no store error") {
            Upserted::Created(stored) => created.push(stored.id),
            Upserted::Updated(_) | Upserted::Unchanged(_) => {}
        }
    }
    assert_eq!(created.len(), 1, "{created:?}");
    let all = store
        .list(&query(VisitorFilter::default(), Order::Ascending, None, 30))
        .await
        .unwrap();
    assert_eq!(ids(&all), [created[0].get()]);
}

/// An import applies its lines in order, each on its own: two lines with one new external id
/// create once and then update; a refused line changes nothing; create lines get new ids.
pub async fn import_applies_lines_in_order_each_on_its_own(store: SharedStore) {
    let lines = vec![
        ImportLine::Create(new_visitor(json!({"name": "Plain"}))),
        ImportLine::Upsert(upsert(json!({"external_id": "imp", "notes": "first"}))),
        ImportLine::Upsert(upsert(json!({"external_id": "imp", "notes": "second"}))),
        ImportLine::Upsert(upsert(json!({"external_id": "imp", "name": "Named"}))),
        ImportLine::Upsert(upsert(json!({"external_id": "imp", "name": "Named"}))),
    ];
    let mut outcomes = store.import(lines).await.unwrap();
    assert_eq!(outcomes.len(), 5);
    let plain = match &outcomes[0] {
        Ok(Upserted::Created(stored)) => stored.clone(),
        other => panic!("expected Created, got {other:?}"),
    };
    let imported = match &outcomes[1] {
        Ok(Upserted::Created(stored)) => stored.clone(),
        other => panic!("expected Created, got {other:?}"),
    };
    assert_ne!(plain.id, imported.id);
    let refused = std::mem::replace(&mut outcomes[2], Err(StoreError::NotFound));
    assert_eq!(invalid_keys(refused).keys().collect::<Vec<_>>(), ["notes"]);
    let named = match &outcomes[3] {
        Ok(Upserted::Updated(stored)) => stored.clone(),
        other => panic!("expected Updated, got {other:?}"),
    };
    assert_eq!(named.id, imported.id);
    assert_eq!(named.version, Version::FIRST.next());
    assert!(matches!(&outcomes[4], Ok(Upserted::Unchanged(same)) if *same == named));
    assert_eq!(store.get(imported.id).await.unwrap(), named);
    assert_eq!(
        store.get(plain.id).await.unwrap().name.as_ref().map(|n| n.as_str()),
        Some("Plain")
    );
    assert!(store.import(Vec::new()).await.unwrap().is_empty());
}


/// Four imports at once of one set of new external ids, each in its own order: every line
/// succeeds, each external id gets one visitor, and of the four lines naming it exactly one
/// created it.
pub async fn concurrent_imports_of_one_set_of_new_external_ids_create_each_once(store: SharedStore) {
    let imports = (0..4u64).map(|k| {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let mut numbers: Vec<u64> = (0..200).collect();
            numbers.sort_by_key(|n| (n * (2 * k + 1)) % 199);
            let lines = numbers
                .iter()
                .map(|n| ImportLine::Upsert(upsert(json!({"external_id": format!("c{n}")}))))
                .collect();
            (numbers, store.import(lines).await)
        })
    });
    let mut creators: std::collections::HashMap<String, usize> = Default::default();
    for outcome in join_all(imports).await {
        let (numbers, outcomes) = outcome.expect("the task ran");
        let outcomes = outcomes.expect("no store error");
        assert_eq!(outcomes.len(), numbers.len());
        for (n, outcome) in numbers.iter().zip(outcomes) {
            match outcome.expect("no line fails") {
                Upserted::Created(stored) => {
                    assert_eq!(stored.external_id.as_ref().map(|e| e.as_str().to_owned()), Some(format!("c{n}")));
                    *creators.entry(format!("c{n}")).or_default() += 1;
                }
                Upserted::Updated(_) | Upserted::Unchanged(_) => {}
            }
        }
    }
    assert_eq!(creators.len(), 200);
    assert!(creators.values().all(|count| *count == 1), "{creators:?}");
    let all = store
        .list(&query(VisitorFilter::default(), Order::Ascending, None, 1000))
        .await
        .unwrap();
    assert_eq!(all.len(), 200);
}

pub async fn the_change_log_holds_each_visitors_last_change_in_order(store: SharedStore) {
    let a = store.create(seed()).await.unwrap().id;
    let b = store.create(NewVisitor::default()).await.unwrap().id;
    let c = store.create(NewVisitor::default()).await.unwrap().id;
    let (log, end) = read_log(&store, everything(), 10).await;
    assert_eq!(log, [(a.get(), false), (b.get(), false), (c.get(), false)]);

    // An update that changes something moves the visitor to the end; one that changes nothing
    // is no change.
    store.update(a, patch(json!({"name": "Renamed"}))).await.unwrap();
    store.update(b, patch(json!({}))).await.unwrap();
    store.update(c, patch(json!({"banned": false}))).await.unwrap();
    let (log, _) = read_log(&store, everything(), 10).await;
    assert_eq!(log, [(b.get(), false), (c.get(), false), (a.get(), false)]);
    let (later, next) = read_log(&store, ChangeStart::After(end), 10).await;
    assert_eq!(later, [(a.get(), false)]);

    // An erasure leaves the id, without the visitor.
    store.delete(b, &IfMatch::Any).await.unwrap();
    let (log, _) = read_log(&store, everything(), 10).await;
    assert_eq!(log, [(c.get(), false), (a.get(), false), (b.get(), true)]);
    let ChangePage::Changes { changes, .. } = store.changes(ChangeStart::After(next), 10).await.unwrap() else {
        panic!("expired")
    };
    assert_eq!(changes.len(), 1);
    assert_eq!((changes[0].visitor_id, &changes[0].visitor), (b, &None));
    // The visitor of a change is the visitor as it is now.
    let ChangePage::Changes { changes, .. } = store.changes(everything(), 2).await.unwrap() else {
        panic!("expired")
    };
    assert_eq!(changes[1].visitor.as_ref(), Some(&store.get(a).await.unwrap()));
    assert_eq!(changes[1].visitor.as_ref().and_then(|v| v.name.as_ref()).map(|n| n.as_str()), Some("Renamed"));
}

pub async fn a_reader_at_the_end_reads_on_from_where_it_stopped(store: SharedStore) {
    // An empty log: nothing, and a place to read on from.
    let ChangePage::Changes { changes, next, .. } = store.changes(everything(), 5).await.unwrap()
    else {
        panic!("expired")
    };
    assert!(changes.is_empty());
    let ChangePage::Changes {
        changes,
        next: again,
        ..
    } = store.changes(ChangeStart::After(next), 5).await.unwrap() else {
        panic!("expired")
    };
    assert!(changes.is_empty());
    // An empty page keeps the reader where it is, or moves it past changes that cannot come
    // any more (the Postgres log's horizon).
    assert!(again.position >= next.position);
    let mut made = Vec::new();
    for _ in 0..7 {
        made.push((store.create(NewVisitor::default()).await.unwrap().id.get(), false));
    }
    // Pages of 3: 3, 3, 1; each page on from the last.
    let (log, end) = read_log(&store, ChangeStart::After(next), 3).await;
    assert_eq!(log, made);
    let (nothing, same) = read_log(&store, ChangeStart::After(end), 3).await;
    assert!(nothing.is_empty());
    assert!(same.position >= end.position);
    let last = store.create(NewVisitor::default()).await.unwrap().id;
    let (log, _) = read_log(&store, ChangeStart::After(end), 3).await;
    assert_eq!(log, [(last.get(), false)]);
}

pub async fn since_a_time_gives_the_visitors_changed_at_or_after_it(store: SharedStore) {
    let before = chrono::Utc::now() - chrono::Duration::seconds(5);
    let a = store.create(NewVisitor::default()).await.unwrap().id;
    let (log, _) = read_log(&store, ChangeStart::Since(before), 10).await;
    assert_eq!(log, [(a.get(), false)]);
    let (log, _) = read_log(&store, ChangeStart::Since(chrono::DateTime::UNIX_EPOCH), 10).await;
    assert_eq!(log, [(a.get(), false)]);
    // Nothing since a time to come; reading on from there finds what happens next.
    let later = chrono::Utc::now() + chrono::Duration::seconds(3600);
    let (log, next) = read_log(&store, ChangeStart::Since(later), 10).await;
    assert!(log.is_empty());
    let b = store.create(NewVisitor::default()).await.unwrap().id;
    let (log, _) = read_log(&store, ChangeStart::After(next), 10).await;
    assert_eq!(log, [(b.get(), false)]);
}

pub async fn purging_erasures_expires_the_readers_behind_them(store: SharedStore) {
    let a = store.create(NewVisitor::default()).await.unwrap().id;
    let b = store.create(NewVisitor::default()).await.unwrap().id;
    let (_, before_erasure) = read_log(&store, everything(), 10).await;
    store.delete(a, &IfMatch::Any).await.unwrap();
    let c = store.create(NewVisitor::default()).await.unwrap().id;
    let (_, after_erasure) = read_log(&store, everything(), 10).await;

    // Erasures newer than the cutoff stay.
    let past = chrono::Utc::now() - chrono::Duration::seconds(3600);
    assert_eq!(store.purge_erasures(past).await.unwrap(), 0);
    assert!(matches!(store.changes(everything(), 10).await.unwrap(), ChangePage::Changes { .. }));

    let future = chrono::Utc::now() + chrono::Duration::seconds(3600);
    assert_eq!(store.purge_erasures(future).await.unwrap(), 1);
    assert_eq!(store.purge_erasures(future).await.unwrap(), 0);
    for start in [everything(), ChangeStart::After(before_erasure)] {
        assert_eq!(store.changes(start, 10).await.unwrap(), ChangePage::Expired, "{start:?}");
    }
    // A reader past the erasure goes on; one from a time starts again, without the erased.
    let (log, _) = read_log(&store, ChangeStart::After(after_erasure), 10).await;
    assert!(log.is_empty());
    let (log, _) = read_log(&store, ChangeStart::Since(chrono::DateTime::UNIX_EPOCH), 10).await;
    assert_eq!(log, [(b.get(), false), (c.get(), false)]);
}

pub async fn every_kind_of_write_is_a_change(store: SharedStore) {
    let key = IdempotencyKey { owner: "owner".into(), key: "k".into() };
    let Idempotent::Created(idempotent) = store
        .create_idempotent(&key, &BodyFingerprint::of(&serde_json::Map::new()), &IdempotencyPolicy::default(), NewVisitor::default())
        .await
        .unwrap()
    else {
        panic!("not created")
    };
    let upserted = store
        .create_or_update(upsert(json!({"external_id": "u"})), &UpsertCondition::None)
        .await
        .unwrap()
        .into_visitor()
        .id
        .get();
    let outcomes = store
        .import(vec![
            ImportLine::Create(NewVisitor::default()),
            ImportLine::Upsert(upsert(json!({"external_id": "i"}))),
            ImportLine::Upsert(upsert(json!({"external_id": "i", "name": "Changed"}))),
            ImportLine::Upsert(upsert(json!({"external_id": "u", "name": "Changed"}))),
            // Unchanged, and a refused line: no change.
            ImportLine::Upsert(upsert(json!({"external_id": "i", "name": "Changed"}))),
            ImportLine::Upsert(upsert(json!({"external_id": "i", "notes": "other"}))),
        ])
        .await
        .unwrap();
    let ids: Vec<i64> = outcomes
        .iter()
        .map(|outcome| outcome.as_ref().map_or(0, |upserted| upserted.visitor().id.get()))
        .collect();
    let (log, _) = read_log(&store, everything(), 100).await;
    let changed: Vec<i64> = log.iter().map(|(id, _)| *id).collect();
    assert_eq!(changed, [idempotent.id.get(), ids[0], ids[1], upserted]);
    // An update through create_or_update moves the visitor to the end.
    store
        .create_or_update(upsert(json!({"external_id": "u", "name": "Again"})), &UpsertCondition::None)
        .await
        .unwrap();
    store
        .create_or_update(upsert(json!({"external_id": "i", "name": "Changed"})), &UpsertCondition::None)
        .await
        .unwrap();
    let (log, _) = read_log(&store, everything(), 100).await;
    assert_eq!(log.last(), Some(&(upserted, false)));
}

pub async fn webhooks_are_registered_listed_shown_and_deleted(store: SharedStore) {
    let all = [WebhookEvent::Created, WebhookEvent::Updated, WebhookEvent::Deleted];
    let first = store.create_webhook(new_webhook("http://127.0.0.1:9/a", &all)).await.unwrap();
    let second = store
        .create_webhook(new_webhook("https://example.com/b", &[WebhookEvent::Deleted]))
        .await
        .unwrap();
    assert!(second.id > first.id);
    assert_eq!((first.url.as_str(), first.events.as_slice(), first.enabled), ("http://127.0.0.1:9/a", &all[..], true));
    assert_eq!(first.description.as_deref(), Some("to http://127.0.0.1:9/a"));
    assert!(first.secret.starts_with("whsec_"));
    assert!((chrono::Utc::now() - first.created).num_seconds().abs() < 60);
    assert_eq!(store.webhooks().await.unwrap(), [first.clone(), second.clone()]);
    assert_eq!(store.webhook(second.id).await.unwrap(), second);
    assert!(store.attempts(first.id).await.unwrap().is_empty());
    store.delete_webhook(first.id).await.unwrap();
    assert!(matches!(store.webhook(first.id).await, Err(StoreError::NotFound)));
    assert!(matches!(store.delete_webhook(first.id).await, Err(StoreError::NotFound)));
    assert!(matches!(store.attempts(first.id).await, Err(StoreError::NotFound)));
    assert_eq!(store.webhooks().await.unwrap(), [second]);
}

pub async fn each_change_is_delivered_to_each_webhook_that_takes_it_in_order(store: SharedStore) {
    let before = store.create(NewVisitor::default()).await.unwrap().id;
    let all = store
        .create_webhook(new_webhook("http://127.0.0.1:9/all", &WebhookEvent::ALL))
        .await
        .unwrap()
        .id;
    let erasures = store
        .create_webhook(new_webhook("http://127.0.0.1:9/erasures", &[WebhookEvent::Deleted]))
        .await
        .unwrap()
        .id;
    assert_eq!(store.pending_deliveries().await.unwrap(), 0, "changes before it are not sent");
    let v = store.create(NewVisitor::default()).await.unwrap().id;
    store.update(v, patch(json!({"name": "A"}))).await.unwrap();
    store.update(v, patch(json!({"name": "A"}))).await.unwrap();
    store.delete(v, &IfMatch::Any).await.unwrap();
    store.update(before, patch(json!({"banned": true}))).await.unwrap();
    assert_eq!(store.pending_deliveries().await.unwrap(), 5);

    // One of a visitor's deliveries to a webhook at a time, the oldest first.
    let mut order = Vec::new();
    loop {
        let batch = store.claim_deliveries(10, LONG_LEASE).await.unwrap();
        if batch.is_empty() {
            break;
        }
        let pairs: std::collections::HashSet<(i64, i64)> =
            batch.iter().map(|d| (d.webhook_id, d.visitor_id.get())).collect();
        assert_eq!(pairs.len(), batch.len(), "two deliveries of one visitor to one webhook at once");
        assert!(store.claim_deliveries(10, LONG_LEASE).await.unwrap().is_empty(), "claimed twice");
        for delivery in &batch {
            assert!(delivery.event_id.starts_with("msg_"));
            assert_eq!(delivery.attempt, 1);
            assert!((chrono::Utc::now() - delivery.changed_at).num_seconds().abs() < 60);
            order.push((delivery.webhook_id, delivery.event, delivery.visitor_id.get()));
            store.finish_delivery(delivery, DeliveryOutcome::Delivered, sent(204)).await.unwrap();
        }
    }
    let of = |webhook: i64| -> Vec<(WebhookEvent, i64)> {
        order.iter().filter(|d| d.0 == webhook).map(|d| (d.1, d.2)).collect()
    };
    let of_v: Vec<WebhookEvent> = of(all).iter().filter(|d| d.1 == v.get()).map(|d| d.0).collect();
    assert_eq!(of_v, [WebhookEvent::Created, WebhookEvent::Updated, WebhookEvent::Deleted]);
    assert!(of(all).contains(&(WebhookEvent::Updated, before.get())));
    assert_eq!(of(erasures), [(WebhookEvent::Deleted, v.get())]);
    assert_eq!(store.pending_deliveries().await.unwrap(), 0);
    let ids: std::collections::HashSet<String> = store.attempts(all).await.unwrap().into_iter().map(|a| a.event_id).collect();
    assert_eq!(ids.len(), 4, "a webhook-id per change and webhook");
}

pub async fn a_delivery_is_claimed_again_when_its_lease_runs_out_or_its_retry_is_due(store: SharedStore) {
    let webhook = store
        .create_webhook(new_webhook("http://127.0.0.1:9/", &WebhookEvent::ALL))
        .await
        .unwrap()
        .id;
    let v = store.create(NewVisitor::default()).await.unwrap().id.get();
    // A sender that died: its lease runs out and the delivery is claimed again.
    let first = store.claim_deliveries(10, std::time::Duration::ZERO).await.unwrap();
    assert_eq!(claimed(&first), [(webhook, WebhookEvent::Created, v, 1)]);
    let again = store.claim_deliveries(10, LONG_LEASE).await.unwrap();
    assert_eq!(claimed(&again), [(webhook, WebhookEvent::Created, v, 2)]);
    assert_eq!(again[0].event_id, first[0].event_id, "the same webhook-id on every attempt");
    // A failure due again at once, then one due later.
    let failed = Some(AttemptResult { status: None, error: Some("connection refused".into()) });
    store.finish_delivery(&again[0], DeliveryOutcome::Retry(std::time::Duration::ZERO), failed).await.unwrap();
    let third = store.claim_deliveries(10, LONG_LEASE).await.unwrap();
    assert_eq!(claimed(&third), [(webhook, WebhookEvent::Created, v, 3)]);
    store.finish_delivery(&third[0], DeliveryOutcome::Retry(LONG_LEASE), sent(500)).await.unwrap();
    assert!(store.claim_deliveries(10, LONG_LEASE).await.unwrap().is_empty());
    assert_eq!(store.pending_deliveries().await.unwrap(), 1);
    // The log: newest first, what each attempt got.
    let log = store.attempts(webhook).await.unwrap();
    let seen: Vec<(u32, Option<u16>, Option<&str>)> = log.iter().map(|a| (a.attempt, a.status, a.error.as_deref())).collect();
    assert_eq!(seen, [(3, Some(500), None), (2, None, Some("connection refused"))]);
    assert!(log.iter().all(|a| a.webhook_id == webhook && a.visitor_id.get() == v && a.event == WebhookEvent::Created));
    // Given up: gone.
    store.finish_delivery(&third[0], DeliveryOutcome::GaveUp, None).await.unwrap();
    assert_eq!(store.pending_deliveries().await.unwrap(), 0);
    assert_eq!(store.attempts(webhook).await.unwrap().len(), 2);
}

pub async fn a_disabled_or_deleted_webhook_gets_nothing_more(store: SharedStore) {
    let gone = store.create_webhook(new_webhook("http://127.0.0.1:9/gone", &WebhookEvent::ALL)).await.unwrap().id;
    let deleted = store.create_webhook(new_webhook("http://127.0.0.1:9/deleted", &WebhookEvent::ALL)).await.unwrap().id;
    let kept = store.create_webhook(new_webhook("http://127.0.0.1:9/kept", &WebhookEvent::ALL)).await.unwrap().id;
    let a = store.create(NewVisitor::default()).await.unwrap().id;
    store.create(NewVisitor::default()).await.unwrap();
    assert_eq!(store.pending_deliveries().await.unwrap(), 6);
    let batch = store.claim_deliveries(10, LONG_LEASE).await.unwrap();
    let to_gone = batch.iter().find(|d| d.webhook_id == gone).unwrap();
    store.finish_delivery(to_gone, DeliveryOutcome::Disable, sent(410)).await.unwrap();
    assert!(!store.webhook(gone).await.unwrap().enabled);
    store.delete_webhook(deleted).await.unwrap();
    assert_eq!(store.pending_deliveries().await.unwrap(), 2, "only the kept webhook's");
    store.update(a, patch(json!({"name": "Later"}))).await.unwrap();
    assert_eq!(store.pending_deliveries().await.unwrap(), 3);
    for delivery in batch.iter().filter(|d| d.webhook_id == kept) {
        store.finish_delivery(delivery, DeliveryOutcome::Dropped, None).await.unwrap();
    }
    let rest = store.claim_deliveries(10, LONG_LEASE).await.unwrap();
    assert_eq!(claimed(&rest), [(kept, WebhookEvent::Updated, a.get(), 1)]);
    assert_eq!(store.attempts(gone).await.unwrap().len(), 1);
    assert!(store.attempts(kept).await.unwrap().is_empty(), "a dropped delivery is not an attempt");
}

pub async fn the_deliveries_log_keeps_the_latest_hundred(store: SharedStore) {
    let webhook = store.create_webhook(new_webhook("http://127.0.0.1:9/", &WebhookEvent::ALL)).await.unwrap().id;
    store.create(NewVisitor::default()).await.unwrap();
    for n in 0..105u16 {
        let delivery = store.claim_deliveries(1, LONG_LEASE).await.unwrap().remove(0);
        store.finish_delivery(&delivery, DeliveryOutcome::Retry(std::time::Duration::ZERO), sent(500 + n % 4)).await.unwrap();
    }
    let log = store.attempts(webhook).await.unwrap();
    assert_eq!(log.len(), crate::ATTEMPTS_KEPT);
    let numbers: Vec<u32> = log.iter().map(|a| a.attempt).collect();
    assert_eq!(numbers, (6..=105).rev().collect::<Vec<u32>>());
}

pub async fn a_claim_carries_the_visitors_state_as_it_is_then(store: SharedStore) {
    store.create_webhook(new_webhook("http://127.0.0.1:9/", &WebhookEvent::ALL)).await.unwrap();
    let kept = store.create(new_visitor(json!({"name": "First"}))).await.unwrap().id;
    let changed = store.update(kept, patch(json!({"name": "Second"}))).await.unwrap();
    let erased = store.create(new_visitor(json!({"name": "Erased"}))).await.unwrap().id;
    store.delete(erased, &IfMatch::Any).await.unwrap();
    let batch = store.claim_deliveries(10, LONG_LEASE).await.unwrap();
    let states: Vec<(i64, WebhookEvent, Option<Visitor>)> =
        batch.iter().map(|d| (d.visitor_id.get(), d.event, d.visitor.clone())).collect();
    assert_eq!(
        states,
        [(kept.get(), WebhookEvent::Created, Some(changed.visitor.clone())), (erased.get(), WebhookEvent::Created, None)],
        "the state as it is at the claim; none for a visitor erased since"
    );
    for delivery in &batch {
        store.finish_delivery(delivery, DeliveryOutcome::Delivered, sent(200)).await.unwrap();
    }
    let next = store.claim_deliveries(10, LONG_LEASE).await.unwrap();
    let states: Vec<(i64, WebhookEvent, Option<Visitor>)> =
        next.iter().map(|d| (d.visitor_id.get(), d.event, d.visitor.clone())).collect();
    assert_eq!(
        states,
        [(kept.get(), WebhookEvent::Updated, Some(changed.visitor)), (erased.get(), WebhookEvent::Deleted, None)]
    );
}

pub async fn ends_of_attempts_are_recorded_together_each_with_its_outcome(store: SharedStore) {
    let kept = store.create_webhook(new_webhook("http://127.0.0.1:9/kept", &WebhookEvent::ALL)).await.unwrap().id;
    let gone = store.create_webhook(new_webhook("http://127.0.0.1:9/gone", &WebhookEvent::ALL)).await.unwrap().id;
    let ids: Vec<i64> = join_all((0..3).map(|_| store.create(NewVisitor::default())))
        .await
        .into_iter()
        .map(|created| created.unwrap().id.get())
        .collect();
    let mut batch = store.claim_deliveries(10, LONG_LEASE).await.unwrap();
    assert_eq!(batch.len(), 6);
    batch.sort_by_key(|d| (d.webhook_id, d.visitor_id.get()));
    let of = |webhook: i64, visitor: i64| {
        batch.iter().find(|d| d.webhook_id == webhook && d.visitor_id.get() == visitor).unwrap().clone()
    };
    let end = |delivery: Delivery, outcome: DeliveryOutcome, result: Option<AttemptResult>| Ended { delivery, outcome, result };
    store
        .finish_deliveries(vec![
            end(of(kept, ids[0]), DeliveryOutcome::Delivered, sent(200)),
            end(of(kept, ids[1]), DeliveryOutcome::Retry(std::time::Duration::ZERO), sent(500)),
            end(of(gone, ids[0]), DeliveryOutcome::Disable, sent(410)),
            end(of(kept, ids[2]), DeliveryOutcome::Dropped, None),
        ])
        .await
        .unwrap();
    assert!(!store.webhook(gone).await.unwrap().enabled);
    assert!(store.webhook(kept).await.unwrap().enabled);
    assert_eq!(store.pending_deliveries().await.unwrap(), 1, "only the retry is left");
    let again = store.claim_deliveries(10, LONG_LEASE).await.unwrap();
    assert_eq!(claimed(&again), [(kept, WebhookEvent::Created, ids[1], 2)]);
    let log: Vec<(i64, Option<u16>)> =
        store.attempts(kept).await.unwrap().iter().map(|a| (a.visitor_id.get(), a.status)).collect();
    assert_eq!(log, [(ids[1], Some(500)), (ids[0], Some(200))], "newest first, in the batch's order");
    assert_eq!(store.attempts(gone).await.unwrap().len(), 1);
    store.finish_deliveries(Vec::new()).await.unwrap();
    assert_eq!(store.pending_deliveries().await.unwrap(), 1);
}

pub async fn concurrent_ends_of_attempts_to_one_webhook_all_succeed(store: SharedStore) {
    let webhook = store
        .create_webhook(new_webhook("http://127.0.0.1:9/", &WebhookEvent::ALL))
        .await
        .unwrap()
        .id;
    let outcomes = store
        .import((0..160).map(|_| ImportLine::Create(NewVisitor::default())).collect())
        .await
        .unwrap();
    assert!(outcomes.iter().all(Result::is_ok));
    // Each end logs an attempt and prunes the log to its latest hundred, all at once.
    let claimed = store.claim_deliveries(200, LONG_LEASE).await.unwrap();
    assert_eq!(claimed.len(), 160);
    let ends = claimed.into_iter().map(|delivery| {
        let store = Arc::clone(&store);
        async move {
            store
                .finish_delivery(&delivery, DeliveryOutcome::Delivered, sent(200))
                .await
        }
    });
    for end in join_all(ends).await {
        end.expect("no end fails for another");
    }
    assert_eq!(store.pending_deliveries().await.unwrap(), 0);
    let kept = store.attempts(webhook).await.unwrap().len();
    assert!((100..=160).contains(&kept), "{kept}");
}
}
