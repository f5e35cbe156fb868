//! Contract §10.2: webhooks — registration, and deliveries to loopback receivers: signed,
//! retried, in order per visitor, a `410` disabling the webhook, and the deliveries log.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::Sha256;
use visitor_http::{AppSettings, DeliverySettings};

use crate::helpers::{spawn_memory_with, spawn_postgres_with, Answer, TestApp, AGENT_TOKEN};

const WEBHOOKS: &str = "/api/v2/chat/webhooks";

/// Retries at once, three times, and a short timeout.
fn fast(settings: AppSettings) -> AppSettings {
    AppSettings {
        deliveries: DeliverySettings {
            timeout: Duration::from_secs(2),
            retry_schedule: vec![Duration::ZERO; 3],
        },
        ..settings
    }
}

macro_rules! on_both_stores_fast {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $case() {
                    let app = $crate::helpers::spawn_memory_with(super::fast).await;
                    super::$case(&app).await;
                    app.stop().await;
                }
            )*
        }
        mod postgres {
            $(
                #[sqlx::test(migrations = false)]
                async fn $case(pool: sqlx::PgPool) {
                    let app = $crate::helpers::spawn_postgres_with(&pool, super::fast).await;
                    super::$case(&app).await;
                    app.stop().await;
                }
            )*
        }
    };
}

on_both_stores_fast!(
    webhooks_are_registered_shown_and_deleted,
    a_registration_is_checked_key_by_key,
    every_change_reaches_the_receiver_signed_and_in_order,
    failures_are_retried_and_a_410_disables_the_webhook,
);

/// One request a receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HashMap<String, String>,
    body: Value,
    raw: Vec<u8>,
}

/// A receiver on a loopback port: records every request, and answers what `answer` says for
/// the path and the how-many-th attempt of that `webhook-id` it is.
struct Receiver {
    base: String,
    got: Arc<Mutex<Vec<Received>>>,
    handle: actix_web::dev::ServerHandle,
}

impl Receiver {
    fn start(answer: fn(&str, usize) -> u16) -> Self {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shared = got.clone();
        let server = HttpServer::new(move || {
            let got = shared.clone();
            App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
                let got = got.clone();
                async move {
                    let headers: HashMap<String, String> = req
                        .headers()
                        .iter()
                        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                        .collect();
                    let id = headers.get("webhook-id").cloned().unwrap_or_default();
                    let mut got = got.lock().unwrap();
                    let path = req.path().to_owned();
                    let earlier = got
                        .iter()
                        .filter(|r| r.path == path && r.headers.get("webhook-id") == Some(&id))
                        .count();
                    got.push(Received {
                        path: path.clone(),
                        headers,
                        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                        raw: body.to_vec(),
                    });
                    let status = answer(&path, earlier + 1);
                    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
                        .finish()
                }
            }))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self { base, got, handle }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn received(&self, path: &str) -> Vec<Received> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// Waits until `done` holds of what `path` received (deliveries are sent in the background).
    async fn until(&self, path: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        for _ in 0..1000 {
            let got = self.received(path);
            if done(&got) {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "{path} never got what was expected: {:#?}",
            self.received(path)
        );
    }

    async fn stop(self) {
        self.handle.stop(true).await;
    }
}

async fn register(app: &TestApp, body: Value) -> Answer {
    app.send(app.admin(Method::POST, WEBHOOKS).json(&body))
        .await
}

async fn get(app: &TestApp, path: &str) -> Answer {
    app.send(app.admin(Method::GET, path)).await
}

/// The webhook's deliveries log once it holds `count` attempts: an attempt is logged after its
/// receiver answered, with the other ends recorded at the time.
async fn logged(app: &TestApp, id: &Value, count: usize) -> Vec<Value> {
    let path = format!("{WEBHOOKS}/{id}/deliveries");
    for _ in 0..1000 {
        let log = get(app, &path).await;
        let attempts = log.body["deliveries"].as_array().unwrap();
        if attempts.len() >= count {
            return attempts.clone();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "{path} never held {count} attempts: {:?}",
        get(app, &path).await
    );
}

/// Checks a delivery as a Standard Webhooks receiver does.
fn verify(secret: &str, received: &Received) {
    let id = &received.headers["webhook-id"];
    let timestamp = &received.headers["webhook-timestamp"];
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(&received.raw);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    assert_eq!(received.headers["webhook-signature"], expected);
    assert_eq!(received.headers["content-type"], "application/json");
    let sent: i64 = timestamp.parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - sent).abs() < 60);
}

