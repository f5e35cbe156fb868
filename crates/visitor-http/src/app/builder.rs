//! The app builder: one function, [`app`], makes the actix application from the context, and
//! [`Application::build`] serves it on a bound listener (port 0 works), so that `main`, every
//! black-box test and the property test run exactly the same routes and middleware.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServerHandle, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::from_fn;
use actix_web::web::{self, Data};
use actix_web::{App, HttpServer};
use prometheus_client::metrics::counter::Counter;
use serde_json::Value;
use utoipa_swagger_ui::SwaggerUi;
use visitor_store::{IdempotencyPolicy, SharedStorage, TokenStore};

use crate::access::limits::{Limits, RateSetting};
use crate::access::shared::{SharedCounter, DECISION_TIMEOUT};
use crate::access::tokens::TokenRegistry;
use crate::api;
use crate::app::background::{maintain, refresh_tokens, Background};
use crate::app::shutdown::{stop_gracefully_on_signal, Shutdown};
use crate::context::{AppContext, Readiness};
use crate::delivery::sender::{deliver, DeliverySettings};
use crate::http::forwarded::{Origin, TrustedProxies};
use crate::middleware::auth::require_administrator;
use crate::middleware::request::request_context;
use crate::observability::metrics::{Metrics, WebhookMetrics};

/// Where `/metrics` is served.
#[derive(Debug, Default)]
pub enum MetricsEndpoint {
    /// On the API's own listener.
    #[default]
    Main,
    /// On a listener of its own (`--metrics-bind ADDR`).
    Own(TcpListener),
    /// Nowhere, and nothing is recorded (`--metrics-bind off`).
    Off,
}

/// How long erasures stay in the change feed unless configured: 30 days (§10.1).
pub const DEFAULT_CHANGE_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// What the application is built from.
#[derive(Debug)]
pub struct AppSettings {
    /// Visitors, idempotency records and the backend's operations.
    pub store: SharedStorage,
    /// The tokens configured (those of the token store are added at run time).
    pub tokens: TokenRegistry,
    /// Where tokens created at run time are read from (Postgres mode), every two seconds.
    pub token_store: Option<Arc<dyn TokenStore>>,
    /// How long idempotent creates are remembered.
    pub idempotency: IdempotencyPolicy,
    /// How long erasures stay in the change feed (§10.1).
    pub change_retention: Duration,
    /// How webhook deliveries are sent (§10.2).
    pub deliveries: DeliverySettings,
    /// Requests per token (§8.5).
    pub rate_limit: RateSetting,
    /// Failed authentications per client address (§8.5).
    pub auth_failure_limit: RateSetting,
    /// Where `/metrics` is served.
    pub metrics: MetricsEndpoint,
    /// The proxies whose forwarding headers are believed (§11).
    pub trusted_proxies: TrustedProxies,
    /// The base of every URL the service writes (§11); `None`: the request's `Host`.
    pub public_url: Option<String>,
    /// The Redis both rate limits are counted in, for every instance sharing it (§11);
    /// `None`: each instance counts alone.
    pub rate_limit_store: Option<String>,
    /// How long a decision waits for that store before the instance decides alone (20 ms).
    pub rate_limit_store_timeout: Duration,
}

impl AppSettings {
    /// Settings with no token store, the default idempotency policy, no rate limits and
    /// `/metrics` on the main listener.
    pub fn new(store: SharedStorage, tokens: TokenRegistry) -> Self {
        Self {
            store,
            tokens,
            token_store: None,
            idempotency: IdempotencyPolicy::default(),
            change_retention: DEFAULT_CHANGE_RETENTION,
            deliveries: DeliverySettings::default(),
            rate_limit: RateSetting::Off,
            auth_failure_limit: RateSetting::Off,
            metrics: MetricsEndpoint::Main,
            trusted_proxies: TrustedProxies::default(),
            public_url: None,
            rate_limit_store: None,
            rate_limit_store_timeout: DECISION_TIMEOUT,
        }
    }
}

/// How the HTTP server runs.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Worker threads; `None` is one per core.
    pub workers: Option<usize>,
    /// Time in-flight requests get to finish on shutdown.
    pub shutdown_timeout: Duration,
    /// Stop gracefully on SIGINT / SIGTERM (off in tests, which stop the server through its
    /// handle).
    pub handle_signals: bool,
    /// How long requests are still served after a stop signal while `/readyz` says 503, so a
    /// load balancer takes the instance out first (§8.6).
    pub drain: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            workers: None,
            shutdown_timeout: Duration::from_secs(30),
            handle_signals: true,
            drain: Duration::ZERO,
        }
    }
}

