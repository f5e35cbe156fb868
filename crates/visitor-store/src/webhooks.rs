//! Webhooks (contract §10.2): the endpoints a team registers, and the deliveries of every change
//! to them, kept by the backend so that no change is lost and each is sent by one sender.
//!
//! A delivery is recorded with the change itself, for every enabled webhook that takes its
//! event, and holds no data of the visitor (its id, the event, when it happened): a claim reads
//! the visitor's state as it is then. A sender claims deliveries for a lease; a delivery whose
//! lease ran out (its sender died, or lost the outcome) is claimed again. Of one visitor's
//! deliveries to one webhook only the oldest can be claimed, so they are sent one after the
//! other, in order, each with a state no older than the one before. A sender ends many
//! attempts at once ([`WebhookStore::finish_deliveries`]).

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use visitor_domain::{Visitor, VisitorId};

use crate::StoreError;

/// What happened to a visitor, as a webhook's event names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WebhookEvent {
    Created,
    Updated,
    Deleted,
}

impl WebhookEvent {
    /// Every event, in the order the contract lists them.
    pub const ALL: [Self; 3] = [Self::Created, Self::Updated, Self::Deleted];

    /// The event's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "visitor.created",
            Self::Updated => "visitor.updated",
            Self::Deleted => "visitor.deleted",
        }
    }

    /// The event named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|event| event.as_str() == name)
    }
}

/// A webhook to register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWebhook {
    pub url: String,
    /// Not empty, without repeats.
    pub events: Vec<WebhookEvent>,
    pub description: Option<String>,
    /// `whsec_` and the base64 of the key.
    pub secret: String,
}

/// A registered webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: i64,
    pub url: String,
    pub events: Vec<WebhookEvent>,
    pub description: Option<String>,
    pub secret: String,
    pub created: DateTime<Utc>,
    /// False once a receiver answered `410 Gone`.
    pub enabled: bool,
}

/// A delivery claimed by a sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: i64,
    pub webhook_id: i64,
    pub url: String,
    pub secret: String,
    /// Unique per change and webhook, the same on every attempt.
    pub event_id: String,
    pub event: WebhookEvent,
    pub visitor_id: VisitorId,
    /// When the change happened.
    pub changed_at: DateTime<Utc>,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// The visitor's state when the delivery was claimed, for a creation or an update; `None`
    /// for an erasure, or when the visitor was erased since (its erasure follows).
    pub visitor: Option<Visitor>,
}

/// An attempt ended: what became of it, and what the receiver answered (`None` when it was not
/// sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub delivery: Delivery,
    pub outcome: DeliveryOutcome,
    pub result: Option<AttemptResult>,
}

/// How an attempt ended, and what becomes of its delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// Answered 2xx: done.
    Delivered,
    /// Not sent: the visitor of a create or update was erased first (its erasure follows).
    Dropped,
    /// Failed: tried again after this delay.
    Retry(Duration),
    /// Failed for the last time: given up.
    GaveUp,
    /// Answered `410 Gone`: the webhook is disabled and its pending deliveries dropped.
    Disable,
}

/// What a receiver answered to one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptResult {
    /// The receiver's HTTP status, if it answered.
    pub status: Option<u16>,
    /// A short reason when the attempt failed (timeout, connection refused, …).
    pub error: Option<String>,
}

/// One attempt, as the deliveries log shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub webhook_id: i64,
    pub event_id: String,
    pub event: WebhookEvent,
    pub visitor_id: VisitorId,
    pub attempt: u32,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub at: DateTime<Utc>,
}

/// The most attempts the log keeps per webhook.
pub const ATTEMPTS_KEPT: usize = 100;

/// Webhooks and their deliveries, kept by a backend next to the visitors, so a change and its
/// deliveries are written atomically.
#[async_trait]
pub trait WebhookStore: Send + Sync + std::fmt::Debug {
    /// Registers a webhook; it receives the changes made from now on.
    ///
    /// Errors: [`StoreError::Unavailable`]; [`StoreError::Internal`].
    async fn create_webhook(&self, new: NewWebhook) -> Result<Webhook, StoreError>;

    /// Every webhook, by id.
    ///
    /// Errors: [`StoreError::Unavailable`]; [`StoreError::Internal`].
    async fn webhooks(&self) -> Result<Vec<Webhook>, StoreError>;

    /// The webhook with this id.
    ///
    /// Errors: [`StoreError::NotFound`]; [`StoreError::Unavailable`]; [`StoreError::Internal`].
    async fn webhook(&self, id: i64) -> Result<Webhook, StoreError>;

    /// Removes the webhook, its pending deliveries and its log.
    ///
    /// Errors: [`StoreError::NotFound`]; [`StoreError::Unavailable`]; [`StoreError::Internal`].
    async fn delete_webhook(&self, id: i64) -> Result<(), StoreError>;

