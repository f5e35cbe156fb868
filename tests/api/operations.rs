//! Operating the service (contract §8.5–§8.6): rate limits, `/metrics`, tokens created and
//! revoked at run time, and the graceful drain.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::PgPool;
use visitor_http::{AppSettings, MetricsEndpoint, RateSetting, Role, TokenSpec};
use visitor_store::{MemoryStore, PgStore, PgStoreOptions, TokenStore};

use crate::helpers::{
    spawn_state, tokens, Answer, TestApp, ADMIN_TOKEN, AGENT_TOKEN, HASHED_ADMIN_TOKEN,
};

fn rate(text: &str) -> RateSetting {
    text.parse().unwrap()
}

fn memory_state() -> AppSettings {
    AppSettings::new(Arc::new(MemoryStore::new()), tokens())
}

async fn get_as(app: &TestApp, token: &str, path: &str) -> Answer {
    app.send(app.client.get(app.url(path)).bearer_auth(token))
        .await
}

#[track_caller]
fn assert_allowance(answer: &Answer, limit: &str, remaining: &str) {
    assert_eq!(
        answer.header("x-rate-limit"),
        Some(limit),
        "{:?}",
        answer.headers
    );
    assert_eq!(answer.header("x-rate-limit-remaining"), Some(remaining));
    assert_eq!(
        answer.header("ratelimit-policy"),
        Some(format!("\"token\";q={limit};w=60").as_str())
    );
    let state = answer.header("ratelimit").unwrap();
    assert!(
        state.starts_with(&format!("\"token\";r={remaining};t=")),
        "{state}"
    );
}

#[tokio::test]
async fn a_token_over_its_limit_gets_429_and_nothing_changes() {
    let state = AppSettings {
        rate_limit: rate("3/min"),
        ..memory_state()
    };
    let app = spawn_state(state, None, Duration::ZERO).await;
    let created = app.create(&json!({"name": "One"})).await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_allowance(&created, "3", "2");
    let listed = app.list("").await;
    assert_allowance(&listed, "3", "1");
    let shown = app.show(created.id()).await;
    assert_allowance(&shown, "3", "0");

    let refused = app.create(&json!({"name": "Two"})).await;
    refused.assert_error(429, "TooManyRequests");
    assert_allowance(&refused, "3", "0");
    let wait: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=20).contains(&wait), "Retry-After {wait}");

    // Nothing was created: another token (with its own allowance) sees one visitor.
    let seen = get_as(&app, HASHED_ADMIN_TOKEN, "/api/v2/chat/visitors").await;
    assert_eq!(seen.status, StatusCode::OK);
    assert_eq!(
        seen.body["visitors"].as_array().unwrap().len(),
        1,
        "{}",
        seen.text
    );
    assert_allowance(&seen, "3", "2");
    app.stop().await;
}

#[tokio::test]
async fn an_agent_is_counted_too_and_its_403_carries_the_headers() {
    let state = AppSettings {
        rate_limit: rate("2/min"),
        ..memory_state()
    };
    let app = spawn_state(state, None, Duration::ZERO).await;
    let path = "/api/v2/chat/visitors";
    let first = get_as(&app, AGENT_TOKEN, path).await;
    first.assert_error(403, "Forbidden");
    assert_eq!(first.header("x-rate-limit-remaining"), Some("1"));
    get_as(&app, AGENT_TOKEN, path)
        .await
        .assert_error(403, "Forbidden");
    let over = get_as(&app, AGENT_TOKEN, path).await;
    over.assert_error(429, "TooManyRequests");
    assert_eq!(over.header("x-rate-limit-remaining"), Some("0"));
    // A 401 is not an answer to a valid token: no allowance headers.
    let unknown = get_as(&app, "nobody", path).await;
    unknown.assert_error(401, "Unauthorized");
    assert_eq!(unknown.header("x-rate-limit"), None);
    // Outside the API, no limit applies.
    let health = app.send(app.client.get(app.url("/healthz"))).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.header("x-rate-limit"), None);
    app.stop().await;
}