async fn webhooks_are_registered_shown_and_deleted(app: &TestApp) {
    let created = register(
        app,
        json!({"url": "http://127.0.0.1:9/hook", "description": "CRM"}),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let id = created.body["id"].as_i64().unwrap();
    assert!(created
        .header("location")
        .unwrap()
        .ends_with(&format!("{WEBHOOKS}/{id}")));
    let keys: Vec<&String> = created.body.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["id", "url", "events", "description", "created", "secret"]
    );
    assert_eq!(
        created.body["events"],
        json!(["visitor.created", "visitor.updated", "visitor.deleted"])
    );
    assert_eq!(created.body["description"], "CRM");
    let secret = created.body["secret"].as_str().unwrap();
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    assert!(key.len() >= 24);

    let shown = get(app, &format!("{WEBHOOKS}/{id}")).await;
    assert_eq!(shown.status, StatusCode::OK);
    let mut without_secret = created.body.clone();
    without_secret.as_object_mut().unwrap().remove("secret");
    assert_eq!(shown.body, without_secret);
    assert_eq!(
        get(app, WEBHOOKS).await.body,
        json!({"webhooks": [without_secret]})
    );
    assert_eq!(
        get(app, &format!("{WEBHOOKS}/{id}/secret")).await.body,
        json!({"secret": secret})
    );
    assert_eq!(
        get(app, &format!("{WEBHOOKS}/{id}/deliveries")).await.body,
        json!({"deliveries": []})
    );

    let erase = app
        .send(app.admin(Method::DELETE, &format!("{WEBHOOKS}/{id}")))
        .await;
    assert_eq!(erase.status, StatusCode::NO_CONTENT);
    for path in [
        format!("{WEBHOOKS}/{id}"),
        format!("{WEBHOOKS}/{id}/secret"),
        format!("{WEBHOOKS}/{id}/deliveries"),
        format!("{WEBHOOKS}/x"),
    ] {
        get(app, &path).await.assert_error(404, "RecordNotFound");
    }
    app.send(app.admin(Method::DELETE, &format!("{WEBHOOKS}/{id}")))
        .await
        .assert_error(404, "RecordNotFound");
    let agent = app.client.get(app.url(WEBHOOKS)).bearer_auth(AGENT_TOKEN);
    app.send(agent).await.assert_error(403, "Forbidden");
    let put = app.send(app.admin(Method::PUT, WEBHOOKS)).await;
    put.assert_error(405, "MethodNotAllowed");
}

async fn a_registration_is_checked_key_by_key(app: &TestApp) {
    for (body, keys) in [
        (json!({}), vec!["url"]),
        (json!({"url": "ftp://127.0.0.1/x"}), vec!["url"]),
        (json!({"url": "/hooks"}), vec!["url"]),
        (
            json!({"url": "http://127.0.0.1:9/", "events": []}),
            vec!["events"],
        ),
        (
            json!({"url": "http://127.0.0.1:9/", "events": ["visitor.viewed"]}),
            vec!["events"],
        ),
        (
            json!({"url": "http://127.0.0.1:9/", "description": "d".repeat(256)}),
            vec!["description"],
        ),
        (
            json!({"url": 1, "secret": "whsec_mine"}),
            vec!["secret", "url"],
        ),
    ] {
        let answer = register(app, body.clone()).await;
        answer.assert_error(422, "RecordInvalid");
        assert_eq!(answer.detail_keys(), keys, "{body}");
    }
    let not_json = app
        .admin(Method::POST, WEBHOOKS)
        .header("content-type", "text/plain")
        .body("url");
    app.send(not_json)
        .await
        .assert_error(415, "UnsupportedMediaType");
    assert_eq!(get(app, WEBHOOKS).await.body, json!({"webhooks": []}));
}

