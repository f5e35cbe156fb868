//! The names of the routes: the resource prefixes, and the route template each resource carries
//! so that the outermost middleware can label a request (log line, metrics) without matching its
//! path again.

use actix_web::web;

/// The current prefix of the Visitors resource.
pub(crate) const VISITORS_PATH: &str = "/api/v2/chat/visitors";
/// The legacy Zopim prefix, kept so clients of the old host keep working.
pub(crate) const LEGACY_VISITORS_PATH: &str = "/api/v2/visitors";

/// The route template of a resource, kept in the resource's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RouteTemplate(pub(crate) &'static str);

/// A resource at `template`, carrying its [`RouteTemplate`].
pub(crate) fn resource(template: &'static str) -> actix_web::Resource {
    web::resource(template).app_data(RouteTemplate(template))
}

/// The prefix a path came in under: the current one, or the legacy one.
pub(crate) fn prefix_of(path: &str) -> &'static str {
    if path.starts_with(LEGACY_VISITORS_PATH) {
        LEGACY_VISITORS_PATH
    } else {
        VISITORS_PATH
    }
}
