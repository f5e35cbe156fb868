//! Starts the real server on port 0 over a store, and talks to it over HTTP.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use reqwest::{Method, Response, StatusCode};
use serde_json::Value;
use sqlx::PgPool;
use visitor_http::{
    AppSettings, Application, Role, ServerOptions, Shutdown, TokenRegistry, TokenSpec,
};
use visitor_store::{IdempotencyPolicy, MemoryStore, PgStore, PgStoreOptions, SharedStorage};

pub const ADMIN_TOKEN: &str = "admin-test-token";
pub const AGENT_TOKEN: &str = "agent-test-token";
/// An administrator token configured only as its SHA-256 digest.
pub const HASHED_ADMIN_TOKEN: &str = "hashed-admin-token";

/// Runs each listed case once on the in-memory store and once on PostgreSQL (a fresh database
/// per test). A case is `async fn(&TestApp)`.
#[macro_export]
macro_rules! on_both_stores {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $case() {
                    let app = $crate::helpers::spawn_memory().await;
                    super::$case(&app).await;
                    app.stop().await;
                }
            )*
        }
        mod postgres {
            $(
                #[sqlx::test(migrations = false)]
                async fn $case(pool: sqlx::PgPool) {
                    let app = $crate::helpers::spawn_postgres(&pool).await;
                    super::$case(&app).await;
                    app.stop().await;
                }
            )*
        }
    };
}

/// A running server and a client for it.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    handle: ServerHandle,
    /// Drains and stops the server as SIGTERM does.
    pub shutdown: Shutdown,
    store: Option<Arc<PgStore>>,
}

/// The tokens every test server accepts: [`ADMIN_TOKEN`], [`AGENT_TOKEN`] and
/// [`HASHED_ADMIN_TOKEN`] (configured by digest).
pub fn tokens() -> TokenRegistry {
    let hashed = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(HASHED_ADMIN_TOKEN));
    let hashed = TokenSpec::parse(&format!("administrator:sha256:{hashed}").into()).unwrap();
    TokenRegistry::new(vec![
        TokenSpec::plain(Role::Administrator, &ADMIN_TOKEN.into()),
        TokenSpec::plain(Role::Agent, &AGENT_TOKEN.into()),
        hashed,
    ])
}

pub async fn spawn_with(store: SharedStorage, postgres: Option<Arc<PgStore>>) -> TestApp {
    spawn_with_policy(store, postgres, IdempotencyPolicy::default()).await
}

pub async fn spawn_with_policy(
    store: SharedStorage,
    postgres: Option<Arc<PgStore>>,
    idempotency: IdempotencyPolicy,
) -> TestApp {
    let settings = AppSettings {
        idempotency,
        ..AppSettings::new(store, tokens())
    };
    spawn_state(settings, postgres, Duration::ZERO).await
}

/// Starts a server for `settings` (rate limits off unless they set them) with `drain` as its drain
/// period; `postgres`, when given, is closed by [`TestApp::stop`].
pub async fn spawn_state(
    settings: AppSettings,
    postgres: Option<Arc<PgStore>>,
    drain: Duration,
) -> TestApp {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let options = ServerOptions {
        workers: Some(2),
        shutdown_timeout: Duration::from_secs(1),
        handle_signals: false,
        drain,
    };
    let app = Application::build(settings, listener, &options).unwrap();
    let base = format!("http://{}", app.addr());
    let handle = app.handle();
    let shutdown = app.shutdown();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        base,
        client: reqwest::Client::builder().no_proxy().build().unwrap(),
        handle,
        shutdown,
        store: postgres,
    }
}

pub async fn spawn_memory() -> TestApp {
    spawn_with(Arc::new(MemoryStore::new()), None).await
}

/// A server on the in-memory store with the settings `adjust` makes of the defaults.
pub async fn spawn_memory_with(adjust: impl FnOnce(AppSettings) -> AppSettings) -> TestApp {
    let settings = adjust(AppSettings::new(Arc::new(MemoryStore::new()), tokens()));
    spawn_state(settings, None, Duration::ZERO).await
}

/// A server on the test's fresh database with the settings `adjust` makes of the defaults.
pub async fn spawn_postgres_with(
    test_pool: &PgPool,
    adjust: impl FnOnce(AppSettings) -> AppSettings,
) -> TestApp {
    let store = Arc::new(PgStore::with_options(
        (*test_pool.connect_options()).clone(),
        &PgStoreOptions {
            max_connections: 10,
            ..PgStoreOptions::default()
        },
    ));
    let settings = adjust(AppSettings::new(store.clone(), tokens()));
    spawn_state(settings, Some(store), Duration::ZERO).await
}

