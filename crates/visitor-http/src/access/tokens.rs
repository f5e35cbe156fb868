//! The tokens a server accepts, and who a presented token is: bearer-token authentication and
//! the administrator-only rule, without the middleware that applies them.
//!
//! Tokens are configured as `ROLE:TOKEN` or `ROLE:sha256:<hex digest of the token>`. Only their
//! SHA-256 digests are kept; a presented token is hashed and compared with every digest in
//! constant time, so neither the comparison's time nor the process's memory reveals a token.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use visitor_store::{ActiveToken, TokenDigest};

use crate::http::error::ApiError;

pub use visitor_store::Role;

/// A new token: 244 random bits (two v4 UUIDs) as 64 hexadecimal digits.
pub(crate) fn new_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

/// One configured token: its role and the SHA-256 digest of the token.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenSpec {
    pub role: Role,
    digest: TokenDigest,
}

impl fmt::Debug for TokenSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSpec")
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl TokenSpec {
    /// A token given in plain text.
    pub fn plain(role: Role, token: &SecretString) -> Self {
        Self {
            role,
            digest: digest(token.expose_secret()),
        }
    }

    /// The SHA-256 digest of the token.
    pub fn digest(&self) -> TokenDigest {
        self.digest
    }

    /// A token kept in the token store.
    pub fn stored(token: &ActiveToken) -> Self {
        Self {
            role: token.role,
            digest: token.digest,
        }
    }

    /// Parses `ROLE:TOKEN` or `ROLE:sha256:<64 hex digits>`.
    pub fn parse(spec: &SecretString) -> Result<Self, String> {
        let spec = spec.expose_secret().trim();
        let (role, token) = spec
            .split_once(':')
            .ok_or("a token must be given as ROLE:TOKEN (e.g. administrator:s3cret)")?;
        let role: Role = role.parse()?;
        if let Some(hex_digest) = token.strip_prefix("sha256:") {
            let mut digest = [0_u8; 32];
            hex::decode_to_slice(hex_digest, &mut digest).map_err(|_| {
                format!("the {role} token's sha256: digest must be 64 hexadecimal digits")
            })?;
            return Ok(Self { role, digest });
        }
        if token.is_empty() {
            return Err(format!("the {role} token is empty"));
        }
        Ok(Self::plain(role, &SecretString::from(token)))
    }
}

/// Who sent a request that passed authentication: its role, and its token's SHA-256 digest,
/// under which its idempotency keys are kept.
#[derive(Clone, PartialEq, Eq)]
pub struct Caller {
    pub role: Role,
    digest: TokenDigest,
}

impl Caller {
    /// The owner of the caller's idempotency keys: its token's digest in hex.
    pub fn owner(&self) -> String {
        hex::encode(self.digest)
    }
}

impl fmt::Debug for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Caller")
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// The tokens a server accepts: those configured at start-up, and those of the token store,
/// which a background task replaces as they change. Clones share the stored set.
#[derive(Debug, Clone, Default)]
pub struct TokenRegistry {
    configured: Arc<[TokenSpec]>,
    stored: Arc<RwLock<Vec<TokenSpec>>>,
}

/// A known token: its role and digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub role: Role,
    pub digest: TokenDigest,
}

impl TokenRegistry {
    pub fn new(tokens: Vec<TokenSpec>) -> Self {
        Self {
            configured: tokens.into(),
            stored: Arc::default(),
        }
    }

    /// Replaces the tokens of the token store with `tokens`.
    pub fn replace_stored(&self, tokens: Vec<TokenSpec>) {
        *self.stored.write().unwrap_or_else(PoisonError::into_inner) = tokens;
    }

    /// The role of a presented token, comparing its digest with every known one in
    /// constant time.
    pub fn role_of(&self, presented: &str) -> Option<Role> {
        self.role_of_digest(&digest(presented))
    }

    fn role_of_digest(&self, presented: &TokenDigest) -> Option<Role> {
        let stored = self.stored.read().unwrap_or_else(PoisonError::into_inner);
        let mut role = None;
        for spec in self.configured.iter().chain(stored.iter()) {
            if bool::from(spec.digest.ct_eq(presented)) {
                role = Some(spec.role);
            }
        }
        role
    }

