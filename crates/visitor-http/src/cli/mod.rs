//! The operator's commands beside serving: `tokens` (and, later, export and import). Each runs
//! against the store and exits; none starts the server.

pub(crate) mod tokens;
