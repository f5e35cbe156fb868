//! The webhooks resource (contract §10.2): register, list, show, show the secret, delete, and
//! the deliveries log. The deliveries themselves are sent by `crate::delivery`.

use actix_web::http::header;
use actix_web::web::{Data, Path};
use actix_web::HttpResponse;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use visitor_domain::{ErrorCode, FieldError, ValidationErrors};
use visitor_store::{Attempt, NewWebhook, StoreError, Webhook, WebhookEvent};

use crate::context::AppContext;
use crate::delivery::signature::new_secret;
use crate::http::error::ApiError;
use crate::http::extract::JsonObject;

/// Where webhooks live (current prefix only).
pub(crate) const WEBHOOKS_PATH: &str = "/api/v2/chat/webhooks";

/// The longest description.
const DESCRIPTION_MAX: usize = 255;
/// The longest URL.
const URL_MAX: usize = 2048;

/// A registration, checked: every offending key is named.
fn registration(
    body: &Map<String, Value>,
) -> Result<(String, Vec<WebhookEvent>, Option<String>), ValidationErrors> {
    let mut errors = ValidationErrors::new();
    let mut problem =
        |key: &str, code: ErrorCode, text: String| errors.add(key, FieldError::new(code, text));
    for key in body
        .keys()
        .filter(|key| !["url", "events", "description"].contains(&key.as_str()))
    {
        problem(
            key,
            ErrorCode::UnknownField,
            format!("{key} is not a key of a webhook; they are url, events, description"),
        );
    }
    let url = match body.get("url") {
        None | Some(Value::Null) => {
            problem(
                "url",
                ErrorCode::Required,
                "url is required: where the deliveries are sent".into(),
            );
            None
        }
        Some(Value::String(url)) if url.chars().count() > URL_MAX => {
            problem(
                "url",
                ErrorCode::TooLong,
                format!("url is longer than {URL_MAX} characters"),
            );
            None
        }
        Some(Value::String(url)) => match reqwest::Url::parse(url) {
            Ok(parsed)
                if ["http", "https"].contains(&parsed.scheme()) && parsed.host().is_some() =>
            {
                Some(url.clone())
            }
            _ => {
                problem(
                    "url",
                    ErrorCode::InvalidFormat,
                    "url must be an absolute http or https URL".into(),
                );
                None
            }
        },
        Some(_) => {
            problem("url", ErrorCode::InvalidType, "url must be a string".into());
            None
        }
    };
    let events = match body.get("events") {
        None => WebhookEvent::ALL.to_vec(),
        Some(Value::Array(names)) if names.is_empty() => {
            problem(
                "events",
                ErrorCode::Blank,
                "events must name at least one event".into(),
            );
            vec![]
        }
        Some(Value::Array(names)) => {
            let mut events = Vec::new();
            for name in names {
                // An event named twice is taken once.
                match name.as_str().and_then(WebhookEvent::parse) {
                    Some(event) if !events.contains(&event) => events.push(event),
                    Some(_) => {}
                    None => problem("events", ErrorCode::InvalidFormat, format!("{name} is not an event; they are visitor.created, visitor.updated, visitor.deleted")),
                }
            }
            events
        }
        Some(_) => {
            problem(
                "events",
                ErrorCode::InvalidType,
                "events must be an array of event names".into(),
            );
            vec![]
        }
    };
    let description = match body.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) if text.chars().count() > DESCRIPTION_MAX => {
            problem(
                "description",
                ErrorCode::TooLong,
                format!("description is longer than {DESCRIPTION_MAX} characters"),
            );
            None
        }
        Some(Value::String(text)) => Some(text.clone()),
        Some(_) => {
            problem(
                "description",
                ErrorCode::InvalidType,
                "description must be a string".into(),
            );
            None
        }
    };
    match url {
        Some(url) if errors.is_empty() => Ok((url, events, description)),
        _ => Err(errors),
    }
}

fn written(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// A webhook as the API shows it: without its secret unless asked.
#[derive(Debug, Serialize)]
struct WebhookBody<'a> {
    id: i64,
    url: &'a str,
    events: Vec<&'static str>,
    description: Option<&'a str>,
    created: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<&'a str>,
}

impl<'a> WebhookBody<'a> {
    fn of(webhook: &'a Webhook, with_secret: bool) -> Self {
        Self {
            id: webhook.id,
            url: &webhook.url,
            events: webhook.events.iter().map(|event| event.as_str()).collect(),
            description: webhook.description.as_deref(),
            created: written(webhook.created),
            secret: with_secret.then_some(webhook.secret.as_str()),
        }
    }
}

/// One attempt of the deliveries log.
#[derive(Debug, Serialize)]
struct AttemptBody<'a> {
    webhook_id: i64,
    event_id: &'a str,
    #[serde(rename = "type")]
    event: &'static str,
    visitor_id: i64,
    attempt: u32,
    status: Option<u16>,
    error: Option<&'a str>,
    at: String,
}

