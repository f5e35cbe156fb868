//! §8.2 Delete Visitor: erased for good, from the wire.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{TestApp, AGENT_TOKEN};

crate::on_both_stores!(
    delete_answers_204_and_the_visitor_is_gone,
    an_erased_external_id_is_free_and_the_id_is_never_reused,
    delete_of_a_missing_or_malformed_id_is_refused,
    delete_needs_an_administrator,
    the_legacy_prefix_deletes_too,
);

async fn delete_answers_204_and_the_visitor_is_gone(app: &TestApp) {
    let id = app
        .created(&json!({"name": "Erase me", "email": "erase@example.com"}))
        .await["id"]
        .clone();
    let kept = app.created(&json!({"name": "Keep me"})).await;
    let answer = app.delete(&id).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    assert!(answer.text.is_empty(), "no body: {}", answer.text);
    assert!(answer.header("x-request-id").is_some());
    app.show(&id).await.assert_error(404, "RecordNotFound");
    app.update(&id, &json!({"name": "x"}))
        .await
        .assert_error(404, "RecordNotFound");
    app.delete(&id).await.assert_error(404, "RecordNotFound");
    let listed = app.list("").await;
    assert_eq!(listed.body["visitors"], json!([kept]));
    assert_eq!(
        app.list("email=erase@example.com").await.body["visitors"],
        json!([])
    );
}

async fn an_erased_external_id_is_free_and_the_id_is_never_reused(app: &TestApp) {
    let first = app.created(&json!({"external_id": "crm-7"})).await;
    app.create(&json!({"external_id": "crm-7"}))
        .await
        .assert_error(409, "Conflict");
    assert_eq!(
        app.delete(&first["id"]).await.status,
        StatusCode::NO_CONTENT
    );
    let again = app.created(&json!({"external_id": "crm-7"})).await;
    assert!(
        again["id"].as_i64() > first["id"].as_i64(),
        "{again} reuses an erased id"
    );
}

async fn delete_of_a_missing_or_malformed_id_is_refused(app: &TestApp) {
    app.delete(999_999)
        .await
        .assert_error(404, "RecordNotFound");
    for id in ["0", "-1", "abc", "9223372036854775808"] {
        app.delete(id).await.assert_error(400, "BadRequest");
    }
}

async fn delete_needs_an_administrator(app: &TestApp) {
    let id = app.created(&json!({})).await["id"].clone();
    let path = format!("/api/v2/chat/visitors/{id}");
    app.send(app.client.delete(app.url(&path)))
        .await
        .assert_error(401, "Unauthorized");
    app.send(app.client.delete(app.url(&path)).bearer_auth(AGENT_TOKEN))
        .await
        .assert_error(403, "Forbidden");
    assert_eq!(
        app.show(&id).await.status,
        StatusCode::OK,
        "a refused delete erases nothing"
    );
}

async fn the_legacy_prefix_deletes_too(app: &TestApp) {
    let id = app.created(&json!({})).await["id"].clone();
    let answer = app
        .send(app.admin(Method::DELETE, &format!("/api/v2/visitors/{id}")))
        .await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    app.show(&id).await.assert_error(404, "RecordNotFound");
}
