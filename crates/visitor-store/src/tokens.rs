//! API tokens kept in the store, so that tokens can be created and revoked while the service
//! runs (contract §8.6). Only a token's SHA-256 digest is stored; the token itself is shown once,
//! by whoever created it. Only the PostgreSQL backend keeps tokens: the in-memory mode has no
//! token store.

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::StoreError;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// May use every Visitors operation.
    Administrator,
    /// Known, but allowed none of the Visitors operations.
    Agent,
}

impl Role {
    /// The role as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Administrator => "administrator",
            Self::Agent => "agent",
        }
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.to_ascii_lowercase().as_str() {
            "administrator" | "admin" => Ok(Self::Administrator),
            "agent" => Ok(Self::Agent),
            other => Err(format!(
                "unknown role {other:?}: expected administrator or agent"
            )),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The SHA-256 digest of a token.
pub type TokenDigest = [u8; 32];

/// A stored token as listed: never the token, nor its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: i64,
    pub name: Option<String>,
    pub role: Role,
    pub created: DateTime<Utc>,
    /// When it was revoked; `None` while it is active.
    pub revoked: Option<DateTime<Utc>>,
}

/// An active token, as an instance needs it to authenticate requests.
#[derive(Clone, PartialEq, Eq)]
pub struct ActiveToken {
    pub role: Role,
    pub digest: TokenDigest,
}

impl fmt::Debug for ActiveToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActiveToken")
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// Where tokens created at run time are kept.
#[async_trait]
pub trait TokenStore: Send + Sync + fmt::Debug {
    /// Stores a new active token by its digest.
    ///
    /// A `name`, when given, is 1 to 255 characters; the caller checks it.
    ///
    /// Errors: [`StoreError::Conflict`] when a token with this digest exists already;
    /// [`StoreError::Unavailable`]; [`StoreError::Internal`] (a name out of bounds included).
    async fn create_token(
        &self,
        role: Role,
        name: Option<&str>,
        digest: &TokenDigest,
    ) -> Result<TokenRecord, StoreError>;

    /// Every stored token, active and revoked, by id.
    ///
    /// Errors: [`StoreError::Unavailable`]; [`StoreError::Internal`].
    async fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;

    /// Revokes the token with this id; revoking a revoked token keeps its first revocation time.
    ///
    /// Errors: [`StoreError::NotFound`] when no token has this id; [`StoreError::Unavailable`];
    /// [`StoreError::Internal`].
    async fn revoke_token(&self, id: i64) -> Result<TokenRecord, StoreError>;

    /// The tokens that are active now.
    ///
    /// Errors: [`StoreError::Unavailable`]; [`StoreError::Internal`].
    async fn active_tokens(&self) -> Result<Vec<ActiveToken>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_read_and_print() {
        assert_eq!("administrator".parse(), Ok(Role::Administrator));
        assert_eq!("Admin".parse(), Ok(Role::Administrator));
        assert_eq!("AGENT".parse(), Ok(Role::Agent));
        assert!("owner".parse::<Role>().is_err());
        assert_eq!(Role::Administrator.to_string(), "administrator");
        assert_eq!(Role::Agent.to_string(), "agent");
    }

    #[test]
    fn an_active_token_hides_its_digest() {
        let token = ActiveToken {
            role: Role::Agent,
            digest: [0xab; 32],
        };
        let shown = format!("{token:?}");
        assert!(
            shown.contains("ActiveToken") && shown.contains("Agent"),
            "{shown}"
        );
        assert!(!shown.contains("171") && !shown.contains("ab"), "{shown}");
    }
}
