//! The service's settings: every one a flag and an environment variable (clap).

use std::time::Duration;

use clap::{Parser, Subcommand};
use secrecy::SecretString;
use visitor_store::{IdempotencyPolicy, PgStoreOptions, Role};

use crate::access::limits::RateSetting;
use crate::access::tokens::TokenSpec;
use crate::delivery::sender::parse_schedule;
use crate::observability::logging::LogFormat;

/// The Zendesk Chat Visitors API service.
#[derive(Debug, Parser)]
#[command(name = "visitor-http", version, about, long_about = None)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "VISITORS_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,

    /// PostgreSQL URL; without it visitors are kept in memory and lost at exit.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_parser = secret, global = true)]
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

    /// Seconds a PostgreSQL statement may run before the server cancels it: the request answers
    /// 503 and the connection is replaced (0: no bound).
    #[arg(long, env = "VISITORS_DB_STATEMENT_TIMEOUT", default_value_t = 5)]
    pub db_statement_timeout: u64,

    /// Seconds a PostgreSQL connection is used before it is replaced.
    #[arg(long, env = "VISITORS_DB_MAX_LIFETIME", default_value_t = 1800)]
    pub db_max_lifetime: u64,

    /// Seconds in-flight requests get to finish after SIGINT or SIGTERM.
    #[arg(long, env = "VISITORS_SHUTDOWN_TIMEOUT", default_value_t = 30)]
    pub shutdown_timeout: u64,

    /// Seconds the answer of a create with an Idempotency-Key is kept for replays.
    #[arg(long, env = "VISITORS_IDEMPOTENCY_TTL", default_value_t = 86_400)]
    pub idempotency_ttl: u64,

    /// Seconds an erasure stays in the change feed; then it is purged, and the cursors that
    /// had not reached it expire.
    #[arg(long, env = "VISITORS_CHANGE_RETENTION", default_value_t = 2_592_000)]
    pub change_retention: u64,

    /// Seconds a webhook receiver has to answer a delivery.
    #[arg(long, env = "VISITORS_WEBHOOK_TIMEOUT", default_value_t = 10)]
    pub webhook_timeout: u64,

    /// Seconds before each retry of a failed webhook delivery, comma-separated; after the last,
    /// it is given up.
    #[arg(long, env = "VISITORS_WEBHOOK_RETRY_SCHEDULE", default_value = "5,300,1800,7200,18000,36000,36000", value_parser = schedule)]
    pub webhook_retry_schedule: Schedule,

    /// Requests per token: N/s, N/min or off. Over it: 429 with Retry-After.
    #[arg(long, env = "VISITORS_RATE_LIMIT", default_value = "100/s", value_parser = rate)]
    pub rate_limit: RateSetting,

    /// Failed authentications per client address: N/s, N/min or off. Over it, the address gets
    /// 429 before any token is checked.
    #[arg(long, env = "VISITORS_AUTH_FAILURE_LIMIT", default_value = "30/min", value_parser = rate)]
    pub auth_failure_limit: RateSetting,

    /// Redis that both rate limits are counted in, for every instance sharing it
    /// (redis://HOST:PORT[/DB]) [default: each instance counts alone].
    #[arg(long, env = "VISITORS_RATE_LIMIT_STORE", hide_env_values = true)]
    pub rate_limit_store: Option<String>,

    /// Where /metrics is served: on the API's listener [default], on a listener of its own
    /// (ADDR, e.g. 127.0.0.1:9100), or off.
    #[arg(long, env = "VISITORS_METRICS_BIND")]
    pub metrics_bind: Option<String>,

    /// Proxies whose X-Forwarded-For/-Host/-Proto are believed: comma-separated addresses or
    /// CIDR ranges (e.g. 10.0.0.0/8). Behind them the client is the rightmost untrusted
    /// X-Forwarded-For entry [default: none].
    #[arg(long, env = "VISITORS_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,

    /// The base of every URL the service writes (List's links, Location), e.g.
    /// https://visitors.example.com [default: the request's Host].
    #[arg(long, env = "VISITORS_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Seconds requests are still served after SIGTERM/SIGINT while /readyz answers 503, so a
    /// load balancer takes the instance out before it stops.
    #[arg(long, env = "VISITORS_DRAIN_SECONDS", default_value_t = 0)]
    pub drain_seconds: u64,

    #[command(subcommand)]
    pub command: Option<Command>,

    /// Print the OpenAPI document as YAML and exit.
    #[arg(long, hide = true)]
    pub print_openapi: bool,
}

fn secret(value: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(value))
}

fn rate(value: &str) -> Result<RateSetting, String> {
    value.parse()
}

/// `--webhook-retry-schedule`: the delays before each retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule(pub Vec<Duration>);

fn schedule(value: &str) -> Result<Schedule, String> {
    parse_schedule(value).map(Schedule)
}

fn role(value: &str) -> Result<Role, String> {
    value.parse()
}

