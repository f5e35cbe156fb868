//! The routes: the Visitors operations (under the current and the legacy prefix), the health
//! probes, and JSON answers for unknown routes and methods. Handlers only translate between HTTP
//! and the domain; the store applies the rules.

use actix_web::http::header;
use actix_web::web::{self, Data, ServiceConfig};
use actix_web::{HttpMessage, HttpRequest, HttpResponse};
use visitor_domain::{BodyFingerprint, NewVisitor, VisitorPatch};
use visitor_store::{
    IdempotencyKey, IdempotencyPolicy, IdempotencyStore, Idempotent, IfMatch, StoredVisitor,
    VisitorStore,
};

use crate::auth::Caller;
use crate::conditional::{etag, if_match, none_match_fails};
use crate::error::ApiError;
use crate::extract::{JsonObject, VisitorPath};
use crate::idempotency::{key_of, IDEMPOTENT_REPLAYED};
use crate::list::ListRequest;
use crate::prefer::{prefers_minimal, PREFERENCE_APPLIED};

/// The current prefix of the Visitors resource.
pub const VISITORS_PATH: &str = "/api/v2/chat/visitors";
/// The legacy Zopim prefix, kept so clients of the old host keep working.
pub const LEGACY_VISITORS_PATH: &str = "/api/v2/visitors";

const COLLECTION_METHODS: &str = "GET, POST";
const ITEM_METHODS: &str = "GET, PUT, DELETE";

/// The route template of a resource, kept in the resource's data so that the outermost
/// middleware can name a request's route (log line, metrics) without matching its path again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteTemplate(pub &'static str);

/// A resource at `template`, carrying its [`RouteTemplate`].
pub fn resource(template: &'static str) -> actix_web::Resource {
    web::resource(template).app_data(RouteTemplate(template))
}

/// Registers every route of the service except Swagger UI.
///
/// Each prefix is a scope: a scope's prefix is matched as plain text, so the only pattern with
/// a variable part (`/{visitor_id}`) is matched against the few characters after the prefix
/// instead of the whole path.
pub fn configure(cfg: &mut ServiceConfig) {
    let prefixes = [
        (VISITORS_PATH, "/api/v2/chat/visitors/{visitor_id}"),
        (LEGACY_VISITORS_PATH, "/api/v2/visitors/{visitor_id}"),
    ];
    for (prefix, item) in prefixes {
        cfg.service(
            web::scope(prefix)
                .service(
                    web::resource("")
                        .app_data(RouteTemplate(prefix))
                        .route(web::get().to(list_visitors))
                        .route(web::post().to(create_visitor))
                        .default_service(web::to(|| async {
                            Err::<HttpResponse, _>(ApiError::MethodNotAllowed(COLLECTION_METHODS))
                        })),
                )
                .service(
                    web::resource("/{visitor_id}")
                        .app_data(RouteTemplate(item))
                        .route(web::get().to(show_visitor))
                        .route(web::put().to(update_visitor))
                        .route(web::delete().to(delete_visitor))
                        .default_service(web::to(|| async {
                            Err::<HttpResponse, _>(ApiError::MethodNotAllowed(ITEM_METHODS))
                        })),
                ),
        );
    }
    cfg.service(resource("/healthz").route(web::get().to(healthz)))
        .service(resource("/readyz").route(web::get().to(readyz)));
}

/// The answer for any route that does not exist.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

/// The answer carrying one stored visitor: its `ETag` and the visitor.
fn with_visitor(response: actix_web::HttpResponseBuilder, stored: &StoredVisitor) -> HttpResponse {
    with_visitor_tagged(response, stored, etag(stored))
}

/// [`with_visitor`] with the tag already made.
fn with_visitor_tagged(
    mut response: actix_web::HttpResponseBuilder,
    stored: &StoredVisitor,
    tag: String,
) -> HttpResponse {
    response
        .insert_header((header::ETAG, tag))
        .json(&stored.visitor)
}

