//! The OpenAPI document, generated from the handlers' annotations and the schema types below,
//! then completed by [`Completion`]: the bearer scheme, every error response each operation can
//! give (from [`ApiError`]'s one table), and the legacy paths marked deprecated.

use serde_json::{json, Value};
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::{HttpMethod, Operation};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, Deprecated, ObjectBuilder, OpenApi as OpenApiDoc, Ref, RefOr, ResponseBuilder,
    Type,
};
use utoipa::{Modify, OpenApi};
use visitor_domain::{ErrorCode, FieldError, ValidationErrors};

use crate::error::ApiError;
use crate::routes::{LEGACY_VISITORS_PATH, VISITORS_PATH};

/// The seed document's visitor, as its examples show it, to the character: its e-mail address
/// (with a no-break space) was hidden when the page was copied, and is kept as the seed has it.
pub fn seed_visitor() -> Value {
    json!({
        "banned": false,
        "created": "2014-09-01T10:29:59Z",
        "email": "[email\u{a0}protected]",
        "external_id": "john_extid",
        "id": 1,
        "name": "Visitor 1",
        "notes": "This visitor is really cool.",
        "phone": "+65 12345678"
    })
}

/// The seed's Update Visitor response: the visitor after `{"name": "John"}`.
pub fn seed_updated_visitor() -> Value {
    let mut visitor = seed_visitor();
    visitor["name"] = json!("John");
    visitor
}

/// The seed's Create Visitor request, with a real e-mail address in place of the hidden one.
pub fn seed_create_request() -> Value {
    json!({
        "name": "Visitor 1",
        "email": "visitor1@example.com",
        "notes": "This visitor is really cool.",
        "phone": "+65 12345678"
    })
}

/// Types that exist only to describe the wire format in the document.
#[allow(dead_code)]
pub mod schemas {
    use utoipa::ToSchema;

    /// Visitors are represented as JSON objects with the following properties.
    #[derive(Debug, ToSchema)]
    #[schema(example = json!(super::seed_visitor()))]
    pub struct Visitor {
        /// Whether the visitor is currently banned or not
        #[serde(default)]
        #[schema(default = false)]
        banned: bool,
        /// The create date for the visitor
        #[serde(default)]
        #[schema(format = DateTime)]
        created: String,
        /// The email ID of the visitor
        email: Option<String>,
        /// The external ID of the visitor
        #[schema(read_only)]
        external_id: Option<String>,
        /// The ID of the visitor
        #[serde(default)]
        #[schema(read_only, format = Int64)]
        id: i64,
        /// The name to be displayed for the visitor
        name: Option<String>,
        /// Any additional notes about the visitor
        #[schema(read_only)]
        notes: Option<String>,
        /// The phone number of the visitor (if available)
        phone: Option<String>,
    }

    /// The body of Create Visitor. Every key is optional; `id` is assigned by the server and
    /// any other key is refused (422). `external_id` and `notes` can be set only here.
    #[derive(Debug, ToSchema)]
    #[schema(example = json!(super::seed_create_request()))]
    #[serde(deny_unknown_fields)]
    pub struct VisitorCreate {
        /// The name to be displayed for the visitor
        #[schema(min_length = 1, max_length = 255, pattern = r"^[^\u0000]*$")]
        name: Option<String>,
        /// The email ID of the visitor
        #[schema(format = Email, max_length = 254)]
        email: Option<String>,
        /// The phone number of the visitor (if available)
        #[schema(
            min_length = 1,
            max_length = 32,
            pattern = r"^[0-9 +\-().]*[0-9][0-9 +\-().]*$"
        )]
        phone: Option<String>,
        /// Any additional notes about the visitor (fixed once the visitor exists)
        #[schema(max_length = 10000, pattern = r"^[^\u0000]*$")]
        notes: Option<String>,
        /// The external ID of the visitor: unique among visitors (fixed once the visitor exists)
        #[schema(min_length = 1, max_length = 255, pattern = r"^[^\u0000]*$")]
        external_id: Option<String>,
        /// Whether the visitor is currently banned or not
        #[serde(default)]
        #[schema(default = false)]
        banned: bool,
        /// The create date for the visitor (RFC 3339, any offset; defaults to now)
        #[serde(default)]
        #[schema(format = DateTime)]
        created: String,
    }

    /// The body of Update Visitor: the keys to change (a partial merge; `{}` changes nothing).
    /// `null` clears `name`, `email` or `phone`. The read-only keys `id`, `external_id` and
    /// `notes` are not for sending: a client may send back the object it read, and they are
    /// accepted only when equal to the stored values (any other value: 422 ReadOnly). Any other
    /// key is refused (422).
    #[derive(Debug, ToSchema)]
    #[schema(example = json!({"name": "John"}))]
    #[serde(deny_unknown_fields)]
    pub struct VisitorUpdate {
        /// The name to be displayed for the visitor
        #[schema(min_length = 1, max_length = 255, pattern = r"^[^\u0000]*$")]
        name: Option<String>,
        /// The email ID of the visitor
        #[schema(format = Email, max_length = 254)]
        email: Option<String>,
        /// The phone number of the visitor (if available)
        #[schema(
            min_length = 1,
            max_length = 32,
            pattern = r"^[0-9 +\-().]*[0-9][0-9 +\-().]*$"
        )]
        phone: Option<String>,
        /// Whether the visitor is currently banned or not
        #[serde(default)]
        banned: bool,
        /// The create date for the visitor (RFC 3339, any offset)
        #[serde(default)]
        #[schema(format = DateTime)]
        created: String,
        /// Read-only: accepted only when equal to the stored value
        #[serde(default)]
        #[schema(read_only, format = Int64)]
        id: i64,
        /// Read-only: accepted only when equal to the stored value
        #[schema(read_only)]
        external_id: Option<String>,
        /// Read-only: accepted only when equal to the stored value
        #[schema(read_only)]
        notes: Option<String>,
    }

    /// One page of List Visitors.
    #[derive(Debug, ToSchema)]
    pub struct VisitorList {
        /// The visitors of this page, in the order asked for
        visitors: Vec<Visitor>,
        meta: ListMeta,
        links: ListLinks,
    }

    /// Where the page lies in the walk.
    #[derive(Debug, ToSchema)]
    pub struct ListMeta {
        /// Whether more visitors lie beyond this page in the direction it was fetched
        has_more: bool,
        /// The cursor of this page's last visitor: pass it as `page[after]` for the next page
        /// (null on an empty page)
        #[schema(pattern = r"^[0-9a-f]{50}$")]
        after_cursor: Option<String>,
        /// The cursor of this page's first visitor: pass it as `page[before]` for the previous
        /// page (null on an empty page)
        #[schema(pattern = r"^[0-9a-f]{50}$")]
        before_cursor: Option<String>,
    }

    /// The neighbouring pages, with the same filters, size and sort.
    #[derive(Debug, ToSchema)]
    pub struct ListLinks {
        /// The full URL of the next page; null on the last page
        next: Option<String>,
        /// The full URL of the previous page; null on the first page
        prev: Option<String>,
    }

    /// One problem with one key.
    #[derive(Debug, ToSchema)]
    pub struct FieldProblem {
        /// A stable code: Blank, TooLong, InvalidFormat, InvalidType, ReadOnly, UnknownField,
        /// Duplicate or OutOfRange
        error: String,
        /// A sentence for people
        description: String,
    }

    /// The body of every error response.
    #[derive(Debug, ToSchema)]
    pub struct Error {
        /// A stable code, e.g. RecordInvalid, RecordNotFound, Unauthorized
        error: String,
        /// A sentence for people
        description: String,
        /// Only on 422 RecordInvalid and on 400 about List's query parameters: each offending
        /// key or parameter and its problems
        details: Option<std::collections::HashMap<String, Vec<FieldProblem>>>,
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Visitors API",
        description = INTRODUCTION,
        version = "2.0.0",
    ),
    paths(
        crate::routes::create_visitor,
        crate::routes::list_visitors,
        crate::routes::show_visitor,
        crate::routes::update_visitor,
        crate::routes::delete_visitor,
    ),
    components(schemas(
        schemas::Visitor,
        schemas::VisitorList,
        schemas::ListMeta,
        schemas::ListLinks,
        schemas::VisitorCreate,
        schemas::VisitorUpdate,
        schemas::Error,
        schemas::FieldProblem
    )),
    tags((name = "Visitors", description = "You can use the API to get or set Visitor information.")),
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