    /// Claims at most `limit` deliveries due now for `lease`, each the oldest pending one of its
    /// visitor and webhook, none claimed by another sender whose lease still runs, each with
    /// the visitor's state as it is now.
    ///
    /// Errors: [`StoreError::Unavailable`]; [`StoreError::Internal`].
    async fn claim_deliveries(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Delivery>, StoreError>;

    /// Ends attempts of claimed deliveries, all at once: logs each result (of those sent, in
    /// order) and applies each outcome.
    ///
    /// Errors: [`StoreError::Unavailable`]; [`StoreError::Internal`].
    async fn finish_deliveries(&self, ended: Vec<Ended>) -> Result<(), StoreError>;

    /// Ends one attempt of a claimed delivery, as [`Self::finish_deliveries`] does.
    ///
    /// Errors: [`StoreError::Unavailable`]; [`StoreError::Internal`].
    async fn finish_delivery(
        &self,
        delivery: &Delivery,
        outcome: DeliveryOutcome,
        result: Option<AttemptResult>,
    ) -> Result<(), StoreError> {
        let delivery = delivery.clone();
        self.finish_deliveries(vec![Ended {
            delivery,
            outcome,
            result,
        }])
        .await
    }

    /// The webhook's latest attempts, newest first, at most [`ATTEMPTS_KEPT`].
    ///
    /// Errors: [`StoreError::NotFound`]; [`StoreError::Unavailable`]; [`StoreError::Internal`].
    async fn attempts(&self, webhook_id: i64) -> Result<Vec<Attempt>, StoreError>;

    /// How many deliveries are pending.
    ///
    /// Errors: [`StoreError::Unavailable`]; [`StoreError::Internal`].
    async fn pending_deliveries(&self) -> Result<u64, StoreError>;
}

/// The in-memory webhooks: registered ones, pending deliveries, and the attempts log.
#[derive(Debug, Default)]
pub(crate) struct MemoryWebhooks {
    webhooks: Vec<Webhook>,
    last_id: i64,
    pending: VecDeque<Pending>,
    last_delivery: i64,
    attempts: VecDeque<Attempt>,
}

/// A pending delivery in memory.
#[derive(Debug, Clone)]
struct Pending {
    id: i64,
    webhook_id: i64,
    event: WebhookEvent,
    visitor_id: VisitorId,
    changed_at: DateTime<Utc>,
    attempts: u32,
    due: DateTime<Utc>,
    leased_until: Option<DateTime<Utc>>,
}

impl MemoryWebhooks {
    /// Records the deliveries of a change for every enabled webhook that takes its event.
    pub fn record(
        &mut self,
        visitor_id: VisitorId,
        event: WebhookEvent,
        changed_at: DateTime<Utc>,
    ) {
        for webhook in &self.webhooks {
            if webhook.enabled && webhook.events.contains(&event) {
                self.last_delivery += 1;
                self.pending.push_back(Pending {
                    id: self.last_delivery,
                    webhook_id: webhook.id,
                    event,
                    visitor_id,
                    changed_at,
                    attempts: 0,
                    due: changed_at,
                    leased_until: None,
                });
            }
        }
    }

    pub fn create(&mut self, new: NewWebhook) -> Webhook {
        self.last_id += 1;
        let webhook = Webhook {
            id: self.last_id,
            url: new.url,
            events: new.events,
            description: new.description,
            secret: new.secret,
            created: Utc::now(),
            enabled: true,
        };
        self.webhooks.push(webhook.clone());
        webhook
    }

    pub fn all(&self) -> Vec<Webhook> {
        self.webhooks.clone()
    }

    pub fn get(&self, id: i64) -> Option<Webhook> {
        self.webhooks
            .iter()
            .find(|webhook| webhook.id == id)
            .cloned()
    }

    /// Removes a webhook and what is kept for it; false when there is none.
    pub fn delete(&mut self, id: i64) -> bool {
        let before = self.webhooks.len();
        self.webhooks.retain(|webhook| webhook.id != id);
        self.pending.retain(|pending| pending.webhook_id != id);
        self.attempts.retain(|attempt| attempt.webhook_id != id);
        self.webhooks.len() < before
    }

    /// Claims as [`WebhookStore::claim_deliveries`] says, without the visitors' states (the
    /// store adds them).
    pub fn claim(&mut self, limit: usize, lease: Duration, now: DateTime<Utc>) -> Vec<Delivery> {
        let lease = chrono::TimeDelta::from_std(lease).unwrap_or(chrono::TimeDelta::MAX);
        let mut heads: HashSet<(i64, VisitorId)> = HashSet::new();
        let mut claimed = Vec::new();
        for pending in &mut self.pending {
            // Only the oldest of a visitor's deliveries to a webhook.
            if !heads.insert((pending.webhook_id, pending.visitor_id)) {
                continue;
            }
            let free = pending.leased_until.is_none_or(|until| until < now);
            if claimed.len() == limit || pending.due > now || !free {
                continue;
            }
            let Some(webhook) = self.webhooks.iter().find(|w| w.id == pending.webhook_id) else {
                continue;
            };
            pending.attempts += 1;
            pending.leased_until = Some(now + lease);
            claimed.push(Delivery {
                id: pending.id,
                webhook_id: webhook.id,
                url: webhook.url.clone(),
                secret: webhook.secret.clone(),
                event_id: event_id(pending.id),
                event: pending.event,
                visitor_id: pending.visitor_id,
                changed_at: pending.changed_at,
                attempt: pending.attempts,
                visitor: None,
            });
        }
        claimed
    }

