//! §8.3 Conditional requests: ETag, If-Match on Update and Delete, If-None-Match on Show.

use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Answer, TestApp};

crate::on_both_stores!(
    create_show_and_update_carry_one_strong_etag,
    the_etag_changes_with_the_visitor_and_only_then,
    if_match_guards_update,
    if_match_guards_delete,
    if_none_match_answers_304_without_a_body,
    two_updates_with_one_if_match_at_once_give_one_success,
    prefer_return_minimal_answers_204_with_the_etag,
);

fn etag(answer: &Answer) -> String {
    let tag = answer
        .header("etag")
        .unwrap_or_else(|| panic!("no ETag: {answer:?}"));
    assert!(
        tag.starts_with('"') && tag.ends_with('"') && !tag.starts_with("W/"),
        "{tag}"
    );
    tag.to_owned()
}

async fn update_if(app: &TestApp, id: i64, if_match: &str, body: serde_json::Value) -> Answer {
    app.send(
        app.admin(Method::PUT, &format!("/api/v2/chat/visitors/{id}"))
            .header("if-match", if_match)
            .json(&body),
    )
    .await
}

async fn create_show_and_update_carry_one_strong_etag(app: &TestApp) {
    let created = app.create(&json!({"name": "A"})).await;
    let id = created.id();
    let tag = etag(&created);
    assert_eq!(etag(&app.show(id).await), tag);
    let legacy = app
        .send(app.admin(Method::GET, &format!("/api/v2/visitors/{id}")))
        .await;
    assert_eq!(etag(&legacy), tag);
    let updated = app.update(id, &json!({"name": "B"})).await;
    assert_ne!(etag(&updated), tag);
    assert_eq!(etag(&app.show(id).await), etag(&updated));
    let other = app.create(&json!({"name": "A"})).await;
    assert_ne!(etag(&other), tag, "two visitors never share a tag");
}

async fn the_etag_changes_with_the_visitor_and_only_then(app: &TestApp) {
    let created = app.create(&json!({"name": "A", "notes": "n"})).await;
    let id = created.id();
    let tag = etag(&created);
    for unchanged in [json!({}), json!({"name": "A"}), created.body.clone()] {
        assert_eq!(etag(&app.update(id, &unchanged).await), tag, "{unchanged}");
    }
    let refused = app.update(id, &json!({"notes": "other"})).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(etag(&app.show(id).await), tag);
    let mut seen = vec![tag];
    for body in [
        json!({"banned": true}),
        json!({"email": "a@b.io"}),
        json!({"email": null}),
        json!({"created": "2020-01-01T00:00:00Z"}),
    ] {
        let next = etag(&app.update(id, &body).await);
        assert!(!seen.contains(&next), "{body} gave an old tag");
        seen.push(next);
    }
}

async fn if_match_guards_update(app: &TestApp) {
    let created = app.create(&json!({"name": "A"})).await;
    let id = created.id();
    let first = etag(&created);
    let ok = update_if(app, id, &first, json!({"name": "B"})).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    let second = etag(&ok);
    // The tag the client read is stale now.
    for stale in [
        first.clone(),
        format!("W/{second}"),
        "\"nope\"".into(),
        "garbage".into(),
    ] {
        update_if(app, id, &stale, json!({"name": "C"}))
            .await
            .assert_error(412, "PreconditionFailed");
    }
    // A stale tag and an invalid body: the precondition is checked first, and nothing changes.
    update_if(app, id, &first, json!({"notes": "changed"}))
        .await
        .assert_error(412, "PreconditionFailed");
    assert_eq!(app.show(id).await.body["name"], "B");
    let listed = format!("\"1.1\", {first}, {second}");
    assert_eq!(
        update_if(app, id, &listed, json!({"name": "D"}))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        update_if(app, id, "*", json!({"name": "E"})).await.status,
        StatusCode::OK
    );
    update_if(app, 999_999, "*", json!({"name": "x"}))
        .await
        .assert_error(404, "RecordNotFound");
    update_if(app, 999_999, &first, json!({"name": "x"}))
        .await
        .assert_error(404, "RecordNotFound");
}