#[tokio::test]
async fn failed_authentication_is_limited_per_address_before_the_token_is_checked() {
    let state = AppSettings {
        auth_failure_limit: rate("3/min"),
        ..memory_state()
    };
    let app = spawn_state(state, None, Duration::ZERO).await;
    let path = "/api/v2/chat/visitors";
    for guess in ["guess-1", "guess-2", "guess-3"] {
        get_as(&app, guess, path)
            .await
            .assert_error(401, "Unauthorized");
    }
    // Over the limit, even the right token is refused: a guess cannot succeed at speed.
    for token in ["guess-4", ADMIN_TOKEN] {
        let refused = get_as(&app, token, path).await;
        refused.assert_error(429, "TooManyRequests");
        let wait: u64 = refused.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=20).contains(&wait), "Retry-After {wait}");
        assert_eq!(refused.header("x-rate-limit"), None);
    }
    // Only failures count: with no per-token limit, no allowance headers either.
    let health = app.send(app.client.get(app.url("/readyz"))).await;
    assert_eq!(health.status, StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn successes_do_not_count_against_the_failure_limit() {
    let state = AppSettings {
        auth_failure_limit: rate("2/min"),
        ..memory_state()
    };
    let app = spawn_state(state, None, Duration::ZERO).await;
    for _ in 0..5 {
        assert_eq!(app.list("").await.status, StatusCode::OK);
    }
    get_as(&app, "wrong", "/api/v2/visitors")
        .await
        .assert_error(401, "Unauthorized");
    assert_eq!(app.list("").await.status, StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn with_limits_off_no_allowance_is_sent() {
    let app = spawn_state(memory_state(), None, Duration::ZERO).await;
    for _ in 0..50 {
        get_as(&app, "wrong", "/api/v2/chat/visitors")
            .await
            .assert_error(401, "Unauthorized");
    }
    let listed = app.list("").await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.header("x-rate-limit"), None);
    assert_eq!(listed.header("ratelimit"), None);
    app.stop().await;
}

/// The value of one sample of the exposition, by its name and labels as written.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.parse().unwrap())
}

async fn scrape(client: &reqwest::Client, url: &str) -> String {
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    response.text().await.unwrap()
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_and_status() {
    let app = spawn_state(memory_state(), None, Duration::ZERO).await;
    let id = app.created(&json!({"name": "Counted"})).await["id"]
        .as_i64()
        .unwrap();
    for _ in 0..3 {
        assert_eq!(app.show(id).await.status, StatusCode::OK);
    }
    app.show(id + 1000)
        .await
        .assert_error(404, "RecordNotFound");
    for path in ["/wp-login.php", "/nothing/here/1", "/nothing/here/2"] {
        let answer = app.send(app.client.get(app.url(path))).await;
        answer.assert_error(404, "NotFound");
    }
    // No token needed.
    let text = scrape(&app.client, &app.url("/metrics")).await;
    let series = |method: &str, route: &str, status: u16| {
        format!("http_server_request_duration_seconds_count{{http_request_method=\"{method}\",http_route=\"{route}\",http_response_status_code=\"{status}\"}}")
    };
    let item = "/api/v2/chat/visitors/{visitor_id}";
    assert_eq!(
        sample(&text, &series("GET", item, 200)),
        Some(3.0),
        "{text}"
    );
    assert_eq!(sample(&text, &series("GET", item, 404)), Some(1.0));
    assert_eq!(
        sample(&text, &series("POST", "/api/v2/chat/visitors", 201)),
        Some(1.0)
    );
    // Every unmatched path is one series.
    assert_eq!(sample(&text, &series("GET", "(unmatched)", 404)), Some(3.0));
    assert!(!text.contains("wp-login") && !text.contains("nothing/here"));
    // This scrape is in flight while it renders.
    assert_eq!(sample(&text, "http_server_active_requests"), Some(1.0));
    assert!(sample(&text, "process_resident_memory_bytes").unwrap() > 1e6);
    assert!(sample(&text, "process_cpu_seconds_total").is_some());
    app.stop().await;
}

#[sqlx::test(migrations = false)]
async fn metrics_show_the_pool_and_store_errors(pool: PgPool) {
    let options = PgStoreOptions {
        max_connections: 4,
        ..PgStoreOptions::default()
    };
    let own = Arc::new(PgStore::with_options(
        (*pool.connect_options()).clone(),
        &options,
    ));
    let state = AppSettings::new(own.clone(), tokens());
    let app = spawn_state(state, Some(own), Duration::ZERO).await;
    app.created(&json!({"name": "Pooled"})).await;
    let text = scrape(&app.client, &app.url("/metrics")).await;
    assert_eq!(
        sample(&text, "db_client_connections_max"),
        Some(4.0),
        "{text}"
    );
    let used = sample(&text, "db_client_connections{state=\"used\"}").unwrap();
    let idle = sample(&text, "db_client_connections{state=\"idle\"}").unwrap();
    assert!(used + idle >= 1.0 && used + idle <= 4.0, "{used} {idle}");
    app.stop().await;

    // A database that is not there: 503, counted as unavailable.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options = PgStoreOptions {
        max_connections: 1,
        acquire_timeout: Duration::from_millis(300),
        ..PgStoreOptions::default()
    };
    let down = PgStore::connect_lazy(&format!("postgres://postgres@127.0.0.1:{port}/x"), &options)
        .unwrap();
    let app = spawn_state(
        AppSettings::new(Arc::new(down), tokens()),
        None,
        Duration::ZERO,
    )
    .await;
    app.show(1).await.assert_error(503, "ServiceUnavailable");
    let text = scrape(&app.client, &app.url("/metrics")).await;
    assert_eq!(
        sample(&text, "visitors_store_errors_total{kind=\"unavailable\"}"),
        Some(1.0),
        "{text}"
    );
    app.stop().await;
}

#[tokio::test]
async fn metrics_move_to_their_own_listener_or_off() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let own = format!("http://{}/metrics", listener.local_addr().unwrap());
    let state = AppSettings {
        metrics: MetricsEndpoint::Own(listener),
        ..memory_state()
    };
    let app = spawn_state(state, None, Duration::ZERO).await;
    assert_eq!(app.list("").await.status, StatusCode::OK);
    app.send(app.client.get(app.url("/metrics")))
        .await
        .assert_error(404, "NotFound");
    let text = scrape(&app.client, &own).await;
    assert!(
        text.contains("http_route=\"/api/v2/chat/visitors\""),
        "{text}"
    );
    app.stop().await;

    let state = AppSettings {
        metrics: MetricsEndpoint::Off,
        ..memory_state()
    };
    let app = spawn_state(state, None, Duration::ZERO).await;
    app.send(app.client.get(app.url("/metrics")))
        .await
        .assert_error(404, "NotFound");
    app.stop().await;
}

