//! The application context: everything a request may need, built once by the app builder and
//! handed to the middleware and the resources as one typed value (`Data<AppContext>`), so that no
//! layer looks anything up by type or falls back when it is missing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use visitor_store::{IdempotencyPolicy, SharedStorage};

use crate::access::limits::Limits;
use crate::access::tokens::TokenRegistry;
use crate::delivery::sender::DeliverySettings;
use crate::http::forwarded::Origin;
use crate::observability::metrics::{Metrics, WebhookMetrics};

/// What the application serves from.
#[derive(Debug)]
pub(crate) struct AppContext {
    /// Visitors, the records of idempotent creates, and the backend's operations.
    pub(crate) store: SharedStorage,
    /// How long the answers of idempotent creates are kept.
    pub(crate) idempotency: IdempotencyPolicy,
    /// How long erasures stay in the change feed (§10.1).
    pub(crate) change_retention: Duration,
    /// How webhook deliveries are sent (§10.2).
    pub(crate) deliveries: DeliverySettings,
    /// The deliveries' metrics, kept whether or not `/metrics` is served.
    pub(crate) webhook_metrics: WebhookMetrics,
    /// The tokens accepted.
    pub(crate) tokens: TokenRegistry,
    /// The rate limits (§8.5).
    pub(crate) limits: Limits,
    /// The metrics, when recorded (`--metrics-bind off` records none).
    pub(crate) metrics: Option<Metrics>,
    /// Whether the instance takes new work.
    pub(crate) readiness: Readiness,
    /// Who the client is behind the trusted proxies, and the base of the URLs the service
    /// writes (§11).
    pub(crate) origin: Origin,
}

/// Whether the instance takes new work: false from the start of a drain (`/readyz` says 503).
#[derive(Debug, Default)]
pub(crate) struct Readiness {
    draining: AtomicBool,
}

impl Readiness {
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub(crate) fn begin_drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }
}
