//! One rate-limit budget for many instances (contract §11): two servers counting in one Redis
//! (a `redis-server` of the test's own, on a free loopback port, so it can be stopped and
//! started again), and what each does while that Redis does not answer.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use visitor_http::AppSettings;
use visitor_store::MemoryStore;

use crate::helpers::{spawn_state, tokens, Answer, TestApp, ADMIN_TOKEN};

/// A `redis-server` on a loopback port of its own, killed when dropped.
struct Redis {
    port: u16,
    process: Option<Child>,
}

impl Redis {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = Self {
            port,
            process: None,
        };
        redis.restart();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again, on the same port) and waits until it answers PING.
    fn restart(&mut self) {
        let process = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (make test installs Debian's)");
        self.process = Some(process);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pong = Command::new("redis-cli")
                .args(["-p", &self.port.to_string(), "ping"])
                .output()
                .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "PONG")
                .unwrap_or(false);
            if pong {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer on {}",
                self.port
            );
            std::thread::park_timeout(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill().unwrap();
            process.wait().unwrap();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn instance(redis: &Redis, rate_limit: &str, auth_failure_limit: &str) -> TestApp {
    let settings = AppSettings {
        rate_limit: rate_limit.parse().unwrap(),
        auth_failure_limit: auth_failure_limit.parse().unwrap(),
        rate_limit_store: Some(redis.url()),
        // These tests are about what the instances count together, not about a slow Redis:
        // on a loaded machine (the whole suite runs at once) an answer may take more than the
        // 20 ms a deployment waits, and would then be decided alone.
        rate_limit_store_timeout: Duration::from_secs(2),
        ..AppSettings::new(Arc::new(MemoryStore::new()), tokens())
    };
    spawn_state(settings, None, Duration::ZERO).await
}

async fn list_as(app: &TestApp, token: &str) -> Answer {
    app.send(
        app.client
            .get(app.url("/api/v2/chat/visitors"))
            .bearer_auth(token),
    )
    .await
}

#[tokio::test]
async fn two_instances_spend_one_token_budget() {
    let redis = Redis::start();
    let a = instance(&redis, "4/min", "off").await;
    let b = instance(&redis, "4/min", "off").await;
    for (n, app) in [&a, &b, &a, &b].into_iter().enumerate() {
        let answer = list_as(app, ADMIN_TOKEN).await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "request {n}: {}",
            answer.text
        );
        assert_eq!(answer.header("x-rate-limit"), Some("4"));
        let remaining = (3 - n).to_string();
        assert_eq!(
            answer.header("x-rate-limit-remaining"),
            Some(remaining.as_str())
        );
    }
    for app in [&a, &b] {
        let refused = list_as(app, ADMIN_TOKEN).await;
        refused.assert_error(429, "TooManyRequests");
        assert_eq!(refused.header("x-rate-limit-remaining"), Some("0"));
        let wait: u64 = refused.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=15).contains(&wait), "{wait}");
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn two_instances_count_one_clients_failures_together() {
    let redis = Redis::start();
    let a = instance(&redis, "off", "2/min").await;
    let b = instance(&redis, "off", "2/min").await;
    list_as(&a, "wrong").await.assert_error(401, "Unauthorized");
    list_as(&b, "wrong").await.assert_error(401, "Unauthorized");
    // The third failure anywhere is over the limit: refused before the token is looked at.
    list_as(&a, ADMIN_TOKEN)
        .await
        .assert_error(429, "TooManyRequests");
    list_as(&b, ADMIN_TOKEN)
        .await
        .assert_error(429, "TooManyRequests");
    a.stop().await;
    b.stop().await;
}

async fn store_errors(app: &TestApp) -> f64 {
    let text = app.metrics_text().await;
    text.lines()
        .find_map(|line| line.strip_prefix("rate_limit_store_errors_total "))
        .map(|value| value.trim().parse().unwrap())
        .expect("rate_limit_store_errors_total is exposed")
}

#[tokio::test]
async fn without_redis_an_instance_counts_alone_then_shares_again() {
    let mut redis = Redis::start();
    let app = instance(&redis, "3/min", "off").await;
    assert_eq!(list_as(&app, ADMIN_TOKEN).await.status, StatusCode::OK);
    assert_eq!(store_errors(&app).await, 0.0);

    redis.stop();
    // Never failed, never slow: the instance decides alone, at the configured rate (its own
    // counter has not seen the request Redis counted, so three more are admitted).
    for _ in 0..3 {
        let started = Instant::now();
        let answer = list_as(&app, ADMIN_TOKEN).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "{:?}",
            started.elapsed()
        );
    }
    list_as(&app, ADMIN_TOKEN)
        .await
        .assert_error(429, "TooManyRequests");
    assert!(store_errors(&app).await >= 1.0);

    // Redis back (empty): once the instance asks it again, the shared count decides, which
    // admits what the instance alone would refuse for the rest of the minute.
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = list_as(&app, ADMIN_TOKEN).await;
        if answer.status == StatusCode::OK {
            assert_eq!(answer.header("x-rate-limit-remaining"), Some("2"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the instance never went back to Redis"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn a_high_limit_is_taken_in_slices_and_still_counted_once() {
    let redis = Redis::start();
    // 200 a minute: each call to Redis takes 4 requests for the asking address.
    let a = instance(&redis, "200/min", "off").await;
    let b = instance(&redis, "200/min", "off").await;
    let mut admitted = 0;
    let mut last_remaining = u32::MAX;
    let started = Instant::now();
    for n in 0..250 {
        let app = if n % 2 == 0 { &a } else { &b };
        let answer = list_as(app, ADMIN_TOKEN).await;
        match answer.status {
            StatusCode::OK => {
                admitted += 1;
                if n < 8 {
                    let remaining = answer.header("x-rate-limit-remaining").unwrap();
                    last_remaining = last_remaining.min(remaining.parse().unwrap());
                }
            }
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("request {n}: {other}"),
        }
    }
    // The burst, and what refills meanwhile (200 a minute); less only by slices taken and not
    // served (one of 4 per instance).
    let allowed = 200 + (started.elapsed().as_secs_f64() * 200.0 / 60.0).ceil() as usize;
    assert!(
        (allowed - 8..=allowed).contains(&admitted),
        "admitted {admitted} of {allowed}"
    );
    assert!(last_remaining >= 190, "{last_remaining}");
    a.stop().await;
    b.stop().await;
}