async fn every_change_reaches_the_receiver_signed_and_in_order(app: &TestApp) {
    let receiver = Receiver::start(|_, _| 204);
    let before = app.created(&json!({"name": "Before"})).await["id"]
        .as_i64()
        .unwrap();
    let hook = register(app, json!({"url": receiver.url("/all")})).await;
    let secret = hook.body["secret"].as_str().unwrap().to_owned();
    let erasures = register(
        app,
        json!({"url": receiver.url("/erasures"), "events": ["visitor.deleted"]}),
    )
    .await;
    assert_eq!(erasures.status, StatusCode::CREATED);

    let kept = app
        .created(&json!({"name": "Kept", "external_id": "k"}))
        .await["id"]
        .as_i64()
        .unwrap();
    assert_eq!(
        app.update(kept, &json!({"name": "Renamed"})).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.update(kept, &json!({"name": "Renamed"})).await.status,
        StatusCode::OK
    );
    let erased = app.created(&json!({"name": "Erased"})).await["id"]
        .as_i64()
        .unwrap();
    assert_eq!(app.delete(erased).await.status, StatusCode::NO_CONTENT);

    let of = |got: &[Received], id: i64| -> Vec<String> {
        got.iter()
            .filter(|r| r.body["data"]["id"] == id)
            .map(|r| r.body["type"].as_str().unwrap().to_owned())
            .collect()
    };
    let got = receiver
        .until("/all", |got| {
            of(got, kept).len() == 2
                && of(got, erased).last().map(String::as_str) == Some("visitor.deleted")
        })
        .await;
    assert_eq!(
        of(&got, kept),
        ["visitor.created", "visitor.updated"],
        "an update that changes nothing is no change"
    );
    // A create or update of a visitor erased before it was sent is not sent; its erasure is.
    let erased_events = of(&got, erased);
    assert!(
        [
            vec!["visitor.deleted"],
            vec!["visitor.created", "visitor.deleted"]
        ]
        .iter()
        .any(|e| *e == erased_events),
        "{erased_events:?}"
    );
    assert!(
        of(&got, before).is_empty(),
        "changes before the registration are not sent"
    );
    let mut ids = std::collections::HashSet::new();
    for received in &got {
        verify(&secret, received);
        assert!(
            ids.insert(received.headers["webhook-id"].clone()),
            "a webhook-id per change"
        );
        let keys: Vec<&String> = received.body.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["type", "timestamp", "data"]);
        chrono::DateTime::parse_from_rfc3339(received.body["timestamp"].as_str().unwrap()).unwrap();
    }
    let deleted = got
        .iter()
        .find(|r| r.body["type"] == "visitor.deleted")
        .unwrap();
    assert_eq!(deleted.body["data"], json!({"id": erased}));
    // The data is the visitor when sent: the last state for the last delivery.
    let last_of_kept = got
        .iter()
        .rev()
        .find(|r| r.body["data"]["id"] == kept)
        .unwrap();
    assert_eq!(last_of_kept.body["data"], app.show(kept).await.body);

    let only_erasures = receiver.until("/erasures", |got| !got.is_empty()).await;
    assert_eq!(only_erasures.len(), 1);
    assert_eq!(only_erasures[0].body["type"], "visitor.deleted");
    let attempts = logged(app, &hook.body["id"], got.len()).await;
    assert_eq!(attempts.len(), got.len());
    let keys: Vec<&String> = attempts[0].as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "webhook_id",
            "event_id",
            "type",
            "visitor_id",
            "attempt",
            "status",
            "error",
            "at"
        ]
    );
    assert!(attempts
        .iter()
        .all(|a| a["status"] == 204 && a["attempt"] == 1 && a["error"].is_null()));
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains(&format!(
            "webhook_deliveries_total{{outcome=\"success\"}} {}",
            got.len() + 1
        )),
        "{metrics}"
    );
    assert!(metrics.contains("webhook_pending_deliveries"), "{metrics}");
    receiver.stop().await;
}

