//! [`WebhookStore`] on PostgreSQL (migrations `20261210000001` and `20261212000001`):
//! deliveries are rows triggers write in the transaction of the change (those of creations and
//! updates only while a webhook is registered); senders claim them for a lease with
//! `FOR UPDATE SKIP LOCKED`, only the oldest of a visitor's deliveries to a webhook at a time,
//! each read with its visitor's state in the same statement; ends of attempts are applied a
//! batch at a time by one call (migration `20261211000001`).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::Row;
use visitor_domain::VisitorId;

use crate::postgres::{on_connection, translate, visitor_at};
use crate::webhooks::event_id;
use crate::{
    Attempt, Delivery, DeliveryOutcome, Ended, NewWebhook, PgStore, StoreError, Webhook,
    WebhookEvent, WebhookStore, ATTEMPTS_KEPT,
};

const WEBHOOK_COLUMNS: &str = "id, url, events, description, secret, created, enabled";

fn event(name: &str) -> Result<WebhookEvent, StoreError> {
    WebhookEvent::parse(name)
        .ok_or_else(|| StoreError::internal(format!("a stored webhook event {name:?}")))
}

fn visitor_id(id: i64) -> Result<VisitorId, StoreError> {
    VisitorId::new(id).map_err(|_| StoreError::internal(format!("a stored visitor id {id}")))
}

