//! Serving: picks the store the configuration names (PostgreSQL, migrated, or memory), reads the
//! stored tokens, binds the listeners and runs the application until it is stopped.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use visitor_store::{MemoryStore, PgStore, Role, SharedStorage, StoreError, TokenStore};

use crate::access::tokens::{new_token, TokenRegistry, TokenSpec};
use crate::app::builder::{AppSettings, Application, MetricsEndpoint, ServerOptions};
use crate::app::config::{Config, MetricsBind};
use crate::delivery::sender::DeliverySettings;
use crate::http::forwarded::TrustedProxies;

pub(crate) async fn serve(config: Config) -> anyhow::Result<()> {
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
    let settings = AppSettings {
        token_store,
        idempotency: config.idempotency_policy(),
        change_retention: Duration::from_secs(config.change_retention),
        deliveries: DeliverySettings {
            timeout: Duration::from_secs(config.webhook_timeout),
            retry_schedule: config.webhook_retry_schedule.0.clone(),
        },
        rate_limit: config.rate_limit,
        auth_failure_limit: config.auth_failure_limit,
        metrics,
        trusted_proxies: TrustedProxies::parse(config.trusted_proxies.iter().map(String::as_str))
            .map_err(anyhow::Error::msg)?,
        public_url: public_url(config.public_url.as_deref())?,
        rate_limit_store: config
            .rate_limit_store
            .clone()
            .filter(|url| !url.trim().is_empty()),
        ..AppSettings::new(store, TokenRegistry::new(tokens))
    };
    settings.tokens.replace_stored(stored_tokens);
    let app = Application::build(settings, listener, &options)?;
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

/// `--public-url`, checked: an absolute `http` or `https` URL with a host, no query or fragment.
fn public_url(value: Option<&str>) -> anyhow::Result<Option<String>> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let uri: actix_web::http::Uri = value
        .parse()
        .map_err(|_| anyhow::anyhow!("--public-url {value:?} is not a URL"))?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    let plain = uri.query().is_none() && !value.contains('#');
    anyhow::ensure!(
        scheme_ok && uri.host().is_some() && plain,
        "--public-url {value:?} must be an absolute http(s) URL with a host and no query, like https://visitors.example.com"
    );
    Ok(Some(value.to_owned()))
}