async fn failures_are_retried_and_a_410_disables_the_webhook(app: &TestApp) {
    // Two failures for each delivery, then success; the other endpoint is gone.
    let receiver = Receiver::start(|path, attempt| match (path, attempt) {
        ("/flaky", 1) => 500,
        ("/flaky", 2) => 503,
        ("/flaky", _) => 200,
        _ => 410,
    });
    let flaky = register(app, json!({"url": receiver.url("/flaky")}))
        .await
        .body["id"]
        .clone();
    let gone = register(app, json!({"url": receiver.url("/gone")}))
        .await
        .body["id"]
        .clone();
    let first = app.created(&json!({"name": "First"})).await["id"]
        .as_i64()
        .unwrap();
    let got = receiver.until("/flaky", |got| got.len() == 3).await;
    assert!(
        got.iter()
            .all(|r| r.headers["webhook-id"] == got[0].headers["webhook-id"]),
        "the same webhook-id on every attempt"
    );
    receiver.until("/gone", |got| got.len() == 1).await;
    // The deliveries log: newest first.
    let seen: Vec<(i64, i64)> = logged(app, &flaky, 3)
        .await
        .iter()
        .map(|a| {
            (
                a["attempt"].as_i64().unwrap(),
                a["status"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(seen, [(3, 200), (2, 503), (1, 500)]);
    assert_eq!(logged(app, &gone, 1).await[0]["status"], 410);

    // After the 410, the gone endpoint receives nothing more; the flaky one goes on.
    let second = app.created(&json!({"name": "Second"})).await["id"]
        .as_i64()
        .unwrap();
    receiver
        .until("/flaky", |got| {
            got.iter().any(|r| {
                r.body["data"]["id"] == second
                    && r.headers.contains_key("webhook-id")
                    && got
                        .iter()
                        .filter(|x| x.body["data"]["id"] == second)
                        .count()
                        == 3
            })
        })
        .await;
    assert_eq!(receiver.received("/gone").len(), 1);
    assert!(first < second);
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains("webhook_deliveries_total{outcome=\"failure\"} 5"),
        "{metrics}"
    );
    receiver.stop().await;
}

/// A receiver that never answers within the timeout: retried, then given up.
#[tokio::test]
async fn an_unreachable_receiver_is_retried_then_given_up() {
    let app = spawn_memory_with(fast).await;
    // Nothing listens there (the port of a listener just closed).
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let id = register(&app, json!({"url": format!("http://127.0.0.1:{port}/")}))
        .await
        .body["id"]
        .clone();
    app.created(&json!({})).await;
    let attempts = logged(&app, &id, 4).await;
    assert_eq!(
        attempts.len(),
        4,
        "the first attempt and three retries: {attempts:?}"
    );
    assert!(attempts
        .iter()
        .all(|a| a["status"].is_null() && a["error"] == "connection refused"));
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains("webhook_deliveries_total{outcome=\"gave_up\"} 1"),
        "{metrics}"
    );
    app.stop().await;
}

#[sqlx::test(migrations = false)]
async fn postgres_keeps_nothing_of_an_erased_visitor_in_the_log_or_the_deliveries(
    pool: sqlx::PgPool,
) {
    let app = spawn_postgres_with(&pool, fast).await;
    // No receiver: the deliveries stay pending while the visitor is erased.
    register(&app, json!({"url": "http://127.0.0.1:9/never"})).await;
    let id = app
        .created(
            &json!({"name": "Secret Name", "email": "secret@example.com", "notes": "secret notes"}),
        )
        .await["id"]
        .as_i64()
        .unwrap();
    assert_eq!(app.delete(id).await.status, StatusCode::NO_CONTENT);
    for table in [
        "visitor_changes",
        "visitor_erasures",
        "webhook_deliveries",
        "webhook_attempts",
    ] {
        let text: Option<String> = sqlx::query_scalar(&format!(
            "SELECT string_agg(t::text, ' ') FROM {table} AS t"
        ))
        .fetch_one(&pool)
        .await
        .unwrap();
        let text = text.unwrap_or_default();
        assert!(
            !text.contains("secret") && !text.contains("Secret"),
            "{table}: {text}"
        );
    }
    app.stop().await;
}
