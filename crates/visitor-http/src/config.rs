//! The service's settings: every one a flag and an environment variable (clap).

use std::time::Duration;

use clap::{Parser, ValueEnum};
use secrecy::SecretString;
use visitor_store::{IdempotencyPolicy, PgStoreOptions};

use crate::auth::TokenSpec;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Pretty,
}

/// The Zendesk Chat Visitors API service.
#[derive(Debug, Parser)]
#[command(name = "visitor-http", version, about, long_about = None)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "VISITORS_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,

    /// PostgreSQL URL; without it visitors are kept in memory and lost at exit.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_parser = secret)]
    pub database_url: Option<SecretString>,

    /// A token as ROLE:TOKEN or ROLE:sha256:<hex digest>; ROLE is administrator or agent.
    /// Repeatable; the variable takes a comma-separated list.
    #[arg(
        long = "token",
        env = "VISITORS_TOKENS",
        value_delimiter = ',',
        hide_env_values = true,
        value_parser = secret
    )]
    pub tokens: Vec<SecretString>,

    /// Log format [default: pretty on a terminal, else json].
    #[arg(long, env = "VISITORS_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,

    /// HTTP worker threads [default: one per CPU core].
    #[arg(long, env = "VISITORS_WORKERS")]
    pub workers: Option<usize>,

    /// Most PostgreSQL connections in the pool (20 measured best on a 2-core machine with a
    /// local server; see docs/benchmarks.md).
    #[arg(long, env = "VISITORS_DB_MAX_CONNECTIONS", default_value_t = 20)]
    pub db_max_connections: u32,

    /// Seconds a request waits for a PostgreSQL connection before it answers 503.
    #[arg(long, env = "VISITORS_DB_ACQUIRE_TIMEOUT", default_value_t = 3)]
    pub db_acquire_timeout: u64,

    /// Seconds in-flight requests get to finish after SIGINT or SIGTERM.
    #[arg(long, env = "VISITORS_SHUTDOWN_TIMEOUT", default_value_t = 30)]
    pub shutdown_timeout: u64,

    /// Seconds the answer of a create with an Idempotency-Key is kept for replays.
    #[arg(long, env = "VISITORS_IDEMPOTENCY_TTL", default_value_t = 86_400)]
    pub idempotency_ttl: u64,

    /// Print the OpenAPI document as YAML and exit.
    #[arg(long, hide = true)]
    pub print_openapi: bool,
}

fn secret(value: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(value))
}

impl Config {
    /// The configured tokens, parsed; empty entries (e.g. `VISITORS_TOKENS=""`) are skipped.
    pub fn token_specs(&self) -> Result<Vec<TokenSpec>, String> {
        use secrecy::ExposeSecret;
        self.tokens
            .iter()
            .filter(|spec| !spec.expose_secret().trim().is_empty())
            .map(TokenSpec::parse)
            .collect()
    }

    pub fn idempotency_policy(&self) -> IdempotencyPolicy {
        IdempotencyPolicy {
            ttl: Duration::from_secs(self.idempotency_ttl),
            ..IdempotencyPolicy::default()
        }
    }

    pub fn pg_options(&self) -> PgStoreOptions {
        PgStoreOptions {
            max_connections: self.db_max_connections.max(1),
            acquire_timeout: Duration::from_secs(self.db_acquire_timeout.max(1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_flags_and_variables_with_the_contracts_defaults() {
        use clap::CommandFactory;
        let command = Config::command();
        let expected = [
            ("bind", "VISITORS_BIND", Some("127.0.0.1:8080")),
            ("database_url", "DATABASE_URL", None),
            ("tokens", "VISITORS_TOKENS", None),
            ("log_format", "VISITORS_LOG_FORMAT", None),
        ];
        for (id, env, default) in expected {
            let arg = command.get_arguments().find(|a| a.get_id() == id).unwrap();
            assert_eq!(arg.get_env().and_then(|e| e.to_str()), Some(env), "{id}");
            let defaults: Vec<_> = arg
                .get_default_values()
                .iter()
                .filter_map(|v| v.to_str())
                .collect();
            assert_eq!(defaults.first().copied(), default, "{id}");
        }
    }

    #[test]
    fn tokens_repeat_as_flags() {
        let config = Config::try_parse_from([
            "visitor-http",
            "--token",
            "administrator:a",
            "--token",
            "agent:b",
            "--bind",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .unwrap();
        let specs = config.token_specs().unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(config.log_format, Some(LogFormat::Json));
        assert!(!format!("{config:?}").contains("administrator:a"));
    }
}
