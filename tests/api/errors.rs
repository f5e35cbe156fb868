//! Every error status of the contract's table, with its envelope and headers.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{spawn_with, Answer, TestApp};

crate::on_both_stores!(
    malformed_bodies_are_bad_requests,
    a_key_named_twice_is_a_bad_request_and_changes_nothing,
    malformed_ids_are_bad_requests,
    unknown_routes_are_not_found,
    other_methods_are_not_allowed_with_allow,
    bodies_over_64_kib_are_too_large,
    bodies_that_are_not_json_are_unsupported,
    every_response_carries_a_request_id,
    health_and_readiness_answer_without_a_token,
);

async fn malformed_bodies_are_bad_requests(app: &TestApp) {
    let created = app.created(&json!({})).await;
    let item = format!("/api/v2/chat/visitors/{}", created["id"]);
    for body in [
        "",
        "{",
        "not json",
        "[]",
        "\"text\"",
        "null",
        "42",
        "{\"a\":1}x",
    ] {
        for answer in create_and_update_raw(app, &item, body).await {
            answer.assert_error(400, "BadRequest");
        }
    }
}

/// Sends one raw JSON body to Create and to Update of `item`; returns both answers.
async fn create_and_update_raw(app: &TestApp, item: &str, body: &str) -> Vec<Answer> {
    let mut answers = Vec::new();
    for (method, path) in [(Method::POST, "/api/v2/chat/visitors"), (Method::PUT, item)] {
        let request = app
            .admin(method, path)
            .header("content-type", "application/json")
            .body(body.to_owned());
        answers.push(app.send(request).await);
    }
    answers
}

async fn a_key_named_twice_is_a_bad_request_and_changes_nothing(app: &TestApp) {
    let created = app.created(&json!({"name": "Kept"})).await;
    let item = format!("/api/v2/chat/visitors/{}", created["id"]);
    for body in [
        r#"{"name": "a", "name": "b"}"#,
        r#"{"name": "a", "name": "a"}"#,
        r#"{"banned": true, "email": null, "banned": false}"#,
        r#"{"name": "a", "n\u0061me": "b"}"#,
    ] {
        for answer in create_and_update_raw(app, &item, body).await {
            answer.assert_error(400, "BadRequest");
            assert!(
                answer.body["description"]
                    .as_str()
                    .unwrap()
                    .contains("more than once"),
                "{body}: {}",
                answer.text
            );
        }
    }
    assert_eq!(app.show(&created["id"]).await.body, created);
    assert_eq!(app.list("").await.body["visitors"], json!([created]));
}

async fn malformed_ids_are_bad_requests(app: &TestApp) {
    for id in ["0", "-1", "abc", "1.5", "9223372036854775808", "%20"] {
        app.show(id).await.assert_error(400, "BadRequest");
        app.update(id, &json!({"name": "x"}))
            .await
            .assert_error(400, "BadRequest");
    }
    app.show("9223372036854775807")
        .await
        .assert_error(404, "RecordNotFound");
}

async fn unknown_routes_are_not_found(app: &TestApp) {
    for path in [
        "/",
        "/nope",
        "/api/v2/chat/visitor",
        "/api/v2/chat/visitors/1/extra",
        "/api/v3/chat/visitors",
    ] {
        app.send(app.admin(Method::GET, path))
            .await
            .assert_error(404, "NotFound");
    }
}

async fn other_methods_are_not_allowed_with_allow(app: &TestApp) {
    for (method, path, allow) in [
        (Method::PUT, "/api/v2/chat/visitors", "GET, POST"),
        (Method::DELETE, "/api/v2/chat/visitors", "GET, POST"),
        (Method::PATCH, "/api/v2/chat/visitors/1", "GET, PUT, DELETE"),
        (Method::POST, "/api/v2/chat/visitors/1", "GET, PUT, DELETE"),
        (Method::PATCH, "/api/v2/visitors", "GET, POST"),
        (Method::POST, "/api/v2/visitors/1", "GET, PUT, DELETE"),
    ] {
        let answer = app.send(app.admin(method.clone(), path)).await;
        answer.assert_error(405, "MethodNotAllowed");
        assert_eq!(answer.header("allow"), Some(allow), "{method} {path}");
    }
}

