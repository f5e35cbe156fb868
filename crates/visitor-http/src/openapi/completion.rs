//! Completes the generated document: the bearer scheme, every error response each operation can
//! give (from [`ApiError`]'s one table, with a sample body), the links from Create to the
//! operations on the visitor it made, and the legacy paths, marked deprecated.

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::{HttpMethod, Operation};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, Deprecated, ObjectBuilder, OpenApi as OpenApiDoc, Ref, RefOr, ResponseBuilder,
    Type,
};
use utoipa::Modify;
use visitor_domain::{ErrorCode, FieldError, ValidationErrors};

use crate::api::import::{IMPORT_LIMIT, NDJSON};
use crate::http::error::{ApiError, JSON};
use crate::http::extract::BODY_LIMIT;
use crate::http::route::{LEGACY_VISITORS_PATH, VISITORS_PATH};

/// The error statuses each operation can give, by operation id.
fn error_statuses(operation_id: &str) -> &'static [u16] {
    match operation_id {
        "createVisitor" => &[400, 401, 403, 409, 413, 415, 422, 429, 500, 503],
        "listVisitors" => &[400, 401, 403, 429, 500, 503],
        "updateVisitor" => &[400, 401, 403, 404, 412, 413, 415, 422, 429, 500, 503],
        "deleteVisitor" => &[400, 401, 403, 404, 412, 429, 500, 503],
        "createOrUpdateVisitor" => &[400, 401, 403, 412, 413, 415, 422, 429, 500, 503],
        "importVisitors" => &[400, 401, 403, 413, 415, 429, 500, 503],
        "listVisitorChanges" => &[400, 401, 403, 429, 500, 503],
        "createWebhook" => &[400, 401, 403, 413, 415, 422, 429, 500, 503],
        "listWebhooks" => &[401, 403, 429, 500, 503],
        "showWebhook" | "showWebhookSecret" | "deleteWebhook" | "listWebhookDeliveries" => {
            &[401, 403, 404, 429, 500, 503]
        }
        _ => &[400, 401, 403, 404, 429, 500, 503],
    }
}

/// A representative error of each status for an operation, as the service writes it.
fn sample_error(operation_id: &str, status: u16) -> ApiError {
    match (operation_id, status) {
        ("listVisitors", 400) => ApiError::BadQuery(ValidationErrors::single(
            "page[size]",
            FieldError::new(
                ErrorCode::OutOfRange,
                "page[size] must be a whole number from 1 to 1000",
            ),
        )),
        ("importVisitors", 400) => ApiError::BadRequest(
            "the body is not UTF-8: invalid utf-8 sequence of 1 bytes from index 12".into(),
        ),
        ("importVisitors", 413) => ApiError::PayloadTooLarge(IMPORT_LIMIT),
        ("listVisitorChanges", 400) => ApiError::BadQuery(ValidationErrors::single(
            "cursor",
            FieldError::new(
                ErrorCode::Expired,
                "erasures this cursor had not reached have been purged since (after --change-retention); start again with start_time=0",
            ),
        )),
        ("createWebhook", 422) => ApiError::RecordInvalid(ValidationErrors::single(
            "url",
            FieldError::new(
                ErrorCode::InvalidFormat,
                "url must be an absolute http or https URL",
            ),
        )),
        (
            "showWebhook" | "showWebhookSecret" | "deleteWebhook" | "listWebhookDeliveries",
            404,
        ) => ApiError::WebhookNotFound,
        ("importVisitors", 415) => ApiError::UnsupportedMediaType(NDJSON),
        ("createOrUpdateVisitor", 422) => ApiError::RecordInvalid(ValidationErrors::single(
            "external_id",
            FieldError::new(
                ErrorCode::Required,
                "external_id is required: it says which visitor to create or update",
            ),
        )),
        (_, status) => sample_status_error(status),
    }
}

fn sample_status_error(status: u16) -> ApiError {
    match status {
        400 => ApiError::BadRequest(
            "the body is not valid JSON: EOF while parsing a value at line 1 column 0".into(),
        ),
        401 => ApiError::Unauthorized,
        403 => ApiError::Forbidden,
        404 => ApiError::RecordNotFound,
        409 => ApiError::Conflict,
        412 => ApiError::PreconditionFailed,
        413 => ApiError::PayloadTooLarge(BODY_LIMIT),
        415 => ApiError::UnsupportedMediaType(JSON),
        422 => ApiError::RecordInvalid(ValidationErrors::single(
            "email",
            FieldError::new(
                ErrorCode::InvalidFormat,
                "email is not a valid e-mail address",
            ),
        )),
        429 => ApiError::TooManyRequests(1),
        503 => ApiError::ServiceUnavailable("unavailable".into()),
        _ => ApiError::internal("sample"),
    }
}

/// Other errors a status stands for in an operation, besides its sample.
fn other_errors(operation_id: &str, status: u16) -> Vec<ApiError> {
    match (operation_id, status) {
        ("createVisitor", 409) => vec![ApiError::IdempotencyKeyInUse],
        ("createVisitor", 422) => vec![ApiError::IdempotencyKeyMismatch],
        _ => vec![],
    }
}

