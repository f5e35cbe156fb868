//! Background work, one task per concern, owned by the running application: started by the app
//! builder, stopped when the server has stopped. Never a detached task.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use visitor_store::TokenStore;

use crate::access::tokens::{TokenRegistry, TokenSpec};
use crate::context::AppContext;

/// How often expired idempotency records are purged, and rate-limit state with nothing left to
/// count is forgotten.
pub(crate) const PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// How often the tokens of the token store are read again: a new or revoked token takes effect
/// within this time plus one query (the contract allows 5 seconds).
pub(crate) const TOKEN_REFRESH_INTERVAL: Duration = Duration::from_secs(2);

/// The application's background tasks.
#[derive(Debug, Default)]
pub(crate) struct Background {
    tasks: JoinSet<()>,
}

impl Background {
    /// Runs `task` until [`Background::stop`].
    pub(crate) fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// Stops every task and waits until each has ended.
    pub(crate) async fn stop(mut self) {
        self.tasks.shutdown().await;
    }
}

/// Housekeeping every [`PURGE_INTERVAL`]: removes expired idempotency records and the change
/// log's erasures older than the retention, and forgets rate-limit state with nothing left to
/// count. A failure is logged and the next round tries again.
pub(crate) async fn maintain(context: Arc<AppContext>) {
    let mut every = tokio::time::interval(PURGE_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        context.limits.forget_settled();
        match context.store.purge_expired().await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "expired idempotency records purged"),
            Err(error) => tracing::warn!(%error, "expired idempotency records could not be purged"),
        }
        let before = chrono::Utc::now()
            - chrono::TimeDelta::from_std(context.change_retention)
                .unwrap_or(chrono::TimeDelta::MAX);
        match context.store.purge_erasures(before).await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "erasures past the change retention purged"),
            Err(error) => {
                tracing::warn!(%error, "erasures past the change retention could not be purged")
            }
        }
    }
}

/// Reads the token store's active tokens every [`TOKEN_REFRESH_INTERVAL`] (the first time at
/// once) into the registry. While the store cannot be read, the last tokens read stay in force.
pub(crate) async fn refresh_tokens(registry: TokenRegistry, source: Arc<dyn TokenStore>) {
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
