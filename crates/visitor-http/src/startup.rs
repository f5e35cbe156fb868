//! Builds the application around a bound listener (port 0 works) and runs it, so that `main`
//! and the tests start exactly the same server.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::web::Data;
use actix_web::{web, App, HttpServer};
use tokio::task::JoinHandle;
use utoipa_swagger_ui::SwaggerUi;
use visitor_store::{IdempotencyPolicy, IdempotencyStore, SharedStorage, TokenStore, VisitorStore};

use crate::auth::{require_administrator, TokenRegistry, TokenSpec};
use crate::metrics::Metrics;
use crate::ratelimit::{Limits, RateSetting};
use crate::routes;
use crate::telemetry::request_context;

/// How often expired idempotency records are purged, and rate-limit state with nothing left to
/// count is forgotten.
pub const PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// How often the tokens of the token store are read again: a new or revoked token takes effect
/// within this time plus one query (the contract allows 5 seconds).
pub const TOKEN_REFRESH_INTERVAL: Duration = Duration::from_secs(2);

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

/// What the application serves from.
#[derive(Debug)]
pub struct AppState {
    pub store: SharedStorage,
    pub tokens: TokenRegistry,
    /// Where tokens created at run time are read from (Postgres mode), every
    /// [`TOKEN_REFRESH_INTERVAL`].
    pub token_store: Option<Arc<dyn TokenStore>>,
    pub idempotency: IdempotencyPolicy,
    /// Requests per token (§8.5).
    pub rate_limit: RateSetting,
    /// Failed authentications per client address (§8.5).
    pub auth_failure_limit: RateSetting,
    pub metrics: MetricsEndpoint,
}

impl AppState {
    /// A state with no token store, the default idempotency policy, no rate limits and
    /// `/metrics` on the main listener.
    pub fn new(store: SharedStorage, tokens: TokenRegistry) -> Self {
        Self {
            store,
            tokens,
            token_store: None,
            idempotency: IdempotencyPolicy::default(),
            rate_limit: RateSetting::Off,
            auth_failure_limit: RateSetting::Off,
            metrics: MetricsEndpoint::Main,
        }
    }
}

/// Whether the instance takes new work: false from the start of a drain (`/readyz` says 503).
#[derive(Debug, Default)]
pub struct Readiness {
    draining: AtomicBool,
}

impl Readiness {
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    fn begin_drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
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

/// A server bound to its listener, not yet running, and its background tasks.
pub struct Application {
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    server: Server,
    metrics_server: Option<Server>,
    shutdown: Shutdown,
    background: Vec<JoinHandle<()>>,
}

/// Stops a server the graceful way: `/readyz` answers 503 at once, requests are still served
/// for the drain period, then the listener closes and in-flight requests finish.
#[derive(Clone)]
pub struct Shutdown {
    handle: ServerHandle,
    readiness: Data<Readiness>,
    drain: Duration,
}

impl std::fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shutdown")
            .field("drain", &self.drain)
            .finish_non_exhaustive()
    }
}

impl Shutdown {
    /// Drains, then stops; returns when the server has stopped.
    pub async fn drain_and_stop(&self) {
        self.begin_drain();
        tokio::time::sleep(self.drain).await;
        self.stop().await;
    }

    /// Starts the drain: `/readyz` answers 503 from now on, and answers close their connections.
    pub fn begin_drain(&self) {
        self.readiness.begin_drain();
        tracing::info!(
            drain_seconds = self.drain.as_secs_f64(),
            "draining: /readyz answers 503, requests are still served"
        );
    }

