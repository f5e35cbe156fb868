//! `visitor-http tokens create|list|revoke`: the API tokens kept in PostgreSQL. Standard output
//! carries only what the command prints (a new token alone on its line, or the list); what it
//! did goes to standard error.

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use visitor_store::{PgStore, StoreError, TokenStore};

use crate::access::tokens::{new_token, TokenSpec};
use crate::app::config::{Config, TokensCommand};

/// `visitor-http tokens create|list|revoke`.
pub(crate) async fn run(config: &Config, command: &TokensCommand) -> anyhow::Result<()> {
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