    pub fn finish(
        &mut self,
        delivery: &Delivery,
        outcome: DeliveryOutcome,
        result: Option<AttemptResult>,
        now: DateTime<Utc>,
    ) {
        if let Some(result) = result {
            self.attempts.push_back(Attempt {
                webhook_id: delivery.webhook_id,
                event_id: delivery.event_id.clone(),
                event: delivery.event,
                visitor_id: delivery.visitor_id,
                attempt: delivery.attempt,
                status: result.status,
                error: result.error,
                at: now,
            });
            let of_webhook = self
                .attempts
                .iter()
                .filter(|attempt| attempt.webhook_id == delivery.webhook_id)
                .count();
            if of_webhook > ATTEMPTS_KEPT {
                if let Some(oldest) = self
                    .attempts
                    .iter()
                    .position(|attempt| attempt.webhook_id == delivery.webhook_id)
                {
                    self.attempts.remove(oldest);
                }
            }
        }
        match outcome {
            DeliveryOutcome::Retry(after) => {
                let after = chrono::TimeDelta::from_std(after).unwrap_or(chrono::TimeDelta::MAX);
                if let Some(pending) = self.pending.iter_mut().find(|p| p.id == delivery.id) {
                    pending.due = now + after;
                    pending.leased_until = None;
                }
            }
            DeliveryOutcome::Disable => {
                if let Some(webhook) = self
                    .webhooks
                    .iter_mut()
                    .find(|w| w.id == delivery.webhook_id)
                {
                    webhook.enabled = false;
                }
                self.pending
                    .retain(|pending| pending.webhook_id != delivery.webhook_id);
            }
            DeliveryOutcome::Delivered | DeliveryOutcome::Dropped | DeliveryOutcome::GaveUp => {
                self.pending.retain(|pending| pending.id != delivery.id);
            }
        }
    }

    /// The webhook's attempts, newest first; `None` when there is no such webhook.
    pub fn attempts(&self, webhook_id: i64) -> Option<Vec<Attempt>> {
        self.get(webhook_id)?;
        Some(
            self.attempts
                .iter()
                .rev()
                .filter(|attempt| attempt.webhook_id == webhook_id)
                .cloned()
                .collect(),
        )
    }

    pub fn pending(&self) -> u64 {
        self.pending.len() as u64
    }
}

/// The `webhook-id` of a delivery: unique per change and webhook.
pub(crate) fn event_id(delivery: i64) -> String {
    format!("msg_{delivery}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webhooks_with_one_change(at: DateTime<Utc>) -> MemoryWebhooks {
        let mut webhooks = MemoryWebhooks::default();
        webhooks.create(NewWebhook {
            url: "http://127.0.0.1:9/".into(),
            events: WebhookEvent::ALL.to_vec(),
            description: None,
            secret: "whsec_c2VjcmV0".into(),
        });
        webhooks.record(VisitorId::new(1).unwrap(), WebhookEvent::Created, at);
        webhooks
    }

    #[test]
    fn a_delivery_is_due_from_the_instant_of_its_change() {
        let at = Utc::now();
        let mut webhooks = webhooks_with_one_change(at);
        let before = at - chrono::Duration::microseconds(1);
        assert!(webhooks.claim(10, Duration::ZERO, before).is_empty());
        assert_eq!(webhooks.claim(10, Duration::ZERO, at).len(), 1);
    }

    #[test]
    fn a_lease_holds_up_to_its_last_instant() {
        let at = Utc::now();
        let mut webhooks = webhooks_with_one_change(at);
        let lease = Duration::from_secs(10);
        assert_eq!(webhooks.claim(10, lease, at).len(), 1);
        let end = at + chrono::Duration::seconds(10);
        assert!(
            webhooks.claim(10, lease, end).is_empty(),
            "leased until then"
        );
        let after = end + chrono::Duration::microseconds(1);
        assert_eq!(webhooks.claim(10, lease, after)[0].attempt, 2);
    }

    #[test]
    fn deliveries_are_numbered_upward_from_one() {
        let at = Utc::now();
        let mut webhooks = webhooks_with_one_change(at);
        webhooks.record(VisitorId::new(2).unwrap(), WebhookEvent::Created, at);
        let ids: Vec<i64> = webhooks
            .claim(10, Duration::ZERO, at)
            .iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(ids, [1, 2]);
        assert_eq!(event_id(7), "msg_7");
    }
}
