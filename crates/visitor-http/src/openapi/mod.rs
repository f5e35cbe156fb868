//! The OpenAPI document, generated from the handlers' annotations and the resources' schemas,
//! then completed (see `completion`): the bearer scheme, every error response each operation
//! can give (from [`ApiError`]'s one table), the links, and the legacy paths marked deprecated.
//! Served at `/api-docs/openapi.json` and committed as `openapi.yaml`.

mod completion;

use completion::Completion;

use serde_json::Value;
use utoipa::OpenApi;

use crate::api::schemas;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Visitors API",
        description = INTRODUCTION,
        version = "2.0.0",
    ),
    paths(
        crate::api::visitors::create_visitor,
        crate::api::list::list_visitors,
        crate::api::visitors::show_visitor,
        crate::api::visitors::update_visitor,
        crate::api::visitors::delete_visitor,
        crate::api::visitors::create_or_update_visitor,
        crate::api::import::import_visitors,
        crate::api::changes::list_visitor_changes,
        crate::api::webhooks::create_webhook,
        crate::api::webhooks::list_webhooks,
        crate::api::webhooks::show_webhook,
        crate::api::webhooks::show_webhook_secret,
        crate::api::webhooks::delete_webhook,
        crate::api::webhooks::list_webhook_deliveries,
    ),
    components(schemas(
        schemas::Visitor,
        schemas::VisitorList,
        schemas::ListMeta,
        schemas::ListLinks,
        schemas::VisitorCreate,
        schemas::VisitorUpdate,
        schemas::VisitorCreateOrUpdate,
        schemas::ImportResultLine,
        schemas::ImportSummary,
        schemas::ImportCounts,
        schemas::VisitorChanges,
        schemas::VisitorChange,
        schemas::WebhookCreate,
        schemas::WebhookEventName,
        schemas::Webhook,
        schemas::WebhookWithSecret,
        schemas::WebhookList,
        schemas::WebhookSecret,
        schemas::WebhookDeliveries,
        schemas::WebhookDelivery,
        schemas::Error,
        schemas::FieldProblem
    )),
    tags(
        (name = "Visitors", description = "You can use the API to get or set Visitor information."),
        (name = "Webhooks", description = "Endpoints that receive every change of a visitor, signed as Standard Webhooks."),
    ),
    modifiers(&Completion),
)]
struct ApiDoc;

/// The document served at `/api-docs/openapi.json` and committed as `openapi.yaml`.
pub fn document() -> Result<Value, serde_json::Error> {
    let mut value = serde_json::to_value(ApiDoc::openapi())?;
    camel_case_link_keys(&mut value);
    Ok(value)
}

/// utoipa 5 writes a Link's fields in snake case (`operation_id`); OpenAPI spells them in camel
/// case (`operationId`). Renames them inside every response's `links`.
fn camel_case_link_keys(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Object(links)) = map.get_mut("links") {
                for link in links.values_mut() {
                    if let Value::Object(link) = link {
                        for (snake, camel) in [
                            ("operation_id", "operationId"),
                            ("operation_ref", "operationRef"),
                            ("request_body", "requestBody"),
                        ] {
                            if let Some(field) = link.shift_remove(snake) {
                                link.insert(camel.to_owned(), field);
                            }
                        }
                    }
                }
            }
            map.values_mut().for_each(camel_case_link_keys);
        }
        Value::Array(items) => items.iter_mut().for_each(camel_case_link_keys),
        _ => {}
    }
}

/// The document as YAML, as committed in `openapi.yaml`.
pub fn document_yaml() -> Result<String, serde_json::Error> {
    let value = document()?;
    let mut out = String::new();
    write_yaml(&value, 0, &mut out);
    Ok(out)
}

/// Writes a JSON value as block YAML. Every string is double-quoted (JSON escapes are valid YAML),
/// so no reader can take `2014-09-01T10:29:59Z` for a timestamp or `'201'` for a number.
fn write_yaml(value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, item) in map {
                out.push_str(&pad);
                out.push_str(&yaml_key(key));
                out.push(':');
                write_yaml_child(item, indent, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                out.push_str(&pad);
                out.push('-');
                write_yaml_child(item, indent, out);
            }
        }
        scalar => {
            out.push_str(&pad);
            out.push_str(&yaml_scalar(scalar));
            out.push('\n');
        }
    }
}

fn write_yaml_child(value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            write_yaml(value, indent + 2, out);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            write_yaml(value, indent + 2, out);
        }
        scalar => {
            out.push(' ');
            out.push_str(&yaml_scalar(scalar));
            out.push('\n');
        }
    }
}

fn yaml_scalar(value: &Value) -> String {
    match value {
        Value::Object(_) => "{}".to_owned(),
        Value::Array(_) => "[]".to_owned(),
        other => other.to_string(),
    }
}

fn yaml_key(key: &str) -> String {
    let plain = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '$' || c == '_')
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "$_-".contains(c));
    if plain {
        key.to_owned()
    } else {
        Value::from(key).to_string()
    }
}

/// The introduction of the document: what it is, and the request headers whose valid values
/// depend on stored state.
pub const INTRODUCTION: &str = "A self-hosted implementation of the Zendesk Chat Visitors API: get or set Visitor information.

## Conditional requests
Create, Show and Update answer with a strong `ETag` that changes whenever the stored visitor changes (an update that changes nothing keeps it), the same from every instance.
- **If-Match** (request header of Update and Delete, optional): entity tags from `ETag`, or `*`. The request is carried out only when one of them is the visitor's current ETag (strong comparison); otherwise 412 PreconditionFailed and nothing changes. Two agents editing one visitor thus cannot overwrite each other unknowingly.
- **If-None-Match** (request header of Show, optional): when one listed tag matches the current one (or `*`), 304 Not Modified with the `ETag` and no body.

## Idempotent create
**Idempotency-Key** (request header of Create, optional) makes a create safe to retry: 1 to 255 visible ASCII characters (`!` to `~`); the quoted form `\"abc\"` is the same key as `abc`; anything else is 400 BadRequest. Keys belong to the token that sent them. The first request with a key runs as usual and, when it succeeds, its answer is kept for 24 hours (`--idempotency-ttl`). The same key with the same body (the same JSON value, whatever the spacing or key order) answers that 201 again, with the same body, `Location` and `ETag` and `Idempotent-Replayed: true`, and creates nothing, from any instance. The same key with another body: 422 IdempotencyKeyMismatch. The same key while its first request is still running: 409 IdempotencyKeyInUse with `Retry-After`. A failed request records nothing and may be retried with the same key. Erasing a visitor removes the records that hold its data.

Both are declared as request headers of their operations, so clients generated from this document can send them. What no schema can say: only a current tag matches, and a key used again must come with its first body; other values of the right shape are answered 412 and 422.

## Rate limits
Each token may send a number of requests per window (`--rate-limit`, default `100/s`; the whole number may come at once). Every answer to a known token carries `X-Rate-Limit` and `X-Rate-Limit-Remaining` (as Zendesk sends them) and `RateLimit-Policy` / `RateLimit` (draft-ietf-httpapi-ratelimit-headers). Over the limit: 429 TooManyRequests with `Retry-After` in whole seconds, and nothing changes. A client address whose authentications fail too often (`--auth-failure-limit`, default `30/min`) gets 429 before any token it sends is checked.";
