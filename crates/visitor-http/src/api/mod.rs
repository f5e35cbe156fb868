//! The resources, one module each: the visitors (and their list with its cursors), the change
//! feed, the webhooks, and the operator's probes and metrics; and the route table that mounts them. A handler parses the
//! request, calls the store through the application context, and answers.

use actix_web::web::{self, ServiceConfig};
use actix_web::HttpResponse;

use crate::http::error::ApiError;
use crate::http::route::{resource, RouteTemplate, LEGACY_VISITORS_PATH, VISITORS_PATH};

pub(crate) mod changes;
pub(crate) mod cursor;
pub(crate) mod import;
pub(crate) mod list;
pub(crate) mod operations;
pub(crate) mod query;
pub(crate) mod schemas;
pub(crate) mod visitors;
pub(crate) mod webhooks;

const COLLECTION_METHODS: &str = "GET, POST";
const ITEM_METHODS: &str = "GET, PUT, DELETE";
const POST_ONLY: &str = "POST";
const GET_ONLY: &str = "GET";
const WEBHOOK_METHODS: &str = "GET, DELETE";

/// The change feed (§10.1), under the current prefix only.
pub(crate) const CHANGES_PATH: &str = "/api/v2/chat/incremental/visitors";

/// Registers every route of the service except Swagger UI; `/metrics` too when `metrics_here`.
///
/// Each prefix is a scope: a scope's prefix is matched as plain text, so the only pattern with
/// a variable part (`/{visitor_id}`) is matched against the few characters after the prefix
/// instead of the whole path.
pub(crate) fn configure(cfg: &mut ServiceConfig, metrics_here: bool) {
    let prefixes = [
        (
            VISITORS_PATH,
            "/api/v2/chat/visitors/{visitor_id}",
            "/api/v2/chat/visitors/create_or_update",
            "/api/v2/chat/visitors/import",
        ),
        (
            LEGACY_VISITORS_PATH,
            "/api/v2/visitors/{visitor_id}",
            "/api/v2/visitors/create_or_update",
            "/api/v2/visitors/import",
        ),
    ];
    for (prefix, item, upsert, import) in prefixes {
        // The named resources come before `/{visitor_id}`, which would take their names for ids.
        cfg.service(
            web::scope(prefix)
                .service(
                    web::resource("")
                        .app_data(RouteTemplate(prefix))
                        .route(web::get().to(list::list_visitors))
                        .route(web::post().to(visitors::create_visitor))
                        .default_service(web::to(|| async {
                            Err::<HttpResponse, _>(ApiError::MethodNotAllowed(COLLECTION_METHODS))
                        })),
                )
                .service(
                    web::resource("/create_or_update")
                        .app_data(RouteTemplate(upsert))
                        .route(web::post().to(visitors::create_or_update_visitor))
                        .default_service(web::to(|| async {
                            Err::<HttpResponse, _>(ApiError::MethodNotAllowed(POST_ONLY))
                        })),
                )
                .service(
                    web::resource("/import")
                        .app_data(RouteTemplate(import))
                        .route(web::post().to(import::import_visitors))
                        .default_service(web::to(|| async {
                            Err::<HttpResponse, _>(ApiError::MethodNotAllowed(POST_ONLY))
                        })),
                )
                .service(
                    web::resource("/{visitor_id}")
                        .app_data(RouteTemplate(item))
                        .route(web::get().to(visitors::show_visitor))
                        .route(web::put().to(visitors::update_visitor))
                        .route(web::delete().to(visitors::delete_visitor))
                        .default_service(web::to(|| async {
                            Err::<HttpResponse, _>(ApiError::MethodNotAllowed(ITEM_METHODS))
                        })),
                ),
        );
    }
    cfg.service(
        resource(CHANGES_PATH)
            .route(web::get().to(changes::list_visitor_changes))
            .default_service(web::to(|| async {
                Err::<HttpResponse, _>(ApiError::MethodNotAllowed(GET_ONLY))
            })),
    );
    cfg.service(
        web::scope(webhooks::WEBHOOKS_PATH)
            .service(
                web::resource("")
                    .app_data(RouteTemplate(webhooks::WEBHOOKS_PATH))
                    .route(web::get().to(webhooks::list_webhooks))
                    .route(web::post().to(webhooks::create_webhook))
                    .default_service(web::to(|| async {
                        Err::<HttpResponse, _>(ApiError::MethodNotAllowed(COLLECTION_METHODS))
                    })),
            )
            .service(
                web::resource("/{webhook_id}")
                    .app_data(RouteTemplate("/api/v2/chat/webhooks/{webhook_id}"))
                    .route(web::get().to(webhooks::show_webhook))
                    .route(web::delete().to(webhooks::delete_webhook))
                    .default_service(web::to(|| async {
                        Err::<HttpResponse, _>(ApiError::MethodNotAllowed(WEBHOOK_METHODS))
                    })),
            )
            .service(
                web::resource("/{webhook_id}/secret")
                    .app_data(RouteTemplate("/api/v2/chat/webhooks/{webhook_id}/secret"))
                    .route(web::get().to(webhooks::show_webhook_secret))
                    .default_service(web::to(|| async {
                        Err::<HttpResponse, _>(ApiError::MethodNotAllowed(GET_ONLY))
                    })),
            )
            .service(
                web::resource("/{webhook_id}/deliveries")
                    .app_data(RouteTemplate(
                        "/api/v2/chat/webhooks/{webhook_id}/deliveries",
                    ))
                    .route(web::get().to(webhooks::list_webhook_deliveries))
                    .default_service(web::to(|| async {
                        Err::<HttpResponse, _>(ApiError::MethodNotAllowed(GET_ONLY))
                    })),
            ),
    );
    cfg.service(resource("/healthz").route(web::get().to(operations::healthz)))
        .service(resource("/readyz").route(web::get().to(operations::readyz)));
    if metrics_here {
        configure_metrics(cfg);
    }
}

/// Registers `/metrics` alone (on the main listener, or on one of its own).
pub(crate) fn configure_metrics(cfg: &mut ServiceConfig) {
    cfg.service(resource("/metrics").route(web::get().to(operations::metrics)));
}

/// The answer for any route that does not exist.
pub(crate) async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}
