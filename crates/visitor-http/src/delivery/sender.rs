//! The sender: claims due deliveries from the store (each for a lease longer than an attempt
//! can take, each with its visitor's state), sends each as its own task, at most
//! [`CONCURRENCY`] at once, and tells the store how they ended, a batch at a time. The store
//! hands out only the oldest of a visitor's deliveries to a webhook, so a receiver gets them one
//! after the other, in order; a sender that dies loses nothing (the lease runs out and a sender
//! claims the delivery again).
//!
//! The sender uses at most two of the store's connections at once: one to claim, one to record
//! ends, so deliveries never take the connections requests need.

use std::sync::Arc;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use serde_json::json;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use visitor_store::{AttemptResult, Delivery, DeliveryOutcome, Ended, SharedStorage, WebhookEvent};

use crate::delivery::signature::sign;
use crate::observability::metrics::{AttemptOutcome, WebhookMetrics};

/// Deliveries being sent at once, per instance (counted until their ends are recorded).
pub const CONCURRENCY: usize = 256;

/// How long the sender waits when nothing is due.
const IDLE: Duration = Duration::from_millis(50);

/// How long the sender waits after the store failed.
const STORE_RETRY: Duration = Duration::from_secs(1);

/// What a lease adds to the attempt's timeout: the time to read the visitor and to record the
/// outcome.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// How often the pending deliveries are counted for `/metrics`.
const COUNT_EVERY: Duration = Duration::from_secs(1);

/// How deliveries are sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliverySettings {
    /// How long a receiver has to answer (`--webhook-timeout`).
    pub timeout: Duration,
    /// The delays before each retry (`--webhook-retry-schedule`); after the last, it gives up.
    pub retry_schedule: Vec<Duration>,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            retry_schedule: [5, 300, 1800, 7200, 18000, 36000, 36000]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
        }
    }
}

/// Parses `--webhook-retry-schedule`: comma-separated seconds, possibly none.
pub fn parse_schedule(text: &str) -> Result<Vec<Duration>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            part.parse::<u64>()
                .map(Duration::from_secs)
                .map_err(|_| format!("{part:?} is not a whole number of seconds"))
        })
        .collect()
}

/// What becomes of a delivery after a failed attempt number `attempt`.
fn after_failure(schedule: &[Duration], attempt: u32) -> DeliveryOutcome {
    match schedule.get((attempt as usize).saturating_sub(1)) {
        Some(delay) => DeliveryOutcome::Retry(*delay),
        None => DeliveryOutcome::GaveUp,
    }
}

/// What the sender needs for each delivery.
#[derive(Debug)]
struct Sender {
    client: reqwest::Client,
    settings: DeliverySettings,
    metrics: WebhookMetrics,
}

/// An attempt's end, and the slot it holds until the end is recorded.
type Finished = (Ended, OwnedSemaphorePermit);

/// Sends deliveries until the task is stopped (with the application's other background work);
/// the attempts in flight then stop too, and their leases run out.
pub(crate) async fn deliver(
    store: SharedStorage,
    settings: DeliverySettings,
    metrics: WebhookMetrics,
) {
    let client = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(settings.timeout)
        .no_proxy()
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "no HTTP client for webhook deliveries: none will be sent");
            return;
        }
    };
    let sender = Arc::new(Sender {
        client,
        settings,
        metrics,
    });
    let (ends, ended) = mpsc::unbounded_channel();
    tokio::join!(send(&store, sender, ends), record(&store, ended));
}

/// Claims what is due as slots free up, and sends each delivery as its own task.
async fn send(store: &SharedStorage, sender: Arc<Sender>, ends: UnboundedSender<Finished>) {
    let lease = sender.settings.timeout + LEASE_MARGIN;
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let mut sending = JoinSet::new();
    let mut failing = false;
    let mut counted = tokio::time::Instant::now() - COUNT_EVERY;
    loop {
        while sending.try_join_next().is_some() {}
        if counted.elapsed() >= COUNT_EVERY {
            if let Ok(pending) = store.pending_deliveries().await {
                sender.metrics.set_pending(pending);
            }
            counted = tokio::time::Instant::now();
        }
        // Wait for a free slot, then claim as many as are free.
        let Ok(first) = permits.clone().acquire_owned().await else {
            return;
        };
        let free = permits.available_permits() + 1;
        let claimed = match store.claim_deliveries(free, lease).await {
            Ok(claimed) => {
                if failing {
                    tracing::info!("webhook deliveries can be claimed again");
                    failing = false;
                }
                claimed
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(%error, "webhook deliveries cannot be claimed; trying again");
                    failing = true;
                }
                drop(first);
                tokio::time::sleep(STORE_RETRY).await;
                continue;
            }
        };
        if claimed.is_empty() {
            drop(first);
            tokio::time::sleep(IDLE).await;
            continue;
        }
        let mut first = Some(first);
        for delivery in claimed {
            let permit = match first.take() {
                Some(permit) => permit,
                None => match permits.clone().acquire_owned().await {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
            };
            let sender = Arc::clone(&sender);
            let ends = ends.clone();
            sending.spawn(async move {
                let ended = sender.attempt(delivery).await;
                // Closed only when the sender stops: the lease runs out.
                let _ = ends.send((ended, permit));
            });
        }
    }
}

