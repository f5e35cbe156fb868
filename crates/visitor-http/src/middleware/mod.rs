//! What wraps every request, outermost first: the request context (id, access log, metrics,
//! error envelope, drain) and access (tokens and rate limits). A resource never sees them; each
//! reads what it needs from the application context.

pub(crate) mod auth;
pub(crate) mod request;