/// What the binary does instead of serving.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage the API tokens kept in PostgreSQL (needs DATABASE_URL); running instances honour a
    /// change within 5 seconds.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Write every visitor as NDJSON, one Show body per line, in id order, from one snapshot
    /// (needs DATABASE_URL).
    Export {
        /// The file to write (standard output when not given).
        #[arg(long, short)]
        output: Option<std::path::PathBuf>,
    },
    /// Restore visitors from such NDJSON keeping every key, ids included (needs DATABASE_URL).
    /// Visitors already stored as they are in the file are skipped, so an interrupted import
    /// resumes when run again. Exits 0 when no line failed, 1 when some did, 2 when it could
    /// not run.
    Import {
        /// The file to read; `-` for standard input.
        file: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create a token; it is printed once, alone on a line of standard output, and only its
    /// SHA-256 digest is stored.
    Create {
        /// administrator or agent.
        #[arg(long, value_parser = role)]
        role: Role,
        /// A label for people (1 to 255 characters).
        #[arg(long)]
        name: Option<String>,
    },
    /// List the stored tokens (never the tokens themselves).
    List,
    /// Revoke the token with this id.
    Revoke {
        /// The id `tokens create` or `tokens list` showed.
        id: i64,
    },
}

/// Where `/metrics` goes, as `--metrics-bind` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricsBind {
    Main,
    Own(String),
    Off,
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
        IdempotencyPolicy::with_ttl(Duration::from_secs(self.idempotency_ttl))
    }

    pub fn metrics_bind(&self) -> MetricsBind {
        match self.metrics_bind.as_deref().map(str::trim) {
            None | Some("") => MetricsBind::Main,
            Some(off) if off.eq_ignore_ascii_case("off") => MetricsBind::Off,
            Some(addr) => MetricsBind::Own(addr.to_owned()),
        }
    }

    pub fn pg_options(&self) -> PgStoreOptions {
        PgStoreOptions {
            max_connections: self.db_max_connections.max(1),
            acquire_timeout: Duration::from_secs(self.db_acquire_timeout.max(1)),
            statement_timeout: Duration::from_secs(self.db_statement_timeout),
            max_lifetime: Duration::from_secs(self.db_max_lifetime.max(1)),
            ..PgStoreOptions::default()
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
            ("rate_limit", "VISITORS_RATE_LIMIT", Some("100/s")),
            (
                "auth_failure_limit",
                "VISITORS_AUTH_FAILURE_LIMIT",
                Some("30/min"),
            ),
            ("metrics_bind", "VISITORS_METRICS_BIND", None),
            ("drain_seconds", "VISITORS_DRAIN_SECONDS", Some("0")),
            ("idempotency_ttl", "VISITORS_IDEMPOTENCY_TTL", Some("86400")),
            ("webhook_timeout", "VISITORS_WEBHOOK_TIMEOUT", Some("10")),
            (
                "webhook_retry_schedule",
                "VISITORS_WEBHOOK_RETRY_SCHEDULE",
                Some("5,300,1800,7200,18000,36000,36000"),
            ),
            (
                "change_retention",
                "VISITORS_CHANGE_RETENTION",
                Some("2592000"),
            ),
            ("trusted_proxies", "VISITORS_TRUSTED_PROXIES", None),
            ("public_url", "VISITORS_PUBLIC_URL", None),
            (
                "db_statement_timeout",
                "VISITORS_DB_STATEMENT_TIMEOUT",
                Some("5"),
            ),
            ("db_max_lifetime", "VISITORS_DB_MAX_LIFETIME", Some("1800")),
            ("rate_limit_store", "VISITORS_RATE_LIMIT_STORE", None),
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
        assert_eq!(config.rate_limit, "100/s".parse().unwrap());
        assert_eq!(config.auth_failure_limit, "30/min".parse().unwrap());
        assert_eq!(config.metrics_bind(), MetricsBind::Main);
        assert!(config.command.is_none());
        assert_eq!(config.log_format, Some(LogFormat::Json));
        assert!(!format!("{config:?}").contains("administrator:a"));
    }

    #[test]
    fn limits_metrics_and_drain_are_settings() {
        let config = Config::try_parse_from([
            "visitor-http",
            "--rate-limit",
            "off",
            "--auth-failure-limit",
            "5/s",
            "--metrics-bind",
            "127.0.0.1:9100",
            "--drain-seconds",
            "3",
        ])
        .unwrap();
        assert_eq!(config.rate_limit, RateSetting::Off);
        assert_eq!(config.auth_failure_limit, "5/s".parse().unwrap());
        assert_eq!(
            config.metrics_bind(),
            MetricsBind::Own("127.0.0.1:9100".into())
        );
        assert_eq!(config.drain_seconds, 3);
        let off = Config::try_parse_from(["visitor-http", "--metrics-bind", "off"]).unwrap();
        assert_eq!(off.metrics_bind(), MetricsBind::Off);
        assert!(Config::try_parse_from(["visitor-http", "--rate-limit", "10/h"]).is_err());
    }

    #[test]
    fn tokens_subcommands_parse() {
        let config = Config::try_parse_from([
            "visitor-http",
            "tokens",
            "create",
            "--role",
            "agent",
            "--name",
            "support desk",
            "--database-url",
            "postgres://localhost/x",
        ])
        .unwrap();
        assert!(config.database_url.is_some());
        match config.command {
            Some(Command::Tokens(TokensCommand::Create { role, name })) => {
                assert_eq!(role, Role::Agent);
                assert_eq!(name.as_deref(), Some("support desk"));
            }
            other => panic!("{other:?}"),
        }
        let revoke = Config::try_parse_from(["visitor-http", "tokens", "revoke", "7"]).unwrap();
        assert!(matches!(
            revoke.command,
            Some(Command::Tokens(TokensCommand::Revoke { id: 7 }))
        ));
        assert!(
            Config::try_parse_from(["visitor-http", "tokens", "create", "--role", "owner"])
                .is_err()
        );
        assert!(Config::try_parse_from(["visitor-http", "tokens", "list"]).is_ok());
    }
}
