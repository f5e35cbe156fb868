//! The `visitor-http` binary: reads the configuration, picks the store, and serves.

use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use secrecy::{ExposeSecret, SecretString};
use visitor_http::auth::{Role, TokenRegistry, TokenSpec};
use visitor_http::config::Config;
use visitor_http::{telemetry, AppState, Application, ServerOptions};
use visitor_store::{MemoryStore, PgStore, SharedStorage, StoreError};

fn main() -> ExitCode {
    let config = Config::parse();
    if config.print_openapi {
        return match visitor_http::openapi::document_yaml() {
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
    telemetry::init(config.log_format);
    match actix_web::rt::System::new().block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "visitor-http stopped");
            eprintln!("visitor-http: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let mut tokens = config.token_specs().map_err(anyhow::Error::msg)?;
    let store: SharedStorage = match &config.database_url {
        Some(url) => {
            if tokens.is_empty() {
                anyhow::bail!(
                    "no token is configured. With a database, give at least one administrator \
                     token: --token administrator:<token> or VISITORS_TOKENS=administrator:<token> \
                     (or administrator:sha256:<hex digest of the token>)"
                );
            }
            let store = PgStore::connect_lazy(url.expose_secret(), &config.pg_options())
                .context("DATABASE_URL is not a valid PostgreSQL URL")?;
            match store.migrate().await {
                Ok(()) => tracing::info!("storage: PostgreSQL, schema migrated"),
                Err(StoreError::Unavailable(cause)) => tracing::warn!(
                    cause = %cause,
                    "storage: PostgreSQL is unreachable; serving 503 until it answers, then migrating"
                ),
                Err(error) => return Err(error).context("the database migrations failed"),
            }
            Arc::new(store)
        }
        None => {
            tracing::warn!(
                "storage: in memory (no DATABASE_URL); every visitor is lost when the process exits"
            );
            if tokens.is_empty() {
                let token = format!(
                    "{}{}",
                    uuid::Uuid::new_v4().simple(),
                    uuid::Uuid::new_v4().simple()
                );
                println!(
                    "generated administrator token (in-memory mode, none configured): {token}"
                );
                tokens.push(TokenSpec::plain(
                    Role::Administrator,
                    &SecretString::from(token),
                ));
            }
            Arc::new(MemoryStore::new())
        }
    };

    let listener = TcpListener::bind(&config.bind)
        .with_context(|| format!("cannot listen on {}", config.bind))?;
    let options = ServerOptions {
        workers: config.workers,
        shutdown_timeout: Duration::from_secs(config.shutdown_timeout),
        handle_signals: true,
    };
    let state = AppState {
        store,
        tokens: TokenRegistry::new(tokens),
        idempotency: config.idempotency_policy(),
    };
    let app = Application::build(state, listener, &options)?;
    println!("listening on http://{}", app.addr());
    println!("swagger ui: http://{}/swagger-ui/", app.addr());
    tracing::info!(addr = %app.addr(), "listening");
    app.run_until_stopped().await?;
    tracing::info!("stopped");
    Ok(())
}