/// The context of `settings`, and where `/metrics` goes: on the main listener (`true`) or on the
/// listener returned.
fn context(
    settings: AppSettings,
) -> std::io::Result<(Data<AppContext>, bool, Option<TcpListener>)> {
    let store_errors = Counter::default();
    let webhook_metrics = WebhookMetrics::default();
    let metrics = || {
        Metrics::new(
            settings.store.clone(),
            store_errors.clone(),
            &webhook_metrics,
        )
    };
    let (metrics, metrics_here, metrics_listener) = match settings.metrics {
        MetricsEndpoint::Main => (Some(metrics()), true, None),
        MetricsEndpoint::Own(listener) => (Some(metrics()), false, Some(listener)),
        MetricsEndpoint::Off => (None, false, None),
    };
    let mut limits = Limits::new(settings.rate_limit, settings.auth_failure_limit);
    if let Some(url) = &settings.rate_limit_store {
        let shared = SharedCounter::new(url, settings.rate_limit_store_timeout, store_errors)
            .map_err(std::io::Error::other)?;
        limits = limits.shared_through(shared);
    }
    let context = AppContext {
        store: settings.store,
        idempotency: settings.idempotency,
        change_retention: settings.change_retention,
        deliveries: settings.deliveries,
        webhook_metrics,
        tokens: settings.tokens,
        limits,
        metrics,
        readiness: Readiness::default(),
        origin: Origin::new(settings.public_url.as_deref(), settings.trusted_proxies),
    };
    Ok((Data::new(context), metrics_here, metrics_listener))
}

/// The application: every route (with `/metrics` when `metrics_here`), Swagger UI over
/// `openapi`, and the middleware, outermost first: the request context, then access.
fn app(
    context: Data<AppContext>,
    metrics_here: bool,
    openapi: Value,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(context)
        .configure(|cfg| api::configure(cfg, metrics_here))
        .service(web::redirect("/swagger-ui", "/swagger-ui/"))
        .service(
            SwaggerUi::new("/swagger-ui/{_:.*}")
                .external_url_unchecked("/api-docs/openapi.json", openapi),
        )
        .default_service(web::to(api::not_found))
        .wrap(from_fn(require_administrator))
        .wrap(from_fn(request_context))
}

/// The application of `settings` in process, for actix's test tools (`init_service`): the same
/// routes, middleware and context [`Application::build`] serves, without a listener and without
/// the background tasks.
pub fn in_process(
    settings: AppSettings,
) -> std::io::Result<
    App<
        impl ServiceFactory<
            ServiceRequest,
            Config = (),
            Response = ServiceResponse<impl MessageBody>,
            Error = actix_web::Error,
            InitError = (),
        >,
    >,
> {
    let openapi = crate::openapi::document().map_err(std::io::Error::other)?;
    let (context, metrics_here, _) = context(settings)?;
    Ok(app(context, metrics_here, openapi))
}

/// A server bound to its listener, not yet running, and the background tasks it owns.
pub struct Application {
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    server: Server,
    metrics_server: Option<Server>,
    shutdown: Shutdown,
    background: Background,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("addr", &self.addr)
            .field("metrics_addr", &self.metrics_addr)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Builds the server of `settings` on `listener` and starts its background tasks (inside a
    /// Tokio runtime).
    pub fn build(
        settings: AppSettings,
        listener: TcpListener,
        options: &ServerOptions,
    ) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let token_store = settings.token_store.clone();
        let (context, metrics_here, metrics_listener) = context(settings)?;
        let mut background = Background::default();
        background.spawn(maintain(context.clone().into_inner()));
        background.spawn(deliver(
            context.store.clone(),
            context.deliveries.clone(),
            context.webhook_metrics.clone(),
        ));
        let warming = context.clone();
        background.spawn(async move {
            if let Some(shared) = &warming.limits.shared {
                shared.warm_up().await;
            }
        });
        if let Some(source) = token_store {
            background.spawn(refresh_tokens(context.tokens.clone(), source));
        }
        let openapi = crate::openapi::document().map_err(std::io::Error::other)?;
        let served = context.clone();
        let mut server =
            HttpServer::new(move || app(served.clone(), metrics_here, openapi.clone()))
                .shutdown_timeout(options.shutdown_timeout.as_secs())
                .listen(listener)?;
        if let Some(workers) = options.workers {
            server = server.workers(workers.max(1));
        }
        // actix stops at once on SIGINT; the contract wants both signals to stop gracefully, so
        // the signals are handled here instead.
        let server = server.disable_signals().run();
        let shutdown = Shutdown::new(server.handle(), context.clone(), options.drain);
        if options.handle_signals {
            background.spawn(stop_gracefully_on_signal(shutdown.clone()));
        }
        let (metrics_addr, metrics_server) = match metrics_listener {
            Some(listener) => {
                let addr = listener.local_addr()?;
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(context.clone())
                        .configure(api::configure_metrics)
                        .default_service(web::to(api::not_found))
                })
                .workers(1)
                .disable_signals()
                .shutdown_timeout(1)
                .listen(listener)?
                .run();
                (Some(addr), Some(server))
            }
            None => (None, None),
        };
        Ok(Self {
            addr,
            metrics_addr,
            server,
            metrics_server,
            shutdown,
            background,
        })
    }

    /// The address the server listens on (with the real port when bound to port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address `/metrics` is served on when it has a listener of its own.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Drains and stops the server as a stop signal does.
    pub fn shutdown(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// A handle that stops the server at once (no drain).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped (by a signal or through a handle); in-flight requests finish, then
    /// the `/metrics` listener and the background tasks stop.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let metrics = self.metrics_server.map(|server| {
            let handle = server.handle();
            (handle, tokio::spawn(server))
        });
        let served = self.server.await;
        if let Some((handle, running)) = metrics {
            handle.stop(true).await;
            let _ = running.await;
        }
        self.background.stop().await;
        served
    }
}
