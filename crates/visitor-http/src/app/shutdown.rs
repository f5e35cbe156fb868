//! The graceful stop (§6, §8.6): on SIGINT or SIGTERM `/readyz` answers 503 at once, requests are
//! still served for the drain period (their answers ask the client to close the connection),
//! then the listener closes and in-flight requests finish.

use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::web::Data;

use crate::context::AppContext;

/// Stops a server the graceful way. Clones stop the same server.
#[derive(Clone)]
pub struct Shutdown {
    handle: ServerHandle,
    context: Data<AppContext>,
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
    pub(crate) fn new(handle: ServerHandle, context: Data<AppContext>, drain: Duration) -> Self {
        Self {
            handle,
            context,
            drain,
        }
    }

    /// Drains, then stops; returns when the server has stopped.
    pub async fn drain_and_stop(&self) {
        self.begin_drain();
        tokio::time::sleep(self.drain).await;
        self.stop().await;
    }

    /// Starts the drain: `/readyz` answers 503 from now on, and answers close their connections.
    pub fn begin_drain(&self) {
        self.context.readiness.begin_drain();
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

/// Waits for SIGINT or SIGTERM, then drains and stops the server gracefully: it takes no new
/// connections, and requests in flight finish (within the shutdown timeout). A second signal
/// during the drain cuts it short.
pub(crate) async fn stop_gracefully_on_signal(shutdown: Shutdown) {
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