impl<'a> AttemptBody<'a> {
    fn of(attempt: &'a Attempt) -> Self {
        Self {
            webhook_id: attempt.webhook_id,
            event_id: &attempt.event_id,
            event: attempt.event.as_str(),
            visitor_id: attempt.visitor_id.get(),
            attempt: attempt.attempt,
            status: attempt.status,
            error: attempt.error.as_deref(),
            at: written(attempt.at),
        }
    }
}

/// The webhook id of a path: a positive whole number, or no such webhook.
fn webhook_id(path: &str) -> Result<i64, ApiError> {
    path.parse::<i64>()
        .ok()
        .filter(|id| *id > 0 && path.bytes().all(|b| b.is_ascii_digit()))
        .ok_or(ApiError::WebhookNotFound)
}

/// The webhook of a path, or 404.
async fn stored(context: &AppContext, path: &str) -> Result<Webhook, ApiError> {
    context
        .store
        .webhook(webhook_id(path)?)
        .await
        .map_err(not_found)
}

fn not_found(error: StoreError) -> ApiError {
    match error {
        StoreError::NotFound => ApiError::WebhookNotFound,
        other => other.into(),
    }
}

/// Create Webhook.
#[utoipa::path(
    post,
    path = "/api/v2/chat/webhooks",
    tag = "Webhooks",
    operation_id = "createWebhook",
    summary = "Create Webhook",
    description = "Registers an endpoint that receives every change of a visitor from now on, as [Standard Webhooks](https://www.standardwebhooks.com/) deliveries: `POST url` with `{\"type\", \"timestamp\", \"data\"}` (`data` the visitor when sent, `{\"id\"}` for `visitor.deleted`) and the headers `webhook-id`, `webhook-timestamp` and `webhook-signature` (signed with the `secret` answered here, which `GET …/{id}/secret` shows again). A 2xx answer within the timeout ends a delivery; anything else is retried on the retry schedule, then given up; `410` disables the webhook. A visitor's deliveries to one webhook come one after the other, in order.",
    request_body(
        content = crate::api::schemas::WebhookCreate,
        content_type = "application/json",
        example = json!({"url": "https://example.com/hooks/visitors", "events": ["visitor.created", "visitor.updated", "visitor.deleted"], "description": "CRM sync"}),
    ),
    responses(
        (status = 201, description = "Created: the webhook, with its secret", body = crate::api::schemas::WebhookWithSecret,
            headers(("Location" = String, description = "The path of the new webhook: /api/v2/chat/webhooks/{id}"))),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn create_webhook(
    context: Data<AppContext>,
    body: JsonObject,
) -> Result<HttpResponse, ApiError> {
    let (url, events, description) = registration(&body.0).map_err(ApiError::RecordInvalid)?;
    let secret =
        new_secret().map_err(|error| ApiError::internal(format!("no random secret: {error}")))?;
    let webhook = context
        .store
        .create_webhook(NewWebhook {
            url,
            events,
            description,
            secret,
        })
        .await?;
    let location = context
        .origin
        .location(&format!("{WEBHOOKS_PATH}/{}", webhook.id));
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, location))
        .json(WebhookBody::of(&webhook, true)))
}

/// List Webhooks.
#[utoipa::path(
    get,
    path = "/api/v2/chat/webhooks",
    tag = "Webhooks",
    operation_id = "listWebhooks",
    summary = "List Webhooks",
    description = "Every registered webhook, by id, without secrets.",
    responses((status = 200, description = "OK: the webhooks", body = crate::api::schemas::WebhookList)),
    security(("bearer" = [])),
)]
pub(crate) async fn list_webhooks(context: Data<AppContext>) -> Result<HttpResponse, ApiError> {
    let webhooks = context.store.webhooks().await?;
    let bodies: Vec<WebhookBody> = webhooks.iter().map(|w| WebhookBody::of(w, false)).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "webhooks": bodies })))
}

/// Show Webhook.
#[utoipa::path(
    get,
    path = "/api/v2/chat/webhooks/{webhook_id}",
    tag = "Webhooks",
    operation_id = "showWebhook",
    summary = "Show Webhook",
    description = "One webhook, without its secret.",
    params(("webhook_id" = i64, Path, description = "The ID of the webhook", minimum = 1)),
    responses((status = 200, description = "OK: the webhook", body = crate::api::schemas::Webhook)),
    security(("bearer" = [])),
)]
pub(crate) async fn show_webhook(
    context: Data<AppContext>,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let webhook = stored(&context, &path).await?;
    Ok(HttpResponse::Ok().json(WebhookBody::of(&webhook, false)))
}

