//! §8.4 Idempotent create: Idempotency-Key replays, mismatches, keys per token, failures that
//! record nothing, erasure, expiry and concurrency.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use visitor_store::{IdempotencyPolicy, MemoryStore};

use crate::helpers::{spawn_with_policy, Answer, TestApp, HASHED_ADMIN_TOKEN};

crate::on_both_stores!(
    the_same_key_and_body_replays_the_first_answer,
    the_same_body_in_another_spelling_is_the_same_request,
    another_body_is_a_mismatch,
    quoted_and_bare_keys_are_one_key_and_bad_keys_are_refused,
    keys_belong_to_the_token_that_sent_them,
    a_failed_request_records_nothing,
    erasing_the_visitor_frees_its_key,
    ten_creates_with_one_key_at_once_make_one_visitor,
    the_legacy_prefix_shares_the_keys,
);

async fn create_with_key(app: &TestApp, key: &str, body: &str) -> Answer {
    app.send(
        app.admin(Method::POST, "/api/v2/chat/visitors")
            .header("idempotency-key", key)
            .header("content-type", "application/json")
            .body(body.to_owned()),
    )
    .await
}

async fn count(app: &TestApp) -> usize {
    app.list("page[size]=1000").await.body["visitors"]
        .as_array()
        .unwrap()
        .len()
}

async fn the_same_key_and_body_replays_the_first_answer(app: &TestApp) {
    let body = r#"{"name": "Once", "external_id": "crm-1"}"#;
    let first = create_with_key(app, "key-1", body).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    assert_eq!(first.header("idempotent-replayed"), None);
    // The visitor changes; the replay still gives the recorded answer.
    app.update(first.id(), &json!({"name": "Changed"})).await;
    let again = create_with_key(app, "key-1", body).await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("location"), first.header("location"));
    assert_eq!(again.header("etag"), first.header("etag"));
    assert_eq!(count(app).await, 1);
    // Without the key, the same body is a new request (and here a conflict).
    app.create(&serde_json::from_str(body).unwrap())
        .await
        .assert_error(409, "Conflict");
}

async fn the_same_body_in_another_spelling_is_the_same_request(app: &TestApp) {
    let first = create_with_key(app, "k", r#"{"name":"A","banned":false,"email":"a@b.io"}"#).await;
    let again = create_with_key(
        app,
        "k",
        "{ \"email\" : \"a@b.io\",\n \"banned\": false, \"name\": \"\\u0041\" }",
    )
    .await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.text);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.id(), first.id());
}

async fn another_body_is_a_mismatch(app: &TestApp) {
    create_with_key(app, "k", r#"{"name":"A"}"#).await;
    for other in [r#"{"name":"B"}"#, r#"{"name":"A","banned":false}"#, "{}"] {
        let answer = create_with_key(app, "k", other).await;
        answer.assert_error(422, "IdempotencyKeyMismatch");
    }
    assert_eq!(count(app).await, 1);
}

async fn quoted_and_bare_keys_are_one_key_and_bad_keys_are_refused(app: &TestApp) {
    let first = create_with_key(app, "\"abc\"", "{}").await;
    let again = create_with_key(app, "abc", "{}").await;
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.id(), first.id());
    let longest = "~".repeat(255);
    assert_eq!(
        create_with_key(app, &longest, "{}").await.status,
        StatusCode::CREATED
    );
    for bad in ["", "\"\"", "two words", &"a".repeat(256)] {
        create_with_key(app, bad, "{}")
            .await
            .assert_error(400, "BadRequest");
    }
    let two = app
        .send(
            app.admin(Method::POST, "/api/v2/chat/visitors")
                .header("idempotency-key", "a")
                .header("idempotency-key", "b")
                .json(&json!({})),
        )
        .await;
    two.assert_error(400, "BadRequest");
    assert_eq!(count(app).await, 2);
}

async fn keys_belong_to_the_token_that_sent_them(app: &TestApp) {
    let mine = create_with_key(app, "shared", "{}").await;
    let theirs = app
        .send(
            app.client
                .post(app.url("/api/v2/chat/visitors"))
                .bearer_auth(HASHED_ADMIN_TOKEN)
                .header("idempotency-key", "shared")
                .json(&json!({})),
        )
        .await;
    assert_eq!(theirs.status, StatusCode::CREATED);
    assert_eq!(theirs.header("idempotent-replayed"), None);
    assert_ne!(theirs.id(), mine.id());
}

async fn a_failed_request_records_nothing(app: &TestApp) {
    app.created(&json!({"external_id": "taken"})).await;
    create_with_key(app, "retry", r#"{"external_id": "taken"}"#)
        .await
        .assert_error(409, "Conflict");
    create_with_key(app, "retry", r#"{"email": "not an address"}"#)
        .await
        .assert_error(422, "RecordInvalid");
    // The key is still free: another body may use it.
    let ok = create_with_key(app, "retry", r#"{"external_id": "free"}"#).await;
    assert_eq!(ok.status, StatusCode::CREATED);
    assert_eq!(ok.header("idempotent-replayed"), None);
}

async fn erasing_the_visitor_frees_its_key(app: &TestApp) {
    let first = create_with_key(app, "erase", r#"{"email":"gone@example.com"}"#).await;
    assert_eq!(app.delete(first.id()).await.status, StatusCode::NO_CONTENT);
    // The record held the erased visitor's data, so it went with it: the key runs anew.
    let again = create_with_key(app, "erase", r#"{"email":"gone@example.com"}"#).await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.header("idempotent-replayed"), None);
    assert_ne!(again.id(), first.id());
}

async fn ten_creates_with_one_key_at_once_make_one_visitor(app: &TestApp) {
    let answers =
        join_all((0..10).map(|_| create_with_key(app, "burst", r#"{"name":"Burst"}"#))).await;
    let mut ids = Vec::new();
    for answer in &answers {
        match answer.status.as_u16() {
            201 => ids.push(answer.id()),
            409 => {
                answer.assert_error(409, "IdempotencyKeyInUse");
                assert_eq!(answer.header("retry-after"), Some("1"));
            }
            other => panic!("unexpected {other}: {}", answer.text),
        }
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{answers:?}");
    assert_eq!(count(app).await, 1);
    let replay = create_with_key(app, "burst", r#"{"name":"Burst"}"#).await;
    assert_eq!(replay.id(), ids[0]);
}

async fn the_legacy_prefix_shares_the_keys(app: &TestApp) {
    let first = create_with_key(app, "both", "{}").await;
    let legacy = app
        .send(
            app.admin(Method::POST, "/api/v2/visitors")
                .header("idempotency-key", "both")
                .json(&json!({})),
        )
        .await;
    assert_eq!(legacy.header("idempotent-replayed"), Some("true"));
    assert_eq!(legacy.body, first.body);
}

/// Records expire after the configured time; the purge removes them.
#[tokio::test]
async fn an_expired_record_is_not_replayed() {
    let policy = IdempotencyPolicy::with_ttl(Duration::ZERO);
    let store = Arc::new(MemoryStore::new());
    let app = spawn_with_policy(store.clone(), None, policy).await;
    let first = create_with_key(&app, "short", "{}").await;
    let second = create_with_key(&app, "short", "{}").await;
    assert_eq!(second.status, StatusCode::CREATED);
    assert_eq!(second.header("idempotent-replayed"), None);
    assert_ne!(second.id(), first.id());
    let body: Value = app.list("").await.body;
    assert_eq!(body["visitors"].as_array().unwrap().len(), 2);
    app.stop().await;
}
