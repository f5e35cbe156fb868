//! Behind proxies (contract §11): the client address and the URLs the service writes, from a
//! trusted proxy and from a peer that only claims to be one; and a statement made to hang.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use visitor_http::{AppSettings, TrustedProxies};
use visitor_store::{MemoryStore, PgStore, PgStoreOptions};

use crate::helpers::{spawn_state, tokens, Answer, TestApp, ADMIN_TOKEN};

/// Settings with the failed-authentication limit at 2 a minute and, when `trusted`, the test's
/// own address (every request here comes from 127.0.0.1) as the proxy.
fn settings(trusted: bool, public_url: Option<&str>) -> AppSettings {
    let proxies = if trusted { "127.0.0.1" } else { "" };
    AppSettings {
        auth_failure_limit: "2/min".parse().unwrap(),
        trusted_proxies: TrustedProxies::parse(proxies.split(',')).unwrap(),
        public_url: public_url.map(str::to_owned),
        ..AppSettings::new(Arc::new(MemoryStore::new()), tokens())
    }
}

async fn list_as(app: &TestApp, token: &str, forwarded_for: &str) -> Answer {
    app.send(
        app.client
            .get(app.url("/api/v2/chat/visitors"))
            .bearer_auth(token)
            .header("x-forwarded-for", forwarded_for),
    )
    .await
}

#[tokio::test]
async fn behind_a_trusted_proxy_failures_count_per_forwarded_client() {
    let app = spawn_state(settings(true, None), None, Duration::ZERO).await;
    for _ in 0..2 {
        list_as(&app, "wrong", "6.6.6.6, 203.0.113.7")
            .await
            .assert_error(401, "Unauthorized");
    }
    // The client's third failure is over its limit: refused before its token is looked at,
    // even with the right one.
    list_as(&app, ADMIN_TOKEN, "203.0.113.7")
        .await
        .assert_error(429, "TooManyRequests");
    // Another client behind the same proxy is not touched; what it forges on the left of the
    // header does not matter, the proxy's own entry does.
    let other = list_as(&app, ADMIN_TOKEN, "203.0.113.7, 198.51.100.2").await;
    assert_eq!(other.status, StatusCode::OK, "{}", other.text);
    // An IPv6 client is counted by its /64: another address of the same /64 is the same client.
    for _ in 0..2 {
        list_as(&app, "wrong", "2001:db8:1:2::a")
            .await
            .assert_error(401, "Unauthorized");
    }
    list_as(&app, ADMIN_TOKEN, "2001:db8:1:2::ffff")
        .await
        .assert_error(429, "TooManyRequests");
    let next_64 = list_as(&app, ADMIN_TOKEN, "2001:db8:1:3::a").await;
    assert_eq!(next_64.status, StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn from_an_untrusted_peer_forwarding_headers_are_ignored() {
    let app = spawn_state(settings(false, None), None, Duration::ZERO).await;
    for forged in ["203.0.113.7", "198.51.100.2"] {
        list_as(&app, "wrong", forged)
            .await
            .assert_error(401, "Unauthorized");
    }
    // Both failures were the peer's own, whatever it claimed: it is over its limit.
    list_as(&app, ADMIN_TOKEN, "192.0.2.1")
        .await
        .assert_error(429, "TooManyRequests");
    app.stop().await;
}

async fn next_link(app: &TestApp, forwarded_host: &str) -> String {
    app.created(&json!({"name": "One"})).await;
    app.created(&json!({"name": "Two"})).await;
    let page = app
        .send(
            app.client
                .get(app.url("/api/v2/chat/visitors?page[size]=1"))
                .bearer_auth(ADMIN_TOKEN)
                .header("x-forwarded-host", forwarded_host)
                .header("x-forwarded-proto", "https"),
        )
        .await;
    assert_eq!(page.status, StatusCode::OK);
    page.body["links"]["next"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn links_follow_a_trusted_proxys_host_and_never_a_strangers() {
    let trusted = spawn_state(settings(true, None), None, Duration::ZERO).await;
    let next = next_link(&trusted, "visitors.example.com").await;
    assert!(
        next.starts_with("https://visitors.example.com/api/v2/chat/visitors?"),
        "{next}"
    );
    trusted.stop().await;

    let stranger = spawn_state(settings(false, None), None, Duration::ZERO).await;
    let next = next_link(&stranger, "evil.example").await;
    let own = stranger.url("/api/v2/chat/visitors?");
    assert!(next.starts_with(&own), "{next} should start with {own}");
    stranger.stop().await;
}

#[tokio::test]
async fn the_public_url_is_the_base_of_links_and_location() {
    let public = "https://public.example.com/base";
    let app = spawn_state(settings(true, Some(public)), None, Duration::ZERO).await;
    let next = next_link(&app, "visitors.example.com").await;
    assert!(
        next.starts_with("https://public.example.com/base/api/v2/chat/visitors?"),
        "{next}"
    );
    let created = app.create(&json!({})).await;
    let location = created.header("location").unwrap();
    assert_eq!(
        location,
        format!("{public}/api/v2/chat/visitors/{}", created.id())
    );
    app.stop().await;
}

/// A statement that hangs (on a row lock the test holds) is answered 503 once the statement
/// timeout passes, and the next request is served.
#[sqlx::test(migrations = false)]
async fn a_hanging_statement_is_answered_503_within_the_timeout(test_pool: PgPool) {
    let options = PgStoreOptions {
        max_connections: 4,
        statement_timeout: Duration::from_secs(1),
        ..PgStoreOptions::default()
    };
    let store = Arc::new(PgStore::with_options(
        (*test_pool.connect_options()).clone(),
        &options,
    ));
    let settings = AppSettings::new(store.clone(), tokens());
    let app = spawn_state(settings, Some(store), Duration::ZERO).await;
    let id = app.created(&json!({"name": "Locked"})).await["id"]
        .as_i64()
        .unwrap();

    let mut holder = test_pool.begin().await.unwrap();
    sqlx::query("SELECT id FROM visitors WHERE id = $1 FOR UPDATE")
        .bind(id)
        .execute(&mut *holder)
        .await
        .unwrap();
    let started = Instant::now();
    let answer = app.update(id, &json!({"name": "Waiting"})).await;
    let waited = started.elapsed();
    answer.assert_error(503, "ServiceUnavailable");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "answered after {waited:?}; the timeout is 1 s"
    );
    holder.rollback().await.unwrap();

    let next = app.update(id, &json!({"name": "Served"})).await;
    assert_eq!(next.status, StatusCode::OK, "{}", next.text);
    assert_eq!(next.body["name"], "Served");
    app.stop().await;
}
