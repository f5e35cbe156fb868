//! The `visitor-http` binary: everything is in the library ([`visitor_http::run`]).

use std::process::ExitCode;

/// mimalloc instead of the C library's allocator: a request allocates and frees dozens of small
/// values (a page of List thousands), which glibc's malloc makes one of the largest costs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    visitor_http::run()
}