async fn if_match_guards_delete(app: &TestApp) {
    let created = app.create(&json!({})).await;
    let id = created.id();
    let first = etag(&created);
    let second = etag(&app.update(id, &json!({"name": "B"})).await);
    let delete_if = |tag: String| {
        app.send(
            app.admin(Method::DELETE, &format!("/api/v2/chat/visitors/{id}"))
                .header("if-match", tag),
        )
    };
    delete_if(first)
        .await
        .assert_error(412, "PreconditionFailed");
    assert_eq!(app.show(id).await.status, StatusCode::OK);
    assert_eq!(
        delete_if(second.clone()).await.status,
        StatusCode::NO_CONTENT
    );
    delete_if(second).await.assert_error(404, "RecordNotFound");
    let other = app.create(&json!({})).await.id();
    let star = app
        .send(
            app.admin(Method::DELETE, &format!("/api/v2/chat/visitors/{other}"))
                .header("if-match", "*"),
        )
        .await;
    assert_eq!(star.status, StatusCode::NO_CONTENT);
}

async fn if_none_match_answers_304_without_a_body(app: &TestApp) {
    let created = app.create(&json!({"name": "A"})).await;
    let id = created.id();
    let tag = etag(&created);
    let show_if = |value: String| {
        app.send(
            app.admin(Method::GET, &format!("/api/v2/chat/visitors/{id}"))
                .header("if-none-match", value),
        )
    };
    for matching in [
        tag.clone(),
        format!("W/{tag}"),
        format!("\"x\", {tag}"),
        "*".into(),
    ] {
        let answer = show_if(matching.clone()).await;
        assert_eq!(answer.status, StatusCode::NOT_MODIFIED, "{matching}");
        assert!(answer.text.is_empty());
        assert_eq!(etag(&answer), tag);
    }
    let fresh = show_if("\"1.99\"".into()).await;
    assert_eq!(fresh.status, StatusCode::OK);
    assert_eq!(fresh.body, created.body);
    app.update(id, &json!({"name": "B"})).await;
    let changed = show_if(tag).await;
    assert_eq!(changed.status, StatusCode::OK);
    assert_eq!(changed.body["name"], "B");
    let missing = app
        .send(
            app.admin(Method::GET, "/api/v2/chat/visitors/999999")
                .header("if-none-match", "*"),
        )
        .await;
    missing.assert_error(404, "RecordNotFound");
}

/// Two agents edit one visitor at once, each with the tag it read: exactly one wins, the other
/// is told so and changed nothing.
async fn two_updates_with_one_if_match_at_once_give_one_success(app: &TestApp) {
    for round in 0..5 {
        let created = app.create(&json!({"name": "start"})).await;
        let (id, tag) = (created.id(), etag(&created));
        let writers = ["agent one", "agent two"];
        let answers = join_all(
            writers
                .iter()
                .map(|name| update_if(app, id, &tag, json!({"name": name}))),
        )
        .await;
        let statuses: Vec<u16> = answers.iter().map(|a| a.status.as_u16()).collect();
        let winner = answers
            .iter()
            .find(|a| a.status == StatusCode::OK)
            .expect("one update wins");
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            1,
            "round {round}: {statuses:?}"
        );
        assert_eq!(
            statuses.iter().filter(|s| **s == 412).count(),
            1,
            "round {round}: {statuses:?}"
        );
        assert_eq!(app.show(id).await.body, winner.body);
    }
}

async fn prefer_return_minimal_answers_204_with_the_etag(app: &TestApp) {
    let id = app.create(&json!({})).await.id();
    let answer = app
        .send(
            app.admin(Method::PUT, &format!("/api/v2/chat/visitors/{id}"))
                .header("prefer", "return=minimal")
                .json(&json!({"name": "Min"})),
        )
        .await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    assert!(answer.text.is_empty());
    assert_eq!(answer.header("preference-applied"), Some("return=minimal"));
    let shown = app.show(id).await;
    assert_eq!(shown.body["name"], "Min");
    assert_eq!(etag(&answer), etag(&shown));
    let ignored = app
        .send(
            app.admin(Method::PUT, &format!("/api/v2/chat/visitors/{id}"))
                .header("prefer", "return=representation, whatever")
                .json(&json!({"name": "Full"})),
        )
        .await;
    assert_eq!(ignored.status, StatusCode::OK);
    assert_eq!(ignored.body["name"], "Full");
}
