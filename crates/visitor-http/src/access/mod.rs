//! Who may call and how often: the token registry (who a bearer token is, and whether that role
//! may act) and the rate limiters (§8.5). State and rules only; the middleware applies them.

pub(crate) mod limits;
pub(crate) mod shared;
pub(crate) mod tokens;