/// The error statuses each operation can give, by operation id.
fn error_statuses(operation_id: &str) -> &'static [u16] {
    match operation_id {
        "createVisitor" => &[400, 401, 403, 409, 413, 415, 422, 429, 500, 503],
        "listVisitors" => &[400, 401, 403, 429, 500, 503],
        "updateVisitor" => &[400, 401, 403, 404, 412, 413, 415, 422, 429, 500, 503],
        "deleteVisitor" => &[400, 401, 403, 404, 412, 429, 500, 503],
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
        413 => ApiError::PayloadTooLarge,
        415 => ApiError::UnsupportedMediaType,
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
struct Completion;

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

/// The introduction of the document: what it is, and the request headers whose valid values
/// depend on stored state.
pub const INTRODUCTION: &str = "A self-hosted implementation of the Zendesk Chat Visitors API: get or set Visitor information.

## Conditional requests
Create, Show and Update answer with a strong `ETag` that changes whenever the stored visitor changes (an update that changes nothing keeps it), the same from every instance.
- **If-Match** (request header of Update and Delete, optional): entity tags from `ETag`, or `*`. The request is carried out only when one of them is the visitor's current ETag (strong comparison); otherwise 412 PreconditionFailed and nothing changes. Two agents editing one visitor thus cannot overwrite each other unknowingly.
- **If-None-Match** (request header of Show, optional): when one listed tag matches the current one (or `*`), 304 Not Modified with the `ETag` and no body.

## Idempotent create
**Idempotency-Key** (request header of Create, optional) makes a create safe to retry: 1 to 255 visible ASCII characters (`!` to `~`); the quoted form `\"abc\"` is the same key as `abc`; anything else is 400 BadRequest. Keys belong to the token that sent them. The first request with a key runs as usual and, when it succeeds, its answer is kept for 24 hours (`--idempotency-ttl`). The same key with the same body (the same JSON value, whatever the spacing or key order) answers that 201 again, with the same body, `Location` and `ETag` and `Idempotent-Replayed: true`, and creates nothing, from any instance. The same key with another body: 422 IdempotencyKeyMismatch. The same key while its first request is still running: 409 IdempotencyKeyInUse with `Retry-After`. A failed request records nothing and may be retried with the same key. Erasing a visitor removes the records that hold its data.

These headers are described here rather than listed as parameters: only a current tag, or a key's own earlier body, is accepted, which no schema can say.

## Rate limits
Each token may send a number of requests per window (`--rate-limit`, default `100/s`; the whole number may come at once). Every answer to a known token carries `X-Rate-Limit` and `X-Rate-Limit-Remaining` (as Zendesk sends them) and `RateLimit-Policy` / `RateLimit` (draft-ietf-httpapi-ratelimit-headers). Over the limit: 429 TooManyRequests with `Retry-After` in whole seconds, and nothing changes. A client address whose authentications fail too often (`--auth-failure-limit`, default `30/min`) gets 429 before any token it sends is checked.";

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