    async fn stop(&self) {
        tracing::info!("stopping gracefully: no new connections, in-flight requests finish");
        self.handle.stop(true).await;
    }
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Builds the server on `listener`.
    pub fn build(
        state: AppState,
        listener: TcpListener,
        options: &ServerOptions,
    ) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let visitors: Arc<dyn VisitorStore> = state.store.clone();
        let records: Arc<dyn IdempotencyStore> = state.store.clone();
        let limits = Data::new(Limits::new(state.rate_limit, state.auth_failure_limit));
        let mut background = vec![tokio::spawn(maintain(
            Arc::clone(&records),
            limits.clone().into_inner(),
        ))];
        if let Some(source) = state.token_store {
            background.push(tokio::spawn(refresh_tokens(state.tokens.clone(), source)));
        }
        let (metrics, metrics_listener, metrics_on_main) = match state.metrics {
            MetricsEndpoint::Main => (Some(Data::new(Metrics::new(visitors.clone()))), None, true),
            MetricsEndpoint::Own(listener) => (
                Some(Data::new(Metrics::new(visitors.clone()))),
                Some(listener),
                false,
            ),
            MetricsEndpoint::Off => (None, None, false),
        };
        let readiness = Data::new(Readiness::default());
        let store: Data<dyn VisitorStore> = Data::from(visitors);
        let records: Data<dyn IdempotencyStore> = Data::from(records);
        let policy = Data::new(state.idempotency);
        let tokens = Data::new(state.tokens);
        let openapi = crate::openapi::document().map_err(std::io::Error::other)?;
        let main_metrics = metrics.clone();
        let main_readiness = readiness.clone();
        let mut server = HttpServer::new(move || {
            let mut app = App::new()
                .app_data(store.clone())
                .app_data(records.clone())
                .app_data(policy.clone())
                .app_data(tokens.clone())
                .app_data(limits.clone())
                .app_data(main_readiness.clone());
            if let Some(metrics) = &main_metrics {
                app = app.app_data(metrics.clone());
                if metrics_on_main {
                    app = app.service(
                        routes::resource("/metrics").route(web::get().to(crate::metrics::metrics)),
                    );
                }
            }
            app.configure(routes::configure)
                .service(web::redirect("/swagger-ui", "/swagger-ui/"))
                .service(
                    SwaggerUi::new("/swagger-ui/{_:.*}")
                        .external_url_unchecked("/api-docs/openapi.json", openapi.clone()),
                )
                .default_service(web::to(routes::not_found))
                .wrap(from_fn(require_administrator))
                .wrap(from_fn(request_context))
        })
        .shutdown_timeout(options.shutdown_timeout.as_secs())
        .listen(listener)?;
        if let Some(workers) = options.workers {
            server = server.workers(workers.max(1));
        }
        // actix stops at once on SIGINT; the contract wants both signals to stop gracefully, so
        // the signals are handled here instead.
        let server = server.disable_signals().run();
        let shutdown = Shutdown {
            handle: server.handle(),
            readiness,
            drain: options.drain,
        };
        if options.handle_signals {
            actix_web::rt::spawn(stop_gracefully_on_signal(shutdown.clone()));
        }
        let (metrics_addr, metrics_server) = match (metrics, metrics_listener) {
            (Some(metrics), Some(listener)) => {
                let addr = listener.local_addr()?;
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(metrics.clone())
                        .service(
                            routes::resource("/metrics")
                                .route(web::get().to(crate::metrics::metrics)),
                        )
                        .default_service(web::to(routes::not_found))
                })
                .workers(1)
                .disable_signals()
                .shutdown_timeout(1)
                .listen(listener)?
                .run();
                (Some(addr), Some(server))
            }
            _ => (None, None),
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

    /// The address `/metrics` is served on when it has a listener of its own.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Drains and stops the server as a stop signal does.
    pub fn shutdown(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// The address the server listens on (with the real port when bound to port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// A handle that stops the server.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped (by a signal or through the handle); in-flight requests finish,
    /// then the background task stops.
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
        for task in self.background {
            task.abort();
        }
        served
    }
}

/// Housekeeping every [`PURGE_INTERVAL`]: removes expired idempotency records, and forgets
/// rate-limit state with nothing left to count. A failure is logged and the next round tries
/// again.
async fn maintain(records: Arc<dyn IdempotencyStore>, limits: Arc<Limits>) {
    let mut every = tokio::time::interval(PURGE_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        limits.forget_settled();
        match records.purge_expired().await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "expired idempotency records purged"),
            Err(error) => tracing::warn!(%error, "expired idempotency records could not be purged"),
        }
    }
}

/// Reads the token store's active tokens every [`TOKEN_REFRESH_INTERVAL`] (the first time at
/// once) into the registry. While the store cannot be read, the last tokens read stay in force.
async fn refresh_tokens(registry: TokenRegistry, source: Arc<dyn TokenStore>) {
    let mut every = tokio::time::interval(TOKEN_REFRESH_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        every.tick().await;
        match source.active_tokens().await {
            Ok(active) => {
                registry.replace_stored(active.iter().map(TokenSpec::stored).collect());
                if failing {
                    tracing::info!(tokens = active.len(), "the token store answers again");
                }
                failing = false;
            }
            Err(error) if !failing => {
                tracing::warn!(%error, "the token store cannot be read; the tokens read last stay in force");
                failing = true;
            }
            Err(_) => {}
        }
    }
}

/// Waits for SIGINT or SIGTERM, then drains and stops the server gracefully: it takes no new
/// connections, and requests in flight finish (within the shutdown timeout). A second signal
/// during the drain cuts it short.
async fn stop_gracefully_on_signal(shutdown: Shutdown) {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut interrupt, mut terminate) = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(interrupt), Ok(terminate)) => (interrupt, terminate),
        (Err(error), _) | (_, Err(error)) => {
            tracing::error!(%error, "cannot listen for SIGINT/SIGTERM; stop the process with SIGKILL");
            return;
        }
    };
    let name = tokio::select! {
        _ = interrupt.recv() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    };
    tracing::info!(signal = name, "stop signal received");
    shutdown.begin_drain();
    tokio::select! {
        () = tokio::time::sleep(shutdown.drain) => {}
        _ = interrupt.recv() => tracing::info!("second signal: the drain is cut short"),
        _ = terminate.recv() => tracing::info!("second signal: the drain is cut short"),
    }
    shutdown.stop().await;
}