    /// The known token of an `Authorization` header value (`Bearer <token>`).
    ///
    /// Errors: [`ApiError::Unauthorized`] for no header, another scheme or an unknown token.
    pub fn identify(&self, authorization: Option<&str>) -> Result<Identity, ApiError> {
        let token = authorization
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| !token.is_empty())
            .ok_or(ApiError::Unauthorized)?;
        let presented = digest(token);
        let role = self
            .role_of_digest(&presented)
            .ok_or(ApiError::Unauthorized)?;
        Ok(Identity {
            role,
            digest: presented,
        })
    }

    /// Checks an `Authorization` header value: `Bearer <token>` with a known administrator
    /// token passes, as that caller; a known token of another role is [`ApiError::Forbidden`].
    pub fn authorize(&self, authorization: Option<&str>) -> Result<Caller, ApiError> {
        Identity::caller(self.identify(authorization)?)
    }
}

impl Identity {
    /// The caller this token may act as: administrators only.
    pub(crate) fn caller(self) -> Result<Caller, ApiError> {
        match self.role {
            Role::Administrator => Ok(Caller {
                role: Role::Administrator,
                digest: self.digest,
            }),
            Role::Agent => Err(ApiError::Forbidden),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> TokenRegistry {
        let specs = ["administrator:admin-token", "agent:agent-token"];
        let mut tokens: Vec<TokenSpec> = specs
            .iter()
            .map(|s| TokenSpec::parse(&SecretString::from(*s)).unwrap())
            .collect();
        let hashed = hex::encode(Sha256::digest(b"hashed-token"));
        tokens.push(
            TokenSpec::parse(&SecretString::from(format!(
                "administrator:sha256:{hashed}"
            )))
            .unwrap(),
        );
        TokenRegistry::new(tokens)
    }

    #[test]
    fn administrators_pass_and_agents_are_forbidden() {
        let registry = registry();
        let caller = registry.authorize(Some("Bearer admin-token")).unwrap();
        assert_eq!(caller.role, Role::Administrator);
        assert_eq!(caller.owner(), hex::encode(Sha256::digest(b"admin-token")));
        assert!(!format!("{caller:?}").contains(&caller.owner()));
        assert!(registry.authorize(Some("bearer admin-token")).is_ok());
        assert!(matches!(
            registry.authorize(Some("Bearer agent-token")),
            Err(ApiError::Forbidden)
        ));
    }

    #[test]
    fn a_digest_stands_for_its_token() {
        let registry = registry();
        assert!(registry.authorize(Some("Bearer hashed-token")).is_ok());
        let hashed = hex::encode(Sha256::digest(b"hashed-token"));
        assert!(matches!(
            registry.authorize(Some(&format!("Bearer sha256:{hashed}"))),
            Err(ApiError::Unauthorized)
        ));
    }

    #[test]
    fn anything_else_is_unauthorized() {
        let registry = registry();
        for header in [
            None,
            Some(""),
            Some("Bearer"),
            Some("Bearer "),
            Some("Basic YWRtaW46YWRtaW4="),
            Some("Token admin-token"),
            Some("Bearer admin-token-2"),
            Some("Bearer ADMIN-TOKEN"),
        ] {
            assert!(
                matches!(registry.authorize(header), Err(ApiError::Unauthorized)),
                "{header:?}"
            );
        }
    }

    #[test]
    fn specs_are_checked() {
        for bad in [
            "admin-token",
            "owner:x",
            "administrator:",
            "administrator:sha256:abc",
            "agent:sha256:zz",
        ] {
            assert!(TokenSpec::parse(&SecretString::from(bad)).is_err(), "{bad}");
        }
        assert!(TokenSpec::parse(&SecretString::from("admin:a:b:c")).is_ok());
    }

    #[test]
    fn debug_output_never_shows_a_token() {
        let spec = TokenSpec::parse(&SecretString::from("administrator:very-secret")).unwrap();
        let shown = format!("{spec:?} {:?}", registry());
        assert!(!shown.contains("very-secret") && !shown.contains("admin-token"));
    }
}
