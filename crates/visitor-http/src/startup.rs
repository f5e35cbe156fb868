//! Builds the application around a bound listener (port 0 works) and runs it, so that `main`
//! and the tests start exactly the same server.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::web::Data;
use actix_web::{web, App, HttpServer};
use tokio::task::JoinHandle;
use utoipa_swagger_ui::SwaggerUi;
use visitor_store::{IdempotencyPolicy, IdempotencyStore, SharedStorage, VisitorStore};

use crate::auth::{require_administrator, TokenRegistry};
use crate::routes;
use crate::telemetry::request_context;

/// How often expired idempotency records are purged.
pub const PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// What the application serves from.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: SharedStorage,
    pub tokens: TokenRegistry,
    pub idempotency: IdempotencyPolicy,
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
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            workers: None,
            shutdown_timeout: Duration::from_secs(30),
            handle_signals: true,
        }
    }
}

/// A server bound to its listener, not yet running, and its background task.
pub struct Application {
    addr: SocketAddr,
    server: Server,
    purge: JoinHandle<()>,
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
        let purge = tokio::spawn(purge_expired_records(Arc::clone(&records)));
        let store: Data<dyn VisitorStore> = Data::from(visitors);
        let records: Data<dyn IdempotencyStore> = Data::from(records);
        let policy = Data::new(state.idempotency);
        let tokens = Data::new(state.tokens);
        let openapi = crate::openapi::document().map_err(std::io::Error::other)?;
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(store.clone())
                .app_data(records.clone())
                .app_data(policy.clone())
                .app_data(tokens.clone())
                .configure(routes::configure)
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
        if options.handle_signals {
            actix_web::rt::spawn(stop_gracefully_on_signal(server.handle()));
        }
        Ok(Self {
            addr,
            server,
            purge,
        })
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
        let served = self.server.await;
        self.purge.abort();
        served
    }
}

/// The one background task: removes expired idempotency records every [`PURGE_INTERVAL`].
/// A failure is logged and the next round tries again.
async fn purge_expired_records(records: Arc<dyn IdempotencyStore>) {
    let mut every = tokio::time::interval(PURGE_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        match records.purge_expired().await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "expired idempotency records purged"),
            Err(error) => tracing::warn!(%error, "expired idempotency records could not be purged"),
        }
    }
}

/// Waits for SIGINT or SIGTERM, then stops the server gracefully: it takes no new connections,
/// and requests in flight finish (within the shutdown timeout).
async fn stop_gracefully_on_signal(handle: ServerHandle) {
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
    tracing::info!(
        signal = name,
        "stopping gracefully: no new connections, in-flight requests finish"
    );
    handle.stop(true).await;
}