fn error_response(operation_id: &str, status: u16) -> utoipa::openapi::Response {
    let error = sample_error(operation_id, status);
    let (_, code) = error.status_and_code();
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("Error")))
        .example(serde_json::to_value(error.body()).ok())
        .build();
    let mut description = format!("{code}: {}", error.description());
    for other in other_errors(operation_id, status) {
        let (_, code) = other.status_and_code();
        description.push_str(&format!("; or {code}: {}", other.description()));
    }
    let mut response = ResponseBuilder::new()
        .description(description)
        .content("application/json", content);
    let string_header = |description: &str| {
        HeaderBuilder::new()
            .schema(ObjectBuilder::new().schema_type(Type::String))
            .description(Some(description))
            .build()
    };
    if status == 401 {
        response = response.header("WWW-Authenticate", string_header("Always `Bearer`"));
    }
    if status == 429 {
        for (name, description) in [
            ("X-Rate-Limit", "Requests allowed per window for this token (absent when an address is over its failed-authentication limit)"),
            ("X-Rate-Limit-Remaining", "Requests this token may still send now: 0"),
            ("RateLimit-Policy", "The token's quota (draft-ietf-httpapi-ratelimit-headers), e.g. `\"token\";q=100;w=1`"),
            ("RateLimit", "The token's remaining quota and seconds until it is whole, e.g. `\"token\";r=0;t=1`"),
        ] {
            response = response.header(name, string_header(description));
        }
    }
    let retry_after = match (operation_id, status) {
        (_, 503) => Some("Seconds to wait before retrying"),
        (_, 429) => Some("Whole seconds until the rate limit allows a request again"),
        ("createVisitor", 409) => Some("On IdempotencyKeyInUse: seconds to wait before retrying"),
        _ => None,
    };
    if let Some(description) = retry_after {
        response = response.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::Integer))
                .description(Some(description))
                .build(),
        );
    }
    response.build()
}

/// Completes the generated document: see the module documentation.
pub(super) struct Completion;

impl Modify for Completion {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token of role administrator: configured with --token / VISITORS_TOKENS, or created with `visitor-http tokens create` (PostgreSQL mode)",
                    ))
                    .build(),
            ),
        );

        for item in openapi.paths.paths.values_mut() {
            for (_, operation) in operations(item) {
                let id = operation.operation_id.clone().unwrap_or_default();
                for status in error_statuses(&id) {
                    operation
                        .responses
                        .responses
                        .insert(status.to_string(), error_response(&id, *status).into());
                }
            }
        }

        link_create_to_show_and_update(openapi, "");

        let legacy: Vec<_> = openapi
            .paths
            .paths
            .iter()
            .filter_map(|(path, item)| {
                let suffix = path.strip_prefix(VISITORS_PATH)?;
                let mut item = item.clone();
                for (_, operation) in operations(&mut item) {
                    operation.deprecated = Some(Deprecated::True);
                    operation.operation_id = operation
                        .operation_id
                        .as_ref()
                        .map(|id| format!("{id}Legacy"));
                    operation.summary = operation
                        .summary
                        .as_ref()
                        .map(|summary| format!("{summary} (legacy path)"));
                }
                Some((format!("{LEGACY_VISITORS_PATH}{suffix}"), item))
            })
            .collect();
        openapi.paths.paths.extend(legacy);
        link_create_to_show_and_update(openapi, "Legacy");
    }
}

/// Links from Create's 201 to Show, Update and Delete of the visitor it made (`visitor_id` from
/// the body's `id`), so that clients and fuzzers can follow them. `suffix` picks the operation
/// family ("" for the current paths, "Legacy" for the legacy ones).
fn link_create_to_show_and_update(openapi: &mut OpenApiDoc, suffix: &str) {
    let create_id = format!("createVisitor{suffix}");
    for item in openapi.paths.paths.values_mut() {
        let Some(create) = item.post.as_mut() else {
            continue;
        };
        if create.operation_id.as_deref() != Some(create_id.as_str()) {
            continue;
        }
        let Some(RefOr::T(created)) = create.responses.responses.get_mut("201") else {
            continue;
        };
        for (name, target, description) in [
            (
                "ShowVisitor",
                "showVisitor",
                "Show the visitor just created",
            ),
            (
                "UpdateVisitor",
                "updateVisitor",
                "Update the visitor just created",
            ),
            (
                "DeleteVisitor",
                "deleteVisitor",
                "Erase the visitor just created",
            ),
        ] {
            let link = LinkBuilder::new()
                .operation_id(format!("{target}{suffix}"))
                .parameter("visitor_id", "$response.body#/id")
                .description(description)
                .build();
            created.links.insert(name.to_owned(), RefOr::T(link));
        }
    }
}

fn operations(
    item: &mut utoipa::openapi::PathItem,
) -> impl Iterator<Item = (HttpMethod, &mut Operation)> {
    [
        (HttpMethod::Get, item.get.as_mut()),
        (HttpMethod::Put, item.put.as_mut()),
        (HttpMethod::Post, item.post.as_mut()),
        (HttpMethod::Delete, item.delete.as_mut()),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.map(|op| (method, op)))
}