/// Records the ends of attempts, all that are waiting in one call, and then frees their slots.
async fn record(store: &SharedStorage, mut ended: UnboundedReceiver<Finished>) {
    let mut batch = Vec::with_capacity(CONCURRENCY);
    while ended.recv_many(&mut batch, CONCURRENCY).await > 0 {
        let (ends, slots): (Vec<Ended>, Vec<OwnedSemaphorePermit>) = batch.drain(..).unzip();
        let count = ends.len();
        if let Err(error) = store.finish_deliveries(ends).await {
            // Their leases run out and they are claimed again: at least once.
            tracing::warn!(error = ?error, count, "the ends of webhook deliveries cannot be recorded");
        }
        drop(slots);
    }
}

impl Sender {
    /// One attempt of one delivery, and how it ended.
    async fn attempt(&self, delivery: Delivery) -> Ended {
        let data = match (delivery.event, &delivery.visitor) {
            (WebhookEvent::Deleted, _) => json!({"id": delivery.visitor_id.get()}),
            (WebhookEvent::Created | WebhookEvent::Updated, Some(visitor)) => json!(visitor),
            // Erased before it could be sent: its erasure follows.
            (WebhookEvent::Created | WebhookEvent::Updated, None) => {
                return ended(delivery, DeliveryOutcome::Dropped, None);
            }
        };
        let body = json!({
            "type": delivery.event.as_str(),
            "timestamp": delivery.changed_at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            "data": data,
        })
        .to_string();
        let timestamp = Utc::now().timestamp();
        let Some(signature) = sign(
            &delivery.secret,
            &delivery.event_id,
            timestamp,
            body.as_bytes(),
        ) else {
            tracing::error!(
                webhook = delivery.webhook_id,
                "a webhook's secret cannot sign"
            );
            return ended(delivery, DeliveryOutcome::GaveUp, None);
        };
        let answer = self
            .client
            .post(&delivery.url)
            .header("content-type", "application/json")
            .header("webhook-id", &delivery.event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        let (result, outcome) = match answer {
            Ok(response) => {
                let status = response.status().as_u16();
                let result = AttemptResult {
                    status: Some(status),
                    error: None,
                };
                let outcome = match status {
                    200..=299 => DeliveryOutcome::Delivered,
                    410 => DeliveryOutcome::Disable,
                    _ => after_failure(&self.settings.retry_schedule, delivery.attempt),
                };
                (result, outcome)
            }
            Err(error) => {
                let reason = if error.is_timeout() {
                    "timeout".to_owned()
                } else if error.is_connect() {
                    "connection refused".to_owned()
                } else {
                    format!("request failed: {error}")
                };
                let result = AttemptResult {
                    status: None,
                    error: Some(reason),
                };
                (
                    result,
                    after_failure(&self.settings.retry_schedule, delivery.attempt),
                )
            }
        };
        self.metrics.attempted(match outcome {
            DeliveryOutcome::Delivered => AttemptOutcome::Success,
            DeliveryOutcome::GaveUp => AttemptOutcome::GaveUp,
            _ => AttemptOutcome::Failure,
        });
        match &outcome {
            DeliveryOutcome::Disable => {
                tracing::warn!(webhook = delivery.webhook_id, url = %delivery.url, "a webhook answered 410 Gone: it is disabled")
            }
            DeliveryOutcome::GaveUp => {
                tracing::warn!(webhook = delivery.webhook_id, delivery = %delivery.event_id, "a webhook delivery was given up after its last retry")
            }
            _ => {}
        }
        ended(delivery, outcome, Some(result))
    }
}

fn ended(delivery: Delivery, outcome: DeliveryOutcome, result: Option<AttemptResult>) -> Ended {
    Ended {
        delivery,
        outcome,
        result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_comma_separated_seconds() {
        let schedule = parse_schedule("5, 300,1800").unwrap();
        assert_eq!(schedule, [5, 300, 1800].map(Duration::from_secs));
        assert!(parse_schedule("").unwrap().is_empty());
        assert!(parse_schedule("5,soon").is_err());
        assert_eq!(
            DeliverySettings::default().retry_schedule,
            parse_schedule("5,300,1800,7200,18000,36000,36000").unwrap()
        );
    }

    #[test]
    fn a_failure_is_retried_after_each_delay_then_given_up() {
        let schedule = parse_schedule("5,300").unwrap();
        assert_eq!(
            after_failure(&schedule, 1),
            DeliveryOutcome::Retry(Duration::from_secs(5))
        );
        assert_eq!(
            after_failure(&schedule, 2),
            DeliveryOutcome::Retry(Duration::from_secs(300))
        );
        assert_eq!(after_failure(&schedule, 3), DeliveryOutcome::GaveUp);
        assert_eq!(after_failure(&[], 1), DeliveryOutcome::GaveUp);
    }
}
