//! The HTTP vocabulary of the API: the error envelope, the request extractors, the conditional
//! headers, `Prefer`, the idempotency key and the names of the routes. No handler and no state:
//! the middleware, the resources and the app all speak it, and it knows none of them.

pub(crate) mod conditional;
pub(crate) mod error;
pub(crate) mod extract;
pub(crate) mod forwarded;
pub(crate) mod idempotency_key;
pub(crate) mod prefer;
pub(crate) mod route;
