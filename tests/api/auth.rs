//! Bearer authentication and the administrator-only rule.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{TestApp, ADMIN_TOKEN, AGENT_TOKEN, HASHED_ADMIN_TOKEN};

crate::on_both_stores!(
    no_token_another_scheme_or_an_unknown_token_is_unauthorized,
    agents_are_forbidden_every_operation,
    a_token_configured_as_a_digest_works,
    authentication_comes_before_routing,
);

fn operations(id: i64) -> Vec<(Method, String)> {
    let mut all = Vec::new();
    for prefix in ["/api/v2/chat/visitors", "/api/v2/visitors"] {
        all.push((Method::POST, prefix.to_owned()));
        all.push((Method::GET, format!("{prefix}/{id}")));
        all.push((Method::PUT, format!("{prefix}/{id}")));
    }
    all
}

async fn no_token_another_scheme_or_an_unknown_token_is_unauthorized(app: &TestApp) {
    let id = app.created(&json!({})).await["id"].as_i64().unwrap();
    for (method, path) in operations(id) {
        for authorization in [
            None,
            Some("Basic YWRtaW46YWRtaW4=".to_owned()),
            Some(format!("Token {ADMIN_TOKEN}")),
            Some("Bearer not-a-token".to_owned()),
            Some("Bearer ".to_owned()),
            Some(ADMIN_TOKEN.to_owned()),
        ] {
            let mut request = app
                .client
                .request(method.clone(), app.url(&path))
                .json(&json!({}));
            if let Some(value) = &authorization {
                request = request.header("authorization", value);
            }
            let answer = app.send(request).await;
            answer.assert_error(401, "Unauthorized");
            assert_eq!(
                answer.header("www-authenticate"),
                Some("Bearer"),
                "{authorization:?}"
            );
        }
    }
}

async fn agents_are_forbidden_every_operation(app: &TestApp) {
    let id = app.created(&json!({})).await["id"].as_i64().unwrap();
    for (method, path) in operations(id) {
        let answer = app
            .send(
                app.client
                    .request(method, app.url(&path))
                    .bearer_auth(AGENT_TOKEN)
                    .json(&json!({"name": "agent"})),
            )
            .await;
        answer.assert_error(403, "Forbidden");
    }
    // The agent changed nothing.
    assert!(app.show(id).await.body["name"].is_null());
}

async fn a_token_configured_as_a_digest_works(app: &TestApp) {
    let answer = app
        .send(
            app.client
                .post(app.url("/api/v2/chat/visitors"))
                .bearer_auth(HASHED_ADMIN_TOKEN)
                .json(&json!({"name": "hashed"})),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    let lowercase_scheme = app
        .send(
            app.client
                .get(app.url(&format!("/api/v2/chat/visitors/{}", answer.id())))
                .header("authorization", format!("bearer {ADMIN_TOKEN}")),
        )
        .await;
    assert_eq!(lowercase_scheme.status, StatusCode::OK);
}

async fn authentication_comes_before_routing(app: &TestApp) {
    for (method, path) in [
        (Method::GET, "/api/v2/unknown"),
        (Method::DELETE, "/api/v2/chat/visitors/1"),
        (Method::GET, "/api/v2/chat/visitors/abc"),
    ] {
        app.send(app.client.request(method, app.url(path)))
            .await
            .assert_error(401, "Unauthorized");
    }
    for path in [
        "/healthz",
        "/readyz",
        "/api-docs/openapi.json",
        "/swagger-ui/",
    ] {
        let answer = app.send(app.client.get(app.url(path))).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}");
    }
}
