//! Black-box tests of the Visitors API: the real server on port 0, over HTTP, each case on the
//! in-memory store and on PostgreSQL (a fresh database per test).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod helpers;

mod auth;
mod bringing_in;
mod changes;
mod concurrency;
mod conditional;
mod delete;
mod errors;
mod forwarded;
mod idempotency;
mod list;
mod openapi;
mod operations;
mod raw;
mod shared_limits;
mod visitors;
mod webhooks;
