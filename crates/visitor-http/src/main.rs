//! The `visitor-http` binary: reads the configuration, picks the store, and serves; or, with
//! `tokens …`, manages the tokens kept in PostgreSQL.

use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use secrecy::{ExposeSecret, SecretString};
use visitor_http::auth::{Role, TokenRegistry, TokenSpec};
use visitor_http::config::{Command, Config, MetricsBind, TokensCommand};
use visitor_http::startup::MetricsEndpoint;
use visitor_http::{telemetry, AppState, Application, ServerOptions};
use visitor_store::{MemoryStore, PgStore, SharedStorage, StoreError, TokenStore};

/// mimalloc instead of the C library's allocator: a request allocates and frees dozens of small
/// values (a page of List thousands), which glibc's malloc makes one of the largest costs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    if let Some(Command::Tokens(command)) = &config.command {
        // No logging here: standard output carries only what the command prints.
        let done = actix_web::rt::System::new().block_on(tokens(&config, command));
        return match done {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("visitor-http: {error:#}");
                ExitCode::FAILURE
            }
        };
    }
    // Dropped last, after the server has stopped: every line logged before is written.
    let _log_writer = match telemetry::init(config.log_format) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("visitor-http: cannot start the log writer: {error}");
            return ExitCode::FAILURE;
        }
    };
    match actix_web::rt::System::new().block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "visitor-http stopped");
            eprintln!("visitor-http: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// A new token: 244 random bits (two v4 UUIDs) as 64 hexadecimal digits.
fn new_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// `visitor-http tokens create|list|revoke`.
async fn tokens(config: &Config, command: &TokensCommand) -> anyhow::Result<()> {
    let Some(url) = &config.database_url else {
        anyhow::bail!(
            "tokens are kept in PostgreSQL: set DATABASE_URL (or --database-url). The in-memory \
             mode has no token store; give its tokens with --token or VISITORS_TOKENS"
        );
    };
    let store = PgStore::connect_lazy(url.expose_secret(), &config.pg_options())
        .context("DATABASE_URL is not a valid PostgreSQL URL")?;
    match command {
        TokensCommand::Create { role, name } => {
            if let Some(name) = name {
                let length = name.chars().count();
                anyhow::ensure!(
                    (1..=255).contains(&length),
                    "--name must be 1 to 255 characters (it has {length})"
                );
            }
            let token = new_token();
            let spec = TokenSpec::plain(*role, &SecretString::from(token.clone()));
            let record = store
                .create_token(*role, name.as_deref(), &spec.digest())
                .await
                .context("the token could not be stored")?;
            eprintln!(
                "created token {} ({}{}); it is shown once, below, and only its digest is stored",
                record.id,
                record.role,
                record.name.map(|n| format!(", {n:?}")).unwrap_or_default()
            );
            println!("{token}");
        }
        TokensCommand::List => {
            let records = store
                .list_tokens()
                .await
                .context("the tokens could not be read")?;
            println!(
                "{:>6}  {:<13}  {:<20}  {:<25}  name",
                "id", "role", "created", "state"
            );
            for record in records {
                let state = match record.revoked {
                    Some(when) => format!("revoked {}", when.format("%Y-%m-%dT%H:%M:%SZ")),
                    None => "active".to_owned(),
                };
                println!(
                    "{:>6}  {:<13}  {:<20}  {:<25}  {}",
                    record.id,
                    record.role,
                    record.created.format("%Y-%m-%dT%H:%M:%SZ"),
                    state,
                    record.name.unwrap_or_default()
                );
            }
        }
        TokensCommand::Revoke { id } => match store.revoke_token(*id).await {
            Ok(record) => eprintln!(
                "revoked token {} ({}); running instances refuse it within 5 seconds",
                record.id, record.role
            ),
            Err(StoreError::NotFound) => anyhow::bail!("no token has id {id}"),
            Err(error) => return Err(error).context("the token could not be revoked"),
        },
    }
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let mut tokens = config.token_specs().map_err(anyhow::Error::msg)?;
    let mut token_store: Option<Arc<dyn TokenStore>> = None;
    let mut stored_tokens = Vec::new();
    let store: SharedStorage = match &config.database_url {
        Some(url) => {
            let store = Arc::new(
                PgStore::connect_lazy(url.expose_secret(), &config.pg_options())
                    .context("DATABASE_URL is not a valid PostgreSQL URL")?,
            );
            match store.migrate().await {
                Ok(()) => tracing::info!("storage: PostgreSQL, schema migrated"),
                Err(StoreError::Unavailable(cause)) => tracing::warn!(
                    cause = %cause,
                    "storage: PostgreSQL is unreachable; serving 503 until it answers, then migrating"
                ),
                Err(error) => return Err(error).context("the database migrations failed"),
            }
            // Read the stored tokens before listening, so they work from the first request.
            match store.active_tokens().await {
                Ok(active) if active.is_empty() && tokens.is_empty() => anyhow::bail!(
                    "no token is configured and the token store holds none. Create one with \
                     `visitor-http tokens create --role administrator`, or configure one: \
                     --token administrator:<token> or VISITORS_TOKENS=administrator:<token> \
                     (or administrator:sha256:<hex digest of the token>)"
                ),
                Ok(active) => {
                    tracing::info!(stored = active.len(), configured = tokens.len(), "tokens");
                    stored_tokens = active.iter().map(TokenSpec::stored).collect();
                }
                Err(error) => tracing::warn!(
                    %error,
                    "the token store cannot be read yet; configured tokens only until it answers"
                ),
            }
            token_store = Some(store.clone());
            store
        }
        None => {
            tracing::warn!(
                "storage: in memory (no DATABASE_URL); every visitor is lost when the process \
                 exits, and there is no token store (`tokens` commands need PostgreSQL)"
            );
            if tokens.is_empty() {
                let token = new_token();
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
    let metrics = match config.metrics_bind() {
        MetricsBind::Main => MetricsEndpoint::Main,
        MetricsBind::Off => MetricsEndpoint::Off,
        MetricsBind::Own(addr) => MetricsEndpoint::Own(
            TcpListener::bind(&addr)
                .with_context(|| format!("cannot listen on {addr} for /metrics"))?,
        ),
    };
    let options = ServerOptions {
        workers: config.workers,
        shutdown_timeout: Duration::from_secs(config.shutdown_timeout),
        handle_signals: true,
        drain: Duration::from_secs(config.drain_seconds),
    };
    let state = AppState {
        token_store,
        idempotency: config.idempotency_policy(),
        rate_limit: config.rate_limit,
        auth_failure_limit: config.auth_failure_limit,
        metrics,
        ..AppState::new(store, TokenRegistry::new(tokens))
    };
    state.tokens.replace_stored(stored_tokens);
    let app = Application::build(state, listener, &options)?;
    println!("listening on http://{}", app.addr());
    println!("swagger ui: http://{}/swagger-ui/", app.addr());
    if let Some(addr) = app.metrics_addr() {
        println!("metrics: http://{addr}/metrics");
    }
    tracing::info!(addr = %app.addr(), rate_limit = %config.rate_limit, auth_failure_limit = %config.auth_failure_limit, drain_seconds = config.drain_seconds, "listening");
    app.run_until_stopped().await?;
    tracing::info!("stopped");
    Ok(())
}