/// Waits until `check` holds, for at most `limit`; returns how long it took. For a change the
/// contract gives a deadline to (a token honoured within 5 seconds).
async fn within(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    started.elapsed()
}

#[sqlx::test(migrations = false)]
async fn stored_tokens_are_honoured_and_revoked_within_five_seconds(pool: PgPool) {
    let store = Arc::new(PgStore::from_pool(&pool));
    let token_store: Arc<dyn TokenStore> = store.clone();
    let state = AppSettings {
        token_store: Some(token_store),
        ..AppSettings::new(store.clone(), tokens())
    };
    let app = spawn_state(state, None, Duration::ZERO).await;
    let path = "/api/v2/chat/visitors";

    let fresh = "a-token-created-at-run-time";
    let spec = TokenSpec::plain(Role::Administrator, &fresh.into());
    get_as(&app, fresh, path)
        .await
        .assert_error(401, "Unauthorized");
    let record = store
        .create_token(Role::Administrator, Some("test"), &spec.digest())
        .await
        .unwrap();
    let took = within(Duration::from_secs(5), async || {
        get_as(&app, fresh, path).await.status == StatusCode::OK
    })
    .await;
    assert!(took < Duration::from_secs(5));
    // Configured tokens keep working.
    assert_eq!(app.list("").await.status, StatusCode::OK);

    store.revoke_token(record.id).await.unwrap();
    within(Duration::from_secs(5), async || {
        get_as(&app, fresh, path).await.status == StatusCode::UNAUTHORIZED
    })
    .await;
    assert_eq!(app.list("").await.status, StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn a_drain_says_not_ready_but_still_serves_then_stops() {
    let app = spawn_state(memory_state(), None, Duration::from_millis(500)).await;
    let id = app.created(&json!({"name": "Drained"})).await["id"]
        .as_i64()
        .unwrap();
    let ready = app.send(app.client.get(app.url("/readyz"))).await;
    assert_eq!(ready.status, StatusCode::OK);

    app.shutdown.begin_drain();
    app.send(app.client.get(app.url("/readyz")))
        .await
        .assert_error(503, "ServiceUnavailable");
    let shown = app.show(id).await;
    assert_eq!(shown.status, StatusCode::OK, "requests are still served");
    assert_eq!(shown.header("connection"), Some("close"));
    let created = app.create(&json!({"name": "During the drain"})).await;
    assert_eq!(created.status, StatusCode::CREATED);

    let started = Instant::now();
    app.shutdown.drain_and_stop().await;
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert!(
        app.admin(Method::GET, "/healthz").send().await.is_err(),
        "the listener is closed"
    );
}
