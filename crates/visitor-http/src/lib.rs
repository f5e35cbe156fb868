//! The Visitors API service: HTTP routes over a [`visitor_store::VisitorStore`], bearer auth,
//! the JSON error envelope, configuration, logging and the OpenAPI document with Swagger UI.
//! Only this crate knows HTTP.

pub mod auth;
pub mod conditional;
pub mod config;
pub mod cursor;
pub mod error;
pub mod extract;
pub mod idempotency;
pub mod list;
pub mod log_line;
pub mod log_writer;
pub mod metrics;
pub mod openapi;
pub mod prefer;
pub mod ratelimit;
pub mod routes;
pub mod startup;
pub mod telemetry;

pub use startup::{AppState, Application, ServerOptions};