/// The prefix a request came in under: the current one, or the legacy one.
fn prefix_of(req: &HttpRequest) -> &'static str {
    if req.path().starts_with(LEGACY_VISITORS_PATH) {
        LEGACY_VISITORS_PATH
    } else {
        VISITORS_PATH
    }
}

/// The 201 of Create Visitor; `Location` is under the prefix the request came in under.
fn created(req: &HttpRequest, stored: &StoredVisitor, replayed: bool) -> HttpResponse {
    let mut response = HttpResponse::Created();
    response.insert_header((
        header::LOCATION,
        format!("{}/{}", prefix_of(req), stored.id),
    ));
    if replayed {
        response.insert_header((IDEMPOTENT_REPLAYED.clone(), "true"));
    }
    with_visitor(response, stored)
}

/// Create Visitor.
#[utoipa::path(
    post,
    path = "/api/v2/chat/visitors",
    tag = "Visitors",
    operation_id = "createVisitor",
    summary = "Create Visitor",
    description = "Allows the account owner/administrator to add more visitors",
    request_body(
        content = crate::openapi::schemas::VisitorCreate,
        content_type = "application/json",
        example = json!(crate::openapi::seed_create_request()),
    ),
    responses(
        (status = 201, description = "Created: the new visitor", body = crate::openapi::schemas::Visitor,
            headers(
                ("Location" = String, description = "The path of the new visitor: /api/v2/chat/visitors/{id} (under the legacy prefix, /api/v2/visitors/{id})"),
                ("ETag" = String, description = "The visitor's strong entity tag, for If-Match and If-None-Match"),
                ("Idempotent-Replayed" = String, description = "`true` when this is the recorded answer of an earlier request with the same Idempotency-Key request header (see the introduction)"),
            ),
            example = json!(crate::openapi::seed_visitor())),
    ),
    security(("bearer" = [])),
)]
pub async fn create_visitor(
    req: HttpRequest,
    store: Data<dyn VisitorStore>,
    records: Data<dyn IdempotencyStore>,
    policy: Data<IdempotencyPolicy>,
    body: JsonObject,
) -> Result<HttpResponse, ApiError> {
    let key = key_of(req.headers())?;
    let new = NewVisitor::from_json(&body.0)?;
    let Some(key) = key else {
        return Ok(created(&req, &store.create(new).await?, false));
    };
    let owner = req
        .extensions()
        .get::<Caller>()
        .map(Caller::owner)
        .ok_or_else(|| ApiError::internal("an authenticated request carries no caller"))?;
    let key = IdempotencyKey { owner, key };
    match records
        .create_idempotent(&key, &BodyFingerprint::of(&body.0), &policy, new)
        .await?
    {
        Idempotent::Created(stored) => Ok(created(&req, &stored, false)),
        Idempotent::Replay(stored) => Ok(created(&req, &stored, true)),
        Idempotent::Mismatch => Err(ApiError::IdempotencyKeyMismatch),
        Idempotent::InUse => Err(ApiError::IdempotencyKeyInUse),
    }
}

