//! The operator's resources, outside the API and its token: `/healthz` (the process runs),
//! `/readyz` (storage answers and the instance is not draining) and `/metrics`.

use actix_web::http::header;
use actix_web::web::Data;
use actix_web::HttpResponse;

use crate::context::AppContext;
use crate::http::error::ApiError;
use crate::observability::metrics::CONTENT_TYPE;

/// Liveness: 200 while the process runs.
pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// Readiness: 200 when storage answers, else 503; 503 from the start of a drain.
pub(crate) async fn readyz(context: Data<AppContext>) -> Result<HttpResponse, ApiError> {
    if context.readiness.is_draining() {
        return Err(ApiError::Draining);
    }
    context.store.ping().await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"status": "ready"})))
}

/// `GET /metrics`, on whichever listener serves it: the exposition, or 404 when nothing is
/// recorded.
pub(crate) async fn metrics(context: Data<AppContext>) -> Result<HttpResponse, ApiError> {
    let Some(metrics) = &context.metrics else {
        return Err(ApiError::NotFound);
    };
    let text = metrics.render().map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, CONTENT_TYPE))
        .body(text))
}