/// The server gets a store of its own on the test's fresh database, closed by [`TestApp::stop`].
pub async fn spawn_postgres(test_pool: &PgPool) -> TestApp {
    let options = PgStoreOptions {
        max_connections: 10,
        ..PgStoreOptions::default()
    };
    let store = Arc::new(PgStore::with_options(
        (*test_pool.connect_options()).clone(),
        &options,
    ));
    spawn_with(store.clone(), Some(store)).await
}

/// An answer: status, headers and the body parsed as JSON (`Value::Null` when empty).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Answer {
    pub async fn from(response: Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::Null)
        };
        Self {
            status,
            headers,
            body,
            text,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the status and the error envelope's `error` code; returns self.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) -> &Self {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "error bodies are JSON"
        );
        assert_eq!(self.body["error"], code, "body: {}", self.text);
        assert!(
            self.body["description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "body: {}",
            self.text
        );
        let keys: Vec<&String> = self.body.as_object().unwrap().keys().collect();
        let expected: &[&str] = if code == "RecordInvalid" {
            &["error", "description", "details"]
        } else {
            &["error", "description"]
        };
        assert_eq!(keys, expected, "envelope keys");
        self
    }

    /// Asserts a 400 about List's query parameters: the envelope with `details` naming each
    /// offending parameter; returns those names, sorted.
    #[track_caller]
    pub fn assert_bad_query(&self) -> Vec<String> {
        assert_eq!(self.status.as_u16(), 400, "body: {}", self.text);
        assert_eq!(self.header("content-type"), Some("application/json"));
        assert_eq!(self.body["error"], "BadRequest", "body: {}", self.text);
        let keys: Vec<&String> = self.body.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["error", "description", "details"], "envelope keys");
        self.detail_keys()
    }

    /// The keys named in the `details` of a 422 or of a 400 about List's parameters, sorted.
    pub fn detail_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.body["details"]
            .as_object()
            .map(|map| map.keys().cloned().collect())
            .unwrap_or_default();
        keys.sort();
        keys
    }

    pub fn id(&self) -> i64 {
        self.body["id"].as_i64().unwrap()
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with the administrator's token.
    pub fn admin(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(ADMIN_TOKEN)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        Answer::from(request.send().await.unwrap()).await
    }

    pub async fn create(&self, body: &Value) -> Answer {
        self.send(self.admin(Method::POST, "/api/v2/chat/visitors").json(body))
            .await
    }

    /// Creates a visitor that must succeed; returns its JSON.
    pub async fn created(&self, body: &Value) -> Value {
        let answer = self.create(body).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
        answer.body
    }

    pub async fn show(&self, id: impl std::fmt::Display) -> Answer {
        self.send(self.admin(Method::GET, &format!("/api/v2/chat/visitors/{id}")))
            .await
    }

    pub async fn update(&self, id: impl std::fmt::Display, body: &Value) -> Answer {
        self.send(
            self.admin(Method::PUT, &format!("/api/v2/chat/visitors/{id}"))
                .json(body),
        )
        .await
    }

    /// List Visitors with a raw query string (`""` for none).
    pub async fn list(&self, query: &str) -> Answer {
        let path = if query.is_empty() {
            "/api/v2/chat/visitors".to_owned()
        } else {
            format!("/api/v2/chat/visitors?{query}")
        };
        self.send(self.admin(Method::GET, &path)).await
    }

    /// Fetches a full URL (e.g. a page's `links.next`) as the administrator.
    pub async fn get_url(&self, url: &str) -> Answer {
        self.send(self.client.get(url).bearer_auth(ADMIN_TOKEN))
            .await
    }

    pub async fn delete(&self, id: impl std::fmt::Display) -> Answer {
        self.send(self.admin(Method::DELETE, &format!("/api/v2/chat/visitors/{id}")))
            .await
    }

    /// The `/metrics` text of the main listener.
    pub async fn metrics_text(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Stops the server and closes its store's connections (so the test database can be
    /// dropped).
    pub async fn stop(self) {
        self.handle.stop(true).await;
        if let Some(store) = self.store {
            store.close().await;
        }
    }
}