/// List Visitors.
#[utoipa::path(
    get,
    path = "/api/v2/chat/visitors",
    tag = "Visitors",
    operation_id = "listVisitors",
    summary = "List Visitors",
    description = "Lists visitors in pages, with cursor pagination: find a visitor by `external_id` or `email`, filter by `banned`, or walk every visitor. A walk from the first page to the last returns every visitor that existed during the whole walk exactly once.\n\n**Cursors.** Follow `links.next` / `links.prev`, or pass a page's `meta.after_cursor` as the query parameter `page[after]` (the page after it) or its `meta.before_cursor` as `page[before]` (the page before it); at most one of the two. A cursor is opaque (50 hex digits) and valid only with the sort and filters of the page that gave it: any other value is 400 BadRequest naming the parameter. (They are not listed as parameters below, because only values this service handed out are valid, which no schema can say.)",
    params(
        ("page[size]" = Option<i64>, Query, description = "Visitors per page", minimum = 1, maximum = 1000),
        ("sort" = Option<String>, Query, description = "`id` (ascending, the default) or `-id` (descending)", pattern = r"^-?id$"),
        ("external_id" = Option<String>, Query, description = "Only the visitor with exactly this external ID", min_length = 1, max_length = 255, pattern = r"^[^\u0000]*$"),
        ("email" = Option<String>, Query, description = "Only visitors with this e-mail address, ignoring ASCII case", min_length = 1, max_length = 254, pattern = r"^[^\u0000]*$"),
        ("banned" = Option<bool>, Query, description = "Only banned (`true`) or only not banned (`false`) visitors"),
    ),
    responses(
        (status = 200, description = "OK: one page of visitors", body = crate::openapi::schemas::VisitorList),
    ),
    security(("bearer" = [])),
)]
pub async fn list_visitors(
    req: HttpRequest,
    store: Data<dyn VisitorStore>,
) -> Result<HttpResponse, ApiError> {
    let request = ListRequest::parse(req.query_string())?;
    let found = store.list(&request.store_query()).await?;
    let info = req.connection_info();
    let base = format!("{}://{}{}", info.scheme(), info.host(), req.path());
    let page = request.page(found, &base);
    // Sized for the page at once (a visitor is about 250 bytes of JSON), not grown by doubling.
    let mut body = Vec::with_capacity(512 + 256 * page.visitors.len());
    serde_json::to_writer(&mut body, &page)
        .map_err(|error| ApiError::internal(format!("a page could not be written: {error}")))?;
    Ok(HttpResponse::Ok()
        .content_type(header::ContentType::json())
        .body(body))
}

/// Show Visitor.
#[utoipa::path(
    get,
    path = "/api/v2/chat/visitors/{visitor_id}",
    tag = "Visitors",
    operation_id = "showVisitor",
    summary = "Show Visitor",
    description = "Fetches a visitor by his or her Visitor ID",
    params(
        ("visitor_id" = i64, Path, description = "The ID of the visitor", minimum = 1),
        ("If-None-Match" = Option<String>, Header, description = "Entity tags (or `*`): when one matches the visitor's current ETag (weak comparison), the answer is 304 Not Modified with the ETag and no body"),
    ),
    responses(
        (status = 200, description = "OK: the visitor", body = crate::openapi::schemas::Visitor,
            headers(("ETag" = String, description = "The visitor's strong entity tag")),
            example = json!(crate::openapi::seed_visitor())),
        (status = 304, description = "Not Modified: If-None-Match names the current ETag",
            headers(("ETag" = String, description = "The visitor's strong entity tag"))),
    ),
    security(("bearer" = [])),
)]
pub async fn show_visitor(
    req: HttpRequest,
    store: Data<dyn VisitorStore>,
    path: VisitorPath,
) -> Result<HttpResponse, ApiError> {
    let stored = store.get(path.0).await?;
    let tag = etag(&stored);
    if none_match_fails(req.headers(), &tag) {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::ETAG, tag))
            .finish());
    }
    Ok(with_visitor_tagged(HttpResponse::Ok(), &stored, tag))
}

