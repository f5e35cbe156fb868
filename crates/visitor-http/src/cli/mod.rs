//! The operator's commands beside serving: `tokens`, and `export` / `import` (`transfer`). Each
//! runs against the store and exits; none starts the server.

pub(crate) mod tokens;
pub(crate) mod transfer;