async fn bodies_over_64_kib_are_too_large(app: &TestApp) {
    let limit = 64 * 1024;
    // Exactly at the limit: an empty object padded with spaces is accepted.
    let at_limit = format!("{{}}{}", " ".repeat(limit - 2));
    let ok = app
        .send(
            app.admin(Method::POST, "/api/v2/chat/visitors")
                .header("content-type", "application/json")
                .body(at_limit),
        )
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.text);
    let over = format!("{{}}{}", " ".repeat(limit - 1));
    let id = ok.id();
    for (method, path) in [
        (Method::POST, "/api/v2/chat/visitors".to_owned()),
        (Method::PUT, format!("/api/v2/chat/visitors/{id}")),
    ] {
        app.send(
            app.admin(method, &path)
                .header("content-type", "application/json")
                .body(over.clone()),
        )
        .await
        .assert_error(413, "PayloadTooLarge");
    }
    // A streamed body without Content-Length is cut off at the limit too.
    let chunks: Vec<Result<String, std::io::Error>> = vec![
        Ok("{\"name\": \"".into()),
        Ok("x".repeat(limit)),
        Ok("\"}".into()),
    ];
    let streamed = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    app.send(
        app.admin(Method::POST, "/api/v2/chat/visitors")
            .header("content-type", "application/json")
            .body(streamed),
    )
    .await
    .assert_error(413, "PayloadTooLarge");
}

async fn bodies_that_are_not_json_are_unsupported(app: &TestApp) {
    let created = app.created(&json!({})).await;
    let item = format!("/api/v2/chat/visitors/{}", created["id"]);
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/json; charset=latin1"),
    ] {
        for (method, path) in [
            (Method::POST, "/api/v2/chat/visitors"),
            (Method::PUT, item.as_str()),
        ] {
            let mut request = app.admin(method.clone(), path).body("{}");
            if let Some(content_type) = content_type {
                request = request.header("content-type", content_type);
            }
            app.send(request)
                .await
                .assert_error(415, "UnsupportedMediaType");
        }
    }
    for content_type in [
        "application/json; charset=utf-8",
        "application/json;charset=UTF-8",
        "Application/JSON",
    ] {
        let answer = app
            .send(
                app.admin(Method::POST, "/api/v2/chat/visitors")
                    .header("content-type", content_type)
                    .body("{}"),
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::CREATED,
            "{content_type}: {}",
            answer.text
        );
    }
}

async fn every_response_carries_a_request_id(app: &TestApp) {
    let sent = app
        .send(
            app.admin(Method::GET, "/api/v2/chat/visitors/1")
                .header("x-request-id", "trace-abc.123"),
        )
        .await;
    assert_eq!(sent.header("x-request-id"), Some("trace-abc.123"));
    let insane = app
        .send(
            app.admin(Method::GET, "/nope")
                .header("x-request-id", "bad id <script>"),
        )
        .await;
    let generated = insane.header("x-request-id").unwrap();
    assert!(!generated.is_empty() && generated != "bad id <script>");
    for answer in [
        app.create(&json!({})).await,
        app.send(app.client.get(app.url("/healthz"))).await,
        app.send(app.client.get(app.url("/api/v2/chat/visitors/1")))
            .await,
        app.send(app.admin(Method::DELETE, "/api/v2/chat/visitors/1"))
            .await,
    ] {
        assert!(answer
            .header("x-request-id")
            .is_some_and(|id| !id.is_empty()));
    }
    let first = app.create(&json!({})).await;
    let second = app.create(&json!({})).await;
    assert_ne!(first.header("x-request-id"), second.header("x-request-id"));
}

async fn health_and_readiness_answer_without_a_token(app: &TestApp) {
    for path in ["/healthz", "/readyz"] {
        let answer = app.send(app.client.get(app.url(path))).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}");
    }
}

/// A database that cannot be reached: the service still starts, /healthz is 200, /readyz and
/// every API call answer 503 with Retry-After.
#[tokio::test]
async fn an_unreachable_database_gives_503_with_retry_after() {
    // Nothing listens on port 1 of loopback.
    let options = visitor_store::PgStoreOptions {
        max_connections: 2,
        acquire_timeout: std::time::Duration::from_secs(1),
        ..visitor_store::PgStoreOptions::default()
    };
    let store =
        visitor_store::PgStore::connect_lazy("postgres://postgres@127.0.0.1:1/visitors", &options)
            .unwrap();
    let app = spawn_with(std::sync::Arc::new(store), None).await;
    assert_eq!(
        app.send(app.client.get(app.url("/healthz"))).await.status,
        StatusCode::OK
    );
    let ready = app.send(app.client.get(app.url("/readyz"))).await;
    ready.assert_error(503, "ServiceUnavailable");
    for answer in [
        app.create(&json!({"name": "x"})).await,
        app.show(1).await,
        app.update(1, &json!({"name": "x"})).await,
    ] {
        answer.assert_error(503, "ServiceUnavailable");
        let retry = answer.header("retry-after").unwrap();
        assert!(retry.parse::<u32>().is_ok_and(|s| s > 0), "{retry}");
    }
    app.stop().await;
}
