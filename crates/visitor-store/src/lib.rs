//! Storage for visitors: the [`VisitorStore`] trait every backend implements, the errors it may
//! return, and two backends — [`PgStore`] (PostgreSQL, via sqlx) and [`MemoryStore`].
//!
//! The store applies the domain's rules ([`visitor_domain::VisitorPatch::apply_to`]) atomically
//! with the write; it knows nothing of HTTP. Backend errors (such as `sqlx::Error`) are
//! translated inside each adapter and never cross this crate's boundary.

mod memory;
mod postgres;

#[cfg(feature = "conformance")]
pub mod conformance;

use std::error::Error as StdError;
use std::sync::Arc;

use async_trait::async_trait;
use visitor_domain::{NewVisitor, ValidationErrors, Visitor, VisitorId, VisitorPatch};

pub use memory::MemoryStore;
pub use postgres::{PgStore, PgStoreOptions};

/// A boxed cause, kept for the logs.
pub type Cause = Box<dyn StdError + Send + Sync + 'static>;

/// What a store operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No visitor has the given id.
    #[error("no visitor with that id")]
    NotFound,
    /// Another visitor already has the given `external_id`.
    #[error("external_id is already used by another visitor")]
    Conflict,
    /// The change breaks a rule of the domain; every offending key is named.
    #[error("the change breaks visitor rules: {0}")]
    Invalid(ValidationErrors),
    /// The storage cannot be reached now; the same call may succeed later.
    #[error("storage is unavailable")]
    Unavailable(#[source] Cause),
    /// Anything else: a bug or a state the store cannot explain.
    #[error("internal storage error")]
    Internal(#[source] Cause),
}

impl StoreError {
    /// An internal error carrying a message as its cause.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::Internal(message.into().into())
    }
}

/// Where visitors are kept. Every implementation is safe to share between threads
/// (`Arc<dyn VisitorStore>`) and behaves the same way, as the conformance suite checks.
#[async_trait]
pub trait VisitorStore: Send + Sync + std::fmt::Debug {
    /// Stores a new visitor and returns it with its id (never reused) and `created` (defaulting
    /// to now, in whole seconds).
    ///
    /// Errors: [`StoreError::Conflict`] when `external_id` is already used (nothing is stored);
    /// [`StoreError::Unavailable`] when the storage cannot be reached;
    /// [`StoreError::Internal`] otherwise.
    async fn create(&self, new: NewVisitor) -> Result<Visitor, StoreError>;

    /// The visitor with this id.
    ///
    /// Errors: [`StoreError::NotFound`] when there is none; [`StoreError::Unavailable`];
    /// [`StoreError::Internal`].
    async fn get(&self, id: VisitorId) -> Result<Visitor, StoreError>;

    /// Applies `patch` to the visitor with this id, atomically: concurrent updates of different
    /// keys all persist. Returns the whole visitor after the change.
    ///
    /// Errors: [`StoreError::NotFound`] when there is no such visitor (checked first);
    /// [`StoreError::Invalid`] when the patch breaks a mutability rule against the stored
    /// visitor (nothing is changed); [`StoreError::Unavailable`]; [`StoreError::Internal`].
    async fn update(&self, id: VisitorId, patch: VisitorPatch) -> Result<Visitor, StoreError>;

    /// Succeeds when the storage answers and is ready for the operations above.
    ///
    /// Errors: [`StoreError::Unavailable`] when it cannot be reached; [`StoreError::Internal`].
    async fn ping(&self) -> Result<(), StoreError>;
}

/// A store shared by every worker of a service.
pub type SharedStore = Arc<dyn VisitorStore>;