/// Update Visitor.
#[utoipa::path(
    put,
    path = "/api/v2/chat/visitors/{visitor_id}",
    tag = "Visitors",
    operation_id = "updateVisitor",
    summary = "Update Visitor",
    description = "Allows an account owner/admin to update details of visitor.",
    params(
        ("visitor_id" = i64, Path, description = "The ID of the visitor", minimum = 1),
        ("Prefer" = Option<String>, Header, description = "Preferences (RFC 7240): `return=minimal` answers 204 No Content with the ETag and no body; any other preference is ignored"),
    ),
    request_body(
        content = crate::openapi::schemas::VisitorUpdate,
        content_type = "application/json",
        example = json!({"name": "John"}),
    ),
    responses(
        (status = 200, description = "OK: the whole visitor after the change", body = crate::openapi::schemas::Visitor,
            headers(("ETag" = String, description = "The visitor's strong entity tag after the change")),
            example = json!(crate::openapi::seed_updated_visitor())),
        (status = 204, description = "No Content: the change is made; asked for with `Prefer: return=minimal`",
            headers(
                ("ETag" = String, description = "The visitor's strong entity tag after the change"),
                ("Preference-Applied" = String, description = "`return=minimal`"),
            )),
    ),
    security(("bearer" = [])),
)]
pub async fn update_visitor(
    req: HttpRequest,
    store: Data<dyn VisitorStore>,
    path: VisitorPath,
    body: JsonObject,
) -> Result<HttpResponse, ApiError> {
    let (patch, mut errors) = VisitorPatch::from_json_partial(&body.0);
    let condition = if_match(req.headers(), path.0);
    if errors.is_empty() {
        let stored = store.update_if(path.0, patch, &condition).await?;
        if prefers_minimal(req.headers()) {
            return Ok(HttpResponse::NoContent()
                .insert_header((header::ETAG, etag(&stored)))
                .insert_header((PREFERENCE_APPLIED.clone(), "return=minimal"))
                .finish());
        }
        return Ok(with_visitor(HttpResponse::Ok(), &stored));
    }
    // Some keys are invalid. The visitor must exist and If-Match hold before the body is judged
    // (RFC 9110 §13.2.1); then the read-only keys that differ are named too, so the client
    // learns every offending key at once.
    if condition != IfMatch::Any || patch.echoes_read_only_keys() {
        let stored = store.get(path.0).await?;
        if !condition.accepts(stored.version) {
            return Err(ApiError::PreconditionFailed);
        }
        if let Err(read_only) = patch.check_read_only(&stored.visitor) {
            errors.merge(read_only);
        }
    }
    Err(ApiError::RecordInvalid(errors))
}

/// Delete Visitor.
#[utoipa::path(
    delete,
    path = "/api/v2/chat/visitors/{visitor_id}",
    tag = "Visitors",
    operation_id = "deleteVisitor",
    summary = "Delete Visitor",
    description = "Erases a visitor for good (the right to erasure): the visitor and every stored copy of its data (the records of idempotent creates that hold it). Its ID is never reused; its external ID is free again. Afterwards Show, Update and Delete answer 404 RecordNotFound.\n\n**If-Match** (request header, optional; described here rather than listed as a parameter, since only a current tag is accepted, which no schema can say): entity tags from `ETag`, or `*`. The visitor is erased only when one of them is its current ETag (strong comparison); otherwise 412 PreconditionFailed and nothing changes.",
    params(
        ("visitor_id" = i64, Path, description = "The ID of the visitor", minimum = 1),
        ("Prefer" = Option<String>, Header, description = "Preferences (RFC 7240): Delete always answers minimally (`return=minimal`, confirmed in Preference-Applied); any other preference is ignored"),
    ),
    responses(
        (status = 204, description = "No Content: the visitor is erased",
            headers(("Preference-Applied" = String, description = "`return=minimal`, when the request preferred it"))),
    ),
    security(("bearer" = [])),
)]
pub async fn delete_visitor(
    req: HttpRequest,
    store: Data<dyn VisitorStore>,
    path: VisitorPath,
) -> Result<HttpResponse, ApiError> {
    store
        .delete(path.0, &if_match(req.headers(), path.0))
        .await?;
    let mut response = HttpResponse::NoContent();
    if prefers_minimal(req.headers()) {
        response.insert_header((PREFERENCE_APPLIED.clone(), "return=minimal"));
    }
    Ok(response.finish())
}

/// Liveness: 200 while the process runs.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// Readiness: 200 when storage answers, else 503.
async fn readyz(
    store: Data<dyn VisitorStore>,
    readiness: Option<Data<crate::startup::Readiness>>,
) -> Result<HttpResponse, ApiError> {
    if readiness.is_some_and(|readiness| readiness.is_draining()) {
        return Err(ApiError::Draining);
    }
    store.ping().await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"status": "ready"})))
}
