//! The routes: the three Visitors operations (under the current and the legacy prefix), the
//! health probes, and JSON answers for unknown routes and methods. Handlers only translate
//! between HTTP and the domain; the store applies the rules.

use actix_web::http::header;
use actix_web::web::{self, Data, ServiceConfig};
use actix_web::HttpResponse;
use visitor_domain::{NewVisitor, Visitor, VisitorPatch};
use visitor_store::VisitorStore;

use crate::error::ApiError;
use crate::extract::{JsonObject, VisitorPath};

/// The current prefix of the Visitors resource.
pub const VISITORS_PATH: &str = "/api/v2/chat/visitors";
/// The legacy Zopim prefix, kept so clients of the old host keep working.
pub const LEGACY_VISITORS_PATH: &str = "/api/v2/visitors";

const COLLECTION_METHODS: &str = "POST";
const ITEM_METHODS: &str = "GET, PUT";

/// Registers every route of the service except Swagger UI.
pub fn configure(cfg: &mut ServiceConfig) {
    for prefix in [VISITORS_PATH, LEGACY_VISITORS_PATH] {
        cfg.service(
            web::resource(prefix)
                .route(web::post().to(create_visitor))
                .default_service(web::to(|| async {
                    Err::<HttpResponse, _>(ApiError::MethodNotAllowed(COLLECTION_METHODS))
                })),
        )
        .service(
            web::resource(format!("{prefix}/{{visitor_id}}"))
                .route(web::get().to(show_visitor))
                .route(web::put().to(update_visitor))
                .default_service(web::to(|| async {
                    Err::<HttpResponse, _>(ApiError::MethodNotAllowed(ITEM_METHODS))
                })),
        );
    }
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz));
}

/// The answer for any route that does not exist.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
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
            headers(("Location" = String, description = "The path of the new visitor: /api/v2/chat/visitors/{id}")),
            example = json!(crate::openapi::seed_visitor())),
    ),
    security(("bearer" = [])),
)]
pub async fn create_visitor(
    store: Data<dyn VisitorStore>,
    body: JsonObject,
) -> Result<HttpResponse, ApiError> {
    let new = NewVisitor::from_json(&body.0)?;
    let visitor = store.create(new).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("{VISITORS_PATH}/{}", visitor.id)))
        .json(visitor))
}

/// Show Visitor.
#[utoipa::path(
    get,
    path = "/api/v2/chat/visitors/{visitor_id}",
    tag = "Visitors",
    operation_id = "showVisitor",
    summary = "Show Visitor",
    description = "Fetches a visitor by his or her Visitor ID",
    params(("visitor_id" = i64, Path, description = "The ID of the visitor", minimum = 1)),
    responses(
        (status = 200, description = "OK: the visitor", body = crate::openapi::schemas::Visitor,
            example = json!(crate::openapi::seed_visitor())),
    ),
    security(("bearer" = [])),
)]
pub async fn show_visitor(
    store: Data<dyn VisitorStore>,
    path: VisitorPath,
) -> Result<web::Json<Visitor>, ApiError> {
    Ok(web::Json(store.get(path.0).await?))
}

/// Update Visitor.
#[utoipa::path(
    put,
    path = "/api/v2/chat/visitors/{visitor_id}",
    tag = "Visitors",
    operation_id = "updateVisitor",
    summary = "Update Visitor",
    description = "Allows an account owner/admin to update details of visitor.",
    params(("visitor_id" = i64, Path, description = "The ID of the visitor", minimum = 1)),
    request_body(
        content = crate::openapi::schemas::VisitorUpdate,
        content_type = "application/json",
        example = json!({"name": "John"}),
    ),
    responses(
        (status = 200, description = "OK: the whole visitor after the change", body = crate::openapi::schemas::Visitor,
            example = json!(crate::openapi::seed_updated_visitor())),
    ),
    security(("bearer" = [])),
)]
pub async fn update_visitor(
    store: Data<dyn VisitorStore>,
    path: VisitorPath,
    body: JsonObject,
) -> Result<web::Json<Visitor>, ApiError> {
    let (patch, mut errors) = VisitorPatch::from_json_partial(&body.0);
    if errors.is_empty() {
        return Ok(web::Json(store.update(path.0, patch).await?));
    }
    // Some keys are invalid: name the read-only keys that differ too, so the client learns
    // every offending key at once.
    if patch.echoes_read_only_keys() {
        if let Err(read_only) = patch.check_read_only(&store.get(path.0).await?) {
            errors.merge(read_only);
        }
    }
    Err(ApiError::RecordInvalid(errors))
}

/// Liveness: 200 while the process runs.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// Readiness: 200 when storage answers, else 503.
async fn readyz(store: Data<dyn VisitorStore>) -> Result<HttpResponse, ApiError> {
    store.ping().await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"status": "ready"})))
}