fn webhook(row: &PgRow) -> Result<Webhook, StoreError> {
    let events: Vec<String> = row.try_get_unchecked(2).map_err(translate)?;
    Ok(Webhook {
        id: row.try_get_unchecked(0).map_err(translate)?,
        url: row.try_get_unchecked(1).map_err(translate)?,
        events: events
            .iter()
            .map(|name| event(name))
            .collect::<Result<_, _>>()?,
        description: row.try_get_unchecked(3).map_err(translate)?,
        secret: row.try_get_unchecked(4).map_err(translate)?,
        created: row.try_get_unchecked(5).map_err(translate)?,
        enabled: row.try_get_unchecked(6).map_err(translate)?,
    })
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[async_trait]
impl WebhookStore for PgStore {
    async fn create_webhook(&self, new: NewWebhook) -> Result<Webhook, StoreError> {
        self.migrate().await?;
        let events: Vec<&str> = new.events.iter().map(|event| event.as_str()).collect();
        // The first webhook also switches on the triggers that write the deliveries of
        // creations and updates (migration 20261212000001).
        let sql = format!(
            "INSERT INTO webhooks (url, events, description, secret) VALUES ($1, $2, $3, $4)
             RETURNING {WEBHOOK_COLUMNS}"
        );
        let statement = sqlx::query(&sql)
            .bind(&new.url)
            .bind(&events)
            .bind(&new.description)
            .bind(&new.secret);
        let row = on_connection!(self, |connection| statement.fetch_one(connection))
            .map_err(translate)?;
        webhook(&row)
    }

    async fn webhooks(&self) -> Result<Vec<Webhook>, StoreError> {
        self.migrate().await?;
        let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks ORDER BY id");
        let statement = sqlx::query(&sql);
        let rows = on_connection!(self, |connection| statement.fetch_all(connection))
            .map_err(translate)?;
        rows.iter().map(webhook).collect()
    }

    async fn webhook(&self, id: i64) -> Result<Webhook, StoreError> {
        self.migrate().await?;
        let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1");
        let statement = sqlx::query(&sql).bind(id);
        let row = on_connection!(self, |connection| statement.fetch_optional(connection))
            .map_err(translate)?;
        webhook(&row.ok_or(StoreError::NotFound)?)
    }

    async fn delete_webhook(&self, id: i64) -> Result<(), StoreError> {
        self.migrate().await?;
        // The last one switches them off.
        let statement = sqlx::query("DELETE FROM webhooks WHERE id = $1").bind(id);
        let done =
            on_connection!(self, |connection| statement.execute(connection)).map_err(translate)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn claim_deliveries(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.migrate().await?;
        // The visitor is read for a creation or an update only (an erasure sends its id).
        let statement = sqlx::query(
            "WITH due AS (
                 SELECT d.id, d.webhook_id, d.visitor_id, d.event FROM webhook_deliveries AS d
                 WHERE d.due <= now()
                   AND (d.leased_until IS NULL OR d.leased_until < now())
                   AND NOT EXISTS (
                       SELECT 1 FROM webhook_deliveries AS e
                       WHERE e.webhook_id = d.webhook_id AND e.visitor_id = d.visitor_id
                         AND e.id < d.id)
                 ORDER BY d.due, d.id
                 LIMIT $1
                 FOR UPDATE OF d SKIP LOCKED
             )
             UPDATE webhook_deliveries AS d
             SET attempts = d.attempts + 1,
                 leased_until = now() + $2 * interval '1 millisecond'
             FROM due
             JOIN webhooks AS w ON w.id = due.webhook_id
             LEFT JOIN visitors AS v
                 ON v.id = due.visitor_id AND due.event <> 'visitor.deleted'
             WHERE d.id = due.id
             RETURNING d.id, d.webhook_id, w.url, w.secret, d.event, d.visitor_id, d.changed_at,
                       d.attempts, v.id, v.name, v.email, v.phone, v.notes, v.external_id,
                       v.banned, v.created, v.version",
        )
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(millis(lease));
        let rows = on_connection!(self, |connection| statement.fetch_all(connection))
            .map_err(translate)?;
        let claimed: Vec<Delivery> = rows
            .iter()
            .map(|row| {
                let id: i64 = row.try_get_unchecked(0).map_err(translate)?;
                let name: String = row.try_get_unchecked(4).map_err(translate)?;
                let attempt: i32 = row.try_get_unchecked(7).map_err(translate)?;
                Ok(Delivery {
                    id,
                    webhook_id: row.try_get_unchecked(1).map_err(translate)?,
                    url: row.try_get_unchecked(2).map_err(translate)?,
                    secret: row.try_get_unchecked(3).map_err(translate)?,
                    event_id: event_id(id),
                    event: event(&name)?,
                    visitor_id: visitor_id(row.try_get_unchecked(5).map_err(translate)?)?,
                    changed_at: row.try_get_unchecked(6).map_err(translate)?,
                    attempt: u32::try_from(attempt).unwrap_or(0),
                    visitor: visitor_at(row, 8)?.map(|stored| stored.visitor),
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(claimed)
    }

    async fn finish_deliveries(&self, ended: Vec<Ended>) -> Result<(), StoreError> {
        if ended.is_empty() {
            return Ok(());
        }
        self.migrate().await?;
        let count = ended.len();
        let mut deliveries = Vec::with_capacity(count);
        let mut webhooks = Vec::with_capacity(count);
        let mut outcomes = Vec::with_capacity(count);
        let mut retries = Vec::with_capacity(count);
        let mut sent = Vec::with_capacity(count);
        let mut event_ids = Vec::with_capacity(count);
        let mut events = Vec::with_capacity(count);
        let mut visitors = Vec::with_capacity(count);
        let mut attempts = Vec::with_capacity(count);
        let mut statuses = Vec::with_capacity(count);
        let mut errors = Vec::with_capacity(count);
        for Ended {
            delivery,
            outcome,
            result,
        } in ended
        {
            let (what, retry) = match outcome {
                DeliveryOutcome::Retry(after) => ("retry", millis(after)),
                DeliveryOutcome::Disable => ("disable", 0),
                DeliveryOutcome::Delivered | DeliveryOutcome::Dropped | DeliveryOutcome::GaveUp => {
                    ("done", 0)
                }
            };
            let (was_sent, status, error) = match result {
                Some(result) => (true, result.status.map(i32::from), result.error),
                None => (false, None, None),
            };
            deliveries.push(delivery.id);
            webhooks.push(delivery.webhook_id);
            outcomes.push(what);
            retries.push(retry);
            sent.push(was_sent);
            event_ids.push(delivery.event_id);
            events.push(delivery.event.as_str());
            visitors.push(delivery.visitor_id.get());
            attempts.push(i32::try_from(delivery.attempt).unwrap_or(i32::MAX));
            statuses.push(status);
            errors.push(error);
        }
        let statement = sqlx::query(
            "SELECT finish_webhook_deliveries($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(deliveries)
        .bind(webhooks)
        .bind(outcomes)
        .bind(retries)
        .bind(sent)
        .bind(event_ids)
        .bind(events)
        .bind(visitors)
        .bind(attempts)
        .bind(statuses)
        .bind(errors);
        on_connection!(self, |connection| statement.execute(connection)).map_err(translate)?;
        Ok(())
    }

    async fn attempts(&self, webhook_id: i64) -> Result<Vec<Attempt>, StoreError> {
        self.migrate().await?;
        let statement = sqlx::query(
            "SELECT a.event_id, a.event, a.visitor_id, a.attempt, a.status, a.error, a.at
             FROM webhooks AS w
             LEFT JOIN LATERAL (
                 SELECT * FROM webhook_attempts WHERE webhook_id = w.id
                 ORDER BY id DESC LIMIT $2) AS a ON true
             WHERE w.id = $1
             ORDER BY a.id DESC",
        )
        .bind(webhook_id)
        .bind(ATTEMPTS_KEPT as i64);
        let rows = on_connection!(self, |connection| statement.fetch_all(connection))
            .map_err(translate)?;
        if rows.is_empty() {
            return Err(StoreError::NotFound);
        }
        let mut attempts = Vec::with_capacity(rows.len());
        for row in &rows {
            let Some(event_id) = row
                .try_get_unchecked::<Option<String>, _>(0)
                .map_err(translate)?
            else {
                continue;
            };
            let name: String = row.try_get_unchecked(1).map_err(translate)?;
            let attempt: i32 = row.try_get_unchecked(3).map_err(translate)?;
            let status: Option<i32> = row.try_get_unchecked(4).map_err(translate)?;
            let at: DateTime<Utc> = row.try_get_unchecked(6).map_err(translate)?;
            attempts.push(Attempt {
                webhook_id,
                event_id,
                event: event(&name)?,
                visitor_id: visitor_id(row.try_get_unchecked(2).map_err(translate)?)?,
                attempt: u32::try_from(attempt).unwrap_or(0),
                status: status.and_then(|status| u16::try_from(status).ok()),
                error: row.try_get_unchecked(5).map_err(translate)?,
                at,
            });
        }
        Ok(attempts)
    }

    async fn pending_deliveries(&self) -> Result<u64, StoreError> {
        self.migrate().await?;
        let statement = sqlx::query("SELECT count(*) FROM webhook_deliveries");
        let count: i64 = on_connection!(self, |connection| statement.fetch_one(connection))
            .map_err(translate)?
            .try_get_unchecked(0)
            .map_err(translate)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}