/// Show Webhook Secret.
#[utoipa::path(
    get,
    path = "/api/v2/chat/webhooks/{webhook_id}/secret",
    tag = "Webhooks",
    operation_id = "showWebhookSecret",
    summary = "Show Webhook Secret",
    description = "The secret a webhook's deliveries are signed with: `whsec_` and the base64 of the key.",
    params(("webhook_id" = i64, Path, description = "The ID of the webhook", minimum = 1)),
    responses((status = 200, description = "OK: the secret", body = crate::api::schemas::WebhookSecret)),
    security(("bearer" = [])),
)]
pub(crate) async fn show_webhook_secret(
    context: Data<AppContext>,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let webhook = stored(&context, &path).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "secret": webhook.secret })))
}

/// Delete Webhook.
#[utoipa::path(
    delete,
    path = "/api/v2/chat/webhooks/{webhook_id}",
    tag = "Webhooks",
    operation_id = "deleteWebhook",
    summary = "Delete Webhook",
    description = "Removes a webhook; its pending deliveries are dropped.",
    params(("webhook_id" = i64, Path, description = "The ID of the webhook", minimum = 1)),
    responses((status = 204, description = "No Content: removed")),
    security(("bearer" = [])),
)]
pub(crate) async fn delete_webhook(
    context: Data<AppContext>,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    context
        .store
        .delete_webhook(webhook_id(&path)?)
        .await
        .map_err(not_found)?;
    Ok(HttpResponse::NoContent().finish())
}

/// List Webhook Deliveries.
#[utoipa::path(
    get,
    path = "/api/v2/chat/webhooks/{webhook_id}/deliveries",
    tag = "Webhooks",
    operation_id = "listWebhookDeliveries",
    summary = "List Webhook Deliveries",
    description = "The webhook's latest delivery attempts, newest first (at most 100): the receiver's HTTP status, or `null` with a short `error` (timeout, connection refused, …).",
    params(("webhook_id" = i64, Path, description = "The ID of the webhook", minimum = 1)),
    responses((status = 200, description = "OK: the attempts", body = crate::api::schemas::WebhookDeliveries)),
    security(("bearer" = [])),
)]
pub(crate) async fn list_webhook_deliveries(
    context: Data<AppContext>,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let attempts = context
        .store
        .attempts(webhook_id(&path)?)
        .await
        .map_err(not_found)?;
    let bodies: Vec<AttemptBody> = attempts.iter().map(AttemptBody::of).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "deliveries": bodies })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keys(body: Value) -> Vec<String> {
        match registration(body.as_object().unwrap()) {
            Err(errors) => errors.keys().map(str::to_owned).collect(),
            Ok(ok) => panic!("accepted {ok:?}"),
        }
    }

    #[test]
    fn a_registration_takes_a_url_events_and_a_description() {
        let (url, events, description) =
            registration(json!({"url": "https://example.com/h"}).as_object().unwrap()).unwrap();
        assert_eq!(
            (url.as_str(), events, description),
            ("https://example.com/h", WebhookEvent::ALL.to_vec(), None)
        );
        let body = json!({"url": "http://127.0.0.1:9/x", "events": ["visitor.deleted"], "description": "d"});
        let (_, events, description) = registration(body.as_object().unwrap()).unwrap();
        assert_eq!(
            (events, description.as_deref()),
            (vec![WebhookEvent::Deleted], Some("d"))
        );
        let twice = json!({"url": "http://a.io", "events": ["visitor.updated", "visitor.created", "visitor.updated"]});
        let (_, events, _) = registration(twice.as_object().unwrap()).unwrap();
        assert_eq!(events, [WebhookEvent::Updated, WebhookEvent::Created]);
    }

    #[test]
    fn every_bad_key_is_named() {
        assert_eq!(keys(json!({})), ["url"]);
        assert_eq!(keys(json!({"url": "ftp://example.com"})), ["url"]);
        assert_eq!(keys(json!({"url": "/relative"})), ["url"]);
        assert_eq!(keys(json!({"url": 5})), ["url"]);
        assert_eq!(
            keys(json!({"url": "http://a.io", "events": []})),
            ["events"]
        );
        assert_eq!(
            keys(json!({"url": "http://a.io", "events": ["visitor.seen"]})),
            ["events"]
        );
        assert_eq!(
            keys(json!({"url": "http://a.io", "events": "visitor.created"})),
            ["events"]
        );
        assert_eq!(
            keys(json!({"url": "http://a.io", "description": "x".repeat(256)})),
            ["description"]
        );
        assert_eq!(
            keys(json!({"url": "http://a.io", "secret": "mine"})),
            ["secret"]
        );
    }

    #[test]
    fn a_path_id_is_a_positive_whole_number() {
        assert_eq!(webhook_id("12").ok(), Some(12));
        for bad in ["0", "-1", "+1", "x", "1.0", ""] {
            assert!(
                matches!(webhook_id(bad), Err(ApiError::WebhookNotFound)),
                "{bad}"
            );
        }
    }
}
