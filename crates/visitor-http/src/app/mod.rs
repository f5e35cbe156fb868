//! The application as a whole: its settings (flags and environment), the app builder that wires
//! the context, the middleware and the resources into a server, the background tasks it owns,
//! and the graceful stop. It knows every other folder; none of them knows it.

pub(crate) mod background;
pub(crate) mod builder;
pub(crate) mod config;
pub(crate) mod serve;
pub(crate) mod shutdown;
