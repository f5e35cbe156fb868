//! The Visitors API service: HTTP routes over a [`visitor_store::VisitorStore`], bearer auth,
//! the JSON error envelope, configuration, logging and the OpenAPI document with Swagger UI.
//! Only this crate knows HTTP.
//!
//! The modules follow a request's path (see `docs/ARCHITECTURE.md`): `http` is the vocabulary,
//! `middleware` wraps every request, `access` decides who may call and how often, `api` holds
//! the resources, `observability` records, `openapi` describes, `app` builds and runs the whole,
//! and `cli` holds the operator's commands. What is public here is what the binary, the
//! black-box tests and the benchmark tools need; everything else is the crate's own.

mod access;
mod api;
mod app;
mod cli;
mod context;
mod delivery;
mod http;
mod middleware;
mod observability;
mod openapi;

use std::process::ExitCode;

use clap::Parser;
use visitor_domain::{VisitorFilter, VisitorId};

pub use access::limits::RateSetting;
pub use access::tokens::{Role, TokenRegistry, TokenSpec};
pub use app::builder::{in_process, AppSettings, Application, MetricsEndpoint, ServerOptions};
pub use app::shutdown::Shutdown;
pub use delivery::sender::DeliverySettings;
pub use http::forwarded::TrustedProxies;

use app::config::{Command, Config};

/// The `visitor-http` program: reads the configuration (flags and environment), then prints the
/// OpenAPI document, runs an operator command, or serves until stopped.
pub fn run() -> ExitCode {
    let config = Config::parse();
    if config.print_openapi {
        return match openapi::document_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("visitor-http: cannot write the OpenAPI document: {error}");
                ExitCode::FAILURE
            }
        };
    }
    // No logging in the commands: standard output carries only what a command prints.
    match &config.command {
        Some(Command::Tokens(command)) => {
            let done = actix_web::rt::System::new().block_on(cli::tokens::run(&config, command));
            return match done {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("visitor-http: {error:#}");
                    ExitCode::FAILURE
                }
            };
        }
        Some(Command::Export { output }) => {
            return actix_web::rt::System::new()
                .block_on(cli::transfer::export(&config, output.as_deref()));
        }
        Some(Command::Import { file }) => {
            return actix_web::rt::System::new().block_on(cli::transfer::import(&config, file));
        }
        None => {}
    }
    // Dropped last, after the server has stopped: every line logged before is written.
    let _log_writer = match observability::logging::init(config.log_format) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("visitor-http: cannot start the log writer: {error}");
            return ExitCode::FAILURE;
        }
    };
    match actix_web::rt::System::new().block_on(app::serve::serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "visitor-http stopped");
            eprintln!("visitor-http: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The `page[after]` cursor List writes for the position after visitor `id` in the unfiltered
/// The change feed's cursor of a position (a fresh database's: no purge yet), as the service
/// writes `after_cursor`, so the benchmark can ask for a page at any depth without walking to
/// it.
pub fn feed_cursor_at(transaction: u64, sequence: u64) -> String {
    api::changes::encode(visitor_store::ChangeCursor {
        position: visitor_store::ChangePosition {
            transaction,
            sequence,
        },
        purges: 0,
    })
}

/// list sorted by id, so a benchmark can ask for a page at any depth without walking to it.
pub fn list_cursor_after(id: VisitorId) -> String {
    api::cursor::encode(
        id,
        api::cursor::Binding::new(false, &VisitorFilter::default()),
    )
}
